//! The configuration example of `filters/jwt/README.md` is a real file that
//! loads and behaves as the README says, and the README shows it verbatim.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gatehouse_jwt_core::{Algorithm, Decision, FilterConfig, RequestView};
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

const EXAMPLE: &str = include_str!("../../jwt/examples/config.json");
const REMOTE: &str = include_str!("../../jwt/examples/remote.json");
const README: &str = include_str!("../../jwt/README.md");
const EC256: &[u8] = include_bytes!("../testdata/keys/ec256.pem");
const NOW: u64 = 1_800_000_000;

fn decide(config: &FilterConfig, path: &str, method: &str, headers: &[(&str, &str)]) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    config.policy().decide(
        &RequestView {
            path,
            host: "api.example",
            method,
            headers: &headers,
        },
        NOW,
    )
}

fn token(claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-256".into());
    encode(&header, &claims, &EncodingKey::from_ec_pem(EC256).unwrap()).unwrap()
}

#[test]
fn readme_shows_the_example_verbatim() {
    assert!(
        README.contains(EXAMPLE),
        "filters/jwt/README.md must embed examples/config.json as it is"
    );
    assert!(
        README.contains(REMOTE),
        "filters/jwt/README.md must embed examples/remote.json as it is"
    );
}

#[test]
fn remote_example_loads_and_waits_for_keys() {
    let config = FilterConfig::parse(REMOTE.as_bytes()).unwrap();
    let remotes: Vec<_> = config.policy().remote_jwks().collect();
    assert_eq!(remotes.len(), 1);
    let (index, name, remote) = remotes[0];
    assert_eq!(
        (name, remote.cluster.as_str(), remote.path.as_str()),
        ("idp", "idp_jwks", "/.well-known/jwks.json")
    );
    let headers = vec![(
        "authorization".to_owned(),
        format!("Bearer {}", token(json!({"exp": NOW + 60}))),
    )];
    let view = RequestView {
        path: "/",
        host: "h",
        method: "GET",
        headers: &headers,
    };
    assert_eq!(
        config.policy().decide_with(&view, NOW, &Refetch(true)),
        Decision::FetchKeys { provider: index }
    );
}

#[test]
fn example_loads_and_behaves_as_documented() {
    let config = FilterConfig::parse(EXAMPLE.as_bytes()).unwrap();
    let good = token(json!({
        "iss": "https://idp.example", "aud": "api", "sub": "ann", "exp": NOW + 60,
        "scope": "api.read", "realm_access": { "roles": ["admin"] }
    }));
    let Decision::Continue { remove, set } = decide(
        &config,
        "/orders",
        "GET",
        &[("cookie", &format!("access_token={good}"))],
    ) else {
        panic!("a valid token in the cookie passes")
    };
    assert!(remove.is_empty(), "only a header token is removed");
    assert!(set.contains(&("x-gatehouse-user".into(), "ann".into())));
    assert!(set.contains(&("x-gatehouse-roles".into(), "admin".into())));

    assert!(matches!(
        decide(&config, "/healthz", "GET", &[]),
        Decision::Continue { .. }
    ));
    assert!(matches!(
        decide(&config, "/docs/intro", "GET", &[]),
        Decision::Continue { .. }
    ));
    assert!(matches!(
        decide(&config, "/docs/intro", "POST", &[]),
        Decision::Deny { status: 401, .. }
    ));
    assert!(matches!(
        decide(&config, "/orders", "GET", &[]),
        Decision::Deny { status: 401, .. }
    ));
    let no_scope = token(json!({"iss": "https://idp.example", "aud": "api", "exp": NOW + 60}));
    assert!(matches!(
        decide(
            &config,
            "/orders",
            "GET",
            &[("authorization", &format!("Bearer {no_scope}"))]
        ),
        Decision::Deny { status: 403, .. }
    ));
}

/// A host that allows (or refuses) every refetch.
struct Refetch(bool);

impl gatehouse_jwt_core::Host for Refetch {
    fn may_refetch(&self, _index: usize) -> bool {
        self.0
    }
}
