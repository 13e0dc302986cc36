//! `sso`: a signed-in browser's request four ways on one Envoy: no auth,
//! Envoy's native oauth2 filter (a real login through it), Gatehouse
//! through ext_authz (every request a `Check` call) and Gatehouse's fast
//! path (the gatehouse-session filter verifies the identity ticket inside
//! Envoy; ext_authz is skipped).

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
    Ok((
        format!(
            "Envoy with 1 worker under wrk (1 thread, {} connections), every request a signed-in browser's: Gatehouse's rows carry the sealed session cookie (about 1.5 KB) and the identity ticket; the native row carries the cookies its own login set.",
            settings.connections
        ),
        crate::table(&s, None),
        targets,
    ))
}
