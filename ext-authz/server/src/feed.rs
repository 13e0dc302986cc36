//! The SSO fast path's feed, served on a Unix socket only Envoy and this
//! service share (`feed_socket`): `GET /feed` answers every fast-path
//! filter's ticket keys and recent revocations as JSON
//! (`gatehouse_session_core::Feed`). The keys never travel over a network
//! port, sit in Envoy's configuration or reach a log.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gatehouse_service_kit::Shutdown;
use gatehouse_session_core::Feed;

use crate::load::LiveFilters;
use crate::oidc::now_secs;

/// The feed's routes.
pub fn router(live: Arc<LiveFilters>) -> Router {
    Router::new().route("/feed", get(feed)).with_state(live)
}

async fn feed(State(live): State<Arc<LiveFilters>>) -> Response {
    let snapshot = live.current_full();
    let now = now_secs();
    let mut out = Feed::default();
    for (name, runtime) in &snapshot.oidc {
        match runtime.feed_part(now).await {
            None => {}
            Some(Ok(part)) => {
                out.filters.insert(name.clone(), part);
            }
            Some(Err(e)) => {
                // No feed rather than one without the store's revocations.
                tracing::warn!(error = %e, filter = %name, "feed not served: session store unreachable");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
    }
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        out.to_json(),
    )
        .into_response()
}

/// Binds the feed's socket at `path`: a stale socket file left by an
/// earlier run is replaced (anything else at the path is refused), and the
/// socket is readable and writable by this user only.
pub fn bind(path: &Path) -> Result<tokio::net::UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?,
        Ok(_) => bail!(
            "feed_socket {} exists and is not a socket: refusing to replace it",
            path.display()
        ),
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding the feed socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    tracing::info!(socket = %path.display(), "fast-path feed listening");
    Ok(listener)
}

/// Serves the feed on `listener` until shutdown, then removes the socket.
pub async fn serve(
    listener: tokio::net::UnixListener,
    live: Arc<LiveFilters>,
    shutdown: Shutdown,
) -> Result<()> {
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    let served = axum::serve(listener, router(live))
        .with_graceful_shutdown(shutdown.stopped())
        .await
        .context("feed server");
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
    served
}
