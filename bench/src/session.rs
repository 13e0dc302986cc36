//! The signed-in browser of the authz sets: gatehouse-authz's bench
//! configuration, the session every request carries and its cookie.

use anyhow::{Result, bail};
use e2e::paths;
use e2e::redis::Redis;

/// gatehouse-authz in the bench: one SSO filter whose IdP is never called
/// (a valid session needs none), and the key its cookies are sealed with.
pub const BENCH_SESSION_KEY: [u8; 32] = [42; 32];

/// The session every authz bench request carries: a signed-in user whose
/// idle clock reads "just now" for the whole run (wrk never stores the
/// refreshed cookie a browser would).
pub fn bench_session() -> gatehouse_authz_core::session::Session {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    gatehouse_authz_core::session::Session {
        sub: "alice".into(),
        email: Some("alice@example.test".into()),
        groups: vec!["staff".into()],
        id_token: "x".repeat(900),
        access_token: "y".repeat(40),
        access_expires_at: None,
        refresh_token: Some("z".repeat(40)),
        sid: None,
        created_at: now,
        seen_at: now + 3600,
    }
}

/// The cookie of [`bench_session`]: the session itself, or with the Redis
/// store a reference to id `bench`.
pub fn bench_cookie(stored: bool) -> Result<String> {
    use gatehouse_authz_core::session::{SessionKeys, SessionRef};
    let keys = SessionKeys::from_raw(&[BENCH_SESSION_KEY]);
    let purpose = bench_purpose("gatehouse_session")?;
    let value = if stored {
        keys.seal(&purpose, &SessionRef { id: "bench".into() }, [8; 12])
    } else {
        keys.seal(&purpose, &bench_session(), [9; 12])
    }?;
    Ok(format!("gatehouse_session={value}"))
}

/// What the bench filter seals `what` for: sealed values are bound to the
/// filter's name, client id and issuer.
fn bench_purpose(what: &str) -> Result<String> {
    let config = gatehouse_authz_core::AuthzConfig::parse(&bench_authz_config(), "authz.yaml")?;
    match config.filters().get("sso") {
        Some(gatehouse_authz_core::FilterKind::Oidc(f)) => Ok(f.seal_purpose("sso", what)),
        _ => bail!("the bench configuration has no oidc filter sso"),
    }
}

/// Stores [`bench_session`] in `redis` under id `bench`, sealed as
/// gatehouse-authz stores sessions, for the Redis scenarios.
pub(crate) async fn store_bench_session(redis: &Redis) -> Result<()> {
    use gatehouse_authz_core::session::{STORED_SESSION_PURPOSE, SessionKeys};
    let sealed = SessionKeys::from_raw(&[BENCH_SESSION_KEY]).seal(
        &bench_purpose(STORED_SESSION_PURPOSE)?,
        &bench_session(),
        [7; 12],
    )?;
    let cli = paths::tool(
        "redis-cli",
        "installs the Debian package redis-server, which brings redis-cli",
    )?;
    let out = tokio::process::Command::new(cli)
        .args([
            "-p",
            &redis.port().to_string(),
            "SET",
            "gatehouse:session:bench",
            &sealed,
            "EX",
            "86400",
        ])
        .output()
        .await?;
    if !String::from_utf8_lossy(&out.stdout).contains("OK") {
        bail!(
            "storing the bench session in Redis failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// gatehouse-authz's configuration in the bench: one OIDC filter, `sso`.
pub(crate) fn bench_authz_config() -> String {
    "filters:\n  sso:\n    oidc:\n      issuer: http://127.0.0.1:9\n      client_id: bench\n      client_secret_file: secret\n      callback_url: http://127.0.0.1/.gatehouse/oidc/callback\n      session_keys_file: session-keys\n      cookie_secure: false\n      discovery_refresh_seconds: 86400\n".to_owned()
}

/// The bench configuration with the SSO fast path on: tickets last the
/// whole run (wrk never stores the fresh ticket a browser would).
pub(crate) fn bench_authz_fast_config() -> String {
    format!(
        "feed_socket: feed.sock\n{}      fast_path: {{ ticket_seconds: 3600 }}\n",
        bench_authz_config()
    )
}

/// The ticket cookie gatehouse-authz sets on a full check of
/// [`bench_session`] with the fast path on, made by the same functions.
///
/// # Errors
/// When the bench configuration has no fast-path filter `sso`.
pub fn bench_ticket_cookie() -> Result<String> {
    use gatehouse_authz_core::oidc::{access, fast};
    use gatehouse_authz_core::session::SessionKeys;
    let config =
        gatehouse_authz_core::AuthzConfig::parse(&bench_authz_fast_config(), "authz.yaml")?;
    let Some(gatehouse_authz_core::FilterKind::Oidc(filter)) = config.filters().get("sso") else {
        bail!("the bench configuration has no oidc filter sso");
    };
    let Some(settings) = &filter.fast_path else {
        bail!("the bench filter sso has no fast path");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let session = bench_session();
    let purpose = filter.seal_purpose("sso", "ticket");
    let cookie = bench_cookie(false)?;
    let verdict = access::allow(filter, &session, &Default::default(), Some(&cookie));
    let ticket = fast::ticket(filter, settings, &purpose, &session, &verdict, now)
        .ok_or_else(|| anyhow::anyhow!("the bench session gets no ticket"))?;
    let key = SessionKeys::from_raw(&[BENCH_SESSION_KEY])
        .ticket_key(&purpose, now)
        .ok_or_else(|| anyhow::anyhow!("no ticket key"))?;
    Ok(format!("{}={}", settings.ticket_cookie, ticket.issue(&key)))
}
