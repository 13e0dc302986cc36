//! The standing adversarial suite: requests an attacker sends, through real
//! Envoy running what `gatehouse render` writes. Each test states the
//! protection it attacks; `docs/security.md` links here.
//!
//! The stack: one public Mapping on `/` and a FilterPolicy that puts a JWT
//! Filter on `/secure/*`, so every path trick has a public route to fall
//! into. The echo upstream reports the path and headers it received; a trick
//! "gets past" when the upstream answers for a path that an upstream would
//! read as `/secure/...` without a token having been checked.

use std::net::SocketAddr;

use e2e::demo::{TOKEN_ISSUER, token};
use e2e::jwks::JwksServer;
use e2e::ratelimit::RateLimitService;
use e2e::raw::{self, RawResponse};
use e2e::{Echo, Echoed, Envoy};
use gatehouse_config::{RenderOptions, Resources, load, render};

/// The edge under attack, with its parts kept alive.
struct Edge {
    envoy: Envoy,
    _echo: Echo,
    _jwks: JwksServer,
    _ratelimit: Option<RateLimitService>,
}

impl Edge {
    fn addr(&self) -> SocketAddr {
        self.envoy.ingress()
    }

    async fn get(&self, target: &str, headers: &[(&str, &str)]) -> anyhow::Result<RawResponse> {
        raw::get(self.addr(), target, headers).await
    }
}

/// Renders `extra` documents beside the public Mapping, the JWT Filter and
/// its FilterPolicy, and starts Envoy (and gatehouse-ratelimit when the
/// resources have limits) on it.
async fn edge(extra: &str) -> anyhow::Result<Edge> {
    edge_with(extra, |_| {}).await
}

/// As [`edge`], with the render options changed by `tweak` first.
async fn edge_with(extra: &str, tweak: impl FnOnce(&mut RenderOptions)) -> anyhow::Result<Edge> {
    let echo = Echo::start_named("app").await?;
    let jwks = JwksServer::start_down().await?;
    jwks.serve(&e2e::demo::jwks()?);
    let text = format!(
        r#"apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: app}}
spec: {{prefix: /, service: 127.0.0.1:{echo}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: idp}}
spec:
  JWT:
    jwksURI: http://127.0.0.1:{jwks}/jwks.json
    issuer: {issuer}
    validAlgorithms: [RS256]
    injectRequestHeaders:
    - {{name: X-Gatehouse-User, value: "{{{{ .token.Claims.sub }}}}"}}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: secure}}
spec:
  rules:
  - path: /secure/*
    filters: [{{name: idp}}]
{extra}"#,
        echo = echo.port(),
        jwks = jwks.port(),
        issuer = TOKEN_ISSUER,
    );
    let mut resources = Resources::default();
    load(&text, "edge.yaml", &mut resources)?;
    let mut options = RenderOptions {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        admin_port: 0,
        jwt_wasm: e2e::paths::wasm_filter("gatehouse_jwt")?
            .display()
            .to_string(),
        session_wasm: e2e::paths::wasm_filter("gatehouse_session")?
            .display()
            .to_string(),
        feed_socket: e2e::paths::feed_socket(),
        ..RenderOptions::default()
    };
    tweak(&mut options);
    let files = render(&resources, &options)?;
    let ratelimit = if files.ratelimit.is_empty() {
        None
    } else {
        let mut builder = RateLimitService::builder();
        for (name, text) in &files.ratelimit {
            builder = builder.file(name, text);
        }
        let service = builder.start().await?;
        options.ratelimit_address = service.grpc_addr().to_string();
        Some(service)
    };
    let envoy = e2e::EnvoyBuilder::from_text(&render(&resources, &options)?.envoy, "adversarial")
        .start()
        .await?;
    Ok(Edge {
        envoy,
        _echo: echo,
        _jwks: jwks,
        _ratelimit: ratelimit,
    })
}

/// The path as a lenient upstream reads it: percent-decoded once,
/// backslashes as slashes, `;params` cut from each segment (Tomcat), a NUL
/// ending the string (C), dot segments resolved and slashes merged.
fn as_a_lenient_upstream_reads(path: &str) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let decoded = percent_decode(path).replace('\\', "/");
    let decoded = decoded.split('\0').next().unwrap_or_default();
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        if bytes[i] == b'%'
            && let Some(b) = hex
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_protected(path: &str) -> bool {
    path == "/secure" || path.starts_with("/secure/")
}

#[test]
fn the_lenient_reading_resolves_the_tricks() {
    for trick in [
        "/x/../secure/x",
        "//secure/x",
        "/x/..%2fsecure/x",
        "/x/%2e%2e/secure/x",
        "/secure%2fx",
        "/secure;jsessionid=1/x",
        "/x\\..\\secure/x",
        "/secure%00/../x",
    ] {
        assert!(
            is_protected(&as_a_lenient_upstream_reads(trick)),
            "{trick} -> {}",
            as_a_lenient_upstream_reads(trick)
        );
    }
    assert_eq!(
        as_a_lenient_upstream_reads("/public/x?next=/secure/x"),
        "/public/x"
    );
}

/// Every path trick at the protected route: none reaches the upstream as a
/// protected path without the token check. Normalised tricks meet the JWT
/// filter (401); encoded slashes, `;` parameters and `%00` are refused (400).
#[tokio::test]
async fn path_tricks_never_reach_a_protected_path_unchecked() -> anyhow::Result<()> {
    let edge = edge("").await?;
    // Controls: the stack serves, and the filter guards.
    let public = edge.get("/public/x", &[]).await?;
    assert_eq!(public.status, 200);
    assert_eq!(edge.get("/secure/x", &[]).await?.status, 401);
    let bearer = format!("Bearer {}", token("alice")?);
    let signed_in = edge.get("/secure/x", &[("authorization", &bearer)]).await?;
    assert_eq!(signed_in.status, 200);

    let normalised = [
        "/x/../secure/x",
        "//secure/x",
        "///secure/x",
        "/./secure/x",
        "/x/%2e%2e/secure/x",
        "/x/%2E%2E/secure/x",
        "/x/.%2e/secure/x",
        "/x\\..\\secure/x",
        "/%73ecure/x",
        "/secure/./x",
        "/secure//x",
        "/x/..//secure/x",
        // Envoy's normaliser reads `..;` as `..`.
        "/x/..;/secure/x",
    ];
    let refused = [
        "/x/..%2fsecure/x",
        "/x/..%2Fsecure/x",
        "/secure%2fx",
        "/secure%2Fx",
        "/x/..%5csecure/x",
        "/secure/x/..%2f..%2fx",
        "/secure;a=b/x",
        "/secure;jsessionid=0/x",
        "/secure%00/x",
        "/x/%00/../secure/x",
    ];
    // Reach the public route; a lenient upstream must still not read them
    // as protected (checked below like every other answer).
    let public_as_written = ["/SECURE/x", "/secure%252fx", "/secured/x", "/x?/secure/x"];
    let mut answers = Vec::new();
    for target in normalised.iter().chain(&refused).chain(&public_as_written) {
        let r = edge.get(target, &[]).await?;
        if r.status == 200 {
            let seen: Echoed = serde_json::from_slice(&r.body)?;
            let read = as_a_lenient_upstream_reads(&seen.path);
            assert!(
                !is_protected(&read),
                "{target} reached the upstream unchecked as {:?} (read as {read})",
                seen.path
            );
        }
        answers.push((*target, r.status));
    }
    for (target, status) in &answers {
        if normalised.contains(target) {
            assert_eq!(*status, 401, "{target}: routed to the protected route");
        } else if refused.contains(target) {
            assert_eq!(*status, 400, "{target}: refused before routing");
        } else {
            assert_eq!(*status, 200, "{target}: a public path as written");
        }
    }

    // With a token the normalised path is what the upstream gets.
    let r = edge
        .get("/x/../secure//x", &[("authorization", &bearer)])
        .await?;
    assert_eq!(r.status, 200);
    let seen: Echoed = serde_json::from_slice(&r.body)?;
    assert_eq!(seen.path, "/secure/x");
    assert_eq!(seen.header("x-gatehouse-user"), Some("alice"));
    Ok(())
}

/// Header twins with underscores never reach the upstream, on a public route
/// and beside a verified identity: CGI-style servers would read
/// `x_gatehouse_user` as the header the stack writes.
#[tokio::test]
async fn underscore_twins_of_identity_headers_are_dropped() -> anyhow::Result<()> {
    let edge = edge("").await?;
    let spoofs: [(&str, &str); 4] = [
        ("x_gatehouse_user", "admin"),
        ("X_Gatehouse_User", "admin"),
        ("x-gatehouse_user", "admin"),
        ("x-gatehouse-user", "admin"),
    ];
    let public = edge.get("/public/x", &spoofs).await?;
    assert_eq!(public.status, 200);
    let seen: Echoed = serde_json::from_slice(&public.body)?;
    let twins: Vec<&String> = seen
        .headers
        .keys()
        .filter(|h| h.replace('_', "-") == "x-gatehouse-user")
        .collect();
    assert!(twins.is_empty(), "reached the upstream: {twins:?}");

    let bearer = format!("Bearer {}", token("alice")?);
    let mut headers = spoofs.to_vec();
    headers.push(("authorization", &bearer));
    let secure = edge.get("/secure/x", &headers).await?;
    assert_eq!(secure.status, 200);
    let seen: Echoed = serde_json::from_slice(&secure.body)?;
    let identity: Vec<(&String, &Vec<String>)> = seen
        .headers
        .iter()
        .filter(|(h, _)| h.replace('_', "-") == "x-gatehouse-user")
        .collect();
    assert_eq!(
        identity,
        [(&"x-gatehouse-user".to_owned(), &vec!["alice".to_owned()])],
        "only the verified value"
    );
    assert!(
        edge.envoy
            .stat("http1.dropped_headers_with_underscores")
            .await?
            >= 6
    );
    Ok(())
}

/// The access log keeps the path and leaves the query out: OIDC `code` and
/// `state`, and whatever secret a client puts in a query, stay out of logs.
#[tokio::test]
async fn access_logs_leave_query_strings_out() -> anyhow::Result<()> {
    let edge = edge("").await?;
    let r = edge
        .get("/public/callback?code=SECRETCODE&state=SECRETSTATE", &[])
        .await?;
    assert_eq!(r.status, 200);
    let line = e2e::poll::until("the access log line", e2e::poll::READY_DEADLINE, || {
        let log = edge.envoy.log();
        async move {
            Ok(log
                .lines()
                .find(|l| l.contains("\"/public/callback\""))
                .map(str::to_owned))
        }
    })
    .await?;
    assert!(line.contains("\"status\":200"), "{line}");
    assert!(!edge.envoy.log().contains("SECRET"), "{line}");
    Ok(())
}

/// A label value over every size limit is still counted: the 4th request
/// with the same 5000-byte header on a 3-a-minute limit is refused, and so
/// is a request with another long value only after its own three.
#[tokio::test]
async fn an_oversized_rate_limit_value_is_counted_not_waved_through() -> anyhow::Result<()> {
    let edge = edge(
        r#"---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: limited}
spec:
  prefix: /limited/
  service: 127.0.0.1:1
  labels:
    ambassador:
    - per_user:
      - request_headers: {key: user, header_name: x-user}
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {name: per-user}
spec:
  domain: ambassador
  limits:
  - {pattern: [{user: "*"}], rate: 3, unit: minute}
"#,
    )
    .await?;
    let long_a = "a".repeat(5000);
    let long_b = format!("{}b", "a".repeat(4999));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(edge.get("/limited/x", &[("x-user", &long_a)]).await?.status);
    }
    // The upstream of /limited/ is closed: allowed requests get 503.
    assert_eq!(
        statuses,
        [503, 503, 503, 429],
        "the same long value counts together"
    );
    let other = edge.get("/limited/x", &[("x-user", &long_b)]).await?;
    assert_eq!(other.status, 503, "another long value counts apart");
    Ok(())
}

/// The failure policy of the rate limit is a setting: with the service
/// unreachable, `failure_mode_deny: true` refuses and the default lets
/// requests through.
#[tokio::test]
async fn a_rate_limit_outage_follows_the_configured_failure_mode() -> anyhow::Result<()> {
    let closed = closed_port()?;
    let limited = |deny: Option<bool>| {
        let mode = deny.map_or(String::new(), |d| format!("\n  failure_mode_deny: {d}"));
        format!(
            r#"---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {{name: limited}}
spec:
  prefix: /limited/
  service: 127.0.0.1:1
  labels:
    ambassador:
    - all: [{{generic_key: {{value: all}}}}]
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimitService
metadata: {{name: ratelimit}}
spec:
  service: 127.0.0.1:{closed}
  timeout_ms: 200{mode}
"#
        )
    };
    // No RateLimit documents: no gatehouse-ratelimit is started, and the
    // RateLimitService points at a port nobody listens on.
    let open = edge(&limited(None)).await?;
    assert_eq!(
        open.get("/limited/x", &[]).await?.status,
        503,
        "through to the closed upstream"
    );
    let closed_edge = edge(&limited(Some(true))).await?;
    assert_eq!(closed_edge.get("/limited/x", &[]).await?.status, 500);
    assert_eq!(
        closed_edge.get("/public/x", &[]).await?.status,
        200,
        "unlimited routes unaffected"
    );
    Ok(())
}

/// A FilterPolicy rule that takes the checks away (`filters: null`) on
/// `/health*` stops at its segment: `/healthz-admin` keeps the checks of the
/// rules after it.
#[tokio::test]
async fn an_exempt_prefix_stops_at_its_segment() -> anyhow::Result<()> {
    let edge = edge(
        r#"---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {name: a-health}
spec:
  rules:
  - path: /health*
    filters: null
  - path: "*"
    filters: [{name: idp}]
"#,
    )
    .await?;
    for open in [
        "/health",
        "/health/live",
        "/health?verbose=1",
        "/x/../health/live",
    ] {
        assert_eq!(edge.get(open, &[]).await?.status, 200, "{open}");
    }
    for guarded in [
        "/healthz-admin",
        "/healthz",
        "/health-admin/x",
        "/health%2f../admin",
        "/public/x",
    ] {
        let status = edge.get(guarded, &[]).await?.status;
        assert!(status == 401 || status == 400, "{guarded}: {status}");
    }
    Ok(())
}

/// A port on loopback that nothing listens on.
fn closed_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// ext_authz fails closed: with gatehouse-authz unreachable, a route with an
/// APIKey Filter is refused (403) whatever the client sends, and routes
/// without one are unaffected.
#[tokio::test]
async fn an_unreachable_authz_service_refuses_its_routes() -> anyhow::Result<()> {
    let closed = closed_port()?;
    let edge = edge_with(
        r#"---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {name: keys}
spec:
  APIKey:
    keys: [{secretName: acme}]
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {name: keyed}
spec:
  rules:
  - path: /keyed/*
    filters: [{name: keys}]
"#,
        |o| o.authz_address = format!("127.0.0.1:{closed}"),
    )
    .await?;
    for headers in [vec![], vec![("x-api-key", "acme-demo-key")]] {
        assert_eq!(edge.get("/keyed/x", &headers).await?.status, 403);
    }
    assert_eq!(edge.get("/public/x", &[]).await?.status, 200);
    Ok(())
}
