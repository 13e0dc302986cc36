//! Golden tests: each example resource set `envoy-config/examples/<name>.yaml`
//! renders to the files committed in `examples/<name>.out/` (what
//! `gatehouse render -f <name>.yaml -o <name>.out` writes), byte for byte.
//! After a deliberate change, run the test with `GATEHOUSE_BLESS=1` and
//! review the diff.

use std::path::Path;

use gatehouse_config::{RenderOptions, Resources, load, render};

fn expected_files(out: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for sub in ["", "ratelimit"] {
        if let Ok(entries) = std::fs::read_dir(out.join(sub)) {
            for e in entries.flatten() {
                if e.path().is_file() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    files.push(if sub.is_empty() {
                        name
                    } else {
                        format!("{sub}/{name}")
                    });
                }
            }
        }
    }
    files.sort();
    files
}

#[test]
fn examples_render_to_their_committed_files() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let bless = std::env::var_os("GATEHOUSE_BLESS").is_some();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some(stem) = name.strip_suffix(".yaml") else {
            continue;
        };
        let mut resources = Resources::default();
        load(&std::fs::read_to_string(&path)?, &name, &mut resources)?;
        let rendered = render(&resources, &RenderOptions::default())?;
        let mut files = vec![("envoy.yaml".to_owned(), rendered.envoy)];
        files.extend(rendered.authz.map(|a| ("authz.yaml".to_owned(), a)));
        files.extend(
            rendered
                .ratelimit
                .into_iter()
                .map(|(f, t)| (format!("ratelimit/{f}"), t)),
        );
        files.sort();
        let out = dir.join(format!("{stem}.out"));
        if bless {
            let _ = std::fs::remove_dir_all(&out);
            for (file, text) in &files {
                let path = out.join(file);
                std::fs::create_dir_all(path.parent().unwrap_or(&out))?;
                std::fs::write(path, text)?;
            }
        }
        let names: Vec<String> = files.iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(
            names,
            expected_files(&out),
            "{name} renders other files than {stem}.out/ holds"
        );
        for (file, text) in files {
            let expected = std::fs::read_to_string(out.join(&file))?;
            assert_eq!(
                text, expected,
                "{name} renders {file} differently from {stem}.out/{file}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "no examples found in {}", dir.display());
    Ok(())
}

#[test]
fn unsupported_kinds_and_fields_are_named() {
    let err = |text: &str| {
        let mut r = Resources::default();
        load(text, "edge.yaml", &mut r).unwrap_err().to_string()
    };
    let unknown = err(
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: m}\nspec: {prefix: /, service: a:1, resolver: endpoint}\n",
    );
    assert!(
        unknown.starts_with(
            "edge.yaml: document 0 (Mapping m): spec.resolver: unknown field `resolver`"
        ),
        "{unknown}"
    );
    assert!(
        unknown
            .ends_with("not supported yet: see the compatibility table in envoy-config/README.md")
    );
    assert!(
        err("apiVersion: getambassador.io/v3alpha1\nkind: TLSContext\nmetadata: {name: t}\n")
            .starts_with(
                "edge.yaml: document 0 (TLSContext t): kind: \"TLSContext\" is not supported"
            )
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
    for line in gatehouse_config::route_table(&resources).unwrap().lines() {
        assert!(readme.contains(line), "the README shows {line:?}");
    }
}

#[test]
fn every_yaml_block_in_the_readme_loads_and_renders() {
    let readme = include_str!("../README.md");
    let mut blocks = 0;
    for chunk in readme.split("```yaml\n").skip(1) {
        let block = chunk.split("```").next().unwrap_or_default();
        let mut resources = Resources::default();
        load(block, "README.md", &mut resources)
            .unwrap_or_else(|e| panic!("{e}\nin the README block:\n{block}"));
        render(&resources, &RenderOptions::default())
            .unwrap_or_else(|e| panic!("{e}\nin the README block:\n{block}"));
        blocks += 1;
    }
    assert!(blocks >= 4, "{blocks} yaml blocks");
}
