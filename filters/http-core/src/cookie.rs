//! Cookie lookup (RFC 6265 §5.4 `Cookie` header: `a=1; b=2`).

/// The value of cookie `name` in a `Cookie` header value: the first
/// `name=value` pair, whitespace around pairs ignored, the value as sent.
#[must_use]
pub fn in_header<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The value of cookie `name` over every `Cookie` header of a request
/// (HTTP/2 may split cookies into several headers, RFC 9113 §8.2.3), in
/// order: the first pair named `name` wins.
#[must_use]
pub fn in_headers<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers.into_iter().find_map(|h| in_header(h, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_in_any_cookie_header() {
        assert_eq!(in_header("a=1; b=2", "b"), Some("2"));
        assert_eq!(in_header("a=1;b=", "b"), Some(""));
        assert_eq!(in_header("ab=1", "a"), None);
        assert_eq!(in_headers(["a=1", "b=2; b=3"], "b"), Some("2"));
        assert_eq!(in_headers([], "b"), None);
    }
}
