//! `RateLimit.spec.enforcement: quota`: the domain is enforced by Envoy's
//! rate_limit_quota filter, each route naming its bucket; what the quota
//! path cannot express is refused, naming the document and field.

use gatehouse_config::{RenderOptions, Resources, load, render};
use serde_json::Value;

const MAPPINGS: &str = "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: api}
spec:
  prefix: /api/
  service: api:8080
  labels:
    ambassador:
    - per_client: [{generic_key: {value: api}}, {remote_address: {key: remote_address}}]
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: free}
spec:
  prefix: /free/
  service: api:8080
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {name: api}
spec:
  domain: ambassador
  enforcement: quota
  limits:
  - pattern: [{generic_key: api}, {remote_address: \"*\"}]
    rate: 600
    unit: minute
";

fn rendered(text: &str) -> Result<Value, String> {
    let mut resources = Resources::default();
    load(text, "edge.yaml", &mut resources).map_err(|e| e.to_string())?;
    let files = render(&resources, &RenderOptions::default()).map_err(|e| e.to_string())?;
    serde_yaml_ng::from_str(&files.envoy).map_err(|e| e.to_string())
}

fn hcm(envoy: &Value) -> &Value {
    &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
}

fn route<'a>(envoy: &'a Value, name: &str) -> &'a Value {
    hcm(envoy)["route_config"]["virtual_hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|v| v["routes"].as_array().into_iter().flatten())
        .find(|r| r["name"] == name)
        .unwrap_or(&Value::Null)
}

#[test]
fn a_quota_domain_is_enforced_by_the_quota_filter_and_each_route_names_its_bucket() {
    let envoy = rendered(MAPPINGS).expect("renders");
    let filters: Vec<&Value> = hcm(&envoy)["http_filters"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let names: Vec<&str> = filters.iter().filter_map(|f| f["name"].as_str()).collect();
    assert!(
        !names.contains(&"gatehouse.ratelimit.ambassador"),
        "no per-request filter for the quota domain: {names:?}"
    );
    let mark = names.iter().position(|n| *n == "gatehouse.quota_bucket");
    let quota = names
        .iter()
        .position(|n| *n == "gatehouse.ratelimit_quota.ambassador");
    assert!(
        matches!((mark, quota), (Some(m), Some(q)) if m + 1 == q),
        "the mark runs just before the quota filter: {names:?}"
    );
    let quota = &filters[quota.unwrap_or_default()]["typed_config"];
    assert_eq!(quota["domain"], "ambassador");
    let tree = &quota["bucket_matchers"]["matcher_tree"];
    assert_eq!(
        tree["input"]["typed_config"]["header_name"],
        "x-gatehouse-quota-bucket"
    );

    let api = route(&envoy, "api");
    assert!(api["route"].get("rate_limits").is_none(), "{api}");
    let key =
        api["typed_per_filter_config"]["gatehouse.quota_bucket"]["mutations"]["request_mutations"]
            [0]["append"]["header"]["value"]
            .as_str()
            .expect("the api route names its bucket");
    let settings = &tree["exact_match_map"]["map"][key]["action"]["typed_config"];
    let id = &settings["bucket_id_builder"]["bucket_id_builder"];
    assert_eq!(id["0.generic_key"]["string_value"], "api");
    assert!(id["1.remote_address"]["custom_value"].is_object(), "{id}");
    assert_eq!(
        settings["no_assignment_behavior"]["fallback_rate_limit"]["blanket_rule"],
        "ALLOW_ALL"
    );
    // A route without labels names no bucket, and the mark never reaches
    // an upstream.
    assert!(
        route(&envoy, "free")
            .get("typed_per_filter_config")
            .and_then(|c| c.get("gatehouse.quota_bucket"))
            .is_none()
    );
    let removed = &hcm(&envoy)["route_config"]["request_headers_to_remove"];
    assert!(
        removed
            .as_array()
            .is_some_and(|r| r.iter().any(|h| h == "x-gatehouse-quota-bucket")),
        "{removed}"
    );
}

#[test]
fn what_the_quota_path_cannot_express_is_refused() {
    for (change, names) in [
        (
            ("  enforcement: quota\n", "  enforcement: sometimes\n"),
            ["RateLimit api", "spec.enforcement", "sometimes"],
        ),
        (
            (
                "    unit: minute\n",
                "    unit: minute\n    injectResponseHeaders: [{name: x-left, value: \"{{ .RetryAfter }}\"}]\n",
            ),
            ["RateLimit api", "injectResponseHeaders", "quota"],
        ),
        (
            (
                "{remote_address: {key: remote_address}}]\n",
                "{remote_address: {key: remote_address}}]\n    - cluster: [{source_cluster: {key: source_cluster}}]\n",
            ),
            ["Mapping api", "spec.labels.ambassador", "one bucket"],
        ),
        (
            (
                "[{generic_key: {value: api}}, {remote_address: {key: remote_address}}]",
                "[{destination_cluster: {key: destination_cluster}}]",
            ),
            [
                "Mapping api",
                "spec.labels.ambassador",
                "destination_cluster",
            ],
        ),
    ] {
        let text = MAPPINGS.replace(change.0, change.1);
        assert_ne!(text, MAPPINGS, "{change:?}");
        let err = rendered(&text).expect_err("refused");
        for name in names {
            assert!(err.contains(name), "{name:?} not in: {err}");
        }
    }
}

#[test]
fn the_rate_limits_of_one_domain_agree_on_their_enforcement() {
    let other = "---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {name: other}
spec:
  domain: ambassador
  limits:
  - pattern: [{generic_key: other}]
    rate: 1
    unit: second
";
    let err = rendered(&format!("{MAPPINGS}{other}")).expect_err("refused");
    assert!(err.contains("spec.enforcement"), "{err}");
    assert!(
        err.contains("RateLimit api") || err.contains("RateLimit other"),
        "{err}"
    );
}
