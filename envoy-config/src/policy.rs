//! `Filter` (JWT, OAuth2, APIKey) and `FilterPolicy` documents: which
//! requests pass which checks.

use std::collections::BTreeMap;

use gatehouse_template_core::{Scope, Template};
use serde::Deserialize;

use crate::doc::{ErrFn, RawDoc, ResourceError, readable_header};

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
    /// The site's origin (`https://app.example.com`): the callback lives there.
    pub origin: String,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// Extra authorization request parameters.
    pub extra_params: BTreeMap<String, String>,
    /// `postLogoutRedirectURI`: where the browser goes after logging out.
    pub post_logout_redirect: Option<String>,
    /// `injectRequestHeaders`: (lowercase header, template over the
    /// session's `.token` and `.idToken` and the request).
    pub inject: Vec<(String, String)>,
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
#[allow(clippy::struct_excessive_bools)]
struct RawJwt {
    #[serde(rename = "jwksURI")]
    jwks_uri: String,
    #[serde(default, rename = "validAlgorithms")]
    valid_algorithms: Vec<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default, rename = "requireAudience")]
    require_audience: Option<bool>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default, rename = "requireIssuer")]
    require_issuer: Option<bool>,
    #[serde(default, rename = "requireIssuedAt")]
    require_issued_at: bool,
    #[serde(default, rename = "requireExpiresAt")]
    require_expires_at: bool,
    #[serde(default, rename = "requireNotBefore")]
    require_not_before: bool,
    #[serde(default, rename = "leewayForExpiresAt")]
    leeway_exp: Option<String>,
    #[serde(default, rename = "leewayForNotBefore")]
    leeway_nbf: Option<String>,
    #[serde(default, rename = "leewayForIssuedAt")]
    leeway_iat: Option<String>,
    #[serde(default, rename = "injectRequestHeaders")]
    inject_request_headers: Vec<RawInject>,
    #[serde(default, rename = "errorResponse")]
    error_response: Option<RawJwtErrorResponse>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwtErrorResponse {
    #[serde(default, rename = "contentType")]
    content_type: Option<String>,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    headers: Vec<RawInject>,
    #[serde(default, rename = "bodyTemplate")]
    body_template: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrigin {
    origin: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth2 {
    #[serde(rename = "authorizationURL")]
    authorization_url: String,
    #[serde(rename = "clientID")]
    client_id: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default, rename = "secretName")]
    secret_name: Option<String>,
    #[serde(default, rename = "secretNamespace")]
    _secret_namespace: Option<String>,
    #[serde(default, rename = "protectedOrigins")]
    protected_origins: Vec<RawOrigin>,
    #[serde(default, rename = "extraAuthorizationParameters")]
    extra_params: BTreeMap<String, String>,
    #[serde(default, rename = "grantType")]
    grant_type: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default, rename = "postLogoutRedirectURI")]
    post_logout_redirect_uri: Option<String>,
    #[serde(default, rename = "injectRequestHeaders")]
    inject_request_headers: Vec<RawInject>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicySpec {
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    filters: Option<Vec<RawFilterRef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilterRef {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    namespace: Option<String>,
    #[serde(default, rename = "onDeny")]
    on_deny: Option<String>,
    #[serde(default, rename = "onAllow")]
    on_allow: Option<String>,
    #[serde(default, rename = "ifRequestHeader")]
    if_request_header: Option<RawIfHeader>,
    #[serde(default)]
    arguments: Option<RawArguments>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIfHeader {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default, rename = "valueRegex")]
    value_regex: Option<String>,
    #[serde(default)]
    negate: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArguments {
    #[serde(default)]
    scope: Option<Vec<String>>,
    #[serde(default, rename = "insteadOfRedirect")]
    instead_of_redirect: Option<RawInsteadOfRedirect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInsteadOfRedirect {
    #[serde(default, rename = "httpStatusCode")]
    http_status_code: Option<u16>,
    #[serde(default, rename = "ifRequestHeader")]
    if_request_header: Option<RawIfHeader>,
    #[serde(default)]
    filters: Option<serde_yaml_ng::Value>,
}

fn instead_of_redirect(
    raw: RawInsteadOfRedirect,
    at: &str,
    err: ErrFn<'_>,
) -> Result<InsteadOfRedirect, ResourceError> {
    if raw.filters.is_some() {
        return Err(err(
            &format!("{at}.filters"),
            "deprecated in Ambassador and not supported: answer with httpStatusCode".into(),
        ));
    }
    let status = raw.http_status_code.unwrap_or(403);
    if !(400..=599).contains(&status) {
        return Err(err(
            &format!("{at}.httpStatusCode"),
            format!("{status}: an error status, 400 to 599"),
        ));
    }
    let header = match raw.if_request_header {
        None => None,
        Some(h) => {
            readable_header(&h.name, &format!("{at}.ifRequestHeader.name"), err)?;
            if h.value_regex.is_some() {
                return Err(err(
                    &format!("{at}.ifRequestHeader.valueRegex"),
                    "not supported yet here: match an exact value, or the header's presence".into(),
                ));
            }
            Some((h.name.to_ascii_lowercase(), h.value, h.negate))
        }
    };
    Ok(InsteadOfRedirect { status, header })
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

fn jwt(j: RawJwt, realm: String, err: ErrFn<'_>) -> Result<FilterKind, ResourceError> {
    for (flag, field) in [
        (j.require_issued_at, "requireIssuedAt"),
        (j.require_expires_at, "requireExpiresAt"),
        (j.require_not_before, "requireNotBefore"),
    ] {
        if flag {
            return Err(err(
                &format!("spec.JWT.{field}"),
                "not supported yet: the claim is checked whenever the token carries it; leave it false"
                    .into(),
            ));
        }
    }
    if j.require_issuer == Some(false) && j.issuer.is_some() {
        return Err(err(
            "spec.JWT.requireIssuer",
            "false with an issuer is not supported: a set issuer is always required".into(),
        ));
    }
    if j.require_audience == Some(false) && j.audience.is_some() {
        return Err(err(
            "spec.JWT.requireAudience",
            "false with an audience is not supported: a set audience is always required".into(),
        ));
    }
    let mut leeway = None;
    for (value, field) in [
        (&j.leeway_exp, "leewayForExpiresAt"),
        (&j.leeway_nbf, "leewayForNotBefore"),
        (&j.leeway_iat, "leewayForIssuedAt"),
    ] {
        if let Some(v) = value {
            let s = seconds(v, &format!("spec.JWT.{field}"), err)?;
            if leeway.is_some_and(|l| l != s) {
                return Err(err(
                    &format!("spec.JWT.{field}"),
                    "the leeways must be equal: one clock skew applies to exp, nbf and iat".into(),
                ));
            }
            leeway = Some(s);
        }
    }
    let mut inject = Vec::new();
    for (i, h) in j.inject_request_headers.into_iter().enumerate() {
        let at = format!("spec.JWT.injectRequestHeaders[{i}]");
        header_name(&h.name, &format!("{at}.name"), err)?;
        template(&h.value, Scope::Token, &format!("{at}.value"), err)?;
        inject.push((h.name.to_ascii_lowercase(), h.value));
    }
    let realm = match j.error_response.as_ref().and_then(|e| e.realm.as_ref()) {
        Some(r)
            if r.is_empty()
                || r.bytes()
                    .any(|b| b == b'"' || b == b'\\' || b.is_ascii_control()) =>
        {
            return Err(err(
                "spec.JWT.errorResponse.realm",
                format!("{r:?}: a realm is non-empty text without quotes or backslashes"),
            ));
        }
        Some(r) => r.clone(),
        None => realm,
    };
    let error_response = j
        .error_response
        .map(|e| jwt_error_response(e, err))
        .transpose()?;
    // Ambassador's default is every algorithm it supports but none: RSA.
    let algorithms = if j.valid_algorithms.is_empty() {
        AES_DEFAULT_ALGORITHMS.map(str::to_owned).to_vec()
    } else {
        for (i, a) in j.valid_algorithms.iter().enumerate() {
            if !JWKS_ALGORITHMS.contains(&a.as_str()) {
                return Err(err(
                    &format!("spec.JWT.validAlgorithms[{i}]"),
                    if a.eq_ignore_ascii_case("none") {
                        "unsigned tokens are never accepted: leave none out".into()
                    } else {
                        format!(
                            "{a:?}: a JWKS verifies {} (HMAC needs a shared secret, not a JWKS)",
                            JWKS_ALGORITHMS.join(", ")
                        )
                    },
                ));
            }
        }
        j.valid_algorithms
    };
    Ok(FilterKind::Jwt(JwtFilter {
        jwks_uri: url(&j.jwks_uri, "spec.JWT.jwksURI", err)?,
        algorithms,
        audience: j.audience,
        issuer: j.issuer,
        leeway_seconds: leeway,
        inject,
        realm,
        error_response,
    }))
}

fn jwt_error_response(
    e: RawJwtErrorResponse,
    err: ErrFn<'_>,
) -> Result<JwtErrorResponse, ResourceError> {
    let at = "spec.JWT.errorResponse";
    if let Some(t) = &e.content_type
        && (t.is_empty() || t.bytes().any(|b| b.is_ascii_control()))
    {
        return Err(err(
            &format!("{at}.contentType"),
            format!("{t:?} is not a media type"),
        ));
    }
    let mut headers = Vec::new();
    for (i, h) in e.headers.into_iter().enumerate() {
        let name = h.name.to_ascii_lowercase();
        header_name(&h.name, &format!("{at}.headers[{i}].name"), err)?;
        if name == "www-authenticate" {
            return Err(err(
                &format!("{at}.headers[{i}].name"),
                "the challenge is the filter's: set its realm with realm".into(),
            ));
        }
        if name == "content-type" && e.content_type.is_some() {
            return Err(err(
                &format!("{at}.headers[{i}].name"),
                "content-type is set by contentType already: keep one of them".into(),
            ));
        }
        template(
            &h.value,
            Scope::Error,
            &format!("{at}.headers[{i}].value"),
            err,
        )?;
        headers.push((name, h.value));
    }
    if let Some(b) = &e.body_template {
        template(b, Scope::Error, &format!("{at}.bodyTemplate"), err)?;
    }
    Ok(JwtErrorResponse {
        content_type: e.content_type,
        headers,
        body_template: e.body_template,
    })
}

/// A JWT Filter's algorithms when `validAlgorithms` is left out, as in
/// Ambassador.
const AES_DEFAULT_ALGORITHMS: [&str; 3] = ["RS256", "RS384", "RS512"];

/// What `validAlgorithms` may name: the algorithms of public keys.
const JWKS_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

fn oauth2(o: RawOAuth2, err: ErrFn<'_>) -> Result<FilterKind, ResourceError> {
    if o.secret.is_some() {
        return Err(err(
            "spec.OAuth2.secret",
            "a client secret is never written into resources here: put it in a Secret (key oauth2-client-secret) and name it in secretName".into(),
        ));
    }
    let secret_name = o.secret_name.ok_or_else(|| {
        err(
            "spec.OAuth2.secretName",
            "name the Secret that holds the client secret (key oauth2-client-secret)".into(),
        )
    })?;
    if o.grant_type
        .as_deref()
        .is_some_and(|g| g != "AuthorizationCode")
    {
        return Err(err(
            "spec.OAuth2.grantType",
            "only AuthorizationCode is supported; machine clients use a JWT Filter".into(),
        ));
    }
    let origin = match o.protected_origins.as_slice() {
        [one] => one.origin.trim_end_matches('/').to_owned(),
        _ => {
            return Err(err(
                "spec.OAuth2.protectedOrigins",
                "exactly one origin is supported yet (e.g. https://app.example.com)".into(),
            ));
        }
    };
    url(&origin, "spec.OAuth2.protectedOrigins[0].origin", err)?;
    url(&o.authorization_url, "spec.OAuth2.authorizationURL", err)?;
    if let Some(after) = &o.post_logout_redirect_uri {
        url(after, "spec.OAuth2.postLogoutRedirectURI", err)?;
    }
    let mut inject = Vec::new();
    for (i, h) in o.inject_request_headers.into_iter().enumerate() {
        let at = format!("spec.OAuth2.injectRequestHeaders[{i}]");
        header_name(&h.name, &format!("{at}.name"), err)?;
        template(&h.value, Scope::OAuth2, &format!("{at}.value"), err)?;
        inject.push((h.name.to_ascii_lowercase(), h.value));
    }
    Ok(FilterKind::OAuth2(OAuth2Filter {
        authorization_url: o.authorization_url,
        client_id: o.client_id,
        secret_name,
        origin,
        scopes: o
            .scopes
            .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]),
        extra_params: o.extra_params,
        post_logout_redirect: o.post_logout_redirect_uri,
        inject,
    }))
}

fn path_match(glob: &str, path: &str, err: ErrFn<'_>) -> Result<PathMatch, ResourceError> {
    if glob == "*" || glob == "/*" {
        return Ok(PathMatch::Any);
    }
    if !glob.starts_with('/') {
        return Err(err(path, format!("{glob:?}: a path starts with /")));
    }
    match glob.find('*') {
        None => Ok(PathMatch::Exact(glob.to_owned())),
        Some(i) if i == glob.len() - 1 => Ok(PathMatch::Prefix(glob[..i].to_owned())),
        Some(_) => Err(err(
            path,
            format!("{glob:?}: only a trailing * is supported (e.g. /api/*)"),
        )),
    }
}

pub(crate) fn policy(
    raw: RawDoc<RawPolicySpec>,
    err: ErrFn<'_>,
) -> Result<FilterPolicy, ResourceError> {
    let mut rules = Vec::new();
    for (i, r) in raw.spec.rules.into_iter().enumerate() {
        let at = |field: &str| format!("spec.rules[{i}].{field}");
        let host = r.host.unwrap_or_else(|| "*".into());
        if host != "*" && host.contains('*') {
            return Err(err(
                &at("host"),
                format!("{host:?}: write * or one host name; host globs are not supported yet"),
            ));
        }
        let path = path_match(r.path.as_deref().unwrap_or("*"), &at("path"), err)?;
        let mut filters = Vec::new();
        for (j, f) in r.filters.unwrap_or_default().into_iter().enumerate() {
            let fat = |field: &str| format!("spec.rules[{i}].filters[{j}].{field}");
            if f.on_deny.as_deref().is_some_and(|v| v != "break") {
                return Err(err(
                    &fat("onDeny"),
                    "only break is supported: a denied request is answered".into(),
                ));
            }
            if f.on_allow.as_deref().is_some_and(|v| v != "continue") {
                return Err(err(
                    &fat("onAllow"),
                    "only continue is supported: an allowed request meets the next filter".into(),
                ));
            }
            let if_header = match f.if_request_header {
                None => None,
                Some(h) => {
                    readable_header(&h.name, &fat("ifRequestHeader.name"), err)?;
                    if h.value.is_some() && h.value_regex.is_some() {
                        return Err(err(
                            &fat("ifRequestHeader"),
                            "value or valueRegex, not both".into(),
                        ));
                    }
                    Some(HeaderCondition {
                        name: h.name.to_ascii_lowercase(),
                        value: h.value,
                        value_regex: h.value_regex,
                        negate: h.negate,
                    })
                }
            };
            let arguments = f.arguments.unwrap_or_default();
            if arguments.scope.is_some() {
                return Err(err(
                    &fat("arguments.scope"),
                    "per-rule scopes are not supported yet: set the scopes on the OAuth2 Filter (scopes)".into(),
                ));
            }
            let instead_of_redirect = arguments
                .instead_of_redirect
                .map(|i| instead_of_redirect(i, &fat("arguments.insteadOfRedirect"), err))
                .transpose()?;
            filters.push(FilterUse {
                name: f.name,
                if_header,
                instead_of_redirect,
            });
        }
        if filters.iter().filter(|f| f.if_header.is_some()).count() > 1 {
            return Err(err(
                &at("filters"),
                "at most one filter of a rule may have ifRequestHeader yet: split the rule".into(),
            ));
        }
        let path = match path {
            PathMatch::Prefix(p) if filters.is_empty() && !p.ends_with('/') => {
                PathMatch::Segments(p)
            }
            other => other,
        };
        rules.push(PolicyRule {
            host,
            path,
            filters,
        });
    }
    Ok(FilterPolicy {
        name: raw.metadata.name,
        rules,
    })
}

#[cfg(test)]
mod tests {
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
