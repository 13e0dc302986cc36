//! The versions the server holds: one per Ambassador instance an Envoy
//! asks for with its node cluster (`default` when it names none), each
//! rebuilt when the resources change. An instance's change that does not
//! render is refused for that instance alone; the others move on.
//!
//! With a services directory, each instance's services' configurations are
//! written to `<dir>/<instance>/` (`authz.yaml`, and gatehouse-ratelimit's
//! files in `config/`, so `RUNTIME_ROOT=<dir>` and
//! `RUNTIME_SUBDIRECTORY=<instance>`) before its Envoys are told of the
//! version: a rate limit a new route sends is known to gatehouse-ratelimit
//! before Envoy sends it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use gatehouse_config::RenderOptions;
use tokio::sync::watch;

use crate::proto::Protos;
use crate::snapshot::{self, Snapshot, Source};

/// The instance of an Envoy whose node names no cluster.
pub const DEFAULT_INSTANCE: &str = "default";

/// Every instance's current version.
#[derive(Debug)]
pub struct Fleet {
    source: Source,
    options: RenderOptions,
    services: Option<PathBuf>,
    default: String,
    protos: Protos,
    instances: Mutex<BTreeMap<String, watch::Sender<Arc<Snapshot>>>>,
    refused: Mutex<BTreeMap<String, String>>,
    /// Versions made, all instances together.
    pub versions: AtomicU64,
    /// Changes refused, all instances together.
    pub refusals: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Fleet {
    /// A fleet serving `source` (`default` the instance of an Envoy whose
    /// node names no cluster), writing the services' configurations under
    /// `services` when given; the default instance must build.
    ///
    /// # Errors
    /// The default instance's resources do not render, or its services'
    /// configurations cannot be written.
    pub fn new(
        source: Source,
        options: RenderOptions,
        protos: Protos,
        default: String,
        services: Option<PathBuf>,
    ) -> Result<Self, String> {
        let fleet = Self {
            default,
            source,
            options,
            services,
            protos,
            instances: Mutex::default(),
            refused: Mutex::default(),
            versions: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        };
        fleet.subscribe(&fleet.default)?;
        Ok(fleet)
    }

    /// The instance of an Envoy whose node names no cluster.
    #[must_use]
    pub fn default_instance(&self) -> &str {
        &self.default
    }

    /// The versions of `instance`, built at its first Envoy.
    ///
    /// # Errors
    /// The instance's resources do not render (its Envoys get nothing).
    pub fn subscribe(&self, instance: &str) -> Result<watch::Receiver<Arc<Snapshot>>, String> {
        if let Some(tx) = lock(&self.instances).get(instance) {
            return Ok(tx.subscribe());
        }
        // The name comes from the Envoy (its node cluster), and names a
        // directory of the services' files.
        if !is_instance_name(instance) {
            return Err(format!(
                "{instance:?} is not an instance name (1 to 63 letters, digits, '-', '_' or '.', not starting with '.')"
            ));
        }
        let first = snapshot::build(&self.source, instance, &self.options, &self.protos)?;
        self.write_services(instance, &first)?;
        self.versions.fetch_add(1, Ordering::Relaxed);
        let mut instances = lock(&self.instances);
        let tx = instances
            .entry(instance.to_owned())
            .or_insert_with(|| watch::channel(Arc::new(first)).0);
        Ok(tx.subscribe())
    }

    /// Rebuilds every instance after a change: a new version goes to its
    /// Envoys, a refusal is recorded and the last good version stays.
    pub fn rebuild(&self) {
        let instances: Vec<(String, watch::Sender<Arc<Snapshot>>)> = lock(&self.instances)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (instance, tx) in instances {
            let built = snapshot::build(&self.source, &instance, &self.options, &self.protos)
                .and_then(|next| {
                    if next.version != tx.borrow().version {
                        self.write_services(&instance, &next)?;
                    }
                    Ok(next)
                });
            match built {
                Ok(next) => {
                    lock(&self.refused).remove(&instance);
                    if next.version != tx.borrow().version {
                        tracing::info!(instance, version = %next.version, "a new version, pushed to the instance's Envoys");
                        self.versions.fetch_add(1, Ordering::Relaxed);
                        tx.send_replace(Arc::new(next));
                    }
                }
                Err(e) => {
                    tracing::error!(instance, error = %e, version = %tx.borrow().version, "a change refused: it does not render; the last good version keeps serving");
                    self.refusals.fetch_add(1, Ordering::Relaxed);
                    lock(&self.refused).insert(instance, e);
                }
            }
        }
    }

    /// Writes `snapshot`'s services' configurations for `instance`.
    fn write_services(&self, instance: &str, snapshot: &Snapshot) -> Result<(), String> {
        let Some(dir) = &self.services else {
            return Ok(());
        };
        let dir = services_dir(dir, instance);
        // Made even when empty: gatehouse-ratelimit starts on it and
        // watches it for the first RateLimit.
        std::fs::create_dir_all(dir.join("config"))
            .and_then(|()| {
                gatehouse_config::write_services(&snapshot.services, &dir, &dir.join("config"))
            })
            .map(|written| {
                tracing::info!(instance, version = %snapshot.version, files = written.written.len(), removed = written.removed.len(), "the services' configurations written");
            })
            .map_err(|e| format!("writing the services' configurations in {}: {e}", dir.display()))
    }

    /// Each instance's current version.
    pub fn current(&self) -> BTreeMap<String, String> {
        lock(&self.instances)
            .iter()
            .map(|(k, v)| (k.clone(), v.borrow().version.clone()))
            .collect()
    }

    /// The files the current versions read besides the resources (the
    /// certificates and keys of secrets): a change to one is a change.
    pub fn watched(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = lock(&self.instances)
            .values()
            .flat_map(|tx| tx.borrow().files.clone())
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// Each instance's refused change, with why.
    pub fn refused(&self) -> BTreeMap<String, String> {
        lock(&self.refused).clone()
    }
}

/// Whether `name` may name an instance: an Ambassador id, never a path.
#[must_use]
pub fn is_instance_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Where `instance`'s services' configurations are written under `dir`.
#[must_use]
pub fn services_dir(dir: &Path, instance: &str) -> PathBuf {
    dir.join(instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: app}
spec: {prefix: /app/, service: '127.0.0.1:9000'}
";
    const INTERNAL: &str = "apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: internal}
spec: {ambassador_id: [internal], prefix: /internal/, service: '127.0.0.1:9001'}
";

    /// A fleet serving `dir`, writing the services' files under `services`.
    fn fleet_of(dir: &Path, services: Option<&Path>) -> Fleet {
        Fleet::new(
            Source {
                paths: vec![dir.to_path_buf()],
                ..Source::default()
            },
            RenderOptions::default(),
            Protos::load().expect("descriptors"),
            DEFAULT_INSTANCE.to_owned(),
            services.map(Path::to_path_buf),
        )
        .expect("the default instance builds")
    }

    #[test]
    fn each_instance_has_its_version_and_a_refusal_stays_with_its_instance() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("default.yaml"), DEFAULT).expect("write");
        std::fs::write(dir.path().join("internal.yaml"), INTERNAL).expect("write");
        let fleet = fleet_of(dir.path(), None);
        let internal = fleet.subscribe("internal").expect("builds");
        let versions = fleet.current();
        assert_eq!(versions.len(), 2);
        assert_ne!(versions["default"], versions["internal"]);
        // A change only the internal instance reads, and does not render.
        std::fs::write(
            dir.path().join("internal.yaml"),
            INTERNAL.replace("prefix", "prefx"),
        )
        .expect("write");
        fleet.rebuild();
        assert_eq!(
            fleet.current(),
            versions,
            "both keep their last good version"
        );
        assert_eq!(
            fleet.refused().keys().collect::<Vec<_>>(),
            ["internal"],
            "refused for the internal instance alone"
        );
        assert_eq!(fleet.refusals.load(Ordering::Relaxed), 1);
        // Fixed: a new version for the internal instance only.
        std::fs::write(
            dir.path().join("internal.yaml"),
            INTERNAL.replace("/internal/", "/inside/"),
        )
        .expect("write");
        fleet.rebuild();
        assert!(fleet.refused().is_empty());
        assert_eq!(fleet.current()["default"], versions["default"]);
        assert_ne!(internal.borrow().version, versions["internal"]);
    }

    const LIMIT: &str = "---
apiVersion: getambassador.io/v3alpha1
kind: RateLimit
metadata: {name: per-client}
spec:
  domain: ambassador
  limits:
  - pattern: [{generic_key: app}]
    rate: 5
    unit: minute
";

    #[test]
    fn the_services_files_are_written_per_instance_with_each_version() {
        let dir = tempfile::tempdir().expect("dir");
        let out = tempfile::tempdir().expect("out");
        std::fs::write(dir.path().join("edge.yaml"), format!("{DEFAULT}{LIMIT}")).expect("write");
        let fleet = fleet_of(dir.path(), Some(out.path()));
        let config = out.path().join("default/config");
        let read = || {
            std::fs::read_dir(&config)
                .expect("the ratelimit files")
                .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
                .collect::<String>()
        };
        assert!(read().contains("requests_per_unit: 5"), "{}", read());
        let before = fleet.current();
        // A change to the rate limit alone is a new version, and its file.
        std::fs::write(
            dir.path().join("edge.yaml"),
            format!("{DEFAULT}{}", LIMIT.replace("rate: 5", "rate: 7")),
        )
        .expect("write");
        fleet.rebuild();
        assert_ne!(fleet.current(), before);
        assert!(read().contains("requests_per_unit: 7"), "{}", read());
        // A refused change writes nothing.
        std::fs::write(
            dir.path().join("edge.yaml"),
            format!("{DEFAULT}{}", LIMIT.replace("rate: 5", "rate: many")),
        )
        .expect("write");
        fleet.rebuild();
        assert!(read().contains("requests_per_unit: 7"), "{}", read());
        assert_eq!(fleet.refusals.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_instance_name_is_never_a_path() {
        for bad in ["", "..", "../etc", "a/b", ".hidden", &"x".repeat(64), "a b"] {
            assert!(!is_instance_name(bad), "{bad:?}");
        }
        for good in ["default", "internal-2", "edge.eu_1"] {
            assert!(is_instance_name(good), "{good:?}");
        }
    }
}
