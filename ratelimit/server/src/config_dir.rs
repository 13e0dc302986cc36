//! The configuration directory: reading every file, and reloading on change
//! (the watcher itself is the service kit's: this file says what to read,
//! what to watch and which paths count).

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use gatehouse_ratelimit_core::{ConfigError, RateLimitConfig};
use gatehouse_service_kit::{Reload, WatchPlan};

use crate::settings::RuntimeSettings;

/// Why the directory could not be loaded.
pub type LoadError = gatehouse_service_kit::LoadError<ConfigError>;

/// The files of a configuration: (name relative to the directory, text).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    files: Vec<(String, String)>,
}

/// Reads every regular file below `dir`, recursively, in name order.
///
/// As the reference: no extension filter, dotfiles read unless
/// `ignore_dotfiles`. Unlike it, entries named `..*` are always skipped:
/// they are Kubernetes' atomic-update internals (`..data`, `..2024_…`), which
/// hold a second copy of every file of a mounted ConfigMap.
pub fn read_dir(dir: &Path, ignore_dotfiles: bool) -> Result<Snapshot, LoadError> {
    let mut files = Vec::new();
    walk(dir, dir, ignore_dotfiles, &mut files)?;
    files.sort();
    Ok(Snapshot { files })
}

fn walk(
    base: &Path,
    dir: &Path,
    ignore_dotfiles: bool,
    out: &mut Vec<(String, String)>,
) -> Result<(), LoadError> {
    let io = LoadError::reading;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || (ignore_dotfiles && name.starts_with('.')) {
            continue;
        }
        let path = entry.path();
        // Follow symlinks: ConfigMap files are links into `..data`.
        let meta = std::fs::metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            walk(base, &path, ignore_dotfiles, out)?;
        } else if meta.is_file() {
            let text = std::fs::read_to_string(&path).map_err(io(&path))?;
            let relative = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .display()
                .to_string();
            out.push((relative, text));
        }
    }
    Ok(())
}

impl Snapshot {
    /// Builds the configuration from these files.
    pub fn load(&self, merge_domains: bool) -> Result<RateLimitConfig, LoadError> {
        RateLimitConfig::load_with(
            self.files.iter().map(|(n, t)| (n.as_str(), t.as_str())),
            merge_domains,
        )
        .map_err(LoadError::invalid)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }
}

/// The configuration in force, swapped whole on a valid reload.
#[derive(Debug)]
pub struct LiveConfig {
    current: ArcSwap<RateLimitConfig>,
    snapshot: std::sync::Mutex<Snapshot>,
    runtime: RuntimeSettings,
}

/// What a reload did.
#[derive(Debug)]
pub enum Reloaded {
    /// Files unchanged: nothing to do.
    Unchanged,
    /// The new configuration is in force.
    Applied {
        /// Files read.
        files: usize,
    },
}

impl LiveConfig {
    /// Loads the directory once; an error here stops startup.
    pub fn load(runtime: RuntimeSettings) -> Result<Self, LoadError> {
        let snapshot = read_dir(&runtime.config_dir(), runtime.ignore_dotfiles)?;
        let config = snapshot.load(runtime.merge_domains)?;
        Ok(Self {
            current: ArcSwap::from_pointee(config),
            snapshot: std::sync::Mutex::new(snapshot),
            runtime,
        })
    }

    /// The configuration in force. Requests hold their `Arc` to the end, so a
    /// swap never disturbs one in flight.
    pub fn current(&self) -> Arc<RateLimitConfig> {
        self.current.load_full()
    }

    /// Re-reads the directory; on any error the old configuration stays.
    pub fn reload(&self) -> Result<Reloaded, LoadError> {
        let snapshot = read_dir(&self.runtime.config_dir(), self.runtime.ignore_dotfiles)?;
        let mut last = self
            .snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last == snapshot {
            return Ok(Reloaded::Unchanged);
        }
        let config = snapshot.load(self.runtime.merge_domains)?;
        self.current.store(Arc::new(config));
        let files = snapshot.len();
        *last = snapshot;
        Ok(Reloaded::Applied { files })
    }
}

impl Reload for LiveConfig {
    type Outcome = Reloaded;
    type Error = LoadError;

    fn reload(&self) -> Result<Reloaded, LoadError> {
        // The inherent method: re-reads, swaps only a valid, changed config.
        LiveConfig::reload(self)
    }

    fn is_source(&self, path: &Path) -> bool {
        is_source(path, &self.runtime.root)
    }

    /// The config directory, recursively (edits in place and ConfigMap
    /// `..data` swaps), and the parent of `RUNTIME_ROOT` (the reference's
    /// symlink swap of the root itself). The kit watches them again when the
    /// root's symlink points elsewhere.
    fn watch_plan(&self) -> WatchPlan {
        let plan = WatchPlan::new().tree(self.runtime.config_dir());
        match self.runtime.root.parent() {
            Some(parent) if self.runtime.watch_root => plan.path(parent.to_path_buf()),
            _ => plan,
        }
    }
}

/// Whether an event about `path` may change the configuration: it touches
/// `RUNTIME_ROOT` or something below it (the root's parent is watched too,
/// and may hold unrelated files). Reads never count: see
/// [`gatehouse_service_kit::watch::is_change`].
fn is_source(path: &Path, root: &Path) -> bool {
    path.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(root: &Path) -> RuntimeSettings {
        RuntimeSettings::in_dir(root)
    }

    const ONE: &str = "domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n";
    const TWO: &str = "domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: minute, requests_per_unit: 2 }\n";

    #[test]
    fn a_bad_reload_keeps_the_old_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/a.yaml"), ONE).unwrap();
        let live = LiveConfig::load(runtime(dir.path())).unwrap();
        assert_eq!(live.current().rules()[0].requests_per_unit(), 1);

        std::fs::write(dir.path().join("config/a.yaml"), TWO).unwrap();
        assert!(matches!(
            live.reload().unwrap(),
            Reloaded::Applied { files: 1 }
        ));
        assert_eq!(live.current().rules()[0].requests_per_unit(), 2);
        assert!(matches!(live.reload().unwrap(), Reloaded::Unchanged));

        std::fs::write(
            dir.path().join("config/a.yaml"),
            "domain: d\ndescriptors: [{key: ''}]\n",
        )
        .unwrap();
        let err = live.reload().unwrap_err().to_string();
        assert_eq!(err, "a.yaml: descriptors[0].key: descriptor has empty key");
        assert_eq!(live.current().rules()[0].requests_per_unit(), 2);
    }

    #[test]
    fn kubernetes_configmap_layout_loads_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir_all(config.join("..2026_11_28_01")).unwrap();
        std::fs::write(config.join("..2026_11_28_01/a.yaml"), ONE).unwrap();
        std::os::unix::fs::symlink("..2026_11_28_01", config.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/a.yaml", config.join("a.yaml")).unwrap();
        let live = LiveConfig::load(runtime(dir.path())).unwrap();
        assert_eq!(live.current().rules().len(), 1);

        // The kubelet's swap: a new timestamped dir, then `..data` re-pointed.
        std::fs::create_dir_all(config.join("..2026_11_28_02")).unwrap();
        std::fs::write(config.join("..2026_11_28_02/a.yaml"), TWO).unwrap();
        std::os::unix::fs::symlink("..2026_11_28_02", config.join("..data_tmp")).unwrap();
        std::fs::rename(config.join("..data_tmp"), config.join("..data")).unwrap();
        assert!(matches!(live.reload().unwrap(), Reloaded::Applied { .. }));
        assert_eq!(live.current().rules()[0].requests_per_unit(), 2);
    }

    #[test]
    fn reading_the_files_is_not_a_change() {
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        let root = Path::new("/srv/runtime/current");
        let event = |kind| notify::Event::new(kind).add_path(root.join("config/a.yaml"));
        let is_change =
            |e: &notify::Event| gatehouse_service_kit::watch::is_change(e, |p| is_source(p, root));
        assert!(!is_change(&event(notify::EventKind::Access(
            AccessKind::Open(AccessMode::Read)
        ))));
        assert!(!is_change(&event(notify::EventKind::Access(
            AccessKind::Close(AccessMode::Read)
        ))));
        assert!(is_change(&event(notify::EventKind::Modify(
            ModifyKind::Any
        ))));
        assert!(is_change(&event(notify::EventKind::Create(
            CreateKind::File
        ))));
    }

    #[test]
    fn only_paths_under_the_root_count() {
        let root = Path::new("/srv/runtime/current");
        let is_change = |e: &notify::Event, root: &Path| {
            gatehouse_service_kit::watch::is_change(e, |p| is_source(p, root))
        };
        let modify = notify::EventKind::Modify(notify::event::ModifyKind::Any);
        let swap = notify::Event::new(modify).add_path(root.to_path_buf());
        assert!(
            is_change(&swap, root),
            "the root symlink itself was swapped"
        );
        let neighbour = notify::Event::new(modify).add_path("/srv/runtime/service.log".into());
        assert!(!is_change(&neighbour, root));
    }

    #[test]
    fn dotfiles_follow_runtime_ignoredotfiles() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/.hidden.yaml"), "not: [valid").unwrap();
        std::fs::write(dir.path().join("config/a.yaml"), ONE).unwrap();
        assert!(LiveConfig::load(runtime(dir.path())).is_err());
        let ignoring = RuntimeSettings {
            ignore_dotfiles: true,
            ..runtime(dir.path())
        };
        assert!(LiveConfig::load(ignoring).is_ok());
    }
}
