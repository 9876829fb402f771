//! The apply stage: makes a plan true with server-side apply (children, then status), then
//! publishes its events.

use crate::children;
use crate::crd::{KIND, RecommenderModel, RecommenderModelStatus};
use crate::decide::{NetworkPlan, Plan, PlannedEvent, RungChildren, ScalingPlan};
use crate::error::{Error, Result};
use crate::labels::{HANDOVER_MANAGER, MANAGER};
use crate::leader::Lease;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use tracing::{info, warn};

/// A namespaced kind the applier writes (a Job, Deployment, Service, ..., the resource's status).
trait Child:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
{
}

impl<K> Child for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug
{
}

/// Holds what every write needs: the client, the field manager, the event recorder (created
/// once, so repeated events are folded into series) and the Lease, asked before each write.
pub struct Applier {
    client: Client,
    manager: &'static str,
    recorder: Recorder,
    lease: Lease,
}

impl Applier {
    pub fn new(client: Client, recorder: Recorder, lease: Lease) -> Self {
        Self {
            client,
            manager: MANAGER,
            recorder,
            lease,
        }
    }

    fn params(&self) -> PatchParams {
        PatchParams::apply(self.manager).force()
    }

    /// Children first, so a status never claims what is not there yet; events last, as news of
    /// what was done.
    pub async fn plan(&self, model: &RecommenderModel, plan: &Plan) -> Result<()> {
        if let Some(job) = &plan.start_job {
            let job = self.child(job).await?;
            // Owned by the Job, as a rung's plan is: the pod waits for it to mount, a moment.
            if let Some(record) = &plan.search_record {
                self.child(&children::owned_by_job(record, &job)).await?;
            }
            info!(job = %job.name_any(), "started training run");
        }
        if let Some(rung) = &plan.start_rung {
            self.rung(rung).await?;
        }
        if let Some(job) = &plan.start_evaluation {
            self.child(job).await?;
            info!(job = %job.name_any(), "started forward evaluation");
        }
        if let Some(service) = &plan.service {
            self.child(service).await?;
        }
        if let Some(config) = &plan.rollout_config {
            self.rollout_config(config).await?;
        }
        if let Some(deployment) = &plan.deployment {
            self.network(&deployment.namespace().unwrap_or_default(), &plan.network)
                .await?;
            self.predictor(deployment, &plan.scaling).await?;
        }
        if let Some(job) = &plan.cleanup_job {
            self.child(job).await?;
            info!(job = %job.name_any(), "started model store cleanup");
        }
        self.status(model, &plan.status).await?;
        self.events(model, &plan.events).await;
        Ok(())
    }

    /// The predictor Deployment with its scaling companions. The autoscaler goes before the
    /// operator takes the replicas back (so it cannot scale in between), the hand-over before
    /// the Deployment is applied without them.
    async fn predictor(&self, deployment: &Deployment, scaling: &ScalingPlan) -> Result<()> {
        let namespace = deployment.namespace().unwrap_or_default();
        if let Some(name) = &scaling.delete_autoscaler {
            self.delete::<HorizontalPodAutoscaler>(&namespace, name)
                .await?;
        }
        if let Some(replicas) = scaling.replicas_handover {
            self.hand_over_replicas(deployment, replicas).await?;
        }
        self.child(deployment).await?;
        if let Some(autoscaler) = &scaling.autoscaler {
            self.child(autoscaler).await?;
        }
        if let Some(budget) = &scaling.disruption_budget {
            self.child(budget).await?;
        }
        if let Some(name) = &scaling.delete_disruption_budget {
            self.delete::<PodDisruptionBudget>(&namespace, name).await?;
        }
        Ok(())
    }

    /// The rollout config's ConfigMap, before the Deployment: a rollout's first pods find the
    /// config they mount (else they would start on the stable arm alone and take a kubelet sync
    /// to see it), and an abort's share of 0 reaches the running pods before the Deployment
    /// drops the candidate and rolls them.
    async fn rollout_config(&self, config: &ConfigMap) -> Result<()> {
        self.child(config).await?;
        Ok(())
    }

    /// The predictor's NetworkPolicy, before its Deployment: new pods start isolated, and a
    /// policy is deleted while the Deployment still remembers it (so a failed delete is retried).
    async fn network(&self, namespace: &str, network: &NetworkPlan) -> Result<()> {
        if let Some(name) = &network.delete {
            self.delete::<NetworkPolicy>(namespace, name).await?;
        }
        if let Some(policy) = &network.apply {
            self.child(policy).await?;
        }
        Ok(())
    }

    /// Applies only `spec.replicas`, at its current value, as the hand-over manager: it then
    /// co-owns the count, which survives the operator's apply leaving it out.
    async fn hand_over_replicas(&self, deployment: &Deployment, replicas: i32) -> Result<()> {
        let namespace = deployment.namespace().unwrap_or_default();
        let name = deployment.name_any();
        self.lease.ensure_held()?;
        let patch = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas},
        });
        self.api::<Deployment>(&namespace)
            .patch(
                &name,
                &PatchParams::apply(HANDOVER_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|e| {
                Error::kube(
                    format!("handing the replicas of Deployment {namespace}/{name} over"),
                    e,
                )
            })?;
        info!(deployment = %name, replicas, "replicas handed over to the autoscaler");
        Ok(())
    }

    /// A rung of tuning trials: the Job, then its plan owned by the Job, so the plan goes when
    /// the Job's TTL removes it (a ConfigMap per rung would otherwise pile up for the model's
    /// life). The pods wait for the plan to mount, a moment.
    async fn rung(&self, rung: &RungChildren) -> Result<()> {
        let job = self.child(&rung.job).await?;
        self.child(&children::owned_by_job(&rung.plan, &job))
            .await?;
        info!(job = %job.name_any(), "started a rung of tuning trials");
        Ok(())
    }

    /// Deletes a child that is no longer wanted; one already gone is fine.
    async fn delete<K: Child>(&self, namespace: &str, name: &str) -> Result<()> {
        self.lease.ensure_held()?;
        match self
            .api::<K>(namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => {
                info!(kind = %K::kind(&()), name, "deleted");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(Error::kube(
                format!("deleting {} {namespace}/{name}", K::kind(&())),
                e,
            )),
        }
    }

    /// Server-side applies a namespaced child in its own namespace; returns it as applied.
    async fn child<K: Child>(&self, object: &K) -> Result<K> {
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        self.lease.ensure_held()?;
        self.api::<K>(&namespace)
            .patch(&name, &self.params(), &Patch::Apply(object))
            .await
            .map_err(|e| {
                let what = format!("applying {} {namespace}/{name}", K::kind(&()));
                Error::kube(what, e)
            })
    }

    fn api<K: Child>(&self, namespace: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub async fn status(
        &self,
        model: &RecommenderModel,
        status: &RecommenderModelStatus,
    ) -> Result<()> {
        let namespace = model.namespace().unwrap_or_default();
        let name = model.name_any();
        self.lease.ensure_held()?;

        // `online` belongs to the collector's field manager: leaving it out of this apply leaves
        // it alone, where sending the value read earlier would undo the collector's newer one.
        let status = RecommenderModelStatus {
            online: None,
            ..status.clone()
        };
        let patch = serde_json::json!({
            "apiVersion": RecommenderModel::api_version(&()),
            "kind": KIND,
            "status": status,
        });
        self.api::<RecommenderModel>(&namespace)
            .patch_status(&name, &self.params(), &Patch::Apply(&patch))
            .await
            .map_err(|e| Error::kube(format!("writing the status of {namespace}/{name}"), e))?;
        Ok(())
    }

    /// Publishes events; one that cannot be published must not undo a reconcile that succeeded.
    pub async fn events(&self, model: &RecommenderModel, events: &[PlannedEvent]) {
        let reference = model.object_ref(&());
        for planned in events {
            if !self.lease.held() {
                return;
            }
            let event = Event {
                type_: planned.type_,
                reason: planned.reason.as_str().into(),
                note: Some(planned.note.clone()),
                action: planned.action.into(),
                secondary: None,
            };
            if let Err(err) = self.recorder.publish(&event, &reference).await {
                warn!(reason = planned.reason.as_str(), error = %err, "cannot publish event");
            }
        }
    }
}
