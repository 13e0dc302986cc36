//! The service's YAML configuration: named filters, each of one kind.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The `context_extensions` key an Envoy route sets to pick a filter:
/// `context_extensions: { gatehouse_filter: <name> }`.
pub const FILTER_EXTENSION: &str = "gatehouse_filter";

/// Header that carries an API key's client name upstream unless renamed.
pub const DEFAULT_CLIENT_HEADER: &str = "x-gatehouse-client";

/// Why a configuration (or a key file) was refused. `Display` gives
/// `file: field.path: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {path}: {message}")]
pub struct ConfigError {
    /// The file, as the service named it.
    pub file: String,
    /// Field path inside the file, `.` for the document itself.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl ConfigError {
    /// A YAML error at the path `serde_path_to_error` tracked. The YAML
    /// parser may prefix its message with a path of its own: dropped, so the
    /// path is said once; its line and column stay.
    pub(crate) fn yaml(
        file: &str,
        error: serde_path_to_error::Error<serde_yaml_ng::Error>,
    ) -> Self {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        let message = match message.split_once(": ") {
            Some((head, rest)) if !head.contains(' ') && path.starts_with(head) => rest.to_owned(),
            _ => message,
        };
        Self::new(file, path, message)
    }

    pub(crate) fn new(file: &str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            path: path.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    default_filter: Option<String>,
    #[serde(default)]
    filters: BTreeMap<String, RawFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    #[serde(default)]
    api_keys: Option<RawApiKeys>,
    #[serde(default)]
    oidc: Option<RawOidc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    client_id: String,
    #[serde(default)]
    client_secret_file: Option<String>,
    #[serde(default)]
    client_secret_env: Option<String>,
    #[serde(default)]
    client_auth: Option<String>,
    #[serde(default)]
    private_key_file: Option<String>,
    #[serde(default)]
    private_key_id: Option<String>,
    callback_url: String,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    extra_auth_params: BTreeMap<String, String>,
    #[serde(default)]
    logout_path: Option<String>,
    #[serde(default)]
    post_logout_redirect_url: Option<String>,
    #[serde(default)]
    rp_initiated_logout: Option<bool>,
    session_keys_file: String,
    #[serde(default)]
    cookie_name: Option<String>,
    #[serde(default)]
    cookie_domain: Option<String>,
    #[serde(default)]
    cookie_path: Option<String>,
    #[serde(default)]
    cookie_secure: Option<bool>,
    #[serde(default)]
    idle_timeout_seconds: Option<u64>,
    #[serde(default)]
    absolute_timeout_seconds: Option<u64>,
    #[serde(default)]
    refresh_margin_seconds: Option<u64>,
    #[serde(default)]
    user_header: Option<String>,
    #[serde(default)]
    email_header: Option<String>,
    #[serde(default)]
    groups_header: Option<String>,
    #[serde(default)]
    forward_access_token: bool,
    #[serde(default)]
    public_paths: Vec<String>,
    #[serde(default)]
    required_groups: Vec<String>,
    #[serde(default)]
    discovery_refresh_seconds: Option<u64>,
    #[serde(default)]
    bearer: Option<RawBearer>,
    #[serde(default)]
    forward_id_token: bool,
    #[serde(default)]
    required_claims: Vec<RawClaimRequirement>,
    #[serde(default)]
    session_store: Option<RawSessionStore>,
    #[serde(default)]
    backchannel_logout_path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimRequirement {
    claim: String,
    #[serde(default)]
    equals: Option<serde_json::Value>,
    #[serde(default)]
    one_of: Option<Vec<serde_json::Value>>,
}

/// A claim the ID token (or a bearer token) must carry: a value equal to
/// `equals`, or one of `one_of`; an array claim holds when any element does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequirement {
    /// Claim name; dots reach into objects (`realm_access.roles`).
    pub claim: String,
    /// The values that satisfy it.
    pub accepted: Vec<serde_json::Value>,
}

impl ClaimRequirement {
    /// Whether `claims` satisfy this requirement.
    #[must_use]
    pub fn holds(&self, claims: &serde_json::Map<String, serde_json::Value>) -> bool {
        let mut path = self.claim.split('.');
        let first = path.next().and_then(|k| claims.get(k));
        let value = path.try_fold(first, |v, k| Some(v.and_then(|v| v.get(k))));
        match value.flatten() {
            Some(serde_json::Value::Array(items)) => {
                items.iter().any(|i| self.accepted.contains(i))
            }
            Some(v) => self.accepted.contains(v),
            None => false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessionStore {
    redis_url: String,
    #[serde(default)]
    key_prefix: Option<String>,
}

/// Sessions kept in Redis: the cookie holds only a sealed reference, so
/// large tokens fit and a session can be ended from the server side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSessionStore {
    /// `redis://` or `rediss://` URL (credentials may be in it: never logged).
    pub redis_url: String,
    /// Prefix of every key the store writes.
    pub key_prefix: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBearer {
    issuer: String,
    #[serde(default)]
    audiences: Option<Vec<String>>,
    jwks_file: String,
}

/// Machine clients: a bearer JWT from this issuer passes without a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerTokens {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// One of these must be in `aud`. Default: the filter's `client_id`;
    /// never empty (a token minted for another service does not pass).
    pub audiences: Vec<String>,
    /// The issuer's keys, a JWKS file relative to the configuration file.
    pub jwks_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKeys {
    #[serde(default)]
    from: Option<Vec<RawLocation>>,
    #[serde(default)]
    keys_file: Option<String>,
    #[serde(default)]
    keys_dir: Option<String>,
    #[serde(default)]
    client_header: Option<String>,
    #[serde(default)]
    forward_key: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    query: Option<String>,
}

/// A validated configuration. Build it with [`AuthzConfig::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzConfig {
    default_filter: Option<String>,
    filters: BTreeMap<String, FilterKind>,
}

/// What one named filter does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterKind {
    /// API keys.
    ApiKeys(ApiKeyFilter),
    /// OpenID Connect single sign-on.
    Oidc(Box<OidcFilter>),
}

/// How the service authenticates to the IdP's token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (the default).
    SecretBasic,
    /// The id and secret in the form body.
    SecretPost,
    /// A JWT signed with the client's private key (RFC 7523): no shared
    /// secret at all.
    PrivateKeyJwt {
        /// PEM private key (RSA or P-256), relative to the configuration file.
        key_file: String,
        /// The `kid` the IdP knows the public key by, if any.
        key_id: Option<String>,
    },
}

/// Where the client secret comes from: never the configuration file itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file (relative to the configuration file), trailing newline ignored.
    File(String),
    /// An environment variable.
    Env(String),
}

/// An OpenID Connect filter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcFilter {
    /// The issuer exactly as configured (a trailing `/` included): OpenID
    /// Connect Discovery §4.3 requires the discovered `issuer` to be
    /// identical. Discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The client id.
    pub client_id: String,
    /// The client secret's source (none with `private_key_jwt`).
    pub client_secret: Option<SecretSource>,
    /// Token endpoint authentication.
    pub client_auth: ClientAuth,
    /// The redirect URI registered at the IdP; its path is answered here.
    pub callback_url: String,
    /// The path part of `callback_url`.
    pub callback_path: String,
    /// Scopes asked for (`openid` always included).
    pub scopes: Vec<String>,
    /// Extra authorization request parameters.
    pub extra_auth_params: BTreeMap<String, String>,
    /// POST here logs out (RP-initiated when the IdP supports it).
    pub logout_path: String,
    /// Where the IdP sends the browser after logout.
    pub post_logout_redirect_url: Option<String>,
    /// Whether logout goes on to the IdP's `end_session_endpoint` (default
    /// true); false ends only the session here.
    pub rp_initiated_logout: bool,
    /// The session key file (relative to the configuration file).
    pub session_keys_file: String,
    /// Session cookie name; the login cookie is `<name>_login`.
    pub cookie_name: String,
    /// Cookie `Domain`.
    pub cookie_domain: Option<String>,
    /// Cookie `Path`.
    pub cookie_path: String,
    /// Cookie `Secure`.
    pub cookie_secure: bool,
    /// Idle timeout, seconds.
    pub idle_timeout_secs: u64,
    /// Absolute timeout, seconds.
    pub absolute_timeout_secs: u64,
    /// Refresh an access token this close to expiry, seconds.
    pub refresh_margin_secs: u64,
    /// Header carrying `sub` upstream.
    pub user_header: String,
    /// Header carrying `email` upstream.
    pub email_header: String,
    /// Header carrying `groups` (comma-separated) upstream.
    pub groups_header: String,
    /// Send `Authorization: Bearer <access token>` upstream.
    pub forward_access_token: bool,
    /// Path prefixes that need no login, matched on segment boundaries
    /// (see [`OidcFilter::is_public`]).
    pub public_paths: Vec<String>,
    /// A session must be in one of these groups (none: any session).
    pub required_groups: Vec<String>,
    /// How often discovery is read again, seconds.
    pub discovery_refresh_secs: u64,
    /// Bearer JWTs accepted instead of a session, if configured.
    pub bearer: Option<BearerTokens>,
    /// Send `Authorization: Bearer <ID token>` upstream.
    pub forward_id_token: bool,
    /// Claims a login (or bearer token) must carry, else 403.
    pub required_claims: Vec<ClaimRequirement>,
    /// Sessions in Redis instead of whole in the cookie.
    pub session_store: Option<RedisSessionStore>,
    /// Where the IdP posts back-channel logout tokens (Redis store only).
    pub backchannel_logout_path: String,
}

impl OidcFilter {
    /// Whether `path` (the request's `:path`; the query is ignored) needs no
    /// login: it is under one of `public_paths` on a segment boundary
    /// (`/health` covers `/health`, `/health/…`, `/health?…`, not
    /// `/healthz`; `/assets/` covers everything below it). A path with dot
    /// segments, `//`, `\` or encoded `.`, `/`, `\` is never public.
    #[must_use]
    pub fn is_public(&self, path: &str) -> bool {
        self.public_paths
            .iter()
            .any(|p| crate::web::is_under(path, p))
    }

    /// The associated data a value sealed for this filter's cookie (or
    /// session store) `what` is bound to: the cookie's use, the filter's
    /// name, the client id and the issuer. Two filters that share keys and a
    /// cookie name still cannot open each other's sessions.
    #[must_use]
    pub fn seal_purpose(&self, filter_name: &str, what: &str) -> String {
        // A JSON array: unambiguous whatever the parts contain.
        serde_json::json!([
            "gatehouse-authz/1",
            what,
            filter_name,
            self.client_id,
            self.issuer
        ])
        .to_string()
    }
}

/// An API-key filter's settings (the keys themselves load separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyFilter {
    /// Where the key is looked for, in order; the first present wins.
    pub from: Vec<KeyLocation>,
    /// Where the hashed keys come from.
    pub source: KeySource,
    /// Request header that carries the client's name upstream.
    pub client_header: String,
    /// Whether the key itself goes on upstream (default: removed).
    pub forward_key: bool,
}

/// Where a request carries its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// A request header (lowercase name); its whole value is the key.
    Header(String),
    /// A query parameter.
    Query(String),
}

/// Where a filter's keys are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A YAML file of `keys: [{name, sha256}]`: only hashes on disk.
    File(String),
    /// A directory with one file per client, named for the client, holding
    /// the key (a mounted Kubernetes Secret). Keys are hashed when read.
    Dir(String),
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl AuthzConfig {
    /// Parses the YAML text of `file` (the name is only used in errors).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and field path: malformed YAML, an
    /// unknown field, or an invalid value.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawConfig =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::yaml(file, e))?;
        let mut filters = BTreeMap::new();
        for (name, f) in raw.filters {
            let at = format!("filters.{name}");
            if name.is_empty() {
                return Err(ConfigError::new(file, "filters", "a filter name is empty"));
            }
            let kind = match (f.api_keys, f.oidc) {
                (Some(keys), None) => {
                    FilterKind::ApiKeys(api_keys(keys, file, &format!("{at}.api_keys"))?)
                }
                (None, Some(oidc)) => {
                    FilterKind::Oidc(Box::new(oidc_filter(oidc, file, &format!("{at}.oidc"))?))
                }
                _ => {
                    return Err(ConfigError::new(
                        file,
                        at,
                        "a filter needs exactly one kind: api_keys or oidc",
                    ));
                }
            };
            filters.insert(name, kind);
        }
        if let Some(default) = &raw.default_filter
            && !filters.contains_key(default)
        {
            return Err(ConfigError::new(
                file,
                "default_filter",
                format!("no filter is named {default:?}"),
            ));
        }
        Ok(Self {
            default_filter: raw.default_filter,
            filters,
        })
    }

    /// The filter used when a route names none.
    #[must_use]
    pub fn default_filter(&self) -> Option<&str> {
        self.default_filter.as_deref()
    }

    /// The filters by name.
    #[must_use]
    pub fn filters(&self) -> &BTreeMap<String, FilterKind> {
        &self.filters
    }
}

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

fn oidc_filter(raw: RawOidc, file: &str, at: &str) -> Result<OidcFilter, ConfigError> {
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
        if is_header_name(&h) {
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
    Ok(OidcFilter {
        // Exactly as written: discovery must return this very string.
        issuer: raw.issuer,
        client_id: client_id.clone(),
        client_secret,
        client_auth,
        callback_url: raw.callback_url,
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
    })
}

fn api_keys(raw: RawApiKeys, file: &str, at: &str) -> Result<ApiKeyFilter, ConfigError> {
    let from = match raw.from {
        None => vec![KeyLocation::Header("x-api-key".to_owned())],
        Some(list) if list.is_empty() => {
            return Err(ConfigError::new(
                file,
                format!("{at}.from"),
                "name at least one header or query parameter, or leave from out for x-api-key",
            ));
        }
        Some(list) => list
            .into_iter()
            .enumerate()
            .map(|(i, l)| match (l.header, l.query) {
                (Some(h), None) if is_header_name(&h.to_ascii_lowercase()) => {
                    Ok(KeyLocation::Header(h.to_ascii_lowercase()))
                }
                (None, Some(q)) if !q.is_empty() => Ok(KeyLocation::Query(q)),
                _ => Err(ConfigError::new(
                    file,
                    format!("{at}.from[{i}]"),
                    "name exactly one of header or query",
                )),
            })
            .collect::<Result<_, _>>()?,
    };
    let source = match (raw.keys_file, raw.keys_dir) {
        (Some(f), None) if !f.is_empty() => KeySource::File(f),
        (None, Some(d)) if !d.is_empty() => KeySource::Dir(d),
        _ => {
            return Err(ConfigError::new(
                file,
                at,
                "name exactly one of keys_file (hashed keys) or keys_dir (a mounted secret)",
            ));
        }
    };
    let client_header = raw
        .client_header
        .unwrap_or_else(|| DEFAULT_CLIENT_HEADER.to_owned())
        .to_ascii_lowercase();
    if !is_header_name(&client_header) {
        return Err(ConfigError::new(
            file,
            format!("{at}.client_header"),
            format!("{client_header:?} is not a header name"),
        ));
    }
    if from
        .iter()
        .any(|l| matches!(l, KeyLocation::Header(h) if *h == client_header))
    {
        return Err(ConfigError::new(
            file,
            format!("{at}.client_header"),
            "the client header cannot also carry the key",
        ));
    }
    Ok(ApiKeyFilter {
        from,
        source,
        client_header,
        forward_key: raw.forward_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        AuthzConfig::parse(text, "authz.yaml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn an_api_key_filter_gets_its_defaults() {
        let config = AuthzConfig::parse(
            "filters:\n  partners:\n    api_keys:\n      keys_file: keys.yaml\n",
            "authz.yaml",
        )
        .unwrap();
        let FilterKind::ApiKeys(f) = &config.filters()["partners"] else {
            panic!("api keys expected")
        };
        assert_eq!(f.from, [KeyLocation::Header("x-api-key".into())]);
        assert_eq!(f.source, KeySource::File("keys.yaml".into()));
        assert_eq!(f.client_header, DEFAULT_CLIENT_HEADER);
        assert!(!f.forward_key);
        assert_eq!(config.default_filter(), None);
    }

    const OIDC: &str = "filters:\n  sso:\n    oidc:\n      issuer: https://idp.example/\n      client_id: app\n      client_secret_file: secret\n      callback_url: https://app.example/.gatehouse/oidc/callback\n      session_keys_file: session-keys\n";

    #[test]
    fn an_oidc_filter_gets_secure_defaults() {
        let config = AuthzConfig::parse(OIDC, "authz.yaml").unwrap();
        let FilterKind::Oidc(f) = &config.filters()["sso"] else {
            panic!("oidc expected")
        };
        assert_eq!(f.issuer, "https://idp.example/", "exactly as written");
        assert_eq!(f.callback_path, "/.gatehouse/oidc/callback");
        assert_eq!(f.logout_path, "/.gatehouse/oidc/logout");
        assert_eq!(f.scopes, ["openid", "email", "profile"]);
        assert!(f.cookie_secure);
        assert_eq!(f.cookie_name, "gatehouse_session");
        assert_eq!(f.client_auth, ClientAuth::SecretBasic);
        assert_eq!(f.client_secret, Some(SecretSource::File("secret".into())));
        assert_eq!(
            (f.user_header.as_str(), f.groups_header.as_str()),
            ("x-gatehouse-user", "x-gatehouse-groups")
        );
    }

    #[test]
    fn required_claims_match_values_arrays_and_nested_claims() {
        let config = AuthzConfig::parse(
            &format!("{OIDC}      required_claims:\n        - {{claim: email_verified, equals: true}}\n        - {{claim: realm.roles, one_of: [admin, ops]}}\n"),
            "authz.yaml",
        )
        .unwrap();
        let FilterKind::Oidc(f) = &config.filters()["sso"] else {
            panic!("oidc expected")
        };
        let claims = |v: serde_json::Value| v.as_object().cloned().unwrap();
        let ok =
            claims(serde_json::json!({"email_verified": true, "realm": {"roles": ["dev", "ops"]}}));
        assert!(f.required_claims.iter().all(|r| r.holds(&ok)));
        let unverified =
            claims(serde_json::json!({"email_verified": false, "realm": {"roles": ["ops"]}}));
        assert!(!f.required_claims[0].holds(&unverified));
        let no_role =
            claims(serde_json::json!({"email_verified": true, "realm": {"roles": ["dev"]}}));
        assert!(!f.required_claims[1].holds(&no_role));
        assert!(!f.required_claims[1].holds(&claims(serde_json::json!({}))));
        assert!(
            err(&format!("{OIDC}      required_claims: [{{claim: x}}]\n"))
                .contains("filters.sso.oidc.required_claims[0]: name a claim and exactly one of equals or one_of")
        );
    }

    #[test]
    fn oidc_errors_name_the_field() {
        let with = |extra: &str| err(&format!("{OIDC}      {extra}\n"));
        assert!(
            with("client_auth: tls_client_auth")
                .contains("filters.sso.oidc.client_auth: \"tls_client_auth\" is not supported")
        );
        assert!(
            with("client_auth: private_key_jwt\n      private_key_file: k.pem")
                .contains("private_key_jwt needs no client secret")
        );
        assert!(with("client_auth: private_key_jwt").contains(
            "filters.sso.oidc.private_key_file: private_key_jwt signs with a private key"
        ));
        let keyed = OIDC.replace(
            "client_secret_file: secret",
            "client_auth: private_key_jwt\n      private_key_file: k.pem\n      private_key_id: k1",
        );
        let config = AuthzConfig::parse(&keyed, "authz.yaml").unwrap();
        let FilterKind::Oidc(f) = &config.filters()["sso"] else {
            panic!("oidc expected")
        };
        assert_eq!(
            f.client_auth,
            ClientAuth::PrivateKeyJwt {
                key_file: "k.pem".into(),
                key_id: Some("k1".into())
            }
        );
        assert_eq!(f.client_secret, None);
        assert!(
            with("client_secret_env: X")
                .contains("name exactly one of client_secret_file or client_secret_env")
        );
        assert!(
            with("logout_path: /.gatehouse/oidc/callback").contains("filters.sso.oidc.logout_path")
        );
        assert!(with("cookie_name: 'a b'").contains("filters.sso.oidc.cookie_name"));
        assert!(
            err(&OIDC.replace("https://idp.example/", "idp")).contains("filters.sso.oidc.issuer")
        );
        assert!(
            err(&OIDC.replace("callback_url: https://app.example", "callback_url: /x"))
                .contains("filters.sso.oidc.callback_url")
        );
    }

    #[test]
    fn an_issuer_is_kept_exactly_as_written() {
        // OpenID Connect Discovery 1.0 §4.3: the discovered issuer must be
        // identical to the configured one, trailing slash included.
        for issuer in [
            "https://idp.example/",
            "https://idp.example",
            "https://idp.example/realms/a/",
        ] {
            let config =
                AuthzConfig::parse(&OIDC.replace("https://idp.example/", issuer), "authz.yaml")
                    .unwrap();
            let FilterKind::Oidc(f) = &config.filters()["sso"] else {
                panic!("oidc expected")
            };
            assert_eq!(f.issuer, issuer);
        }
    }

    #[test]
    fn bearer_tokens_need_the_client_id_as_audience_unless_told_otherwise() {
        let bearer = |extra: &str| {
            let config = AuthzConfig::parse(
                &format!("{OIDC}      bearer:\n        issuer: https://ci.example\n        jwks_file: j.json\n{extra}"),
                "authz.yaml",
            )
            .unwrap();
            let FilterKind::Oidc(f) = &config.filters()["sso"] else {
                panic!("oidc expected")
            };
            f.bearer.clone().unwrap()
        };
        assert_eq!(bearer("").audiences, ["app"], "the client id by default");
        assert_eq!(
            bearer("        audiences: [api, app]\n").audiences,
            ["api", "app"]
        );
        assert!(
            err(&format!("{OIDC}      bearer:\n        issuer: https://ci.example\n        jwks_file: j.json\n        audiences: []\n"))
                .contains("filters.sso.oidc.bearer.audiences: name at least one audience")
        );
    }

    #[test]
    fn public_paths_are_paths_and_match_on_segment_boundaries() {
        let config = AuthzConfig::parse(
            &format!("{OIDC}      public_paths: [/health, /assets/]\n"),
            "authz.yaml",
        )
        .unwrap();
        let FilterKind::Oidc(f) = &config.filters()["sso"] else {
            panic!("oidc expected")
        };
        for open in ["/health", "/health/live", "/health?x=1", "/assets/a.css"] {
            assert!(f.is_public(open), "{open}");
        }
        for closed in [
            "/healthz-admin",
            "/healthz",
            "/assets",
            "/health/../admin",
            "/app?/health",
        ] {
            assert!(!f.is_public(closed), "{closed}");
        }
        assert!(
            err(&format!("{OIDC}      public_paths: [health]\n"))
                .contains("filters.sso.oidc.public_paths[0]: \"health\" is not a path")
        );
    }

    #[test]
    fn sealing_purposes_bind_the_filter_identity() {
        let config = AuthzConfig::parse(OIDC, "authz.yaml").unwrap();
        let FilterKind::Oidc(f) = &config.filters()["sso"] else {
            panic!("oidc expected")
        };
        let other_client = OidcFilter {
            client_id: "other".into(),
            ..(**f).clone()
        };
        let other_issuer = OidcFilter {
            issuer: "https://idp2.example".into(),
            ..(**f).clone()
        };
        let base = f.seal_purpose("sso", "gatehouse_session");
        assert_ne!(base, f.seal_purpose("sso2", "gatehouse_session"));
        assert_ne!(base, f.seal_purpose("sso", "gatehouse_session_login"));
        assert_ne!(base, other_client.seal_purpose("sso", "gatehouse_session"));
        assert_ne!(base, other_issuer.seal_purpose("sso", "gatehouse_session"));
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        assert!(
            err("filters:\n  p:\n    api_keys:\n      keys_file: k\n      colour: red\n")
                .starts_with("authz.yaml: filters.p.api_keys.colour: unknown field `colour`"),
            "{}",
            err("filters:\n  p:\n    api_keys:\n      keys_file: k\n      colour: red\n")
        );
        assert_eq!(
            err("filters:\n  p:\n    api_keys: {}\n"),
            "authz.yaml: filters.p.api_keys: name exactly one of keys_file (hashed keys) or keys_dir (a mounted secret)"
        );
        assert_eq!(
            err(
                "filters:\n  p:\n    api_keys:\n      keys_dir: d\n      from: [{header: x-a, query: b}]\n"
            ),
            "authz.yaml: filters.p.api_keys.from[0]: name exactly one of header or query"
        );
        assert_eq!(
            err("filters:\n  p: {}\n"),
            "authz.yaml: filters.p: a filter needs exactly one kind: api_keys or oidc"
        );
        assert_eq!(
            err("default_filter: q\nfilters:\n  p:\n    api_keys: {keys_dir: d}\n"),
            "authz.yaml: default_filter: no filter is named \"q\""
        );
        assert!(
            err("filters:\n  p:\n    api_keys: {keys_dir: d, client_header: \"a b\"}\n")
                .contains("filters.p.api_keys.client_header")
        );
        assert!(err("filters: [").starts_with("authz.yaml: "));
    }
}
