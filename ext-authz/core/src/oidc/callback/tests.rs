use base64::Engine as _;

use super::*;
use crate::oidc::fixtures::{body, filter, headers, status};

fn flow(started_at: u64) -> LoginFlow {
    LoginFlow {
        state: "st4te".into(),
        nonce: "n0nce".into(),
        pkce_verifier: "v".repeat(43),
        return_to: "/orders?id=1".into(),
        started_at,
    }
}

fn params(query: &str) -> CallbackParams {
    CallbackParams::parse(&format!("/.gatehouse/oidc/callback?{query}"))
}

fn pending(query: &str) -> PendingCallback {
    begin(Some(flow(1_000)), params(query), 1_010).unwrap()
}

/// An unsigned JWT with `payload` (the service verified the real one).
fn id_token(payload: serde_json::Value) -> String {
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.sig",
        b64(br#"{"alg":"RS256"}"#),
        b64(payload.to_string().as_bytes())
    )
}

fn tokens(payload: serde_json::Value) -> LoginTokens {
    LoginTokens {
        id_token: id_token(payload),
        sub: "alice".into(),
        email: Some("alice@example.test".into()),
        access_token: "at".into(),
        expires_in: Some(300),
        refresh_token: Some("rt".into()),
    }
}

#[test]
fn a_callback_of_the_waiting_login_goes_on_to_its_single_use_check() {
    let p = begin(Some(flow(1_000)), params("code=c0de&state=st4te"), 1_010).unwrap();
    assert_eq!(p.state(), "st4te");
    assert_eq!(p.used_until(), 1_000 + LOGIN_FLOW_SECS);
    assert_eq!(p.used_ttl(1_010), LOGIN_FLOW_SECS - 10);
    let exchange = p.after_first_use(Some(StateUse::First)).unwrap();
    assert_eq!(exchange.code, "c0de");
    assert_eq!(exchange.flow, flow(1_000));
}

#[test]
fn a_callback_without_a_waiting_login_is_refused() {
    assert_eq!(
        begin(None, params("code=c&state=st4te"), 1_010),
        Err(CallbackError::NoLoginInProgress),
        "no login cookie, or one that did not open: forged or another browser's"
    );
}

#[test]
fn an_expired_login_flow_is_refused() {
    let started = 1_000;
    let last = started + LOGIN_FLOW_SECS - 1;
    assert!(begin(Some(flow(started)), params("code=c&state=st4te"), last).is_ok());
    assert_eq!(
        begin(
            Some(flow(started)),
            params("code=c&state=st4te"),
            started + LOGIN_FLOW_SECS
        ),
        Err(CallbackError::NoLoginInProgress)
    );
    assert_eq!(
        begin(Some(flow(u64::MAX)), params("state=st4te"), 0).map(|p| p.used_ttl(0)),
        Ok(u64::MAX),
        "no overflow at the end of time"
    );
}

#[test]
fn a_forged_or_missing_state_is_refused() {
    for query in [
        "code=c",
        "code=c&state=",
        "code=c&state=st4t",
        "code=c&state=st4tee",
        "code=c&state=ST4TE",
        "code=c&state=other&state=st4te",
        "code=c&xstate=st4te",
        "code=c&state",
    ] {
        assert_eq!(
            begin(Some(flow(1_000)), params(query), 1_010),
            Err(CallbackError::StateMismatch),
            "{query}"
        );
    }
    assert!(
        begin(Some(flow(1_000)), params("code=c&state=st%34te"), 1_010).is_ok(),
        "the state is percent-decoded"
    );
}

#[test]
fn a_replayed_state_is_refused_before_its_code_or_error_is_read() {
    for query in [
        "code=c&state=st4te",
        "error=access_denied&state=st4te",
        "state=st4te",
    ] {
        assert_eq!(
            pending(query).after_first_use(Some(StateUse::Replayed)),
            Err(CallbackError::AlreadyUsed),
            "{query}"
        );
    }
}

#[test]
fn an_unknown_state_use_is_refused_as_unavailable() {
    assert_eq!(
        pending("code=c&state=st4te").after_first_use(None),
        Err(CallbackError::StoreUnavailable)
    );
}

#[test]
fn an_idp_error_or_a_missing_code_is_refused() {
    assert_eq!(
        pending("error=access_denied&code=c&state=st4te").after_first_use(Some(StateUse::First)),
        Err(CallbackError::LoginRefused)
    );
    assert_eq!(
        pending("state=st4te").after_first_use(Some(StateUse::First)),
        Err(CallbackError::NoCode)
    );
}

#[test]
fn every_refusal_is_a_page_that_clears_the_login_cookie() {
    let all = [
        (
            CallbackError::NoLoginInProgress,
            400,
            "no_login_in_progress",
        ),
        (CallbackError::StateMismatch, 400, "state_mismatch"),
        (CallbackError::AlreadyUsed, 400, "login_already_used"),
        (
            CallbackError::StoreUnavailable,
            503,
            "session_store_unavailable",
        ),
        (CallbackError::LoginRefused, 403, "login_refused"),
        (CallbackError::NoCode, 400, "no_code"),
        (CallbackError::IdpUnavailable, 503, "idp_unavailable"),
        (CallbackError::NoTokenEndpoint, 503, "idp_unavailable"),
        (CallbackError::ExchangeRefused, 400, "login_failed"),
        (CallbackError::NoIdToken, 400, "login_failed"),
        (CallbackError::IdTokenInvalid, 400, "login_failed"),
        (CallbackError::ClaimsNotMet, 403, "claims_not_met"),
    ];
    for (error, code, name) in all {
        let v = error.page("login=; Max-Age=0".into());
        assert_eq!(status(&v), code, "{error:?}");
        assert!(
            body(&v).contains(&format!("data-code=\"{name}\"")),
            "{error:?}"
        );
        assert!(body(&v).contains(error.message()));
        assert_eq!(headers(&v, "set-cookie"), ["login=; Max-Age=0"]);
        assert_eq!(headers(&v, "cache-control"), ["no-store"]);
    }
}

#[test]
fn a_login_makes_a_session_from_the_verified_id_token() {
    let s = session_from_login(
        &filter(""),
        tokens(serde_json::json!({"sub": "alice", "sid": "sid-9", "groups": ["staff", "ops"]})),
        2_000,
    )
    .unwrap();
    assert_eq!(s.sub, "alice");
    assert_eq!(s.email.as_deref(), Some("alice@example.test"));
    assert_eq!(s.groups, ["staff", "ops"]);
    assert_eq!(s.sid.as_deref(), Some("sid-9"));
    assert_eq!(s.access_expires_at, Some(2_300));
    assert_eq!(s.refresh_token.as_deref(), Some("rt"));
    assert_eq!((s.created_at, s.seen_at), (2_000, 2_000));
    assert!(s.id_token.ends_with(".sig"), "kept for id_token_hint");
}

#[test]
fn odd_groups_and_sids_are_no_groups_and_no_sid() {
    for groups in [
        serde_json::json!("staff"),
        serde_json::json!(["staff", 1]),
        serde_json::json!({"staff": true}),
    ] {
        let payload = serde_json::json!({"groups": groups, "sid": 7});
        let s = session_from_login(&filter(""), tokens(payload), 1).unwrap();
        assert!(s.groups.is_empty(), "{groups}");
        assert_eq!(s.sid, None);
    }
    assert!(jwt_payload("not a jwt").is_empty());
    assert!(jwt_payload("a.!!!.c").is_empty());
}

#[test]
fn an_id_token_without_the_required_claims_makes_no_session() {
    let f = filter("      required_claims:\n        - { claim: email_verified, equals: true }\n");
    assert_eq!(
        session_from_login(&f, tokens(serde_json::json!({"sub": "alice"})), 1),
        Err(CallbackError::ClaimsNotMet)
    );
    assert_eq!(
        session_from_login(&f, tokens(serde_json::json!({"email_verified": "true"})), 1),
        Err(CallbackError::ClaimsNotMet),
        "a string is not a boolean"
    );
    assert!(session_from_login(&f, tokens(serde_json::json!({"email_verified": true})), 1).is_ok());
}

#[test]
fn signed_in_returns_to_the_flows_path_and_never_off_site() {
    let v = signed_in(&flow(1), Some("s=1".into()), "l=; Max-Age=0".into());
    assert_eq!(status(&v), 302);
    assert_eq!(headers(&v, "location"), ["/orders?id=1"]);
    assert_eq!(headers(&v, "set-cookie"), ["s=1", "l=; Max-Age=0"]);
    for evil in ["//evil.example", "https://evil.example/", "/\\evil.example"] {
        let forged = LoginFlow {
            return_to: evil.into(),
            ..flow(1)
        };
        let v = signed_in(&forged, None, "l=".into());
        assert_eq!(headers(&v, "location"), ["/"], "{evil}");
        assert_eq!(headers(&v, "set-cookie"), ["l="]);
    }
}
