//! `make bench`: the benchmark runner and the null services it measures against.
//!
//! Each scenario runs on real Envoy (or, for the raw sets, a service alone) and
//! is loaded by `wrk` in another process or by gRPC callers in this one. It is
//! started once, warmed up, then measured `repeats` times, interleaved with the
//! other scenarios so drift on a shared machine hits all of them alike. Envoy
//! and the load generator are pinned to different cores when there are two.
//! Every figure is reported as a ratio against the baseline scenario measured
//! in the same run: absolute numbers from a noisy shared machine mean little,
//! ratios measured side by side do.
//!
//! What lives here: the `bench` binary, the sets it runs ([`sets`]), how a set runs ([`run`],
//! [`run_raw`]), the side services a scenario starts, the figures and tables
//! written to `bench/results/`, and the null RLS and null ext_authz servers
//! (`src/bin/null-*.rs`), the cost floors of a side call. What does not: the
//! process harness (Envoy, Redis, the services, the IdP as child processes),
//! which is the `e2e` crate's and shared with the tests; the Envoy templates,
//! in `e2e/testdata/envoy/`; the plot, drawn by `scripts/bench_plot.py`.

mod figures;
mod load;
mod run;
mod session;
pub mod sets;
mod sidecar;
mod wrk;

pub use figures::{Sample, Summary, median, paired_ratio, table};
pub use run::{Pinning, RawScenario, Scenario, Settings, cpu_time, run, run_raw};
pub use session::{BENCH_SESSION_KEY, bench_cookie, bench_session, bench_ticket_cookie};
pub use sidecar::{BENCH_RLS_CONFIG, Sidecar};
pub use wrk::{parse_wrk_report, token_rotation};
