//! A progressive rollout's part of the predictor: the `<model>-rollout` ConfigMap holding the
//! rollout config (`recommender_contract::rollout::RolloutConfig`, key `rollout.json`), and on the
//! Deployment the candidate's flags and the ConfigMap mounted as a folder. The pods are started
//! once with the candidate; every later change of stage or share rewrites only the ConfigMap,
//! which the kubelet refreshes in the pods and the predictor reads again (no restart).

use super::{common_labels, meta};
use crate::crd::RecommenderModel;
use crate::labels::{self, ROLLOUT_CONFIG_DIR, ROLLOUT_CONFIG_KEY};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, Volume, VolumeMount};
use kube::ResourceExt;
use recommender_contract::rollout::RolloutConfig;
use std::collections::BTreeMap;

const VOLUME: &str = "rollout";

pub fn rollout_config_name(model: &str) -> String {
    format!("{model}-rollout")
}

/// The ConfigMap the predictors read the rollout's stage and share from.
pub fn rollout_config_map(model: &RecommenderModel, config: &RolloutConfig) -> ConfigMap {
    // Serialising plain strings and a number cannot fail.
    let json = serde_json::to_string(config).unwrap_or_default();
    ConfigMap {
        metadata: meta(
            model,
            rollout_config_name(&model.name_any()),
            common_labels(model, labels::COMPONENT_PREDICTOR),
        ),
        data: Some(BTreeMap::from([(ROLLOUT_CONFIG_KEY.into(), json)])),
        ..ConfigMap::default()
    }
}

/// Adds the candidate (`--candidate-version`, `--candidate-sha256`, `--rollout-config`) and the
/// ConfigMap's folder to the predictor `deployment`.
pub fn mount_rollout(
    deployment: &mut Deployment,
    model: &RecommenderModel,
    candidate_version: &str,
    sha256: Option<&str>,
) {
    let Some(pod) = deployment
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
    else {
        return;
    };
    pod.volumes.get_or_insert_default().push(Volume {
        name: VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: rollout_config_name(&model.name_any()),
            // Applied before the Deployment, so it is there; should it be deleted by hand, the
            // pods still start and serve the stable model (the predictor reports the missing
            // file) rather than hang in ContainerCreating.
            optional: Some(true),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    });
    for container in pod.containers.iter_mut().filter(|c| c.name == "predictor") {
        let args = container.args.get_or_insert_default();
        args.extend(["--candidate-version".into(), candidate_version.into()]);
        if let Some(sha256) = sha256 {
            args.extend(["--candidate-sha256".into(), sha256.into()]);
        }
        args.extend([
            "--rollout-config".into(),
            format!("{ROLLOUT_CONFIG_DIR}/{ROLLOUT_CONFIG_KEY}"),
        ]);
        // A folder, not the file by `subPath`: only a folder mount sees the ConfigMap's updates.
        container
            .volume_mounts
            .get_or_insert_default()
            .push(VolumeMount {
                name: VOLUME.into(),
                mount_path: ROLLOUT_CONFIG_DIR.into(),
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
    use recommender_contract::rollout::Stage;

    #[test]
    fn the_config_map_holds_a_config_the_predictor_reads() {
        let m = model(file_spec(), None);
        let config = RolloutConfig {
            rollout_id: "movies-v7-1733590000".into(),
            stage: Stage::Canary,
            candidate_version: "v7".into(),
            candidate_share: 0.25,
        };
        let cm = rollout_config_map(&m, &config);
        assert_eq!(cm.metadata.name.as_deref(), Some("movies-rollout"));
        assert!(cm.metadata.owner_references.is_some_and(|o| o.len() == 1));
        let text = &cm.data.unwrap()["rollout.json"];
        assert_eq!(RolloutConfig::parse(text).unwrap(), config);
    }

    #[test]
    fn the_candidate_and_the_config_folder_join_the_predictor() {
        let m = model(file_spec(), None);
        let mut d = predictor_deployment(&m, "v6", Some(&"0a".repeat(32)), &defaults());
        let sha = "7b".repeat(32);
        mount_rollout(&mut d, &m, "v7", Some(&sha));
        let pod = d.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        let args = c.args.clone().unwrap().join(" ");
        assert!(
            args.ends_with(&format!(
                "--model-version v6 --model-sha256 {} --listen [::]:8080 --candidate-version v7 \
                 --candidate-sha256 {sha} --rollout-config /etc/recommender/rollout/rollout.json",
                "0a".repeat(32)
            )),
            "{args}"
        );
        let volume = pod.volumes.unwrap().pop().unwrap();
        assert_eq!(
            volume.config_map.map(|c| (c.name, c.optional)),
            Some(("movies-rollout".to_string(), Some(true)))
        );
        let mount = c.volume_mounts.clone().unwrap().pop().unwrap();
        assert_eq!(
            (
                mount.name.as_str(),
                mount.mount_path.as_str(),
                mount.sub_path
            ),
            ("rollout", "/etc/recommender/rollout", None)
        );
    }
}
