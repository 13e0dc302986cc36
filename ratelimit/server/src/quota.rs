//! The Rate Limit Quota Service (RLQS) gRPC handler: Envoy's
//! `rate_limit_quota` filter streams usage reports, and every report is
//! answered with the current assignment of each bucket it names. The
//! decisions are the core's (`gatehouse_ratelimit_core::quota`); here: the
//! streams, and which Envoys report which bucket.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::r#type::v3::rate_limit_strategy::{BlanketRule, Strategy};
use envoy_types::pb::envoy::r#type::v3::{RateLimitStrategy, TokenBucket};
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_response::BucketAction;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_response::bucket_action::{
    BucketAction as Action, QuotaAssignmentAction,
};
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_service_server::RateLimitQuotaService;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::{
    BucketId, RateLimitQuotaResponse, RateLimitQuotaUsageReports,
};
use envoy_types::pb::google::protobuf::{Duration as WireDuration, UInt32Value};
use gatehouse_ratelimit_core::quota::{self, Assignment};
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use gatehouse_service_kit::Shutdown;

use crate::config_dir::LiveConfig;

/// How long an assignment holds without being renewed. Every report renews
/// it, so it only runs out when the server stops answering; Envoy then
/// applies the bucket's `expired_assignment_behavior`.
pub const ASSIGNMENT_TTL: Duration = Duration::from_secs(30);

/// An Envoy that has not reported a bucket for this long no longer holds a
/// share of it.
const REPORTER_STALE: Duration = Duration::from_secs(30);

/// A bucket: a keyed hash of the domain and its descriptor. Bucket values
/// can be client values of any length; the service keeps 8 bytes of each,
/// and the random key leaves no way to aim two buckets at one slot.
type BucketKey = u64;

/// Every this many reports, buckets nobody reports any more are forgotten:
/// bucket ids can carry client values, so the map must not only grow.
const SWEEP_EVERY: u64 = 1024;

/// Which stream (one per Envoy) reported which bucket, and when.
#[derive(Debug, Default)]
struct Reporters {
    buckets: Mutex<Buckets>,
    hasher: std::hash::RandomState,
}

#[derive(Debug, Default)]
struct Buckets {
    reporters: HashMap<BucketKey, HashMap<u64, Instant>>,
    reports: u64,
}

impl Reporters {
    /// The key of `descriptor`'s bucket in `domain`.
    fn key(&self, domain: &str, descriptor: &gatehouse_ratelimit_core::Descriptor) -> BucketKey {
        use std::hash::BuildHasher as _;
        self.hasher.hash_one((domain, descriptor.entries()))
    }

    /// Notes `stream` as a reporter of `bucket` and returns how many fresh
    /// reporters the bucket has.
    fn report(&self, bucket: BucketKey, stream: u64, now: Instant) -> u32 {
        let fresh = |seen: &Instant| now.duration_since(*seen) < REPORTER_STALE;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.reports += 1;
        if buckets.reports.is_multiple_of(SWEEP_EVERY) {
            buckets.reporters.retain(|_, streams| {
                streams.retain(|_, seen| fresh(seen));
                !streams.is_empty()
            });
        }
        let streams = buckets.reporters.entry(bucket).or_default();
        streams.insert(stream, now);
        streams.retain(|_, seen| fresh(seen));
        u32::try_from(streams.len()).unwrap_or(u32::MAX)
    }

    /// How many buckets are tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reporters
            .len()
    }

    /// Forgets a stream that ended.
    fn leave(&self, stream: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.reporters.retain(|_, streams| {
            streams.remove(&stream);
            !streams.is_empty()
        });
    }
}

/// The tonic service.
#[derive(Debug, Clone)]
pub struct QuotaService {
    live: Arc<LiveConfig>,
    /// Streams end when the service drains, so a shutdown never waits on
    /// Envoy's long-lived streams (Envoy reconnects to another replica).
    shutdown: Shutdown,
    reporters: Arc<Reporters>,
    next_stream: Arc<AtomicU64>,
}

impl QuotaService {
    /// A service answering from the configuration in force.
    pub fn new(live: Arc<LiveConfig>, shutdown: Shutdown) -> Self {
        Self {
            live,
            shutdown,
            reporters: Arc::default(),
            next_stream: Arc::default(),
        }
    }

    /// The answer to one report of stream `stream`: an assignment for every
    /// bucket whose id carries a descriptor (a malformed id gets none, so
    /// Envoy keeps its `no_assignment_behavior`).
    fn answer(
        &self,
        stream: u64,
        domain: &str,
        report: &RateLimitQuotaUsageReports,
    ) -> RateLimitQuotaResponse {
        let config = self.live.current();
        let now = Instant::now();
        let bucket_action = report
            .bucket_quota_usages
            .iter()
            .filter_map(|usage| {
                let id = usage.bucket_id.as_ref()?;
                let descriptor =
                    match quota::descriptor_of(id.bucket.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::warn!(error = %e, domain, "bucket without a descriptor, left to Envoy's no_assignment_behavior");
                            return None;
                        }
                    };
                let key = self.reporters.key(domain, &descriptor);
                let envoys = self.reporters.report(key, stream, now);
                let assignment = quota::assignment(&config, domain, &descriptor, envoys);
                Some(BucketAction {
                    bucket_id: Some(BucketId {
                        bucket: id.bucket.clone(),
                    }),
                    bucket_action: Some(Action::QuotaAssignmentAction(QuotaAssignmentAction {
                        assignment_time_to_live: Some(wire_duration(ASSIGNMENT_TTL)),
                        rate_limit_strategy: Some(strategy(assignment)),
                    })),
                })
            })
            .collect();
        RateLimitQuotaResponse { bucket_action }
    }
}

fn wire_duration(d: Duration) -> WireDuration {
    WireDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// The wire strategy of an assignment.
fn strategy(assignment: Assignment) -> RateLimitStrategy {
    let strategy = match assignment {
        Assignment::AllowAll => Strategy::BlanketRule(BlanketRule::AllowAll as i32),
        Assignment::TokenBucket {
            max_tokens,
            tokens_per_fill,
            fill_interval_secs,
        } => Strategy::TokenBucket(TokenBucket {
            max_tokens,
            tokens_per_fill: Some(UInt32Value {
                value: tokens_per_fill,
            }),
            fill_interval: Some(wire_duration(Duration::from_secs(fill_interval_secs))),
        }),
    };
    RateLimitStrategy {
        strategy: Some(strategy),
    }
}

/// The assignments sent on one stream.
pub struct Assignments(tokio::sync::mpsc::Receiver<Result<RateLimitQuotaResponse, Status>>);

impl Stream for Assignments {
    type Item = Result<RateLimitQuotaResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[tonic::async_trait]
impl RateLimitQuotaService for QuotaService {
    type StreamRateLimitQuotasStream = Assignments;

    async fn stream_rate_limit_quotas(
        &self,
        request: Request<Streaming<RateLimitQuotaUsageReports>>,
    ) -> Result<Response<Assignments>, Status> {
        let mut reports = request.into_inner();
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let service = self.clone();
        tokio::spawn(async move {
            // The first report names the domain; later ones may leave it empty.
            let mut domain = String::new();
            let stopped = service.shutdown.stopped();
            tokio::pin!(stopped);
            loop {
                let report = tokio::select! {
                    report = reports.message() => report,
                    () = &mut stopped => break,
                };
                match report {
                    Ok(Some(report)) => {
                        if !report.domain.is_empty() {
                            domain.clone_from(&report.domain);
                        }
                        if domain.is_empty() {
                            let _ = tx
                                .send(Err(Status::invalid_argument(
                                    "the first usage report must name its domain",
                                )))
                                .await;
                            break;
                        }
                        let answer = service.answer(stream, &domain, &report);
                        if !answer.bucket_action.is_empty() && tx.send(Ok(answer)).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "usage report stream ended");
                        break;
                    }
                }
            }
            service.reporters.leave(stream);
        });
        Ok(Response::new(Assignments(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(reporters: &Reporters, value: &str) -> BucketKey {
        reporters.key(
            "edge",
            &gatehouse_ratelimit_core::Descriptor::from_pairs(&[("user", value)]),
        )
    }

    #[test]
    fn a_bucket_counts_the_envoys_that_reported_it_lately() {
        let reporters = Reporters::default();
        let start = Instant::now();
        assert_eq!(reporters.report(key(&reporters, "a"), 1, start), 1);
        assert_eq!(reporters.report(key(&reporters, "a"), 2, start), 2);
        assert_eq!(
            reporters.report(key(&reporters, "a"), 2, start),
            2,
            "one stream is one Envoy"
        );
        // Stream 1 went quiet: after the stale time only stream 2 holds a share.
        let later = start + REPORTER_STALE + Duration::from_secs(1);
        assert_eq!(reporters.report(key(&reporters, "a"), 2, later), 1);
        reporters.leave(2);
        assert_eq!(reporters.len(), 0);
    }

    #[test]
    fn buckets_nobody_reports_are_forgotten() {
        let reporters = Reporters::default();
        let start = Instant::now();
        for n in 0..SWEEP_EVERY - 1 {
            reporters.report(key(&reporters, &n.to_string()), 1, start);
        }
        assert_eq!(
            reporters.len(),
            usize::try_from(SWEEP_EVERY - 1).unwrap_or(0)
        );
        // The sweep at the next report drops every stale bucket.
        let later = start + REPORTER_STALE + Duration::from_secs(1);
        reporters.report(key(&reporters, "fresh"), 1, later);
        assert_eq!(reporters.len(), 1);
    }
}
