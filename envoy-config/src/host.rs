//! `Host` documents (the names the edge serves, their certificates, what
//! cleartext gets) and `Listener` documents (where Envoy listens).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::doc::{ErrFn, RawDoc, ResourceError};

/// What a Host does with cleartext requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insecure {
    /// Redirect to https (the default with TLS).
    Redirect,
    /// Serve them too.
    Route,
    /// Refuse them (404).
    Reject,
}

/// Which requests on a Listener count as secure (Ambassador's
/// `securityModel`); an insecure one gets its Host's `insecure.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityModel {
    /// Secure when `X-Forwarded-Proto` is `https` (set by Envoy from the
    /// connection, or by a trusted proxy in front: `l7Depth`).
    Xfp,
    /// Every request is secure.
    Secure,
    /// Every request is insecure.
    Insecure,
}

/// A `Host`: a name the edge serves, with its TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `metadata.name`.
    pub name: String,
    /// The host name: exact, a glob (`*.example.com`, `example.*`) or `*`.
    pub hostname: String,
    /// Certificate chain and key files (PEM), if it serves TLS.
    pub tls_files: Option<(String, String)>,
    /// Certificate from a Secret mounted at `<secrets dir>/<name>/tls.crt|tls.key`.
    pub tls_secret: Option<String>,
    /// Insecure requests (`requestPolicy.insecure.action`, default
    /// `Redirect` as in Ambassador, with or without a certificate here).
    pub insecure: Insecure,
    /// `mappingSelector.matchLabels`: when set, only Mappings carrying
    /// every one of these labels are served under this Host.
    pub mapping_selector: Option<BTreeMap<String, String>>,
}

impl Host {
    /// Whether a Mapping with `labels` may be served under this Host, as
    /// Ambassador's strict label selectors have it: a Host without a
    /// selector takes every Mapping its name matches; one with a selector
    /// only those carrying each of its labels with the same value.
    #[must_use]
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.mapping_selector
            .as_ref()
            .is_none_or(|want| want.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHostSpec {
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default, rename = "mappingSelector")]
    mapping_selector: Option<RawSelector>,
    #[serde(default)]
    selector: Option<RawSelector>,
    #[serde(default, rename = "tlsSecret")]
    tls_secret: Option<RawSecretRef>,
    #[serde(default, rename = "tlsFiles")]
    tls_files: Option<RawTlsFiles>,
    #[serde(default, rename = "requestPolicy")]
    request_policy: Option<RawRequestPolicy>,
    #[serde(default, rename = "acmeProvider")]
    acme_provider: Option<RawAcme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    #[serde(default, rename = "matchLabels")]
    match_labels: BTreeMap<String, String>,
    #[serde(default, rename = "matchExpressions")]
    match_expressions: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretRef {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsFiles {
    #[serde(rename = "certChain")]
    cert_chain: String,
    #[serde(rename = "privateKey")]
    private_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequestPolicy {
    insecure: RawInsecure,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInsecure {
    #[serde(default)]
    action: Option<String>,
    #[serde(default, rename = "additionalPort")]
    additional_port: Option<i32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    authority: String,
    #[serde(default)]
    #[allow(dead_code)]
    email: Option<String>,
    #[serde(default, rename = "privateKeySecret")]
    #[allow(dead_code)]
    private_key_secret: Option<serde_yaml_ng::Value>,
}

/// Where Envoy listens for traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `metadata.name`.
    pub name: String,
    /// Port.
    pub port: u16,
    /// It terminates TLS (protocol `HTTPS`).
    pub tls: bool,
    /// Proxies in front whose `x-forwarded-for` entries are trusted
    /// (Ambassador's `l7Depth`), so the client address is the real client's.
    pub l7_depth: u32,
    /// Which requests count as secure; without one, every request on an
    /// HTTPS Listener and none on an HTTP one.
    pub security_model: Option<SecurityModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListenerSpec {
    port: u16,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default, rename = "securityModel")]
    security_model: Option<String>,
    #[serde(default, rename = "l7Depth")]
    l7_depth: Option<u32>,
    #[serde(default, rename = "hostBinding")]
    host_binding: Option<serde_yaml_ng::Value>,
}

/// A Host from its document.
pub(crate) fn host(raw: RawDoc<RawHostSpec>, err: ErrFn<'_>) -> Result<Host, ResourceError> {
    let spec = raw.spec;
    // Ambassador's Host without a hostname is the `*` Host.
    let hostname = spec.hostname.unwrap_or_else(|| "*".into());
    if !crate::mapping::is_hostname_glob(&hostname) {
        return Err(err(
            "spec.hostname",
            format!(
                "{:?}: write *, a host name, or a glob with * as its whole first or last label (*.example.com, example.*)",
                hostname
            ),
        ));
    }
    let (selector, field) = match (spec.mapping_selector, spec.selector) {
        (Some(_), Some(_)) => {
            return Err(err(
                "spec.selector",
                "selector is the old name of mappingSelector: write only mappingSelector".into(),
            ));
        }
        (Some(s), None) => (Some(s), "spec.mappingSelector"),
        (None, Some(s)) => (Some(s), "spec.selector"),
        (None, None) => (None, ""),
    };
    if selector
        .as_ref()
        .is_some_and(|s| s.match_expressions.is_some())
    {
        return Err(err(
            &format!("{field}.matchExpressions"),
            "not supported yet: select with matchLabels (every label must match)".into(),
        ));
    }
    if let Some(acme) = &spec.acme_provider
        && acme.authority != "none"
    {
        return Err(err(
            "spec.acmeProvider.authority",
            "ACME is not planned: get certificates with cert-manager and name the Secret in tlsSecret; write authority: none".into(),
        ));
    }
    if spec.tls_secret.is_some() && spec.tls_files.is_some() {
        return Err(err(
            "spec.tlsFiles",
            "tlsSecret or tlsFiles, not both".into(),
        ));
    }
    let insecure = match spec.request_policy {
        None => Insecure::Redirect,
        Some(p) => {
            if p.insecure.additional_port.is_some_and(|port| port >= 0) {
                return Err(err(
                    "spec.requestPolicy.insecure.additionalPort",
                    "not supported: cleartext is served on the HTTP Listener; write -1 or leave it out".into(),
                ));
            }
            match p.insecure.action.as_deref() {
                None | Some("Redirect") => Insecure::Redirect,
                Some("Route") => Insecure::Route,
                Some("Reject") => Insecure::Reject,
                Some(other) => {
                    return Err(err(
                        "spec.requestPolicy.insecure.action",
                        format!("{other:?}: Redirect, Route or Reject"),
                    ));
                }
            }
        }
    };
    Ok(Host {
        name: raw.metadata.name,
        hostname,
        mapping_selector: selector.map(|s| s.match_labels),
        tls_files: spec.tls_files.map(|f| (f.cert_chain, f.private_key)),
        tls_secret: spec.tls_secret.map(|s| s.name),
        insecure,
    })
}

/// Checks a Listener's `hostBinding`: Gatehouse binds every Host to every
/// Listener, which is Ambassador's `namespace: {from: ALL}` (the binding
/// nearly every Listener has); narrower bindings are refused, not widened.
fn host_binding(binding: &serde_yaml_ng::Value, err: ErrFn<'_>) -> Result<(), ResourceError> {
    let all = binding.as_mapping().is_some_and(|m| m.len() == 1)
        && binding
            .get("namespace")
            .and_then(|n| n.as_mapping())
            .is_some_and(|n| n.len() == 1)
        && binding
            .get("namespace")
            .and_then(|n| n.get("from"))
            .and_then(serde_yaml_ng::Value::as_str)
            == Some("ALL");
    if all {
        return Ok(());
    }
    Err(err(
        "spec.hostBinding",
        "only namespace: {from: ALL} is supported (every Host on every Listener); SELF and selectors are not yet: write from: ALL and keep other Hosts out of the rendered set".into(),
    ))
}

/// A Listener from its document. That no other Listener has its port is
/// checked as it joins the others.
pub(crate) fn listener(
    raw: RawDoc<RawListenerSpec>,
    err: ErrFn<'_>,
) -> Result<Listener, ResourceError> {
    let spec = raw.spec;
    let tls = match spec.protocol.as_deref() {
        None | Some("HTTP") => false,
        Some("HTTPS") => true,
        Some(other) => {
            return Err(err(
                "spec.protocol",
                format!(
                    "{other:?}: HTTP or HTTPS (TCP, TLS and PROXY protocols are not supported)"
                ),
            ));
        }
    };
    let security_model = match spec.security_model.as_deref() {
        None => None,
        Some("XFP") => Some(SecurityModel::Xfp),
        Some("SECURE") => Some(SecurityModel::Secure),
        Some("INSECURE") => Some(SecurityModel::Insecure),
        Some(other) => {
            return Err(err(
                "spec.securityModel",
                format!("{other:?}: XFP, SECURE or INSECURE"),
            ));
        }
    };
    if let Some(binding) = &spec.host_binding {
        host_binding(binding, err)?;
    }
    Ok(Listener {
        name: raw.metadata.name,
        port: spec.port,
        tls,
        l7_depth: spec.l7_depth.unwrap_or(0),
        security_model,
    })
}
