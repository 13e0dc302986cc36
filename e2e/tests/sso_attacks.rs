//! Single sign-on under attack, end to end (real Envoy, gatehouse-authz and
//! OpenID provider): programs get 401, forged and replayed callbacks,
//! rotated keys and bad cookies, hostile paths and bearer headers, and a
//! session's refresh token spent once under parallel requests.

use e2e::Echoed;
use e2e::idp::location;
use e2e::sso::*;

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
