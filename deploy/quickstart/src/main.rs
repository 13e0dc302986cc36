//! `make run`: the quickstart stack in the foreground until Ctrl-C (SIGINT)
//! or SIGTERM, then every process it started is stopped.
//!
//! It renders `deploy/quickstart/edge.yaml` and starts Envoy with the
//! gatehouse-jwt and gatehouse-router filters, gatehouse-authz,
//! gatehouse-ratelimit (memory store), two demo upstreams, a demo token
//! issuer and the demo OpenID provider. `GATEHOUSE_LISTEN_PORT` (default
//! 8080) and `GATEHOUSE_ADMIN_PORT` (default 9901) choose Envoy's ports,
//! `GATEHOUSE_DIAG_PORT` (default 8877) `gatehouse diag`'s; 0 picks free
//! ones.
//!
//! `quickstart --xds` (`make run-xds`) runs the same stack with Envoy and
//! the two services configured by `gatehouse serve`, the xDS control plane,
//! which renders `edge.yaml` itself and follows its changes.
//!
//! Only the banner and the signals live here; the stack is this crate's
//! library (`src/lib.rs`).

use anyhow::{Context, Result};
use gatehouse_quickstart::Mode;
use tokio::signal::unix::{SignalKind, signal};

fn port(name: &str, default: u16) -> Result<u16> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name}={value:?} is not a port number")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let listen = port("GATEHOUSE_LISTEN_PORT", 8080)?;
    let admin = port("GATEHOUSE_ADMIN_PORT", 9901)?;
    let diag = port("GATEHOUSE_DIAG_PORT", 8877)?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    // `--xds` (`make run-xds`): Envoy and the services take their
    // configuration from `gatehouse serve`.
    let mode = match std::env::args().nth(1).as_deref() {
        None => Mode::Files,
        Some("--xds") => Mode::Xds,
        Some(other) => anyhow::bail!("{other}: the only option is --xds"),
    };
    let stack = gatehouse_quickstart::start_in(mode, listen, admin, diag, true).await?;
    let edge = |path: &str| stack.url(path);
    println!(
        "Gatehouse quickstart is up, rendered from {}:",
        gatehouse_quickstart::RESOURCES
    );
    println!(
        "  single sign-on: open {} and log in as alice / wonderland",
        edge("/app/")
    );
    println!(
        "  JWT API:        curl -s -H 'authorization: Bearer {}' {}",
        stack.token,
        edge("/api/hello")
    );
    println!(
        "  rate limit:     for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}} ' {}; done   # 5 a minute: the sixth gets 429",
        edge("/limited/")
    );
    println!("  diagnostics:    {}/", stack.diag_url);
    println!(
        "  API portal:     {}/portal   (the catalog API, {})",
        stack.diag_url,
        edge("/catalog/")
    );
    if let Some(status) = &stack.xds_status_url {
        println!(
            "  control plane:  {status}   (gatehouse serve: edit {} and watch the version change)",
            gatehouse_quickstart::RESOURCES
        );
    }
    println!("  demo IdP:       {}", stack.idp.issuer());
    println!("  envoy admin:    {}", stack.envoy.admin_url("/"));
    println!("  envoy log:      {}", stack.envoy.log_path().display());
    println!(
        "  processes:      {}",
        stack
            .pids()
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("Ctrl-C stops everything.");
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    drop(stack);
    eprintln!("stopped");
    Ok(())
}
