//! Resources rendered by gatehouse-config, run by real Envoy.

use e2e::{Echo, Echoed};
use gatehouse_config::{RenderOptions, Resources, load, render_bootstrap};

#[tokio::test]
async fn every_committed_example_bootstrap_passes_envoy_validate() -> anyhow::Result<()> {
    let dir = e2e::paths::workspace_root().join("envoy-config/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(".envoy.yaml") {
            e2e::envoy::validate(&path).await?;
            checked += 1;
        }
    }
    assert!(checked >= 1);
    Ok(())
}

#[tokio::test]
async fn rendered_mappings_route_by_host_prefix_header_and_weight() -> anyhow::Result<()> {
    let shop = Echo::start_named("shop").await?;
    let canary = Echo::start_named("shop-v2").await?;
    let api = Echo::start_named("api").await?;
    let admin = Echo::start_named("admin").await?;
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: shop}}
spec: {{prefix: /shop/, service: '127.0.0.1:{shop}'}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: shop-canary}}
spec: {{prefix: /shop/, service: '127.0.0.1:{canary}', weight: 10}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Mapping
metadata: {{name: api}}
spec: {{prefix: /shop/api/, service: 'http://127.0.0.1:{api}', rewrite: /v1/}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Mapping
metadata: {{name: admin}}
spec: {{hostname: admin.example.com, prefix: /, service: '127.0.0.1:{admin}', headers: {{x-team: ops}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: cors}}
spec: {{prefix: /cors/, service: '127.0.0.1:{shop}', cors: {{origins: 'https://app.example', methods: [GET, PUT], headers: [content-type], max_age: '600'}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: http}}
spec: {{port: 8080, protocol: HTTP, securityModel: XFP, l7Depth: 1}}
",
        shop = shop.port(),
        canary = canary.port(),
        api = api.port(),
        admin = admin.port(),
    );
    let mut resources = Resources::default();
    load(&text, "test.yaml", &mut resources)?;
    let options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        admin_port: 0,
        ..RenderOptions::default()
    };
    let envoy = e2e::EnvoyBuilder::from_text(&render_bootstrap(&resources, &options), "rendered")
        .start()
        .await?;
    let get = |path: &'static str, host: Option<&'static str>, team: Option<&'static str>| {
        let mut r = envoy.get(path);
        if let Some(h) = host {
            r = r.header("host", h);
        }
        if let Some(t) = team {
            r = r.header("x-team", t);
        }
        async move { anyhow::Ok(r.send().await?.json::<Echoed>().await?) }
    };

    // One trusted proxy in front (l7Depth 1): the client it names is the
    // client, and every request is logged as JSON with its request id.
    let behind = envoy
        .get("/shop/api/x")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await?
        .json::<Echoed>()
        .await?;
    assert_eq!(
        behind.header("x-envoy-external-address"),
        Some("203.0.113.7")
    );
    let request_id = behind.header("x-request-id").unwrap_or_default().to_owned();
    assert!(!request_id.is_empty());
    e2e::poll::until("the access log line", e2e::poll::READY_DEADLINE, || async {
        Ok(envoy
            .log()
            .contains(&format!("\"request_id\":\"{request_id}\""))
            .then_some(()))
    })
    .await?;

    // The longer prefix wins, with Ambassador's rewrite.
    let seen = get("/shop/api/orders", None, None).await?;
    assert_eq!(
        (seen.upstream.as_str(), seen.path.as_str()),
        ("api", "/v1/orders")
    );
    // Host and header: the admin site only for its host and team.
    assert_eq!(
        get("/", Some("admin.example.com"), Some("ops"))
            .await?
            .upstream,
        "admin"
    );
    let other = envoy
        .get("/")
        .header("host", "admin.example.com")
        .send()
        .await?;
    assert_eq!(other.status(), 404, "no route without the header");

    // CORS preflight, answered by Envoy for an allowed origin only.
    let preflight = |origin: &'static str| {
        envoy
            .client()
            .request(reqwest::Method::OPTIONS, envoy.url("/cors/items"))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .send()
    };
    let allowed = preflight("https://app.example").await?;
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        allowed.headers()["access-control-allow-methods"]
            .to_str()?
            .contains("PUT")
    );
    let refused = preflight("https://evil.example").await?;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // 90/10 by weight over many requests. Envoy picks at random: with 2000
    // requests the canary's count has a standard deviation of about 13, so
    // 140..=260 is a band of more than four of them around 200.
    let mut on_canary = 0;
    for _ in 0..2000 {
        let seen = get("/shop/cart", None, None).await?;
        assert_eq!(seen.path, "/cart", "the default rewrite is /");
        if seen.upstream == "shop-v2" {
            on_canary += 1;
        }
    }
    assert!(
        (140..=260).contains(&on_canary),
        "{on_canary} of 2000 on the 10 % canary"
    );
    Ok(())
}

/// Runs `gatehouse render --live` for a one-Mapping configuration into
/// `dir`, waiting on `envoy`'s admin when given (as an operator would).
async fn render_live(
    dir: &std::path::Path,
    service_port: u16,
    envoy: Option<&e2e::Envoy>,
) -> anyhow::Result<String> {
    let resources = tempfile::tempdir()?;
    let file = resources.path().join("live.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: gatehouse.dev/v1alpha1\nkind: Mapping\nmetadata: {{name: app}}\nspec: {{prefix: /app/, service: '127.0.0.1:{service_port}'}}\n"
        ),
    )?;
    let mut command = tokio::process::Command::new(e2e::paths::service_bin("gatehouse")?);
    command
        .args([
            "render",
            "--live",
            "--listen-port",
            "0",
            "--admin-port",
            "0",
            "-f",
        ])
        .arg(&file)
        .arg("-o")
        .arg(dir);
    if let Some(envoy) = envoy {
        let admin = envoy.admin_url("");
        command
            .arg("--envoy-admin")
            .arg(admin.trim_start_matches("http://"));
    }
    let out = command.output().await?;
    anyhow::ensure!(
        out.status.success(),
        "gatehouse render --live: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The bootstrap listens on the loopback only in tests.
    Ok(std::fs::read_to_string(dir.join("envoy.yaml"))?.replace("0.0.0.0", "127.0.0.1"))
}

#[tokio::test]
async fn a_live_re_render_changes_routing_without_a_failed_request() -> anyhow::Result<()> {
    let blue = Echo::start_named("blue").await?;
    let green = Echo::start_named("green").await?;
    let dir = tempfile::tempdir()?;
    let live_dir = std::fs::canonicalize(dir.path())?;
    let bootstrap = render_live(&live_dir, blue.port(), None).await?;
    let envoy = e2e::EnvoyBuilder::from_text(&bootstrap, "live")
        .start()
        .await?;
    let url = envoy.url("/app/x");
    let client = envoy.client().clone();
    // Routes come from the file: wait until they are in.
    e2e::poll::until(
        "the file routes loaded",
        e2e::poll::READY_DEADLINE,
        || async {
            let r = client.get(&url).send().await?;
            Ok((r.status() == 200).then_some(()))
        },
    )
    .await?;

    // A steady load of requests on kept-alive connections while the
    // configuration changes under it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loaders = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        loaders.spawn(async move {
            let (mut ok, mut failed, mut green) = (0u32, Vec::new(), 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        ok += 1;
                        if r.json::<Echoed>()
                            .await
                            .is_ok_and(|e| e.upstream == "green")
                        {
                            green += 1;
                        }
                    }
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed, green)
        });
    }
    render_live(&live_dir, green.port(), Some(&envoy)).await?;
    e2e::poll::until(
        "requests reach the new upstream",
        e2e::poll::READY_DEADLINE,
        || async {
            // Failures are the loaders' to count; this only watches for green.
            let seen = client.get(&url).send().await?.json::<Echoed>().await;
            Ok(seen.is_ok_and(|s| s.upstream == "green").then_some(()))
        },
    )
    .await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed, mut green_seen) = (0, Vec::new(), 0);
    while let Some(done) = loaders.join_next().await {
        let (o, f, g) = done?;
        ok += o;
        failed.extend(f);
        green_seen += g;
    }
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        ok > 0 && green_seen > 0,
        "{ok} requests, {green_seen} on the new upstream"
    );
    Ok(())
}
