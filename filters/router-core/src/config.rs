//! The filter's configuration: JSON in Envoy's `configuration` field.

use serde::Deserialize;

/// Header the filter writes the chosen target to unless renamed; the route
/// table reads it with `cluster_header`.
pub const DEFAULT_ROUTE_HEADER: &str = "x-gatehouse-route";

/// Why a configuration was refused. `Display` names the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Field path, `.` for the document.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    route_header: Option<String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default, rename = "match")]
    matcher: RawMatch,
    #[serde(default)]
    bucket: Option<RawBucket>,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    set_headers: Vec<RawHeader>,
    #[serde(default)]
    remove_headers: Vec<String>,
    #[serde(default)]
    rewrite_prefix: Option<RawRewrite>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: Vec<RawValueMatch>,
    #[serde(default)]
    cookies: Vec<RawValueMatch>,
    #[serde(default)]
    query: Vec<RawValueMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValueMatch {
    name: String,
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    present: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
    percent: f64,
    #[serde(default)]
    salt: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRewrite {
    from: String,
    to: String,
}

/// How one value (header, cookie, query parameter) must look.
pub(crate) use gatehouse_http_core::value::ValueMatch;

/// Where a sticky bucket's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BucketKey {
    Header(String),
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bucket {
    pub(crate) key: BucketKey,
    /// Buckets below this (of 10 000) are in: percent × 100.
    pub(crate) below: u32,
    pub(crate) salt: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub(crate) prefix: Option<String>,
    pub(crate) method: Option<String>,
    pub(crate) headers: Vec<(String, ValueMatch)>,
    pub(crate) cookies: Vec<(String, ValueMatch)>,
    pub(crate) query: Vec<(String, ValueMatch)>,
    pub(crate) bucket: Option<Bucket>,
    pub(crate) route: Option<String>,
    pub(crate) set_headers: Vec<(String, String)>,
    pub(crate) remove_headers: Vec<String>,
    pub(crate) rewrite_prefix: Option<(String, String)>,
}

/// A validated configuration. Build it with [`RouterConfig::parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct RouterConfig {
    pub(crate) route_header: String,
    pub(crate) rules: Vec<Rule>,
    /// Headers a decision reads, collected once (checked for every header
    /// of every request).
    read: Vec<String>,
}

fn value_match(raw: RawValueMatch, at: &str) -> Result<(String, ValueMatch), ConfigError> {
    if raw.name.is_empty() {
        return Err(invalid(format!("{at}.name"), "the name is empty"));
    }
    let m = match (raw.exact, raw.prefix, raw.present) {
        (Some(v), None, None) => ValueMatch::Exact(v),
        (None, Some(p), None) => ValueMatch::Prefix(p),
        (None, None, Some(p)) => ValueMatch::Present(p),
        (None, None, None) => ValueMatch::Present(true),
        _ => return Err(invalid(at, "use one of exact, prefix or present")),
    };
    Ok((raw.name, m))
}

impl RouterConfig {
    /// Parses the plugin configuration; empty input gives no rules.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field path: malformed JSON, an unknown
    /// field, or an invalid value.
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self {
                route_header: DEFAULT_ROUTE_HEADER.to_owned(),
                rules: Vec::new(),
                read: Vec::new(),
            });
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(e.path().to_string(), e.inner().to_string()))?;
        let route_header = raw
            .route_header
            .unwrap_or_else(|| DEFAULT_ROUTE_HEADER.to_owned())
            .to_ascii_lowercase();
        if !gatehouse_http_core::header::is_config_name(&route_header) {
            return Err(invalid(
                "route_header",
                format!("{route_header:?} is not a header name"),
            ));
        }
        let mut rules = Vec::new();
        for (i, r) in raw.rules.into_iter().enumerate() {
            let at = format!("rules[{i}]");
            let lower = |list: Vec<RawValueMatch>, what: &str, headers: bool| {
                list.into_iter()
                    .enumerate()
                    .map(|(j, m)| {
                        let (name, v) = value_match(m, &format!("{at}.match.{what}[{j}]"))?;
                        Ok((
                            if headers {
                                name.to_ascii_lowercase()
                            } else {
                                name
                            },
                            v,
                        ))
                    })
                    .collect::<Result<Vec<_>, ConfigError>>()
            };
            let bucket = match r.bucket {
                None => None,
                Some(b) => {
                    if !(0.0..=100.0).contains(&b.percent) {
                        return Err(invalid(
                            format!("{at}.bucket.percent"),
                            "write a percentage from 0 to 100",
                        ));
                    }
                    let key = match (b.header, b.cookie) {
                        (Some(h), None) if !h.is_empty() => {
                            BucketKey::Header(h.to_ascii_lowercase())
                        }
                        (None, Some(c)) if !c.is_empty() => BucketKey::Cookie(c),
                        _ => {
                            return Err(invalid(
                                format!("{at}.bucket"),
                                "name exactly one of header or cookie to keep each user in one bucket",
                            ));
                        }
                    };
                    Some(Bucket {
                        key,
                        // Hundredths of a percent: 0.01 % steps.
                        below: (b.percent * 100.0).round() as u32,
                        salt: b.salt.unwrap_or_default(),
                    })
                }
            };
            if r.route.is_none()
                && r.set_headers.is_empty()
                && r.remove_headers.is_empty()
                && r.rewrite_prefix.is_none()
            {
                return Err(invalid(
                    &at,
                    "a rule needs an action: route, set_headers, remove_headers or rewrite_prefix",
                ));
            }
            if let Some(route) = &r.route
                && (route.is_empty() || !route.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(invalid(
                    format!("{at}.route"),
                    "name the target with visible ASCII",
                ));
            }
            let mut set_headers = Vec::new();
            for (j, h) in r.set_headers.into_iter().enumerate() {
                let name = h.name.to_ascii_lowercase();
                if !gatehouse_http_core::header::is_config_name(&name) || name == route_header {
                    return Err(invalid(
                        format!("{at}.set_headers[{j}].name"),
                        "a header name (the route header is set by route)",
                    ));
                }
                set_headers.push((name, h.value));
            }
            let rewrite_prefix = match r.rewrite_prefix {
                None => None,
                Some(rw) if rw.from.starts_with('/') && rw.to.starts_with('/') => {
                    Some((rw.from, rw.to))
                }
                Some(_) => {
                    return Err(invalid(
                        format!("{at}.rewrite_prefix"),
                        "from and to are paths starting with /",
                    ));
                }
            };
            rules.push(Rule {
                prefix: r.matcher.prefix,
                method: r.matcher.method,
                headers: lower(r.matcher.headers, "headers", true)?,
                cookies: lower(r.matcher.cookies, "cookies", false)?,
                query: lower(r.matcher.query, "query", false)?,
                bucket,
                route: r.route,
                set_headers,
                remove_headers: r
                    .remove_headers
                    .into_iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
                rewrite_prefix,
            });
        }
        let read = read_headers(&rules);
        Ok(Self {
            route_header,
            rules,
            read,
        })
    }

    /// The header the chosen target goes in.
    #[must_use]
    pub fn route_header(&self) -> &str {
        &self.route_header
    }

    /// Whether a decision may read request header `name` (lowercase): an
    /// adapter may pass only these in [`crate::Request::headers`].
    #[must_use]
    pub fn reads_header(&self, name: &str) -> bool {
        self.read.iter().any(|h| h == name)
    }
}

/// The headers `rules` read: their header matches, bucket headers, and
/// `cookie` for cookie matches and cookie buckets.
fn read_headers(rules: &[Rule]) -> Vec<String> {
    let mut names: Vec<String> = rules
        .iter()
        .flat_map(|r| {
            let bucket = match &r.bucket {
                Some(Bucket {
                    key: BucketKey::Header(h),
                    ..
                }) => Some(h.as_str()),
                Some(Bucket {
                    key: BucketKey::Cookie(_),
                    ..
                }) => Some("cookie"),
                None => None,
            };
            r.headers
                .iter()
                .map(|(n, _)| n.as_str())
                .chain(bucket)
                .chain((!r.cookies.is_empty()).then_some("cookie"))
                .map(str::to_owned)
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}
