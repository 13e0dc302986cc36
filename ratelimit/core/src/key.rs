//! Counter keys: the reference's `domain_key_value_key_value_..._` layout,
//! with client-chosen values escaped.
//!
//! envoyproxy/ratelimit joins the parts with `_` as they are, so the value
//! `victim_plan_free` of a key-only `tenant` rule and the two entries
//! `(tenant, victim), (plan, free)` make the same key `d_tenant_victim_plan_free_`
//! and count against each other. Here each value is escaped first: `\`
//! becomes `\\` and `_` becomes `\_`, so a value never holds a bare `_` and
//! cannot pass for a separator. The domain and the keys come from the
//! operator's configuration and stay as they are: counter keys whose values
//! hold neither character are byte-identical to the reference's, so a Redis
//! shared with it keeps its counters (the reference's own examples use `_`
//! in domains and keys, e.g. `shared_buckets`, `remote_address`).
//!
//! What this guarantees: descriptors with the same domain and keys share a
//! counter only when their values are equal, whatever a client sends. A
//! collision between different key lists would need the configuration itself
//! to hold a key spelled like another key path joined with `_` (keys `a`, then
//! `c`, and a key `a_x_c`); the README says to avoid such names.
//!
//! A value longer than [`MAX_VERBATIM_BYTES`] (a client can send a header of
//! any length Envoy accepts) is written as `\#` and the hex SHA-256 of its
//! bytes: the key stays short, the same long value still counts together and
//! distinct long values still count apart. An escaped value never starts
//! with `\#`, so a digest cannot pass for a short value.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// Longest value written into a counter key as it is (after escaping); a
/// longer one is written as its digest.
pub const MAX_VERBATIM_BYTES: usize = 256;

/// Appends one value, escaped or digested, and the `_` that ends it.
pub(crate) fn push_value(out: &mut String, value: &str) {
    if value.len() > MAX_VERBATIM_BYTES {
        out.push_str("\\#");
        for byte in Sha256::digest(value.as_bytes()) {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
        }
    } else if value.contains(['_', '\\']) {
        for c in value.chars() {
            if c == '_' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    } else {
        out.push_str(value);
    }
    out.push('_');
}

/// Appends a domain or key, from the configuration, as it is, and its `_`.
pub(crate) fn push_name(out: &mut String, name: &str) {
    out.push_str(name);
    out.push('_');
}

/// The counter key (without prefix and window) of `domain` and its entries.
pub(crate) fn counter_key<'a>(
    domain: &str,
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut key = String::with_capacity(domain.len() + 32);
    push_name(&mut key, domain);
    for (k, v) in entries {
        push_name(&mut key, k);
        push_value(&mut key, v);
    }
    key
}

/// A request value as shown in a metric label: itself when short, else
/// `#` and its digest's first 16 hex digits (labels need not be injective,
/// only bounded).
pub(crate) fn shown_value(value: &str) -> std::borrow::Cow<'_, str> {
    if value.len() > MAX_VERBATIM_BYTES {
        let mut out = String::with_capacity(17);
        out.push('#');
        for byte in &Sha256::digest(value.as_bytes())[..8] {
            let _ = write!(out, "{byte:02x}");
        }
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(domain: &str, entries: &[(&str, &str)]) -> String {
        counter_key(domain, entries.iter().copied())
    }

    #[test]
    fn parts_without_underscore_or_backslash_keep_the_reference_layout() {
        assert_eq!(key("api", &[("path", "/login")]), "api_path_/login_");
        assert_eq!(
            key("edge", &[("user", "ann"), ("ip", "10.0.0.1")]),
            "edge_user_ann_ip_10.0.0.1_"
        );
    }

    #[test]
    fn an_underscore_value_cannot_impersonate_two_entries() {
        // The collision of the reference's layout: both were `d_tenant_victim_plan_free_`.
        let joined = key("d", &[("tenant", "victim_plan_free")]);
        let two = key("d", &[("tenant", "victim"), ("plan", "free")]);
        assert_ne!(joined, two);
        assert_eq!(joined, "d_tenant_victim\\_plan\\_free_");
        // Names from the configuration keep the reference's spelling.
        assert_eq!(
            key("shared_buckets", &[("remote_address", "10.0.0.1")]),
            "shared_buckets_remote_address_10.0.0.1_"
        );
        assert_eq!(two, "d_tenant_victim_plan_free_");
    }

    #[test]
    fn backslashes_are_escaped_too() {
        assert_ne!(key("d", &[("k", "a\\_b")]), key("d", &[("k", "a_b")]));
        assert_eq!(key("d", &[("k", "a\\")]), "d_k_a\\\\_");
    }

    #[test]
    fn long_parts_become_digests_that_count_apart_and_together() {
        let a = "a".repeat(5000);
        let mut b = a.clone();
        b.replace_range(4999.., "b");
        let ka = key("d", &[("user", &a)]);
        assert_eq!(ka.len(), "d_user_".len() + 2 + 64 + 1);
        assert!(ka.starts_with("d_user_\\#"), "{ka}");
        assert_eq!(ka, key("d", &[("user", &a)]));
        assert_ne!(ka, key("d", &[("user", &b)]));
        // A short value spelled like a digest is escaped, so it stays apart.
        let lookalike = ka["d_user_".len()..ka.len() - 1].to_owned();
        assert_ne!(key("d", &[("user", &lookalike)]), ka);
        // At the bound the value is still written as it is.
        let edge = "e".repeat(MAX_VERBATIM_BYTES);
        assert_eq!(key("d", &[("user", &edge)]), format!("d_user_{edge}_"));
    }

    proptest! {
        #[test]
        fn values_of_one_key_list_never_share_a_key(
            a in proptest::collection::vec("[a_\\\\#]{0,6}", 1..4),
            b in proptest::collection::vec("[a_\\\\#]{0,6}", 1..4),
        ) {
            // Every prefix of a key list is a key list of its own (the issue's
            // collision was one entry against two), so lists of different
            // lengths are compared too.
            let keys = ["tenant", "plan", "remote_address"];
            let ka = counter_key("d_x", keys.iter().copied().zip(a.iter().map(String::as_str)));
            let kb = counter_key("d_x", keys.iter().copied().zip(b.iter().map(String::as_str)));
            prop_assert_eq!(ka == kb, a == b);
        }
    }
}
