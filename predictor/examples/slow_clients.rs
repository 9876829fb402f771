//! Driver of the slow-client benchmark (`benches/predictor/slow_clients.sh`): opens STALLED
//! connections that each send the first line of a request and then nothing, and meanwhile sends
//! fresh requests, one after another on new connections. Reports when the server closed the
//! stalled sockets (against the header timeout it was given) and how the fresh requests fared.
//!
//!   slow_clients ADDR STALLED HEADER_TIMEOUT_SECONDS [PATH]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
};

/// What became of one stalled socket.
enum Stalled {
    ConnectFailed,
    /// Closed by the server (end of stream or reset) this long after its first line was sent.
    Closed(Duration),
    /// The server answered something instead of closing.
    Answered,
    StillOpen,
}

struct Fresh {
    ok: usize,
    failed: usize,
    latencies: Vec<Duration>,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn stall(addr: SocketAddr, path: String, give_up: Duration) -> Stalled {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return Stalled::ConnectFailed;
    };
    let first_line = format!("GET {path} HTTP/1.1\r\n");
    let sent = Instant::now();
    if stream.write_all(first_line.as_bytes()).await.is_err() {
        return Stalled::Closed(sent.elapsed());
    }
    let mut buf = [0u8; 512];
    match tokio::time::timeout(give_up, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Stalled::Closed(sent.elapsed()),
        Ok(Ok(_)) => Stalled::Answered,
        Err(_) => Stalled::StillOpen,
    }
}

/// One complete request on a new connection; `Some(latency)` for a 200.
async fn fresh_request(addr: SocketAddr, path: &str) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    answer
        .starts_with(b"HTTP/1.1 200")
        .then(|| started.elapsed())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: slow_clients ADDR STALLED HEADER_TIMEOUT_SECONDS [PATH]");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR such as 127.0.0.1:8080");
    let count: usize = args[2].parse().expect("STALLED: a number of sockets");
    let timeout = Duration::from_secs_f64(args[3].parse().expect("HEADER_TIMEOUT_SECONDS"));
    let path = args
        .get(4)
        .cloned()
        .unwrap_or_else(|| "/v1/predict?user=1&item=1".into());
    let give_up = timeout * 3 + Duration::from_secs(5);

    let mut stalled = JoinSet::new();
    for _ in 0..count {
        stalled.spawn(stall(addr, path.clone(), give_up));
    }

    let mut fresh = Fresh {
        ok: 0,
        failed: 0,
        latencies: Vec::new(),
    };
    // Fresh requests every 20 ms until every stalled socket has an outcome.
    let mut outcomes = Vec::with_capacity(count);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            joined = stalled.join_next() => match joined {
                Some(outcome) => outcomes.push(outcome.expect("a stalled socket's task")),
                None => break,
            },
            _ = tick.tick() => match fresh_request(addr, &path).await {
                Some(latency) => {
                    fresh.ok += 1;
                    fresh.latencies.push(latency);
                }
                None => fresh.failed += 1,
            },
        }
    }
    report(outcomes, fresh, count, timeout);
}

fn report(outcomes: Vec<Stalled>, mut fresh: Fresh, count: usize, timeout: Duration) {
    let mut closed = Vec::new();
    let (mut failed, mut answered, mut open) = (0, 0, 0);
    for outcome in outcomes {
        match outcome {
            Stalled::ConnectFailed => failed += 1,
            Stalled::Closed(after) => closed.push(after),
            Stalled::Answered => answered += 1,
            Stalled::StillOpen => open += 1,
        }
    }
    closed.sort();
    fresh.latencies.sort();
    let within = closed
        .iter()
        .filter(|&&t| t <= timeout + Duration::from_secs(1))
        .count();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!("| stalled sockets | {count}, opened at once |");
    println!("|---|---|");
    println!(
        "| closed by the server | {} ({within} within the header timeout of {:?} + 1 s) |",
        closed.len(),
        timeout
    );
    println!(
        "| time to close: min / p50 / p99 / max | {} / {} / {} / {} |",
        ms(closed.first().copied().unwrap_or_default()),
        ms(percentile(&closed, 0.5)),
        ms(percentile(&closed, 0.99)),
        ms(closed.last().copied().unwrap_or_default())
    );
    println!(
        "| answered instead of closed / still open / connect failed | {answered} / {open} / {failed} |"
    );
    println!(
        "| fresh requests meanwhile: 200 / failed | {} / {} |",
        fresh.ok, fresh.failed
    );
    println!(
        "| fresh request latency: p50 / p99 / max | {} / {} / {} |",
        ms(percentile(&fresh.latencies, 0.5)),
        ms(percentile(&fresh.latencies, 0.99)),
        ms(fresh.latencies.last().copied().unwrap_or_default())
    );
}
