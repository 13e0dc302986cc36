//! The SSO flow against a fake IdP on loopback (discovery, keys and a token
//! endpoint that counts its calls) and, for the session store, a real
//! `redis-server`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::*;

/// What the fake IdP answers and how often it was asked.
#[derive(Debug, Default)]
struct IdpState {
    base: std::sync::OnceLock<String>,
    /// Discovery answers 503 while set.
    down: AtomicBool,
    /// The token endpoint refuses (`invalid_grant`) while set.
    refuse_tokens: AtomicBool,
    discoveries: AtomicUsize,
    token_calls: AtomicUsize,
}

/// A fake OpenID provider on `127.0.0.1:0`. Its issuer has no trailing `/`
/// unless asked for one.
struct FakeIdp {
    state: Arc<IdpState>,
    issuer: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery(State(s): State<Arc<IdpState>>) -> Response {
    s.discoveries.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let issuer = s.base.get().cloned().unwrap_or_default();
    let base = issuer.trim_end_matches('/');
    Json(serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/auth"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .into_response()
}

async fn token(State(s): State<Arc<IdpState>>) -> Response {
    let n = s.token_calls.fetch_add(1, Ordering::SeqCst) + 1;
    if s.refuse_tokens.load(Ordering::SeqCst) {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    Json(serde_json::json!({
        "access_token": format!("at-{n}"),
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": format!("rt-{n}"),
    }))
    .into_response()
}

impl FakeIdp {
    async fn start(trailing_slash: bool) -> Self {
        let state = Arc::new(IdpState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}{}", if trailing_slash { "/" } else { "" });
        state.base.set(issuer.clone()).unwrap();
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route(
                "/jwks",
                get(|| async { Json(serde_json::json!({"keys": []})) }),
            )
            .route("/token", post(token))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            state,
            issuer,
            task,
        }
    }

    fn token_calls(&self) -> usize {
        self.state.token_calls.load(Ordering::SeqCst)
    }

    fn discoveries(&self) -> usize {
        self.state.discoveries.load(Ordering::SeqCst)
    }
}

fn metrics() -> Metrics {
    Metrics::register(&mut prometheus_client::registry::Registry::default())
}

fn filter(issuer: &str, extra: &str) -> OidcFilter {
    let config = gatehouse_authz_core::AuthzConfig::parse(
        &format!(
            "filters:\n  sso:\n    oidc:\n      issuer: {issuer}\n      client_id: app\n      client_secret_file: s\n      callback_url: https://app.example/.gatehouse/oidc/callback\n      session_keys_file: k\n      cookie_secure: false\n{extra}"
        ),
        "authz.yaml",
    )
    .unwrap();
    match config.filters().get("sso") {
        Some(gatehouse_authz_core::FilterKind::Oidc(f)) => (**f).clone(),
        _ => panic!("oidc expected"),
    }
}

fn runtime_named(name: &str, filter: OidcFilter) -> OidcRuntime {
    let bearer = filter.bearer.as_ref().map(|b| {
        let jwks = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../filters/jwt-core/testdata/jwks.json"),
        )
        .unwrap();
        gatehouse_jwt_core::Provider::new(
            Some(b.issuer.clone()),
            b.audiences.clone(),
            vec![gatehouse_jwt_core::Algorithm::RS256],
            gatehouse_jwt_core::KeySet::from_jwks(&jwks).unwrap(),
            30,
        )
    });
    OidcRuntime::new(
        name,
        filter,
        SessionKeys::from_raw(&[[1; 32]]),
        "s3cret".into(),
        bearer,
        None,
        None,
    )
    .unwrap()
}

fn runtime(filter: OidcFilter) -> OidcRuntime {
    runtime_named("sso", filter)
}

/// A runtime that has discovered the fake IdP.
async fn discovered(idp: &FakeIdp, extra: &str) -> OidcRuntime {
    let rt = runtime(filter(&idp.issuer, extra));
    rt.discover().await.unwrap();
    rt.idp_up.store(true, Ordering::Relaxed);
    rt
}

fn session(now: u64) -> Session {
    Session {
        sub: "alice".into(),
        email: Some("alice@example.test".into()),
        groups: vec!["staff".into()],
        id_token: "id".into(),
        access_token: "at-0".into(),
        access_expires_at: Some(now + 3600),
        refresh_token: Some("rt-0".into()),
        sid: None,
        created_at: now,
        seen_at: now,
    }
}

/// A request as Envoy describes it: `accept` says browser or program.
struct Req {
    method: &'static str,
    path: String,
    headers: HashMap<String, String>,
}

impl Req {
    fn api(path: &str) -> Self {
        Self {
            method: "GET",
            path: path.to_owned(),
            headers: HashMap::from([("accept".to_owned(), "application/json".to_owned())]),
        }
    }

    fn browser(path: &str) -> Self {
        Self {
            method: "GET",
            path: path.to_owned(),
            headers: HashMap::from([("accept".to_owned(), "text/html".to_owned())]),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_owned(), value.to_owned());
        self
    }

    fn view(&self) -> HttpView<'_> {
        HttpView {
            body: "",
            method: self.method,
            host: "app.example",
            path: &self.path,
            headers: &self.headers,
            instead_of_redirect: None,
        }
    }
}

async fn ask(rt: &OidcRuntime, req: &Req) -> Answer {
    rt.check(&req.view(), &metrics()).await
}

fn status(a: &Answer) -> u16 {
    match &a.verdict {
        Verdict::Allow { .. } => 200,
        Verdict::Deny { status, .. } => *status,
    }
}

fn body(a: &Answer) -> &str {
    match &a.verdict {
        Verdict::Allow { .. } => "",
        Verdict::Deny { body, .. } => body,
    }
}

fn set_header<'a>(a: &'a Answer, name: &str) -> Option<&'a str> {
    match &a.verdict {
        Verdict::Allow { set, .. } => set.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()),
        Verdict::Deny { .. } => None,
    }
}

/// Every `Set-Cookie` of an answer, to the browser or on the upstream's response.
fn set_cookies(a: &Answer) -> Vec<String> {
    let mut out: Vec<String> = a
        .response_headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .collect();
    if let Verdict::Deny { headers, .. } = &a.verdict {
        out.extend(
            headers
                .iter()
                .filter(|(k, _)| k == "set-cookie")
                .map(|(_, v)| v.clone()),
        );
    }
    out
}

fn session_cookie(rt: &OidcRuntime, s: &Session) -> String {
    format!(
        "gatehouse_session={}",
        rt.seal("gatehouse_session", s).unwrap()
    )
}

// === 1. public paths ===

#[tokio::test]
async fn public_paths_match_whole_segments_not_raw_prefixes() {
    let rt = runtime(filter(
        "https://idp.example",
        "      public_paths: [/health, /assets/]\n",
    ));
    for open in [
        "/health",
        "/health/live",
        "/health?verbose=1",
        "/assets/app.js",
    ] {
        assert_eq!(status(&ask(&rt, &Req::api(open)).await), 200, "{open}");
    }
    for closed in [
        "/healthz-admin",
        "/healthz",
        "/health/../admin",
        "/health/%2e%2e/admin",
        "/assets",
        "/admin?next=/health",
    ] {
        assert_eq!(status(&ask(&rt, &Req::api(closed)).await), 401, "{closed}");
    }
}

// === 11 and 6. bearer tokens ===

fn mint(claims: serde_json::Value) -> String {
    let pem = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../filters/jwt-core/testdata/keys/rsa.pem"),
    )
    .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

const BEARER: &str = "      public_paths: [/public]\n      bearer:\n        issuer: https://ci.example\n        jwks_file: j.json\n";

#[tokio::test]
async fn the_bearer_scheme_is_read_in_any_case() {
    let rt = runtime(filter("https://idp.example", BEARER));
    let now = now_secs();
    let good = mint(serde_json::json!({
        "iss": "https://ci.example", "aud": "app", "sub": "ci-bot", "exp": now + 300
    }));
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let a = ask(
            &rt,
            &Req::api("/app").header("authorization", &format!("{scheme} {good}")),
        )
        .await;
        assert_eq!(status(&a), 200, "{scheme}");
        assert_eq!(set_header(&a, "x-gatehouse-user"), Some("ci-bot"));
    }
    // A bad or malformed token is refused even on a public path and even
    // for a browser: never an anonymous pass, never a login page.
    for value in [
        "BEARER not-a-jwt".to_owned(),
        "bearer".to_owned(),
        format!("Bearer {good}, Bearer {good}"),
    ] {
        for req in [
            Req::api("/public/x").header("authorization", &value),
            Req::browser("/app").header("authorization", &value),
        ] {
            let a = ask(&rt, &req).await;
            assert_eq!(status(&a), 401, "{value} on {}", req.path);
            assert!(body(&a).contains("invalid_token"), "{value}");
        }
    }
}

#[tokio::test]
async fn bearer_tokens_need_our_audience_and_an_expiry_by_default() {
    let rt = runtime(filter("https://idp.example", BEARER));
    let now = now_secs();
    let refused = [
        (
            "another audience",
            serde_json::json!({"iss": "https://ci.example", "aud": "billing", "sub": "x", "exp": now + 300}),
        ),
        (
            "no audience",
            serde_json::json!({"iss": "https://ci.example", "sub": "x", "exp": now + 300}),
        ),
        (
            "no expiry",
            serde_json::json!({"iss": "https://ci.example", "aud": "app", "sub": "x"}),
        ),
    ];
    for (what, claims) in refused {
        let a = ask(
            &rt,
            &Req::api("/app").header("authorization", &format!("Bearer {}", mint(claims))),
        )
        .await;
        assert_eq!(status(&a), 401, "{what}");
    }
    let listed = runtime(filter(
        "https://idp.example",
        &format!("{BEARER}        audiences: [billing]\n"),
    ));
    let billing = mint(
        serde_json::json!({"iss": "https://ci.example", "aud": ["billing"], "sub": "x", "exp": now + 300}),
    );
    let a = ask(
        &listed,
        &Req::api("/app").header("authorization", &format!("Bearer {billing}")),
    )
    .await;
    assert_eq!(status(&a), 200, "a configured audience");
}

// === 9. the random source ===

#[tokio::test]
async fn a_failing_random_source_refuses_to_seal() {
    let mut rt = runtime(filter("https://idp.example", ""));
    let now = now_secs();
    // Seen two minutes ago: this request reseals the session.
    let cookie = session_cookie(
        &rt,
        &Session {
            seen_at: now - 120,
            ..session(now)
        },
    );
    assert_eq!(
        set_cookies(&ask(&rt, &Req::api("/app").header("cookie", &cookie)).await).len(),
        1,
        "resealed with a working random source"
    );
    rt.set_random_for_test(|_| Err(getrandom::Error::UNSUPPORTED));
    let a = ask(&rt, &Req::api("/app").header("cookie", &cookie)).await;
    assert_eq!(status(&a), 503, "fails closed");
    assert!(set_cookies(&a).is_empty(), "nothing sealed");
}

#[tokio::test]
async fn a_failing_random_source_starts_no_login() {
    let idp = FakeIdp::start(false).await;
    let mut rt = discovered(&idp, "").await;
    rt.set_random_for_test(|_| Err(getrandom::Error::UNSUPPORTED));
    let a = ask(&rt, &Req::browser("/app")).await;
    assert_eq!(status(&a), 503);
    assert!(set_cookies(&a).is_empty());
}

// === 10. the issuer exactly as configured ===

#[tokio::test]
async fn an_issuer_with_a_trailing_slash_is_discovered() {
    let idp = FakeIdp::start(true).await;
    assert!(idp.issuer.ends_with('/'));
    let rt = runtime(filter(&idp.issuer, ""));
    rt.discover().await.unwrap();
    rt.idp_up.store(true, Ordering::Relaxed);
    let a = ask(&rt, &Req::browser("/app")).await;
    assert_eq!(status(&a), 302);
}

// === 8. sealed values bound to the filter ===

#[tokio::test]
async fn a_session_of_one_filter_does_not_open_in_another_with_the_same_cookie() {
    let now = now_secs();
    let a = runtime_named("team-a", filter("https://idp.example", ""));
    let b = runtime_named("team-b", filter("https://idp.example", ""));
    let mut other = filter("https://idp.example", "");
    other.client_id = "other".into();
    let other_client = runtime_named("team-a", other);
    let cookie = session_cookie(&a, &session(now));
    assert_eq!(
        status(&ask(&a, &Req::api("/app").header("cookie", &cookie)).await),
        200
    );
    for (what, rt) in [("another filter", &b), ("another client", &other_client)] {
        assert_eq!(
            status(&ask(rt, &Req::api("/app").header("cookie", &cookie)).await),
            401,
            "{what}"
        );
    }
}

// === 12. claims in headers ===

#[tokio::test]
async fn claims_with_line_breaks_or_commas_are_encoded_in_headers() {
    let rt = runtime(filter("https://idp.example", ""));
    let now = now_secs();
    let s = Session {
        sub: "bob\r\nx-gatehouse-groups: admins".into(),
        email: Some("bob@example.test\n".into()),
        groups: vec!["staff".into(), "admins,ops".into()],
        ..session(now)
    };
    let a = ask(
        &rt,
        &Req::api("/app").header("cookie", &session_cookie(&rt, &s)),
    )
    .await;
    assert_eq!(
        set_header(&a, "x-gatehouse-user"),
        Some("bob%0D%0Ax-gatehouse-groups: admins")
    );
    assert_eq!(
        set_header(&a, "x-gatehouse-email"),
        Some("bob@example.test%0A")
    );
    assert_eq!(
        set_header(&a, "x-gatehouse-groups"),
        Some("staff,admins%2Cops")
    );
}

// === 2. single-use callbacks ===

fn login_cookie(rt: &OidcRuntime, state: &str, now: u64) -> String {
    let flow = LoginFlow {
        state: state.to_owned(),
        nonce: "n".into(),
        pkce_verifier: "v".repeat(43),
        return_to: "/app".into(),
        started_at: now,
    };
    format!(
        "gatehouse_session_login={}",
        rt.seal("gatehouse_session_login", &flow).unwrap()
    )
}

#[tokio::test]
async fn a_replayed_callback_is_refused_before_the_idp_is_asked() {
    let idp = FakeIdp::start(false).await;
    idp.state.refuse_tokens.store(true, Ordering::SeqCst);
    let rt = discovered(&idp, "").await;
    let cookie = login_cookie(&rt, "st4te", now_secs());
    let callback =
        Req::browser("/.gatehouse/oidc/callback?code=c0de&state=st4te").header("cookie", &cookie);
    let first = ask(&rt, &callback).await;
    assert_eq!(status(&first), 400);
    assert!(body(&first).contains("login_failed"), "{}", body(&first));
    assert_eq!(idp.token_calls(), 1);
    for _ in 0..3 {
        let again = ask(&rt, &callback).await;
        assert_eq!(status(&again), 400);
        assert!(
            body(&again).contains("login_already_used"),
            "{}",
            body(&again)
        );
        assert!(
            set_cookies(&again)
                .iter()
                .any(|c| c.starts_with("gatehouse_session_login=;") && c.contains("Max-Age=0")),
            "the login cookie is cleared"
        );
    }
    assert_eq!(idp.token_calls(), 1, "no IdP call for a replay");
}

// === 3. refresh ===

#[tokio::test]
async fn parallel_requests_refresh_a_session_once() {
    let idp = FakeIdp::start(false).await;
    let rt = Arc::new(discovered(&idp, "      refresh_margin_seconds: 7200\n").await);
    let cookie = session_cookie(&rt, &session(now_secs()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (rt, cookie) = (rt.clone(), cookie.clone());
        tasks.spawn(async move {
            let req = Req::api("/app").header("cookie", &cookie);
            ask(&rt, &req).await
        });
    }
    let mut refreshed = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        let answer = answer.unwrap();
        assert_eq!(status(&answer), 200);
        refreshed.extend(set_cookies(&answer));
    }
    assert_eq!(idp.token_calls(), 1, "one refresh token, spent once");
    assert_eq!(refreshed.len(), 8, "each answer carries the new session");
    // A straggler with the old cookie gets the same result, no new spend.
    let late = ask(&rt, &Req::api("/app").header("cookie", &cookie)).await;
    assert_eq!(status(&late), 200);
    assert_eq!(idp.token_calls(), 1);
}

#[tokio::test]
async fn a_refused_refresh_ends_the_session() {
    let idp = FakeIdp::start(false).await;
    idp.state.refuse_tokens.store(true, Ordering::SeqCst);
    let rt = discovered(&idp, "      refresh_margin_seconds: 7200\n").await;
    let cookie = session_cookie(&rt, &session(now_secs()));
    let a = ask(&rt, &Req::api("/app").header("cookie", &cookie)).await;
    assert_eq!(status(&a), 401);
    assert!(
        set_cookies(&a)
            .iter()
            .any(|c| c.starts_with("gatehouse_session=;") && c.contains("Max-Age=0")),
        "the session cookie is cleared: {:?}",
        set_cookies(&a)
    );
    let browser = ask(&rt, &Req::browser("/app").header("cookie", &cookie)).await;
    assert_eq!(status(&browser), 302, "to the IdP");
    assert!(
        set_cookies(&browser)
            .iter()
            .any(|c| c.starts_with("gatehouse_session=;")),
    );
    assert_eq!(idp.token_calls(), 1, "the refused token is not tried again");
}

#[tokio::test]
async fn an_unreachable_idp_keeps_a_valid_session_and_backs_off() {
    let idp = FakeIdp::start(false).await;
    let rt = discovered(&idp, "      refresh_margin_seconds: 7200\n").await;
    drop(idp);
    let cookie = session_cookie(&rt, &session(now_secs()));
    for _ in 0..3 {
        let a = ask(&rt, &Req::api("/app").header("cookie", &cookie)).await;
        assert_eq!(status(&a), 200, "the access token is still valid");
        assert!(set_cookies(&a).is_empty(), "the cookie is kept");
    }
}

// === 4. reloads keep discovery ===

#[tokio::test]
async fn a_reload_keeps_what_discovery_found() {
    let idp = FakeIdp::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authz.yaml");
    std::fs::write(
        dir.path().join("k"),
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("s"), "s3cret\n").unwrap();
    std::fs::write(dir.path().join("keys.yaml"), "keys: []\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "filters:\n  partners:\n    api_keys: {{keys_file: keys.yaml}}\n  sso:\n    oidc:\n      issuer: {}\n      client_id: app\n      client_secret_file: s\n      callback_url: https://app.example/cb\n      session_keys_file: k\n      discovery_refresh_seconds: 3600\n",
            idp.issuer
        ),
    )
    .unwrap();
    let m = Arc::new(metrics());
    let live = crate::load::LiveFilters::load(config, m.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.current().oidc["sso"].discovered.load().is_none()
        || !live.current().oidc["sso"].idp_up.load(Ordering::Relaxed)
    {
        assert!(Instant::now() < deadline, "discovery did not happen");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The IdP goes away; an unrelated file changes.
    idp.state.down.store(true, Ordering::SeqCst);
    let asked = idp.discoveries();
    std::fs::write(dir.path().join("keys.yaml"), "keys: []\n# changed\n").unwrap();
    live.reload().unwrap();
    let rt = live.current().oidc["sso"].clone();
    assert!(rt.discovered.load().is_some(), "discovery kept");
    let a = rt.check(&Req::browser("/app").view(), &m).await;
    assert_eq!(status(&a), 302, "logins still go to the IdP");
    assert_eq!(idp.discoveries(), asked, "no new discovery needed");
}

// === 5. rediscovery on login ===

#[tokio::test]
async fn a_login_while_the_idp_is_marked_down_rediscovers_once() {
    let idp = FakeIdp::start(false).await;
    idp.state.down.store(true, Ordering::SeqCst);
    let rt = Arc::new(runtime(filter(&idp.issuer, "")));
    // Marked down, as after a failed discovery.
    assert!(!rt.idp_up.load(Ordering::Relaxed));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let rt = rt.clone();
        tasks.spawn(async move { status(&ask(&rt, &Req::browser("/app")).await) });
    }
    while let Some(s) = tasks.join_next().await {
        assert_eq!(s.unwrap(), 503);
    }
    assert_eq!(idp.discoveries(), 1, "one rediscovery for five logins");
    // The IdP is back: a login within about a second finds it.
    idp.state.down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = status(&ask(&rt, &Req::browser("/app")).await);
        if s == 302 {
            break;
        }
        assert!(Instant::now() < deadline, "the login never went through");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        idp.discoveries() <= 3,
        "rate-limited: {}",
        idp.discoveries()
    );
}

// === 7. stored sessions are not revived ===

/// A private `redis-server` on a free loopback port, killed when dropped.
struct TestRedis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestRedis {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server not found ({e}): run `make setup` (installs the Debian package redis-server)")
            });
        let redis = Self {
            child,
            port,
            _dir: dir,
        };
        let client = redis::Client::open(redis.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
            {
                return redis;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

#[tokio::test]
async fn a_logged_out_stored_session_is_not_written_back() {
    let redis = TestRedis::start().await;
    let rt = runtime(filter(
        "https://idp.example",
        &format!("      session_store:\n        redis_url: {}\n", redis.url()),
    ));
    let store = rt.store.as_ref().unwrap();
    let now = now_secs();
    let s = session(now);
    let cookie = rt.write_session(&s, None, now).await.unwrap().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let id = rt
        .read_session(Some(&cookie))
        .await
        .unwrap()
        .unwrap()
        .1
        .unwrap();
    assert!(matches!(
        rt.write_session(&s, Some(id.clone()), now).await,
        Ok(None)
    ));
    // A logout deletes the session while a refresh (or the idle clock) of
    // a request in flight still holds it.
    store.delete(&id).await.unwrap();
    assert!(matches!(
        rt.write_session(&s, Some(id.clone()), now).await,
        Err(WriteError::Ended)
    ));
    assert_eq!(store.get(&id).await.unwrap(), None, "not revived");
    assert!(!store.update(&id, "x", 60).await.unwrap());
}

#[tokio::test]
async fn a_callback_state_is_used_once_across_replicas_sharing_redis() {
    let redis = TestRedis::start().await;
    let idp = FakeIdp::start(false).await;
    idp.state.refuse_tokens.store(true, Ordering::SeqCst);
    let store = format!("      session_store:\n        redis_url: {}\n", redis.url());
    let one = discovered(&idp, &store).await;
    let two = discovered(&idp, &store).await;
    let cookie = login_cookie(&one, "shared", now_secs());
    let callback =
        Req::browser("/.gatehouse/oidc/callback?code=c&state=shared").header("cookie", &cookie);
    assert!(body(&ask(&one, &callback).await).contains("login_failed"));
    assert!(body(&ask(&two, &callback).await).contains("login_already_used"));
    assert_eq!(idp.token_calls(), 1);
}

// === logs ===

/// A `Write` into a shared buffer, for capturing logs.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_no_codes_states_tokens_or_cookies() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // The test runs on one thread (current-thread runtime): the default
    // subscriber holds across its awaits.
    let _guard = tracing::subscriber::set_default(subscriber);
    let idp = FakeIdp::start(false).await;
    idp.state.refuse_tokens.store(true, Ordering::SeqCst);
    let rt = discovered(
        &idp,
        &format!(
            "      refresh_margin_seconds: 7200\n{}",
            BEARER.replace("      public_paths: [/public]\n", "")
        ),
    )
    .await;
    let now = now_secs();
    let login = login_cookie(&rt, "s3cr3t-state", now);
    let callback = Req::browser("/.gatehouse/oidc/callback?code=s3cr3t-code&state=s3cr3t-state")
        .header("cookie", &login);
    ask(&rt, &callback).await;
    ask(&rt, &callback).await;
    let session_value = session_cookie(&rt, &session(now));
    ask(
        &rt,
        &Req::api("/app?q=s3cr3t-query").header("cookie", &session_value),
    )
    .await;
    let expired = mint(serde_json::json!({"iss": "https://ci.example", "aud": "app", "exp": 1}));
    ask(
        &rt,
        &Req::api("/app").header("authorization", &format!("Bearer {expired}")),
    )
    .await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("code exchange refused"), "{text}");
    assert!(text.contains("refresh refused"), "{text}");
    for secret in [
        "s3cr3t-code",
        "s3cr3t-state",
        "s3cr3t-query",
        "rt-0",
        "at-0",
        expired.as_str(),
        login.split('=').nth(1).unwrap(),
        session_value.split('=').nth(1).unwrap(),
    ] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}

mod fast;
