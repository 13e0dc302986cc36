//! The `OAuth2` Filter: Ambassador's fields, checked and turned into what
//! gatehouse-authz's `oidc` filter takes.

use std::collections::BTreeMap;

use gatehouse_template_core::Scope;
use serde::Deserialize;

use super::{FilterKind, OAuth2Filter, RawInject, header_name, template, url};
use crate::doc::{ErrFn, ResourceError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrigin {
    origin: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth2 {
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
    #[serde(default, rename = "allowMalformedAccessToken")]
    allow_malformed_access_token: bool,
    #[serde(default, rename = "fastPath")]
    fast_path: Option<bool>,
}

pub(super) fn oauth2(o: RawOAuth2, err: ErrFn<'_>) -> Result<FilterKind, ResourceError> {
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
    if o.protected_origins.is_empty() {
        return Err(err(
            "spec.OAuth2.protectedOrigins",
            "name the site's origin (e.g. https://app.example.com)".into(),
        ));
    }
    let mut origins: Vec<String> = Vec::new();
    for (i, p) in o.protected_origins.iter().enumerate() {
        let at = format!("spec.OAuth2.protectedOrigins[{i}].origin");
        let origin = p.origin.trim_end_matches('/').to_owned();
        let parsed = url(&origin, &at, err)?;
        if parsed
            .full
            .splitn(4, '/')
            .nth(3)
            .is_some_and(|path| !path.is_empty())
        {
            return Err(err(&at, format!("{origin:?}: an origin has no path")));
        }
        if origins.iter().any(|o| o.eq_ignore_ascii_case(&origin)) {
            return Err(err(&at, format!("{origin:?} is named twice")));
        }
        if origins
            .first()
            .is_some_and(|first| first.split("://").next() != origin.split("://").next())
        {
            return Err(err(
                &at,
                "the origins of one Filter share a scheme: its session cookie is Secure or not"
                    .into(),
            ));
        }
        origins.push(origin);
    }
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
    // A ticket is made once per full check: a header template that reads
    // the request cannot ride in it. Unset, such a Filter keeps every
    // request on ext_authz; asked for, it is refused.
    let reads_request = inject.iter().any(|(_, t)| {
        gatehouse_template_core::Template::parse(t, Scope::OAuth2)
            .is_ok_and(|t| t.request_headers().next().is_some())
    });
    let fast_path = match o.fast_path {
        Some(true) if reads_request => {
            return Err(err(
                "spec.OAuth2.fastPath",
                "an injectRequestHeaders template reads the request (httpRequestHeader): the fast path's ticket cannot carry it; leave fastPath out or set it to false".into(),
            ));
        }
        Some(on) => on,
        None => !reads_request,
    };
    Ok(FilterKind::OAuth2(OAuth2Filter {
        authorization_url: o.authorization_url,
        client_id: o.client_id,
        secret_name,
        origins,
        scopes: o
            .scopes
            .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]),
        extra_params: o.extra_params,
        post_logout_redirect: o.post_logout_redirect_uri,
        inject,
        allow_malformed_access_token: o.allow_malformed_access_token,
        fast_path,
    }))
}
