use std::collections::HashMap;

use super::*;
use crate::oidc::fixtures::{Req, body, filter, session, status};

fn set<'a>(v: &'a Verdict, name: &str) -> Vec<&'a str> {
    match v {
        Verdict::Allow { set, .. } => set
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect(),
        Verdict::Deny { .. } => Vec::new(),
    }
}

fn removed(v: &Verdict) -> Vec<&str> {
    match v {
        Verdict::Allow { remove, .. } => remove.iter().map(String::as_str).collect(),
        Verdict::Deny { .. } => Vec::new(),
    }
}

#[test]
fn a_valid_session_is_used_an_expiring_one_refreshed_an_over_one_dropped() {
    let f = filter(
        "      idle_timeout_seconds: 1000\n      absolute_timeout_seconds: 10000\n      refresh_margin_seconds: 60\n",
    );
    assert_eq!(session_step(&f, None, 900), SessionStep::None);
    assert_eq!(
        session_step(&f, Some(session()), 900),
        SessionStep::Use(session())
    );
    assert_eq!(
        session_step(&f, Some(session()), 940),
        SessionStep::Refresh(session())
    );
    assert_eq!(
        session_step(&f, Some(session()), 1_500),
        SessionStep::None,
        "idle"
    );
    let old = Session {
        seen_at: 10_050,
        access_expires_at: None,
        ..session()
    };
    assert_eq!(
        session_step(&f, Some(old), 10_100),
        SessionStep::None,
        "absolute"
    );
    let no_refresh = Session {
        refresh_token: None,
        ..session()
    };
    assert_eq!(
        session_step(&f, Some(no_refresh), 1_000),
        SessionStep::None,
        "expired, nothing to refresh with"
    );
}

#[test]
fn without_a_session_public_paths_pass_anonymously_stripping_identity() {
    let f = filter("      public_paths: [/health]\n");
    let NoSession::Answer(v) = without_session(&f, &Req::browser("/health?x=1").view()) else {
        panic!("an answer expected")
    };
    assert_eq!(status(&v), 200);
    assert!(set(&v, "x-gatehouse-user").is_empty());
    assert_eq!(
        removed(&v),
        [
            "x-gatehouse-user",
            "x-gatehouse-email",
            "x-gatehouse-groups"
        ],
        "a client cannot claim an identity on a public path"
    );
}

#[test]
fn without_a_session_programs_get_401_and_browsers_sign_in() {
    let f = filter("      public_paths: [/health]\n");
    for program in [
        Req::api("/app"),
        Req::browser("/app").method("POST"),
        Req::browser("/app").header("x-requested-with", "XMLHttpRequest"),
    ] {
        let NoSession::Answer(v) = without_session(&f, &program.view()) else {
            panic!("401 expected for {}", program.method)
        };
        assert_eq!(status(&v), 401);
        assert!(body(&v).contains("login_required"));
    }
    assert_eq!(
        without_session(&f, &Req::browser("/app").view()),
        NoSession::SignIn
    );
}

#[test]
fn a_route_may_answer_a_status_instead_of_the_login_redirect() {
    let f = filter("      public_paths: [/health]\n");
    let instead = crate::oidc::instead::InsteadOfRedirect::parse(
        r#"{"status": 403, "header": {"name": "x-client", "value": "spa"}}"#,
    )
    .unwrap();
    let asked = Req::browser("/app").header("x-client", "spa");
    let mut view = asked.view();
    view.instead_of_redirect = Some(&instead);
    let NoSession::Answer(v) = without_session(&f, &view) else {
        panic!("the route's status expected")
    };
    assert_eq!(status(&v), 403);
    assert!(body(&v).contains("login_required"));
    // Another client on the same route still signs in; a public path
    // stays public.
    let other = Req::browser("/app").header("x-client", "web");
    let mut view = other.view();
    view.instead_of_redirect = Some(&instead);
    assert_eq!(without_session(&f, &view), NoSession::SignIn);
    let health = Req::browser("/health").header("x-client", "spa");
    let mut view = health.view();
    view.instead_of_redirect = Some(&instead);
    assert!(matches!(
        without_session(&f, &view),
        NoSession::Answer(Verdict::Allow { .. })
    ));
}

#[test]
fn paths_that_only_look_public_need_a_session() {
    let f = filter("      public_paths: [/health]\n");
    for tricky in [
        "/healthz",
        "/health/../admin",
        "/health/%2e%2e/admin",
        "/admin?x=/health",
    ] {
        assert_eq!(
            without_session(&f, &Req::browser(tricky).view()),
            NoSession::SignIn,
            "{tricky}"
        );
    }
}

#[test]
fn a_login_returns_only_to_a_path_on_this_host() {
    let secrets = LoginSecrets {
        state: "s".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
    };
    let flow = start_login(secrets.clone(), "/orders?id=1", 42);
    assert_eq!(
        (
            flow.state.as_str(),
            flow.nonce.as_str(),
            flow.pkce_verifier.as_str()
        ),
        ("s", "n", "v")
    );
    assert_eq!(flow.return_to, "/orders?id=1");
    assert_eq!(flow.started_at, 42);
    for open_redirect in [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example",
    ] {
        assert_eq!(
            start_login(secrets.clone(), open_redirect, 42).return_to,
            "/",
            "{open_redirect}"
        );
    }
}

#[test]
fn openid_is_not_asked_for_twice() {
    let f = filter("      scopes: [openid, email, groups]\n");
    assert_eq!(extra_scopes(&f).collect::<Vec<_>>(), ["email", "groups"]);
}

#[test]
fn required_groups_admit_members_only() {
    let open = filter("");
    let mut s = session();
    assert_eq!(admit(&open, &s), Ok(()));
    let f = filter("      required_groups: [admins, staff]\n");
    assert_eq!(admit(&f, &s), Ok(()));
    s.groups = vec!["Staff".into(), "admins ".into()];
    let denied = admit(&f, &s).unwrap_err();
    assert_eq!(status(&denied), 403, "groups compare exactly");
    s.groups.clear();
    assert!(admit(&f, &s).is_err());
}

#[test]
fn the_idle_clock_is_written_back_at_most_once_a_minute() {
    let mut s = session();
    assert!(!touch(&mut s, 559));
    assert_eq!(s.seen_at, 500);
    assert!(touch(&mut s, 560));
    assert_eq!(s.seen_at, 560);
    assert!(!touch(&mut s, 600));
}

#[test]
fn a_stored_session_lives_until_its_absolute_timeout() {
    let f = filter("      absolute_timeout_seconds: 10000\n");
    assert_eq!(stored_ttl(&f, &session(), 600), 9_500);
    assert_eq!(stored_ttl(&f, &session(), 20_000), 0);
}

#[test]
fn upstream_gets_the_identity_and_the_cookies_minus_ours() {
    let f = filter("");
    let header = "a=1; gatehouse_session=sealed; gatehouse_session_login=flow; b=2";
    let v = allow(&f, &session(), &HashMap::new(), Some(header));
    assert_eq!(set(&v, "x-gatehouse-user"), ["alice"]);
    assert_eq!(set(&v, "x-gatehouse-email"), ["alice@example.test"]);
    assert_eq!(set(&v, "x-gatehouse-groups"), ["staff"]);
    assert_eq!(set(&v, "cookie"), ["a=1; b=2"]);
    assert!(set(&v, "authorization").is_empty(), "no token by default");
    let only_ours = allow(
        &f,
        &session(),
        &HashMap::new(),
        Some("gatehouse_session=sealed"),
    );
    assert!(set(&only_ours, "cookie").is_empty());
    assert!(removed(&only_ours).contains(&"cookie"));
    let none = allow(&f, &session(), &HashMap::new(), None);
    assert!(removed(&none).contains(&"cookie"));
}

#[test]
fn an_identity_a_client_sends_is_replaced_or_removed() {
    let f = filter("");
    let bare = Session {
        email: None,
        groups: Vec::new(),
        sub: "bob\r\nx-gatehouse-groups: admins".into(),
        ..session()
    };
    let v = allow(&f, &bare, &HashMap::new(), None);
    assert_eq!(
        set(&v, "x-gatehouse-user"),
        ["bob%0D%0Ax-gatehouse-groups: admins"]
    );
    assert_eq!(
        removed(&v),
        ["x-gatehouse-email", "x-gatehouse-groups", "cookie"]
    );
}

#[test]
fn tokens_go_upstream_only_when_configured() {
    let id = allow(
        &filter("      forward_id_token: true\n"),
        &session(),
        &HashMap::new(),
        None,
    );
    assert_eq!(set(&id, "authorization"), ["Bearer id.token.sig"]);
    let access = allow(
        &filter("      forward_access_token: true\n"),
        &session(),
        &HashMap::new(),
        None,
    );
    assert_eq!(set(&access, "authorization"), ["Bearer at"]);
}

#[test]
fn a_bearer_token_passes_with_its_identity_or_gets_401_or_403() {
    let f = filter("");
    let identity = crate::identity::identity_headers(&f, "ci-bot", None, &[]);
    let v = bearer_allowed(identity);
    assert_eq!(set(&v, "x-gatehouse-user"), ["ci-bot"]);
    assert_eq!(removed(&v), ["x-gatehouse-email", "x-gatehouse-groups"]);
    let no_exp = bearer_refused(BearerRefusal::NoExpiry);
    assert_eq!(status(&no_exp), 401, "a token that never expires");
    assert_eq!(
        crate::oidc::fixtures::headers(&no_exp, "www-authenticate"),
        ["Bearer error=\"invalid_token\", error_description=\"the token is not valid\""]
    );
    for refusal in [BearerRefusal::MissingClaim, BearerRefusal::MissingGroup] {
        let v = bearer_refused(refusal);
        assert_eq!(status(&v), 403, "{refusal:?}");
        assert!(body(&v).contains(r#""code":"forbidden""#));
        assert!(body(&v).contains(&refusal.to_string()));
    }
}

#[test]
fn injected_headers_print_the_session_tokens_and_the_request() {
    use base64::Engine as _;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let f = filter(concat!(
        "      inject_request_headers:\n",
        "        - {header: x-sub, template: \"{{ .idToken.Claims.sub }}\"}\n",
        "        - {header: x-scope, template: \"scope={{ .token.Claims.scope }}\"}\n",
        "        - {header: x-ua, template: \"{{ .httpRequestHeader.Get \\\"User-Agent\\\" }}\"}\n",
        "        - {header: x-level, template: \"{{ .idToken.Claims.acr }}\"}\n",
    ));
    let mut s = session();
    s.id_token = format!(
        "{}.{}.sig",
        b64(serde_json::json!({"alg": "RS256"})),
        b64(serde_json::json!({"sub": "alice"}))
    );
    s.access_token = format!(
        "{}.{}.sig",
        b64(serde_json::json!({"alg": "RS256"})),
        b64(serde_json::json!({"scope": "openid orders"}))
    );
    let headers: HashMap<String, String> = [("user-agent".to_owned(), "curl/8".to_owned())].into();
    let v = allow(&f, &s, &headers, None);
    assert_eq!(set(&v, "x-sub"), ["alice"]);
    assert_eq!(set(&v, "x-scope"), ["scope=openid orders"]);
    assert_eq!(set(&v, "x-ua"), ["curl/8"]);
    assert!(set(&v, "x-level").is_empty());
    assert!(removed(&v).contains(&"x-level"), "a client's copy goes");
    // An opaque access token has no claims: the header is not set.
    let mut opaque = s.clone();
    opaque.access_token = "opaque-token".into();
    let v = allow(&f, &opaque, &headers, None);
    assert!(set(&v, "x-scope").is_empty() && removed(&v).contains(&"x-scope"));
}

#[test]
fn a_malformed_access_token_is_sent_only_when_allowed() {
    let forwarding = filter("      forward_access_token: true\n");
    let lenient =
        filter("      forward_access_token: true\n      allow_malformed_access_token: true\n");
    for (token, strict, allowed) in [
        ("abc.DEF-_~+/==", 200, 200),
        ("has space", 502, 200),
        ("quote\"d", 502, 200),
        ("line\nbreak", 502, 502),
        ("", 502, 502),
    ] {
        let mut s = session();
        s.access_token = token.into();
        assert_eq!(
            status(&allow(&forwarding, &s, &HashMap::new(), None)),
            strict,
            "{token:?}"
        );
        assert_eq!(
            status(&allow(&lenient, &s, &HashMap::new(), None)),
            allowed,
            "{token:?}"
        );
    }
    // Not forwarded: not looked at.
    let mut s = session();
    s.access_token = "has space".into();
    assert_eq!(status(&allow(&filter(""), &s, &HashMap::new(), None)), 200);
}
