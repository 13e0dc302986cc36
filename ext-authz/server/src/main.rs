//! `gatehouse-authz`: Envoy's external authorization service (ext_authz v3).
//!
//! One YAML file names the filters (see `ext-authz/README.md`); a route picks
//! one with `context_extensions: { gatehouse_filter: <name> }`. The file and
//! every key file it names are watched and reloaded on change; a bad reload
//! keeps the previous configuration.
//!
//! Here: the command line and the wiring of the gRPC server, the side port
//! and the watcher. Not here: decisions (`gatehouse-authz-core` and the
//! modules below), nor the process plumbing both services share (shutdown,
//! logging, ready file, side port, watcher: `gatehouse-service-kit`).

mod feed;
mod http;
mod load;
mod metrics;
mod oidc;
mod service;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use gatehouse_service_kit::{Listening, LogFormat, Shutdown};
use tokio::net::TcpListener;

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
    gatehouse_service_kit::init_tracing("info", args.log_format);
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
        gatehouse_service_kit::spawn_watcher(live.clone(), move |result| match result {
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
    // Read once: the socket is bound for the life of the process.
    let feed_socket = live
        .current()
        .filters
        .config()
        .and_then(|c| c.feed_socket())
        // Relative to the configuration's directory, as every file it names.
        .map(|p| feed::bind(&config.parent().unwrap_or(std::path::Path::new(".")).join(p)))
        .transpose()?;
    let feed_live = live.clone();
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
    Listening {
        grpc: grpc.local_addr()?,
        http: http.local_addr()?,
        debug: None,
    }
    .announce()?;

    let shutdown = Shutdown::new();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AuthorizationServer<service::AuthzService>>()
        .await;

    let grpc_server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(AuthorizationServer::new(service::AuthzService(handler)))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
            shutdown.stopped(),
        );
    let http_server = axum::serve(http, http::router(Arc::new(registry), shutdown.clone()))
        .with_graceful_shutdown(shutdown.stopped());
    let signals = shutdown.on_signal(async {
        health_reporter
            .set_not_serving::<AuthorizationServer<service::AuthzService>>()
            .await;
    });
    let feed_server = async {
        match feed_socket {
            Some(listener) => feed::serve(listener, feed_live, shutdown.clone()).await,
            None => Ok(()),
        }
    };
    let (grpc_result, http_result, feed_result, ()) =
        tokio::join!(grpc_server, http_server, feed_server, signals);
    grpc_result.context("gRPC server")?;
    http_result.context("HTTP server")?;
    feed_result?;
    tracing::info!("stopped cleanly");
    Ok(())
}
