//! One task per pod: prepares its volumes, runs each container as a local process group with the
//! pod's restart policy, probes readiness, reports status, and on deletion stops the processes and
//! finalises the deletion like the kubelet (a delete with grace period 0).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;
use tokio::sync::{Notify, watch};

use super::Agent;
use super::api_access;
use super::launch::{Launch, build_launch};
use super::probe;
use super::resolve::{Downward, Refs, Volumes, container_env, container_paths, prepare_volumes};
use super::runtime::{self, PodRuntime, State, Terminated};
use crate::Error;

/// Why a pod's processes must stop.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    /// How long processes get between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Report the final status and remove the pod object (it is being deleted gracefully).
    pub finalize: bool,
}

type StopRx = watch::Receiver<Option<Stop>>;

/// Resolves once a stop was requested (or the sender is gone, which means the agent quits).
async fn stopped(stop: &mut StopRx) -> Stop {
    loop {
        if let Some(s) = *stop.borrow_and_update() {
            return s;
        }
        if stop.changed().await.is_err() {
            return Stop {
                grace: Duration::from_secs(2),
                finalize: false,
            };
        }
    }
}

struct PodCtx {
    agent: Arc<Agent>,
    pod: Pod,
    name: String,
    namespace: String,
    dir: PathBuf,
    runtime: Mutex<PodRuntime>,
    changed: Notify,
}

impl PodCtx {
    /// The pod's loopback address, as the runtime state holds it now.
    fn pod_ip(&self) -> String {
        self.runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pod_ip
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut PodRuntime)) {
        let mut rt = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut rt);
        drop(rt);
        self.changed.notify_one();
    }

    fn container(&self, index: usize, f: impl FnOnce(&mut runtime::Container)) {
        self.update(|rt| f(&mut rt.containers[index]));
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.agent.client.clone(), &self.namespace)
    }

    /// Pushes the status if it changed. With `quiet_on`, nothing is pushed once a stop that is
    /// not a deletion was requested; checked after building the status, since every change a
    /// stop causes happens after the stop is visible.
    async fn report(
        &self,
        last: &mut Option<serde_json::Value>,
        quiet_on: Option<&StopRx>,
    ) -> Result<(), Error> {
        let status = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .status();
        if quiet_on.is_some_and(|stop| stop.borrow().is_some_and(|s| !s.finalize)) {
            return Ok(());
        }
        if last.as_ref() == Some(&status) {
            return Ok(());
        }
        self.pods()
            .patch_status(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map_err(Error::kube(format!(
                "updating status of Pod {}/{}",
                self.namespace, self.name
            )))?;
        *last = Some(status);
        Ok(())
    }
}

/// Pushes status whenever something changed; retries failed updates (API server restarts).
/// Stays silent once the pod's processes are stopped for a reason other than its deletion (the
/// agent quits or the pod is gone): those exits are not the workload's and must not fail the pod.
async fn report_loop(ctx: Arc<PodCtx>, stop: StopRx) {
    let mut last = None;
    loop {
        if stop.borrow().is_some_and(|s| !s.finalize) {
            return;
        }
        if let Err(e) = ctx.report(&mut last, Some(&stop)).await {
            tracing::warn!(error = %e, "pod status update failed, retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), ctx.changed.notified()).await;
    }
}

pub async fn run_pod(agent: Arc<Agent>, pod: Pod, mut stop: StopRx) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let previous_ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
    let ip = match agent.ips.claim(previous_ip) {
        Ok(ip) => ip,
        Err(e) => {
            tracing::error!(pod = %name, error = %e, "cannot run pod");
            return;
        }
    };
    let spec = pod.spec.clone().unwrap_or_default();
    let short_uid: String = uid.chars().take(8).collect();
    let dir = agent
        .config
        .state_dir
        .join("pods")
        .join(&namespace)
        .join(format!("{name}-{short_uid}"));
    let containers = spec
        .containers
        .iter()
        .map(|c| runtime::Container::new(&c.name, c.image.as_deref().unwrap_or_default()))
        .collect();
    let ctx = Arc::new(PodCtx {
        runtime: Mutex::new(PodRuntime::new(
            &uid,
            &ip.to_string(),
            "127.0.0.1",
            containers,
        )),
        agent: agent.clone(),
        pod,
        name: name.clone(),
        namespace: namespace.clone(),
        dir,
        changed: Notify::new(),
    });
    tracing::info!(pod = %format!("{namespace}/{name}"), ip = %ip, "starting pod");
    let reporter = tokio::spawn(report_loop(ctx.clone(), stop.clone()));

    let final_stop = match prepare(&ctx, &mut stop).await {
        Ok(volumes) => {
            let renewer = tokio::spawn(api_access::renew_loop(
                Api::namespaced(ctx.agent.client.clone(), &ctx.namespace),
                ctx.pod.clone(),
                volumes.api_access.clone(),
            ));
            let volumes = Arc::new(volumes);
            let tasks: Vec<_> = spec
                .containers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let ctx = ctx.clone();
                    let (c, volumes, stop) = (c.clone(), volumes.clone(), stop.clone());
                    tokio::spawn(async move { run_container(&ctx, i, &c, &volumes, stop).await })
                })
                .collect();
            for task in tasks {
                let _ = task.await;
            }
            renewer.abort();
            stopped(&mut stop).await
        }
        Err(s) => s,
    };

    reporter.abort();
    if final_stop.finalize {
        let mut last = None;
        if let Err(e) = ctx.report(&mut last, None).await {
            tracing::debug!(error = %e, "final status update failed");
        }
        let uid_precondition = Preconditions {
            uid: Some(uid),
            resource_version: None,
        };
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(uid_precondition),
            ..DeleteParams::default()
        };
        match ctx.pods().delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => tracing::warn!(pod = %name, error = %e, "finalising pod deletion failed"),
        }
    }
    agent.ips.release(ip);
    tracing::info!(pod = %format!("{namespace}/{name}"), "pod stopped");
}

/// Volumes of the pod; waits (like the kubelet) while referenced Secrets or ConfigMaps are missing.
async fn prepare(ctx: &PodCtx, stop: &mut StopRx) -> Result<Volumes, Stop> {
    let spec = ctx.pod.spec.as_ref();
    if spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| !c.is_empty())
    {
        ctx.update(|rt| {
            rt.failure = Some((
                "UnsupportedByNodeAgent".into(),
                "init containers are not supported by the test node agent".into(),
            ))
        });
        return Err(stopped(stop).await);
    }
    loop {
        let pod_ip = ctx.pod_ip();
        let downward = Downward {
            pod: &ctx.pod,
            pod_ip: &pod_ip,
            host_ip: "127.0.0.1",
            node_name: &ctx.agent.config.node_name,
        };
        let mut refs = Refs::new(ctx.agent.client.clone(), &ctx.namespace);
        let state_dir = &ctx.agent.config.state_dir;
        let api_server = &ctx.agent.config.api_server;
        match prepare_volumes(
            &ctx.pod, &ctx.dir, state_dir, api_server, &downward, &mut refs,
        )
        .await
        {
            Ok(volumes) => return Ok(volumes),
            Err(e) => {
                let reason = match e {
                    Error::Spec(_) => "UnsupportedByNodeAgent",
                    _ => "ContainerCreating",
                };
                let message = format!("preparing volumes: {e}");
                tracing::warn!(pod = %ctx.name, "{message}");
                ctx.update(|rt| {
                    for c in &mut rt.containers {
                        c.state = State::Waiting {
                            reason: reason.into(),
                            message: Some(message.clone()),
                        };
                    }
                });
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    s = stopped(stop) => return Err(s),
                }
            }
        }
    }
}

async fn resolve_launch(
    ctx: &PodCtx,
    container: &Container,
    volumes: &Volumes,
    termination_log: &Path,
) -> Result<Launch, Error> {
    let pod_ip = ctx.pod_ip();
    let downward = Downward {
        pod: &ctx.pod,
        pod_ip: &pod_ip,
        host_ip: "127.0.0.1",
        node_name: &ctx.agent.config.node_name,
    };
    let mut refs = Refs::new(ctx.agent.client.clone(), &ctx.namespace);
    let mut env = container_env(container, &downward, &mut refs).await?;
    if let Some(kubeconfig) = volumes.kubeconfig_for(container) {
        env.entry("KUBECONFIG".into())
            .or_insert_with(|| kubeconfig.display().to_string());
    }
    let paths = container_paths(container, &volumes.dirs, termination_log)?;
    build_launch(
        &ctx.agent.config.bin_dir,
        container.image.as_deref().unwrap_or_default(),
        container.command.as_deref().unwrap_or_default(),
        container.args.as_deref().unwrap_or_default(),
        &env,
        container.working_dir.as_deref(),
        &paths,
    )
}

fn restart_wanted(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The container's life: start, wait, record the exit, restart per the pod's restart policy.
async fn run_container(
    ctx: &PodCtx,
    index: usize,
    container: &Container,
    volumes: &Volumes,
    mut stop: StopRx,
) {
    let policy = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let termination_log = ctx.dir.join(format!("{}.termination-log", container.name));
    let log_path = ctx.dir.join(format!("{}.log", container.name));
    let fallback_to_logs =
        container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    let prober = container.readiness_probe.as_ref().map(|p| {
        let pod_ip = ctx.pod_ip();
        (probe::check(p, container, &pod_ip), probe::timing(p))
    });
    // A liveness probe the agent cannot run is ignored: killing on it would be a false verdict.
    let liveness = container
        .liveness_probe
        .as_ref()
        .map(|p| {
            let pod_ip = ctx
                .runtime
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pod_ip
                .clone();
            (probe::check(p, container, &pod_ip), probe::timing(p))
        })
        .filter(|(check, _)| !matches!(check, probe::Check::Unsupported(_)));
    let kill_grace = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .and_then(|s| u64::try_from(s).ok())
        .map_or(Duration::from_secs(10), |s| {
            Duration::from_secs(s).min(Duration::from_secs(10))
        });
    if let Some((probe::Check::Unsupported(why), _)) = &prober {
        tracing::warn!(pod = %ctx.name, container = %container.name, "readiness probe cannot run, the container stays unready: {why}");
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        let launch = match resolve_launch(ctx, container, volumes, &termination_log).await {
            Ok(launch) => launch,
            Err(e) => {
                let reason = match e {
                    Error::Spec(_) => "UnsupportedByNodeAgent",
                    _ => "CreateContainerConfigError",
                };
                ctx.container(index, |c| {
                    c.state = State::Waiting {
                        reason: reason.into(),
                        message: Some(e.to_string()),
                    }
                });
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    _ = stopped(&mut stop) => return finish(ctx, index),
                }
            }
        };
        let started_at = runtime::timestamp();
        let outcome = match spawn(ctx, &launch, &log_path, &termination_log) {
            Ok(mut child) => {
                let pid = child.id();
                ctx.container(index, |c| {
                    c.state = State::Running {
                        started_at: started_at.clone(),
                        since: Instant::now(),
                    };
                    c.ready = prober.is_none();
                });
                tracing::info!(pod = %ctx.name, container = %container.name, ?pid, program = %launch.program.display(), "container started");
                let probing = async {
                    match &prober {
                        Some((check, timing)) => probe_loop(ctx, index, check, timing).await,
                        None => std::future::pending().await,
                    }
                };
                let watching_liveness = async {
                    match &liveness {
                        Some((check, timing)) => liveness_failure(check, timing).await,
                        None => std::future::pending().await,
                    }
                };
                let (status, stop_request) = tokio::select! {
                    status = child.wait() => (status, None),
                    s = stopped(&mut stop) => {
                        (terminate(&mut child, pid, s.grace).await, Some(s))
                    }
                    never = probing => match never {},
                    why = watching_liveness => {
                        tracing::info!(pod = %ctx.name, container = %container.name, "liveness probe failed, restarting: {why}");
                        (terminate(&mut child, pid, kill_grace).await, None)
                    }
                };
                // Anything the container left behind in its process group goes with it.
                kill_group(pid, rustix::process::Signal::KILL);
                let (exit_code, signal) = match &status {
                    Ok(s) => (
                        s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
                        s.signal(),
                    ),
                    Err(_) => (128, None),
                };
                let message = termination_message(&termination_log).or_else(|| {
                    (fallback_to_logs && exit_code != 0)
                        .then(|| log_tail(&log_path))
                        .flatten()
                });
                let reason = if exit_code == 0 { "Completed" } else { "Error" };
                (
                    Terminated {
                        exit_code,
                        signal,
                        reason: reason.into(),
                        message,
                        started_at,
                        finished_at: runtime::timestamp(),
                    },
                    stop_request,
                )
            }
            Err(e) => (
                Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: Some(e.to_string()),
                    started_at: started_at.clone(),
                    finished_at: started_at,
                },
                None,
            ),
        };
        let (terminated, stop_request) = outcome;
        tracing::info!(pod = %ctx.name, container = %container.name, exit_code = terminated.exit_code, "container exited");
        let exit_code = terminated.exit_code;
        let restart = stop_request.is_none() && restart_wanted(&policy, exit_code);
        ctx.container(index, |c| {
            c.ready = false;
            c.state = State::Terminated(terminated);
            c.done = !restart;
        });
        if !restart {
            return;
        }
        // As the kubelet: the exit moves to lastState and the container waits in back-off.
        ctx.container(index, |c| {
            if let State::Terminated(t) = &c.state {
                c.last = Some(t.clone());
            }
            c.restarts += 1;
            c.state = State::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {}s restarting container {}",
                    backoff.as_secs(),
                    container.name
                )),
            };
        });
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => return finish(ctx, index),
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

fn finish(ctx: &PodCtx, index: usize) {
    ctx.container(index, |c| {
        c.ready = false;
        c.done = true;
    });
}

fn spawn(
    ctx: &PodCtx,
    launch: &Launch,
    log_path: &Path,
    termination_log: &Path,
) -> Result<tokio::process::Child, Error> {
    std::fs::create_dir_all(&ctx.dir).map_err(Error::io(&ctx.dir))?;
    // A fresh termination-message file per start, as the kubelet gives each container instance.
    std::fs::write(termination_log, b"").map_err(Error::io(termination_log))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(Error::io(log_path))?;
    let log_err = log.try_clone().map_err(Error::io(log_path))?;
    let working_dir = launch
        .working_dir
        .clone()
        .filter(|d| d.is_dir())
        .unwrap_or_else(|| ctx.dir.clone());
    let mut command = tokio::process::Command::new(&launch.program);
    command
        .args(&launch.args)
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", &ctx.dir)
        .env("HOSTNAME", &ctx.name)
        .envs(&launch.env)
        .current_dir(working_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own process group, so stopping the container stops everything it started.
        .process_group(0);
    command.spawn().map_err(|e| Error::Command {
        command: launch.program.display().to_string(),
        message: format!("cannot start: {e}"),
    })
}

fn kill_group(pid: Option<u32>, signal: rustix::process::Signal) {
    let pid = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        // ESRCH just means the group is already gone.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// SIGTERM to the process group, SIGKILL once the grace period is over.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    kill_group(pid, rustix::process::Signal::TERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            kill_group(pid, rustix::process::Signal::KILL);
            child.wait().await
        }
    }
}

const MAX_MESSAGE: usize = 4096;

fn truncate(mut text: String, max: usize, keep_end: bool) -> String {
    if text.len() <= max {
        return text;
    }
    if keep_end {
        let mut start = text.len() - max;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text.split_off(start)
    } else {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text
    }
}

/// The container's termination message: the first 4 KiB of the file, as the kubelet reads it.
fn termination_message(path: &Path) -> Option<String> {
    let text = String::from_utf8_lossy(&std::fs::read(path).ok()?).into_owned();
    (!text.is_empty()).then(|| truncate(text, MAX_MESSAGE, false))
}

/// The end of the container's log (FallbackToLogsOnError: last 80 lines, at most 2 KiB).
fn log_tail(path: &Path) -> Option<String> {
    let text = String::from_utf8_lossy(&std::fs::read(path).ok()?).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(80)..].join("\n");
    (!tail.is_empty()).then(|| truncate(tail, 2048, true))
}

/// Readiness per the probe's timing; never returns (the container's end cancels it).
async fn probe_loop(
    ctx: &PodCtx,
    index: usize,
    check: &probe::Check,
    timing: &probe::Timing,
) -> std::convert::Infallible {
    tokio::time::sleep(timing.initial_delay).await;
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        let result = probe::run(check, timing.timeout).await;
        match &result {
            Ok(()) => {
                successes += 1;
                failures = 0;
            }
            Err(_) => {
                failures += 1;
                successes = 0;
            }
        }
        let ready = ctx
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .containers[index]
            .ready;
        if !ready && successes >= timing.success_threshold {
            tracing::info!(pod = %ctx.name, "readiness probe passes");
            ctx.container(index, |c| c.ready = true);
        } else if ready && failures >= timing.failure_threshold {
            tracing::info!(pod = %ctx.name, error = ?result.err(), "readiness probe fails");
            ctx.container(index, |c| c.ready = false);
        }
        tokio::time::sleep(timing.period).await;
    }
}

/// Resolves with the last error once the liveness probe failed `failureThreshold` times in a row.
async fn liveness_failure(check: &probe::Check, timing: &probe::Timing) -> String {
    tokio::time::sleep(timing.initial_delay).await;
    let mut failures = 0;
    loop {
        match probe::run(check, timing.timeout).await {
            Ok(()) => failures = 0,
            Err(why) => {
                failures += 1;
                if failures >= timing.failure_threshold {
                    return why;
                }
            }
        }
        tokio::time::sleep(timing.period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policy_decides_restarts() {
        assert!(!restart_wanted("Never", 1));
        assert!(restart_wanted("OnFailure", 1));
        assert!(!restart_wanted("OnFailure", 0));
        assert!(restart_wanted("Always", 0));
    }

    #[test]
    fn messages_are_capped_like_the_kubelet() {
        let dir = tempfile::tempdir().unwrap();
        let term = dir.path().join("t");
        std::fs::write(&term, "é".repeat(3000)).unwrap();
        let message = termination_message(&term).unwrap();
        assert!(message.len() <= MAX_MESSAGE && message.len() > 4000);
        std::fs::write(&term, "").unwrap();
        assert_eq!(termination_message(&term), None);

        let log = dir.path().join("l");
        let lines: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
        std::fs::write(&log, lines.join("\n")).unwrap();
        let tail = log_tail(&log).unwrap();
        assert!(tail.ends_with("line 199"));
        assert!(!tail.contains("line 119\n"));
        assert!(tail.starts_with("line 120"));
    }
}
