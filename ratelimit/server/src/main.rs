//! `gatehouse-ratelimit`: Envoy's rate limit service (RLS v3), a drop-in
//! replacement for envoyproxy/ratelimit.
//!
//! Configuration comes from the same environment variables and the same
//! directory of YAML files as the reference (see `ratelimit/README.md`).

mod config_dir;
mod http;
mod metrics;
mod resp;
mod service;
mod settings;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use gatehouse_ratelimit_core::{Limiter, MemoryStore};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config_dir::{LiveConfig, Reloaded};
use crate::settings::Settings;

// Every decision allocates small, short-lived strings (keys, statuses, h2
// frames); glibc's malloc spent about a tenth of the service's CPU on them
// (perf, `make bench SETS=ratelimit`). mimalloc is built for that pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Envoy rate limit service, configured like envoyproxy/ratelimit (environment
/// variables and a directory of YAML files).
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Settings come from environment variables, as for envoyproxy/ratelimit \
(every one, with defaults, in ratelimit/README.md):
  RUNTIME_ROOT, RUNTIME_SUBDIRECTORY, RUNTIME_APPDIRECTORY, RUNTIME_WATCH_ROOT,
  RUNTIME_IGNOREDOTFILES       where the YAML configuration directory is, and how it is watched
  GRPC_HOST, GRPC_PORT         the RLS gRPC listener (default 0.0.0.0:8081)
  HOST, PORT                   HTTP side port: /json, /healthcheck, /healthz, /readyz, /metrics (default 0.0.0.0:8080)
  DEBUG_HOST, DEBUG_PORT       debug port: /rlconfig, /metrics (default 0.0.0.0:6070)
  BACKEND_TYPE                 memory (default) or redis
  REDIS_SOCKET_TYPE, REDIS_TYPE, REDIS_URL, REDIS_AUTH, REDIS_TLS, REDIS_POOL_SIZE,
  REDIS_TIMEOUT, REDIS_PERSECOND*  the Redis store (single, cluster or sentinel)
  SHADOW_MODE, NEAR_LIMIT_RATIO, LOCAL_CACHE_SIZE_IN_BYTES, EXPIRATION_JITTER_MAX_SECONDS,
  STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT, CACHE_KEY_PREFIX, MERGE_DOMAIN_CONFIG
  LIMIT_RESPONSE_HEADERS_ENABLED, LIMIT_LIMIT_HEADER, LIMIT_REMAINING_HEADER, LIMIT_RESET_HEADER
  LOG_LEVEL, LOG_FORMAT, USE_STATSD
  GATEHOUSE_STORE_TIMEOUT, GATEHOUSE_STORE_MAX_PENDING, GATEHOUSE_STORE_FAILURE,
  GATEHOUSE_MEMORY_MAX_KEYS, GATEHOUSE_METRIC_MAX_VALUE_LABELS, GATEHOUSE_RETRY_AFTER   Gatehouse's own
Settings the reference has and this service does not are refused at start, by name."
)]
struct Args {
    /// Load and check a configuration directory, print the rules, and exit
    /// (non-zero with the error when it is invalid).
    #[arg(long, value_name = "DIR")]
    check_config: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(dir) = args.check_config {
        return check_config(&dir);
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gatehouse-ratelimit: invalid setting: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gatehouse-ratelimit: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "gatehouse-ratelimit stopped");
            eprintln!("gatehouse-ratelimit: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn check_config(dir: &std::path::Path) -> std::process::ExitCode {
    let loaded = config_dir::read_dir(dir, false)
        .and_then(|snapshot| Ok((snapshot.len(), snapshot.load(false)?)));
    match loaded {
        Ok((files, config)) => {
            print!("{}", config.dump());
            println!(
                "ok: {} files, {} rules in {}",
                files,
                config.rules().len(),
                dir.display()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", dir.display());
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if settings.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(settings: Settings) -> Result<()> {
    let config_dir = settings.runtime.config_dir();
    let live = Arc::new(
        LiveConfig::load(settings.runtime.clone())
            .with_context(|| format!("loading configuration from {}", config_dir.display()))?,
    );
    tracing::info!(dir = %config_dir.display(), rules = live.current().rules().len(), "configuration loaded");

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(metrics::Metrics::register(
        &mut registry,
        settings.metric_max_value_labels,
    ));
    let store = Arc::new(match &settings.backend {
        settings::Backend::Memory => {
            store::Backend::Memory(MemoryStore::with_max_keys(settings.memory_max_keys))
        }
        settings::Backend::Redis(redis) => {
            let redis_metrics = store::RedisMetrics {
                batch_sizes: metrics.redis_batch_size.clone(),
                pending: metrics.store_pending.clone(),
                overloaded: metrics.store_overloaded.clone(),
            };
            store::Backend::Redis(connect_redis(redis, redis_metrics).await)
        }
    });
    registry
        .sub_registry_with_prefix("gatehouse_ratelimit")
        .register_collector(Box::new(metrics::MemoryStoreStats(store.clone())));

    metrics.config_load_success.inc();
    if settings.use_statsd {
        tracing::info!(
            "USE_STATSD is on: statsd is not offered, metrics are served in Prometheus format on /metrics"
        );
    }

    let handler = Arc::new(service::RlsHandler {
        live: live.clone(),
        limiter: Limiter::new(settings.limiter.clone()),
        store,
        metrics: metrics.clone(),
        failure_policy: settings.failure_policy,
    });

    {
        let metrics = metrics.clone();
        config_dir::spawn_watcher(live.clone(), move |result| match result {
            Ok(Reloaded::Applied { files }) => {
                metrics.config_load_success.inc();
                tracing::info!(files, "configuration reloaded");
            }
            Ok(Reloaded::Unchanged) => {}
            Err(e) => {
                metrics.config_load_error.inc();
                tracing::error!(error = %e, "configuration reload refused, keeping the previous one");
            }
        })
        .context("watching the configuration directory")?;
    }

    let grpc = TcpListener::bind(settings.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC on {}", settings.grpc_addr))?;
    let http = TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("binding HTTP on {}", settings.http_addr))?;
    let debug = TcpListener::bind(settings.debug_addr)
        .await
        .with_context(|| format!("binding debug on {}", settings.debug_addr))?;
    let addrs = (grpc.local_addr()?, http.local_addr()?, debug.local_addr()?);
    announce(addrs)?;

    let draining = Arc::new(AtomicBool::new(false));
    let state = http::AppState {
        handler: handler.clone(),
        registry: Arc::new(registry),
        draining: draining.clone(),
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<RateLimitServiceServer<service::RlsService>>()
        .await;
    health_reporter
        .set_service_status("ratelimit", tonic_health::ServingStatus::Serving)
        .await;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let grpc_server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(RateLimitServiceServer::new(service::RlsService(handler)))
        .serve_with_incoming_shutdown(tokio_stream_from(grpc), stopped(stop_rx.clone()));
    let http_server = axum::serve(http, http::router(state.clone()))
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let debug_server =
        axum::serve(debug, http::debug_router(state)).with_graceful_shutdown(stopped(stop_rx));

    let signals = async {
        wait_for_termination().await;
        tracing::info!("termination signal: draining");
        draining.store(true, Ordering::Relaxed);
        health_reporter
            .set_not_serving::<RateLimitServiceServer<service::RlsService>>()
            .await;
        health_reporter
            .set_service_status("ratelimit", tonic_health::ServingStatus::NotServing)
            .await;
        let _ = stop_tx.send(true);
    };
    let (grpc_result, http_result, debug_result, ()) =
        tokio::join!(grpc_server, http_server, debug_server, signals);
    grpc_result.context("gRPC server")?;
    http_result.context("HTTP server")?;
    debug_result.context("debug server")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

fn tokio_stream_from(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Logs the bound addresses and, when `GATEHOUSE_READY_FILE` is set, writes
/// them there as JSON (tests bind port 0 and read the ports back).
fn announce((grpc, http, debug_port): (SocketAddr, SocketAddr, SocketAddr)) -> Result<()> {
    tracing::info!(%grpc, %http, debug = %debug_port, "listening");
    if let Some(path) = std::env::var_os("GATEHOUSE_READY_FILE") {
        let body =
            serde_json::json!({ "grpc": grpc, "http": http, "debug": debug_port }).to_string();
        // Write then rename, so a reader never sees half a file.
        let tmp = PathBuf::from(&path).with_extension("tmp");
        std::fs::write(&tmp, body).context("writing GATEHOUSE_READY_FILE")?;
        std::fs::rename(&tmp, &path).context("writing GATEHOUSE_READY_FILE")?;
    }
    Ok(())
}

async fn connect_redis(
    redis: &settings::RedisSettings,
    metrics: store::RedisMetrics,
) -> store::RedisStore {
    // As the reference: wait for Redis at startup, retrying with backoff.
    let mut delay = Duration::from_millis(200);
    loop {
        match store::RedisStore::connect(redis, metrics.clone()).await {
            Ok(s) => return s,
            Err(e) => {
                tracing::warn!(error = format!("{e:#}"), retry_in = ?delay, "redis not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
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
