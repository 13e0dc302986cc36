//! OpenID Connect single sign-on inside `Check`: the login redirect, the
//! callback, sessions, refresh and logout, all answered through Envoy's
//! ext_authz responses, so no extra listener is needed.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use gatehouse_authz_core::session::{
    LOGIN_FLOW_SECS, Lifetimes, LoginFlow, Session, SessionKeys, SessionRef, SessionState,
};
use gatehouse_authz_core::web::{
    CookieAttributes, cookie, cookies_without, is_api_client, safe_return_path,
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

use gatehouse_authz_core::session::STORED_SESSION_PURPOSE as STORED_SESSION;

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

/// What discovery found.
struct Discovered {
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
    fn sign(&self, client_id: &str, audience: &str, now: u64) -> Option<String> {
        let mut jti = [0u8; 16];
        getrandom::getrandom(&mut jti).ok()?;
        let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
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

/// One OIDC filter at run time: its settings, keys, secret and what
/// discovery found (none until the IdP answered once).
pub struct OidcRuntime {
    pub filter: OidcFilter,
    keys: SessionKeys,
    secret: String,
    discovered: ArcSwapOption<Discovered>,
    http: openidconnect::reqwest::Client,
    bearer: Option<gatehouse_jwt_core::Provider>,
    assertion: Option<AssertionKey>,
    store: Option<RedisSessions>,
    /// Whether the IdP answered the last discovery: new logins are not
    /// sent to an IdP known to be down.
    idp_up: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for OidcRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No secret, no keys.
        f.debug_struct("OidcRuntime")
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

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn nonce() -> [u8; 12] {
    let mut n = [0u8; 12];
    // A failing OS RNG leaves zeros: sealing still works but would repeat
    // nonces, so say so loudly.
    if getrandom::getrandom(&mut n).is_err() {
        tracing::error!("the operating system's random source failed");
    }
    n
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

impl OidcRuntime {
    /// A runtime for `filter`; nothing is fetched until [`OidcRuntime::spawn_discovery`].
    pub fn new(
        filter: OidcFilter,
        keys: SessionKeys,
        secret: String,
        bearer: Option<gatehouse_jwt_core::Provider>,
        assertion: Option<AssertionKey>,
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
        Ok(Self {
            filter,
            keys,
            secret,
            discovered: ArcSwapOption::empty(),
            http,
            bearer,
            assertion,
            store,
            idp_up: std::sync::atomic::AtomicBool::new(false),
        })
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

    fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            idle_secs: self.filter.idle_timeout_secs,
            absolute_secs: self.filter.absolute_timeout_secs,
            refresh_margin_secs: self.filter.refresh_margin_secs,
        }
    }

    /// Reads discovery once.
    async fn discover(&self) -> Result<(), String> {
        let issuer = IssuerUrl::new(self.filter.issuer.clone()).map_err(|e| e.to_string())?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| format!("discovery failed: {e}"))?;
        let end_session = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.url().to_string());
        let redirect =
            RedirectUrl::new(self.filter.callback_url.clone()).map_err(|e| e.to_string())?;
        let token_url = metadata
            .token_endpoint()
            .map(|u| u.url().to_string())
            .unwrap_or_default();
        let logout_tokens = serde_json::to_vec(metadata.jwks())
            .ok()
            .and_then(|jwks| gatehouse_jwt_core::KeySet::from_jwks(&jwks).ok())
            .map(|keys| {
                gatehouse_jwt_core::Provider::new(
                    Some(self.filter.issuer.clone()),
                    vec![self.filter.client_id.clone()],
                    LOGOUT_TOKEN_ALGORITHMS.to_vec(),
                    keys,
                    30,
                )
            });
        let secret = (!self.secret.is_empty()).then(|| ClientSecret::new(self.secret.clone()));
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.filter.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect)
        .set_auth_type(match self.filter.client_auth {
            ClientAuth::SecretBasic => AuthType::BasicAuth,
            // With a key, the body carries the client id and the assertion.
            ClientAuth::SecretPost | ClientAuth::PrivateKeyJwt { .. } => AuthType::RequestBody,
        });
        self.discovered.store(Some(Arc::new(Discovered {
            client,
            end_session,
            token_url,
            logout_tokens,
        })));
        Ok(())
    }

    /// Reads discovery now and then again every `discovery_refresh_secs`
    /// (sooner, with backoff, after a failure), keeping what it had when the
    /// IdP does not answer. Stops when the runtime is dropped (a reload).
    pub fn spawn_discovery(self: &Arc<Self>, metrics: Arc<Metrics>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut retry = Duration::from_millis(250);
            loop {
                let Some(rt) = weak.upgrade() else { return };
                let result = rt.discover().await;
                rt.idp_up
                    .store(result.is_ok(), std::sync::atomic::Ordering::Relaxed);
                let wait = match result {
                    Ok(()) => {
                        tracing::info!(issuer = %rt.filter.issuer, "openid provider discovered");
                        retry = Duration::from_millis(250);
                        Duration::from_secs(rt.filter.discovery_refresh_secs.max(1))
                    }
                    Err(e) => {
                        metrics.idp_errors.inc();
                        tracing::warn!(issuer = %rt.filter.issuer, error = %e, retry_in = ?retry, "openid provider not reachable, keeping what was discovered before");
                        let wait = retry;
                        retry = (retry * 2).min(Duration::from_secs(30));
                        wait
                    }
                };
                drop(rt);
                tokio::time::sleep(wait).await;
            }
        });
    }

    /// Decides one request for this filter.
    pub async fn check(&self, request: &HttpView<'_>, metrics: &Metrics) -> Answer {
        let now = now_secs();
        let path = request.path.split('?').next().unwrap_or("/");
        if path == self.filter.callback_path {
            return self.callback(request, now, metrics).await.into();
        }
        if path == self.filter.logout_path {
            return self.logout(request).await.into();
        }
        if path == self.filter.backchannel_logout_path && self.store.is_some() {
            return self.backchannel_logout(request, now).await.into();
        }
        if let Some(provider) = &self.bearer
            && let Some(token) = request.headers.get("authorization").and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
        {
            return self.bearer_check(provider, token.trim(), now).into();
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
        let public = self
            .filter
            .public_paths
            .iter()
            .any(|p| path.starts_with(p.as_str()));
        let mut session = match session.map(|s| (s.state(now, self.lifetimes()), s)) {
            Some((SessionState::Valid, s)) => s,
            Some((SessionState::Refresh, s)) => match self.refresh(s, now, metrics).await {
                Some(s) => s,
                None => return self.login(request, now, public),
            },
            Some((SessionState::Expired, _)) | None => return self.login(request, now, public),
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
            match self.write_session(&session, id, now).await {
                Ok(Some(set)) => response_headers.push(("set-cookie".to_owned(), set)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "session store unreachable");
                    return self.store_down(request);
                }
            }
        }
        Answer {
            verdict: self.allow(&session, cookie_header),
            response_headers,
        }
    }

    /// A fresh client assertion when the filter authenticates with a key.
    fn client_assertion(&self, discovered: &Discovered, now: u64) -> Option<String> {
        let key = self.assertion.as_ref()?;
        let signed = key.sign(&self.filter.client_id, &discovered.token_url, now);
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
        let f = &self.filter;
        match provider.verify(token, now) {
            Ok(verified) if !f.required_claims.iter().all(|r| r.holds(&verified.claims)) => {
                Verdict::deny(403, "forbidden", "the token lacks a required claim")
            }
            Ok(verified) => {
                let text = |name: &str| {
                    verified
                        .claims
                        .get(name)
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                };
                let groups: Vec<String> = verified
                    .claims
                    .get("groups")
                    .and_then(|g| g.as_array())
                    .map(|g| {
                        g.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if !f.required_groups.is_empty()
                    && !groups.iter().any(|g| f.required_groups.contains(g))
                {
                    return Verdict::deny(403, "forbidden", "the token lacks a required group");
                }
                let mut set = vec![(f.user_header.clone(), text("sub").unwrap_or_default())];
                let mut remove = Vec::new();
                match text("email") {
                    Some(e) => set.push((f.email_header.clone(), e)),
                    None => remove.push(f.email_header.clone()),
                }
                if groups.is_empty() {
                    remove.push(f.groups_header.clone());
                } else {
                    set.push((f.groups_header.clone(), groups.join(",")));
                }
                Verdict::Allow {
                    set,
                    remove,
                    remove_query: Vec::new(),
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "bearer token refused");
                let Verdict::Deny {
                    status,
                    mut headers,
                    body,
                } = Verdict::deny(401, "invalid_token", "the bearer token is not valid")
                else {
                    return Verdict::deny(401, "invalid_token", "the bearer token is not valid");
                };
                headers.push((
                    "www-authenticate".to_owned(),
                    "Bearer error=\"invalid_token\", error_description=\"the token is not valid\""
                        .to_owned(),
                ));
                Verdict::Deny {
                    status,
                    headers,
                    body,
                }
            }
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
                .keys
                .open::<Session>(&self.filter.cookie_name, value)
                .ok()
                .map(|s| (s, None)));
        };
        let Ok(reference) = self
            .keys
            .open::<SessionRef>(&self.filter.cookie_name, value)
        else {
            return Ok(None);
        };
        let stored = store.get(&reference.id).await?;
        Ok(stored
            .and_then(|sealed| self.keys.open::<Session>(STORED_SESSION, &sealed).ok())
            .map(|s| (s, Some(reference.id))))
    }

    /// Saves a session: a new cookie when the cookie holds it (or holds a
    /// new Redis id); nothing to set when only the Redis entry changed.
    async fn write_session(
        &self,
        session: &Session,
        id: Option<String>,
        now: u64,
    ) -> Result<Option<String>, StoreDown> {
        let Some(store) = &self.store else {
            return Ok(Some(self.session_cookie(session)));
        };
        let (id, new) = match id {
            Some(id) => (id, false),
            None => {
                let mut raw = [0u8; 32];
                getrandom::getrandom(&mut raw).map_err(|e| StoreDown(e.to_string()))?;
                (
                    raw.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    true,
                )
            }
        };
        let ttl = session
            .created_at
            .saturating_add(self.filter.absolute_timeout_secs)
            .saturating_sub(now);
        let sealed = self.keys.seal(STORED_SESSION, session, nonce());
        store
            .put(&id, &sealed, ttl, session.sid.as_deref(), &session.sub)
            .await?;
        Ok(new.then(|| {
            let reference = self
                .keys
                .seal(&self.filter.cookie_name, &SessionRef { id }, nonce());
            self.cookies().set_cookie(
                &self.filter.cookie_name,
                &reference,
                Some(self.filter.absolute_timeout_secs),
            )
        }))
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

    fn session_cookie(&self, session: &Session) -> String {
        let sealed = self.keys.seal(&self.filter.cookie_name, session, nonce());
        self.cookies().set_cookie(
            &self.filter.cookie_name,
            &sealed,
            Some(self.filter.absolute_timeout_secs),
        )
    }

    /// Identity headers upstream; our cookies stay at the edge.
    fn allow(&self, session: &Session, cookie_header: Option<&str>) -> Verdict {
        let f = &self.filter;
        let mut set = vec![(f.user_header.clone(), session.sub.clone())];
        let mut remove = Vec::new();
        match &session.email {
            Some(e) => set.push((f.email_header.clone(), e.clone())),
            None => remove.push(f.email_header.clone()),
        }
        if session.groups.is_empty() {
            remove.push(f.groups_header.clone());
        } else {
            set.push((f.groups_header.clone(), session.groups.join(",")));
        }
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
    fn login(&self, request: &HttpView<'_>, now: u64, public: bool) -> Answer {
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
        let up = self.idp_up.load(std::sync::atomic::Ordering::Relaxed);
        let Some(discovered) = self.discovered.load_full().filter(|_| up) else {
            // Existing sessions keep working; only new logins wait.
            return page(
                503,
                "idp_unavailable",
                "the sign-in service is not reachable: try again shortly",
                Vec::new(),
            )
            .into();
        };
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut auth = discovered
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in f.scopes.iter().filter(|s| *s != "openid") {
            auth = auth.add_scope(Scope::new(scope.clone()));
        }
        for (k, v) in &f.extra_auth_params {
            auth = auth.add_extra_param(k.as_str(), v.as_str());
        }
        let (url, state, nonce_value) = auth.url();
        let flow = LoginFlow {
            state: state.secret().clone(),
            nonce: nonce_value.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            return_to: safe_return_path(request.path),
            started_at: now,
        };
        let login = self.login_cookie();
        let sealed = self.keys.seal(&login, &flow, nonce());
        let set = self
            .cookies()
            .set_cookie(&login, &sealed, Some(LOGIN_FLOW_SECS));
        redirect(url.as_str(), vec![set]).into()
    }

    async fn callback(&self, request: &HttpView<'_>, now: u64, metrics: &Metrics) -> Verdict {
        let login = self.login_cookie();
        let clear = self.cookies().set_cookie(&login, "", Some(0));
        let query = request.path.split_once('?').map_or("", |(_, q)| q);
        let param = |name: &str| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| percent_decode(v))
            })
        };
        let flow = cookie(request.headers.get("cookie").map(String::as_str), &login)
            .and_then(|v| self.keys.open::<LoginFlow>(&login, v).ok())
            .filter(|f| now < f.started_at.saturating_add(LOGIN_FLOW_SECS));
        let Some(flow) = flow else {
            // No login of this browser is waiting: a replayed or forged
            // callback, or one that took too long.
            return page(
                400,
                "no_login_in_progress",
                "no sign-in is in progress in this browser: start again",
                vec![clear],
            );
        };
        let state_ok =
            param("state").is_some_and(|s| bool::from(s.as_bytes().ct_eq(flow.state.as_bytes())));
        if !state_ok {
            return page(
                400,
                "state_mismatch",
                "the sign-in answer does not belong to this browser",
                vec![clear],
            );
        }
        if param("error").is_some() {
            return page(
                403,
                "login_refused",
                "the sign-in service refused the sign-in",
                vec![clear],
            );
        }
        let Some(code) = param("code") else {
            return page(
                400,
                "no_code",
                "the sign-in answer carries no code",
                vec![clear],
            );
        };
        let Some(discovered) = self.discovered.load_full() else {
            return page(
                503,
                "idp_unavailable",
                "the sign-in service is not reachable: try again shortly",
                vec![clear],
            );
        };
        let client = &discovered.client;
        let exchange = match client.exchange_code(AuthorizationCode::new(code)) {
            Ok(request) => {
                let request =
                    request.set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()));
                match self.client_assertion(&discovered, now) {
                    Some(assertion) => request
                        .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                        .add_extra_param("client_assertion", assertion),
                    None => request,
                }
            }
            Err(_) => {
                return page(
                    503,
                    "idp_unavailable",
                    "the sign-in service has no token endpoint",
                    vec![clear],
                );
            }
        };
        let token = match exchange.request_async(&self.http).await {
            Ok(t) => t,
            Err(openidconnect::RequestTokenError::ServerResponse(e)) => {
                tracing::warn!(error = %e.error(), "code exchange refused");
                return page(
                    400,
                    "login_failed",
                    "the sign-in could not be completed: start again",
                    vec![clear],
                );
            }
            Err(e) => {
                metrics.idp_errors.inc();
                tracing::warn!(error = %e, "code exchange failed");
                return page(
                    503,
                    "idp_unavailable",
                    "the sign-in service is not reachable: try again shortly",
                    vec![clear],
                );
            }
        };
        let Some(id_token) = token.id_token() else {
            return page(
                400,
                "login_failed",
                "the sign-in service sent no ID token",
                vec![clear],
            );
        };
        let nonce = Nonce::new(flow.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "id token refused");
                return page(
                    400,
                    "login_failed",
                    "the sign-in service's ID token is not valid",
                    vec![clear],
                );
            }
        };
        let payload = payload_of(id_token);
        if !self
            .filter
            .required_claims
            .iter()
            .all(|r| r.holds(&payload))
        {
            tracing::info!("login refused: the ID token lacks a required claim");
            return page(
                403,
                "claims_not_met",
                "your account does not meet this site's requirements",
                vec![clear],
            );
        }
        let session = Session {
            sub: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            groups: groups_of(id_token),
            id_token: id_token.to_string(),
            access_token: token.access_token().secret().clone(),
            access_expires_at: token.expires_in().map(|d| now.saturating_add(d.as_secs())),
            refresh_token: token.refresh_token().map(|r| r.secret().clone()),
            sid: sid_of(id_token),
            created_at: now,
            seen_at: now,
        };
        let set = match self.write_session(&session, None, now).await {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(error = %e, "session store unreachable at login");
                return page(
                    503,
                    "session_store_unavailable",
                    "sessions cannot be stored: try again shortly",
                    vec![clear],
                );
            }
        };
        metrics.logins.inc();
        tracing::info!(filter_issuer = %self.filter.issuer, "signed in");
        // The flow was sealed by us, but a return target is checked twice.
        redirect(
            &safe_return_path(&flow.return_to),
            set.into_iter().chain([clear]).collect(),
        )
    }

    /// A new access token from the refresh token; `None` sends the user
    /// back to log in.
    async fn refresh(&self, mut session: Session, now: u64, metrics: &Metrics) -> Option<Session> {
        let discovered = self.discovered.load_full()?;
        let refresh = RefreshToken::new(session.refresh_token.clone()?);
        let mut request = discovered.client.exchange_refresh_token(&refresh).ok()?;
        if let Some(assertion) = self.client_assertion(&discovered, now) {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        match request.request_async(&self.http).await {
            Ok(token) => {
                metrics.refreshes.inc();
                session.access_token = token.access_token().secret().clone();
                session.access_expires_at =
                    token.expires_in().map(|d| now.saturating_add(d.as_secs()));
                if let Some(r) = token.refresh_token() {
                    session.refresh_token = Some(r.secret().clone());
                }
                // Reseal now: the answer carries the new cookie.
                session.seen_at = now.saturating_sub(60);
                Some(session)
            }
            Err(e) => {
                if !matches!(e, openidconnect::RequestTokenError::ServerResponse(_)) {
                    metrics.idp_errors.inc();
                }
                tracing::info!(error = %e, "refresh refused, the user signs in again");
                None
            }
        }
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
        let clear = self
            .cookies()
            .set_cookie(&self.filter.cookie_name, "", Some(0));
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
