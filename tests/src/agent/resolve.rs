//! Resolves what a pod refers to (Secrets, ConfigMaps, the downward API, volumes) into host
//! folders and a plain environment for each container.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, Pod, Secret, ServiceAccount, Volume,
};
use kube::{Api, Client};

use super::api_access::ApiAccess;
use super::launch::PathMap;
use crate::Error;

/// Secrets and ConfigMaps of one namespace, fetched once per container start.
pub struct Refs {
    secrets: Api<Secret>,
    config_maps: Api<ConfigMap>,
    service_accounts: Api<ServiceAccount>,
    secret_cache: HashMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    config_map_cache: HashMap<String, Option<BTreeMap<String, Vec<u8>>>>,
}

impl Refs {
    pub fn new(client: Client, namespace: &str) -> Self {
        Refs {
            secrets: Api::namespaced(client.clone(), namespace),
            config_maps: Api::namespaced(client.clone(), namespace),
            service_accounts: Api::namespaced(client, namespace),
            secret_cache: HashMap::new(),
            config_map_cache: HashMap::new(),
        }
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&BTreeMap<String, Vec<u8>>>, Error> {
        if !self.secret_cache.contains_key(name) {
            let data = self
                .secrets
                .get_opt(name)
                .await
                .map_err(Error::kube(format!("reading Secret {name}")))?
                .map(|s| byte_map(s.string_data, s.data));
            self.secret_cache.insert(name.to_owned(), data);
        }
        Ok(self.secret_cache[name].as_ref())
    }

    async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<&BTreeMap<String, Vec<u8>>>, Error> {
        if !self.config_map_cache.contains_key(name) {
            let data = self
                .config_maps
                .get_opt(name)
                .await
                .map_err(Error::kube(format!("reading ConfigMap {name}")))?
                .map(|c| byte_map(c.data, c.binary_data));
            self.config_map_cache.insert(name.to_owned(), data);
        }
        Ok(self.config_map_cache[name].as_ref())
    }

    /// One key of a Secret or ConfigMap; `Ok(None)` only when the reference is optional.
    async fn key(
        &mut self,
        kind: Kind,
        name: &str,
        key: &str,
        optional: bool,
    ) -> Result<Option<String>, Error> {
        let data = match kind {
            Kind::Secret => self.secret(name).await?,
            Kind::ConfigMap => self.config_map(name).await?,
        };
        match data.and_then(|d| d.get(key)) {
            Some(bytes) => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
            None if optional => Ok(None),
            None => Err(Error::MissingReference(format!(
                "{} {name:?} or its key {key:?} not found",
                kind.name()
            ))),
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Secret,
    ConfigMap,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        }
    }
}

/// The facts about a pod that the downward API exposes.
pub struct Downward<'a> {
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    pub node_name: &'a str,
}

impl Downward<'_> {
    fn field(&self, path: &str) -> Result<String, Error> {
        let meta = &self.pod.metadata;
        let spec = self.pod.spec.as_ref();
        let from_map = |map: Option<&BTreeMap<String, String>>, prefix: &str| {
            let key = path
                .strip_prefix(prefix)?
                .strip_suffix("']")
                .or_else(|| path.strip_prefix(prefix)?.strip_suffix("\"]"))?;
            Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
        };
        let value = match path {
            "metadata.name" => meta.name.clone().unwrap_or_default(),
            "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
            "metadata.uid" => meta.uid.clone().unwrap_or_default(),
            "spec.nodeName" => self.node_name.to_owned(),
            "spec.serviceAccountName" => spec
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_default(),
            "status.podIP" | "status.podIPs" => self.pod_ip.to_owned(),
            "status.hostIP" | "status.hostIPs" => self.host_ip.to_owned(),
            _ => from_map(meta.labels.as_ref(), "metadata.labels['")
                .or_else(|| from_map(meta.annotations.as_ref(), "metadata.annotations['"))
                .ok_or_else(|| {
                    Error::Spec(format!("downward API field {path:?} is not supported"))
                })?,
        };
        Ok(value)
    }
}

/// The container's environment in container terms, in the kubelet's order: `envFrom` first, then
/// `env`, each value expanded against what is defined before it.
pub async fn container_env(
    container: &Container,
    downward: &Downward<'_>,
    refs: &mut Refs,
) -> Result<BTreeMap<String, String>, Error> {
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = match (&from.secret_ref, &from.config_map_ref) {
            (Some(s), _) => (Kind::Secret, s.name.clone(), s.optional.unwrap_or(false)),
            (None, Some(c)) => (Kind::ConfigMap, c.name.clone(), c.optional.unwrap_or(false)),
            (None, None) => continue,
        };
        let data = match kind {
            Kind::Secret => refs.secret(&name).await?,
            Kind::ConfigMap => refs.config_map(&name).await?,
        };
        match data {
            Some(data) => {
                for (k, v) in data {
                    env.insert(
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(v).into_owned(),
                    );
                }
            }
            None if optional => {}
            None => {
                return Err(Error::MissingReference(format!(
                    "{} {name:?} (envFrom) not found",
                    kind.name()
                )));
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => Some(super::launch::expand(
                var.value.as_deref().unwrap_or_default(),
                |n| env.get(n).cloned(),
            )),
            Some(source) => {
                if let Some(r) = &source.secret_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    refs.key(Kind::Secret, &r.name, &r.key, optional).await?
                } else if let Some(r) = &source.config_map_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    refs.key(Kind::ConfigMap, &r.name, &r.key, optional).await?
                } else if let Some(r) = &source.field_ref {
                    Some(downward.field(&r.field_path)?)
                } else {
                    return Err(Error::Spec(format!(
                        "env {}: only value, secretKeyRef, configMapKeyRef and fieldRef are supported",
                        var.name
                    )));
                }
            }
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    Ok(env)
}

/// Where a persistent volume claim lives on the host: one shared folder per claim.
pub fn claim_dir(state_dir: &Path, namespace: &str, claim: &str) -> PathBuf {
    state_dir
        .join("volumes")
        .join("pvc")
        .join(namespace)
        .join(claim)
}

fn create_dir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(Error::io(path))
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
) -> Result<(), Error> {
    let entries: Vec<(&str, &str)> = match items {
        Some(items) => items
            .iter()
            .map(|i| (i.key.as_str(), i.path.as_str()))
            .collect(),
        None => data.keys().map(|k| (k.as_str(), k.as_str())).collect(),
    };
    for (key, rel) in entries {
        let Some(bytes) = data.get(key) else {
            return Err(Error::MissingReference(format!(
                "volume key {key:?} not found"
            )));
        };
        if rel.split('/').any(|part| part == "..") || rel.starts_with('/') {
            return Err(Error::Spec(format!(
                "volume item path {rel:?} escapes the volume"
            )));
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            create_dir(parent)?;
        }
        std::fs::write(&path, bytes).map_err(Error::io(&path))?;
    }
    Ok(())
}

/// The pod's volumes on the host, and the ServiceAccount tokens written into them.
#[derive(Debug)]
pub struct Volumes {
    pub dirs: BTreeMap<String, PathBuf>,
    pub api_access: Vec<ApiAccess>,
}

impl Volumes {
    /// `KUBECONFIG` for a container that mounts a volume holding a ServiceAccount token.
    pub fn kubeconfig_for(&self, container: &Container) -> Option<&Path> {
        let mounts = container.volume_mounts.as_deref().unwrap_or_default();
        self.api_access
            .iter()
            .find(|a| mounts.iter().any(|m| m.name == a.volume))
            .map(|a| a.kubeconfig.as_path())
    }
}

/// Host folder for each of the pod's volumes, created and filled.
pub async fn prepare_volumes(
    pod: &Pod,
    pod_dir: &Path,
    state_dir: &Path,
    api_server: &str,
    downward: &Downward<'_>,
    refs: &mut Refs,
) -> Result<Volumes, Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut dirs = BTreeMap::new();
    let mut api_access = Vec::new();
    let volumes: &[Volume] = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for volume in volumes {
        let own = pod_dir.join("volumes").join(&volume.name);
        let dir = if let Some(claim) = &volume.persistent_volume_claim {
            claim_dir(state_dir, namespace, &claim.claim_name)
        } else if let Some(host) = &volume.host_path {
            PathBuf::from(&host.path)
        } else if volume.empty_dir.is_some() {
            own
        } else if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            create_dir(&own)?;
            match refs.secret(&name).await? {
                Some(data) => write_items(&own, data, secret.items.as_ref())?,
                None if secret.optional.unwrap_or(false) => {}
                None => {
                    return Err(Error::MissingReference(format!(
                        "Secret {name:?} (volume {}) not found",
                        volume.name
                    )));
                }
            }
            own
        } else if let Some(cm) = &volume.config_map {
            create_dir(&own)?;
            let optional = cm.optional.unwrap_or(false);
            write_config_map(
                refs,
                &own,
                &cm.name,
                cm.items.as_ref(),
                optional,
                &volume.name,
            )
            .await?;
            own
        } else if let Some(projected) = &volume.projected {
            // The ServiceAccount volume (`kube-api-access-*`) lands here: CA, namespace, token.
            create_dir(&own)?;
            let mut token = None;
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    let optional = cm.optional.unwrap_or(false);
                    write_config_map(
                        refs,
                        &own,
                        &cm.name,
                        cm.items.as_ref(),
                        optional,
                        &volume.name,
                    )
                    .await?;
                }
                if let Some(projection) = &source.service_account_token {
                    token = Some(projection);
                }
                if let Some(secret) = &source.secret
                    && let Some(data) = refs.secret(&secret.name).await?
                {
                    write_items(&own, data, secret.items.as_ref())?;
                }
                if let Some(api) = &source.downward_api {
                    for item in api.items.iter().flatten() {
                        if let Some(field) = &item.field_ref {
                            let data = BTreeMap::from([(
                                item.path.clone(),
                                downward.field(&field.field_path)?.into_bytes(),
                            )]);
                            write_items(&own, &data, None)?;
                        }
                    }
                }
            }
            // After the other sources, so that the kubeconfig can name the CA written above.
            if let Some(projection) = token {
                let access = ApiAccess::create(
                    &refs.service_accounts,
                    pod,
                    pod_dir,
                    api_server,
                    &volume.name,
                    &own,
                    projection,
                )
                .await?;
                api_access.push(access);
            }
            own
        } else if let Some(api) = &volume.downward_api {
            create_dir(&own)?;
            for item in api.items.iter().flatten() {
                if let Some(field) = &item.field_ref {
                    let data = BTreeMap::from([(
                        item.path.clone(),
                        downward.field(&field.field_path)?.into_bytes(),
                    )]);
                    write_items(&own, &data, None)?;
                }
            }
            own
        } else {
            return Err(Error::Spec(format!(
                "volume {:?}: only persistentVolumeClaim, emptyDir, hostPath, secret, configMap, projected and downwardAPI are supported",
                volume.name
            )));
        };
        create_dir(&dir)?;
        dirs.insert(volume.name.clone(), dir);
    }
    Ok(Volumes { dirs, api_access })
}

/// Writes a ConfigMap's keys (or its `items`) into `dir`; a missing ConfigMap keeps the pod
/// waiting unless the reference is optional.
async fn write_config_map(
    refs: &mut Refs,
    dir: &Path,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: bool,
    volume: &str,
) -> Result<(), Error> {
    match refs.config_map(name).await? {
        Some(data) => write_items(dir, data, items),
        None if optional => Ok(()),
        None => Err(Error::MissingReference(format!(
            "ConfigMap {name:?} (volume {volume}) not found"
        ))),
    }
}

/// The container's view of the host: every volume mount, plus its termination-message file.
pub fn container_paths(
    container: &Container,
    volumes: &BTreeMap<String, PathBuf>,
    termination_log: &Path,
) -> Result<PathMap, Error> {
    let mut map = PathMap::default();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(host) = volumes.get(&mount.name) else {
            return Err(Error::Spec(format!(
                "container {}: volumeMount {:?} names no volume of the pod",
                container.name, mount.name
            )));
        };
        let host = match mount.sub_path.as_deref() {
            Some(sub) if !sub.is_empty() => {
                let joined = host.join(sub);
                create_dir(&joined)?;
                joined
            }
            _ => host.clone(),
        };
        map.insert(&mount.mount_path, host);
    }
    let message_path = container
        .termination_message_path
        .as_deref()
        .unwrap_or("/dev/termination-log");
    map.insert(message_path, termination_log.to_path_buf());
    Ok(map)
}

/// Secrets and ConfigMaps both carry text and binary values; the binary ones win on a shared key,
/// as the API server merges a Secret's `stringData` under its `data`.
fn byte_map(
    text: Option<BTreeMap<String, String>>,
    binary: Option<BTreeMap<String, k8s_openapi::ByteString>>,
) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = text
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    data.extend(
        binary
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0)),
    );
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "ml", "uid": "u-1",
                         "labels": {"app": "web"}},
            "spec": {
                "serviceAccountName": "runner",
                "containers": [{
                    "name": "main",
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                        {"name": "LISTEN", "value": "$(POD_IP):8080"},
                        {"name": "LATER", "value": "$(DEFINED_AFTER)"},
                        {"name": "DEFINED_AFTER", "value": "x"},
                    ],
                    "volumeMounts": [
                        {"name": "models", "mountPath": "/models"},
                        {"name": "scratch", "mountPath": "/scratch", "subPath": "part"},
                    ],
                    "terminationMessagePath": "/tmp/report.json",
                }],
                "volumes": [
                    {"name": "models", "persistentVolumeClaim": {"claimName": "store"}},
                    {"name": "scratch", "emptyDir": {}},
                ],
            },
        }))
        .unwrap()
    }

    /// A client that is never contacted: these pods reference no Secret or ConfigMap.
    fn offline_refs() -> Refs {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        Refs::new(Client::try_from(config).unwrap(), "ml")
    }

    #[tokio::test]
    async fn env_comes_from_values_and_the_downward_api_in_order() {
        let pod = pod();
        let downward = Downward {
            pod: &pod,
            pod_ip: "127.1.0.9",
            host_ip: "127.0.0.1",
            node_name: "n",
        };
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let env = container_env(container, &downward, &mut offline_refs())
            .await
            .unwrap();
        assert_eq!(env["POD_IP"], "127.1.0.9");
        assert_eq!(env["NS"], "ml");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["LISTEN"], "127.1.0.9:8080");
        // Only variables defined earlier expand, as in the kubelet.
        assert_eq!(env["LATER"], "$(DEFINED_AFTER)");
        assert!(downward.field("spec.nodeSelector").is_err());
    }

    #[tokio::test]
    async fn volumes_map_claims_to_one_shared_folder_and_mounts_to_host_paths() {
        let state = tempfile::tempdir().unwrap();
        let pod = pod();
        let downward = Downward {
            pod: &pod,
            pod_ip: "127.1.0.9",
            host_ip: "127.0.0.1",
            node_name: "n",
        };
        let pod_dir = state.path().join("pods/ml/web-1");
        let volumes = prepare_volumes(
            &pod,
            &pod_dir,
            state.path(),
            "https://127.0.0.1:1",
            &downward,
            &mut offline_refs(),
        )
        .await
        .unwrap();
        assert!(volumes.api_access.is_empty());
        let volumes = volumes.dirs;
        let claim = state.path().join("volumes/pvc/ml/store");
        assert_eq!(volumes["models"], claim);
        assert!(claim.is_dir());
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let term = pod_dir.join("main.termination-log");
        let paths = container_paths(container, &volumes, &term).unwrap();
        assert_eq!(
            paths.rewrite("/models/m/v1.model"),
            claim.join("m/v1.model").display().to_string()
        );
        assert_eq!(
            paths.rewrite("/scratch/f"),
            pod_dir.join("volumes/scratch/part/f").display().to_string()
        );
        assert_eq!(
            paths.rewrite("/tmp/report.json"),
            term.display().to_string()
        );
        // The default path is not mapped when the container names another one.
        assert_eq!(
            paths.rewrite("/dev/termination-log"),
            "/dev/termination-log"
        );
    }

    #[tokio::test]
    async fn unsupported_volumes_are_named_in_the_error() {
        let mut pod = pod();
        pod.spec.as_mut().unwrap().volumes = Some(vec![
            serde_json::from_value(
                json!({"name": "nfs-share", "nfs": {"server": "s", "path": "/"}}),
            )
            .unwrap(),
        ]);
        let downward = Downward {
            pod: &pod,
            pod_ip: "127.1.0.9",
            host_ip: "127.0.0.1",
            node_name: "n",
        };
        let state = tempfile::tempdir().unwrap();
        let err = prepare_volumes(
            &pod,
            state.path(),
            state.path(),
            "https://127.0.0.1:1",
            &downward,
            &mut offline_refs(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("nfs-share"), "{err}");
    }
}
