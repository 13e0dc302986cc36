//! Single sign-on end to end: real Envoy, gatehouse-authz, a real OpenID
//! provider (npm oidc-provider) and, for the login, a real Chromium.

use e2e::browser::Browser;
use e2e::idp::{Idp, location};
use e2e::{AuthzService, Echo, Echoed, Envoy};

/// Starts the stack: Envoy must exist before the IdP (which needs Envoy's
/// callback URL) and before the SSO filter (which needs the IdP's issuer),
/// so the filter arrives by a configuration reload: itself under test.
struct Stack {
    echo: Echo,
    authz: AuthzService,
    envoy: Envoy,
    idp: Idp,
}

const BOOT: &str = "filters:\n  partners:\n    api_keys: {keys_file: keys.yaml}\n";

/// How the filter authenticates to the IdP's token endpoint.
#[derive(Clone, Copy, PartialEq)]
enum ClientAuth {
    SecretBasic,
    SecretPost,
    /// A JWT signed with the test RSA key (RFC 7523).
    PrivateKeyJwt,
}

async fn stack(access_token_ttl_secs: u64, extra: &str) -> anyhow::Result<Stack> {
    stack_as(access_token_ttl_secs, extra, ClientAuth::SecretBasic).await
}

async fn stack_as(
    access_token_ttl_secs: u64,
    extra: &str,
    auth: ClientAuth,
) -> anyhow::Result<Stack> {
    stack_with(access_token_ttl_secs, extra, auth, Path::Slow).await
}

/// Which way a signed-in request takes.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    /// Every request through ext_authz.
    Slow,
    /// gatehouse-session verifies tickets in Envoy; the rest through ext_authz.
    Fast,
}

/// The stack with the SSO fast path on.
async fn stack_fast(access_token_ttl_secs: u64, extra: &str) -> anyhow::Result<Stack> {
    stack_with(
        access_token_ttl_secs,
        &format!("{extra}      fast_path: {{}}\n"),
        ClientAuth::SecretBasic,
        Path::Fast,
    )
    .await
}

async fn stack_with(
    access_token_ttl_secs: u64,
    extra: &str,
    auth: ClientAuth,
    path: Path,
) -> anyhow::Result<Stack> {
    let echo = Echo::start().await?;
    let boot = match path {
        Path::Slow => BOOT.to_owned(),
        Path::Fast => format!("feed_socket: feed.sock\n{BOOT}"),
    };
    let authz = AuthzService::builder(&boot)
        .file("keys.yaml", "keys: []\n")
        .start()
        .await?;
    let envoy = match path {
        Path::Slow => Envoy::from_template("ext-authz.yaml")?,
        Path::Fast => Envoy::from_template("sso-fast.yaml")?
            .var("FEED_SOCKET", authz.dir().join("feed.sock").display()),
    }
    .upstream(&echo)
    .authz(&authz)
    .start()
    .await?;
    let clients = serde_json::json!([{
        "client_id": "gatehouse",
        "client_secret": "s3cret-for-tests",
        "redirect_uris": [envoy.url("/.gatehouse/oidc/callback")],
        "post_logout_redirect_uris": [envoy.url("/public/bye")],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic"
    }]);
    let mut clients = clients;
    // Sessions in Redis make back-channel logout possible: register it.
    if extra.contains("session_store:") {
        clients[0]["backchannel_logout_uri"] =
            envoy.url("/.gatehouse/oidc/backchannel-logout").into();
        clients[0]["backchannel_logout_session_required"] = true.into();
    }
    let testdata = e2e::paths::workspace_root().join("filters/jwt-core/testdata");
    if auth == ClientAuth::SecretPost {
        clients[0]["token_endpoint_auth_method"] = "client_secret_post".into();
    }
    if auth == ClientAuth::PrivateKeyJwt {
        // The IdP knows the client by its public key alone.
        let jwks: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(testdata.join("jwks.json"))?)?;
        let rsa = jwks["keys"]
            .as_array()
            .and_then(|keys| keys.iter().find(|k| k["kid"] == "rsa-1"))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no rsa-1 in the test JWKS"))?;
        let client = &mut clients[0];
        client["token_endpoint_auth_method"] = "private_key_jwt".into();
        client["token_endpoint_auth_signing_alg"] = "RS256".into();
        client["jwks"] = serde_json::json!({ "keys": [rsa] });
        if let Some(c) = client.as_object_mut() {
            c.remove("client_secret");
        }
    }
    let idp = Idp::start(&clients, access_token_ttl_secs).await?;
    authz.write_file("client-secret", "s3cret-for-tests\n")?;
    authz.write_file(
        "client-key.pem",
        &std::fs::read_to_string(testdata.join("keys/rsa.pem"))?,
    )?;
    authz.write_file(
        "session-keys",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    )?;
    // Keys of a second issuer, for machine clients' bearer tokens.
    authz.write_file(
        "machines-jwks.json",
        &std::fs::read_to_string(
            e2e::paths::workspace_root().join("filters/jwt-core/testdata/jwks.json"),
        )?,
    )?;
    let config = format!(
        "{boot}  sso:
    oidc:
      issuer: {issuer}
      client_id: gatehouse
{auth_lines}
      callback_url: {callback}
      post_logout_redirect_url: {bye}
      session_keys_file: session-keys
      scopes: [openid, email, profile, groups]
      # plain http on loopback in tests; Secure is the default
      cookie_secure: false
{extra}",
        issuer = idp.issuer(),
        auth_lines = match auth {
            ClientAuth::SecretBasic => "      client_secret_file: client-secret",
            ClientAuth::SecretPost =>
                "      client_secret_file: client-secret\n      client_auth: client_secret_post",
            ClientAuth::PrivateKeyJwt =>
                "      client_auth: private_key_jwt\n      private_key_file: client-key.pem\n      private_key_id: rsa-1",
        },
        callback = envoy.url("/.gatehouse/oidc/callback"),
        bye = envoy.url("/public/bye"),
    );
    authz.write_file("authz.yaml", &config)?;
    // Ready when a browser-like request is sent to the IdP: the reload went
    // through and discovery answered.
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    e2e::idp::until_sent_to_login(&client, &envoy.url("/app/"), idp.issuer()).await?;
    if path == Path::Fast {
        // The filter has the new filter's keys once every wasm VM (the main
        // thread's and the worker's) completed a poll started after the
        // reload: two more polls each.
        let polls = envoy
            .stat("wasmcustom.gatehouse_session.feed.polls")
            .await?;
        e2e::poll::until(
            "the feed polled after the reload",
            e2e::poll::READY_DEADLINE,
            || async {
                let now = envoy
                    .stat("wasmcustom.gatehouse_session.feed.polls")
                    .await?;
                Ok((now >= polls + 4).then_some(()))
            },
        )
        .await?;
    }
    Ok(Stack {
        echo,
        authz,
        envoy,
        idp,
    })
}

/// The SSO filter as the service loaded it: what its cookies are sealed for.
fn sso_filter(authz: &AuthzService) -> anyhow::Result<gatehouse_authz_core::OidcFilter> {
    let text = std::fs::read_to_string(authz.dir().join("authz.yaml"))?;
    match gatehouse_authz_core::AuthzConfig::parse(&text, "authz.yaml")?
        .filters()
        .get("sso")
    {
        Some(gatehouse_authz_core::FilterKind::Oidc(f)) => Ok((**f).clone()),
        _ => anyhow::bail!("no oidc filter sso in authz.yaml"),
    }
}

fn echoed(page_text: &str) -> anyhow::Result<Echoed> {
    // Chromium shows JSON in its viewer; the document is between the braces.
    let start = page_text.find('{').unwrap_or(0);
    let end = page_text.rfind('}').map_or(page_text.len(), |i| i + 1);
    Ok(serde_json::from_str(&page_text[start..end])?)
}

#[tokio::test]
async fn a_browser_logs_in_rides_its_session_and_logs_out() -> anyhow::Result<()> {
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack(3600, "").await?;
    let browser = Browser::start().await?;

    // A protected page sends the browser to the IdP's login.
    let start = envoy.url("/app/orders?page=2");
    browser_signs_in(&browser, &start, &idp).await?;

    // Back on the original URL, the upstream sees who it is.
    let landed = browser
        .until_url_starts_with(&envoy.url("/app/orders"))
        .await?;
    assert_eq!(landed, start);
    let seen = echoed(&browser.text().await?)?;
    assert_eq!(seen.path, "/app/orders?page=2");
    assert_eq!(seen.header("x-gatehouse-user"), Some("alice"));
    assert_eq!(seen.header("x-gatehouse-email"), Some("alice@example.test"));
    assert_eq!(seen.header("x-gatehouse-groups"), Some("staff,admins"));
    assert!(
        !seen
            .header("cookie")
            .unwrap_or_default()
            .contains("gatehouse_session"),
        "the session cookie stays at the edge: {:?}",
        seen.header("cookie")
    );
    assert_eq!(authz.metric("gatehouse_authz_logins_total").await?, 1.0);

    // The next page rides the session: the IdP hears nothing.
    let before = idp.requests();
    browser.goto(&envoy.url("/app/profile")).await?;
    assert_eq!(browser.url().await?, envoy.url("/app/profile"));
    assert_eq!(
        echoed(&browser.text().await?)?.header("x-gatehouse-user"),
        Some("alice")
    );
    assert_eq!(idp.requests(), before, "no IdP request for a second page");

    // Logout is a same-site POST: the session ends here and at the IdP.
    browser_logs_out(&browser, &envoy, &idp).await?;
    assert!(
        browser.text().await?.contains("Sign"),
        "the IdP asks to sign in again"
    );
    Ok(())
}

/// The browser opens `start`, is sent to the IdP and signs in as alice
/// there (the IdP then sends it back).
async fn browser_signs_in(browser: &Browser, start: &str, idp: &Idp) -> anyhow::Result<()> {
    browser.goto(start).await?;
    browser.until_url_starts_with(idp.issuer()).await?;
    browser.type_into("#username", "alice").await?;
    browser.type_into("#password", "wonderland").await?;
    browser.click("#login").await
}

/// The browser logs out with a same-site POST, confirms at the IdP, lands
/// on the post-logout page, and a protected page asks to sign in again.
async fn browser_logs_out(browser: &Browser, envoy: &Envoy, idp: &Idp) -> anyhow::Result<()> {
    browser
        .run("const f = document.createElement('form'); f.method = 'POST'; f.action = '/.gatehouse/oidc/logout'; document.body.appendChild(f); f.submit(); return true;")
        .await?;
    browser.until_url_starts_with(idp.issuer()).await?;
    browser.click("#logout-confirm").await?;
    browser
        .until_url_starts_with(&envoy.url("/public/bye"))
        .await?;
    browser.goto(&envoy.url("/app/orders")).await?;
    browser.until_url_starts_with(idp.issuer()).await?;
    Ok(())
}

/// A client with a cookie jar that follows no redirects by itself.
fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Logs in as a browser would, without one: from `start` to the IdP, its
/// login form, and back. Stops before the callback and returns its URL.
async fn login_until_callback(
    client: &reqwest::Client,
    envoy: &Envoy,
    idp: &Idp,
    start: &str,
) -> anyhow::Result<String> {
    let r = client
        .get(envoy.url(start))
        .header("accept", "text/html")
        .send()
        .await?;
    assert_eq!(r.status(), 302, "a browser is sent to log in");
    idp.sign_in(
        client,
        &location(&r),
        &envoy.url("/.gatehouse/oidc/callback"),
    )
    .await
}

async fn login(
    client: &reqwest::Client,
    envoy: &Envoy,
    idp: &Idp,
    start: &str,
) -> anyhow::Result<()> {
    let callback = login_until_callback(client, envoy, idp, start).await?;
    let r = client.get(&callback).send().await?;
    assert_eq!(r.status(), 302, "{}", r.text().await?);
    assert_eq!(
        location(&r),
        start,
        "back where the login started, on this host"
    );
    Ok(())
}

/// A program's request as `client`: the status, and whom the upstream was
/// told the user is.
async fn user_seen(
    client: &reqwest::Client,
    envoy: &Envoy,
    path: &str,
) -> anyhow::Result<(u16, Option<String>)> {
    let r = client
        .get(envoy.url(path))
        .header("accept", "application/json")
        .send()
        .await?;
    let status = r.status().as_u16();
    let user = if status == 200 {
        r.json::<Echoed>()
            .await?
            .header("x-gatehouse-user")
            .map(str::to_owned)
    } else {
        None
    };
    Ok((status, user))
}

/// The session cookie in `client`'s jar, as a public route's upstream sees
/// it (the jar keeps cookies for the host Envoy answers on).
async fn jar_session_cookie(client: &reqwest::Client, envoy: &Envoy) -> anyhow::Result<String> {
    session_cookie(&jar_cookies(client, envoy).await?)
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))
}

fn session_cookie(client_jar_header: &str) -> Option<String> {
    client_jar_header.split(';').find_map(|kv| {
        kv.trim()
            .strip_prefix("gatehouse_session=")
            .map(str::to_owned)
    })
}

#[tokio::test]
async fn programs_get_401_and_forged_or_replayed_callbacks_are_refused() -> anyhow::Result<()> {
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack(3600, "").await?;

    // Without a session, a program gets 401 and JSON, not a login page.
    let anon = client()?;
    for (name, value) in [
        ("x-requested-with", "XMLHttpRequest"),
        ("accept", "application/json"),
    ] {
        let r = anon
            .get(envoy.url("/app/data"))
            .header(name, value)
            .send()
            .await?;
        assert_eq!(r.status(), 401, "{name}");
        let body: serde_json::Value = r.json().await?;
        assert_eq!(body["code"], "login_required");
    }
    assert_eq!(
        anon.post(envoy.url("/app/data")).send().await?.status(),
        401,
        "a POST"
    );

    // A forged state is refused, and so is a callback in a browser that
    // started no login.
    let c = client()?;
    let callback = login_until_callback(&c, &envoy, &idp, "/app/one").await?;
    let forged = callback.replace("state=", "state=x");
    let r = c.get(&forged).send().await?;
    assert_eq!(r.status(), 400);
    assert!(r.text().await?.contains("data-code=\"state_mismatch\""));
    let stranger = client()?;
    let r = stranger.get(&callback).send().await?;
    assert!(
        r.text()
            .await?
            .contains("data-code=\"no_login_in_progress\"")
    );

    // A replayed callback: the login cookie is gone once used, and the
    // IdP will not take the same code twice either.
    let c = client()?;
    let callback = login_until_callback(&c, &envoy, &idp, "/app/two").await?;
    let login_cookie = c
        .get(envoy.url("/public/peek"))
        .send()
        .await?
        .json::<Echoed>()
        .await?
        .header("cookie")
        .unwrap_or_default()
        .to_owned();
    assert_eq!(c.get(&callback).send().await?.status(), 302);
    let r = c.get(&callback).send().await?;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await?
            .contains("data-code=\"no_login_in_progress\"")
    );
    // A copy of the login cookie with its callback is refused before any
    // call to the IdP: a used login cannot make the IdP work again.
    let before = idp.requests();
    let r = client()?
        .get(&callback)
        .header("cookie", login_cookie)
        .send()
        .await?;
    assert_eq!(r.status(), 400, "the old login cookie, replayed");
    assert!(
        r.headers().get_all("set-cookie").iter().any(|v| v
            .to_str()
            .is_ok_and(|v| v.starts_with("gatehouse_session_login=;"))),
        "the login cookie is cleared"
    );
    assert!(r.text().await?.contains("data-code=\"login_already_used\""));
    assert_eq!(
        idp.requests(),
        before,
        "no token-endpoint call for a replay"
    );
    assert_eq!(authz.metric("gatehouse_authz_logins_total").await?, 1.0);

    // Logout only as a same-site POST.
    let signed_in = client()?;
    login(&signed_in, &envoy, &idp, "/app/three").await?;
    let logout = envoy.url("/.gatehouse/oidc/logout");
    assert_eq!(signed_in.get(&logout).send().await?.status(), 405);
    let cross = signed_in
        .post(&logout)
        .header("origin", "https://evil.example")
        .send()
        .await?;
    assert_eq!(cross.status(), 403, "a cross-site form cannot log out");
    assert_eq!(
        signed_in.post(&logout).send().await?.status(),
        403,
        "no origin at all"
    );
    let r = signed_in
        .get(envoy.url("/app/data"))
        .header("accept", "application/json")
        .send()
        .await?;
    assert_eq!(r.status(), 200, "still signed in");

    // A return target that leaves the host is refused even inside a login
    // cookie sealed with the service's own key (defence in depth: the
    // service never takes one from the client).
    use gatehouse_authz_core::session::{LoginFlow, SessionKeys};
    let keys = SessionKeys::from_key_file(
        &std::fs::read_to_string(authz.dir().join("session-keys"))?,
        "k",
    )?;
    let login_purpose = sso_filter(&authz)?.seal_purpose("sso", "gatehouse_session_login");
    for evil in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
    ] {
        let c = client()?;
        let callback = login_until_callback(&c, &envoy, &idp, "/app/four").await?;
        let jar = c
            .get(envoy.url("/public/peek"))
            .send()
            .await?
            .json::<Echoed>()
            .await?;
        let sealed = jar
            .header("cookie")
            .unwrap_or_default()
            .split("; ")
            .find_map(|kv| kv.strip_prefix("gatehouse_session_login="))
            .ok_or_else(|| anyhow::anyhow!("no login cookie"))?
            .to_owned();
        let mut flow: LoginFlow = keys
            .open(&login_purpose, &sealed)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        flow.return_to = evil.to_owned();
        let forged = keys.seal(&login_purpose, &flow, [3; 12])?;
        let r = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?
            .get(&callback)
            .header("cookie", format!("gatehouse_session_login={forged}"))
            .send()
            .await?;
        assert_eq!(r.status(), 302, "{evil}");
        assert_eq!(location(&r), "/", "{evil} is not followed");
    }
    Ok(())
}

#[tokio::test]
async fn sessions_survive_key_rotation_and_bad_cookies_do_not_pass() -> anyhow::Result<()> {
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack(3600, "").await?;
    let c = client()?;
    login(&c, &envoy, &idp, "/app/home").await?;
    let cookie = jar_session_cookie(&c, &envoy).await?;
    let with = |value: &str| {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(|c| {
                c.get(envoy.url("/app/data"))
                    .header("accept", "application/json")
                    .header("cookie", format!("gatehouse_session={value}"))
            })
    };
    let r = with(&cookie)?.send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Echoed>().await?.header("x-gatehouse-user"),
        Some("alice")
    );

    // Tampered: one character changed.
    let mut tampered = cookie.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        with(&String::from_utf8(tampered)?)?.send().await?.status(),
        401
    );

    // Sealed with a key the service does not have; and a real key's
    // session that is past its absolute timeout.
    use gatehouse_authz_core::session::{Session, SessionKeys};
    let stale = Session {
        sub: "alice".into(),
        email: None,
        groups: vec![],
        id_token: "x".into(),
        access_token: "x".into(),
        access_expires_at: None,
        refresh_token: None,
        sid: None,
        created_at: 1_000,
        seen_at: 1_000,
    };
    let purpose = sso_filter(&authz)?.seal_purpose("sso", "gatehouse_session");
    let foreign = SessionKeys::from_raw(&[[7; 32]]).seal(&purpose, &stale, [1; 12])?;
    assert_eq!(with(&foreign)?.send().await?.status(), 401);
    let ours = SessionKeys::from_key_file(
        &std::fs::read_to_string(authz.dir().join("session-keys"))?,
        "k",
    )?;
    let expired = ours.seal(&purpose, &stale, [2; 12])?;
    assert_eq!(with(&expired)?.send().await?.status(), 401);

    // Rotation: a new key first, the old one kept: the old session stays.
    let loads = authz
        .metric("gatehouse_authz_config_load_success_total")
        .await?;
    authz.write_file(
        "session-keys",
        "ISEhISEhISEhISEhISEhISEhISEhISEhISEhISEhISE=\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    )?;
    e2e::poll::until(
        "the rotated session keys loaded",
        e2e::poll::READY_DEADLINE,
        || async {
            Ok((authz
                .metric("gatehouse_authz_config_load_success_total")
                .await?
                > loads)
                .then_some(()))
        },
    )
    .await?;
    let r = with(&cookie)?.send().await?;
    assert_eq!(r.status(), 200, "a session sealed with the old key");
    assert_eq!(
        r.json::<Echoed>().await?.header("x-gatehouse-user"),
        Some("alice")
    );
    Ok(())
}

#[tokio::test]
async fn an_expiring_access_token_is_refreshed_at_the_real_idp() -> anyhow::Result<()> {
    // Every access token is inside the refresh margin: the first request
    // after login refreshes, no waiting needed.
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack(
        120,
        "      refresh_margin_seconds: 3600\n      forward_access_token: true\n",
    )
    .await?;
    let c = client()?;
    login(&c, &envoy, &idp, "/app/home").await?;
    let first = c
        .get(envoy.url("/app/data"))
        .header("accept", "application/json")
        .send()
        .await?;
    assert_eq!(first.status(), 200);
    assert!(
        first.headers().get_all("set-cookie").iter().any(|v| v
            .to_str()
            .is_ok_and(|v| v.starts_with("gatehouse_session="))),
        "the refreshed session comes back as a cookie"
    );
    let seen: Echoed = first.json().await?;
    let bearer = seen.header("authorization").unwrap_or_default().to_owned();
    assert!(bearer.starts_with("Bearer "), "{bearer}");
    assert_eq!(authz.metric("gatehouse_authz_refreshes_total").await?, 1.0);
    // The new access token is a real one: the IdP's userinfo takes it.
    let userinfo: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(format!("{}/me", idp.issuer()))
        .header("authorization", &bearer)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(userinfo["sub"], "alice");
    Ok(())
}

fn machine_token(claims: serde_json::Value) -> anyhow::Result<String> {
    let pem =
        std::fs::read(e2e::paths::workspace_root().join("filters/jwt-core/testdata/keys/rsa.pem"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem)?,
    )?)
}

#[tokio::test]
async fn machine_clients_pass_with_a_bearer_jwt_and_no_session() -> anyhow::Result<()> {
    let bearer = "      bearer:\n        issuer: https://machines.example\n        audiences: [api]\n        jwks_file: machines-jwks.json\n";
    let Stack {
        echo: _echo,
        authz: _authz,
        envoy,
        idp: _idp,
    } = stack(3600, bearer).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let good = machine_token(serde_json::json!({
        "iss": "https://machines.example", "aud": "api", "sub": "ci-bot",
        "groups": ["deployers"], "exp": now + 300
    }))?;
    let c = client()?;
    let r = c
        .get(envoy.url("/app/deploy"))
        .header("authorization", format!("Bearer {good}"))
        .header("x-gatehouse-user", "mallory")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let seen: Echoed = r.json().await?;
    assert_eq!(
        seen.headers.get("x-gatehouse-user"),
        Some(&vec!["ci-bot".to_owned()])
    );
    assert_eq!(seen.header("x-gatehouse-groups"), Some("deployers"));

    for (what, claims) in [
        (
            "expired",
            serde_json::json!({"iss": "https://machines.example", "aud": "api", "sub": "ci-bot", "exp": now - 600}),
        ),
        (
            "another issuer",
            serde_json::json!({"iss": "https://elsewhere.example", "aud": "api", "sub": "ci-bot", "exp": now + 300}),
        ),
        (
            "another audience",
            serde_json::json!({"iss": "https://machines.example", "aud": "web", "sub": "ci-bot", "exp": now + 300}),
        ),
    ] {
        let token = machine_token(claims)?;
        // Even a browser's request: a bad token is refused, not sent to log in.
        let r = c
            .get(envoy.url("/app/deploy"))
            .header("accept", "text/html")
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await?;
        assert_eq!(r.status(), 401, "{what}");
        let challenge = r.headers()["www-authenticate"].to_str()?.to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_idp_going_down_keeps_sessions_and_refuses_new_logins_clearly() -> anyhow::Result<()> {
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack(3600, "      discovery_refresh_seconds: 1\n").await?;
    let c = client()?;
    login(&c, &envoy, &idp, "/app/home").await?;
    drop(idp);
    // A new browser gets a page that says what is wrong, once discovery
    // has noticed (it runs every second here).
    let stranger = client()?;
    let page = e2e::poll::until(
        "new logins refused while the IdP is down",
        e2e::poll::READY_DEADLINE,
        || async {
            let r = stranger
                .get(envoy.url("/app/home"))
                .header("accept", "text/html")
                .send()
                .await?;
            Ok((r.status() == 503).then_some(r.text().await?))
        },
    )
    .await?;
    assert!(page.contains("data-code=\"idp_unavailable\""), "{page}");
    assert!(authz.metric("gatehouse_authz_idp_errors_total").await? >= 1.0);
    // The signed-in browser carries on.
    assert_eq!(
        user_seen(&c, &envoy, "/app/data").await?,
        (200, Some("alice".to_owned()))
    );
    Ok(())
}

#[tokio::test]
async fn the_filter_can_authenticate_to_the_idp_with_a_private_key() -> anyhow::Result<()> {
    // private_key_jwt: no shared secret; the IdP checks a signed assertion
    // at the token endpoint, both for the code and for refreshes.
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack_as(
        120,
        "      refresh_margin_seconds: 3600\n",
        ClientAuth::PrivateKeyJwt,
    )
    .await?;
    let c = client()?;
    login(&c, &envoy, &idp, "/app/home").await?;
    assert_eq!(
        user_seen(&c, &envoy, "/app/data").await?,
        (200, Some("alice".to_owned()))
    );
    assert_eq!(authz.metric("gatehouse_authz_logins_total").await?, 1.0);
    assert_eq!(authz.metric("gatehouse_authz_refreshes_total").await?, 1.0);
    Ok(())
}

/// The hidden inputs of the first form on a page.
/// Signs `client`'s user out at the IdP itself (its end-session page and
/// confirmation), which then tells gatehouse-authz by back-channel logout.
async fn sign_out_at_the_idp(client: &reqwest::Client, idp: &Idp) -> anyhow::Result<()> {
    let page = client
        .get(format!("{}/session/end", idp.issuer()))
        .send()
        .await?
        .text()
        .await?;
    let mut form = hidden_inputs(&page);
    form.push(("logout".to_owned(), "yes".to_owned()));
    let confirm = client
        .post(format!("{}/session/end/confirm", idp.issuer()))
        .form(&form)
        .send()
        .await?;
    assert!(
        confirm.status().is_redirection() || confirm.status().is_success(),
        "{}",
        confirm.status()
    );
    Ok(())
}

fn hidden_inputs(page: &str) -> Vec<(String, String)> {
    page.split("<input")
        .skip(1)
        .filter_map(|input| {
            let attr = |name: &str| {
                input
                    .split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .map(str::to_owned)
            };
            Some((attr("name")?, attr("value").unwrap_or_default()))
        })
        .collect()
}

#[tokio::test]
async fn redis_sessions_end_on_logout_everywhere_and_on_back_channel_logout() -> anyhow::Result<()>
{
    let redis = e2e::Redis::start().await?;
    let store = format!(
        "      session_store:\n        redis_url: redis://127.0.0.1:{}/0\n",
        redis.port()
    );
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack(3600, &store).await?;
    let api = |c: &reqwest::Client, path: &str| {
        c.get(envoy.url(path))
            .header("accept", "application/json")
            .send()
    };

    // The cookie holds a reference, not the session.
    let b = client()?;
    login(&b, &envoy, &idp, "/app/home").await?;
    let cookie = jar_session_cookie(&b, &envoy).await?;
    assert!(cookie.len() < 200, "a reference, {} bytes", cookie.len());
    assert_eq!(api(&b, "/app/data").await?.status(), 200);

    // Logging out ends the session for every copy of the cookie.
    let copy = reqwest::Client::builder().no_proxy().build()?;
    let with_copy = || {
        copy.get(envoy.url("/app/data"))
            .header("accept", "application/json")
            .header("cookie", format!("gatehouse_session={cookie}"))
            .send()
    };
    assert_eq!(with_copy().await?.status(), 200);
    let out = b
        .post(envoy.url("/.gatehouse/oidc/logout"))
        .header("origin", envoy.url("").trim_end_matches('/'))
        .send()
        .await?;
    assert_eq!(out.status(), 302);
    assert_eq!(with_copy().await?.status(), 401, "revoked on the server");

    // Back-channel: the user signs out at the IdP itself; the IdP tells
    // gatehouse-authz, and the session here ends too.
    let a = client()?;
    login(&a, &envoy, &idp, "/app/home").await?;
    assert_eq!(api(&a, "/app/data").await?.status(), 200);
    sign_out_at_the_idp(&a, &idp).await?;
    e2e::poll::until(
        "the back-channel logout applied",
        e2e::poll::READY_DEADLINE,
        || async { Ok((api(&a, "/app/data").await?.status() == 401).then_some(())) },
    )
    .await?;
    assert!(
        authz.log().contains("back-channel logout"),
        "{}",
        authz.log()
    );

    // A forged logout token changes nothing.
    let c = client()?;
    login(&c, &envoy, &idp, "/app/home").await?;
    let forged = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(envoy.url("/.gatehouse/oidc/backchannel-logout"))
        .form(&[("logout_token", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.")])
        .send()
        .await?;
    assert_eq!(forged.status(), 400);
    assert_eq!(api(&c, "/app/data").await?.status(), 200);
    Ok(())
}

#[tokio::test]
async fn envoys_native_oauth2_filter_logs_in_against_the_same_idp() -> anyhow::Result<()> {
    // The benchmarks' in-proxy peer: its setup must work for its row to mean
    // anything.
    let echo = Echo::start().await?;
    let idp = Idp::start(&serde_json::json!([e2e::oauth2::idp_client()]), 3600).await?;
    let port = idp
        .issuer()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let envoy = Envoy::from_template("oauth2.yaml")?
        .upstream(&echo)
        .var("IDP_ISSUER", idp.issuer())
        .var("IDP_PORT", port)
        .start()
        .await?;
    let session = e2e::oauth2::login(&envoy, &idp).await?;
    assert!(
        session.contains("BearerToken=") || session.contains("OauthHMAC="),
        "{session}"
    );
    Ok(())
}

#[tokio::test]
async fn a_login_without_a_required_claim_gets_403_and_no_session() -> anyhow::Result<()> {
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack(
        3600,
        "      required_claims:\n        - {claim: groups, one_of: [auditors]}\n",
    )
    .await?;
    let c = client()?;
    let callback = login_until_callback(&c, &envoy, &idp, "/app/home").await?;
    let r = c.get(&callback).send().await?;
    assert_eq!(r.status(), 403);
    assert!(r.text().await?.contains("data-code=\"claims_not_met\""));
    let after = c
        .get(envoy.url("/app/home"))
        .header("accept", "application/json")
        .send()
        .await?;
    assert_eq!(after.status(), 401, "no session was made");
    assert_eq!(authz.metric("gatehouse_authz_logins_total").await?, 0.0);
    Ok(())
}

#[tokio::test]
async fn a_plain_local_logout_leaves_the_idp_alone() -> anyhow::Result<()> {
    let Stack {
        echo: _echo,
        authz: _authz,
        envoy,
        idp,
    } = stack(3600, "      rp_initiated_logout: false\n").await?;
    let c = client()?;
    login(&c, &envoy, &idp, "/app/home").await?;
    let out = c
        .post(envoy.url("/.gatehouse/oidc/logout"))
        .header("origin", envoy.url("").trim_end_matches('/'))
        .send()
        .await?;
    assert_eq!(out.status(), 302);
    assert_eq!(location(&out), envoy.url("/public/bye"), "not to the IdP");
    let r = c
        .get(envoy.url("/app/data"))
        .header("accept", "application/json")
        .send()
        .await?;
    assert_eq!(r.status(), 401, "the session here ended");
    Ok(())
}

#[tokio::test]
async fn the_client_secret_can_go_in_the_form_body() -> anyhow::Result<()> {
    // client_secret_post: the IdP accepts nothing else for this client.
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack_as(3600, "", ClientAuth::SecretPost).await?;
    let c = client()?;
    login(&c, &envoy, &idp, "/app/home").await?;
    let r = c
        .get(envoy.url("/app/data"))
        .header("accept", "application/json")
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(authz.metric("gatehouse_authz_logins_total").await?, 1.0);
    Ok(())
}

#[tokio::test]
async fn hostile_paths_and_bearer_headers_do_not_pass_the_sso_filter() -> anyhow::Result<()> {
    // Issue 13: public paths on segment boundaries; the bearer scheme in any
    // case; a token for another audience or without expiry is refused.
    let extra = "      public_paths: [/app/health]\n      bearer:\n        issuer: https://machines.example\n        jwks_file: machines-jwks.json\n";
    let Stack {
        echo: _echo,
        authz: _authz,
        envoy,
        idp: _idp,
    } = stack(3600, extra).await?;
    let anon = client()?;
    for open in ["/app/health", "/app/health/live", "/app/health?probe=1"] {
        assert_eq!(user_seen(&anon, &envoy, open).await?, (200, None), "{open}");
    }
    for closed in ["/app/healthz-admin", "/app/healthz"] {
        assert_eq!(user_seen(&anon, &envoy, closed).await?.0, 401, "{closed}");
    }
    // Paths an upstream may resolve elsewhere: refused by gatehouse-authz
    // (401) or by a hardened Envoy before it (400/404): never passed.
    for tricky in ["/app/health/%2e%2e/admin", "/app/health%2fadmin"] {
        let (status, _) = user_seen(&anon, &envoy, tricky).await?;
        assert!(status != 200 && status >= 400, "{tricky}: {status}");
    }

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let token = |claims: serde_json::Value| machine_token(claims);
    let good = token(serde_json::json!({
        "iss": "https://machines.example", "aud": "gatehouse", "sub": "ci-bot", "exp": now + 300
    }))?;
    let bearer = |path: &str, value: String| {
        anon.get(envoy.url(path))
            .header("accept", "application/json")
            .header("authorization", value)
            .send()
    };
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = bearer("/app/deploy", format!("{scheme} {good}")).await?;
        assert_eq!(r.status(), 200, "{scheme}");
        assert_eq!(
            r.json::<Echoed>().await?.header("x-gatehouse-user"),
            Some("ci-bot")
        );
    }
    let refused = [
        (
            "BEARER with a bad token on a public path",
            "/app/health",
            "BEARER not.a.token".to_owned(),
        ),
        ("no token", "/app/deploy", "Bearer".to_owned()),
        (
            "another audience (the default is the client id)",
            "/app/deploy",
            format!(
                "Bearer {}",
                token(serde_json::json!({
                    "iss": "https://machines.example", "aud": "billing", "sub": "x", "exp": now + 300
                }))?
            ),
        ),
        (
            "no expiry",
            "/app/deploy",
            format!(
                "Bearer {}",
                token(serde_json::json!({
                    "iss": "https://machines.example", "aud": "gatehouse", "sub": "x"
                }))?
            ),
        ),
    ];
    for (what, path, value) in refused {
        let r = bearer(path, value).await?;
        assert_eq!(r.status(), 401, "{what}");
        assert!(
            r.headers()
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().is_ok_and(|v| v.contains("invalid_token"))),
            "{what}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn parallel_requests_of_one_session_spend_its_refresh_token_once() -> anyhow::Result<()> {
    // Every access token is inside the refresh margin: each request below
    // needs a refresh, and they all carry the same cookie.
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack(120, "      refresh_margin_seconds: 3600\n").await?;
    let c = client()?;
    login(&c, &envoy, &idp, "/app/home").await?;
    let cookie = jar_session_cookie(&c, &envoy).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let url = envoy.url(&format!("/app/asset-{i}"));
        let cookie = cookie.clone();
        tasks.spawn(async move {
            let r = reqwest::Client::builder()
                .no_proxy()
                .build()?
                .get(url)
                .header("accept", "application/json")
                .header("cookie", format!("gatehouse_session={cookie}"))
                .send()
                .await?;
            anyhow::Ok(r.status().as_u16())
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status??, 200);
    }
    assert_eq!(
        authz.metric("gatehouse_authz_refreshes_total").await?,
        1.0,
        "one refresh for six parallel requests"
    );
    Ok(())
}

// === The fast path: signed-in requests verified inside Envoy ===

/// A gatehouse-session counter of Envoy (`verified`, `slow.refused`, …).
async fn session_stat(envoy: &Envoy, name: &str) -> anyhow::Result<u64> {
    envoy
        .stat(&format!("wasmcustom.gatehouse_session.{name}"))
        .await
}

/// Full checks gatehouse-authz allowed.
async fn allowed_checks(authz: &AuthzService) -> anyhow::Result<f64> {
    authz
        .metric("gatehouse_authz_checks_total{result=\"allowed\",status=\"200\"}")
        .await
}

/// A program's request with `client`'s cookies (and `headers`): the status
/// and what the upstream saw.
async fn get_app(
    client: &reqwest::Client,
    envoy: &Envoy,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, Option<Echoed>)> {
    let mut request = client
        .get(envoy.url("/app/data"))
        .header("accept", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await?;
    let status = r.status().as_u16();
    Ok((
        status,
        if status == 200 {
            Some(r.json().await?)
        } else {
            None
        },
    ))
}

/// Signs in with `client` and makes requests until one is verified in
/// Envoy (the first full check sets the ticket; the filter needs its first
/// feed): what the upstream saw through the full check and through the
/// fast path.
async fn signed_in_fast(
    client: &reqwest::Client,
    envoy: &Envoy,
    idp: &Idp,
) -> anyhow::Result<(Echoed, Echoed)> {
    login(client, envoy, idp, "/app/home").await?;
    let (status, full) = get_app(client, envoy, &[]).await?;
    assert_eq!(status, 200);
    let full = full.ok_or_else(|| anyhow::anyhow!("no echo"))?;
    let fast = e2e::poll::until(
        "a request verified inside Envoy",
        e2e::poll::READY_DEADLINE,
        || async {
            let before = session_stat(envoy, "verified").await?;
            let (status, seen) = get_app(client, envoy, &[]).await?;
            assert_eq!(status, 200);
            Ok((session_stat(envoy, "verified").await? > before).then_some(seen))
        },
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("no echo"))?;
    Ok((full, fast))
}

/// The cookies `client` sends, as the upstream of a public route sees them.
async fn jar_cookies(client: &reqwest::Client, envoy: &Envoy) -> anyhow::Result<String> {
    let seen: Echoed = client
        .get(envoy.url("/public/peek"))
        .send()
        .await?
        .json()
        .await?;
    Ok(seen.header("cookie").unwrap_or_default().to_owned())
}

#[tokio::test]
async fn the_fast_path_serves_the_same_identity_without_asking_gatehouse_authz()
-> anyhow::Result<()> {
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack_fast(3600, "").await?;
    let b = client()?;
    let (full, fast) = signed_in_fast(&b, &envoy, &idp).await?;
    // Exactly the headers the full check gave the upstream.
    for name in [
        "x-gatehouse-user",
        "x-gatehouse-email",
        "x-gatehouse-groups",
        "authorization",
        "cookie",
    ] {
        assert_eq!(full.header(name), fast.header(name), "{name}");
    }
    assert_eq!(fast.header("x-gatehouse-user"), Some("alice"));
    assert!(
        !fast
            .header("cookie")
            .unwrap_or_default()
            .contains("gatehouse_"),
        "our cookies stay at the edge: {:?}",
        fast.header("cookie")
    );
    assert_eq!(fast.header("x-gatehouse-session-verified"), None);

    // A verified request never reaches gatehouse-authz.
    let checks = allowed_checks(&authz).await?;
    let verified = session_stat(&envoy, "verified").await?;
    for _ in 0..5 {
        assert_eq!(get_app(&b, &envoy, &[]).await?.0, 200);
    }
    assert_eq!(session_stat(&envoy, "verified").await?, verified + 5);
    assert_eq!(allowed_checks(&authz).await?, checks);

    // Client copies of identity headers and of the mark are dropped.
    let (status, seen) = get_app(
        &b,
        &envoy,
        &[
            ("x-gatehouse-user", "mallory"),
            ("x-gatehouse-session-verified", "1"),
        ],
    )
    .await?;
    assert_eq!(status, 200);
    let seen = seen.ok_or_else(|| anyhow::anyhow!("no echo"))?;
    assert_eq!(seen.header("x-gatehouse-user"), Some("alice"));
    assert_eq!(seen.header("x-gatehouse-session-verified"), None);
    // The mark alone opens nothing: ext_authz still runs.
    let stranger = reqwest::Client::builder().no_proxy().build()?;
    let (status, _) = get_app(&stranger, &envoy, &[("x-gatehouse-session-verified", "1")]).await?;
    assert_eq!(status, 401);

    // A tampered or foreign ticket is refused in Envoy: alone it is no
    // session; next to the session cookie the full check decides.
    let cookies = jar_cookies(&b, &envoy).await?;
    let ticket = cookies
        .split("; ")
        .find_map(|c| c.strip_prefix("gatehouse_session_ticket="))
        .ok_or_else(|| anyhow::anyhow!("no ticket in {cookies}"))?;
    let session = session_cookie(&cookies).ok_or_else(|| anyhow::anyhow!("no session"))?;
    let mut parts: Vec<String> = ticket.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replace('a', "b").replace('A', "a");
    let tampered = parts.join(".");
    let refused = session_stat(&envoy, "slow.refused").await?;
    let (status, _) = get_app(
        &stranger,
        &envoy,
        &[("cookie", &format!("gatehouse_session_ticket={tampered}"))],
    )
    .await?;
    assert_eq!(status, 401, "a ticket alone, tampered");
    let checks = allowed_checks(&authz).await?;
    let (status, seen) = get_app(
        &stranger,
        &envoy,
        &[(
            "cookie",
            &format!("gatehouse_session={session}; gatehouse_session_ticket={tampered}"),
        )],
    )
    .await?;
    assert_eq!(status, 200);
    assert_eq!(
        seen.and_then(|s| s.header("x-gatehouse-user").map(str::to_owned)),
        Some("alice".to_owned())
    );
    assert_eq!(
        allowed_checks(&authz).await?,
        checks + 1.0,
        "the full check"
    );
    assert_eq!(session_stat(&envoy, "slow.refused").await?, refused + 2);
    Ok(())
}

/// Logs `client` out as a same-site form would.
async fn log_out(client: &reqwest::Client, envoy: &Envoy) -> anyhow::Result<()> {
    let out = client
        .post(envoy.url("/.gatehouse/oidc/logout"))
        .header("origin", envoy.url("").trim_end_matches('/'))
        .send()
        .await?;
    assert_eq!(out.status(), 302);
    Ok(())
}

/// After a logout, the cookies copied before it are refused as soon as
/// every worker has taken a feed polled after the logout (polls are every
/// 2 s; the documented bound is 10 s, the age after which a filter that
/// cannot poll stops trusting its feed).
async fn a_replay_after_logout_is_refused(extra: &str) -> anyhow::Result<()> {
    let Stack {
        echo: _echo,
        authz: _authz,
        envoy,
        idp,
    } = stack_fast(3600, extra).await?;
    let b = client()?;
    signed_in_fast(&b, &envoy, &idp).await?;
    let copied = jar_cookies(&b, &envoy).await?;
    assert!(copied.contains("gatehouse_session_ticket="), "{copied}");
    let attacker = reqwest::Client::builder().no_proxy().build()?;
    let with_copy = [("cookie", copied.as_str())];
    let replay = || get_app(&attacker, &envoy, &with_copy);
    assert_eq!(replay().await?.0, 200, "the copy works while signed in");

    log_out(&b, &envoy).await?;
    // Each of Envoy's wasm VMs (the main thread's and one worker's) starts
    // its next poll only when the previous one answered: four more polls
    // mean every VM has taken a feed asked for after the logout.
    let polls = session_stat(&envoy, "feed.polls").await?;
    e2e::poll::until(
        "two polls of every VM",
        e2e::poll::READY_DEADLINE,
        || async { Ok((session_stat(&envoy, "feed.polls").await? >= polls + 4).then_some(())) },
    )
    .await?;
    let revoked = session_stat(&envoy, "slow.revoked").await?;
    assert_eq!(replay().await?.0, 401, "the logged-out copy is refused");
    assert_eq!(session_stat(&envoy, "slow.revoked").await?, revoked + 1);
    Ok(())
}

#[tokio::test]
async fn a_cookie_replayed_after_logout_is_refused_on_the_fast_path() -> anyhow::Result<()> {
    a_replay_after_logout_is_refused("").await
}

#[tokio::test]
async fn a_redis_session_replayed_after_logout_is_refused_on_the_fast_path() -> anyhow::Result<()> {
    let redis = e2e::Redis::start().await?;
    a_replay_after_logout_is_refused(&format!(
        "      session_store:\n        redis_url: redis://127.0.0.1:{}/0\n",
        redis.port()
    ))
    .await
}

#[tokio::test]
async fn a_browser_signs_in_rides_the_fast_path_and_logs_out() -> anyhow::Result<()> {
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack_fast(3600, "").await?;
    let browser = Browser::start().await?;
    browser_signs_in(&browser, &envoy.url("/app/orders"), &idp).await?;
    browser
        .until_url_starts_with(&envoy.url("/app/orders"))
        .await?;
    // The browser stored the ticket the full check set: its next pages are
    // verified in Envoy, with the same identity, and nobody else is asked.
    let before = (idp.requests(), allowed_checks(&authz).await?);
    let verified = session_stat(&envoy, "verified").await?;
    for page in ["/app/profile", "/app/settings"] {
        browser.goto(&envoy.url(page)).await?;
        let seen = echoed(&browser.text().await?)?;
        assert_eq!(seen.header("x-gatehouse-user"), Some("alice"));
        assert_eq!(seen.header("x-gatehouse-groups"), Some("staff,admins"));
    }
    let mut why = String::new();
    for stat in [
        "slow.no_feed",
        "slow.no_ticket",
        "slow.refused",
        "slow.revoked",
    ] {
        why.push_str(&format!("{stat} {} ", session_stat(&envoy, stat).await?));
    }
    assert_eq!(
        session_stat(&envoy, "verified").await?,
        verified + 2,
        "{why}"
    );
    assert_eq!((idp.requests(), allowed_checks(&authz).await?), before);

    // Logout still reaches gatehouse-authz (the filter is off on its route),
    // and ends the session at the IdP too.
    browser_logs_out(&browser, &envoy, &idp).await?;
    Ok(())
}

#[tokio::test]
async fn the_full_check_refreshes_and_the_fast_path_carries_the_new_token() -> anyhow::Result<()> {
    // Access tokens last 70 s and are refreshed 60 s before: a ticket lasts
    // at most until the refresh is due, 10 s after login.
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack_fast(
        70,
        "      refresh_margin_seconds: 60\n      forward_access_token: true\n",
    )
    .await?;
    let b = client()?;
    let (_, fast) = signed_in_fast(&b, &envoy, &idp).await?;
    let first = fast.header("authorization").unwrap_or_default().to_owned();
    assert!(first.starts_with("Bearer "), "{first}");
    assert_eq!(authz.metric("gatehouse_authz_refreshes_total").await?, 0.0);
    // Once the ticket is due, the next request takes the full check, which
    // refreshes at the IdP and sets a ticket for the new token.
    e2e::poll::until("the refresh", e2e::poll::READY_DEADLINE, || async {
        assert_eq!(get_app(&b, &envoy, &[]).await?.0, 200);
        Ok((authz.metric("gatehouse_authz_refreshes_total").await? >= 1.0).then_some(()))
    })
    .await?;
    let verified = session_stat(&envoy, "verified").await?;
    let (status, seen) = get_app(&b, &envoy, &[]).await?;
    assert_eq!(status, 200);
    assert_eq!(session_stat(&envoy, "verified").await?, verified + 1);
    let now = seen
        .and_then(|s| s.header("authorization").map(str::to_owned))
        .unwrap_or_default();
    assert!(
        now.starts_with("Bearer ") && now != first,
        "{first} then {now}"
    );
    Ok(())
}

#[tokio::test]
async fn a_new_session_key_retires_old_tickets_and_a_down_idp_changes_nothing() -> anyhow::Result<()>
{
    let Stack {
        echo: _echo,
        authz,
        envoy,
        idp,
    } = stack_fast(3600, "").await?;
    let b = client()?;
    signed_in_fast(&b, &envoy, &idp).await?;
    let ticket_key = |cookies: &str| {
        cookies
            .split("; ")
            .find_map(|c| c.strip_prefix("gatehouse_session_ticket="))
            .and_then(|t| t.split('.').next())
            .map(str::to_owned)
    };
    let old = ticket_key(&jar_cookies(&b, &envoy).await?);
    // A new key first, the old one kept so sessions sealed with it open.
    authz.write_file(
        "session-keys",
        "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
    )?;
    // The old ticket is refused in Envoy once the feed has the new keys; the
    // full check lets the session through and sets a ticket of the new key.
    let refused = session_stat(&envoy, "slow.refused").await?;
    e2e::poll::until(
        "the old ticket refused",
        e2e::poll::READY_DEADLINE,
        || async {
            assert_eq!(get_app(&b, &envoy, &[]).await?.0, 200);
            Ok((session_stat(&envoy, "slow.refused").await? > refused).then_some(()))
        },
    )
    .await?;
    let new = ticket_key(&jar_cookies(&b, &envoy).await?);
    assert!(new.is_some() && new != old, "{old:?} then {new:?}");
    let verified = session_stat(&envoy, "verified").await?;
    assert_eq!(get_app(&b, &envoy, &[]).await?.0, 200);
    assert_eq!(session_stat(&envoy, "verified").await?, verified + 1);

    // The IdP goes away: signed-in browsers do not notice.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(idp.pid())?),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    for _ in 0..3 {
        let (status, seen) = get_app(&b, &envoy, &[]).await?;
        assert_eq!(status, 200);
        assert_eq!(
            seen.and_then(|s| s.header("x-gatehouse-user").map(str::to_owned)),
            Some("alice".to_owned())
        );
    }
    assert_eq!(session_stat(&envoy, "verified").await?, verified + 4);
    Ok(())
}

#[tokio::test]
async fn a_back_channel_logout_ends_the_fast_path_too() -> anyhow::Result<()> {
    let redis = e2e::Redis::start().await?;
    let Stack {
        echo: _echo,
        authz: _authz,
        envoy,
        idp,
    } = stack_fast(
        3600,
        &format!(
            "      session_store:\n        redis_url: redis://127.0.0.1:{}/0\n",
            redis.port()
        ),
    )
    .await?;
    let a = client()?;
    signed_in_fast(&a, &envoy, &idp).await?;
    // The user signs out at the IdP itself, which tells gatehouse-authz.
    sign_out_at_the_idp(&a, &idp).await?;
    let revoked = session_stat(&envoy, "slow.revoked").await?;
    e2e::poll::until(
        "the back-channel logout on the fast path",
        e2e::poll::READY_DEADLINE,
        || async { Ok((get_app(&a, &envoy, &[]).await?.0 == 401).then_some(())) },
    )
    .await?;
    assert!(session_stat(&envoy, "slow.revoked").await? > revoked);
    Ok(())
}
