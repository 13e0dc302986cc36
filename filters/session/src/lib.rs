//! `gatehouse-session`: the proxy-wasm adapter of `gatehouse-session-core`,
//! the SSO fast path inside Envoy.
//!
//! Each worker polls gatehouse-authz's feed (ticket keys and revoked
//! sessions) through a cluster on the tick. On every request of a route
//! that enables it, the filter reads the `cookie` header, asks the core and
//! applies the answer: a verified ticket sets the identity headers and the
//! verified mark (which switches ext_authz off for the request); anything
//! else leaves the request untouched for ext_authz to decide. A host call
//! that fails leaves the mark unset, so a failure here costs speed, never
//! a check.
//!
//! What does not live here: any decision (the core's, unit-tested there).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use gatehouse_session_core::feed::Feed;
use gatehouse_session_core::{FastPath, FeedState, FilterConfig, Slow, decide};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(SessionRoot::default()) });
}}

/// How often the root context looks whether a poll is due.
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct Shared {
    config: FilterConfig,
    state: RefCell<FeedState>,
    stats: Stats,
    /// The clock as the last tick read it: a request reads it here instead
    /// of asking the host (tickets expire by the second; a tick is 250 ms).
    clock: std::cell::Cell<Duration>,
}

/// Envoy stats, e.g. `wasmcustom.gatehouse_session.verified`.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    verified: Option<u32>,
    no_feed: Option<u32>,
    no_ticket: Option<u32>,
    refused: Option<u32>,
    revoked: Option<u32>,
    feed_polls: Option<u32>,
    feed_failures: Option<u32>,
}

impl Stats {
    fn define() -> Self {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Self {
            verified: counter("gatehouse_session.verified"),
            no_feed: counter("gatehouse_session.slow.no_feed"),
            no_ticket: counter("gatehouse_session.slow.no_ticket"),
            refused: counter("gatehouse_session.slow.refused"),
            revoked: counter("gatehouse_session.slow.revoked"),
            feed_polls: counter("gatehouse_session.feed.polls"),
            feed_failures: counter("gatehouse_session.feed.failures"),
        }
    }

    fn add(id: Option<u32>) {
        if let Some(id) = id {
            // Best effort: a stat never fails a request.
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

fn now() -> Duration {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Default)]
struct SessionRoot {
    shared: Option<Rc<Shared>>,
    /// The poll in flight, if any.
    polling: Option<u32>,
    /// When the last poll started (ms).
    last_poll_ms: u64,
    /// Whether the last poll failed: a failure is logged when polls start
    /// failing and a recovery when they work again, not at every tick.
    failing: bool,
}

impl SessionRoot {
    fn failed(&mut self, shared: &Shared, why: &str) {
        Stats::add(shared.stats.feed_failures);
        if !self.failing {
            self.failing = true;
            log(
                LogLevel::Warn,
                &format!(
                    "gatehouse-session: feed not taken, requests go to ext_authz until it is: {why}"
                ),
            );
        }
    }
}

impl SessionRoot {
    fn poll(&mut self, shared: &Shared, now_ms: u64) {
        let feed = &shared.config.feed;
        let headers = vec![
            (":method", "GET"),
            (":path", feed.path.as_str()),
            (":authority", feed.authority.as_str()),
            (":scheme", "http"),
            ("accept", "application/json"),
        ];
        self.last_poll_ms = now_ms;
        Stats::add(shared.stats.feed_polls);
        match hostcalls::dispatch_http_call(
            &feed.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(feed.timeout_ms),
        ) {
            Ok(token) => self.polling = Some(token),
            Err(status) => self.failed(shared, &format!("cannot poll: {status:?}")),
        }
    }
}

impl Context for SessionRoot {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if self.polling != Some(token) {
            return;
        }
        self.polling = None;
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let taken = match status.as_deref() {
            Some("200") => Feed::parse(&body)
                .map_err(|e| e.to_string())
                .and_then(|feed| {
                    shared
                        .state
                        .borrow_mut()
                        .accept(feed.filters.get(&shared.config.filter), millis(now()))
                        .map_err(|e| e.to_string())
                }),
            other => Err(format!("the feed answered {}", other.unwrap_or("nothing"))),
        };
        match taken {
            // The old keys stay until they are too old to trust.
            Err(e) => self.failed(&shared, &e),
            Ok(keys) => {
                if std::mem::take(&mut self.failing) {
                    log(
                        LogLevel::Info,
                        &format!("gatehouse-session: feed taken again: {keys} keys"),
                    );
                }
            }
        }
    }
}

impl RootContext for SessionRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log(
                    LogLevel::Critical,
                    &format!("gatehouse-session: cannot read the plugin configuration: {status:?}"),
                );
                return false;
            }
        };
        match FilterConfig::parse(&bytes) {
            Ok(config) => {
                self.shared = Some(Rc::new(Shared {
                    config,
                    state: RefCell::new(FeedState::default()),
                    stats: Stats::define(),
                    clock: std::cell::Cell::new(now()),
                }));
                if let Err(status) = hostcalls::set_tick_period(TICK) {
                    log(
                        LogLevel::Critical,
                        &format!("gatehouse-session: cannot schedule feed polls: {status:?}"),
                    );
                    return false;
                }
                true
            }
            Err(e) => {
                log(
                    LogLevel::Critical,
                    &format!("gatehouse-session: invalid configuration: {e}"),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let now = now();
        shared.clock.set(now);
        let now_ms = millis(now);
        let fresh = shared
            .state
            .borrow()
            .is_fresh(now_ms, shared.config.poll_ms);
        // Due every poll interval; while the feed is not fresh, at every tick.
        let due = !fresh || now_ms.saturating_sub(self.last_poll_ms) >= shared.config.poll_ms;
        if due && self.polling.is_none() {
            self.poll(&shared, now_ms);
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(SessionRequest { shared }))
    }
}

#[derive(Debug)]
struct SessionRequest {
    shared: Rc<Shared>,
}

impl Context for SessionRequest {}

impl HttpContext for SessionRequest {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Err(status) = self.check() {
            // Nothing marked: ext_authz decides, as without this filter.
            log(
                LogLevel::Warn,
                &format!(
                    "gatehouse-session: host call failed, sending the request to ext_authz: {status:?}"
                ),
            );
        }
        Action::Continue
    }
}

impl SessionRequest {
    fn check(&self) -> Result<(), proxy_wasm::types::Status> {
        let shared = &self.shared;
        let cookie = hostcalls::get_map_value(MapType::HttpRequestHeaders, "cookie")?;
        let cookies: Vec<&str> = cookie.as_deref().into_iter().collect();
        // At most one tick old: one host call less per request.
        let now = shared.clock.get();
        let decision = decide(
            &shared.config,
            &mut shared.state.borrow_mut(),
            &cookies,
            now.as_secs(),
            millis(now),
        );
        let stats = shared.stats;
        match decision {
            FastPath::Verified { set, remove } => {
                for name in &remove {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None)?;
                }
                // The verified mark comes last: a failure before it leaves
                // the request to ext_authz. Envoy removed any client copy
                // first (early header mutation), so adding is enough there.
                let add = shared.config.reserved_headers_stripped_by_envoy;
                for (name, value) in &set {
                    if add && name != "cookie" && name != "authorization" {
                        hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value)?;
                    } else {
                        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))?;
                    }
                }
                Stats::add(stats.verified);
            }
            FastPath::Slow(why) => Stats::add(match why {
                Slow::NoFeed => stats.no_feed,
                Slow::NoTicket => stats.no_ticket,
                Slow::TicketTwins | Slow::Refused(_) => stats.refused,
                Slow::Revoked => stats.revoked,
            }),
        }
        Ok(())
    }
}

fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}
