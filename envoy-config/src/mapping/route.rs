//! What a Mapping sets on its routes: redirects, added headers, CORS,
//! retries, sticky splits, and the match forms Ambassador writes
//! (`true` for present, lists as comma-separated text).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::doc::{ErrFn, ResourceError};

/// Where a redirecting Mapping sends the client instead of proxying
/// (Ambassador's `host_redirect` with `service` as the new host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// The new host (the Mapping's `service`).
    pub host: String,
    /// The whole path replaced (`path_redirect`).
    pub path: Option<String>,
    /// The matched prefix replaced (`prefix_redirect`).
    pub prefix: Option<String>,
    /// The path rewritten by regex (`regex_redirect`).
    pub regex: Option<(String, String)>,
    /// 301 (default), 302, 303, 307 or 308.
    pub code: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDocs {
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) ignored: Option<bool>,
    #[serde(default)]
    pub(super) display_name: Option<String>,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
}

/// An added header as Ambassador writes it: a value (text or a bool), or
/// `{value, append}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawAddedHeader {
    Text(String),
    Flag(bool),
    Object {
        value: String,
        #[serde(default)]
        append: Option<bool>,
    },
}

/// A header a route adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedHeader {
    /// The value (Envoy's `%...%` variables work).
    pub value: String,
    /// Keep what the request or response has and add this value too
    /// (Ambassador's `append`, default `true` in the object form); `false`
    /// replaces it. The plain `name: value` form replaces, so a client
    /// never adds a copy of a header the edge sets.
    pub append: bool,
}

pub(super) fn added_headers(
    raw: BTreeMap<String, RawAddedHeader>,
) -> BTreeMap<String, AddedHeader> {
    raw.into_iter()
        .map(|(name, h)| {
            let header = match h {
                RawAddedHeader::Text(value) => AddedHeader {
                    value,
                    append: false,
                },
                RawAddedHeader::Flag(b) => AddedHeader {
                    value: b.to_string(),
                    append: false,
                },
                RawAddedHeader::Object { value, append } => AddedHeader {
                    value,
                    append: append.unwrap_or(true),
                },
            };
            (name, header)
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSticky {
    #[serde(default)]
    pub(super) header: Option<String>,
    #[serde(default)]
    pub(super) cookie: Option<String>,
    #[serde(default)]
    pub(super) salt: Option<String>,
}

/// What keeps a user on one side of a weighted split (Gatehouse's `sticky`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    /// The request header whose value is hashed (e.g. a verified claim).
    pub header: Option<String>,
    /// Or the cookie.
    pub cookie: Option<String>,
    /// Changing it reshuffles everyone.
    pub salt: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegexRewrite {
    pub(super) pattern: String,
    pub(super) substitution: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    #[serde(default)]
    pub(super) retry_on: Option<String>,
    #[serde(default)]
    pub(super) num_retries: Option<u32>,
    #[serde(default)]
    pub(super) per_try_timeout: Option<String>,
}

/// A header or query match: an exact value, or `true` for "present".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum TextOrPresent {
    Text(String),
    Present(bool),
}

/// Splits matches into exact ones and `true` (present: any value, which
/// Envoy matches as the regular expression `.*`).
pub(super) fn split_matches(
    raw: BTreeMap<String, TextOrPresent>,
    field: &str,
    regex: &mut BTreeMap<String, String>,
    err: ErrFn<'_>,
) -> Result<BTreeMap<String, String>, ResourceError> {
    let mut exact = BTreeMap::new();
    for (name, m) in raw {
        match m {
            TextOrPresent::Text(v) => {
                exact.insert(name, v);
            }
            TextOrPresent::Present(true) => {
                regex.insert(name, ".*".into());
            }
            TextOrPresent::Present(false) => {
                return Err(err(
                    &format!("spec.{field}.{name}"),
                    "true (present) or a value; absence is not supported yet".into(),
                ));
            }
        }
    }
    Ok(exact)
}

/// Ambassador accepts a list or one comma-separated string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ListOrString {
    List(Vec<String>),
    One(String),
}

impl ListOrString {
    pub(super) fn items(self) -> Vec<String> {
        match self {
            Self::List(l) => l,
            Self::One(s) => s
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    pub(super) origins: ListOrString,
    #[serde(default)]
    pub(super) methods: Option<ListOrString>,
    #[serde(default)]
    pub(super) headers: Option<ListOrString>,
    #[serde(default)]
    pub(super) exposed_headers: Option<ListOrString>,
    #[serde(default)]
    pub(super) credentials: bool,
    #[serde(default)]
    pub(super) max_age: Option<String>,
}

/// A route's retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Envoy's `retry_on` (e.g. `5xx`, `gateway-error`).
    pub retry_on: String,
    /// How many retries.
    pub num_retries: u32,
    /// Timeout of each try, e.g. `0.5s`.
    pub per_try_timeout: Option<String>,
}

/// A route's CORS policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins, exact (`*` for any).
    pub origins: Vec<String>,
    /// Allowed methods.
    pub methods: Vec<String>,
    /// Allowed request headers.
    pub headers: Vec<String>,
    /// Response headers the browser may read.
    pub exposed_headers: Vec<String>,
    /// Whether credentials are allowed.
    pub credentials: bool,
    /// Preflight cache time, seconds, as text.
    pub max_age: Option<String>,
}

/// A route's retry policy from Ambassador's `retry_policy` (defaults:
/// `5xx`, one retry).
pub(crate) fn retry_policy(r: RawRetry) -> RetryPolicy {
    RetryPolicy {
        retry_on: r.retry_on.unwrap_or_else(|| "5xx".into()),
        num_retries: r.num_retries.unwrap_or(1),
        per_try_timeout: r.per_try_timeout,
    }
}

/// A CORS policy from Ambassador's `cors` at `at`.
pub(crate) fn cors(c: RawCors, at: &str, err: ErrFn<'_>) -> Result<Cors, ResourceError> {
    let cors = Cors {
        origins: c.origins.items(),
        methods: c.methods.map(ListOrString::items).unwrap_or_default(),
        headers: c.headers.map(ListOrString::items).unwrap_or_default(),
        exposed_headers: c
            .exposed_headers
            .map(ListOrString::items)
            .unwrap_or_default(),
        credentials: c.credentials,
        max_age: c.max_age,
    };
    if cors.origins.is_empty() {
        return Err(err(
            &format!("{at}.origins"),
            "name at least one origin (or *)".into(),
        ));
    }
    Ok(cors)
}
