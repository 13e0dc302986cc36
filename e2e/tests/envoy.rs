//! Stock Envoy from the venv, as the harness runs it.

use e2e::{Echo, Echoed, Envoy, envoy, paths};

#[tokio::test]
async fn envoy_routes_get_to_the_echo_upstream_with_forwarded_headers() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let envoy = Envoy::from_template("proxy.yaml")?
        .upstream(&echo)
        .start()
        .await?;

    let response = envoy
        .get("/hello?x=1")
        .header("x-test", "forwarded")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let seen: Echoed = response.json().await?;

    assert_eq!(seen.upstream, "echo");
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/hello?x=1");
    assert_eq!(seen.header("x-test"), Some("forwarded"));
    // Headers only Envoy adds prove the request went through it.
    assert!(seen.header("x-request-id").is_some(), "{seen:?}");
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    Ok(())
}

#[tokio::test]
async fn invalid_bootstrap_is_rejected_with_envoys_own_message() {
    let err = envoy::validate(&paths::testdata("envoy/invalid-unknown-field.yaml"))
        .await
        .unwrap_err()
        .to_string();
    // Envoy's protobuf error names the unknown field.
    assert!(err.contains("static_resource"), "{err}");
    assert!(err.contains("envoy rejected"), "{err}");
}

#[tokio::test]
async fn shipped_templates_pass_envoy_validate() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let jwks = std::fs::read_to_string(
        paths::workspace_root().join("filters/jwt-core/testdata/jwks.json"),
    )?;
    let jwks = serde_json::from_str::<serde_json::Value>(&jwks)?.to_string();
    for template in [
        "proxy.yaml",
        "proxy-hardened.yaml",
        "jwt-wasm.yaml",
        "noop-wasm.yaml",
        "jwt-authn.yaml",
        "ratelimit.yaml",
        "jwt-remote.yaml",
        "sso-jwt-authn.yaml",
    ] {
        let rendered = Envoy::from_template(template)?
            .upstream(&echo)
            .var("JWKS_JSON", &jwks)
            .var(
                "JWT_CACHE_CONFIG",
                "jwt_cache_config: { jwt_cache_size: 10 }",
            )
            .var("RLS_PORT", 1)
            .var("JWKS_PORT", 2)
            .var("AUTHZ_PORT", 3)
            .var("TICKET_COOKIE", "ticket")
            .var(
                "TICKET_JWKS",
                r#"{"keys":[{"kty":"oct","alg":"HS256","kid":"k","k":"dGlja2V0LWtleS10aWNrZXQta2V5LXRpY2tldC1rZXk"}]}"#,
            )
            .render()?;
        let file = tempfile::Builder::new().suffix(".yaml").tempfile()?;
        std::fs::write(file.path(), rendered)?;
        envoy::validate(file.path())
            .await
            .map_err(|e| anyhow::anyhow!("{template}: {e}"))?;
    }
    Ok(())
}
