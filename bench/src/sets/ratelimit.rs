//! `ratelimit` and `ratelimit-raw`: the null RLS against gatehouse-ratelimit
//! on memory and on Redis, through Envoy and straight over gRPC.

use std::fmt::Write as _;

use anyhow::Result;

use super::{Measured, cpu, env_number, ratio, scenario, verdict};
use crate::{Pinning, RawScenario, Settings, Sidecar};

/// Side calls add latency; with few connections Envoy then waits instead of
/// working, and the rate measures that latency (on two cores Redis shares
/// the load generator's core). Enough connections keep Envoy's core busy,
/// so the rate measures cost.
fn busy(settings: &Settings) -> Result<Settings> {
    Ok(Settings {
        connections: env_number("BENCH_RATELIMIT_CONNECTIONS", 128)?,
        ..settings.clone()
    })
}

/// The baseline row of the rate-limit sets.
fn no_rate_limit() -> crate::Scenario {
    scenario(
        "envoy, no rate limit (baseline)",
        "proxy.yaml",
        "/generic",
        Sidecar::None,
    )
}

/// Through Envoy: no rate limit, the null RLS, gatehouse-ratelimit on memory
/// and on Redis.
pub(super) async fn ratelimit(settings: &Settings, pinning: Option<&Pinning>) -> Result<Measured> {
    let settings = busy(settings)?;
    let scenarios = [
        no_rate_limit(),
        scenario(
            "envoy + null RLS",
            "ratelimit.yaml",
            "/generic",
            Sidecar::Null,
        ),
        scenario(
            "envoy + gatehouse-ratelimit (memory)",
            "ratelimit.yaml",
            "/generic",
            Sidecar::Memory,
        ),
        scenario(
            "envoy + gatehouse-ratelimit (redis)",
            "ratelimit.yaml",
            "/generic",
            Sidecar::Redis,
        ),
    ];
    let s = crate::run(&scenarios, &settings, pinning).await?;
    let mut targets = String::from("Targets:\n");
    let r = ratio(&s, 3, 1);
    let _ = writeln!(
        targets,
        "- through Envoy, Redis store at least 0.9 of the null RLS: {r:.2}, {}",
        verdict(r >= 0.9)
    );
    let r = ratio(&s, 1, 0);
    let _ = writeln!(
        targets,
        "- (for scale) null RLS against no rate limit: {r:.2}"
    );
    Ok((
        format!(
            "Envoy with 1 worker under wrk (1 thread, {} connections: enough to keep Envoy busy while side calls are in flight; `BENCH_RATELIMIT_CONNECTIONS` changes it), every request one ShouldRateLimit call; limits never hit. Service CPU from /proc, per request.",
            settings.connections
        ),
        crate::table(&s, Some(1)),
        targets,
    ))
}

/// Through Envoy, limits never hit: no rate limit, the per-request path
/// (a `ShouldRateLimit` call per request) and the quota path (Envoy's
/// `rate_limit_quota` filter enforcing gatehouse-ratelimit's assignment
/// locally, usage streamed in the background).
pub(super) async fn ratelimit_quota(
    settings: &Settings,
    pinning: Option<&Pinning>,
) -> Result<Measured> {
    let settings = busy(settings)?;
    let scenarios = [
        no_rate_limit(),
        scenario(
            "per-request path: gatehouse-ratelimit (memory), a call per request",
            "ratelimit.yaml",
            "/generic",
            Sidecar::Memory,
        ),
        scenario(
            "quota path: gatehouse-ratelimit (memory) over RLQS",
            "ratelimit-quota.yaml",
            "/generic",
            Sidecar::Memory,
        ),
    ];
    let s = crate::run(&scenarios, &settings, pinning).await?;
    let mut targets = String::from("Targets:\n");
    let r = ratio(&s, 2, 0);
    let _ = writeln!(
        targets,
        "- quota path at least 0.85 of no rate limit: {r:.2}, {}",
        verdict(r >= 0.85)
    );
    let _ = writeln!(
        targets,
        "- (for scale) per-request path against no rate limit: {:.2}; quota path against the per-request path: {:.2}",
        ratio(&s, 1, 0),
        ratio(&s, 2, 1)
    );
    Ok((
        format!(
            "Envoy with 1 worker under wrk (1 thread, {} connections, as in `ratelimit`), limits never hit: the per-request path makes a ShouldRateLimit call per request; the quota path enforces the service's token-bucket assignment inside Envoy and reports usage every 5 s. Service CPU from /proc, per request.",
            settings.connections
        ),
        crate::table(&s, None),
        targets,
    ))
}

/// The services alone under concurrent `ShouldRateLimit` calls.
pub(super) async fn ratelimit_raw(
    settings: &Settings,
    pinning: Option<&Pinning>,
) -> Result<Measured> {
    let scenarios = [
        RawScenario {
            name: "null RLS (baseline)".into(),
            sidecar: Sidecar::Null,
        },
        RawScenario {
            name: "gatehouse-ratelimit (memory)".into(),
            sidecar: Sidecar::Memory,
        },
        RawScenario {
            name: "gatehouse-ratelimit (redis)".into(),
            sidecar: Sidecar::Redis,
        },
    ];
    let s = crate::run_raw(&scenarios, settings, pinning).await?;
    let mut targets = String::from("Targets:\n");
    let (null, mem, redis) = (cpu(&s, 0), cpu(&s, 1), cpu(&s, 2));
    let _ = writeln!(
        targets,
        "- CPU per decision, memory, at most null + 5 µs: {:+.1} µs, {}",
        mem - null,
        verdict(mem - null <= 5.0)
    );
    let _ = writeln!(
        targets,
        "- CPU per decision, Redis, at most null + 20 µs: {:+.1} µs, {}",
        redis - null,
        verdict(redis - null <= 20.0)
    );
    let r = ratio(&s, 2, 0);
    let _ = writeln!(
        targets,
        "- raw rate with Redis at least 0.6 of the null RLS: {r:.2}, {}",
        verdict(r >= 0.6)
    );
    Ok((
        format!(
            "ShouldRateLimit from {} concurrent callers over 4 HTTP/2 connections in one process (tonic), one descriptor per call; limits never hit. Service CPU from /proc, per decision (Redis's own CPU not included).",
            settings.connections
        ),
        crate::table(&s, Some(0)),
        targets,
    ))
}
