//! `gatehouse doctor` against a real Envoy running the rendered resources,
//! one broken hop at a time: each walk must stop at the hop that is broken
//! and name it.

use std::path::Path;

use e2e::{Echo, EnvoyBuilder, RateLimitService};
use gatehouse_config::{RenderOptions, Resources, load, render};

/// Runs `gatehouse doctor` for `path` and returns its exit code and output.
async fn doctor(
    resources: &Path,
    options: &RenderOptions,
    admin: &str,
    path: &str,
) -> anyhow::Result<(i32, String)> {
    let out = tokio::process::Command::new(e2e::paths::service_bin("gatehouse")?)
        .arg("doctor")
        .arg("-f")
        .arg(resources)
        .args(["--listen-port", &options.listen_port.to_string()])
        .args(["--ratelimit", &options.ratelimit_address])
        .args(["--envoy-admin", admin])
        .arg(format!("http://edge:{}{path}", options.listen_port))
        .output()
        .await?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    println!("$ gatehouse doctor ... {path}\n{text}");
    Ok((out.status.code().unwrap_or(-1), text))
}

/// The first `failed` line of a walk.
fn broken(output: &str) -> Option<&str> {
    output.lines().find(|l| l.starts_with("failed"))
}

#[tokio::test]
async fn doctor_stops_at_each_broken_hop_and_names_it() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    // Its own upstream: health checks are a setting of the upstream.
    let checked = Echo::start().await?;
    // A port nothing listens on: connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let rls = RateLimitService::builder()
        .file(
            "ambassador.yaml",
            "domain: ambassador\ndescriptors:\n  - key: generic_key\n    value: limited\n    rate_limit: { unit: minute, requests_per_unit: 1000 }\n",
        )
        .start()
        .await?;
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: ok}}
spec: {{prefix: /ok/, service: '127.0.0.1:{echo}'}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: limited}}
spec:
  prefix: /limited/
  service: '127.0.0.1:{echo}'
  labels:
    ambassador:
    - limited: [{{generic_key: {{value: limited}}}}]
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: nowhere}}
spec: {{prefix: /nowhere/, service: 'nowhere.invalid:80'}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: refused}}
spec: {{prefix: /refused/, service: '127.0.0.1:{closed}'}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: unhealthy}}
spec:
  prefix: /unhealthy/
  service: '127.0.0.1:{checked}'
  health_checks:
  - health_check:
      http:
        path: /health
        expected_statuses: [{{min: 599, max: 599}}]
",
        echo = echo.port(),
        checked = checked.port()
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("edge.yaml");
    std::fs::write(&file, &text)?;
    let mut resources = Resources::default();
    load(&text, "edge.yaml", &mut resources)?;
    let options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port: e2e::redis::free_port()?,
        admin_port: e2e::redis::free_port()?,
        ratelimit_address: rls.grpc_addr().to_string(),
        ..RenderOptions::default()
    };
    let envoy = EnvoyBuilder::from_text(&render(&resources, &options)?.envoy, "doctor")
        .var("LISTEN_PORT", options.listen_port)
        .var("ADMIN_PORT", options.admin_port)
        .start()
        .await?;
    let admin = envoy.admin_url("");
    let admin = admin.trim_start_matches("http://");

    // Every hop answers.
    let (code, out) = doctor(&file, &options, admin, "/ok/x").await?;
    assert_eq!(code, 0, "{out}");
    for hop in ["route", "filters", "envoy", "health", "connect"] {
        assert!(
            out.lines().any(|l| l.starts_with("ok") && l.contains(hop)),
            "no ok {hop} line:\n{out}"
        );
    }
    assert!(out.contains("route ok (prefix /ok/)"), "{out}");
    // A limited route meets gatehouse-ratelimit, which answers its health check.
    let (code, out) = doctor(&file, &options, admin, "/limited/x").await?;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("gatehouse_ratelimit") && out.contains("SERVING"),
        "{out}"
    );

    // No route.
    let (code, out) = doctor(&file, &options, admin, "/missing").await?;
    assert_eq!(code, 1, "{out}");
    let line = broken(&out).unwrap_or_default();
    assert!(line.contains("route") && line.contains("no route"), "{out}");
    // An endpoint refusing connections.
    let (code, out) = doctor(&file, &options, admin, "/refused/x").await?;
    assert_eq!(code, 1, "{out}");
    assert!(broken(&out).is_some_and(|l| l.contains("connect")), "{out}");
    // A cluster with no endpoints (its name resolves to nothing).
    let (code, out) = doctor(&file, &options, admin, "/nowhere/x").await?;
    assert_eq!(code, 1, "{out}");
    assert!(
        broken(&out).is_some_and(|l| l.contains("cluster") && l.contains("no endpoints")),
        "{out}"
    );
    // Endpoints failing their health checks.
    let (code, out) = doctor(&file, &options, admin, "/unhealthy/x").await?;
    assert_eq!(code, 1, "{out}");
    assert!(
        broken(&out).is_some_and(|l| l.contains("health") && l.contains("fails its health check")),
        "{out}"
    );
    // The filter's service down: the limited route stops there.
    let mut rls = rls;
    rls.terminate().await?;
    let (code, out) = doctor(&file, &options, admin, "/limited/x").await?;
    assert_eq!(code, 1, "{out}");
    assert!(
        broken(&out).is_some_and(|l| l.contains("service") && l.contains("gatehouse_ratelimit")),
        "{out}"
    );
    // ... and a route without a rate limit does not meet it.
    let (code, out) = doctor(&file, &options, admin, "/ok/x").await?;
    assert_eq!(code, 0, "{out}");
    Ok(())
}
