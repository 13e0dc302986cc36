use super::*;
use crate::request::Descriptor;

fn load(text: &str) -> Result<RateLimitConfig, ConfigError> {
    RateLimitConfig::load([("test.yaml", text)])
}

fn d(pairs: &[(&str, &str)]) -> Descriptor {
    Descriptor::from_pairs(pairs)
}

fn err(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

const BASIC: &str = "
domain: api
descriptors:
  - key: path
    value: /login
    rate_limit: { unit: minute, requests_per_unit: 5, name: login }
  - key: path
    rate_limit: { unit: Second, requests_per_unit: 100 }
  - key: client
    descriptors:
      - key: plan
        value: free
        rate_limit: { unit: HOUR, requests_per_unit: 10 }
  - key: healthcheck
";

#[test]
fn basic_config_loads_and_dumps_every_rule() {
    let config = load(BASIC).unwrap();
    assert_eq!(config.rules().len(), 3);
    let dump = config.dump();
    assert!(dump.contains("api.path_/login: unit=MINUTE requests_per_unit=5, shadow_mode: false, quota_mode: false"), "{dump}");
    assert!(
        dump.contains("api.client.plan_free: unit=HOUR requests_per_unit=10"),
        "{dump}"
    );
}

#[test]
fn key_value_is_tried_before_key_only() {
    let config = load(BASIC).unwrap();
    let m = config.find("api", &d(&[("path", "/login")])).unwrap();
    assert_eq!(m.rule.requests_per_unit(), 5);
    assert_eq!(m.counter_key, "api_path_/login_");
    let m = config.find("api", &d(&[("path", "/other")])).unwrap();
    assert_eq!(m.rule.requests_per_unit(), 100);
    // Key-only: one counter per distinct value.
    assert_eq!(m.counter_key, "api_path_/other_");
    assert_eq!(m.stat_key, "api.path");
}

#[test]
fn an_empty_value_is_the_key_alone() {
    let config = load(
        "domain: api\ndescriptors:\n  - key: client\n    value: \"\"\n    rate_limit: { unit: minute, requests_per_unit: 3 }\n",
    )
    .unwrap();
    // Every value counts, each apart, as the reference loads `value: ""`.
    let a = config.find("api", &d(&[("client", "a")])).unwrap();
    let b = config.find("api", &d(&[("client", "b")])).unwrap();
    assert_eq!(a.rule.requests_per_unit(), 3);
    assert_eq!(a.counter_key, "api_client_a_");
    assert_eq!(b.counter_key, "api_client_b_");
    assert_eq!(a.stat_key, "api.client");
    // And it is the same entry as a key without value: both is a duplicate.
    let both =
        err("domain: api\ndescriptors:\n  - key: client\n    value: \"\"\n  - key: client\n");
    assert!(
        both.contains("duplicate descriptor composite key 'api.client'"),
        "{both}"
    );
}

#[test]
fn request_depth_must_equal_config_depth() {
    let config = load(BASIC).unwrap();
    assert!(
        config
            .find("api", &d(&[("client", "acme"), ("plan", "free")]))
            .is_some()
    );
    // Shallower: the parent has no limit of its own.
    assert!(config.find("api", &d(&[("client", "acme")])).is_none());
    // Deeper than the config.
    assert!(
        config
            .find("api", &d(&[("path", "/login"), ("x", "y")]))
            .is_none()
    );
    // A key with neither limit nor children matches and limits nothing.
    assert!(config.find("api", &d(&[("healthcheck", "x")])).is_none());
    assert!(
        config
            .find("other-domain", &d(&[("path", "/login")]))
            .is_none()
    );
}

#[test]
fn override_applies_only_in_a_known_domain() {
    let config = load(BASIC).unwrap();
    let over = LimitOverride {
        requests_per_unit: 42,
        unit: Unit::Day,
    };
    let m = config
        .find("api", &d(&[("anything", "v")]).with_limit(over))
        .unwrap();
    assert_eq!((m.rule.requests_per_unit(), m.rule.unit()), (42, Unit::Day));
    assert_eq!(m.stat_key, "api.anything_v");
    assert!(
        config
            .find("nope", &d(&[("anything", "v")]).with_limit(over))
            .is_none()
    );
}

#[test]
fn wildcards_match_anywhere_and_share_only_when_asked() {
    let config = load(
        "
domain: w
descriptors:
  - key: path
    value: /api/*/orders
    rate_limit: { unit: minute, requests_per_unit: 3 }
  - key: file
    value: files/*
    share_threshold: true
    rate_limit: { unit: hour, requests_per_unit: 10 }
",
    )
    .unwrap();
    let a = config.find("w", &d(&[("path", "/api/1/orders")])).unwrap();
    let b = config.find("w", &d(&[("path", "/api/2/orders")])).unwrap();
    assert_ne!(a.counter_key, b.counter_key);
    assert_eq!(a.stat_key, "w.path_/api/*/orders");
    assert!(config.find("w", &d(&[("path", "/api/1/items")])).is_none());
    let a = config.find("w", &d(&[("file", "files/a.pdf")])).unwrap();
    let b = config.find("w", &d(&[("file", "files/b.csv")])).unwrap();
    assert_eq!(a.counter_key, "w_file_files/*_");
    assert_eq!(a.counter_key, b.counter_key);
}

#[test]
fn errors_name_file_path_and_problem() {
    assert_eq!(
        err("descriptors: []"),
        "test.yaml: domain: config file cannot have empty domain"
    );
    assert_eq!(
        err(""),
        "test.yaml: domain: config file cannot have empty domain"
    );
    let e = err(
        "domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n",
    );
    assert!(
        e.starts_with(
            "test.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'fortnight'"
        ),
        "{e}"
    );
    let e = err("domain: a\ndescriptors:\n  - key: k\n    rate_limit: { requests_per_unit: 1 }\n");
    assert!(
        e.contains("descriptors[0].rate_limit.unit: invalid rate limit unit ''"),
        "{e}"
    );
    let e = err("domain: a\ndescriptors:\n  - key: k\n    descriptors:\n      - key: ''\n");
    assert_eq!(
        e,
        "test.yaml: descriptors[0].descriptors[0].key: descriptor has empty key"
    );
    let e = err("domain: a\ndescriptors:\n  - key: k\n    value: v\n  - key: k\n    value: v\n");
    assert!(
        e.contains("descriptors[1]: duplicate descriptor composite key 'a.k_v'"),
        "{e}"
    );
    let e = err("domain: a\ndescriptors:\n  - key: k\n    rate_limt: {}\n");
    assert!(
        e.contains("descriptors[0]: unknown field `rate_limt`"),
        "{e}"
    );
    let e = err(
        "domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, unlimited: true }\n",
    );
    assert!(
        e.contains("should not specify rate limit unit when unlimited"),
        "{e}"
    );
    let e = err(
        "domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: -1 }\n",
    );
    assert!(
        e.contains("descriptors[0].rate_limit.requests_per_unit"),
        "{e}"
    );
    let e = err("domain: a\ndescriptors:\n  - key: k\n    value: v\n    share_threshold: true\n");
    assert!(
        e.contains("share_threshold can only be used with wildcard values"),
        "{e}"
    );
    let e = err(
        "domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, name: x, replaces: [{name: x}] }\n",
    );
    assert!(
        e.contains("replaces should not contain name of same descriptor"),
        "{e}"
    );
    let e = err(
        "domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, replaces: [{}] }\n",
    );
    assert!(
        e.contains(
            "descriptors[0].rate_limit.replaces[0].name: should not have an empty replaces entry"
        ),
        "{e}"
    );
    let e = err(
        "domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 1, algorithm: leaky }\n",
    );
    assert!(e.contains("unknown algorithm 'leaky'"), "{e}");
    let e = err("domain: [a\n");
    assert!(e.starts_with("test.yaml: "), "{e}");
}

#[test]
fn duplicate_domain_across_files_names_both() {
    let e =
        RateLimitConfig::load([("a.yaml", "domain: d\n"), ("b.yaml", "domain: d\n")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "b.yaml: domain: duplicate domain 'd': already defined in a.yaml; each domain lives in one file"
    );
    let merged = RateLimitConfig::load_with(
        [
            ("a.yaml", "domain: d\ndescriptors: [{key: a, rate_limit: {unit: second, requests_per_unit: 1}}]\n"),
            ("b.yaml", "domain: d\ndescriptors: [{key: b, rate_limit: {unit: second, requests_per_unit: 2}}]\n"),
        ],
        true,
    )
    .unwrap();
    assert!(merged.find("d", &d(&[("a", "1")])).is_some());
    assert!(merged.find("d", &d(&[("b", "1")])).is_some());
}

#[test]
fn scalar_keys_and_values_are_read_as_text() {
    let config = load("domain: 7\ndescriptors:\n  - key: port\n    value: 443\n    rate_limit: { unit: second, requests_per_unit: 1 }\n").unwrap();
    assert!(config.find("7", &d(&[("port", "443")])).is_some());
}

#[test]
fn unlimited_may_carry_requests_per_unit_and_metadata_is_accepted() {
    let config = load(
        "domain: a\ndescriptors:\n  - key: k\n    metadata: { team: core, tier: [1, 2] }\n    rate_limit: { unlimited: true, requests_per_unit: 5 }\n",
    )
    .unwrap();
    assert!(
        config
            .find("a", &d(&[("k", "v")]))
            .unwrap()
            .rule
            .is_unlimited()
    );
}

#[test]
fn detailed_metric_and_value_to_metric_shape_stat_keys() {
    let config = load(
        "
domain: m
descriptors:
  - key: user
    detailed_metric: true
    rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: route
    value_to_metric: true
    descriptors:
      - key: method
        rate_limit: { unit: minute, requests_per_unit: 10 }
",
    )
    .unwrap();
    assert_eq!(
        config.find("m", &d(&[("user", "alice")])).unwrap().stat_key,
        "m.user_alice"
    );
    assert_eq!(
        config
            .find("m", &d(&[("route", "api"), ("method", "GET")]))
            .unwrap()
            .stat_key,
        "m.route_api.method"
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn loader_never_panics(text in "\\PC{0,400}") {
            let _ = RateLimitConfig::load([("p.yaml", text.as_str())]);
        }

        #[test]
        fn loader_never_panics_on_yaml_shaped_input(
            key in "[a-z_*]{0,6}", value in "[a-z0-9/*]{0,6}", unit in "[a-zA-Z]{0,7}", n in any::<i64>(),
        ) {
            let text = format!("domain: d\ndescriptors:\n  - key: {key:?}\n    value: {value:?}\n    rate_limit: {{ unit: {unit:?}, requests_per_unit: {n} }}\n");
            let _ = RateLimitConfig::load([("p.yaml", text.as_str())]);
        }

        #[test]
        fn a_loaded_exact_rule_always_matches_its_own_descriptor(key in "[a-z]{1,8}", value in "[a-z0-9]{1,8}", n in 0u32..1000) {
            // Quoted: unquoted YAML such as 0e0 is a number, read as its value ("0").
            let text = format!("domain: d\ndescriptors:\n  - key: {key}\n    value: {value:?}\n    rate_limit: {{ unit: minute, requests_per_unit: {n} }}\n");
            let config = RateLimitConfig::load([("p.yaml", text.as_str())]).unwrap();
            let m = config.find("d", &d(&[(&key, &value)])).unwrap();
            prop_assert_eq!(m.rule.requests_per_unit(), n);
        }
    }
}

#[test]
fn stat_keys_are_sanitized_like_the_reference() {
    assert_eq!(
        sanitize_stat_key("d.remote_address_10.0.0.1"),
        "d.remote_address_10_0_0_1"
    );
    assert_eq!(sanitize_stat_key("d.k_a:b|c"), "d.k_a_b_c");
    assert_eq!(sanitize_stat_key("d.version_1.2.3"), "d.version_1.2.3");
    assert_eq!(sanitize_stat_key("d.ip_1234.1.1.1"), "d.ip_1234_1_1_1");
}
