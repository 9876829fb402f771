//! The operator as a platform team runs it: installed by the Helm chart from its image, watching
//! the test's namespace, as its own ServiceAccount.

use crate::command::helm;
use crate::http::get;
use crate::namespace::DB_SECRET;
use crate::wait::wait_for;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use std::path::Path;
use std::time::Duration;

pub const RELEASE: &str = "rec";

pub struct Operator {
    pub namespace: String,
    client: Client,
}

impl Operator {
    /// `helm install` into `namespace`, watching `watch` (usually the same), and waits until the
    /// operator pod is ready. `extra` are further `--set` values.
    pub async fn install(
        client: &Client,
        repo: &Path,
        namespace: &str,
        watch: &str,
        extra: &[&str],
    ) -> Self {
        let chart = repo.join("charts/recommender-operator");
        Self::install_chart(client, &chart, namespace, watch, extra).await
    }

    /// `install` from the chart in the folder `chart` (another version of it, say). With
    /// `replicaCount=0` in `extra` it does not wait for a pod.
    pub async fn install_chart(
        client: &Client,
        chart: &Path,
        namespace: &str,
        watch: &str,
        extra: &[&str],
    ) -> Self {
        let mut sets = vec![
            "image.repository=local/recommender-operator".to_string(),
            "image.tag=dev".into(),
            "workloadImages.trainer.repository=local/recommender-trainer".into(),
            "workloadImages.trainer.tag=dev".into(),
            "workloadImages.predictor.repository=local/recommender-predictor".into(),
            "workloadImages.predictor.tag=dev".into(),
            format!("watchNamespaces={{{watch}}}"),
            format!("rbac.secrets.resourceNames={{{DB_SECRET}}}"),
            "logLevel=info\\,recommender_operator=debug".into(),
        ];
        sets.extend(extra.iter().map(|s| s.to_string()));
        let mut args = vec![
            "upgrade",
            "--install",
            RELEASE,
            chart.to_str().expect("a UTF-8 path"),
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "180s",
        ];
        for set in &sets {
            args.extend(["--set", set.as_str()]);
        }
        let (ok, out) = helm(&args);
        assert!(ok, "helm install of the operator into {namespace}: {out}");
        let operator = Self {
            namespace: namespace.into(),
            client: client.clone(),
        };
        // `replicaCount=0` installs the chart's objects with no operator running.
        if !extra.contains(&"replicaCount=0") {
            operator.ready_pod().await;
        }
        operator
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn list(&self) -> Vec<Pod> {
        self.pods()
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}")))
            .await
            .expect("list the operator's pods")
            .items
    }

    /// The operator's ready pod, once there is one.
    pub async fn ready_pod(&self) -> Pod {
        wait_for(Duration::from_secs(120), "a ready operator pod", || async {
            self.list()
                .await
                .into_iter()
                .find(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
        })
        .await
    }

    /// Kills the operator's pod at once (no grace: as a node failure or OOM kill would), and
    /// waits for its replacement to be ready.
    pub async fn kill(&self) -> Pod {
        let old = self.ready_pod().await;
        self.pods()
            .delete(&old.name_any(), &DeleteParams::default().grace_period(0))
            .await
            .expect("delete the operator pod");
        wait_for(
            Duration::from_secs(120),
            "a new ready operator pod",
            || async {
                self.list().await.into_iter().find(|p| {
                    p.uid() != old.uid() && p.metadata.deletion_timestamp.is_none() && is_ready(p)
                })
            },
        )
        .await
    }

    /// Containers of the operator that restarted (0 while it runs without a crash).
    pub async fn restarts(&self) -> i32 {
        self.list()
            .await
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum()
    }

    /// The operator's `/metrics`, from its pod.
    pub async fn metrics(&self) -> String {
        let pod = self.ready_pod().await;
        let ip = pod.status.and_then(|s| s.pod_ip).expect("a pod IP");
        get(&format!("http://{ip}:8080/metrics"))
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
