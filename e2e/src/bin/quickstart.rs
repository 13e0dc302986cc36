//! `make run`: starts the quickstart stack in the foreground until Ctrl-C.
//!
//! `GATEHOUSE_LISTEN_PORT` (default 8080) and `GATEHOUSE_ADMIN_PORT` (default
//! 9901) choose the ports.

use anyhow::{Context, Result};

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
    let builder =
        e2e::EnvoyBuilder::from_text(e2e::quickstart::TEMPLATE, "embedded quickstart template")
            .log_on_drop(false);
    let stack = e2e::quickstart::start_with(builder, listen, admin).await?;
    println!("Gatehouse quickstart is up:");
    println!("  edge:         {}", stack.url("/"));
    println!("  envoy admin:  {}", stack.envoy.admin_url("/"));
    println!("  envoy log:    {}", stack.envoy.log_path().display());
    println!(
        "  try:          curl -s -H 'x-gatehouse-user: mallory' {}",
        stack.url("/hello")
    );
    println!(
        "                (the echo shows the spoofed x-gatehouse-user header stripped by gatehouse-jwt)"
    );
    println!("Ctrl-C stops everything.");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
