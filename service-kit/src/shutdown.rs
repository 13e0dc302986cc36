//! Clean shutdown: on SIGTERM or SIGINT, stop being ready, then stop the
//! servers, which finish the requests they have (graceful shutdown).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// The shutdown of one process: a `draining` flag readiness reads, and a
/// signal every server waits on ([`stopped`](Self::stopped)).
#[derive(Debug, Clone)]
pub struct Shutdown {
    draining: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// Not draining, nothing stopped.
    #[must_use]
    pub fn new() -> Self {
        Self {
            draining: Arc::new(AtomicBool::new(false)),
            stop: watch::Sender::new(false),
        }
    }

    /// Whether a termination signal came: readiness turns off so load
    /// balancers move away while the requests in flight finish.
    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Resolves once the servers are to stop: pass it to each server's
    /// graceful shutdown.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }
    }

    /// Starts draining and stops the servers, after `before_stop` (a service
    /// reports not serving on gRPC health there).
    pub async fn drain(&self, before_stop: impl Future<Output = ()>) {
        tracing::info!("termination signal: draining");
        self.draining.store(true, Ordering::Relaxed);
        before_stop.await;
        // Stored even when no server waits yet: a later `stopped()` sees it.
        self.stop.send_replace(true);
    }

    /// Waits for SIGTERM or SIGINT, then [`drain`](Self::drain)s.
    pub async fn on_signal(&self, before_stop: impl Future<Output = ()>) {
        wait_for_termination().await;
        self.drain(before_stop).await;
    }
}

/// Resolves on SIGTERM or SIGINT (on SIGINT alone when SIGTERM cannot be
/// listened for).
pub async fn wait_for_termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_comes_first_then_every_server_stops() {
        let shutdown = Shutdown::new();
        let (one, two) = (shutdown.stopped(), shutdown.stopped());
        assert!(!shutdown.is_draining());
        let seen = shutdown.clone();
        shutdown
            .drain(async move { assert!(seen.is_draining(), "draining before the stop") })
            .await;
        // Both resolve (a timeout would mean a server never stops).
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            one.await;
            two.await;
        })
        .await
        .unwrap();
        assert!(shutdown.is_draining());
        // Waiting after the stop resolves at once.
        shutdown.stopped().await;
    }
}
