//! `*` wildcards in descriptor values.

/// Whether `value` matches `pattern`, where each `*` in the pattern stands for
/// any run of characters (possibly empty) and everything else matches itself.
/// Linear in practice: greedy with backtracking to the last `*` only.
#[must_use]
pub fn matches(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;
    use proptest::prelude::*;

    #[test]
    fn stars_match_anywhere() {
        assert!(matches("/api/*", "/api/users"));
        assert!(matches("/api/*", "/api/"));
        assert!(matches("*.example.com", "a.b.example.com"));
        assert!(matches("/v*/users/*/orders", "/v2/users/42/orders"));
        assert!(matches("*", ""));
        assert!(!matches("/api/*", "/apx/users"));
        assert!(!matches("/v*/users", "/v2/user"));
        assert!(!matches("abc", "abcd"));
    }

    proptest! {
        #[test]
        fn a_pattern_without_stars_matches_only_itself(a in "[a-z/]{0,12}", b in "[a-z/]{0,12}") {
            prop_assert_eq!(matches(&a, &b), a == b);
        }

        #[test]
        fn a_star_suffix_matches_every_extension(prefix in "[a-z/]{0,12}", rest in "\\PC{0,12}") {
            let pattern = format!("{prefix}*");
            let value = format!("{prefix}{rest}");
            prop_assert!(matches(&pattern, &value));
        }
    }
}
