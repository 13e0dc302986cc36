//! The gatehouse-jwt proxy-wasm filter inside stock Envoy (runtime v8).

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::{Echo, Echoed, Envoy};

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

/// A file of the JWT core's test data (keys, JWKS).
fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(
        e2e::paths::workspace_root()
            .join("filters/jwt-core/testdata")
            .join(name),
    )
    .unwrap()
}

mod verification {
    //! gatehouse-jwt verifying tokens inside Envoy, with an inline JWKS.

    use e2e::{Echo, Echoed, Envoy};
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    use super::testdata as read;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(alg: Algorithm, kid: &str, key: &EncodingKey, claims: serde_json::Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        encode(&header, &claims, key).unwrap()
    }

    fn config() -> String {
        let jwks: serde_json::Value = serde_json::from_slice(&read("jwks.json")).unwrap();
        json!({
            "providers": {
                "idp": {
                    "issuer": "https://idp.example",
                    "audiences": ["api"],
                    "algorithms": ["RS256", "ES256"],
                    "jwks": { "inline": jwks },
                    "claim_to_headers": [
                        { "claim": "sub", "header": "x-gatehouse-user" },
                        { "claim": "groups", "header": "x-gatehouse-groups" }
                    ]
                }
            },
            "rules": [
                { "match": { "prefix": "/open" }, "requires": { "none": {} } },
                { "match": { "prefix": "/" }, "requires": { "provider": "idp" } }
            ]
        })
        .to_string()
    }

    #[tokio::test]
    async fn verified_claims_reach_the_upstream_and_bad_tokens_get_401() -> anyhow::Result<()> {
        let echo = Echo::start().await?;
        let envoy = Envoy::from_template("jwt-wasm.yaml")?
            .upstream(&echo)
            .var("JWT_CONFIG", config())
            .start()
            .await?;
        let claims = json!({"iss": "https://idp.example", "aud": "api", "sub": "ann", "groups": ["dev", "ops"], "exp": now() + 300});

        for (alg, kid, key) in [
            (
                Algorithm::RS256,
                "rsa-1",
                EncodingKey::from_rsa_pem(&read("keys/rsa.pem"))?,
            ),
            (
                Algorithm::ES256,
                "ec-256",
                EncodingKey::from_ec_pem(&read("keys/ec256.pem"))?,
            ),
        ] {
            let bearer = format!("Bearer {}", token(alg, kid, &key, claims.clone()));
            let response = envoy
                .get("/api")
                .header("authorization", &bearer)
                .header("x-gatehouse-user", "mallory")
                .send()
                .await?;
            assert_eq!(response.status(), 200, "{alg:?}");
            let seen: Echoed = response.json().await?;
            assert_eq!(
                seen.headers["x-gatehouse-user"],
                vec!["ann".to_owned()],
                "{alg:?}: the spoofed copy is gone"
            );
            assert_eq!(seen.header("x-gatehouse-groups"), Some("dev,ops"));
            assert_eq!(
                seen.header("authorization"),
                None,
                "the token is not forwarded by default"
            );
        }

        let missing = envoy.get("/api").send().await?;
        assert_eq!(missing.status(), 401);
        assert_eq!(
            missing.headers()["www-authenticate"],
            "Bearer realm=\"gatehouse\""
        );
        let body: serde_json::Value = missing.json().await?;
        assert_eq!(body["code"], "missing_token");

        let rsa = EncodingKey::from_rsa_pem(&read("keys/rsa.pem"))?;
        let expired = token(
            Algorithm::RS256,
            "rsa-1",
            &rsa,
            json!({"iss": "https://idp.example", "aud": "api", "exp": now() - 3600}),
        );
        let other = EncodingKey::from_rsa_pem(&read("keys/rsa-other.pem"))?;
        let forged = token(Algorithm::RS256, "rsa-1", &other, claims.clone());
        for bad in [expired, forged, "not.a.token".to_owned()] {
            let response = envoy
                .get("/api")
                .header("authorization", format!("Bearer {bad}"))
                .send()
                .await?;
            assert_eq!(response.status(), 401);
            let challenge = response.headers()["www-authenticate"].to_str()?.to_owned();
            assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        }
        assert_eq!(envoy.get("/open").send().await?.status(), 200);

        // RS256 and ES256 went through Envoy's native verify_signature, never
        // the wasm fallback; the counters are exported under wasmcustom.
        let envoy = &envoy;
        let stat = |name: &str| {
            let full = format!("wasmcustom.gatehouse_jwt.{name}");
            async move { envoy.stat(&full).await }
        };
        assert!(stat("signatures.native").await? >= 4);
        assert_eq!(stat("signatures.wasm").await?, 0);
        assert_eq!(stat("allowed").await?, 3);
        assert_eq!(stat("denied.missing_token").await?, 1);
        assert_eq!(stat("denied.invalid_token").await?, 3);

        // A token seen again is answered from the worker's cache: no new
        // signature check.
        let again = format!(
            "Bearer {}",
            token(
                Algorithm::ES256,
                "ec-256",
                &EncodingKey::from_ec_pem(&read("keys/ec256.pem"))?,
                json!({"iss": "https://idp.example", "aud": "api", "sub": "again", "exp": now() + 300})
            )
        );
        for _ in 0..3 {
            assert_eq!(
                envoy
                    .get("/api")
                    .header("authorization", &again)
                    .send()
                    .await?
                    .status(),
                200
            );
        }
        assert_eq!(stat("cache.hits").await?, 2);
        Ok(())
    }

    /// `token_headers_removed_by_envoy`: the filter leaves the token where
    /// it is and the route's `request_headers_to_remove` keeps it off the
    /// upstream request. Envoy picks the route again when a wasm filter
    /// changes a request header, so only then does a request with a token
    /// stay on the route that was chosen for it (as with jwt_authn).
    #[tokio::test]
    async fn the_route_can_remove_the_token_instead_of_the_filter() -> anyhow::Result<()> {
        let echo = Echo::start().await?;
        let rsa = EncodingKey::from_rsa_pem(&read("keys/rsa.pem"))?;
        let claims =
            json!({"iss": "https://idp.example", "aud": "api", "sub": "ann", "exp": now() + 300});
        let bearer = format!("Bearer {}", token(Algorithm::RS256, "rsa-1", &rsa, claims));
        // (filter config flag, route removal, upstream sees the token, route)
        let cases = [
            (false, "[]", None, "without-token"),
            (true, "[]", Some(bearer.as_str()), "with-token"),
            (true, "[authorization]", None, "with-token"),
        ];
        for (by_envoy, route_removes, token_upstream, route) in cases {
            let mut raw: serde_json::Value = serde_json::from_str(&config())?;
            raw["token_headers_removed_by_envoy"] = by_envoy.into();
            let envoy = Envoy::from_template("jwt-wasm-token-route.yaml")?
                .upstream(&echo)
                .var("JWT_CONFIG", raw.to_string())
                .var("ROUTE_HEADERS_TO_REMOVE", route_removes)
                .start()
                .await?;
            let seen: Echoed = envoy
                .get("/api")
                .header("authorization", &bearer)
                .send()
                .await?
                .json()
                .await?;
            let case = format!("{by_envoy} {route_removes}");
            assert_eq!(seen.header("x-gatehouse-user"), Some("ann"), "{case}");
            assert_eq!(seen.header("authorization"), token_upstream, "{case}");
            assert_eq!(seen.header("x-route"), Some(route), "{case}");
            assert_eq!(envoy.get("/api").send().await?.status(), 401);
        }
        Ok(())
    }
}

mod remote_jwks {
    //! Keys fetched from a JWKS URI through an Envoy cluster.

    use e2e::jwks::JwksServer;
    use e2e::{Echo, Envoy};
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    use super::testdata as read;

    /// The test JWKS with only the keys named.
    fn jwks_with(kids: &[&str]) -> String {
        let all: serde_json::Value = serde_json::from_slice(&read("jwks.json")).unwrap();
        let keys: Vec<&serde_json::Value> = all["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| kids.contains(&k["kid"].as_str().unwrap_or("")))
            .collect();
        json!({ "keys": keys }).to_string()
    }

    fn token(kid: &str, pem: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let claims = json!({"iss": "https://idp.example", "sub": kid, "exp": now + 600});
        encode(
            &header,
            &claims,
            &EncodingKey::from_rsa_pem(&read(pem)).unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn keys_arrive_late_rotate_and_survive_a_failed_refresh() -> anyhow::Result<()> {
        let jwks = JwksServer::start_down().await?;
        let echo = Echo::start().await?;
        let config = json!({
            "providers": { "idp": {
                "issuer": "https://idp.example",
                "algorithms": ["RS256"],
                "jwks": { "remote": {
                    "uri": "http://jwks.test/jwks.json", "cluster": "jwks",
                    // Long cache: only unknown-kid refetches can bring new keys.
                    "cache_duration_seconds": 3600, "refetch_interval_seconds": 1, "timeout_ms": 1000
                } }
            } },
            "rules": [ { "requires": { "provider": "idp" } } ]
        });
        let envoy = Envoy::from_template("jwt-remote.yaml")?
            .upstream(&echo)
            .var("JWKS_PORT", jwks.port())
            .var("JWT_CONFIG", config)
            .start()
            .await?;
        let first = token("rsa-1", "keys/rsa.pem");
        let get = |token: String| {
            envoy
                .get("/api")
                .header("authorization", format!("Bearer {token}"))
                .send()
        };

        // The JWKS endpoint is down at start: no keys, 401.
        assert_eq!(get(first.clone()).await?.status(), 401);

        // It comes up: the keys are fetched without a restart.
        jwks.serve(&jwks_with(&["rsa-1"]));
        e2e::poll::until(
            "keys after the JWKS came up",
            e2e::poll::READY_DEADLINE,
            || {
                let response = get(first.clone());
                async move { Ok((response.await?.status() == 200).then_some(())) }
            },
        )
        .await?;

        // Rotation: a new kid appears at the URI and is picked up by the
        // unknown-kid refetch (the cache alone would wait an hour).
        let second = token("rsa-2", "keys/rsa-other.pem");
        jwks.serve(&jwks_with(&["rsa-1", "rsa-2"]));
        e2e::poll::until("the rotated key", e2e::poll::READY_DEADLINE, || {
            let response = get(second.clone());
            async move { Ok((response.await?.status() == 200).then_some(())) }
        })
        .await?;

        // The endpoint goes down; a refetch fails, and the keys stay.
        jwks.take_down();
        let before = jwks.fetches();
        let unknown = token("rsa-3", "keys/rsa.pem");
        e2e::poll::until("a failed refetch", e2e::poll::READY_DEADLINE, || {
            let response = get(unknown.clone());
            let fetched = jwks.fetches() > before;
            async move {
                assert_eq!(response.await?.status(), 401);
                Ok(fetched.then_some(()))
            }
        })
        .await?;
        assert_eq!(
            get(first).await?.status(),
            200,
            "keys survive a failed refresh"
        );
        assert_eq!(get(second).await?.status(), 200);
        Ok(())
    }
}

mod shared_keys {
    //! One JWKS fetch serves every Envoy worker.

    use e2e::jwks::JwksServer;
    use e2e::{Echo, Envoy};
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    use super::testdata as read;

    #[tokio::test]
    async fn workers_share_the_keys_one_of_them_fetched() -> anyhow::Result<()> {
        let jwks = JwksServer::start_down().await?;
        jwks.serve(&String::from_utf8(read("jwks.json"))?);
        let echo = Echo::start().await?;
        let config = json!({
            "providers": { "idp": {
                "algorithms": ["RS256"],
                "jwks": { "remote": { "uri": "http://jwks.test/jwks.json", "cluster": "jwks", "cache_duration_seconds": 3600 } }
            } },
            "rules": [ { "requires": { "provider": "idp" } } ]
        });
        let envoy = Envoy::from_template("jwt-remote.yaml")?
            .upstream(&echo)
            .var("JWKS_PORT", jwks.port())
            .var("JWT_CONFIG", config)
            .concurrency(4)
            .start()
            .await?;
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            + 600;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        let token = encode(
            &header,
            &json!({"exp": exp}),
            &EncodingKey::from_rsa_pem(&read("keys/rsa.pem"))?,
        )?;
        // A fresh connection per request, so the requests spread over the workers.
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .build()?;
        let get = || {
            client
                .get(envoy.url("/api"))
                .header("authorization", format!("Bearer {token}"))
                .send()
        };
        e2e::poll::until("keys loaded", e2e::poll::READY_DEADLINE, || {
            let response = get();
            async move { Ok((response.await?.status() == 200).then_some(())) }
        })
        .await?;
        for _ in 0..40 {
            assert_eq!(get().await?.status(), 200);
        }
        // Four workers, each ticking: without sharing there would be four
        // fetches. One claims the fetch; the others take its keys (a rare
        // start-up race may let a second one fetch too).
        assert!(
            jwks.fetches() <= 2,
            "{} fetches for 4 workers",
            jwks.fetches()
        );
        Ok(())
    }
}
