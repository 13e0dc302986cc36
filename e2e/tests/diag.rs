//! `gatehouse diag` in real headless Chromium against a running stack:
//! Envoy from the rendered resources, gatehouse-authz (an APIKey Filter),
//! gatehouse-ratelimit, upstreams, and upstreams serving OpenAPI documents.
//! The test changes the stack (a request counted, an endpoint killed) and
//! reads the change on the page; it saves the screenshots the docs show and
//! checks the pages for the configured secrets.

use std::time::Duration;

use e2e::browser::Browser;
use e2e::jwks::JwksServer;
use e2e::{AuthzService, Echo, EnvoyBuilder, RateLimitService, poll};
use gatehouse_config::{RenderOptions, Resources, load, render};

/// The API key the APIKey Filter accepts: it must never reach a page.
const API_KEY: &str = "diag-canary-key-7f3a9c";

const PETS: &str = r#"{"openapi": "3.0.3",
 "info": {"title": "Pets", "version": "1.2.0", "description": "Adopt a pet."},
 "paths": {"/pets": {"get": {"summary": "List the pets up for adoption"},
                     "post": {"summary": "Put a pet up for adoption"}},
           "/pets/{id}": {"delete": {"operationId": "adoptPet"}}}}"#;

#[tokio::test]
async fn the_diagnostics_page_and_the_portal_show_the_running_stack() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let mut checked = Some(Echo::start_named("checked").await?);
    let checked_port = checked.as_ref().map_or(0, Echo::port);
    let pets = JwksServer::start_down().await?;
    pets.serve(PETS);
    let broken_docs = JwksServer::start_down().await?;
    let secrets = tempfile::tempdir()?;
    std::fs::create_dir_all(secrets.path().join("apikeys-keys"))?;
    std::fs::write(
        secrets.path().join("apikeys-keys/acme"),
        format!("{API_KEY}\n"),
    )?;
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: orders}}
spec:
  prefix: /orders/
  service: '127.0.0.1:{echo}'
  labels:
    ambassador:
    - per_client: [{{generic_key: {{value: orders}}}}]
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: checked}}
spec:
  prefix: /checked/
  service: '127.0.0.1:{checked_port}'
  health_checks:
  - unhealthy_threshold: 1
    interval: 1s
    health_check:
      http: {{path: /health}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: pets}}
spec:
  prefix: /pets/
  service: '127.0.0.1:{pets}'
  docs: {{path: /jwks.json, display_name: Pet adoption}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: billing}}
spec:
  prefix: /billing/
  service: '127.0.0.1:{broken}'
  docs: {{path: /jwks.json}}
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: keys}}
spec:
  APIKey:
    httpHeader: X-Api-Key
    keys: [{{secretName: acme}}]
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: edge}}
spec:
  rules:
  - path: /orders/*
    filters: [{{name: keys}}]
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {{name: orders}}
spec:
  domain: ambassador
  limits:
  - {{pattern: [{{generic_key: orders}}], rate: 100, unit: minute}}
",
        echo = echo.port(),
        pets = pets.port(),
        broken = broken_docs.port(),
    );
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("edge.yaml");
    std::fs::write(&file, &text)?;
    let mut resources = Resources::default();
    load(&text, "edge.yaml", &mut resources)?;
    let mut options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port: e2e::redis::free_port()?,
        admin_port: e2e::redis::free_port()?,
        secrets_dir: secrets.path().display().to_string(),
        ..RenderOptions::default()
    };
    let files = render(&resources, &options)?;
    let authz = AuthzService::builder(files.authz.as_deref().unwrap_or_default())
        .start()
        .await?;
    let ratelimit = RateLimitService::builder()
        .file("ambassador.yaml", &files.ratelimit["ambassador.yaml"])
        .start()
        .await?;
    options.authz_address = authz.grpc_addr().to_string();
    options.ratelimit_address = ratelimit.grpc_addr().to_string();
    let envoy = EnvoyBuilder::from_text(&render(&resources, &options)?.envoy, "diag")
        .start()
        .await?;

    let listen = format!("127.0.0.1:{}", e2e::redis::free_port()?);
    let admin = envoy.admin_url("");
    let _diag = e2e::process::ChildProcess::spawn(
        "gatehouse diag",
        std::process::Command::new(e2e::paths::service_bin("gatehouse")?)
            .arg("diag")
            .arg("-f")
            .arg(&file)
            .args(["--listen", &listen])
            .args(["--listen-port", &options.listen_port.to_string()])
            .args(["--envoy-admin", admin.trim_start_matches("http://")])
            .args(["--ratelimit-metrics", &ratelimit.http_url("/metrics")])
            .args(["--authz-metrics", &authz.http_url("/metrics")])
            .args(["--refresh", "1"]),
        &dir.path().join("diag.log"),
    )?;
    let client = reqwest::Client::new();
    let diag_url = format!("http://{listen}");
    poll::until("gatehouse diag answers", poll::READY_DEADLINE, || async {
        Ok(client
            .get(&diag_url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
            .then_some(()))
    })
    .await?;

    // Three requests through the APIKey Filter and the rate limit.
    for _ in 0..3 {
        let status = envoy
            .get("/orders/x")
            .header("x-api-key", API_KEY)
            .send()
            .await?
            .status();
        assert_eq!(status, 200);
    }

    let browser = Browser::start().await?;
    browser.window_size(1280, 900).await?;
    browser.goto(&format!("{diag_url}/")).await?;
    // The route the test created, with its requests counted by Envoy, the
    // rate-limit counter it incremented, and gatehouse-authz's checks.
    let page = browser.text().await?;
    for needle in [
        "orders",
        "prefix /orders/",
        "gatehouse_ratelimit_total_hits_total",
        "gatehouse_authz_checks_total",
    ] {
        assert!(page.contains(needle), "{needle} not on the page:\n{page}");
    }
    let hits: f64 = browser
        .run(
            "const row=[...document.querySelectorAll('#ratelimit tr')].find(r=>r.textContent.includes('total_hits_total')&&r.textContent.includes('orders'));\
             return row?Number(row.lastElementChild.textContent):-1",
        )
        .await?
        .as_f64()
        .unwrap_or(-1.0);
    assert!(hits >= 3.0, "the rate-limit hits on the page: {hits}");
    let requests: f64 = browser
        .run(
            "const row=[...document.querySelectorAll('#routes tbody tr')].find(r=>r.children[1].textContent==='orders');\
             return row?Number(row.children[4].textContent):-1",
        )
        .await?
        .as_f64()
        .unwrap_or(-1.0);
    assert!(
        requests >= 3.0,
        "the orders route's requests on the page: {requests}"
    );

    // Kill the checked upstream: the page, without a reload, shows its
    // endpoint failing once Envoy's health check does.
    poll::until(
        "the checked endpoint healthy on the page",
        Duration::from_secs(30),
        || async {
            let text = browser.text().await?;
            Ok(text
                .contains(&format!("127.0.0.1:{checked_port} healthy"))
                .then_some(()))
        },
    )
    .await?;
    drop(checked.take());
    poll::until(
        "the killed endpoint failing on the page",
        Duration::from_secs(30),
        || async {
            let text = browser.text().await?;
            Ok(text
                .contains(&format!("127.0.0.1:{checked_port} failing"))
                .then_some(()))
        },
    )
    .await?;
    let images = e2e::paths::workspace_root().join("docs/images");
    std::fs::create_dir_all(&images)?;
    browser.screenshot(&images.join("diag.png")).await?;
    let diag_html = client.get(&diag_url).send().await?.text().await?;

    // The portal: the API served through Envoy with its operations, and the
    // one whose document fails, shown with its error rather than hidden.
    browser.goto(&format!("{diag_url}/portal")).await?;
    let portal = browser.text().await?;
    for needle in [
        "Pet adoption",
        "Pets 1.2.0",
        "List the pets up for adoption",
        "/pets/{id}",
        "adoptPet",
        "billing",
        "could not be read",
    ] {
        assert!(
            portal.contains(needle),
            "{needle} not in the portal:\n{portal}"
        );
    }
    browser.screenshot(&images.join("portal.png")).await?;
    let portal_html = client
        .get(format!("{diag_url}/portal"))
        .send()
        .await?
        .text()
        .await?;

    // Nothing the stack keeps secret is on either page, nor in what
    // `gatehouse doctor` prints for the route the key guards.
    let doctor = std::process::Command::new(e2e::paths::service_bin("gatehouse")?)
        .arg("doctor")
        .arg("-f")
        .arg(&file)
        .args(["--listen-port", &options.listen_port.to_string()])
        .args(["--envoy-admin", admin.trim_start_matches("http://")])
        .args(["-H", &format!("x-api-key: {API_KEY}")])
        .arg(format!("http://edge:{}/orders/x", options.listen_port))
        .output()?;
    let walk = String::from_utf8_lossy(&doctor.stdout).into_owned()
        + &String::from_utf8_lossy(&doctor.stderr);
    assert!(walk.contains("route orders"), "{walk}");
    for (what, text) in [
        ("diagnostics", &diag_html),
        ("portal", &portal_html),
        ("doctor", &walk),
    ] {
        assert!(
            !text.contains(API_KEY),
            "the API key is in the {what} output"
        );
    }
    Ok(())
}
