//! The test OpenID provider (`e2e/idp/server.js`, npm `oidc-provider`) as a
//! child process on a free port.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tempfile::TempDir;

use crate::paths;
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
        let ready: ReadyFile = crate::process::until_ready_file(
            "the test IdP",
            &mut process,
            &ready_file,
            |ready: &ReadyFile| {
                crate::process::answers_ok(
                    client.clone(),
                    format!("{}/.well-known/openid-configuration", ready.issuer),
                )
            },
        )
        .await
        .context("starting the test IdP")?;
        let issuer = ready.issuer;
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

    /// The pid of the IdP's process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether the log is printed when the IdP stops (default yes, for tests).
    pub fn set_log_on_drop(&mut self, on: bool) {
        self.process.set_log_on_drop(on);
    }

    /// The IdP's log so far: one line per request (method, path, status).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Requests the IdP has answered so far.
    pub fn requests(&self) -> usize {
        self.log().lines().filter(|l| l.contains(" /")).count()
    }

    /// Signs in as a browser would, without one: from `first` (the IdP URL a
    /// relying party redirected to) through the login form as the default
    /// user, following the IdP's redirects until one leaves for a URL
    /// starting with `back_to`, which it returns unfollowed. `client` keeps
    /// the IdP's cookies.
    pub async fn sign_in(
        &self,
        client: &reqwest::Client,
        first: &str,
        back_to: &str,
    ) -> Result<String> {
        sign_in_at(&self.issuer, client, first, back_to).await
    }

    /// Where `server.js` lives.
    pub fn dir() -> PathBuf {
        paths::workspace_root().join("e2e/idp")
    }
}

/// A response's `Location`, empty when it has none.
pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// [`Idp::sign_in`] at an IdP known by its issuer URL only (one this
/// process did not start, such as the quickstart's).
///
/// # Errors
/// When the IdP never sends the browser back to `back_to`.
pub async fn sign_in_at(
    issuer: &str,
    client: &reqwest::Client,
    first: &str,
    back_to: &str,
) -> Result<String> {
    let mut next = first.to_owned();
    for _ in 0..10 {
        if next.starts_with(back_to) {
            return Ok(next);
        }
        let url = if next.starts_with('/') {
            format!("{}{next}", issuer)
        } else {
            next.clone()
        };
        let r = client.get(&url).send().await?;
        if r.status().is_redirection() {
            next = location(&r);
            continue;
        }
        // The login form: post the credentials where it says.
        let page = r.text().await?;
        let action = page
            .split("action=\"")
            .nth(1)
            .and_then(|a| a.split('"').next())
            .with_context(|| format!("no login form in {page}"))?;
        let r = client
            .post(format!("{}{action}", issuer))
            .form(&[("username", "alice"), ("password", "wonderland")])
            .send()
            .await?;
        next = location(&r);
    }
    bail!("the sign-in never came back to {back_to}")
}

/// Waits until a browser asking for `url` (through `client`, which must not
/// follow redirects) is sent to `issuer`'s login page: the relying party
/// loaded its configuration and discovered the IdP. Returns that redirect.
///
/// # Errors
/// When it does not happen within [`crate::poll::READY_DEADLINE`].
pub async fn until_sent_to_login(
    client: &reqwest::Client,
    url: &str,
    issuer: &str,
) -> Result<reqwest::Response> {
    let login_page = format!("{issuer}/auth");
    crate::poll::until(
        "the relying party sending browsers to the IdP",
        crate::poll::READY_DEADLINE,
        || async {
            let r = client.get(url).header("accept", "text/html").send().await?;
            let to_idp = r.status() == 302 && location(&r).starts_with(&login_page);
            Ok(to_idp.then_some(r))
        },
    )
    .await
}
