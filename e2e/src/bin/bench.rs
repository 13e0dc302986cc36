//! `make bench`: runs the benchmark sets and prints/writes their ratio tables.
//!
//! `bench [SET...]` runs the named sets (default: all): `proxy` (Envoy direct
//! vs the wasm filter), `ratelimit` (Envoy + rate-limit services under wrk)
//! and `ratelimit-raw` (the services alone under concurrent gRPC calls).
//! Settings come from the environment: `BENCH_SECONDS` (per measured run,
//! default 5), `BENCH_REPEATS` (default 3), `BENCH_CONNECTIONS` (default 32),
//! `BENCH_WARMUP_SECONDS` (default 2). Results land in `bench/results/<set>.md`.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use e2e::bench::{self, Pinning, RawScenario, Scenario, Settings, Sidecar, Summary};

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

fn scenario(name: &str, template: &str, path: &str, sidecar: Sidecar) -> Scenario {
    Scenario {
        name: name.to_owned(),
        template: template.to_owned(),
        vars: Vec::new(),
        path: path.to_owned(),
        sidecar,
        tokens: None,
        headers: Vec::new(),
    }
}

/// Throughput of scenario `of` over `to`: the median of per-round ratios.
fn ratio(summaries: &[Summary], of: usize, to: usize) -> f64 {
    bench::paired_ratio(&summaries[of], &summaries[to], |s| &s.runs_rps)
}

/// The same comparison by Envoy's CPU per request: `to`'s over `of`'s, the
/// throughput ratio one saturated worker would show if the machine gave it
/// all its time.
fn cpu_ratio(summaries: &[Summary], of: usize, to: usize) -> f64 {
    bench::paired_ratio(&summaries[to], &summaries[of], |s| &s.runs_envoy_cpu_us)
}

fn cpu(summaries: &[Summary], i: usize) -> f64 {
    summaries[i].median.cpu_us.unwrap_or(f64::NAN)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let settings = Settings {
        duration: Duration::from_secs(env_number("BENCH_SECONDS", 5)?),
        warmup: Duration::from_secs(env_number("BENCH_WARMUP_SECONDS", 2)?),
        repeats: env_number("BENCH_REPEATS", 3)?,
        connections: env_number("BENCH_CONNECTIONS", 32)?,
    };
    let pinning = Pinning::detect();
    if let Some(p) = &pinning {
        // The runner hosts the echo upstream and the gRPC load: keep it off Envoy's core.
        let mut set = nix::sched::CpuSet::new();
        set.set(p.load.parse()?)?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    }
    let all = [
        "proxy",
        "ratelimit",
        "ratelimit-raw",
        "jwt",
        "authz",
        "authz-raw",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sets: Vec<&str> = if args.is_empty() {
        all.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };

    let envoy_version = std::process::Command::new(e2e::paths::envoy_bin()?)
        .arg("--version")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_once("version: ")
                .map_or(text.clone(), |(_, v)| v.to_owned())
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    let pin_note = match &pinning {
        Some(p) => format!(
            "Envoy and any side service (rate limit, authz) pinned to CPU {}; wrk, the gRPC load, the upstream and Redis on CPU {}",
            p.envoy, p.load
        ),
        None => "one CPU: nothing pinned".to_owned(),
    };

    for set in sets {
        let (description, table, targets) = match set {
            "proxy" => {
                let scenarios = [
                    scenario(
                        "envoy → upstream (baseline)",
                        "proxy.yaml",
                        "/bench",
                        Sidecar::None,
                    ),
                    scenario(
                        "envoy + gatehouse-jwt wasm → upstream",
                        "jwt-wasm.yaml",
                        "/bench",
                        Sidecar::None,
                    ),
                    scenario(
                        "envoy + rendered listener hygiene → upstream",
                        "proxy-hardened.yaml",
                        "/bench",
                        Sidecar::None,
                    ),
                ];
                let s = bench::run(&scenarios, &settings, pinning.as_ref()).await?;
                let mut targets = String::from(
                    "Targets:
",
                );
                let r = ratio(&s, 2, 0);
                let _ = writeln!(
                    targets,
                    "- the hygiene every rendered listener has (path normalisation, escaped slashes and underscore headers refused or dropped, the refused-path route) costs no more than noise, at least 0.97 of the baseline: {r:.2}, {}",
                    verdict(r >= 0.97)
                );
                (
                    format!(
                        "Envoy with 1 worker under wrk (1 thread, {} connections).",
                        settings.connections
                    ),
                    bench::table(&s, None),
                    targets,
                )
            }
            "ratelimit" => {
                // Side calls add latency; with few connections Envoy then
                // waits instead of working, and the rate measures that latency
                // (on two cores Redis shares the load generator's core). Enough
                // connections keep Envoy's core busy, so the rate measures cost.
                let settings = Settings {
                    connections: env_number("BENCH_RATELIMIT_CONNECTIONS", 128)?,
                    ..settings.clone()
                };
                let scenarios = [
                    scenario(
                        "envoy, no rate limit (baseline)",
                        "proxy.yaml",
                        "/generic",
                        Sidecar::None,
                    ),
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
                let s = bench::run(&scenarios, &settings, pinning.as_ref()).await?;
                let mut targets = String::from(
                    "gatehouse-jwt runs as `gatehouse render` configures it: Envoy removes client `x-gatehouse-*` headers before any filter, and the filter reads only the headers it needs.\n\nTargets:\n",
                );
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
                (
                    format!(
                        "Envoy with 1 worker under wrk (1 thread, {} connections: enough to keep Envoy busy while side calls are in flight; `BENCH_RATELIMIT_CONNECTIONS` changes it), every request one ShouldRateLimit call; limits never hit. Service CPU from /proc, per request.",
                        settings.connections
                    ),
                    bench::table(&s, Some(1)),
                    targets,
                )
            }
            "ratelimit-raw" => {
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
                let s = bench::run_raw(&scenarios, &settings, pinning.as_ref()).await?;
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
                (
                    format!(
                        "ShouldRateLimit from {} concurrent callers over 4 HTTP/2 connections in one process (tonic), one descriptor per call; limits never hit. Service CPU from /proc, per decision (Redis's own CPU not included).",
                        settings.connections
                    ),
                    bench::table(&s, Some(0)),
                    targets,
                )
            }
            "jwt" => jwt_set(&settings, pinning.as_ref()).await?,
            "authz" => authz_set(&settings, pinning.as_ref()).await?,
            "router" => {
                // Rules that do not match, then the sticky canary every
                // request is judged by: the filter's whole cost per request.
                let config = r#"{"rules": [
                    {"match": {"headers": [{"name": "x-gatehouse-groups", "prefix": "beta"}]}, "route": "canary"},
                    {"match": {"prefix": "/v1"}, "rewrite_prefix": {"from": "/v1", "to": "/api"}},
                    {"bucket": {"header": "x-gatehouse-user", "percent": 10, "salt": "bench"}, "route": "canary"}
                ]}"#;
                let user = |mut s: Scenario| {
                    s.headers
                        .push(("x-gatehouse-user".to_owned(), "user-42".to_owned()));
                    s
                };
                let mut filtered = user(scenario(
                    "native routes + gatehouse-router (sticky 10 % canary)",
                    "router.yaml",
                    "/shop",
                    Sidecar::None,
                ));
                filtered
                    .vars
                    .push(("ROUTER_CONFIG".to_owned(), config.to_owned()));
                let scenarios = [
                    user(scenario(
                        "native routes (baseline)",
                        "router-native.yaml",
                        "/shop",
                        Sidecar::None,
                    )),
                    scenario(
                        "native routes + empty wasm filter",
                        "noop-wasm.yaml",
                        "/shop",
                        Sidecar::None,
                    ),
                    filtered,
                ];
                let s = bench::run(&scenarios, &settings, pinning.as_ref()).await?;
                let mut targets = String::from("Targets:\n");
                let _ = writeln!(
                    targets,
                    "- (for scale) gatehouse-router against native routes: {:.2}; against the empty wasm filter: {:.2}",
                    ratio(&s, 2, 0),
                    ratio(&s, 2, 1)
                );
                (
                    format!(
                        "Envoy with 1 worker under wrk (1 thread, {} connections), every request with the same `x-gatehouse-user`.",
                        settings.connections
                    ),
                    bench::table(&s, None),
                    targets,
                )
            }
            "authz-raw" => {
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
                let s = bench::run_raw(&scenarios, &settings, pinning.as_ref()).await?;
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
                (
                    format!(
                        "Check (a signed-in browser's request: the bench session cookie, the SSO filter) from {} concurrent callers over 4 HTTP/2 connections in one process (tonic). Service CPU from /proc, per check.",
                        settings.connections
                    ),
                    bench::table(&s, Some(0)),
                    targets,
                )
            }
            other => bail!("unknown benchmark set {other:?}: use {}", all.join(", ")),
        };
        let report = format!(
            "# Benchmark: {set}\n\n{description} {} s per run after a {} s warm-up, {} runs per scenario, interleaved; medians shown. \
             {pin_note}. The table's ratios are against the first row's medians, measured in the same run; \
             the targets' ratios are medians of per-round ratios (each round runs every scenario once, one after another), \
             which cancels the machine's drift between rounds.\n\n{table}\n{targets}\nEnvoy: `{envoy_version}`\n",
            settings.duration.as_secs(),
            settings.warmup.as_secs(),
            settings.repeats,
        );
        println!("\n{report}");
        let out = e2e::paths::workspace_root().join(format!("bench/results/{set}.md"));
        std::fs::create_dir_all(out.parent().context("results path has a parent")?)?;
        std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
        println!("written to {}", out.display());
    }
    Ok(())
}

/// Writes `count` distinct tokens signed with `alg` by the test key `pem`
/// (kid `kid`) to a file, one a line.
fn mint(
    dir: &std::path::Path,
    alg: jsonwebtoken::Algorithm,
    kid: &str,
    pem: &str,
    count: usize,
) -> Result<std::path::PathBuf> {
    let keys = e2e::paths::workspace_root().join("filters/jwt-core/testdata/keys");
    let pem = std::fs::read(keys.join(pem))?;
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem)?,
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem)?,
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.to_owned());
    let mut lines = String::new();
    for i in 0..count {
        let claims = serde_json::json!({ "iss": "https://idp.example", "sub": format!("user-{i}"), "exp": exp });
        lines.push_str(&jsonwebtoken::encode(&header, &claims, &key)?);
        lines.push('\n');
    }
    let path = dir.join(format!("{kid}-{count}.tokens"));
    std::fs::write(&path, lines)?;
    Ok(path)
}

/// Envoy's native jwt_authn against gatehouse-jwt and the empty wasm filter.
async fn jwt_set(
    settings: &Settings,
    pinning: Option<&Pinning>,
) -> Result<(String, String, String)> {
    // More distinct tokens than any cache holds (jwt_authn's is set to 1000).
    let distinct = env_number("BENCH_JWT_DISTINCT_TOKENS", 4000)?;
    let dir = tempfile::tempdir()?;
    eprintln!("minting {distinct} RS256 and {distinct} ES256 tokens...");
    let rs_one = mint(
        dir.path(),
        jsonwebtoken::Algorithm::RS256,
        "rsa-1",
        "rsa.pem",
        1,
    )?;
    let rs_many = mint(
        dir.path(),
        jsonwebtoken::Algorithm::RS256,
        "rsa-1",
        "rsa.pem",
        distinct,
    )?;
    let es_many = mint(
        dir.path(),
        jsonwebtoken::Algorithm::ES256,
        "ec-256",
        "ec256.pem",
        distinct,
    )?;
    let jwks: serde_json::Value = serde_json::from_slice(&std::fs::read(
        e2e::paths::workspace_root().join("filters/jwt-core/testdata/jwks.json"),
    )?)?;
    // As `gatehouse render` configures it: Envoy removes the reserved client
    // headers before any filter (early header mutation), so the filter
    // reads only the headers it needs; and the route removes the token on
    // the way upstream, as jwt_authn does by default, because a header the
    // wasm filter removes makes Envoy pick the route again. The last
    // scenario has the filter remove it, for comparison.
    let gatehouse = serde_json::json!({
        "providers": { "idp": { "issuer": "https://idp.example", "algorithms": ["RS256", "ES256"], "jwks": { "inline": jwks } } },
        "rules": [ { "requires": { "provider": "idp" } } ],
        "reserved_headers_stripped_by_envoy": true,
        "token_headers_removed_by_envoy": true
    })
    .to_string();
    let mut uncached: serde_json::Value = serde_json::from_str(&gatehouse)?;
    uncached["token_cache_size"] = 0.into();
    let uncached = uncached.to_string();
    let mut removes_itself: serde_json::Value = serde_json::from_str(&gatehouse)?;
    removes_itself["token_headers_removed_by_envoy"] = false.into();
    let removes_itself = removes_itself.to_string();
    let jwks = jwks.to_string();
    let make =
        |name: &str, template: &str, vars: &[(&str, &str)], tokens: &std::path::Path| Scenario {
            name: name.to_owned(),
            template: template.to_owned(),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            path: "/bench".to_owned(),
            sidecar: Sidecar::None,
            tokens: Some(tokens.to_owned()),
            headers: Vec::new(),
        };
    let native = [("JWKS_JSON", jwks.as_str()), ("JWT_CACHE_CONFIG", "")];
    let cached = [
        ("JWKS_JSON", jwks.as_str()),
        (
            "JWT_CACHE_CONFIG",
            "jwt_cache_config: { jwt_cache_size: 1000 }",
        ),
    ];
    let strip = r#"[{"name": "envoy.http.early_header_mutation.header_mutation", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation", "mutations": [{"remove_on_match": {"key_matcher": {"prefix": "x-gatehouse-"}}}]}}]"#;
    let route_removes = r#"["authorization"]"#;
    let ours = [
        ("JWT_CONFIG", gatehouse.as_str()),
        ("EARLY_HEADER_MUTATION", strip),
        ("ROUTE_HEADERS_TO_REMOVE", route_removes),
    ];
    let ours_uncached = [
        ("JWT_CONFIG", uncached.as_str()),
        ("EARLY_HEADER_MUTATION", strip),
        ("ROUTE_HEADERS_TO_REMOVE", route_removes),
    ];
    let ours_removing_itself = [
        ("JWT_CONFIG", removes_itself.as_str()),
        ("EARLY_HEADER_MUTATION", strip),
    ];
    let scenarios = [
        make("no auth (baseline), one token", "proxy.yaml", &[], &rs_one),
        make(
            "empty wasm filter, one token",
            "noop-wasm.yaml",
            &[],
            &rs_one,
        ),
        make(
            "jwt_authn, one RS256 token",
            "jwt-authn.yaml",
            &native,
            &rs_one,
        ),
        make(
            "jwt_authn + cache, one RS256 token",
            "jwt-authn.yaml",
            &cached,
            &rs_one,
        ),
        make(
            "gatehouse-jwt, one RS256 token",
            "jwt-wasm.yaml",
            &ours,
            &rs_one,
        ),
        make(
            "gatehouse-jwt without its cache, one RS256 token",
            "jwt-wasm.yaml",
            &ours_uncached,
            &rs_one,
        ),
        make(
            "jwt_authn, distinct RS256 tokens",
            "jwt-authn.yaml",
            &native,
            &rs_many,
        ),
        make(
            "jwt_authn + cache, distinct RS256 tokens",
            "jwt-authn.yaml",
            &cached,
            &rs_many,
        ),
        make(
            "gatehouse-jwt, distinct RS256 tokens",
            "jwt-wasm.yaml",
            &ours,
            &rs_many,
        ),
        make(
            "jwt_authn, distinct ES256 tokens",
            "jwt-authn.yaml",
            &native,
            &es_many,
        ),
        make(
            "gatehouse-jwt, distinct ES256 tokens",
            "jwt-wasm.yaml",
            &ours,
            &es_many,
        ),
        make(
            "gatehouse-jwt removing the token itself, one RS256 token",
            "jwt-wasm.yaml",
            &ours_removing_itself,
            &rs_one,
        ),
    ];
    let s = bench::run(&scenarios, settings, pinning).await?;
    let mut targets = String::from("Targets:\n");
    for (label, ours, theirs, target) in [
        (
            "distinct RS256 tokens, gatehouse-jwt at least 0.9 of jwt_authn",
            8,
            6,
            Some(0.9),
        ),
        (
            "one repeated token, gatehouse-jwt at least 0.9 of the empty wasm filter",
            4,
            1,
            Some(0.9),
        ),
        (
            "distinct ES256 tokens, gatehouse-jwt against jwt_authn",
            10,
            9,
            None,
        ),
    ] {
        let (r, by_cpu) = (ratio(&s, ours, theirs), cpu_ratio(&s, ours, theirs));
        let _ = writeln!(
            targets,
            "- {label}: {r:.2}{} (by Envoy CPU per request: {by_cpu:.2})",
            target.map_or_else(String::new, |t| format!(", {}", verdict(r >= t)))
        );
    }
    for (label, ours, native) in [
        ("distinct RS256 tokens, against jwt_authn", 8, 6),
        ("one repeated token, against jwt_authn + cache", 4, 3),
        ("distinct ES256 tokens, against jwt_authn", 10, 9),
    ] {
        let (p99, theirs) = (s[ours].median.p99_us, s[native].median.p99_us);
        let paired = bench::paired_ratio(&s[ours], &s[native], |x| &x.runs_p99_us);
        let _ = writeln!(
            targets,
            "- p99 no worse than native, {label}: ×{paired:.2} (medians {p99:.0} µs against {theirs:.0} µs), {}",
            verdict(paired <= 1.0)
        );
    }
    let _ = writeln!(
        targets,
        "- (for scale) empty wasm filter against no auth: {:.2}",
        ratio(&s, 1, 0)
    );
    let _ = writeln!(
        targets,
        "- (for scale) the floor of any wasm filter: the empty wasm filter against jwt_authn + cache, one repeated token: {:.2}, p99 ×{:.2}",
        ratio(&s, 1, 3),
        bench::paired_ratio(&s[1], &s[3], |x| &x.runs_p99_us)
    );
    let _ = writeln!(
        targets,
        "- (for scale) one repeated token, gatehouse-jwt removing the token itself (Envoy then picks the route again) against the empty wasm filter: {:.2}",
        ratio(&s, 11, 1)
    );
    Ok((
        format!(
            "Envoy with 1 worker under wrk (1 thread, {} connections), every request with an `authorization: Bearer` token from a file: one token repeated, or {distinct} distinct ones in turn. All the same RSA (and P-256) key. jwt_authn removes the token before forwarding (its default); gatehouse-jwt runs as `gatehouse render` configures it: an early header mutation removes the reserved headers and the route removes the token (`token_headers_removed_by_envoy`), except in the last row, where the filter removes it.",
            settings.connections
        ),
        bench::table(&s, None),
        targets,
    ))
}

/// Envoy's ext_authz with a null service against gatehouse-authz checking a
/// session cookie.
async fn authz_set(
    settings: &Settings,
    pinning: Option<&Pinning>,
) -> Result<(String, String, String)> {
    // The in-proxy peer: a real login through Envoy's oauth2 filter against
    // the test IdP (which stays up: the filter may call it), on a login Envoy
    // of the same configuration; the bench Envoy takes the same cookies.
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
    let (session_cookie, reference_cookie) = (
        e2e::bench::bench_cookie(false)?,
        e2e::bench::bench_cookie(true)?,
    );
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
    let s = bench::run(&scenarios, settings, pinning).await?;
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
    let added = s[2].median.p99_us - s[1].median.p99_us;
    let _ = writeln!(
        targets,
        "- added p99 over the null service under 500 µs: {added:.0} µs, {}",
        verdict(added < 500.0)
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
        bench::table(&s, None),
        targets,
    ))
}
