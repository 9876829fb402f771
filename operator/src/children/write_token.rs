//! The predictor's write token (`spec.predictor.writeToken`): the Secret's key mounted read-only
//! as a file, `--write-token-file` pointing at it, and the Secret's version on the pod template,
//! so a rotated token rolls the pods (the predictor reads it once, at start).

use crate::crd::WriteTokenRef;
use crate::labels;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{KeyToPath, SecretVolumeSource, Volume, VolumeMount};

const VOLUME: &str = "write-token";
const MOUNT: &str = "/etc/recommender/write-token";
const FILE: &str = "token";

/// Adds the token of `reference` (at the Secret's `version`) to the predictor `deployment`.
pub fn mount_write_token(
    deployment: &mut Deployment,
    reference: &WriteTokenRef,
    version: Option<&str>,
) {
    let Some(template) = deployment.spec.as_mut().map(|s| &mut s.template) else {
        return;
    };
    if let Some(version) = version {
        let metadata = template.metadata.get_or_insert_default();
        metadata
            .annotations
            .get_or_insert_default()
            .insert(labels::WRITE_TOKEN_VERSION.into(), version.into());
    }
    let Some(pod) = template.spec.as_mut() else {
        return;
    };
    pod.volumes.get_or_insert_default().push(Volume {
        name: VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(reference.secret_name.clone()),
            items: Some(vec![KeyToPath {
                key: reference.key.clone(),
                path: FILE.into(),
                ..KeyToPath::default()
            }]),
            // Readable by the pod's group (fsGroup) only, never by others.
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    });
    for container in pod.containers.iter_mut().filter(|c| c.name == "predictor") {
        container
            .args
            .get_or_insert_default()
            .extend(["--write-token-file".into(), format!("{MOUNT}/{FILE}")]);
        container
            .volume_mounts
            .get_or_insert_default()
            .push(VolumeMount {
                name: VOLUME.into(),
                mount_path: MOUNT.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::children::predictor_deployment;
    use crate::decide::fixtures::{defaults, file_spec, model};

    #[test]
    fn the_token_is_a_read_only_file_the_predictor_is_pointed_at() {
        let m = model(file_spec(), None);
        let mut d = predictor_deployment(&m, "v2", None, &defaults());
        let reference = WriteTokenRef {
            secret_name: "feedback-token".into(),
            key: "token".into(),
        };
        mount_write_token(&mut d, &reference, Some("4711"));
        let template = &d.spec.as_ref().unwrap().template;
        let annotations = template.metadata.as_ref().unwrap().annotations.clone();
        assert_eq!(annotations.unwrap()[labels::WRITE_TOKEN_VERSION], "4711");
        let pod = template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        // After the predictor's own flags, which stay as they were.
        let args = c.args.clone().unwrap();
        assert_eq!(args.len(), 8, "{args:?}");
        assert_eq!(
            args[6..],
            ["--write-token-file", "/etc/recommender/write-token/token"]
        );
        let mount = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == VOLUME)
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (MOUNT, Some(true))
        );
        let volume = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == VOLUME)
            .unwrap();
        let secret = volume.secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("feedback-token"));
        let item = &secret.items.as_ref().unwrap()[0];
        assert_eq!((item.key.as_str(), item.path.as_str()), ("token", FILE));
        assert_eq!(secret.default_mode, Some(0o440));
        // The model store stays as it was: read-only, beside the token.
        assert_eq!(pod.volumes.as_ref().unwrap().len(), 2);
        crate::children::testing::assert_locked_down(c, true);
    }
}
