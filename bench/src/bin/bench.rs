//! `make bench`: runs the benchmark sets and prints/writes their ratio tables.
//!
//! `bench [SET...]` runs the named sets (default: all but `router`): `proxy`,
//! `jwt`, `ratelimit` and `authz` through Envoy under wrk, `ratelimit-raw`
//! and `authz-raw` against the services alone under concurrent gRPC calls,
//! `router` through Envoy; `gatehouse_bench::sets` says what each measures.
//! Settings come from the environment: `BENCH_SECONDS` (per measured run,
//! default 5), `BENCH_REPEATS` (default 3), `BENCH_CONNECTIONS` (default 32),
//! `BENCH_WARMUP_SECONDS` (default 2). Results land in `bench/results/<set>.md`.

use std::time::Duration;

use anyhow::{Context, Result};
use gatehouse_bench::sets::{self, env_number};
use gatehouse_bench::{Pinning, Settings};

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chosen: Vec<&str> = if args.is_empty() {
        sets::DEFAULT.to_vec()
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

    for set in chosen {
        let (description, table, targets) = sets::measure(set, &settings, pinning.as_ref()).await?;
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
