//! No accepted field is ignored. The fields each kind accepts are read from
//! the parser itself (serde names them all when it refuses an unknown one);
//! each must change the rendered output the way a test here sets it, or be
//! listed as a no-op with the reason Ambassador has none either. Each must
//! also have its row in `envoy-config/README.md`, so the table cannot drift.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gatehouse_config::{RenderOptions, Resources, load, render};

/// The fields accepted where `k`'s fields live, as the parser names them.
fn accepted(k: &Kind) -> Vec<String> {
    let text = (k.doc)(&format!("{}, zz_not_a_field: 1", k.base));
    let mut r = Resources::default();
    let e = load(&text, "probe.yaml", &mut r).unwrap_err().message;
    // serde: "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, ...".
    let list = e
        .split("expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("{}: no field list in {e:?}", k.name));
    let list = list.split(';').next().unwrap();
    list.trim_start_matches("one of ")
        .split(", ")
        .flat_map(|f| f.split(" or "))
        .map(|f| f.trim().trim_matches('`').to_owned())
        .collect()
}

fn render_err(text: &str) -> String {
    let mut r = Resources::default();
    match load(text, "t.yaml", &mut r) {
        Err(e) => e.to_string(),
        Ok(()) => render(&r, &RenderOptions::default())
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string()),
    }
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

/// For one kind (or one object in it): the document around the fields,
/// the base fields, the other documents the render needs, and per accepted
/// field either the fields with it set (replacing the base's where it has
/// one) or the reason it is a no-op.
struct Kind {
    name: &'static str,
    doc: fn(&str) -> String,
    base: &'static str,
    around: &'static str,
    fields: &'static [(&'static str, Field)],
}

enum Field {
    /// The fields with this one set; the output must differ from the base's.
    Set(&'static str),
    /// The fields with this one set, and why the output does not change.
    NoOp(&'static str, &'static str),
    /// Accepted by the parser so a refusal can name it: every value is
    /// refused with this message.
    Refused(&'static str, &'static str),
    /// Where the kind's base and surroundings cannot show it: `set` renders
    /// other than `base`, both with the documents `around`.
    Versus {
        set: &'static str,
        base: &'static str,
        around: &'static str,
    },
}

/// A Mapping alone, and a guarded one: what redirects and `bypass_auth` need.
const ALONE: &str = "";
const GUARDED_A: &str = "---\napiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {name: keys}\nspec: {APIKey: {keys: [{secretName: acme}]}}\n---\napiVersion: getambassador.io/v3alpha1\nkind: FilterPolicy\nmetadata: {name: p}\nspec: {rules: [{path: '/a/*', filters: [{name: keys}]}]}\n";

use Field::{NoOp, Refused, Set, Versus};

fn mapping(spec: &str) -> String {
    doc("Mapping", "probe", spec)
}
fn host(spec: &str) -> String {
    doc("Host", "probe", spec)
}
fn listener(spec: &str) -> String {
    doc("Listener", "probe", spec)
}
fn rate_limit_service(spec: &str) -> String {
    doc("RateLimitService", "probe", spec)
}
fn module(fields: &str) -> String {
    doc("Module", "ambassador", &format!("config: {{{fields}}}"))
}
fn jwt(fields: &str) -> String {
    doc("Filter", "probe", &format!("JWT: {{{fields}}}"))
}
fn oauth2(fields: &str) -> String {
    doc("Filter", "probe", &format!("OAuth2: {{{fields}}}"))
}
fn api_key(fields: &str) -> String {
    doc("Filter", "probe", &format!("APIKey: {{{fields}}}"))
}
fn policy_filter(fields: &str) -> String {
    doc(
        "FilterPolicy",
        "probe",
        &format!("rules: [{{path: '/a/*', filters: [{{{fields}}}]}}]"),
    )
}

/// A Mapping for the Filters to guard, and the rule that uses Filter `probe`.
const GUARDED: &str = "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /a/, service: a}\n---\napiVersion: getambassador.io/v3alpha1\nkind: FilterPolicy\nmetadata: {name: p}\nspec: {rules: [{path: '/a/*', filters: [{name: probe}]}]}\n";

/// Two more members of the base Mapping's split (a weight on the last
/// member alone would change nothing: it takes what the others leave), and
/// a longer prefix that `precedence` can jump.
const SPLIT: &str = "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: other}\nspec: {prefix: /a/, service: other, weight: 10}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: third}\nspec: {prefix: /a/, service: third}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: deep}\nspec: {prefix: /a/b/, service: deep}\n";

const KINDS: &[Kind] = &[
    Kind {
        name: "Mapping",
        doc: mapping,
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
                "host_redirect",
                Versus {
                    set: "prefix: /a/, service: a, host_redirect: true",
                    base: "prefix: /a/, service: a",
                    around: ALONE,
                },
            ),
            (
                "path_redirect",
                Versus {
                    set: "prefix: /a/, service: a, host_redirect: true, path_redirect: /moved",
                    base: "prefix: /a/, service: a, host_redirect: true",
                    around: ALONE,
                },
            ),
            (
                "prefix_redirect",
                Versus {
                    set: "prefix: /a/, service: a, host_redirect: true, prefix_redirect: /b/",
                    base: "prefix: /a/, service: a, host_redirect: true",
                    around: ALONE,
                },
            ),
            (
                "regex_redirect",
                Versus {
                    set: "prefix: /a/, service: a, host_redirect: true, regex_redirect: {pattern: a, substitution: b}",
                    base: "prefix: /a/, service: a, host_redirect: true",
                    around: ALONE,
                },
            ),
            (
                "redirect_response_code",
                Versus {
                    set: "prefix: /a/, service: a, host_redirect: true, redirect_response_code: 302",
                    base: "prefix: /a/, service: a, host_redirect: true",
                    around: ALONE,
                },
            ),
            ("shadow", Set("prefix: /a/, service: a, shadow: true")),
            (
                "bypass_auth",
                Versus {
                    set: "prefix: /a/, service: a, bypass_auth: true",
                    base: "prefix: /a/, service: a",
                    around: GUARDED_A,
                },
            ),
            (
                "auth_context_extensions",
                Versus {
                    set: "prefix: /a/, service: a, auth_context_extensions: {tenant: shop}",
                    base: "prefix: /a/, service: a",
                    around: GUARDED_A,
                },
            ),
            (
                "case_sensitive",
                Set("prefix: /a/, service: a, case_sensitive: false"),
            ),
            (
                "connect_timeout_ms",
                Set("prefix: /a/, service: a, connect_timeout_ms: 500"),
            ),
            (
                "cluster_idle_timeout_ms",
                Set("prefix: /a/, service: a, cluster_idle_timeout_ms: 30000"),
            ),
            (
                "stats_name",
                Set("prefix: /a/, service: a, stats_name: a-upstream"),
            ),
            (
                "keepalive",
                Set("prefix: /a/, service: a, keepalive: {time: 60}"),
            ),
            (
                "load_balancer",
                Set("prefix: /a/, service: a, load_balancer: {policy: ring_hash, header: x-user}"),
            ),
            (
                "health_checks",
                Set(
                    "prefix: /a/, service: a, health_checks: [{health_check: {http: {path: /healthz}}}]",
                ),
            ),
            (
                "outlier_detection",
                Set("prefix: /a/, service: a, outlier_detection: {consecutive_5xx: 3}"),
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
        name: "Host",
        doc: host,
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
            (
                "mappingSelector",
                Set(
                    "hostname: shop.example.com, requestPolicy: {insecure: {action: Route}}, mappingSelector: {matchLabels: {team: shop}}",
                ),
            ),
            (
                "selector",
                Set(
                    "hostname: shop.example.com, requestPolicy: {insecure: {action: Route}}, selector: {matchLabels: {team: shop}}",
                ),
            ),
        ],
    },
    Kind {
        name: "Listener",
        doc: listener,
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
        name: "RateLimitService",
        doc: rate_limit_service,
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
    Kind {
        name: "Module",
        doc: module,
        base: "use_remote_address: true",
        around: "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /a/, service: a}\n",
        fields: &[
            ("use_remote_address", Set("use_remote_address: false")),
            (
                "cors",
                Set("use_remote_address: true, cors: {origins: '*'}"),
            ),
            (
                "retry_policy",
                Set("use_remote_address: true, retry_policy: {retry_on: 5xx}"),
            ),
            (
                "circuit_breakers",
                Set("use_remote_address: true, circuit_breakers: [{max_connections: 5}]"),
            ),
            (
                "ip_allow",
                Set("use_remote_address: true, ip_allow: [{peer: 10.0.0.0/8}]"),
            ),
            (
                "ip_deny",
                Set("use_remote_address: true, ip_deny: [{remote: 192.0.2.1}]"),
            ),
            (
                "diagnostics",
                NoOp(
                    "use_remote_address: true, diagnostics: {enabled: false}",
                    "only enabled: false is accepted: Gatehouse has no diagnostics service",
                ),
            ),
        ],
    },
    Kind {
        name: "Filter JWT",
        doc: jwt,
        base: "jwksURI: 'https://idp.example.com/jwks.json'",
        around: GUARDED,
        fields: &[
            ("jwksURI", Set("jwksURI: 'https://login.example.com/keys'")),
            (
                "validAlgorithms",
                Set("jwksURI: 'https://idp.example.com/jwks.json', validAlgorithms: [ES256]"),
            ),
            (
                "audience",
                Set("jwksURI: 'https://idp.example.com/jwks.json', audience: api"),
            ),
            (
                "requireAudience",
                NoOp(
                    "jwksURI: 'https://idp.example.com/jwks.json', requireAudience: true",
                    "a set audience is always required; without one there is nothing to require",
                ),
            ),
            (
                "issuer",
                Set(
                    "jwksURI: 'https://idp.example.com/jwks.json', issuer: 'https://idp.example.com'",
                ),
            ),
            (
                "requireIssuer",
                NoOp(
                    "jwksURI: 'https://idp.example.com/jwks.json', requireIssuer: true",
                    "a set issuer is always required; without one there is nothing to require",
                ),
            ),
            (
                "requireIssuedAt",
                NoOp(
                    "jwksURI: 'https://idp.example.com/jwks.json', requireIssuedAt: false",
                    "false only (Ambassador's default): the claim is checked whenever present",
                ),
            ),
            (
                "requireExpiresAt",
                NoOp(
                    "jwksURI: 'https://idp.example.com/jwks.json', requireExpiresAt: false",
                    "false only (Ambassador's default): the claim is checked whenever present",
                ),
            ),
            (
                "requireNotBefore",
                NoOp(
                    "jwksURI: 'https://idp.example.com/jwks.json', requireNotBefore: false",
                    "false only (Ambassador's default): the claim is checked whenever present",
                ),
            ),
            (
                "leewayForExpiresAt",
                Set("jwksURI: 'https://idp.example.com/jwks.json', leewayForExpiresAt: 30s"),
            ),
            (
                "leewayForNotBefore",
                Set("jwksURI: 'https://idp.example.com/jwks.json', leewayForNotBefore: 30s"),
            ),
            (
                "leewayForIssuedAt",
                Set("jwksURI: 'https://idp.example.com/jwks.json', leewayForIssuedAt: 30s"),
            ),
            (
                "injectRequestHeaders",
                Set(
                    "jwksURI: 'https://idp.example.com/jwks.json', injectRequestHeaders: [{name: X-Sub, value: '{{ .token.Claims.sub }}'}]",
                ),
            ),
            (
                "errorResponse",
                Set(
                    "jwksURI: 'https://idp.example.com/jwks.json', errorResponse: {bodyTemplate: '{{ .message }}'}",
                ),
            ),
        ],
    },
    Kind {
        name: "Filter OAuth2",
        doc: oauth2,
        base: "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: sso, protectedOrigins: [{origin: 'https://shop.example.com'}]",
        around: GUARDED,
        fields: &[
            (
                "authorizationURL",
                Set(
                    "authorizationURL: 'https://login.example.com', clientID: edge, secretName: sso, protectedOrigins: [{origin: 'https://shop.example.com'}]",
                ),
            ),
            (
                "clientID",
                Set(
                    "authorizationURL: 'https://idp.example.com', clientID: web, secretName: sso, protectedOrigins: [{origin: 'https://shop.example.com'}]",
                ),
            ),
            (
                "secret",
                Refused(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secret: s3cret, protectedOrigins: [{origin: 'https://shop.example.com'}]",
                    "never written into resources",
                ),
            ),
            (
                "secretName",
                Set(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: other, protectedOrigins: [{origin: 'https://shop.example.com'}]",
                ),
            ),
            (
                "secretNamespace",
                NoOp(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: sso, secretNamespace: auth, protectedOrigins: [{origin: 'https://shop.example.com'}]",
                    "the Secret is read where it is mounted (<secrets dir>/<secretName>); its namespace is the mount's business",
                ),
            ),
            (
                "protectedOrigins",
                Set(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: sso, protectedOrigins: [{origin: 'https://app.example.com'}]",
                ),
            ),
            (
                "extraAuthorizationParameters",
                Set(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: sso, protectedOrigins: [{origin: 'https://shop.example.com'}], extraAuthorizationParameters: {prompt: login}",
                ),
            ),
            (
                "postLogoutRedirectURI",
                Set(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: sso, protectedOrigins: [{origin: 'https://shop.example.com'}], postLogoutRedirectURI: 'https://shop.example.com/bye'",
                ),
            ),
            (
                "injectRequestHeaders",
                Set(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: sso, protectedOrigins: [{origin: 'https://shop.example.com'}], injectRequestHeaders: [{name: X-Sub, value: '{{ .idToken.Claims.sub }}'}]",
                ),
            ),
            (
                "fastPath",
                Set(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: sso, protectedOrigins: [{origin: 'https://shop.example.com'}], fastPath: false",
                ),
            ),
            (
                "allowMalformedAccessToken",
                Set(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: sso, protectedOrigins: [{origin: 'https://shop.example.com'}], allowMalformedAccessToken: true",
                ),
            ),
            (
                "grantType",
                NoOp(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: sso, protectedOrigins: [{origin: 'https://shop.example.com'}], grantType: AuthorizationCode",
                    "AuthorizationCode only, Ambassador's default",
                ),
            ),
            (
                "scopes",
                Set(
                    "authorizationURL: 'https://idp.example.com', clientID: edge, secretName: sso, protectedOrigins: [{origin: 'https://shop.example.com'}], scopes: [openid]",
                ),
            ),
        ],
    },
    Kind {
        name: "Filter APIKey",
        doc: api_key,
        base: "keys: [{secretName: acme}]",
        around: GUARDED,
        fields: &[
            (
                "httpHeader",
                Set("keys: [{secretName: acme}], httpHeader: X-Key"),
            ),
            ("keys", Set("keys: [{secretName: globex}]")),
        ],
    },
    Kind {
        name: "FilterPolicy filters[]",
        doc: policy_filter,
        base: "name: keys",
        around: "---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /a/, service: a}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {name: keys}\nspec: {APIKey: {keys: [{secretName: acme}]}}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Filter\nmetadata: {name: other}\nspec: {APIKey: {keys: [{secretName: globex}]}}\n",
        fields: &[
            ("name", Set("name: other")),
            (
                "namespace",
                NoOp(
                    "name: keys, namespace: shop",
                    "Filter names are unique across namespaces here (a second Filter of one name is refused), so the name alone finds it",
                ),
            ),
            (
                "onDeny",
                NoOp(
                    "name: keys, onDeny: break",
                    "break only, Ambassador's default",
                ),
            ),
            (
                "onAllow",
                NoOp(
                    "name: keys, onAllow: continue",
                    "continue only, Ambassador's default",
                ),
            ),
            (
                "ifRequestHeader",
                Set("name: keys, ifRequestHeader: {name: x-partner}"),
            ),
            (
                "arguments",
                NoOp(
                    "name: keys, arguments: {}",
                    "no argument an APIKey Filter takes; scope is refused",
                ),
            ),
        ],
    },
];

#[test]
fn every_accepted_field_changes_the_output_or_is_a_listed_no_op() {
    for k in KINDS {
        let fields = accepted(k);
        let base = output(&format!("{}{}", (k.doc)(k.base), k.around));
        for f in &fields {
            let Some((_, how)) = k.fields.iter().find(|(name, _)| name == f) else {
                panic!("{} accepts {f}, and no test here says what it does", k.name);
            };
            let text = |spec: &str| format!("{}{}", (k.doc)(spec), k.around);
            match how {
                Set(spec) => {
                    assert_ne!(output(&text(spec)), base, "{}.{f} changes nothing", k.name)
                }
                NoOp(spec, why) => {
                    assert!(!why.is_empty());
                    assert_eq!(
                        output(&text(spec)),
                        base,
                        "{}.{f} is listed as a no-op but changes the output",
                        k.name
                    );
                }
                Refused(spec, message) => {
                    let e = render_err(&text(spec));
                    assert!(e.contains(message), "{}.{f}: {e}", k.name);
                }
                Versus { set, base, around } => {
                    let with = |spec: &str| output(&format!("{}{around}", (k.doc)(spec)));
                    assert_ne!(with(set), with(base), "{}.{f} changes nothing", k.name);
                }
            }
        }
        for (name, _) in k.fields {
            assert!(
                fields.iter().any(|f| f == name),
                "{}.{name} is tested here but the parser does not accept it",
                k.name
            );
        }
    }
}

#[test]
fn every_accepted_field_has_its_row_in_the_compatibility_tables() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for k in KINDS {
        for f in accepted(k) {
            // A row of a table names it: `spec.<f>` (or a field inside it),
            // or a Filter's own `<f>`.
            let named = readme.lines().filter(|l| l.starts_with('|')).any(|l| {
                l.contains(&format!("`spec.{f}`"))
                    || l.contains(&format!("`spec.{f}."))
                    || l.contains(&format!("`{f}`"))
                    || l.contains(&format!("`{f}[]"))
                    || l.contains(&format!("`{f}."))
                    || l.contains(&format!(".{f}`"))
            });
            assert!(
                named,
                "envoy-config/README.md has no row for {}'s {f}",
                k.name
            );
        }
    }
}
