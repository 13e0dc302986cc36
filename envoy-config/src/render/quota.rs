//! The quota path: a rate-limit domain whose RateLimits say
//! `enforcement: quota` is enforced by Envoy's `rate_limit_quota` filter
//! against assignments from gatehouse-ratelimit (RLQS), with no call per
//! request.
//!
//! Envoy 1.40's filter takes its bucket matchers only on the filter, not per
//! route. So each route names its bucket in a request header, set by a
//! `header_mutation` filter configured per route (the listener removes
//! every client `x-gatehouse-` header first, and the route table removes
//! this one before the upstream), and the quota filter looks the bucket up
//! by that header. A bucket id carries the descriptor the rules match, its
//! entries named `<position>.<descriptor key>` (see gatehouse-ratelimit's
//! README).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::limits::Label;

use super::names::RATELIMIT_CLUSTER;

/// The request header a route names its bucket in.
pub(super) const QUOTA_BUCKET_HEADER: &str = "x-gatehouse-quota-bucket";

/// The filter that sets [`QUOTA_BUCKET_HEADER`], configured per route.
pub(super) const QUOTA_MARK_FILTER: &str = "gatehouse.quota_bucket";

/// How long Envoy keeps an assignment the service stopped renewing (the
/// service's own assignments last 30 s) before it starts the bucket over
/// with its no-assignment behaviour.
const EXPIRED_ASSIGNMENT_KEPT: &str = "60s";

/// How often Envoy reports a bucket's usage: Envoy 1.40 reports every 5 s
/// whatever a bucket asks (a fixed interval in its source), so the
/// rendered value says what happens.
const REPORTING_INTERVAL: &str = "5s";

/// The buckets of a quota domain: the key a route sends, and what the
/// quota filter does with a request that carries it.
pub(super) type Buckets = BTreeMap<String, Value>;

/// The bucket of one label group: its key and the filter's `on_match` for
/// it. `fail_closed` (the RateLimitService's `failure_mode_deny`) denies a
/// bucket's requests until its first assignment; otherwise they pass.
///
/// # Errors
/// A label that no bucket input can read (source or destination cluster).
pub(super) fn bucket(group: &[Label], fail_closed: bool) -> Result<(String, Value), String> {
    let mut id = serde_json::Map::new();
    let mut present = Vec::new();
    for (position, label) in group.iter().enumerate() {
        let value = match label {
            Label::Generic { value, .. } => json!({ "string_value": value }),
            Label::RequestHeader { header, .. } => {
                present.push(header.as_str());
                json!({ "custom_value": {
                    "name": header,
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                        "header_name": header,
                    },
                }})
            }
            Label::RemoteAddress => json!({ "custom_value": {
                "name": "remote_address",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.SourceIPInput",
                },
            }}),
            Label::SourceCluster | Label::DestinationCluster => {
                return Err(format!(
                    "the {} label has no bucket input in Envoy's rate_limit_quota filter: use enforcement: exact for this domain",
                    label.key()
                ));
            }
        };
        id.insert(format!("{position}.{}", label.key()), value);
    }
    let blanket = if fail_closed { "DENY_ALL" } else { "ALLOW_ALL" };
    let action = json!({
        "name": "bucket",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rate_limit_quota.v3.RateLimitQuotaBucketSettings",
            "bucket_id_builder": { "bucket_id_builder": id },
            "reporting_interval": REPORTING_INTERVAL,
            "no_assignment_behavior": { "fallback_rate_limit": { "blanket_rule": blanket } },
            "expired_assignment_behavior": {
                "expired_assignment_behavior_timeout": EXPIRED_ASSIGNMENT_KEPT,
                "reuse_last_assignment": {},
            },
        },
    });
    // Without one of its headers the group is not counted at all, as
    // Ambassador drops it: the request matches no bucket and passes.
    let on_match = if present.is_empty() {
        json!({ "action": action })
    } else {
        let predicates: Vec<Value> = present
            .iter()
            .map(|header| {
                json!({ "single_predicate": {
                    "input": {
                        "name": header,
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                            "header_name": header,
                        },
                    },
                    "value_match": { "safe_regex": { "regex": "[\\s\\S]*" } },
                }})
            })
            .collect();
        let predicate = match <[Value; 1]>::try_from(predicates) {
            Ok([one]) => one,
            Err(many) => json!({ "and_matcher": { "predicate": many } }),
        };
        json!({ "matcher": { "matcher_list": { "matchers": [
            { "predicate": predicate, "on_match": { "action": action } }
        ]}}})
    };
    Ok((key(&id), on_match))
}

/// A short name for a bucket id, the same in every render: FNV-1a over its
/// JSON (object keys sorted), in hex.
fn key(id: &serde_json::Map<String, Value>) -> String {
    let text = Value::Object(id.clone()).to_string();
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// A route's setting of the mark filter: the header naming its bucket.
pub(super) fn mark(key: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
        "mutations": { "request_mutations": [{ "append": {
            "header": { "key": QUOTA_BUCKET_HEADER, "value": key },
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }}]},
    })
}

/// The HTTP filters of a quota domain: the mark filter (nothing set where a
/// route does not configure it), then the quota filter.
pub(super) fn filters(domain: &str, buckets: &Buckets) -> [Value; 2] {
    let map: serde_json::Map<String, Value> = buckets
        .iter()
        .map(|(k, on_match)| (k.clone(), on_match.clone()))
        .collect();
    [
        json!({
            "name": QUOTA_MARK_FILTER,
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            },
        }),
        json!({
            "name": format!("gatehouse.ratelimit_quota.{domain}"),
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rate_limit_quota.v3.RateLimitQuotaFilterConfig",
                "domain": domain,
                "rlqs_server": { "envoy_grpc": { "cluster_name": RATELIMIT_CLUSTER } },
                // A request without a bucket header matches no bucket and
                // passes, unreported: its route has no limit.
                "bucket_matchers": { "matcher_tree": {
                    "input": {
                        "name": QUOTA_BUCKET_HEADER,
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                            "header_name": QUOTA_BUCKET_HEADER,
                        },
                    },
                    "exact_match_map": { "map": map },
                }},
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(value: &str) -> Label {
        Label::Generic {
            key: "generic_key".into(),
            value: value.into(),
        }
    }

    #[test]
    fn a_group_becomes_a_bucket_id_in_descriptor_order() {
        let group = [
            generic("checkout"),
            Label::RemoteAddress,
            Label::RequestHeader {
                key: "user".into(),
                header: "x-user".into(),
            },
        ];
        let (key, on_match) = bucket(&group, false).expect("every label has an input");
        assert_eq!(key.len(), 16);
        let list = &on_match["matcher"]["matcher_list"]["matchers"][0];
        // Only the header's presence is required: the address always exists.
        assert_eq!(
            list["predicate"]["single_predicate"]["input"]["typed_config"]["header_name"],
            "x-user"
        );
        let settings = &list["on_match"]["action"]["typed_config"];
        let id = &settings["bucket_id_builder"]["bucket_id_builder"];
        assert_eq!(id["0.generic_key"]["string_value"], "checkout");
        assert_eq!(
            id["1.remote_address"]["custom_value"]["typed_config"]["@type"],
            "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3.SourceIPInput"
        );
        assert_eq!(
            id["2.user"]["custom_value"]["typed_config"]["header_name"],
            "x-user"
        );
        assert_eq!(
            settings["no_assignment_behavior"]["fallback_rate_limit"]["blanket_rule"],
            "ALLOW_ALL"
        );
    }

    #[test]
    fn keys_name_the_bucket_id_and_fail_closed_denies_before_an_assignment() {
        let (a, open) = bucket(&[generic("a")], false).expect("valid");
        let (a_again, closed) = bucket(&[generic("a")], true).expect("valid");
        let (b, _) = bucket(&[generic("b")], false).expect("valid");
        assert_eq!(a, a_again, "the key names the bucket id, not the behaviour");
        assert_ne!(a, b);
        assert_eq!(
            open["action"]["typed_config"]["no_assignment_behavior"]["fallback_rate_limit"]["blanket_rule"],
            "ALLOW_ALL"
        );
        assert_eq!(
            closed["action"]["typed_config"]["no_assignment_behavior"]["fallback_rate_limit"]["blanket_rule"],
            "DENY_ALL"
        );
    }

    #[test]
    fn cluster_labels_are_refused() {
        for label in [Label::SourceCluster, Label::DestinationCluster] {
            let err = bucket(std::slice::from_ref(&label), false).expect_err("no input");
            assert!(err.contains(label.key()), "{err}");
        }
    }
}
