//! Every config in `docs/` is loaded by the program it is for. A fenced
//! `yaml` block says what it is on its first line:
//! - `# gatehouse resources`: loaded and rendered by gatehouse-config;
//! - `# authz.yaml`: checked by `gatehouse-authz --check-config`;
//! - `# ratelimit config`: checked by `gatehouse-ratelimit --check-config`.
//!
//! A `yaml` block with none of these fails the test: shell, Envoy snippets
//! and pictures use other fences.

use std::path::{Path, PathBuf};

use anyhow::Result;
use e2e::process::check_config;
use gatehouse_config::{RenderOptions, Resources, load, render};

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            markdown_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    Ok(())
}

/// The fenced `yaml` blocks of `text`, with their first line number.
fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```yaml" => current = Some((i + 2, String::new())),
            Some(_) if line.trim_start().starts_with("```") => {
                blocks.extend(current.take());
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_config_block_in_the_docs_loads() -> Result<()> {
    let mut files = Vec::new();
    markdown_files(&e2e::paths::workspace_root().join("docs"), &mut files)?;
    files.sort();
    let work = tempfile::tempdir()?;
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        let name = file
            .strip_prefix(e2e::paths::workspace_root())
            .unwrap_or(file)
            .display()
            .to_string();
        for (line, block) in yaml_blocks(&text) {
            let at = format!("{name}:{line}");
            let first = block.lines().next().unwrap_or_default().trim();
            let result = match first {
                "# gatehouse resources" => {
                    let mut resources = Resources::default();
                    load(&block, &at, &mut resources)
                        .map_err(anyhow::Error::from)
                        .and_then(|()| {
                            render(&resources, &RenderOptions::default())
                                .map(drop)
                                .map_err(anyhow::Error::from)
                        })
                }
                "# authz.yaml" => {
                    let path = work.path().join(format!("authz-{checked}.yaml"));
                    std::fs::write(&path, &block)?;
                    check_config("gatehouse-authz", &path).map(drop)
                }
                "# ratelimit config" => {
                    let dir = work.path().join(format!("ratelimit-{checked}"));
                    std::fs::create_dir_all(&dir)?;
                    std::fs::write(dir.join("config.yaml"), &block)?;
                    check_config("gatehouse-ratelimit", &dir).map(drop)
                }
                other => Err(anyhow::anyhow!(
                    "a yaml block must start with # gatehouse resources, # authz.yaml or # ratelimit config, not {other:?}"
                )),
            };
            if let Err(e) = result {
                failures.push(format!("{at}: {e}"));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 3, "only {checked} config blocks in docs/");
    Ok(())
}

/// `docs/security.md` backs each claim with a test, written as a link
/// ``[`test_name`](../path/file.rs)``: the file exists and defines it, so a
/// renamed or removed test breaks this test, not the claim.
#[test]
fn every_test_the_threat_model_names_exists() -> Result<()> {
    let root = e2e::paths::workspace_root();
    let text = std::fs::read_to_string(root.join("docs/security.md"))?;
    let mut named = 0;
    let mut missing = Vec::new();
    for link in text.split("[`").skip(1) {
        let Some((name, rest)) = link.split_once("`](") else {
            continue;
        };
        let Some((target, _)) = rest.split_once(')') else {
            continue;
        };
        if !target.ends_with(".rs") || name.contains('/') || name.contains('.') {
            continue;
        }
        let file = root.join("docs").join(target);
        let source = std::fs::read_to_string(&file).unwrap_or_default();
        if !source.contains(&format!("fn {name}(")) {
            missing.push(format!("{name} in {target}"));
        }
        named += 1;
    }
    assert!(
        missing.is_empty(),
        "named in docs/security.md but not found: {missing:?}"
    );
    assert!(named >= 30, "only {named} tests named");
    Ok(())
}
