//! Both HTTP routers, driven in-process with `tower::ServiceExt::oneshot`.

use super::*;
use axum::body::Body;
use axum::http::header;
use gatehouse_ratelimit_core::{Limiter, LimiterSettings, MemoryStore};
use gatehouse_service_kit::Shutdown;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

use crate::config_dir::LiveConfig;
use crate::metrics::Metrics;
use crate::settings::{FailurePolicy, RuntimeSettings};

const LIMITS: &str = "domain: edge\ndescriptors:\n  - key: user\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n";

const TEXT: &str = "text/plain; charset=utf-8";

struct Fixture {
    state: AppState,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("config")).unwrap();
    std::fs::write(dir.path().join("config/edge.yaml"), LIMITS).unwrap();
    let live = LiveConfig::load(RuntimeSettings::in_dir(dir.path())).unwrap();
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry, 10));
    metrics.config_load_success.inc();
    let store = Arc::new(Backend::Memory(MemoryStore::new()));
    let handler = Arc::new(RlsHandler {
        live: Arc::new(live),
        limiter: Limiter::new(LimiterSettings::default()),
        store: store.clone(),
        metrics,
        failure_policy: FailurePolicy::Error,
    });
    let shutdown = Shutdown::new();
    let side = SidePort::new(Arc::new(registry), shutdown.clone(), StoreReadiness(store));
    Fixture {
        state: AppState { handler, side },
        shutdown,
        _dir: dir,
    }
}

/// Status, body and content type of one request.
async fn send(
    router: &Router,
    method: &str,
    path: &str,
    body: &str,
) -> (StatusCode, String, String) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
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

async fn get(router: &Router, path: &str) -> (StatusCode, String, String) {
    send(router, "GET", path, "").await
}

#[tokio::test]
async fn health_endpoints_answer_until_draining() {
    let f = fixture();
    let router = router(f.state.clone());
    assert_eq!(
        get(&router, "/healthz").await,
        (StatusCode::OK, "ok\n".into(), TEXT.into())
    );
    assert_eq!(
        get(&router, "/readyz").await,
        (StatusCode::OK, "ready\n".into(), TEXT.into())
    );
    assert_eq!(
        get(&router, "/healthcheck").await,
        (StatusCode::OK, "OK".into(), TEXT.into())
    );

    f.shutdown.drain(async {}).await;
    assert_eq!(
        get(&router, "/readyz").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: draining\n".into(),
            TEXT.into()
        )
    );
    assert_eq!(
        get(&router, "/healthcheck").await,
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            String::new(),
            String::new()
        )
    );
    assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn json_answers_as_the_reference_does() {
    let f = fixture();
    let router = router(f.state);
    let ann = r#"{"domain":"edge","descriptors":[{"entries":[{"key":"user","value":"ann"}]}]}"#;
    let (status, body, content_type) = send(&router, "POST", "/json", ann).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/json")
    );
    let mut body: Value = serde_json::from_str(&body).unwrap();
    // protojson's Duration: whole seconds and an `s`.
    let reset = body["statuses"][0]["durationUntilReset"].take();
    assert!(reset.as_str().is_some_and(|r| r.ends_with('s')), "{reset}");
    assert_eq!(
        body,
        json!({
            "overallCode": "OK",
            "statuses": [{
                "code": "OK",
                "currentLimit": { "requestsPerUnit": 1, "unit": "MINUTE" },
                "durationUntilReset": null,
            }],
        })
    );
    let (status, body, _) = send(&router, "POST", "/json", ann).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["overallCode"], "OVER_LIMIT");
    assert_eq!(body["responseHeadersToAdd"][0]["key"], "retry-after");

    for (request, message) in [
        ("{", "request body: "),
        (
            r#"{"domain":"edge","descriptors":[{"entries":[{"key":"user","value":"x"}],"limit":{"requests_per_unit":1,"unit":"FORTNIGHT"}}]}"#,
            "descriptors[0].limit.unit: unknown unit",
        ),
        (
            r#"{"domain":"edge","descriptors":[{"entries":[],"hits_addend":"many"}]}"#,
            "descriptors[0].hits_addend: not a number",
        ),
    ] {
        let (status, body, _) = send(&router, "POST", "/json", request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{request}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], "invalid_request");
        assert!(
            body["message"].as_str().unwrap().starts_with(message),
            "{body}"
        );
    }
}

#[tokio::test]
async fn metrics_are_served_on_both_ports() {
    let f = fixture();
    for router in [router(f.state.clone()), debug_router(f.state.clone())] {
        let (status, body, content_type) = get(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        assert!(
            body.contains("gatehouse_ratelimit_config_load_success_total 1\n"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn the_debug_port_dumps_the_config_and_lists_its_pages() {
    let f = fixture();
    let debug = debug_router(f.state.clone());
    let (status, body, _) = get(&debug, "/rlconfig").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, f.state.handler.live.current().dump());
    assert!(body.contains("edge"), "{body}");
    assert_eq!(
        get(&debug, "/anything").await,
        (
            StatusCode::OK,
            "/metrics: print out metrics\n/rlconfig: print out the currently loaded configuration for debugging\n".into(),
            TEXT.into()
        )
    );
    // The main port has no debug pages, and no fallback.
    assert_eq!(
        get(&router(f.state), "/rlconfig").await.0,
        StatusCode::NOT_FOUND
    );
}
