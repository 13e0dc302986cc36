//! Request headers as the cores receive them: `(name, value)` pairs, names
//! lowercase, in the order the host gave them.

/// Whether `name` can be a header name in a filter's configuration: not
/// empty, and only what Envoy hands over in a name after lowercasing (a-z,
/// 0-9, `-`, `_`).
#[must_use]
pub fn is_config_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_config_name_byte)
}

/// One byte [`is_config_name`] allows.
#[must_use]
pub fn is_config_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

/// The first value of header `name` (lowercase).
#[must_use]
pub fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Cookie `name` over every `cookie` header ([`crate::cookie::in_headers`]).
#[must_use]
pub fn cookie<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let values = headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .map(|(_, v)| v.as_str());
    crate::cookie::in_headers(values, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_header_counts_and_cookies_come_from_all() {
        let h = [
            ("cookie".to_owned(), "a=1".to_owned()),
            ("x".to_owned(), "1".to_owned()),
            ("cookie".to_owned(), "b=2".to_owned()),
            ("x".to_owned(), "2".to_owned()),
        ];
        assert_eq!(first(&h, "x"), Some("1"));
        assert_eq!(first(&h, "y"), None);
        assert_eq!(cookie(&h, "b"), Some("2"));
    }

    #[test]
    fn config_names_are_lowercase_tokens() {
        assert!(is_config_name("x-user_id2"));
        assert!(!is_config_name(""));
        assert!(!is_config_name("X-User"));
        assert!(!is_config_name("x user"));
        assert!(!is_config_name("x:user"));
    }
}
