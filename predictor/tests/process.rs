//! The real binary: SIGHUP reloads, SIGTERM drains a request in flight and exits cleanly.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use common::write;

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
