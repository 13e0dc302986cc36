//! Small HTTP rules the SSO flow needs: cookies, who is a browser, where a
//! login may return to.

use std::collections::HashMap;

/// The value of cookie `name` in a `Cookie` header.
#[must_use]
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// The `Cookie` header without the cookies for which `drop` is true: what
/// goes upstream (our cookies are ours). `None` when nothing is left.
#[must_use]
pub fn cookies_without(header: &str, drop: impl Fn(&str) -> bool) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !drop(pair.split_once('=').map_or(*pair, |(k, _)| k)))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
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

    proptest! {
        #[test]
        fn a_return_path_never_leaves_the_host(p in "\\PC{0,40}") {
            let r = safe_return_path(&p);
            prop_assert!(r.starts_with('/') && !r.starts_with("//") && !r.contains('\\'));
        }
    }
}
