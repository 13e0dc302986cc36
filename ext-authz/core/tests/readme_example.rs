//! The example of `ext-authz/README.md` is a real pair of files that load and
//! behave as the README says, and the README shows them verbatim.

use std::collections::HashMap;

use gatehouse_authz_core::{ApiKeys, AuthzConfig, CheckInput, Filters, Verdict};

const CONFIG: &str = include_str!("../../examples/authz.yaml");
const KEYS: &str = include_str!("../../examples/partner-keys.yaml");
const README: &str = include_str!("../../README.md");

#[test]
fn the_readme_shows_the_example_files_verbatim() {
    assert!(README.contains(&format!("```yaml\n{CONFIG}```")));
    assert!(README.contains(&format!("```yaml\n{KEYS}```")));
}

#[test]
fn the_example_admits_its_documented_key() -> Result<(), Box<dyn std::error::Error>> {
    let config = AuthzConfig::parse(CONFIG, "authz.yaml")?;
    let keys = ApiKeys::from_key_file(KEYS, "partner-keys.yaml")?;
    let filters = Filters::new(config, [("partners".to_owned(), keys)].into());
    let check = |path: &str, key: Option<&str>| {
        let headers: HashMap<String, String> = key
            .map(|k| ("x-api-key".to_owned(), k.to_owned()))
            .into_iter()
            .collect();
        filters.check(&CheckInput {
            filter: None,
            path,
            headers: &headers,
        })
    };
    assert_eq!(
        check("/", Some("acme-demo-key")),
        Verdict::Allow {
            set: vec![("x-gatehouse-client".into(), "acme".into())],
            remove: vec!["x-api-key".into()],
            remove_query: vec![],
        }
    );
    assert!(matches!(
        check("/?api_key=acme-demo-key", None),
        Verdict::Allow { .. }
    ));
    assert!(matches!(
        check("/", Some("acme-demo-key2")),
        Verdict::Deny { status: 401, .. }
    ));
    assert!(matches!(
        check("/", None),
        Verdict::Deny { status: 401, .. }
    ));
    Ok(())
}
