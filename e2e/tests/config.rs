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
