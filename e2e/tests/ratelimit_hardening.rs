//! gatehouse-ratelimit against what an attacker sends and what a bad day
//! brings: an over-long header through Envoy that fails open on errors, a
//! huge `hits_addend`, a flood of distinct values into the memory store, and
//! a Redis that stops answering. Each test fails on a service that lets the
//! case through.

use std::time::{Duration, Instant};

use e2e::ratelimit::request;
use e2e::{Echo, EnvoyBuilder, RateLimitService, Redis};
use tonic::Code;

/// The harness's rate-limit bootstrap, but failing open as the rendered
/// stack does (`failure_mode_deny: false`): an error from the service lets
/// the request through, so only counting can stop it.
fn fail_open_envoy() -> anyhow::Result<EnvoyBuilder> {
    let path = e2e::paths::testdata("envoy/ratelimit.yaml");
    let template = std::fs::read_to_string(&path)?;
    let fail_open = template.replace("failure_mode_deny: true", "failure_mode_deny: false");
    anyhow::ensure!(
        fail_open != template,
        "{} no longer sets failure_mode_deny",
        path.display()
    );
    Ok(EnvoyBuilder::from_text(
        &fail_open,
        &format!("{} (failure_mode_deny: false)", path.display()),
    ))
}

#[tokio::test]
async fn a_5000_byte_header_value_is_limited_by_an_envoy_that_fails_open() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let rls = RateLimitService::builder()
        .file(
            "edge.yaml",
            "domain: edge\ndescriptors:\n  - key: user\n    rate_limit: { unit: minute, requests_per_unit: 3 }\n",
        )
        .start()
        .await?;
    let envoy = fail_open_envoy()?
        .upstream(&echo)
        .ratelimit(&rls)
        .start()
        .await?;
    let long = "u".repeat(5000);
    rls.fresh_window("edge", &[("user", &long)]).await?;
    let send = |user: String| envoy.get("/user").header("x-user", user).send();
    for n in 1..=3 {
        assert_eq!(send(long.clone()).await?.status(), 200, "request {n}");
    }
    let fourth = send(long.clone()).await?;
    assert_eq!(
        fourth.status(),
        429,
        "the 4th request with the same 5000-byte value is over the limit"
    );
    assert_eq!(fourth.headers()["x-envoy-ratelimited"], "true");
    // Another long value counts apart: it is not lumped with the first.
    let mut other = long.clone();
    other.replace_range(4999.., "v");
    assert_eq!(send(other).await?.status(), 200);
    Ok(())
}

#[tokio::test]
async fn a_huge_hits_addend_is_over_limit_in_redis_not_a_store_error() -> anyhow::Result<()> {
    let redis = Redis::start().await?;
    let rls = RateLimitService::builder()
        .file(
            "t.yaml",
            "domain: t\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: 1000 }\n",
        )
        .redis(&redis)
        .start()
        .await?;
    let post = |hits: serde_json::Value| {
        rls.http()
            .post(rls.http_url("/json"))
            .json(&serde_json::json!({
                "domain": "t",
                "descriptors": [{ "entries": [{ "key": "k", "value": "big" }], "hits_addend": hits }]
            }))
            .send()
    };
    // u64::MAX, as protojson writes 64-bit numbers. Redis refuses INCRBY past
    // i64::MAX; a store error would hand the decision to the failure policy.
    let huge = post(serde_json::json!("18446744073709551615")).await?;
    let status = huge.status();
    let body: serde_json::Value = huge.json().await?;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["overallCode"], "OVER_LIMIT", "{body}");
    // The counter stays over the limit for the rest of the window.
    let next = post(serde_json::json!(1)).await?;
    assert_eq!(next.status(), 429);
    Ok(())
}

#[tokio::test]
async fn a_full_memory_store_denies_new_values_and_keeps_counting_the_old_ones()
-> anyhow::Result<()> {
    let rls = RateLimitService::builder()
        .file(
            "t.yaml",
            "domain: t\ndescriptors:\n  - key: user\n    rate_limit: { unit: day, requests_per_unit: 100 }\n",
        )
        .env("GATEHOUSE_MEMORY_MAX_KEYS", 3)
        .start()
        .await?;
    let client = rls.grpc_client().await?;
    let remaining = |user: String| {
        let mut client = client.clone();
        async move {
            let answer = client
                .should_rate_limit(request("t", &[&[("user", user.as_str())]]))
                .await?
                .into_inner();
            anyhow::Ok((answer.overall_code, answer.statuses[0].limit_remaining))
        }
    };
    for user in ["ann", "bob", "cyd"] {
        assert_eq!(remaining(user.to_owned()).await?, (1, 99));
    }
    // Distinct client-chosen values cannot grow the store: each new one is
    // refused as over the limit (not waved through).
    for n in 0..20 {
        assert_eq!(remaining(format!("flood-{n}")).await?, (2, 0));
    }
    // Existing counters keep counting exactly.
    assert_eq!(remaining("ann".to_owned()).await?, (1, 98));
    assert_eq!(remaining("ann".to_owned()).await?, (1, 97));
    assert_eq!(rls.metric("gatehouse_ratelimit_memory_keys ").await?, 3.0);
    assert_eq!(
        rls.metric("gatehouse_ratelimit_memory_refused_keys_total ")
            .await?,
        20.0
    );
    assert_eq!(remaining("bob".to_owned()).await?, (1, 98));
    Ok(())
}

/// One `ShouldRateLimit` call: its gRPC outcome and how long it took.
async fn timed_call(
    mut client: e2e::ratelimit::Client,
    entries: &'static [(&'static str, &'static str)],
) -> (Result<u32, Code>, Duration) {
    let started = Instant::now();
    let mut req = tonic::Request::new(request("slow", &[entries]));
    // Far beyond the store timeout: a hang shows as DEADLINE_EXCEEDED.
    req.set_timeout(Duration::from_secs(30));
    let outcome = client
        .should_rate_limit(req)
        .await
        .map(|r| r.into_inner().statuses[0].limit_remaining)
        .map_err(|status| status.code());
    (outcome, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_gets_unavailable_within_the_store_timeout_with_bounded_waiting()
-> anyhow::Result<()> {
    const STORE_TIMEOUT: Duration = Duration::from_secs(1);
    // Scheduling on a shared machine, on top of the store timeout.
    const SLACK: Duration = Duration::from_secs(2);
    const MAX_PENDING: usize = 64;
    // Enough calls that a queue without bound, drained one batch of 256 per
    // store timeout, answers the last ones several timeouts late.
    const CONNECTIONS: usize = 32;
    const CALLS_PER_CONNECTION: usize = 100;
    const KEY: &[(&str, &str)] = &[("k", "v")];

    let redis = Redis::start().await?;
    let rls = RateLimitService::builder()
        .file(
            "slow.yaml",
            "domain: slow\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: 1000000 }\n",
        )
        .redis(&redis)
        .env("GATEHOUSE_STORE_TIMEOUT", "1s")
        .env("GATEHOUSE_STORE_MAX_PENDING", MAX_PENDING)
        .start()
        .await?;
    // One HTTP/2 connection per client: a server takes a bounded number of
    // streams per connection, and the test must not queue on that instead.
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        clients.push(rls.grpc_client().await?);
    }
    let (warm, _) = timed_call(clients[0].clone(), KEY).await;
    assert!(warm.is_ok(), "{warm:?}");

    redis.pause()?;
    let calls: Vec<_> = clients
        .iter()
        .flat_map(|c| {
            (0..CALLS_PER_CONNECTION).map(move |_| tokio::spawn(timed_call(c.clone(), KEY)))
        })
        .collect();
    // While the calls wait, the number waiting for Redis never passes the bound.
    let mut most_pending = 0.0f64;
    while calls.iter().any(|c| !c.is_finished()) {
        most_pending = most_pending.max(rls.metric("gatehouse_ratelimit_store_pending ").await?);
        tokio::task::yield_now().await;
    }
    let mut slowest = Duration::ZERO;
    for call in calls {
        let (outcome, took) = call.await?;
        assert_eq!(outcome, Err(Code::Unavailable), "after {took:?}");
        slowest = slowest.max(took);
    }
    // The store timeout, plus room for a busy machine; a queue drained one
    // batch per timeout answers its last calls after several timeouts (7 s
    // here before the bound).
    assert!(
        slowest < STORE_TIMEOUT + SLACK,
        "the slowest of {} calls took {slowest:?}",
        CONNECTIONS * CALLS_PER_CONNECTION
    );
    assert!(
        most_pending > 0.0 && most_pending <= MAX_PENDING as f64,
        "at most {MAX_PENDING} decisions may wait for Redis, saw {most_pending}"
    );
    assert!(
        rls.metric("gatehouse_ratelimit_store_overloaded_total")
            .await?
            > 0.0,
        "calls past the bound were refused at once"
    );
    // Still frozen: a new call is not stuck behind the earlier ones.
    let (outcome, took) = timed_call(clients[0].clone(), KEY).await;
    assert_eq!(outcome, Err(Code::Unavailable));
    assert!(took < STORE_TIMEOUT + SLACK, "{took:?}");

    // Redis goes on: counting resumes without a restart.
    redis.resume()?;
    let first = e2e::poll::until("counting resumes", e2e::poll::READY_DEADLINE, || {
        let client = clients[0].clone();
        async move { Ok(timed_call(client, KEY).await.0.ok()) }
    })
    .await?;
    let (second, _) = timed_call(clients[1].clone(), KEY).await;
    assert_eq!(second, Ok(first - 1), "each call counts once again");
    Ok(())
}
