//! [`route_table`]: the routes as `gatehouse routes` prints them, one line
//! each in precedence order, with the filters that run and the rule that
//! chose them.

use std::collections::BTreeSet;

use crate::policy::PathMatch;
use crate::resources::Resources;

use super::context::Ctx;
use super::groups::{groups, split};
use super::options::{RenderError, RenderOptions};
use super::rules::variants;

/// The route table in precedence order, one line per route: what matches,
/// where it goes, which filters run and why (`gatehouse routes`).
///
/// # Errors
/// As [`render`](super::bootstrap::render).
pub fn route_table(resources: &Resources) -> Result<String, RenderError> {
    let resources = &*super::defaults::with_defaults(resources);
    let options = RenderOptions::default();
    let ctx = Ctx::new(resources, &options)?;
    let mut out = String::new();
    let mut vhosts: BTreeSet<&str> = resources
        .mappings
        .iter()
        .map(|m| m.hostname.as_str())
        .collect();
    for (_, _, r) in &ctx.rules {
        vhosts.insert(&r.host);
    }
    for h in &resources.hosts {
        vhosts.insert(&h.hostname);
    }
    let specific: Vec<&str> = vhosts.iter().copied().filter(|h| *h != "*").collect();
    for vhost in specific.into_iter().chain(std::iter::once("*")) {
        for g in groups(resources)
            .iter()
            .filter(|g| g.serves(vhost, &resources.hosts))
        {
            for v in variants(&ctx, g, vhost)? {
                let mut matches: Vec<String> = g
                    .method
                    .map(|m| format!(":method={m}"))
                    .into_iter()
                    .chain(g.headers.iter().map(|(k, v)| format!("{k}={v}")))
                    .chain(g.regex_headers.iter().map(|(k, v)| format!("{k}~{v}")))
                    .chain(g.query.iter().map(|(k, v)| format!("?{k}={v}")))
                    .chain(g.regex_query.iter().map(|(k, v)| format!("?{k}~{v}")))
                    .collect();
                if let Some(h) = &v.header {
                    let not = if h.negate { "!" } else { "" };
                    matches.push(match (&h.value, &h.value_regex) {
                        (Some(val), _) => format!("{not}{}={val}", h.name),
                        (None, Some(re)) => format!("{not}{}~{re}", h.name),
                        (None, None) => format!("{not}{} present", h.name),
                    });
                }
                let targets: Vec<String> = split(&g.members)
                    .into_iter()
                    .map(|(m, w)| {
                        if g.members.len() == 1 {
                            format!("{}:{} ({})", m.host, m.port, m.name)
                        } else {
                            format!("{}:{} {w}% ({})", m.host, m.port, m.name)
                        }
                    })
                    .collect();
                if let Some(st) = g.sticky() {
                    matches.push(match (&st.header, &st.cookie) {
                        (Some(h), _) => format!("sticky by header {h}"),
                        (_, c) => format!("sticky by cookie {}", c.as_deref().unwrap_or_default()),
                    });
                }
                let path = match &v.path {
                    Some(PathMatch::Prefix(p)) => p.clone(),
                    Some(PathMatch::Segments(p)) => format!("{p} (and {p}/...)"),
                    Some(PathMatch::Exact(p)) => format!("={p}"),
                    _ if g.members[0].exact_path => format!("={}", g.prefix),
                    _ => g.prefix.to_owned(),
                };
                // Why these filters, and what a request without a session
                // gets instead of the login redirect.
                let because = match v.instead {
                    Some(i) => format!(
                        "{}; insteadOfRedirect {}",
                        v.because.as_deref().unwrap_or_default(),
                        instead_of_redirect(i)
                    ),
                    None => v.because.clone().unwrap_or_default(),
                };
                let filters = if g.shared()?.bypass_auth && !v.filters.is_empty() {
                    // What the rule names does not run: say so.
                    format!(
                        " filters none (bypass_auth; {} would run: {because})",
                        v.filters.join(" -> "),
                    )
                } else if v.filters.is_empty() {
                    String::new()
                } else {
                    format!(" filters {} ({because})", v.filters.join(" -> "))
                };
                out.push_str(&format!(
                    "{vhost} {path}{headers} -> {targets}{filters}  [precedence {p}, prefix length {len}]\n",
                    headers = if matches.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", matches.join(", "))
                    },
                    targets = targets.join(", "),
                    p = g.precedence,
                    len = g.prefix.len(),
                ));
            }
        }
    }
    Ok(out)
}

/// `insteadOfRedirect` as the table shows it: the status, and the header
/// condition that picks the requests it answers (every request without one).
fn instead_of_redirect(i: &crate::policy::InsteadOfRedirect) -> String {
    match &i.header {
        None => i.status.to_string(),
        Some((name, value, negate)) => {
            let not = if *negate { "!" } else { "" };
            match value {
                Some(value) => format!("{} if {not}{name}={value}", i.status),
                None => format!("{} if {not}{name} present", i.status),
            }
        }
    }
}
