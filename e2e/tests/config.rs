//! Resources rendered by gatehouse-config, run by real Envoy.

use e2e::{Echo, Echoed};
use gatehouse_config::{RenderOptions, Resources, load, render, render_bootstrap};

/// Every example resource set renders to a bootstrap Envoy accepts, with the
/// files it names in place: the built jwt filter, and the test certificate
/// in each Host's Secret.
#[tokio::test]
async fn every_example_renders_to_a_bootstrap_envoy_validates() -> anyhow::Result<()> {
    let dir = e2e::paths::workspace_root().join("envoy-config/examples");
    let work = tempfile::tempdir()?;
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut resources = Resources::default();
        load(&std::fs::read_to_string(&path)?, &name, &mut resources)?;
        let secrets = work.path().join(format!("{name}.secrets"));
        for host in &resources.hosts {
            if let Some(secret) = &host.tls_secret {
                std::fs::create_dir_all(secrets.join(secret))?;
                for file in ["tls.crt", "tls.key"] {
                    std::fs::copy(
                        e2e::paths::testdata(&format!("tls/{file}")),
                        secrets.join(secret).join(file),
                    )?;
                }
            }
        }
        let options = RenderOptions {
            jwt_wasm: e2e::paths::wasm_filter("gatehouse_jwt")?
                .display()
                .to_string(),
            router_wasm: e2e::paths::wasm_filter("gatehouse_router")?
                .display()
                .to_string(),
            secrets_dir: secrets.display().to_string(),
            session_wasm: e2e::paths::wasm_filter("gatehouse_session")?
                .display()
                .to_string(),
            feed_socket: e2e::paths::feed_socket(),
            ..RenderOptions::default()
        };
        let bootstrap = work.path().join(format!("{name}.envoy.yaml"));
        std::fs::write(&bootstrap, render(&resources, &options)?.envoy)?;
        e2e::envoy::validate(&bootstrap)
            .await
            .map_err(|e| e.context(format!("envoy-config/examples/{name}")))?;
        checked += 1;
    }
    assert!(checked >= 3, "examples found: {checked}");
    Ok(())
}

/// A Host with a certificate: TLS on the TLS listener (chosen by SNI), and
/// cleartext requests for it redirected to https; a Host that rejects
/// cleartext gets 404 there.
#[tokio::test]
async fn a_tls_host_serves_https_and_redirects_cleartext() -> anyhow::Result<()> {
    let echo = Echo::start_named("shop").await?;
    let cert = e2e::paths::testdata("tls/tls.crt");
    let key = e2e::paths::testdata("tls/tls.key");
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: shop}}
spec:
  hostname: shop.test
  tlsFiles: {{certChain: '{cert}', privateKey: '{key}'}}
  requestPolicy: {{insecure: {{action: Redirect}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: api}}
spec:
  hostname: api.test
  tlsFiles: {{certChain: '{cert}', privateKey: '{key}'}}
  requestPolicy: {{insecure: {{action: Reject}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: shop}}
spec: {{prefix: /, service: '127.0.0.1:{port}'}}
",
        cert = cert.display(),
        key = key.display(),
        port = echo.port(),
    );
    let mut resources = Resources::default();
    load(&text, "tls.yaml", &mut resources)?;
    let options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        https_port: 0,
        admin_port: 0,
        session_wasm: e2e::paths::wasm_filter("gatehouse_session")?
            .display()
            .to_string(),
        feed_socket: e2e::paths::feed_socket(),
        ..RenderOptions::default()
    };
    let envoy = e2e::EnvoyBuilder::from_text(&render(&resources, &options)?.envoy, "tls")
        .start()
        .await?;
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let redirected = no_redirects
        .get(envoy.url("/cart?x=1"))
        .header("host", "shop.test")
        .send()
        .await?;
    assert_eq!(redirected.status(), 301);
    assert_eq!(
        redirected.headers()["location"],
        "https://shop.test/cart?x=1"
    );
    let rejected = envoy.get("/").header("host", "api.test").send().await?;
    assert_eq!(rejected.status(), 404);

    // Over TLS, with SNI, the certificate checked against the test CA.
    let tls = envoy
        .listener("ingress_tls")
        .ok_or_else(|| anyhow::anyhow!("no ingress_tls listener"))?;
    let seen = e2e::echo::get_over_tls(&cert, "shop.test", tls.port(), "/over-tls").await?;
    assert_eq!(
        (seen.upstream.as_str(), seen.path.as_str()),
        ("shop", "/over-tls")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
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
metadata: {{name: preview}}
spec: {{prefix: /shop/, service: '127.0.0.1:{admin}', query_parameters: {{preview: '1'}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: beta}}
spec: {{prefix: /shop/, service: '127.0.0.1:{api}', headers: {{x-beta: true}}}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Mapping
metadata: {{name: status}}
spec: {{path: /status, service: '127.0.0.1:{api}'}}
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
        session_wasm: e2e::paths::wasm_filter("gatehouse_session")?
            .display()
            .to_string(),
        feed_socket: e2e::paths::feed_socket(),
        ..RenderOptions::default()
    };
    let envoy = e2e::EnvoyBuilder::from_text(&render_bootstrap(&resources, &options)?, "rendered")
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

    // A query parameter, a header that is merely present, an exact path.
    let preview = envoy.get("/shop/cart?preview=1").send().await?;
    assert_eq!(preview.json::<Echoed>().await?.upstream, "admin");
    let beta = envoy
        .get("/shop/cart")
        .header("x-beta", "anything")
        .send()
        .await?
        .json::<Echoed>()
        .await?;
    assert_eq!(
        (beta.upstream.as_str(), beta.path.as_str()),
        ("api", "/cart")
    );
    let status = envoy.get("/status").send().await?.json::<Echoed>().await?;
    assert_eq!(
        (status.upstream.as_str(), status.path.as_str()),
        ("api", "/status")
    );
    assert_eq!(envoy.get("/status/more").send().await?.status(), 404);

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

mod filters_and_limits {
    //! Filter, FilterPolicy and RateLimit resources rendered into an Envoy
    //! bootstrap, an authz.yaml and a ratelimit directory, run by real Envoy,
    //! gatehouse-authz and gatehouse-ratelimit.

    use e2e::authz::AuthzService;
    use e2e::jwks::JwksServer;
    use e2e::ratelimit::RateLimitService;
    use e2e::{Echo, Echoed};
    use gatehouse_config::{RenderOptions, Resources, load, render};
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    fn testdata(name: &str) -> anyhow::Result<Vec<u8>> {
        let path = e2e::paths::workspace_root()
            .join("filters/jwt-core/testdata")
            .join(name);
        Ok(std::fs::read(path)?)
    }

    /// An RS256 token of the test key `rsa-1`, valid for ten minutes.
    fn token(sub: &str) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        let claims = json!({"iss": "https://idp.example", "sub": sub, "exp": now.as_secs() + 600});
        let key = EncodingKey::from_rsa_pem(&testdata("keys/rsa.pem")?)?;
        Ok(encode(&header, &claims, &key)?)
    }

    /// Ready when gatehouse-jwt holds the keys: a valid token on `path`
    /// passes. A request that comes while another worker's first JWKS fetch
    /// is in flight is judged without keys (401), fail-closed.
    async fn until_keys(envoy: &e2e::Envoy, path: &str) -> anyhow::Result<()> {
        let ready = format!("Bearer {}", token("ready")?);
        e2e::poll::until("the JWKS loaded", e2e::poll::READY_DEADLINE, || async {
            let status = envoy
                .get(path)
                .header("authorization", &ready)
                .send()
                .await?
                .status();
            Ok((status.is_success()).then_some(()))
        })
        .await
    }

    fn resources(echo: u16, jwks: u16) -> anyhow::Result<Resources> {
        let text = format!(
            r#"apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: api}}
spec:
  prefix: /api/
  service: 127.0.0.1:{echo}
  labels:
    ambassador:
    - per_client:
      - request_headers: {{key: client, header_name: x-gatehouse-client}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: partners}}
spec: {{prefix: /partners/, service: 127.0.0.1:{echo}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: public}}
spec: {{prefix: /public/, service: 127.0.0.1:{echo}}}
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
kind: Filter
metadata: {{name: idp}}
spec:
  JWT:
    jwksURI: http://127.0.0.1:{jwks}/jwks.json
    issuer: https://idp.example
    validAlgorithms: [RS256]
    injectRequestHeaders:
    - {{name: X-Partner, value: "{{{{ .token.Claims.sub }}}}"}}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: edge}}
spec:
  rules:
  - path: /api/*
    filters: [{{name: keys}}]
  - path: /partners/open
    filters: null
  - path: /partners/*
    filters: [{{name: idp}}]
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {{name: per-client}}
spec:
  domain: ambassador
  limits:
  - {{pattern: [{{client: "*"}}], rate: 3, unit: minute}}
"#
        );
        let mut resources = Resources::default();
        load(&text, "edge.yaml", &mut resources)?;
        Ok(resources)
    }

    #[tokio::test]
    async fn rendered_filters_policies_and_limits_run_through_envoy() -> anyhow::Result<()> {
        let echo = Echo::start_named("api").await?;
        let jwks = JwksServer::start_down().await?;
        jwks.serve(&e2e::demo::jwks()?);
        let secrets = tempfile::tempdir()?;
        std::fs::create_dir_all(secrets.path().join("apikeys-keys"))?;
        std::fs::write(secrets.path().join("apikeys-keys/acme"), "acme-demo-key\n")?;
        let resources = resources(echo.port(), jwks.port())?;
        let mut options = RenderOptions {
            listen_address: "127.0.0.1".into(),
            listen_port: 0,
            admin_port: 0,
            jwt_wasm: e2e::paths::wasm_filter("gatehouse_jwt")?
                .display()
                .to_string(),
            secrets_dir: secrets.path().display().to_string(),
            session_wasm: e2e::paths::wasm_filter("gatehouse_session")?
                .display()
                .to_string(),
            feed_socket: e2e::paths::feed_socket(),
            ..RenderOptions::default()
        };
        // The services' files do not depend on where the services listen.
        let files = render(&resources, &options)?;
        let authz_yaml = files
            .authz
            .ok_or_else(|| anyhow::anyhow!("an APIKey Filter renders authz.yaml"))?;
        assert_eq!(
            files.ratelimit.keys().collect::<Vec<_>>(),
            ["ambassador.yaml"],
            "one file per domain"
        );
        let authz = AuthzService::builder(&authz_yaml).start().await?;
        let ratelimit = RateLimitService::builder()
            .file("ambassador.yaml", &files.ratelimit["ambassador.yaml"])
            .start()
            .await?;
        options.authz_address = authz.grpc_addr().to_string();
        options.ratelimit_address = ratelimit.grpc_addr().to_string();
        let envoy = e2e::EnvoyBuilder::from_text(&render(&resources, &options)?.envoy, "rendered")
            .start()
            .await?;
        until_keys(&envoy, "/partners/list").await?;

        // No Filter on /public/: it passes, and what only the stack may write
        // never arrives from a client.
        let public = envoy
            .get("/public/x")
            .header("x-gatehouse-client", "mallory")
            .header("x-partner", "mallory")
            .send()
            .await?
            .json::<Echoed>()
            .await?;
        assert_eq!(public.header("x-gatehouse-client"), None);
        assert_eq!(public.header("x-partner"), None);

        // APIKey on /api/*, through gatehouse-authz.
        let api = |key: Option<&'static str>| {
            let mut r = envoy.get("/api/orders");
            if let Some(k) = key {
                r = r.header("x-api-key", k);
            }
            r.send()
        };
        assert_eq!(api(None).await?.status(), 401);
        assert_eq!(api(Some("wrong")).await?.status(), 401);
        let seen = api(Some("acme-demo-key")).await?.json::<Echoed>().await?;
        assert_eq!(seen.header("x-gatehouse-client"), Some("acme"));
        assert_eq!(seen.header("x-api-key"), None, "the key stays at the edge");

        // The RateLimit counts per client (the label reads the header
        // gatehouse-authz wrote): 3 a minute, the first was above.
        assert_eq!(api(Some("acme-demo-key")).await?.status(), 200);
        assert_eq!(api(Some("acme-demo-key")).await?.status(), 200);
        let limited = api(Some("acme-demo-key")).await?;
        assert_eq!(limited.status(), 429);
        assert!(limited.headers().contains_key("x-ratelimit-limit"));

        // JWT on /partners/*, except the narrower rule before it.
        let partners = |path: &'static str, bearer: Option<String>| {
            let mut r = envoy.get(path).header("x-partner", "mallory");
            if let Some(t) = bearer {
                r = r.header("authorization", format!("Bearer {t}"));
            }
            r.send()
        };
        let missing = partners("/partners/list", None).await?;
        assert_eq!(missing.status(), 401);
        assert!(
            missing.headers()["www-authenticate"]
                .to_str()?
                .starts_with("Bearer")
        );
        let seen = partners("/partners/list", Some(token("globex")?))
            .await?
            .json::<Echoed>()
            .await?;
        assert_eq!(seen.header("x-partner"), Some("globex"));
        assert_eq!(seen.path, "/list", "the Mapping's rewrite still applies");
        assert_eq!(
            seen.header("authorization"),
            None,
            "the token stays at the edge"
        );
        let open = partners("/partners/open", Some(token("globex")?))
            .await?
            .json::<Echoed>()
            .await?;
        assert_eq!(open.path, "/open");
        assert_eq!(open.header("x-partner"), None, "spoofed copy removed");
        assert!(
            open.header("authorization").is_some(),
            "a route without the JWT Filter leaves the header alone"
        );
        Ok(())
    }

    /// A 70/30 split of two Mappings, sticky on the user a verified JWT
    /// names: gatehouse-jwt writes the claim, gatehouse-router hashes it.
    #[tokio::test]
    async fn a_sticky_claim_canary_keeps_each_user_on_one_side() -> anyhow::Result<()> {
        let stable = Echo::start_named("shop").await?;
        let canary = Echo::start_named("shop-v2").await?;
        let jwks = JwksServer::start_down().await?;
        jwks.serve(&e2e::demo::jwks()?);
        let text = format!(
            r#"apiVersion: gatehouse.dev/v1alpha1
kind: Mapping
metadata: {{name: shop}}
spec: {{prefix: /shop/, service: 127.0.0.1:{stable}, sticky: {{header: x-gatehouse-user}}}}
---
apiVersion: gatehouse.dev/v1alpha1
kind: Mapping
metadata: {{name: shop-v2}}
spec: {{prefix: /shop/, service: 127.0.0.1:{canary}, weight: 30, sticky: {{header: x-gatehouse-user}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: idp}}
spec:
  JWT:
    jwksURI: http://127.0.0.1:{jwks}/jwks.json
    issuer: https://idp.example
    injectRequestHeaders:
    - {{name: x-gatehouse-user, value: "{{{{ .token.Claims.sub }}}}"}}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: shop}}
spec:
  rules: [{{path: /shop/*, filters: [{{name: idp}}]}}]
"#,
            stable = stable.port(),
            canary = canary.port(),
            jwks = jwks.port(),
        );
        let mut resources = Resources::default();
        load(&text, "sticky.yaml", &mut resources)?;
        let options = RenderOptions {
            listen_address: "127.0.0.1".into(),
            listen_port: 0,
            admin_port: 0,
            jwt_wasm: e2e::paths::wasm_filter("gatehouse_jwt")?
                .display()
                .to_string(),
            router_wasm: e2e::paths::wasm_filter("gatehouse_router")?
                .display()
                .to_string(),
            session_wasm: e2e::paths::wasm_filter("gatehouse_session")?
                .display()
                .to_string(),
            feed_socket: e2e::paths::feed_socket(),
            ..RenderOptions::default()
        };
        let envoy = e2e::EnvoyBuilder::from_text(&render(&resources, &options)?.envoy, "sticky")
            .start()
            .await?;
        until_keys(&envoy, "/shop/cart").await?;
        let mut on_canary = 0;
        for user in 0..100 {
            let bearer = format!("Bearer {}", token(&format!("user-{user}"))?);
            let mut sides = std::collections::BTreeSet::new();
            for _ in 0..3 {
                let seen = envoy
                    .get("/shop/cart")
                    .header("authorization", &bearer)
                    // A client cannot pick its side.
                    .header("x-gatehouse-route", "127_0_0_1_1")
                    .send()
                    .await?
                    .json::<Echoed>()
                    .await?;
                assert_eq!(seen.path, "/cart");
                assert_eq!(seen.header("x-gatehouse-route"), None);
                assert_eq!(seen.header("authorization"), None);
                sides.insert(seen.upstream);
            }
            assert_eq!(sides.len(), 1, "user-{user} saw {sides:?}");
            if sides.contains("shop-v2") {
                on_canary += 1;
            }
        }
        // 100 users at 30 %: a standard deviation of about 4.6, so 12..=48
        // is a band of nearly four of them around 30.
        assert!(
            (12..=48).contains(&on_canary),
            "{on_canary} of 100 users on the 30 % canary"
        );
        Ok(())
    }

    /// The same origin by another host name: `localhost` for `127.0.0.1`.
    fn other_origin(origin: &str) -> String {
        origin.replace("127.0.0.1", "localhost")
    }

    /// An OAuth2 Filter in Ambassador's shape, rendered: a browser-like
    /// client logs in at the real IdP through the rendered callback route
    /// and reaches the protected Mapping with its identity. A rule's
    /// `insteadOfRedirect` answers its status to the requests its header
    /// condition picks, where others are sent to the IdP; logging out
    /// returns to `postLogoutRedirectURI`; `injectRequestHeaders` reach the
    /// upstream from the session's ID token; a second protected origin has
    /// its own callback and session.
    #[tokio::test]
    async fn a_rendered_oauth2_filter_logs_in_at_the_real_idp() -> anyhow::Result<()> {
        let echo = Echo::start_named("app").await?;
        let resources = |issuer: &str, origin: &str| -> anyhow::Result<Resources> {
            let text = format!(
                r#"apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: app}}
spec: {{prefix: /app/, service: 127.0.0.1:{echo}, rewrite: /app/}}
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: sso}}
spec:
  OAuth2:
    authorizationURL: {issuer}
    clientID: gatehouse
    secretName: sso-client
    protectedOrigins: [{{origin: "{origin}"}}, {{origin: "{other}"}}]
    postLogoutRedirectURI: "{origin}/app/bye"
    injectRequestHeaders:
    - name: X-Sub
      value: "{{{{ .idToken.Claims.sub }}}}"
    - name: X-Agent
      value: 'agent={{{{ .httpRequestHeader.Get "User-Agent" }}}}'
    - name: X-Missing
      value: "{{{{ .idToken.Claims.no_such_claim }}}}"
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: app}}
spec:
  rules:
  - path: /app/api/*
    filters:
    - name: sso
      arguments:
        insteadOfRedirect:
          httpStatusCode: 401
          ifRequestHeader: {{name: X-Client, value: spa}}
  - {{path: /app/*, filters: [{{name: sso}}]}}
"#,
                echo = echo.port(),
                other = other_origin(origin),
            );
            let mut resources = Resources::default();
            load(&text, "sso.yaml", &mut resources)?;
            Ok(resources)
        };
        let secrets = tempfile::tempdir()?;
        for (file, content) in [
            ("sso-client/oauth2-client-secret", "s3cret-for-tests\n"),
            (
                "gatehouse-session-keys/keys",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
            ),
        ] {
            let path = secrets.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap_or(secrets.path()))?;
            std::fs::write(path, content)?;
        }
        let mut options = RenderOptions {
            listen_address: "127.0.0.1".into(),
            listen_port: 0,
            admin_port: 0,
            secrets_dir: secrets.path().display().to_string(),
            session_wasm: e2e::paths::wasm_filter("gatehouse_session")?
                .display()
                .to_string(),
            feed_socket: e2e::paths::feed_socket(),
            ..RenderOptions::default()
        };
        // The IdP must know the callback, which needs Envoy's port: start
        // with a placeholder IdP and origin (the bootstrap does not depend
        // on them), then render again once both are known.
        let placeholder = resources("http://127.0.0.1:9/", "http://127.0.0.1:9")?;
        let boot = render(&placeholder, &options)?
            .authz
            .ok_or_else(|| anyhow::anyhow!("an OAuth2 Filter renders authz.yaml"))?;
        let authz = AuthzService::builder(&boot).start().await?;
        options.authz_address = authz.grpc_addr().to_string();
        let envoy = e2e::EnvoyBuilder::from_text(&render(&placeholder, &options)?.envoy, "sso")
            .start()
            .await?;
        let origin = envoy.url("");
        let origin = origin.trim_end_matches('/');
        let callback = format!("{origin}/.gatehouse/oidc/sso/callback");
        let other_callback = format!("{}/.gatehouse/oidc/sso/callback", other_origin(origin));
        let idp = e2e::idp::Idp::start(
            &json!([{
                "client_id": "gatehouse",
                "client_secret": "s3cret-for-tests",
                "redirect_uris": [callback, other_callback],
                "post_logout_redirect_uris": [format!("{origin}/app/bye")],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic"
            }]),
            3600,
        )
        .await?;
        let real = resources(idp.issuer(), origin)?;
        assert_eq!(
            render(&real, &options)?.envoy,
            render(&placeholder, &options)?.envoy
        );
        let authz_yaml = render(&real, &options)?.authz.unwrap_or_default();
        authz.write_file("authz.yaml", &authz_yaml)?;

        let client = reqwest::Client::builder()
            .no_proxy()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        // Ready when a browser is sent to the IdP: the reload went through.
        let start =
            e2e::idp::until_sent_to_login(&client, &envoy.url("/app/orders"), idp.issuer()).await?;
        // insteadOfRedirect: the single-page app's calls get 401, a browser
        // on the same path is still sent to the IdP (another cookie jar: a
        // login started here would replace the one above).
        let anon = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let spa = anon
            .get(envoy.url("/app/api/orders"))
            .header("x-client", "spa")
            .send()
            .await?;
        assert_eq!(spa.status(), 401);
        assert_eq!(
            spa.json::<serde_json::Value>().await?["code"],
            "login_required"
        );
        let browser = anon.get(envoy.url("/app/api/orders")).send().await?;
        assert_eq!(browser.status(), 302);
        assert!(e2e::idp::location(&browser).starts_with(idp.issuer()));
        let back = idp
            .sign_in(&client, &e2e::idp::location(&start), &callback)
            .await?;
        let r = client.get(&back).send().await?;
        assert_eq!(r.status(), 302, "{}", r.text().await?);
        assert_eq!(e2e::idp::location(&r), "/app/orders");
        let seen = client
            .get(envoy.url("/app/orders"))
            .header("user-agent", "shop-browser/2")
            .header("x-sub", "mallory")
            .header("x-missing", "mallory")
            .send()
            .await?
            .json::<Echoed>()
            .await?;
        assert_eq!(seen.header("x-gatehouse-user"), Some("alice"));
        // injectRequestHeaders: from the ID token and the request; a
        // client's copies never pass, not even of a header with no value.
        assert_eq!(
            seen.headers.get("x-sub").cloned().unwrap_or_default(),
            ["alice"]
        );
        assert_eq!(seen.header("x-agent"), Some("agent=shop-browser/2"));
        assert_eq!(seen.header("x-missing"), None);

        // The Filter's other origin: a login begun there returns there, and
        // its session is that origin's.
        let elsewhere = reqwest::Client::builder()
            .no_proxy()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let other_app = format!("{}/app/orders", other_origin(origin));
        let start = elsewhere.get(&other_app).send().await?;
        assert_eq!(start.status(), 302);
        assert!(
            e2e::idp::location(&start).contains(&format!(
                "redirect_uri={}",
                other_callback.replace(':', "%3A").replace('/', "%2F")
            )),
            "{}",
            e2e::idp::location(&start)
        );
        let back = idp
            .sign_in(&elsewhere, &e2e::idp::location(&start), &other_callback)
            .await?;
        let r = elsewhere.get(&back).send().await?;
        assert_eq!(r.status(), 302, "{}", r.text().await?);
        let seen = elsewhere
            .get(&other_app)
            .send()
            .await?
            .json::<Echoed>()
            .await?;
        assert_eq!(seen.header("x-gatehouse-user"), Some("alice"));

        // Logging out ends at postLogoutRedirectURI, by way of the IdP.
        let out = client
            .post(envoy.url("/.gatehouse/oidc/sso/logout"))
            .header("origin", origin)
            .send()
            .await?;
        assert_eq!(out.status(), 302, "{}", out.text().await?);
        let to = e2e::idp::location(&out);
        let after = format!("{origin}/app/bye");
        assert!(
            to.starts_with(idp.issuer())
                && to.contains(&format!(
                    "post_logout_redirect_uri={}",
                    after.replace(':', "%3A").replace('/', "%2F")
                )),
            "{to}"
        );
        Ok(())
    }
}
