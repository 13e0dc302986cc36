//! `FilterPolicy` documents: which host and path pass which Filters, in
//! order, and each Filter's arguments there.

use serde::Deserialize;

use super::{FilterPolicy, FilterUse, HeaderCondition, InsteadOfRedirect, PathMatch, PolicyRule};
use crate::doc::{ErrFn, RawDoc, ResourceError, readable_header};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicySpec {
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    filters: Option<Vec<RawFilterRef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilterRef {
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
pub(super) struct RawIfHeader {
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
pub(super) struct RawArguments {
    #[serde(default)]
    scope: Option<Vec<String>>,
    #[serde(default, rename = "insteadOfRedirect")]
    instead_of_redirect: Option<RawInsteadOfRedirect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInsteadOfRedirect {
    #[serde(default, rename = "httpStatusCode")]
    http_status_code: Option<u16>,
    #[serde(default, rename = "ifRequestHeader")]
    if_request_header: Option<RawIfHeader>,
    #[serde(default)]
    filters: Option<serde_yaml_ng::Value>,
}

pub(super) fn instead_of_redirect(
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

pub(super) fn path_match(
    glob: &str,
    path: &str,
    err: ErrFn<'_>,
) -> Result<PathMatch, ResourceError> {
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
