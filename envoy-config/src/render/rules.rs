//! FilterPolicy rules onto route groups: which rule covers a group, which
//! narrows it (a path inside the Mapping's prefix, a header condition) and
//! so splits it into more routes, each with the filters that apply there.

use crate::policy::{HeaderCondition, InsteadOfRedirect, PathMatch};

use super::context::Ctx;
use super::groups::RouteGroup;
use super::options::{RenderError, render_err};

/// One route rendered from a group: maybe narrowed by a FilterPolicy rule
/// (a path inside the Mapping's prefix, a header condition) with the
/// filters that apply there.
pub(super) struct Variant<'a> {
    pub(super) path: Option<PathMatch>,
    pub(super) header: Option<HeaderCondition>,
    pub(super) filters: Vec<&'a str>,
    /// What the route's OAuth2 Filter answers instead of a login redirect.
    pub(super) instead: Option<&'a InsteadOfRedirect>,
    /// `FilterPolicy name, rule index` for `gatehouse routes`.
    pub(super) because: Option<String>,
}

enum Relation {
    Covers,
    Narrower(PathMatch),
    Disjoint,
}

/// How a rule's path relates to group `g`'s. A group that matches paths
/// without regard to case (`case_sensitive: false`) is compared in lower
/// case: a rule for `/admin/*` holds for its `/ADMIN/` too, which answers
/// `/admin/x` as well.
fn relation(rule: &PathMatch, g: &RouteGroup<'_>, case_insensitive: bool) -> Relation {
    if !case_insensitive {
        return relation_in(rule, g.prefix, g.members[0].exact_path);
    }
    let lower = |p: &str| p.to_ascii_lowercase();
    let rule = match rule {
        PathMatch::Any => PathMatch::Any,
        PathMatch::Prefix(p) => PathMatch::Prefix(lower(p)),
        PathMatch::Segments(p) => PathMatch::Segments(lower(p)),
        PathMatch::Exact(p) => PathMatch::Exact(lower(p)),
    };
    relation_in(&rule, &lower(g.prefix), g.members[0].exact_path)
}

fn relation_in(rule: &PathMatch, prefix: &str, exact_path: bool) -> Relation {
    if exact_path {
        return match rule {
            PathMatch::Any => Relation::Covers,
            PathMatch::Prefix(q) if prefix.starts_with(q.as_str()) => Relation::Covers,
            PathMatch::Segments(q) if under_segments(q, prefix) => Relation::Covers,
            PathMatch::Exact(e) if e == prefix => Relation::Covers,
            _ => Relation::Disjoint,
        };
    }
    match rule {
        PathMatch::Any => Relation::Covers,
        PathMatch::Prefix(q) if prefix.starts_with(q.as_str()) => Relation::Covers,
        // `/health` covers a Mapping on `/health/`, not one on `/health`
        // (which also matches `/healthz`).
        PathMatch::Segments(q) if prefix.starts_with(&format!("{q}/")) => Relation::Covers,
        PathMatch::Prefix(q) | PathMatch::Segments(q) if q.starts_with(prefix) => {
            Relation::Narrower(rule.clone())
        }
        PathMatch::Exact(e) if e.starts_with(prefix) => Relation::Narrower(rule.clone()),
        _ => Relation::Disjoint,
    }
}

/// Whether `path` is `segments` or lies under it (`segments` + `/`...).
fn under_segments(segments: &str, path: &str) -> bool {
    path.strip_prefix(segments)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn path_covers(outer: &PathMatch, inner: &PathMatch) -> bool {
    match (outer, inner) {
        (PathMatch::Any, _) => true,
        (
            PathMatch::Prefix(o),
            PathMatch::Prefix(i) | PathMatch::Segments(i) | PathMatch::Exact(i),
        ) => i.starts_with(o.as_str()),
        (PathMatch::Segments(o), PathMatch::Segments(i) | PathMatch::Exact(i)) => {
            under_segments(o, i)
        }
        (PathMatch::Segments(o), PathMatch::Prefix(i)) => i.starts_with(&format!("{o}/")),
        (PathMatch::Exact(o), PathMatch::Exact(i)) => o == i,
        _ => false,
    }
}

/// The routes of group `g` on virtual host `vhost`, first match first.
pub(super) fn variants<'a>(
    ctx: &Ctx<'a>,
    g: &RouteGroup<'_>,
    vhost: &str,
) -> Result<Vec<Variant<'a>>, RenderError> {
    let mut out = Vec::new();
    let mut narrower: Vec<PathMatch> = Vec::new();
    let regex = g.members[0].prefix_regex;
    for (policy, index, rule) in &ctx.rules {
        if rule.host != "*" && rule.host != vhost {
            continue;
        }
        let because = Some(format!("FilterPolicy {} rule {index}", policy.name));
        let rel = if regex && rule.path != PathMatch::Any {
            return Err(render_err(
                format!("FilterPolicy {}", policy.name),
                format!("spec.rules[{index}].path"),
                format!(
                    "Mapping {} matches by regular expression: a path rule cannot be checked against it; use path * with a host, or a prefix Mapping",
                    g.members[0].name
                ),
            ));
        } else {
            relation(&rule.path, g, g.case_insensitive())
        };
        let path = match rel {
            Relation::Disjoint => continue,
            Relation::Covers => None,
            Relation::Narrower(p) => {
                if narrower.iter().any(|n| path_covers(n, &p)) {
                    continue;
                }
                narrower.push(p.clone());
                Some(p)
            }
        };
        let all: Vec<&'a str> = rule.filters.iter().map(|u| u.name.as_str()).collect();
        let instead = |conditional: bool| {
            rule.filters
                .iter()
                .filter(|u| conditional || u.if_header.is_none())
                .find_map(|u| u.instead_of_redirect.as_ref())
        };
        if let Some(cond) = rule.filters.iter().find_map(|u| u.if_header.clone()) {
            out.push(Variant {
                path: path.clone(),
                header: Some(cond),
                filters: all.clone(),
                instead: instead(true),
                because: because.clone(),
            });
            let unconditional = rule
                .filters
                .iter()
                .filter(|u| u.if_header.is_none())
                .map(|u| u.name.as_str())
                .collect();
            out.push(Variant {
                path: path.clone(),
                header: None,
                filters: unconditional,
                instead: instead(false),
                because,
            });
        } else {
            out.push(Variant {
                path: path.clone(),
                header: None,
                filters: all,
                instead: instead(true),
                because,
            });
        }
        if path.is_none() {
            return Ok(out);
        }
    }
    out.push(Variant {
        path: None,
        header: None,
        filters: Vec::new(),
        instead: None,
        because: None,
    });
    Ok(out)
}
