//! gatehouse-jwt in real Envoy against the requests an attacker sends (#13):
//! a public rule stretched over a longer path, a zero-padded ECDSA signature
//! for Envoy's native verifier, forged `kid`s that make every worker refetch;
//! and valid tokens that arrive while the first keys are still on their way.

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2e::jwks::JwksServer;
use e2e::{Echo, Envoy};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

/// A file of the JWT core's test data (keys, JWKS).
fn read(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = e2e::paths::workspace_root()
        .join("filters/jwt-core/testdata")
        .join(name);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

fn now() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs())
}

fn token(alg: Algorithm, kid: &str, pem: &str) -> anyhow::Result<String> {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    let claims =
        json!({"iss": "https://idp.example", "aud": "api", "sub": "ann", "exp": now()? + 600});
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&read(pem)?)?,
        _ => EncodingKey::from_rsa_pem(&read(pem)?)?,
    };
    Ok(encode(&header, &claims, &key)?)
}

/// gatehouse-jwt with one provider whose keys come from the JWKS server
/// the template's `jwks` cluster reaches, refetched at most once a second,
/// each fetch bounded by `timeout_ms`; every request needs its token.
fn remote_config(timeout_ms: u64) -> serde_json::Value {
    json!({
        "providers": { "idp": {
            "issuer": "https://idp.example",
            "algorithms": ["RS256"],
            "jwks": { "remote": {
                "uri": "http://jwks.test/jwks.json", "cluster": "jwks",
                "cache_duration_seconds": 3600, "refetch_interval_seconds": 1, "timeout_ms": timeout_ms
            } }
        } },
        "rules": [ { "requires": { "provider": "idp" } } ]
    })
}

/// An Envoy with gatehouse-jwt, the test JWKS inline, and `rules`.
async fn envoy_with_rules(echo: &Echo, rules: serde_json::Value) -> anyhow::Result<Envoy> {
    let jwks: serde_json::Value = serde_json::from_slice(&read("jwks.json")?)?;
    let config = json!({
        "providers": { "idp": {
            "issuer": "https://idp.example",
            "audiences": ["api"],
            "algorithms": ["RS256", "ES256"],
            "jwks": { "inline": jwks }
        } },
        "rules": rules
    });
    Envoy::from_template("jwt-wasm.yaml")?
        .upstream(echo)
        .var("JWT_CONFIG", config)
        .start()
        .await
}

#[tokio::test]
async fn a_public_rule_does_not_exempt_a_longer_segment() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let envoy = envoy_with_rules(
        &echo,
        json!([
            { "match": { "prefix": "/health" }, "requires": { "none": {} } },
            { "match": { "prefix": "/" }, "requires": { "provider": "idp" } }
        ]),
    )
    .await?;
    for open in ["/health", "/health/live", "/health?probe=1"] {
        assert_eq!(envoy.get(open).send().await?.status(), 200, "{open}");
    }
    // This template leaves Envoy's path handling at its defaults, so the
    // filter sees these paths as sent.
    for guarded in [
        "/healthz-admin",
        "/health-admin",
        "/health;x",
        "/health/..;/admin",
    ] {
        assert_eq!(envoy.get(guarded).send().await?.status(), 401, "{guarded}");
    }
    Ok(())
}

#[tokio::test]
async fn a_zero_padded_es256_signature_is_refused_with_401() -> anyhow::Result<()> {
    let echo = Echo::start().await?;
    let envoy = envoy_with_rules(&echo, json!([{ "requires": { "provider": "idp" } }])).await?;
    let valid = token(Algorithm::ES256, "ec-256", "keys/ec256.pem")?;
    let (input, signature) = valid
        .rsplit_once('.')
        .context("a token has three segments")?;
    let signature = URL_SAFE_NO_PAD.decode(signature)?;
    // 00‖r‖00‖s: another JWS signature (a different token), whose DER form
    // is the DER form of the valid one.
    let padded = [&[0][..], &signature[..32], &[0], &signature[32..]].concat();
    let padded = format!("{input}.{}", URL_SAFE_NO_PAD.encode(padded));
    let get = |token: &str| {
        envoy
            .get("/api")
            .header("authorization", format!("Bearer {token}"))
            .send()
    };

    let refused = get(&padded).await?;
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str()?.to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(
        get(&valid).await?.status(),
        200,
        "the same signature, unpadded"
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.gatehouse_jwt.signatures.wasm")
            .await?,
        0,
        "the valid one went through Envoy's verify_signature"
    );
    Ok(())
}

#[tokio::test]
async fn a_forged_kid_does_not_empty_the_token_cache() -> anyhow::Result<()> {
    let jwks = JwksServer::start_down().await?;
    jwks.serve(&String::from_utf8(read("jwks.json")?)?);
    let echo = Echo::start().await?;
    let config = remote_config(1000);
    // One worker: the cache under test is that worker's.
    let envoy = Envoy::from_template("jwt-remote.yaml")?
        .upstream(&echo)
        .var("JWKS_PORT", jwks.port())
        .var("JWT_CONFIG", config)
        .start()
        .await?;
    let get = |token: &str| {
        envoy
            .get("/api")
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    let stat = |name: &str| {
        let full = format!("wasmcustom.gatehouse_jwt.{name}");
        let envoy = &envoy;
        async move { envoy.stat(&full).await }
    };
    let good = token(Algorithm::RS256, "rsa-1", "keys/rsa.pem")?;
    e2e::poll::until("keys loaded", e2e::poll::READY_DEADLINE, || {
        let response = get(&good);
        async move { Ok((response.await?.status() == 200).then_some(())) }
    })
    .await?;
    assert_eq!(get(&good).await?.status(), 200);
    let (hits, checks) = (stat("cache.hits").await?, stat("signatures.native").await?);
    assert!(hits >= 1, "the token is cached");

    // Forged kids until one of them makes the worker fetch the JWKS again
    // (at most one fetch a second). The request that fetched is answered
    // after the keys it brought are installed.
    let before = jwks.fetches();
    let forged = token(Algorithm::RS256, "forged", "keys/rsa-other.pem")?;
    e2e::poll::until(
        "a refetch for a forged kid",
        e2e::poll::READY_DEADLINE,
        || {
            let response = get(&forged);
            let jwks = &jwks;
            async move {
                assert_eq!(response.await?.status(), 401);
                Ok((jwks.fetches() > before).then_some(()))
            }
        },
    )
    .await?;

    // The same keys came back: the token is still answered from the cache.
    assert_eq!(get(&good).await?.status(), 200);
    assert_eq!(stat("cache.hits").await?, hits + 1);
    assert_eq!(
        stat("signatures.native").await?,
        checks,
        "no second signature check"
    );
    Ok(())
}

/// Valid tokens sent while the keys are still being fetched (a slow IdP
/// right after Envoy starts), on every worker: each waits for the fetch
/// under way, its own worker's or another's, and passes. None is refused
/// for keys that had not arrived yet, and one fetch serves them all.
#[tokio::test]
async fn valid_tokens_wait_for_the_first_keys_on_every_worker() -> anyhow::Result<()> {
    let jwks = JwksServer::start_down().await?;
    jwks.serve(&String::from_utf8(read("jwks.json")?)?);
    jwks.delay(std::time::Duration::from_millis(1500));
    let echo = Echo::start().await?;
    let config = remote_config(4000);
    let envoy = Envoy::from_template("jwt-remote.yaml")?
        .upstream(&echo)
        .concurrency(4)
        .var("JWKS_PORT", jwks.port())
        .var("JWT_CONFIG", config)
        .start()
        .await?;
    let good = token(Algorithm::RS256, "rsa-1", "keys/rsa.pem")?;
    // A connection per request, so they spread over the workers.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()?;
    let started = std::time::Instant::now();
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let request = client
                .get(envoy.url("/api"))
                .header("authorization", format!("Bearer {good}"))
                .send();
            tokio::spawn(async move { request.await.map_or(0, |r| r.status().as_u16()) })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await?);
    }
    println!(
        "16 requests during the first fetch: {statuses:?} in {:?}",
        started.elapsed()
    );
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // A forged token is still refused once the keys are there.
    let forged = token(Algorithm::RS256, "rsa-1", "keys/rsa-other.pem")?;
    let refused = client
        .get(envoy.url("/api"))
        .header("authorization", format!("Bearer {forged}"))
        .send()
        .await?;
    assert_eq!(refused.status(), 401);
    assert!(
        jwks.fetches() <= 4,
        "at most a fetch per worker, not one per request: {}",
        jwks.fetches()
    );
    Ok(())
}
