//! `proxy`: Envoy alone, with the gatehouse-jwt filter on a route that needs
//! no token, and with the hygiene every rendered listener has.

use std::fmt::Write as _;

use anyhow::Result;

use super::{Measured, ratio, scenario, verdict};
use crate::{Pinning, Settings, Sidecar};

/// Envoy straight to the upstream against the wasm filter and the rendered
/// listener hygiene.
pub(super) async fn proxy(settings: &Settings, pinning: Option<&Pinning>) -> Result<Measured> {
    let scenarios = [
        scenario(
            "envoy → upstream (baseline)",
            "proxy.yaml",
            "/bench",
            Sidecar::None,
        ),
        scenario(
            "envoy + gatehouse-jwt wasm → upstream",
            "jwt-wasm.yaml",
            "/bench",
            Sidecar::None,
        ),
        scenario(
            "envoy + rendered listener hygiene → upstream",
            "proxy-hardened.yaml",
            "/bench",
            Sidecar::None,
        ),
    ];
    let s = crate::run(&scenarios, settings, pinning).await?;
    let mut targets = String::from("Targets:\n");
    let r = ratio(&s, 2, 0);
    let _ = writeln!(
        targets,
        "- the hygiene every rendered listener has (path normalisation, escaped slashes and underscore headers refused or dropped, the refused-path route) costs no more than noise, at least 0.97 of the baseline: {r:.2}, {}",
        verdict(r >= 0.97)
    );
    Ok((
        format!(
            "Envoy with 1 worker under wrk (1 thread, {} connections).",
            settings.connections
        ),
        crate::table(&s, None),
        targets,
    ))
}
