use super::*;

fn err(text: &str) -> String {
    AuthzConfig::parse(text, "authz.yaml")
        .unwrap_err()
        .to_string()
}

#[test]
fn an_api_key_filter_gets_its_defaults() {
    let config = AuthzConfig::parse(
        "filters:\n  partners:\n    api_keys:\n      keys_file: keys.yaml\n",
        "authz.yaml",
    )
    .unwrap();
    let FilterKind::ApiKeys(f) = &config.filters()["partners"] else {
        panic!("api keys expected")
    };
    assert_eq!(f.from, [KeyLocation::Header("x-api-key".into())]);
    assert_eq!(f.source, KeySource::File("keys.yaml".into()));
    assert_eq!(f.client_header, DEFAULT_CLIENT_HEADER);
    assert!(!f.forward_key);
    assert_eq!(config.default_filter(), None);
}

const OIDC: &str = "filters:\n  sso:\n    oidc:\n      issuer: https://idp.example/\n      client_id: app\n      client_secret_file: secret\n      callback_url: https://app.example/.gatehouse/oidc/callback\n      session_keys_file: session-keys\n";

#[test]
fn an_oidc_filter_gets_secure_defaults() {
    let config = AuthzConfig::parse(OIDC, "authz.yaml").unwrap();
    let FilterKind::Oidc(f) = &config.filters()["sso"] else {
        panic!("oidc expected")
    };
    assert_eq!(f.issuer, "https://idp.example/", "exactly as written");
    assert_eq!(f.callback_path, "/.gatehouse/oidc/callback");
    assert_eq!(f.logout_path, "/.gatehouse/oidc/logout");
    assert_eq!(f.scopes, ["openid", "email", "profile"]);
    assert!(f.cookie_secure);
    assert_eq!(f.cookie_name, "gatehouse_session");
    assert_eq!(f.client_auth, ClientAuth::SecretBasic);
    assert_eq!(f.client_secret, Some(SecretSource::File("secret".into())));
    assert_eq!(
        (f.user_header.as_str(), f.groups_header.as_str()),
        ("x-gatehouse-user", "x-gatehouse-groups")
    );
}

#[test]
fn required_claims_match_values_arrays_and_nested_claims() {
    let config = AuthzConfig::parse(
        &format!("{OIDC}      required_claims:\n        - {{claim: email_verified, equals: true}}\n        - {{claim: realm.roles, one_of: [admin, ops]}}\n"),
        "authz.yaml",
    )
    .unwrap();
    let FilterKind::Oidc(f) = &config.filters()["sso"] else {
        panic!("oidc expected")
    };
    let claims = |v: serde_json::Value| v.as_object().cloned().unwrap();
    let ok =
        claims(serde_json::json!({"email_verified": true, "realm": {"roles": ["dev", "ops"]}}));
    assert!(f.required_claims.iter().all(|r| r.holds(&ok)));
    let unverified =
        claims(serde_json::json!({"email_verified": false, "realm": {"roles": ["ops"]}}));
    assert!(!f.required_claims[0].holds(&unverified));
    let no_role = claims(serde_json::json!({"email_verified": true, "realm": {"roles": ["dev"]}}));
    assert!(!f.required_claims[1].holds(&no_role));
    assert!(!f.required_claims[1].holds(&claims(serde_json::json!({}))));
    assert!(
        err(&format!("{OIDC}      required_claims: [{{claim: x}}]\n")).contains(
            "filters.sso.oidc.required_claims[0]: name a claim and exactly one of equals or one_of"
        )
    );
}

#[test]
fn oidc_errors_name_the_field() {
    let with = |extra: &str| err(&format!("{OIDC}      {extra}\n"));
    assert!(
        with("client_auth: tls_client_auth")
            .contains("filters.sso.oidc.client_auth: \"tls_client_auth\" is not supported")
    );
    assert!(
        with("client_auth: private_key_jwt\n      private_key_file: k.pem")
            .contains("private_key_jwt needs no client secret")
    );
    assert!(
        with("client_auth: private_key_jwt").contains(
            "filters.sso.oidc.private_key_file: private_key_jwt signs with a private key"
        )
    );
    let keyed = OIDC.replace(
        "client_secret_file: secret",
        "client_auth: private_key_jwt\n      private_key_file: k.pem\n      private_key_id: k1",
    );
    let config = AuthzConfig::parse(&keyed, "authz.yaml").unwrap();
    let FilterKind::Oidc(f) = &config.filters()["sso"] else {
        panic!("oidc expected")
    };
    assert_eq!(
        f.client_auth,
        ClientAuth::PrivateKeyJwt {
            key_file: "k.pem".into(),
            key_id: Some("k1".into())
        }
    );
    assert_eq!(f.client_secret, None);
    assert!(
        with("client_secret_env: X")
            .contains("name exactly one of client_secret_file or client_secret_env")
    );
    assert!(
        with("logout_path: /.gatehouse/oidc/callback").contains("filters.sso.oidc.logout_path")
    );
    assert!(with("cookie_name: 'a b'").contains("filters.sso.oidc.cookie_name"));
    assert!(
        with("inject_request_headers: [{header: x-a, template: '{{ .token.Raw }} {{ printf }}'}]")
            .contains("filters.sso.oidc.inject_request_headers[0].template")
    );
    assert!(
        with("other_callback_urls: [https://b.example/elsewhere]")
            .contains("filters.sso.oidc.other_callback_urls[0]: write the callback URL of another origin, with the path")
    );
    let two =
        format!("{OIDC}      other_callback_urls: [https://b.example/.gatehouse/oidc/callback]\n");
    let config = AuthzConfig::parse(&two, "authz.yaml").unwrap();
    let FilterKind::Oidc(f) = &config.filters()["sso"] else {
        panic!("oidc expected")
    };
    assert_eq!(
        f.callback_url_for("B.example"),
        "https://b.example/.gatehouse/oidc/callback"
    );
    assert_eq!(f.callback_url_for("app.example"), f.callback_url);
    assert_eq!(
        f.callback_url_for("evil.example"),
        f.callback_url,
        "a host picks, never makes"
    );
    assert!(
        with("inject_request_headers: [{header: X-A, template: x}]")
            .contains("filters.sso.oidc.inject_request_headers[0]")
    );
    assert!(err(&OIDC.replace("https://idp.example/", "idp")).contains("filters.sso.oidc.issuer"));
    assert!(
        err(&OIDC.replace("callback_url: https://app.example", "callback_url: /x"))
            .contains("filters.sso.oidc.callback_url")
    );
}

#[test]
fn an_issuer_is_kept_exactly_as_written() {
    // OpenID Connect Discovery 1.0 §4.3: the discovered issuer must be
    // identical to the configured one, trailing slash included.
    for issuer in [
        "https://idp.example/",
        "https://idp.example",
        "https://idp.example/realms/a/",
    ] {
        let config =
            AuthzConfig::parse(&OIDC.replace("https://idp.example/", issuer), "authz.yaml")
                .unwrap();
        let FilterKind::Oidc(f) = &config.filters()["sso"] else {
            panic!("oidc expected")
        };
        assert_eq!(f.issuer, issuer);
    }
}

#[test]
fn bearer_tokens_need_the_client_id_as_audience_unless_told_otherwise() {
    let bearer = |extra: &str| {
        let config = AuthzConfig::parse(
            &format!("{OIDC}      bearer:\n        issuer: https://ci.example\n        jwks_file: j.json\n{extra}"),
            "authz.yaml",
        )
        .unwrap();
        let FilterKind::Oidc(f) = &config.filters()["sso"] else {
            panic!("oidc expected")
        };
        f.bearer.clone().unwrap()
    };
    assert_eq!(bearer("").audiences, ["app"], "the client id by default");
    assert_eq!(
        bearer("        audiences: [api, app]\n").audiences,
        ["api", "app"]
    );
    assert!(
        err(&format!("{OIDC}      bearer:\n        issuer: https://ci.example\n        jwks_file: j.json\n        audiences: []\n"))
            .contains("filters.sso.oidc.bearer.audiences: name at least one audience")
    );
}

#[test]
fn public_paths_are_paths_and_match_on_segment_boundaries() {
    let config = AuthzConfig::parse(
        &format!("{OIDC}      public_paths: [/health, /assets/]\n"),
        "authz.yaml",
    )
    .unwrap();
    let FilterKind::Oidc(f) = &config.filters()["sso"] else {
        panic!("oidc expected")
    };
    for open in ["/health", "/health/live", "/health?x=1", "/assets/a.css"] {
        assert!(f.is_public(open), "{open}");
    }
    for closed in [
        "/healthz-admin",
        "/healthz",
        "/assets",
        "/health/../admin",
        "/app?/health",
    ] {
        assert!(!f.is_public(closed), "{closed}");
    }
    assert!(
        err(&format!("{OIDC}      public_paths: [health]\n"))
            .contains("filters.sso.oidc.public_paths[0]: \"health\" is not a path")
    );
}

#[test]
fn sealing_purposes_bind_the_filter_identity() {
    let config = AuthzConfig::parse(OIDC, "authz.yaml").unwrap();
    let FilterKind::Oidc(f) = &config.filters()["sso"] else {
        panic!("oidc expected")
    };
    let other_client = OidcFilter {
        client_id: "other".into(),
        ..(**f).clone()
    };
    let other_issuer = OidcFilter {
        issuer: "https://idp2.example".into(),
        ..(**f).clone()
    };
    let base = f.seal_purpose("sso", "gatehouse_session");
    assert_ne!(base, f.seal_purpose("sso2", "gatehouse_session"));
    assert_ne!(base, f.seal_purpose("sso", "gatehouse_session_login"));
    assert_ne!(base, other_client.seal_purpose("sso", "gatehouse_session"));
    assert_ne!(base, other_issuer.seal_purpose("sso", "gatehouse_session"));
}

#[test]
fn errors_name_the_file_and_the_field() {
    assert!(
        err("filters:\n  p:\n    api_keys:\n      keys_file: k\n      colour: red\n")
            .starts_with("authz.yaml: filters.p.api_keys.colour: unknown field `colour`"),
        "{}",
        err("filters:\n  p:\n    api_keys:\n      keys_file: k\n      colour: red\n")
    );
    assert_eq!(
        err("filters:\n  p:\n    api_keys: {}\n"),
        "authz.yaml: filters.p.api_keys: name exactly one of keys_file (hashed keys) or keys_dir (a mounted secret)"
    );
    assert_eq!(
        err(
            "filters:\n  p:\n    api_keys:\n      keys_dir: d\n      from: [{header: x-a, query: b}]\n"
        ),
        "authz.yaml: filters.p.api_keys.from[0]: name exactly one of header or query"
    );
    assert_eq!(
        err("filters:\n  p: {}\n"),
        "authz.yaml: filters.p: a filter needs exactly one kind: api_keys or oidc"
    );
    assert_eq!(
        err("default_filter: q\nfilters:\n  p:\n    api_keys: {keys_dir: d}\n"),
        "authz.yaml: default_filter: no filter is named \"q\""
    );
    assert!(
        err("filters:\n  p:\n    api_keys: {keys_dir: d, client_header: \"a b\"}\n")
            .contains("filters.p.api_keys.client_header")
    );
    assert!(err("filters: [").starts_with("authz.yaml: "));
}
