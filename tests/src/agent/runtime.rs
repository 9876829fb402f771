//! What the agent knows about a running pod, and the pod status it derives from that.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};

pub fn timestamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: Option<String>,
    pub started_at: String,
    pub finished_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: String,
        since: Instant,
    },
    Terminated(Terminated),
}

#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last: Option<Terminated>,
    pub restarts: i32,
    pub ready: bool,
    /// True once the container has ended for good (no restart will follow).
    pub done: bool,
}

impl Container {
    pub fn new(name: &str, image: &str) -> Self {
        Container {
            name: name.to_owned(),
            image: image.to_owned(),
            state: State::Waiting {
                reason: "ContainerCreating".to_owned(),
                message: None,
            },
            last: None,
            restarts: 0,
            ready: false,
            done: false,
        }
    }

    fn status(&self, pod_uid: &str) -> Value {
        let terminated = |t: &Terminated| {
            json!({"terminated": {
                "exitCode": t.exit_code, "signal": t.signal, "reason": t.reason,
                "message": t.message, "startedAt": t.started_at, "finishedAt": t.finished_at,
                "containerID": format!("local://{pod_uid}/{}", self.name),
            }})
        };
        let state = match &self.state {
            State::Waiting { reason, message } => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            State::Running { started_at, .. } => json!({"running": {"startedAt": started_at}}),
            State::Terminated(t) => terminated(t),
        };
        let started = matches!(self.state, State::Running { .. });
        json!({
            "name": self.name, "image": self.image, "imageID": "",
            "containerID": format!("local://{pod_uid}/{}", self.name),
            "ready": self.ready, "started": started, "restartCount": self.restarts,
            "state": state,
            "lastState": self.last.as_ref().map_or_else(|| json!({}), terminated),
        })
    }

    fn never_started(&self) -> bool {
        matches!(self.state, State::Waiting { .. }) && self.last.is_none()
    }

    fn succeeded(&self) -> bool {
        matches!(&self.state, State::Terminated(t) if t.exit_code == 0)
    }
}

/// The pod as the agent runs it.
#[derive(Debug)]
pub struct PodRuntime {
    pub uid: String,
    pub pod_ip: String,
    pub host_ip: String,
    pub start_time: String,
    pub containers: Vec<Container>,
    /// Set when the pod cannot run at all (e.g. it asks for something unsupported).
    pub failure: Option<(String, String)>,
    transitions: BTreeMap<&'static str, (bool, String)>,
}

impl PodRuntime {
    pub fn new(uid: &str, pod_ip: &str, host_ip: &str, containers: Vec<Container>) -> Self {
        PodRuntime {
            uid: uid.to_owned(),
            pod_ip: pod_ip.to_owned(),
            host_ip: host_ip.to_owned(),
            start_time: timestamp(),
            containers,
            failure: None,
            transitions: BTreeMap::new(),
        }
    }

    pub fn phase(&self) -> &'static str {
        if self.failure.is_some() {
            return "Failed";
        }
        if self.containers.iter().all(|c| c.done) {
            return if self.containers.iter().all(Container::succeeded) {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if self.containers.iter().any(Container::never_started) {
            return "Pending";
        }
        "Running"
    }

    /// Keeps `lastTransitionTime` of each condition stable until its status flips.
    fn condition(&mut self, kind: &'static str, status: bool, reason: Option<&str>) -> Value {
        let since = match self.transitions.get(kind) {
            Some((old, since)) if *old == status => since.clone(),
            _ => {
                let now = timestamp();
                self.transitions.insert(kind, (status, now.clone()));
                now
            }
        };
        json!({
            "type": kind, "status": if status { "True" } else { "False" },
            "reason": reason, "lastTransitionTime": since, "lastProbeTime": null,
        })
    }

    pub fn status(&mut self) -> Value {
        let phase = self.phase();
        let all_ready = !self.containers.is_empty() && self.containers.iter().all(|c| c.ready);
        let not_ready_reason = match phase {
            "Succeeded" | "Failed" => Some("PodCompleted"),
            _ if all_ready => None,
            _ => Some("ContainersNotReady"),
        };
        let conditions = vec![
            self.condition("PodReadyToStartContainers", true, None),
            self.condition("Initialized", true, None),
            self.condition("Ready", all_ready, not_ready_reason),
            self.condition("ContainersReady", all_ready, not_ready_reason),
            self.condition("PodScheduled", true, None),
        ];
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|c| c.status(&self.uid))
            .collect();
        let (reason, message) = match &self.failure {
            Some((reason, message)) => (Some(reason.clone()), Some(message.clone())),
            None => (None, None),
        };
        json!({
            "phase": phase,
            "podIP": self.pod_ip, "podIPs": [{"ip": self.pod_ip}],
            "hostIP": self.host_ip, "hostIPs": [{"ip": self.host_ip}],
            "startTime": self.start_time,
            "conditions": conditions,
            "containerStatuses": containers,
            "reason": reason, "message": message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(code: i32) -> State {
        State::Terminated(Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: Some("report".into()),
            started_at: timestamp(),
            finished_at: timestamp(),
        })
    }

    #[test]
    fn phase_follows_the_containers() {
        let mut pod = PodRuntime::new(
            "u",
            "127.1.0.1",
            "127.0.0.1",
            vec![Container::new("a", "i"), Container::new("b", "i")],
        );
        assert_eq!(pod.phase(), "Pending");
        pod.containers[0].state = State::Running {
            started_at: timestamp(),
            since: Instant::now(),
        };
        pod.containers[1].state = pod.containers[0].state.clone();
        assert_eq!(pod.phase(), "Running");
        for c in &mut pod.containers {
            c.state = finished(0);
            c.done = true;
        }
        assert_eq!(pod.phase(), "Succeeded");
        pod.containers[1].state = finished(3);
        assert_eq!(pod.phase(), "Failed");
        let status = pod.status();
        assert_eq!(
            status["containerStatuses"][1]["state"]["terminated"]["exitCode"],
            3
        );
        assert_eq!(
            status["containerStatuses"][1]["state"]["terminated"]["message"],
            "report"
        );
        assert_eq!(status["conditions"][2]["reason"], "PodCompleted");
    }

    #[test]
    fn ready_condition_keeps_its_transition_time() {
        let mut pod = PodRuntime::new(
            "u",
            "127.1.0.1",
            "127.0.0.1",
            vec![Container::new("a", "i")],
        );
        let first = pod.status();
        assert_eq!(first["conditions"][2]["status"], "False");
        let again = pod.status();
        assert_eq!(
            first["conditions"][2]["lastTransitionTime"],
            again["conditions"][2]["lastTransitionTime"]
        );
        pod.containers[0].ready = true;
        pod.containers[0].state = State::Running {
            started_at: timestamp(),
            since: Instant::now(),
        };
        assert_eq!(pod.status()["conditions"][2]["status"], "True");
    }
}
