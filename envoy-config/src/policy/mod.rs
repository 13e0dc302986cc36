//! `Filter` (JWT, OAuth2, APIKey) and `FilterPolicy` documents: which
//! requests pass which checks. The types and the Filter dispatch live here,
//! each Filter type's fields in its own file ([`jwt`], [`oauth2`]), the
//! FilterPolicy's in [`rules`].

use std::collections::BTreeMap;

use gatehouse_template_core::{Scope, Template};
use serde::Deserialize;

use crate::doc::{ErrFn, RawDoc, ResourceError, readable_header};

mod jwt;
mod oauth2;
mod rules;

use jwt::{RawJwt, jwt};
use oauth2::{RawOAuth2, oauth2};
pub(crate) use rules::{RawPolicySpec, policy};

/// A named check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// `metadata.name`.
    pub name: String,
    /// What it checks.
    pub kind: FilterKind,
}

/// The kinds of [`Filter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterKind {
    /// A JWT check in the gatehouse-jwt wasm filter.
    Jwt(JwtFilter),
    /// OpenID Connect single sign-on in gatehouse-authz.
    OAuth2(OAuth2Filter),
    /// API keys in gatehouse-authz.
    ApiKey(ApiKeyFilter),
}

/// Where a JWKS is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `http` or `https`.
    pub scheme: String,
    /// Host name or address.
    pub host: String,
    /// Port (the scheme's default when not written).
    pub port: u16,
    /// The whole URL as written.
    pub full: String,
}

/// `Filter` of type `JWT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtFilter {
    /// The issuer's JWKS.
    pub jwks_uri: Url,
    /// Accepted algorithms (Ambassador's default: RS256, RS384, RS512).
    pub algorithms: Vec<String>,
    /// Required `aud`.
    pub audience: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Clock skew, seconds.
    pub leeway_seconds: Option<u64>,
    /// Request headers from `injectRequestHeaders`: (lowercase header,
    /// template as written, checked by gatehouse-jwt's own parser).
    pub inject: Vec<(String, String)>,
    /// The realm of the `WWW-Authenticate` challenge: `errorResponse.realm`,
    /// or `<name>.<namespace>` as in Ambassador.
    pub realm: String,
    /// `errorResponse`, when set.
    pub error_response: Option<JwtErrorResponse>,
}

/// A JWT Filter's `errorResponse`: how its refusals are answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JwtErrorResponse {
    /// `contentType` (default `application/json`; a `content-type` entry of
    /// `headers` sets it too).
    pub content_type: Option<String>,
    /// Extra headers: (lowercase name, template).
    pub headers: Vec<(String, String)>,
    /// `bodyTemplate`.
    pub body_template: Option<String>,
}

/// `Filter` of type `OAuth2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Filter {
    /// The IdP's issuer URL (discovery).
    pub authorization_url: String,
    /// The client registered at the IdP.
    pub client_id: String,
    /// The Secret holding `oauth2-client-secret`.
    pub secret_name: String,
    /// The sites' origins (`https://app.example.com`), the first first: the
    /// callback lives on each, and a login returns to the one it began on.
    pub origins: Vec<String>,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// Extra authorization request parameters.
    pub extra_params: BTreeMap<String, String>,
    /// `postLogoutRedirectURI`: where the browser goes after logging out.
    pub post_logout_redirect: Option<String>,
    /// `injectRequestHeaders`: (lowercase header, template over the
    /// session's `.token` and `.idToken` and the request).
    pub inject: Vec<(String, String)>,
    /// `allowMalformedAccessToken`: forward an access token that is not an
    /// RFC 6750 `b64token` (default: such a session's requests get 502).
    pub allow_malformed_access_token: bool,
    /// `fastPath` (Gatehouse's own, default on): signed-in requests are
    /// verified inside Envoy by gatehouse-session; only the rest reach
    /// gatehouse-authz.
    pub fast_path: bool,
}

/// `Filter` of type `APIKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyFilter {
    /// The header carrying the key (lowercase).
    pub header: String,
    /// The Secrets, one per client, each holding the client's key as `key`.
    pub secrets: Vec<String>,
}

/// A `FilterPolicy`: ordered rules, the first one matching a request applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPolicy {
    /// `metadata.name`.
    pub name: String,
    /// In order.
    pub rules: Vec<PolicyRule>,
}

/// What paths a rule covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathMatch {
    /// Every path (`*`).
    Any,
    /// Paths starting with this (`/api/*` is the prefix `/api/`).
    Prefix(String),
    /// This path and the paths under it, on a segment boundary: `/health*`
    /// on a rule that exempts (no filters) covers `/health` and
    /// `/health/live`, never `/healthz-admin` (Envoy's
    /// `path_separated_prefix`). A glob would match any text after
    /// `/health`; a rule that takes checks away must not reach that far.
    Segments(String),
    /// This path only.
    Exact(String),
}

/// One rule of a [`FilterPolicy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    /// `*` or one host name.
    pub host: String,
    /// The paths.
    pub path: PathMatch,
    /// The filters, in order (empty: none).
    pub filters: Vec<FilterUse>,
}

/// A request header condition (`ifRequestHeader`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeaderCondition {
    /// Header name, lowercase.
    pub name: String,
    /// Exact value; `None`: present with any value.
    pub value: Option<String>,
    /// Regular expression (RE2) the value matches instead.
    pub value_regex: Option<String>,
    /// The filter applies when the condition does *not* hold.
    pub negate: bool,
}

/// A filter as a rule uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterUse {
    /// The `Filter`'s name.
    pub name: String,
    /// Only when this holds.
    pub if_header: Option<HeaderCondition>,
    /// `arguments.insteadOfRedirect` of an OAuth2 Filter.
    pub instead_of_redirect: Option<InsteadOfRedirect>,
}

/// Ambassador's `insteadOfRedirect`: a request without a session gets
/// `status` instead of the redirect to the IdP, when `header` holds (or
/// always).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsteadOfRedirect {
    /// `httpStatusCode` (default 403).
    pub status: u16,
    /// `ifRequestHeader`: (lowercase name, exact value or any non-empty,
    /// negate).
    pub header: Option<(String, Option<String>, bool)>,
}

impl InsteadOfRedirect {
    /// The JSON gatehouse-authz reads from the route's
    /// `context_extensions` (`gatehouse_instead_of_redirect`).
    #[must_use]
    pub fn extension(&self) -> String {
        let mut v = serde_json::json!({ "status": self.status });
        if let Some((name, value, negate)) = &self.header {
            v["header"] = serde_json::json!({ "name": name, "negate": negate });
            if let Some(value) = value {
                v["header"]["value"] = serde_json::json!(value);
            }
        }
        v.to_string()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilterSpec {
    #[serde(default, rename = "JWT")]
    jwt: Option<RawJwt>,
    #[serde(default, rename = "OAuth2")]
    oauth2: Option<RawOAuth2>,
    #[serde(default, rename = "APIKey")]
    api_key: Option<RawApiKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInject {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeySecret {
    #[serde(rename = "secretName")]
    secret_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    #[serde(default, rename = "httpHeader")]
    http_header: Option<String>,
    keys: Vec<RawKeySecret>,
}

/// Parses `scheme://host[:port]/path`.
fn url(text: &str, path: &str, err: ErrFn<'_>) -> Result<Url, ResourceError> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| err(path, format!("{text:?} is not an http(s) URL")))?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        other => return Err(err(path, format!("scheme {other:?}: use http or https"))),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| err(path, format!("{p:?} is not a port")))?,
        ),
        None => (authority, default_port),
    };
    if host.is_empty() {
        return Err(err(path, format!("{text:?} names no host")));
    }
    Ok(Url {
        scheme: scheme.to_owned(),
        host: host.to_owned(),
        port,
        full: text.to_owned(),
    })
}

/// A duration as Ambassador writes it (`30s`, `1m`, `500ms`), in whole seconds.
fn seconds(text: &str, path: &str, err: ErrFn<'_>) -> Result<u64, ResourceError> {
    let bad = || {
        err(
            path,
            format!("{text:?} is not a duration such as 30s or 2m"),
        )
    };
    let (number, factor_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = text.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        return Err(bad());
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    Ok(n * factor_ms / 1000)
}

/// A header name Envoy keeps and gatehouse-jwt may write.
fn header_name(name: &str, path: &str, err: ErrFn<'_>) -> Result<(), ResourceError> {
    readable_header(name, path, err)?;
    if gatehouse_http_core::header::is_config_name(&name.to_ascii_lowercase()) {
        Ok(())
    } else {
        Err(err(path, format!("{name:?} is not a header name")))
    }
}

/// Checks a template with gatehouse-jwt's own parser, so what renders loads.
fn template(value: &str, scope: Scope, path: &str, err: ErrFn<'_>) -> Result<(), ResourceError> {
    Template::parse(value, scope)
        .map(drop)
        .map_err(|m| err(path, format!("{value:?}: {m}")))
}

pub(crate) fn filter(raw: RawDoc<RawFilterSpec>, err: ErrFn<'_>) -> Result<Filter, ResourceError> {
    let spec = raw.spec;
    let given = usize::from(spec.jwt.is_some())
        + usize::from(spec.oauth2.is_some())
        + usize::from(spec.api_key.is_some());
    if given != 1 {
        return Err(err(
            "spec",
            "a Filter has exactly one of JWT, OAuth2 or APIKey (External and Plugin are not supported)"
                .into(),
        ));
    }
    let kind = if let Some(j) = spec.jwt {
        let realm = format!(
            "{}.{}",
            raw.metadata.name,
            raw.metadata.namespace.as_deref().unwrap_or("default")
        );
        jwt(j, realm, err)?
    } else if let Some(o) = spec.oauth2 {
        oauth2(o, err)?
    } else if let Some(a) = spec.api_key {
        if a.keys.is_empty() {
            return Err(err("spec.APIKey.keys", "name at least one Secret".into()));
        }
        if let Some(h) = &a.http_header {
            readable_header(h, "spec.APIKey.httpHeader", err)?;
        }
        FilterKind::ApiKey(ApiKeyFilter {
            header: a
                .http_header
                .unwrap_or_else(|| "x-api-key".into())
                .to_ascii_lowercase(),
            secrets: a.keys.into_iter().map(|k| k.secret_name).collect(),
        })
    } else {
        unreachable!("exactly one kind was counted above")
    };
    Ok(Filter {
        name: raw.metadata.name,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::rules::path_match;
    use super::*;

    #[test]
    fn durations_and_globs() {
        let err = |p: &str, m: String| ResourceError {
            file: String::new(),
            document: String::new(),
            path: p.into(),
            message: m,
        };
        assert_eq!(seconds("2m", "x", &err).unwrap(), 120);
        assert_eq!(seconds("1500ms", "x", &err).unwrap(), 1);
        assert!(seconds("soon", "x", &err).is_err());
        assert_eq!(path_match("*", "p", &err).unwrap(), PathMatch::Any);
        assert_eq!(
            path_match("/api/*", "p", &err).unwrap(),
            PathMatch::Prefix("/api/".into())
        );
        assert_eq!(
            path_match("/login", "p", &err).unwrap(),
            PathMatch::Exact("/login".into())
        );
        assert!(path_match("/a/*/b", "p", &err).is_err());
    }
}
