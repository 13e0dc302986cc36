//! The demo token issuer: the quickstart's API tokens and the key set that
//! checks them (the test key `rsa-1`). The quickstart serves these, and the
//! tests that run the quickstart's resources sign with them.

use anyhow::{Context, Result};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};

/// The issuer of the demo API tokens (the JWT Filter's `issuer`).
pub const TOKEN_ISSUER: &str = "https://demo.gatehouse.dev";

fn workspace_file(relative: &str) -> Result<Vec<u8>> {
    let path = crate::paths::workspace_root().join(relative);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// The demo token issuer's public keys: the test key `rsa-1` (which
/// [`token`] signs with), as a JWKS document.
///
/// # Errors
/// When the test JWKS cannot be read.
pub fn jwks() -> Result<String> {
    let all: serde_json::Value =
        serde_json::from_slice(&workspace_file("filters/jwt-core/testdata/jwks.json")?)?;
    let keys: Vec<&serde_json::Value> = all["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["kid"] == "rsa-1")
        .collect();
    Ok(serde_json::json!({ "keys": keys }).to_string())
}

/// A demo API token for `sub`, valid for a day.
///
/// # Errors
/// When the test key cannot be read.
pub fn token(sub: &str) -> Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": sub, "exp": now.as_secs() + 86_400,
    });
    let key =
        EncodingKey::from_rsa_pem(&workspace_file("filters/jwt-core/testdata/keys/rsa.pem")?)?;
    Ok(encode(&header, &claims, &key)?)
}
