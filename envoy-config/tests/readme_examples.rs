//! Every example of `envoy-config/README.md` (each fenced `yaml` block) is
//! a set of resources that loads and renders: the field tables' examples
//! cannot drift from the parser.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gatehouse_config::{RenderOptions, Resources, load, render};

const README: &str = include_str!("../README.md");

fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```yaml") => current = Some((i + 2, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_readme_example_loads_and_renders() {
    let blocks = yaml_blocks(README);
    assert!(blocks.len() >= 6, "{} examples", blocks.len());
    for (line, text) in blocks {
        let mut resources = Resources::default();
        load(&text, "README.md", &mut resources)
            .unwrap_or_else(|e| panic!("README.md line {line}: {e}"));
        render(&resources, &RenderOptions::default())
            .unwrap_or_else(|e| panic!("README.md line {line}: {e}"));
    }
}
