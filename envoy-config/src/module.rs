//! The `ambassador` `Module`: edge-wide settings. What it accepts means what
//! it means in Ambassador: the client address (`use_remote_address`), the
//! defaults every Mapping without its own takes (`cors`, `retry_policy`,
//! `circuit_breakers`), and who may connect at all (`ip_allow`,
//! `ip_deny`). Every other key is refused by name.

use serde::Deserialize;

use crate::doc::{ErrFn, RawDoc, ResourceError};
use crate::mapping::{
    CircuitBreaker, Cors, RawCircuitBreaker, RawCors, RawRetry, RetryPolicy, circuit_breaker, cors,
    retry_policy,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModuleSpec {
    #[serde(default)]
    config: RawConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    use_remote_address: Option<bool>,
    #[serde(default)]
    cors: Option<RawCors>,
    #[serde(default)]
    retry_policy: Option<RawRetry>,
    #[serde(default)]
    circuit_breakers: Vec<RawCircuitBreaker>,
    #[serde(default)]
    ip_allow: Vec<RawIp>,
    #[serde(default)]
    ip_deny: Vec<RawIp>,
    #[serde(default)]
    diagnostics: Option<RawDiagnostics>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIp {
    #[serde(default)]
    peer: Option<String>,
    #[serde(default)]
    remote: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiagnostics {
    enabled: bool,
    #[serde(default)]
    allow_non_local: Option<bool>,
}

/// Who may send requests, by address (`ip_allow` or `ip_deny`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRule {
    /// The address ranges, CIDR (`10.0.0.0/8`, or one address).
    pub ranges: Vec<IpRange>,
    /// `true`: only these may (`ip_allow`); `false`: these may not.
    pub allow: bool,
}

/// One range of an [`IpRule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange {
    /// The address.
    pub address: String,
    /// The prefix length.
    pub prefix_len: u8,
    /// `peer`: the connection's own address; `remote`: the client address
    /// Envoy derives from `x-forwarded-for` and the trusted hops.
    pub peer: bool,
}

/// The `ambassador` Module's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Module {
    /// `use_remote_address` (default `true`, as in Ambassador).
    pub use_remote_address: Option<bool>,
    /// CORS for every Mapping without its own.
    pub cors: Option<Cors>,
    /// Retries for every Mapping without its own.
    pub retry_policy: Option<RetryPolicy>,
    /// Circuit breakers for every upstream without its own.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Who may connect.
    pub ip: Option<IpRule>,
}

/// The Module from its document.
pub(crate) fn module(raw: RawDoc<RawModuleSpec>, err: ErrFn<'_>) -> Result<Module, ResourceError> {
    if raw.metadata.name != "ambassador" {
        return Err(err(
            "metadata.name",
            format!(
                "{:?}: the Module Gatehouse reads is named ambassador (TLS settings go on Hosts)",
                raw.metadata.name
            ),
        ));
    }
    let c = raw.spec.config;
    if let Some(d) = &c.diagnostics
        && (d.enabled || d.allow_non_local == Some(true))
    {
        return Err(err(
            "spec.config.diagnostics",
            "Gatehouse has no diagnostics service: write enabled: false, or leave it out".into(),
        ));
    }
    let ip = match (c.ip_allow.is_empty(), c.ip_deny.is_empty()) {
        (true, true) => None,
        (false, false) => {
            return Err(err(
                "spec.config.ip_deny",
                "ip_allow or ip_deny, not both".into(),
            ));
        }
        (false, true) => Some(ip_rule(&c.ip_allow, true, "spec.config.ip_allow", err)?),
        (true, false) => Some(ip_rule(&c.ip_deny, false, "spec.config.ip_deny", err)?),
    };
    Ok(Module {
        use_remote_address: c.use_remote_address,
        cors: c
            .cors
            .map(|x| cors(x, "spec.config.cors", err))
            .transpose()?,
        retry_policy: c.retry_policy.map(retry_policy),
        circuit_breaker: circuit_breaker(&c.circuit_breakers, "spec.config.circuit_breakers", err)?,
        ip,
    })
}

fn ip_rule(list: &[RawIp], allow: bool, at: &str, err: ErrFn<'_>) -> Result<IpRule, ResourceError> {
    let mut ranges = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let (text, peer) = match (&entry.peer, &entry.remote) {
            (Some(p), None) => (p, true),
            (None, Some(r)) => (r, false),
            _ => {
                return Err(err(
                    &format!("{at}[{i}]"),
                    "one of peer (the connection's address) or remote (the client's)".into(),
                ));
            }
        };
        let bad = || {
            err(
                &format!("{at}[{i}]"),
                format!("{text:?}: an address or a CIDR range, e.g. 10.0.0.0/8"),
            )
        };
        let (address, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (text.as_str(), None),
        };
        let ip: std::net::IpAddr = address.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix_len = len.unwrap_or(max);
        if prefix_len > max {
            return Err(bad());
        }
        ranges.push(IpRange {
            address: ip.to_string(),
            prefix_len,
            peer,
        });
    }
    Ok(IpRule { ranges, allow })
}
