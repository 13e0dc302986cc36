//! The envoyproxy/ratelimit configuration format: YAML files, one domain each.
//!
//! Two layers: `Raw*` structs mirror the file and refuse unknown keys; loading
//! turns them into a [`RateLimitConfig`] of compiled lookup trees, or a
//! [`ConfigError`] naming the file, the field path and the problem.

use crate::answer::{Answers, RawHeader, RawOverLimit};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

use crate::glob;
use crate::request::{Descriptor, LimitOverride};
use crate::unit::Unit;

// === raw file layer ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default, deserialize_with = "scalar")]
    domain: String,
    #[serde(default)]
    descriptors: Vec<RawDescriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDescriptor {
    #[serde(default, deserialize_with = "scalar")]
    key: String,
    #[serde(default, deserialize_with = "opt_scalar")]
    value: Option<String>,
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    descriptors: Vec<RawDescriptor>,
    #[serde(default)]
    shadow_mode: bool,
    #[serde(default)]
    quota_mode: bool,
    #[serde(default)]
    detailed_metric: bool,
    #[serde(default)]
    value_to_metric: bool,
    #[serde(default)]
    share_threshold: bool,
    // Free-form data for other tools; accepted and kept out of decisions.
    #[serde(default)]
    metadata: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    requests_per_unit: Option<u32>,
    #[serde(default)]
    unlimited: bool,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    replaces: Vec<RawReplace>,
    /// Gatehouse extension: `fixed_window` (default, as the reference) or
    /// `sliding_window`.
    #[serde(default)]
    algorithm: Option<String>,
    /// Gatehouse extensions ([`Answers`]): headers for the upstream request,
    /// for the response, and the 429's headers and body.
    #[serde(default)]
    request_headers: Vec<RawHeader>,
    #[serde(default)]
    response_headers: Vec<RawHeader>,
    #[serde(default)]
    over_limit: Option<RawOverLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplace {
    #[serde(default)]
    name: String,
}

/// YAML scalars of any type as their text, as the reference reads `key: 123`.
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(opt_scalar(d)?.unwrap_or_default())
}

fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    match serde_yaml_ng::Value::deserialize(d)? {
        serde_yaml_ng::Value::Null => Ok(None),
        serde_yaml_ng::Value::String(s) => Ok(Some(s)),
        serde_yaml_ng::Value::Number(n) => Ok(Some(n.to_string())),
        serde_yaml_ng::Value::Bool(b) => Ok(Some(b.to_string())),
        _ => Err(D::Error::custom("expected a string")),
    }
}

// === domain layer ===

/// How a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Fixed windows aligned to the unit, exactly as envoyproxy/ratelimit.
    FixedWindow,
    /// Sliding window: the previous window's count, weighted by how much of it
    /// still overlaps the last unit of time, plus the current window's count.
    /// Smooths the burst a fixed window allows at its boundary.
    SlidingWindow,
}

/// One configured limit (or an override sent by Envoy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    id: usize,
    full_key: String,
    stat_key: String,
    requests_per_unit: u32,
    unit: Unit,
    unlimited: bool,
    name: Option<String>,
    replaces: Vec<String>,
    shadow_mode: bool,
    quota_mode: bool,
    detailed_metric: bool,
    path_value_to_metric: bool,
    algorithm: Algorithm,
    answers: Option<Arc<Answers>>,
}

impl Rule {
    /// What the rule adds to the request and its response, if anything.
    #[must_use]
    pub fn answers(&self) -> Option<&Answers> {
        self.answers.as_deref()
    }
    /// Index in [`RateLimitConfig::rules`]; `usize::MAX` for overrides.
    #[must_use]
    pub fn id(&self) -> usize {
        self.id
    }
    /// The stats key, `domain.key_value.key`, sanitized as the reference's
    /// stats manager does it (see [`sanitize_stat_key`]).
    #[must_use]
    pub fn stat_key(&self) -> &str {
        &self.stat_key
    }
    /// The configuration path, `domain.key_value.key`, as written.
    #[must_use]
    pub fn full_key(&self) -> &str {
        &self.full_key
    }
    /// Requests allowed per unit.
    #[must_use]
    pub fn requests_per_unit(&self) -> u32 {
        self.requests_per_unit
    }
    /// Window unit.
    #[must_use]
    pub fn unit(&self) -> Unit {
        self.unit
    }
    /// Never limited, never counted.
    #[must_use]
    pub fn is_unlimited(&self) -> bool {
        self.unlimited
    }
    /// The rule's `name`, if any.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// Names of the rules this one replaces.
    #[must_use]
    pub fn replaces(&self) -> &[String] {
        &self.replaces
    }
    /// Counts and reports, never denies.
    #[must_use]
    pub fn is_shadow(&self) -> bool {
        self.shadow_mode
    }
    /// Reports over-limit in its status but does not deny the request alone.
    #[must_use]
    pub fn is_quota(&self) -> bool {
        self.quota_mode
    }
    /// Stats carry the request's full descriptor values.
    #[must_use]
    pub fn is_detailed(&self) -> bool {
        self.detailed_metric
    }
    /// How the rule counts.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[derive(Debug, Default)]
struct Level {
    keys: HashMap<String, KeyNodes>,
}

#[derive(Debug, Default)]
struct KeyNodes {
    by_value: HashMap<String, Node>,
    wildcards: Vec<(String, Node)>,
    any_value: Option<Node>,
}

#[derive(Debug)]
struct Node {
    rule: Option<Arc<Rule>>,
    children: Level,
    share_threshold: bool,
    value_to_metric: bool,
}

/// A loaded configuration: every domain of every file.
#[derive(Debug, Default)]
pub struct RateLimitConfig {
    domains: HashMap<String, Level>,
    rules: Vec<Arc<Rule>>,
    dump: String,
}

/// The limit that applies to one request descriptor.
#[derive(Debug, Clone)]
pub struct Matched {
    /// The rule.
    pub rule: Arc<Rule>,
    /// Counter key without window: `domain_key_value_..._`, as the reference,
    /// with `_` and `\` escaped in values and long values digested (see
    /// `key.rs`).
    pub counter_key: String,
    /// Stats key: the rule's, or built from the request for detailed metrics
    /// and `value_to_metric`.
    pub stat_key: String,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}: {path}{sep}{message}", sep = if path.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    /// The file (as given to the loader).
    pub file: String,
    /// Field path inside it, e.g. `descriptors[1].rate_limit.unit`.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(file: &str, path: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

impl RateLimitConfig {
    /// Loads files given as `(name, YAML text)`, e.g. every `*.yaml` of the
    /// config directory. An empty text is an empty file and adds nothing.
    ///
    /// # Errors
    /// The first problem found: YAML syntax, unknown keys, empty domain or
    /// key, a domain in two files, a key (and value) twice at one level, a bad
    /// unit, a limit with neither `requests_per_unit` nor `unlimited`, both, a
    /// `replaces` entry without name.
    pub fn load<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        Self::load_with(files, false)
    }

    /// As [`RateLimitConfig::load`]; with `merge_domains` (`MERGE_DOMAIN_CONFIG`)
    /// several files may add descriptors to one domain.
    ///
    /// # Errors
    /// As [`RateLimitConfig::load`], without the duplicate-domain error when merging.
    pub fn load_with<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
        merge_domains: bool,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let mut domain_files: HashMap<String, String> = HashMap::new();
        for (file, text) in files {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            // An empty document is an empty domain, refused below as the reference does.
            let raw: RawConfig = if text.trim().is_empty() {
                RawConfig {
                    domain: String::new(),
                    descriptors: Vec::new(),
                }
            } else {
                serde_path_to_error::deserialize(de).map_err(|e| {
                    let path = e.path().to_string();
                    ConfigError::new(
                        file,
                        if path == "." { "" } else { &path },
                        e.into_inner().to_string(),
                    )
                })?
            };
            if raw.domain.is_empty() {
                return Err(ConfigError::new(
                    file,
                    "domain",
                    "config file cannot have empty domain",
                ));
            }
            if let Some(first) = domain_files.insert(raw.domain.clone(), file.to_owned())
                && !merge_domains
            {
                return Err(ConfigError::new(
                    file,
                    "domain",
                    format!(
                        "duplicate domain '{}': already defined in {first}; each domain lives in one file",
                        raw.domain
                    ),
                ));
            }
            let mut level = config.domains.remove(&raw.domain).unwrap_or_default();
            config.build_level(
                (file, &raw.domain),
                "descriptors",
                &raw.domain,
                false,
                raw.descriptors,
                &mut level,
            )?;
            config.domains.insert(raw.domain, level);
        }
        config.dump = config.rules.iter().fold(String::new(), |mut out, r| {
            let _ = writeln!(out, "{}", describe(r));
            out
        });
        Ok(config)
    }

    fn build_level(
        &mut self,
        (file, domain): (&str, &str),
        path: &str,
        parent_stat: &str,
        parent_vtm: bool,
        raws: Vec<RawDescriptor>,
        level: &mut Level,
    ) -> Result<(), ConfigError> {
        for (i, mut raw) in raws.into_iter().enumerate() {
            let at = format!("{path}[{i}]");
            if raw.key.is_empty() {
                return Err(ConfigError::new(
                    file,
                    &format!("{at}.key"),
                    "descriptor has empty key",
                ));
            }
            // An empty value is the key alone, as the reference loads it:
            // each value counted apart, not a match on the empty string.
            if raw.value.as_deref() == Some("") {
                raw.value = None;
            }
            let key_value = match &raw.value {
                Some(v) => format!("{}_{v}", raw.key),
                None => raw.key.clone(),
            };
            if raw.share_threshold && !key_value.contains('*') {
                return Err(ConfigError::new(
                    file,
                    &format!("{at}.share_threshold"),
                    format!(
                        "share_threshold can only be used with wildcard values (containing '*'), but found key '{key_value}'"
                    ),
                ));
            }
            let stat_key = format!("{parent_stat}.{key_value}");
            let path_vtm = parent_vtm || raw.value_to_metric;
            let rule = match raw.rate_limit.take() {
                Some(rl) => Some(Arc::new(self.build_rule(
                    file,
                    &format!("{at}.rate_limit"),
                    &stat_key,
                    path_vtm,
                    rl,
                    &raw,
                )?)),
                None => None,
            };
            if let Some(rule) = &rule {
                self.rules.push(rule.clone());
            }
            let mut node = Node {
                rule,
                children: Level::default(),
                share_threshold: raw.share_threshold,
                value_to_metric: raw.value_to_metric,
            };
            let _ = &raw.metadata;
            self.build_level(
                (file, domain),
                &format!("{at}.descriptors"),
                &stat_key,
                path_vtm,
                raw.descriptors,
                &mut node.children,
            )?;

            let nodes = level.keys.entry(raw.key.clone()).or_default();
            let duplicate = || {
                ConfigError::new(
                    file,
                    &at,
                    format!(
                        "duplicate descriptor composite key '{domain}.{key_value}' at this level"
                    ),
                )
            };
            match raw.value {
                None => {
                    if nodes.any_value.is_some() {
                        return Err(duplicate());
                    }
                    nodes.any_value = Some(node);
                }
                Some(v) if v.contains('*') => {
                    if nodes.wildcards.iter().any(|(p, _)| *p == v) {
                        return Err(duplicate());
                    }
                    nodes.wildcards.push((v, node));
                }
                Some(v) => {
                    if nodes.by_value.contains_key(&v) {
                        return Err(duplicate());
                    }
                    nodes.by_value.insert(v, node);
                }
            }
        }
        Ok(())
    }

    fn build_rule(
        &self,
        file: &str,
        at: &str,
        stat_key: &str,
        path_value_to_metric: bool,
        raw: RawRateLimit,
        desc: &RawDescriptor,
    ) -> Result<Rule, ConfigError> {
        let unit = raw.unit.as_deref().and_then(Unit::parse);
        if raw.unlimited && unit.is_some() {
            return Err(ConfigError::new(
                file,
                &format!("{at}.unit"),
                "should not specify rate limit unit when unlimited: drop unit, or unlimited",
            ));
        }
        if !raw.unlimited && unit.is_none() {
            return Err(ConfigError::new(
                file,
                &format!("{at}.unit"),
                format!(
                    "invalid rate limit unit '{}': use second, minute, hour, day, week, month or year",
                    raw.unit.as_deref().unwrap_or_default()
                ),
            ));
        }
        let mut replaces = Vec::new();
        for (j, r) in raw.replaces.into_iter().enumerate() {
            if r.name.is_empty() {
                return Err(ConfigError::new(
                    file,
                    &format!("{at}.replaces[{j}].name"),
                    "should not have an empty replaces entry: name the rate_limit it replaces",
                ));
            }
            if raw.name.as_deref() == Some(r.name.as_str()) {
                return Err(ConfigError::new(
                    file,
                    &format!("{at}.replaces[{j}].name"),
                    "replaces should not contain name of same descriptor",
                ));
            }
            replaces.push(r.name);
        }
        let algorithm = match raw.algorithm.as_deref() {
            None | Some("fixed_window") => Algorithm::FixedWindow,
            Some("sliding_window") => Algorithm::SlidingWindow,
            Some(other) => {
                return Err(ConfigError::new(
                    file,
                    &format!("{at}.algorithm"),
                    format!("unknown algorithm '{other}': use fixed_window or sliding_window"),
                ));
            }
        };
        let answers = Answers::compile(
            file,
            at,
            raw.request_headers,
            raw.response_headers,
            raw.over_limit,
        )?
        .map(Arc::new);
        Ok(Rule {
            answers,
            id: self.rules.len(),
            full_key: stat_key.to_owned(),
            stat_key: sanitize_stat_key(stat_key),
            // As in the reference, a missing requests_per_unit is 0: block all.
            requests_per_unit: raw.requests_per_unit.unwrap_or(0),
            unit: unit.unwrap_or(Unit::Second),
            unlimited: raw.unlimited,
            name: raw.name.filter(|n| !n.is_empty()),
            replaces,
            shadow_mode: desc.shadow_mode,
            quota_mode: desc.quota_mode,
            detailed_metric: desc.detailed_metric,
            path_value_to_metric,
            algorithm,
        })
    }

    /// Every configured rule, in file order; `Rule::id` indexes this.
    #[must_use]
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// Configured domains.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    /// The configuration as text, one rule a line (the `/rlconfig` page).
    #[must_use]
    pub fn dump(&self) -> &str {
        &self.dump
    }

    /// The limit for one request descriptor, if any.
    ///
    /// At each level the entry's `key` + `value` is tried first, then
    /// wildcard values (in file order), then `key` alone. A limit applies only
    /// when it sits at the depth of the descriptor's last entry. A limit
    /// override sent by Envoy wins over the configuration for a known domain.
    #[must_use]
    pub fn find(&self, domain: &str, descriptor: &Descriptor) -> Option<Matched> {
        let mut level = self.domains.get(domain)?;
        let entries = descriptor.entries();
        if let Some(LimitOverride {
            requests_per_unit,
            unit,
        }) = descriptor.limit()
        {
            let key = plain_key(domain, entries);
            let full_key = stat_of(domain, entries);
            let stat_key = sanitize_stat_key(&full_key);
            let rule = Rule {
                id: usize::MAX,
                full_key,
                stat_key: stat_key.clone(),
                requests_per_unit,
                unit,
                unlimited: false,
                name: None,
                replaces: Vec::new(),
                shadow_mode: false,
                quota_mode: false,
                detailed_metric: false,
                path_value_to_metric: false,
                algorithm: Algorithm::FixedWindow,
                answers: None,
            };
            return Some(Matched {
                rule: Arc::new(rule),
                counter_key: key,
                stat_key,
            });
        }
        let mut counter_key = String::with_capacity(domain.len() + 32);
        crate::key::push_name(&mut counter_key, domain);
        let mut leaf: Option<&Node> = None;
        for (i, (key, value)) in entries.iter().enumerate() {
            let (node, how) = level.step(key, value)?;
            let counted = match how {
                How::Wildcard(pattern) if node.share_threshold => pattern,
                _ => value.as_str(),
            };
            crate::key::push_name(&mut counter_key, key);
            crate::key::push_value(&mut counter_key, counted);
            if i + 1 == entries.len() {
                leaf = Some(node);
            } else {
                level = &node.children;
            }
        }
        let rule = leaf?.rule.clone()?;
        let stat_key = if rule.detailed_metric || rule.path_value_to_metric {
            sanitize_stat_key(&self.request_stat_key(domain, entries, rule.detailed_metric))
        } else {
            rule.stat_key.clone()
        };
        Some(Matched {
            rule,
            counter_key,
            stat_key,
        })
    }

    /// The stats key with request values, as the reference builds it for
    /// `detailed_metric` (every value) and `value_to_metric` (per level).
    fn request_stat_key(
        &self,
        domain: &str,
        entries: &[(String, String)],
        detailed: bool,
    ) -> String {
        let mut out = domain.to_owned();
        let Some(mut level) = self.domains.get(domain) else {
            return out;
        };
        for (key, value) in entries {
            let Some((node, how)) = level.step(key, value) else {
                break;
            };
            let shown = match how {
                How::Wildcard(pattern) if node.share_threshold => Some(pattern),
                _ if detailed => Some(value.as_str()),
                How::Exact => Some(value.as_str()),
                How::Wildcard(pattern) => Some(if node.value_to_metric {
                    value.as_str()
                } else {
                    pattern
                }),
                How::KeyOnly => {
                    (node.value_to_metric && !value.is_empty()).then_some(value.as_str())
                }
            };
            out.push('.');
            out.push_str(key);
            if let Some(v) = shown {
                out.push('_');
                out.push_str(&crate::key::shown_value(v));
            }
            level = &node.children;
        }
        out
    }
}

/// How an entry matched a level.
enum How<'a> {
    Exact,
    Wildcard(&'a str),
    KeyOnly,
}

impl Level {
    /// Exact `key` + `value` first, then wildcard values in file order, then `key` alone.
    fn step(&self, key: &str, value: &str) -> Option<(&Node, How<'_>)> {
        let nodes = self.keys.get(key)?;
        if let Some(n) = nodes.by_value.get(value) {
            return Some((n, How::Exact));
        }
        if let Some((pattern, n)) = nodes
            .wildcards
            .iter()
            .find(|(p, _)| glob::matches(p, value))
        {
            return Some((n, How::Wildcard(pattern)));
        }
        nodes.any_value.as_ref().map(|n| (n, How::KeyOnly))
    }
}

fn plain_key(domain: &str, entries: &[(String, String)]) -> String {
    crate::key::counter_key(
        domain,
        entries.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

fn stat_of(domain: &str, entries: &[(String, String)]) -> String {
    let mut key = domain.to_owned();
    for (k, v) in entries {
        if v.is_empty() {
            let _ = write!(key, ".{}", crate::key::shown_value(k));
        } else {
            let _ = write!(
                key,
                ".{}_{}",
                crate::key::shown_value(k),
                crate::key::shown_value(v)
            );
        }
    }
    key
}

/// What the reference's stats manager does to a key before using it as a
/// stat name: `:` and `|` become `_`, and so do the dots inside anything that
/// looks like an IPv4 address (`remote_address_10.0.0.1` →
/// `remote_address_10_0_0_1`), so statsd does not split on them.
#[must_use]
pub fn sanitize_stat_key(key: &str) -> String {
    let mut out: Vec<u8> = key
        .bytes()
        .map(|b| if b == b':' || b == b'|' { b'_' } else { b })
        .collect();
    let bytes = key.as_bytes();
    let digits_at = |i: usize| {
        bytes[i..]
            .iter()
            .take(3)
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut i = 0;
    while i < bytes.len() {
        // Try to read \d{1,3}(\.\d{1,3}){3} starting at i.
        let mut pos = i;
        let mut dots = Vec::with_capacity(3);
        let mut ok = true;
        for part in 0..4 {
            let n = digits_at(pos);
            if n == 0 {
                ok = false;
                break;
            }
            pos += n;
            if part < 3 {
                if bytes.get(pos) != Some(&b'.') {
                    ok = false;
                    break;
                }
                dots.push(pos);
                pos += 1;
            }
        }
        if ok {
            for d in dots {
                out[d] = b'_';
            }
            i = pos;
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_owned())
}

fn describe(rule: &Rule) -> String {
    if rule.unlimited {
        return format!(
            "{}: unit=UNKNOWN requests_per_unit={}, shadow_mode: {}, quota_mode: {}",
            rule.full_key, rule.requests_per_unit, rule.shadow_mode, rule.quota_mode
        );
    }
    format!(
        "{}: unit={} requests_per_unit={}, shadow_mode: {}, quota_mode: {}",
        rule.full_key, rule.unit, rule.requests_per_unit, rule.shadow_mode, rule.quota_mode
    )
}

#[cfg(test)]
mod tests;
