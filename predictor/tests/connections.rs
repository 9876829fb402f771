//! The connection bounds over real TCP on loopback: header and idle timeouts, the bound on open
//! connections, load shedding beyond the bound on requests in flight, the header size limit.

mod common;

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use common::{App, app_with, write};
use recommender_predictor::{AppState, Config, metrics::ConnectionTimeout, reload, server};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

/// The real accept loop serving `v1` on a loopback port, stopped on drop.
struct Server {
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _app: App,
}

impl Server {
    async fn start(configure: impl FnOnce(&mut Config)) -> Server {
        let app = app_with(configure);
        write(&app.path, "v1", 1);
        reload::reload(&app.state).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, app.state.clone(), async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            state: app.state.clone(),
            stop: Some(stop),
            task: Some(task),
            _app: app,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Waits (at most 10 s) until `done` holds of the server's state.
    async fn until(&self, what: &str, done: impl Fn(&AppState) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&self.state) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One answer read off a connection: status, head and body (by Content-Length).
struct Answer {
    status: u16,
    head: String,
    body: String,
}

async fn read_answer(stream: &mut TcpStream) -> Answer {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = read_some(stream, &mut chunk).await;
        assert!(n > 0, "connection closed before an answer");
        bytes.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        let n = read_some(stream, &mut chunk).await;
        assert!(n > 0, "connection closed mid-answer");
        bytes.extend_from_slice(&chunk[..n]);
    }
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = String::from_utf8(bytes[head_end..head_end + length].to_vec()).unwrap();
    Answer { status, head, body }
}

async fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> usize {
    tokio::time::timeout(Duration::from_secs(10), stream.read(buf))
        .await
        .expect("no answer within 10 s")
        .unwrap()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

async fn get_on(stream: &mut TcpStream, path: &str) -> Answer {
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    read_answer(stream).await
}

async fn get(server: &Server, path: &str) -> Answer {
    get_on(&mut server.connect().await, path).await
}

/// Whether the server closed the connection (end of stream or reset) within 10 s; fails the
/// test if it sent anything instead.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!(
            "expected the connection closed, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(_) => false,
    }
}

fn timeouts(state: &AppState, which: ConnectionTimeout) -> u64 {
    state.metrics.connection_timeout(which).get()
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_disconnected_after_the_header_timeout() {
    let header_timeout = Duration::from_millis(300);
    let server = Server::start(|c| c.header_read_timeout = header_timeout).await;

    let mut slow = server.connect().await;
    let started = Instant::now();
    slow.write_all(b"GET /v1/predict?user=u1&item=i1 HTTP/1.1\r\nHost: t")
        .await
        .unwrap();
    // Meanwhile a prompt client is answered.
    assert_eq!(
        get(&server, "/v1/predict?user=u1&item=i1").await.status,
        200
    );
    assert!(closed_by_server(&mut slow).await, "still open after 10 s");
    assert!(
        started.elapsed() >= header_timeout,
        "closed before its time"
    );
    server
        .until("the header timeout counted", |s| {
            timeouts(s, ConnectionTimeout::Header) == 1
        })
        .await;

    // The same clock closes a keep-alive connection that sends no next request.
    let mut idle = server.connect().await;
    assert_eq!(get_on(&mut idle, "/livez").await.status, 200);
    let answered = Instant::now();
    assert!(
        closed_by_server(&mut idle).await,
        "idle keep-alive still open"
    );
    assert!(answered.elapsed() >= header_timeout);
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_bound_are_closed_at_once_and_open_ones_keep_working() {
    let server = Server::start(|c| {
        c.max_connections = 3;
        c.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(server.connect().await);
    }
    server
        .until("three connections", |s| s.metrics.connections.get() == 3)
        .await;

    let mut extra = server.connect().await;
    assert!(
        closed_by_server(&mut extra).await,
        "the 4th connection was kept"
    );
    assert_eq!(server.state.metrics.connections_rejected.get(), 1);
    for stream in &mut open {
        assert_eq!(get_on(stream, "/v1/model").await.status, 200);
    }

    // A slot freed is a slot for the next client.
    drop(open.pop());
    server
        .until("the closed connection's slot", |s| {
            s.metrics.connections.get() == 2
        })
        .await;
    assert_eq!(get(&server, "/v1/model").await.status, 200);
    assert_eq!(server.state.metrics.connections_rejected.get(), 1);
    drop(open);
    server.stop().await;
}

/// Sends the headers of a feedback request and half its body, so it holds its place in flight.
async fn half_sent_feedback(server: &Server) -> (TcpStream, &'static [u8]) {
    let body: &'static [u8] = br#"{"user":"u1","item":"i1","rating":4}"#;
    let mut stream = server.connect().await;
    let head = format!(
        "POST /v1/feedback HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..10]).await.unwrap();
    (stream, &body[10..])
}

#[tokio::test]
async fn requests_beyond_the_in_flight_bound_get_503_with_retry_after() {
    let server = Server::start(|c| c.max_in_flight = 2).await;
    let mut held = vec![
        half_sent_feedback(&server).await,
        half_sent_feedback(&server).await,
    ];
    // Both are in flight once a third is shed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let shed = loop {
        let answer = get(&server, "/v1/model").await;
        if answer.status == 503 {
            break answer;
        }
        assert_eq!(answer.status, 200);
        assert!(Instant::now() < deadline, "nothing was shed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        header(&shed.head, "retry-after"),
        Some("1"),
        "{}",
        shed.head
    );
    let body: serde_json::Value = serde_json::from_str(&shed.body).unwrap();
    assert_eq!(body["error"], "overloaded");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("more than 2 requests")
    );
    assert!(server.state.metrics.requests_shed.get() >= 1);
    // Probes and metrics are never shed.
    for path in ["/livez", "/readyz", "/metrics"] {
        assert_eq!(get(&server, path).await.status, 200, "{path}");
    }

    for (stream, rest) in &mut held {
        stream.write_all(rest).await.unwrap();
        let answer = read_answer(stream).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(get(&server, "/v1/model").await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn headers_beyond_the_limit_get_431() {
    let server = Server::start(|c| c.max_header_bytes = 8_192).await;
    let mut stream = server.connect().await;
    let request = format!(
        "GET /livez HTTP/1.1\r\nHost: t\r\nX-Padding: {}\r\n\r\n",
        "x".repeat(9_000)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut stream).await.status, 431);
    let request = format!(
        "GET /livez HTTP/1.1\r\nHost: t\r\nX-Padding: {}\r\n\r\n",
        "x".repeat(7_000)
    );
    let mut stream = server.connect().await;
    stream.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut stream).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answer_is_disconnected_after_the_idle_timeout() {
    let server = Server::start(|c| {
        c.request_timeout = Duration::from_secs(5);
        c.idle_timeout = Duration::from_secs(6);
        c.max_batch = 200_000;
        c.max_body_bytes = 8 << 20;
    })
    .await;
    // An answer of about 16 MB, far more than the socket buffers hold, to a client that reads
    // nothing.
    let pairs = vec![r#"{"user":"u1","item":"i1"}"#; 200_000].join(",");
    let body = format!(r#"{{"pairs":[{pairs}]}}"#);
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/predict/batch HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    server
        .until("the idle timeout", |s| {
            timeouts(s, ConnectionTimeout::Idle) == 1
        })
        .await;
    // What the kernel had buffered still arrives, then the stream ends short of the answer.
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received)).await;
    let text = String::from_utf8_lossy(&received[..received.len().min(512)]).into_owned();
    let length: usize = header(&text, "content-length").unwrap().parse().unwrap();
    assert!(
        received.len() < length,
        "{} of {length} bytes",
        received.len()
    );
    server.stop().await;
}
