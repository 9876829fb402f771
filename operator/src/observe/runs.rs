//! Training runs as facts: which runs exist, from their Jobs and the Jobs' pods, and how they
//! ended.

use crate::crd::{RunReason, RunTrigger};
use crate::labels;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use recommender_contract::report::TrainingReport;

/// Container waiting reasons that mean a trainer pod will not make progress by itself.
const STUCK_WAITING_REASONS: [&str; 6] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "InvalidImageName",
];

/// One training run as seen through its Job and the Job's pods.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRun {
    pub run: u32,
    pub job_name: String,
    /// From the Job's annotations, so a run is adopted intact after an operator restart.
    pub trigger: RunTrigger,
    pub started_at: Option<Timestamp>,
    pub spec_hash: Option<String>,
    /// The tuning search whose best parameters the run trains.
    pub search: Option<u32>,
    pub state: RunState,
}

impl ObservedRun {
    /// A pod of the running Job has not started (it may be waiting for its volume).
    pub fn pending(&self) -> bool {
        matches!(
            self.state,
            RunState::Running {
                pending_since: Some(_),
                ..
            }
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Running {
        /// Set when a pod cannot make progress (`reason: message`).
        stuck: Option<String>,
        /// Earliest creation time of a pod still `Pending`.
        pending_since: Option<Timestamp>,
    },
    Succeeded {
        report: Result<TrainingReport, String>,
        finished_at: Option<Timestamp>,
    },
    Failed {
        reason: String,
        message: String,
        report: Option<TrainingReport>,
        finished_at: Option<Timestamp>,
    },
}

pub fn run_of(job: &Job) -> Option<u32> {
    job.metadata.labels.as_ref()?.get(labels::RUN)?.parse().ok()
}

/// The pods a Job created (by either of its job-name labels).
pub(super) fn pods_of_job<'a>(job_name: &str, pods: &'a [Pod]) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| {
            let own = p.metadata.labels.as_ref();
            own.and_then(|l| {
                l.get(labels::JOB_NAME_LEGACY)
                    .or_else(|| l.get(labels::JOB_NAME))
            })
            .map(String::as_str)
                == Some(job_name)
        })
        .collect()
}

/// The Job's condition `type_` when it is True.
pub(super) fn true_condition(
    status: &k8s_openapi::api::batch::v1::JobStatus,
    type_: &str,
) -> Option<k8s_openapi::api::batch::v1::JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
        .cloned()
}

/// `None` for Jobs that are not ours to read (no run label).
pub fn observe_run(job: &Job, pods: &[Pod]) -> Option<ObservedRun> {
    let run = run_of(job)?;
    let job_name = job.metadata.name.clone()?;
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    let pods = pods_of_job(&job_name, pods);
    let status = job.status.clone().unwrap_or_default();
    let condition = |type_: &str| true_condition(&status, type_);
    let finished_at = status.completion_time.as_ref().map(|t| t.0);
    let state = if condition("Complete").is_some() {
        let report = match latest_message(&pods, "Succeeded") {
            Some(text) => TrainingReport::parse(&text).map_err(|e| e.to_string()),
            None => Err("the trainer pod left no termination message".into()),
        };
        RunState::Succeeded {
            report,
            finished_at,
        }
    } else if let Some(failed) = condition("Failed") {
        let report = latest_message(&pods, "Failed").and_then(|t| TrainingReport::parse(&t).ok());
        let finished_at = failed
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .or(finished_at);
        // The Job only says its pods failed; a container the kernel killed, or a pod deleted
        // from a lost node, says why.
        let lost = || lost_pods(pods.iter().copied()).map(|(why, _)| why);
        let (reason, message) = match killed(&pods).or_else(lost) {
            Some(why) if report.is_none() => why,
            _ => (
                failed.reason.unwrap_or_else(|| "JobFailed".into()),
                failed.message.unwrap_or_default(),
            ),
        };
        RunState::Failed {
            reason,
            message,
            report,
            finished_at,
        }
    } else if let Some((why, at)) = lost_pods(pods.iter().copied().filter(|p| !terminal(p))) {
        // A pod counts as failed only once its kubelet says so, so the Job waits for the dead
        // node's return before it fails or replaces it: the run is over now.
        RunState::Failed {
            reason: why.0,
            message: why.1,
            report: None,
            finished_at: at,
        }
    } else {
        RunState::Running {
            stuck: pods.iter().find_map(|p| stuck_reason(p)),
            pending_since: pods
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending"))
                .filter_map(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .min(),
        }
    };
    Some(ObservedRun {
        run,
        job_name,
        trigger: RunTrigger::from_annotation(
            annotations
                .get(labels::ANNOTATION_TRIGGER)
                .map(String::as_str),
        ),
        // Written by us as RFC 3339; a hand-edited value is treated as missing.
        started_at: annotations
            .get(labels::ANNOTATION_STARTED_AT)
            .and_then(|t| t.parse().ok()),
        spec_hash: annotations.get(labels::ANNOTATION_SPEC_HASH).cloned(),
        search: annotations
            .get(labels::ANNOTATION_SEARCH)
            .and_then(|s| s.parse().ok()),
        state,
    })
}

/// The termination message of the most recently finished pod in `phase`.
pub(super) fn latest_message(pods: &[&Pod], phase: &str) -> Option<String> {
    pods.iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase))
        .filter_map(|p| {
            let statuses = p.status.as_ref()?.container_statuses.as_ref()?;
            let terminated = statuses
                .iter()
                .find_map(|c| c.state.as_ref()?.terminated.clone())?;
            let message = terminated.message.filter(|m| !m.trim().is_empty())?;
            Some((terminated.finished_at.map(|t| t.0), message))
        })
        .max_by_key(|(finished, _)| *finished)
        .map(|(_, message)| message)
}

/// `(reason, message)` when a failed pod's container was killed for a reason of its own
/// (`OOMKilled`), naming the container's memory limit.
fn killed(pods: &[&Pod]) -> Option<(String, String)> {
    pods.iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .find_map(|pod| {
            let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
            statuses.iter().find_map(|c| {
                let terminated = c.state.as_ref()?.terminated.as_ref()?;
                let reason = terminated.reason.as_deref()?;
                (reason == "OOMKilled").then(|| {
                    let limit = memory_limit(pod, &c.name)
                        .map(|l| format!(", memory limit {l}"))
                        .unwrap_or_default();
                    (
                        reason.to_string(),
                        format!(
                            "container {} of pod {} was killed for running out of memory (exit code {}{limit}); raise spec.trainer.resources.limits.memory",
                            c.name,
                            pod.metadata.name.as_deref().unwrap_or("?"),
                            terminated.exit_code
                        ),
                    )
                })
            })
        })
}

/// `((reason, message), when)` when every one of `pods` (and at least one) was deleted by the
/// taint manager (`DisruptionTarget`, `DeletionByTaintManager`): a `NoExecute` taint it does not
/// tolerate, which the node lifecycle controller puts on a node that stopped answering.
fn lost_pods<'a>(
    pods: impl Iterator<Item = &'a Pod>,
) -> Option<((String, String), Option<Timestamp>)> {
    let mut first = None;
    for pod in pods {
        let evicted = pod.status.as_ref()?.conditions.iter().flatten().find(|c| {
            c.type_ == "DisruptionTarget"
                && c.status == "True"
                && c.reason.as_deref() == Some("DeletionByTaintManager")
        })?;
        first.get_or_insert_with(|| {
            let name = pod.metadata.name.as_deref().unwrap_or("?");
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            let message = format!(
                "trainer pod {name} on node {} was deleted by the taint manager ({}): its node stopped answering, or was tainted NoExecute",
                node.unwrap_or("?"),
                evicted.message.as_deref().unwrap_or("no message")
            );
            let reason = RunReason::NodeLost.as_str().to_string();
            ((reason, message), evicted.last_transition_time.as_ref().map(|t| t.0))
        });
    }
    first
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub(super) fn memory_limit(pod: &Pod, container: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let c = spec.containers.iter().find(|c| c.name == container)?;
    let limits = c.resources.as_ref()?.limits.as_ref()?;
    limits.get("memory").map(|q| q.0.clone())
}

fn stuck_reason(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    // The scheduler found no node: waiting will not change that until something else does.
    let unschedulable = status.conditions.iter().flatten().find_map(|c| {
        (c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable"))
        .then(|| {
            format!(
                "pod {name} is Unschedulable: {}",
                c.message.as_deref().unwrap_or("")
            )
        })
    });
    unschedulable.or_else(|| {
        status.container_statuses.iter().flatten().find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            STUCK_WAITING_REASONS.contains(&reason).then(|| {
                format!(
                    "pod {name} is {reason}: {}",
                    waiting.message.as_deref().unwrap_or("")
                )
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "movies-train-2", "labels": {"recommender.dev/run": "2"},
                "annotations": {"recommender.dev/trigger": "Stale", "recommender.dev/spec-hash": "abc"}},
            "status": {"conditions": conditions, "completionTime": "2026-11-27T12:00:00Z"}
        }))
        .unwrap()
    }

    fn pod(phase: &str, state: serde_json::Value, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "movies-train-2-x", "labels": {"job-name": "movies-train-2"},
                "creationTimestamp": created},
            "status": {"phase": phase, "containerStatuses": [{"name": "trainer", "image": "i",
                "imageID": "", "ready": false, "restartCount": 0, "state": state}]}
        }))
        .unwrap()
    }

    const FAILED_REPORT: &str = r#"{"format":1,"outcome":"Failed","version":"v2","algorithm":"svd","durations":{"loadSeconds":0,"cvSeconds":0,"fitSeconds":0,"totalSeconds":0.1},"finishedAt":"2026-11-27T12:00:00Z","error":{"reason":"InvalidData","message":"line 3: rating 'x' is not a number"}}"#;

    #[test]
    fn job_states() {
        let terminated = |message: &str| json!({"terminated": {"exitCode": 1, "message": message, "finishedAt": "2026-11-27T12:00:00Z"}});
        let t0 = "2026-11-27T11:00:00Z";
        let failed = json!([{"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "message": "exit 1"}]);

        let run = observe_run(
            &job(failed.clone()),
            &[pod("Failed", terminated(FAILED_REPORT), t0)],
        )
        .unwrap();
        assert_eq!(
            (run.run, run.trigger, run.spec_hash.as_deref()),
            (2, RunTrigger::Stale, Some("abc"))
        );
        match run.state {
            RunState::Failed { reason, report, .. } => {
                assert_eq!(reason, "PodFailurePolicy");
                assert_eq!(report.unwrap().error.unwrap().reason, "InvalidData");
            }
            other => panic!("{other:?}"),
        }

        let mut oom = pod(
            "Failed",
            json!({"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-11-27T12:00:00Z"}}),
            t0,
        );
        oom.spec = Some(
            serde_json::from_value(json!({"containers": [{"name": "trainer",
            "resources": {"limits": {"memory": "32Mi"}}}]}))
            .unwrap(),
        );
        let backoff = json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]);
        let run = observe_run(&job(backoff), &[oom]).unwrap();
        match run.state {
            RunState::Failed {
                reason, message, ..
            } => {
                assert_eq!(reason, "OOMKilled");
                assert!(
                    message.contains("exit code 137, memory limit 32Mi"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }

        let deadline = json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]);
        let run = observe_run(&job(deadline), &[]).unwrap();
        assert!(
            matches!(run.state, RunState::Failed { ref reason, report: None, .. } if reason == "DeadlineExceeded")
        );

        let complete = json!([{"type": "Complete", "status": "True"}]);
        let run = observe_run(
            &job(complete.clone()),
            &[pod("Succeeded", terminated("not json"), t0)],
        )
        .unwrap();
        assert!(
            matches!(run.state, RunState::Succeeded { report: Err(ref e), .. } if e.contains("not valid JSON"))
        );
        let run = observe_run(&job(complete), &[]).unwrap();
        assert!(
            matches!(run.state, RunState::Succeeded { report: Err(ref e), .. } if e.contains("no termination message"))
        );

        let waiting =
            json!({"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}});
        let run = observe_run(&job(json!([])), &[pod("Pending", waiting, t0)]).unwrap();
        match run.state {
            RunState::Running {
                stuck,
                pending_since,
            } => {
                assert_eq!(
                    stuck.as_deref(),
                    Some("pod movies-train-2-x is ImagePullBackOff: no such image")
                );
                assert_eq!(pending_since, Some(t0.parse().unwrap()));
            }
            other => panic!("{other:?}"),
        }

        let unschedulable: Pod = serde_json::from_value(json!({
            "metadata": {"name": "movies-train-2-x", "labels": {"job-name": "movies-train-2"},
                "creationTimestamp": t0},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient memory."}]}
        }))
        .unwrap();
        let run = observe_run(&job(json!([])), &[unschedulable]).unwrap();
        assert!(
            matches!(&run.state, RunState::Running { stuck: Some(why), .. }
                if why == "pod movies-train-2-x is Unschedulable: 0/1 nodes are available: 1 Insufficient memory."),
            "{:?}",
            run.state
        );

        let unlabelled: Job =
            serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap();
        assert!(
            observe_run(&unlabelled, &[]).is_none(),
            "not one of our runs"
        );
    }

    /// A trainer pod the taint manager deleted from its node (`phase` as the kubelet last wrote
    /// it: `Running` while the node stays dead).
    fn evicted(name: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"job-name": "movies-train-2"},
                "creationTimestamp": "2026-11-27T11:00:00Z",
                "deletionTimestamp": "2026-11-27T11:05:00Z"},
            "spec": {"nodeName": "node-3", "containers": [{"name": "trainer"}]},
            "status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                 "message": "Taint manager: deleting due to NoExecute taint",
                 "lastTransitionTime": "2026-11-27T11:05:00Z"}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_trainer_deleted_from_a_lost_node_ends_its_run() {
        let lost = "trainer pod movies-train-2-x on node node-3 was deleted by the taint manager (Taint manager: deleting due to NoExecute taint): its node stopped answering, or was tainted NoExecute";
        // The Job still counts the pod as active (it terminates only when the node returns).
        let run = observe_run(&job(json!([])), &[evicted("movies-train-2-x", "Running")]).unwrap();
        assert_eq!(
            run.state,
            RunState::Failed {
                reason: "NodeLost".into(),
                message: lost.into(),
                report: None,
                finished_at: Some("2026-11-27T11:05:00Z".parse().unwrap()),
            }
        );
        assert_eq!(RunReason::from("NodeLost"), RunReason::NodeLost);

        // The node came back before we looked, and the Job failed for its backoff limit.
        let backoff = json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit"}]);
        let run = observe_run(&job(backoff), &[evicted("movies-train-2-x", "Failed")]).unwrap();
        assert!(
            matches!(&run.state, RunState::Failed { reason, message, .. }
                if reason == "NodeLost" && message == lost),
            "{:?}",
            run.state
        );

        // A replacement runs elsewhere (`retries`): the run goes on.
        let replacement = pod(
            "Running",
            json!({"running": {"startedAt": "2026-11-27T11:06:00Z"}}),
            "2026-11-27T11:06:00Z",
        );
        let run = observe_run(
            &job(json!([])),
            &[evicted("movies-train-2-a", "Failed"), replacement],
        )
        .unwrap();
        assert!(
            matches!(run.state, RunState::Running { stuck: None, .. }),
            "{:?}",
            run.state
        );

        // Deleted for another reason (a drain's eviction): the Job decides, as for any pod.
        let mut drained = evicted("movies-train-2-x", "Running");
        let conditions = drained
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap();
        conditions[1].reason = Some("EvictionByEvictionAPI".into());
        let run = observe_run(&job(json!([])), &[drained]).unwrap();
        assert!(
            matches!(run.state, RunState::Running { .. }),
            "{:?}",
            run.state
        );
    }
}
