//! `gatehouse-jwt`: the proxy-wasm adapter of `gatehouse-jwt-core`.
//!
//! It reads the plugin configuration in `on_configure` (refusing the plugin when
//! it is invalid), and on every request gathers the headers, asks the core what
//! to do and applies it. For remote JWKS it implements the core's `JwksHost`
//! (shared data, HTTP calls through Envoy clusters, installing keys) and runs
//! the core's `JwksRefresh` on the tick and when a request asks for keys.
//! Logs and Envoy stats live here too.
//!
//! What does not live here: any decision that is not a translation. Which
//! rule applies, whether a token verifies, why a request is refused, and when
//! to fetch, back off, or take keys another worker fetched are all decided
//! (and unit-tested) in the core.
//!
//! Host calls go through `proxy_wasm::hostcalls`, which return `Result`; the
//! SDK's trait conveniences unwrap inside and would trap on a failed call.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use gatehouse_jwt_core::native::{NativeCheck, parse_result};
use gatehouse_jwt_core::{
    Decision, DenyReason, FilterConfig, Host, JwksHost, JwksRefresh, KeyIdentity, KeySet,
    RemoteJwks, RequestFetch, RequestView, SharedEntry, TokenCache,
};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, Status};

proxy_wasm::main! {{
    // Also installs a panic hook that logs the panic before the trap.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(JwtRoot::default()) });
}}

/// How often the root context looks at its remote JWKS.
const TICK: Duration = Duration::from_millis(500);

/// How often it looks while requests wait for another fetch's keys.
const WAIT_TICK: Duration = Duration::from_millis(50);

/// Requests one worker holds for a fetch under way; past this, a request
/// decides at once with the keys there are.
const MAX_WAITERS: usize = 1024;

/// What the root and request contexts of one worker share.
#[derive(Debug, Default)]
struct Shared {
    config: RefCell<FilterConfig>,
    /// When this worker fetches which remote JWKS (decided in the core).
    refresh: RefCell<JwksRefresh>,
    /// Set once Envoy said it has no `verify_signature` foreign function.
    no_native: Cell<bool>,
    stats: Stats,
    /// Tokens this worker verified, so a repeated token skips the signature.
    cache: RefCell<TokenCache>,
    /// Requests paused until a fetch under way (this worker's or another's)
    /// is over: (context id, provider).
    waiters: RefCell<Vec<(u32, usize)>>,
}

/// Envoy stats of the filter, defined once in `on_configure`. Envoy exports
/// them with its custom-metric prefix, e.g. `wasmcustom.gatehouse_jwt.allowed`.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    allowed: Option<u32>,
    denied_missing: Option<u32>,
    denied_invalid: Option<u32>,
    denied_forbidden: Option<u32>,
    jwks_fetches: Option<u32>,
    jwks_failures: Option<u32>,
    native_verifications: Option<u32>,
    wasm_verifications: Option<u32>,
    cache_hits: Option<u32>,
}

impl Stats {
    fn define() -> Self {
        let counter = |name: &str| {
            hostcalls::define_metric(proxy_wasm::types::MetricType::Counter, name).ok()
        };
        Self {
            allowed: counter("gatehouse_jwt.allowed"),
            denied_missing: counter("gatehouse_jwt.denied.missing_token"),
            denied_invalid: counter("gatehouse_jwt.denied.invalid_token"),
            denied_forbidden: counter("gatehouse_jwt.denied.insufficient_claims"),
            jwks_fetches: counter("gatehouse_jwt.jwks.fetches"),
            jwks_failures: counter("gatehouse_jwt.jwks.failures"),
            native_verifications: counter("gatehouse_jwt.signatures.native"),
            wasm_verifications: counter("gatehouse_jwt.signatures.wasm"),
            cache_hits: counter("gatehouse_jwt.cache.hits"),
        }
    }

    fn add(id: Option<u32>) {
        if let Some(id) = id {
            // Stats are best effort: a failed increment must not fail a request.
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

/// The core's view of Envoy for one decision.
struct EnvoyHost<'a> {
    shared: &'a Shared,
    may_fetch: bool,
    now: u64,
}

impl Host for EnvoyHost<'_> {
    fn cached_claims(
        &self,
        index: usize,
        token: &str,
        now: u64,
    ) -> Option<Rc<serde_json::Map<String, serde_json::Value>>> {
        let hit = self.shared.cache.borrow().get(index, token, now);
        if hit.is_some() {
            Stats::add(self.shared.stats.cache_hits);
        }
        hit
    }

    fn remember(
        &self,
        index: usize,
        token: &str,
        key: &KeyIdentity,
        claims: Rc<serde_json::Map<String, serde_json::Value>>,
        valid_until: u64,
    ) {
        self.shared
            .cache
            .borrow_mut()
            .insert(index, token, key, claims, valid_until, self.now);
    }

    /// A request's missing key asks for the keys when it may start a fetch,
    /// or when one is under way already (it then waits for that one).
    fn may_refetch(&self, index: usize) -> bool {
        let refresh = self.shared.refresh.borrow();
        self.may_fetch
            && (refresh.may_refetch(index, self.now)
                || refresh.fetch_under_way(index, self.now, &self.shared.jwks_host()))
    }

    /// RS*/ES* through Envoy's BoringSSL (`verify_signature`), some fifty
    /// times cheaper than pure-Rust RSA under V8.
    fn verify_natively(&self, check: &NativeCheck<'_>) -> Option<bool> {
        let stats = self.shared.stats;
        if self.shared.no_native.get() {
            Stats::add(stats.wasm_verifications);
            return None;
        }
        match hostcalls::call_foreign_function("verify_signature", Some(&check.to_protobuf())) {
            // An empty answer is a `VerifySignatureResult` with every field
            // at its default: result false.
            Ok(answer) => {
                Stats::add(stats.native_verifications);
                parse_result(&answer.unwrap_or_default())
            }
            Err(Status::NotFound) => {
                self.shared.no_native.set(true);
                log(
                    LogLevel::Warn,
                    "gatehouse-jwt: no verify_signature in this Envoy, verifying in wasm",
                );
                Stats::add(stats.wasm_verifications);
                None
            }
            // The host could not take the key or the arguments: let Rust decide.
            Err(_) => {
                Stats::add(stats.wasm_verifications);
                None
            }
        }
    }
}

/// Envoy as the JWKS schedule of the core sees it: shared data, HTTP calls
/// through the provider's cluster, and this worker's keys.
struct EnvoyJwks<'a> {
    shared: &'a Shared,
}

impl JwksHost for EnvoyJwks<'_> {
    type Error = Status;

    fn shared_get(&self, key: &str) -> Result<SharedEntry, Status> {
        hostcalls::get_shared_data(key)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Status> {
        hostcalls::set_shared_data(key, Some(value), cas)
    }

    fn dispatch_fetch(&mut self, remote: &RemoteJwks) -> Result<u32, Status> {
        let headers = vec![
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            (":scheme", remote.scheme.as_str()),
            ("accept", "application/json"),
        ];
        let token = hostcalls::dispatch_http_call(
            &remote.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(remote.timeout_ms),
        );
        Stats::add(self.shared.stats.jwks_fetches);
        token
    }

    fn install_keys(&mut self, index: usize, keys: KeySet) {
        self.shared.config.borrow_mut().install_keys(
            index,
            keys,
            &mut self.shared.cache.borrow_mut(),
        );
    }
}

impl Shared {
    fn jwks_host(&self) -> EnvoyJwks<'_> {
        EnvoyJwks { shared: self }
    }

    /// Takes a JWKS answer: new keys on success, the old ones kept otherwise.
    fn receive(&self, provider: usize, body_size: usize, now: u64) {
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten();
        let mut refresh = self.refresh.borrow_mut();
        let received = refresh.receive(
            provider,
            status.as_deref(),
            body.as_deref(),
            now,
            &mut self.jwks_host(),
        );
        let name = refresh.name(provider);
        match received {
            Ok(keys) => log(
                LogLevel::Info,
                &format!("gatehouse-jwt: jwks of {name} loaded: {keys} keys"),
            ),
            // Keys survive a failed refresh.
            Err(e) => {
                Stats::add(self.stats.jwks_failures);
                log(
                    LogLevel::Warn,
                    &format!(
                        "gatehouse-jwt: jwks of {name} not refreshed, keeping the last keys: {e}"
                    ),
                );
            }
        }
    }
}

/// Decides again every waiting request whose fetch is over (keys arrived,
/// or the fetch failed or timed out), each in its own context; the others
/// keep waiting. The quick tick ends when nobody waits.
fn wake(shared: &Rc<Shared>, now: u64) {
    let waiting = std::mem::take(&mut *shared.waiters.borrow_mut());
    if waiting.is_empty() {
        return;
    }
    let mut still = Vec::new();
    for (id, provider) in waiting {
        let fetching =
            shared
                .refresh
                .borrow_mut()
                .still_fetching(provider, now, &mut shared.jwks_host());
        if fetching {
            still.push((id, provider));
            continue;
        }
        // A request that went away (the client reset it) has no context.
        if hostcalls::set_effective_context(id).is_err() {
            continue;
        }
        let mut request = JwtRequest {
            shared: Rc::clone(shared),
            context_id: id,
            waiting_for: None,
        };
        let result = request.check(false).and_then(|action| match action {
            Action::Continue => hostcalls::resume_http_request(),
            _ => Ok(()),
        });
        if let Err(status) = result {
            deny_on_host_error(status);
        }
    }
    let none_left = still.is_empty();
    shared.waiters.borrow_mut().extend(still);
    if none_left {
        let _ = hostcalls::set_tick_period(TICK);
    }
}

fn now_secs() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

#[derive(Debug, Default)]
struct JwtRoot {
    shared: Rc<Shared>,
    /// Fetches this root context started: call token to provider.
    calls: HashMap<u32, usize>,
}

impl Context for JwtRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(provider) = self.calls.remove(&token_id) {
            self.shared.receive(provider, body_size, now_secs());
            wake(&self.shared, now_secs());
        }
    }
}

impl RootContext for JwtRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                log(
                    LogLevel::Critical,
                    &format!("gatehouse-jwt: cannot read plugin configuration: {status:?}"),
                );
                return false;
            }
        };
        match FilterConfig::parse(&bytes) {
            Ok(config) => {
                let refresh = JwksRefresh::new(config.policy());
                let has_remote = !refresh.is_empty();
                let cache_size = config.token_cache_size();
                self.shared = Rc::new(Shared {
                    config: RefCell::new(config),
                    refresh: RefCell::new(refresh),
                    no_native: Cell::new(false),
                    stats: Stats::define(),
                    cache: RefCell::new(TokenCache::new(cache_size)),
                    waiters: RefCell::default(),
                });
                self.shared
                    .refresh
                    .borrow()
                    .prepare_shared(&mut self.shared.jwks_host());
                if has_remote && let Err(status) = hostcalls::set_tick_period(TICK) {
                    log(
                        LogLevel::Critical,
                        &format!("gatehouse-jwt: cannot schedule jwks refreshes: {status:?}"),
                    );
                    return false;
                }
                true
            }
            Err(err) => {
                // Returning false makes Envoy refuse the plugin, so a bad config
                // never serves traffic with defaults.
                log(
                    LogLevel::Critical,
                    &format!("gatehouse-jwt: invalid configuration: {err}"),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let now = now_secs();
        let started = self
            .shared
            .refresh
            .borrow_mut()
            .on_tick(now, &mut self.shared.jwks_host());
        for (provider, call) in started {
            match call {
                Ok(token) => {
                    self.calls.insert(token, provider);
                }
                Err(status) => log(
                    LogLevel::Warn,
                    &format!("gatehouse-jwt: cannot fetch jwks: {status:?}"),
                ),
            }
        }
        wake(&self.shared, now);
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(JwtRequest {
            shared: Rc::clone(&self.shared),
            context_id,
            waiting_for: None,
        }))
    }
}

#[derive(Debug)]
struct JwtRequest {
    shared: Rc<Shared>,
    /// Envoy's id of this request's context, to resume it from the root.
    context_id: u32,
    /// The JWKS fetch this request waits for: (call token, provider).
    waiting_for: Option<(u32, usize)>,
}

impl Context for JwtRequest {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some((token, provider)) = self.waiting_for.take() else {
            return;
        };
        if token != token_id {
            return;
        }
        self.shared.receive(provider, body_size, now_secs());
        // Decide again, never waiting twice.
        let result = self.check(false).and_then(|action| match action {
            Action::Continue => hostcalls::resume_http_request(),
            _ => Ok(()),
        });
        if let Err(status) = result {
            deny_on_host_error(status);
        }
        // The keys serve the requests that waited for them too (last: it
        // moves to their contexts).
        wake(&self.shared, now_secs());
    }
}

impl HttpContext for JwtRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match self.check(true) {
            Ok(action) => action,
            Err(status) => deny_on_host_error(status),
        }
    }
}

impl JwtRequest {
    /// The whole request path: gather, ask the core, apply.
    fn check(&mut self, may_fetch: bool) -> Result<Action, Status> {
        let strips = self.shared.config.borrow().strips_reserved_headers();
        let headers = if strips {
            self.strip_reserved_headers()?
        } else {
            self.read_needed_headers()?
        };
        let now = now_secs();
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        };
        let view = RequestView {
            path: pseudo(":path"),
            host: pseudo(":authority"),
            method: pseudo(":method"),
            headers: &headers,
        };
        let shared = Rc::clone(&self.shared);
        let decision = {
            let config = shared.config.borrow();
            let host = EnvoyHost {
                shared: &shared,
                may_fetch,
                now,
            };
            config.policy().decide_with(&view, now, &host)
        };
        match decision {
            Decision::FetchKeys { provider } => {
                let fetch = shared.refresh.borrow_mut().fetch_for_request(
                    provider,
                    now,
                    &mut shared.jwks_host(),
                )?;
                match fetch {
                    RequestFetch::Started(token) => {
                        self.waiting_for = Some((token, provider));
                        Ok(Action::Pause)
                    }
                    // A fetch is under way (another worker's, or this
                    // one's): wait for it, looked at on the root's quick
                    // tick and when an answer comes, for at most its
                    // timeout. A request that found no keys at first
                    // would otherwise be refused a valid token.
                    RequestFetch::Busy if shared.waiters.borrow().len() < MAX_WAITERS => {
                        shared
                            .waiters
                            .borrow_mut()
                            .push((self.context_id, provider));
                        let _ = hostcalls::set_tick_period(WAIT_TICK);
                        Ok(Action::Pause)
                    }
                    // Another worker had the new keys already (or too many
                    // wait): decide with what there is.
                    RequestFetch::Adopted | RequestFetch::Busy => self.check(false),
                }
            }
            Decision::Continue { remove, set } => {
                for name in remove {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, None)?;
                }
                for (name, value) in set {
                    hostcalls::set_map_value(MapType::HttpRequestHeaders, &name, Some(&value))?;
                }
                Stats::add(shared.stats.allowed);
                Ok(Action::Continue)
            }
            Decision::Deny {
                reason,
                status,
                headers,
                body,
            } => {
                let stats = shared.stats;
                Stats::add(match reason {
                    DenyReason::MissingToken => stats.denied_missing,
                    DenyReason::InvalidToken => stats.denied_invalid,
                    DenyReason::InsufficientClaims => stats.denied_forbidden,
                });
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                hostcalls::send_http_response(u32::from(status), headers, Some(body.as_bytes()))?;
                Ok(Action::Pause)
            }
        }
    }

    /// Removes every client-sent header the stack reserves for verified data,
    /// and returns the pseudo-headers and the headers a decision reads
    /// (values lossily decoded: tokens are ASCII). The others are dropped
    /// unread: converting every value was a visible share of a cache hit.
    fn strip_reserved_headers(&self) -> Result<Vec<(String, String)>, Status> {
        let config = self.shared.config.borrow();
        let mut kept = Vec::new();
        for (name, value) in hostcalls::get_map_bytes(MapType::HttpRequestHeaders)? {
            if config.is_reserved_header(&name) {
                hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, &name, None)?;
            } else if matches!(name.as_str(), ":path" | ":authority" | ":method")
                || config.reads_header(&name)
            {
                // Valid UTF-8 (every real header) is taken as is, no copy.
                let value = String::from_utf8(value)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                kept.push((name, value));
            }
        }
        Ok(kept)
    }
}

impl JwtRequest {
    /// The pseudo-headers and the headers a decision reads, one host call
    /// each, when Envoy has removed the reserved headers already: fetching
    /// the whole map was the largest host cost of a cache hit.
    fn read_needed_headers(&self) -> Result<Vec<(String, String)>, Status> {
        let config = self.shared.config.borrow();
        let pseudo = config.read_pseudo_headers();
        let mut kept = Vec::with_capacity(pseudo.len() + config.read_headers().len());
        for name in pseudo
            .iter()
            .copied()
            .chain(config.read_headers().iter().map(String::as_str))
        {
            if let Some(value) = hostcalls::get_map_value(MapType::HttpRequestHeaders, name)? {
                kept.push((name.to_owned(), value));
            }
        }
        Ok(kept)
    }
}

/// Fails closed: a request whose headers cannot be inspected is not forwarded.
fn deny_on_host_error(status: Status) -> Action {
    log(
        LogLevel::Error,
        &format!("gatehouse-jwt: host call failed: {status:?}"),
    );
    let body = br#"{"code":"filter_host_error"}"#;
    let headers = [("content-type", "application/json")];
    // If even the local reply fails there is nothing left to try: pausing still
    // keeps the request from going upstream unchecked.
    let _ = hostcalls::send_http_response(500, headers.to_vec(), Some(body));
    Action::Pause
}

fn log(level: LogLevel, message: &str) {
    // Logging is best effort: if the host cannot log there is nowhere to report it.
    let _ = hostcalls::log(level, message);
}
