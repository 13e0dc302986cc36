//! Writing rendered files where a running process reads them: each through
//! a temporary name and a rename, so a watcher never reads half a file, and
//! what an earlier render wrote that this one did not is removed.

use std::path::{Path, PathBuf};

use crate::Rendered;

/// The first line of every rendered file: a later render may replace or
/// remove a file that starts with it, and no other.
pub const RENDERED_HEADER: &str = "# Rendered by `gatehouse render`";

/// Writes `text` to `path` through a temporary name and a rename.
///
/// # Errors
/// The file cannot be written or renamed.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// What [`write_services`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// The files written.
    pub written: Vec<PathBuf>,
    /// Rendered files of an earlier render that this one no longer has.
    pub removed: Vec<PathBuf>,
}

/// Writes the services' configurations of `rendered`: `<dir>/authz.yaml`
/// (gatehouse-authz) and one file per domain in `ratelimit`
/// (gatehouse-ratelimit's configuration directory). A rendered file this
/// render does not have (a Filter or a RateLimit domain that is gone) would
/// still be served: it is removed, and only files that say they were
/// rendered are.
///
/// # Errors
/// A file cannot be written or removed.
pub fn write_services(
    rendered: &Rendered,
    dir: &Path,
    ratelimit: &Path,
) -> std::io::Result<Written> {
    let mut out = Written::default();
    std::fs::create_dir_all(dir)?;
    if let Some(authz) = &rendered.authz {
        write_atomically(&dir.join("authz.yaml"), authz)?;
        out.written.push(dir.join("authz.yaml"));
    }
    if !rendered.ratelimit.is_empty() {
        std::fs::create_dir_all(ratelimit)?;
        for (file, text) in &rendered.ratelimit {
            write_atomically(&ratelimit.join(file), text)?;
            out.written.push(ratelimit.join(file));
        }
    }
    let mut stale: Vec<PathBuf> = vec![dir.join("authz.yaml")];
    if let Ok(entries) = std::fs::read_dir(ratelimit) {
        stale.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
    }
    for path in stale {
        let rendered_here =
            std::fs::read_to_string(&path).is_ok_and(|t| t.starts_with(RENDERED_HEADER));
        if rendered_here && !out.written.contains(&path) {
            std::fs::remove_file(&path)?;
            out.removed.push(path);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rendered(authz: Option<&str>, domains: &[&str]) -> Rendered {
        Rendered {
            envoy: String::new(),
            authz: authz.map(|a| format!("{RENDERED_HEADER}\n{a}")),
            ratelimit: domains
                .iter()
                .map(|d| {
                    (
                        format!("{d}.yaml"),
                        format!("{RENDERED_HEADER}\ndomain: {d}\n"),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn a_later_render_removes_what_it_no_longer_has_and_nothing_else() {
        let dir = tempfile::tempdir().expect("dir");
        let rl = dir.path().join("config");
        let first = write_services(&rendered(Some("a: 1"), &["one", "two"]), dir.path(), &rl)
            .expect("writes");
        assert_eq!(first.written.len(), 3);
        std::fs::write(rl.join("mine.yaml"), "domain: mine\n").expect("a file of the user's");
        let second = write_services(&rendered(None, &["two"]), dir.path(), &rl).expect("writes");
        assert_eq!(second.written, [rl.join("two.yaml")]);
        let mut removed = second.removed.clone();
        removed.sort();
        assert_eq!(
            removed,
            [dir.path().join("authz.yaml"), rl.join("one.yaml")]
        );
        assert!(rl.join("mine.yaml").exists(), "not rendered: kept");
    }
}
