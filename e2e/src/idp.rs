//! The test OpenID provider (`e2e/idp/server.js`, npm `oidc-provider`) as a
//! child process on a free port.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tempfile::TempDir;

use crate::paths;
use crate::poll;
use crate::process::ChildProcess;

/// A running, ready IdP. Killed when dropped.
#[derive(Debug)]
pub struct Idp {
    process: ChildProcess,
    issuer: String,
    _dir: TempDir,
}

#[derive(Deserialize)]
struct ReadyFile {
    issuer: String,
}

impl Idp {
    /// Starts the IdP with these clients (oidc-provider client metadata)
    /// and this access-token lifetime, and waits for its discovery document.
    pub async fn start(clients: &serde_json::Value, access_token_ttl_secs: u64) -> Result<Self> {
        let dir = paths::workspace_root().join("e2e/idp");
        if !dir.join("node_modules/oidc-provider").is_dir() {
            bail!(
                "the test IdP's npm packages are missing in {}: run `make setup` (it runs npm ci there)",
                dir.display()
            );
        }
        let node = paths::tool("node", "is the machine's Node.js")?;
        let tmp = tempfile::Builder::new()
            .prefix("gatehouse-idp-")
            .tempdir()?;
        let ready_file = tmp.path().join("ready.json");
        let mut command = crate::process::pinned_command(None, &node)?;
        command
            .arg(dir.join("server.js"))
            .current_dir(&dir)
            .env("IDP_READY_FILE", &ready_file)
            .env("IDP_CLIENTS", clients.to_string())
            .env("IDP_ACCESS_TOKEN_TTL", access_token_ttl_secs.to_string());
        let mut process = ChildProcess::spawn("idp", &mut command, &tmp.path().join("idp.log"))?;
        process.set_log_on_drop(true);
        let client = reqwest::Client::builder().no_proxy().build()?;
        let issuer = poll::until("the IdP's discovery document", poll::READY_DEADLINE, || {
            let exited = process.exit_status();
            let log = process.log_tail(40);
            let file = std::fs::read_to_string(&ready_file).ok();
            let client = client.clone();
            async move {
                if let Some(status) = exited? {
                    bail!("the IdP exited ({status}) before it was ready; its log:\n{log}");
                }
                let Some(ready) = file.and_then(|f| serde_json::from_str::<ReadyFile>(&f).ok())
                else {
                    return Ok(None);
                };
                let ok = client
                    .get(format!("{}/.well-known/openid-configuration", ready.issuer))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                Ok(ok.then_some(ready.issuer))
            }
        })
        .await
        .context("starting the test IdP")?;
        Ok(Self {
            process,
            issuer,
            _dir: tmp,
        })
    }

    /// The issuer URL (`http://127.0.0.1:<port>`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The IdP's log so far: one line per request (method, path, status).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Requests the IdP has answered so far.
    pub fn requests(&self) -> usize {
        self.log().lines().filter(|l| l.contains(" /")).count()
    }

    /// Where `server.js` lives.
    pub fn dir() -> PathBuf {
        paths::workspace_root().join("e2e/idp")
    }
}
