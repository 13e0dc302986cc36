//! A real browser: Debian's Chromium, headless, driven over the W3C
//! WebDriver protocol through `chromedriver` on a free port. The protocol's
//! few calls a test needs are plain JSON over HTTP, so no client crate.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::paths;
use crate::poll;
use crate::process::ChildProcess;

/// A running chromedriver with one browser session. Both end on drop.
#[derive(Debug)]
pub struct Browser {
    _driver: ChildProcess,
    session: String,
    client: reqwest::Client,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver on a port of its choosing and opens a headless
    /// Chromium with a fresh profile.
    pub async fn start() -> Result<Self> {
        let driver = paths::tool(
            "chromedriver",
            "installs the Debian package chromium-driver",
        )?;
        let chromium = paths::tool("chromium", "installs the Debian package chromium")?;
        let profile = tempfile::Builder::new()
            .prefix("gatehouse-chromium-")
            .tempdir()?;
        let mut command = crate::process::pinned_command(None, &driver)?;
        command.arg("--port=0");
        let mut process = ChildProcess::spawn(
            "chromedriver",
            &mut command,
            &profile.path().join("driver.log"),
        )?;
        process.set_log_on_drop(true);
        // chromedriver says which port it took: "...started successfully on port N."
        let port: u16 = poll::until("chromedriver's port", poll::READY_DEADLINE, || {
            let log = process.log();
            let exited = process.exit_status();
            async move {
                if let Some(status) = exited? {
                    bail!("chromedriver exited ({status}); its log:\n{log}");
                }
                Ok(log
                    .lines()
                    .find_map(|l| l.split("successfully on port ").nth(1))
                    .and_then(|p| p.trim_end_matches('.').trim().parse().ok()))
            }
        })
        .await?;
        let client = reqwest::Client::builder().no_proxy().build()?;
        let base = format!("http://127.0.0.1:{port}");
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": chromium,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--no-first-run",
                        format!("--user-data-dir={}", profile.path().join("profile").display()),
                    ]
                }
            }}
        });
        let answer: Value = client
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await?
            .json()
            .await?;
        let Some(session) = answer["value"]["sessionId"].as_str() else {
            bail!("chromedriver opened no session: {answer}");
        };
        Ok(Self {
            session: format!("{base}/session/{session}"),
            _driver: process,
            client,
            _profile: profile,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await?.json().await?;
        if let Some(error) = answer["value"]["error"].as_str() {
            bail!("webdriver {path}: {error}: {}", answer["value"]["message"]);
        }
        Ok(answer["value"].clone())
    }

    /// Navigates and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .with_context(|| format!("opening {url}"))?;
        Ok(())
    }

    /// The current URL.
    pub async fn url(&self) -> Result<String> {
        Ok(self
            .call(reqwest::Method::GET, "/url", None)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The page's text (`document.body.innerText`).
    pub async fn text(&self) -> Result<String> {
        Ok(self
            .run("return document.body ? document.body.innerText : ''")
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Sets the window's size (a laptop screen, for screenshots).
    pub async fn window_size(&self, width: u32, height: u32) -> Result<()> {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await?;
        Ok(())
    }

    /// Saves a PNG of the page as the browser shows it.
    pub async fn screenshot(&self, path: &std::path::Path) -> Result<()> {
        use base64::Engine as _;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .context("the screenshot is not base64")?;
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// Runs a script in the page and returns its value.
    pub async fn run(&self, script: &str) -> Result<Value> {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    async fn element(&self, css: &str) -> Result<String> {
        let found = poll::until(&format!("element {css}"), poll::READY_DEADLINE, || async {
            match self
                .call(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({ "using": "css selector", "value": css })),
                )
                .await
            {
                Ok(v) => Ok(v
                    .as_object()
                    .and_then(|o| o.values().next())
                    .and_then(Value::as_str)
                    .map(str::to_owned)),
                Err(_) => Ok(None),
            }
        })
        .await?;
        Ok(found)
    }

    /// Types into the element `css` finds.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let id = self.element(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await?;
        Ok(())
    }

    /// Clicks the element `css` finds.
    pub async fn click(&self, css: &str) -> Result<()> {
        let id = self.element(css).await?;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await?;
        Ok(())
    }

    /// Waits until the current URL starts with `prefix`.
    pub async fn until_url_starts_with(&self, prefix: &str) -> Result<String> {
        poll::until(
            &format!("the browser at {prefix}"),
            poll::READY_DEADLINE,
            || async {
                let url = self.url().await?;
                Ok(url.starts_with(prefix).then_some(url))
            },
        )
        .await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the session ends Chromium; chromedriver is killed with its
        // process group anyway.
        let client = self.client.clone();
        let session = self.session.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = client.delete(session).send().await;
            });
        }
    }
}
