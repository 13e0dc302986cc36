//! The HTTP side port both services open beside gRPC: `/healthz` (alive),
//! `/readyz` (not draining, dependencies reachable) and `/metrics`
//! (Prometheus text). A service merges its own routes into [`SidePort::router`].

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::shutdown::Shutdown;

/// What a service depends on to serve, asked on every `/readyz`.
pub trait Readiness: Clone + Send + Sync + 'static {
    /// `Ok` when the dependencies serve; `Err` names the one that does not
    /// (it ends up in the `/readyz` body: `not ready: <reason>`).
    fn check(&self) -> impl Future<Output = Result<(), &'static str>> + Send;
}

/// A service whose configuration is loaded before its ports open, and that
/// needs nothing else: draining is its only way to stop being ready.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDependencies;

impl Readiness for NoDependencies {
    async fn check(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

/// The side port's state: the metrics registry, the shutdown (draining
/// turns readiness off) and the service's own [`Readiness`].
#[derive(Debug, Clone)]
pub struct SidePort<R> {
    registry: Arc<Registry>,
    shutdown: Shutdown,
    readiness: R,
}

/// The Prometheus text format's content type, as `prometheus-client` encodes it.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl<R: Readiness> SidePort<R> {
    /// The side port of a service with these metrics, shutdown and dependencies.
    pub fn new(registry: Arc<Registry>, shutdown: Shutdown, readiness: R) -> Self {
        Self {
            registry,
            shutdown,
            readiness,
        }
    }

    /// `/healthz`, `/readyz` and `/metrics`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz::<R>))
            .route("/metrics", get(metrics::<R>))
            .with_state(self)
    }

    /// `/metrics` alone, for a debug port.
    pub fn metrics_router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics::<R>))
            .with_state(self)
    }

    /// Whether the service is ready: not draining, and its dependencies serve.
    ///
    /// # Errors
    /// Why not: `draining`, or the reason [`Readiness::check`] gave.
    pub async fn is_ready(&self) -> Result<(), &'static str> {
        if self.shutdown.is_draining() {
            return Err("draining");
        }
        self.readiness.check().await
    }

    /// Every registered metric, in the OpenMetrics text format.
    pub fn metrics(&self) -> Response {
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            Ok(()) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

async fn readyz<R: Readiness>(State(side): State<SidePort<R>>) -> Response {
    match side.is_ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics<R: Readiness>(State(side): State<SidePort<R>>) -> Response {
    side.metrics()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use prometheus_client::metrics::counter::Counter;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tower::ServiceExt;

    /// A dependency switched by the test.
    #[derive(Debug, Clone, Default)]
    struct Switch(Arc<AtomicBool>);

    impl Readiness for Switch {
        async fn check(&self) -> Result<(), &'static str> {
            if self.0.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("store unreachable")
            }
        }
    }

    async fn get(router: Router, path: &str) -> (StatusCode, String, Option<String>) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            String::from_utf8(body.to_vec()).unwrap(),
            content_type,
        )
    }

    fn side(up: &Switch, shutdown: &Shutdown) -> SidePort<Switch> {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        counter.inc();
        registry
            .sub_registry_with_prefix("gatehouse_test")
            .register("loads", "Loads", counter);
        SidePort::new(Arc::new(registry), shutdown.clone(), up.clone())
    }

    #[tokio::test]
    async fn readyz_follows_dependencies_and_draining() {
        let (up, shutdown) = (Switch::default(), Shutdown::new());
        let router = side(&up, &shutdown).router();
        assert_eq!(
            get(router.clone(), "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: store unreachable\n".into(),
                Some("text/plain; charset=utf-8".into())
            )
        );
        up.0.store(true, Ordering::Relaxed);
        let (status, body, _) = get(router.clone(), "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
        shutdown.drain(async {}).await;
        let (status, body, _) = get(router.clone(), "/readyz").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "not ready: draining\n")
        );
        let (status, body, _) = get(router, "/healthz").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "ok\n"),
            "alive while draining"
        );
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text() {
        let side = side(&Switch::default(), &Shutdown::new());
        for router in [side.clone().router(), side.metrics_router()] {
            let (status, body, content_type) = get(router, "/metrics").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(content_type.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
            assert!(body.contains("gatehouse_test_loads_total 1\n"), "{body}");
            assert!(body.ends_with("# EOF\n"), "{body}");
        }
    }

    #[tokio::test]
    async fn unknown_paths_are_not_found() {
        let router = side(&Switch::default(), &Shutdown::new()).router();
        assert_eq!(get(router, "/json").await.0, StatusCode::NOT_FOUND);
    }
}
