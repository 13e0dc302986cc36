//! What the flow's tests share: a filter, a session, requests.

use std::collections::HashMap;

use crate::config::{AuthzConfig, FilterKind, OidcFilter};
use crate::session::Session;

use super::HttpView;

/// The `sso` filter of a minimal configuration, plus `extra` lines (six
/// spaces in, under `oidc:`).
pub fn filter(extra: &str) -> OidcFilter {
    let config = AuthzConfig::parse(
        &format!(
            "filters:\n  sso:\n    oidc:\n      issuer: https://idp.example\n      client_id: app\n      client_secret_file: s\n      callback_url: https://app.example/.gatehouse/oidc/callback\n      session_keys_file: k\n{extra}"
        ),
        "authz.yaml",
    )
    .unwrap();
    let FilterKind::Oidc(f) = &config.filters()["sso"] else {
        panic!("oidc expected")
    };
    (**f).clone()
}

/// Alice's session, signed in at 100 and last seen at 500; her access
/// token expires at 1 000.
pub fn session() -> Session {
    Session {
        sub: "alice".into(),
        email: Some("alice@example.test".into()),
        groups: vec!["staff".into()],
        id_token: "id.token.sig".into(),
        access_token: "at".into(),
        access_expires_at: Some(1_000),
        refresh_token: Some("rt".into()),
        sid: Some("sid-1".into()),
        created_at: 100,
        seen_at: 500,
    }
}

/// A request to `app.example`.
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub body: String,
    pub headers: HashMap<String, String>,
}

impl Req {
    /// A browser navigating to `path`.
    pub fn browser(path: &str) -> Self {
        Self {
            method: "GET",
            path: path.to_owned(),
            body: String::new(),
            headers: HashMap::from([("accept".to_owned(), "text/html".to_owned())]),
        }
    }

    /// A program asking for JSON at `path`.
    pub fn api(path: &str) -> Self {
        Self::browser(path).header("accept", "application/json")
    }

    /// A form POST of `body` to `path`.
    pub fn post(path: &str, body: &str) -> Self {
        Self {
            method: "POST",
            body: body.to_owned(),
            ..Self::browser(path)
        }
    }

    pub fn method(mut self, method: &'static str) -> Self {
        self.method = method;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn view(&self) -> HttpView<'_> {
        HttpView {
            body: &self.body,
            method: self.method,
            host: "app.example",
            path: &self.path,
            headers: &self.headers,
            instead_of_redirect: None,
        }
    }
}

/// The status of a verdict (200 for an allow).
pub fn status(v: &crate::Verdict) -> u16 {
    match v {
        crate::Verdict::Allow { .. } => 200,
        crate::Verdict::Deny { status, .. } => *status,
    }
}

/// The values of response header `name` of a denial.
pub fn headers<'a>(v: &'a crate::Verdict, name: &str) -> Vec<&'a str> {
    match v {
        crate::Verdict::Allow { .. } => Vec::new(),
        crate::Verdict::Deny { headers, .. } => headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect(),
    }
}

/// The body of a denial.
pub fn body(v: &crate::Verdict) -> &str {
    match v {
        crate::Verdict::Allow { .. } => "",
        crate::Verdict::Deny { body, .. } => body,
    }
}
