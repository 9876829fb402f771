//! The apply stage: makes a plan true with server-side apply (children, then status), then
//! publishes its events.

use crate::crd::{KIND, RecommenderModel, RecommenderModelStatus};
use crate::decide::{Plan, PlannedEvent};
use crate::error::{Error, Result};
use crate::labels::MANAGER;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, Recorder};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use tracing::{info, warn};

/// Holds what every write needs: the client, the field manager and the event recorder (created
/// once, so repeated events are folded into series).
pub struct Applier {
    client: Client,
    manager: &'static str,
    recorder: Recorder,
}

impl Applier {
    pub fn new(client: Client, recorder: Recorder) -> Self {
        Self {
            client,
            manager: MANAGER,
            recorder,
        }
    }

    fn params(&self) -> PatchParams {
        PatchParams::apply(self.manager).force()
    }

    /// Children first, so a status never claims what is not there yet; events last, as news of
    /// what was done.
    pub async fn plan(&self, model: &RecommenderModel, plan: &Plan) -> Result<()> {
        if let Some(job) = &plan.start_job {
            self.child(job).await?;
            info!(job = %job.name_any(), "started training run");
        }
        if let Some(job) = &plan.start_evaluation {
            self.child(job).await?;
            info!(job = %job.name_any(), "started forward evaluation");
        }
        if let Some(service) = &plan.service {
            self.child(service).await?;
        }
        if let Some(deployment) = &plan.deployment {
            self.child(deployment).await?;
        }
        self.status(model, &plan.status).await?;
        self.events(model, &plan.events).await;
        Ok(())
    }

    /// Server-side applies a namespaced child in its own namespace.
    async fn child<K>(&self, object: &K) -> Result<()>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
        K::DynamicType: Default,
    {
        let namespace = object.namespace().unwrap_or_default();
        let name = object.name_any();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        api.patch(&name, &self.params(), &Patch::Apply(object))
            .await
            .map_err(|e| {
                let kind = K::kind(&K::DynamicType::default()).into_owned();
                Error::kube(format!("applying {kind} {namespace}/{name}"), e)
            })?;
        Ok(())
    }

    pub async fn status(
        &self,
        model: &RecommenderModel,
        status: &RecommenderModelStatus,
    ) -> Result<()> {
        let namespace = model.namespace().unwrap_or_default();
        let name = model.name_any();
        let api: Api<RecommenderModel> = Api::namespaced(self.client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": RecommenderModel::api_version(&()),
            "kind": KIND,
            "status": status,
        });
        api.patch_status(&name, &self.params(), &Patch::Apply(&patch))
            .await
            .map_err(|e| Error::kube(format!("writing the status of {namespace}/{name}"), e))?;
        Ok(())
    }

    /// Publishes events; one that cannot be published must not undo a reconcile that succeeded.
    pub async fn events(&self, model: &RecommenderModel, events: &[PlannedEvent]) {
        let reference = model.object_ref(&());
        for planned in events {
            let event = Event {
                type_: planned.type_,
                reason: planned.reason.clone(),
                note: Some(planned.note.clone()),
                action: planned.action.clone(),
                secondary: None,
            };
            if let Err(err) = self.recorder.publish(&event, &reference).await {
                warn!(reason = %planned.reason, error = %err, "cannot publish event");
            }
        }
    }
}
