//! Watches the pods bound to this node and keeps one worker per pod.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Agent;
use super::worker::{Stop, run_pod};

/// Longest grace period honoured, so a test never waits minutes for a stubborn process.
const MAX_GRACE: Duration = Duration::from_secs(30);

struct Worker {
    stop: watch::Sender<Option<Stop>>,
    task: JoinHandle<()>,
}

impl Worker {
    fn stop(&self, stop: Stop) {
        self.stop.send_if_modified(|current| {
            // A deletion with a shorter grace, or an outright removal, overrides an earlier stop.
            let replace = match current {
                None => true,
                Some(old) => stop.grace < old.grace,
            };
            if replace {
                *current = Some(stop);
            }
            replace
        });
    }
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub struct Pods {
    agent: Arc<Agent>,
    workers: HashMap<String, Worker>,
}

impl Pods {
    pub fn new(agent: Arc<Agent>) -> Self {
        Pods {
            agent,
            workers: HashMap::new(),
        }
    }

    fn seen(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        self.workers.retain(|_, w| !w.task.is_finished());
        if let Some(deleted_at) = &pod.metadata.deletion_timestamp {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(MAX_GRACE, |s| Duration::from_secs(s).min(MAX_GRACE));
            let _ = deleted_at;
            match self.workers.get(&uid) {
                Some(worker) => worker.stop(Stop {
                    grace,
                    finalize: true,
                }),
                // Not ours to run (finished before this agent started): just finalise it.
                None => {
                    tokio::spawn(finalize(self.agent.clone(), pod));
                }
            }
            return;
        }
        if self.workers.contains_key(&uid) || is_terminal(&pod) {
            return;
        }
        let (stop, rx) = watch::channel(None);
        let task = tokio::spawn(run_pod(self.agent.clone(), pod, rx));
        self.workers.insert(uid, Worker { stop, task });
    }

    fn gone(&mut self, uid: &str) {
        if let Some(worker) = self.workers.get(uid) {
            worker.stop(Stop {
                grace: Duration::ZERO,
                finalize: false,
            });
        }
    }

    /// Stops every pod's processes (the agent is quitting) and waits for them.
    pub async fn shutdown(self) {
        for worker in self.workers.values() {
            worker.stop(Stop {
                grace: Duration::from_secs(2),
                finalize: false,
            });
        }
        for (_, worker) in self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(15), worker.task).await;
        }
    }

    /// Follows the pods bound to this node until `quit` fires. The watcher re-lists after
    /// errors, so API server restarts only pause it; pods that vanished meanwhile are stopped.
    pub async fn watch(&mut self, mut quit: watch::Receiver<bool>) {
        let api: Api<Pod> = Api::all(self.agent.client.clone());
        let selector = format!("spec.nodeName={}", self.agent.config.node_name);
        let mut events = watcher(api, watcher::Config::default().fields(&selector))
            .default_backoff()
            .boxed();
        let mut relisted: Option<HashSet<String>> = None;
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = quit.changed() => return,
            };
            match event {
                None => return,
                Some(Err(e)) => tracing::warn!(error = %e, "watching pods (will retry)"),
                Some(Ok(watcher::Event::Init)) => relisted = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitApply(pod))) => {
                    if let (Some(set), Some(uid)) = (relisted.as_mut(), &pod.metadata.uid) {
                        set.insert(uid.clone());
                    }
                    self.seen(pod);
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    if let Some(present) = relisted.take() {
                        let vanished: Vec<String> = self
                            .workers
                            .keys()
                            .filter(|uid| !present.contains(*uid))
                            .cloned()
                            .collect();
                        for uid in vanished {
                            self.gone(&uid);
                        }
                    }
                }
                Some(Ok(watcher::Event::Apply(pod))) => self.seen(pod),
                Some(Ok(watcher::Event::Delete(pod))) => {
                    if let Some(uid) = &pod.metadata.uid {
                        self.gone(uid);
                    }
                }
            }
        }
    }
}

async fn finalize(agent: Arc<Agent>, pod: Pod) {
    let (Some(name), Some(namespace)) = (pod.metadata.name, pod.metadata.namespace) else {
        return;
    };
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid,
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let pods: Api<Pod> = Api::namespaced(agent.client.clone(), &namespace);
    match pods.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(pod = %name, error = %e, "finalising pod deletion failed"),
    }
}
