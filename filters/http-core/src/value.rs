//! How one request value (header, cookie, query parameter) must look: the
//! matcher both filters' rules use.

/// A condition on an optional value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    /// Present and equal.
    Exact(String),
    /// Present and starting with this.
    Prefix(String),
    /// Present (`true`) or absent (`false`).
    Present(bool),
}

impl ValueMatch {
    /// Whether `value` (`None`: absent) satisfies the condition.
    #[must_use]
    pub fn holds(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Self::Exact(want), Some(v)) => v == want,
            (Self::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (Self::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn exact_is_stricter_than_prefix_which_is_stricter_than_present(
            want in "[a-z]{0,4}",
            value in proptest::option::of("[a-z]{0,6}"),
        ) {
            let v = value.as_deref();
            if ValueMatch::Exact(want.clone()).holds(v) {
                prop_assert!(ValueMatch::Prefix(want.clone()).holds(v));
            }
            if ValueMatch::Prefix(want).holds(v) {
                prop_assert!(ValueMatch::Present(true).holds(v));
            }
            prop_assert_ne!(ValueMatch::Present(true).holds(v), ValueMatch::Present(false).holds(v));
        }
    }
}
