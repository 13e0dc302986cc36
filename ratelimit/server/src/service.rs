//! The `RateLimitService` gRPC handler: wire types in, core decision, wire types out.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code as WireCode, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as WireDuration;
use gatehouse_ratelimit_core::{
    Code, Decision, Descriptor, LimitOverride, Limiter, Request, RequestError, StoreError, Unit,
};
use tonic::{Response, Status};

use crate::config_dir::LiveConfig;
use crate::metrics::Metrics;
use crate::settings::FailurePolicy;
use crate::store::Backend;

/// Decides `ShouldRateLimit` calls.
#[derive(Debug)]
pub struct RlsHandler {
    /// The configuration in force.
    pub live: Arc<LiveConfig>,
    /// The limiter.
    pub limiter: Limiter,
    /// The counter store.
    pub store: Arc<Backend>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// What a store failure means.
    pub failure_policy: FailurePolicy,
}

/// Why a call could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The request is malformed.
    #[error(transparent)]
    Invalid(#[from] RequestError),
    /// The store failed and the policy is to report it.
    #[error("rate limit store unavailable")]
    Store(#[source] StoreError),
}

impl From<CheckError> for Status {
    fn from(err: CheckError) -> Self {
        match err {
            CheckError::Invalid(e) => Self::invalid_argument(e.to_string()),
            // UNAVAILABLE lets Envoy's failure_mode_deny decide; the cause is
            // logged once where it happens, not sent.
            CheckError::Store(_) => Self::unavailable("rate limit store unavailable"),
        }
    }
}

/// Translates a wire request into the core's validated request.
pub fn to_request(wire: RateLimitRequest) -> Result<Request, RequestError> {
    let descriptors = wire
        .descriptors
        .into_iter()
        .enumerate()
        .map(|(index, d)| to_descriptor(index, d))
        .collect::<Result<Vec<_>, _>>()?;
    Request::try_new(wire.domain, descriptors, u64::from(wire.hits_addend))
}

fn to_descriptor(index: usize, wire: RateLimitDescriptor) -> Result<Descriptor, RequestError> {
    let mut d = Descriptor::new(wire.entries.into_iter().map(|e| (e.key, e.value)).collect());
    if let Some(limit) = wire.limit {
        // envoy.type.v3.RateLimitUnit numbers SECOND..YEAR as the response enum does.
        let unit =
            Unit::from_proto_number(limit.unit).ok_or(RequestError::BadOverrideUnit { index })?;
        d = d.with_limit(LimitOverride {
            requests_per_unit: limit.requests_per_unit,
            unit,
        });
    }
    if let Some(hits) = wire.hits_addend {
        d = d.with_hits_addend(hits.value);
    }
    Ok(d)
}

/// Translates a decision to the wire response.
pub fn to_response(decision: &Decision) -> RateLimitResponse {
    let code = |c: Code| match c {
        Code::Ok => WireCode::Ok as i32,
        Code::OverLimit => WireCode::OverLimit as i32,
    };
    RateLimitResponse {
        overall_code: code(decision.overall),
        statuses: decision
            .statuses
            .iter()
            .map(|s| DescriptorStatus {
                code: code(s.code),
                current_limit: s.current_limit.as_ref().map(|l| RateLimit {
                    name: l.name.clone(),
                    requests_per_unit: l.requests_per_unit,
                    unit: l.unit.proto_number(),
                }),
                limit_remaining: s.limit_remaining,
                duration_until_reset: (s.duration_until_reset > 0).then(|| WireDuration {
                    seconds: i64::try_from(s.duration_until_reset).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                ..Default::default()
            })
            .collect(),
        response_headers_to_add: wire_headers(&decision.response_headers),
        request_headers_to_add: wire_headers(&decision.request_headers),
        raw_body: decision.body.clone().unwrap_or_default().into_bytes(),
        ..Default::default()
    }
}

fn wire_headers(headers: &[(String, String)]) -> Vec<HeaderValue> {
    headers
        .iter()
        .map(|(key, value)| HeaderValue {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RlsHandler {
    /// Decides one validated request, applying the failure policy.
    pub async fn decide(&self, request: &Request) -> Result<Decision, CheckError> {
        let started = Instant::now();
        let config = self.live.current();
        let result = self
            .limiter
            .check(&config, request, self.store.as_ref(), now_ms())
            .await;
        self.metrics
            .decision_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(decision) => {
                tracing::debug!(domain = request.domain(), overall = ?decision.overall, "decided");
                self.metrics.record(
                    request.domain(),
                    decision.overall,
                    decision.outcomes.clone(),
                );
                Ok(decision)
            }
            Err(e) => {
                self.metrics.record_error();
                tracing::warn!(error = %e, domain = request.domain(), "counter store failed");
                match self.failure_policy {
                    FailurePolicy::Error => Err(CheckError::Store(e)),
                    FailurePolicy::Allow => Ok(Decision {
                        overall: Code::Ok,
                        statuses: request
                            .descriptors()
                            .iter()
                            .map(|_| gatehouse_ratelimit_core::Status {
                                code: Code::Ok,
                                current_limit: None,
                                limit_remaining: 0,
                                duration_until_reset: 0,
                            })
                            .collect(),
                        response_headers: Vec::new(),
                        request_headers: Vec::new(),
                        body: None,
                        outcomes: Vec::new(),
                    }),
                }
            }
        }
    }
}

/// The tonic service: a shared handle on the handler (the HTTP `/json` port
/// shares the same handler).
#[derive(Debug, Clone)]
pub struct RlsService(pub Arc<RlsHandler>);

#[tonic::async_trait]
impl RateLimitService for RlsService {
    #[tracing::instrument(skip_all, fields(domain))]
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let wire = request.into_inner();
        tracing::Span::current().record("domain", wire.domain.as_str());
        let request = to_request(wire).map_err(|e| {
            self.0.metrics.invalid_requests.inc();
            tracing::debug!(error = %e, "malformed request");
            CheckError::Invalid(e)
        })?;
        let decision = self.0.decide(&request).await?;
        Ok(Response::new(to_response(&decision)))
    }
}
