//! The versions the server holds: one per Ambassador instance an Envoy
//! asks for with its node cluster (`default` when it names none), each
//! rebuilt when the resources change. An instance's change that does not
//! render is refused for that instance alone; the others move on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use gatehouse_config::RenderOptions;
use tokio::sync::watch;

use crate::proto::Protos;
use crate::snapshot::{self, Snapshot};

/// The instance of an Envoy whose node names no cluster.
pub const DEFAULT_INSTANCE: &str = "default";

/// Every instance's current version.
#[derive(Debug)]
pub struct Fleet {
    paths: Vec<PathBuf>,
    options: RenderOptions,
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
    /// A fleet serving `paths`; the default instance must build.
    ///
    /// # Errors
    /// The default instance's resources do not render.
    pub fn new(
        paths: Vec<PathBuf>,
        options: RenderOptions,
        protos: Protos,
    ) -> Result<Self, String> {
        let fleet = Self {
            paths,
            options,
            protos,
            instances: Mutex::default(),
            refused: Mutex::default(),
            versions: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        };
        fleet.subscribe(DEFAULT_INSTANCE)?;
        Ok(fleet)
    }

    /// The versions of `instance`, built at its first Envoy.
    ///
    /// # Errors
    /// The instance's resources do not render (its Envoys get nothing).
    pub fn subscribe(&self, instance: &str) -> Result<watch::Receiver<Arc<Snapshot>>, String> {
        if let Some(tx) = lock(&self.instances).get(instance) {
            return Ok(tx.subscribe());
        }
        let first = snapshot::build(&self.paths, instance, &self.options, &self.protos)?;
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
            match snapshot::build(&self.paths, &instance, &self.options, &self.protos) {
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

    /// Each instance's current version.
    pub fn current(&self) -> BTreeMap<String, String> {
        lock(&self.instances)
            .iter()
            .map(|(k, v)| (k.clone(), v.borrow().version.clone()))
            .collect()
    }

    /// Each instance's refused change, with why.
    pub fn refused(&self) -> BTreeMap<String, String> {
        lock(&self.refused).clone()
    }
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

    #[test]
    fn each_instance_has_its_version_and_a_refusal_stays_with_its_instance() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("default.yaml"), DEFAULT).expect("write");
        std::fs::write(dir.path().join("internal.yaml"), INTERNAL).expect("write");
        let fleet = Fleet::new(
            vec![dir.path().to_path_buf()],
            RenderOptions::default(),
            Protos::load().expect("descriptors"),
        )
        .expect("the default instance builds");
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
}
