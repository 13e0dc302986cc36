//! Stock Envoy as a child process, configured from a template.
//!
//! Templates fill `${NAME}` placeholders with gatehouse-config's own
//! [`gatehouse_config::substitute`], the one `gatehouse render --set` uses, so
//! the harness and the CLI agree on what a placeholder is and an unfilled one
//! fails loudly in both.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use tempfile::TempDir;

use crate::echo::Echo;
use crate::paths;
use crate::poll;
use crate::process::{ChildProcess, run_to_completion};

/// How to start one Envoy. Create with [`Envoy::from_template`].
#[derive(Debug)]
pub struct EnvoyBuilder {
    template: String,
    origin: String,
    vars: BTreeMap<String, String>,
    concurrency: u32,
    log_level: String,
    launch: crate::launch::Launch,
}

/// A running, ready Envoy. Killed (with its process group) when dropped.
#[derive(Debug)]
pub struct Envoy {
    // Field order matters: the process is killed before its directory goes.
    process: ChildProcess,
    admin: SocketAddr,
    listeners: BTreeMap<String, SocketAddr>,
    base_id: String,
    config_path: PathBuf,
    client: reqwest::Client,
    _dir: TempDir,
}

impl Envoy {
    /// A builder for the template `e2e/testdata/envoy/<name>`.
    ///
    /// Templates use `${NAME}` placeholders. `LISTEN_PORT` and `ADMIN_PORT`
    /// default to 0 (Envoy binds a free port and the harness reads it back);
    /// `JWT_WASM` is the built jwt filter and `JWT_CONFIG` its configuration
    /// (default `{}`), filled in when the template uses them.
    pub fn from_template(name: &str) -> Result<EnvoyBuilder> {
        let path = paths::testdata(&format!("envoy/{name}"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading Envoy template {}", path.display()))?;
        Ok(EnvoyBuilder::from_text(&text, &path.display().to_string()))
    }

    /// Base URL of listener `ingress` (or the only listener), e.g. `http://127.0.0.1:41234`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingress())
    }

    /// Address of the `ingress` listener, else of the first listener.
    pub fn ingress(&self) -> SocketAddr {
        self.listeners
            .get("ingress")
            .or_else(|| self.listeners.values().next())
            .copied()
            .unwrap_or(self.admin)
    }

    /// Address of a named listener.
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.get(name).copied()
    }

    /// URL of an admin endpoint, e.g. `envoy.admin_url("/stats")`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// A counter or gauge from the admin `/stats`, 0 when Envoy has none by
    /// that name (e.g. `wasmcustom.gatehouse_jwt.allowed`).
    pub async fn stat(&self, name: &str) -> Result<u64> {
        let text = self
            .client
            .get(self.admin_url(&format!("/stats?filter=^{name}$")))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// A GET through the ingress listener.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    /// A shared HTTP client (no proxy from the environment, no pooling surprises).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Envoy's pid; also the id of its process group.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The base id Envoy picked (`--use-dynamic-base-id`).
    pub fn base_id(&self) -> &str {
        &self.base_id
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Where Envoy's log is written (removed when the Envoy drops).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The rendered bootstrap Envoy runs.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }
}

impl EnvoyBuilder {
    /// A builder for template text; `origin` names it in errors.
    pub fn from_text(text: &str, origin: &str) -> Self {
        let mut vars = BTreeMap::new();
        vars.insert("LISTEN_PORT".to_owned(), "0".to_owned());
        vars.insert("ADMIN_PORT".to_owned(), "0".to_owned());
        vars.insert("JWT_CONFIG".to_owned(), "{}".to_owned());
        Self {
            template: text.to_owned(),
            origin: origin.to_owned(),
            vars,
            concurrency: 1,
            log_level: std::env::var("ENVOY_LOG_LEVEL").unwrap_or_else(|_| "info".to_owned()),
            launch: crate::launch::Launch::default(),
        }
    }

    /// Sets placeholder `name`.
    #[must_use]
    pub fn var(mut self, name: &str, value: impl ToString) -> Self {
        self.vars.insert(name.to_owned(), value.to_string());
        self
    }

    /// Points `${UPSTREAM_PORT}` at an echo upstream.
    #[must_use]
    pub fn upstream(self, echo: &Echo) -> Self {
        self.var("UPSTREAM_PORT", echo.port())
    }

    /// Points `${RLS_PORT}` at a rate-limit service.
    #[must_use]
    pub fn ratelimit(self, rls: &crate::ratelimit::RateLimitService) -> Self {
        self.var("RLS_PORT", rls.grpc_port())
    }

    /// Points `${AUTHZ_PORT}` at an ext_authz service.
    #[must_use]
    pub fn authz(self, authz: &crate::authz::AuthzService) -> Self {
        self.var("AUTHZ_PORT", authz.grpc_port())
    }

    /// Envoy worker threads (`--concurrency`), 1 by default.
    #[must_use]
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = workers;
        self
    }

    crate::launch_options!();

    /// Renders the template, filling the wasm filter paths (`JWT_WASM`,
    /// `NOOP_WASM`, `ROUTER_WASM`, `SESSION_WASM`) the template uses, and
    /// `EARLY_HEADER_MUTATION` and `ROUTE_HEADERS_TO_REMOVE` (default `[]`:
    /// none).
    pub fn render(&self) -> Result<String> {
        let mut vars = self.vars.clone();
        for (placeholder, crate_name) in [
            ("JWT_WASM", "gatehouse_jwt"),
            ("NOOP_WASM", "gatehouse_noop"),
            ("ROUTER_WASM", "gatehouse_router"),
            ("SESSION_WASM", "gatehouse_session"),
        ] {
            if self.template.contains(placeholder) && !vars.contains_key(placeholder) {
                let wasm = paths::wasm_filter(crate_name)?;
                vars.insert(placeholder.to_owned(), wasm.display().to_string());
            }
        }
        // No early header mutation and no route header removal unless a
        // caller asks for them.
        for placeholder in ["EARLY_HEADER_MUTATION", "ROUTE_HEADERS_TO_REMOVE"] {
            if self.template.contains(placeholder) && !vars.contains_key(placeholder) {
                vars.insert(placeholder.to_owned(), "[]".to_owned());
            }
        }
        // A placeholder left without a value is an error naming it (only
        // YAML comments may mention one), so a template never reaches Envoy
        // half-filled.
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        gatehouse_config::substitute(&self.template, &vars)
            .map_err(|e| anyhow!("rendering {}: {e}", self.origin))
    }

    /// Starts Envoy and waits until its admin `/ready` says LIVE.
    ///
    /// If Envoy exits first (a bad bootstrap, a plugin that refuses its
    /// configuration), the error carries Envoy's own log.
    pub async fn start(self) -> Result<Envoy> {
        let envoy = paths::envoy_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-envoy-")
            .tempdir()?;
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, self.render()?)?;
        let admin_path = dir.path().join("admin-address");
        let base_id_path = dir.path().join("base-id");

        let mut command = crate::process::pinned_command(self.launch.cpus.as_deref(), &envoy)?;
        command
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            // Envoy picks a base id nobody else on the machine holds and writes
            // it down: parallel tests never clash on hot-restart shared memory.
            .arg("--use-dynamic-base-id")
            .arg("--base-id-path")
            .arg(&base_id_path)
            .arg("--concurrency")
            .arg(self.concurrency.to_string())
            .arg("--log-level")
            .arg(&self.log_level);
        let mut process =
            ChildProcess::spawn("envoy", &mut command, &dir.path().join("envoy.log"))?;
        process.set_log_on_drop(self.launch.log_on_drop);

        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        let admin = poll::until("envoy admin /ready", poll::READY_DEADLINE, || {
            ready_admin(&mut process, &admin_path, &client)
        })
        .await?;
        let listeners = listeners(&client, admin).await?;
        let base_id = std::fs::read_to_string(&base_id_path)
            .unwrap_or_default()
            .trim()
            .to_owned();
        Ok(Envoy {
            process,
            admin,
            listeners,
            base_id,
            config_path,
            client,
            _dir: dir,
        })
    }
}

/// One readiness check: the process is alive, the admin address is written and
/// `/ready` answers 200.
fn ready_admin(
    process: &mut ChildProcess,
    admin_path: &Path,
    client: &reqwest::Client,
) -> impl std::future::Future<Output = Result<Option<SocketAddr>>> + use<> {
    let exited = process.exit_status();
    let log = process.log_tail(60);
    let address = std::fs::read_to_string(admin_path).unwrap_or_default();
    let client = client.clone();
    async move {
        if let Some(status) = exited? {
            bail!("envoy exited ({status}) before it was ready; its log:\n{log}");
        }
        let Ok(admin) = address.trim().parse::<SocketAddr>() else {
            return Ok(None);
        };
        match client.get(format!("http://{admin}/ready")).send().await {
            Ok(response) if response.status().is_success() => Ok(Some(admin)),
            _ => Ok(None),
        }
    }
}

#[derive(Deserialize)]
struct ListenerStatuses {
    listener_statuses: Vec<ListenerStatus>,
}

#[derive(Deserialize)]
struct ListenerStatus {
    name: String,
    local_address: Address,
}

#[derive(Deserialize)]
struct Address {
    socket_address: SocketAddress,
}

#[derive(Deserialize)]
struct SocketAddress {
    address: String,
    port_value: u16,
}

/// Reads the bound listener addresses from the admin API, so templates can ask
/// for port 0 and no two tests ever race for a port.
async fn listeners(
    client: &reqwest::Client,
    admin: SocketAddr,
) -> Result<BTreeMap<String, SocketAddr>> {
    let statuses: ListenerStatuses = client
        .get(format!("http://{admin}/listeners?format=json"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
        .context("parsing envoy /listeners?format=json")?;
    statuses
        .listener_statuses
        .into_iter()
        .map(|l| {
            let ip = l.local_address.socket_address.address;
            let addr = format!("{ip}:{}", l.local_address.socket_address.port_value)
                .parse()
                .map_err(|e| anyhow!("listener {} address {ip}: {e}", l.name))?;
            Ok((l.name, addr))
        })
        .collect()
}

/// Runs `envoy --mode validate` on a bootstrap. On rejection the error is
/// Envoy's own message.
pub async fn validate(config: &Path) -> Result<()> {
    let envoy = paths::envoy_bin()?;
    let (status, output) = run_to_completion(
        tokio::process::Command::new(envoy)
            .arg("--mode")
            .arg("validate")
            .arg("-c")
            .arg(config)
            .arg("--disable-hot-restart")
            .arg("--log-level")
            .arg("warn"),
        Duration::from_secs(120),
    )
    .await?;
    if status.success() {
        Ok(())
    } else {
        bail!("envoy rejected {}: {}", config.display(), output.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_with_the_defaults_and_the_set_values() {
        let out = EnvoyBuilder::from_text("port: ${LISTEN_PORT} / ${HOST}\n", "t.yaml")
            .var("HOST", "h")
            .render()
            .unwrap();
        assert_eq!(out, "port: 0 / h\n");
    }

    #[test]
    fn an_unfilled_placeholder_fails_naming_it_and_the_template() {
        let err = EnvoyBuilder::from_text("a: ${NOPE}\n", "t.yaml")
            .render()
            .unwrap_err()
            .to_string();
        assert!(err.contains("rendering t.yaml"), "{err}");
        assert!(err.contains("${NOPE} has no value"), "{err}");
    }

    #[test]
    fn every_template_uses_only_the_placeholder_syntax_that_fails_when_unfilled() {
        // `{{NAME}}` was the harness's own syntax once; it is plain text to
        // `substitute`, so one left behind would reach Envoy unfilled.
        let dir = paths::testdata("envoy");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("{{"),
                "{} has a `{{{{` placeholder: write `${{NAME}}`",
                path.display()
            );
            checked += 1;
        }
        assert!(checked > 0, "no templates in {}", dir.display());
    }
}
