//! Route grouping: Mappings with the same match make one route (a weighted
//! split when there are several), and the routes' order, as Ambassador
//! orders them.

use std::collections::BTreeMap;

use crate::host::Host;
use crate::limits::Labels;
use crate::mapping::{AddedHeader, Cors, LoadBalancer, Mapping, RetryPolicy, Sticky};
use crate::resources::Resources;

use super::options::{RenderError, render_err};

/// One route: the Mappings that share a match.
pub(super) struct RouteGroup<'a> {
    pub(super) hostname: &'a str,
    pub(super) prefix: &'a str,
    pub(super) headers: &'a BTreeMap<String, String>,
    pub(super) regex_headers: &'a BTreeMap<String, String>,
    pub(super) method: Option<&'a str>,
    pub(super) query: &'a BTreeMap<String, String>,
    pub(super) regex_query: &'a BTreeMap<String, String>,
    pub(super) precedence: i32,
    pub(super) members: Vec<&'a Mapping>,
    /// Mappings with `shadow: true` and this match: each gets a copy.
    pub(super) shadows: Vec<&'a Mapping>,
}

impl RouteGroup<'_> {
    fn same_match(&self, m: &Mapping) -> bool {
        self.hostname == m.hostname
            && self.prefix == m.prefix
            && self.members[0].exact_path == m.exact_path
            && *self.headers == m.headers
            && *self.regex_headers == m.regex_headers
            && self.method == m.method.as_deref()
            && *self.query == m.query_parameters
            && *self.regex_query == m.regex_query_parameters
    }

    /// Whether the group's routes belong in virtual host `vhost` (served
    /// under the Host [`host_of`] gives): its hostname is `*`, `vhost`
    /// itself, or a glob that covers the name `vhost` (so rules written for
    /// that name apply to it there too); under a Host with a
    /// `mappingSelector`, the selector must also take every member, as in
    /// Ambassador. A group without a hostname that some Host's selector
    /// takes is served under such Hosts only; one that no selector takes is
    /// served under every Host without a selector (Ambassador 3 serves it
    /// nowhere).
    pub(super) fn serves(&self, vhost: &str, hosts: &[Host]) -> bool {
        let named =
            self.hostname == "*" || self.hostname == vhost || glob_covers(self.hostname, vhost);
        let selected = |h: &Host| {
            h.mapping_selector.is_some()
                && self.members.iter().all(|m| h.selects(&m.metadata_labels))
        };
        match host_of(hosts, vhost) {
            Some(h) if h.mapping_selector.is_some() => named && selected(h),
            _ if !self.members[0].hostname_given => !hosts.iter().any(selected),
            _ => named,
        }
    }

    /// Whether the group matches paths without regard to case (its
    /// members agree on it: [`RouteGroup::shared`] refuses otherwise).
    pub(super) fn case_insensitive(&self) -> bool {
        self.members.iter().any(|m| m.case_insensitive)
    }

    /// How the group's weights stick to a user, if they do.
    pub(super) fn sticky(&self) -> Option<&Sticky> {
        self.members.iter().find_map(|m| m.sticky.as_ref())
    }

    /// What the members of a split share on their routes, as Ambassador
    /// has it: added headers are the union of every member's; CORS, retries,
    /// upgrades, rate-limit labels, removed headers and `regex_rewrite` are
    /// the group's, so members that set them must agree. (Rewrite, timeouts
    /// and `host_rewrite` stay each member's own.)
    ///
    /// # Errors
    /// Two members setting one of the shared fields differently, or two
    /// values for one added header.
    pub(super) fn shared(&self) -> Result<Shared<'_>, RenderError> {
        let members = &self.members;
        let refuse = |m: &Mapping, field: &str, other: &Mapping, what: &str| {
            render_err(
                format!("Mapping {}", m.name),
                format!("spec.{field}"),
                format!(
                    "differs from Mapping {} with the same match: Ambassador routes a split with one {what}; give them the same",
                    other.name
                ),
            )
        };
        let add_request_headers = union(
            members,
            |m| &m.add_request_headers,
            "add_request_headers",
            &refuse,
        )?;
        let add_response_headers = union(
            members,
            |m| &m.add_response_headers,
            "add_response_headers",
            &refuse,
        )?;
        Ok(Shared {
            cors: agreed(members, |m| m.cors.as_ref(), "cors", "CORS policy", &refuse)?,
            retry_policy: agreed(
                members,
                |m| m.retry_policy.as_ref(),
                "retry_policy",
                "retry policy",
                &refuse,
            )?,
            allow_upgrade: agreed(
                members,
                |m| Some(&m.allow_upgrade).filter(|u| !u.is_empty()),
                "allow_upgrade",
                "set of upgrades",
                &refuse,
            )?
            .map_or(&[][..], Vec::as_slice),
            labels: agreed(
                members,
                |m| Some(&m.labels).filter(|l| !l.is_empty()),
                "labels",
                "set of rate-limit labels",
                &refuse,
            )?,
            remove_request_headers: agreed(
                members,
                |m| Some(&m.remove_request_headers).filter(|h| !h.is_empty()),
                "remove_request_headers",
                "list of removed request headers",
                &refuse,
            )?
            .map_or(&[][..], Vec::as_slice),
            remove_response_headers: agreed(
                members,
                |m| Some(&m.remove_response_headers).filter(|h| !h.is_empty()),
                "remove_response_headers",
                "list of removed response headers",
                &refuse,
            )?
            .map_or(&[][..], Vec::as_slice),
            regex_rewrite: agreed(
                members,
                |m| m.regex_rewrite.as_ref(),
                "regex_rewrite",
                "regex_rewrite",
                &refuse,
            )?,
            bypass_auth: agreed(
                members,
                |m| Some(&m.bypass_auth).filter(|b| **b),
                "bypass_auth",
                "bypass_auth",
                &refuse,
            )?
            .is_some(),
            load_balancer: agreed(
                members,
                |m| m.load_balancer.as_ref(),
                "load_balancer",
                "load balancer",
                &refuse,
            )?,
            case_insensitive: agreed(
                members,
                |m| Some(&m.case_insensitive).filter(|c| **c),
                "case_sensitive",
                "case sensitivity",
                &refuse,
            )?
            .is_some(),
            add_request_headers,
            add_response_headers,
            rate_limits: Vec::new(),
            quota_bucket: None,
        })
    }

    fn match_count(&self) -> usize {
        self.headers.len()
            + self.regex_headers.len()
            + self.query.len()
            + self.regex_query.len()
            + usize::from(self.method.is_some())
    }
}

/// The Host whose settings apply to virtual host `vhost`: the Host of that
/// name, else the longest glob's that covers it, else the `*` Host's, as
/// Envoy picks the most specific domain.
pub(super) fn host_of<'h>(hosts: &'h [Host], vhost: &str) -> Option<&'h Host> {
    hosts
        .iter()
        .find(|h| h.hostname == vhost)
        .or_else(|| {
            hosts
                .iter()
                .filter(|h| glob_covers(&h.hostname, vhost))
                .max_by_key(|h| h.hostname.len())
        })
        .or_else(|| hosts.iter().find(|h| h.hostname == "*"))
}

/// Whether the hostname glob `glob` (`*.example.com` or `example.*`, as
/// Envoy matches virtual host domains) covers the exact name `name`.
pub(super) fn glob_covers(glob: &str, name: &str) -> bool {
    if name.contains('*') {
        return false;
    }
    if let Some(suffix) = glob.strip_prefix('*') {
        return name.len() > suffix.len() && name.ends_with(suffix);
    }
    if let Some(prefix) = glob.strip_suffix('*') {
        return name.len() > prefix.len() && name.starts_with(prefix);
    }
    false
}

/// The route settings every member of a group shares ([`RouteGroup::shared`]).
pub(super) struct Shared<'a> {
    pub(super) cors: Option<&'a Cors>,
    pub(super) retry_policy: Option<&'a RetryPolicy>,
    pub(super) allow_upgrade: &'a [String],
    pub(super) labels: Option<&'a Labels>,
    pub(super) remove_request_headers: &'a [String],
    pub(super) remove_response_headers: &'a [String],
    pub(super) regex_rewrite: Option<&'a (String, String)>,
    pub(super) add_request_headers: BTreeMap<&'a str, &'a AddedHeader>,
    pub(super) add_response_headers: BTreeMap<&'a str, &'a AddedHeader>,
    /// Envoy's `rate_limits` of the routes, filled in by `routes` (it needs
    /// the render context).
    pub(super) rate_limits: Vec<serde_json::Value>,
    /// The quota bucket the routes name, filled in by `routes` too.
    pub(super) quota_bucket: Option<String>,
    /// No Filter runs on the routes.
    pub(super) bypass_auth: bool,
    /// Paths match without regard to case.
    pub(super) case_insensitive: bool,
    /// How the routes hash a client to an instance, if they do.
    pub(super) load_balancer: Option<&'a LoadBalancer>,
}

type Refuse<'r> = dyn Fn(&Mapping, &str, &Mapping, &str) -> RenderError + 'r;

/// The one value the members that set `field` give it, if any does.
fn agreed<'a, T: PartialEq + ?Sized>(
    members: &[&'a Mapping],
    get: impl Fn(&'a Mapping) -> Option<&'a T>,
    field: &str,
    what: &str,
    refuse: &Refuse<'_>,
) -> Result<Option<&'a T>, RenderError> {
    let mut found: Option<(&Mapping, &T)> = None;
    for m in members {
        let Some(value) = get(m) else { continue };
        match found {
            Some((first, v)) if v != value => return Err(refuse(m, field, first, what)),
            Some(_) => {}
            None => found = Some((m, value)),
        }
    }
    Ok(found.map(|(_, v)| v))
}

/// Every member's headers of `field` together; one header with two values
/// is refused.
fn union<'a>(
    members: &[&'a Mapping],
    get: impl Fn(&'a Mapping) -> &'a BTreeMap<String, AddedHeader>,
    field: &str,
    refuse: &Refuse<'_>,
) -> Result<BTreeMap<&'a str, &'a AddedHeader>, RenderError> {
    let mut all: BTreeMap<&str, (&Mapping, &AddedHeader)> = BTreeMap::new();
    for m in members {
        for (name, value) in get(m) {
            match all.get(name.as_str()) {
                Some((first, v)) if *v != value => {
                    return Err(refuse(
                        m,
                        &format!("{field}.{name}"),
                        first,
                        "value for each added header",
                    ));
                }
                Some(_) => {}
                None => {
                    all.insert(name, (m, value));
                }
            }
        }
    }
    Ok(all.into_iter().map(|(k, (_, v))| (k, v)).collect())
}

/// Groups Mappings with the same match and sorts the groups as Ambassador
/// does: higher `precedence` first, then longer prefixes, then more header,
/// query and method matches; ties by prefix and name, so the order never
/// depends on input order.
pub(super) fn groups(resources: &Resources) -> Vec<RouteGroup<'_>> {
    let mut groups: Vec<RouteGroup<'_>> = Vec::new();
    for m in resources.mappings.iter().filter(|m| !m.shadow) {
        match groups.iter_mut().find(|g| g.same_match(m)) {
            Some(g) => {
                g.members.push(m);
                g.precedence = g.precedence.max(m.precedence);
            }
            None => groups.push(RouteGroup {
                hostname: &m.hostname,
                prefix: &m.prefix,
                headers: &m.headers,
                regex_headers: &m.regex_headers,
                method: m.method.as_deref(),
                query: &m.query_parameters,
                regex_query: &m.regex_query_parameters,
                precedence: m.precedence,
                members: vec![m],
                shadows: Vec::new(),
            }),
        }
    }
    for m in resources.mappings.iter().filter(|m| m.shadow) {
        if let Some(g) = groups.iter_mut().find(|g| g.same_match(m)) {
            g.shadows.push(m);
        }
    }
    for g in &mut groups {
        g.members.sort_by(|a, b| a.name.cmp(&b.name));
    }
    groups.sort_by(|a, b| {
        b.precedence
            .cmp(&a.precedence)
            .then(b.prefix.len().cmp(&a.prefix.len()))
            .then(b.match_count().cmp(&a.match_count()))
            .then(a.prefix.cmp(b.prefix))
            .then(a.members[0].name.cmp(&b.members[0].name))
    });
    groups
}

/// The members of a group in the order Ambassador splits them: those with
/// a weight first, then those without (each part by name), each with its
/// share ([`weights`]); the last takes whatever the others leave of 100, as
/// in Ambassador.
pub(super) fn split<'a>(members: &[&'a Mapping]) -> Vec<(&'a Mapping, u32)> {
    let mut ordered: Vec<&Mapping> = members
        .iter()
        .copied()
        .filter(|m| m.weight.is_some())
        .collect();
    ordered.extend(members.iter().copied().filter(|m| m.weight.is_none()));
    let mut shares = weights(&ordered);
    let others: u32 = shares.iter().rev().skip(1).sum();
    if let Some(last) = shares.last_mut() {
        *last = 100u32.saturating_sub(others);
    }
    ordered.into_iter().zip(shares).collect()
}

/// Weights of a group as Ambassador assigns them: explicit weights stand,
/// the Mappings without one share what is left of 100 evenly.
pub(super) fn weights(members: &[&Mapping]) -> Vec<u32> {
    let given: u32 = members.iter().filter_map(|m| m.weight).sum();
    let unweighted = members.iter().filter(|m| m.weight.is_none()).count() as u32;
    let left = 100u32.saturating_sub(given);
    let mut shares = Vec::new();
    let mut handed = 0;
    let mut seen = 0;
    for m in members {
        let w = match m.weight {
            Some(w) => w,
            None => {
                seen += 1;
                // The last unweighted Mapping takes the rounding remainder.
                let share = if seen == unweighted {
                    left - handed
                } else {
                    left / unweighted
                };
                handed += share;
                share
            }
        };
        shares.push(w);
    }
    shares
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn globs_cover_names_as_envoy_domains_do() {
        assert!(glob_covers("*.example.com", "api.example.com"));
        assert!(glob_covers("*.example.com", "a.b.example.com"));
        assert!(!glob_covers("*.example.com", "example.com"));
        assert!(!glob_covers("*.example.com", "api.example.org"));
        assert!(glob_covers("example.*", "example.org"));
        assert!(!glob_covers("example.*", "example."));
        assert!(!glob_covers("example.com", "example.com"));
        assert!(!glob_covers("*.example.com", "*.example.com"));
    }

    #[test]
    fn weights_always_sum_to_a_hundred() {
        let m = |w: Option<u32>| Mapping {
            hostname_given: false,
            auth_context_extensions: BTreeMap::new(),
            metadata_labels: BTreeMap::new(),
            name: "m".into(),
            hostname: "*".into(),
            prefix: "/".into(),
            host: "h".into(),
            port: 1,
            rewrite: "/".into(),
            weight: w,
            timeout_ms: 1,
            exact_path: false,
            headers: BTreeMap::new(),
            precedence: 0,
            add_request_headers: BTreeMap::new(),
            remove_request_headers: Vec::new(),
            prefix_regex: false,
            method: None,
            query_parameters: BTreeMap::new(),
            host_rewrite: None,
            idle_timeout_ms: None,
            retry_policy: None,
            cors: None,
            add_response_headers: BTreeMap::new(),
            remove_response_headers: Vec::new(),
            allow_upgrade: Vec::new(),
            regex_headers: BTreeMap::new(),
            regex_query_parameters: BTreeMap::new(),
            regex_rewrite: None,
            tls: false,
            grpc: false,
            circuit_breaker: None,
            labels: BTreeMap::new(),
            sticky: None,
            redirect: None,
            bypass_auth: false,
            case_insensitive: false,
            shadow: false,
            connect_timeout_ms: None,
            cluster_idle_timeout_ms: None,
            stats_name: None,
            keepalive: None,
            load_balancer: None,
            health_checks: Vec::new(),
            outlier: None,
            docs: None,
        };
        for set in [
            vec![None, None, None],
            vec![Some(10), None],
            vec![Some(33), None, None],
        ] {
            let members: Vec<Mapping> = set.into_iter().map(m).collect();
            let refs: Vec<&Mapping> = members.iter().collect();
            assert_eq!(weights(&refs).iter().sum::<u32>(), 100);
        }
    }
}
