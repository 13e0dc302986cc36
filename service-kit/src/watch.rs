//! The configuration watcher: a change to any file a service loaded reloads
//! it, and a reload that fails keeps the configuration in force (the service's
//! [`Reload::reload`] builds fully before it swaps).
//!
//! Both services once had their own watcher, debouncing differently, and the
//! same bug was fixed in each: the access events of a reload's own reads
//! counted as changes, so every reload triggered the next one, forever; and
//! writes to unrelated files beside the watched ones (a log) reloaded too.
//! [`is_change`] is that fix, once. The debounce kept is the trailing one (a
//! burst is over when no event came for [`QUIET`]), bounded by [`MAX_DELAY`]
//! so a file written without pause cannot hold reloads back forever; the
//! reload runs on a blocking thread, since it reads files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

/// A burst of events (an editor's write, rename and chmod; the kubelet's
/// `..data` swap) is over when no event came for this long.
pub const QUIET: Duration = Duration::from_millis(100);

/// A burst that never pauses reloads this long after its first event anyway.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// A configuration that can be read again and swapped in.
pub trait Reload: Send + Sync + 'static {
    /// What a reload that went through reports (e.g. "applied", "unchanged").
    type Outcome: Send + 'static;
    /// Why a reload was refused.
    type Error: Send + 'static;

    /// Reads everything again and swaps it in whole; on error, the
    /// configuration in force stays. Runs on a blocking thread.
    ///
    /// # Errors
    /// The new configuration could not be read or is invalid.
    fn reload(&self) -> Result<Self::Outcome, Self::Error>;

    /// Whether an event about `path` may change what was loaded (the watched
    /// directories may hold other files). Called on the watcher's thread.
    fn is_source(&self, path: &Path) -> bool;

    /// The paths to watch now. Asked at start and after every reload, since
    /// a reload may name new files.
    fn watch_plan(&self) -> WatchPlan;
}

/// Paths to watch, each a directory or file, alone or with all below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchPlan {
    paths: Vec<(PathBuf, RecursiveMode)>,
}

impl WatchPlan {
    /// An empty plan.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches `path` itself (a directory's entries, not below them).
    #[must_use]
    pub fn path(mut self, path: PathBuf) -> Self {
        self.paths.push((path, RecursiveMode::NonRecursive));
        self
    }

    /// Watches `path` and everything below it.
    #[must_use]
    pub fn tree(mut self, path: PathBuf) -> Self {
        self.paths.push((path, RecursiveMode::Recursive));
        self
    }

    /// The paths, in order.
    #[must_use]
    pub fn paths(&self) -> Vec<&Path> {
        self.paths.iter().map(|(p, _)| p.as_path()).collect()
    }

    /// What each path resolves to now. A watch stays on the directory it was
    /// placed on: when a symlink on the way is re-pointed (the reference's
    /// `RUNTIME_ROOT` swap), the same path has to be watched again.
    fn resolve(&self) -> Vec<Option<PathBuf>> {
        self.paths
            .iter()
            .map(|(p, _)| std::fs::canonicalize(p).ok())
            .collect()
    }
}

/// Whether a file event may change a configuration: not a mere read, and
/// about a source. Reading the files during a reload opens them; were those
/// access events counted, every reload would trigger the next one, forever.
pub fn is_change(event: &notify::Event, is_source: impl Fn(&Path) -> bool) -> bool {
    !matches!(event.kind, notify::EventKind::Access(_))
        && event.paths.iter().any(|p| is_source(p.as_path()))
}

/// Watches what `live` loaded and reloads it on change, reporting every
/// reload's result to `report`, until the process ends.
///
/// # Errors
/// An existing path of the first plan cannot be watched (a path that does
/// not exist yet is only logged: later plans try it again).
pub fn spawn_watcher<L: Reload>(
    live: Arc<L>,
    report: impl Fn(Result<L::Outcome, L::Error>) + Send + 'static,
) -> notify::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = {
        let live = live.clone();
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(e) = event
                && is_change(&e, |p| live.is_source(p))
            {
                let _ = tx.send(());
            }
        })?
    };
    let (mut watching, failed) = renew(&mut watcher, live.as_ref(), None);
    if let Some((_, e)) = failed.into_iter().find(|(path, _)| path.exists()) {
        return Err(e);
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            settle(&mut rx).await;
            let reloading = live.clone();
            match tokio::task::spawn_blocking(move || reloading.reload()).await {
                Ok(result) => report(result),
                Err(e) => tracing::error!(error = %e, "configuration reload did not finish"),
            }
            watching = renew(&mut watcher, live.as_ref(), Some(watching)).0;
        }
    });
    Ok(())
}

/// Waits until the burst that started is over: no event for [`QUIET`], or
/// [`MAX_DELAY`] since it began. Swallows the burst's events.
async fn settle(rx: &mut UnboundedReceiver<()>) {
    let deadline = Instant::now() + MAX_DELAY;
    loop {
        let quiet = (Instant::now() + QUIET).min(deadline);
        match tokio::time::timeout_at(quiet, rx.recv()).await {
            Ok(Some(())) if Instant::now() < deadline => {}
            _ => return,
        }
    }
}

/// What is watched, and what it resolved to.
#[derive(Debug)]
struct Watching {
    plan: WatchPlan,
    resolved: Vec<Option<PathBuf>>,
}

/// Watches the current plan, unless it is what `last` already watches (and
/// every path of it resolved). Returns what is watched now, and the paths
/// that could not be watched (logged).
fn renew<L: Reload>(
    watcher: &mut impl Watcher,
    live: &L,
    last: Option<Watching>,
) -> (Watching, Vec<(PathBuf, notify::Error)>) {
    let plan = live.watch_plan();
    let resolved = plan.resolve();
    if let Some(last) = last {
        if last.plan == plan && last.resolved == resolved && resolved.iter().all(Option::is_some) {
            return (last, Vec::new());
        }
        for (path, _) in &last.plan.paths {
            let _ = watcher.unwatch(path);
        }
    }
    let mut failed = Vec::new();
    for (path, mode) in &plan.paths {
        if let Err(e) = watcher.watch(path, *mode) {
            tracing::warn!(path = %path.display(), error = %e, "cannot watch a configuration path");
            failed.push((path.clone(), e));
        }
    }
    (Watching { plan, resolved }, failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn reading_the_files_is_not_a_change() {
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};
        let event = |kind| notify::Event::new(kind).add_path(PathBuf::from("/etc/gh/a.yaml"));
        let any = |_: &Path| true;
        for read in [
            AccessKind::Open(AccessMode::Read),
            AccessKind::Close(AccessMode::Read),
        ] {
            assert!(!is_change(&event(notify::EventKind::Access(read)), any));
        }
        assert!(is_change(
            &event(notify::EventKind::Modify(ModifyKind::Any)),
            any
        ));
        assert!(is_change(
            &event(notify::EventKind::Create(CreateKind::File)),
            any
        ));
        let modify = notify::EventKind::Modify(ModifyKind::Any);
        assert!(
            !is_change(&event(modify), |p| p.ends_with("b.yaml")),
            "not a source"
        );
    }

    // Paused clock: the runtime advances time only when every task waits, so
    // the burst's spacing and the debounce are exact whatever the machine does.
    #[tokio::test(start_paused = true)]
    async fn a_burst_settles_into_one_reload() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let start = Instant::now();
        let burst = tokio::spawn(async move {
            for _ in 0..5 {
                tx.send(()).unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tx
        });
        rx.recv().await.unwrap();
        settle(&mut rx).await;
        let tx = burst.await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(80) + QUIET);
        assert!(rx.try_recv().is_err(), "the burst's events are swallowed");
        drop(tx);
    }

    // Paused clock: the runtime advances time only when every task waits, so
    // the burst's spacing and the debounce are exact whatever the machine does.
    #[tokio::test(start_paused = true)]
    async fn a_burst_without_pause_reloads_after_max_delay() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let busy = tokio::spawn(async move {
            loop {
                if tx.send(()).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        rx.recv().await.unwrap();
        let start = Instant::now();
        settle(&mut rx).await;
        let took = start.elapsed();
        assert!(took >= MAX_DELAY && took < MAX_DELAY * 3, "{took:?}");
        drop(rx);
        busy.await.unwrap();
    }

    /// A "configuration" that is one file's text.
    #[derive(Debug)]
    struct OneFile {
        path: PathBuf,
        text: Mutex<String>,
        reloads: AtomicUsize,
    }

    impl Reload for OneFile {
        type Outcome = String;
        type Error = String;
        fn reload(&self) -> Result<String, String> {
            self.reloads.fetch_add(1, Ordering::Relaxed);
            let text = std::fs::read_to_string(&self.path).map_err(|e| e.to_string())?;
            if text.starts_with("bad") {
                return Err(format!("{}: bad", self.path.display()));
            }
            *self.text.lock().unwrap() = text.clone();
            Ok(text)
        }
        fn is_source(&self, path: &Path) -> bool {
            path == self.path
        }
        fn watch_plan(&self) -> WatchPlan {
            WatchPlan::new().path(self.path.parent().unwrap().to_path_buf())
        }
    }

    async fn next<T>(reports: &mut UnboundedReceiver<T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), reports.recv())
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn a_change_reloads_and_a_bad_one_keeps_the_old_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        std::fs::write(&path, "one").unwrap();
        let live = Arc::new(OneFile {
            path: path.clone(),
            text: Mutex::new("one".into()),
            reloads: AtomicUsize::new(0),
        });
        let (tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
        spawn_watcher(live.clone(), move |r| {
            let _ = tx.send(r);
        })
        .unwrap();
        std::fs::write(&path, "two").unwrap();
        assert_eq!(next(&mut reports).await, Ok("two".into()));
        std::fs::write(&path, "bad").unwrap();
        assert!(
            next(&mut reports)
                .await
                .unwrap_err()
                .ends_with("a.yaml: bad")
        );
        assert_eq!(*live.text.lock().unwrap(), "two", "the old text stays");

        // A neighbour's writes, and the reloads' own reads, reload nothing.
        let reloads = live.reloads.load(Ordering::Relaxed);
        std::fs::write(dir.path().join("service.log"), "noise").unwrap();
        tokio::time::sleep(QUIET * 4).await;
        assert_eq!(live.reloads.load(Ordering::Relaxed), reloads);
    }

    #[test]
    fn a_path_that_does_not_exist_yet_does_not_stop_the_start() {
        #[derive(Debug)]
        struct Unwatchable(PathBuf);
        impl Reload for Unwatchable {
            type Outcome = ();
            type Error = ();
            fn reload(&self) -> Result<(), ()> {
                Ok(())
            }
            fn is_source(&self, _: &Path) -> bool {
                false
            }
            fn watch_plan(&self) -> WatchPlan {
                WatchPlan::new().path(self.0.clone())
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let missing = Arc::new(Unwatchable(PathBuf::from("/nonexistent/gatehouse")));
        assert!(
            spawn_watcher(missing, |_| {}).is_ok(),
            "a missing path is tried again later"
        );
    }
}
