//! The smallest useful stack, as `make run` starts it: Envoy with the
//! gatehouse-jwt filter in front of an echo upstream.
//!
//! The bootstrap is embedded in the binary, so `make run` needs no config file.

use anyhow::Result;

use crate::echo::Echo;
use crate::envoy::{Envoy, EnvoyBuilder};

/// The embedded quickstart bootstrap template.
pub const TEMPLATE: &str = include_str!("../testdata/envoy/jwt-wasm.yaml");

/// A running quickstart stack. Everything stops when it drops.
#[derive(Debug)]
pub struct Quickstart {
    /// Envoy (dropped first, so it never forwards to a stopped upstream).
    pub envoy: Envoy,
    /// The upstream that echoes what it receives.
    pub echo: Echo,
}

/// Starts the stack; port 0 picks free ports.
pub async fn start(listen_port: u16, admin_port: u16) -> Result<Quickstart> {
    start_with(
        EnvoyBuilder::from_text(TEMPLATE, "embedded quickstart template"),
        listen_port,
        admin_port,
    )
    .await
}

/// Starts the stack from a prepared builder (the binary turns the log dump off).
pub async fn start_with(
    builder: EnvoyBuilder,
    listen_port: u16,
    admin_port: u16,
) -> Result<Quickstart> {
    let echo = Echo::start_named("quickstart").await?;
    let envoy = builder
        .upstream(&echo)
        .var("LISTEN_PORT", listen_port)
        .var("ADMIN_PORT", admin_port)
        .start()
        .await?;
    Ok(Quickstart { envoy, echo })
}

impl Quickstart {
    /// Base URL of the edge listener.
    pub fn url(&self, path: &str) -> String {
        self.envoy.url(path)
    }
}
