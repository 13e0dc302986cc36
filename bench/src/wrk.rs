//! What `wrk` runs and prints: the Lua report line every run ends with, the
//! token rotation of the JWT scenarios, and the parser of that line.

use anyhow::{Context, Result, bail};

use crate::figures::Sample;

/// A `wrk` Lua script that prints the figures we need on one parseable line.
pub(crate) const WRK_REPORT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "GATEHOUSE-BENCH requests=%d duration_us=%d socket_errors=%d bad_status=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"#;

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
}
