//! A JWKS endpoint for tests: serves a key set that a test can change, or
//! answers 503 while "down".

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(Debug, Default)]
struct Served {
    jwks: Mutex<Option<String>>,
    fetches: AtomicUsize,
    /// How long each answer takes.
    delay: Mutex<std::time::Duration>,
}

/// A running JWKS endpoint at `/jwks.json`. Stops when dropped.
#[derive(Debug)]
pub struct JwksServer {
    addr: SocketAddr,
    served: Arc<Served>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Starts down: every fetch gets 503 until [`JwksServer::serve`].
    pub async fn start_down() -> Result<Self> {
        Self::start_down_at("/jwks.json").await
    }

    /// The same for any JSON document at `path` (an OpenAPI document for
    /// the developer portal).
    pub async fn start_down_at(path: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the JWKS server")?;
        let addr = listener.local_addr()?;
        let served = Arc::new(Served::default());
        let app = Router::new()
            .route(path, get(jwks))
            .with_state(served.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, served, task })
    }

    /// Serves this JWKS from now on.
    pub fn serve(&self, jwks: &str) {
        *self
            .served
            .jwks
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(jwks.to_owned());
    }

    /// Answers each fetch only after `delay`, from now on: a slow IdP.
    pub fn delay(&self, delay: std::time::Duration) {
        *self
            .served
            .delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = delay;
    }

    /// Answers 503 from now on.
    pub fn take_down(&self) {
        *self
            .served
            .jwks
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// How many fetches arrived so far.
    pub fn fetches(&self) -> usize {
        self.served.fetches.load(Ordering::SeqCst)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn jwks(State(served): State<Arc<Served>>) -> Response {
    served.fetches.fetch_add(1, Ordering::SeqCst);
    let delay = *served.delay.lock().unwrap_or_else(PoisonError::into_inner);
    tokio::time::sleep(delay).await;
    match served
        .jwks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
    {
        Some(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
