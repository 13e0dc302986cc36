//! `make bench`: runs the benchmark scenarios and prints/writes the ratio table.
//!
//! Settings come from the environment: `BENCH_SECONDS` (per measured run,
//! default 5), `BENCH_REPEATS` (default 3), `BENCH_CONNECTIONS` (default 32),
//! `BENCH_WARMUP_SECONDS` (default 2). Results land in `bench/results/<set>.md`.

use std::time::Duration;

use anyhow::{Context, Result};
use e2e::bench::{self, Pinning, Scenario, Settings};

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

fn scenario(name: &str, template: &str) -> Scenario {
    Scenario {
        name: name.to_owned(),
        template: template.to_owned(),
        vars: Vec::new(),
    }
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
        // The runner hosts the echo upstream: keep it off Envoy's core.
        let mut set = nix::sched::CpuSet::new();
        set.set(p.load.parse()?)?;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    }

    let set = "proxy";
    let scenarios = [
        scenario("envoy → upstream (baseline)", "proxy.yaml"),
        scenario("envoy + gatehouse-jwt wasm → upstream", "jwt-wasm.yaml"),
    ];
    let summaries = bench::run(&scenarios, &settings, pinning.as_ref()).await?;
    let table = bench::table(&summaries);

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
            "Envoy pinned to CPU {}, wrk and upstream to CPU {}",
            p.envoy, p.load
        ),
        None => "one CPU: nothing pinned".to_owned(),
    };
    let report = format!(
        "# Benchmark: {set}\n\n\
         Envoy with 1 worker; load from wrk, 1 thread, {} connections, {} s per run after a {} s warm-up, \
         {} runs per scenario, interleaved; medians shown. {pin_note}. \
         Ratios are against the first row, measured in the same run.\n\n{table}\n\
         Envoy: `{envoy_version}`\n",
        settings.connections,
        settings.duration.as_secs(),
        settings.warmup.as_secs(),
        settings.repeats,
    );
    println!("\n{report}");
    let out = e2e::paths::workspace_root().join(format!("bench/results/{set}.md"));
    std::fs::create_dir_all(out.parent().context("results path has a parent")?)?;
    std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    println!("written to {}", out.display());
    Ok(())
}
