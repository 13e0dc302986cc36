//! FilterPolicy paths as Envoy route matches: a rule that exempts matches on
//! segment boundaries; a rule that requires keeps Ambassador's glob.

use gatehouse_config::{PathMatch, RenderOptions, Resources, load, render, route_table};

const EDGE: &str = "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: app}
spec: {prefix: /, service: app:8080}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: healthz}
spec: {prefix: /healthz/, service: app:8080}
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {name: idp}
spec:
  JWT: {jwksURI: 'https://idp.example/jwks.json'}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {name: edge}
spec:
  rules:
  - {path: /health*, filters: null}
  - {path: /admin*, filters: [{name: idp}]}
  - {path: '*', filters: [{name: idp}]}
";

fn resources() -> Resources {
    let mut r = Resources::default();
    if let Err(e) = load(EDGE, "edge.yaml", &mut r) {
        unreachable!("{e}");
    }
    r
}

#[test]
fn an_exempting_glob_becomes_a_segment_prefix_and_a_requiring_one_stays_raw() {
    let r = resources();
    let rules = &r.policies[0].rules;
    assert_eq!(rules[0].path, PathMatch::Segments("/health".into()));
    assert_eq!(rules[1].path, PathMatch::Prefix("/admin".into()));
}

#[test]
fn the_exemption_renders_as_path_separated_prefix_and_spares_other_mappings() {
    let envoy: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &render(&resources(), &RenderOptions::default())
            .unwrap()
            .envoy,
    )
    .unwrap();
    let routes =
        envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"][0]["routes"]
            .as_sequence()
            .cloned()
            .unwrap();
    let jwt_on = |route: &serde_yaml_ng::Value| {
        route["typed_per_filter_config"]
            .get("gatehouse.jwt.idp")
            .is_some()
    };
    let exempt = routes
        .iter()
        .find(|r| r["match"]["path_separated_prefix"] == "/health")
        .expect("a path_separated_prefix route");
    assert!(!jwt_on(exempt));
    // The /healthz/ Mapping is not under /health: the rule after applies.
    let healthz: Vec<&serde_yaml_ng::Value> = routes
        .iter()
        .filter(|r| r["match"]["prefix"] == "/healthz/")
        .collect();
    assert!(!healthz.is_empty());
    assert!(healthz.iter().all(|r| jwt_on(r)), "{healthz:?}");
    let table = route_table(&resources()).unwrap();
    assert!(table.contains("/health (and /health/...)"), "{table}");
}
