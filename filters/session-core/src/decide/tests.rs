use super::*;
use crate::keys::TicketKey;

const NOW: u64 = 100_000;

fn config() -> FilterConfig {
    FilterConfig::parse(
        br#"{"filter":"sso","ticket_cookie":"t","strip_cookies":["s","t","l"],
             "verified_header":"x-gatehouse-session-verified",
             "feed":{"cluster":"feed","path":"/feed"}}"#,
    )
    .unwrap()
}

fn key() -> TicketKey {
    TicketKey::current(b"master", "sso", NOW)
}

fn state(revoked: &[&str]) -> FeedState {
    let mut s = FeedState::default();
    let part = FilterFeed::new(
        &TicketKey::around(b"master", "sso", NOW),
        revoked.iter().map(|r| (*r).to_owned()).collect(),
    );
    s.accept(Some(&part), NOW * 1000).unwrap();
    s
}

fn ticket(session: &str) -> String {
    Ticket {
        expires_at: NOW + 60,
        handles: vec![session.into(), "u:alice".into()],
        set: vec![("x-gatehouse-user".into(), "alice".into())],
        remove: vec!["x-gatehouse-groups".into()],
    }
    .issue(&key())
}

fn run(state: &FeedState, cookies: &[&str]) -> FastPath {
    decide(&config(), &mut state.clone(), cookies, NOW, NOW * 1000)
}

#[test]
fn a_good_ticket_sets_the_identity_and_strips_our_cookies() {
    let cookie = format!("a=1; s=sealed; t={}; b=2", ticket("s1"));
    let FastPath::Verified { set, remove } = run(&state(&[]), &[&cookie]) else {
        panic!("verified expected")
    };
    assert_eq!(
        set,
        [
            ("x-gatehouse-user".to_owned(), "alice".to_owned()),
            ("cookie".to_owned(), "a=1; b=2".to_owned()),
            ("x-gatehouse-session-verified".to_owned(), "1".to_owned()),
        ]
    );
    assert_eq!(remove, ["x-gatehouse-groups"]);
}

#[test]
fn cookies_over_several_headers_are_read_and_rewritten_as_one() {
    let second = format!("t={}", ticket("s1"));
    let FastPath::Verified { set, remove } = run(&state(&[]), &["s=x", &second]) else {
        panic!("verified expected")
    };
    assert!(remove.contains(&"cookie".to_owned()));
    assert!(set.iter().all(|(n, _)| n != "cookie"));
}

#[test]
fn without_a_fresh_feed_everything_goes_the_slow_way() {
    let cookie = format!("t={}", ticket("s1"));
    assert_eq!(
        run(&FeedState::default(), &[&cookie]),
        FastPath::Slow(Slow::NoFeed)
    );
    let old = state(&[]);
    let later = NOW * 1000 + config().max_feed_age_ms + 1;
    assert_eq!(
        decide(&config(), &mut old.clone(), &[&cookie], NOW, later),
        FastPath::Slow(Slow::NoFeed)
    );
}

#[test]
fn a_revoked_session_goes_the_slow_way() {
    let cookie = format!("t={}", ticket("s1"));
    assert_eq!(
        run(&state(&["s1"]), &[&cookie]),
        FastPath::Slow(Slow::Revoked)
    );
    // Any handle: a back-channel logout by subject.
    assert_eq!(
        run(&state(&["u:alice"]), &[&cookie]),
        FastPath::Slow(Slow::Revoked)
    );
    assert!(matches!(
        run(&state(&["s2"]), &[&cookie]),
        FastPath::Verified { .. }
    ));
}

#[test]
fn missing_twin_tampered_foreign_and_expired_tickets_go_the_slow_way() {
    let s = state(&[]);
    assert_eq!(run(&s, &["a=1"]), FastPath::Slow(Slow::NoTicket));
    assert_eq!(run(&s, &[]), FastPath::Slow(Slow::NoTicket));
    let good = ticket("s1");
    let twins = format!("t={good}; t={good}");
    assert_eq!(run(&s, &[&twins]), FastPath::Slow(Slow::TicketTwins));
    let split = format!("t={good}");
    assert_eq!(
        run(&s, &[&split, &split]),
        FastPath::Slow(Slow::TicketTwins)
    );
    let tampered = format!("t={}x", good);
    assert!(matches!(
        run(&s, &[&tampered]),
        FastPath::Slow(Slow::Refused(_))
    ));
    let foreign = Ticket {
        expires_at: NOW + 60,
        handles: vec!["s1".into()],
        set: vec![],
        remove: vec![],
    }
    .issue(&TicketKey::current(b"other", "sso", NOW));
    assert_eq!(
        run(&s, &[&format!("t={foreign}")]),
        FastPath::Slow(Slow::Refused(TicketError::UnknownKey))
    );
    let expired = format!("t={good}");
    assert_eq!(
        decide(&config(), &mut s.clone(), &[&expired], NOW + 60, NOW * 1000),
        FastPath::Slow(Slow::Refused(TicketError::Expired))
    );
}

#[test]
fn removals_are_left_to_envoy_when_it_strips_reserved_headers() {
    let mut c = config();
    c.reserved_headers_stripped_by_envoy = true;
    let cookie = format!("t={}", ticket("s1"));
    let FastPath::Verified { set, remove } =
        decide(&c, &mut state(&[]), &[&cookie], NOW, NOW * 1000)
    else {
        panic!("verified expected")
    };
    assert_eq!(remove, ["cookie"], "only the request's own cookie header");
    assert_eq!(set[0], ("x-gatehouse-user".to_owned(), "alice".to_owned()));
}

#[test]
fn a_ticket_cannot_set_the_mark_or_the_cookie() {
    let sneaky = Ticket {
        expires_at: NOW + 60,
        handles: vec!["s1".into()],
        set: vec![
            ("Cookie".into(), "admin=1".into()),
            ("X-Gatehouse-Session-Verified".into(), "2".into()),
        ],
        remove: vec!["x-gatehouse-session-verified".into()],
    }
    .issue(&key());
    let FastPath::Verified { set, remove } = run(&state(&[]), &[&format!("t={sneaky}")]) else {
        panic!("verified expected")
    };
    assert_eq!(
        set,
        [("x-gatehouse-session-verified".to_owned(), "1".to_owned())]
    );
    assert_eq!(remove, ["cookie"]);
}

#[test]
fn a_feed_without_the_filter_verifies_nothing() {
    let mut s = FeedState::default();
    assert_eq!(s.accept(None, NOW * 1000), Ok(0));
    let cookie = format!("t={}", ticket("s1"));
    assert_eq!(
        run(&s, &[&cookie]),
        FastPath::Slow(Slow::Refused(TicketError::UnknownKey))
    );
}

#[test]
fn bad_configurations_are_refused() {
    for bad in [
        &br#"{"filter":"sso"}"#[..],
        br#"{"filter":"sso","ticket_cookie":"","strip_cookies":[],"verified_header":"v","feed":{"cluster":"c","path":"/"}}"#,
        br#"{"filter":"sso","ticket_cookie":"t","strip_cookies":[],"verified_header":"v","feed":{"cluster":"c","path":"/"},"poll_ms":0}"#,
        br#"{"filter":"sso","ticket_cookie":"t","strip_cookies":[],"verified_header":"v","feed":{"cluster":"c","path":"/"},"extra":1}"#,
    ] {
        assert!(FilterConfig::parse(bad).is_err());
    }
}

#[test]
fn a_repeated_ticket_is_taken_from_the_verified_ones_until_it_expires_or_is_revoked() {
    let mut s = state(&[]);
    let text = ticket("s1");
    let cookie = format!("t={text}");
    let at = |s: &mut FeedState, now: u64| decide(&config(), s, &[&cookie], now, NOW * 1000);
    assert!(matches!(at(&mut s, NOW), FastPath::Verified { .. }));
    assert!(matches!(at(&mut s, NOW + 1), FastPath::Verified { .. }));
    // Expiry and revocation are checked at every use.
    assert_eq!(
        at(&mut s, NOW + 60),
        FastPath::Slow(Slow::Refused(TicketError::Expired))
    );
    let part = FilterFeed::new(
        &TicketKey::around(b"master", "sso", NOW),
        ["s1".to_owned()].into(),
    );
    s.accept(Some(&part), NOW * 1000).unwrap();
    assert_eq!(at(&mut s, NOW), FastPath::Slow(Slow::Revoked));
    // Same MAC, other text (a forged payload under a known MAC): refused.
    let mut parts: Vec<&str> = text.split('.').collect();
    let other = ticket("s2");
    parts[1] = other.split('.').nth(1).unwrap();
    let forged = format!("t={}", parts.join("."));
    assert_eq!(
        decide(&config(), &mut s, &[&forged], NOW, NOW * 1000),
        FastPath::Slow(Slow::Refused(TicketError::BadSignature))
    );
}

#[test]
fn a_new_ring_forgets_the_verified_tickets() {
    let mut s = state(&[]);
    let cookie = format!("t={}", ticket("s1"));
    assert!(matches!(
        decide(&config(), &mut s, &[&cookie], NOW, NOW * 1000),
        FastPath::Verified { .. }
    ));
    // The session key changed: the feed carries other keys.
    let part = FilterFeed::new(&TicketKey::around(b"new", "sso", NOW), BTreeSet::new());
    s.accept(Some(&part), NOW * 1000).unwrap();
    assert_eq!(
        decide(&config(), &mut s, &[&cookie], NOW, NOW * 1000),
        FastPath::Slow(Slow::Refused(TicketError::UnknownKey))
    );
}
