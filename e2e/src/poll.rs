//! Readiness polling with a deadline: the harness never sleeps a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// How long a child may take to become ready. Generous: the machines are shared
/// and Envoy compiles wasm modules with V8 at start.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

/// Calls `check` until it returns `Ok(Some(_))`, failing on its first `Err` (a
/// child that exited will never become ready) or when `deadline` passes.
pub async fn until<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if start.elapsed() > deadline {
            bail!("{what}: not ready after {deadline:?}");
        }
        // The interval between two readiness checks, growing to 100 ms.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Waits until `url` answers a 2xx (a side port that listens once the
/// process is ready), for at most [`READY_DEADLINE`].
///
/// # Errors
/// It did not answer in time.
pub async fn until_ok(what: &str, client: &reqwest::Client, url: &str) -> Result<()> {
    until(what, READY_DEADLINE, || async {
        Ok(client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            .then_some(()))
    })
    .await
}
