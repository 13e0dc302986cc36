//! The benchmark sets, one file each: which scenarios a set runs, in which
//! order (the first is the baseline), and the targets its report checks.

mod authz;
mod jwt;
mod proxy;
mod ratelimit;
mod router;
mod sso;
mod xds;

use anyhow::{Result, bail};

use crate::{Pinning, Scenario, Settings, Sidecar, Summary};

/// The sets `bench` runs when it is given none.
pub const DEFAULT: [&str; 9] = [
    "proxy",
    "ratelimit",
    "ratelimit-raw",
    "ratelimit-quota",
    "jwt",
    "authz",
    "authz-raw",
    "sso",
    "xds-scale",
];

/// What one set measured: the sentence that says how, the table and the
/// targets with their verdicts, in that order in the report.
pub type Measured = (String, String, String);

/// Runs the set named `set`.
///
/// # Errors
/// An unknown name, or the first scenario that fails to start or to load.
pub async fn measure(
    set: &str,
    settings: &Settings,
    pinning: Option<&Pinning>,
) -> Result<Measured> {
    match set {
        "proxy" => proxy::proxy(settings, pinning).await,
        "ratelimit" => ratelimit::ratelimit(settings, pinning).await,
        "ratelimit-raw" => ratelimit::ratelimit_raw(settings, pinning).await,
        "ratelimit-quota" => ratelimit::ratelimit_quota(settings, pinning).await,
        "jwt" => jwt::jwt(settings, pinning).await,
        "authz" => authz::authz(settings, pinning).await,
        "router" => router::router(settings, pinning).await,
        "authz-raw" => authz::authz_raw(settings, pinning).await,
        "sso" => sso::sso(settings, pinning).await,
        "xds-scale" => xds::xds_scale(settings).await,
        other => bail!(
            "unknown benchmark set {other:?}: use {}",
            DEFAULT.join(", ")
        ),
    }
}

/// A whole number from the environment variable `name`, else `default`.
///
/// # Errors
/// When the variable is set to something else.
pub fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
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
    crate::paired_ratio(&summaries[of], &summaries[to], |s| &s.runs_rps)
}

/// The same comparison by Envoy's CPU per request: `to`'s over `of`'s, the
/// throughput ratio one saturated worker would show if the machine gave it
/// all its time.
fn cpu_ratio(summaries: &[Summary], of: usize, to: usize) -> f64 {
    crate::paired_ratio(&summaries[to], &summaries[of], |s| &s.runs_envoy_cpu_us)
}

fn cpu(summaries: &[Summary], i: usize) -> f64 {
    summaries[i].median.cpu_us.unwrap_or(f64::NAN)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}
