//! The single sign-on stack the SSO tests share: Envoy, gatehouse-authz
//! (reloaded with the SSO filter once the IdP knows Envoy's callback URL),
//! the test OpenID provider, and the logins, logouts and cookies the tests
//! go through, in a browser or as a program.

use crate::browser::Browser;
use crate::idp::{Idp, location};
use crate::{AuthzService, Echo, Echoed, Envoy};

/// Starts the stack: Envoy must exist before the IdP (which needs Envoy's
/// callback URL) and before the SSO filter (which needs the IdP's issuer),
/// so the filter arrives by a configuration reload: itself under test.
#[derive(Debug)]
pub struct Stack {
    pub echo: Echo,
    pub authz: AuthzService,
    pub envoy: Envoy,
    pub idp: Idp,
}

pub const BOOT: &str = "filters:\n  partners:\n    api_keys: {keys_file: keys.yaml}\n";

/// How the filter authenticates to the IdP's token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    SecretBasic,
    SecretPost,
    /// A JWT signed with the test RSA key (RFC 7523).
    PrivateKeyJwt,
}

pub async fn stack(access_token_ttl_secs: u64, extra: &str) -> anyhow::Result<Stack> {
    stack_as(access_token_ttl_secs, extra, ClientAuth::SecretBasic).await
}

pub async fn stack_as(
    access_token_ttl_secs: u64,
    extra: &str,
    auth: ClientAuth,
) -> anyhow::Result<Stack> {
    stack_with(access_token_ttl_secs, extra, auth, Path::Slow).await
}

/// Which way a signed-in request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Every request through ext_authz.
    Slow,
    /// gatehouse-session verifies tickets in Envoy; the rest through ext_authz.
    Fast,
}

/// The stack with the SSO fast path on.
pub async fn stack_fast(access_token_ttl_secs: u64, extra: &str) -> anyhow::Result<Stack> {
    stack_with(
        access_token_ttl_secs,
        &format!("{extra}      fast_path: {{}}\n"),
        ClientAuth::SecretBasic,
        Path::Fast,
    )
    .await
}

pub async fn stack_with(
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
    let testdata = crate::paths::workspace_root().join("filters/jwt-core/testdata");
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
            crate::paths::workspace_root().join("filters/jwt-core/testdata/jwks.json"),
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
    crate::idp::until_sent_to_login(&client, &envoy.url("/app/"), idp.issuer()).await?;
    if path == Path::Fast {
        // The filter has the new filter's keys once every wasm VM (the main
        // thread's and the worker's) completed a poll started after the
        // reload: two more polls each.
        let polls = envoy
            .stat("wasmcustom.gatehouse_session.feed.polls")
            .await?;
        crate::poll::until(
            "the feed polled after the reload",
            crate::poll::READY_DEADLINE,
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
pub fn sso_filter(authz: &AuthzService) -> anyhow::Result<gatehouse_authz_core::OidcFilter> {
    let text = std::fs::read_to_string(authz.dir().join("authz.yaml"))?;
    match gatehouse_authz_core::AuthzConfig::parse(&text, "authz.yaml")?
        .filters()
        .get("sso")
    {
        Some(gatehouse_authz_core::FilterKind::Oidc(f)) => Ok((**f).clone()),
        _ => anyhow::bail!("no oidc filter sso in authz.yaml"),
    }
}

pub fn echoed(page_text: &str) -> anyhow::Result<Echoed> {
    // Chromium shows JSON in its viewer; the document is between the braces.
    let start = page_text.find('{').unwrap_or(0);
    let end = page_text.rfind('}').map_or(page_text.len(), |i| i + 1);
    Ok(serde_json::from_str(&page_text[start..end])?)
}

/// The browser opens `start`, is sent to the IdP and signs in as alice
/// there (the IdP then sends it back).
pub async fn browser_signs_in(browser: &Browser, start: &str, idp: &Idp) -> anyhow::Result<()> {
    browser.goto(start).await?;
    browser.until_url_starts_with(idp.issuer()).await?;
    browser.type_into("#username", "alice").await?;
    browser.type_into("#password", "wonderland").await?;
    browser.click("#login").await
}

/// The browser logs out with a same-site POST, confirms at the IdP, lands
/// on the post-logout page, and a protected page asks to sign in again.
pub async fn browser_logs_out(browser: &Browser, envoy: &Envoy, idp: &Idp) -> anyhow::Result<()> {
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
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Logs in as a browser would, without one: from `start` to the IdP, its
/// login form, and back. Stops before the callback and returns its URL.
pub async fn login_until_callback(
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

pub async fn login(
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
pub async fn user_seen(
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
pub async fn jar_session_cookie(client: &reqwest::Client, envoy: &Envoy) -> anyhow::Result<String> {
    session_cookie(&jar_cookies(client, envoy).await?)
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))
}

pub fn session_cookie(client_jar_header: &str) -> Option<String> {
    client_jar_header.split(';').find_map(|kv| {
        kv.trim()
            .strip_prefix("gatehouse_session=")
            .map(str::to_owned)
    })
}

pub fn machine_token(claims: serde_json::Value) -> anyhow::Result<String> {
    let pem = std::fs::read(
        crate::paths::workspace_root().join("filters/jwt-core/testdata/keys/rsa.pem"),
    )?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem)?,
    )?)
}

/// The hidden inputs of the first form on a page.
/// Signs `client`'s user out at the IdP itself (its end-session page and
/// confirmation), which then tells gatehouse-authz by back-channel logout.
pub async fn sign_out_at_the_idp(client: &reqwest::Client, idp: &Idp) -> anyhow::Result<()> {
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

pub fn hidden_inputs(page: &str) -> Vec<(String, String)> {
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

/// A gatehouse-session counter of Envoy (`verified`, `slow.refused`, …).
pub async fn session_stat(envoy: &Envoy, name: &str) -> anyhow::Result<u64> {
    envoy
        .stat(&format!("wasmcustom.gatehouse_session.{name}"))
        .await
}

/// Full checks gatehouse-authz allowed.
pub async fn allowed_checks(authz: &AuthzService) -> anyhow::Result<f64> {
    authz
        .metric("gatehouse_authz_checks_total{result=\"allowed\",status=\"200\"}")
        .await
}

/// A program's request with `client`'s cookies (and `headers`): the status
/// and what the upstream saw.
pub async fn get_app(
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
pub async fn signed_in_fast(
    client: &reqwest::Client,
    envoy: &Envoy,
    idp: &Idp,
) -> anyhow::Result<(Echoed, Echoed)> {
    login(client, envoy, idp, "/app/home").await?;
    let (status, full) = get_app(client, envoy, &[]).await?;
    assert_eq!(status, 200);
    let full = full.ok_or_else(|| anyhow::anyhow!("no echo"))?;
    let fast = crate::poll::until(
        "a request verified inside Envoy",
        crate::poll::READY_DEADLINE,
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
pub async fn jar_cookies(client: &reqwest::Client, envoy: &Envoy) -> anyhow::Result<String> {
    let seen: Echoed = client
        .get(envoy.url("/public/peek"))
        .send()
        .await?
        .json()
        .await?;
    Ok(seen.header("cookie").unwrap_or_default().to_owned())
}

/// Logs `client` out as a same-site form would.
pub async fn log_out(client: &reqwest::Client, envoy: &Envoy) -> anyhow::Result<()> {
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
pub async fn a_replay_after_logout_is_refused(extra: &str) -> anyhow::Result<()> {
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
    crate::poll::until(
        "two polls of every VM",
        crate::poll::READY_DEADLINE,
        || async { Ok((session_stat(&envoy, "feed.polls").await? >= polls + 4).then_some(())) },
    )
    .await?;
    let revoked = session_stat(&envoy, "slow.revoked").await?;
    assert_eq!(replay().await?.0, 401, "the logged-out copy is refused");
    assert_eq!(session_stat(&envoy, "slow.revoked").await?, revoked + 1);
    Ok(())
}
