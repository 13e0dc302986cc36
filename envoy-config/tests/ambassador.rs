//! Ambassador's `getambassador.io/v3alpha1` kinds beyond Mapping: what
//! loads, what is refused (naming document, field and the alternative),
//! and how FilterPolicy rules and rate-limit labels land on routes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gatehouse_config::{RenderOptions, Resources, load, render, route_table};

const EXAMPLE: &str = include_str!("../examples/ambassador.yaml");

fn loaded(text: &str) -> Resources {
    let mut r = Resources::default();
    load(text, "edge.yaml", &mut r).unwrap();
    r
}

fn refused(text: &str) -> String {
    let mut r = Resources::default();
    load(text, "edge.yaml", &mut r).unwrap_err().to_string()
}

fn doc(kind: &str, spec: &str) -> String {
    format!(
        "apiVersion: getambassador.io/v3alpha1\nkind: {kind}\nmetadata: {{name: x}}\nspec:\n{spec}"
    )
}

#[test]
fn unsupported_fields_and_values_name_document_field_and_alternative() {
    let cases = [
        (
            doc(
                "Host",
                "  hostname: a.example\n  acmeProvider: {authority: https://acme.example}\n",
            ),
            "document 0 (Host x): spec.acmeProvider.authority: ACME is not planned",
        ),
        (
            doc("Host", "  hostname: 'a.*.example'\n"),
            "spec.hostname: \"a.*.example\": write *, a host name, or a glob",
        ),
        (
            doc("Host", "  hostname: a.example\n  tlsContext: {name: t}\n"),
            "spec.tlsContext: unknown field `tlsContext`",
        ),
        (
            doc("Filter", "  External: {auth_service: a:1}\n"),
            "spec.External: unknown field `External`",
        ),
        (
            doc(
                "Filter",
                "  JWT: {jwksURI: 'https://i/k', requireExpiresAt: true}\n",
            ),
            "spec.JWT.requireExpiresAt: not supported yet",
        ),
        (
            doc(
                "Filter",
                "  JWT:\n    jwksURI: https://i/k\n    injectRequestHeaders: [{name: x, value: '{{ if hasKey .token.Claims \"sub\" }}y{{ end }}'}]\n",
            ),
            "spec.JWT.injectRequestHeaders[0].value: \"{{ if hasKey .token.Claims \\\"sub\\\" }}y{{ end }}\": {{ if hasKey .token.Claims \"sub\" }} is not supported",
        ),
        (
            doc(
                "Filter",
                "  OAuth2: {authorizationURL: 'https://i', clientID: c, secret: hunter2, protectedOrigins: [{origin: 'https://a'}]}\n",
            ),
            "spec.OAuth2.secret: a client secret is never written into resources here",
        ),
        (
            doc(
                "Filter",
                "  OAuth2: {authorizationURL: 'https://i', clientID: c, secretName: s, protectedOrigins: [{origin: 'https://a'}], grantType: Password}\n",
            ),
            "spec.OAuth2.grantType: only AuthorizationCode",
        ),
        (
            doc(
                "FilterPolicy",
                "  rules: [{path: '/a/*/b', filters: null}]\n",
            ),
            "spec.rules[0].path: \"/a/*/b\": only a trailing *",
        ),
        (
            doc(
                "FilterPolicy",
                "  rules: [{host: '*.example', filters: null}]\n",
            ),
            "spec.rules[0].host",
        ),
        (
            doc(
                "FilterPolicy",
                "  rules: [{filters: [{name: f, onDeny: continue}]}]\n",
            ),
            "spec.rules[0].filters[0].onDeny: only break",
        ),
        (
            doc(
                "FilterPolicy",
                "  rules: [{filters: [{name: f, arguments: {scope: [a]}}]}]\n",
            ),
            "spec.rules[0].filters[0].arguments.scope",
        ),
        (
            doc(
                "RateLimit",
                "  domain: d\n  limits: [{pattern: [{a: b}], rate: 1, unit: week}]\n",
            ),
            "spec.limits[0].unit: \"week\"",
        ),
        (
            doc(
                "RateLimit",
                "  domain: d\n  limits: [{pattern: [{a: b, c: d}], rate: 1, unit: minute}]\n",
            ),
            "spec.limits[0].pattern[0]: write one key: value per pattern entry",
        ),
        (
            doc(
                "RateLimit",
                "  domain: d\n  limits: [{pattern: [{a: b}], rate: 1, unit: minute, burstFactor: 2}]\n",
            ),
            "spec.limits[0].burstFactor: unknown field",
        ),
        (
            doc(
                "Mapping",
                "  prefix: /\n  service: a:1\n  labels: {d: [{g: [{remote_address: {key: client}}]}]}\n",
            ),
            "spec.labels.d[0][0].remote_address.key",
        ),
        (
            doc(
                "Mapping",
                "  prefix: /\n  service: a:1\n  labels: {d: [{g: [{metadata: {key: k}}]}]}\n",
            ),
            "spec.labels.d[0][0]: \"metadata\" is not a label specifier",
        ),
        (
            doc("Listener", "  port: 9000\n  protocol: TCP\n"),
            "spec.protocol: \"TCP\"",
        ),
    ];
    for (text, want) in cases {
        let got = refused(&text);
        assert!(got.contains(want), "{text}\n=> {got}\nwanted {want:?}");
    }
}

#[test]
fn the_example_loads_unchanged_and_renders_every_file() {
    let r = loaded(EXAMPLE);
    assert_eq!(
        (
            r.hosts.len(),
            r.listeners.len(),
            r.filters.len(),
            r.policies.len(),
            r.rate_limits.len()
        ),
        (2, 2, 3, 1, 1)
    );
    let out = render(&r, &RenderOptions::default()).unwrap();
    assert!(out.authz.is_some());
    assert_eq!(
        out.ratelimit.keys().collect::<Vec<_>>(),
        ["ambassador.yaml"]
    );
}

#[test]
fn policy_rules_narrow_routes_first_match_first() {
    let table = route_table(&loaded(EXAMPLE)).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in\n{table}"))
    };
    // An exact-path rule before the Mapping's own prefix, with its filter;
    // the rest of the prefix without.
    let export = at("api.example.com =/reports/export");
    let reports = at("api.example.com /reports/ ");
    assert!(export < reports);
    assert!(lines[export].contains("filters partner-jwt (FilterPolicy edge rule 3)"));
    assert!(!lines[reports].contains("filters"));
    // ifRequestHeader: with the header both filters, without it one.
    assert!(lines[at("/orders/ [authorization present]")].contains("partner-keys -> partner-jwt"));
    // filters: null on /healthz wins over the later catch-all rule.
    assert!(!lines[at("shop.example.com =/healthz")].contains("filters"));
    assert!(lines[at("shop.example.com / ->")].contains("filters staff-sso"));
}

#[test]
fn a_policy_naming_a_missing_filter_is_refused_at_render() {
    let r = loaded(&format!(
        "{}---\n{}",
        doc("Mapping", "  prefix: /\n  service: a:1\n"),
        doc(
            "FilterPolicy",
            "  rules: [{path: '*', filters: [{name: nobody}]}]\n"
        )
    ));
    let err = render(&r, &RenderOptions::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "FilterPolicy x: spec.rules[0].filters[0].name: no Filter is named \"nobody\""
    );
}

#[test]
fn two_limits_on_one_pattern_are_refused() {
    let limit = "  domain: d\n  limits: [{pattern: [{generic_key: a}], rate: 1, unit: minute}]\n";
    let text = format!(
        "{}---\n{}",
        doc("RateLimit", limit),
        doc("RateLimit", limit).replace("name: x", "name: y")
    );
    let err = render(&loaded(&text), &RenderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("RateLimit y and RateLimit x both limit"),
        "{err}"
    );
}

#[test]
fn rendering_does_not_depend_on_document_order() {
    let docs: Vec<&str> = EXAMPLE.split("\n---\n").collect();
    let reversed = docs
        .iter()
        .rev()
        .copied()
        .collect::<Vec<_>>()
        .join("\n---\n");
    let options = RenderOptions::default();
    assert_eq!(
        render(&loaded(EXAMPLE), &options).unwrap(),
        render(&loaded(&reversed), &options).unwrap()
    );
}

#[test]
fn placeholders_are_filled_and_a_missing_one_is_named() {
    let text = "# ${NOTE} in a comment is fine\nservice: ${DEMO}\n";
    let vars = [("DEMO".to_owned(), "demo:8080".to_owned())];
    assert_eq!(
        gatehouse_config::substitute(text, &vars).unwrap(),
        "# ${NOTE} in a comment is fine\nservice: demo:8080\n"
    );
    assert_eq!(
        gatehouse_config::substitute(text, &[]).unwrap_err(),
        "${DEMO} has no value: pass --set DEMO=..."
    );
}
