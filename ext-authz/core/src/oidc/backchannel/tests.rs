use serde_json::json;

use super::*;
use crate::oidc::fixtures::{Req, body, filter, headers, status};

const PATH: &str = "/.gatehouse/oidc/backchannel-logout";
const NOW: u64 = 1_700_000_000;

fn testdata(file: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../filters/jwt-core/testdata")
            .join(file),
    )
    .unwrap()
}

fn idp_verifier() -> Provider {
    verifier(&filter(""), &testdata("jwks.json")).unwrap()
}

/// A token signed by the IdP's key `rsa-1` (or, with `kid`, claiming
/// another key of the set).
fn signed_as(kid: &str, claims: &serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&testdata("keys/rsa.pem")).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims() -> serde_json::Value {
    json!({
        "iss": "https://idp.example",
        "aud": "app",
        "iat": NOW,
        "exp": NOW + 120,
        "jti": "j1",
        "sid": "sid-1",
        "sub": "alice",
        "events": {BACKCHANNEL_EVENT: {}},
    })
}

fn with(change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> String {
    let mut c = claims();
    change(c.as_object_mut().unwrap());
    signed_as("rsa-1", &c)
}

fn post(token: &str) -> Req {
    Req::post(PATH, &format!("logout_token={token}"))
}

fn ask(req: &Req) -> Result<LogoutSubject, LogoutTokenError> {
    check(&req.view(), Some(&idp_verifier()), NOW)
}

#[test]
fn a_valid_logout_token_ends_its_sid_or_else_its_sub() {
    assert_eq!(
        ask(&post(&with(|_| {}))),
        Ok(LogoutSubject {
            sid: Some("sid-1".into()),
            sub: Some("alice".into())
        })
    );
    let sub_only = with(|c| {
        c.remove("sid");
    });
    assert_eq!(
        ask(&post(&sub_only)),
        Ok(LogoutSubject {
            sid: None,
            sub: Some("alice".into())
        })
    );
    let sid_only = with(|c| {
        c.remove("sub");
    });
    assert_eq!(ask(&post(&sid_only)).unwrap().sid.as_deref(), Some("sid-1"));
    let other_fields = format!("a=1&logout_token={}&b=2", with(|_| {}));
    assert!(ask(&Req::post(PATH, &other_fields)).is_ok());
}

#[test]
fn a_logout_token_with_a_nonce_is_refused() {
    let id_token_like = with(|c| {
        c.insert("nonce".into(), json!("n"));
    });
    assert_eq!(ask(&post(&id_token_like)), Err(LogoutTokenError::HasNonce));
}

#[test]
fn a_logout_token_for_another_audience_or_issuer_is_refused() {
    let other_aud = with(|c| {
        c.insert("aud".into(), json!("another-client"));
    });
    assert_eq!(
        ask(&post(&other_aud)),
        Err(LogoutTokenError::Refused(VerifyError::WrongAudience))
    );
    let other_iss = with(|c| {
        c.insert("iss".into(), json!("https://idp.example/"));
    });
    assert_eq!(
        ask(&post(&other_iss)),
        Err(LogoutTokenError::Refused(VerifyError::WrongIssuer)),
        "the issuer is compared exactly"
    );
}

#[test]
fn a_token_without_the_logout_event_is_refused() {
    for events in [
        None,
        Some(json!({"http://schemas.openid.net/event/other": {}})),
        Some(json!([BACKCHANNEL_EVENT])),
        Some(json!(BACKCHANNEL_EVENT)),
    ] {
        let token = with(|c| match &events {
            Some(e) => {
                c.insert("events".into(), e.clone());
            }
            None => {
                c.remove("events");
            }
        });
        assert_eq!(
            ask(&post(&token)),
            Err(LogoutTokenError::NoEvent),
            "{events:?}"
        );
    }
}

#[test]
fn a_token_naming_nobody_is_refused() {
    let nobody = with(|c| {
        c.remove("sid");
        c.remove("sub");
    });
    assert_eq!(ask(&post(&nobody)), Err(LogoutTokenError::NoSubject));
    let not_text = with(|c| {
        c.insert("sid".into(), json!(1));
        c.insert("sub".into(), json!(["alice"]));
    });
    assert_eq!(ask(&post(&not_text)), Err(LogoutTokenError::NoSubject));
}

#[test]
fn a_forged_or_stale_token_is_refused() {
    let forged = signed_as("rsa-2", &claims());
    assert_eq!(
        ask(&post(&forged)),
        Err(LogoutTokenError::Refused(VerifyError::BadSignature)),
        "signed with a key the IdP does not hold"
    );
    let stale = with(|c| {
        c.insert("exp".into(), json!(NOW - 31));
    });
    assert_eq!(
        ask(&post(&stale)),
        Err(LogoutTokenError::Refused(VerifyError::Expired))
    );
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(b"the client secret"),
    )
    .unwrap();
    assert!(
        matches!(ask(&post(&hs)), Err(LogoutTokenError::Refused(_))),
        "a shared-secret algorithm is not accepted"
    );
    assert!(matches!(
        ask(&post("not.a.token")),
        Err(LogoutTokenError::Refused(_))
    ));
}

#[test]
fn only_a_post_with_a_token_and_a_verifier_is_read() {
    let token = with(|_| {});
    assert_eq!(
        ask(&post(&token).method("GET")),
        Err(LogoutTokenError::NotPost)
    );
    assert_eq!(
        ask(&Req::post(PATH, "token=x")),
        Err(LogoutTokenError::NoToken)
    );
    assert_eq!(
        check(&post(&token).view(), None, NOW),
        Err(LogoutTokenError::NoVerifier),
        "not discovered yet"
    );
    assert!(verifier(&filter(""), b"not json").is_none());
}

#[test]
fn refusals_are_405_or_400_and_outcomes_are_json_never_cached() {
    let not_post = LogoutTokenError::NotPost.answer();
    assert_eq!(status(&not_post), 405);
    assert_eq!(body(&not_post), r#"{"error":"invalid_request"}"#);
    for e in [
        LogoutTokenError::NoToken,
        LogoutTokenError::NoVerifier,
        LogoutTokenError::Refused(VerifyError::WrongAudience),
        LogoutTokenError::NoEvent,
        LogoutTokenError::HasNonce,
        LogoutTokenError::NoSubject,
    ] {
        let v = e.answer();
        assert_eq!(status(&v), 400, "{e:?}");
        assert_eq!(body(&v), r#"{"error":"invalid_request"}"#);
        assert_eq!(headers(&v, "cache-control"), ["no-store"]);
    }
    assert_eq!(status(&ended()), 200);
    assert_eq!(body(&ended()), "");
    assert_eq!(status(&store_unavailable()), 501);
    assert_eq!(
        body(&store_unavailable()),
        r#"{"error":"temporarily_unavailable"}"#
    );
}
