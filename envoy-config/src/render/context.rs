//! [`Ctx`]: what every part of the rendering needs to know about the
//! resources, and the checks that only hold across them (a FilterPolicy
//! names Filters that exist, two OAuth2 Filters keep apart cookies, the
//! Mappings of a sticky split agree).

use std::collections::{BTreeMap, BTreeSet};

use crate::limits::RateLimitService;
use crate::policy::{Filter, FilterKind, FilterPolicy, JwtFilter, PolicyRule};
use crate::resources::Resources;

use super::groups::groups;
use super::names::session_cookie_name;
use super::options::{RenderError, RenderOptions, render_err};

/// Everything a route needs to know about the filters of the listener.
pub(super) struct Ctx<'a> {
    pub(super) resources: &'a Resources,
    pub(super) options: &'a RenderOptions,
    /// FilterPolicy rules in force, in order (policies by name).
    pub(super) rules: Vec<(&'a FilterPolicy, usize, &'a PolicyRule)>,
    pub(super) has_authz: bool,
    /// Rate-limit domains in filter order (their stage is the index).
    pub(super) domains: Vec<String>,
    /// The domain enforced on the quota path (RLQS), with its buckets.
    pub(super) quota: Option<(String, super::quota::Buckets)>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        resources: &'a Resources,
        options: &'a RenderOptions,
    ) -> Result<Self, RenderError> {
        let mut policies: Vec<&FilterPolicy> = resources.policies.iter().collect();
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let mut rules = Vec::new();
        for p in policies {
            for (i, r) in p.rules.iter().enumerate() {
                let mut ext = 0;
                for (j, u) in r.filters.iter().enumerate() {
                    let at = format!("spec.rules[{i}].filters[{j}].name");
                    let f = resources
                        .filters
                        .iter()
                        .find(|f| f.name == u.name)
                        .ok_or_else(|| {
                            render_err(
                                format!("FilterPolicy {}", p.name),
                                at.clone(),
                                format!("no Filter is named {:?}", u.name),
                            )
                        })?;
                    if !matches!(f.kind, FilterKind::Jwt(_)) {
                        ext += 1;
                    }
                    if u.instead_of_redirect.is_some() && !matches!(f.kind, FilterKind::OAuth2(_)) {
                        return Err(render_err(
                            format!("FilterPolicy {}", p.name),
                            format!("spec.rules[{i}].filters[{j}].arguments.insteadOfRedirect"),
                            format!(
                                "Filter {} is not an OAuth2 Filter: only a login has a redirect to replace",
                                u.name
                            ),
                        ));
                    }
                }
                if ext > 1 {
                    return Err(render_err(
                        format!("FilterPolicy {}", p.name),
                        format!("spec.rules[{i}].filters"),
                        "one OAuth2 or APIKey Filter per rule: gatehouse-authz answers with one",
                    ));
                }
                rules.push((p, i, r));
            }
        }
        let has_authz = resources
            .filters
            .iter()
            .any(|f| !matches!(f.kind, FilterKind::Jwt(_)));
        // Two OAuth2 Filters whose names map to one cookie would overwrite
        // each other's sessions in the browser: a login to one logs out of
        // the other.
        let mut cookies: BTreeMap<String, &str> = BTreeMap::new();
        for f in &resources.filters {
            if !matches!(f.kind, FilterKind::OAuth2(_)) {
                continue;
            }
            let cookie = session_cookie_name(&f.name);
            if let Some(other) = cookies.insert(cookie.clone(), &f.name) {
                return Err(render_err(
                    format!("Filter {}", f.name),
                    "metadata.name",
                    format!(
                        "Filter {other} keeps its session in the cookie {cookie} too: rename one (names differing only in punctuation share a cookie)"
                    ),
                ));
            }
        }
        let all = groups(resources);
        for g in &all {
            let given: u32 = g.members.iter().filter_map(|m| m.weight).sum();
            if g.members.len() > 1 && given > 100 {
                return Err(render_err(
                    format!("Mapping {}", g.members[0].name),
                    "spec.weight",
                    format!(
                        "the weights of the Mappings with this match add up to {given}: a split shares 100"
                    ),
                ));
            }
            g.shared()?;
            let redirects = g.members.iter().filter(|m| m.redirect.is_some()).count();
            if redirects > 0 && redirects < g.members.len() {
                return Err(render_err(
                    format!("Mapping {}", g.members[0].name),
                    "spec.host_redirect",
                    "Mappings with the same match either all redirect or none does, as in Ambassador",
                ));
            }
            if let [_, second, ..] = g.shadows.as_slice() {
                return Err(render_err(
                    format!("Mapping {}", second.name),
                    "spec.shadow",
                    "one shadow per match, as in Ambassador",
                ));
            }
        }
        for m in resources.mappings.iter().filter(|m| m.shadow) {
            if !all
                .iter()
                .any(|g| g.shadows.iter().any(|s| std::ptr::eq(*s, m)))
            {
                return Err(render_err(
                    format!("Mapping {}", m.name),
                    "spec.shadow",
                    "no Mapping with the same match to copy requests from",
                ));
            }
        }
        for (i, g) in all.iter().enumerate() {
            let Some(sticky) = g.sticky() else { continue };
            let doc = format!("Mapping {}", g.members[0].name);
            if g.members.len() < 2 {
                return Err(render_err(
                    doc,
                    "spec.sticky",
                    "sticky needs a weighted split: more Mappings with the same match",
                ));
            }
            if g.members
                .iter()
                .any(|m| m.sticky.as_ref().is_some_and(|s| s != sticky))
            {
                return Err(render_err(
                    doc,
                    "spec.sticky",
                    "the Mappings of one split name different sticky keys: give them the same",
                ));
            }
            if all[..i]
                .iter()
                .any(|o| o.sticky().is_some() && o.prefix == g.prefix)
            {
                return Err(render_err(
                    doc,
                    "spec.prefix",
                    "two sticky splits on one prefix (on different hosts) are not supported yet",
                ));
            }
        }
        // Envoy asks the rate-limit service about its one domain; labels
        // of other domains are not sent, as in Ambassador.
        let domain = resources
            .rate_limit_service
            .as_ref()
            .map_or(crate::limits::DEFAULT_DOMAIN, |s| s.domain.as_str());
        let domains: BTreeSet<String> = resources
            .mappings
            .iter()
            .flat_map(|m| m.labels.keys().cloned())
            .filter(|d| d == domain)
            .collect();
        let mut ctx = Self {
            resources,
            options,
            rules,
            has_authz,
            domains: domains.into_iter().collect(),
            quota: None,
        };
        ctx.quota = ctx.quota_domain(&all)?;
        Ok(ctx)
    }

    /// The quota path's domain and buckets, when the domain's RateLimits
    /// ask for it (all of them: one filter enforces a domain).
    fn quota_domain(
        &self,
        all: &[super::groups::RouteGroup<'_>],
    ) -> Result<Option<(String, super::quota::Buckets)>, RenderError> {
        use crate::limits::Enforcement;
        let Some(domain) = self.domains.first() else {
            return Ok(None);
        };
        let mut limits = self
            .resources
            .rate_limits
            .iter()
            .filter(|r| &r.domain == domain);
        let Some(first) = limits.next() else {
            return Ok(None);
        };
        if let Some(other) = limits.find(|r| r.enforcement != first.enforcement) {
            return Err(render_err(
                format!("RateLimit {}", other.name),
                "spec.enforcement",
                format!(
                    "RateLimit {} enforces domain {domain} another way: one filter enforces a domain, so its RateLimits agree",
                    first.name
                ),
            ));
        }
        if first.enforcement != Enforcement::Quota {
            return Ok(None);
        }
        let fail_closed = self.ratelimit_service().failure_mode_deny;
        let mut buckets = super::quota::Buckets::new();
        for g in all {
            let mapping = &g.members[0].name;
            let groups = self.descriptors(g.shared()?.labels, domain, mapping)?;
            if groups.len() > 1 {
                return Err(render_err(
                    format!("Mapping {mapping}"),
                    format!("spec.labels.{domain}"),
                    format!(
                        "{} label groups, and the quota path puts a request in one bucket: keep one group, or use enforcement: exact on the domain's RateLimits",
                        groups.len()
                    ),
                ));
            }
            for group in groups {
                let (key, on_match) = super::quota::bucket(group, fail_closed).map_err(|m| {
                    render_err(
                        format!("Mapping {mapping}"),
                        format!("spec.labels.{domain}"),
                        m,
                    )
                })?;
                buckets.insert(key, on_match);
            }
        }
        Ok(Some((domain.clone(), buckets)))
    }

    /// The quota bucket key of a route's labels, when its domain is on the
    /// quota path and it has a label group there.
    pub(super) fn quota_key(
        &self,
        labels: Option<&crate::limits::Labels>,
        mapping: &str,
    ) -> Result<Option<String>, RenderError> {
        let Some((domain, _)) = &self.quota else {
            return Ok(None);
        };
        let fail_closed = self.ratelimit_service().failure_mode_deny;
        // Checked in `quota_domain`: at most one group, every label readable.
        Ok(self
            .descriptors(labels, domain, mapping)?
            .first()
            .and_then(|group| super::quota::bucket(group, fail_closed).ok())
            .map(|(key, _)| key))
    }

    /// What Envoy sends for each of a route's label groups in `domain`
    /// ([`crate::limits::descriptor`]).
    pub(super) fn descriptors<'l>(
        &self,
        labels: Option<&'l crate::limits::Labels>,
        domain: &str,
        mapping: &str,
    ) -> Result<Vec<&'l [crate::limits::Label]>, RenderError> {
        let limits: Vec<&crate::limits::Limit> = self
            .resources
            .rate_limits
            .iter()
            .filter(|r| r.domain == domain)
            .flat_map(|r| &r.limits)
            .collect();
        labels
            .and_then(|l| l.get(domain))
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, group)| {
                crate::limits::descriptor(group, &limits).map_err(|message| {
                    render_err(
                        format!("Mapping {mapping}"),
                        format!("spec.labels.{domain}[{i}]"),
                        message,
                    )
                })
            })
            .collect()
    }

    /// The rate-limit service: the `RateLimitService` document, else the
    /// render options' address with the documented defaults.
    pub(super) fn ratelimit_service(&self) -> RateLimitService {
        self.resources
            .rate_limit_service
            .clone()
            .unwrap_or_else(|| RateLimitService::default_at(&self.options.ratelimit_address))
    }

    pub(super) fn filter(&self, name: &str) -> Option<&'a Filter> {
        self.resources.filters.iter().find(|f| f.name == name)
    }

    /// The OAuth2 Filters whose signed-in requests gatehouse-session
    /// verifies inside Envoy (none without gatehouse-authz in the chain).
    pub(super) fn fast_filters(&self) -> impl Iterator<Item = &'a Filter> {
        let has_authz = self.has_authz && self.options.fast_path;
        self.resources
            .filters
            .iter()
            .filter(move |f| has_authz && matches!(&f.kind, FilterKind::OAuth2(o) if o.fast_path))
    }

    pub(super) fn jwt_filters(&self) -> impl Iterator<Item = (&'a Filter, &'a JwtFilter)> {
        self.resources.filters.iter().filter_map(|f| match &f.kind {
            FilterKind::Jwt(j) => Some((f, j)),
            _ => None,
        })
    }
}
