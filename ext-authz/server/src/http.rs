//! The HTTP side port: `/healthz`, `/readyz`, `/metrics`, served by the
//! service kit's [`SidePort`].

use std::sync::Arc;

use axum::Router;
use gatehouse_service_kit::{NoDependencies, Shutdown, SidePort};
use prometheus_client::registry::Registry;

/// The side port's routes. The configuration is loaded before the port
/// opens, so draining is the only way to stop being ready.
pub fn router(registry: Arc<Registry>, shutdown: Shutdown) -> Router {
    SidePort::new(registry, shutdown, NoDependencies).router()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    async fn get(router: &Router, path: &str) -> (StatusCode, String, String) {
        let response = router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            String::from_utf8(body.to_vec()).unwrap(),
            content_type,
        )
    }

    fn side_port() -> (Router, Shutdown) {
        let mut registry = Registry::default();
        let metrics = crate::metrics::Metrics::register(&mut registry);
        metrics.config_load_success.inc();
        let shutdown = Shutdown::new();
        (router(Arc::new(registry), shutdown.clone()), shutdown)
    }

    #[tokio::test]
    async fn healthz_and_readyz_answer_until_draining() {
        let (router, shutdown) = side_port();
        let text = "text/plain; charset=utf-8";
        assert_eq!(
            get(&router, "/healthz").await,
            (StatusCode::OK, "ok\n".into(), text.into())
        );
        assert_eq!(
            get(&router, "/readyz").await,
            (StatusCode::OK, "ready\n".into(), text.into())
        );
        shutdown.drain(async {}).await;
        assert_eq!(
            get(&router, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: draining\n".into(),
                text.into()
            )
        );
        assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_carry_the_services_names() {
        let (router, _) = side_port();
        let (status, body, content_type) = get(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert!(
            body.contains("gatehouse_authz_config_load_success_total 1\n"),
            "{body}"
        );
        assert!(
            body.contains("# TYPE gatehouse_authz_check_seconds histogram\n"),
            "{body}"
        );
        assert_eq!(get(&router, "/nope").await.0, StatusCode::NOT_FOUND);
    }
}
