//! `gatehouse-ratelimit`: Envoy's rate limit service (RLS v3), a drop-in
//! replacement for envoyproxy/ratelimit.
//!
//! Configuration comes from the same environment variables and the same
//! directory of YAML files as the reference (see `ratelimit/README.md`).
//!
//! Here: the command line and the wiring of the gRPC server, the side and
//! debug ports, the store and the watcher. Not here: decisions
//! (`gatehouse-ratelimit-core`), nor the process plumbing both services share
//! (shutdown, logging, ready file, side port, watcher: `gatehouse-service-kit`).

mod config_dir;
mod demand;
mod http;
#[cfg(test)]
mod limiter_tests;
mod metrics;
mod quota;
mod resp;
mod service;
mod settings;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use envoy_types::pb::envoy::service::rate_limit_quota::v3::rate_limit_quota_service_server::RateLimitQuotaServiceServer;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use gatehouse_ratelimit_core::{Limiter, MemoryStore};
use gatehouse_service_kit::{Listening, LogFormat, Shutdown, SidePort};
use tokio::net::TcpListener;

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
    let log_format = if settings.log_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    gatehouse_service_kit::init_tracing(&settings.log_level, log_format);
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
    // The quota service's claims live where the counters do.
    let demands = Arc::new(match &settings.backend {
        settings::Backend::Memory => demand::Demands::Memory(Default::default()),
        settings::Backend::Redis(redis) => {
            let conn = store::client_conns(redis, 1)
                .await?
                .pop()
                .context("no Redis connection for the quota service")?;
            demand::Demands::Redis(demand::RedisDemands::new(conn, redis.op_timeout))
        }
    });

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
        gatehouse_service_kit::spawn_watcher(live.clone(), move |result| match result {
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
    Listening {
        grpc: grpc.local_addr()?,
        http: http.local_addr()?,
        debug: Some(debug.local_addr()?),
    }
    .announce()?;

    let shutdown = Shutdown::new();
    let state = http::AppState {
        handler: handler.clone(),
        side: SidePort::new(
            Arc::new(registry),
            shutdown.clone(),
            http::StoreReadiness(handler.store.clone()),
        ),
    };
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<RateLimitServiceServer<service::RlsService>>()
        .await;
    health_reporter
        .set_service_status("ratelimit", tonic_health::ServingStatus::Serving)
        .await;

    let grpc_server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(health_service)
        .add_service(RateLimitServiceServer::new(service::RlsService(handler)))
        .add_service(RateLimitQuotaServiceServer::new(quota::QuotaService::new(
            live.clone(),
            shutdown.clone(),
            demands,
            metrics.clone(),
        )))
        .serve_with_incoming_shutdown(tokio_stream_from(grpc), shutdown.stopped());
    let http_server =
        axum::serve(http, http::router(state.clone())).with_graceful_shutdown(shutdown.stopped());
    let debug_server =
        axum::serve(debug, http::debug_router(state)).with_graceful_shutdown(shutdown.stopped());

    let signals = shutdown.on_signal(async {
        health_reporter
            .set_not_serving::<RateLimitServiceServer<service::RlsService>>()
            .await;
        health_reporter
            .set_service_status("ratelimit", tonic_health::ServingStatus::NotServing)
            .await;
    });
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
