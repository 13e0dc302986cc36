//! Running a set: every scenario started once, warmed up, then measured in
//! interleaved rounds, through Envoy under `wrk` ([`run`]) or straight over
//! gRPC ([`run_raw`]).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use e2e::echo::Echo;
use e2e::envoy::{Envoy, EnvoyBuilder};
use e2e::paths;
use e2e::process::run_to_completion;

use crate::figures::{Sample, Summary};
use crate::load::{check_load, grpc_load};
use crate::sidecar::{RunningSidecar, Sidecar, report_batches};
use crate::wrk::{WRK_REPORT, parse_wrk_report, token_rotation};

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
            if let Some(socket) = sidecar.feed_socket() {
                builder = builder.var("FEED_SOCKET", socket.display());
            }
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
            e2e::process::pinned_command(pinning.map(|p| p.load.as_str()), &wrk).map(|mut c| {
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
