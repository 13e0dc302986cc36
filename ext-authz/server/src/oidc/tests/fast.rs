//! The fast path's authority side: tickets after a full check, the feed,
//! and revocation by logout (cookie mode and Redis), checked with the
//! filter's own decision from `gatehouse-session-core`.

use gatehouse_session_core::{FastPath, FeedState, FilterConfig, Slow, decide};

use super::*;

const FAST: &str =
    "      fast_path: { ticket_seconds: 120 }\nfeed_socket: /run/gatehouse/feed.sock\n";

fn filter_config() -> FilterConfig {
    FilterConfig::parse(
        br#"{"filter":"sso","ticket_cookie":"gatehouse_session_ticket",
             "strip_cookies":["gatehouse_session","gatehouse_session_login","gatehouse_session_ticket"],
             "verified_header":"x-gatehouse-session-verified",
             "feed":{"cluster":"feed","path":"/feed"}}"#,
    )
    .unwrap()
}

/// The filter's view after polling `rt`'s feed at `now`.
async fn polled(rt: &OidcRuntime, now: u64) -> FeedState {
    let part = rt.feed_part(now).await.unwrap().unwrap();
    let mut state = FeedState::default();
    state.accept(Some(&part), now * 1000).unwrap();
    state
}

/// What the filter decides for a request with `cookie` right after
/// polling `rt`'s feed at `now`.
async fn filter_decides(rt: &OidcRuntime, cookie: &str, now: u64) -> FastPath {
    decide(
        &filter_config(),
        &mut polled(rt, now).await,
        &[cookie],
        now,
        now * 1000,
    )
}

fn ticket_of(a: &Answer) -> Option<String> {
    set_cookies(a).iter().find_map(|c| {
        c.strip_prefix("gatehouse_session_ticket=")
            .and_then(|rest| rest.split(';').next())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    })
}

#[tokio::test]
async fn the_filter_sets_exactly_what_the_full_check_set() {
    let rt = runtime(filter("https://idp.example", FAST));
    let now = now_secs();
    let session = session_cookie(&rt, &session(now));
    let req = Req::browser("/app").header("cookie", &format!("theme=dark; {session}"));
    let full = ask(&rt, &req).await;
    assert_eq!(status(&full), 200);
    let ticket = ticket_of(&full).expect("a full check sets a ticket");
    let Verdict::Allow { set, remove, .. } = &full.verdict else {
        panic!("allow expected")
    };
    // The browser's next request carries both cookies.
    let cookie = format!("theme=dark; {session}; gatehouse_session_ticket={ticket}");
    let state = polled(&rt, now).await;
    let FastPath::Verified {
        set: fast_set,
        remove: fast_remove,
    } = decide(
        &filter_config(),
        &mut state.clone(),
        &[&cookie],
        now,
        now * 1000,
    )
    else {
        panic!("the ticket verifies")
    };
    let mut expected = set.clone();
    expected.push(("x-gatehouse-session-verified".into(), "1".into()));
    assert_eq!(fast_set, expected);
    assert_eq!(&fast_remove, remove);
    assert!(fast_set.contains(&("cookie".to_owned(), "theme=dark".to_owned())));
}

#[tokio::test]
async fn without_the_fast_path_no_ticket_is_set_and_no_feed_served() {
    let rt = runtime(filter("https://idp.example", ""));
    let now = now_secs();
    let req = Req::browser("/").header("cookie", &session_cookie(&rt, &session(now)));
    let answer = ask(&rt, &req).await;
    assert_eq!(status(&answer), 200);
    assert_eq!(ticket_of(&answer), None);
    assert!(rt.feed_part(now).await.is_none());
}

#[tokio::test]
async fn tickets_of_another_session_key_do_not_verify() {
    let rt = runtime(filter("https://idp.example", FAST));
    let other = OidcRuntime::new(
        "sso",
        filter("https://idp.example", FAST),
        SessionKeys::from_raw(&[[2; 32]]),
        "s3cret".into(),
        None,
        None,
        None,
    )
    .unwrap();
    let now = now_secs();
    let req = Req::browser("/").header("cookie", &session_cookie(&other, &session(now)));
    let ticket = ticket_of(&ask(&other, &req).await).unwrap();
    let cookie = format!("gatehouse_session_ticket={ticket}");
    assert!(matches!(
        filter_decides(&rt, &cookie, now).await,
        FastPath::Slow(Slow::Refused(_))
    ));
}

async fn log_out(rt: &OidcRuntime, cookie: &str) -> Answer {
    let req = Req {
        method: "POST",
        path: "/.gatehouse/oidc/logout".into(),
        headers: HashMap::from([
            ("cookie".to_owned(), cookie.to_owned()),
            ("sec-fetch-site".to_owned(), "same-origin".to_owned()),
        ]),
    };
    ask(rt, &req).await
}

#[tokio::test]
async fn a_cookie_replayed_after_logout_is_refused_in_cookie_mode_and_its_ticket_revoked() {
    let rt = runtime(filter("https://idp.example", FAST));
    let now = now_secs();
    let session = session_cookie(&rt, &session(now));
    let first = ask(&rt, &Req::api("/").header("cookie", &session)).await;
    let ticket = ticket_of(&first).unwrap();
    let out = log_out(&rt, &session).await;
    assert_eq!(status(&out), 302);
    let cleared = set_cookies(&out);
    assert!(cleared.iter().any(|c| c.starts_with("gatehouse_session=;")));
    assert!(
        cleared
            .iter()
            .any(|c| c.starts_with("gatehouse_session_ticket=;"))
    );
    // The attacker kept both cookies.
    let replay = ask(&rt, &Req::api("/").header("cookie", &session)).await;
    assert_eq!(status(&replay), 401, "a logged-out cookie is no session");
    let cookie = format!("{session}; gatehouse_session_ticket={ticket}");
    assert_eq!(
        filter_decides(&rt, &cookie, now).await,
        FastPath::Slow(Slow::Revoked)
    );
    // Another session of the same user is not affected.
    let mut again = self::session(now);
    again.created_at += 1;
    let other = session_cookie(&rt, &again);
    assert_eq!(
        status(&ask(&rt, &Req::api("/").header("cookie", &other)).await),
        200
    );
}

#[tokio::test]
async fn a_logout_reaches_every_replicas_feed_through_redis() {
    let redis = TestRedis::start().await;
    let extra = format!(
        "      session_store:\n        redis_url: {}\n{FAST}",
        redis.url()
    );
    let here = runtime(filter("https://idp.example", &extra));
    let there = runtime(filter("https://idp.example", &extra));
    let now = now_secs();
    let s = session(now);
    let cookie = here.write_session(&s, None, now).await.unwrap().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let ticket = ticket_of(&ask(&there, &Req::api("/").header("cookie", &cookie)).await).unwrap();
    let both = format!("{cookie}; gatehouse_session_ticket={ticket}");
    assert!(matches!(
        filter_decides(&there, &both, now).await,
        FastPath::Verified { .. }
    ));
    assert_eq!(status(&log_out(&here, &cookie).await), 302);
    // The other replica's feed has it; its full check finds no session.
    assert_eq!(
        filter_decides(&there, &both, now).await,
        FastPath::Slow(Slow::Revoked)
    );
    assert_eq!(
        status(&ask(&there, &Req::api("/").header("cookie", &cookie)).await),
        401
    );
}
