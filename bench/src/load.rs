//! Raw gRPC load from this process: concurrent `ShouldRateLimit` or `Check`
//! callers over a few HTTP/2 connections, each call timed.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::session::bench_cookie;
use crate::sidecar::Sidecar;

/// Calls `Check` as Envoy would for a signed-in browser (the bench cookie,
/// the SSO filter) from `callers` tasks until `duration` passes.
pub(crate) async fn check_load(
    addr: SocketAddr,
    duration: Duration,
    callers: u32,
    kind: Sidecar,
) -> Result<(u64, Vec<u32>)> {
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    let headers = [
        (":authority", "127.0.0.1"),
        (":method", "GET"),
        (":path", "/app/bench"),
        ("accept", "*/*"),
        ("user-agent", "wrk"),
        ("x-request-id", "0f6a2d8e-6b4c-4f4e-9a57-2f0d9a3f1c11"),
    ];
    let mut headers: std::collections::HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    headers.insert("cookie".into(), bench_cookie(kind == Sidecar::AuthzRedis)?);
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/app/bench".into(),
                    host: "127.0.0.1".into(),
                    headers,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            context_extensions: [("gatehouse_filter".to_owned(), "sso".to_owned())].into(),
            ..AttributeContext::default()
        }),
    };
    load(
        addr,
        duration,
        callers,
        AuthorizationClient::new,
        move |mut client| {
            let request = request.clone();
            async move {
                let answer = client.check(request).await?.into_inner();
                if answer.status.as_ref().map_or(-1, |s| s.code) != 0 {
                    bail!("bench check was not allowed: {answer:?}");
                }
                Ok(())
            }
        },
    )
    .await
}

/// Calls `ShouldRateLimit` from `callers` tasks until `duration` passes.
/// Returns the number of calls and each call's latency in microseconds.
pub(crate) async fn grpc_load(
    addr: SocketAddr,
    duration: Duration,
    callers: u32,
) -> Result<(u64, Vec<u32>)> {
    load(
        addr,
        duration,
        callers,
        e2e::ratelimit::Client::new,
        |mut client| async move {
            let request = e2e::ratelimit::request("edge", &[&[("generic_key", "generic")]]);
            let answer = client.should_rate_limit(request).await?.into_inner();
            if answer.overall_code != 1 {
                bail!("bench call was not allowed: {answer:?}");
            }
            Ok(())
        },
    )
    .await
}

/// Runs `call` from `callers` tasks, spread over four HTTP/2 connections to
/// `addr`, until `duration` passes. Returns the number of calls and each
/// call's latency in microseconds.
async fn load<C, F, Fut>(
    addr: SocketAddr,
    duration: Duration,
    callers: u32,
    new_client: fn(tonic::transport::Channel) -> C,
    call: F,
) -> Result<(u64, Vec<u32>)>
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let deadline = std::time::Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..callers {
        let client = new_client(channels[i as usize % channels.len()].clone());
        let call = call.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while std::time::Instant::now() < deadline {
                let started = std::time::Instant::now();
                call(client.clone()).await?;
                latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok((all.len() as u64, all))
}
