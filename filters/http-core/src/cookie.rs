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

/// A `Cookie` header value without the cookies whose name makes `drop`
/// true, pairs re-joined with `; `. `None` when nothing is left.
#[must_use]
pub fn without(header: &str, drop: impl Fn(&str) -> bool) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !drop(pair.split_once('=').map_or(*pair, |(k, _)| k)))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
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

    #[test]
    fn dropped_cookies_are_removed_and_the_rest_kept_in_order() {
        assert_eq!(
            without(" a=1;s=x; b=2 ;;", |n| n == "s").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(without("s=x", |n| n == "s"), None);
    }
}
