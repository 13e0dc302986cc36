//! The Rate Limit Quota Service (RLQS) gRPC handler: Envoy's
//! `rate_limit_quota` filter streams usage reports, and every report is
//! answered with the reporter's share of each bucket it names. Here: the
//! streams, measuring each Envoy's demand from its reports, and pushing a
//! new share to the other Envoys on this replica when a report moves it.
//! The split is the core's (`gatehouse_ratelimit_core::quota::split`); the
//! claims it splits by live in the store (`crate::demand`), so replicas
//! sharing Redis split from the same figures.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
use gatehouse_ratelimit_core::demand::{DemandReport, DemandStore as _};
use gatehouse_ratelimit_core::quota::{self, Assignment, Claim};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use gatehouse_service_kit::Shutdown;

use crate::config_dir::LiveConfig;
use crate::demand::Demands;
use crate::metrics::Metrics;

/// How long an assignment holds without being renewed. Every report renews
/// it, so it only runs out when the server stops answering; Envoy then
/// applies the bucket's `expired_assignment_behavior`.
pub const ASSIGNMENT_TTL: Duration = Duration::from_secs(30);

/// A demand measured over less than this is no measure: Envoy's first
/// report of a bucket comes with its first request, and its next one may
/// follow at once on the reporting timer. Until then an Envoy claims an
/// even share.
const MIN_MEASURED: Duration = Duration::from_secs(1);

/// What goes back on one stream.
type Outgoing = mpsc::Sender<Result<RateLimitQuotaResponse, Status>>;

/// A stream (one Envoy) connected to this replica.
#[derive(Debug)]
struct LocalStream {
    tx: Outgoing,
    /// Its buckets by their key: several bucket ids can fall under one key
    /// (a `share_threshold` wildcard makes them share a counter, and so a
    /// quota).
    buckets: HashMap<String, Held>,
}

#[derive(Debug)]
struct Held {
    ids: Vec<BucketId>,
    last_report: Option<Instant>,
    /// The share last sent for the key, in tokens per unit.
    sent: Option<u32>,
}

/// One key of a report: its bucket ids, the rule, and what the Envoy saw.
struct Reported {
    key: String,
    ids: Vec<BucketId>,
    limit: u32,
    unit_secs: u64,
    seen: u64,
    /// The time the Envoy says the counts cover (whole seconds, cut short).
    reported: Option<Duration>,
}

/// The tonic service.
#[derive(Debug, Clone)]
pub struct QuotaService {
    live: Arc<LiveConfig>,
    /// Streams end when the service drains, so a shutdown never waits on
    /// Envoy's long-lived streams (Envoy reconnects to another replica).
    shutdown: Shutdown,
    demands: Arc<Demands>,
    metrics: Arc<Metrics>,
    streams: Arc<Mutex<HashMap<u64, LocalStream>>>,
    /// Reporter ids: a random start per process, so replicas sharing a
    /// store do not reuse each other's.
    next_reporter: Arc<AtomicU64>,
}

impl QuotaService {
    /// A service answering from the configuration in force, keeping claims in `demands`.
    pub fn new(
        live: Arc<LiveConfig>,
        shutdown: Shutdown,
        demands: Arc<Demands>,
        metrics: Arc<Metrics>,
    ) -> Self {
        use std::hash::BuildHasher as _;
        let start = std::hash::RandomState::new().hash_one(std::process::id());
        Self {
            live,
            shutdown,
            demands,
            metrics,
            streams: Arc::default(),
            next_reporter: Arc::new(AtomicU64::new(start)),
        }
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<u64, LocalStream>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer to one report of stream `me`: an assignment for every
    /// bucket whose id carries a descriptor (a malformed id gets none, so
    /// Envoy keeps its `no_assignment_behavior`). Other streams of this
    /// replica whose share the report moved get their new assignment too.
    async fn answer(
        &self,
        me: u64,
        domain: &str,
        report: &RateLimitQuotaUsageReports,
    ) -> RateLimitQuotaResponse {
        let config = self.live.current();
        let now = Instant::now();
        self.metrics.quota_reports.inc();
        self.metrics
            .quota_buckets_reported
            .inc_by(report.bucket_quota_usages.len() as u64);
        let mut actions = Vec::new();
        let mut reported_keys: Vec<Reported> = Vec::new();
        for usage in &report.bucket_quota_usages {
            let Some(id) = usage.bucket_id.as_ref() else {
                continue;
            };
            let descriptor = match quota::descriptor_of(
                id.bucket.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, domain, "bucket without a descriptor, left to Envoy's no_assignment_behavior");
                    continue;
                }
            };
            let seen = usage
                .num_requests_allowed
                .saturating_add(usage.num_requests_denied);
            let reported = usage
                .time_elapsed
                .as_ref()
                .and_then(|d| u64::try_from(d.seconds).ok())
                .filter(|&secs| secs >= 1)
                .map(Duration::from_secs);
            match quota::limit_of(&config, domain, &descriptor) {
                None => actions.push(action(id.clone(), Assignment::AllowAll)),
                Some((limit, unit_secs, key)) => {
                    match reported_keys.iter_mut().find(|r| r.key == key) {
                        Some(r) => {
                            r.ids.push(id.clone());
                            r.seen = r.seen.saturating_add(seen);
                            r.reported = r.reported.max(reported);
                        }
                        None => reported_keys.push(Reported {
                            key,
                            ids: vec![id.clone()],
                            limit,
                            unit_secs,
                            seen,
                            reported,
                        }),
                    }
                }
            }
        }
        if reported_keys.is_empty() {
            return RateLimitQuotaResponse {
                bucket_action: actions,
            };
        }
        let reported = reported_keys;
        let claims = self.measure(me, &reported, now);
        match self.demands.report(&claims, now_ms()).await {
            Ok(all) => {
                let mut streams = self.streams();
                for (r, claims) in reported.iter().zip(all) {
                    let shares = quota::split(r.limit, r.unit_secs, &claims);
                    for (claim, share) in claims.iter().zip(shares) {
                        if claim.reporter == me {
                            actions.extend(split_actions(&r.ids, share, r.unit_secs));
                            if let Some(held) =
                                streams.get_mut(&me).and_then(|s| s.buckets.get_mut(&r.key))
                            {
                                held.sent = Some(share);
                            }
                        } else if let Some(other) = streams.get_mut(&claim.reporter) {
                            self.push(other, &r.key, share, r.unit_secs);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, domain, "claim store failed: assignments not renewed, Envoy keeps them until they expire");
            }
        }
        RateLimitQuotaResponse {
            bucket_action: actions,
        }
    }

    /// Notes the report of `me` and gives its claim on each key: what it
    /// saw per second since its last report of the key.
    fn measure(&self, me: u64, reported: &[Reported], now: Instant) -> Vec<DemandReport> {
        let mut streams = self.streams();
        let mut local = streams.get_mut(&me);
        reported
            .iter()
            .map(|r| {
                let held = local.as_mut().map(|s| {
                    s.buckets.entry(r.key.clone()).or_insert_with(|| Held {
                        ids: Vec::new(),
                        last_report: None,
                        sent: None,
                    })
                });
                let demand_milli = held.and_then(|held| {
                    held.ids.clone_from(&r.ids);
                    let last = held.last_report.replace(now)?;
                    // The shorter of what the service measured and what Envoy
                    // says: a late report never makes a demand look smaller.
                    let elapsed = now
                        .duration_since(last)
                        .min(r.reported.unwrap_or(Duration::MAX));
                    (elapsed >= MIN_MEASURED).then(|| {
                        #[allow(
                            clippy::cast_possible_truncation,
                            clippy::cast_sign_loss,
                            clippy::cast_precision_loss
                        )]
                        let per_second = (r.seen as f64 * 1000.0 / elapsed.as_secs_f64()) as u64;
                        per_second
                    })
                });
                DemandReport {
                    key: r.key.clone(),
                    claim: Claim {
                        reporter: me,
                        demand_milli,
                    },
                }
            })
            .collect()
    }

    /// Sends `other` its new share of `key` if it changed. A full channel
    /// skips the push: the stream's next report answers it anyway.
    fn push(&self, other: &mut LocalStream, key: &str, share: u32, unit_secs: u64) {
        let Some(held) = other.buckets.get_mut(key) else {
            return;
        };
        if held.sent == Some(share) {
            return;
        }
        let response = RateLimitQuotaResponse {
            bucket_action: split_actions(&held.ids, share, unit_secs),
        };
        if other.tx.try_send(Ok(response)).is_ok() {
            held.sent = Some(share);
            self.metrics.quota_pushes.inc();
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The actions giving `ids` (one key's buckets in one Envoy) `share` tokens
/// per unit between them.
fn split_actions(ids: &[BucketId], share: u32, unit_secs: u64) -> Vec<BucketAction> {
    let count = u32::try_from(ids.len()).unwrap_or(u32::MAX).max(1);
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let extra = u32::from(u32::try_from(i).unwrap_or(u32::MAX) < share % count);
            action(
                id.clone(),
                quota::token_bucket(share / count + extra, unit_secs),
            )
        })
        .collect()
}

fn action(id: BucketId, assignment: Assignment) -> BucketAction {
    BucketAction {
        bucket_id: Some(id),
        bucket_action: Some(Action::QuotaAssignmentAction(QuotaAssignmentAction {
            assignment_time_to_live: Some(wire_duration(ASSIGNMENT_TTL)),
            rate_limit_strategy: Some(strategy(assignment)),
        })),
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
        let me = self.next_reporter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        self.streams().insert(
            me,
            LocalStream {
                tx: tx.clone(),
                buckets: HashMap::new(),
            },
        );
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
                        let answer = service.answer(me, &domain, &report).await;
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
            // This Envoy holds no share any more: the others may take it.
            let keys: Vec<String> = service
                .streams()
                .remove(&me)
                .map(|s| s.buckets.into_keys().collect())
                .unwrap_or_default();
            if let Err(e) = service.demands.leave(&keys, me).await {
                tracing::debug!(error = %e, "claims of an ended stream left to expire");
            }
        });
        Ok(Response::new(Assignments(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: &str) -> BucketId {
        BucketId {
            bucket: [("0.generic_key".to_owned(), value.to_owned())].into(),
        }
    }

    fn tokens(action: &BucketAction) -> (u32, u32) {
        match action.bucket_action.as_ref() {
            Some(Action::QuotaAssignmentAction(QuotaAssignmentAction {
                rate_limit_strategy:
                    Some(RateLimitStrategy {
                        strategy: Some(Strategy::TokenBucket(tb)),
                    }),
                ..
            })) => (tb.max_tokens, tb.tokens_per_fill.map_or(0, |t| t.value)),
            other => panic!("not a token bucket: {other:?}"),
        }
    }

    fn service(dir: &std::path::Path) -> QuotaService {
        std::fs::create_dir(dir.join("config")).unwrap();
        std::fs::write(
            dir.join("config/edge.yaml"),
            "domain: edge\ndescriptors:\n  - key: generic_key\n    value: a\n    rate_limit: { unit: minute, requests_per_unit: 600 }\n",
        )
        .unwrap();
        let live = LiveConfig::load(crate::settings::RuntimeSettings::in_dir(dir)).unwrap();
        let mut registry = prometheus_client::registry::Registry::default();
        QuotaService::new(
            Arc::new(live),
            Shutdown::new(),
            Arc::new(Demands::Memory(Default::default())),
            Arc::new(Metrics::register(&mut registry, 1)),
        )
    }

    fn join(
        service: &QuotaService,
        me: u64,
    ) -> mpsc::Receiver<Result<RateLimitQuotaResponse, Status>> {
        let (tx, rx) = mpsc::channel(4);
        service.streams().insert(
            me,
            LocalStream {
                tx,
                buckets: HashMap::new(),
            },
        );
        rx
    }

    fn report() -> RateLimitQuotaUsageReports {
        use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_usage_reports::BucketQuotaUsage;
        RateLimitQuotaUsageReports {
            domain: "edge".into(),
            bucket_quota_usages: vec![BucketQuotaUsage {
                bucket_id: Some(id("a")),
                num_requests_allowed: 1,
                ..Default::default()
            }],
        }
    }

    #[tokio::test]
    async fn a_second_envoy_takes_half_and_the_first_is_told_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let service = service(dir.path());
        let mut first = join(&service, 1);
        let _second = join(&service, 2);
        let alone = service.answer(1, "edge", &report()).await;
        assert_eq!(tokens(&alone.bucket_action[0]), (10, 600));
        let joined = service.answer(2, "edge", &report()).await;
        assert_eq!(tokens(&joined.bucket_action[0]), (5, 300));
        // The first Envoy's share moved: it gets its new one without reporting.
        let pushed = first.try_recv().expect("a push").expect("an assignment");
        assert_eq!(tokens(&pushed.bucket_action[0]), (5, 300));
        // The same share again is not pushed twice.
        let _ = service.answer(2, "edge", &report()).await;
        assert!(first.try_recv().is_err());
    }

    #[test]
    fn buckets_sharing_a_key_share_its_tokens() {
        let actions = split_actions(&[id("a"), id("b"), id("c")], 10, 60);
        let per_bucket: Vec<u32> = actions.iter().map(|a| tokens(a).1).collect();
        assert_eq!(per_bucket, [4, 3, 3]);
        let single = split_actions(&[id("a")], 300, 60);
        assert_eq!(tokens(&single[0]), (5, 300));
    }
}
