//! Each OAuth2 Filter keeps its session in a cookie of its own.

use gatehouse_config::{RenderOptions, Resources, load, render};

fn oauth2(name: &str) -> String {
    format!(
        "---
apiVersion: getambassador.io/v3alpha1
kind: Filter
metadata: {{name: {name}}}
spec:
  OAuth2: {{authorizationURL: 'https://idp.example', clientID: c, secretName: s, protectedOrigins: [{{origin: 'https://app.example'}}]}}
"
    )
}

fn rendered(text: &str) -> Result<String, String> {
    let mut r = Resources::default();
    load(text, "edge.yaml", &mut r).map_err(|e| e.to_string())?;
    render(&r, &RenderOptions::default())
        .map(|out| out.authz.unwrap_or_default())
        .map_err(|e| e.to_string())
}

#[test]
fn names_that_map_to_one_cookie_are_refused() {
    let err = rendered(&format!("{}{}", oauth2("staff-sso"), oauth2("staff.sso"))).unwrap_err();
    assert!(err.contains("gatehouse_staff_sso"), "{err}");
    assert!(err.contains("rename one"), "{err}");
}

#[test]
fn distinct_names_get_distinct_cookies() {
    let authz = rendered(&format!("{}{}", oauth2("staff"), oauth2("partners"))).unwrap();
    assert!(authz.contains("cookie_name: gatehouse_staff"), "{authz}");
    assert!(authz.contains("cookie_name: gatehouse_partners"), "{authz}");
}
