//! The real binary: SIGHUP reloads, SIGTERM drains a request in flight and exits cleanly; a
//! version of the model store (a directory, and the real S3 server of tests/cluster/s3.sh) is
//! served with the recorded digest, and refused otherwise: the predictor exits and leaves the
//! reason in its termination message.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use common::{artifact, write};
use recommender_contract::refusal::{Refusal, RefusalReason};
use recommender_store::Sha256;
use recommender_store::testing::{Server, server};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One HTTP/1.1 exchange over a fresh connection; returns the status code and the body.
fn http(addr: SocketAddr, request: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> std::io::Result<(u16, String)> {
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done() {
            return;
        }
        sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sighup_reloads_and_sigterm_drains_in_flight_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.model");
    write(&path, "v1", 1);
    let addr = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_recommender-predictor"))
        .env("MODEL_PATH", &path)
        .env("LISTEN_ADDR", addr.to_string())
        // Polling off in practice, so only the signal can explain a reload.
        .args(["--reload-poll", "1h"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);

    wait_until(
        "readiness",
        || matches!(get(addr, "/readyz"), Ok((200, body)) if body.contains("\"v1\"")),
    );

    write(&path, "v2", 2);
    sleep(Duration::from_millis(200));
    assert!(
        get(addr, "/readyz").unwrap().1.contains("\"v1\""),
        "reloaded without a signal"
    );
    signal(&child.0, "HUP");
    wait_until("the SIGHUP reload", || {
        get(addr, "/readyz").is_ok_and(|(_, body)| body.contains("\"v2\""))
    });

    // A request whose body is still arriving when SIGTERM comes must still be answered.
    let body = r#"{"user":"u1","item":"i2"}"#;
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        slow,
        "POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    slow.flush().unwrap();
    sleep(Duration::from_millis(200));
    signal(&child.0, "TERM");
    sleep(Duration::from_millis(300));
    slow.write_all(&body.as_bytes()[10..]).unwrap();
    let (status, answer) = read_response(&mut slow).unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"model_version\":\"v2\""), "{answer}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(
        get(addr, "/livez").is_err(),
        "still accepting after shutdown"
    );
}

/// A predictor serving `version` of the store `flags` name with the digest `sha256`.
fn predictor(
    flags: &[String],
    env: &[(&str, String)],
    version: &str,
    sha256: Sha256,
    termination_log: &std::path::Path,
) -> (KillOnDrop, SocketAddr) {
    let addr = free_addr();
    let child = Command::new(env!("CARGO_BIN_EXE_recommender-predictor"))
        .args(flags)
        .args(["--model-version", version, "--model-sha256"])
        .arg(sha256.to_string())
        .arg("--termination-log")
        .arg(termination_log)
        .args(["--listen", &addr.to_string()])
        .env_remove("MODEL_PATH")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (KillOnDrop(child), addr)
}

/// Waits for the predictor to exit on its own; its refusal.
fn refused(child: &mut KillOnDrop, termination_log: &std::path::Path) -> Refusal {
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "still running after a refusal");
        sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(1), "{exit:?}");
    Refusal::parse(&std::fs::read_to_string(termination_log).unwrap()).unwrap()
}

/// Serves `good` and refuses `flipped` (the same bytes, one flipped) and a missing version, from
/// the store the flags name, where `good` is `v1.model` and `flipped` is `v2.model`.
fn serves_the_recorded_bytes_only(flags: &[String], env: &[(&str, String)], good: Sha256) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let (mut child, addr) = predictor(flags, env, "v1", good, &log);
    wait_until(
        "readiness",
        || matches!(get(addr, "/readyz"), Ok((200, body)) if body.contains("\"v1\"")),
    );
    let (status, model) = get(addr, "/v1/model").unwrap();
    assert_eq!(status, 200);
    assert!(model.contains(&good.to_string()), "{model}");
    signal(&child.0, "TERM");
    assert!(child.0.wait().unwrap().success());
    assert!(!log.exists(), "a refusal was written");

    let (mut child, _) = predictor(flags, env, "v2", good, &log);
    let refusal = refused(&mut child, &log);
    assert_eq!(
        (refusal.reason, refusal.version.as_str()),
        (RefusalReason::Corrupt, "v2")
    );
    assert!(refusal.artifact.ends_with("/v2.model"), "{refusal:?}");
    assert!(refusal.message.contains(&good.to_string()), "{refusal:?}");

    let (mut child, _) = predictor(flags, env, "v3", good, &log);
    assert_eq!(refused(&mut child, &log).reason, RefusalReason::NotFound);
}

fn flipped(bytes: &[u8]) -> Vec<u8> {
    let mut flipped = bytes.to_vec();
    flipped[bytes.len() / 2] ^= 0x01;
    flipped
}

#[test]
fn a_directory_store_version_serves_with_its_digest_and_is_refused_otherwise() {
    let store = tempfile::tempdir().unwrap();
    let bytes = artifact("v1", 1).to_bytes().unwrap();
    std::fs::write(store.path().join("v1.model"), &bytes).unwrap();
    std::fs::write(store.path().join("v2.model"), flipped(&bytes)).unwrap();
    let flags = vec!["--store".to_string(), store.path().display().to_string()];
    serves_the_recorded_bytes_only(&flags, &[], Sha256::of(&bytes));
}

#[test]
fn an_s3_store_version_serves_with_its_digest_and_is_refused_otherwise() {
    let Some(s) = server("an_s3_store_version_serves_with_its_digest_and_is_refused_otherwise")
    else {
        return;
    };
    let prefix = s.fresh_prefix("predictor");
    let store =
        recommender_store::BlockingStore::open(&s.config(&s.args(&s.bucket, &prefix), &s.rw))
            .unwrap();
    let bytes = artifact("v1", 1).to_bytes().unwrap();
    store.put_new("v1.model", bytes.clone()).unwrap();
    // v2's recorded digest is v1's: as if a byte of v1 flipped in the bucket.
    store.put_new("v2.model", flipped(&bytes)).unwrap();
    let flags = s.flags(&prefix);
    let good = Sha256::of(&bytes);
    serves_the_recorded_bytes_only(&flags, &Server::key_env(&s.rw), good);

    // Refused credentials: the server's words, and no credential, in the refusal.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("termination-log");
    let wrong = (s.rw.0.clone(), "not-the-secret".to_string());
    let (mut child, _) = predictor(&flags, &Server::key_env(&wrong), "v1", good, &log);
    let refusal = refused(&mut child, &log);
    assert_eq!(refusal.reason, RefusalReason::CredentialsRefused);
    assert!(
        refusal.message.contains("SignatureDoesNotMatch"),
        "{refusal:?}"
    );
    s.assert_no_secrets(&refusal.to_json());

    // No key pair at all: refused before any request.
    let (mut child, _) = predictor(&flags, &[], "v1", good, &log);
    let refusal = refused(&mut child, &log);
    assert_eq!(refusal.reason, RefusalReason::InvalidConfig);
    assert!(refusal.message.contains("AWS_ACCESS_KEY_ID"), "{refusal:?}");
}

/// The binary as the operator is to run it in a rollout: both versions of a directory store,
/// the rollout config watched as a mounted file. Everyone moves to the candidate when the
/// config says so, and back within one poll when it is set to 0, without a restart.
#[test]
fn a_rollout_config_moves_users_between_the_versions_without_a_restart() {
    let store = tempfile::tempdir().unwrap();
    let sha = |version: &str, seed: u64| {
        let path = store.path().join(format!("{version}.model"));
        write(&path, version, seed);
        Sha256::of(&std::fs::read(&path).unwrap())
    };
    let (v1, v2) = (sha("v1", 1), sha("v2", 2));
    let config = store.path().join("rollout.json");
    let set_share = |share: f64| {
        let text = format!(
            r#"{{"rolloutId": "r1", "stage": "canary", "candidateVersion": "v2", "candidateShare": {share}}}"#
        );
        let next = config.with_extension("next");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &config).unwrap();
    };
    set_share(1.0);
    let flags: Vec<String> = [
        "--store",
        &store.path().display().to_string(),
        "--candidate-version",
        "v2",
        "--candidate-sha256",
        &v2.to_string(),
        "--rollout-config",
        &config.display().to_string(),
        "--rollout-poll",
        "100ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = store.path().join("termination-log");
    let (child, addr) = predictor(&flags, &[], "v1", v1, &log);
    let answered_by = |version: &str| {
        let expected = format!("\"model_version\":\"{version}\"");
        move || matches!(get(addr, "/v1/predict?user=u3&item=i1"), Ok((200, body)) if body.contains(&expected))
    };
    wait_until("the candidate answering", answered_by("v2"));
    set_share(0.0);
    wait_until("the stable model answering again", answered_by("v1"));
    let (_, summary) = get(addr, "/v1/summary").unwrap();
    assert!(summary.contains(r#""candidate_version":"v2""#), "{summary}");
    drop(child);
}
