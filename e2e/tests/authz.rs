//! gatehouse-authz end to end: real Envoy's ext_authz filter calling the
//! service as a child process.

use e2e::{AuthzService, Echo, Echoed, Envoy};
use gatehouse_authz_core::sha256_hex;

const CONFIG: &str = "
filters:
  partners:
    api_keys:
      keys_file: keys.yaml
      from:
        - header: x-api-key
        - query: api_key
";

fn key_file(entries: &[(&str, &str)]) -> String {
    let mut text = String::from("keys:\n");
    for (name, key) in entries {
        text.push_str(&format!(
            "  - name: {name}\n    sha256: {}\n",
            sha256_hex(key.as_bytes())
        ));
    }
    text
}

#[tokio::test]
async fn api_keys_name_the_client_upstream_and_reload_without_restart() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let authz = AuthzService::builder(CONFIG)
        .file("keys.yaml", &key_file(&[("acme", "acme-key-1")]))
        .start()
        .await?;
    let envoy = Envoy::from_template("ext-authz.yaml")?
        .upstream(&echo)
        .authz(&authz)
        .start()
        .await?;

    // The right key passes; its client's name goes upstream, the key and the
    // client's own x-gatehouse-client do not.
    let ok = envoy
        .get("/partners/orders")
        .header("x-api-key", "acme-key-1")
        .header("x-gatehouse-client", "mallory")
        .send()
        .await?;
    assert_eq!(ok.status(), 200);
    let seen: Echoed = ok.json().await?;
    assert_eq!(
        seen.headers.get("x-gatehouse-client"),
        Some(&vec!["acme".to_owned()])
    );
    assert_eq!(seen.header("x-api-key"), None, "the key stays at the edge");

    // In the query string too; the parameter is removed, the others stay.
    let ok = envoy
        .get("/partners/orders?page=2&api_key=acme-key-1")
        .send()
        .await?;
    assert_eq!(ok.status(), 200);
    let seen: Echoed = ok.json().await?;
    assert_eq!(seen.header("x-gatehouse-client"), Some("acme"));
    assert_eq!(seen.path, "/partners/orders?page=2");

    // Wrong or missing key: 401 with a JSON code, nothing upstream.
    for (key, code) in [
        (Some("acme-key-2"), "invalid_api_key"),
        (None, "missing_api_key"),
    ] {
        let mut request = envoy.get("/partners/orders");
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let denied = request.send().await?;
        assert_eq!(denied.status(), 401, "{code}");
        assert_eq!(denied.headers()["content-type"], "application/json");
        let body: serde_json::Value = denied.json().await?;
        assert_eq!(body["code"], code);
    }

    // A route naming no configured filter fails closed; a route with
    // ext_authz off passes without a key.
    let unknown = envoy
        .get("/other")
        .header("x-api-key", "acme-key-1")
        .send()
        .await?;
    assert_eq!(unknown.status(), 500);
    assert_eq!(envoy.get("/public").send().await?.status(), 200);

    // Rotating the key file applies without a restart: the new key works,
    // the old one stops working.
    authz.write_file(
        "keys.yaml",
        &key_file(&[("acme", "acme-key-2"), ("globex", "globex-key")]),
    )?;
    let send = |key: &'static str| {
        envoy
            .get("/partners/orders")
            .header("x-api-key", key)
            .send()
    };
    e2e::poll::until(
        "the rotated key accepted",
        e2e::poll::READY_DEADLINE,
        || async { Ok((send("acme-key-2").await?.status() == 200).then_some(())) },
    )
    .await?;
    assert_eq!(send("acme-key-1").await?.status(), 401);
    let globex: Echoed = send("globex-key").await?.json().await?;
    assert_eq!(globex.header("x-gatehouse-client"), Some("globex"));

    // A broken key file is refused and the keys in force stay.
    let refused_before = authz
        .metric("gatehouse_authz_config_load_error_total")
        .await?;
    authz.write_file("keys.yaml", "keys:\n  - {name: acme, sha256: not-hex}\n")?;
    e2e::poll::until(
        "the broken key file refused",
        e2e::poll::READY_DEADLINE,
        || async {
            let refused = authz
                .metric("gatehouse_authz_config_load_error_total")
                .await?;
            Ok((refused > refused_before).then_some(()))
        },
    )
    .await?;
    assert_eq!(send("acme-key-2").await?.status(), 200);
    assert!(authz.log().contains("keys[0].sha256: not a SHA-256 digest"));

    // Checks are counted by result.
    assert!(
        authz
            .metric("gatehouse_authz_checks_total{result=\"allowed\",status=\"200\"}")
            .await?
            >= 4.0
    );
    assert!(
        authz
            .metric("gatehouse_authz_checks_total{result=\"denied\",status=\"401\"}")
            .await?
            >= 3.0
    );
    Ok(())
}

#[tokio::test]
async fn health_metrics_and_a_clean_sigterm() -> anyhow::Result<()> {
    let mut authz = AuthzService::builder(CONFIG)
        .file("keys.yaml", &key_file(&[("acme", "k")]))
        .start()
        .await?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    assert_eq!(
        http.get(authz.http_url("/healthz")).send().await?.status(),
        200
    );
    assert_eq!(
        http.get(authz.http_url("/readyz")).send().await?.status(),
        200
    );
    let metrics = http
        .get(authz.http_url("/metrics"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("gatehouse_authz_config_load_success_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE gatehouse_authz_check_seconds histogram"),
        "{metrics}"
    );
    let status = authz.terminate().await?;
    assert!(status.success(), "exit status {status}");
    assert!(authz.log().contains("stopped cleanly"));
    Ok(())
}
