//! Deciding a request: match, count in one store round trip, report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::answer::Added;
use crate::config::{Algorithm, Matched, RateLimitConfig, Rule};
use crate::request::Request;
use crate::store::{Op, Store, StoreError};
use crate::unit::Unit;

/// A descriptor's or the request's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Allowed.
    Ok,
    /// Over the limit.
    OverLimit,
}

/// The limit reported back with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentLimit {
    /// Requests per unit.
    pub requests_per_unit: u32,
    /// Window unit.
    pub unit: Unit,
    /// The rule's name, empty when unnamed.
    pub name: String,
}

/// One descriptor's status, as `DescriptorStatus` on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The descriptor's verdict (shadow rules report `Ok`).
    pub code: Code,
    /// The limit that applied; `None` when no rule matched or it is unlimited.
    pub current_limit: Option<CurrentLimit>,
    /// Requests left in the window; `u32::MAX` for unlimited rules.
    pub limit_remaining: u32,
    /// Seconds until the window resets; 0 when nothing was counted.
    pub duration_until_reset: u64,
}

/// What happened to one descriptor, for the adapter's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `Rule::id` of the rule that applied (`usize::MAX` for an override).
    pub rule_id: usize,
    /// Stats key (with values where the rule asks for them).
    pub stat_key: String,
    /// Whether the stat key carries request values (`detailed_metric`,
    /// `value_to_metric`, or an Envoy limit override): such keys are not a
    /// closed set, and the adapter must bound how many it labels.
    pub detailed: bool,
    /// Hits counted.
    pub total_hits: u64,
    /// Hits over the limit.
    pub over_limit: u64,
    /// Hits between the near-limit threshold and the limit.
    pub near_limit: u64,
    /// Hits within the limit.
    pub within_limit: u64,
    /// Over-limit hits let through by shadow mode.
    pub shadow_mode: u64,
    /// Over-limit hits answered from the local over-limit cache.
    pub over_limit_with_local_cache: u64,
}

/// The decision for a whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `OverLimit` when any descriptor is over (and not shadowed).
    pub overall: Code,
    /// One status per request descriptor, in order.
    pub statuses: Vec<Status>,
    /// Headers for Envoy to add to the response to the client.
    pub response_headers: Vec<(String, String)>,
    /// Headers for Envoy to add to the upstream request (only when `Ok`).
    pub request_headers: Vec<(String, String)>,
    /// The 429's body, when a limit that is over says one.
    pub body: Option<String>,
    /// Per-descriptor counts for metrics (only descriptors that matched a rule).
    pub outcomes: Vec<Outcome>,
}

/// Names of the response headers, as envoyproxy/ratelimit's
/// `LIMIT_*_HEADER` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNames {
    /// Default `RateLimit-Limit`.
    pub limit: String,
    /// Default `RateLimit-Remaining`.
    pub remaining: String,
    /// Default `RateLimit-Reset`.
    pub reset: String,
}

impl Default for HeaderNames {
    fn default() -> Self {
        Self {
            limit: "RateLimit-Limit".to_owned(),
            remaining: "RateLimit-Remaining".to_owned(),
            reset: "RateLimit-Reset".to_owned(),
        }
    }
}

/// Service-wide behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterSettings {
    /// Prefix of every counter key (`CACHE_KEY_PREFIX`), default empty.
    pub key_prefix: String,
    /// Fraction of the limit from which hits count as near the limit (0.8).
    pub near_limit_ratio: f64,
    /// Global shadow mode: statuses as computed, overall always `Ok`.
    pub shadow_mode: bool,
    /// Global quota mode (`QUOTA_MODE`): every descriptor is a quota descriptor.
    pub quota_mode: bool,
    /// Add the limit/remaining/reset headers (`LIMIT_RESPONSE_HEADERS_ENABLED`).
    pub response_headers: Option<HeaderNames>,
    /// Add `retry-after` (seconds until reset) to denials.
    pub retry_after: bool,
    /// Keys known over limit kept in memory until their window ends, saving
    /// store round trips; 0 turns the cache off.
    pub local_cache_entries: usize,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        Self {
            key_prefix: String::new(),
            near_limit_ratio: 0.8,
            shadow_mode: false,
            quota_mode: false,
            response_headers: None,
            retry_after: true,
            local_cache_entries: 0,
        }
    }
}

/// Decides requests against a configuration and a store.
#[derive(Debug)]
pub struct Limiter {
    settings: LimiterSettings,
    over_limit_cache: Option<Mutex<HashMap<String, u64>>>,
}

/// What one matched descriptor needs from the store.
struct Plan {
    index: usize,
    matched: Matched,
    hits: u64,
    /// Index of the first store op result, `None` when answered locally.
    op: Option<usize>,
    window_start: u64,
    cached_over: bool,
}

impl Limiter {
    /// A limiter with these settings.
    #[must_use]
    pub fn new(settings: LimiterSettings) -> Self {
        let over_limit_cache =
            (settings.local_cache_entries > 0).then(|| Mutex::new(HashMap::new()));
        Self {
            settings,
            over_limit_cache,
        }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &LimiterSettings {
        &self.settings
    }

    /// Decides `request` at `now_ms` (Unix milliseconds).
    ///
    /// Descriptors are OR-ed: the request is over limit when any descriptor
    /// is. Rules named in another matched rule's `replaces` are dropped (and
    /// their counters left alone). Unlimited rules never reach the store. All
    /// counting happens in one store round trip.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails; nothing is decided then.
    pub async fn check<S: Store>(
        &self,
        config: &RateLimitConfig,
        request: &Request,
        store: &S,
        now_ms: u64,
    ) -> Result<Decision, StoreError> {
        let now = now_ms / 1000;
        let descriptors = request.descriptors();
        let mut matched: Vec<Option<Matched>> = descriptors
            .iter()
            .map(|d| config.find(request.domain(), d))
            .collect();

        // `replaces`: a matched rule removes the rules it names.
        let replaced: Vec<&str> = matched
            .iter()
            .flatten()
            .flat_map(|m| m.rule.replaces().iter().map(String::as_str))
            .collect();
        if !replaced.is_empty() {
            let names: Vec<String> = replaced.iter().map(|s| (*s).to_owned()).collect();
            for m in &mut matched {
                if m.as_ref()
                    .and_then(|m| m.rule.name())
                    .is_some_and(|n| names.iter().any(|r| r == n))
                {
                    *m = None;
                }
            }
        }

        let mut ops = Vec::new();
        let mut plans = Vec::new();
        for (index, m) in matched.into_iter().enumerate() {
            let Some(m) = m else { continue };
            if m.rule.is_unlimited() {
                plans.push(Plan {
                    index,
                    matched: m,
                    hits: 0,
                    op: None,
                    window_start: 0,
                    cached_over: false,
                });
                continue;
            }
            let unit = m.rule.unit();
            let hits = request.hits_for(&descriptors[index]);
            let window_start = unit.window_start(now);
            let key = format!(
                "{}{}{window_start}",
                self.settings.key_prefix, m.counter_key
            );
            if m.rule.algorithm() == Algorithm::FixedWindow && self.is_cached_over(&key, now_ms) {
                plans.push(Plan {
                    index,
                    matched: m,
                    hits,
                    op: None,
                    window_start,
                    cached_over: true,
                });
                continue;
            }
            let op = ops.len();
            match m.rule.algorithm() {
                Algorithm::FixedWindow => ops.push(Op::IncrBy {
                    key,
                    hits,
                    ttl_secs: unit.seconds(),
                }),
                Algorithm::SlidingWindow => {
                    let previous = format!(
                        "{}{}{}",
                        self.settings.key_prefix,
                        m.counter_key,
                        window_start.saturating_sub(unit.seconds())
                    );
                    ops.push(Op::IncrBy {
                        key,
                        hits,
                        ttl_secs: 2 * unit.seconds(),
                    });
                    ops.push(Op::Get { key: previous });
                }
            }
            plans.push(Plan {
                index,
                matched: m,
                hits,
                op: Some(op),
                window_start,
                cached_over: false,
            });
        }

        let values = if ops.is_empty() {
            Vec::new()
        } else {
            store.execute(&ops, now_ms).await?
        };
        if values.len() != ops.len() {
            return Err(StoreError::Backend(format!(
                "store answered {} values for {} operations",
                values.len(),
                ops.len()
            )));
        }

        let mut statuses: Vec<Status> = (0..descriptors.len())
            .map(|_| Status {
                code: Code::Ok,
                current_limit: None,
                limit_remaining: 0,
                duration_until_reset: 0,
            })
            .collect();
        // The rules that add headers or answer a 429 (none in most configs).
        let answering: Vec<(usize, Arc<Rule>)> = plans
            .iter()
            .filter(|p| p.matched.rule.answers().is_some())
            .map(|p| (p.index, Arc::clone(&p.matched.rule)))
            .collect();
        let mut outcomes = Vec::with_capacity(plans.len());
        let mut quota = vec![self.settings.quota_mode; descriptors.len()];
        for plan in plans {
            let rule = &plan.matched.rule;
            let status = &mut statuses[plan.index];
            let mut outcome = Outcome {
                rule_id: rule.id(),
                stat_key: plan.matched.stat_key.clone(),
                detailed: rule.is_detailed()
                    || rule.id() == usize::MAX
                    || plan.matched.stat_key != rule.stat_key(),
                total_hits: plan.hits,
                over_limit: 0,
                near_limit: 0,
                within_limit: 0,
                shadow_mode: 0,
                over_limit_with_local_cache: 0,
            };
            if rule.is_unlimited() {
                status.limit_remaining = u32::MAX;
                // Unlimited descriptors take no part in quota counting.
                quota[plan.index] = false;
                // Nor in stats: the reference counts nothing for them.
                continue;
            }
            quota[plan.index] |= rule.is_quota();
            let limit = u64::from(rule.requests_per_unit());
            let unit = rule.unit();
            status.current_limit = Some(CurrentLimit {
                requests_per_unit: rule.requests_per_unit(),
                unit,
                name: rule.name().unwrap_or_default().to_owned(),
            });
            status.duration_until_reset = unit.seconds_until_reset(now);
            let (after, before) = if plan.cached_over {
                outcome.over_limit_with_local_cache = plan.hits;
                (limit.saturating_add(plan.hits.max(1)), limit + 1)
            } else {
                let op = plan.op.unwrap_or_default();
                let current = values[op];
                let after = match rule.algorithm() {
                    Algorithm::FixedWindow => current,
                    Algorithm::SlidingWindow => {
                        let elapsed = now_ms.saturating_sub(plan.window_start * 1000) as f64;
                        let overlap = 1.0 - (elapsed / (unit.seconds() * 1000) as f64).min(1.0);
                        // Weighted previous window, rounded down: the estimate never
                        // exceeds what was really counted over the last unit.
                        current.saturating_add((values[op + 1] as f64 * overlap) as u64)
                    }
                };
                (after, after.saturating_sub(plan.hits))
            };
            let near_threshold = (limit as f64 * self.settings.near_limit_ratio).floor() as u64;
            if after > limit {
                if !plan.cached_over {
                    if before >= limit {
                        outcome.over_limit = plan.hits;
                    } else {
                        outcome.over_limit = after - limit;
                        outcome.near_limit = limit - before.max(near_threshold);
                    }
                    if rule.algorithm() == Algorithm::FixedWindow {
                        self.remember_over(
                            ops[plan.op.unwrap_or_default()].key(),
                            plan.window_start
                                .saturating_add(unit.seconds())
                                .saturating_mul(1000),
                            now_ms,
                        );
                    }
                } else {
                    outcome.over_limit = plan.hits;
                }
                status.limit_remaining = 0;
                if rule.is_shadow() {
                    outcome.shadow_mode = outcome.over_limit;
                } else {
                    status.code = Code::OverLimit;
                }
            } else {
                outcome.within_limit = plan.hits;
                if after > near_threshold {
                    outcome.near_limit = after - before.max(near_threshold);
                }
                status.limit_remaining = u32::try_from(limit - after).unwrap_or(u32::MAX);
            }
            outcomes.push(outcome);
        }

        // Quota descriptors deny only together: the request is over when a
        // normal descriptor is over, or when every quota descriptor is.
        let over = |(s, q): (&Status, &bool)| s.code == Code::OverLimit && !q;
        let normal_over = statuses.iter().zip(&quota).any(over);
        let quotas = statuses.iter().zip(&quota).filter(|(_, q)| **q);
        let quota_count = quotas.clone().count();
        let all_quota_over = quota_count > 0
            && quotas.filter(|(s, _)| s.code == Code::OverLimit).count() == quota_count;
        let overall = if (normal_over || all_quota_over) && !self.settings.shadow_mode {
            Code::OverLimit
        } else {
            Code::Ok
        };
        let mut response_headers = self.headers(&statuses, &quota, overall);
        let mut added = Added::default();
        if !answering.is_empty() {
            let retry_after = statuses
                .iter()
                .filter(|s| s.code == Code::OverLimit)
                .map(|s| s.duration_until_reset)
                .max()
                .unwrap_or(0);
            for (index, rule) in &answering {
                if let Some(a) = rule.answers() {
                    let over = statuses[*index].code == Code::OverLimit;
                    a.add(overall, over, retry_after, &mut added);
                }
            }
            response_headers.append(&mut added.response);
        }
        Ok(Decision {
            overall,
            statuses,
            response_headers,
            request_headers: added.request,
            body: added.body,
            outcomes,
        })
    }

    fn headers(&self, statuses: &[Status], quota: &[bool], overall: Code) -> Vec<(String, String)> {
        let mut headers = Vec::new();
        if let Some(names) = &self.settings.response_headers {
            // As the reference: the limited status with the least remaining
            // speaks for the request, and a non-quota denial always wins (the
            // last one when several).
            let mut chosen: Option<(&CurrentLimit, &Status)> = None;
            let mut min = u32::MAX;
            for (s, q) in statuses.iter().zip(quota) {
                let Some(limit) = &s.current_limit else {
                    continue;
                };
                if s.limit_remaining < min {
                    chosen = Some((limit, s));
                    min = s.limit_remaining;
                }
                if s.code == Code::OverLimit && !q {
                    chosen = Some((limit, s));
                    min = 0;
                }
            }
            if let Some((limit, s)) = chosen {
                headers.push((names.limit.clone(), limit.requests_per_unit.to_string()));
                headers.push((names.remaining.clone(), s.limit_remaining.to_string()));
                headers.push((names.reset.clone(), s.duration_until_reset.to_string()));
            }
        }
        if self.settings.retry_after && overall == Code::OverLimit {
            let wait = statuses
                .iter()
                .filter(|s| s.code == Code::OverLimit)
                .map(|s| s.duration_until_reset)
                .max()
                .unwrap_or(1);
            headers.push(("retry-after".to_owned(), wait.to_string()));
        }
        headers
    }

    fn is_cached_over(&self, key: &str, now_ms: u64) -> bool {
        let Some(cache) = &self.over_limit_cache else {
            return false;
        };
        let cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(key).is_some_and(|&until| until > now_ms)
    }

    fn remember_over(&self, key: &str, until_ms: u64, now_ms: u64) {
        let Some(cache) = &self.over_limit_cache else {
            return;
        };
        let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.settings.local_cache_entries {
            cache.retain(|_, &mut until| until > now_ms);
            if cache.len() >= self.settings.local_cache_entries {
                // Still full of live keys: start over rather than grow without bound.
                cache.clear();
            }
        }
        cache.insert(key.to_owned(), until_ms);
    }
}
