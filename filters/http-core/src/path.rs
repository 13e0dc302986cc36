//! Path prefixes on segment boundaries, for rules that relax a check.

/// The path part of a request target: everything before `?` or `#`.
#[must_use]
pub fn without_query(target: &str) -> &str {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    target.get(..end).unwrap_or(target)
}

/// Whether `path` (no query) is `prefix` or lies under it on a segment
/// boundary: `/health` takes `/health` and `/health/…`, never `/healthz` nor
/// `/health;x`; a prefix ending in `/` (`/assets/`) takes everything below
/// it. Says nothing about whether the path is plain: callers that relax a
/// check also require [`is_plain`] (or use [`is_plain_and_under`]).
#[must_use]
pub fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
}

/// Whether a path reads the same to every server: starts with `/`; no `.`
/// or `..` segment (also as `..;x`, which Tomcat reads as `..`); no empty
/// segment (`//`, `/;x`) but a trailing `/`; no backslash; and no
/// percent-encoded `.`, `/` or `\`, which a server may decode before
/// resolving the path. Envoy can normalise all of this (`normalize_path`,
/// `merge_slashes`, `path_with_escaped_slashes_action`, as `gatehouse render`
/// sets them); a hand-written listener may not, and then a relaxing rule
/// must not exempt `/health/..;/admin`.
#[must_use]
pub fn is_plain(path: &str) -> bool {
    let bytes = path.as_bytes();
    let encoded = bytes.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1], w[2].to_ascii_lowercase()),
                (b'2', b'e' | b'f') | (b'5', b'c')
            )
    });
    // An empty last segment is a trailing slash, which is fine.
    let inner = path.strip_suffix('/').unwrap_or(path);
    path.starts_with('/')
        && !encoded
        && !path.contains('\\')
        && inner.split('/').skip(1).all(|segment| {
            let segment = segment.split(';').next().unwrap_or_default();
            !segment.is_empty() && segment != "." && segment != ".."
        })
}

/// [`is_plain`] and [`is_under`] of the target's path (its query ignored):
/// what a rule that exempts a prefix from a check asks.
#[must_use]
pub fn is_plain_and_under(target: &str, prefix: &str) -> bool {
    let path = without_query(target);
    is_plain(path) && is_under(path, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(is_under("/health", "/health"));
        assert!(is_under("/health/x", "/health"));
        assert!(!is_under("/healthz", "/health"));
        assert!(!is_under("/health;x", "/health"));
        assert!(is_under("/assets/x", "/assets/"));
        assert!(is_plain_and_under("/health?x=/..", "/health"));
    }

    #[test]
    fn paths_a_server_may_resolve_elsewhere_are_not_plain() {
        for p in [
            "/health/../admin",
            "/health/..;x/admin",
            "/health/./x",
            "/health//x",
            "/health/;x",
            "/health\\x",
            "/health/%2e%2E/admin",
            "/health%2Fx",
            "/health%5cx",
            "health",
            "",
        ] {
            assert!(!is_plain(p), "{p}");
        }
        for p in ["/", "/health", "/assets/", "/a;b/c", "/a.b/..c"] {
            assert!(is_plain(p), "{p}");
        }
    }

    proptest! {
        #[test]
        fn checks_never_panic(path in "\\PC{0,64}", prefix in "\\PC{0,16}") {
            let _ = is_plain_and_under(&path, &prefix);
        }

        #[test]
        fn nothing_with_a_dot_segment_is_under_anything(
            head in "(/[a-z]{1,4}){0,3}",
            dots in "(\\.|\\.\\.)(;[a-z]{0,3})?",
            tail in "(/[a-z]{1,4}){0,3}",
            prefix in "(/[a-z]{1,4}){0,3}/?",
        ) {
            let path = format!("{head}/{dots}{tail}");
            prop_assert!(!is_plain_and_under(&path, &prefix));
        }

        #[test]
        fn a_plain_path_is_under_its_own_segments(segments in proptest::collection::vec("[a-z0-9_.-]{1,6}", 1..5)) {
            prop_assume!(segments.iter().all(|s| s != "." && s != ".."));
            let path = format!("/{}", segments.join("/"));
            prop_assert!(is_plain(&path));
            for i in 1..=segments.len() {
                let prefix = format!("/{}", segments[..i].join("/"));
                prop_assert!(is_under(&path, &prefix));
                let slashed = format!("{prefix}/");
                prop_assert!(is_under(&path, &slashed) || i == segments.len());
            }
        }
    }
}
