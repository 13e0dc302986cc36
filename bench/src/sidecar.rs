//! The side service of a scenario (null RLS, null ext_authz,
//! gatehouse-ratelimit on memory or Redis, gatehouse-authz), started from the
//! release binaries `make bench` builds.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use e2e::RateLimitService;
use e2e::paths;
use e2e::poll;
use e2e::process::ChildProcess;
use e2e::redis::Redis;
use tempfile::TempDir;

use crate::session::{
    BENCH_SESSION_KEY, bench_authz_config, bench_authz_fast_config, store_bench_session,
};

/// A rate-limit service beside Envoy (or alone, for raw gRPC load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sidecar {
    /// None.
    None,
    /// The null RLS: answers OK at once; the cost floor of the side call.
    Null,
    /// gatehouse-ratelimit on the memory store.
    Memory,
    /// gatehouse-ratelimit on its own Redis.
    Redis,
    /// The null ext_authz service: allows at once; the floor of the side call.
    NullAuthz,
    /// gatehouse-authz with the bench's SSO configuration.
    Authz,
    /// The same with sessions in its own Redis; the bench session is stored
    /// there under id `bench`.
    AuthzRedis,
    /// gatehouse-authz with the SSO fast path on: it serves the feed the
    /// gatehouse-session filter polls.
    AuthzFast,
}

/// The rate-limit configuration every bench scenario uses: one rule so high
/// that it is never hit, so every decision is counted and allowed.
pub const BENCH_RLS_CONFIG: &str = "domain: edge\ndescriptors:\n  - key: generic_key\n    value: generic\n    rate_limit: { unit: second, requests_per_unit: 1000000000 }\n";

/// Where the benchmark finds release binaries.
pub(crate) fn release_bin(name: &str) -> Result<PathBuf> {
    paths::built(
        name,
        paths::target_dir().join("release").join(name),
        "run `make bench`, which builds it",
    )
}

/// A running side service of a scenario.
#[derive(Debug)]
pub(crate) enum RunningSidecar {
    Null {
        process: ChildProcess,
        addr: SocketAddr,
        _dir: TempDir,
    },
    Gatehouse {
        service: Box<RateLimitService>,
        _redis: Option<Redis>,
    },
    Authz {
        service: Box<e2e::authz::AuthzService>,
        _redis: Option<Redis>,
    },
}

/// Starts the null service `bin` (listening where `env` says) and reads
/// the address it prints first.
async fn null_sidecar(
    bin: &str,
    env: &str,
    cpus: Option<&str>,
) -> Result<(ChildProcess, SocketAddr, TempDir)> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join(format!("{bin}.log"));
    let mut command = e2e::process::pinned_command(cpus, &release_bin(bin)?)?;
    command.env(env, "127.0.0.1:0");
    let mut process = ChildProcess::spawn(bin, &mut command, &log)?;
    process.set_log_on_drop(false);
    let addr = poll::until(&format!("{bin} address"), poll::READY_DEADLINE, || {
        let exited = process.exit_status();
        let first = process
            .log()
            .lines()
            .next()
            .and_then(|l| l.parse::<SocketAddr>().ok());
        async move {
            if exited?.is_some() {
                bail!("the null service exited");
            }
            Ok(first)
        }
    })
    .await?;
    Ok((process, addr, dir))
}

impl RunningSidecar {
    pub(crate) async fn start(kind: Sidecar, cpus: Option<&str>) -> Result<Option<Self>> {
        match kind {
            Sidecar::None => Ok(None),
            Sidecar::Null | Sidecar::NullAuthz => {
                let (bin, env) = if kind == Sidecar::Null {
                    ("null-rls", "NULL_RLS_ADDR")
                } else {
                    ("null-authz", "NULL_AUTHZ_ADDR")
                };
                let (process, addr, dir) = null_sidecar(bin, env, cpus).await?;
                Ok(Some(Self::Null {
                    process,
                    addr,
                    _dir: dir,
                }))
            }
            Sidecar::Authz | Sidecar::AuthzRedis | Sidecar::AuthzFast => {
                use base64::Engine as _;
                let key = base64::engine::general_purpose::STANDARD.encode(BENCH_SESSION_KEY);
                let mut config = if kind == Sidecar::AuthzFast {
                    bench_authz_fast_config()
                } else {
                    bench_authz_config()
                };
                let redis = if kind == Sidecar::AuthzRedis {
                    let mut redis = Redis::start().await?;
                    redis.set_log_on_drop(false);
                    store_bench_session(&redis).await?;
                    config.push_str(&format!(
                        "      session_store:\n        redis_url: redis://127.0.0.1:{}/0\n",
                        redis.port()
                    ));
                    Some(redis)
                } else {
                    None
                };
                let mut builder = e2e::authz::AuthzService::builder(&config)
                    .file("secret", "bench\n")
                    .file("session-keys", &format!("{key}\n"))
                    .binary(release_bin("gatehouse-authz")?)
                    .log_on_drop(false);
                if let Some(list) = cpus {
                    builder = builder.cpus(list);
                }
                Ok(Some(Self::Authz {
                    service: Box::new(builder.start().await?),
                    _redis: redis,
                }))
            }
            Sidecar::Memory | Sidecar::Redis => {
                let redis = if kind == Sidecar::Redis {
                    let mut redis = Redis::start().await?;
                    redis.set_log_on_drop(false);
                    Some(redis)
                } else {
                    None
                };
                let mut builder = RateLimitService::builder()
                    .binary(release_bin("gatehouse-ratelimit")?)
                    .file("edge.yaml", BENCH_RLS_CONFIG)
                    .env("LOG_LEVEL", "warn")
                    .log_on_drop(false);
                if let Some(list) = cpus {
                    builder = builder.cpus(list);
                }
                if let Some(redis) = &redis {
                    builder = builder.redis(redis);
                }
                // BENCH_RLS_<NAME>=value sets <NAME> for the service, to compare settings.
                for (name, value) in std::env::vars() {
                    if let Some(name) = name.strip_prefix("BENCH_RLS_") {
                        builder = builder.env(name, value);
                    }
                }
                Ok(Some(Self::Gatehouse {
                    service: Box::new(builder.start().await?),
                    _redis: redis,
                }))
            }
        }
    }

    pub(crate) fn grpc_addr(&self) -> SocketAddr {
        match self {
            Self::Null { addr, .. } => *addr,
            Self::Gatehouse { service, .. } => service.grpc_addr(),
            Self::Authz { service, .. } => service.grpc_addr(),
        }
    }

    /// The socket of gatehouse-authz's fast-path feed, when it serves one.
    pub(crate) fn feed_socket(&self) -> Option<std::path::PathBuf> {
        match self {
            Self::Authz { service, .. } => {
                Some(service.dir().join("feed.sock")).filter(|p| p.exists())
            }
            _ => None,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        match self {
            Self::Null { process, .. } => process.pid(),
            Self::Gatehouse { service, .. } => service.pid(),
            Self::Authz { service, .. } => service.pid(),
        }
    }
}

/// Prints how many decisions the service sent to Redis per pipeline.
pub(crate) async fn report_batches(name: &str, sidecar: Option<&RunningSidecar>) {
    if let Some(RunningSidecar::Gatehouse {
        service,
        _redis: Some(_),
    }) = sidecar
    {
        let sum = service
            .metric("gatehouse_ratelimit_redis_batch_size_sum")
            .await
            .unwrap_or(0.0);
        let count = service
            .metric("gatehouse_ratelimit_redis_batch_size_count")
            .await
            .unwrap_or(0.0);
        if count > 0.0 {
            eprintln!(
                "{name}: {:.1} decisions per Redis pipeline on average",
                sum / count
            );
        }
    }
}
