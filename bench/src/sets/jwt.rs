//! `jwt`: Envoy's jwt_authn (with and without its cache) against gatehouse-jwt
//! (with and without its cache) and an empty wasm filter, on one repeated
//! token and on more distinct tokens than any cache holds.

use std::fmt::Write as _;

use anyhow::Result;

use super::{Measured, cpu_ratio, env_number, ratio, verdict};
use crate::{Pinning, Scenario, Settings, Sidecar};

/// Writes `count` distinct tokens signed with `alg` by the test key `pem`
/// (kid `kid`) to a file, one a line.
fn mint(
    dir: &std::path::Path,
    alg: jsonwebtoken::Algorithm,
    kid: &str,
    pem: &str,
    count: usize,
) -> Result<std::path::PathBuf> {
    let keys = e2e::paths::workspace_root().join("filters/jwt-core/testdata/keys");
    let pem = std::fs::read(keys.join(pem))?;
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem)?,
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem)?,
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some(kid.to_owned());
    let mut lines = String::new();
    for i in 0..count {
        let claims = serde_json::json!({ "iss": "https://idp.example", "sub": format!("user-{i}"), "exp": exp });
        lines.push_str(&jsonwebtoken::encode(&header, &claims, &key)?);
        lines.push('\n');
    }
    let path = dir.join(format!("{kid}-{count}.tokens"));
    std::fs::write(&path, lines)?;
    Ok(path)
}

/// Envoy's native jwt_authn against gatehouse-jwt and the empty wasm filter.
pub(super) async fn jwt(settings: &Settings, pinning: Option<&Pinning>) -> Result<Measured> {
    // More distinct tokens than any cache holds (jwt_authn's is set to 1000).
    let distinct = env_number("BENCH_JWT_DISTINCT_TOKENS", 4000)?;
    let dir = tempfile::tempdir()?;
    eprintln!("minting {distinct} RS256 and {distinct} ES256 tokens...");
    let rs_one = mint(
        dir.path(),
        jsonwebtoken::Algorithm::RS256,
        "rsa-1",
        "rsa.pem",
        1,
    )?;
    let rs_many = mint(
        dir.path(),
        jsonwebtoken::Algorithm::RS256,
        "rsa-1",
        "rsa.pem",
        distinct,
    )?;
    let es_many = mint(
        dir.path(),
        jsonwebtoken::Algorithm::ES256,
        "ec-256",
        "ec256.pem",
        distinct,
    )?;
    let jwks: serde_json::Value = serde_json::from_slice(&std::fs::read(
        e2e::paths::workspace_root().join("filters/jwt-core/testdata/jwks.json"),
    )?)?;
    // As `gatehouse render` configures it: Envoy removes the reserved client
    // headers before any filter (early header mutation), so the filter
    // reads only the headers it needs; and the route removes the token on
    // the way upstream, as jwt_authn does by default, because a header the
    // wasm filter removes makes Envoy pick the route again. The last
    // scenario has the filter remove it, for comparison.
    let gatehouse = serde_json::json!({
        "providers": { "idp": { "issuer": "https://idp.example", "algorithms": ["RS256", "ES256"], "jwks": { "inline": jwks } } },
        "rules": [ { "requires": { "provider": "idp" } } ],
        "reserved_headers_stripped_by_envoy": true,
        "token_headers_removed_by_envoy": true
    })
    .to_string();
    let mut uncached: serde_json::Value = serde_json::from_str(&gatehouse)?;
    uncached["token_cache_size"] = 0.into();
    let uncached = uncached.to_string();
    let mut removes_itself: serde_json::Value = serde_json::from_str(&gatehouse)?;
    removes_itself["token_headers_removed_by_envoy"] = false.into();
    let removes_itself = removes_itself.to_string();
    let jwks = jwks.to_string();
    let make =
        |name: &str, template: &str, vars: &[(&str, &str)], tokens: &std::path::Path| Scenario {
            name: name.to_owned(),
            template: template.to_owned(),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            path: "/bench".to_owned(),
            sidecar: Sidecar::None,
            tokens: Some(tokens.to_owned()),
            headers: Vec::new(),
        };
    let native = [("JWKS_JSON", jwks.as_str()), ("JWT_CACHE_CONFIG", "")];
    let cached = [
        ("JWKS_JSON", jwks.as_str()),
        (
            "JWT_CACHE_CONFIG",
            "jwt_cache_config: { jwt_cache_size: 1000 }",
        ),
    ];
    let strip = r#"[{"name": "envoy.http.early_header_mutation.header_mutation", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation", "mutations": [{"remove_on_match": {"key_matcher": {"prefix": "x-gatehouse-"}}}]}}]"#;
    let route_removes = r#"["authorization"]"#;
    let ours = [
        ("JWT_CONFIG", gatehouse.as_str()),
        ("EARLY_HEADER_MUTATION", strip),
        ("ROUTE_HEADERS_TO_REMOVE", route_removes),
    ];
    let ours_uncached = [
        ("JWT_CONFIG", uncached.as_str()),
        ("EARLY_HEADER_MUTATION", strip),
        ("ROUTE_HEADERS_TO_REMOVE", route_removes),
    ];
    let ours_removing_itself = [
        ("JWT_CONFIG", removes_itself.as_str()),
        ("EARLY_HEADER_MUTATION", strip),
    ];
    let scenarios = [
        make("no auth (baseline), one token", "proxy.yaml", &[], &rs_one),
        make(
            "empty wasm filter, one token",
            "noop-wasm.yaml",
            &[],
            &rs_one,
        ),
        make(
            "jwt_authn, one RS256 token",
            "jwt-authn.yaml",
            &native,
            &rs_one,
        ),
        make(
            "jwt_authn + cache, one RS256 token",
            "jwt-authn.yaml",
            &cached,
            &rs_one,
        ),
        make(
            "gatehouse-jwt, one RS256 token",
            "jwt-wasm.yaml",
            &ours,
            &rs_one,
        ),
        make(
            "gatehouse-jwt without its cache, one RS256 token",
            "jwt-wasm.yaml",
            &ours_uncached,
            &rs_one,
        ),
        make(
            "jwt_authn, distinct RS256 tokens",
            "jwt-authn.yaml",
            &native,
            &rs_many,
        ),
        make(
            "jwt_authn + cache, distinct RS256 tokens",
            "jwt-authn.yaml",
            &cached,
            &rs_many,
        ),
        make(
            "gatehouse-jwt, distinct RS256 tokens",
            "jwt-wasm.yaml",
            &ours,
            &rs_many,
        ),
        make(
            "jwt_authn, distinct ES256 tokens",
            "jwt-authn.yaml",
            &native,
            &es_many,
        ),
        make(
            "gatehouse-jwt, distinct ES256 tokens",
            "jwt-wasm.yaml",
            &ours,
            &es_many,
        ),
        make(
            "gatehouse-jwt removing the token itself, one RS256 token",
            "jwt-wasm.yaml",
            &ours_removing_itself,
            &rs_one,
        ),
    ];
    let s = crate::run(&scenarios, settings, pinning).await?;
    let mut targets = String::from("Targets:\n");
    for (label, ours, theirs, target) in [
        (
            "distinct RS256 tokens, gatehouse-jwt at least 0.9 of jwt_authn",
            8,
            6,
            Some(0.9),
        ),
        (
            "one repeated token, gatehouse-jwt at least 0.9 of the empty wasm filter",
            4,
            1,
            Some(0.9),
        ),
        (
            "distinct ES256 tokens, gatehouse-jwt against jwt_authn",
            10,
            9,
            None,
        ),
    ] {
        let (r, by_cpu) = (ratio(&s, ours, theirs), cpu_ratio(&s, ours, theirs));
        let _ = writeln!(
            targets,
            "- {label}: {r:.2}{} (by Envoy CPU per request: {by_cpu:.2})",
            target.map_or_else(String::new, |t| format!(", {}", verdict(r >= t)))
        );
    }
    for (label, ours, native) in [
        ("distinct RS256 tokens, against jwt_authn", 8, 6),
        ("one repeated token, against jwt_authn + cache", 4, 3),
        ("distinct ES256 tokens, against jwt_authn", 10, 9),
    ] {
        let (p99, theirs) = (s[ours].median.p99_us, s[native].median.p99_us);
        let paired = crate::paired_ratio(&s[ours], &s[native], |x| &x.runs_p99_us);
        // Closed-loop load at saturation: p99 follows throughput, so it is
        // reported for scale, never a target.
        let _ = writeln!(
            targets,
            "- (for scale) p99 at saturation, {label}: ×{paired:.2} (medians {p99:.0} µs against {theirs:.0} µs)"
        );
    }
    let _ = writeln!(
        targets,
        "- (for scale) empty wasm filter against no auth: {:.2}",
        ratio(&s, 1, 0)
    );
    let _ = writeln!(
        targets,
        "- (for scale) the floor of any wasm filter: the empty wasm filter against jwt_authn + cache, one repeated token: {:.2}, p99 ×{:.2}",
        ratio(&s, 1, 3),
        crate::paired_ratio(&s[1], &s[3], |x| &x.runs_p99_us)
    );
    let _ = writeln!(
        targets,
        "- (for scale) one repeated token, gatehouse-jwt removing the token itself (Envoy then picks the route again) against the empty wasm filter: {:.2}",
        ratio(&s, 11, 1)
    );
    Ok((
        format!(
            "Envoy with 1 worker under wrk (1 thread, {} connections), every request with an `authorization: Bearer` token from a file: one token repeated, or {distinct} distinct ones in turn. All the same RSA (and P-256) key. jwt_authn removes the token before forwarding (its default); gatehouse-jwt runs as `gatehouse render` configures it: an early header mutation removes the reserved headers and the route removes the token (`token_headers_removed_by_envoy`), except in the last row, where the filter removes it.",
            settings.connections
        ),
        crate::table(&s, None),
        targets,
    ))
}
