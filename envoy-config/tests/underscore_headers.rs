//! Every rendered listener drops request headers with underscores, so a
//! resource that would read one is refused, naming the field, instead of
//! rendering a match that never holds.

use gatehouse_config::{Resources, load};

fn error_of(doc: &str) -> String {
    let mut r = Resources::default();
    match load(doc, "edge.yaml", &mut r) {
        Ok(()) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_field_that_reads_a_request_header_refuses_underscores() {
    let head = "apiVersion: getambassador.io/v3alpha1\nmetadata: {name: x}\n";
    for (doc, field) in [
        (
            "kind: Mapping\nspec: {prefix: /, service: a:1, headers: {x_tenant: acme}}",
            "spec.headers.x_tenant",
        ),
        (
            "kind: Mapping\nspec: {prefix: /, service: a:1, regex_headers: {x_tenant: 'a.*'}}",
            "spec.regex_headers.x_tenant",
        ),
        (
            "kind: Mapping\nspec: {prefix: /, service: a:1, weight: 10, sticky: {header: x_user}}",
            "spec.sticky.header",
        ),
        (
            "kind: Mapping\nspec: {prefix: /, service: a:1, labels: {edge: [{u: [{request_headers: {key: u, header_name: x_user}}]}]}}",
            "request_headers.header_name",
        ),
        (
            "kind: Filter\nspec: {APIKey: {httpHeader: x_api_key, keys: [{secretName: k}]}}",
            "spec.APIKey.httpHeader",
        ),
        (
            "kind: FilterPolicy\nspec: {rules: [{path: /a/*, filters: [{name: f, ifRequestHeader: {name: x_debug}}]}]}",
            "ifRequestHeader.name",
        ),
    ] {
        let err = error_of(&format!("{head}{doc}\n"));
        assert!(err.contains(field), "{doc}: {err:?}");
        assert!(err.contains("underscores"), "{doc}: {err:?}");
    }
    // Dashes are fine, and adding a header upstream is not reading one.
    assert_eq!(
        error_of(&format!(
            "{head}kind: Mapping\nspec: {{prefix: /, service: a:1, headers: {{x-tenant: acme}}, add_request_headers: {{x_legacy: '1'}}}}\n"
        )),
        ""
    );
}
