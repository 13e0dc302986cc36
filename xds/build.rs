//! Finds the protobuf descriptors envoy-types was generated from (its
//! `src/generated/types.bin`) in cargo's registry by the version
//! `Cargo.lock` pins, or else through `cargo metadata`, and copies them into
//! `OUT_DIR`, so the converter from rendered JSON to Envoy's protobuf knows
//! every Envoy message, extension configs inside `Any` included.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

/// envoy-types' directory in cargo's registry, by the version the
/// workspace's `Cargo.lock` pins: found without running cargo, so it works
/// when only the packages of this build are downloaded.
fn from_lock() -> Option<PathBuf> {
    let mut dir = PathBuf::from(env("CARGO_MANIFEST_DIR").ok()?);
    let lock = loop {
        let lock = dir.join("Cargo.lock");
        if lock.exists() {
            break std::fs::read_to_string(lock).ok()?;
        }
        dir = dir.parent()?.to_path_buf();
    };
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"envoy-types\""))?
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))?
        .trim_end_matches('"')
        .to_owned();
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|_| std::env::var("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok()?;
    std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .filter_map(Result::ok)
        .map(|index| index.path().join(format!("envoy-types-{version}")))
        .find(|dir| dir.join("src/generated/types.bin").exists())
}

/// envoy-types' directory as `cargo metadata` says (vendored sources, a
/// path or git dependency).
fn from_metadata() -> Result<PathBuf, String> {
    let cargo = env("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = format!("{}/Cargo.toml", env("CARGO_MANIFEST_DIR")?);
    // Only this platform's packages: they are the ones the build has.
    let platform = env("TARGET")?;
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &platform, "--manifest-path", &manifest])
        .output()
        .map_err(|e| format!("running cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    let manifest_path = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("envoy-types is not among the dependencies")?;
    Ok(PathBuf::from(manifest_path)
        .parent()
        .ok_or("envoy-types' manifest has no directory")?
        .to_path_buf())
}

fn copy_descriptors() -> Result<PathBuf, String> {
    let dir = match from_lock() {
        Some(dir) => dir,
        None => from_metadata()?,
    };
    let descriptors = dir.join("src/generated/types.bin");
    let target = PathBuf::from(env("OUT_DIR")?).join("envoy_types.bin");
    std::fs::copy(&descriptors, &target)
        .map_err(|e| format!("copying {}: {e}", descriptors.display()))?;
    Ok(descriptors)
}

fn main() -> ExitCode {
    match copy_descriptors() {
        Ok(descriptors) => {
            println!("cargo:rerun-if-changed={}", descriptors.display());
            println!("cargo:rerun-if-changed=build.rs");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse-xds build: {e}");
            ExitCode::FAILURE
        }
    }
}
