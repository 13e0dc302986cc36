//! An OIDC filter's settings: checked field by field into [`OidcFilter`].

use super::*;

/// `scheme://host[:port]` and the path of an absolute http(s) URL.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host_end = rest.find('/').unwrap_or(rest.len());
    if host_end == 0 || url.contains(char::is_whitespace) {
        return None;
    }
    let origin_len = url.len() - rest.len() + host_end;
    Some((
        &url[..origin_len],
        if host_end == rest.len() {
            "/"
        } else {
            &url[origin_len..]
        },
    ))
}

pub(super) fn oidc_filter(
    mut raw: RawOidc,
    file: &str,
    at: &str,
) -> Result<OidcFilter, ConfigError> {
    let field = |name: &str| format!("{at}.{name}");
    if split_url(&raw.issuer).is_none() {
        return Err(ConfigError::new(
            file,
            field("issuer"),
            "write the issuer as an http(s) URL",
        ));
    }
    if raw.client_id.is_empty() {
        return Err(ConfigError::new(
            file,
            field("client_id"),
            "the client id is empty",
        ));
    }
    let client_auth = match (raw.client_auth.as_deref(), raw.private_key_file) {
        (None | Some("client_secret_basic"), None) => ClientAuth::SecretBasic,
        (Some("client_secret_post"), None) => ClientAuth::SecretPost,
        (Some("private_key_jwt"), Some(key_file)) if !key_file.is_empty() => {
            ClientAuth::PrivateKeyJwt {
                key_file,
                key_id: raw.private_key_id,
            }
        }
        (Some("private_key_jwt"), _) => {
            return Err(ConfigError::new(
                file,
                field("private_key_file"),
                "private_key_jwt signs with a private key: name its PEM file",
            ));
        }
        (None | Some("client_secret_basic" | "client_secret_post"), Some(_)) => {
            return Err(ConfigError::new(
                file,
                field("private_key_file"),
                "a private key is only used with client_auth: private_key_jwt",
            ));
        }
        (Some(other), _) => {
            return Err(ConfigError::new(
                file,
                field("client_auth"),
                format!(
                    "{other:?} is not supported: use client_secret_basic, client_secret_post or private_key_jwt"
                ),
            ));
        }
    };
    let client_secret = match (raw.client_secret_file, raw.client_secret_env, &client_auth) {
        (None, None, ClientAuth::PrivateKeyJwt { .. }) => None,
        (_, _, ClientAuth::PrivateKeyJwt { .. }) => {
            return Err(ConfigError::new(
                file,
                at,
                "private_key_jwt needs no client secret: leave client_secret_file and client_secret_env out",
            ));
        }
        (Some(f), None, _) if !f.is_empty() => Some(SecretSource::File(f)),
        (None, Some(e), _) if !e.is_empty() => Some(SecretSource::Env(e)),
        _ => {
            return Err(ConfigError::new(
                file,
                at,
                "name exactly one of client_secret_file or client_secret_env (never the secret itself)",
            ));
        }
    };
    let Some((_, callback_path)) = split_url(&raw.callback_url) else {
        return Err(ConfigError::new(
            file,
            field("callback_url"),
            "write the redirect URI registered at the IdP, e.g. https://app.example/.gatehouse/oidc/callback",
        ));
    };
    let callback_path = callback_path.split('?').next().unwrap_or("/").to_owned();
    for (i, other) in raw.other_callback_urls.iter().enumerate() {
        if split_url(other).is_none_or(|(_, path)| path != callback_path) {
            return Err(ConfigError::new(
                file,
                field(&format!("other_callback_urls[{i}]")),
                format!("write the callback URL of another origin, with the path {callback_path}"),
            ));
        }
    }
    let logout_path = raw
        .logout_path
        .unwrap_or_else(|| "/.gatehouse/oidc/logout".to_owned());
    if !logout_path.starts_with('/') || logout_path == callback_path {
        return Err(ConfigError::new(
            file,
            field("logout_path"),
            "write a path of its own, starting with /",
        ));
    }
    if let Some(url) = &raw.post_logout_redirect_url
        && split_url(url).is_none()
    {
        return Err(ConfigError::new(
            file,
            field("post_logout_redirect_url"),
            "write an http(s) URL",
        ));
    }
    let mut scopes = raw
        .scopes
        .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let header = |value: Option<String>, default: &str, name: &str| {
        let h = value
            .unwrap_or_else(|| default.to_owned())
            .to_ascii_lowercase();
        if gatehouse_http_core::header::is_config_name(&h) {
            Ok(h)
        } else {
            Err(ConfigError::new(
                file,
                field(name),
                format!("{h:?} is not a header name"),
            ))
        }
    };
    let cookie_name = raw
        .cookie_name
        .unwrap_or_else(|| "gatehouse_session".to_owned());
    if cookie_name.is_empty()
        || !cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::new(
            file,
            field("cookie_name"),
            "use letters, digits, _ and -",
        ));
    }
    let client_id = raw.client_id;
    let idle = raw.idle_timeout_seconds.unwrap_or(8 * 3600);
    let absolute = raw.absolute_timeout_seconds.unwrap_or(24 * 3600);
    if idle == 0 || absolute == 0 {
        return Err(ConfigError::new(
            file,
            at,
            "session timeouts must be positive",
        ));
    }
    let raw_fast = raw.fast_path.take();
    let mut filter = OidcFilter {
        // Exactly as written: discovery must return this very string.
        issuer: raw.issuer,
        client_id: client_id.clone(),
        client_secret,
        client_auth,
        callback_url: raw.callback_url,
        other_callback_urls: raw.other_callback_urls,
        callback_path,
        scopes,
        extra_auth_params: raw.extra_auth_params,
        logout_path,
        post_logout_redirect_url: raw.post_logout_redirect_url,
        rp_initiated_logout: raw.rp_initiated_logout.unwrap_or(true),
        session_keys_file: raw.session_keys_file,
        cookie_name,
        cookie_domain: raw.cookie_domain,
        cookie_path: raw.cookie_path.unwrap_or_else(|| "/".to_owned()),
        cookie_secure: raw.cookie_secure.unwrap_or(true),
        idle_timeout_secs: idle,
        absolute_timeout_secs: absolute,
        refresh_margin_secs: raw.refresh_margin_seconds.unwrap_or(60),
        user_header: header(raw.user_header, "x-gatehouse-user", "user_header")?,
        email_header: header(raw.email_header, "x-gatehouse-email", "email_header")?,
        groups_header: header(raw.groups_header, "x-gatehouse-groups", "groups_header")?,
        forward_access_token: raw.forward_access_token,
        allow_malformed_access_token: raw.allow_malformed_access_token,
        inject_request_headers: raw
            .inject_request_headers
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                let at = field(&format!("inject_request_headers[{i}]"));
                if !gatehouse_http_core::header::is_config_name(&h.header) {
                    return Err(ConfigError::new(
                        file,
                        at,
                        "header: a lowercase header name",
                    ));
                }
                let t = gatehouse_template_core::Template::parse(
                    &h.template,
                    gatehouse_template_core::Scope::OAuth2,
                )
                .map_err(|m| ConfigError::new(file, format!("{at}.template"), m))?;
                Ok((h.header, t))
            })
            .collect::<Result<_, _>>()?,
        public_paths: raw
            .public_paths
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                if p.starts_with('/') && !p.contains(['?', '#']) {
                    Ok(p)
                } else {
                    Err(ConfigError::new(
                        file,
                        field(&format!("public_paths[{i}]")),
                        format!("{p:?} is not a path: write one starting with / (no query)"),
                    ))
                }
            })
            .collect::<Result<_, _>>()?,
        required_groups: raw.required_groups,
        discovery_refresh_secs: raw.discovery_refresh_seconds.unwrap_or(3600),
        forward_id_token: raw.forward_id_token,
        required_claims: raw
            .required_claims
            .into_iter()
            .enumerate()
            .map(|(i, r)| match (r.equals, r.one_of) {
                (Some(v), None) if !r.claim.is_empty() => Ok(ClaimRequirement {
                    claim: r.claim,
                    accepted: vec![v],
                }),
                (None, Some(list)) if !r.claim.is_empty() && !list.is_empty() => {
                    Ok(ClaimRequirement {
                        claim: r.claim,
                        accepted: list,
                    })
                }
                _ => Err(ConfigError::new(
                    file,
                    field(&format!("required_claims[{i}]")),
                    "name a claim and exactly one of equals or one_of (not empty)",
                )),
            })
            .collect::<Result<_, _>>()?,
        session_store: match raw.session_store {
            None => None,
            Some(r)
                if !(r.redis_url.starts_with("redis://")
                    || r.redis_url.starts_with("rediss://")
                    || r.redis_url.starts_with("redis+unix://")) =>
            {
                return Err(ConfigError::new(
                    file,
                    field("session_store.redis_url"),
                    "write a redis://, rediss:// or redis+unix:// URL",
                ));
            }
            Some(r) => Some(RedisSessionStore {
                redis_url: r.redis_url,
                key_prefix: r
                    .key_prefix
                    .unwrap_or_else(|| "gatehouse:session:".to_owned()),
            }),
        },
        backchannel_logout_path: raw
            .backchannel_logout_path
            .unwrap_or_else(|| "/.gatehouse/oidc/backchannel-logout".to_owned()),
        fast_path: None,
        bearer: match raw.bearer {
            None => None,
            Some(b) if split_url(&b.issuer).is_none() && b.issuer.is_empty() => {
                return Err(ConfigError::new(
                    file,
                    field("bearer.issuer"),
                    "the issuer is empty",
                ));
            }
            Some(b) if b.jwks_file.is_empty() => {
                return Err(ConfigError::new(
                    file,
                    field("bearer.jwks_file"),
                    "name the issuer's JWKS file",
                ));
            }
            Some(b) if b.audiences.as_ref().is_some_and(Vec::is_empty) => {
                return Err(ConfigError::new(
                    file,
                    field("bearer.audiences"),
                    "name at least one audience, or leave audiences out for the client_id",
                ));
            }
            Some(b) => Some(BearerTokens {
                issuer: b.issuer,
                audiences: b.audiences.unwrap_or_else(|| vec![client_id.clone()]),
                jwks_file: b.jwks_file,
            }),
        },
    };
    if let Some(raw) = raw_fast {
        filter.fast_path = Some(fast_path(raw, &filter, file, &field("fast_path"))?);
    }
    Ok(filter)
}

/// The fast path's settings. Refused where a ticket could not say what the
/// full check would: a header template that reads the request (a ticket
/// is made once, the request changes).
fn fast_path(
    raw: RawFastPath,
    filter: &OidcFilter,
    file: &str,
    at: &str,
) -> Result<FastPath, ConfigError> {
    if let Some((header, _)) = filter
        .inject_request_headers
        .iter()
        .find(|(_, t)| t.request_headers().next().is_some())
    {
        return Err(ConfigError::new(
            file,
            at,
            format!(
                "inject_request_headers {header:?} reads the request (httpRequestHeader): a ticket cannot carry it; turn the fast path off for this filter"
            ),
        ));
    }
    let ticket_cookie = raw
        .ticket_cookie_name
        .unwrap_or_else(|| format!("{}_ticket", filter.cookie_name));
    if ticket_cookie.is_empty()
        || !ticket_cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        || ticket_cookie == filter.cookie_name
    {
        return Err(ConfigError::new(
            file,
            format!("{at}.ticket_cookie_name"),
            "letters, digits, _ and - only, and not the session cookie's name",
        ));
    }
    let ticket_secs = raw.ticket_seconds.unwrap_or(300);
    if ticket_secs == 0 || ticket_secs > 3600 {
        return Err(ConfigError::new(
            file,
            format!("{at}.ticket_seconds"),
            "between 1 and 3600 seconds",
        ));
    }
    Ok(FastPath {
        ticket_cookie,
        ticket_secs,
    })
}
