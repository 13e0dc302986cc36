//! Whole renderings: order and determinism.

use super::{RenderOptions, render_bootstrap, route_table};
use crate::resources::{Resources, load};

fn resources(text: &str) -> Resources {
    let mut r = Resources::default();
    load(text, "t.yaml", &mut r).unwrap();
    r
}

const TWO: &str = "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: stable}\nspec: {prefix: /shop/, service: shop:8080}\n---\napiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: canary}\nspec: {prefix: /shop/, service: shop-v2:8080, weight: 10}\n---\napiVersion: gatehouse.dev/v1alpha1\nkind: Mapping\nmetadata: {name: api}\nspec: {prefix: /shop/api/, service: 'http://10.0.0.7:9000', rewrite: /v1/, timeout_ms: 1500}\n";

#[test]
fn longer_prefixes_first_and_unweighted_mappings_share_the_rest() {
    let table = route_table(&resources(TWO)).unwrap();
    assert_eq!(
        table,
        "* /shop/api/ -> 10.0.0.7:9000 (api)  [precedence 0, prefix length 10]\n\
         * /shop/ -> shop-v2:8080 10% (canary), shop:8080 90% (stable)  [precedence 0, prefix length 6]\n"
    );
}

#[test]
fn output_does_not_depend_on_document_order() {
    let docs: Vec<&str> = TWO.split("---\n").collect();
    let reversed = docs.iter().rev().copied().collect::<Vec<_>>().join("---\n");
    let options = RenderOptions::default();
    assert_eq!(
        render_bootstrap(&resources(TWO), &options).unwrap(),
        render_bootstrap(&resources(&reversed), &options).unwrap()
    );
}

#[test]
fn the_table_says_what_a_request_without_a_session_gets_instead_of_the_login() {
    let text = "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: app}
spec: {prefix: /app/, service: app:8080}
---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {name: sso}
spec:
  OAuth2:
    authorizationURL: https://idp.example
    clientID: gatehouse
    secretName: sso-client
    protectedOrigins: [{origin: https://app.example}]
---
apiVersion: getambassador.io/v3alpha1
kind: FilterPolicy
metadata: {name: app}
spec:
  rules:
  - path: /app/api/*
    filters:
    - name: sso
      arguments:
        insteadOfRedirect:
          httpStatusCode: 401
          ifRequestHeader: {name: X-Client, value: spa}
  - {path: /app/*, filters: [{name: sso}]}
";
    let table = route_table(&resources(text)).unwrap();
    assert!(
        table.contains(
            "/app/api/ -> app:8080 (app) filters sso (FilterPolicy app rule 0; insteadOfRedirect 401 if x-client=spa)"
        ),
        "{table}"
    );
    assert!(
        table.contains("filters sso (FilterPolicy app rule 1)  ["),
        "the other rule redirects: {table}"
    );
}
