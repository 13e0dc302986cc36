//! The `RateLimitService` kind: what Envoy does when gatehouse-ratelimit
//! cannot answer is a setting, never an accident.

use gatehouse_config::{RenderOptions, Resources, load, render};

const LIMITED: &str = "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: api}
spec:
  prefix: /api/
  service: api:8080
  labels:
    ambassador:
    - all: [{generic_key: {value: all}}]
";

fn envoy_yaml(extra: &str) -> Result<serde_yaml_ng::Value, String> {
    let mut resources = Resources::default();
    load(&format!("{LIMITED}{extra}"), "edge.yaml", &mut resources).map_err(|e| e.to_string())?;
    let text = render(&resources, &RenderOptions::default())
        .map_err(|e| e.to_string())?
        .envoy;
    serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())
}

fn ratelimit_filter(envoy: &serde_yaml_ng::Value) -> serde_yaml_ng::Value {
    let hcm = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    filters
        .into_iter()
        .find(|f| f["name"] == "gatehouse.ratelimit.ambassador")
        .map(|f| f["typed_config"].clone())
        .unwrap_or_default()
}

fn ratelimit_address(envoy: &serde_yaml_ng::Value) -> (String, u64) {
    let clusters = envoy["static_resources"]["clusters"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let c = clusters
        .into_iter()
        .find(|c| c["name"] == "gatehouse_ratelimit")
        .unwrap_or_default();
    let a = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    (
        a["address"].as_str().unwrap_or_default().to_owned(),
        a["port_value"].as_u64().unwrap_or_default(),
    )
}

#[test]
fn without_one_the_limit_fails_open_after_a_second() {
    let envoy = envoy_yaml("").unwrap();
    let f = ratelimit_filter(&envoy);
    assert_eq!(f["failure_mode_deny"], false);
    assert_eq!(f["timeout"], "1s");
    assert_eq!(ratelimit_address(&envoy), ("127.0.0.1".into(), 8081));
}

#[test]
fn its_fields_set_failure_mode_timeout_and_address() {
    let envoy = envoy_yaml(
        "---
apiVersion: getambassador.io/v3alpha1
kind: RateLimitService
metadata: {name: rls}
spec: {service: '127.0.0.2:9000', failure_mode_deny: true, timeout_ms: 250, protocol_version: v3}
",
    )
    .unwrap();
    let f = ratelimit_filter(&envoy);
    assert_eq!(f["failure_mode_deny"], true);
    assert_eq!(f["timeout"], "0.25s");
    assert_eq!(ratelimit_address(&envoy), ("127.0.0.2".into(), 9000));
}

#[test]
fn unsupported_or_malformed_fields_are_refused_by_name() {
    let doc = |spec: &str| {
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: RateLimitService\nmetadata: {{name: rls}}\nspec: {spec}\n"
        )
    };
    for (spec, field) in [
        ("{service: ratelimit}", "spec.service"),
        ("{service: 'grpc://ratelimit:8081'}", "spec.service"),
        ("{service: 'ratelimit:8081', tls: true}", "tls"),
        ("{service: 'ratelimit:8081', domain: ''}", "spec.domain"),
        (
            "{service: 'ratelimit:8081', protocol_version: v2}",
            "spec.protocol_version",
        ),
        (
            "{service: 'ratelimit:8081', timeout_ms: 0}",
            "spec.timeout_ms",
        ),
        (
            "{service: 'ratelimit:8081', failure_mode_deny: maybe}",
            "failure_mode_deny",
        ),
    ] {
        let err = envoy_yaml(&doc(spec)).unwrap_err();
        assert!(err.contains(field), "{spec}: {err}");
        assert!(err.contains("RateLimitService rls"), "{spec}: {err}");
    }
    let two = format!("{}{}", doc("{service: 'a:1'}"), doc("{service: 'b:2'}"));
    let err = envoy_yaml(&two).unwrap_err();
    assert!(err.contains("exists already"), "{err}");
}
