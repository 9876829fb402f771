//! Running the server: bind, load the model in the background, accept connections within their
//! bounds, serve until SIGTERM, drain.
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

use crate::{
    config::Config, error::Error, metrics::ConnectionTimeout, reload, routes::router,
    state::AppState,
};

/// Serves until SIGTERM or SIGINT, then stops accepting, lets requests in flight finish and
/// returns. The listener is up before the model is loaded, so liveness answers at once while
/// readiness waits for a verified model.
pub async fn run(config: Config) -> Result<(), Error> {
    let state = AppState::new(&config)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    let listener = listen(config.listen, config.max_connections).map_err(|source| Error::Bind {
        addr: config.listen,
        source,
    })?;
    tracing::info!(addr = %config.listen, model = %config.model.display(), "listening");

    let (stop_watcher, stopped) = watch::channel(false);
    let watcher = tokio::spawn(reload::watch_model(
        Arc::clone(&state),
        config.reload_poll,
        stopped,
    ));
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
            _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
        }
    };
    serve(listener, state, shutdown).await;
    let _ = stop_watcher.send(true);
    match watcher.await {
        Ok(result) => result?,
        Err(e) => tracing::warn!(error = %e, "model watcher ended abnormally"),
    }
    tracing::info!("drained; exiting");
    Ok(())
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
