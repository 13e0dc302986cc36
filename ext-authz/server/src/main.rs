//! `gatehouse-authz`: Envoy's external authorization service (ext_authz v3).
//!
//! One YAML file names the filters (see `ext-authz/README.md`); a route picks
//! one with `context_extensions: { gatehouse_filter: <name> }`. The file and
//! every key file it names are watched and reloaded on change; a bad reload
//! keeps the previous configuration.

mod http;
mod load;
mod metrics;
mod oidc;
mod service;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use clap::Parser;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Envoy ext_authz service: API keys (OpenID Connect single sign-on to come).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The configuration file.
    #[arg(long, env = "GATEHOUSE_AUTHZ_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Load and check a configuration file (and its key files), then exit:
    /// non-zero with the error when it is invalid.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// gRPC address Envoy's ext_authz filter calls.
    #[arg(
        long,
        env = "GATEHOUSE_AUTHZ_GRPC_ADDR",
        default_value = "0.0.0.0:9191"
    )]
    grpc_addr: SocketAddr,
    /// HTTP side port: /healthz, /readyz, /metrics.
    #[arg(
        long,
        env = "GATEHOUSE_AUTHZ_HTTP_ADDR",
        default_value = "0.0.0.0:9192"
    )]
    http_addr: SocketAddr,
    /// Log format: `text` or `json`. Levels come from `RUST_LOG` (default info).
    #[arg(long, env = "GATEHOUSE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(file) = &args.check_config {
        return match load::load(file) {
            Ok(loaded) => {
                let filters = loaded.filters.config().map_or(0, |c| c.filters().len());
                println!("ok: {filters} filters in {}", file.display());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    init_tracing(args.log_format);
    // The watcher compares the paths of changed files with this one: an
    // absolute path, or a bare file name would never match.
    let Some(config) = args
        .config
        .clone()
        .map(|c| std::path::absolute(&c).unwrap_or(c))
    else {
        eprintln!(
            "gatehouse-authz: name the configuration file with --config or GATEHOUSE_AUTHZ_CONFIG"
        );
        return std::process::ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gatehouse-authz: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, &args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "gatehouse-authz stopped");
            eprintln!("gatehouse-authz: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: PathBuf, args: &Args) -> Result<()> {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(metrics::Metrics::register(&mut registry));
    let live = Arc::new(
        load::LiveFilters::load(config.clone(), metrics.clone())
            .with_context(|| format!("loading {}", config.display()))?,
    );
    tracing::info!(config = %config.display(), "configuration loaded");
    metrics.config_load_success.inc();
    {
        let metrics = metrics.clone();
        load::spawn_watcher(live.clone(), move |result| match result {
            Ok(()) => {
                metrics.config_load_success.inc();
                tracing::info!("configuration reloaded");
            }
            Err(e) => {
                metrics.config_load_error.inc();
                tracing::error!(error = %e, "configuration reload refused, keeping the previous one");
            }
        })
        .context("watching the configuration")?;
    }
    let handler = Arc::new(service::CheckHandler {
        live,
        metrics: metrics.clone(),
    });

    let grpc = TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC on {}", args.grpc_addr))?;
    let http = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding HTTP on {}", args.http_addr))?;
    announce(grpc.local_addr()?, http.local_addr()?)?;

    let draining = Arc::new(AtomicBool::new(false));
    let state = http::AppState {
        registry: Arc::new(registry),
        draining: draining.clone(),
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AuthorizationServer<service::AuthzService>>()
        .await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let grpc_server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(AuthorizationServer::new(service::AuthzService(handler)))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            stopped(stop_rx.clone()),
        );
    let http_server =
        axum::serve(http, http::router(state)).with_graceful_shutdown(stopped(stop_rx));
    let signals = async {
        wait_for_termination().await;
        tracing::info!("termination signal: draining");
        draining.store(true, Ordering::Relaxed);
        health_reporter
            .set_not_serving::<AuthorizationServer<service::AuthzService>>()
            .await;
        let _ = stop_tx.send(true);
    };
    let (grpc_result, http_result, ()) = tokio::join!(grpc_server, http_server, signals);
    grpc_result.context("gRPC server")?;
    http_result.context("HTTP server")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Logs the bound addresses and, when `GATEHOUSE_READY_FILE` is set, writes
/// them there as JSON (tests bind port 0 and read the ports back).
fn announce(grpc: SocketAddr, http: SocketAddr) -> Result<()> {
    tracing::info!(%grpc, %http, "listening");
    if let Some(path) = std::env::var_os("GATEHOUSE_READY_FILE") {
        let body = serde_json::json!({ "grpc": grpc, "http": http }).to_string();
        // Write then rename, so a reader never sees half a file.
        let tmp = PathBuf::from(&path).with_extension("tmp");
        std::fs::write(&tmp, body).context("writing GATEHOUSE_READY_FILE")?;
        std::fs::rename(&tmp, &path).context("writing GATEHOUSE_READY_FILE")?;
    }
    Ok(())
}

async fn wait_for_termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
