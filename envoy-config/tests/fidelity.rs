//! Ambassador's meaning of fields Gatehouse accepts: each test is an
//! example in Ambassador's format and what Ambassador makes of it. Where
//! Envoy's behaviour is in question, `e2e/tests/fidelity.rs` runs the same
//! through real Envoy.

// Test code: a failed unwrap is the failure message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gatehouse_config::{Instance, RenderOptions, Rendered, Resources, load, load_for, render};
use serde_yaml_ng::Value;

fn rendered(text: &str) -> Result<Rendered, String> {
    let mut resources = Resources::default();
    load(text, "edge.yaml", &mut resources).map_err(|e| e.to_string())?;
    render(&resources, &RenderOptions::default()).map_err(|e| e.to_string())
}

fn envoy(text: &str) -> Value {
    serde_yaml_ng::from_str(&rendered(text).unwrap().envoy).unwrap()
}

/// The routes of virtual host `vhost` on the first listener.
fn routes(envoy: &Value, vhost: &str) -> Vec<Value> {
    let hcm = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    hcm["route_config"]["virtual_hosts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == vhost)
        .unwrap_or_else(|| panic!("no virtual host {vhost}"))["routes"]
        .as_sequence()
        .unwrap()
        .clone()
}

fn named<'a>(routes: &'a [Value], name: &str) -> Vec<&'a Value> {
    routes.iter().filter(|r| r["name"] == name).collect()
}

fn cluster_addresses(envoy: &Value) -> Vec<String> {
    envoy["static_resources"]["clusters"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| {
            let a = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                ["socket_address"];
            format!(
                "{}:{}",
                a["address"].as_str().unwrap_or_default(),
                a["port_value"].as_u64().unwrap_or_default()
            )
        })
        .collect()
}

fn mapping(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

// --- ambassador_id -------------------------------------------------------

const IDS: &str = "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: everyone}
spec: {prefix: /all/, service: all}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: blue-only}
spec: {prefix: /blue/, service: blue, ambassador_id: blue}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: blue-and-green}
spec: {prefix: /both/, service: both, ambassador_id: [green, blue]}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: automatic}
spec: {prefix: /auto/, service: auto, ambassador_id: [_automatic_]}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: blue-host}
spec: {hostname: blue.example.com, ambassador_id: [blue], requestPolicy: {insecure: {action: Route}}}
";

fn served(id: &str) -> Vec<String> {
    let mut r = Resources::default();
    let instance = Instance {
        ambassador_id: id.into(),
        ..Instance::default()
    };
    load_for(&instance, IDS, "ids.yaml", &mut r).unwrap();
    let mut names: Vec<String> = r.mappings.iter().map(|m| m.name.clone()).collect();
    names.extend(r.hosts.iter().map(|h| h.name.clone()));
    names
}

#[test]
fn an_instance_serves_only_the_resources_its_ambassador_id_names() {
    assert_eq!(served("default"), ["everyone", "automatic"]);
    assert_eq!(
        served("blue"),
        ["blue-only", "blue-and-green", "automatic", "blue-host"]
    );
    assert_eq!(served("green"), ["blue-and-green", "automatic"]);
}

#[test]
fn an_empty_or_malformed_ambassador_id_is_refused() {
    for (id, want) in [
        ("[]", "an empty id serves no instance"),
        ("''", "an empty id serves no instance"),
        ("{a: b}", "write an instance id or a list"),
        ("[1]", "is not an instance id"),
    ] {
        let e = rendered(&mapping(
            "m",
            &format!("{{prefix: /, service: s, ambassador_id: {id}}}"),
        ))
        .unwrap_err();
        assert!(
            e.contains("spec.ambassador_id") && e.contains(want),
            "{id}: {e}"
        );
    }
}

// --- service namespaces --------------------------------------------------

#[test]
fn a_bare_service_name_resolves_in_the_mappings_namespace() {
    let doc = |name: &str, ns: &str, service: &str| {
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{prefix: /{name}/, service: '{service}'}}\n"
        )
    };
    let text = [
        doc("quote", "shop", "quote"),
        doc("port", "shop", "quote:8080"),
        doc("scheme", "shop", "https://pay"),
        doc("dotted", "shop", "quote.other"),
        doc("home", "default", "home"),
        doc("ip", "shop", "10.0.0.7:9000"),
        doc("local", "shop", "localhost:7000"),
    ]
    .concat();
    let addresses = cluster_addresses(&envoy(&text));
    for want in [
        "quote.shop:80",
        "quote.shop:8080",
        "pay.shop:443",
        "quote.other:80",
        "home:80",
        "10.0.0.7:9000",
        "localhost:7000",
    ] {
        assert!(
            addresses.iter().any(|a| a == want),
            "{want} in {addresses:?}"
        );
    }
    // The instance's own namespace is the one where names stay bare.
    let mut r = Resources::default();
    let instance = Instance {
        namespace: "shop".into(),
        ..Instance::default()
    };
    load_for(&instance, &doc("quote", "shop", "quote"), "t.yaml", &mut r).unwrap();
    assert_eq!(r.mappings[0].host, "quote");
}

// --- canary groups -------------------------------------------------------

#[test]
fn each_member_of_a_split_keeps_its_rewrite_timeouts_and_host() {
    let text = [
        mapping(
            "stable",
            "{prefix: /shop/, service: shop, rewrite: /v1/, timeout_ms: 1000, host_rewrite: shop.internal, add_request_headers: {x-a: '1'}}",
        ),
        mapping(
            "canary",
            "{prefix: /shop/, service: shop-v2, weight: 25, rewrite: /v2/, idle_timeout_ms: 9000, add_request_headers: {x-b: '2'}}",
        ),
    ]
    .concat();
    let routes = routes(&envoy(&text), "any");
    let canary = named(&routes, "canary");
    let stable = named(&routes, "stable");
    assert_eq!((canary.len(), stable.len()), (1, 1), "{routes:?}");
    // The weighted member first, its share of one random number a request;
    // the last takes the rest.
    let at = |r: &Value| routes.iter().position(|x| x == r).unwrap();
    assert!(at(canary[0]) < at(stable[0]));
    let fraction = &canary[0]["match"]["runtime_fraction"]["default_value"];
    assert_eq!(fraction["numerator"], 25);
    assert_eq!(fraction["denominator"], "HUNDRED");
    assert!(stable[0]["match"]["runtime_fraction"].is_null());
    let (c, s) = (&canary[0]["route"], &stable[0]["route"]);
    assert_eq!(c["prefix_rewrite"], "/v2/");
    assert_eq!(s["prefix_rewrite"], "/v1/");
    assert_eq!(
        c["timeout"], "3s",
        "Ambassador's default, not the other's 1s"
    );
    assert_eq!(s["timeout"], "1s");
    assert_eq!(c["idle_timeout"], "9s");
    assert!(s["idle_timeout"].is_null());
    assert!(c["host_rewrite_literal"].is_null());
    assert_eq!(s["host_rewrite_literal"], "shop.internal");
    assert!(c["cluster"].as_str().unwrap().starts_with("shop_v2"));
    // Added headers: the union, on both.
    for r in [canary[0], stable[0]] {
        let added: Vec<&str> = r["request_headers_to_add"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|h| h["header"]["key"].as_str().unwrap())
            .collect();
        assert_eq!(added, ["x-a", "x-b"]);
    }
}

#[test]
fn shares_without_weights_and_under_a_hundred_follow_ambassador() {
    // Two weights that leave 70: the last member takes it, as in Ambassador.
    let text = [
        mapping("a", "{prefix: /s/, service: a, weight: 10}"),
        mapping("b", "{prefix: /s/, service: b, weight: 20}"),
    ]
    .concat();
    let routes = routes(&envoy(&text), "any");
    assert_eq!(
        named(&routes, "a")[0]["match"]["runtime_fraction"]["default_value"]["numerator"],
        10
    );
    assert!(named(&routes, "b")[0]["match"]["runtime_fraction"].is_null());
    let over = [
        mapping("a", "{prefix: /s/, service: a, weight: 60}"),
        mapping("b", "{prefix: /s/, service: b, weight: 50}"),
    ]
    .concat();
    let e = rendered(&over).unwrap_err();
    assert!(e.contains("add up to 110"), "{e}");
}

#[test]
fn members_of_a_split_must_agree_on_what_the_split_shares() {
    for (field, a, b) in [
        (
            "labels",
            "labels: {ambassador: [{g: [{remote_address: {key: remote_address}}]}]}",
            "labels: {ambassador: [{g: [{generic_key: {value: x}}]}]}",
        ),
        (
            "cors",
            "cors: {origins: 'https://a'}",
            "cors: {origins: 'https://b'}",
        ),
        (
            "retry_policy",
            "retry_policy: {retry_on: 5xx}",
            "retry_policy: {retry_on: reset}",
        ),
        (
            "add_request_headers.x-a",
            "add_request_headers: {x-a: '1'}",
            "add_request_headers: {x-a: '2'}",
        ),
    ] {
        let text = [
            mapping("one", &format!("{{prefix: /s/, service: a, {a}}}")),
            mapping("two", &format!("{{prefix: /s/, service: b, {b}}}")),
        ]
        .concat();
        let e = rendered(&text).unwrap_err();
        assert!(
            e.contains(&format!("spec.{field}")) && e.contains("with the same match"),
            "{field}: {e}"
        );
    }
    // One member setting a shared field gives it to the whole split.
    let text = [
        mapping(
            "one",
            "{prefix: /s/, service: a, cors: {origins: 'https://a'}}",
        ),
        mapping("two", "{prefix: /s/, service: b}"),
    ]
    .concat();
    let routes = routes(&envoy(&text), "any");
    for name in ["one", "two"] {
        assert!(
            !named(&routes, name)[0]["typed_per_filter_config"]["envoy.filters.http.cors"]
                .is_null()
        );
    }
}

// --- rewrite -------------------------------------------------------------

#[test]
fn an_empty_rewrite_sends_the_path_as_it_came_also_under_a_narrower_rule() {
    let text = format!(
        "{}---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: open}}
spec:
  rules:
  - {{path: /httpbin/ip, filters: null}}
",
        mapping(
            "httpbin",
            "{prefix: /httpbin/, service: httpbin, rewrite: ''}"
        )
    );
    let routes = routes(&envoy(&text), "any");
    let mine: Vec<&Value> = routes
        .iter()
        .filter(|r| r["name"].as_str().unwrap().starts_with("httpbin"))
        .collect();
    assert_eq!(mine.len(), 2, "{routes:?}");
    for r in mine {
        assert!(r["route"]["prefix_rewrite"].is_null(), "{r:?}");
    }
}

// --- hostnames -----------------------------------------------------------

#[test]
fn hostname_globs_are_checked_and_rules_for_a_covered_name_apply() {
    for bad in ["foo.*.com", "*foo.com", "*.*", "a..b", "exa mple.com"] {
        let e = rendered(&mapping(
            "m",
            &format!("{{hostname: '{bad}', prefix: /, service: s}}"),
        ))
        .unwrap_err();
        assert!(e.contains("spec.hostname"), "{bad}: {e}");
    }
    let text = format!(
        "{}---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: idp}}
spec: {{JWT: {{jwksURI: 'https://idp.example.com/jwks.json'}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: api}}
spec:
  rules:
  - {{host: api.example.com, path: '*', filters: [{{name: idp}}]}}
",
        mapping("wild", "{hostname: '*.example.com', prefix: /, service: s}")
    );
    let envoy = envoy(&text);
    // The name the rule is for has its own virtual host with the glob's
    // route, filtered; other names under the glob get the glob's host.
    let api = routes(&envoy, "api_example_com");
    let guarded = api
        .iter()
        .find(|r| r["route"]["cluster"] == "s_80")
        .expect("the glob's route on api.example.com");
    assert!(
        !guarded["typed_per_filter_config"]["gatehouse.jwt.idp"].is_null(),
        "{guarded:?}"
    );
    let wild = routes(&envoy, "*_example_com");
    assert!(wild.iter().any(|r| r["route"]["cluster"] == "s_80"));
}

// --- JWT and OAuth2 Filters ----------------------------------------------

fn jwt_filter(extra: &str) -> Result<Rendered, String> {
    rendered(&format!(
        "{}---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: idp}}
spec: {{JWT: {{jwksURI: 'https://idp.example.com/jwks.json'{extra}}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: all}}
spec: {{rules: [{{path: '*', filters: [{{name: idp}}]}}]}}
",
        mapping("m", "{prefix: /, service: s}")
    ))
}

#[test]
fn jwt_valid_algorithms_default_to_ambassadors_and_none_is_refused() {
    let text = jwt_filter("").unwrap().envoy;
    assert!(
        text.contains(r#"\"algorithms\":[\"RS256\",\"RS384\",\"RS512\"]"#)
            || text.contains(r#""algorithms":["RS256","RS384","RS512"]"#),
        "{text}"
    );
    let e = jwt_filter(", validAlgorithms: [RS256, none]").unwrap_err();
    assert!(
        e.contains("validAlgorithms[1]") && e.contains("unsigned"),
        "{e}"
    );
    let e = jwt_filter(", validAlgorithms: [HS256]").unwrap_err();
    assert!(e.contains("validAlgorithms[0]"), "{e}");
}

#[test]
fn an_oauth2_filter_forwards_the_access_token_upstream() {
    let authz = rendered(&format!(
        "{}---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: sso}}
spec:
  OAuth2:
    authorizationURL: https://idp.example.com
    clientID: edge
    secretName: sso
    protectedOrigins: [{{origin: 'https://shop.example.com'}}]
",
        mapping("m", "{prefix: /, service: s}")
    ))
    .unwrap()
    .authz
    .unwrap();
    let config: Value = serde_yaml_ng::from_str(&authz).unwrap();
    assert_eq!(
        config["filters"]["sso"]["oidc"]["forward_access_token"],
        true
    );
}

// --- rate limits ---------------------------------------------------------

fn limited(labels: &str, limits: &str, extra: &str) -> Result<Rendered, String> {
    rendered(&format!(
        "{}---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {{name: limits}}
spec:
  domain: ambassador
  limits: {limits}
{extra}",
        mapping(
            "api",
            &format!("{{prefix: /api/, service: api, labels: {labels}}}")
        )
    ))
}

fn actions(r: &Rendered) -> Vec<Vec<String>> {
    let envoy: Value = serde_yaml_ng::from_str(&r.envoy).unwrap();
    let routes = routes(&envoy, "any");
    named(&routes, "api")[0]["route"]["rate_limits"]
        .as_sequence()
        .map(|l| {
            l.iter()
                .map(|d| {
                    d["actions"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .map(|a| {
                            let (kind, body) = a.as_mapping().unwrap().iter().next().unwrap();
                            let key = body["descriptor_key"].as_str().unwrap_or_default();
                            format!(
                                "{}{}{key}",
                                kind.as_str().unwrap(),
                                if key.is_empty() { "" } else { ":" }
                            )
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

const CLIENT_AND_PATH: &str = "{ambassador: [{per_client: [{request_headers: {key: client, header_name: x-client}}, {request_headers: {key: path, header_name: ':path'}}]}]}";

#[test]
fn an_empty_pattern_value_counts_each_value_apart() {
    let r = limited(
        "{ambassador: [{g: [{request_headers: {key: client, header_name: x-client}}]}]}",
        "[{pattern: [{client: ''}], rate: 5, unit: minute}]",
        "",
    )
    .unwrap();
    let config: Value = serde_yaml_ng::from_str(&r.ratelimit["ambassador.yaml"]).unwrap();
    let d = &config["descriptors"][0];
    assert_eq!(d["key"], "client");
    assert!(d["value"].is_null(), "key only, not a match on '': {d:?}");
}

#[test]
fn a_pattern_shorter_than_the_label_group_matches_its_start() {
    let r = limited(
        CLIENT_AND_PATH,
        "[{pattern: [{client: '*'}], rate: 5, unit: minute}]",
        "",
    )
    .unwrap();
    assert_eq!(actions(&r), [["request_headers:client"]]);
    // A pattern as long as the group keeps the whole group.
    let r = limited(
        CLIENT_AND_PATH,
        "[{pattern: [{client: '*'}, {path: /a}], rate: 5, unit: minute}]",
        "",
    )
    .unwrap();
    assert_eq!(
        actions(&r),
        [["request_headers:client", "request_headers:path"]]
    );
    // Both at once: Ambassador takes the longest that matches each request,
    // which a descriptor chosen ahead of the request cannot say.
    let e = limited(
        CLIENT_AND_PATH,
        "[{pattern: [{client: '*'}], rate: 5, unit: minute}, {pattern: [{client: '*'}, {path: /a}], rate: 1, unit: minute}]",
        "",
    )
    .unwrap_err();
    assert!(
        e.contains("spec.labels.ambassador[0]") && e.contains("1, 2"),
        "{e}"
    );
}

#[test]
fn labels_of_other_domains_are_not_sent_and_the_service_names_its_domain() {
    let labels = "{ambassador: [{a: [{remote_address: {key: remote_address}}]}], other: [{o: [{generic_key: {value: x}}]}]}";
    let r = limited(
        labels,
        "[{pattern: [{remote_address: '*'}], rate: 5, unit: minute}]",
        "",
    )
    .unwrap();
    assert_eq!(actions(&r), [["remote_address"]]);
    assert!(!r.envoy.contains("gatehouse.ratelimit.other"));
    let service = "---
apiVersion: getambassador.io/v3alpha1
kind: RateLimitService
metadata: {name: rls}
spec: {service: 'ratelimit:8081', domain: other}
";
    let r = limited(
        labels,
        "[{pattern: [{remote_address: '*'}], rate: 5, unit: minute}]",
        service,
    )
    .unwrap();
    assert_eq!(actions(&r), [["generic_key"]]);
    assert!(r.envoy.contains("gatehouse.ratelimit.other"));
}

#[test]
fn omit_if_not_present_drops_the_group_as_ambassador_does() {
    for omit in ["true", "false"] {
        let r = limited(
            &format!("{{ambassador: [{{g: [{{request_headers: {{key: c, header_name: x-c, omit_if_not_present: {omit}}}}}]}}]}}"),
            "[{pattern: [{c: '*'}], rate: 5, unit: minute}]",
            "",
        )
        .unwrap();
        assert!(!r.envoy.contains("skip_if_absent"), "{omit}");
    }
}

// --- Hosts and Listeners -------------------------------------------------

const XFP: &str = "---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: http}
spec: {port: 8080, protocol: HTTP, securityModel: XFP, l7Depth: 1}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: shop}
spec: {hostname: shop.example.com}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: api}
spec: {hostname: api.example.com, requestPolicy: {insecure: {action: Reject}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {name: open}
spec: {hostname: open.example.com, requestPolicy: {insecure: {action: Route}}}
";

#[test]
fn a_host_without_a_certificate_still_gets_its_insecure_action_by_x_forwarded_proto() {
    let text = [
        mapping(
            "shop",
            "{hostname: shop.example.com, prefix: /, service: shop}",
        ),
        mapping(
            "api",
            "{hostname: api.example.com, prefix: /, service: api}",
        ),
        mapping(
            "open",
            "{hostname: open.example.com, prefix: /, service: open}",
        ),
        XFP.to_owned(),
    ]
    .concat();
    let envoy = envoy(&text);
    let xfp_https = |r: &Value| {
        r["match"]["headers"].as_sequence().is_some_and(|h| {
            h.iter()
                .any(|m| m["name"] == "x-forwarded-proto" && m["string_match"]["exact"] == "https")
        })
    };
    // Redirect (the default): the route for XFP https, then its redirect twin.
    let shop = routes(&envoy, "shop_example_com");
    let route = named(&shop, "shop")[0];
    assert!(xfp_https(route));
    let twin = named(&shop, "shop-https-redirect")[0];
    assert_eq!(twin["redirect"]["https_redirect"], true);
    assert!(!xfp_https(twin));
    // Reject: the route for XFP https only.
    let api = routes(&envoy, "api_example_com");
    assert!(xfp_https(named(&api, "api")[0]));
    assert!(api.iter().all(|r| r["redirect"].is_null()));
    // Route: no condition.
    let open = routes(&envoy, "open_example_com");
    assert!(!xfp_https(named(&open, "open")[0]));
}

#[test]
fn an_https_listener_takes_cleartext_on_the_same_port() {
    let text = format!(
        "{}---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {{name: https}}
spec: {{port: 8443, protocol: HTTPS, securityModel: XFP}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: shop}}
spec: {{hostname: shop.example.com, tlsSecret: {{name: shop-cert}}}}
",
        mapping(
            "shop",
            "{hostname: shop.example.com, prefix: /, service: shop}"
        )
    );
    let envoy = envoy(&text);
    let chains = envoy["static_resources"]["listeners"][0]["filter_chains"]
        .as_sequence()
        .unwrap();
    let protocols: Vec<&str> = chains
        .iter()
        .map(|c| {
            c["filter_chain_match"]["transport_protocol"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(protocols, ["tls", "raw_buffer"]);
}

// --- what real files carry -----------------------------------------------

#[test]
fn a_kubectl_export_loads_as_the_resources_it_holds() {
    let export = "apiVersion: v1
kind: List
items:
- apiVersion: getambassador.io/v3alpha1
  kind: Mapping
  metadata:
    name: quote
    namespace: default
    uid: 7f1c2a9e-0000-4000-8000-000000000001
    resourceVersion: '48213'
    generation: 3
    creationTimestamp: '2026-01-02T03:04:05Z'
    managedFields: [{manager: kubectl, operation: Update}]
    annotations: {kubectl.kubernetes.io/last-applied-configuration: '{}'}
  spec:
    prefix: /quote/
    service: quote
    docs: {path: /.ambassador-internal/openapi-docs}
  status: {}
- apiVersion: getambassador.io/v3alpha1
  kind: Listener
  metadata: {name: http}
  spec:
    port: 8080
    protocol: HTTP
    securityModel: XFP
    hostBinding: {namespace: {from: ALL}}
";
    let mut r = Resources::default();
    load(export, "export.yaml", &mut r).unwrap();
    assert_eq!(r.mappings[0].name, "quote");
    assert_eq!(r.listeners[0].port, 8080);
    // A narrower binding than Gatehouse's is refused, not widened.
    let e = rendered(
        "apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: http}
spec: {port: 8080, protocol: HTTP, securityModel: XFP, hostBinding: {namespace: {from: SELF}}}
",
    )
    .unwrap_err();
    assert!(e.contains("spec.hostBinding"), "{e}");
    // A typo in a kubectl field is still a typo.
    let e = rendered(&mapping("m", "{prefix: /, service: s, docs: {pth: /x}}")).unwrap_err();
    assert!(e.contains("spec.docs"), "{e}");
}

#[test]
fn added_headers_in_the_object_form_append_as_in_ambassador() {
    let text = mapping(
        "m",
        "{prefix: /, service: s, add_request_headers: {x-plain: one, x-appended: {value: two}, x-replaced: {value: three, append: false}, x-flag: true}}",
    );
    let routes = routes(&envoy(&text), "any");
    let added: Vec<(String, String, String)> = named(&routes, "m")[0]["request_headers_to_add"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["header"]["key"].as_str().unwrap().to_owned(),
                h["header"]["value"].as_str().unwrap().to_owned(),
                h["append_action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = |k: &str, v: &str, a: &str| (k.to_owned(), v.to_owned(), a.to_owned());
    assert_eq!(
        added,
        [
            want("x-appended", "two", "APPEND_IF_EXISTS_OR_ADD"),
            want("x-flag", "true", "OVERWRITE_IF_EXISTS_OR_ADD"),
            want("x-plain", "one", "OVERWRITE_IF_EXISTS_OR_ADD"),
            want("x-replaced", "three", "OVERWRITE_IF_EXISTS_OR_ADD"),
        ]
    );
}

#[test]
fn a_limit_name_names_the_rate_limit_in_the_service_config() {
    let r = limited(
        "{ambassador: [{g: [{remote_address: {key: remote_address}}]}]}",
        "[{name: per-address, pattern: [{remote_address: '*'}], rate: 5, unit: minute}]",
        "",
    )
    .unwrap();
    let config: Value = serde_yaml_ng::from_str(&r.ratelimit["ambassador.yaml"]).unwrap();
    assert_eq!(
        config["descriptors"][0]["rate_limit"]["name"],
        "per-address"
    );
}

// --- traffic fields -------------------------------------------------------

#[test]
fn traffic_fields_that_cannot_render_together_are_refused_by_name() {
    for (text, want) in [
        (
            [
                mapping("a", "{prefix: /s/, service: a, host_redirect: true}"),
                mapping("b", "{prefix: /s/, service: b}"),
            ]
            .concat(),
            "spec.host_redirect",
        ),
        (
            mapping("a", "{prefix: /s/, service: a, shadow: true}"),
            "no Mapping with the same match",
        ),
        (
            [
                mapping("a", "{prefix: /s/, service: a}"),
                mapping("b", "{prefix: /s/, service: b, shadow: true}"),
                mapping("c", "{prefix: /s/, service: c, shadow: true}"),
            ]
            .concat(),
            "one shadow per match",
        ),
        (
            [
                mapping("a", "{prefix: /s/, service: a, connect_timeout_ms: 100}"),
                mapping("b", "{prefix: /t/, service: a}"),
            ]
            .concat(),
            "spec.connect_timeout_ms",
        ),
        (
            mapping("a", "{prefix: /s/, service: a, path_redirect: /x}"),
            "goes with host_redirect",
        ),
        (
            mapping(
                "a",
                "{prefix: /s/, service: a, host_redirect: true, redirect_response_code: 200}",
            ),
            "spec.redirect_response_code",
        ),
    ] {
        let e = rendered(&text).unwrap_err();
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn a_shadow_is_no_member_of_the_split_and_copies_by_its_weight() {
    let text = [
        mapping("a", "{prefix: /s/, service: a}"),
        mapping(
            "copy",
            "{prefix: /s/, service: copy, shadow: true, weight: 10}",
        ),
    ]
    .concat();
    let routes = routes(&envoy(&text), "any");
    assert!(named(&routes, "copy").is_empty(), "{routes:?}");
    let a = named(&routes, "a")[0];
    assert!(
        a["match"]["runtime_fraction"].is_null(),
        "a is the whole split"
    );
    let mirror = &a["route"]["request_mirror_policies"][0];
    assert_eq!(mirror["cluster"], "copy_80");
    assert_eq!(mirror["runtime_fraction"]["default_value"]["numerator"], 10);
}

#[test]
fn a_rule_holds_on_a_case_insensitive_mapping_whatever_case_either_is_written_in() {
    let text = format!(
        "{}{}---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: idp}}
spec: {{JWT: {{jwksURI: 'https://idp.example.com/jwks.json'}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {{name: admin}}
spec:
  rules:
  - {{path: '/admin/*', filters: [{{name: idp}}]}}
",
        mapping(
            "shouty",
            "{prefix: /ADMIN/, service: s, case_sensitive: false}"
        ),
        mapping("quiet", "{prefix: /admin/, service: t}"),
    );
    let routes = routes(&envoy(&text), "any");
    // `/ADMIN/` answers `/admin/x` too: the rule for `/admin/*` holds there.
    for name in ["shouty", "quiet"] {
        let r = named(&routes, name)[0];
        let jwt = &r["typed_per_filter_config"]["gatehouse.jwt.idp"];
        assert!(!jwt.is_null() && jwt["disabled"].is_null(), "{name}: {r:?}");
    }
    assert_eq!(
        named(&routes, "shouty")[0]["match"]["case_sensitive"],
        false
    );
}

// --- the ambassador Module ---------------------------------------------------

const MODULE: &str = "---
apiVersion: getambassador.io/v3alpha1
kind: Module
metadata: {name: ambassador}
spec:
  config:
    cors: {origins: 'https://app.example.com'}
    retry_policy: {retry_on: gateway-error, num_retries: 2}
    ip_deny: [{remote: 192.0.2.0/24}, {peer: 10.1.2.3}]
";

#[test]
fn the_module_gives_its_defaults_to_mappings_without_their_own() {
    let text = [
        mapping("plain", "{prefix: /p/, service: p}"),
        mapping(
            "own",
            "{prefix: /o/, service: o, cors: {origins: 'https://own.example.com'}}",
        ),
        MODULE.to_owned(),
    ]
    .concat();
    let envoy = envoy(&text);
    let routes = routes(&envoy, "any");
    let origin = |name: &str| {
        named(&routes, name)[0]["typed_per_filter_config"]["envoy.filters.http.cors"]
            ["allow_origin_string_match"][0]["exact"]
            .clone()
    };
    assert_eq!(origin("plain"), "https://app.example.com");
    assert_eq!(origin("own"), "https://own.example.com");
    assert_eq!(
        named(&routes, "plain")[0]["route"]["retry_policy"]["retry_on"],
        "gateway-error"
    );
    let hcm = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let rbac = &hcm["http_filters"][0];
    assert_eq!(rbac["name"], "envoy.filters.http.rbac");
    let rules = &rbac["typed_config"]["rules"];
    assert_eq!(rules["action"], "DENY");
    let principals = &rules["policies"]["module-ip"]["principals"];
    assert_eq!(principals[0]["remote_ip"]["address_prefix"], "192.0.2.0");
    assert_eq!(principals[0]["remote_ip"]["prefix_len"], 24);
    assert_eq!(principals[1]["direct_remote_ip"]["prefix_len"], 32);
}

#[test]
fn module_settings_stock_envoy_cannot_honour_are_refused_by_name() {
    for (config, want) in [
        (
            "{xff_num_trusted_hops: 1}",
            "spec.config.xff_num_trusted_hops",
        ),
        (
            "{error_response_overrides: []}",
            "spec.config.error_response_overrides",
        ),
        ("{diagnostics: {enabled: true}}", "spec.config.diagnostics"),
        (
            "{ip_allow: [{peer: 10.0.0.0/8}], ip_deny: [{peer: 10.1.0.0/16}]}",
            "not both",
        ),
        (
            "{ip_allow: [{peer: 10.0.0.0/33}]}",
            "spec.config.ip_allow[0]",
        ),
    ] {
        let text = format!(
            "apiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata: {{name: ambassador}}\nspec: {{config: {config}}}\n"
        );
        let e = rendered(&text).unwrap_err();
        assert!(e.contains(want), "{config}: {e}");
    }
    let e = rendered("apiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata: {name: tls}\nspec: {config: {}}\n").unwrap_err();
    assert!(e.contains("named ambassador"), "{e}");
}

#[test]
fn a_wildcard_host_covers_the_names_no_host_of_their_own_does() {
    let text = format!(
        "{}{}---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: wild}}
spec: {{hostname: '*.example.com', requestPolicy: {{insecure: {{action: Reject}}}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: shop}}
spec: {{hostname: shop.example.com, requestPolicy: {{insecure: {{action: Route}}}}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Host
metadata: {{name: any}}
spec: {{hostname: '*', tlsSecret: {{name: fallback}}}}
",
        mapping(
            "api",
            "{hostname: api.example.com, prefix: /, service: api}"
        ),
        mapping(
            "shop",
            "{hostname: shop.example.com, prefix: /, service: shop}"
        ),
    );
    let envoy = envoy(&text);
    // Cleartext: the glob's Reject for api, shop's own Route, and the
    // `*` Host's default Redirect for every other name.
    let api = routes(&envoy, "api_example_com");
    assert_eq!(api[0]["name"], "wild-insecure-rejected", "{api:?}");
    assert!(!named(&routes(&envoy, "shop_example_com"), "shop").is_empty());
    assert_eq!(routes(&envoy, "any")[0]["name"], "any-https-redirect");
    // TLS: the `*` Host's certificate for any server name.
    let tls = &envoy["static_resources"]["listeners"][1]["filter_chains"];
    let chain = tls.as_sequence().unwrap().iter().find(|c| {
        c["transport_socket"]["typed_config"]["common_tls_context"]["tls_certificates"][0]
            ["certificate_chain"]["filename"]
            .as_str()
            .unwrap()
            .contains("fallback")
    });
    let m = &chain.unwrap()["filter_chain_match"];
    assert!(m["server_names"].is_null(), "{m:?}");
    for bad in ["foo.*.com", "*foo.com"] {
        let e = rendered(&format!(
            "apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {{name: h}}\nspec: {{hostname: '{bad}'}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("spec.hostname"), "{bad}: {e}");
    }
}

/// `auth_context_extensions` go with every check of the Mapping's
/// requests, as Ambassador sends them to its AuthService; the stack's own
/// keys cannot be overridden, and a route gatehouse-authz does not check
/// carries none.
#[test]
fn auth_context_extensions_go_with_each_check() {
    let policy = "---\napiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {name: keys}\nspec: {APIKey: {keys: [{secretName: acme}]}}\n---\napiVersion: getambassador.io/v3alpha1\nkind: FilterPolicy\nmetadata: {name: p}\nspec: {rules: [{path: '/api/*', filters: [{name: keys}]}]}\n";
    let text = format!(
        "{}{}{policy}",
        mapping(
            "api",
            "{prefix: /api/, service: api, auth_context_extensions: {tenant: shop, tier: gold}}"
        ),
        mapping(
            "open",
            "{prefix: /open/, service: api, auth_context_extensions: {tenant: shop}}"
        ),
    );
    let e = envoy(&text);
    let all = routes(&e, "any");
    let api = named(&all, "api");
    let ext = &api[0]["typed_per_filter_config"]["gatehouse.authz"]["check_settings"]["context_extensions"];
    assert_eq!(ext["gatehouse_filter"], "keys");
    assert_eq!(ext["tenant"], "shop");
    assert_eq!(ext["tier"], "gold");
    let open = named(&all, "open");
    assert_eq!(
        open[0]["typed_per_filter_config"]["gatehouse.authz"]["disabled"],
        true
    );
    let e = rendered(&mapping(
        "api",
        "{prefix: /api/, service: api, auth_context_extensions: {gatehouse_filter: other}}",
    ))
    .unwrap_err();
    assert!(
        e.contains("spec.auth_context_extensions.gatehouse_filter"),
        "{e}"
    );
}

/// An OAuth2 Filter may protect several origins: each gets its callback on
/// its own host; origins must share a scheme (one session cookie setting).
#[test]
fn several_protected_origins_each_get_their_callback() {
    let filter = |origins: &str| {
        format!(
            "---\napiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {{name: sso}}\nspec: {{OAuth2: {{authorizationURL: 'https://idp.example.com', clientID: c, secretName: s, protectedOrigins: [{origins}]}}}}\n"
        )
    };
    let out = rendered(&filter(
        "{origin: 'https://shop.example.com'}, {origin: 'https://admin.example.com/'}",
    ))
    .unwrap();
    let authz: Value = serde_yaml_ng::from_str(&out.authz.unwrap()).unwrap();
    let oidc = &authz["filters"]["sso"]["oidc"];
    assert_eq!(
        oidc["callback_url"],
        "https://shop.example.com/.gatehouse/oidc/sso/callback"
    );
    assert_eq!(
        oidc["other_callback_urls"][0],
        "https://admin.example.com/.gatehouse/oidc/sso/callback"
    );
    for (origins, message) in [
        (
            "{origin: 'https://shop.example.com'}, {origin: 'http://admin.example.com'}",
            "protectedOrigins[1].origin: the origins of one Filter share a scheme",
        ),
        (
            "{origin: 'https://shop.example.com'}, {origin: 'https://SHOP.example.com'}",
            "is named twice",
        ),
        (
            "{origin: 'https://shop.example.com/app'}",
            "an origin has no path",
        ),
        (
            "{origin: 'https://shop.example.com', includeSubdomains: true}",
            "includeSubdomains",
        ),
    ] {
        let e = rendered(&filter(origins)).unwrap_err();
        assert!(e.contains(message), "{origins}: {e}");
    }
}

/// No Host at all: Emissary's default `*` Host without a certificate, so
/// every Mapping is served in cleartext (routed, not redirected).
#[test]
fn without_a_host_everything_is_served_in_cleartext() {
    let e = envoy(&mapping("app", "{prefix: /app/, service: app}"));
    let listeners = e["static_resources"]["listeners"].as_sequence().unwrap();
    assert_eq!(listeners.len(), 1, "one cleartext listener");
    let app = named(&routes(&e, "any"), "app")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(app.len(), 1);
    assert!(app[0]["route"]["cluster"].is_string(), "{:?}", app[0]);
    assert!(app[0]["redirect"].is_null());
}
