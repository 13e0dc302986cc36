//! Figures of a run: one sample per measured run, the medians of a scenario,
//! ratios paired by round, and the markdown table a set writes.

use std::fmt::Write as _;

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

#[cfg(test)]
mod tests {
    use super::*;

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
