//! OpenID Connect single sign-on inside `Check`: the login redirect, the
//! callback, sessions, refresh and logout, all answered through Envoy's
//! ext_authz responses, so no extra listener is needed.
//!
//! Here only the I/O: the IdP (discovery, code exchange, refresh), the
//! session store, sealing with the OS random source, the clock and the
//! logs. Every decision on the way is `gatehouse_authz_core::oidc`'s.
//!
//! Logs here never carry a query string, a code, a `state`, a token or a
//! cookie: only outcomes and error kinds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use gatehouse_authz_core::identity::bearer_identity;
use gatehouse_authz_core::oidc::access::{self, LoginSecrets, NoSession, SessionStep};
use gatehouse_authz_core::oidc::{self as flow, Route};
use gatehouse_authz_core::oidc::{Answer, HttpView};
use gatehouse_authz_core::session::{
    AfterRefresh, LOGIN_FLOW_SECS, LoginFlow, RefreshOutcome, Session, SessionKeys, SessionRef,
    StateUse, USED_STATES_CAPACITY, UsedStates, after_refresh, state_key,
};
use gatehouse_authz_core::web::cookie;
use gatehouse_authz_core::{ClientAuth, OidcFilter, Verdict};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, RefreshToken, Scope, TokenResponse,
};

use crate::metrics::Metrics;
use crate::store::{RedisSessions, StoreDown};

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
    /// Sessions ended here, for the full check and the fast path's feed.
    revocations: Mutex<Option<gatehouse_authz_core::oidc::fast::Revocations>>,
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
    /// What the fast path's tickets and their keys are bound to.
    ticket_purpose: String,
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

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The answer when the OS random source fails, logged once.
fn no_random() -> Verdict {
    tracing::error!("the operating system's random source failed: refusing to seal");
    flow::no_random()
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
            flow::login_cookie_name(&filter),
            STORED_SESSION.to_owned(),
        ]
        .map(|what| {
            let purpose = filter.seal_purpose(name, &what);
            (what, purpose)
        });
        let ticket_purpose = filter.seal_purpose(name, "ticket");
        let runtime = Self {
            ticket_purpose,
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
        if !flow::discovery::keeps_discovery(&old.filter, &self.filter) {
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
        if flow::discovery::keeps_flows(&old.name, &old.filter, &self.name, &self.filter) {
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

    /// Decides one request for this filter.
    pub async fn check(&self, request: &HttpView<'_>, metrics: &Metrics) -> Answer {
        let now = now_secs();
        let route = flow::route(
            &self.filter,
            request,
            self.store.is_some(),
            self.bearer.is_some(),
        );
        let cookie_header = request.header("cookie");
        let (session, id) = match route {
            Route::Callback => return self.callback(request, now, metrics).await.into(),
            Route::Logout => return self.logout(request).await.into(),
            Route::BackchannelLogout => return self.backchannel_logout(request, now).await.into(),
            Route::Bearer(token) => return self.bearer_check(token, now).into(),
            Route::InvalidBearer => return flow::invalid_token().into(),
            Route::Session => match self.read_session(cookie_header).await {
                // Logged out here: a replayed cookie is no session.
                Ok(Some((s, _))) if self.is_revoked(&s, now) => (None, None),
                Ok(Some((s, id))) => (Some(s), id),
                Ok(None) => (None, None),
                Err(e) => {
                    tracing::warn!(error = %e, "session store unreachable");
                    return flow::store_unavailable(request).into();
                }
            },
        };
        let mut session = match access::session_step(&self.filter, session, now) {
            SessionStep::Use(s) => s,
            SessionStep::Refresh(s) => {
                let outcome = self.refresh_once(&s, now, metrics).await;
                match after_refresh(s, outcome, now) {
                    AfterRefresh::Use(s) => s,
                    AfterRefresh::Login => return self.login(request, now, metrics).await,
                    AfterRefresh::End => return self.end_session(request, id, now, metrics).await,
                }
            }
            SessionStep::None => return self.login(request, now, metrics).await,
        };
        if let Err(forbidden) = access::admit(&self.filter, &session) {
            return forbidden.into();
        }
        let mut response_headers = Vec::new();
        // Idle tracking rewrites the session at most once a minute, not on
        // every request (a refresh set `seen_at` back to force it).
        if access::touch(&mut session, now) {
            match self.write_session(&session, id.clone(), now).await {
                Ok(Some(set)) => response_headers.push(("set-cookie".to_owned(), set)),
                Ok(None) => {}
                Err(WriteError::Store(e)) => {
                    tracing::warn!(error = %e, "session store unreachable");
                    return flow::store_unavailable(request).into();
                }
                Err(WriteError::Ended) => {
                    // Logged out (or back-channel logged out) while this
                    // request was on its way: the session is not revived.
                    return self.end_session(request, None, now, metrics).await;
                }
                Err(WriteError::Random(_)) => return no_random().into(),
            }
        }
        let verdict = access::allow(&self.filter, &session, request.headers, cookie_header);
        if let Some(set) = self.ticket_cookie(&session, &verdict, now) {
            response_headers.push(("set-cookie".to_owned(), set));
        }
        Answer {
            verdict,
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
        metrics: &Metrics,
    ) -> Answer {
        if let (Some(store), Some(id)) = (&self.store, id)
            && let Err(e) = store.delete(&id).await
        {
            tracing::warn!(error = %e, "session store unreachable while ending a session");
        }
        flow::fast::clear_cookies(&self.filter)
            .into_iter()
            .fold(self.login(request, now, metrics).await, Answer::with_cookie)
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
    fn bearer_check(&self, token: &str, now: u64) -> Verdict {
        let Some(provider) = &self.bearer else {
            return flow::invalid_token();
        };
        let verified = match provider.verify(token, now) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "bearer token refused");
                return flow::invalid_token();
            }
        };
        match bearer_identity(&self.filter, &verified.claims) {
            Ok(identity) => access::bearer_allowed(identity),
            Err(refusal) => {
                if refusal.status() == 401 {
                    tracing::debug!(error = %refusal, "bearer token refused");
                }
                access::bearer_refused(refusal)
            }
        }
    }

    /// No usable session: what [`access::without_session`] says, or a
    /// login at the IdP for a browser.
    async fn login(&self, request: &HttpView<'_>, now: u64, metrics: &Metrics) -> Answer {
        match access::without_session(&self.filter, request) {
            NoSession::Answer(verdict) => verdict.into(),
            NoSession::SignIn => self.start_login(request, now, metrics).await.into(),
        }
    }

    /// Sends the browser to the IdP, the flow sealed in the login cookie.
    async fn start_login(&self, request: &HttpView<'_>, now: u64, metrics: &Metrics) -> Verdict {
        let Some(discovered) = self.discovered_for_login(metrics).await else {
            // Existing sessions keep working; only new logins wait.
            return flow::idp_unavailable(Vec::new());
        };
        // Every secret of the flow comes from the OS, or there is no flow.
        let (Ok(state), Ok(nonce), Ok(pkce_verifier)) = (
            self.random_text::<16>(),
            self.random_text::<16>(),
            self.random_text::<32>(),
        ) else {
            return no_random();
        };
        let secrets = LoginSecrets {
            state,
            nonce,
            pkce_verifier,
        };
        let login = access::start_login(secrets, request.path, now);
        let verifier = PkceCodeVerifier::new(login.pkce_verifier.clone());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let mut auth = discovered
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                {
                    let state = login.state.clone();
                    move || CsrfToken::new(state)
                },
                {
                    let nonce = login.nonce.clone();
                    move || Nonce::new(nonce)
                },
            )
            .set_pkce_challenge(challenge);
        // A login started on another of the filter's origins returns there.
        let redirect = self.filter.callback_url_for(request.host);
        if redirect != self.filter.callback_url {
            match RedirectUrl::new(redirect.to_owned()) {
                Ok(url) => auth = auth.set_redirect_uri(std::borrow::Cow::Owned(url)),
                Err(_) => return flow::idp_unavailable(Vec::new()),
            }
        }
        for scope in access::extra_scopes(&self.filter) {
            auth = auth.add_scope(Scope::new(scope.to_owned()));
        }
        for (k, v) in &self.filter.extra_auth_params {
            auth = auth.add_extra_param(k.as_str(), v.as_str());
        }
        let (url, _, _) = auth.url();
        let name = flow::login_cookie_name(&self.filter);
        let Ok(sealed) = self.seal(&name, &login) else {
            return no_random();
        };
        let set =
            flow::cookie_attributes(&self.filter).set_cookie(&name, &sealed, Some(LOGIN_FLOW_SECS));
        flow::redirect(url.as_str(), vec![set])
    }
}

/// What the Redis store holds sessions for: sealed under its own purpose,
/// so a stored session does not open as a cookie, nor a cookie as one.
const STORED_SESSION: &str = gatehouse_authz_core::session::STORED_SESSION_PURPOSE;

mod callback;
mod discovery;
mod fast;
mod logout;
mod refresh;
mod sessions;
#[cfg(test)]
mod tests;

use refresh::Flight;
use sessions::WriteError;
