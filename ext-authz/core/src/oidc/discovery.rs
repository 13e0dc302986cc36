//! When the IdP's metadata is read again, and what a reloaded filter keeps
//! of what its predecessor learnt. The service does the reading.

use std::time::Duration;

use crate::config::OidcFilter;

/// The first retry after a failed discovery.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);

/// The longest wait between retries of a failing discovery.
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// At most one rediscovery a login triggers in this interval, while the
/// IdP is marked down.
pub const REDISCOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// How long a login waits for that rediscovery.
pub const REDISCOVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after a good discovery the next one comes:
/// `discovery_refresh_seconds`, at least one second.
#[must_use]
pub fn refresh_interval(filter: &OidcFilter) -> Duration {
    Duration::from_secs(filter.discovery_refresh_secs.max(1))
}

/// The wait after a failed discovery that waited `retry`: doubled, at most
/// [`MAX_RETRY`].
#[must_use]
pub fn next_retry(retry: Duration) -> Duration {
    (retry * 2).min(MAX_RETRY)
}

/// Whether a login, finding the IdP marked down, may rediscover now; `since`
/// is how long ago a login last did (`None`: never).
#[must_use]
pub fn may_rediscover(since: Option<Duration>) -> bool {
    since.is_none_or(|t| t >= REDISCOVERY_INTERVAL)
}

/// Whether a reloaded filter keeps its predecessor's discovery (and waits
/// for its next turn to read it again): the same issuer, exactly.
#[must_use]
pub fn keeps_discovery(old: &OidcFilter, new: &OidcFilter) -> bool {
    old.issuer == new.issuer
}

/// Whether a reloaded filter keeps its predecessor's used login states and
/// refreshes in flight: the same filter name, issuer and client id. A state
/// or refresh token of another client means nothing to this one.
#[must_use]
pub fn keeps_flows(old_name: &str, old: &OidcFilter, new_name: &str, new: &OidcFilter) -> bool {
    keeps_discovery(old, new) && old.client_id == new.client_id && old_name == new_name
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::fixtures::filter;

    #[test]
    fn a_failing_discovery_backs_off_to_thirty_seconds() {
        let mut retry = FIRST_RETRY;
        let mut waits = Vec::new();
        for _ in 0..10 {
            waits.push(retry.as_millis());
            retry = next_retry(retry);
        }
        assert_eq!(
            waits,
            [
                250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000
            ]
        );
    }

    #[test]
    fn discovery_is_read_again_at_the_configured_interval_never_in_a_loop() {
        assert_eq!(
            refresh_interval(&filter("      discovery_refresh_seconds: 3600\n")),
            Duration::from_secs(3600)
        );
        let mut zero = filter("");
        zero.discovery_refresh_secs = 0;
        assert_eq!(refresh_interval(&zero), Duration::from_secs(1));
    }

    #[test]
    fn logins_rediscover_a_down_idp_at_most_once_a_second() {
        assert!(may_rediscover(None));
        assert!(!may_rediscover(Some(Duration::ZERO)));
        assert!(!may_rediscover(Some(Duration::from_millis(999))));
        assert!(may_rediscover(Some(Duration::from_secs(1))));
    }

    #[test]
    fn a_reload_keeps_discovery_for_the_same_issuer_and_flows_for_the_same_client() {
        let old = filter("");
        assert!(keeps_discovery(&old, &old.clone()));
        assert!(keeps_flows("sso", &old, "sso", &old.clone()));
        let mut other_issuer = old.clone();
        other_issuer.issuer = format!("{}/", old.issuer);
        assert!(!keeps_discovery(&old, &other_issuer), "compared exactly");
        assert!(!keeps_flows("sso", &old, "sso", &other_issuer));
        let mut other_client = old.clone();
        other_client.client_id = "other".into();
        assert!(keeps_discovery(&old, &other_client));
        assert!(
            !keeps_flows("sso", &old, "sso", &other_client),
            "another client's states and refresh tokens are not ours"
        );
        assert!(!keeps_flows("sso", &old, "admin", &old.clone()), "renamed");
    }
}
