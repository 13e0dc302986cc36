//! Rules, token locations, claim headers and the 401/403 answers.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;

use super::*;
use crate::Algorithm;
use crate::config::FilterConfig;

const JWKS: &str = include_str!("../../testdata/jwks.json");
const EC256: &[u8] = include_bytes!("../../testdata/keys/ec256.pem");
const NOW: u64 = 1_800_000_000;

fn config() -> FilterConfig {
    FilterConfig::parse(config_text().as_bytes()).unwrap()
}

fn config_text() -> String {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    json!({
        "realm": "edge",
        "providers": {
            "idp": {
                "issuer": "https://idp.example",
                "audiences": ["api"],
                "jwks": { "inline": jwks },
                "from": [
                    { "header": "authorization", "prefix": "Bearer " },
                    { "cookie": "session" },
                    { "query": "access_token" }
                ],
                "claim_to_headers": [
                    { "claim": "sub", "header": "x-gatehouse-user" },
                    { "claim": "realm.roles", "header": "x-gatehouse-roles" },
                    { "claim": "email", "header": "x-user-email" }
                ],
                "payload_in_header": "x-gatehouse-jwt-payload",
                "required_claims": [ { "claim": "scope", "contains": "read" } ]
            },
            "partner": {
                "issuer": "https://partner.example",
                "jwks": { "inline": jwks },
                "from": [ { "header": "x-partner-token" } ],
                "forward": true
            }
        },
        "rules": [
            { "match": { "prefix": "/health" }, "requires": { "none": {} } },
            { "match": { "prefix": "/public" }, "requires": { "allow_missing": "idp" } },
            { "match": { "prefix": "/partner", "method": "POST" }, "requires": { "any": ["partner", "idp"] } },
            { "match": { "prefix": "/" }, "requires": { "provider": "idp" } }
        ]
    })
    .to_string()
}

fn token(claims: Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-256".into());
    encode(&header, &claims, &EncodingKey::from_ec_pem(EC256).unwrap()).unwrap()
}

fn good_claims() -> Value {
    json!({
        "iss": "https://idp.example", "aud": "api", "sub": "ann", "exp": NOW + 60,
        "scope": "read write", "realm": { "roles": ["admin", "dev"] }, "email": "ann@example.com"
    })
}

fn decide(path: &str, method: &str, headers: &[(&str, &str)]) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    config().policy().decide(
        &RequestView {
            path,
            host: "api.example",
            method,
            headers: &headers,
        },
        NOW,
    )
}

fn status(d: &Decision) -> u16 {
    match d {
        Decision::Continue { .. } => 200,
        Decision::FetchKeys { .. } => 0,
        Decision::Deny { status, .. } => *status,
    }
}

#[test]
fn a_valid_bearer_token_sets_claim_headers_and_is_not_forwarded() {
    let bearer = format!("Bearer {}", token(good_claims()));
    let Decision::Continue { remove, set } = decide("/api", "GET", &[("authorization", &bearer)])
    else {
        panic!("allowed expected")
    };
    assert_eq!(remove, vec!["authorization".to_owned()]);
    let get = |h: &str| set.iter().find(|(n, _)| n == h).map(|(_, v)| v.as_str());
    assert_eq!(get("x-gatehouse-user"), Some("ann"));
    assert_eq!(get("x-gatehouse-roles"), Some("admin,dev"));
    assert_eq!(get("x-user-email"), Some("ann@example.com"));
    assert!(get("x-gatehouse-jwt-payload").is_some());
}

#[test]
fn envoy_may_take_over_removing_the_token_header() {
    let mut raw: Value = serde_json::from_str(&config_text()).unwrap();
    raw["token_headers_removed_by_envoy"] = true.into();
    let config = FilterConfig::parse(raw.to_string().as_bytes()).unwrap();
    let headers = vec![(
        "authorization".to_owned(),
        format!("Bearer {}", token(good_claims())),
    )];
    let decision = config.policy().decide(
        &RequestView {
            path: "/api",
            host: "api.example",
            method: "GET",
            headers: &headers,
        },
        NOW,
    );
    let Decision::Continue { remove, set } = decision else {
        panic!("allowed expected, got {decision:?}")
    };
    assert!(remove.is_empty(), "{remove:?}");
    assert!(
        set.iter()
            .any(|(n, v)| n == "x-gatehouse-user" && v == "ann")
    );
}

#[test]
fn tokens_are_found_in_cookies_and_query_parameters() {
    let t = token(good_claims());
    assert_eq!(
        status(&decide(
            "/api",
            "GET",
            &[("cookie", &format!("a=b; session={t}"))]
        )),
        200
    );
    assert_eq!(
        status(&decide(&format!("/api?x=1&access_token={t}"), "GET", &[])),
        200
    );
}

#[test]
fn a_token_cookie_is_found_in_any_cookie_header_and_the_first_query_value_counts() {
    let t = token(good_claims());
    let session = format!("session={t}");
    assert_eq!(
        status(&decide(
            "/api",
            "GET",
            &[("cookie", "a=b"), ("cookie", &session)]
        )),
        200,
        "HTTP/2 may send cookies in several headers"
    );
    assert_eq!(
        status(&decide(
            &format!("/api?access_token&access_token={t}"),
            "GET",
            &[]
        )),
        401,
        "`?access_token` is present and empty, as `?access_token=` is"
    );
}

#[test]
fn missing_and_bad_tokens_get_401_with_an_rfc6750_challenge() {
    let Decision::Deny {
        status,
        headers,
        body,
        ..
    } = decide("/api", "GET", &[])
    else {
        panic!("denied expected")
    };
    assert_eq!(status, 401);
    assert_eq!(
        headers[0],
        ("www-authenticate".into(), "Bearer realm=\"edge\"".into())
    );
    assert!(body.contains("\"code\":\"missing_token\""), "{body}");

    let expired = format!(
        "Bearer {}",
        token(json!({"iss": "https://idp.example", "aud": "api", "exp": NOW - 3600}))
    );
    let Decision::Deny {
        status,
        headers,
        body,
        ..
    } = decide("/api", "GET", &[("authorization", &expired)])
    else {
        panic!("denied expected")
    };
    assert_eq!(status, 401);
    assert!(
        headers[0].1.contains("error=\"invalid_token\""),
        "{headers:?}"
    );
    assert!(headers[0].1.contains("expired"), "{headers:?}");
    assert!(body.contains("\"code\":\"invalid_token\""), "{body}");
    assert_eq!(status_of("Bearer garbage"), 401);
}

fn status_of(authorization: &str) -> u16 {
    status(&decide("/api", "GET", &[("authorization", authorization)]))
}

#[test]
fn a_missing_required_claim_gets_403() {
    let mut claims = good_claims();
    claims["scope"] = json!("write");
    let Decision::Deny {
        status,
        headers,
        body,
        ..
    } = decide(
        "/api",
        "GET",
        &[("authorization", &format!("Bearer {}", token(claims)))],
    )
    else {
        panic!("denied expected")
    };
    assert_eq!(status, 403);
    assert!(headers[0].1.contains("insufficient_scope"));
    assert!(body.contains("insufficient_claims"));
}

#[test]
fn rules_apply_in_order_first_match_wins() {
    assert_eq!(status(&decide("/health", "GET", &[])), 200, "none");
    assert_eq!(
        status(&decide("/public/page", "GET", &[])),
        200,
        "allow_missing without a token"
    );
    assert_eq!(
        status(&decide(
            "/public/page",
            "GET",
            &[("authorization", "Bearer bad")]
        )),
        401,
        "allow_missing verifies a token that is there"
    );
    assert_eq!(
        status(&decide("/partner/x", "GET", &[])),
        401,
        "the POST rule does not match a GET; the catch-all does"
    );
    let partner = token(json!({"iss": "https://partner.example", "exp": NOW + 60}));
    let d = decide("/partner/x", "POST", &[("x-partner-token", &partner)]);
    assert_eq!(
        d,
        Decision::Continue {
            remove: vec![],
            set: vec![]
        },
        "any: the partner token, forwarded"
    );
}

/// Status of an anonymous GET of `path` under `rules` (provider `idp`).
fn anonymous_status(rules: Value, path: &str) -> u16 {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let text = json!({
        "providers": { "idp": { "jwks": { "inline": jwks } } },
        "rules": rules
    });
    let config = FilterConfig::parse(text.to_string().as_bytes()).unwrap();
    status(&config.policy().decide(
        &RequestView {
            path,
            host: "h",
            method: "GET",
            headers: &[],
        },
        NOW,
    ))
}

#[test]
fn a_public_prefix_exempts_its_own_segments_only() {
    let rules = json!([
        { "match": { "prefix": "/health" }, "requires": { "none": {} } },
        { "match": { "prefix": "/docs" }, "requires": { "allow_missing": "idp" } },
        { "match": { "prefix": "/static/" }, "requires": { "none": {} } },
        { "match": { "path": "/ready" }, "requires": { "none": {} } },
        { "match": { "prefix": "/" }, "requires": { "provider": "idp" } }
    ]);
    for open in [
        "/health",
        "/health/",
        "/health/live",
        "/health?probe=1",
        "/health?next=/admin",
        "/docs/intro",
        "/static/",
        "/static/app.css",
        "/ready?x=1",
    ] {
        assert_eq!(anonymous_status(rules.clone(), open), 200, "{open}");
    }
    for guarded in [
        // Another segment that only starts the same.
        "/healthz-admin",
        "/health-admin/x",
        "/health.json",
        "/documents",
        "/static",
        "/ready/x",
        // Paths an upstream may read as another one.
        "/health;x",
        "/health/../admin",
        "/health/./x",
        "/health/..;/admin",
        "/health//admin",
        "/health/%2e%2e/admin",
        "/health/%2E%2e/admin",
        "/health%2fadmin",
        "/health/..%2Fadmin",
        "/health/..%5cadmin",
        "/health\\..\\admin",
    ] {
        assert_eq!(anonymous_status(rules.clone(), guarded), 401, "{guarded}");
    }
}

#[test]
fn a_requiring_prefix_keeps_matching_raw_prefixes() {
    // Matching more here only asks for a token more often; matching less
    // would let `/secure;x` (which Tomcat reads as `/secure`) through.
    let rules = json!([
        { "match": { "prefix": "/secure" }, "requires": { "provider": "idp" } },
        { "match": { "prefix": "/" }, "requires": { "none": {} } }
    ]);
    for guarded in [
        "/secure",
        "/secure/x",
        "/secure;x/y",
        "/secure-admin",
        "/secure?x",
    ] {
        assert_eq!(anonymous_status(rules.clone(), guarded), 401, "{guarded}");
    }
    assert_eq!(anonymous_status(rules, "/open"), 200);
}

#[test]
fn written_headers_are_reserved_even_without_the_prefix() {
    let config = config();
    assert!(config.is_reserved_header("x-user-email"));
    assert!(config.is_reserved_header("X-Gatehouse-Anything"));
    assert!(!config.is_reserved_header("x-request-id"));
}

#[test]
fn config_errors_name_the_field() {
    let err = |text: Value| {
        FilterConfig::parse(text.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    };
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    assert!(
        err(json!({"rules": [{"requires": {"provider": "nope"}}]}))
            .starts_with("rules[0].requires.provider: unknown provider")
    );
    assert!(
        err(json!({"providers": {"p": {"jwks": {"inline": {"keys": []}}}}}))
            .starts_with("providers.p.jwks.inline: jwks has no signature key")
    );
    assert!(
        err(json!({"providers": {"p": {"jwks": {"inline": jwks}, "algorithms": ["none"]}}}))
            .starts_with("providers.p.algorithms[0]: unknown algorithm")
    );
    assert!(
        err(json!({"providers": {"p": {"jwks": {"inline": jwks}, "algorithms": ["HS256"]}}}))
            .contains("hmac_secret_base64url")
    );
    assert!(
        err(json!({"providers": {"p": {"jwks": {"inline": jwks}, "from": [{"cookie": "a", "query": "b"}]}}}))
            .starts_with("providers.p.from[0]")
    );
    assert!(
        err(json!({"providers": {"p": {"jwks": {"inline": jwks}, "isuer": "x"}}}))
            .contains("unknown field `isuer`")
    );
    assert!(
        err(json!({"rules": [{"requires": {}}]}))
            .starts_with("rules[0].requires: name exactly one of")
    );
}

fn remote_config() -> FilterConfig {
    let text = json!({
        "providers": { "idp": {
            "jwks": { "remote": { "uri": "http://keys.example:8080/jwks.json", "cluster": "idp_jwks", "refetch_interval_seconds": 1 } }
        } },
        "rules": [ { "requires": { "provider": "idp" } } ]
    });
    FilterConfig::parse(text.to_string().as_bytes()).unwrap()
}

#[test]
fn a_remote_provider_asks_for_keys_then_verifies_with_them() {
    let config = remote_config();
    let (index, name, remote) = config
        .policy()
        .remote_jwks()
        .next()
        .map(|(i, n, r)| (i, n.to_owned(), r.clone()))
        .unwrap();
    assert_eq!(name, "idp");
    assert_eq!(
        (
            remote.cluster.as_str(),
            remote.authority.as_str(),
            remote.path.as_str()
        ),
        ("idp_jwks", "keys.example:8080", "/jwks.json")
    );
    assert_eq!(
        (
            remote.cache_duration_secs,
            remote.timeout_ms,
            remote.refetch_interval_secs
        ),
        (300, 2000, 1)
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
    assert_eq!(
        status(&config.policy().decide_with(&view, NOW, &Refetch(false))),
        401,
        "no refetch allowed: refused"
    );

    let mut policy = config.policy().clone();
    policy.set_keys(index, KeySet::from_jwks(JWKS.as_bytes()).unwrap());
    assert_eq!(status(&policy.decide_with(&view, NOW, &Refetch(true))), 200);
}

#[test]
fn remote_jwks_errors_name_the_field() {
    let err = |jwks: Value| {
        let text = json!({"providers": {"p": {"jwks": jwks}}});
        FilterConfig::parse(text.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(json!({"remote": {"uri": "ftp://x/keys", "cluster": "c"}}))
            .starts_with("providers.p.jwks.remote.uri")
    );
    assert!(
        err(json!({"remote": {"uri": "http:///keys", "cluster": "c"}}))
            .starts_with("providers.p.jwks.remote.uri")
    );
    assert!(
        err(json!({"remote": {"uri": "http://x/keys", "cluster": ""}}))
            .starts_with("providers.p.jwks.remote.cluster")
    );
    assert!(err(json!({})).starts_with(
        "providers.p.jwks: name exactly one of inline, remote or hmac_secret_base64url"
    ));
}

/// A host that allows (or refuses) every refetch.
struct Refetch(bool);

impl crate::verify::Host for Refetch {
    fn may_refetch(&self, _index: usize) -> bool {
        self.0
    }
}

/// A host with a token cache that counts signature checks.
struct Caching {
    cache: std::cell::RefCell<crate::cache::TokenCache>,
    checks: std::cell::Cell<usize>,
}

impl crate::verify::Host for Caching {
    fn verify_natively(&self, _check: &crate::native::NativeCheck<'_>) -> Option<bool> {
        self.checks.set(self.checks.get() + 1);
        None
    }
    fn cached_claims(
        &self,
        index: usize,
        token: &str,
        now: u64,
    ) -> Option<std::rc::Rc<serde_json::Map<String, Value>>> {
        self.cache.borrow().get(index, token, now)
    }
    fn remember(
        &self,
        index: usize,
        token: &str,
        key: &crate::jwks::KeyIdentity,
        claims: std::rc::Rc<serde_json::Map<String, Value>>,
        until: u64,
    ) {
        self.cache
            .borrow_mut()
            .insert(index, token, key, claims, until, NOW);
    }
}

/// The test JWKS with only the keys named.
fn jwks_with(kids: &[&str]) -> KeySet {
    let all: Value = serde_json::from_str(JWKS).unwrap();
    let keys: Vec<&Value> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
        .collect();
    KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

#[test]
fn a_refetch_for_a_forged_kid_keeps_the_verified_tokens_cached() {
    let config = remote_config();
    let mut policy = config.policy().clone();
    policy.set_keys(0, jwks_with(&["rsa-1", "ec-256"]));
    let host = Caching {
        cache: std::cell::RefCell::new(crate::cache::TokenCache::new(16)),
        checks: std::cell::Cell::new(0),
    };
    let request = |token: &str| vec![("authorization".to_owned(), format!("Bearer {token}"))];
    let decide = |policy: &Policy, headers: &[(String, String)], host: &dyn Host| {
        status(&policy.decide_with(
            &RequestView {
                path: "/",
                host: "h",
                method: "GET",
                headers,
            },
            NOW,
            host,
        ))
    };
    let good = request(&token(json!({"exp": NOW + 60})));
    assert_eq!(decide(&policy, &good, &host), 200);
    assert_eq!(host.checks.get(), 1);

    // A token with a kid nobody published asks for a fetch...
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("forged".into());
    let forged = encode(
        &header,
        &json!({"exp": NOW + 60}),
        &EncodingKey::from_ec_pem(EC256).unwrap(),
    )
    .unwrap();
    assert_eq!(
        policy.decide_with(
            &RequestView {
                path: "/",
                host: "h",
                method: "GET",
                headers: &request(&forged),
            },
            NOW,
            &Refetch(true),
        ),
        Decision::FetchKeys { provider: 0 }
    );
    // ...which brings the same keys, installed as the adapter installs them.
    let same = jwks_with(&["rsa-1", "ec-256"]);
    host.cache.borrow_mut().retain_keys(0, &same);
    policy.set_keys(0, same);
    assert_eq!(decide(&policy, &good, &host), 200);
    assert_eq!(
        host.checks.get(),
        1,
        "the cached token needs no second signature check"
    );

    // A rotation that removes the token's key takes the token with it.
    let rotated = jwks_with(&["rsa-1"]);
    host.cache.borrow_mut().retain_keys(0, &rotated);
    policy.set_keys(0, rotated);
    assert_eq!(decide(&policy, &good, &host), 401);
}

#[test]
fn a_repeated_token_is_verified_once_and_trusted_until_it_expires() {
    let config = config();
    let host = Caching {
        cache: std::cell::RefCell::new(crate::cache::TokenCache::new(16)),
        checks: std::cell::Cell::new(0),
    };
    let mut claims = good_claims();
    claims["exp"] = json!(NOW + 100);
    let headers = vec![(
        "authorization".to_owned(),
        format!("Bearer {}", token(claims)),
    )];
    let view = RequestView {
        path: "/api",
        host: "h",
        method: "GET",
        headers: &headers,
    };
    for _ in 0..3 {
        assert!(matches!(
            config.policy().decide_with(&view, NOW, &host),
            Decision::Continue { .. }
        ));
    }
    assert_eq!(
        host.checks.get(),
        1,
        "one signature check for three requests"
    );
    // Past exp (and the 60 s leeway) the cache no longer vouches; the token is refused.
    let later = NOW + 100 + 60;
    assert!(matches!(
        config.policy().decide_with(&view, later, &host),
        Decision::Deny { status: 401, .. }
    ));
    // Required claims still apply to cached tokens.
    let mut no_read = good_claims();
    no_read["scope"] = json!("write");
    let headers = vec![(
        "authorization".to_owned(),
        format!("Bearer {}", token(no_read)),
    )];
    let view = RequestView {
        path: "/api",
        host: "h",
        method: "GET",
        headers: &headers,
    };
    for _ in 0..2 {
        assert!(matches!(
            config.policy().decide_with(&view, NOW, &host),
            Decision::Deny { status: 403, .. }
        ));
    }
}

#[test]
fn an_hmac_provider_takes_hs_tokens_signed_with_its_secret_only() {
    use base64::Engine as _;
    let secret = b"0123456789abcdef0123456789abcdef-hmac";
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let text = json!({
        "providers": { "svc": { "jwks": { "hmac_secret_base64url": b64 } } },
        "rules": [ { "requires": { "provider": "svc" } } ]
    });
    let config = FilterConfig::parse(text.to_string().as_bytes()).unwrap();
    let sign = |key: &[u8]| {
        encode(
            &Header::new(Algorithm::HS256),
            &json!({"exp": NOW + 60}),
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    let decide = |token: String| {
        let headers = vec![("authorization".to_owned(), format!("Bearer {token}"))];
        status(&config.policy().decide(
            &RequestView {
                path: "/",
                host: "h",
                method: "GET",
                headers: &headers,
            },
            NOW,
        ))
    };
    assert_eq!(decide(sign(secret)), 200);
    assert_eq!(decide(sign(b"another-secret-of-enough-length-000000")), 401);
    assert_eq!(
        decide(token(json!({"exp": NOW + 60}))),
        401,
        "an ES256 token is not for an HMAC provider"
    );

    let err = |jwks: Value, algs: Value| {
        let text = json!({"providers": {"p": {"jwks": jwks, "algorithms": algs}}});
        FilterConfig::parse(text.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(
            json!({"hmac_secret_base64url": "c2hvcnQ"}),
            json!(["HS256"])
        )
        .contains("at least 32")
    );
    assert!(
        err(json!({"hmac_secret_base64url": b64}), json!(["RS256"]))
            .contains("HS256, HS384 or HS512 only")
    );
}

#[test]
fn a_decision_needs_only_the_headers_the_policy_reads() {
    let config = config();
    assert_eq!(
        config.policy().read_headers(),
        ["authorization", "cookie", "x-partner-token"]
    );
    assert!(!config.reads_header("x-request-id"));
    // A rule's header match is read too.
    let text = json!({
        "providers": { "p": { "jwks": { "inline": serde_json::from_str::<Value>(JWKS).unwrap() } } },
        "rules": [ { "match": { "headers": [ { "name": "X-Tenant", "exact": "a" } ] }, "requires": { "provider": "p" } } ]
    });
    let other = FilterConfig::parse(text.to_string().as_bytes()).unwrap();
    assert!(other.reads_header("x-tenant") && other.reads_header("authorization"));
    // Leaving every other header out changes no decision.
    let t = token(good_claims());
    let requests = [
        ("/api", "GET", ("authorization", format!("Bearer {t}"))),
        ("/api", "GET", ("cookie", format!("a=b; session={t}"))),
        ("/partner", "POST", ("x-partner-token", t.clone())),
        ("/api", "GET", ("x-other", format!("Bearer {t}"))),
    ];
    let mut statuses = Vec::new();
    for (path, method, extra) in requests {
        let mut all: Vec<(String, String)> = vec![
            ("x-request-id".into(), "1".into()),
            ("user-agent".into(), "t".into()),
        ];
        all.push((extra.0.to_owned(), extra.1));
        let read: Vec<(String, String)> = all
            .iter()
            .filter(|(n, _)| config.reads_header(n))
            .cloned()
            .collect();
        let view = |headers| RequestView {
            path,
            host: "api.example",
            method,
            headers,
        };
        let decision = config.policy().decide(&view(&all), NOW);
        assert_eq!(
            decision,
            config.policy().decide(&view(&read), NOW),
            "{path} {method}"
        );
        statuses.push(status(&decision));
    }
    // (the partner token names the wrong issuer)
    assert_eq!(statuses, [200, 200, 401, 401]);
}

#[test]
fn only_the_pseudo_headers_rules_and_locations_use_are_read() {
    // Path prefixes, a method match and a query-parameter token: :path and
    // :method, never :authority.
    assert_eq!(config().read_pseudo_headers(), [":path", ":method"]);
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let text = json!({
        "providers": { "idp": { "jwks": { "inline": jwks } } },
        "rules": [ { "requires": { "provider": "idp" } } ]
    });
    let bare = FilterConfig::parse(text.to_string().as_bytes()).unwrap();
    assert!(bare.read_pseudo_headers().is_empty());
    assert_eq!(bare.read_headers(), ["authorization"]);
}

#[test]
fn every_refusal_carries_its_reason_status_and_code() {
    let cases = [
        (decide("/api", "GET", &[]), DenyReason::MissingToken),
        (
            decide("/api", "GET", &[("authorization", "Bearer garbage")]),
            DenyReason::InvalidToken,
        ),
        (
            decide(
                "/api",
                "GET",
                &[(
                    "authorization",
                    &format!(
                        "Bearer {}",
                        token(json!({"iss": "https://idp.example", "aud": "api", "exp": NOW + 60}))
                    ),
                )],
            ),
            DenyReason::InsufficientClaims,
        ),
    ];
    for (decision, want) in cases {
        let Decision::Deny {
            reason,
            status,
            body,
            ..
        } = decision
        else {
            panic!("denied expected")
        };
        assert_eq!(reason, want);
        assert_eq!(status, want.status());
        let code = format!("\"code\":\"{}\"", want.code());
        assert!(body.contains(&code), "{body}");
    }
}

fn templated(extra: Value) -> FilterConfig {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let mut config = json!({
        "realm": "shop",
        "providers": {
            "idp": {
                "jwks": { "inline": jwks },
                "header_templates": [
                    { "header": "x-auth", "template": "Authenticated {{ .token.Header.alg }}; sub={{ .token.Claims.sub }}" },
                    { "header": "x-ua", "template": "{{ .httpRequestHeader.Get \"User-Agent\" }}" },
                    { "header": "x-raw", "template": "{{ .token.Raw }}" },
                    { "header": "x-sig", "template": "{{ .token.Signature }}" },
                    { "header": "x-optional", "template": "{{ .token.Claims.optional }}" }
                ]
            }
        },
        "rules": [ { "requires": { "provider": "idp" } } ]
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    FilterConfig::parse(config.to_string().as_bytes()).unwrap()
}

fn decide_with_config(config: &FilterConfig, headers: &[(&str, &str)]) -> Decision {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    config.policy().decide(
        &RequestView {
            path: "/orders",
            host: "api.example",
            method: "GET",
            headers: &headers,
        },
        NOW,
    )
}

#[test]
fn header_templates_print_the_token_and_the_request() {
    let config = templated(json!({}));
    assert!(
        config.reads_header("user-agent"),
        "a template's request header is read"
    );
    for h in ["x-auth", "x-ua", "x-raw", "x-sig", "x-optional"] {
        assert!(
            config.is_reserved_header(h),
            "{h}: a client's copy is removed"
        );
    }
    assert!(!config.is_reserved_header("user-agent"));
    let t = token(good_claims());
    let bearer = format!("Bearer {t}");
    let Decision::Continue { set, .. } = decide_with_config(
        &config,
        &[("authorization", &bearer), ("user-agent", "curl/8.5")],
    ) else {
        panic!("a good token passes");
    };
    let get = |h: &str| set.iter().find(|(n, _)| n == h).map(|(_, v)| v.as_str());
    assert_eq!(get("x-auth"), Some("Authenticated ES256; sub=ann"));
    assert_eq!(get("x-ua"), Some("curl/8.5"));
    assert_eq!(get("x-raw"), Some(t.as_str()));
    assert_eq!(get("x-sig"), t.rsplit('.').next());
    assert_eq!(
        get("x-optional"),
        None,
        "a claim the token lacks sets no header"
    );
}

#[test]
fn an_error_response_answers_every_refusal_from_its_templates() {
    let config = templated(json!({
        "error_response": {
            "content_type": "application/problem+json",
            "headers": [ { "name": "x-correlation-id", "template": "{{ .httpRequestHeader.Get \"X-Correlation-Id\" }}" } ],
            "body_template": "{\"error\": {{ .message | json }}, \"status\": {{ .status_code }}, \"request\": {{ .request_id | json }}}"
        }
    }));
    assert!(config.reads_header("x-request-id") && config.reads_header("x-correlation-id"));
    let expired = token(json!({ "sub": "ann", "exp": NOW - 3600 }));
    for (authorization, status, message) in [
        (None, 401, "a bearer token is required"),
        (
            Some(format!("Bearer {expired}")),
            401,
            "the token has expired",
        ),
        (
            Some("Bearer not.a.token".to_owned()),
            401,
            "the token is not valid",
        ),
    ] {
        let mut headers = vec![("x-request-id", "req-7"), ("x-correlation-id", "c-\"9")];
        if let Some(a) = &authorization {
            headers.push(("authorization", a));
        }
        let Decision::Deny {
            status: got,
            headers,
            body,
            ..
        } = decide_with_config(&config, &headers)
        else {
            panic!("refused");
        };
        assert_eq!(got, status);
        let header = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("content-type"), Some("application/problem+json"));
        assert_eq!(header("x-correlation-id"), Some("c-\"9"));
        assert!(
            header("www-authenticate")
                .unwrap()
                .starts_with("Bearer realm=\"shop\"")
        );
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({ "error": message, "status": status, "request": "req-7" })
        );
    }
}

#[test]
fn template_errors_name_the_field() {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    for (config, field) in [
        (
            json!({ "providers": { "idp": { "jwks": { "inline": jwks },
                "header_templates": [ { "header": "x-a", "template": "{{ printf \"%q %q\" .token.Claims.sub }}" } ] } } }),
            "providers.idp.header_templates[0].template",
        ),
        (
            json!({ "providers": { "idp": { "jwks": { "inline": jwks },
                "header_templates": [ { "header": "X-A", "template": "x" } ] } } }),
            "providers.idp.header_templates[0]",
        ),
        (
            json!({ "error_response": { "body_template": "{{ .token.Raw }}" } }),
            "error_response.body_template",
        ),
        (
            json!({ "error_response": { "content_type": "text/plain", "headers": [ { "name": "content-type", "template": "x" } ] } }),
            "error_response.headers[0].name",
        ),
        (
            json!({ "error_response": { "headers": [ { "name": "www-authenticate", "template": "x" } ] } }),
            "error_response.headers[0].name",
        ),
    ] {
        let e = FilterConfig::parse(config.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
}
