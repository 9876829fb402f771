//! The reconciler, one pipeline per `RecommenderModel`: observe (API reads, the database probe)
//! → validate (the spec into typed values) → decide (pure) → apply (server-side apply of children
//! and status, events), wired into kube's `Controller`.

use crate::apply::Applier;
use crate::children::Defaults;
use crate::crd::RecommenderModel;
use crate::decide;
use crate::error::{Error, Result};
use crate::labels::{self, MANAGER};
use crate::leader::Lease;
use crate::metrics::Metrics;
use crate::observe;
use crate::secrets::SecretPolicy;
use crate::validate::validate;
use backoff::Backoff;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{Instrument, info, info_span, warn};

/// Shared by every reconciliation.
pub struct Context {
    pub client: Client,
    pub apply: Applier,
    pub metrics: Arc<Metrics>,
    pub defaults: Defaults,
    pub probe_timeout: Duration,
    /// Which Secrets the operator may use besides those labelled for it.
    pub secrets: SecretPolicy,
    /// Whether this replica may write (see `Lease`).
    pub lease: Lease,
    /// Consecutive reconcile errors per object, for the retry delay.
    backoff: Mutex<Backoff<ObjectRef<RecommenderModel>>>,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        defaults: Defaults,
        instance: Option<String>,
        lease: Lease,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Self {
            apply: Applier::new(
                client.clone(),
                Recorder::new(client.clone(), reporter),
                lease.clone(),
            ),
            client,
            metrics,
            defaults,
            probe_timeout: Duration::from_secs(3),
            secrets: SecretPolicy::default(),
            lease,
            backoff: Mutex::new(Backoff::new(rand::random())),
        }
    }

    /// The retry delays, seeded: tests fix the jitter.
    pub fn with_backoff_seed(mut self, seed: u64) -> Self {
        self.backoff = Mutex::new(Backoff::new(seed));
        self
    }

    fn backoff(&self) -> std::sync::MutexGuard<'_, Backoff<ObjectRef<RecommenderModel>>> {
        self.backoff.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One reconciliation of one `RecommenderModel`.
pub async fn reconcile(model: Arc<RecommenderModel>, ctx: Arc<Context>) -> Result<Action> {
    let name = model.name_any();
    let namespace = model
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    let span = info_span!("reconcile", namespace = %namespace, model = %name);
    async move {
        // A replica that lost the Lease neither reads nor writes: it is shutting down.
        ctx.lease.ensure_held()?;
        let started = Instant::now();
        let result = reconcile_inner(&model, &namespace, &name, &ctx).await;
        ctx.metrics.reconciled(started.elapsed().as_secs_f64());
        if result.is_ok() {
            ctx.backoff().forget(&ObjectRef::from_obj(model.as_ref()));
        }
        result
    }
    .instrument(span)
    .await
}

async fn reconcile_inner(
    cached: &RecommenderModel,
    namespace: &str,
    name: &str,
    ctx: &Context,
) -> Result<Action> {
    // Decisions read the resource from the API server, not the watch cache: after a watch is
    // interrupted (an API server restart) the cache can lag behind the status this operator
    // last wrote, and a decision on an old status would start a run that was already started.
    let models: Api<RecommenderModel> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(mut model) = models
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading {namespace}/{name}"), e))?
    else {
        return Ok(Action::await_change());
    };
    // The one place a status written by an operator version before the ledgers is read.
    if let Some(status) = model.status.as_mut() {
        status.adopt_previous();
    }
    // A resource being deleted (foreground deletion waits for its children) gets nothing new:
    // the garbage collector is removing what it owns.
    if model.uid() != cached.uid() || model.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let plan = match validate(&model.spec) {
        Ok(config) => {
            let reach = observe::Reach {
                probe_timeout: ctx.probe_timeout,
                secrets: &ctx.secrets,
            };
            let observed = observe::observe(&ctx.client, &model, &config, reach).await?;
            decide::decide(&observed, &config, &ctx.defaults)
        }
        Err(invalid) => {
            warn!(problems = %invalid, "invalid spec");
            decide::invalid(&model, &invalid, jiff::Timestamp::now())
        }
    };
    ctx.apply.plan(&model, &plan).await?;

    ctx.metrics.runs_finished(namespace, name, &plan.finished);
    ctx.metrics
        .rollouts_ended(namespace, name, &plan.rollouts_ended);
    ctx.metrics.observe_status(namespace, name, &plan.status);
    ctx.metrics
        .observe_targets(namespace, name, &model.spec, &plan.status);
    for record in &plan.finished {
        info!(run = record.run, outcome = record.outcome.as_str(), reason = %record.reason, "{}", record.message);
    }
    Ok(match plan.requeue_after {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Retries a failed object after a jittered exponential delay (see `Backoff`), counting the
/// failure by kind.
pub fn error_policy(model: Arc<RecommenderModel>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.metric_label());
    let delay = ctx.backoff().failed(ObjectRef::from_obj(model.as_ref()));
    warn!(
        namespace = model.namespace().unwrap_or_default(),
        name = %model.name_any(),
        error = %error,
        kind = error.metric_label(),
        retry_in_seconds = delay.as_secs_f64(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// An API for one namespace, or for all of them.
pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller for one namespace (or all, with `None`) until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let models: Api<RecommenderModel> = scoped(&client, ns);
    let (jobs, deployments): (Api<Job>, Api<Deployment>) =
        (scoped(&client, ns), scoped(&client, ns));
    let (services, pods): (Api<Service>, Api<Pod>) = (scoped(&client, ns), scoped(&client, ns));
    let ours = watcher::Config::default().labels(&labels::selector(labels::MANAGED_BY, MANAGER));
    let controller = Controller::new(models, watcher::Config::default().any_semantic())
        .with_config(kube::runtime::controller::Config::default().concurrency(16))
        .owns(jobs, ours.clone())
        .owns(deployments, ours.clone())
        .owns(services, ours.clone())
        // Trainer, trial and evaluator pods belong to Jobs, not to us; their changes (stuck Pending,
        // image pull errors) do not always touch the Job's status, so they are watched directly.
        .watches(
            pods,
            watcher::Config::default().labels(&format!(
                "{},{} in ({},{},{})",
                labels::selector(labels::MANAGED_BY, MANAGER),
                labels::COMPONENT,
                labels::COMPONENT_TRAINER,
                labels::COMPONENT_EVALUATOR,
                labels::COMPONENT_TRIAL
            )),
            |pod: Pod| {
                let namespace = pod.namespace();
                pod.labels()
                    .get(labels::MODEL)
                    .zip(namespace)
                    .map(|(model, ns)| ObjectRef::new(model).within(&ns))
            },
        );
    let pruner = tokio::spawn(prune_deleted(
        controller.store(),
        ctx.clone(),
        namespace.clone(),
    ));
    let forgetting = ctx.clone();
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            let ctx = forgetting.clone();
            async move {
                match result {
                    Ok(_) => {}
                    // A child changed, or a retry fell due, after its owner was deleted: nothing
                    // to do but forget it.
                    Err(kube::runtime::controller::Error::ObjectNotFound(gone)) => {
                        if let Some(ns) = &gone.namespace {
                            ctx.metrics.forget(ns, &gone.name);
                            let key = ObjectRef::<RecommenderModel>::new(&gone.name).within(ns);
                            ctx.backoff().forget(&key);
                        }
                        tracing::debug!(object = %gone, "owner already deleted");
                    }
                    Err(err) => warn!(error = %err, "controller event"),
                }
            }
        })
        .await;
    pruner.abort();
}

/// Deleted resources are never reconciled again (owner references clean up the children):
/// every 30 s, the metric series and retry counts of those gone from the watch cache (of the
/// `watched` namespace) are dropped.
async fn prune_deleted(
    store: kube::runtime::reflector::Store<RecommenderModel>,
    ctx: Arc<Context>,
    watched: Option<String>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        if store.wait_until_ready().await.is_err() {
            continue;
        }
        let in_scope = |ns: &str| watched.as_deref().is_none_or(|w| w == ns);
        let known = ctx.metrics.known().into_iter();
        for (ns, name) in known.filter(|(ns, _)| in_scope(ns)) {
            let key = ObjectRef::<RecommenderModel>::new(&name).within(&ns);
            if store.get(&key).is_none() {
                ctx.metrics.forget(&ns, &name);
            }
        }
        ctx.backoff().retain(|key| {
            !key.namespace.as_deref().is_some_and(in_scope) || store.get(key).is_some()
        });
    }
}

mod backoff;

#[cfg(test)]
mod tests;
