//! `gatehouse-ratelimit` as a child process, laid out as the reference is
//! deployed: `RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config/*.yaml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use serde::Deserialize;
use tempfile::TempDir;

use crate::launch::{Launch, ServesReadyz};
use crate::poll;
use crate::process::ChildProcess;
use crate::redis::Redis;

/// A gRPC client of the rate-limit service.
pub type Client = RateLimitServiceClient<tonic::transport::Channel>;

/// How to start one service. Create with [`RateLimitService::builder`].
#[derive(Debug, Default)]
pub struct RateLimitBuilder {
    files: Vec<(String, String)>,
    env: Vec<(String, String)>,
    launch: Launch,
    root_symlink: bool,
}

/// A running, ready `gatehouse-ratelimit`. Killed when dropped.
#[derive(Debug)]
pub struct RateLimitService {
    process: ChildProcess,
    grpc: SocketAddr,
    http: SocketAddr,
    debug: SocketAddr,
    config_dir: PathBuf,
    client: reqwest::Client,
    dir: TempDir,
}

#[derive(Deserialize)]
struct ReadyFile {
    grpc: SocketAddr,
    http: SocketAddr,
    debug: SocketAddr,
}

impl ServesReadyz for ReadyFile {
    fn http(&self) -> SocketAddr {
        self.http
    }
}

impl RateLimitService {
    /// A builder with no config files and the memory store.
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder::default()
    }

    /// The gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The gRPC port (Envoy templates use `{{RLS_PORT}}`).
    pub fn grpc_port(&self) -> u16 {
        self.grpc.port()
    }

    /// URL on the HTTP port (`/json`, `/healthcheck`, `/metrics`, ...).
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// URL on the debug port (`/rlconfig`).
    pub fn debug_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.debug)
    }

    /// An HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// A new gRPC client.
    pub async fn grpc_client(&self) -> Result<RateLimitServiceClient<tonic::transport::Channel>> {
        Ok(RateLimitServiceClient::connect(format!("http://{}", self.grpc)).await?)
    }

    /// Replaces (or adds) a config file atomically, as a deploy would.
    pub fn write_config(&self, name: &str, text: &str) -> Result<()> {
        write_atomically(&self.config_dir.join(name), text)
    }

    /// The directory holding `RUNTIME_ROOT` (`<this>/current`).
    pub fn runtime_parent(&self) -> &Path {
        self.dir.path()
    }

    /// The directory the service reads.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The pid (and process group id).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub async fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        crate::process::terminate("gatehouse-ratelimit", &mut self.process).await
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The loaded rules, as the debug port's `/rlconfig` lists them.
    pub async fn rlconfig(&self) -> Result<String> {
        Ok(self
            .client
            .get(self.debug_url("/rlconfig"))
            .send()
            .await?
            .text()
            .await?)
    }

    /// Waits until `/rlconfig` contains `needle`: a reload went through.
    pub async fn until_rlconfig_contains(&self, needle: &str) -> Result<()> {
        poll::until(
            &format!("/rlconfig showing {needle:?}"),
            poll::READY_DEADLINE,
            || async { Ok(self.rlconfig().await?.contains(needle).then_some(())) },
        )
        .await
    }

    /// Waits, if needed, until the window of `entries` in `domain` has at
    /// least 20 seconds left, so counting to a limit never straddles a window
    /// boundary by luck. Asks the service's `/json` with `hits_addend: 0`.
    pub async fn fresh_window(&self, domain: &str, entries: &[(&str, &str)]) -> Result<()> {
        let peek = serde_json::json!({
            "domain": domain,
            "descriptors": [{
                "entries": entries.iter().map(|(k, v)| serde_json::json!({"key": k, "value": v})).collect::<Vec<_>>(),
                "hits_addend": 0
            }]
        });
        let answer: serde_json::Value = self
            .http()
            .post(self.http_url("/json"))
            .json(&peek)
            .send()
            .await?
            .json()
            .await?;
        let left = answer["statuses"][0]["durationUntilReset"]
            .as_str()
            .and_then(|d| d.trim_end_matches('s').parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if left < 20 {
            // Deliberately waits out the clock (not a readiness wait): at most 20 s.
            tokio::time::sleep(std::time::Duration::from_secs(left + 1)).await;
        }
        Ok(())
    }

    /// The counter a metric line reports, 0 when absent.
    pub async fn metric(&self, line_prefix: &str) -> Result<f64> {
        crate::process::fetch_metric(&self.client, &self.http_url("/metrics"), line_prefix).await
    }
}

impl RateLimitBuilder {
    /// Adds a config file (`config/<name>`).
    #[must_use]
    pub fn file(mut self, name: &str, text: &str) -> Self {
        self.files.push((name.to_owned(), text.to_owned()));
        self
    }

    /// Sets an environment variable of the service.
    #[must_use]
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.env.push((name.to_owned(), value.to_string()));
        self
    }

    /// Makes `RUNTIME_ROOT` (`current`) a symlink to `v1/`, as the
    /// reference's deployments swap it.
    #[must_use]
    pub fn root_as_symlink(mut self) -> Self {
        self.root_symlink = true;
        self
    }

    crate::launch_options!(binary);

    /// Counts in this Redis (`BACKEND_TYPE=redis`, TCP).
    #[must_use]
    pub fn redis(self, redis: &Redis) -> Self {
        self.env("BACKEND_TYPE", "redis")
            .env("REDIS_SOCKET_TYPE", "tcp")
            .env("REDIS_URL", format!("127.0.0.1:{}", redis.port()))
    }

    /// Starts the service and waits until `/readyz` answers 200.
    pub async fn start(self) -> Result<RateLimitService> {
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-rls-")
            .tempdir()?;
        let root = dir.path().join("current");
        let config_dir = root.join("ratelimit/config");
        if self.root_symlink {
            std::fs::create_dir_all(dir.path().join("v1/ratelimit/config"))?;
            std::os::unix::fs::symlink("v1", &root)?;
        }
        std::fs::create_dir_all(&config_dir)?;
        for (name, text) in &self.files {
            std::fs::write(config_dir.join(name), text)?;
        }
        let mut command = self.launch.service_command("gatehouse-ratelimit")?;
        command
            .env("RUNTIME_ROOT", &root)
            .env("RUNTIME_SUBDIRECTORY", "ratelimit")
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("GRPC_HOST", "127.0.0.1")
            .env("GRPC_PORT", "0")
            .env("DEBUG_HOST", "127.0.0.1")
            .env("DEBUG_PORT", "0")
            .env("USE_STATSD", "false")
            .env("LOG_LEVEL", "info");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let (process, ready, client) = self
            .launch
            .start_service::<ReadyFile>("gatehouse-ratelimit", &mut command, dir.path())
            .await?;
        Ok(RateLimitService {
            process,
            grpc: ready.grpc,
            http: ready.http,
            debug: ready.debug,
            config_dir,
            client,
            dir,
        })
    }
}

/// Writes a file through a temporary name and a rename, so a watcher never
/// reads it half written.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// A `ShouldRateLimit` request with one descriptor per entry list.
pub fn request(domain: &str, descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.to_owned(),
        descriptors: descriptors
            .iter()
            .map(|entries| RateLimitDescriptor {
                entries: entries
                    .iter()
                    .map(|(k, v)| Entry {
                        key: (*k).to_owned(),
                        value: (*v).to_owned(),
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        hits_addend: 0,
    }
}
