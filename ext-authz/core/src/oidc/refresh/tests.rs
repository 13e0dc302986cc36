use super::*;
use crate::oidc::fixtures::session;
use crate::session::{AfterRefresh, after_refresh};

fn tokens(refresh_token: Option<&str>) -> TokenAnswer<RefreshedTokens> {
    TokenAnswer::Tokens(RefreshedTokens {
        access_token: "at2".into(),
        expires_in: Some(300),
        refresh_token: refresh_token.map(str::to_owned),
    })
}

#[test]
fn new_tokens_replace_the_old_and_force_a_new_cookie() {
    let RefreshOutcome::Refreshed(s) = refresh_outcome(session(), tokens(Some("rt2")), 950) else {
        panic!("refreshed expected")
    };
    assert_eq!(s.access_token, "at2");
    assert_eq!(s.access_expires_at, Some(1_250));
    assert_eq!(s.refresh_token.as_deref(), Some("rt2"), "a rotated token");
    assert_eq!(s.seen_at, 890, "set back so the answer rewrites it");
    let mut again = s.clone();
    assert!(crate::oidc::access::touch(&mut again, 950));
    assert_eq!(
        (s.sub.as_str(), s.created_at, s.sid.as_deref()),
        ("alice", 100, Some("sid-1")),
        "the login stays the same"
    );
}

#[test]
fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
    let RefreshOutcome::Refreshed(s) = refresh_outcome(session(), tokens(None), 950) else {
        panic!("refreshed expected")
    };
    assert_eq!(s.refresh_token.as_deref(), Some("rt"));
    let no_expiry = TokenAnswer::Tokens(RefreshedTokens {
        access_token: "at2".into(),
        expires_in: None,
        refresh_token: None,
    });
    let RefreshOutcome::Refreshed(s) = refresh_outcome(session(), no_expiry, 950) else {
        panic!("refreshed expected")
    };
    assert_eq!(s.access_expires_at, None, "the IdP did not say");
}

#[test]
fn a_refused_refresh_ends_the_session_and_no_answer_keeps_it_while_valid() {
    assert_eq!(
        refresh_outcome(session(), TokenAnswer::Refused, 950),
        RefreshOutcome::Refused
    );
    assert_eq!(
        after_refresh(session(), RefreshOutcome::Refused, 950),
        AfterRefresh::End
    );
    let unreachable = refresh_outcome(session(), TokenAnswer::Unreachable, 950);
    assert_eq!(unreachable, RefreshOutcome::Unreachable);
    assert_eq!(
        after_refresh(session(), unreachable.clone(), 950),
        AfterRefresh::Use(session())
    );
    assert_eq!(
        after_refresh(session(), unreachable, 1_000),
        AfterRefresh::Login,
        "expired meanwhile: log in, the cookie stays"
    );
}

#[test]
fn a_session_without_a_refresh_token_cannot_be_refreshed() {
    let s = Session {
        refresh_token: None,
        ..session()
    };
    assert_eq!(
        refresh_outcome(s, tokens(Some("forged")), 950),
        RefreshOutcome::Refused
    );
}

#[test]
fn a_refresh_is_shared_for_fifteen_seconds_and_a_stuck_one_dropped_after_a_minute() {
    let secs = Duration::from_secs;
    assert!(flight_is_kept(secs(0), true));
    assert!(flight_is_kept(secs(14), true));
    assert!(!flight_is_kept(secs(15), true), "done: shared for 15 s");
    assert!(flight_is_kept(secs(59), false), "still running");
    assert!(!flight_is_kept(secs(60), false), "abandoned");
}
