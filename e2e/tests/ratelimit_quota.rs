//! gatehouse-ratelimit as a Rate Limit Quota Service: real Envoy's
//! `rate_limit_quota` filter enforcing the assignments the service derives
//! from the same YAML rules as the per-request API.

use std::time::Duration;

use e2e::{Echo, Envoy, RateLimitService, poll};

const EDGE: &str = "
domain: edge
descriptors:
  - key: generic_key
    value: generic
    rate_limit: { unit: hour, requests_per_unit: 5 }
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 5 }
";

#[tokio::test]
async fn envoy_enforces_the_assignment_of_the_bucket_a_request_lands_in() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let rls = RateLimitService::builder()
        .file("edge.yaml", EDGE)
        .start()
        .await?;
    let envoy = Envoy::from_template("ratelimit-quota.yaml")?
        .upstream(&echo)
        .ratelimit(&rls)
        .start()
        .await?;
    let status = |path: &'static str, user: &'static str| {
        let request = envoy.get(path).header("x-user", user).send();
        async move { anyhow::Ok(request.await?.status().as_u16()) }
    };

    // Until the first assignment arrives, the bucket allows all (its
    // no_assignment_behavior); then it holds 5 an hour, refilled smoothly,
    // one second of it saved up: one token (at least one), and it runs dry.
    let allowed = run_dry(&envoy, "/generic", "ursula").await?;
    assert!(
        allowed >= 2,
        "the bucket admitted {allowed}: not the request before its assignment and its token"
    );
    for n in 0..10 {
        assert_eq!(
            status("/generic", "ursula").await?,
            429,
            "request {n} after the bucket ran dry"
        );
    }
    // Another descriptor value is another bucket, with tokens of its own.
    assert_eq!(status("/user", "victor").await?, 200);
    Ok(())
}

/// Requests `path` as `user` until one is denied; how many were allowed.
async fn run_dry(envoy: &Envoy, path: &str, user: &str) -> anyhow::Result<u32> {
    let allowed = std::cell::Cell::new(0_u32);
    poll::until(
        &format!("{path} as {user} is denied"),
        Duration::from_secs(30),
        || async {
            match envoy
                .get(path)
                .header("x-user", user)
                .send()
                .await?
                .status()
                .as_u16()
            {
                200 => {
                    allowed.set(allowed.get() + 1);
                    Ok(None)
                }
                429 => Ok(Some(())),
                other => anyhow::bail!("unexpected status {other}"),
            }
        },
    )
    .await?;
    Ok(allowed.get())
}

#[tokio::test]
async fn a_restarted_quota_service_resumes_and_envoy_follows_its_policy_meanwhile()
-> anyhow::Result<()> {
    // /generic never runs dry: it carries the load whose answers are counted.
    let config = EDGE.replace(
        "rate_limit: { unit: hour, requests_per_unit: 5 }\n  - key: user",
        "rate_limit: { unit: second, requests_per_unit: 1000000000 }\n  - key: user",
    );
    assert_ne!(config, EDGE);
    let echo = Echo::start().await?;
    let mut rls = RateLimitService::builder()
        .file("edge.yaml", &config)
        .start()
        .await?;
    let port = rls.grpc_port();
    let envoy = Envoy::from_template("ratelimit-quota.yaml")?
        .upstream(&echo)
        .ratelimit(&rls)
        .start()
        .await?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let url = envoy.url("/generic");
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let status = match client.get(&url).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                *statuses.entry(status).or_default() += 1;
            }
            statuses
        })
    };

    assert!(run_dry(&envoy, "/user", "victor").await? >= 2);
    let stopped = tokio::time::timeout(Duration::from_secs(20), rls.terminate()).await;
    assert!(
        matches!(&stopped, Ok(Ok(s)) if s.success()),
        "the service did not stop cleanly within 20 s with Envoy's quota streams open: {stopped:?}"
    );
    // Without the service: a bucket keeps its last assignment (victor stays
    // denied), and a new bucket allows all (its no_assignment_behavior).
    for n in 0..5 {
        let status = envoy
            .get("/user")
            .header("x-user", "victor")
            .send()
            .await?
            .status();
        assert_eq!(status, 429, "victor's request {n} with the service down");
    }
    for n in 0..10 {
        let status = envoy
            .get("/user")
            .header("x-user", "wendy")
            .send()
            .await?
            .status();
        assert_eq!(status, 200, "wendy's request {n} with the service down");
    }
    // Back on the same port: Envoy's stream reconnects, wendy's bucket gets
    // its assignment and runs dry.
    let _rls = RateLimitService::builder()
        .file("edge.yaml", &config)
        .env("GRPC_PORT", port)
        .start()
        .await?;
    run_dry(&envoy, "/user", "wendy").await?;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.await?;
    assert_eq!(
        statuses.keys().copied().collect::<Vec<_>>(),
        [200],
        "every request of the load is answered 200 throughout: {statuses:?}"
    );
    assert!(statuses[&200] > 0);
    Ok(())
}

#[tokio::test]
async fn a_rendered_quota_rate_limit_runs_dry_and_a_client_cannot_name_a_bucket()
-> anyhow::Result<()> {
    use gatehouse_config::{RenderOptions, Resources, load, render};
    let echo = Echo::start().await?;
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: api}}
spec:
  prefix: /api/
  service: 127.0.0.1:{port}
  labels:
    ambassador:
    - per_client: [{{generic_key: {{value: api}}}}, {{remote_address: {{key: remote_address}}}}]
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: free}}
spec:
  prefix: /free/
  service: 127.0.0.1:{port}
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {{name: api}}
spec:
  domain: ambassador
  enforcement: quota
  limits:
  - pattern: [{{generic_key: api}}, {{remote_address: \"*\"}}]
    rate: 5
    unit: hour
",
        port = echo.port()
    );
    let mut resources = Resources::default();
    load(&text, "edge.yaml", &mut resources)?;
    let mut options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        admin_port: 0,
        ..RenderOptions::default()
    };
    let files = render(&resources, &options)?;
    let mut builder = RateLimitService::builder();
    for (name, text) in &files.ratelimit {
        builder = builder.file(name, text);
    }
    let rls = builder.start().await?;
    options.ratelimit_address = rls.grpc_addr().to_string();
    let envoy = e2e::EnvoyBuilder::from_text(&render(&resources, &options)?.envoy, "rendered")
        .start()
        .await?;

    // The client's bucket: its first request passes before the assignment,
    // then its token, then it runs dry.
    assert!(run_dry(&envoy, "/api/x", "ursula").await? >= 2);
    // The route names its bucket in a header; a client naming it on another
    // route is not counted there (the listener removes the header first),
    // and the header never reaches the upstream.
    let bootstrap: serde_json::Value = serde_yaml_ng::from_str(&files.envoy)?;
    let key = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == "gatehouse.ratelimit_quota.ambassador")
        .and_then(|f| {
            f["typed_config"]["bucket_matchers"]["matcher_tree"]["exact_match_map"]["map"]
                .as_object()?
                .keys()
                .next()
                .cloned()
        })
        .ok_or_else(|| anyhow::anyhow!("no bucket in the rendered quota filter"))?;
    for n in 0..10 {
        let response = envoy
            .get("/free/x")
            .header("x-gatehouse-quota-bucket", &key)
            .send()
            .await?;
        assert_eq!(response.status(), 200, "/free request {n}");
        let echoed: serde_json::Value = response.json().await?;
        assert!(
            !echoed.to_string().contains("x-gatehouse-quota-bucket"),
            "{echoed}"
        );
    }
    Ok(())
}
