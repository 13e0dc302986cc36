//! Query parameters of a request target (`/p?a=1&b&c=`).
//!
//! One rule for every caller: the query is what follows the first `?` and
//! precedes a `#`; pairs are split on `&`; a pair without `=` (`?k`) is `k`
//! present with the empty value. [`raw_value`] gives the first value as sent;
//! [`decoded_values`] compares the decoded name and decodes values strictly
//! ([`crate::percent::decode`], `+` as space), skipping pairs with a broken
//! escape.

use crate::percent;

/// The query of a request target, without `?` and fragment; `None` when
/// there is no `?`.
#[must_use]
pub fn of(target: &str) -> Option<&str> {
    let (_, query) = target.split_once('?')?;
    Some(query.split('#').next().unwrap_or_default())
}

/// `(name, value)` pairs of a query string, as sent; `k` gives `(k, "")`.
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The first value of `name` in `target`, as sent.
#[must_use]
pub fn raw_value<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    pairs(of(target)?).find_map(|(k, v)| (k == name).then_some(v))
}

/// Every value of parameter `name` in a query or form body (`a=1&b=2`,
/// without `?`), percent-decoded with `+` as space; a pair whose name or
/// value has a broken escape is skipped.
pub fn decoded_values<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = Vec<u8>> + 'a {
    pairs(query).filter_map(move |(k, v)| {
        (percent::decode(k, true)? == name.as_bytes())
            .then(|| percent::decode(v, true))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_name_without_equals_is_present_and_empty() {
        assert_eq!(raw_value("/p?k&v=1", "k"), Some(""));
        assert_eq!(raw_value("/p?k=&v=1", "k"), Some(""));
        assert_eq!(raw_value("/p?v=1", "k"), None);
        assert_eq!(raw_value("/p", "k"), None);
        assert_eq!(raw_value("/p?k=a#k=b", "k"), Some("a"));
        assert_eq!(raw_value("/p?k=1&k=2", "k"), Some("1"));
    }

    #[test]
    fn decoded_values_decode_names_and_values_and_skip_broken_ones() {
        let got: Vec<Vec<u8>> = decoded_values("a%5Fb=%2&a_b=x+y%21&a_b", "a_b").collect();
        assert_eq!(got, [b"x y!".to_vec(), Vec::new()]);
    }

    proptest! {
        #[test]
        fn lookups_never_panic(target in "\\PC{0,80}", name in "\\PC{0,8}") {
            let _ = raw_value(&target, &name);
            let _ = decoded_values(&target, &name).count();
        }

        #[test]
        fn an_encoded_value_is_found_again(
            name in "[a-z_]{1,8}",
            value in "\\PC{0,20}",
            other in "[a-z]{0,8}",
        ) {
            // The decoy's name has a `-`, which `name` never has: it can
            // never be the parameter looked for.
            let query = format!("{other}-x=1&{name}={}", percent::encode(&value));
            let first = decoded_values(&query, &name).next();
            prop_assert_eq!(first, Some(value.into_bytes()));
        }
    }
}
