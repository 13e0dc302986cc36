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

use crate::echo::Echo;
use crate::envoy::{Envoy, EnvoyBuilder};
use crate::paths;
use crate::process::run_to_completion;

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
    /// Every run's requests/s, for the record.
    pub runs_rps: Vec<f64>,
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
            },
            runs_rps: samples.iter().map(|s| s.rps).collect(),
        }
    }
}

/// A markdown table: one row per scenario, ratios against the first row.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = String::from(
        "| scenario | requests/s | ×baseline | p50 µs | ×baseline | p99 µs | ×baseline | runs (requests/s) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    let Some(base) = summaries.first() else {
        return out;
    };
    for s in summaries {
        let runs: Vec<String> = s.runs_rps.iter().map(|r| format!("{r:.0}")).collect();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} | {} |",
            s.name,
            s.median.rps,
            s.median.rps / base.median.rps,
            s.median.p50_us,
            s.median.p50_us / base.median.p50_us,
            s.median.p99_us,
            s.median.p99_us / base.median.p99_us,
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

/// Runs every scenario of a set and returns their summaries, baseline first.
pub async fn run(
    scenarios: &[Scenario],
    settings: &Settings,
    pinning: Option<&Pinning>,
) -> Result<Vec<Summary>> {
    let wrk = paths::tool("wrk", "installs the Debian package wrk")?;
    let script = tempfile::Builder::new().suffix(".lua").tempfile()?;
    std::fs::write(script.path(), WRK_REPORT)?;

    let echo = Echo::start_named("bench").await?;
    let mut envoys = Vec::new();
    for scenario in scenarios {
        let builder = Envoy::from_template(&scenario.template)?;
        let mut builder: EnvoyBuilder = scenario
            .vars
            .iter()
            .fold(builder, |b, (k, v)| b.var(k, v))
            .upstream(&echo)
            .concurrency(1)
            .log_on_drop(false);
        if let Some(p) = pinning {
            builder = builder.cpus(&p.envoy);
        }
        envoys.push(
            builder
                .start()
                .await
                .with_context(|| format!("starting scenario {}", scenario.name))?,
        );
    }

    let load = |envoy: &Envoy, duration: Duration| {
        let mut command = match pinning {
            Some(p) => {
                let mut c = tokio::process::Command::new("taskset");
                c.arg("-c").arg(&p.load).arg(&wrk);
                c
            }
            None => tokio::process::Command::new(&wrk),
        };
        command
            .arg("-t1")
            .arg(format!("-c{}", settings.connections))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg("-s")
            .arg(script.path())
            .arg(envoy.url("/bench"));
        async move {
            let (status, output) =
                run_to_completion(&mut command, duration + Duration::from_secs(30)).await?;
            if !status.success() {
                bail!("wrk failed ({status}): {output}");
            }
            parse_wrk_report(&output)
        }
    };

    for envoy in &envoys {
        load(envoy, settings.warmup).await?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); scenarios.len()];
    for round in 0..settings.repeats {
        for (i, envoy) in envoys.iter().enumerate() {
            let sample = load(envoy, settings.duration).await?;
            eprintln!(
                "round {}/{} {:<28} {:>9.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs",
                round + 1,
                settings.repeats,
                scenarios[i].name,
                sample.rps,
                sample.p50_us,
                sample.p99_us
            );
            samples[i].push(sample);
        }
    }
    Ok(scenarios
        .iter()
        .zip(&samples)
        .map(|(s, runs)| Summary::of(&s.name, runs))
        .collect())
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
                p99_us: 1500.0
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
        };
        let base = Summary::of(
            "direct",
            &[
                s(1000.0, 100.0, 200.0),
                s(1200.0, 100.0, 200.0),
                s(1100.0, 100.0, 200.0),
            ],
        );
        let wasm = Summary::of("wasm", &[s(550.0, 150.0, 500.0)]);
        let table = table(&[base, wasm]);
        assert!(
            table.contains("| direct | 1100 | 1.00 | 100 | 1.00 | 200 | 1.00 | 1000, 1200, 1100 |"),
            "{table}"
        );
        assert!(
            table.contains("| wasm | 550 | 0.50 | 150 | 1.50 | 500 | 2.50 | 550 |"),
            "{table}"
        );
    }
}
