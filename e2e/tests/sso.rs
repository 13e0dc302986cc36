//! Single sign-on end to end: real Envoy, gatehouse-authz, a real OpenID
//! provider (npm oidc-provider) and, for the login, a real Chromium: the
//! flows (browser, refresh, machine clients, the IdP down, client
//! authentication, Redis sessions and logout, claims). The attacks are in
//! `sso_attacks.rs`, the fast path in `sso_fast.rs`; the stack they share
//! is `e2e::sso`.

use e2e::browser::Browser;
use e2e::idp::{Idp, location};
use e2e::sso::*;
use e2e::{Echo, Echoed, Envoy};

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
