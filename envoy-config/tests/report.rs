//! `gatehouse validate --report`: a migrating user's first command, every
//! document's fate on one screen rather than the first refusal alone.

// Test code: a failed unwrap is the failure message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const FILES: &str = "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: quote}
spec: {prefix: /quote/, service: quote}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: blue}
spec: {prefix: /blue/, service: blue, ambassador_id: [blue]}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: balanced}
spec: {prefix: /lb/, service: lb, resolver: endpoint}
---
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata: {name: shop}
spec: {hosts: [shop.example.com]}
";

fn report(dir: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["validate", "--report", "-f"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

/// A fresh directory of this test's own.
fn dir_of(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-report-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_document_is_reported_read_skipped_or_refused_with_why() {
    let dir = dir_of("all");
    std::fs::write(dir.join("edge.yaml"), FILES).unwrap();
    let (ok, text) = report(&dir, &[]);
    assert!(!ok, "a refusal fails the command");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ok ") && lines[0].contains("(Mapping quote)"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("skipped ") && lines[1].contains("(Mapping blue)"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("refused ")
            && lines[2].contains("(Mapping balanced)")
            && lines[2].contains("spec.resolver"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("refused ") && lines[3].contains("\"TLSContext\" is not supported"),
        "{text}"
    );
    assert!(
        text.contains("together: the 1 documents read render"),
        "{text}"
    );
    assert!(text.ends_with("1 read, 1 skipped, 2 refused\n"), "{text}");
    // The instance `blue` reads the blue Mapping alone: the rest, the
    // TLSContext too, belongs to `default`, as in Ambassador.
    let (ok, text) = report(&dir, &["--ambassador-id", "blue"]);
    assert!(ok, "{text}");
    assert!(
        text.starts_with("skipped ") && text.contains("ok       "),
        "{text}"
    );
    assert!(text.ends_with("1 read, 3 skipped, 0 refused\n"), "{text}");
}

#[test]
fn a_clean_set_reports_success() {
    let dir = dir_of("clean");
    let clean: String = FILES
        .split("---\n")
        .take(2)
        .collect::<Vec<_>>()
        .join("---\n");
    std::fs::write(dir.join("edge.yaml"), clean).unwrap();
    let (ok, text) = report(&dir, &[]);
    assert!(ok, "{text}");
    assert!(text.ends_with("1 read, 1 skipped, 0 refused\n"), "{text}");
}
