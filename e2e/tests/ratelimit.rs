//! gatehouse-ratelimit end to end: real Envoy's rate-limit filter, the service
//! as a child process, and its own Redis where a test asks for one.

use std::time::Duration;

use e2e::ratelimit::request;
use e2e::{Echo, Envoy, RateLimitService, Redis};
use tonic::Code;

const EDGE: &str = "
domain: edge
descriptors:
  - key: generic_key
    value: generic
    rate_limit: { unit: hour, requests_per_unit: 3 }
  - key: user
    rate_limit: { unit: hour, requests_per_unit: 3 }
  - key: remote_address
    rate_limit: { unit: hour, requests_per_unit: 3 }
";

async fn limits_through_envoy(redis: Option<&Redis>) -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let mut builder = RateLimitService::builder().file("edge.yaml", EDGE);
    if let Some(redis) = redis {
        builder = builder.redis(redis);
    }
    let rls = builder.start().await?;
    let envoy = Envoy::from_template("ratelimit.yaml")?
        .upstream(&echo)
        .ratelimit(&rls)
        .start()
        .await?;

    for (path, entries) in [
        ("/generic", [("generic_key", "generic")]),
        ("/user", [("user", "ursula")]),
        ("/ip", [("remote_address", "127.0.0.1")]),
    ] {
        rls.fresh_window("edge", &entries).await?;
        let send = || envoy.get(path).header("x-user", "ursula").send();
        for n in 1..=3 {
            let response = send().await?;
            assert_eq!(response.status(), 200, "{path} request {n}");
            assert_eq!(
                response.headers()["x-ratelimit-limit"]
                    .to_str()?
                    .split(',')
                    .next(),
                Some("3")
            );
            assert_eq!(
                response.headers()["x-ratelimit-remaining"],
                (3 - n).to_string().as_str()
            );
        }
        let denied = send().await?;
        assert_eq!(
            denied.status(),
            429,
            "{path}: the 4th request in the window"
        );
        let headers = denied.headers();
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        assert!(headers.contains_key("x-ratelimit-reset"), "{headers:?}");
        assert_eq!(headers["x-envoy-ratelimited"], "true");
        let retry_after: u64 = headers["retry-after"].to_str()?.parse()?;
        assert!(
            (1..=3600).contains(&retry_after),
            "retry-after {retry_after}"
        );
    }
    // Another user has a counter of its own.
    assert_eq!(
        envoy
            .get("/user")
            .header("x-user", "victor")
            .send()
            .await?
            .status(),
        200
    );
    Ok(())
}

#[tokio::test]
async fn nth_plus_one_request_gets_429_with_memory_store() -> anyhow::Result<()> {
    limits_through_envoy(None).await
}

#[tokio::test]
async fn nth_plus_one_request_gets_429_with_redis_store() -> anyhow::Result<()> {
    let redis = Redis::start().await?;
    limits_through_envoy(Some(&redis)).await
}

#[tokio::test]
async fn shadow_mode_lets_requests_through() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let shadow = EDGE.replace("  - key: user\n", "  - key: user\n    shadow_mode: true\n");
    let rls = RateLimitService::builder()
        .file("edge.yaml", &shadow)
        .start()
        .await?;
    let envoy = Envoy::from_template("ratelimit.yaml")?
        .upstream(&echo)
        .ratelimit(&rls)
        .start()
        .await?;
    for _ in 0..6 {
        assert_eq!(
            envoy
                .get("/user")
                .header("x-user", "sam")
                .send()
                .await?
                .status(),
            200
        );
    }
    // It counted: the shadow counter saw the three hits over the limit.
    let shadowed = rls
        .metric("gatehouse_ratelimit_shadow_mode_total{domain=\"edge\",descriptor=\"edge.user\"}")
        .await?;
    assert_eq!(shadowed, 3.0);
    // Global shadow mode, as the reference's SHADOW_MODE.
    let rls = RateLimitService::builder()
        .file("edge.yaml", EDGE)
        .env("SHADOW_MODE", "true")
        .start()
        .await?;
    let envoy = Envoy::from_template("ratelimit.yaml")?
        .upstream(&echo)
        .ratelimit(&rls)
        .start()
        .await?;
    for _ in 0..6 {
        assert_eq!(envoy.get("/generic").send().await?.status(), 200);
    }
    Ok(())
}

#[tokio::test]
async fn hot_reload_applies_and_a_bad_reload_keeps_the_old_limits() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let rls = RateLimitService::builder()
        .file("edge.yaml", EDGE)
        .start()
        .await?;
    let envoy = Envoy::from_template("ratelimit.yaml")?
        .upstream(&echo)
        .ratelimit(&rls)
        .start()
        .await?;
    rls.fresh_window("edge", &[("user", "rita")]).await?;
    let send = |user: &'static str| envoy.get("/user").header("x-user", user).send();
    assert_eq!(send("rita").await?.status(), 200);

    // Lower the user limit to 1: the next request of rita is over.
    rls.write_config(
        "edge.yaml",
        &EDGE.replace(
            "rate_limit: { unit: hour, requests_per_unit: 3 }\n  - key: remote_address",
            "rate_limit: { unit: hour, requests_per_unit: 1 }\n  - key: remote_address",
        ),
    )?;
    rls.until_rlconfig_contains("edge.user: unit=HOUR requests_per_unit=1,")
        .await?;
    assert_eq!(send("rita").await?.status(), 429);
    assert_eq!(send("rosa").await?.status(), 200);

    // A broken file is refused and the limit of 1 stays.
    let errors_before = rls
        .metric("gatehouse_ratelimit_config_load_error_total")
        .await?;
    rls.write_config("edge.yaml", "domain: edge\ndescriptors:\n  - key: user\n    rate_limit: { unit: fortnight, requests_per_unit: 100 }\n")?;
    e2e::poll::until("reload refused", e2e::poll::READY_DEADLINE, || {
        let rls = &rls;
        async move {
            Ok((rls
                .metric("gatehouse_ratelimit_config_load_error_total")
                .await?
                > errors_before)
                .then_some(()))
        }
    })
    .await?;
    assert!(
        rls.log().contains("invalid rate limit unit 'fortnight'"),
        "the log names the problem"
    );
    assert_eq!(
        send("rosa").await?.status(),
        429,
        "still the old limit of 1"
    );
    Ok(())
}

#[tokio::test]
async fn two_replicas_sharing_redis_allow_exactly_the_limit() -> anyhow::Result<()> {
    const LIMIT: usize = 500;
    let config = format!(
        "domain: exact\ndescriptors:\n  - key: tenant\n    rate_limit: {{ unit: hour, requests_per_unit: {LIMIT} }}\n"
    );
    let redis = Redis::start().await?;
    let a = RateLimitService::builder()
        .file("exact.yaml", &config)
        .redis(&redis)
        .start()
        .await?;
    let b = RateLimitService::builder()
        .file("exact.yaml", &config)
        .redis(&redis)
        .start()
        .await?;
    a.fresh_window("exact", &[("tenant", "t1")]).await?;

    let mut clients = tokio::task::JoinSet::new();
    for i in 0..32 {
        let mut client = if i % 2 == 0 {
            a.grpc_client().await?
        } else {
            b.grpc_client().await?
        };
        clients.spawn(async move {
            let mut allowed = 0usize;
            for _ in 0..(3 * LIMIT / 32 + 1) {
                let answer = client
                    .should_rate_limit(request("exact", &[&[("tenant", "t1")]]))
                    .await?;
                if answer.into_inner().overall_code == 1 {
                    allowed += 1;
                }
            }
            Ok::<_, anyhow::Error>(allowed)
        });
    }
    let mut allowed = 0;
    while let Some(result) = clients.join_next().await {
        allowed += result??;
    }
    assert_eq!(
        allowed, LIMIT,
        "exactly the limit, across replicas and clients"
    );
    Ok(())
}

#[tokio::test]
async fn killed_redis_gets_the_failure_policy_and_counting_resumes() -> anyhow::Result<()> {
    let config = "domain: faults\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: 1000 }\n";
    let redis = Redis::start().await?;
    let port = redis.port();
    let strict = RateLimitService::builder()
        .file("f.yaml", config)
        .redis(&redis)
        .start()
        .await?;
    let lenient = RateLimitService::builder()
        .file("f.yaml", config)
        .redis(&redis)
        .env("GATEHOUSE_STORE_FAILURE", "allow")
        .start()
        .await?;
    let mut strict_client = strict.grpc_client().await?;
    let mut lenient_client = lenient.grpc_client().await?;
    let call = |client: &mut e2e::ratelimit::Client| {
        let mut client = client.clone();
        async move {
            let mut req = tonic::Request::new(request("faults", &[&[("k", "v")]]));
            // Far beyond the store timeout: a hang would show as DEADLINE_EXCEEDED.
            req.set_timeout(Duration::from_secs(20));
            client.should_rate_limit(req).await
        }
    };
    assert_eq!(call(&mut strict_client).await?.into_inner().overall_code, 1);

    redis.kill();
    for _ in 0..5 {
        let err = call(&mut strict_client).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        let allowed = call(&mut lenient_client).await?.into_inner();
        assert_eq!(allowed.overall_code, 1, "allow policy answers OK");
    }
    assert!(
        strict
            .metric("gatehouse_ratelimit_store_errors_total")
            .await?
            >= 5.0
    );

    // Redis comes back (empty): counting resumes without a restart.
    let _redis = Redis::start_on(port).await?;
    let resumed = e2e::poll::until("counting resumes", e2e::poll::READY_DEADLINE, || {
        let answer = call(&mut strict_client);
        async move { Ok(answer.await.ok()) }
    })
    .await?
    .into_inner();
    assert_eq!(resumed.overall_code, 1);
    let second = call(&mut strict_client).await?.into_inner();
    assert_eq!(
        second.statuses[0].limit_remaining,
        1000 - 2,
        "the new Redis counts from zero"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_requests_get_invalid_argument() -> anyhow::Result<()> {
    let rls = RateLimitService::builder()
        .file("edge.yaml", EDGE)
        .start()
        .await?;
    let mut client = rls.grpc_client().await?;
    // Only what Envoy's configuration decides is refused: a long value, which
    // a client chooses, is counted (ratelimit_hardening.rs).
    let long = "d".repeat(5000);
    let cases = [
        (request("", &[&[("k", "v")]]), "domain must not be empty"),
        (request("edge", &[]), "descriptor list must not be empty"),
        (request("edge", &[&[("", "v")]]), "empty key"),
        (request(&long, &[&[("k", "v")]]), "bytes long"),
        (
            request("edge", &vec![&[("k", "v")][..]; 65]),
            "65 descriptors",
        ),
    ];
    for (req, message) in cases {
        let err = client.should_rate_limit(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(message), "{err:?}");
    }
    // A descriptor without entries (Envoy sends one when skip_if_absent
    // skipped all its actions) is no error: it matches nothing.
    let empty = client
        .should_rate_limit(request("edge", &[&[], &[("user", "u")]]))
        .await?
        .into_inner();
    assert_eq!(empty.statuses.len(), 2);
    // Still serving.
    assert_eq!(
        client
            .should_rate_limit(request("edge", &[&[("user", "u")]]))
            .await?
            .into_inner()
            .overall_code,
        1
    );
    Ok(())
}

#[tokio::test]
async fn side_ports_answer_like_the_reference() -> anyhow::Result<()> {
    let rls = RateLimitService::builder()
        .file("edge.yaml", EDGE)
        .env("LIMIT_RESPONSE_HEADERS_ENABLED", "true")
        .start()
        .await?;
    let http = rls.http();
    let health = http.get(rls.http_url("/healthcheck")).send().await?;
    assert_eq!(
        (health.status().as_u16(), health.text().await?),
        (200, "OK".to_owned())
    );
    assert_eq!(
        http.get(rls.http_url("/healthz")).send().await?.status(),
        200
    );

    let body = serde_json::json!({"domain": "edge", "descriptors": [{"entries": [{"key": "user", "value": "jo"}]}]});
    let answer: serde_json::Value = http
        .post(rls.http_url("/json"))
        .json(&body)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(answer["overallCode"], "OK");
    assert_eq!(answer["statuses"][0]["currentLimit"]["requestsPerUnit"], 3);
    assert_eq!(answer["statuses"][0]["currentLimit"]["unit"], "HOUR");
    assert_eq!(answer["statuses"][0]["limitRemaining"], 2);
    assert_eq!(answer["responseHeadersToAdd"][0]["key"], "RateLimit-Limit");
    let bad = http
        .post(rls.http_url("/json"))
        .body("{\"domian\": \"x\"}")
        .send()
        .await?;
    assert_eq!(bad.status(), 400);

    let dump = rls.rlconfig().await?;
    assert!(
        dump.contains("edge.generic_key_generic: unit=HOUR requests_per_unit=3"),
        "{dump}"
    );
    let metrics = http
        .get(rls.http_url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains(
            "gatehouse_ratelimit_total_hits_total{domain=\"edge\",descriptor=\"edge.user\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatehouse_ratelimit_decision_duration_seconds"),
        "{metrics}"
    );

    // gRPC health, as Envoy's health checker would ask.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", rls.grpc_addr()))?
        .connect()
        .await?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in [
        "",
        "ratelimit",
        "envoy.service.ratelimit.v3.RateLimitService",
    ] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() -> anyhow::Result<()> {
    let mut rls = RateLimitService::builder()
        .file("edge.yaml", EDGE)
        .start()
        .await?;
    let mut client = rls.grpc_client().await?;
    assert_eq!(
        client
            .should_rate_limit(request("edge", &[&[("user", "u")]]))
            .await?
            .into_inner()
            .overall_code,
        1
    );
    let status = rls.terminate().await?;
    assert!(status.success(), "exit status {status}");
    assert!(rls.log().contains("stopped cleanly"));
    Ok(())
}

#[tokio::test]
async fn reference_examples_serve_together_and_check_config_reports_errors() -> anyhow::Result<()> {
    let dir = e2e::paths::workspace_root().join("ratelimit/testdata/reference-examples");
    let mut builder = RateLimitService::builder();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        builder = builder.file(
            &path.file_name().unwrap_or_default().to_string_lossy(),
            &std::fs::read_to_string(&path)?,
        );
        files += 1;
    }
    assert!(files >= 11);
    let rls = builder.start().await?;
    let dump = rls.rlconfig().await?;
    assert!(dump.lines().count() >= 11, "{dump}");

    let bin = e2e::paths::service_bin("gatehouse-ratelimit")?;
    let ok = std::process::Command::new(&bin)
        .arg("--check-config")
        .arg(&dir)
        .output()?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let broken = tempfile::tempdir()?;
    std::fs::write(
        broken.path().join("api.yaml"),
        "domain: api\ndescriptors:\n  - key: k\n    rate_limit: { unit: minute }\n  - key: k\n",
    )?;
    let bad = std::process::Command::new(&bin)
        .arg("--check-config")
        .arg(broken.path())
        .output()?;
    assert!(!bad.status.success());
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(
        message.contains("api.yaml: descriptors[1]: duplicate descriptor composite key 'api.k'"),
        "{message}"
    );
    Ok(())
}

/// The shipped drop-in bootstrap, with its fixed ports moved to free ones.
fn shipped_bootstrap(listen: u16, admin: u16, app: u16, rls: u16) -> anyhow::Result<String> {
    let path = e2e::paths::workspace_root().join("envoy-config/bootstrap/ratelimit.yaml");
    let text = std::fs::read_to_string(path)?;
    for port in [
        "port_value: 10000",
        "port_value: 9901",
        "port_value: 8000",
        "port_value: 8081",
    ] {
        assert_eq!(
            text.matches(port).count(),
            1,
            "{port} appears once in the shipped bootstrap"
        );
    }
    Ok(text
        .replace("port_value: 10000", &format!("port_value: {listen}"))
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace("port_value: 8000", &format!("port_value: {app}"))
        .replace("port_value: 8081", &format!("port_value: {rls}")))
}

#[tokio::test]
async fn shipped_bootstrap_validates_and_limits_with_the_shipped_example() -> anyhow::Result<()> {
    let root = e2e::paths::workspace_root();
    e2e::envoy::validate(&root.join("envoy-config/bootstrap/ratelimit.yaml")).await?;

    let example = std::fs::read_to_string(root.join("ratelimit/examples/config/edge.yaml"))?;
    let echo = Echo::start().await?;
    let rls = RateLimitService::builder()
        .file("edge.yaml", &example)
        .start()
        .await?;
    let text = shipped_bootstrap(0, 0, echo.port(), rls.grpc_port())?;
    assert!(
        text.contains("skip_if_absent: true"),
        "the bootstrap sends empty descriptors when x-tier is absent"
    );
    let envoy = e2e::EnvoyBuilder::from_text(&text, "envoy-config/bootstrap/ratelimit.yaml")
        .start()
        .await?;

    rls.fresh_window("edge", &[("path", "/login"), ("user", "lee")])
        .await?;
    // Spellings of one path count as that path: the query, dot segments,
    // doubled slashes and encoded letters do not open new counters.
    for target in [
        "/login",
        "/login?attempt=2",
        "//login",
        "/x/../login",
        "/%6cogin",
    ] {
        let r = e2e::raw::get(envoy.ingress(), target, &[("x-user", "lee")]).await?;
        assert_eq!(r.status, 200, "{target}");
    }
    let denied = envoy
        .get("/login?attempt=6")
        .header("x-user", "lee")
        .send()
        .await?;
    assert_eq!(denied.status(), 429);
    assert!(denied.headers().contains_key("x-ratelimit-limit"));
    assert!(denied.headers().contains_key("retry-after"));
    // Internal callers are unlimited, whatever else applies.
    assert_eq!(
        envoy
            .get("/other")
            .header("x-tier", "internal")
            .send()
            .await?
            .status(),
        200
    );
    Ok(())
}

/// Counts `limit + 1` calls of one descriptor; returns how many were allowed.
async fn count_allowed(
    rls: &RateLimitService,
    domain: &str,
    entries: &[(&str, &str)],
    calls: usize,
) -> anyhow::Result<usize> {
    let mut client = rls.grpc_client().await?;
    let mut allowed = 0;
    for _ in 0..calls {
        if client
            .should_rate_limit(request(domain, &[entries]))
            .await?
            .into_inner()
            .overall_code
            == 1
        {
            allowed += 1;
        }
    }
    Ok(allowed)
}

const PER_TENANT: &str = "domain: t\ndescriptors:\n  - key: tenant\n    rate_limit: { unit: hour, requests_per_unit: 5 }\n";

#[tokio::test]
async fn redis_with_a_password_and_redis_cluster_count_the_same() -> anyhow::Result<()> {
    let guarded = Redis::start_with_args(&["--requirepass", "s3cret-pass"]).await?;
    let rls = RateLimitService::builder()
        .file("t.yaml", PER_TENANT)
        .redis(&guarded)
        .env("REDIS_AUTH", "s3cret-pass")
        .start()
        .await?;
    rls.fresh_window("t", &[("tenant", "a")]).await?;
    assert_eq!(count_allowed(&rls, "t", &[("tenant", "a")], 7).await?, 5);
    assert!(
        !rls.log().contains("s3cret-pass"),
        "the password is never logged"
    );

    let cluster = e2e::redis::RedisCluster::start().await?;
    let rls = RateLimitService::builder()
        .file("t.yaml", PER_TENANT)
        .env("BACKEND_TYPE", "redis")
        .env("REDIS_SOCKET_TYPE", "tcp")
        .env("REDIS_TYPE", "CLUSTER")
        .env("REDIS_URL", cluster.url())
        .start()
        .await?;
    rls.fresh_window("t", &[("tenant", "a")]).await?;
    // Many tenants, so the keys spread over every node's slots.
    for tenant in ["a", "b", "c", "d", "e", "f"] {
        assert_eq!(
            count_allowed(&rls, "t", &[("tenant", tenant)], 7).await?,
            5,
            "tenant {tenant}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn redis_over_a_unix_socket_counts_as_the_reference_default() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("redis.sock");
    let socket_arg = socket.display().to_string();
    let redis =
        Redis::start_with_args(&["--unixsocket", &socket_arg, "--unixsocketperm", "700"]).await?;
    // REDIS_SOCKET_TYPE defaults to unix, as in the reference: only the path is given.
    let rls = RateLimitService::builder()
        .file("t.yaml", PER_TENANT)
        .env("BACKEND_TYPE", "redis")
        .env("REDIS_URL", &socket_arg)
        .start()
        .await?;
    rls.fresh_window("t", &[("tenant", "u")]).await?;
    assert_eq!(count_allowed(&rls, "t", &[("tenant", "u")], 7).await?, 5);
    drop(redis);
    Ok(())
}

#[tokio::test]
async fn redis_sentinel_leads_to_the_master() -> anyhow::Result<()> {
    let master = Redis::start().await?;
    let sentinel = e2e::redis::RedisSentinel::start(&master).await?;
    let rls = RateLimitService::builder()
        .file("t.yaml", PER_TENANT)
        .env("BACKEND_TYPE", "redis")
        .env("REDIS_SOCKET_TYPE", "tcp")
        .env("REDIS_TYPE", "SENTINEL")
        .env("REDIS_URL", sentinel.url())
        .start()
        .await?;
    rls.fresh_window("t", &[("tenant", "s")]).await?;
    assert_eq!(count_allowed(&rls, "t", &[("tenant", "s")], 7).await?, 5);
    // The counter lives in the master the sentinel named.
    let keys = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &master.port().to_string(),
            "--scan",
            "--pattern",
            "t_tenant_s_*",
        ])
        .output()?;
    assert!(
        String::from_utf8_lossy(&keys.stdout).starts_with("t_tenant_s_"),
        "{keys:?}"
    );
    Ok(())
}

#[tokio::test]
async fn configmap_update_reloads_through_the_watcher() -> anyhow::Result<()> {
    let rls = RateLimitService::builder().start().await?;
    // A ConfigMap volume as the kubelet writes it: files in a timestamped
    // directory, `..data` pointing at it, and links to `..data/<file>`.
    let dir = rls.config_dir();
    let write_version = |name: &str, limit: u32| -> anyhow::Result<()> {
        std::fs::create_dir_all(dir.join(name))?;
        let text = PER_TENANT.replace(
            "requests_per_unit: 5",
            &format!("requests_per_unit: {limit}"),
        );
        std::fs::write(dir.join(name).join("t.yaml"), text)?;
        std::os::unix::fs::symlink(name, dir.join("..data_tmp"))?;
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data"))?;
        Ok(())
    };
    write_version("..2026_11_28_01", 5)?;
    std::os::unix::fs::symlink("..data/t.yaml", dir.join("t.yaml"))?;
    rls.until_rlconfig_contains("t.tenant: unit=HOUR requests_per_unit=5,")
        .await?;
    write_version("..2026_11_28_02", 9)?;
    rls.until_rlconfig_contains("t.tenant: unit=HOUR requests_per_unit=9,")
        .await?;
    // Loaded once, not once per copy the volume holds.
    assert_eq!(rls.rlconfig().await?.lines().count(), 1);
    Ok(())
}

#[tokio::test]
async fn swapping_the_runtime_root_symlink_reloads() -> anyhow::Result<()> {
    let rls = RateLimitService::builder()
        .root_as_symlink()
        .file("t.yaml", PER_TENANT)
        .start()
        .await?;
    let base = rls.runtime_parent().to_path_buf();
    std::fs::create_dir_all(base.join("v2/ratelimit/config"))?;
    std::fs::write(
        base.join("v2/ratelimit/config/t.yaml"),
        PER_TENANT.replace("requests_per_unit: 5", "requests_per_unit: 11"),
    )?;
    std::os::unix::fs::symlink("v2", base.join("current.tmp"))?;
    std::fs::rename(base.join("current.tmp"), base.join("current"))?;
    rls.until_rlconfig_contains("requests_per_unit=11,").await?;
    // Edits in the new directory are followed too.
    std::fs::write(
        base.join("v2/ratelimit/config/t.yaml"),
        PER_TENANT.replace("requests_per_unit: 5", "requests_per_unit: 12"),
    )?;
    rls.until_rlconfig_contains("requests_per_unit=12,").await?;
    Ok(())
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_a_line() -> anyhow::Result<()> {
    let rls = RateLimitService::builder()
        .file("t.yaml", PER_TENANT)
        .env("LOG_FORMAT", "json")
        .start()
        .await?;
    let log = rls.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{e}: {line}"))?;
        assert!(value.get("level").is_some(), "{line}");
    }
    assert!(log.contains("\"message\":\"listening\""), "{log}");
    Ok(())
}
