//! The configuration example of `ratelimit/README.md` is a real file that
//! loads and behaves as the README says, and the README shows it verbatim.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::task::{Context, Poll, Waker};

use gatehouse_ratelimit_core::{
    Algorithm, Code, Descriptor, Limiter, LimiterSettings, MemoryStore, RateLimitConfig, Request,
};

const EXAMPLE: &str = include_str!("../../examples/config/edge.yaml");
const README: &str = include_str!("../../README.md");
/// Ten seconds into a day.
const T0: u64 = 19_000 * 86_400_000 + 10_000;

fn block_on<F: Future>(f: F) -> F::Output {
    match std::pin::pin!(f)
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("memory store checks complete at once"),
    }
}

fn d(pairs: &[(&str, &str)]) -> Descriptor {
    Descriptor::from_pairs(pairs)
}

fn check(config: &RateLimitConfig, store: &MemoryStore, descriptors: Vec<Descriptor>) -> Code {
    let limiter = Limiter::new(LimiterSettings::default());
    let request = Request::try_new("edge".into(), descriptors, 1).unwrap();
    block_on(limiter.check(config, &request, store, T0))
        .unwrap()
        .overall
}

#[test]
fn readme_shows_the_example_verbatim() {
    assert!(
        README.contains(EXAMPLE),
        "ratelimit/README.md must embed examples/config/edge.yaml as it is"
    );
}

#[test]
fn example_loads_and_behaves_as_documented() {
    let config = RateLimitConfig::load([("edge.yaml", EXAMPLE)]).unwrap();
    assert_eq!(config.rules().len(), 8);
    let store = MemoryStore::new();
    assert_eq!(
        check(
            &config,
            &store,
            vec![d(&[("remote_address", "192.0.2.66")])]
        ),
        Code::OverLimit
    );
    assert_eq!(
        check(&config, &store, vec![d(&[("remote_address", "192.0.2.1")])]),
        Code::Ok
    );
    for _ in 0..5 {
        assert_eq!(
            check(
                &config,
                &store,
                vec![d(&[("path", "/login"), ("user", "ann")])]
            ),
            Code::Ok
        );
    }
    assert_eq!(
        check(
            &config,
            &store,
            vec![d(&[("path", "/login"), ("user", "ann")])]
        ),
        Code::OverLimit
    );
    // The login limit says so: upstream while within, and in its 429.
    let login = Request::try_new(
        "edge".into(),
        vec![d(&[("path", "/login"), ("user", "bob")])],
        1,
    )
    .unwrap();
    let limiter = Limiter::new(LimiterSettings::default());
    let within = block_on(limiter.check(&config, &login, &store, T0)).unwrap();
    assert_eq!(
        within.request_headers,
        [("x-login-limit".to_owned(), "login-per-user".to_owned())]
    );
    assert_eq!(within.body, None);
    let over = Request::try_new(
        "edge".into(),
        vec![d(&[("path", "/login"), ("user", "bob")])],
        5,
    )
    .unwrap();
    let refused = block_on(limiter.check(&config, &over, &store, T0)).unwrap();
    assert_eq!(refused.overall, Code::OverLimit);
    assert!(refused.request_headers.is_empty());
    assert!(
        refused
            .response_headers
            .contains(&("x-login-retry".to_owned(), "50s".to_owned())),
        "{:?}",
        refused.response_headers
    );
    assert_eq!(
        refused.body.as_deref(),
        Some(r#"{"error": "too many requests", "retry_after": "50s"}"#)
    );
    // A partner's own limit replaces the login limit in the same request.
    let partner = || {
        vec![
            d(&[("path", "/login"), ("user", "ann")]),
            d(&[("plan", "partner"), ("user", "ann")]),
        ]
    };
    assert_eq!(check(&config, &store, partner()), Code::Ok);
    // Shadow: over the daily 1000, still allowed.
    let trial = Request::try_new("edge".into(), vec![d(&[("tier", "trial")])], 1500).unwrap();
    let decision =
        block_on(Limiter::new(LimiterSettings::default()).check(&config, &trial, &store, T0))
            .unwrap();
    assert_eq!(decision.overall, Code::Ok);
    assert_eq!(decision.outcomes[0].shadow_mode, 500);
    assert_eq!(
        check(&config, &store, vec![d(&[("tier", "internal")])]),
        Code::Ok
    );
    let tenant = config
        .rules()
        .iter()
        .find(|r| r.stat_key() == "edge.tenant")
        .unwrap();
    assert_eq!(tenant.algorithm(), Algorithm::SlidingWindow);
    assert!(tenant.is_quota());
}
