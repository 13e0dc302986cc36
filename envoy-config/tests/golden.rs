//! Golden tests: each example resource set in `envoy-config/examples/`
//! renders to its committed bootstrap, byte for byte. After a deliberate
//! change, re-render with `gatehouse render -f <example> -o <dir>`.

use gatehouse_config::{RenderOptions, Resources, load, render_bootstrap};

#[test]
fn examples_render_to_their_committed_bootstraps() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(stem) = name
            .strip_suffix(".yaml")
            .filter(|s| !s.ends_with(".envoy"))
        else {
            continue;
        };
        let mut resources = Resources::default();
        load(&std::fs::read_to_string(&path)?, name, &mut resources)?;
        let rendered = render_bootstrap(&resources, &RenderOptions::default());
        let expected = std::fs::read_to_string(dir.join(format!("{stem}.envoy.yaml")))?;
        assert_eq!(
            rendered, expected,
            "{name} renders differently from {stem}.envoy.yaml"
        );
        checked += 1;
    }
    assert!(checked >= 1, "no examples found in {}", dir.display());
    Ok(())
}

#[test]
fn unsupported_kinds_and_fields_are_named() {
    let err = |text: &str| {
        let mut r = Resources::default();
        load(text, "edge.yaml", &mut r).unwrap_err().to_string()
    };
    let unknown = err(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /, service: a:1, circuit_breakers: []}\n",
    );
    assert!(
        unknown.starts_with(
            "edge.yaml: document 0 (Mapping m): spec.circuit_breakers: unknown field `circuit_breakers`"
        ),
        "{unknown}"
    );
    assert!(
        unknown
            .ends_with("not supported yet: see the compatibility table in envoy-config/README.md")
    );
    assert!(
        err("apiVersion: getambassador.io/v3alpha1\nkind: Host\nmetadata: {name: h}\n")
            .starts_with("edge.yaml: document 0 (Host h): kind: \"Host\" is not supported yet")
    );
    assert!(
        err("apiVersion: v1\nkind: Mapping\nmetadata: {name: m}\n")
            .contains("apiVersion: \"v1\" is not supported")
    );
    assert!(err("---\napiVersion: gatehouse.dev/v1alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /, service: 'a:x'}\n")
        .contains("spec.service: \"x\" is not a port"));
}

#[test]
fn the_readme_shows_the_example_verbatim() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/quickstart.yaml");
    assert!(readme.contains(&format!("```yaml\n{example}```")));
    let mut resources = Resources::default();
    load(example, "quickstart.yaml", &mut resources).unwrap();
    for line in gatehouse_config::route_table(&resources).lines() {
        assert!(readme.contains(line), "the README shows {line:?}");
    }
}
