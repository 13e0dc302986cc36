//! Upstream echo server: answers every request with what it received, as JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Json;
use serde::{Deserialize, Serialize};

/// What an echo upstream saw.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Echoed {
    /// The upstream's name, so routing tests can tell upstreams apart.
    pub upstream: String,
    /// Request method.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Header name (lowercase) to all its values, in order.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The body, lossily decoded as UTF-8.
    pub body: String,
}

impl Echoed {
    /// The first value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.first().map(String::as_str)
    }
}

/// A running echo upstream on an ephemeral loopback port. Stops when dropped.
#[derive(Debug)]
pub struct Echo {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    /// Starts an upstream named `echo`.
    pub async fn start() -> Result<Self> {
        Self::start_named("echo").await
    }

    /// Starts an upstream that reports `name` in every answer.
    pub async fn start_named(name: &str) -> Result<Self> {
        Self::start_on(name, 0).await
    }

    /// Starts on a given port (0 picks a free one).
    pub async fn start_on(name: &str, port: u16) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding echo upstream {name} on 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(echo).with_state(name.to_owned());
        // The listener is bound before this returns, so the server is ready.
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(State(name): State<String>, request: Request) -> Json<Echoed> {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    Json(Echoed {
        upstream: name,
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string),
        headers: header_map(&parts.headers),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        map.entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    map
}

/// What the echo upstream behind a TLS listener saw of a GET of `path`,
/// sent with curl to `host` (SNI and `Host`) at 127.0.0.1:`port`, the
/// certificate checked against `ca`.
pub async fn get_over_tls(
    ca: &std::path::Path,
    host: &str,
    port: u16,
    path: &str,
) -> anyhow::Result<Echoed> {
    let curl = crate::paths::tool("curl", "make setup")?;
    let out = tokio::process::Command::new(curl)
        .args(["--silent", "--show-error", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}
