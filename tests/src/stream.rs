//! A steady stream of predictions through a Service, as a user's application sends them while
//! something happens to the cluster: a fixed rate, each request on a connection of its own (so
//! that kube-proxy picks an endpoint for every one, as for a fleet of clients) with a short
//! timeout, and each outcome recorded with the moment it was sent, the model version (and, during
//! a rollout, the arm) the answer names, and the local port it was sent from, so that the
//! connection tracking table can say which endpoint each request went to ([`crate::conntrack`]).

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long one request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// One request of the stream.
#[derive(Debug, Clone)]
pub struct Sent {
    /// When it was sent, from the stream's start.
    pub at: Duration,
    /// Which of the stream's URLs it went to (an index into them).
    pub target: usize,
    /// `None` when it was answered 200; otherwise what went wrong.
    pub error: Option<String>,
    /// The answer's `x-model-version` header, if it had one.
    pub version: Option<String>,
    /// The answer's `x-rollout-arm` header (present during a rollout).
    pub arm: Option<String>,
    /// The port it was sent from (known before the connection is tried, so also for a request
    /// that got no answer): the key of its entry in the connection tracking table.
    pub local_port: Option<u16>,
}

/// What one request came back with.
#[derive(Default)]
struct Outcome {
    error: Option<String>,
    version: Option<String>,
    arm: Option<String>,
    local_port: Option<u16>,
}

/// Requests sent at a fixed rate until [`RequestStream::stop`].
pub struct RequestStream {
    pub started: Instant,
    sent: Arc<Mutex<Vec<Sent>>>,
    stop: watch::Sender<bool>,
    sender: JoinHandle<()>,
}

impl RequestStream {
    /// GETs `url` every `interval`; a request still unanswered when the next falls due does not
    /// hold it back (at most `REQUEST_TIMEOUT / interval` are in flight).
    pub fn start(url: String, interval: Duration) -> Self {
        Self::start_many(vec![url], interval)
    }

    /// [`RequestStream::start`] over several URLs in turn (one user after another, say).
    pub fn start_many(urls: Vec<String>, interval: Duration) -> Self {
        assert!(!urls.is_empty(), "a request stream needs a URL");
        let started = Instant::now();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = watch::channel(false);
        let record = Arc::clone(&sent);
        let sender = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut requests = tokio::task::JoinSet::new();
            for target in (0..urls.len()).cycle() {
                // Those answered are reaped, so only the ones in flight are held.
                while requests.try_join_next().is_some() {}
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let record = Arc::clone(&record);
                let url = urls[target].clone();
                let at = started.elapsed();
                requests.spawn(async move {
                    let Outcome {
                        error,
                        version,
                        arm,
                        local_port,
                    } = one(&url).await;
                    record.lock().unwrap().push(Sent {
                        at,
                        target,
                        error,
                        version,
                        arm,
                        local_port,
                    });
                });
            }
            requests.join_all().await;
        });
        Self {
            started,
            sent,
            stop,
            sender,
        }
    }

    /// Stops sending, waits for the requests in flight, and returns every outcome in the order
    /// they were sent.
    pub async fn stop(self) -> Vec<Sent> {
        let _ = self.stop.send(true);
        self.sender.await.expect("the request stream panicked");
        let mut sent = self.sent.lock().unwrap().clone();
        sent.sort_by_key(|s| s.at);
        sent
    }

    /// The time since the stream started: what [`Sent::at`] is measured against.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }
}

/// One GET on a connection of its own: no error for a 200 within the timeout, the version and
/// arm the answer names, and the local port.
async fn one(url: &str) -> Outcome {
    let failed = |error: String| Outcome {
        error: Some(error),
        ..Outcome::default()
    };
    let uri: hyper::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(e) => return failed(format!("{url}: {e}")),
    };
    let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
        return failed(format!("{url}: no host and port"));
    };
    let address: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(address) => address,
        Err(e) => return failed(format!("{url}: the host is not an address: {e}")),
    };
    // Bound before connecting, so the port is known even if no SYN is ever answered.
    let socket = match tokio::net::TcpSocket::new_v4()
        .and_then(|s| s.bind("0.0.0.0:0".parse().expect("an address")).map(|()| s))
    {
        Ok(socket) => socket,
        Err(e) => return failed(format!("a local socket: {e}")),
    };
    let local_port = socket.local_addr().ok().map(|a| a.port());
    let exchange = async {
        let stream = socket
            .connect(address)
            .await
            .map_err(|e| format!("connecting to {address}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{e}"))?;
        tokio::spawn(connection);
        let request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, format!("{host}:{port}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("{e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{e}"))?;
        let code = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let (version, arm) = (header("x-model-version"), header("x-rollout-arm"));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        let error =
            (code != 200).then(|| format!("HTTP {code}: {}", String::from_utf8_lossy(&body)));
        Ok(Outcome {
            error,
            version,
            arm,
            local_port,
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")))
        .unwrap_or_else(|error| Outcome {
            local_port,
            ..failed(error)
        })
}

/// What a stream saw, in figures.
#[derive(Debug)]
pub struct Tally {
    pub sent: usize,
    pub failed: usize,
    /// When the last failed request was sent (stream time), if any failed.
    pub last_failure: Option<Duration>,
    /// A few of the errors, for the test's output.
    pub examples: Vec<String>,
}

impl Tally {
    pub fn of(sent: &[Sent]) -> Self {
        let failed: Vec<&Sent> = sent.iter().filter(|s| s.error.is_some()).collect();
        let mut examples: Vec<String> = Vec::new();
        for s in &failed {
            let e = s.error.clone().unwrap_or_default();
            if examples.len() < 5 && !examples.contains(&e) {
                examples.push(e);
            }
        }
        Self {
            sent: sent.len(),
            failed: failed.len(),
            last_failure: failed.last().map(|s| s.at),
            examples,
        }
    }

    /// The failed share, in percent.
    pub fn failed_percent(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        100.0 * self.failed as f64 / self.sent as f64
    }
}
