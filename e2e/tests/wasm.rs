//! The gatehouse-jwt proxy-wasm filter inside stock Envoy (runtime v8).

use e2e::{Echo, Echoed, Envoy, quickstart};

async fn send_spoofed(envoy: &Envoy) -> anyhow::Result<Echoed> {
    let response = envoy
        .get("/")
        .header("x-gatehouse-user", "mallory")
        .header("X-Gatehouse-Groups", "admins")
        .header("x-unrelated", "kept")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(response.json().await?)
}

#[tokio::test]
async fn jwt_filter_strips_spoofed_identity_headers() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let plain = Envoy::from_template("proxy.yaml")?
        .upstream(&echo)
        .start()
        .await?;
    let filtered = Envoy::from_template("jwt-wasm.yaml")?
        .upstream(&echo)
        .start()
        .await?;

    // Without the filter the spoofed headers reach the upstream...
    let seen = send_spoofed(&plain).await?;
    assert_eq!(seen.header("x-gatehouse-user"), Some("mallory"));
    assert_eq!(seen.header("x-gatehouse-groups"), Some("admins"));

    // ...with it they are gone, and nothing else is touched.
    let seen = send_spoofed(&filtered).await?;
    assert_eq!(seen.header("x-gatehouse-user"), None, "{seen:?}");
    assert_eq!(seen.header("x-gatehouse-groups"), None, "{seen:?}");
    assert_eq!(seen.header("x-unrelated"), Some("kept"));
    Ok(())
}

#[tokio::test]
async fn jwt_filter_honours_a_configured_prefix() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let envoy = Envoy::from_template("jwt-wasm.yaml")?
        .upstream(&echo)
        .var("JWT_CONFIG", r#"{"header_prefix": "x-edge-"}"#)
        .start()
        .await?;
    let seen: Echoed = envoy
        .get("/")
        .header("x-edge-user", "mallory")
        .header("x-gatehouse-user", "not ours now")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.header("x-edge-user"), None);
    assert_eq!(seen.header("x-gatehouse-user"), Some("not ours now"));
    Ok(())
}

#[tokio::test]
async fn invalid_plugin_configuration_stops_envoy_and_names_the_field() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let err = Envoy::from_template("jwt-wasm.yaml")?
        .upstream(&echo)
        .var("JWT_CONFIG", r#"{"header_prefix": "X"}"#)
        .start()
        .await
        .unwrap_err()
        .to_string();
    // The harness hands over Envoy's log, which carries the filter's message.
    assert!(err.contains("envoy exited"), "{err}");
    assert!(
        err.contains("gatehouse-jwt: invalid configuration: header_prefix"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn quickstart_stack_serves_through_the_filter() -> anyhow::Result<()> {
    let stack = quickstart::start(0, 0).await?;
    let seen: Echoed = stack
        .envoy
        .client()
        .get(stack.url("/hello"))
        .header("x-gatehouse-user", "mallory")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(seen.upstream, "quickstart");
    assert_eq!(seen.path, "/hello");
    assert_eq!(seen.header("x-gatehouse-user"), None);
    Ok(())
}
