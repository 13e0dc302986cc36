//! Route grouping: Mappings with the same match make one route (a weighted
//! split when there are several), and the routes' order, as Ambassador
//! orders them.

use std::collections::BTreeMap;

use crate::mapping::{Mapping, Sticky};
use crate::resources::Resources;

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

    /// How the group's weights stick to a user, if they do.
    pub(super) fn sticky(&self) -> Option<&Sticky> {
        self.members.iter().find_map(|m| m.sticky.as_ref())
    }

    fn match_count(&self) -> usize {
        self.headers.len()
            + self.regex_headers.len()
            + self.query.len()
            + self.regex_query.len()
            + usize::from(self.method.is_some())
    }
}

/// Groups Mappings with the same match and sorts the groups as Ambassador
/// does: higher `precedence` first, then longer prefixes, then more header,
/// query and method matches; ties by prefix and name, so the order never
/// depends on input order.
pub(super) fn groups(resources: &Resources) -> Vec<RouteGroup<'_>> {
    let mut groups: Vec<RouteGroup<'_>> = Vec::new();
    for m in &resources.mappings {
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
            }),
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
    fn weights_always_sum_to_a_hundred() {
        let m = |w: Option<u32>| Mapping {
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
