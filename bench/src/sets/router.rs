//! `router`: Envoy's native routes, the same with an empty wasm filter, and
//! with gatehouse-router judging every request by a sticky canary.

use std::fmt::Write as _;

use anyhow::Result;

use super::{Measured, ratio, scenario};
use crate::{Pinning, Scenario, Settings, Sidecar};

/// Native routes against the empty wasm filter and gatehouse-router.
pub(super) async fn router(settings: &Settings, pinning: Option<&Pinning>) -> Result<Measured> {
    // Rules that do not match, then the sticky canary every
    // request is judged by: the filter's whole cost per request. The JSON's
    // lines keep their indentation: they continue a quoted YAML scalar in
    // router.yaml, which needs them indented deeper than its `value:` key.
    let config = r#"{"rules": [
                    {"match": {"headers": [{"name": "x-gatehouse-groups", "prefix": "beta"}]}, "route": "canary"},
                    {"match": {"prefix": "/v1"}, "rewrite_prefix": {"from": "/v1", "to": "/api"}},
                    {"bucket": {"header": "x-gatehouse-user", "percent": 10, "salt": "bench"}, "route": "canary"}
                ]}"#;
    let user = |mut s: Scenario| {
        s.headers
            .push(("x-gatehouse-user".to_owned(), "user-42".to_owned()));
        s
    };
    let mut filtered = user(scenario(
        "native routes + gatehouse-router (sticky 10 % canary)",
        "router.yaml",
        "/shop",
        Sidecar::None,
    ));
    filtered
        .vars
        .push(("ROUTER_CONFIG".to_owned(), config.to_owned()));
    let scenarios = [
        user(scenario(
            "native routes (baseline)",
            "router-native.yaml",
            "/shop",
            Sidecar::None,
        )),
        scenario(
            "native routes + empty wasm filter",
            "noop-wasm.yaml",
            "/shop",
            Sidecar::None,
        ),
        filtered,
    ];
    let s = crate::run(&scenarios, settings, pinning).await?;
    let mut targets = String::from("Targets:\n");
    let _ = writeln!(
        targets,
        "- (for scale) gatehouse-router against native routes: {:.2}; against the empty wasm filter: {:.2}",
        ratio(&s, 2, 0),
        ratio(&s, 2, 1)
    );
    Ok((
        format!(
            "Envoy with 1 worker under wrk (1 thread, {} connections), every request with the same `x-gatehouse-user`.",
            settings.connections
        ),
        crate::table(&s, None),
        targets,
    ))
}
