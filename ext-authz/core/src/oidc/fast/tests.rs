use super::*;
use crate::oidc::access;
use crate::oidc::fixtures::{Req, filter, session};

const FAST: &str =
    "      fast_path: { ticket_seconds: 120 }\nfeed_socket: /run/gatehouse/feed.sock\n";

fn fast_filter(extra: &str) -> OidcFilter {
    filter(&format!("{extra}{FAST}"))
}

#[test]
fn the_fast_path_is_configured_with_defaults_and_refused_where_it_cannot_hold() {
    let f = fast_filter("");
    let fast = f.fast_path.clone().unwrap();
    assert_eq!(fast.ticket_cookie, "gatehouse_session_ticket");
    assert_eq!(fast.ticket_secs, 120);
    assert_eq!(filter("").fast_path, None);
    let parse = |text: &str| {
        crate::AuthzConfig::parse(
            &format!("filters:\n  sso:\n    oidc:\n      issuer: https://idp.example\n      client_id: app\n      client_secret_file: s\n      callback_url: https://app.example/cb\n      session_keys_file: k\n{text}"),
            "authz.yaml",
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    // No socket to serve the feed on.
    let e = parse("      fast_path: {}\n").unwrap_err();
    assert!(e.contains("feed_socket"), "{e}");
    // A template that reads the request cannot ride in a ticket.
    let e = parse("      inject_request_headers:\n        - { header: x-ua, template: '{{ .httpRequestHeader.Get \"user-agent\" }}' }\n      fast_path: {}\nfeed_socket: /s\n").unwrap_err();
    assert!(e.contains("httpRequestHeader"), "{e}");
    let e = parse("      fast_path: { ticket_seconds: 0 }\nfeed_socket: /s\n").unwrap_err();
    assert!(e.contains("ticket_seconds"), "{e}");
    let e = parse("      fast_path: { ticket_cookie_name: gatehouse_session }\nfeed_socket: /s\n")
        .unwrap_err();
    assert!(e.contains("ticket_cookie_name"), "{e}");
    let e = parse("      fast_path: {}\nfeed_socket: ''\n").unwrap_err();
    assert!(e.contains("feed_socket"), "{e}");
}

#[test]
fn a_ticket_says_what_the_full_check_decided_except_the_cookie() {
    let f = fast_filter("");
    let fast = f.fast_path.clone().unwrap();
    let s = session();
    let req = Req::browser("/").header("cookie", "a=1; gatehouse_session=x");
    let view = req.view();
    let verdict = access::allow(&f, &s, view.headers, view.header("cookie"));
    let t = ticket(&f, &fast, "p", &s, &verdict, 600).unwrap();
    let Verdict::Allow { set, remove, .. } = &verdict else {
        panic!("allow expected")
    };
    let expected: Vec<_> = set.iter().filter(|(n, _)| n != "cookie").cloned().collect();
    assert_eq!(t.set, expected);
    assert!(
        t.set
            .iter()
            .any(|(n, v)| n == "x-gatehouse-user" && v == "alice")
    );
    assert_eq!(
        t.remove,
        remove
            .iter()
            .filter(|n| *n != "cookie")
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(t.handles, handles("p", &s));
    // The ticket cookie never goes upstream either.
    let again = Req::browser("/").header(
        "cookie",
        "a=1; gatehouse_session=x; gatehouse_session_ticket=t",
    );
    let view = again.view();
    let Verdict::Allow { set, .. } = access::allow(&f, &s, view.headers, view.header("cookie"))
    else {
        panic!("allow expected")
    };
    assert!(set.contains(&("cookie".to_owned(), "a=1".to_owned())));
    // A deny issues nothing.
    let deny = Verdict::deny(403, "x", "y");
    assert_eq!(ticket(&f, &fast, "p", &s, &deny, 600), None);
}

#[test]
fn a_ticket_never_outlives_a_refresh_or_the_session() {
    let f = fast_filter(
        "      idle_timeout_seconds: 1000\n      absolute_timeout_seconds: 10000\n      refresh_margin_seconds: 60\n",
    );
    let fast = f.fast_path.clone().unwrap();
    let mut s = session();
    // Plenty of time left: the ticket's own lifetime.
    s.access_expires_at = Some(5_000);
    assert_eq!(ticket_expiry(&f, &fast, &s, 600), 720);
    // The access token is refreshed 60 s before it expires at 700.
    s.access_expires_at = Some(700);
    assert_eq!(ticket_expiry(&f, &fast, &s, 600), 640);
    // Idle: seen at 500, idle after 1000 s.
    s.access_expires_at = None;
    assert_eq!(ticket_expiry(&f, &fast, &s, 1_450), 1_500);
    // Absolute: created at 100, over at 10 100.
    s.seen_at = 10_000;
    assert_eq!(ticket_expiry(&f, &fast, &s, 10_050), 10_100);
    // Already due: no ticket.
    s.access_expires_at = Some(650);
    let v = Verdict::Allow {
        set: vec![],
        remove: vec![],
        remove_query: vec![],
    };
    assert_eq!(ticket(&f, &fast, "p", &s, &v, 600), None);
}

#[test]
fn handles_name_the_session_the_idp_session_and_the_subject() {
    let s = session();
    let h = handles("p", &s);
    assert_eq!(h.len(), 3);
    assert!(h.contains(&session_handle("p", &s)));
    assert!(h.contains(&subject_handle("alice")));
    assert!(h.contains(&idp_session_handle("sid-1")));
    // Another filter, another login, another session.
    assert_ne!(session_handle("q", &s), session_handle("p", &s));
    let mut later = session();
    later.created_at += 1;
    assert_ne!(session_handle("p", &later), session_handle("p", &s));
    // Nothing of the value shows.
    assert!(!h.iter().any(|x| x.contains("alice") || x.contains("sid-1")));
}

#[test]
fn the_ticket_cookie_is_set_for_its_lifetime_and_cleared_with_the_session() {
    let f = fast_filter("");
    let fast = f.fast_path.clone().unwrap();
    let set = ticket_cookie(&f, &fast, "T", 700, 600);
    assert!(set.starts_with("gatehouse_session_ticket=T; "), "{set}");
    assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Lax"));
    assert!(set.contains("Max-Age=100"), "{set}");
    let clear = clear_cookies(&f);
    assert_eq!(clear.len(), 2);
    assert!(clear[1].starts_with("gatehouse_session_ticket=; ") && clear[1].contains("Max-Age=0"));
    assert_eq!(clear_cookies(&filter("")).len(), 1);
}

#[test]
fn revocations_are_kept_for_their_time_and_the_feed_gets_the_recent_ones() {
    let mut r = Revocations::new(1_000, 10);
    r.revoke("a".into(), 100);
    r.revoke("b".into(), 500);
    assert!(r.any_revoked(&["x".into(), "a".into()], 600));
    assert!(!r.any_revoked(&["x".into()], 600));
    assert_eq!(r.recent(600, 200), BTreeSet::from(["b".to_owned()]));
    assert_eq!(r.recent(600, 600).len(), 2);
    // Past retention, forgotten (the session could not live that long).
    assert!(!r.any_revoked(&["a".into()], 1_100));
    r.revoke("c".into(), 1_200);
    assert_eq!(
        r.recent(1_200, 10_000),
        BTreeSet::from(["b".to_owned(), "c".to_owned()])
    );
}

#[test]
fn revocations_beyond_capacity_drop_the_oldest() {
    let mut r = Revocations::new(1_000, 2);
    for (i, h) in ["a", "b", "c"].iter().enumerate() {
        r.revoke((*h).into(), 10 + i as u64);
    }
    assert!(!r.any_revoked(&["a".into()], 20));
    assert!(r.any_revoked(&["b".into(), "c".into()], 20));
    // Revoking again does not duplicate.
    r.revoke("c".into(), 21);
    assert_eq!(r.recent(21, 100).len(), 2);
}
