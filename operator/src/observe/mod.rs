//! The observe stage: every fact the decision looks at, read from the cluster, the database and
//! the model store into plain values (training runs, the predictor rollout, the database and
//! store probes, what pods say about the store, the write token's Secret, the clock).

mod data;
mod database;
mod rollout;
mod runs;
mod search;
mod store;
mod write_token;

pub use data::{
    EvaluationState, NewRatings, ObservedEvaluation, count_due, count_new_ratings, count_sql,
    evaluation_of, observe_evaluation,
};
pub use database::{probe_database, select_one};
pub use rollout::{RolloutState, observe_rollout};
pub use runs::{ObservedRun, RunState, observe_run, run_of};
pub use search::{ObservedRung, TrialEnd, observe_rung, rung_of};
pub use store::{PodTrouble, StoreProbe, probe_store};
pub use write_token::{WriteTokenState, observe_write_token};

use crate::children;
use crate::crd::RecommenderModel;
use crate::error::{Error, Result};
use crate::labels;
use crate::secrets::SecretPolicy;
use crate::validate::{Config, SourceConfig};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use std::time::Duration;

/// The database probe's verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseProbe {
    /// The source is a file: there is no database to reach.
    NotUsed,
    Reachable,
    Unreachable(String),
    /// A Secret the spec names lacks the opt-in label: it was not read, nothing was sent, and no
    /// Job that would mount it is started.
    SecretNotAllowed(String),
}

impl DatabaseProbe {
    pub fn secret_not_allowed(&self) -> bool {
        matches!(self, DatabaseProbe::SecretNotAllowed(_))
    }
}

/// Everything the decision looks at.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    pub model: &'a RecommenderModel,
    pub runs: Vec<ObservedRun>,
    pub rollout: Option<RolloutState>,
    pub database: DatabaseProbe,
    pub store: StoreProbe,
    /// What the model's pods say about the store: refusals, claims they cannot attach.
    pub store_pods: Vec<PodTrouble>,
    /// The count of new ratings, when one was due: `Err` says why it failed.
    pub new_ratings: Option<Result<NewRatings, String>>,
    /// Forward-evaluation Jobs not yet recorded.
    pub evaluations: Vec<ObservedEvaluation>,
    /// The rungs of the tuning search in flight (`status.tuning`), with their trials.
    pub rungs: Vec<ObservedRung>,
    /// Whether the predictor's write token may be mounted.
    pub write_token: WriteTokenState,
    pub now: Timestamp,
}

/// How the observe stage reaches outside the API server's objects it reads.
#[derive(Debug, Clone, Copy)]
pub struct Reach<'a> {
    /// What the database probe (connect + `SELECT 1`) may take.
    pub probe_timeout: Duration,
    /// Which Secrets may be used.
    pub secrets: &'a SecretPolicy,
}

/// Reads what `model` owns and probes its database.
pub async fn observe<'a>(
    client: &Client,
    model: &'a RecommenderModel,
    config: &Config,
    reach: Reach<'_>,
) -> Result<Observed<'a>> {
    let name = model.name_any();
    let namespace = model.namespace().unwrap_or_default();
    let Children {
        runs,
        evaluations,
        rungs,
    } = read_children(client, model, &namespace, &name).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let rollout = deployments
        .get_opt(&children::predictor_name(&name))
        .await
        .map_err(|e| {
            Error::kube(
                format!("reading the predictor Deployment of {namespace}/{name}"),
                e,
            )
        })?
        .map(|d| observe_rollout(&d));
    // Pods are read only when one may be in trouble: a rollout short of its replicas, or a run
    // or evaluation whose pod has not started.
    let short = rollout
        .as_ref()
        .is_some_and(|r| r.available < r.desired || r.updated < r.desired);
    let waiting = runs.iter().any(|r| r.pending());
    let store_pods = if short || waiting {
        store::pod_troubles(client, model)
            .await
            .map_err(|e| Error::kube(format!("reading the pods of {namespace}/{name}"), e))?
    } else {
        Vec::new()
    };
    let store = probe_store(client, model, reach.probe_timeout, reach.secrets).await;
    let now = Timestamp::now();
    let (database, new_ratings) = match &config.source {
        SourceConfig::Postgres(pg) => {
            let due = count_due(
                model.status.as_ref(),
                now,
                Duration::from_secs(pg.probe_interval_seconds.into()),
            );
            probe_and_count(client, reach, &namespace, pg, due).await
        }
        SourceConfig::File(_) => (DatabaseProbe::NotUsed, None),
    };
    let write_token = observe_write_token(client, reach.secrets, model).await;
    Ok(Observed {
        model,
        runs,
        rollout,
        database,
        store,
        store_pods,
        new_ratings,
        evaluations,
        rungs,
        write_token,
        now,
    })
}

/// The probe, then, when one is due (`since`) and the database answers, the count of new
/// ratings, which may take longer than the probe (up to ten of its timeouts).
async fn probe_and_count(
    client: &Client,
    reach: Reach<'_>,
    namespace: &str,
    pg: &crate::crd::PostgresSource,
    since: Option<i64>,
) -> (DatabaseProbe, Option<Result<NewRatings, String>>) {
    let timeout = reach.probe_timeout;
    let credentials = match database::credentials(client, reach.secrets, namespace, pg).await {
        Ok(c) => c,
        Err(refused) => return (refused, None),
    };
    let probe = select_one(
        pg,
        &credentials.password,
        credentials.ca.as_deref(),
        timeout,
    )
    .await;
    let count = match (since, &probe) {
        (Some(since), DatabaseProbe::Reachable) => {
            Some(count_new_ratings(pg, &credentials, since, timeout * 10).await)
        }
        _ => None,
    };
    (probe, count)
}

/// The Jobs (with their pods' reports) the decision reads.
struct Children {
    runs: Vec<ObservedRun>,
    evaluations: Vec<ObservedEvaluation>,
    rungs: Vec<ObservedRung>,
}

async fn read_children(
    client: &Client,
    model: &RecommenderModel,
    namespace: &str,
    name: &str,
) -> Result<Children> {
    let selector = labels::selector(labels::MODEL, name);
    let uid = model.uid();
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), namespace);
    // Only Jobs owned by this incarnation: a resource deleted and re-created under the same
    // name must not adopt the old one's runs while the garbage collector catches up.
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube(format!("listing Jobs of {namespace}/{name}"), e))?
        .items
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .collect();
    let last_completed = model.status.as_ref().map_or(0, |s| s.runs.last_completed);
    let evaluation_pending = |n: u32| {
        model.status.as_ref().is_none_or(|s| {
            n > s.evaluations.last || s.evaluations.active.as_ref().is_some_and(|a| a.number == n)
        })
    };
    // Only the search in flight is read: rungs of earlier searches are recorded already.
    let searching = model
        .status
        .as_ref()
        .and_then(|s| s.tuning.as_ref())
        .filter(|t| t.state == crate::crd::SearchState::Searching)
        .map(|t| t.search);
    let in_flight = |j: &Job| rung_of(j).is_some_and(|(search, _)| Some(search) == searching);
    // Pods are only read for runs still to be recorded: they hold the termination messages.
    let unrecorded = jobs.iter().any(|j| {
        run_of(j).is_some_and(|run| run > last_completed)
            || evaluation_of(j).is_some_and(evaluation_pending)
            || in_flight(j)
    });
    let pods = if unrecorded {
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        pods_api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Error::kube(format!("listing Pods of {namespace}/{name}"), e))?
            .items
    } else {
        Vec::new()
    };
    let evaluations = jobs
        .iter()
        .filter(|j| evaluation_of(j).is_some_and(evaluation_pending))
        .filter_map(|j| observe_evaluation(j, &pods))
        .collect();
    let rungs = jobs
        .iter()
        .filter(|j| in_flight(j))
        .filter_map(|j| observe_rung(j, &pods))
        .collect();
    Ok(Children {
        runs: jobs.iter().filter_map(|j| observe_run(j, &pods)).collect(),
        evaluations,
        rungs,
    })
}
