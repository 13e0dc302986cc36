//! Reading the configuration file and the keys it names, and reloading
//! them all when any of them changes (the watcher itself is the service
//! kit's: this file says what to read and which paths are sources).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use gatehouse_authz_core::session::SessionKeys;
use gatehouse_authz_core::{ApiKeys, AuthzConfig, FilterKind, Filters, KeySource, SecretSource};
use gatehouse_service_kit::{Reload, WatchPlan};

use crate::metrics::Metrics;
use crate::oidc::{AssertionKey, OidcRuntime};

/// Signature algorithms bearer tokens may use: the asymmetric ones (a
/// shared secret has no place in a token a third party mints).
const BEARER_ALGORITHMS: [gatehouse_jwt_core::Algorithm; 9] = {
    use gatehouse_jwt_core::Algorithm::{
        ES256, ES384, EdDSA, PS256, PS384, PS512, RS256, RS384, RS512,
    };
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
};

/// Clock skew allowed on bearer tokens' `exp`, `nbf` and `iat`, seconds.
const BEARER_LEEWAY_SECS: u64 = 30;

/// Why the files read do not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// The text is not a valid configuration or key file.
    #[error(transparent)]
    Config(#[from] gatehouse_authz_core::ConfigError),
    /// A secret the configuration names is missing or unusable.
    #[error("{0}")]
    Secret(String),
}

/// Why a load failed: the message names the file (and the field).
pub type LoadError = gatehouse_service_kit::LoadError<Invalid>;

fn unusable_secret(message: String) -> LoadError {
    LoadError::invalid(Invalid::Secret(message))
}

/// A loaded configuration and the paths it was read from.
#[derive(Debug)]
pub struct Loaded {
    /// What checks read.
    pub filters: Filters,
    /// The OIDC filters' runtimes, by filter name.
    pub oidc: BTreeMap<String, Arc<OidcRuntime>>,
    /// Every file and directory read: a change to any means a reload.
    pub sources: Vec<PathBuf>,
}

/// Reads `config` and every key file or secret directory it names (relative
/// paths are relative to the configuration file's directory).
pub fn load(config: &Path) -> Result<Loaded, LoadError> {
    load_after(config, &BTreeMap::new())
}

/// As [`load`], for a reload: an OIDC filter keeps what its runtime in
/// `previous` (by name) discovered, when its issuer did not change, so a
/// reload (even of an API-key file) does not forget the IdP.
fn load_after(
    config: &Path,
    previous: &BTreeMap<String, Arc<OidcRuntime>>,
) -> Result<Loaded, LoadError> {
    let text = std::fs::read_to_string(config).map_err(LoadError::reading(config))?;
    let parsed =
        AuthzConfig::parse(&text, &config.display().to_string()).map_err(LoadError::invalid)?;
    let base = config.parent().unwrap_or(Path::new("."));
    let mut sources = vec![config.to_path_buf()];
    let mut keys = BTreeMap::new();
    let mut oidc = BTreeMap::new();
    for (name, kind) in parsed.filters() {
        match kind {
            FilterKind::Oidc(f) => {
                let path = base.join(&f.session_keys_file);
                let text = std::fs::read_to_string(&path).map_err(LoadError::reading(&path))?;
                let ring = SessionKeys::from_key_file(&text, &path.display().to_string())
                    .map_err(LoadError::invalid)?;
                sources.push(path);
                let secret = match &f.client_secret {
                    None => String::new(),
                    Some(SecretSource::File(file)) => {
                        let path = base.join(file);
                        let text =
                            std::fs::read_to_string(&path).map_err(LoadError::reading(&path))?;
                        sources.push(path);
                        text.trim_end_matches(['\n', '\r']).to_owned()
                    }
                    Some(SecretSource::Env(var)) => std::env::var(var).map_err(|_| {
                        unusable_secret(format!(
                            "filters.{name}.oidc.client_secret_env: the variable {var} is not set"
                        ))
                    })?,
                };
                let assertion = match &f.client_auth {
                    gatehouse_authz_core::ClientAuth::PrivateKeyJwt { key_file, key_id } => {
                        let path = base.join(key_file);
                        let pem = std::fs::read(&path).map_err(LoadError::reading(&path))?;
                        let key =
                            AssertionKey::from_pem(&pem, key_id.clone()).ok_or_else(|| {
                                unusable_secret(format!(
                                    "{}: not a PEM private key (RSA or P-256)",
                                    path.display()
                                ))
                            })?;
                        sources.push(path);
                        Some(key)
                    }
                    _ => None,
                };
                let bearer = match &f.bearer {
                    None => None,
                    Some(b) => {
                        let path = base.join(&b.jwks_file);
                        let bytes = std::fs::read(&path).map_err(LoadError::reading(&path))?;
                        let keys = gatehouse_jwt_core::KeySet::from_jwks(&bytes)
                            .map_err(|e| unusable_secret(format!("{}: {e}", path.display())))?;
                        sources.push(path);
                        Some(gatehouse_jwt_core::Provider::new(
                            Some(b.issuer.clone()),
                            b.audiences.clone(),
                            BEARER_ALGORITHMS.to_vec(),
                            keys,
                            BEARER_LEEWAY_SECS,
                        ))
                    }
                };
                let runtime = OidcRuntime::new(
                    name,
                    (**f).clone(),
                    ring,
                    secret,
                    bearer,
                    assertion,
                    previous.get(name).map(Arc::as_ref),
                )
                .map_err(unusable_secret)?;
                oidc.insert(name.clone(), Arc::new(runtime));
            }
            FilterKind::ApiKeys(f) => {
                let (path, ring) = match &f.source {
                    KeySource::File(file) => {
                        let path = base.join(file);
                        let text =
                            std::fs::read_to_string(&path).map_err(LoadError::reading(&path))?;
                        let ring = ApiKeys::from_key_file(&text, &path.display().to_string())
                            .map_err(LoadError::invalid)?;
                        (path, ring)
                    }
                    KeySource::Dir(dir, clients) => {
                        let path = base.join(dir);
                        let ring = read_secret_dir(&path, clients.as_deref())?;
                        (path, ring)
                    }
                };
                sources.push(path);
                keys.insert(name.clone(), ring);
            }
        }
    }
    Ok(Loaded {
        filters: Filters::new(parsed, keys),
        oidc,
        sources,
    })
}

/// A mounted secret: one file per client (only the listed `clients`' when
/// given, each of which must be there). Entries named `.*` are skipped:
/// Kubernetes keeps its atomic-update internals there (`..data`, `..2026_…`).
fn read_secret_dir(dir: &Path, clients: Option<&[String]>) -> Result<ApiKeys, LoadError> {
    let mut entries = Vec::new();
    if let Some(missing) = clients
        .into_iter()
        .flatten()
        .find(|c| !dir.join(c).is_file())
    {
        return Err(unusable_secret(format!(
            "{}: no key file for the listed client {missing:?}",
            dir.display()
        )));
    }
    for entry in std::fs::read_dir(dir).map_err(LoadError::reading(dir))? {
        let entry = entry.map_err(LoadError::reading(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || clients.is_some_and(|c| !c.contains(&name)) {
            continue;
        }
        let path = entry.path();
        // Follow symlinks: a Secret's files are links into `..data`.
        let meta = std::fs::metadata(&path).map_err(LoadError::reading(&path))?;
        if meta.is_file() {
            entries.push((
                name,
                std::fs::read(&path).map_err(LoadError::reading(&path))?,
            ));
        }
    }
    entries.sort();
    ApiKeys::from_secrets(entries, &dir.display().to_string()).map_err(LoadError::invalid)
}

/// What a check reads: the filters and the OIDC runtimes, swapped together.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The filters.
    pub filters: Filters,
    /// OIDC runtimes by filter name.
    pub oidc: BTreeMap<String, Arc<OidcRuntime>>,
}

/// The current filters, swapped whole on reload.
#[derive(Debug)]
pub struct LiveFilters {
    config: PathBuf,
    current: ArcSwap<Snapshot>,
    sources: std::sync::Mutex<Vec<PathBuf>>,
    metrics: Arc<Metrics>,
}

fn start(loaded: &Loaded, metrics: &Arc<Metrics>) {
    // Discovery runs only inside the service (not for --check-config).
    if tokio::runtime::Handle::try_current().is_ok() {
        for runtime in loaded.oidc.values() {
            runtime.spawn_discovery(metrics.clone());
        }
    }
}

impl LiveFilters {
    /// Loads `config` for the first time.
    pub fn load(config: PathBuf, metrics: Arc<Metrics>) -> Result<Self, LoadError> {
        let loaded = load(&config)?;
        start(&loaded, &metrics);
        Ok(Self {
            config,
            current: ArcSwap::from_pointee(Snapshot {
                filters: loaded.filters,
                oidc: loaded.oidc,
            }),
            sources: std::sync::Mutex::new(loaded.sources),
            metrics,
        })
    }

    /// What checks read now.
    pub fn current(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// What checks read now, held across awaits.
    pub fn current_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Reads everything again; on error the previous filters stay. The
    /// feed's socket is bound at start: a reload that moves it (or adds or
    /// drops it) is refused, never half applied.
    pub fn reload(&self) -> Result<(), LoadError> {
        let loaded = load_after(&self.config, &self.current().oidc)?;
        let socket = |f: &Filters| f.config().and_then(|c| c.feed_socket()).map(str::to_owned);
        let (before, after) = (socket(&self.current().filters), socket(&loaded.filters));
        if before != after {
            return Err(LoadError::invalid(Invalid::Config(
                gatehouse_authz_core::ConfigError {
                    file: self.config.display().to_string(),
                    path: "feed_socket".to_owned(),
                    message: format!(
                        "changed from {before:?} to {after:?}: the socket is bound at start, restart gatehouse-authz to change it"
                    ),
                },
            )));
        }
        start(&loaded, &self.metrics);
        self.current.store(Arc::new(Snapshot {
            filters: loaded.filters,
            oidc: loaded.oidc,
        }));
        if let Ok(mut sources) = self.sources.lock() {
            *sources = loaded.sources;
        }
        Ok(())
    }

    /// The directories to watch: each source's parent (editors and the
    /// kubelet replace files rather than write them in place) and each
    /// secret directory itself.
    fn watch_dirs(&self) -> Vec<PathBuf> {
        let sources = self.sources.lock().map(|s| s.clone()).unwrap_or_default();
        let mut dirs: Vec<PathBuf> = sources
            .iter()
            .flat_map(|p| {
                let parent = p.parent().map(Path::to_path_buf);
                let own = p.is_dir().then(|| p.clone());
                parent.into_iter().chain(own)
            })
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p
                }
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

/// Whether an event about `path` may change what was loaded: the watched
/// directories hold other files too (a log, say) whose writes mean nothing.
/// A source is the file itself, anything in a secret directory, or the
/// kubelet's `..data` swap beside it. (Reads never count: see
/// [`gatehouse_service_kit::watch::is_change`].)
fn is_source(path: &Path, sources: &[PathBuf]) -> bool {
    sources.iter().any(|s| {
        path == s
            || path.parent() == Some(s.as_path())
            || (path.parent() == s.parent()
                && path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("..")))
    })
}

impl Reload for LiveFilters {
    type Outcome = ();
    type Error = LoadError;

    fn reload(&self) -> Result<(), LoadError> {
        // The inherent method: reads everything again, swaps on success.
        LiveFilters::reload(self)
    }

    fn is_source(&self, path: &Path) -> bool {
        self.sources
            .lock()
            .is_ok_and(|sources| is_source(path, &sources))
    }

    fn watch_plan(&self) -> WatchPlan {
        self.watch_dirs()
            .into_iter()
            .fold(WatchPlan::new(), WatchPlan::path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_authz_core::{CheckInput, Verdict, sha256_hex};
    use std::collections::HashMap;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::register(
            &mut prometheus_client::registry::Registry::default(),
        ))
    }

    fn client(live: &LiveFilters, key: &str) -> Option<String> {
        let headers = HashMap::from([("x-api-key".to_owned(), key.to_owned())]);
        match live.current().filters.check(&CheckInput {
            filter: None,
            path: "/",
            headers: &headers,
        }) {
            Verdict::Allow { set, .. } => Some(set[0].1.clone()),
            Verdict::Deny { .. } => None,
        }
    }

    #[test]
    fn keys_reload_and_a_bad_reload_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("authz.yaml");
        std::fs::write(
            &config,
            "default_filter: p\nfilters:\n  p:\n    api_keys: {keys_file: keys.yaml}\n",
        )
        .unwrap();
        let keys = |k: &str| {
            format!(
                "keys:\n  - {{name: acme, sha256: {}}}\n",
                sha256_hex(k.as_bytes())
            )
        };
        std::fs::write(dir.path().join("keys.yaml"), keys("one")).unwrap();
        let live = LiveFilters::load(config, metrics()).unwrap();
        assert_eq!(client(&live, "one").as_deref(), Some("acme"));

        std::fs::write(dir.path().join("keys.yaml"), keys("two")).unwrap();
        live.reload().unwrap();
        assert_eq!(client(&live, "two").as_deref(), Some("acme"));
        assert_eq!(client(&live, "one"), None);

        std::fs::write(
            dir.path().join("keys.yaml"),
            "keys:\n  - {name: acme, sha256: nope}\n",
        )
        .unwrap();
        let err = live.reload().unwrap_err().to_string();
        assert!(
            err.contains("keys.yaml: keys[0].sha256: not a SHA-256 digest"),
            "{err}"
        );
        assert_eq!(
            client(&live, "two").as_deref(),
            Some("acme"),
            "the old keys stay"
        );
    }

    #[test]
    fn a_reload_that_moves_the_feed_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("authz.yaml");
        let with = |socket: &str| {
            format!(
                "{socket}default_filter: p\nfilters:\n  p:\n    api_keys: {{keys_file: keys.yaml}}\n"
            )
        };
        std::fs::write(dir.path().join("keys.yaml"), "keys: []\n").unwrap();
        std::fs::write(&config, with("feed_socket: feed.sock\n")).unwrap();
        let live = LiveFilters::load(config.clone(), metrics()).unwrap();
        // The same socket: fine.
        live.reload().unwrap();
        for changed in ["feed_socket: other.sock\n", ""] {
            std::fs::write(&config, with(changed)).unwrap();
            let err = live.reload().unwrap_err().to_string();
            assert!(err.contains("feed_socket: changed from"), "{err}");
        }
        let socket = live
            .current()
            .filters
            .config()
            .and_then(|c| c.feed_socket())
            .map(str::to_owned);
        assert_eq!(socket.as_deref(), Some("feed.sock"), "the old config stays");
    }

    #[test]
    fn a_mounted_secret_is_read_through_its_links() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::create_dir_all(secret.join("..2026_11_28_01")).unwrap();
        std::fs::write(secret.join("..2026_11_28_01/acme"), "s3cret\n").unwrap();
        std::os::unix::fs::symlink("..2026_11_28_01", secret.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/acme", secret.join("acme")).unwrap();
        let config = dir.path().join("authz.yaml");
        std::fs::write(
            &config,
            "default_filter: p\nfilters:\n  p:\n    api_keys: {keys_dir: secret}\n",
        )
        .unwrap();
        let live = LiveFilters::load(config, metrics()).unwrap();
        assert_eq!(client(&live, "s3cret").as_deref(), Some("acme"));
        assert!(live.watch_dirs().contains(&secret));
    }

    #[test]
    fn a_client_list_takes_only_its_clients_and_needs_each() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join("acme"), "acme-key\n").unwrap();
        std::fs::write(secret.join("stray"), "stray-key\n").unwrap();
        let config = dir.path().join("authz.yaml");
        let write = |clients: &str| {
            std::fs::write(
                &config,
                format!("default_filter: p\nfilters:\n  p:\n    api_keys: {{keys_dir: secret, clients: {clients}}}\n"),
            )
            .unwrap();
        };
        write("[acme]");
        let live = LiveFilters::load(config.clone(), metrics()).unwrap();
        assert_eq!(client(&live, "acme-key").as_deref(), Some("acme"));
        assert_eq!(
            client(&live, "stray-key"),
            None,
            "a file nobody listed is no key"
        );
        write("[acme, globex]");
        let e = LiveFilters::load(config.clone(), metrics())
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"globex\""), "{e}");
    }

    #[test]
    fn only_events_about_sources_count() {
        use notify::event::{AccessKind, AccessMode, ModifyKind};
        let sources = [
            PathBuf::from("/etc/authz/authz.yaml"),
            PathBuf::from("/etc/authz/secret"),
        ];
        let event = |kind, path: &str| notify::Event::new(kind).add_path(PathBuf::from(path));
        let is_change = |event: &notify::Event, sources: &[PathBuf]| {
            gatehouse_service_kit::watch::is_change(event, |p| is_source(p, sources))
        };
        let modify = notify::EventKind::Modify(ModifyKind::Any);
        assert!(is_change(&event(modify, "/etc/authz/authz.yaml"), &sources));
        assert!(is_change(
            &event(modify, "/etc/authz/secret/acme"),
            &sources
        ));
        assert!(is_change(&event(modify, "/etc/authz/..data"), &sources));
        assert!(
            !is_change(&event(modify, "/etc/authz/authz.log"), &sources),
            "a neighbour"
        );
        let read = notify::EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(
            !is_change(&event(read, "/etc/authz/authz.yaml"), &sources),
            "a read"
        );
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("authz.yaml");
        std::fs::write(
            &config,
            "filters:\n  p:\n    api_keys: {keys_file: gone.yaml}\n",
        )
        .unwrap();
        let err = LiveFilters::load(config, metrics())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("reading ") && err.contains("gone.yaml"),
            "{err}"
        );
    }
}
