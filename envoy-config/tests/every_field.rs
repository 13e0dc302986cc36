//! No accepted field is ignored. The fields each kind accepts are read from
//! the parser itself (serde names them all when it refuses an unknown one);
//! each must change the rendered output the way a test here sets it, or be
//! listed as a no-op with the reason Ambassador has none either. Each must
//! also have its row in `envoy-config/README.md`, so the table cannot drift.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gatehouse_config::{RenderOptions, Resources, load, render};

/// The fields `kind` accepts in `spec`, as the parser names them.
fn accepted(kind: &str, spec: &str) -> Vec<String> {
    let text = format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: {kind}\nmetadata: {{name: probe}}\nspec: {{{spec}, zz_not_a_field: 1}}\n"
    );
    let mut r = Resources::default();
    let e = load(&text, "probe.yaml", &mut r).unwrap_err().message;
    let list = e
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("{kind}: no field list in {e:?}"));
    list.split(';')
        .next()
        .unwrap()
        .split(", ")
        .map(|f| f.trim().trim_matches('`').to_owned())
        .collect()
}

/// Everything rendered for `text`: bootstrap and service files.
fn output(text: &str) -> String {
    let mut r = Resources::default();
    load(text, "t.yaml", &mut r).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let out = render(&r, &RenderOptions::default()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    format!("{}\n{:?}\n{:?}", out.envoy, out.authz, out.ratelimit)
}

fn doc(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: getambassador.io/v3alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n"
    )
}

/// For one kind: the base spec, what surrounds it, and per accepted field
/// either the spec with the field set (replacing the base's where it has
/// one) or the reason it is a no-op.
struct Kind {
    kind: &'static str,
    base: &'static str,
    around: &'static str,
    fields: &'static [(&'static str, Field)],
}

enum Field {
    /// The spec with the field set; its output must differ from the base's.
    Set(&'static str),
    /// The spec with the field set, and why the output does not change.
    NoOp(&'static str, &'static str),
}

use Field::{NoOp, Set};

/// Two more members of the base Mapping's split (a weight on the last
/// member alone would change nothing: it takes what the others leave), and
/// a longer prefix that `precedence` can jump.
const SPLIT: &str = "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: other}\nspec: {prefix: /a/, service: other, weight: 10}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: third}\nspec: {prefix: /a/, service: third}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: deep}\nspec: {prefix: /a/b/, service: deep}\n";

const KINDS: &[Kind] = &[
    Kind {
        kind: "Mapping",
        base: "prefix: /a/, service: a",
        around: SPLIT,
        fields: &[
            (
                "hostname",
                Set("prefix: /a/, service: a, hostname: shop.example.com"),
            ),
            ("prefix", Set("prefix: /b/, service: a")),
            ("path", Set("path: /a/, service: a")),
            ("service", Set("prefix: /a/, service: b")),
            ("rewrite", Set("prefix: /a/, service: a, rewrite: /x/")),
            ("weight", Set("prefix: /a/, service: a, weight: 30")),
            (
                "timeout_ms",
                Set("prefix: /a/, service: a, timeout_ms: 5000"),
            ),
            ("headers", Set("prefix: /a/, service: a, headers: {x-a: b}")),
            ("precedence", Set("prefix: /a/, service: a, precedence: 5")),
            (
                "add_request_headers",
                Set("prefix: /a/, service: a, add_request_headers: {x-a: b}"),
            ),
            (
                "remove_request_headers",
                Set("prefix: /a/, service: a, remove_request_headers: [x-a]"),
            ),
            (
                "prefix_regex",
                Set("prefix: '/a/.*', service: a, prefix_regex: true"),
            ),
            ("method", Set("prefix: /a/, service: a, method: GET")),
            (
                "query_parameters",
                Set("prefix: /a/, service: a, query_parameters: {q: '1'}"),
            ),
            (
                "host_rewrite",
                Set("prefix: /a/, service: a, host_rewrite: a.internal"),
            ),
            (
                "idle_timeout_ms",
                Set("prefix: /a/, service: a, idle_timeout_ms: 9000"),
            ),
            (
                "retry_policy",
                Set("prefix: /a/, service: a, retry_policy: {retry_on: 5xx}"),
            ),
            ("cors", Set("prefix: /a/, service: a, cors: {origins: '*'}")),
            (
                "add_response_headers",
                Set("prefix: /a/, service: a, add_response_headers: {x-a: b}"),
            ),
            (
                "remove_response_headers",
                Set("prefix: /a/, service: a, remove_response_headers: [x-a]"),
            ),
            (
                "allow_upgrade",
                Set("prefix: /a/, service: a, allow_upgrade: [websocket]"),
            ),
            (
                "regex_headers",
                Set("prefix: /a/, service: a, regex_headers: {x-a: 'b.*'}"),
            ),
            (
                "regex_query_parameters",
                Set("prefix: /a/, service: a, regex_query_parameters: {q: 'b.*'}"),
            ),
            (
                "regex_rewrite",
                Set("prefix: /a/, service: a, regex_rewrite: {pattern: a, substitution: b}"),
            ),
            ("grpc", Set("prefix: /a/, service: a, grpc: true")),
            (
                "circuit_breakers",
                Set("prefix: /a/, service: a, circuit_breakers: [{max_connections: 5}]"),
            ),
            (
                "labels",
                Set(
                    "prefix: /a/, service: a, labels: {ambassador: [{g: [{remote_address: {key: remote_address}}]}]}",
                ),
            ),
            (
                "sticky",
                Set("prefix: /a/, service: a, sticky: {header: x-user}"),
            ),
            (
                "docs",
                NoOp(
                    "prefix: /a/, service: a, docs: {path: /openapi}",
                    "the developer portal's entry: it changes no route in Ambassador either",
                ),
            ),
        ],
    },
    Kind {
        kind: "Host",
        base: "hostname: shop.example.com, requestPolicy: {insecure: {action: Route}}",
        around: "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /, service: a}\n",
        fields: &[
            (
                "hostname",
                Set("hostname: api.example.com, requestPolicy: {insecure: {action: Route}}"),
            ),
            (
                "tlsSecret",
                Set(
                    "hostname: shop.example.com, requestPolicy: {insecure: {action: Route}}, tlsSecret: {name: shop}",
                ),
            ),
            (
                "tlsFiles",
                Set(
                    "hostname: shop.example.com, requestPolicy: {insecure: {action: Route}}, tlsFiles: {certChain: /c.pem, privateKey: /k.pem}",
                ),
            ),
            (
                "requestPolicy",
                Set("hostname: shop.example.com, requestPolicy: {insecure: {action: Reject}}"),
            ),
            (
                "acmeProvider",
                NoOp(
                    "hostname: shop.example.com, requestPolicy: {insecure: {action: Route}}, acmeProvider: {authority: none}",
                    "only authority none (no ACME) is accepted, which is Ambassador's way to say no ACME",
                ),
            ),
        ],
    },
    Kind {
        kind: "Listener",
        base: "port: 8080, protocol: HTTP, securityModel: XFP",
        around: "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /, service: a}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: h}\nspec: {hostname: shop.example.com, tlsSecret: {name: shop}}\n",
        fields: &[
            (
                "port",
                Set("port: 9090, protocol: HTTP, securityModel: XFP"),
            ),
            (
                "protocol",
                Set("port: 8080, protocol: HTTPS, securityModel: XFP"),
            ),
            (
                "securityModel",
                Set("port: 8080, protocol: HTTP, securityModel: SECURE"),
            ),
            (
                "l7Depth",
                Set("port: 8080, protocol: HTTP, securityModel: XFP, l7Depth: 2"),
            ),
            (
                "hostBinding",
                NoOp(
                    "port: 8080, protocol: HTTP, securityModel: XFP, hostBinding: {namespace: {from: ALL}}",
                    "only namespace from ALL is accepted: every Host on every Listener, what Gatehouse does anyway",
                ),
            ),
        ],
    },
    Kind {
        kind: "RateLimitService",
        base: "service: 'ratelimit:8081'",
        around: "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /, service: a, labels: {ambassador: [{g: [{remote_address: {key: remote_address}}]}], other: [{g: [{generic_key: {value: x}}]}]}}\n",
        fields: &[
            ("service", Set("service: 'limits:9000'")),
            (
                "failure_mode_deny",
                Set("service: 'ratelimit:8081', failure_mode_deny: true"),
            ),
            (
                "timeout_ms",
                Set("service: 'ratelimit:8081', timeout_ms: 20"),
            ),
            ("domain", Set("service: 'ratelimit:8081', domain: other")),
            (
                "protocol_version",
                NoOp(
                    "service: 'ratelimit:8081', protocol_version: v3",
                    "only v3 is accepted, the one protocol Envoy speaks",
                ),
            ),
        ],
    },
];

#[test]
fn every_accepted_field_changes_the_output_or_is_a_listed_no_op() {
    for k in KINDS {
        let fields = accepted(k.kind, k.base);
        let base = output(&format!("{}{}", doc(k.kind, "probe", k.base), k.around));
        for f in &fields {
            let Some((_, how)) = k.fields.iter().find(|(name, _)| name == f) else {
                panic!("{} accepts {f}, and no test here says what it does", k.kind);
            };
            let (spec, no_op) = match how {
                Set(spec) => (spec, None),
                NoOp(spec, why) => (spec, Some(why)),
            };
            let set = output(&format!("{}{}", doc(k.kind, "probe", spec), k.around));
            match no_op {
                None => assert_ne!(set, base, "{}.{f} changes nothing", k.kind),
                Some(why) => {
                    assert!(!why.is_empty());
                    assert_eq!(
                        set, base,
                        "{}.{f} is listed as a no-op but changes the output",
                        k.kind
                    );
                }
            }
        }
        for (name, _) in k.fields {
            assert!(
                fields.iter().any(|f| f == name),
                "{}.{name} is tested here but the parser does not accept it",
                k.kind
            );
        }
    }
}

#[test]
fn every_accepted_field_has_its_row_in_the_compatibility_tables() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for k in KINDS {
        for f in accepted(k.kind, k.base) {
            let row = format!("`spec.{f}`");
            assert!(
                readme.contains(&row) || readme.contains(&format!("`spec.{f}.")),
                "envoy-config/README.md has no row for {}'s {row}",
                k.kind
            );
        }
    }
}
