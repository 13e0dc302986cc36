//! The SSO fast path end to end: gatehouse-session verifies identity
//! tickets in Envoy and gatehouse-authz sees only what needs it; replays
//! after logout, a browser on the fast path, refreshes, key rotation and
//! back-channel logout.

use e2e::browser::Browser;
use e2e::sso::*;

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
