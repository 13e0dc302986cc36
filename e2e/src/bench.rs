//! Benchmark runner: scenarios on real Envoy, load from `wrk` in another process.
//!
//! Each scenario is started once, warmed up, then measured `repeats` times,
//! interleaved with the other scenarios so drift on a shared machine hits all
//! of them alike. Envoy and the load generator are pinned to different cores
//! when there are two. Every figure is reported as a ratio against the baseline
//! scenario measured in the same run: absolute numbers from a noisy shared
//! machine mean little, ratios measured side by side do.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use std::net::SocketAddr;
use std::path::PathBuf;

use tempfile::TempDir;

use crate::echo::Echo;
use crate::envoy::{Envoy, EnvoyBuilder};
use crate::paths;
use crate::poll;
use crate::process::{ChildProcess, run_to_completion};
use crate::ratelimit::RateLimitService;
use crate::redis::Redis;

/// A `wrk` Lua script that prints the figures we need on one parseable line.
const WRK_REPORT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "GATEHOUSE-BENCH requests=%d duration_us=%d socket_errors=%d bad_status=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// How to load each scenario.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Length of one measured run.
    pub duration: Duration,
    /// Length of the unmeasured warm-up run per scenario.
    pub warmup: Duration,
    /// Measured runs per scenario.
    pub repeats: usize,
    /// Open connections (wrk `-c`).
    pub connections: u32,
}

/// One scenario: an Envoy template and its variables. The first scenario of a
/// set is the baseline.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name for the table.
    pub name: String,
    /// Template under `e2e/testdata/envoy/`.
    pub template: String,
    /// Extra template variables.
    pub vars: Vec<(String, String)>,
    /// Path the load generator requests.
    pub path: String,
    /// Rate-limit service the scenario's Envoy calls, if any.
    pub sidecar: Sidecar,
    /// Tokens, one a line, sent in turn as `authorization: Bearer <token>`.
    pub tokens: Option<PathBuf>,
    /// Headers sent with every request (`wrk -H`), e.g. a session cookie.
    pub headers: Vec<(String, String)>,
}

/// A rate-limit service beside Envoy (or alone, for raw gRPC load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sidecar {
    /// None.
    None,
    /// The null RLS: answers OK at once; the cost floor of the side call.
    Null,
    /// gatehouse-ratelimit on the memory store.
    Memory,
    /// gatehouse-ratelimit on its own Redis.
    Redis,
    /// The null ext_authz service: allows at once; the floor of the side call.
    NullAuthz,
    /// gatehouse-authz with the bench's SSO configuration.
    Authz,
    /// The same with sessions in its own Redis; the bench session is stored
    /// there under id `bench`.
    AuthzRedis,
}

/// One measured run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Completed requests per second.
    pub rps: f64,
    /// Median latency, microseconds.
    pub p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// CPU the rate-limit service spent per request, microseconds.
    pub cpu_us: Option<f64>,
    /// CPU Envoy spent per request, microseconds (all its threads). Time the
    /// machine gives to others does not count, so it varies less than the
    /// rate on a busy machine.
    pub envoy_cpu_us: Option<f64>,
}

/// A `wrk` Lua prelude that sends the tokens of `file` in turn, one per
/// request, as bearer tokens. Every JWT scenario pays the same Lua cost.
pub fn token_rotation(file: &std::path::Path) -> String {
    format!(
        r#"
local tokens = {{}}
for line in io.lines("{}") do tokens[#tokens + 1] = "Bearer " .. line end
local next_token = 0
request = function()
  next_token = next_token % #tokens + 1
  return wrk.format(nil, nil, {{ ["authorization"] = tokens[next_token] }})
end
"#,
        file.display()
    )
}

/// Parses the line `WRK_REPORT` prints. Runs with socket errors or error
/// statuses are refused: they would measure the error path, not the scenario.
pub fn parse_wrk_report(output: &str) -> Result<Sample> {
    let Some(line) = output.lines().find(|l| l.starts_with("GATEHOUSE-BENCH ")) else {
        bail!("wrk printed no GATEHOUSE-BENCH line:\n{output}");
    };
    let field = |key: &str| -> Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("no {key} in {line:?}"))?
            .parse::<f64>()
            .with_context(|| format!("{key} in {line:?}"))
    };
    let (errors, bad) = (field("socket_errors")?, field("bad_status")?);
    if errors > 0.0 || bad > 0.0 {
        bail!("load run had {errors} socket errors and {bad} error statuses: {line}");
    }
    let (requests, duration_us) = (field("requests")?, field("duration_us")?);
    if requests <= 0.0 || duration_us <= 0.0 {
        bail!("load run completed no requests: {line}");
    }
    Ok(Sample {
        rps: requests / (duration_us / 1e6),
        p50_us: field("p50_us")?,
        p99_us: field("p99_us")?,
        cpu_us: None,
        envoy_cpu_us: None,
    })
}

/// The median of some values (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Median figures of one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Scenario name.
    pub name: String,
    /// Median of the runs.
    pub median: Sample,
    /// Every run's requests/s, in round order.
    pub runs_rps: Vec<f64>,
    /// Every run's p99 latency, µs, in round order.
    pub runs_p99_us: Vec<f64>,
    /// Every run's Envoy CPU per request, µs, in round order (empty where
    /// not measured).
    pub runs_envoy_cpu_us: Vec<f64>,
}

/// The median of an optional figure, when every sample has it.
fn median_of_all(samples: &[Sample], f: fn(&Sample) -> Option<f64>) -> Option<f64> {
    samples
        .iter()
        .map(f)
        .collect::<Option<Vec<f64>>>()
        .filter(|v| !v.is_empty())
        .map(|v| median(&v))
}

impl Summary {
    /// Summarises the samples of one scenario.
    pub fn of(name: &str, samples: &[Sample]) -> Self {
        let pick = |f: fn(&Sample) -> f64| median(&samples.iter().map(f).collect::<Vec<_>>());
        Self {
            name: name.to_owned(),
            median: Sample {
                rps: pick(|s| s.rps),
                p50_us: pick(|s| s.p50_us),
                p99_us: pick(|s| s.p99_us),
                cpu_us: median_of_all(samples, |s| s.cpu_us),
                envoy_cpu_us: median_of_all(samples, |s| s.envoy_cpu_us),
            },
            runs_rps: samples.iter().map(|s| s.rps).collect(),
            runs_p99_us: samples.iter().map(|s| s.p99_us).collect(),
            runs_envoy_cpu_us: samples.iter().filter_map(|s| s.envoy_cpu_us).collect(),
        }
    }
}

/// The median over rounds of `of`'s value over `to`'s in the same round
/// (`value` picks it from a summary's runs). Each round measures every
/// scenario within a minute, so pairing cancels drift of the machine across
/// rounds that a ratio of two medians would keep.
pub fn paired_ratio(of: &Summary, to: &Summary, value: fn(&Summary) -> &[f64]) -> f64 {
    let ratios: Vec<f64> = value(of)
        .iter()
        .zip(value(to))
        .map(|(a, b)| a / b)
        .collect();
    median(&ratios)
}

/// A markdown table: one row per scenario, ratios against the first row. The
/// CPU column is the rate-limit service's CPU per request, and its difference
/// from the null RLS row (named `null_row`) where there is one.
pub fn table(summaries: &[Summary], null_row: Option<usize>) -> String {
    let mut out = String::from(
        "| scenario | requests/s | ×baseline | p50 µs | ×baseline | p99 µs | ×baseline | Envoy CPU µs/request | service CPU µs/decision | runs (requests/s) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    let Some(base) = summaries.first() else {
        return out;
    };
    let null_cpu = null_row
        .and_then(|i| summaries.get(i))
        .and_then(|s| s.median.cpu_us);
    for s in summaries {
        let runs: Vec<String> = s.runs_rps.iter().map(|r| format!("{r:.0}")).collect();
        let cpu = match (s.median.cpu_us, null_cpu) {
            (Some(c), Some(n)) if s.median.cpu_us != null_cpu => {
                format!("{c:.1} (null {:+.1})", c - n)
            }
            (Some(c), _) => format!("{c:.1}"),
            (None, _) => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} | {} | {} | {} |",
            s.name,
            s.median.rps,
            s.median.rps / base.median.rps,
            s.median.p50_us,
            s.median.p50_us / base.median.p50_us,
            s.median.p99_us,
            s.median.p99_us / base.median.p99_us,
            s.median
                .envoy_cpu_us
                .map_or_else(|| "–".to_owned(), |c| format!("{c:.1}")),
            cpu,
            runs.join(", ")
        );
    }
    out
}

/// Core assignment: Envoy alone on one core, load generator and upstream on
/// the other. `None` on a one-core machine (then nothing is pinned).
#[derive(Debug, Clone)]
pub struct Pinning {
    /// `taskset -c` list for Envoy.
    pub envoy: String,
    /// `taskset -c` list for wrk (and the upstream, in the runner's process).
    pub load: String,
}

impl Pinning {
    /// Two cores or more: Envoy on the first, load on the second.
    pub fn detect() -> Option<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (cores >= 2).then(|| Self {
            envoy: "0".to_owned(),
            load: "1".to_owned(),
        })
    }
}

/// The rate-limit configuration every bench scenario uses: one rule so high
/// that it is never hit, so every decision is counted and allowed.
pub const BENCH_RLS_CONFIG: &str = "domain: edge\ndescriptors:\n  - key: generic_key\n    value: generic\n    rate_limit: { unit: second, requests_per_unit: 1000000000 }\n";

/// Where the benchmark finds release binaries.
fn release_bin(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::workspace_root().join("target"))
        .join("release")
        .join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: run `make bench`, which builds it",
            path.display()
        );
    }
    Ok(path)
}

/// A running rate-limit service of a scenario.
#[derive(Debug)]
enum RunningSidecar {
    Null {
        process: ChildProcess,
        addr: SocketAddr,
        _dir: TempDir,
    },
    Gatehouse {
        service: Box<RateLimitService>,
        _redis: Option<Redis>,
    },
    Authz {
        service: Box<crate::authz::AuthzService>,
        _redis: Option<Redis>,
    },
}

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

async fn store_bench_session(redis: &Redis) -> Result<()> {
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

fn bench_authz_config() -> String {
    "filters:\n  sso:\n    oidc:\n      issuer: http://127.0.0.1:9\n      client_id: bench\n      client_secret_file: secret\n      callback_url: http://127.0.0.1/.gatehouse/oidc/callback\n      session_keys_file: session-keys\n      cookie_secure: false\n      discovery_refresh_seconds: 86400\n".to_owned()
}

async fn null_sidecar(
    bin: &str,
    env: &str,
    cpus: Option<&str>,
) -> Result<(ChildProcess, SocketAddr, TempDir)> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join(format!("{bin}.log"));
    let mut command = crate::process::pinned_command(cpus, &release_bin(bin)?)?;
    command.env(env, "127.0.0.1:0");
    let mut process = ChildProcess::spawn(bin, &mut command, &log)?;
    process.set_log_on_drop(false);
    let addr = poll::until(&format!("{bin} address"), poll::READY_DEADLINE, || {
        let exited = process.exit_status();
        let first = process
            .log()
            .lines()
            .next()
            .and_then(|l| l.parse::<SocketAddr>().ok());
        async move {
            if exited?.is_some() {
                bail!("the null service exited");
            }
            Ok(first)
        }
    })
    .await?;
    Ok((process, addr, dir))
}

impl RunningSidecar {
    async fn start(kind: Sidecar, cpus: Option<&str>) -> Result<Option<Self>> {
        match kind {
            Sidecar::None => Ok(None),
            Sidecar::Null | Sidecar::NullAuthz => {
                let (bin, env) = if kind == Sidecar::Null {
                    ("null-rls", "NULL_RLS_ADDR")
                } else {
                    ("null-authz", "NULL_AUTHZ_ADDR")
                };
                let (process, addr, dir) = null_sidecar(bin, env, cpus).await?;
                Ok(Some(Self::Null {
                    process,
                    addr,
                    _dir: dir,
                }))
            }
            Sidecar::Authz | Sidecar::AuthzRedis => {
                use base64::Engine as _;
                let key = base64::engine::general_purpose::STANDARD.encode(BENCH_SESSION_KEY);
                let mut config = bench_authz_config();
                let redis = if kind == Sidecar::AuthzRedis {
                    let mut redis = Redis::start().await?;
                    redis.set_log_on_drop(false);
                    store_bench_session(&redis).await?;
                    config.push_str(&format!(
                        "      session_store:\n        redis_url: redis://127.0.0.1:{}/0\n",
                        redis.port()
                    ));
                    Some(redis)
                } else {
                    None
                };
                let mut builder = crate::authz::AuthzService::builder(&config)
                    .file("secret", "bench\n")
                    .file("session-keys", &format!("{key}\n"))
                    .binary(release_bin("gatehouse-authz")?)
                    .log_on_drop(false);
                if let Some(list) = cpus {
                    builder = builder.cpus(list);
                }
                Ok(Some(Self::Authz {
                    service: Box::new(builder.start().await?),
                    _redis: redis,
                }))
            }
            Sidecar::Memory | Sidecar::Redis => {
                let redis = if kind == Sidecar::Redis {
                    let mut redis = Redis::start().await?;
                    redis.set_log_on_drop(false);
                    Some(redis)
                } else {
                    None
                };
                let mut builder = RateLimitService::builder()
                    .binary(release_bin("gatehouse-ratelimit")?)
                    .file("edge.yaml", BENCH_RLS_CONFIG)
                    .env("LOG_LEVEL", "warn")
                    .log_on_drop(false);
                if let Some(list) = cpus {
                    builder = builder.cpus(list);
                }
                if let Some(redis) = &redis {
                    builder = builder.redis(redis);
                }
                // BENCH_RLS_<NAME>=value sets <NAME> for the service, to compare settings.
                for (name, value) in std::env::vars() {
                    if let Some(name) = name.strip_prefix("BENCH_RLS_") {
                        builder = builder.env(name, value);
                    }
                }
                Ok(Some(Self::Gatehouse {
                    service: Box::new(builder.start().await?),
                    _redis: redis,
                }))
            }
        }
    }

    fn grpc_addr(&self) -> SocketAddr {
        match self {
            Self::Null { addr, .. } => *addr,
            Self::Gatehouse { service, .. } => service.grpc_addr(),
            Self::Authz { service, .. } => service.grpc_addr(),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Self::Null { process, .. } => process.pid(),
            Self::Gatehouse { service, .. } => service.pid(),
            Self::Authz { service, .. } => service.pid(),
        }
    }
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state(0) ppid(1) ... utime(11) stime(12), in clock ticks.
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
        .unwrap_or(100)
        .max(1);
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// Runs `measure(i, duration)` for every scenario: a warm-up each, then
/// `repeats` rounds, interleaved. Returns the samples per scenario.
async fn interleave<F, Fut>(
    names: &[String],
    settings: &Settings,
    mut measure: F,
) -> Result<Vec<Vec<Sample>>>
where
    F: FnMut(usize, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<Sample>>,
{
    for i in 0..names.len() {
        measure(i, settings.warmup).await?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); names.len()];
    for round in 0..settings.repeats {
        for (i, name) in names.iter().enumerate() {
            let sample = measure(i, settings.duration)
                .await
                .with_context(|| format!("scenario {name}"))?;
            eprintln!(
                "round {}/{} {:<44} {:>9.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs{}",
                round + 1,
                settings.repeats,
                name,
                sample.rps,
                sample.p50_us,
                sample.p99_us,
                sample
                    .cpu_us
                    .map(|c| format!("  service {c:.1} µs/decision"))
                    .unwrap_or_default()
            );
            samples[i].push(sample);
        }
    }
    Ok(samples)
}

/// Runs Envoy scenarios under `wrk` and returns their summaries, baseline first.
pub async fn run(
    scenarios: &[Scenario],
    settings: &Settings,
    pinning: Option<&Pinning>,
) -> Result<Vec<Summary>> {
    let wrk = paths::tool("wrk", "installs the Debian package wrk")?;
    let mut scripts = Vec::new();
    for scenario in scenarios {
        let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
        let mut text = String::new();
        if let Some(tokens) = &scenario.tokens {
            text.push_str(&token_rotation(tokens));
        }
        text.push_str(WRK_REPORT);
        std::fs::write(script.path(), text)?;
        scripts.push(script);
    }

    let echo = Echo::start_named("bench").await?;
    let mut stacks = Vec::new();
    for scenario in scenarios {
        // The rate-limit service shares Envoy's core: its cost shows in Envoy's rate.
        let sidecar = RunningSidecar::start(
            scenario.sidecar,
            if std::env::var_os("BENCH_UNPIN").is_some() {
                None
            } else {
                pinning.map(|p| p.envoy.as_str())
            },
        )
        .await?;
        // A second upstream for templates that have one (the router's canary).
        let builder = Envoy::from_template(&scenario.template)?.var("CANARY_PORT", echo.port());
        let mut builder: EnvoyBuilder = scenario
            .vars
            .iter()
            .fold(builder, |b, (k, v)| b.var(k, v))
            .upstream(&echo)
            .concurrency(1)
            .log_on_drop(false);
        if let Some(sidecar) = &sidecar {
            builder = builder
                .var("RLS_PORT", sidecar.grpc_addr().port())
                .var("AUTHZ_PORT", sidecar.grpc_addr().port());
        }
        if let Some(p) = pinning {
            builder = builder.cpus(&p.envoy);
        }
        let envoy = builder
            .start()
            .await
            .with_context(|| format!("starting scenario {}", scenario.name))?;
        stacks.push((envoy, sidecar));
    }

    let names: Vec<String> = scenarios.iter().map(|s| s.name.clone()).collect();
    let samples = interleave(&names, settings, |i, duration| {
        let (envoy, sidecar) = &stacks[i];
        let command =
            crate::process::pinned_command(pinning.map(|p| p.load.as_str()), &wrk).map(|mut c| {
                for (name, value) in &scenarios[i].headers {
                    c.arg("-H").arg(format!("{name}: {value}"));
                }
                c.arg("-t1")
                    .arg(format!("-c{}", settings.connections))
                    .arg(format!("-d{}s", duration.as_secs().max(1)))
                    .arg("-s")
                    .arg(scripts[i].path())
                    .arg(envoy.url(&scenarios[i].path));
                tokio::process::Command::from(c)
            });
        let pid = sidecar.as_ref().map(RunningSidecar::pid);
        let envoy_pid = envoy.pid();
        async move {
            let mut command = command?;
            let cpu_before = pid.map(cpu_time).transpose()?;
            let envoy_before = cpu_time(envoy_pid)?;
            let (status, output) =
                run_to_completion(&mut command, duration + Duration::from_secs(30)).await?;
            if !status.success() {
                bail!("wrk failed ({status}): {output}");
            }
            let envoy_cpu = cpu_time(envoy_pid)? - envoy_before;
            let mut sample = parse_wrk_report(&output)?;
            let requests = sample.rps * duration.as_secs_f64();
            sample.envoy_cpu_us = Some(envoy_cpu.as_secs_f64() * 1e6 / requests);
            if let (Some(pid), Some(before)) = (pid, cpu_before) {
                sample.cpu_us = Some((cpu_time(pid)? - before).as_secs_f64() * 1e6 / requests);
            }
            Ok(sample)
        }
    })
    .await?;
    for ((_, sidecar), scenario) in stacks.iter().zip(scenarios) {
        report_batches(&scenario.name, sidecar.as_ref()).await;
    }
    Ok(scenarios
        .iter()
        .zip(&samples)
        .map(|(s, runs)| Summary::of(&s.name, runs))
        .collect())
}

/// Prints how many decisions the service sent to Redis per pipeline.
async fn report_batches(name: &str, sidecar: Option<&RunningSidecar>) {
    if let Some(RunningSidecar::Gatehouse {
        service,
        _redis: Some(_),
    }) = sidecar
    {
        let sum = service
            .metric("gatehouse_ratelimit_redis_batch_size_sum")
            .await
            .unwrap_or(0.0);
        let count = service
            .metric("gatehouse_ratelimit_redis_batch_size_count")
            .await
            .unwrap_or(0.0);
        if count > 0.0 {
            eprintln!(
                "{name}: {:.1} decisions per Redis pipeline on average",
                sum / count
            );
        }
    }
}

/// A raw-gRPC scenario: a rate-limit service alone, loaded by concurrent
/// `ShouldRateLimit` calls from this process.
#[derive(Debug, Clone)]
pub struct RawScenario {
    /// Short name for the table.
    pub name: String,
    /// Which service.
    pub sidecar: Sidecar,
}

/// Drives each service with `settings.connections` concurrent callers over
/// four HTTP/2 connections and returns summaries, first row first.
pub async fn run_raw(
    scenarios: &[RawScenario],
    settings: &Settings,
    pinning: Option<&Pinning>,
) -> Result<Vec<Summary>> {
    let mut services = Vec::new();
    for scenario in scenarios {
        let sidecar = RunningSidecar::start(scenario.sidecar, pinning.map(|p| p.envoy.as_str()))
            .await?
            .context("a raw scenario needs a service")?;
        services.push(sidecar);
    }
    let names: Vec<String> = scenarios.iter().map(|s| s.name.clone()).collect();
    let samples = interleave(&names, settings, |i, duration| {
        let addr = services[i].grpc_addr();
        let pid = services[i].pid();
        let kind = scenarios[i].sidecar;
        let callers = settings.connections;
        async move {
            let cpu_before = cpu_time(pid)?;
            let (calls, latencies) = match kind {
                Sidecar::NullAuthz | Sidecar::Authz | Sidecar::AuthzRedis => {
                    check_load(addr, duration, callers, kind).await?
                }
                _ => grpc_load(addr, duration, callers).await?,
            };
            let cpu = cpu_time(pid)? - cpu_before;
            let mut latencies = latencies;
            latencies.sort_unstable();
            let pick = |q: f64| {
                latencies
                    .get(((latencies.len() as f64 - 1.0) * q) as usize)
                    .copied()
                    .unwrap_or(0) as f64
            };
            Ok(Sample {
                rps: calls as f64 / duration.as_secs_f64(),
                p50_us: pick(0.5),
                p99_us: pick(0.99),
                cpu_us: Some(cpu.as_secs_f64() * 1e6 / calls.max(1) as f64),
                envoy_cpu_us: None,
            })
        }
    })
    .await?;
    for (service, scenario) in services.iter().zip(scenarios) {
        report_batches(&scenario.name, Some(service)).await;
    }
    Ok(scenarios
        .iter()
        .zip(&samples)
        .map(|(s, runs)| Summary::of(&s.name, runs))
        .collect())
}

/// Calls `Check` as Envoy would for a signed-in browser (the bench cookie,
/// the SSO filter) from `callers` tasks until `duration` passes.
async fn check_load(
    addr: SocketAddr,
    duration: Duration,
    callers: u32,
    kind: Sidecar,
) -> Result<(u64, Vec<u32>)> {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    let headers = [
        (":authority", "127.0.0.1"),
        (":method", "GET"),
        (":path", "/app/bench"),
        ("accept", "*/*"),
        ("user-agent", "wrk"),
        ("x-request-id", "0f6a2d8e-6b4c-4f4e-9a57-2f0d9a3f1c11"),
    ];
    let mut headers: std::collections::HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    headers.insert("cookie".into(), bench_cookie(kind == Sidecar::AuthzRedis)?);
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/app/bench".into(),
                    host: "127.0.0.1".into(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            context_extensions: [("gatehouse_filter".to_owned(), "sso".to_owned())].into(),
            ..AttributeContext::default()
        }),
    };
    load(
        addr,
        duration,
        callers,
        AuthorizationClient::new,
        move |mut client| {
            let request = request.clone();
            async move {
                let answer = client.check(request).await?.into_inner();
                if answer.status.as_ref().map_or(-1, |s| s.code) != 0 {
                    bail!("bench check was not allowed: {answer:?}");
                }
                Ok(())
            }
        },
    )
    .await
}

/// Calls `ShouldRateLimit` from `callers` tasks until `duration` passes.
/// Returns the number of calls and each call's latency in microseconds.
async fn grpc_load(addr: SocketAddr, duration: Duration, callers: u32) -> Result<(u64, Vec<u32>)> {
    load(
        addr,
        duration,
        callers,
        crate::ratelimit::Client::new,
        |mut client| async move {
            let request = crate::ratelimit::request("edge", &[&[("generic_key", "generic")]]);
            let answer = client.should_rate_limit(request).await?.into_inner();
            if answer.overall_code != 1 {
                bail!("bench call was not allowed: {answer:?}");
            }
            Ok(())
        },
    )
    .await
}

/// Runs `call` from `callers` tasks, spread over four HTTP/2 connections to
/// `addr`, until `duration` passes. Returns the number of calls and each
/// call's latency in microseconds.
async fn load<C, F, Fut>(
    addr: SocketAddr,
    duration: Duration,
    callers: u32,
    new_client: fn(tonic::transport::Channel) -> C,
    call: F,
) -> Result<(u64, Vec<u32>)>
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let deadline = std::time::Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..callers {
        let client = new_client(channels[i as usize % channels.len()].clone());
        let call = call.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while std::time::Instant::now() < deadline {
                let started = std::time::Instant::now();
                call(client.clone()).await?;
                latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok((all.len() as u64, all))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:1/bench\n  1 threads and 32 connections\n\
        GATEHOUSE-BENCH requests=50000 duration_us=5000000 socket_errors=0 bad_status=0 p50_us=600 p99_us=1500\n";

    #[test]
    fn report_line_gives_rate_and_latencies() {
        let sample = parse_wrk_report(REPORT).unwrap();
        assert_eq!(
            sample,
            Sample {
                rps: 10_000.0,
                p50_us: 600.0,
                p99_us: 1500.0,
                cpu_us: None,
                envoy_cpu_us: None,
            }
        );
    }

    #[test]
    fn run_with_errors_is_refused() {
        let bad = REPORT.replace("bad_status=0", "bad_status=3");
        assert!(
            parse_wrk_report(&bad)
                .unwrap_err()
                .to_string()
                .contains("3 error statuses")
        );
        let sock = REPORT.replace("socket_errors=0", "socket_errors=1");
        assert!(parse_wrk_report(&sock).is_err());
    }

    #[test]
    fn missing_report_line_is_an_error() {
        assert!(parse_wrk_report("Running 5s test\n").is_err());
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn table_shows_ratios_against_the_first_row() {
        let s = |rps, p50, p99| Sample {
            rps,
            p50_us: p50,
            p99_us: p99,
            cpu_us: None,
            envoy_cpu_us: None,
        };
        let base = Summary::of(
            "direct",
            &[
                s(1000.0, 100.0, 200.0),
                s(1200.0, 100.0, 200.0),
                s(1100.0, 100.0, 200.0),
            ],
        );
        let wasm = Summary::of(
            "wasm",
            &[Sample {
                envoy_cpu_us: Some(181.8),
                ..s(550.0, 150.0, 500.0)
            }],
        );
        let table = table(&[base, wasm], None);
        assert!(
            table.contains(
                "| direct | 1100 | 1.00 | 100 | 1.00 | 200 | 1.00 | – | – | 1000, 1200, 1100 |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| wasm | 550 | 0.50 | 150 | 1.50 | 500 | 2.50 | 181.8 | – | 550 |"),
            "{table}"
        );
    }

    #[test]
    fn paired_ratios_compare_runs_of_the_same_round() {
        let s = |rps, p99| Sample {
            rps,
            p50_us: 1.0,
            p99_us: p99,
            cpu_us: None,
            envoy_cpu_us: None,
        };
        // The machine slows down in round 2 for both; a ratio of medians
        // (900 / 1000) would say 0.90, each round says 0.95 or more.
        let base = Summary::of("base", &[s(1000.0, 10.0), s(500.0, 20.0), s(1100.0, 10.0)]);
        let ours = Summary::of("ours", &[s(950.0, 9.0), s(490.0, 22.0), s(1100.0, 9.0)]);
        let r = paired_ratio(&ours, &base, |x| &x.runs_rps);
        assert!((r - 0.98).abs() < 1e-9, "{r}");
        let p99 = paired_ratio(&ours, &base, |x| &x.runs_p99_us);
        assert!((p99 - 0.9).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn cpu_column_shows_the_difference_from_the_null_service() {
        let s = |cpu| Sample {
            rps: 1.0,
            p50_us: 1.0,
            p99_us: 1.0,
            cpu_us: Some(cpu),
            envoy_cpu_us: None,
        };
        let null = Summary::of("null", &[s(20.0)]);
        let memory = Summary::of("mem", &[s(23.5), s(24.5), s(25.0)]);
        let table = table(&[null, memory], Some(0));
        assert!(
            table.contains("| null | 1 | 1.00 | 1 | 1.00 | 1 | 1.00 | – | 20.0 | 1 |"),
            "{table}"
        );
        assert!(table.contains("| 24.5 (null +4.5) |"), "{table}");
    }
}
