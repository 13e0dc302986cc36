//! Ambassador's meaning, through real Envoy: examples in Ambassador's
//! format whose effect depends on how Envoy runs what Gatehouse renders
//! (the render-only checks are in `envoy-config/tests/fidelity.rs`).

use e2e::jwks::JwksServer;
use e2e::{Echo, Echoed, Envoy};
use gatehouse_config::{RenderOptions, Resources, load, render};

async fn start(text: &str, options: RenderOptions) -> anyhow::Result<Envoy> {
    let mut resources = Resources::default();
    load(text, "edge.yaml", &mut resources)?;
    let options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        https_port: 0,
        admin_port: 0,
        ..options
    };
    e2e::EnvoyBuilder::from_text(&render(&resources, &options)?.envoy, "fidelity")
        .start()
        .await
}

/// Render options with the built gatehouse-jwt filter.
fn with_jwt() -> anyhow::Result<RenderOptions> {
    Ok(RenderOptions {
        jwt_wasm: e2e::paths::wasm_filter("gatehouse_jwt")?
            .display()
            .to_string(),
        session_wasm: e2e::paths::wasm_filter("gatehouse_session")?
            .display()
            .to_string(),
        feed_socket: e2e::paths::feed_socket(),
        ..RenderOptions::default()
    })
}

fn no_redirects() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// A canary split routes each member's share with that member's own
/// rewrite and Host header, as Ambassador's one route per member does.
#[tokio::test]
async fn each_member_of_a_canary_keeps_its_own_rewrite_and_host() -> anyhow::Result<()> {
    let stable = Echo::start_named("stable").await?;
    let canary = Echo::start_named("canary").await?;
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: stable}}
spec: {{prefix: /shop/, service: '127.0.0.1:{stable}', rewrite: /v1/, host_rewrite: stable.internal}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: canary}}
spec: {{prefix: /shop/, service: '127.0.0.1:{canary}', weight: 50, rewrite: /v2/}}
",
        stable = stable.port(),
        canary = canary.port(),
    );
    let envoy = start(&text, RenderOptions::default()).await?;
    let mut seen = std::collections::BTreeMap::new();
    // Each side has half: 200 requests all on one side happen with
    // probability 2^-199.
    for _ in 0..200 {
        let e = envoy
            .get("/shop/cart")
            .send()
            .await?
            .json::<Echoed>()
            .await?;
        let host = e.header("host").unwrap_or_default().to_owned();
        seen.insert(e.upstream.clone(), (e.path.clone(), host));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(
        seen.get("stable").map(|(p, h)| (p.as_str(), h.as_str())),
        Some(("/v1/cart", "stable.internal"))
    );
    let (path, host) = seen
        .get("canary")
        .ok_or_else(|| anyhow::anyhow!("no request reached the canary: {seen:?}"))?;
    assert_eq!(path, "/v2/cart");
    assert_ne!(
        host, "stable.internal",
        "the stable member's host_rewrite is its own"
    );
    Ok(())
}

/// `rewrite: ""` sends the path as it came, also on a narrower route a
/// FilterPolicy rule makes.
#[tokio::test]
async fn an_empty_rewrite_keeps_the_path_on_every_route() -> anyhow::Result<()> {
    let echo = Echo::start_named("httpbin").await?;
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: httpbin}}
spec: {{prefix: /httpbin/, service: '127.0.0.1:{port}', rewrite: ''}}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: open}}
spec:
  rules:
  - {{path: /httpbin/ip, filters: null}}
",
        port = echo.port()
    );
    let envoy = start(&text, RenderOptions::default()).await?;
    for path in ["/httpbin/ip", "/httpbin/headers"] {
        let e = envoy.get(path).send().await?.json::<Echoed>().await?;
        assert_eq!(e.path, path);
    }
    Ok(())
}

/// TLS ended at a load balancer in front (one trusted hop): the Hosts have
/// no certificate here, and what the balancer says in `X-Forwarded-Proto`
/// decides. Cleartext is redirected (the default) or refused (Reject).
#[tokio::test]
async fn behind_a_tls_load_balancer_x_forwarded_proto_decides() -> anyhow::Result<()> {
    let echo = Echo::start_named("app").await?;
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: http}}
spec: {{port: 8080, protocol: HTTP, securityModel: XFP, l7Depth: 1}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: shop}}
spec: {{hostname: shop.example.com}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: api}}
spec: {{hostname: api.example.com, requestPolicy: {{insecure: {{action: Reject}}}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: app}}
spec: {{hostname: '*', prefix: /, service: '127.0.0.1:{port}'}}
",
        port = echo.port()
    );
    let envoy = start(&text, RenderOptions::default()).await?;
    let client = no_redirects()?;
    let send = |host: &'static str, proto: Option<&'static str>| {
        let mut r = client.get(envoy.url("/cart?x=1")).header("host", host);
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        r.send()
    };
    let plain = send("shop.example.com", None).await?;
    assert_eq!(plain.status(), 301);
    assert_eq!(
        plain.headers()["location"],
        "https://shop.example.com/cart?x=1"
    );
    assert_eq!(send("shop.example.com", Some("http")).await?.status(), 301);
    let secure = send("shop.example.com", Some("https")).await?;
    assert_eq!(secure.json::<Echoed>().await?.upstream, "app");
    assert_eq!(send("api.example.com", None).await?.status(), 404);
    assert_eq!(send("api.example.com", Some("https")).await?.status(), 200);
    // No redirect loop: a balancer that says https is always routed.
    for _ in 0..3 {
        assert_eq!(send("shop.example.com", Some("https")).await?.status(), 200);
    }
    Ok(())
}

/// An HTTPS Listener takes TLS and cleartext on one port, as Ambassador's
/// does; cleartext there is insecure under XFP, so it is redirected.
#[tokio::test]
async fn an_https_listener_serves_tls_and_redirects_cleartext_on_one_port() -> anyhow::Result<()> {
    let echo = Echo::start_named("shop").await?;
    let cert = e2e::paths::testdata("tls/tls.crt");
    let key = e2e::paths::testdata("tls/tls.key");
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: https}}
spec: {{port: 8443, protocol: HTTPS, securityModel: XFP}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: shop}}
spec:
  hostname: shop.test
  tlsFiles: {{certChain: '{cert}', privateKey: '{key}'}}
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
    let envoy = start(&text, RenderOptions::default()).await?;
    let port = envoy
        .listener("https")
        .ok_or_else(|| anyhow::anyhow!("no https listener"))?
        .port();
    let plain = no_redirects()?
        .get(format!("http://127.0.0.1:{port}/cart"))
        .header("host", "shop.test")
        .send()
        .await?;
    assert_eq!(plain.status(), 301);
    let seen = e2e::echo::get_over_tls(&cert, "shop.test", port, "/over-tls").await?;
    assert_eq!(
        (seen.upstream.as_str(), seen.path.as_str()),
        ("shop", "/over-tls")
    );
    Ok(())
}

/// A Mapping for `*.example.com` and a FilterPolicy rule that guards
/// `api.example.com`: the rule holds for that name (no way around it by
/// the glob), and the glob's other names stay open.
#[tokio::test]
async fn a_rule_for_a_name_a_hostname_glob_serves_guards_it() -> anyhow::Result<()> {
    let echo = Echo::start_named("app").await?;
    let jwks = JwksServer::start_down().await?;
    jwks.serve(&e2e::demo::jwks()?);
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: wild}}
spec: {{hostname: '*.example.com', prefix: /, service: '127.0.0.1:{port}'}}
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: idp}}
spec: {{JWT: {{jwksURI: 'http://127.0.0.1:{jwks}/jwks.json'}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: api}}
spec:
  rules:
  - {{host: api.example.com, path: '*', filters: [{{name: idp}}]}}
",
        port = echo.port(),
        jwks = jwks.port(),
    );
    let options = with_jwt()?;
    let envoy = start(&text, options).await?;
    let guarded = envoy
        .get("/x")
        .header("host", "api.example.com")
        .send()
        .await?;
    assert_eq!(guarded.status(), 401);
    for host in ["API.example.com", "api.example.com:80", "api.example.com."] {
        let tricked = envoy.get("/x").header("host", host).send().await?;
        assert_ne!(tricked.status(), 200, "{host} got past the rule");
    }
    let open = envoy
        .get("/x")
        .header("host", "www.example.com")
        .send()
        .await?;
    assert_eq!(open.json::<Echoed>().await?.upstream, "app");
    Ok(())
}

/// Upstream that records the path and Host of every request it gets.
async fn recorder() -> anyhow::Result<(u16, Recorded, tokio::task::JoinHandle<()>)> {
    let seen: Recorded = std::sync::Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let record = record.clone();
        async move {
            let host = request
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            record
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((request.uri().path().to_owned(), host));
            "recorded"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((port, seen, task))
}

type Recorded = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// Traffic fields as Ambassador means them: a shadow gets a copy of each
/// request (its answer dropped), a redirecting Mapping answers at the edge,
/// `bypass_auth` skips the Filters a FilterPolicy puts on the path, and
/// `case_sensitive: false` matches any case.
#[tokio::test]
async fn shadow_redirect_bypass_and_case_work_as_in_ambassador() -> anyhow::Result<()> {
    let app = Echo::start_named("app").await?;
    let (shadow_port, shadowed, _shadow) = recorder().await?;
    let jwks = JwksServer::start_down().await?;
    jwks.serve(&e2e::demo::jwks()?);
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: app}}
spec: {{prefix: /app/, service: '127.0.0.1:{app}', rewrite: ''}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: app-shadow}}
spec: {{prefix: /app/, service: '127.0.0.1:{shadow_port}', rewrite: '', shadow: true}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: moved}}
spec: {{prefix: /old/, service: new.example.com, host_redirect: true, prefix_redirect: /new/, redirect_response_code: 308}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: guarded}}
spec: {{prefix: /api/, service: '127.0.0.1:{app}'}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: health}}
spec: {{prefix: /api/health/, service: '127.0.0.1:{app}', bypass_auth: true}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: caps}}
spec: {{prefix: /Caps/, service: '127.0.0.1:{app}', case_sensitive: false}}
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: idp}}
spec: {{JWT: {{jwksURI: 'http://127.0.0.1:{jwks}/jwks.json'}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: api}}
spec:
  rules:
  - {{path: '/api/*', filters: [{{name: idp}}]}}
",
        app = app.port(),
        jwks = jwks.port(),
    );
    let options = with_jwt()?;
    let envoy = start(&text, options).await?;

    // The client gets the app's answer; the shadow a copy, its Host marked.
    let seen = envoy
        .get("/app/orders")
        .send()
        .await?
        .json::<Echoed>()
        .await?;
    assert_eq!(
        (seen.upstream.as_str(), seen.path.as_str()),
        ("app", "/app/orders")
    );
    e2e::poll::until("the shadow's copy", e2e::poll::READY_DEADLINE, || {
        let copies = shadowed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        async move { Ok(copies.into_iter().find(|(path, _)| path == "/app/orders")) }
    })
    .await
    .map(|(_, host)| assert!(host.contains("-shadow"), "{host}"))?;

    // A redirect at the edge, prefix replaced.
    let moved = no_redirects()?
        .get(envoy.url("/old/page?x=1"))
        .send()
        .await?;
    assert_eq!(moved.status(), 308);
    assert_eq!(
        moved.headers()["location"],
        "http://new.example.com/new/page?x=1"
    );

    // The JWT Filter guards /api/, but not the Mapping that bypasses auth.
    assert_eq!(envoy.get("/api/orders").send().await?.status(), 401);
    let health = envoy.get("/api/health/live").send().await?;
    assert_eq!(health.json::<Echoed>().await?.upstream, "app");

    // Any case.
    for path in ["/Caps/x", "/caps/x", "/CAPS/x"] {
        assert_eq!(envoy.get(path).send().await?.status(), 200, "{path}");
    }
    Ok(())
}

/// The Module's `ip_allow` / `ip_deny`: the connection's address (`peer`)
/// or the client's behind a trusted proxy (`remote`), refused with 403
/// before any route.
#[tokio::test]
async fn the_module_lets_in_only_the_addresses_it_allows() -> anyhow::Result<()> {
    let app = Echo::start_named("app").await?;
    let edge = |config: &str| {
        format!(
            "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: app}}
spec: {{prefix: /, service: '127.0.0.1:{port}'}}
---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: http}}
spec: {{port: 8080, protocol: HTTP, securityModel: XFP, l7Depth: 1}}
---
apiVersion: getambassador.io/v3alpha1
kind: Module
metadata: {{name: ambassador}}
spec: {{config: {config}}}
",
            port = app.port()
        )
    };
    let status = |envoy: &Envoy, client: Option<&'static str>| {
        let mut r = envoy.get("/x");
        if let Some(c) = client {
            r = r.header("x-forwarded-for", c);
        }
        async move { anyhow::Ok(r.send().await?.status().as_u16()) }
    };
    let only_loopback = start(
        &edge("{ip_allow: [{peer: 127.0.0.1}]}"),
        RenderOptions::default(),
    )
    .await?;
    assert_eq!(status(&only_loopback, None).await?, 200);
    let only_ten = start(
        &edge("{ip_allow: [{peer: 10.0.0.0/8}]}"),
        RenderOptions::default(),
    )
    .await?;
    assert_eq!(status(&only_ten, None).await?, 403);
    let deny_net = start(
        &edge("{ip_deny: [{remote: 203.0.113.0/24}]}"),
        RenderOptions::default(),
    )
    .await?;
    assert_eq!(status(&deny_net, Some("203.0.113.9")).await?, 403);
    assert_eq!(status(&deny_net, Some("198.51.100.7")).await?, 200);
    Ok(())
}

/// Attacks on the two checks this issue added: a client that claims
/// `x-forwarded-proto: https` with no trusted proxy in front is still
/// insecure (Envoy sets the header from the connection), and a path in
/// another case does not get past a rule on a case-insensitive Mapping.
#[tokio::test]
async fn a_spoofed_forwarded_proto_or_another_case_gets_past_no_check() -> anyhow::Result<()> {
    let app = Echo::start_named("app").await?;
    let jwks = JwksServer::start_down().await?;
    jwks.serve(&e2e::demo::jwks()?);
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: http}}
spec: {{port: 8080, protocol: HTTP, securityModel: XFP}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: api}}
spec: {{hostname: api.example.com, requestPolicy: {{insecure: {{action: Reject}}}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: open}}
spec: {{hostname: open.example.com, requestPolicy: {{insecure: {{action: Route}}}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: admin}}
spec: {{hostname: '*', prefix: /Admin/, service: '127.0.0.1:{port}', case_sensitive: false}}
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: idp}}
spec: {{JWT: {{jwksURI: 'http://127.0.0.1:{jwks}/jwks.json'}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: admin}}
spec:
  rules:
  - {{path: '/admin/*', filters: [{{name: idp}}]}}
",
        port = app.port(),
        jwks = jwks.port(),
    );
    let options = with_jwt()?;
    let envoy = start(&text, options).await?;
    let send = |host: &'static str, path: &'static str, proto: Option<&'static str>| {
        let mut r = envoy.get(path).header("host", host);
        if let Some(p) = proto {
            r = r.header("x-forwarded-proto", p);
        }
        async move { anyhow::Ok(r.send().await?.status().as_u16()) }
    };
    // No trusted hop: a client's claim of https is not believed.
    assert_eq!(
        send("api.example.com", "/Admin/x", Some("https")).await?,
        404
    );
    assert_eq!(send("api.example.com", "/Admin/x", None).await?, 404);
    // Any case of the guarded path asks for a token.
    for path in ["/admin/x", "/Admin/x", "/ADMIN/x", "/aDmIn/x"] {
        assert_eq!(send("open.example.com", path, None).await?, 401, "{path}");
    }
    Ok(())
}

/// A JWT Filter's `injectRequestHeaders` templates and `errorResponse`, as
/// Ambassador's documentation writes them: headers mixing text with the
/// token's header, claims and the request's headers reach the upstream;
/// refusals carry the configured content type, headers and body; a client's
/// own copy of an injected header never reaches the upstream, even when the
/// token lacks the claim that would set it.
#[tokio::test]
async fn jwt_templates_and_error_responses_mean_what_they_mean_in_ambassador() -> anyhow::Result<()>
{
    let echo = Echo::start_named("api").await?;
    let jwks = JwksServer::start_down().await?;
    jwks.serve(&e2e::demo::jwks()?);
    let text = r#"apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: api}
spec: {prefix: /api/, service: '127.0.0.1:ECHO', rewrite: ''}
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {name: api-jwt}
spec:
  JWT:
    jwksURI: http://127.0.0.1:JWKS/jwks.json
    injectRequestHeaders:
    - name: X-Fixed
      value: a fixed string
    - name: X-Authorization
      value: 'Authenticated {{ .token.Header.alg }}; sub={{ .token.Claims.sub }}'
    - name: X-UA
      value: '{{ .httpRequestHeader.Get "User-Agent" }}'
    - name: X-Signature
      value: '{{ .token.Signature }}'
    - name: X-Optional
      value: '{{ .token.Claims.optional }}'
    - name: X-Quoted
      value: 'sub={{ printf "%q" .token.Claims.sub }}, exp={{ printf "%.0f" .token.Claims.exp }}'
    errorResponse:
      realm: shop
      contentType: application/problem+json
      headers:
      - name: X-Correlation-ID
        value: '{{ .httpRequestHeader.Get "X-Correlation-ID" }}'
      bodyTemplate: |-
        {
          "errorMessage": {{ .message | json "  " }},
          {{- /* the status as a string, as in Ambassador's example */}}
          "httpStatus": "{{ .status_code }}",
          "requestId": {{ .request_id | json }}
        }
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {name: api}
spec:
  rules:
  - {path: '/api/*', filters: [{name: api-jwt}]}
"#
    .replace("ECHO", &echo.port().to_string())
    .replace("JWKS", &jwks.port().to_string());
    let options = with_jwt()?;
    let envoy = start(&text, options).await?;
    let token = e2e::demo::token("ada")?;
    let bearer = format!("Bearer {token}");
    let seen = e2e::poll::until("the JWKS loaded", e2e::poll::READY_DEADLINE, || async {
        let answer = envoy
            .get("/api/orders")
            .header("authorization", &bearer)
            .header("user-agent", "migrating-client/1.0")
            .header("x-optional", "spoofed")
            .header("x-authorization", "Authenticated HS256; sub=root")
            .send()
            .await?;
        Ok(if answer.status().is_success() {
            Some(answer.json::<Echoed>().await?)
        } else {
            None
        })
    })
    .await?;
    let header = |name: &str| seen.headers.get(name).cloned().unwrap_or_default();
    assert_eq!(header("x-fixed"), ["a fixed string"]);
    assert_eq!(header("x-authorization"), ["Authenticated RS256; sub=ada"]);
    assert_eq!(header("x-ua"), ["migrating-client/1.0"]);
    let quoted = header("x-quoted");
    let exp = quoted
        .first()
        .and_then(|q| q.strip_prefix("sub=\"ada\", exp="))
        .unwrap_or_default();
    assert!(
        !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit()),
        "the time claim whole, not 1.8e+09: {quoted:?}"
    );
    assert_eq!(
        header("x-signature"),
        [token.rsplit('.').next().unwrap_or_default()]
    );
    assert!(
        header("x-optional").is_empty(),
        "the token has no such claim, and the client's copy is removed: {:?}",
        header("x-optional")
    );

    // Refusals: no token, a tampered token, each answered from the template.
    let tampered = format!("Bearer {token}x");
    for authorization in [None, Some(tampered.as_str())] {
        let mut request = envoy
            .get("/api/orders")
            .header("x-correlation-id", "corr-42")
            .header("x-request-id", "req-7");
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let answer = request.send().await?;
        assert_eq!(answer.status(), 401);
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
        assert_eq!(answer.headers()["x-correlation-id"], "corr-42");
        assert!(
            answer.headers()["www-authenticate"]
                .to_str()?
                .starts_with("Bearer realm=\"shop\"")
        );
        let body: serde_json::Value = serde_json::from_str(&answer.text().await?)?;
        assert_eq!(body["httpStatus"], "401");
        assert!(body["errorMessage"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(
            body["requestId"].as_str().is_some_and(|r| !r.is_empty()),
            "{body}"
        );
    }
    Ok(())
}

/// A Host's `mappingSelector`, as Ambassador's strict label selectors have
/// it: under a selecting Host only Mappings carrying each of its labels are
/// served (with a hostname, that must match too); a Mapping without a
/// hostname that a selector takes is served under that Host alone; Host
/// names in another case still find their Host.
#[tokio::test]
async fn a_mapping_selector_decides_which_mappings_a_host_serves() -> anyhow::Result<()> {
    let echo = Echo::start_named("app").await?;
    let text = r"apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: public}
spec:
  hostname: public.example.com
  mappingSelector: {matchLabels: {exposure: public}}
  requestPolicy: {insecure: {action: Route}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: internal}
spec:
  hostname: internal.example.com
  requestPolicy: {insecure: {action: Route}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: catalog, labels: {exposure: public, team: shop}}
spec: {prefix: /catalog/, service: '127.0.0.1:ECHO'}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: admin}
spec: {hostname: internal.example.com, prefix: /admin/, service: '127.0.0.1:ECHO'}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: unlabelled}
spec: {hostname: public.example.com, prefix: /unlabelled/, service: '127.0.0.1:ECHO'}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: free}
spec: {prefix: /free/, service: '127.0.0.1:ECHO'}
"
    .replace("ECHO", &echo.port().to_string());
    let envoy = start(&text, RenderOptions::default()).await?;
    let status = |host: &'static str, path: &'static str| {
        let request = envoy.get(path).header("host", host);
        async move { anyhow::Ok(request.send().await?.status().as_u16()) }
    };
    for (host, path, want) in [
        // Selected by its labels: the public Host's alone.
        ("public.example.com", "/catalog/x", 200),
        ("internal.example.com", "/catalog/x", 404),
        ("PUBLIC.example.com", "/catalog/x", 200),
        // Named for the Host without a selector: served there only.
        ("internal.example.com", "/admin/x", 200),
        ("public.example.com", "/admin/x", 404),
        // Names the selecting Host but lacks its labels: nowhere.
        ("public.example.com", "/unlabelled/x", 404),
        // No hostname and no labels: not under the selecting Host; under
        // the other, served (Ambassador 3 serves it nowhere; the migration
        // notes say so).
        ("public.example.com", "/free/x", 404),
        ("internal.example.com", "/free/x", 200),
    ] {
        assert_eq!(status(host, path).await?, want, "{host}{path}");
    }
    Ok(())
}

/// A RateLimit's `injectRequestHeaders`, `injectResponseHeaders` and
/// `errorResponse`, through Envoy and gatehouse-ratelimit: within the
/// limit the upstream gets the request header (never a client's copy) and
/// the client the response header; over it, the 429 carries the error
/// response's headers and body, and the upstream is not reached.
#[tokio::test]
async fn a_rate_limit_adds_its_headers_and_answers_with_its_error_response() -> anyhow::Result<()> {
    use e2e::ratelimit::RateLimitService;
    let echo = Echo::start_named("api").await?;
    let text = r#"apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: api}
spec:
  prefix: /api/
  service: '127.0.0.1:ECHO'
  labels:
    ambassador:
    - per_address:
      - remote_address: {key: remote_address}
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {name: per-address}
spec:
  domain: ambassador
  limits:
  - pattern: [{remote_address: "*"}]
    rate: 2
    unit: minute
    injectRequestHeaders:
    - name: X-Limited-By
      value: per-address
    injectResponseHeaders:
    - name: X-RateLimit-Policy
      value: 'per-address, code {{ .RateLimitResponse.OverallCode }}'
    errorResponse:
      headers:
      - name: Content-Type
        value: application/json
      - name: X-Retry-In
        value: '{{ .RetryAfter }}'
      bodyTemplate: '{"error": {{ .message | json }}, "status": {{ .status_code }}}'
"#
    .replace("ECHO", &echo.port().to_string());
    let mut resources = gatehouse_config::Resources::default();
    gatehouse_config::load(&text, "edge.yaml", &mut resources)?;
    let mut options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        admin_port: 0,
        session_wasm: e2e::paths::wasm_filter("gatehouse_session")?
            .display()
            .to_string(),
        feed_socket: e2e::paths::feed_socket(),
        ..RenderOptions::default()
    };
    let files = render(&resources, &options)?;
    let ratelimit = RateLimitService::builder()
        .file("ambassador.yaml", &files.ratelimit["ambassador.yaml"])
        .start()
        .await?;
    options.ratelimit_address = ratelimit.grpc_addr().to_string();
    let envoy = e2e::EnvoyBuilder::from_text(&render(&resources, &options)?.envoy, "limits")
        .start()
        .await?;
    let send = || {
        envoy
            .get("/api/orders")
            .header("x-limited-by", "spoofed")
            .send()
    };
    for n in 0..2 {
        let answer = send().await?;
        assert_eq!(answer.status(), 200, "request {n}");
        assert_eq!(
            answer.headers()["x-ratelimit-policy"],
            "per-address, code 1"
        );
        let seen = answer.json::<Echoed>().await?;
        assert_eq!(
            seen.headers
                .get("x-limited-by")
                .cloned()
                .unwrap_or_default(),
            ["per-address"],
            "the limit's header, and no client copy"
        );
    }
    let limited = send().await?;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["content-type"], "application/json");
    assert_eq!(
        limited.headers()["x-ratelimit-policy"],
        "per-address, code 2"
    );
    let wait = limited.headers()["x-retry-in"].to_str()?.to_owned();
    assert!(wait.ends_with('s') && wait != "0s", "{wait}");
    let body: serde_json::Value = serde_json::from_str(&limited.text().await?)?;
    assert_eq!(
        body,
        serde_json::json!({ "error": "too many requests", "status": 429 })
    );
    Ok(())
}
