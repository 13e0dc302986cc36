//! HTTP side ports: the reference's `/json` and `/healthcheck`, and the
//! service kit's `/healthz`, `/readyz` and `/metrics`; on the debug port,
//! `/rlconfig` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use gatehouse_ratelimit_core::{Code, Decision, Descriptor, LimitOverride, Request, Unit};
use gatehouse_service_kit::{Readiness, SidePort};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::service::{CheckError, RlsHandler};
use crate::store::Backend;

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The decision handler.
    pub handler: Arc<RlsHandler>,
    /// Metrics, draining and the store's readiness.
    pub side: SidePort<StoreReadiness>,
}

/// Ready while the counter store answers.
#[derive(Debug, Clone)]
pub struct StoreReadiness(pub Arc<Backend>);

impl Readiness for StoreReadiness {
    async fn check(&self) -> Result<(), &'static str> {
        if self.0.is_ready().await {
            Ok(())
        } else {
            Err("counter store unreachable")
        }
    }
}

/// The main HTTP port (`PORT`).
pub fn router(state: AppState) -> Router {
    let side = state.side.clone();
    Router::new()
        .route("/json", any(json_check))
        .route("/healthcheck", get(healthcheck))
        .with_state(state)
        .merge(side.router())
}

/// The debug port (`DEBUG_PORT`).
pub fn debug_router(state: AppState) -> Router {
    let side = state.side.clone();
    Router::new()
        .route("/rlconfig", get(rlconfig))
        .with_state(state)
        .merge(side.metrics_router())
        .fallback(|| async {
            "/metrics: print out metrics\n/rlconfig: print out the currently loaded configuration for debugging\n"
        })
}

/// The reference's health check: 200 `OK`, or a bare 500.
async fn healthcheck(State(state): State<AppState>) -> Response {
    match state.side.is_ready().await {
        Ok(()) => (StatusCode::OK, "OK").into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn rlconfig(State(state): State<AppState>) -> String {
    state.handler.live.current().dump().to_owned()
}

// === /json: the reference's JSON form of ShouldRateLimit ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    descriptors: Vec<JsonDescriptor>,
    #[serde(default, alias = "hitsAddend")]
    hits_addend: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDescriptor {
    #[serde(default)]
    entries: Vec<JsonEntry>,
    #[serde(default)]
    limit: Option<JsonLimit>,
    #[serde(default, alias = "hitsAddend")]
    hits_addend: Option<JsonU64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLimit {
    #[serde(alias = "requestsPerUnit")]
    requests_per_unit: u32,
    unit: JsonUnit,
}

/// protojson writes 64-bit integers as strings; accept both.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonU64 {
    Number(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonUnit {
    Number(i32),
    Name(String),
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "code": "invalid_request", "message": message })),
    )
        .into_response()
}

async fn json_check(State(state): State<AppState>, body: Bytes) -> Response {
    let raw: JsonRequest = match serde_json::from_slice(&body) {
        Ok(raw) => raw,
        Err(e) => return bad_request(format!("request body: {e}")),
    };
    let mut descriptors = Vec::with_capacity(raw.descriptors.len());
    for (index, d) in raw.descriptors.into_iter().enumerate() {
        let mut descriptor =
            Descriptor::new(d.entries.into_iter().map(|e| (e.key, e.value)).collect());
        if let Some(limit) = d.limit {
            let unit = match &limit.unit {
                JsonUnit::Number(n) => Unit::from_proto_number(*n),
                JsonUnit::Name(name) => Unit::parse(name),
            };
            let Some(unit) = unit else {
                return bad_request(format!("descriptors[{index}].limit.unit: unknown unit"));
            };
            descriptor = descriptor.with_limit(LimitOverride {
                requests_per_unit: limit.requests_per_unit,
                unit,
            });
        }
        if let Some(hits) = d.hits_addend {
            let hits = match hits {
                JsonU64::Number(n) => n,
                JsonU64::Text(t) => match t.parse() {
                    Ok(n) => n,
                    Err(_) => {
                        return bad_request(format!(
                            "descriptors[{index}].hits_addend: not a number"
                        ));
                    }
                },
            };
            descriptor = descriptor.with_hits_addend(hits);
        }
        descriptors.push(descriptor);
    }
    let request = match Request::try_new(raw.domain, descriptors, u64::from(raw.hits_addend)) {
        Ok(r) => r,
        Err(e) => return bad_request(e.to_string()),
    };
    match state.handler.decide(&request).await {
        Ok(decision) => {
            let status = if decision.overall == Code::OverLimit {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::OK
            };
            (status, axum::Json(decision_json(&decision))).into_response()
        }
        Err(CheckError::Invalid(e)) => bad_request(e.to_string()),
        Err(CheckError::Store(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                json!({ "code": "store_unavailable", "message": "rate limit store unavailable" }),
            ),
        )
            .into_response(),
    }
}

/// protojson of a `RateLimitResponse`: camelCase, enums by name, defaults omitted.
fn decision_json(decision: &Decision) -> Value {
    let code = |c: Code| match c {
        Code::Ok => "OK",
        Code::OverLimit => "OVER_LIMIT",
    };
    let statuses: Vec<Value> = decision
        .statuses
        .iter()
        .map(|s| {
            let mut o = Map::new();
            o.insert("code".into(), code(s.code).into());
            if let Some(l) = &s.current_limit {
                let mut limit = Map::new();
                if !l.name.is_empty() {
                    limit.insert("name".into(), l.name.clone().into());
                }
                limit.insert("requestsPerUnit".into(), l.requests_per_unit.into());
                limit.insert("unit".into(), l.unit.to_string().into());
                o.insert("currentLimit".into(), limit.into());
            }
            if s.limit_remaining > 0 {
                o.insert("limitRemaining".into(), s.limit_remaining.into());
            }
            if s.duration_until_reset > 0 {
                o.insert(
                    "durationUntilReset".into(),
                    format!("{}s", s.duration_until_reset).into(),
                );
            }
            o.into()
        })
        .collect();
    let mut out = Map::new();
    out.insert("overallCode".into(), code(decision.overall).into());
    out.insert("statuses".into(), statuses.into());
    if !decision.response_headers.is_empty() {
        let headers: Vec<Value> = decision
            .response_headers
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        out.insert("responseHeadersToAdd".into(), headers.into());
    }
    out.into()
}

#[cfg(test)]
mod tests;
