//! `authz` and `authz-raw`: ext_authz to a null service against
//! gatehouse-authz with a session cookie and with sessions in Redis, and
//! Envoy's native oauth2 filter; then the services alone over gRPC.

use std::fmt::Write as _;

use anyhow::Result;

use super::{Measured, cpu, ratio, scenario, verdict};
use crate::{Pinning, RawScenario, Scenario, Settings, Sidecar};

/// Envoy's ext_authz with a null service against gatehouse-authz checking a
/// session cookie.
pub(super) async fn authz(settings: &Settings, pinning: Option<&Pinning>) -> Result<Measured> {
    let (native, _idp) = native_oauth2().await?;
    let (session_cookie, reference_cookie) =
        (crate::bench_cookie(false)?, crate::bench_cookie(true)?);
    let with_cookie = |mut s: Scenario| {
        s.headers
            .push(("cookie".to_owned(), session_cookie.clone()));
        s
    };
    let with_reference = |mut s: Scenario| {
        s.headers
            .push(("cookie".to_owned(), reference_cookie.clone()));
        s
    };
    let scenarios = [
        with_cookie(scenario(
            "no auth (baseline)",
            "proxy.yaml",
            "/app/bench",
            Sidecar::None,
        )),
        with_cookie(scenario(
            "ext_authz + null service (allows at once)",
            "ext-authz.yaml",
            "/app/bench",
            Sidecar::NullAuthz,
        )),
        with_cookie(scenario(
            "ext_authz + gatehouse-authz, session cookie",
            "ext-authz.yaml",
            "/app/bench",
            Sidecar::Authz,
        )),
        with_reference(scenario(
            "ext_authz + gatehouse-authz, session in Redis",
            "ext-authz.yaml",
            "/app/bench",
            Sidecar::AuthzRedis,
        )),
        native,
    ];
    let s = crate::run(&scenarios, settings, pinning).await?;
    let mut targets = String::from("Targets:\n");
    let r = ratio(&s, 2, 1);
    let _ = writeln!(
        targets,
        "- gatehouse-authz with a session cookie at least 0.9 of the null service: {r:.2}, {}",
        verdict(r >= 0.9)
    );
    let (ours, null) = (cpu(&s, 2), cpu(&s, 1));
    let _ = writeln!(
        targets,
        "- service CPU per session check at most the null service's + 10 µs: {ours:.1} µs against {null:.1} µs, {}",
        verdict(ours <= null + 10.0)
    );
    // Closed-loop load at saturation: p99 follows throughput, so it is
    // reported for scale, never a target.
    let added = s[2].median.p99_us - s[1].median.p99_us;
    let _ = writeln!(
        targets,
        "- (for scale) p99 added over the null service at saturation: {added:.0} µs"
    );
    let _ = writeln!(
        targets,
        "- (for scale) a gRPC side call alone, null service against no auth: {:.2}",
        ratio(&s, 1, 0)
    );
    let _ = writeln!(
        targets,
        "- (for scale) sessions in Redis against the null service: {:.2}, service CPU {:.1} µs per check (Redis's own not included)",
        ratio(&s, 3, 1),
        cpu(&s, 3)
    );
    let _ = writeln!(
        targets,
        "- (for scale) Envoy's native oauth2 filter with a valid session against no auth: {:.2}; gatehouse-authz with a session cookie against it: {:.2}",
        ratio(&s, 4, 0),
        ratio(&s, 2, 4)
    );
    targets.push_str("\nRaw Check throughput, outside Envoy: the `authz-raw` set.\n");
    Ok((
        format!(
            "Envoy with 1 worker under wrk (1 thread, {} connections), every request carrying a sealed session cookie (about 1.5 KB).",
            settings.connections
        ),
        crate::table(&s, None),
        targets,
    ))
}

/// The in-proxy peer: Envoy's native oauth2 filter with a session made by a
/// real login through it against the test IdP (which must stay up while
/// the scenario runs: the filter may call it), on a login Envoy of the same
/// configuration; the bench Envoy takes the same cookies.
pub(super) async fn native_oauth2() -> Result<(Scenario, e2e::idp::Idp)> {
    let idp = e2e::idp::Idp::start(&serde_json::json!([e2e::oauth2::idp_client()]), 3600).await?;
    let idp_port = idp
        .issuer()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let oauth2_vars = vec![
        ("IDP_ISSUER".to_owned(), idp.issuer().to_owned()),
        ("IDP_PORT".to_owned(), idp_port),
    ];
    let oauth2_cookie = {
        let echo = e2e::Echo::start().await?;
        let envoy = oauth2_vars
            .iter()
            .fold(e2e::Envoy::from_template("oauth2.yaml")?, |b, (k, v)| {
                b.var(k, v)
            })
            .upstream(&echo)
            .log_on_drop(false)
            .start()
            .await?;
        e2e::oauth2::login(&envoy, &idp).await?
    };
    let mut native = scenario(
        "Envoy's native oauth2 filter, valid session",
        "oauth2.yaml",
        "/app/bench",
        Sidecar::None,
    );
    native.vars = oauth2_vars;
    native.headers = vec![
        ("Host".to_owned(), e2e::oauth2::HOST.to_owned()),
        ("cookie".to_owned(), oauth2_cookie),
    ];
    Ok((native, idp))
}

/// The services alone under concurrent `Check` calls.
pub(super) async fn authz_raw(settings: &Settings, pinning: Option<&Pinning>) -> Result<Measured> {
    let scenarios = [
        RawScenario {
            name: "null ext_authz service (baseline)".into(),
            sidecar: Sidecar::NullAuthz,
        },
        RawScenario {
            name: "gatehouse-authz, session cookie".into(),
            sidecar: Sidecar::Authz,
        },
        RawScenario {
            name: "gatehouse-authz, session in Redis".into(),
            sidecar: Sidecar::AuthzRedis,
        },
    ];
    let s = crate::run_raw(&scenarios, settings, pinning).await?;
    let mut targets = String::from("Targets:\n");
    let (null, cookie, redis) = (cpu(&s, 0), cpu(&s, 1), cpu(&s, 2));
    let _ = writeln!(
        targets,
        "- CPU per session check, cookie, at most null + 10 µs: {:+.1} µs, {}",
        cookie - null,
        verdict(cookie - null <= 10.0)
    );
    let _ = writeln!(
        targets,
        "- (for scale) CPU per session check, Redis: {:+.1} µs over null (Redis's own not included)",
        redis - null
    );
    let _ = writeln!(
        targets,
        "- (for scale) raw checks per second, cookie against null: {:.2}",
        ratio(&s, 1, 0)
    );
    Ok((
        format!(
            "Check (a signed-in browser's request: the bench session cookie, the SSO filter) from {} concurrent callers over 4 HTTP/2 connections in one process (tonic). Service CPU from /proc, per check.",
            settings.connections
        ),
        crate::table(&s, Some(0)),
        targets,
    ))
}
