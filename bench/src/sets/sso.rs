//! `sso`: a signed-in browser's request four ways on one Envoy: no auth,
//! Envoy's native oauth2 filter (a real login through it), Gatehouse
//! through ext_authz (every request a `Check` call) and Gatehouse's fast
//! path (the gatehouse-session filter verifies the identity ticket inside
//! Envoy; ext_authz is skipped). Two more rows bound what the fast path's
//! design can reach: its floor (a wasm filter that checks nothing and only
//! marks the request, so ext_authz is skipped) and the one native design
//! measured against it (Envoy's jwt_authn verifying an HS256 ticket).

use std::fmt::Write as _;

use anyhow::Result;

use super::authz::native_oauth2;
use super::{Measured, cpu_ratio, ratio, scenario, verdict};
use crate::{Pinning, Scenario, Settings, Sidecar};

/// The four rows, the fast path last.
pub(super) async fn sso(settings: &Settings, pinning: Option<&Pinning>) -> Result<Measured> {
    let (native, _idp) = native_oauth2().await?;
    // What a signed-in browser sends with the fast path on: the session
    // cookie and the ticket the full check set. Every row carries both, so
    // every row parses the same request.
    let cookies = format!(
        "{}; {}",
        crate::bench_cookie(false)?,
        crate::bench_ticket_cookie()?
    );
    let with_cookies = |mut s: Scenario| {
        s.headers.push(("cookie".to_owned(), cookies.clone()));
        s
    };
    // The fast path's floor: the same Envoy, with a wasm filter that reads
    // nothing and marks every request.
    let mut floor = scenario(
        "floor of the fast path: a wasm filter that only marks (checks nothing)",
        "sso-fast.yaml",
        "/app/bench",
        Sidecar::AuthzFast,
    );
    floor.vars.push((
        "SESSION_WASM".to_owned(),
        e2e::paths::wasm_filter("gatehouse_noop")?
            .display()
            .to_string(),
    ));
    let mut jwt_authn = scenario(
        "native alternative: jwt_authn verifies an HS256 ticket (no revocation)",
        "sso-jwt-authn.yaml",
        "/app/bench",
        Sidecar::Authz,
    );
    let (jwks, ticket) = hs256_ticket()?;
    jwt_authn.vars = vec![
        ("TICKET_COOKIE".to_owned(), JWT_TICKET_COOKIE.to_owned()),
        ("TICKET_JWKS".to_owned(), jwks),
    ];
    jwt_authn.headers.push((
        "cookie".to_owned(),
        format!(
            "{}; {JWT_TICKET_COOKIE}={ticket}",
            crate::bench_cookie(false)?
        ),
    ));
    let scenarios = [
        with_cookies(scenario(
            "no auth (baseline)",
            "proxy.yaml",
            "/app/bench",
            Sidecar::None,
        )),
        native,
        with_cookies(scenario(
            "Gatehouse through ext_authz (a Check call per request)",
            "ext-authz.yaml",
            "/app/bench",
            Sidecar::Authz,
        )),
        with_cookies(scenario(
            "Gatehouse fast path (ticket verified in Envoy)",
            "sso-fast.yaml",
            "/app/bench",
            Sidecar::AuthzFast,
        )),
        with_cookies(floor),
        jwt_authn,
    ];
    let s = crate::run(&scenarios, settings, pinning).await?;
    let mut targets = String::from("Targets:\n");
    let against_native = ratio(&s, 3, 1);
    let _ = writeln!(
        targets,
        "- fast path at least 1.15x Envoy's native oauth2 filter: {against_native:.2}, {}",
        verdict(against_native >= 1.15)
    );
    let against_plain = ratio(&s, 3, 0);
    let _ = writeln!(
        targets,
        "- fast path at least 0.8x no auth: {against_plain:.2}, {}",
        verdict(against_plain >= 0.8)
    );
    let (fast_cpu, native_cpu) = (
        s[3].median.envoy_cpu_us.unwrap_or(f64::NAN),
        s[1].median.envoy_cpu_us.unwrap_or(f64::NAN),
    );
    let _ = writeln!(
        targets,
        "- Envoy CPU per request below the native filter's: {fast_cpu:.1} µs against {native_cpu:.1} µs (per-round ratio {:.2}), {}",
        cpu_ratio(&s, 3, 1),
        verdict(fast_cpu < native_cpu)
    );
    let _ = writeln!(
        targets,
        "- (for scale) fast path against the ext_authz path: {:.2}; p50 {:.0} µs against {:.0} µs, p99 {:.0} µs against {:.0} µs (closed-loop saturation: latency follows throughput)",
        ratio(&s, 3, 2),
        s[3].median.p50_us,
        s[2].median.p50_us,
        s[3].median.p99_us,
        s[2].median.p99_us,
    );
    let floor_native = ratio(&s, 4, 1);
    let _ = writeln!(
        targets,
        "- (bounds) the fast path's floor, a wasm filter doing nothing but the mark: {floor_native:.2}x native, {:.2}x no auth, {:.1} µs Envoy CPU; the fast path is {:.2} of its floor",
        ratio(&s, 4, 0),
        s[4].median.envoy_cpu_us.unwrap_or(f64::NAN),
        ratio(&s, 3, 4),
    );
    let _ = writeln!(
        targets,
        "- (bounds) Envoy's native jwt_authn on an HS256 ticket: {:.2}x native oauth2, {:.2}x no auth, {:.1} µs Envoy CPU",
        ratio(&s, 5, 1),
        ratio(&s, 5, 0),
        s[5].median.envoy_cpu_us.unwrap_or(f64::NAN),
    );
    Ok((
        format!(
            "Envoy with 1 worker under wrk (1 thread, {} connections), every request a signed-in browser's: Gatehouse's rows carry the sealed session cookie (about 1.5 KB) and the identity ticket; the native row carries the cookies its own login set.",
            settings.connections
        ),
        crate::table(&s, None),
        targets,
    ))
}

/// The cookie the jwt_authn row's ticket travels in.
const JWT_TICKET_COOKIE: &str = "gatehouse_jwt_ticket";

/// A JWKS with one HS256 key and a ticket it signs: the identity the fast
/// path's ticket carries, as claims jwt_authn copies to headers.
fn hs256_ticket() -> Result<(String, String)> {
    use base64::Engine as _;
    let key = b"gatehouse-bench-jwt-authn-ticket-key";
    let kid = "bench";
    let jwks = serde_json::json!({"keys": [{
        "kty": "oct",
        "alg": "HS256",
        "kid": kid,
        "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
    }]});
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    let claims = serde_json::json!({
        "iss": "gatehouse",
        "sub": "alice",
        "email": "alice@example.com",
        "name": "Alice Example",
        "sid": "s-0123456789abcdef0123456789abcdef",
        "exp": 4_102_444_800_u64,
    });
    let ticket = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )?;
    Ok((jwks.to_string(), ticket))
}
