//! Small HTTP rules the SSO flow needs: cookies, who is a browser, where a
//! login may return to.

use std::collections::HashMap;

use gatehouse_http_core as http;

/// The value of cookie `name` in a `Cookie` header.
#[must_use]
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    http::cookie::in_header(header?, name)
}

/// The `Cookie` header without the cookies for which `drop` is true: what
/// goes upstream (our cookies are ours). `None` when nothing is left.
#[must_use]
pub fn cookies_without(header: &str, drop: impl Fn(&str) -> bool) -> Option<String> {
    http::cookie::without(header, drop)
}

/// Attributes of the cookies the service sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttributes {
    /// `Domain`, when configured (else host-only).
    pub domain: Option<String>,
    /// `Path`.
    pub path: String,
    /// `Secure` (off only for plain-http tests).
    pub secure: bool,
}

impl CookieAttributes {
    /// A `Set-Cookie` value: `HttpOnly`, `SameSite=Lax` always; `Max-Age`
    /// when given (0 deletes).
    #[must_use]
    pub fn set_cookie(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let mut out = format!("{name}={value}; Path={}; HttpOnly; SameSite=Lax", self.path);
        if self.secure {
            out.push_str("; Secure");
        }
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if let Some(age) = max_age {
            out.push_str(&format!("; Max-Age={age}"));
        }
        out
    }
}

/// Whether the caller is a program rather than a browser navigating: it
/// gets 401 and JSON instead of a redirect to a login page it cannot use.
#[must_use]
pub fn is_api_client(method: &str, headers: &HashMap<String, String>) -> bool {
    let header = |n: &str| headers.get(n).map(String::as_str).unwrap_or_default();
    !method.eq_ignore_ascii_case("GET")
        || header("x-requested-with").eq_ignore_ascii_case("XMLHttpRequest")
        || (header("accept").contains("application/json")
            && !header("accept").contains("text/html"))
}

/// `path` if it is a path on this host to return to after login: starts
/// with one `/`, no `\`, no control characters. Anything else (an absolute
/// URL, `//evil.example`, `/\evil.example`) gives `/`: no open redirect.
#[must_use]
pub fn safe_return_path(path: &str) -> String {
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.bytes().any(|b| b.is_ascii_control() || b == b' ');
    if ok { path.to_owned() } else { "/".to_owned() }
}

/// The path part of a request target: everything before `?` or `#`.
#[must_use]
pub fn path_only(target: &str) -> &str {
    http::path::without_query(target)
}

/// Whether `path` (a request target; its query is ignored) is under the
/// configured prefix `prefix`, on a segment boundary: `/health` matches
/// `/health`, `/health/…` and `/health?…`, never `/healthz`; a prefix ending
/// in `/` (`/assets/`) matches everything below it.
///
/// A path that a server could resolve to somewhere else is never under
/// anything ([`http::path::is_plain`]): dot segments (`/health/../admin`,
/// `/health/..;x/admin`), empty segments (`//`), backslashes and encoded
/// `.`, `/` or `\` (`%2e`, `%2f`, `%5c`) make the answer `false`, so such
/// a path gets the full check.
#[must_use]
pub fn is_under(path: &str, prefix: &str) -> bool {
    http::path::is_plain_and_under(path, prefix)
}

/// The first value of `name` in a form (`a=1&b=2`: a query string, or an
/// `application/x-www-form-urlencoded` body), by the one query rule of
/// [`http::query`]: names and values percent-decoded strictly with `+` as
/// space, `name` without `=` present and empty, a pair with a broken escape
/// skipped. `None` also when the value is not UTF-8.
#[must_use]
pub fn form_value(form: &str, name: &str) -> Option<String> {
    http::query::decoded_values(form, name)
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986 §2.3), for
/// a value in a query string.
#[must_use]
pub fn percent_encode(text: &str) -> String {
    http::percent::encode(text)
}

/// What a request's `Authorization` header says about a bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerHeader<'a> {
    /// No header, or another scheme (`Basic …`): not a bearer request.
    Absent,
    /// `Bearer <token>`, the scheme in any case (RFC 7235 §2.1).
    Token(&'a str),
    /// The bearer scheme with no token, or something that is not one token
    /// (spaces inside, two headers joined by a comma): refused, never
    /// treated as no token.
    Malformed,
}

/// Reads an `Authorization` header value: the auth scheme is
/// case-insensitive (RFC 7235 §2.1), so `BEARER x` and `bearer x` are bearer
/// tokens as much as `Bearer x`.
#[must_use]
pub fn bearer_token(header: Option<&str>) -> BearerHeader<'_> {
    let Some(value) = header else {
        return BearerHeader::Absent;
    };
    let value = value.trim_matches([' ', '\t']);
    let (scheme, rest) = match value.find([' ', '\t']) {
        Some(i) => (
            value.get(..i).unwrap_or(value),
            value.get(i..).unwrap_or(""),
        ),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return BearerHeader::Absent;
    }
    let token = rest.trim_matches([' ', '\t']);
    // b64token (RFC 6750 §2.1): no spaces, no commas.
    let is_token = !token.is_empty()
        && token.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
        });
    if is_token {
        BearerHeader::Token(token)
    } else {
        BearerHeader::Malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cookies_are_found_and_ours_removed() {
        let h = "a=1; gatehouse_session=xyz; b=2";
        assert_eq!(cookie(Some(h), "gatehouse_session"), Some("xyz"));
        assert_eq!(cookie(Some(h), "gatehouse"), None);
        assert_eq!(cookie(None, "a"), None);
        assert_eq!(
            cookies_without(h, |n| n.starts_with("gatehouse_")),
            Some("a=1; b=2".into())
        );
        assert_eq!(
            cookies_without("gatehouse_session=x", |n| n == "gatehouse_session"),
            None
        );
    }

    #[test]
    fn set_cookie_is_secure_by_default() {
        let a = CookieAttributes {
            domain: None,
            path: "/".into(),
            secure: true,
        };
        assert_eq!(
            a.set_cookie("s", "v", None),
            "s=v; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        let b = CookieAttributes {
            domain: Some("example.test".into()),
            ..a
        };
        assert_eq!(
            b.set_cookie("s", "", Some(0)),
            "s=; Path=/; HttpOnly; SameSite=Lax; Secure; Domain=example.test; Max-Age=0"
        );
    }

    #[test]
    fn programs_get_401_browsers_get_redirects() {
        let h = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        assert!(!is_api_client(
            "GET",
            &h(&[("accept", "text/html,application/xhtml+xml,*/*")])
        ));
        assert!(is_api_client("GET", &h(&[("accept", "application/json")])));
        assert!(is_api_client(
            "GET",
            &h(&[("x-requested-with", "XMLHttpRequest")])
        ));
        assert!(is_api_client("POST", &h(&[("accept", "text/html")])));
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(safe_return_path("/orders?id=1"), "/orders?id=1");
        for bad in [
            "//evil.example/x",
            "https://evil.example/",
            "/\\evil.example",
            "evil",
            "",
            "/a\r\nb",
        ] {
            assert_eq!(safe_return_path(bad), "/", "{bad:?}");
        }
    }

    #[test]
    fn public_prefixes_match_on_segment_boundaries() {
        assert!(is_under("/health", "/health"));
        assert!(is_under("/health/live", "/health"));
        assert!(is_under("/health?probe=1", "/health"));
        assert!(is_under("/health#x", "/health"));
        assert!(!is_under("/healthz", "/health"));
        assert!(!is_under("/healthz-admin", "/health"));
        assert!(!is_under("/healthz-admin?x=/health", "/health"));
        assert!(is_under("/assets/app.js", "/assets/"));
        assert!(is_under("/assets/", "/assets/"));
        assert!(!is_under("/assets", "/assets/"));
        assert!(!is_under("/assetsX/app.js", "/assets/"));
        assert!(
            !is_under("/x?/health", "/health"),
            "the query is not the path"
        );
    }

    #[test]
    fn paths_that_resolve_elsewhere_are_never_public() {
        for tricky in [
            "/health/../admin",
            "/health/./x",
            "/health/%2e%2e/admin",
            "/health/%2E%2E/admin",
            "/health%2fadmin",
            "/health/..%2fadmin",
            "/health//admin",
            "/health/\\admin",
            "/assets/%5c..%5cadmin",
            "/health/..;x/admin",
            "/health/;x",
            "health",
        ] {
            assert!(!is_under(tricky, "/health"), "{tricky}");
            assert!(!is_under(tricky, "/assets/"), "{tricky}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_malformed_tokens_are_refused() {
        for header in [
            "Bearer abc.def",
            "bearer abc.def",
            "BEARER abc.def",
            "BeArEr   abc.def ",
        ] {
            assert_eq!(
                bearer_token(Some(header)),
                BearerHeader::Token("abc.def"),
                "{header}"
            );
        }
        for header in [
            "Bearer",
            "BEARER ",
            "Bearer a b",
            "Bearer a, Bearer b",
            "bearer a\r\nx",
        ] {
            assert_eq!(
                bearer_token(Some(header)),
                BearerHeader::Malformed,
                "{header:?}"
            );
        }
        assert_eq!(bearer_token(None), BearerHeader::Absent);
        assert_eq!(
            bearer_token(Some("Basic YWxpY2U6cHc=")),
            BearerHeader::Absent
        );
        assert_eq!(bearer_token(Some("Bearerish x")), BearerHeader::Absent);
    }

    #[test]
    fn form_values_are_found_by_exact_name_and_decoded() {
        let form = "code=a%2Fb+c&state=s1&state=s2&flag&x_state=no";
        assert_eq!(form_value(form, "code").as_deref(), Some("a/b c"));
        assert_eq!(
            form_value(form, "state").as_deref(),
            Some("s1"),
            "the first"
        );
        assert_eq!(
            form_value(form, "flag").as_deref(),
            Some(""),
            "no `=`: present and empty"
        );
        assert_eq!(form_value(form, "x"), None);
        assert_eq!(form_value("", "code"), None);
        assert_eq!(
            form_value("a=100%", "a"),
            None,
            "a broken escape is refused"
        );
        assert_eq!(form_value("a=%zz%41&a=b", "a").as_deref(), Some("b"));
        assert_eq!(form_value("a=%ff", "a"), None, "not UTF-8");
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_bytes() {
        assert_eq!(percent_encode("aZ0-_.~"), "aZ0-_.~");
        assert_eq!(
            percent_encode("https://x/?a=b&c d"),
            "https%3A%2F%2Fx%2F%3Fa%3Db%26c%20d"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
    }

    proptest! {
        #[test]
        fn a_return_path_never_leaves_the_host(p in "\\PC{0,40}") {
            let r = safe_return_path(&p);
            prop_assert!(r.starts_with('/') && !r.starts_with("//") && !r.contains('\\'));
        }

        #[test]
        fn percent_encoding_round_trips(s in "\\PC{0,40}") {
            prop_assert_eq!(form_value(&format!("v={}", percent_encode(&s)), "v"), Some(s));
        }
    }
}
