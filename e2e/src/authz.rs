//! `gatehouse-authz` as a child process, its configuration and key files in
//! a directory of their own.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Result;
use serde::Deserialize;
use tempfile::TempDir;

use crate::paths;
use crate::process::ChildProcess;
use crate::ratelimit::write_atomically;

/// How to start one service. Create with [`AuthzService::builder`].
#[derive(Debug, Default)]
pub struct AuthzBuilder {
    config: String,
    files: Vec<(String, String)>,
    binary: Option<std::path::PathBuf>,
    cpus: Option<String>,
    quiet: bool,
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
        let text = self
            .client
            .get(self.http_url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok(crate::process::metric_value(&text, line_prefix))
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

    /// Runs this binary instead of `target/debug/gatehouse-authz`.
    #[must_use]
    pub fn binary(mut self, path: std::path::PathBuf) -> Self {
        self.binary = Some(path);
        self
    }

    /// Pins the service to a CPU list (`taskset -c`).
    #[must_use]
    pub fn cpus(mut self, list: &str) -> Self {
        self.cpus = Some(list.to_owned());
        self
    }

    /// Whether dropping the service prints its log (default on, for tests).
    #[must_use]
    pub fn log_on_drop(mut self, on: bool) -> Self {
        self.quiet = !on;
        self
    }

    /// Starts the service and waits until `/readyz` answers 200.
    pub async fn start(self) -> Result<AuthzService> {
        let bin = match &self.binary {
            Some(path) => path.clone(),
            None => paths::service_bin("gatehouse-authz")?,
        };
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-authz-")
            .tempdir()?;
        let config = dir.path().join("authz.yaml");
        std::fs::write(&config, &self.config)?;
        for (name, text) in &self.files {
            std::fs::write(dir.path().join(name), text)?;
        }
        let ready_file = dir.path().join("ready.json");
        let mut command = crate::process::pinned_command(self.cpus.as_deref(), &bin)?;
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", if self.quiet { "error" } else { "info" })
            .env("GATEHOUSE_AUTHZ_CONFIG", &config)
            .env("GATEHOUSE_AUTHZ_GRPC_ADDR", "127.0.0.1:0")
            .env("GATEHOUSE_AUTHZ_HTTP_ADDR", "127.0.0.1:0")
            .env("GATEHOUSE_READY_FILE", &ready_file);
        let mut process = ChildProcess::spawn(
            "gatehouse-authz",
            &mut command,
            &dir.path().join("authz.log"),
        )?;
        process.set_log_on_drop(!self.quiet);
        let client = reqwest::Client::builder().no_proxy().build()?;
        let ready: ReadyFile = crate::process::until_ready_file(
            "gatehouse-authz",
            &mut process,
            &ready_file,
            |ready: &ReadyFile| {
                crate::process::answers_ok(client.clone(), format!("http://{}/readyz", ready.http))
            },
        )
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
