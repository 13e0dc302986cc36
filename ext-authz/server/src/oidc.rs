//! OpenID Connect single sign-on inside `Check`: the login redirect, the
//! callback, sessions, refresh and logout, all answered through Envoy's
//! ext_authz responses, so no extra listener is needed.
//!
//! Logs here never carry a query string, a code, a `state`, a token or a
//! cookie: only outcomes and error kinds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use gatehouse_authz_core::identity::{bearer_identity, identity_headers};
use gatehouse_authz_core::session::{
    AfterRefresh, LOGIN_FLOW_SECS, Lifetimes, LoginFlow, RefreshOutcome, Session, SessionKeys,
    SessionRef, SessionState, StateUse, USED_STATES_CAPACITY, UsedStates, after_refresh, state_key,
};
use gatehouse_authz_core::web::{
    BearerHeader, CookieAttributes, bearer_token, cookie, cookies_without, is_api_client,
    path_only, safe_return_path,
};
use gatehouse_authz_core::{ClientAuth, OidcFilter, Verdict};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use subtle::ConstantTimeEq;

use crate::metrics::Metrics;
use crate::store::{RedisSessions, StoreDown};

/// The back-channel logout event (OpenID Connect Back-Channel Logout 1.0 §2.4).
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The client type discovery gives: authorization endpoint set, token and
/// userinfo endpoints as the IdP announced them.
type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What discovery found, and the client made from it.
struct Discovered {
    /// The provider's metadata (with its keys), kept so that a reload with
    /// the same issuer makes its client without asking the IdP again.
    metadata: ProviderMetadataWithLogout,
    client: OidcClient,
    end_session: Option<String>,
    /// The token endpoint: the audience of client assertions.
    token_url: String,
    /// Checks logout tokens: the IdP's keys, issuer, our client id.
    logout_tokens: Option<gatehouse_jwt_core::Provider>,
}

/// The client's private key for `private_key_jwt` (RFC 7523).
pub struct AssertionKey {
    key: jsonwebtoken::EncodingKey,
    algorithm: jsonwebtoken::Algorithm,
    key_id: Option<String>,
}

impl std::fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AssertionKey {
    /// An RSA (RS256) or P-256 (ES256) private key in PEM.
    pub fn from_pem(pem: &[u8], key_id: Option<String>) -> Option<Self> {
        let (key, algorithm) = match jsonwebtoken::EncodingKey::from_rsa_pem(pem) {
            Ok(k) => (k, jsonwebtoken::Algorithm::RS256),
            Err(_) => (
                jsonwebtoken::EncodingKey::from_ec_pem(pem).ok()?,
                jsonwebtoken::Algorithm::ES256,
            ),
        };
        Some(Self {
            key,
            algorithm,
            key_id,
        })
    }

    /// A one-minute client assertion for the token endpoint `audience`.
    fn sign(&self, client_id: &str, audience: &str, now: u64, jti: &str) -> Option<String> {
        let mut header = jsonwebtoken::Header::new(self.algorithm);
        header.kid = self.key_id.clone();
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": audience,
            "jti": jti, "iat": now, "exp": now + 60,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).ok()
    }
}

/// What an IdP may sign logout tokens with: the asymmetric algorithms.
const LOGOUT_TOKEN_ALGORITHMS: [gatehouse_jwt_core::Algorithm; 9] = {
    use gatehouse_jwt_core::Algorithm::{
        ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512,
    };
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The OS random source, or a failing one in tests.
pub type RandomSource = fn(&mut [u8]) -> Result<(), getrandom::Error>;

/// The operating system's random source gave nothing: nothing may be
/// sealed or started, the check fails closed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the operating system's random source failed")]
pub struct NoRandom;

/// What outlives a reload of the same filter (same name, issuer and client
/// id): used login states and refreshes in flight.
#[derive(Default)]
struct Shared {
    used_states: Mutex<Option<UsedStates>>,
    flights: Mutex<HashMap<String, Flight>>,
}

/// One OIDC filter at run time: its settings, keys, secret and what
/// discovery found (none until the IdP answered once).
pub struct OidcRuntime {
    pub filter: OidcFilter,
    name: String,
    keys: SessionKeys,
    secret: String,
    discovered: ArcSwapOption<Discovered>,
    http: openidconnect::reqwest::Client,
    bearer: Option<gatehouse_jwt_core::Provider>,
    assertion: Option<AssertionKey>,
    store: Option<RedisSessions>,
    /// Whether the IdP answered the last discovery: new logins are not
    /// sent to an IdP known to be down.
    idp_up: AtomicBool,
    /// When a login last made a rediscovery (single flight: held while it runs).
    rediscovered: tokio::sync::Mutex<Option<Instant>>,
    /// Whether discovery came from the runtime this one replaced (a reload).
    inherited: AtomicBool,
    shared: Arc<Shared>,
    random: RandomSource,
    /// What each of our sealed values is bound to, made once: the session
    /// cookie, the login cookie, the stored session.
    purposes: [(String, String); 3],
}

impl std::fmt::Debug for OidcRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No secret, no keys.
        f.debug_struct("OidcRuntime")
            .field("name", &self.name)
            .field("issuer", &self.filter.issuer)
            .field("discovered", &self.discovered.load().is_some())
            .finish_non_exhaustive()
    }
}

/// The request as the SSO flow needs it.
#[derive(Debug, Clone, Copy)]
pub struct HttpView<'a> {
    pub body: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub headers: &'a HashMap<String, String>,
}

/// A verdict plus headers for the upstream's response (`Set-Cookie` after
/// a refresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub verdict: Verdict,
    pub response_headers: Vec<(String, String)>,
}

impl From<Verdict> for Answer {
    fn from(verdict: Verdict) -> Self {
        Self {
            verdict,
            response_headers: Vec::new(),
        }
    }
}

impl Answer {
    /// The same answer, also setting `cookie` in the browser.
    fn with_cookie(mut self, cookie: String) -> Self {
        match &mut self.verdict {
            Verdict::Deny { headers, .. } => headers.push(("set-cookie".to_owned(), cookie)),
            Verdict::Allow { .. } => self
                .response_headers
                .push(("set-cookie".to_owned(), cookie)),
        }
        self
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn redirect(location: &str, cookies: Vec<String>) -> Verdict {
    let mut headers = vec![("location".to_owned(), location.to_owned())];
    headers.extend(cookies.into_iter().map(|c| ("set-cookie".to_owned(), c)));
    Verdict::Deny {
        status: 302,
        headers,
        body: String::new(),
    }
}

/// A page for a person in a browser: what went wrong, what to do. The
/// `code` is in the page (`data-code`) for tests and support.
fn page(status: u16, code: &str, message: &str, cookies: Vec<String>) -> Verdict {
    // `code` and `message` are our own constants: nothing to escape.
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign-in</title></head>\
         <body><h1>Sign-in</h1><p data-code=\"{code}\">{message}</p></body></html>\n"
    );
    let mut headers = vec![
        (
            "content-type".to_owned(),
            "text/html; charset=utf-8".to_owned(),
        ),
        ("cache-control".to_owned(), "no-store".to_owned()),
    ];
    headers.extend(cookies.into_iter().map(|c| ("set-cookie".to_owned(), c)));
    Verdict::Deny {
        status,
        headers,
        body,
    }
}

/// The answer when the OS random source fails: nothing can be sealed, so
/// nothing is; the request is refused whatever Envoy's failure mode.
fn no_random() -> Verdict {
    tracing::error!("the operating system's random source failed: refusing to seal");
    Verdict::deny(503, "unavailable", "the service cannot answer now")
}

/// Why a session could not be saved.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreDown),
    /// The stored session was deleted meanwhile (a logout): not written back.
    #[error("the session was ended meanwhile")]
    Ended,
    #[error(transparent)]
    Random(#[from] NoRandom),
}

impl OidcRuntime {
    /// A runtime for the filter `name`; nothing is fetched until
    /// [`OidcRuntime::spawn_discovery`]. With `previous` (the runtime of the
    /// same name before a reload) and the same issuer, what it discovered
    /// is kept; with the same client id too, so are its used login states
    /// and refreshes in flight.
    pub fn new(
        name: &str,
        filter: OidcFilter,
        keys: SessionKeys,
        secret: String,
        bearer: Option<gatehouse_jwt_core::Provider>,
        assertion: Option<AssertionKey>,
        previous: Option<&OidcRuntime>,
    ) -> Result<Self, String> {
        let store = filter
            .session_store
            .as_ref()
            .map(|s| RedisSessions::new(&s.redis_url, &s.key_prefix))
            .transpose()?;
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects from the IdP's endpoints would let a
            // compromised answer point us anywhere.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let purposes = [
            filter.cookie_name.clone(),
            format!("{}_login", filter.cookie_name),
            STORED_SESSION.to_owned(),
        ]
        .map(|what| {
            let purpose = filter.seal_purpose(name, &what);
            (what, purpose)
        });
        let runtime = Self {
            filter,
            name: name.to_owned(),
            keys,
            secret,
            discovered: ArcSwapOption::empty(),
            http,
            bearer,
            assertion,
            store,
            idp_up: AtomicBool::new(false),
            rediscovered: tokio::sync::Mutex::new(None),
            inherited: AtomicBool::new(false),
            shared: Arc::new(Shared::default()),
            purposes,
            random: getrandom::getrandom,
        };
        Ok(match previous {
            Some(old) => runtime.inherit(old),
            None => runtime,
        })
    }

    /// Keeps what `old` (this filter before a reload) knew, where it still
    /// holds: discovery when the issuer is the same (the client is made
    /// again from the kept metadata, so a new secret or callback applies),
    /// used states and refreshes in flight when the client is the same too.
    fn inherit(mut self, old: &OidcRuntime) -> Self {
        if old.filter.issuer != self.filter.issuer {
            return self;
        }
        if let Some(found) = old.discovered.load_full()
            && let Ok(rebuilt) = self.discovered_from(found.metadata.clone())
        {
            self.discovered.store(Some(Arc::new(rebuilt)));
            let up = old.idp_up.load(Ordering::Relaxed);
            self.idp_up.store(up, Ordering::Relaxed);
            // Only a known-good discovery waits for its next turn; an IdP
            // marked down is retried at once, as it would have been.
            self.inherited.store(up, Ordering::Relaxed);
        }
        if old.filter.client_id == self.filter.client_id && old.name == self.name {
            self.shared = old.shared.clone();
        }
        self
    }

    #[cfg(test)]
    fn set_random_for_test(&mut self, random: RandomSource) {
        self.random = random;
    }

    fn random_bytes<const N: usize>(&self) -> Result<[u8; N], NoRandom> {
        let mut out = [0u8; N];
        (self.random)(&mut out).map_err(|_| NoRandom)?;
        Ok(out)
    }

    /// A fresh random value, base64url: `state`, `nonce`, PKCE verifier.
    fn random_text<const N: usize>(&self) -> Result<String, NoRandom> {
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.random_bytes::<N>()?))
    }

    /// Seals `value` for `what` (a cookie name, or the session store) of
    /// this filter, with a fresh nonce from the OS, or not at all.
    fn seal<T: serde::Serialize>(&self, what: &str, value: &T) -> Result<String, NoRandom> {
        let nonce = self.random_bytes::<12>()?;
        // A serialization failure of our own types would be a bug: also
        // refused rather than sealed empty.
        self.keys
            .seal(&self.purpose(what), value, nonce)
            .map_err(|_| NoRandom)
    }

    fn open<T: serde::de::DeserializeOwned>(&self, what: &str, sealed: &str) -> Option<T> {
        self.keys.open(&self.purpose(what), sealed).ok()
    }

    fn purpose(&self, what: &str) -> std::borrow::Cow<'_, str> {
        match self.purposes.iter().find(|(w, _)| w == what) {
            Some((_, purpose)) => purpose.as_str().into(),
            None => self.filter.seal_purpose(&self.name, what).into(),
        }
    }

    fn cookies(&self) -> CookieAttributes {
        CookieAttributes {
            domain: self.filter.cookie_domain.clone(),
            path: self.filter.cookie_path.clone(),
            secure: self.filter.cookie_secure,
        }
    }

    fn login_cookie(&self) -> String {
        format!("{}_login", self.filter.cookie_name)
    }

    fn clear_session_cookie(&self) -> String {
        self.cookies()
            .set_cookie(&self.filter.cookie_name, "", Some(0))
    }

    fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            idle_secs: self.filter.idle_timeout_secs,
            absolute_secs: self.filter.absolute_timeout_secs,
            refresh_margin_secs: self.filter.refresh_margin_secs,
        }
    }

    /// Decides one request for this filter.
    pub async fn check(&self, request: &HttpView<'_>, metrics: &Metrics) -> Answer {
        let now = now_secs();
        let path = path_only(request.path);
        if path == self.filter.callback_path {
            return self.callback(request, now, metrics).await.into();
        }
        if path == self.filter.logout_path {
            return self.logout(request).await.into();
        }
        if path == self.filter.backchannel_logout_path && self.store.is_some() {
            return self.backchannel_logout(request, now).await.into();
        }
        if let Some(provider) = &self.bearer {
            match bearer_token(request.headers.get("authorization").map(String::as_str)) {
                BearerHeader::Absent => {}
                BearerHeader::Token(token) => {
                    return self.bearer_check(provider, token, now).into();
                }
                BearerHeader::Malformed => return invalid_token().into(),
            }
        }
        let cookie_header = request.headers.get("cookie").map(String::as_str);
        let (session, id) = match self.read_session(cookie_header).await {
            Ok(Some((s, id))) => (Some(s), id),
            Ok(None) => (None, None),
            Err(e) => {
                tracing::warn!(error = %e, "session store unreachable");
                return self.store_down(request);
            }
        };
        let public = self.filter.is_public(request.path);
        let mut session = match session.map(|s| (s.state(now, self.lifetimes()), s)) {
            Some((SessionState::Valid, s)) => s,
            Some((SessionState::Refresh, s)) => {
                let outcome = self.refresh_once(&s, now, metrics).await;
                match after_refresh(s, outcome, now) {
                    AfterRefresh::Use(s) => s,
                    AfterRefresh::Login => return self.login(request, now, public, metrics).await,
                    AfterRefresh::End => {
                        return self.end_session(request, id, now, public, metrics).await;
                    }
                }
            }
            Some((SessionState::Expired, _)) | None => {
                return self.login(request, now, public, metrics).await;
            }
        };
        if !self.filter.required_groups.is_empty()
            && !session
                .groups
                .iter()
                .any(|g| self.filter.required_groups.contains(g))
        {
            return Verdict::deny(403, "forbidden", "your account lacks a required group").into();
        }
        let mut response_headers = Vec::new();
        // Idle tracking rewrites the session at most once a minute, not on
        // every request (a refresh set `seen_at` back to force it).
        if session.seen_at.saturating_add(60) <= now {
            session.seen_at = now;
            match self.write_session(&session, id.clone(), now).await {
                Ok(Some(set)) => response_headers.push(("set-cookie".to_owned(), set)),
                Ok(None) => {}
                Err(WriteError::Store(e)) => {
                    tracing::warn!(error = %e, "session store unreachable");
                    return self.store_down(request);
                }
                Err(WriteError::Ended) => {
                    // Logged out (or back-channel logged out) while this
                    // request was on its way: the session is not revived.
                    return self.end_session(request, None, now, public, metrics).await;
                }
                Err(WriteError::Random(_)) => return no_random().into(),
            }
        }
        Answer {
            verdict: self.allow(&session, cookie_header),
            response_headers,
        }
    }

    /// The session is over: the stored copy is deleted, the cookie cleared,
    /// and the request answered as one without a session.
    async fn end_session(
        &self,
        request: &HttpView<'_>,
        id: Option<String>,
        now: u64,
        public: bool,
        metrics: &Metrics,
    ) -> Answer {
        if let (Some(store), Some(id)) = (&self.store, id)
            && let Err(e) = store.delete(&id).await
        {
            tracing::warn!(error = %e, "session store unreachable while ending a session");
        }
        self.login(request, now, public, metrics)
            .await
            .with_cookie(self.clear_session_cookie())
    }

    /// A fresh client assertion when the filter authenticates with a key.
    fn client_assertion(&self, discovered: &Discovered, now: u64) -> Option<String> {
        let key = self.assertion.as_ref()?;
        let jti = self.random_text::<16>().ok()?;
        let signed = key.sign(&self.filter.client_id, &discovered.token_url, now, &jti);
        if signed.is_none() {
            tracing::error!("cannot sign the client assertion");
        }
        signed
    }

    /// A machine client's bearer JWT: valid, it passes with its identity;
    /// invalid, 401 as RFC 6750 says (never a login page).
    fn bearer_check(
        &self,
        provider: &gatehouse_jwt_core::Provider,
        token: &str,
        now: u64,
    ) -> Verdict {
        let verified = match provider.verify(token, now) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "bearer token refused");
                return invalid_token();
            }
        };
        match bearer_identity(&self.filter, &verified.claims) {
            Ok(identity) => Verdict::Allow {
                set: identity.set,
                remove: identity.remove,
                remove_query: Vec::new(),
            },
            Err(refusal) if refusal.status() == 401 => {
                tracing::debug!(error = %refusal, "bearer token refused");
                invalid_token()
            }
            Err(refusal) => Verdict::deny(refusal.status(), "forbidden", &refusal.to_string()),
        }
    }

    /// The session a request's cookie names: sealed in the cookie itself,
    /// or in Redis under the id the cookie holds (`Some(id)` then).
    async fn read_session(
        &self,
        cookie_header: Option<&str>,
    ) -> Result<Option<(Session, Option<String>)>, StoreDown> {
        let Some(value) = cookie(cookie_header, &self.filter.cookie_name) else {
            return Ok(None);
        };
        let Some(store) = &self.store else {
            return Ok(self
                .open::<Session>(&self.filter.cookie_name, value)
                .map(|s| (s, None)));
        };
        let Some(reference) = self.open::<SessionRef>(&self.filter.cookie_name, value) else {
            return Ok(None);
        };
        let stored = store.get(&reference.id).await?;
        Ok(stored
            .and_then(|sealed| self.open::<Session>(STORED_SESSION, &sealed))
            .map(|s| (s, Some(reference.id))))
    }

    /// Saves a session: a new cookie when the cookie holds it (or holds a
    /// new Redis id); nothing to set when only the Redis entry changed. An
    /// existing Redis entry is only overwritten while it exists (`SET XX`):
    /// a logout meanwhile wins.
    async fn write_session(
        &self,
        session: &Session,
        id: Option<String>,
        now: u64,
    ) -> Result<Option<String>, WriteError> {
        let Some(store) = &self.store else {
            return Ok(Some(self.session_cookie(session)?));
        };
        let ttl = session
            .created_at
            .saturating_add(self.filter.absolute_timeout_secs)
            .saturating_sub(now);
        let sealed = self.seal(STORED_SESSION, session)?;
        if let Some(id) = id {
            return if store.update(&id, &sealed, ttl).await? {
                Ok(None)
            } else {
                Err(WriteError::Ended)
            };
        }
        let id: String = self
            .random_bytes::<32>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        store
            .create(&id, &sealed, ttl, session.sid.as_deref(), &session.sub)
            .await?;
        let reference = self.seal(&self.filter.cookie_name, &SessionRef { id })?;
        Ok(Some(self.cookies().set_cookie(
            &self.filter.cookie_name,
            &reference,
            Some(self.filter.absolute_timeout_secs),
        )))
    }

    fn store_down(&self, request: &HttpView<'_>) -> Answer {
        if is_api_client(request.method, request.headers) {
            return Verdict::deny(
                503,
                "session_store_unavailable",
                "sessions cannot be read: try again shortly",
            )
            .into();
        }
        page(
            503,
            "session_store_unavailable",
            "sessions cannot be read: try again shortly",
            Vec::new(),
        )
        .into()
    }

    /// OpenID Connect Back-Channel Logout: the IdP posts a signed logout
    /// token; every session of its `sid` (or, without one, its `sub`) ends.
    async fn backchannel_logout(&self, request: &HttpView<'_>, now: u64) -> Verdict {
        let answer = |status: u16, error: &str| Verdict::Deny {
            status,
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("cache-control".to_owned(), "no-store".to_owned()),
            ],
            body: if error.is_empty() {
                String::new()
            } else {
                format!(r#"{{"error":"{error}"}}"#)
            },
        };
        if !request.method.eq_ignore_ascii_case("POST") {
            return answer(405, "invalid_request");
        }
        let token = request.body.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "logout_token").then(|| percent_decode(v))
        });
        let (Some(token), Some(discovered), Some(store)) =
            (token, self.discovered.load_full(), &self.store)
        else {
            return answer(400, "invalid_request");
        };
        let Some(verifier) = &discovered.logout_tokens else {
            return answer(400, "invalid_request");
        };
        let claims = match verifier.verify(&token, now) {
            Ok(v) => v.claims,
            Err(e) => {
                tracing::info!(error = %e, "logout token refused");
                return answer(400, "invalid_request");
            }
        };
        // §2.6: the event must be there, a nonce must not, and sid or sub
        // must say whose sessions end.
        let has_event = claims
            .get("events")
            .and_then(|e| e.as_object())
            .is_some_and(|e| e.contains_key(BACKCHANNEL_EVENT));
        let sid = claims.get("sid").and_then(|v| v.as_str());
        let sub = claims.get("sub").and_then(|v| v.as_str());
        if !has_event || claims.contains_key("nonce") || (sid.is_none() && sub.is_none()) {
            return answer(400, "invalid_request");
        }
        match store.end_all(sid, sub).await {
            Ok(n) => {
                tracing::info!(sessions = n, "back-channel logout");
                answer(200, "")
            }
            Err(e) => {
                tracing::warn!(error = %e, "back-channel logout could not reach the session store");
                answer(501, "temporarily_unavailable")
            }
        }
    }

    fn session_cookie(&self, session: &Session) -> Result<String, NoRandom> {
        let sealed = self.seal(&self.filter.cookie_name, session)?;
        Ok(self.cookies().set_cookie(
            &self.filter.cookie_name,
            &sealed,
            Some(self.filter.absolute_timeout_secs),
        ))
    }

    /// Identity headers upstream; our cookies stay at the edge.
    fn allow(&self, session: &Session, cookie_header: Option<&str>) -> Verdict {
        let f = &self.filter;
        let identity = identity_headers(f, &session.sub, session.email.as_deref(), &session.groups);
        let (mut set, mut remove) = (identity.set, identity.remove);
        if f.forward_id_token {
            set.push((
                "authorization".to_owned(),
                format!("Bearer {}", session.id_token),
            ));
        }
        if f.forward_access_token {
            set.push((
                "authorization".to_owned(),
                format!("Bearer {}", session.access_token),
            ));
        }
        let login = self.login_cookie();
        match cookie_header.and_then(|h| cookies_without(h, |n| n == f.cookie_name || n == login)) {
            Some(rest) => set.push(("cookie".to_owned(), rest)),
            None => remove.push("cookie".to_owned()),
        }
        Verdict::Allow {
            set,
            remove,
            remove_query: Vec::new(),
        }
    }

    /// No session: a public path goes on anonymously (identity headers
    /// removed), a program gets 401, a browser goes to the IdP.
    async fn login(
        &self,
        request: &HttpView<'_>,
        now: u64,
        public: bool,
        metrics: &Metrics,
    ) -> Answer {
        let f = &self.filter;
        if public {
            return Verdict::Allow {
                set: Vec::new(),
                remove: vec![
                    f.user_header.clone(),
                    f.email_header.clone(),
                    f.groups_header.clone(),
                ],
                remove_query: Vec::new(),
            }
            .into();
        }
        if is_api_client(request.method, request.headers) {
            return Verdict::deny(401, "login_required", "sign in first: no valid session").into();
        }
        let Some(discovered) = self.discovered_for_login(metrics).await else {
            // Existing sessions keep working; only new logins wait.
            return page(
                503,
                "idp_unavailable",
                "the sign-in service is not reachable: try again shortly",
                Vec::new(),
            )
            .into();
        };
        // Every secret of the flow comes from the OS, or there is no flow.
        let (Ok(state), Ok(nonce_value), Ok(verifier)) = (
            self.random_text::<16>(),
            self.random_text::<16>(),
            self.random_text::<32>(),
        ) else {
            return no_random().into();
        };
        let verifier = PkceCodeVerifier::new(verifier);
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let mut auth = discovered
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                {
                    let state = state.clone();
                    move || CsrfToken::new(state)
                },
                {
                    let nonce_value = nonce_value.clone();
                    move || Nonce::new(nonce_value)
                },
            )
            .set_pkce_challenge(challenge);
        for scope in f.scopes.iter().filter(|s| *s != "openid") {
            auth = auth.add_scope(Scope::new(scope.clone()));
        }
        for (k, v) in &f.extra_auth_params {
            auth = auth.add_extra_param(k.as_str(), v.as_str());
        }
        let (url, _, _) = auth.url();
        let flow = LoginFlow {
            state,
            nonce: nonce_value,
            pkce_verifier: verifier.secret().clone(),
            return_to: safe_return_path(request.path),
            started_at: now,
        };
        let login = self.login_cookie();
        let Ok(sealed) = self.seal(&login, &flow) else {
            return no_random().into();
        };
        let set = self
            .cookies()
            .set_cookie(&login, &sealed, Some(LOGIN_FLOW_SECS));
        redirect(url.as_str(), vec![set]).into()
    }

    /// POST only, and only from this site: a cross-site form cannot log
    /// anyone out.
    async fn logout(&self, request: &HttpView<'_>) -> Verdict {
        if !request.method.eq_ignore_ascii_case("POST") {
            return Verdict::deny(405, "method_not_allowed", "log out with POST");
        }
        let same_site = request.headers.get("sec-fetch-site").map(String::as_str);
        let origin_host = request
            .headers
            .get("origin")
            .and_then(|o| o.split_once("://"))
            .map(|(_, h)| h);
        let from_here = match (same_site, origin_host) {
            (Some(site), _) => site == "same-origin",
            (None, Some(host)) => host.eq_ignore_ascii_case(request.host),
            (None, None) => false,
        };
        if !from_here {
            return Verdict::deny(403, "cross_site_logout", "log out from this site");
        }
        // Server-side revocation: with the Redis store, the session is gone
        // for every copy of the cookie.
        let session = match self
            .read_session(request.headers.get("cookie").map(String::as_str))
            .await
        {
            Ok(Some((session, id))) => {
                if let (Some(store), Some(id)) = (&self.store, id)
                    && let Err(e) = store.delete(&id).await
                {
                    tracing::warn!(error = %e, "session store unreachable at logout");
                }
                Some(session)
            }
            Ok(None) | Err(_) => None,
        };
        let clear = self.clear_session_cookie();
        let after = self.filter.post_logout_redirect_url.clone();
        let end_session = self
            .discovered
            .load()
            .as_ref()
            .and_then(|d| d.end_session.clone())
            .filter(|_| self.filter.rp_initiated_logout);
        let location = match (end_session, session) {
            (Some(endpoint), Some(session)) => {
                let mut url = format!(
                    "{endpoint}{}id_token_hint={}&client_id={}",
                    if endpoint.contains('?') { '&' } else { '?' },
                    percent_encode(&session.id_token),
                    percent_encode(&self.filter.client_id)
                );
                if let Some(after) = &after {
                    url.push_str("&post_logout_redirect_uri=");
                    url.push_str(&percent_encode(after));
                }
                url
            }
            _ => after.unwrap_or_else(|| "/".to_owned()),
        };
        redirect(&location, vec![clear])
    }
}

/// 401 for a bad bearer token, as RFC 6750 §3 says.
fn invalid_token() -> Verdict {
    let mut verdict = Verdict::deny(401, "invalid_token", "the bearer token is not valid");
    if let Verdict::Deny { headers, .. } = &mut verdict {
        headers.push((
            "www-authenticate".to_owned(),
            "Bearer error=\"invalid_token\", error_description=\"the token is not valid\""
                .to_owned(),
        ));
    }
    verdict
}

/// What the Redis store holds sessions for: sealed under its own purpose,
/// so a stored session does not open as a cookie, nor a cookie as one.
const STORED_SESSION: &str = gatehouse_authz_core::session::STORED_SESSION_PURPOSE;

/// The claims of a verified ID token (the core claims type of
/// `openidconnect` has no field for `groups`, `sid` or custom claims).
fn payload_of(id_token: &CoreIdToken) -> serde_json::Map<String, serde_json::Value> {
    use base64::Engine as _;
    let text = id_token.to_string();
    let payload = text.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .unwrap_or_default()
}

/// `sid` from a verified ID token's payload.
fn sid_of(id_token: &CoreIdToken) -> Option<String> {
    payload_of(id_token)
        .get("sid")
        .and_then(|s| s.as_str())
        .map(str::to_owned)
}

/// `groups` from a verified ID token's payload.
fn groups_of(id_token: &CoreIdToken) -> Vec<String> {
    payload_of(id_token)
        .get("groups")
        .cloned()
        .and_then(|g| serde_json::from_value::<Vec<String>>(g).ok())
        .unwrap_or_default()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

mod callback;
mod discovery;
mod refresh;
#[cfg(test)]
mod tests;

use refresh::Flight;
