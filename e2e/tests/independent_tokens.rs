//! Tokens minted by PyJWT (an independent implementation, pinned in
//! `e2e/requirements.txt`) are accepted or refused by gatehouse-jwt-core as
//! they should be: our verifier is not only consistent with our own signer.

use gatehouse_jwt_core::{Algorithm, KeySet, Provider, VerifyError};

/// Runs `e2e/testdata/mint_tokens.py` with the venv's PyJWT: the time it
/// minted at, and one `{alg, case, token}` object a token.
fn mint_with_pyjwt() -> anyhow::Result<(u64, Vec<serde_json::Value>)> {
    let root = e2e::paths::workspace_root();
    let python = root.join(".venv/bin/python");
    anyhow::ensure!(
        python.is_file(),
        "{} missing: run `make setup` (installs PyJWT into .venv)",
        python.display()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let output = std::process::Command::new(&python)
        .arg(root.join("e2e/testdata/mint_tokens.py"))
        .arg(root.join("filters/jwt-core/testdata/keys"))
        .arg(now.to_string())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "PyJWT failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let minted = String::from_utf8(output.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    Ok((now, minted))
}

#[test]
fn tokens_from_pyjwt_are_judged_correctly() -> anyhow::Result<()> {
    let (now, minted) = mint_with_pyjwt()?;
    let testdata = e2e::paths::workspace_root().join("filters/jwt-core/testdata");

    let keys = KeySet::from_jwks(&std::fs::read(testdata.join("jwks.json"))?)?;
    use Algorithm::*;
    let algorithms = vec![
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ];
    let provider = Provider::new(
        Some("https://idp.example".into()),
        vec!["api".into()],
        algorithms,
        keys,
        30,
    );

    let mut judged = 0;
    for minted in &minted {
        let (alg, case, token) = (
            &minted["alg"],
            minted["case"].as_str().unwrap_or(""),
            minted["token"].as_str().unwrap_or(""),
        );
        let result = provider.verify(token, now);
        let expected = match case {
            "valid" => Ok(()),
            "expired" => Err(VerifyError::Expired),
            "not_yet_valid" => Err(VerifyError::NotYetValid),
            "wrong_issuer" => Err(VerifyError::WrongIssuer),
            "wrong_audience" => Err(VerifyError::WrongAudience),
            "bad_signature" => Err(VerifyError::BadSignature),
            other => anyhow::bail!("unknown case {other}"),
        };
        match (&result, &expected) {
            (Ok(v), Ok(())) => assert_eq!(v.claims["sub"], "py", "{alg} {case}"),
            (Err(got), Err(want)) => assert_eq!(got, want, "{alg} {case}"),
            _ => panic!("{alg} {case}: expected {expected:?}, got {result:?}"),
        }
        judged += 1;
    }
    // 9 algorithms × 5 cases, a forged payload each, another RSA key for the 6 RSA ones.
    assert_eq!(judged, 9 * 6 + 6);
    Ok(())
}

/// The same PyJWT tokens through real Envoy: RS*/ES* signatures are checked
/// by Envoy's BoringSSL there, PS*/EdDSA by the filter's Rust, and the
/// verdicts must match the core's.
#[tokio::test]
async fn tokens_from_pyjwt_are_judged_the_same_inside_envoy() -> anyhow::Result<()> {
    let (_, minted) = mint_with_pyjwt()?;
    let testdata = e2e::paths::workspace_root().join("filters/jwt-core/testdata");
    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata.join("jwks.json"))?)?;
    let config = serde_json::json!({
        "providers": { "idp": {
            "issuer": "https://idp.example", "audiences": ["api"],
            "algorithms": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"],
            "jwks": { "inline": jwks }
        } },
        "rules": [ { "requires": { "provider": "idp" } } ]
    });
    let echo = e2e::Echo::start().await?;
    let envoy = e2e::Envoy::from_template("jwt-wasm.yaml")?
        .upstream(&echo)
        .var("JWT_CONFIG", config)
        .start()
        .await?;
    let mut native_expected = 0;
    for minted in &minted {
        let (alg, case) = (
            minted["alg"].as_str().unwrap_or(""),
            minted["case"].as_str().unwrap_or(""),
        );
        let token = minted["token"].as_str().unwrap_or("");
        let status = envoy
            .get("/")
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await?
            .status();
        let expected = if case == "valid" { 200 } else { 401 };
        assert_eq!(status.as_u16(), expected, "{alg} {case}");
        if alg.starts_with("RS") || alg.starts_with("ES") {
            native_expected += 1;
        }
    }
    let native = envoy
        .stat("wasmcustom.gatehouse_jwt.signatures.native")
        .await?;
    // Every RS/ES token reaches the signature check except those refused
    // before it (none here: all are well formed with known kids).
    assert_eq!(native, native_expected, "RS*/ES* went to Envoy's BoringSSL");
    assert_eq!(
        envoy
            .stat("wasmcustom.gatehouse_jwt.signatures.wasm")
            .await?,
        0
    );
    Ok(())
}
