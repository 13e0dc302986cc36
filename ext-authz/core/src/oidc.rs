//! The decisions of OpenID Connect single sign-on, as pure functions of the
//! request, the time, the opened cookie or session and the IdP's answers.
//!
//! `gatehouse-authz` does the I/O around them: it asks the IdP (discovery,
//! code exchange, refresh), reads and writes Redis, seals with the OS random
//! source and turns a [`Verdict`] into Envoy's answer. Everything it decides
//! on the way is here, one file per part of the flow:
//!
//! - [`route`]: which part of the flow a request is for;
//! - [`access`]: a request with a session (refresh, groups, idle clock,
//!   what goes upstream) or without one (pass, 401, sign in);
//! - [`callback`]: the login callback's checks, in order;
//! - [`refresh`]: what the IdP's answer to a refresh means;
//! - [`instead`]: a status instead of the login redirect, where a route
//!   asks for it (Ambassador's `insteadOfRedirect`);
//! - [`logout`]: who may log out, and where the browser goes then;
//! - [`backchannel`]: the IdP's logout tokens;
//! - [`discovery`]: when the IdP's metadata is read again.

pub mod access;
pub mod backchannel;
pub mod callback;
pub mod discovery;
pub mod fast;
pub mod instead;
pub mod logout;
pub mod refresh;

use std::collections::HashMap;

use crate::check::Verdict;
use crate::config::OidcFilter;
use crate::web::{BearerHeader, CookieAttributes, bearer_token, is_api_client, path_only};

/// The request as the SSO flow needs it.
#[derive(Debug, Clone, Copy)]
pub struct HttpView<'a> {
    /// The body Envoy forwarded (a back-channel logout's form), else empty.
    pub body: &'a str,
    /// The method, as the client sent it.
    pub method: &'a str,
    /// `:authority`.
    pub host: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    /// Request headers, names lowercase (as Envoy sends them).
    pub headers: &'a HashMap<String, String>,
    /// What the route answers instead of a login redirect, if it says.
    pub instead_of_redirect: Option<&'a instead::InsteadOfRedirect>,
}

impl<'a> HttpView<'a> {
    /// The value of header `name` (lowercase).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Whether the caller is a program (401 and JSON) rather than a browser
    /// navigating (a page or a redirect): see [`is_api_client`].
    #[must_use]
    pub fn is_api_client(&self) -> bool {
        is_api_client(self.method, self.headers)
    }
}

/// A verdict plus headers for the upstream's response (`Set-Cookie` after
/// a refresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// What Envoy does with the request.
    pub verdict: Verdict,
    /// Added to the upstream's response when the request is allowed.
    pub response_headers: Vec<(String, String)>,
}

impl From<Verdict> for Answer {
    fn from(verdict: Verdict) -> Self {
        Self {
            verdict,
            response_headers: Vec::new(),
        }
    }
}

impl Answer {
    /// The same answer, also setting `cookie` in the browser: on the denial
    /// itself, or on the upstream's response when allowed.
    #[must_use]
    pub fn with_cookie(mut self, cookie: String) -> Self {
        match &mut self.verdict {
            Verdict::Deny { headers, .. } => headers.push(("set-cookie".to_owned(), cookie)),
            Verdict::Allow { .. } => self
                .response_headers
                .push(("set-cookie".to_owned(), cookie)),
        }
        self
    }
}

/// Which part of the flow a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// The browser is back from the IdP: [`callback`].
    Callback,
    /// The user logs out: [`logout`].
    Logout,
    /// The IdP posts a logout token: [`backchannel`].
    BackchannelLogout,
    /// A machine client's bearer JWT, checked instead of a session.
    Bearer(&'a str),
    /// An `Authorization: Bearer` header that is not one token: 401, never
    /// treated as no token (see [`invalid_token`]).
    InvalidBearer,
    /// Anything else: the session decides ([`access`]).
    Session,
}

/// Which part of the flow `request` is for. The callback, logout and
/// back-channel paths are matched exactly on the path without its query;
/// the back-channel path only exists with a session store (`has_store`),
/// since only stored sessions can be ended from outside. With bearer tokens
/// configured (`has_bearer`), a bearer header is checked instead of the
/// session, and a malformed one is refused.
#[must_use]
pub fn route<'a>(
    filter: &OidcFilter,
    request: &HttpView<'a>,
    has_store: bool,
    has_bearer: bool,
) -> Route<'a> {
    let path = path_only(request.path);
    if path == filter.callback_path {
        return Route::Callback;
    }
    if path == filter.logout_path {
        return Route::Logout;
    }
    if path == filter.backchannel_logout_path && has_store {
        return Route::BackchannelLogout;
    }
    if has_bearer {
        match bearer_token(request.header("authorization")) {
            BearerHeader::Absent => {}
            BearerHeader::Token(token) => return Route::Bearer(token),
            BearerHeader::Malformed => return Route::InvalidBearer,
        }
    }
    Route::Session
}

/// The attributes of every cookie the filter sets.
#[must_use]
pub fn cookie_attributes(filter: &OidcFilter) -> CookieAttributes {
    CookieAttributes {
        domain: filter.cookie_domain.clone(),
        path: filter.cookie_path.clone(),
        secure: filter.cookie_secure,
    }
}

/// The name of the cookie a login in progress is sealed in.
#[must_use]
pub fn login_cookie_name(filter: &OidcFilter) -> String {
    format!("{}_login", filter.cookie_name)
}

/// The `Set-Cookie` that deletes the session cookie.
#[must_use]
pub fn clear_session_cookie(filter: &OidcFilter) -> String {
    cookie_attributes(filter).set_cookie(&filter.cookie_name, "", Some(0))
}

/// The `Set-Cookie` that deletes the login cookie: every callback answer
/// carries it, so a login flow is used once.
#[must_use]
pub fn clear_login_cookie(filter: &OidcFilter) -> String {
    cookie_attributes(filter).set_cookie(&login_cookie_name(filter), "", Some(0))
}

/// A `302` to `location`, setting `cookies`.
#[must_use]
pub fn redirect(location: &str, cookies: Vec<String>) -> Verdict {
    let mut headers = vec![("location".to_owned(), location.to_owned())];
    headers.extend(cookies.into_iter().map(|c| ("set-cookie".to_owned(), c)));
    Verdict::Deny {
        status: 302,
        headers,
        body: String::new(),
    }
}

/// A page for a person in a browser: what went wrong, what to do. The
/// `code` is in the page (`data-code`) for tests and support; `code` and
/// `message` are the caller's constants (not escaped).
#[must_use]
pub fn page(status: u16, code: &str, message: &str, cookies: Vec<String>) -> Verdict {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign-in</title></head>\
         <body><h1>Sign-in</h1><p data-code=\"{code}\">{message}</p></body></html>\n"
    );
    let mut headers = vec![
        (
            "content-type".to_owned(),
            "text/html; charset=utf-8".to_owned(),
        ),
        ("cache-control".to_owned(), "no-store".to_owned()),
    ];
    headers.extend(cookies.into_iter().map(|c| ("set-cookie".to_owned(), c)));
    Verdict::Deny {
        status,
        headers,
        body,
    }
}

/// The answer when the OS random source fails: nothing can be sealed, so
/// nothing is; the request is refused whatever Envoy's failure mode.
#[must_use]
pub fn no_random() -> Verdict {
    Verdict::deny(503, "unavailable", "the service cannot answer now")
}

/// 401 for a bad bearer token, as RFC 6750 §3 says.
#[must_use]
pub fn invalid_token() -> Verdict {
    let mut verdict = Verdict::deny(401, "invalid_token", "the bearer token is not valid");
    if let Verdict::Deny { headers, .. } = &mut verdict {
        headers.push((
            "www-authenticate".to_owned(),
            "Bearer error=\"invalid_token\", error_description=\"the token is not valid\""
                .to_owned(),
        ));
    }
    verdict
}

/// The session store did not answer: 503, as JSON for a program and as a
/// page for a browser. Never a pass, never a login (the session may well
/// exist).
#[must_use]
pub fn store_unavailable(request: &HttpView<'_>) -> Verdict {
    let (code, message) = (
        "session_store_unavailable",
        "sessions cannot be read: try again shortly",
    );
    if request.is_api_client() {
        Verdict::deny(503, code, message)
    } else {
        page(503, code, message, Vec::new())
    }
}

/// The IdP cannot be reached for a new login: existing sessions keep
/// working, only new logins wait.
#[must_use]
pub fn idp_unavailable(cookies: Vec<String>) -> Verdict {
    page(
        503,
        "idp_unavailable",
        "the sign-in service is not reachable: try again shortly",
        cookies,
    )
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
