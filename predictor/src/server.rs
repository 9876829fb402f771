//! Running the server: bind, load the model in the background, serve until SIGTERM, drain.

use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::watch,
};

use crate::{config::Config, error::Error, reload, routes::router, state::AppState};

/// Serves until SIGTERM or SIGINT, then stops accepting, lets requests in flight finish and
/// returns. The listener is up before the model is loaded, so liveness answers at once while
/// readiness waits for a verified model.
pub async fn run(config: Config) -> Result<(), Error> {
    let state = AppState::new(&config)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Bind {
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

    // Small responses go out in one write; Nagle would only delay them.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
            _ = interrupt.recv() => tracing::info!("SIGINT: draining"),
        }
    };
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve);
    let _ = stop_watcher.send(true);
    match watcher.await {
        Ok(result) => result?,
        Err(e) => tracing::warn!(error = %e, "model watcher ended abnormally"),
    }
    served?;
    tracing::info!("drained; exiting");
    Ok(())
}
