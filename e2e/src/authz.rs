//! `gatehouse-authz` as a child process, its configuration and key files in
//! a directory of their own.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Result;
use serde::Deserialize;
use tempfile::TempDir;

use crate::launch::{Launch, ServesReadyz};
use crate::process::ChildProcess;
use crate::ratelimit::write_atomically;

/// How to start one service. Create with [`AuthzService::builder`].
#[derive(Debug, Default)]
pub struct AuthzBuilder {
    config: String,
    config_file: Option<std::path::PathBuf>,
    grpc_addr: Option<SocketAddr>,
    files: Vec<(String, String)>,
    launch: Launch,
}

/// A running, ready `gatehouse-authz`. Killed when dropped.
#[derive(Debug)]
pub struct AuthzService {
    process: ChildProcess,
    grpc: SocketAddr,
    http: SocketAddr,
    client: reqwest::Client,
    dir: TempDir,
}

#[derive(Deserialize)]
struct ReadyFile {
    grpc: SocketAddr,
    http: SocketAddr,
}

impl ServesReadyz for ReadyFile {
    fn http(&self) -> SocketAddr {
        self.http
    }
}

impl AuthzService {
    /// A builder with this configuration (`authz.yaml`).
    pub fn builder(config: &str) -> AuthzBuilder {
        AuthzBuilder {
            config: config.to_owned(),
            ..AuthzBuilder::default()
        }
    }

    /// The gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// The pid (and process group id).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The gRPC port (Envoy templates use `{{AUTHZ_PORT}}`).
    pub fn grpc_port(&self) -> u16 {
        self.grpc.port()
    }

    /// URL on the HTTP side port (`/healthz`, `/readyz`, `/metrics`).
    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The directory holding `authz.yaml` and the files beside it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces (or adds) a file beside `authz.yaml` atomically.
    pub fn write_file(&self, name: &str, text: &str) -> Result<()> {
        write_atomically(&self.dir.path().join(name), text)
    }

    /// The counter a metric line reports, 0 when absent.
    pub async fn metric(&self, line_prefix: &str) -> Result<f64> {
        crate::process::fetch_metric(&self.client, &self.http_url("/metrics"), line_prefix).await
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub async fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        crate::process::terminate("gatehouse-authz", &mut self.process).await
    }
}

impl AuthzBuilder {
    /// Adds a file beside `authz.yaml` (a key file, say).
    #[must_use]
    pub fn file(mut self, name: &str, text: &str) -> Self {
        self.files.push((name.to_owned(), text.to_owned()));
        self
    }

    /// Reads (and watches) this `authz.yaml` instead of writing its own:
    /// a file another program renders, e.g. `gatehouse serve
    /// --services-out`.
    #[must_use]
    pub fn config_file(mut self, path: &Path) -> Self {
        self.config_file = Some(path.to_path_buf());
        self
    }

    /// Serves gRPC on this address instead of a free port the service
    /// picks: for a configuration that must name it before the service
    /// starts.
    #[must_use]
    pub fn grpc_addr(mut self, addr: SocketAddr) -> Self {
        self.grpc_addr = Some(addr);
        self
    }

    crate::launch_options!(binary);

    /// Starts the service and waits until `/readyz` answers 200.
    pub async fn start(self) -> Result<AuthzService> {
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-authz-")
            .tempdir()?;
        let config = match &self.config_file {
            Some(path) => path.clone(),
            None => {
                let config = dir.path().join("authz.yaml");
                std::fs::write(&config, &self.config)?;
                config
            }
        };
        for (name, text) in &self.files {
            std::fs::write(dir.path().join(name), text)?;
        }
        let mut command = self.launch.service_command("gatehouse-authz")?;
        command
            .env(
                "RUST_LOG",
                if self.launch.log_on_drop {
                    "info"
                } else {
                    "error"
                },
            )
            .env("GATEHOUSE_AUTHZ_CONFIG", &config)
            .env(
                "GATEHOUSE_AUTHZ_GRPC_ADDR",
                self.grpc_addr
                    .map_or("127.0.0.1:0".into(), |a| a.to_string()),
            )
            .env("GATEHOUSE_AUTHZ_HTTP_ADDR", "127.0.0.1:0");
        let (process, ready, client) = self
            .launch
            .start_service::<ReadyFile>("gatehouse-authz", &mut command, dir.path())
            .await?;
        Ok(AuthzService {
            process,
            grpc: ready.grpc,
            http: ready.http,
            client,
            dir,
        })
    }
}
