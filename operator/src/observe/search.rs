//! A tuning search's rungs as facts: each rung's Indexed Job and, per index, how its trial ended,
//! from the pod that ran it (its completion index annotation, its termination message, the
//! reason its container stopped).

use super::runs::{memory_limit, pods_of_job, true_condition};
use crate::labels;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use recommender_contract::tuning::TrialResult;
use std::collections::BTreeMap;

/// One rung of a search, through its Job and the Job's pods.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRung {
    pub search: u32,
    pub rung: u32,
    pub job_name: String,
    /// Whether the Job is over (`Complete` or `Failed`): every index that will end has ended.
    pub finished: bool,
    /// The Job's `Failed` reason (`DeadlineExceeded`, `FailedIndexes`, ...), when it failed.
    pub failed: Option<String>,
    /// The trials that ended, by index.
    pub trials: BTreeMap<u32, TrialEnd>,
}

/// How one trial ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialEnd {
    // Boxed: a result is several times the size of a failure.
    Scored(Box<TrialResult>),
    /// Why (the container's or the trainer's reason: `OOMKilled`, `Error`, `Diverged`, ...)
    /// and what it said.
    Failed {
        reason: String,
        message: String,
    },
}

/// `(search, rung)` of a trial Job; `None` for Jobs that are not trial Jobs.
pub fn rung_of(job: &Job) -> Option<(u32, u32)> {
    let labels = job.metadata.labels.as_ref()?;
    let search = labels.get(labels::SEARCH)?.parse().ok()?;
    let rung = labels.get(labels::RUNG)?.parse().ok()?;
    Some((search, rung))
}

pub fn observe_rung(job: &Job, pods: &[Pod]) -> Option<ObservedRung> {
    let (search, rung) = rung_of(job)?;
    let job_name = job.metadata.name.clone()?;
    let status = job.status.clone().unwrap_or_default();
    let failed = true_condition(&status, "Failed").map(|c| c.reason.unwrap_or_default());
    let finished = failed.is_some() || true_condition(&status, "Complete").is_some();
    let mut trials = BTreeMap::new();
    // The latest pod of each index decides (a pod evicted and replaced leaves an older one).
    let mut latest: BTreeMap<u32, (Option<jiff::Timestamp>, TrialEnd)> = BTreeMap::new();
    for pod in pods_of_job(&job_name, pods) {
        let Some((index, at, end)) = trial_end(pod) else {
            continue;
        };
        if latest.get(&index).is_none_or(|(seen, _)| at >= *seen) {
            latest.insert(index, (at, end));
        }
    }
    trials.extend(latest.into_iter().map(|(i, (_, end))| (i, end)));
    Some(ObservedRung {
        search,
        rung,
        job_name,
        finished,
        failed,
        trials,
    })
}

/// The index a pod ran, when it finished, and how; `None` while it runs.
fn trial_end(pod: &Pod) -> Option<(u32, Option<jiff::Timestamp>, TrialEnd)> {
    let annotations = pod.metadata.annotations.as_ref()?;
    let index: u32 = annotations.get(labels::COMPLETION_INDEX)?.parse().ok()?;
    let status = pod.status.as_ref()?;
    let phase = status.phase.as_deref()?;
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.terminated.clone());
    let at = terminated
        .as_ref()
        .and_then(|t| t.finished_at.as_ref().map(|t| t.0));
    let message = terminated
        .as_ref()
        .and_then(|t| t.message.clone())
        .unwrap_or_default();
    let report = TrialResult::parse(&message);
    let end = match phase {
        "Succeeded" => match report {
            Ok(result) => TrialEnd::Scored(Box::new(result)),
            Err(e) => TrialEnd::Failed {
                reason: "NoReport".into(),
                message: format!("trial {index} succeeded but its report is unreadable: {e}"),
            },
        },
        "Failed" => {
            let container = terminated.as_ref().and_then(|t| t.reason.clone());
            let exit = terminated.as_ref().map_or(0, |t| t.exit_code);
            match (container.as_deref(), report) {
                // The kernel's verdict first: a report cut short by it says nothing more.
                (Some("OOMKilled"), _) => TrialEnd::Failed {
                    reason: "OOMKilled".into(),
                    message: format!(
                        "trial {index} ran out of memory (exit code {exit}{})",
                        memory_limit(pod, "trial")
                            .map(|l| format!(", memory limit {l}"))
                            .unwrap_or_default()
                    ),
                },
                (
                    _,
                    Ok(TrialResult {
                        error: Some(error), ..
                    }),
                ) => TrialEnd::Failed {
                    reason: error.reason,
                    message: error.message,
                },
                (reason, _) => TrialEnd::Failed {
                    // The kubelet's reason for the pod (`DeadlineExceeded`, `Evicted`) when the
                    // container has none.
                    reason: reason
                        .map(str::to_string)
                        .or_else(|| status.reason.clone())
                        .unwrap_or_else(|| "Error".into()),
                    message: format!(
                        "trial {index} failed (exit code {exit}): {}",
                        message.trim()
                    )
                    .trim_end_matches(": ")
                    .to_string(),
                },
            }
        }
        _ => return None,
    };
    Some((index, at, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "movies-search-2-0",
                "labels": {"recommender.dev/search": "2", "recommender.dev/rung": "0"}},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn pod(index: u32, phase: &str, terminated: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("movies-search-2-0-{index}-x"),
                "labels": {"batch.kubernetes.io/job-name": "movies-search-2-0"},
                "annotations": {"batch.kubernetes.io/job-completion-index": index.to_string()}},
            "spec": {"containers": [{"name": "trial", "resources": {"limits": {"memory": "64Mi"}}}]},
            "status": {"phase": phase, "containerStatuses": [{"name": "trial", "image": "i",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": terminated}}]}
        }))
        .unwrap()
    }

    #[test]
    fn each_index_ends_scored_or_failed_with_its_reason() {
        let scored = crate::decide::fixtures::trial_result(0, 0.91);
        let pods = [
            pod(
                0,
                "Succeeded",
                json!({"exitCode": 0, "message": scored, "finishedAt": "2026-11-27T12:00:00Z"}),
            ),
            pod(
                1,
                "Failed",
                json!({"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-11-27T12:00:00Z"}),
            ),
            pod(
                2,
                "Failed",
                json!({"exitCode": 1, "reason": "Error", "message": "boom", "finishedAt": "2026-11-27T12:00:00Z"}),
            ),
            pod(
                3,
                "Succeeded",
                json!({"exitCode": 0, "message": "not json", "finishedAt": "2026-11-27T12:00:00Z"}),
            ),
        ];
        let failed = json!([{"type": "Failed", "status": "True", "reason": "FailedIndexes"}]);
        let rung = observe_rung(&job(failed), &pods).unwrap();
        assert_eq!((rung.search, rung.rung, rung.finished), (2, 0, true));
        assert_eq!(rung.failed.as_deref(), Some("FailedIndexes"));
        assert!(matches!(&rung.trials[&0], TrialEnd::Scored(r) if r.index == 0));
        assert!(
            matches!(&rung.trials[&1], TrialEnd::Failed { reason, message }
                if reason == "OOMKilled" && message.contains("memory limit 64Mi")),
            "{:?}",
            rung.trials[&1]
        );
        assert!(
            matches!(&rung.trials[&2], TrialEnd::Failed { reason, message }
                if reason == "Error" && message == "trial 2 failed (exit code 1): boom")
        );
        assert!(
            matches!(&rung.trials[&3], TrialEnd::Failed { reason, .. } if reason == "NoReport")
        );
    }

    #[test]
    fn a_running_rung_has_only_its_ended_trials() {
        let mut running = pod(1, "Running", json!(null));
        running.status.as_mut().unwrap().container_statuses = None;
        let rung = observe_rung(&job(json!([])), &[running]).unwrap();
        assert!(!rung.finished && rung.trials.is_empty());
        let other: Job = serde_json::from_value(json!({"metadata": {"name": "movies-train-1",
            "labels": {"recommender.dev/run": "1"}}}))
        .unwrap();
        assert!(observe_rung(&other, &[]).is_none());
    }
}
