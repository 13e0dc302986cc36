//! The per-request decision: the first matching rule's action.

use crate::config::{Bucket, BucketKey, RouterConfig, Rule};

/// The request as the filter sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `:path`, query included.
    pub path: &'a str,
    /// `:method`.
    pub method: &'a str,
    /// Headers, names lowercase.
    pub headers: &'a [(String, String)],
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Action {
    /// Headers to set (the route header among them when a rule routes).
    pub set: Vec<(String, String)>,
    /// Headers to remove.
    pub remove: Vec<String>,
    /// The new `:path`, when a rule rewrites it.
    pub path: Option<String>,
}

impl Request<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        gatehouse_http_core::header::first(self.headers, name)
    }

    /// Cookie `name` over every `cookie` header.
    fn cookie(&self, name: &str) -> Option<&str> {
        gatehouse_http_core::header::cookie(self.headers, name)
    }

    /// Query parameter `name` as sent; `?k` is present and empty.
    fn query(&self, name: &str) -> Option<&str> {
        gatehouse_http_core::query::raw_value(self.path, name)
    }
}

/// The sticky bucket (0..10 000) of `key` under `salt`: FNV-1a, so the same
/// user lands in the same bucket on every worker and every Envoy, and a
/// new salt reshuffles everyone (a new experiment).
#[must_use]
pub fn bucket_of(salt: &str, key: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes().chain([0]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Fold the high bits in: FNV's low bits alone mix poorly.
    ((h ^ (h >> 32)) % 10_000) as u32
}

impl Rule {
    fn matches(&self, r: &Request<'_>) -> bool {
        let path = r.path.split('?').next().unwrap_or_default();
        self.prefix
            .as_ref()
            .is_none_or(|p| path.starts_with(p.as_str()))
            && self
                .method
                .as_ref()
                .is_none_or(|m| r.method.eq_ignore_ascii_case(m))
            && self.headers.iter().all(|(n, m)| m.holds(r.header(n)))
            && self.cookies.iter().all(|(n, m)| m.holds(r.cookie(n)))
            && self.query.iter().all(|(n, m)| m.holds(r.query(n)))
            && self.bucket.as_ref().is_none_or(|b| in_bucket(b, r))
    }
}

/// A request without the bucket's key is never in the canary: without a
/// key it could not stay on one side.
fn in_bucket(b: &Bucket, r: &Request<'_>) -> bool {
    let key = match &b.key {
        BucketKey::Header(h) => r.header(h),
        BucketKey::Cookie(c) => r.cookie(c),
    };
    key.is_some_and(|k| !k.is_empty() && bucket_of(&b.salt, k) < b.below)
}

impl RouterConfig {
    /// The action for `request`: the first matching rule's, or none. The
    /// route header is always removed first, so a client cannot pick its
    /// own target.
    #[must_use]
    pub fn decide(&self, request: &Request<'_>) -> Action {
        let mut action = Action {
            remove: vec![self.route_header.clone()],
            ..Action::default()
        };
        let Some(rule) = self.rules.iter().find(|r| r.matches(request)) else {
            return action;
        };
        if let Some(route) = &rule.route {
            action.remove.clear();
            action.set.push((self.route_header.clone(), route.clone()));
        }
        action.set.extend(rule.set_headers.iter().cloned());
        action.remove.extend(rule.remove_headers.iter().cloned());
        if let Some((from, to)) = &rule.rewrite_prefix
            && let Some(rest) = request.path.strip_prefix(from.as_str())
        {
            action.path = Some(format!("{to}{rest}"));
        }
        action
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config(json: serde_json::Value) -> RouterConfig {
        RouterConfig::parse(json.to_string().as_bytes()).unwrap()
    }

    fn decide(c: &RouterConfig, path: &str, headers: &[(&str, &str)]) -> Action {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        c.decide(&Request {
            path,
            method: "GET",
            headers: &headers,
        })
    }

    fn route(a: &Action) -> Option<&str> {
        a.set
            .iter()
            .find(|(n, _)| n == "x-gatehouse-route")
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn first_matching_rule_wins_and_clients_cannot_pick_a_route() {
        let c = config(serde_json::json!({ "rules": [
            { "match": { "headers": [{ "name": "X-Beta", "exact": "1" }] }, "route": "beta" },
            { "match": { "prefix": "/api", "query": [{ "name": "v", "exact": "2" }] }, "route": "v2" },
            { "match": { "cookies": [{ "name": "lang", "prefix": "fr" }] }, "route": "fr", "set_headers": [{ "name": "x-lang", "value": "fr" }] },
            { "match": { "prefix": "/old" }, "rewrite_prefix": { "from": "/old", "to": "/new" } }
        ]}));
        assert_eq!(route(&decide(&c, "/", &[("x-beta", "1")])), Some("beta"));
        assert_eq!(
            route(&decide(&c, "/api/x?a=1&v=2", &[("x-beta", "1")])),
            Some("beta"),
            "first wins"
        );
        assert_eq!(route(&decide(&c, "/api/x?a=1&v=2", &[])), Some("v2"));
        let fr = decide(&c, "/", &[("cookie", "a=b; lang=fr-CA")]);
        assert_eq!(route(&fr), Some("fr"));
        assert!(fr.set.contains(&("x-lang".into(), "fr".into())));
        let none = decide(&c, "/", &[("x-gatehouse-route", "admin")]);
        assert_eq!(
            none.remove,
            ["x-gatehouse-route"],
            "a client's own route header goes"
        );
        assert_eq!(route(&none), None);
        assert_eq!(
            decide(&c, "/old/a?q=1", &[]).path.as_deref(),
            Some("/new/a?q=1")
        );
    }

    #[test]
    fn sticky_buckets_keep_each_user_on_one_side_and_split_by_percent() {
        let c = config(serde_json::json!({ "rules": [
            { "bucket": { "header": "x-gatehouse-user", "percent": 10, "salt": "checkout-v2" }, "route": "canary" }
        ]}));
        let mut canary = 0;
        for i in 0..20_000 {
            let user = format!("user-{i}");
            let first = route(&decide(&c, "/", &[("x-gatehouse-user", &user)])).map(str::to_owned);
            let again =
                route(&decide(&c, "/other", &[("x-gatehouse-user", &user)])).map(str::to_owned);
            assert_eq!(first, again, "{user} stays on one side");
            canary += usize::from(first.is_some());
        }
        // 10 % of 20 000 is 2 000; a fair hash stays well within ±10 %.
        assert!(
            (1_800..=2_200).contains(&canary),
            "{canary} of 20000 in the canary"
        );
        assert_eq!(route(&decide(&c, "/", &[])), None, "no key, no canary");
    }

    #[test]
    fn only_the_headers_rules_read_are_read() {
        let c = config(serde_json::json!({ "rules": [
            { "match": { "headers": [{ "name": "X-Beta" }] }, "route": "beta" },
            { "bucket": { "cookie": "uid", "percent": 5 }, "route": "canary" }
        ]}));
        assert!(c.reads_header("x-beta") && c.reads_header("cookie"));
        assert!(!c.reads_header("x-request-id") && !c.reads_header("user-agent"));
        let none = config(
            serde_json::json!({ "rules": [{ "match": { "prefix": "/v1" }, "rewrite_prefix": { "from": "/v1", "to": "/api" } }] }),
        );
        assert!(!none.reads_header("cookie"));
    }

    #[test]
    fn errors_name_the_field() {
        let err = |j: serde_json::Value| {
            RouterConfig::parse(j.to_string().as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(serde_json::json!({"rules": [{"route": "a", "colour": 1}]}))
                .starts_with("rules[0].colour: unknown field")
        );
        assert!(
            err(serde_json::json!({"rules": [{"match": {}}]}))
                .starts_with("rules[0]: a rule needs an action")
        );
        assert!(err(serde_json::json!({"rules": [{"route": "a", "bucket": {"percent": 120, "header": "u"}}]})).starts_with("rules[0].bucket.percent"));
        assert!(
            err(serde_json::json!({"rules": [{"route": "a", "bucket": {"percent": 5}}]}))
                .starts_with("rules[0].bucket: name exactly one of header or cookie")
        );
        assert!(err(serde_json::json!({"rules": [{"route": "a", "match": {"headers": [{"name": "x", "exact": "1", "prefix": "2"}]}}]})).starts_with("rules[0].match.headers[0]: use one of exact, prefix or present"));
        assert!(
            err(serde_json::json!({"rules": [{"rewrite_prefix": {"from": "a", "to": "/b"}}]}))
                .starts_with("rules[0].rewrite_prefix")
        );
    }

    proptest! {
        #[test]
        fn a_bigger_canary_never_moves_a_user_out(user in "\\PC{1,40}", small in 0u32..=100, extra in 0u32..=100) {
            // Raising the percentage only adds users: nobody flips back.
            let big = (small + extra).min(100);
            let b = bucket_of("s", &user);
            prop_assert!(b < 10_000);
            if b < small * 100 {
                prop_assert!(b < big * 100);
            }
        }

        #[test]
        fn parsing_never_panics(input in "\\PC{0,200}") {
            let _ = RouterConfig::parse(input.as_bytes());
        }
    }
}
