//! The data a model has not seen: ratings newer than the serving model's snapshot, counted in
//! the database, and forward evaluations (Jobs that score the serving model on them).
//!
//! The count runs from the operator on the probe interval, so it is kept cheap and harmless: one
//! statement in a read-only transaction with a server-side `statement_timeout`, wrapping the
//! user's query as the trainer does (docs/benchmarks-data.md gives its cost).

use super::database::{Credentials, connect_config, describe, tls};
use super::runs::{latest_message, pods_of_job, true_condition};
use crate::crd::{PostgresSource, RecommenderModelStatus};
use crate::labels;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use recommender_contract::report::TrainingReport;
use std::time::Duration;
use tokio_postgres::types::Type;

/// What one count found: ratings newer than `since`, and the users and items among them that
/// have no rating at or before `since` (the snapshot's model does not know them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewRatings {
    pub since: i64,
    pub ratings: u64,
    pub users: u64,
    pub items: u64,
    pub newest: Option<i64>,
}

/// The snapshot to count against when a count is due: the serving model has a snapshot time and
/// it was not counted against within `interval` (a new serving model is counted at once).
pub fn count_due(
    status: Option<&RecommenderModelStatus>,
    now: Timestamp,
    interval: Duration,
) -> Option<i64> {
    let status = status?;
    let serving = status.serving.as_ref()?;
    let since = serving.fingerprint.as_ref()?.max_timestamp?;
    let fresh = status.data.as_ref().is_some_and(|d| {
        d.version == serving.version
            && d.since == since
            && crate::time::add(d.counted_at, interval) > now
    });
    (!fresh).then_some(since)
}

/// The counting statement for `query` (whose timestamp column has type `ts`), parameter `$1` the
/// snapshot time. Users and items are new when their first rating is after it.
pub fn count_sql(query: &str, columns: &[Type]) -> Result<String, String> {
    let ts = match columns.len() {
        4 if [Type::TIMESTAMPTZ, Type::TIMESTAMP, Type::DATE].contains(&columns[3]) => {
            "extract(epoch from q.t)::int8"
        }
        4 => "q.t::int8",
        n => {
            return Err(format!(
                "spec.source.postgres.query returns {n} column(s); new ratings are counted only \
                 when it returns user, item, rating and a timestamp"
            ));
        }
    };
    Ok(format!(
        "WITH r AS (SELECT q.u::text AS u, q.i::text AS i, {ts} AS t \
         FROM ({query}) AS q(u, i, r, t)), \
         users AS (SELECT min(t) AS first FROM r GROUP BY u), \
         items AS (SELECT min(t) AS first FROM r GROUP BY i) \
         SELECT (SELECT count(*) FROM r WHERE t > $1), \
         (SELECT count(*) FROM users WHERE first > $1), \
         (SELECT count(*) FROM items WHERE first > $1), \
         (SELECT max(t) FROM r WHERE t > $1)"
    ))
}

/// Counts the ratings newer than `since` within `timeout`, read-only; an error names what failed
/// (never the password).
pub async fn count_new_ratings(
    pg: &PostgresSource,
    credentials: &Credentials,
    since: i64,
    timeout: Duration,
) -> Result<NewRatings, String> {
    let target = format!("{}:{}/{}", pg.host, pg.port, pg.database);
    let config = connect_config(
        pg,
        &credentials.password,
        timeout,
        "recommender-operator-count",
    );
    let tls = tls(pg, credentials.ca.as_deref())?;
    let attempt = async {
        let (mut client, connection) = config.connect(tls).await.map_err(|e| describe(&e))?;
        let driver = tokio::spawn(connection);
        let result = count_on(&mut client, pg, since, timeout).await;
        drop(client);
        let _ = driver.await;
        result
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(counted)) => Ok(counted),
        Ok(Err(why)) => Err(format!("{target}: {why}")),
        Err(_) => Err(format!(
            "{target}: counting new ratings took longer than {}s",
            timeout.as_secs_f64()
        )),
    }
}

async fn count_on(
    client: &mut tokio_postgres::Client,
    pg: &PostgresSource,
    since: i64,
    timeout: Duration,
) -> Result<NewRatings, String> {
    let query = pg.query.trim().trim_end_matches(';').trim_end();
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .map_err(|e| describe(&e))?;
    // The server stops the statement itself, so a slow count never keeps working after we left.
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {}",
        timeout.as_millis().max(1)
    ))
    .await
    .map_err(|e| describe(&e))?;
    let inner = tx
        .prepare(query)
        .await
        .map_err(|e| format!("spec.source.postgres.query rejected: {}", describe(&e)))?;
    let types: Vec<Type> = inner.columns().iter().map(|c| c.type_().clone()).collect();
    let row = tx
        .query_one(&count_sql(query, &types)?, &[&since])
        .await
        .map_err(|e| format!("counting new ratings: {}", describe(&e)))?;
    let count = |k: usize| row.get::<_, i64>(k).max(0) as u64;
    Ok(NewRatings {
        since,
        ratings: count(0),
        users: count(1),
        items: count(2),
        newest: row.get(3),
    })
}

/// One forward evaluation as seen through its Job and the Job's pods.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedEvaluation {
    pub number: u32,
    pub job_name: String,
    pub version: String,
    pub since: i64,
    pub started_at: Option<Timestamp>,
    pub state: EvaluationState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EvaluationState {
    Running,
    Succeeded {
        report: Result<Box<TrainingReport>, String>,
        finished_at: Option<Timestamp>,
    },
    Failed {
        message: String,
        finished_at: Option<Timestamp>,
    },
}

pub fn evaluation_of(job: &Job) -> Option<u32> {
    job.metadata
        .labels
        .as_ref()?
        .get(labels::EVALUATION)?
        .parse()
        .ok()
}

/// `None` for Jobs that are not evaluations.
pub fn observe_evaluation(job: &Job, pods: &[Pod]) -> Option<ObservedEvaluation> {
    let number = evaluation_of(job)?;
    let job_name = job.metadata.name.clone()?;
    let meta_labels = job.metadata.labels.clone().unwrap_or_default();
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    let pods = pods_of_job(&job_name, pods);
    let status = job.status.clone().unwrap_or_default();
    let finished = |type_: &str| true_condition(&status, type_);
    let state = if finished("Complete").is_some() {
        EvaluationState::Succeeded {
            report: match latest_message(&pods, "Succeeded") {
                Some(text) => TrainingReport::parse(&text)
                    .map(Box::new)
                    .map_err(|e| e.to_string()),
                None => Err("the evaluation pod left no termination message".into()),
            },
            finished_at: status.completion_time.as_ref().map(|t| t.0),
        }
    } else if let Some(failed) = finished("Failed") {
        let report = latest_message(&pods, "Failed").and_then(|t| TrainingReport::parse(&t).ok());
        let message = match report.and_then(|r| r.error) {
            Some(e) => format!("{}: {}", e.reason, e.message),
            None => format!(
                "{}: {}",
                failed.reason.as_deref().unwrap_or("JobFailed"),
                failed.message.as_deref().unwrap_or("")
            ),
        };
        EvaluationState::Failed {
            message,
            finished_at: failed.last_transition_time.as_ref().map(|t| t.0),
        }
    } else {
        EvaluationState::Running
    };
    Some(ObservedEvaluation {
        number,
        job_name,
        version: meta_labels
            .get(labels::VERSION)
            .cloned()
            .unwrap_or_default(),
        since: annotations
            .get(labels::ANNOTATION_SINCE)
            .and_then(|s| s.parse().ok())
            .unwrap_or_default(),
        started_at: annotations
            .get(labels::ANNOTATION_STARTED_AT)
            .and_then(|t| t.parse().ok()),
        state,
    })
}

#[cfg(test)]
mod tests;
