//! Running the server: bind, load the model in the background, accept connections within their
//! bounds, serve until SIGTERM, drain. A store's version that is refused stops the server too:
//! the reason goes to the termination-message path (a [`Refusal`]) and the predictor exits, so
//! its pod never becomes ready and the pods of the previous version keep serving.
//!
//! Each connection is served by hyper's HTTP/1 connection with a timer, so a client must finish
//! its request headers within `--header-read-timeout` (hyper starts that clock at accept and
//! again after each response, so it also closes idle keep-alive connections); its socket is
//! wrapped in read and write timeouts (`--idle-timeout`) for clients that stop sending a body or
//! reading an answer; at most `--max-connections` are open, and one beyond is closed at accept.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    signal::unix::{SignalKind, signal},
    sync::{Semaphore, watch},
};
use tokio_io_timeout::TimeoutStream;

use recommender_contract::refusal::{REFUSAL_FORMAT, Refusal};

use crate::{
    config::Config, error::Error, metrics::ConnectionTimeout, reload, rollout, routes::router,
    state::AppState,
};

/// Serves until SIGTERM or SIGINT, then stops accepting, lets requests in flight finish and
/// returns. The listener is up before the model is loaded, so liveness answers at once while
/// readiness waits for a verified model. A refused store version ends it early with
/// [`Error::Load`], after its [`Refusal`] is written to `--termination-log`.
pub async fn run(config: Config) -> Result<(), Error> {
    let state = match AppState::new(&config) {
        Ok(state) => state,
        Err(Error::Load(e)) => {
            // The store's flags or key pair: nothing was fetched, so say what was asked for.
            let refusal = Refusal {
                format: REFUSAL_FORMAT,
                reason: e.reason,
                version: config.model_version.clone().unwrap_or_default(),
                artifact: config.store.store.clone().unwrap_or_default(),
                message: e.message.clone(),
            };
            tracing::error!(reason = e.reason.as_str(), error = %e, "model refused");
            write_refusal(&config, &refusal);
            return Err(Error::Load(e));
        }
        Err(e) => return Err(e),
    };
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    let listener = listen(config.listen, config.max_connections).map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    tracing::info!(addr = %config.listen, model = %state.source.location(), "listening");

    let (stop_watcher, stopped) = watch::channel(false);
    if let Some(path) = &config.rollout_config {
        tokio::spawn(rollout::watch_config(
            Arc::clone(&state),
            path.clone(),
            config.rollout_poll,
            stopped.clone(),
        ));
    }
    let mut watcher = tokio::spawn(reload::watch_model(
        Arc::clone(&state),
        config.reload_poll,
        stopped,
    ));
    // The watcher ends before a signal only when it cannot go on: a refused store version.
    let mut ended = None;
    let shutdown = async {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
            _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
            result = &mut watcher => ended = Some(result),
        }
    };
    serve(listener, Arc::clone(&state), shutdown).await;
    let result = match ended {
        Some(result) => result,
        None => {
            let _ = stop_watcher.send(true);
            watcher.await
        }
    };
    match result {
        Ok(Err(Error::Load(e))) => {
            write_refusal(&config, &state.source.refusal(&e));
            return Err(Error::Load(e));
        }
        Ok(result) => result?,
        Err(e) => tracing::warn!(error = %e, "model watcher ended abnormally"),
    }
    tracing::info!("drained; exiting");
    Ok(())
}

/// The predictor's last word, for the operator (docs/contracts.md). Outside a container the
/// path may not be writable: the log has said it all already.
fn write_refusal(config: &Config, refusal: &Refusal) {
    if let Err(e) = std::fs::write(&config.termination_log, refusal.to_json()) {
        tracing::warn!(path = %config.termination_log.display(), error = %e, "cannot write the termination message");
    }
}

/// Binds with a listen queue as long as the connection bound: a burst of new connections waits
/// in the kernel's queue (capped by `net.core.somaxconn`) instead of overflowing a short one
/// into a one-second SYN retry.
fn listen(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Accepts connections on `listener` until `shutdown` completes, then closes the listener, lets
/// the requests in progress finish and returns once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = &state.limits;
    let app = router(Arc::clone(&state));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        // The read buffer need not hold more than the headers: bodies stream through it.
        .max_buf_size(limits.max_header_bytes);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Closed at once, so the client can try another replica instead of waiting.
            state.metrics.connections_rejected.inc();
            drop(tcp);
            continue;
        };
        let io = TokioIo::new(Box::pin(with_idle_timeout(tcp, limits.idle_timeout)));
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http.serve_connection(io, service));
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            state.metrics.connections.inc();
            if let Err(e) = connection.await {
                closed_with(&state, &e);
            }
            state.metrics.connections.dec();
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

fn with_idle_timeout(tcp: TcpStream, idle: Duration) -> TimeoutStream<TcpStream> {
    // Small responses go out in one write; Nagle would only delay them.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY");
    }
    let mut io = TimeoutStream::new(tcp);
    io.set_read_timeout(Some(idle));
    io.set_write_timeout(Some(idle));
    io
}

/// Counts the timeouts; other errors are the client's business (a reset, a malformed request
/// hyper already answered).
fn closed_with(state: &AppState, error: &hyper::Error) {
    let idle = std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut);
    let timeout = if error.is_timeout() {
        Some(ConnectionTimeout::Header)
    } else if idle {
        Some(ConnectionTimeout::Idle)
    } else {
        None
    };
    match timeout {
        Some(timeout) => state.metrics.connection_timeout(timeout).inc(),
        None => tracing::debug!(error = %error, "connection closed with an error"),
    }
}

/// A failed accept: errors of that one connection need no pause; anything else (out of file
/// descriptors) would fail again at once, so wait a little rather than spin.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %error, "accepting a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
