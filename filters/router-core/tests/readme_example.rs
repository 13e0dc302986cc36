//! The example of `filters/router/README.md` is a real configuration that
//! loads and routes as the README says, and the README shows it verbatim.

use gatehouse_router_core::{Request, RouterConfig};

const EXAMPLE: &str = include_str!("../../router/examples/config.json");
const README: &str = include_str!("../../router/README.md");

fn route(config: &RouterConfig, path: &str, headers: &[(&str, &str)]) -> Option<String> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    config
        .decide(&Request {
            path,
            method: "GET",
            headers: &headers,
        })
        .set
        .into_iter()
        .find(|(n, _)| n == "x-gatehouse-route")
        .map(|(_, v)| v)
}

#[test]
fn the_readme_shows_the_example_verbatim() {
    assert!(README.contains(&format!("```json\n{EXAMPLE}```")));
}

#[test]
fn the_example_routes_as_documented() -> Result<(), Box<dyn std::error::Error>> {
    let config = RouterConfig::parse(EXAMPLE.as_bytes())?;
    assert_eq!(
        route(&config, "/", &[("x-gatehouse-groups", "beta,staff")]).as_deref(),
        Some("checkout-v2")
    );
    assert_eq!(
        route(&config, "/api/items?preview", &[("cookie", "lang=fr")]).as_deref(),
        Some("api-preview")
    );
    assert_eq!(
        route(&config, "/api/items", &[("cookie", "lang=fr")]),
        None,
        "no preview parameter"
    );
    let rewritten = config.decide(&Request {
        path: "/v1/a",
        method: "GET",
        headers: &[],
    });
    assert_eq!(rewritten.path.as_deref(), Some("/api/a"));
    Ok(())
}
