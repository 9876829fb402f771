//! A pod's ServiceAccount credentials. The kubelet mounts a bound token at the fixed path
//! `/var/run/secrets/kubernetes.io/serviceaccount`, which clients read without asking; here every
//! pod shares the host's filesystem, so that path cannot differ per pod. The agent instead writes
//! the same token (a TokenRequest bound to the pod, refreshed like the kubelet does) into the pod's
//! volume and hands the container a kubeconfig pointing at it through `KUBECONFIG`, which client
//! libraries (kube-rs `Config::infer`, client-go) try before the in-cluster files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::Api;
use kube::api::PostParams;

use crate::Error;

/// A token file in one of the pod's volumes, and what it takes to renew it.
#[derive(Debug, Clone)]
pub struct ApiAccess {
    pub volume: String,
    pub token_file: PathBuf,
    /// The kubeconfig a container mounting `volume` is given as `KUBECONFIG`.
    pub kubeconfig: PathBuf,
    service_account: String,
    projection: ServiceAccountTokenProjection,
    /// How long the last token lives, from the API server's answer.
    pub lifetime: Duration,
}

/// Asks the API server for a token of the pod's ServiceAccount bound to the pod (deleted pod,
/// dead token), as the kubelet does for a projected `serviceAccountToken` source.
async fn request(
    service_accounts: &Api<ServiceAccount>,
    service_account: &str,
    pod: &Pod,
    projection: &ServiceAccountTokenProjection,
) -> Result<(String, Duration), Error> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: projection.audience.iter().cloned().collect(),
            expiration_seconds: projection.expiration_seconds,
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let answer = service_accounts
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
        .map_err(Error::kube(format!(
            "requesting a token for ServiceAccount {service_account}"
        )))?;
    let status = answer.status.ok_or_else(|| {
        Error::Spec(format!(
            "TokenRequest for ServiceAccount {service_account} came back without a token"
        ))
    })?;
    let lifetime = Duration::try_from(
        status
            .expiration_timestamp
            .0
            .duration_since(jiff::Timestamp::now()),
    )
    .unwrap_or(Duration::from_secs(600));
    Ok((status.token, lifetime))
}

impl ApiAccess {
    /// Requests the first token, writes it and the kubeconfig next to the pod's folders.
    #[allow(clippy::too_many_arguments)]
    pub async fn create(
        service_accounts: &Api<ServiceAccount>,
        pod: &Pod,
        pod_dir: &Path,
        api_server: &str,
        volume: &str,
        volume_dir: &Path,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<Self, Error> {
        let service_account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let (token, lifetime) =
            request(service_accounts, &service_account, pod, projection).await?;
        let token_file = volume_dir.join(&projection.path);
        write_atomically(&token_file, token.as_bytes())?;
        let ca = volume_dir.join("ca.crt");
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let kubeconfig = pod_dir.join(format!("{volume}.kubeconfig"));
        let text = kubeconfig_text(
            api_server,
            ca.is_file().then_some(ca.as_path()),
            &token_file,
            namespace,
        );
        write_atomically(&kubeconfig, text.as_bytes())?;
        Ok(ApiAccess {
            volume: volume.to_owned(),
            token_file,
            kubeconfig,
            service_account,
            projection: projection.clone(),
            lifetime,
        })
    }

    /// Replaces the token file with a fresh token; clients re-read the file (kube-rs every minute).
    pub async fn renew(
        &mut self,
        service_accounts: &Api<ServiceAccount>,
        pod: &Pod,
    ) -> Result<(), Error> {
        let (token, lifetime) = request(
            service_accounts,
            &self.service_account,
            pod,
            &self.projection,
        )
        .await?;
        write_atomically(&self.token_file, token.as_bytes())?;
        self.lifetime = lifetime;
        Ok(())
    }
}

/// The kubelet renews a projected token once 80% of its life has passed.
pub fn renewal_delay(lifetime: Duration) -> Duration {
    lifetime.mul_f64(0.8).max(Duration::from_secs(10))
}

/// Renews every token of the pod until the task is aborted with the pod.
pub async fn renew_loop(
    service_accounts: Api<ServiceAccount>,
    pod: Pod,
    mut access: Vec<ApiAccess>,
) {
    if access.is_empty() {
        return;
    }
    loop {
        let delay = access
            .iter()
            .map(|a| renewal_delay(a.lifetime))
            .min()
            .unwrap_or(Duration::from_secs(600));
        tokio::time::sleep(delay).await;
        for a in &mut access {
            if let Err(e) = a.renew(&service_accounts, &pod).await {
                // Retried at the next turn; the old token stays valid for the remaining 20%.
                tracing::warn!(volume = %a.volume, error = %e, "renewing the ServiceAccount token failed");
                a.lifetime = Duration::from_secs(15);
            }
        }
    }
}

fn kubeconfig_text(server: &str, ca: Option<&Path>, token_file: &Path, namespace: &str) -> String {
    let mut cluster = serde_json::json!({"server": server});
    if let Some(ca) = ca {
        cluster["certificate-authority"] = ca.display().to_string().into();
    }
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": cluster}],
        "users": [{"name": "service-account", "user": {"tokenFile": token_file.display().to_string()}}],
        "contexts": [{"name": "in-cluster", "context": {
            "cluster": "in-cluster", "user": "service-account", "namespace": namespace,
        }}],
        "current-context": "in-cluster",
    });
    // JSON is YAML: every kubeconfig reader accepts it.
    serde_json::to_string_pretty(&config).expect("kubeconfig serialises")
}

/// Readers never see a half-written token: write beside it, then rename over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(Error::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_points_at_the_token_file_and_ca() {
        let text = kubeconfig_text(
            "https://127.0.0.1:56443",
            Some(Path::new("/node/pods/a/volumes/kube-api-access/ca.crt")),
            Path::new("/node/pods/a/volumes/kube-api-access/token"),
            "ml",
        );
        let kc: kube::config::Kubeconfig = serde_yaml::from_str(&text).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:56443"));
        assert_eq!(
            cluster.certificate_authority.as_deref(),
            Some("/node/pods/a/volumes/kube-api-access/ca.crt")
        );
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(
            user.token_file.as_deref(),
            Some("/node/pods/a/volumes/kube-api-access/token")
        );
        assert!(user.token.is_none());
        assert_eq!(
            kc.contexts[0]
                .context
                .as_ref()
                .unwrap()
                .namespace
                .as_deref(),
            Some("ml")
        );
        assert_eq!(kc.current_context.as_deref(), Some("in-cluster"));
    }

    #[test]
    fn renewal_comes_at_four_fifths_of_the_lifetime() {
        assert_eq!(
            renewal_delay(Duration::from_secs(3600)),
            Duration::from_secs(2880)
        );
        assert_eq!(
            renewal_delay(Duration::from_secs(1)),
            Duration::from_secs(10)
        );
    }
}
