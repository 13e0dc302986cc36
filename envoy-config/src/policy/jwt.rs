//! The `JWT` Filter: Ambassador's fields, checked and turned into what
//! gatehouse-jwt takes.

use gatehouse_template_core::Scope;
use serde::Deserialize;

use super::{
    FilterKind, JwtErrorResponse, JwtFilter, RawInject, header_name, seconds, template, url,
};
use crate::doc::{ErrFn, ResourceError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::struct_excessive_bools)]
pub(super) struct RawJwt {
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
pub(super) struct RawJwtErrorResponse {
    #[serde(default, rename = "contentType")]
    content_type: Option<String>,
    #[serde(default)]
    realm: Option<String>,
    #[serde(default)]
    headers: Vec<RawInject>,
    #[serde(default, rename = "bodyTemplate")]
    body_template: Option<String>,
}

pub(super) fn jwt(j: RawJwt, realm: String, err: ErrFn<'_>) -> Result<FilterKind, ResourceError> {
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

pub(super) fn jwt_error_response(
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
pub(super) const AES_DEFAULT_ALGORITHMS: [&str; 3] = ["RS256", "RS384", "RS512"];

/// What `validAlgorithms` may name: the algorithms of public keys.
pub(super) const JWKS_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
