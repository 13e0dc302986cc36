//! When a worker fetches its remote JWKS, and how the workers of one Envoy
//! share a fetch.
//!
//! Every Envoy worker runs its own copy of the filter, with its own keys.
//! Left alone, each would fetch every JWKS itself, and a flood of tokens with
//! a forged `kid` would make each of them ask the IdP again. So the workers
//! coordinate through Envoy's shared data (one store per VM, visible to every
//! worker, with a version per entry for compare-and-swap), in two entries per
//! remote provider:
//!
//! - `…/keys`: the last JWKS any worker fetched, as the fetch time (Unix
//!   seconds, 8 bytes little-endian) followed by the body. A worker whose own
//!   keys are older takes these instead of fetching ("adoption").
//! - `…/fetching`: the fetch lock, the time its holder started (8 bytes) or
//!   empty. A worker claims it by compare-and-swap, so one fetch serves every
//!   worker; a lock older than the fetch timeout no longer counts, so a worker
//!   that lost its answer cannot block the others.
//!
//! Each worker also throttles itself: one fetch at a time, none within
//! `refetch_interval_secs` of a failed attempt (backoff) or of any attempt a
//! token's unknown `kid` asked for, and a refresh once the keys are older
//! than `cache_duration_secs`.
//!
//! The host (Envoy through proxy-wasm in `gatehouse-jwt`, a fake in the tests)
//! is a [`JwksHost`]; time comes in as a parameter.

use crate::jwks::{JwksError, KeySet};
use crate::policy::{Policy, RemoteJwks};

/// A shared-data entry as the host reads it: the value (`None` when there is
/// no such entry) and its version, for compare-and-swap.
pub type SharedEntry = (Option<Vec<u8>>, Option<u32>);

/// What the scheduler needs from its host: the shared data every worker
/// sees, outgoing HTTP calls, and the worker's own keys.
pub trait JwksHost {
    /// Why a host call failed (proxy-wasm's `Status` in the filter).
    type Error;

    /// A shared-data entry and its version: `Ok((None, _))` when the entry
    /// does not exist.
    ///
    /// # Errors
    /// When the host cannot read its shared data.
    fn shared_get(&self, key: &str) -> Result<SharedEntry, Self::Error>;

    /// Writes a shared-data entry; with `cas`, only while the entry is still
    /// at that version.
    ///
    /// # Errors
    /// When the entry moved on since version `cas`, or the host cannot write.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Self::Error>;

    /// Starts a `GET` of `remote` through its Envoy cluster, bounded by its
    /// `timeout_ms`, and returns the call's token. The answer comes back to
    /// the context that asked, which hands it to [`JwksRefresh::receive`].
    ///
    /// # Errors
    /// When the call cannot start (e.g. an unknown cluster).
    fn dispatch_fetch(&mut self, remote: &RemoteJwks) -> Result<u32, Self::Error>;

    /// Verifies provider `index`'s tokens with `keys` from now on
    /// ([`crate::FilterConfig::install_keys`]).
    fn install_keys(&mut self, index: usize, keys: KeySet);
}

/// What became of a request's call for keys ([`JwksRefresh::fetch_for_request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFetch {
    /// A fetch is out under this call token: the request waits for it.
    Started(u32),
    /// Another worker had fetched newer keys, now installed: decide again.
    Adopted,
    /// Another worker is fetching: decide again with the keys there are.
    Busy,
}

/// Why a JWKS answer left the keys as they were.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The answer was not a `200` with a body (`None`: no status at all).
    #[error("status {}", .0.as_deref().unwrap_or("none"))]
    Status(Option<String>),
    /// The body is not a usable JWKS.
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

/// Fetch bookkeeping of one remote provider, in this worker. Times are Unix
/// seconds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct FetchState {
    /// When the keys in use were fetched (by this worker or another).
    last_success: Option<u64>,
    /// When this worker last started a fetch.
    last_attempt: Option<u64>,
    /// This worker's fetch has not answered yet.
    in_flight: bool,
}

impl FetchState {
    /// A fetch is out and not overdue. An answer can be lost (the request
    /// that started it went away), so a fetch older than its timeout no
    /// longer blocks the next one.
    fn is_busy(&self, remote: &RemoteJwks, now: u64) -> bool {
        self.in_flight
            && self
                .last_attempt
                .is_some_and(|t| now.saturating_sub(t) <= lock_secs(remote))
    }

    /// The last attempt failed and the refetch interval has not passed.
    fn is_backing_off(&self, remote: &RemoteJwks, now: u64) -> bool {
        self.last_attempt.is_some_and(|t| {
            self.last_success.is_none_or(|s| s < t)
                && now.saturating_sub(t) < remote.refetch_interval_secs
        })
    }

    /// The keys are missing or older than the cache duration.
    fn is_stale(&self, remote: &RemoteJwks, now: u64) -> bool {
        self.last_success
            .is_none_or(|t| now.saturating_sub(t) >= remote.cache_duration_secs)
    }
}

/// How long a fetch (this worker's, or another's lock) counts as under way,
/// seconds: the timeout, rounded down, plus one.
fn lock_secs(remote: &RemoteJwks) -> u64 {
    remote.timeout_ms / 1000 + 1
}

/// One remote provider as the scheduler sees it.
#[derive(Debug, Clone)]
struct Remote {
    index: usize,
    name: String,
    remote: RemoteJwks,
    /// Shared-data entry of the last fetched JWKS.
    keys_entry: String,
    /// Shared-data entry of the fetch lock.
    lock_entry: String,
    state: FetchState,
}

/// The JWKS fetch schedule of one worker: which remote provider to fetch
/// when, and whose fetch to reuse. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct JwksRefresh {
    remotes: Vec<Remote>,
}

impl JwksRefresh {
    /// The schedule of `policy`'s remote providers, none fetched yet.
    #[must_use]
    pub fn new(policy: &Policy) -> Self {
        let remotes = policy
            .remote_jwks()
            .map(|(index, name, remote)| {
                // Names every worker of the VM derives alike, distinct per
                // provider and URI.
                let base = format!("gatehouse-jwt/{name}/{}{}", remote.authority, remote.path);
                Remote {
                    index,
                    name: name.to_owned(),
                    remote: remote.clone(),
                    keys_entry: format!("{base}/keys"),
                    lock_entry: format!("{base}/fetching"),
                    state: FetchState::default(),
                }
            })
            .collect();
        Self { remotes }
    }

    /// Whether there is no remote provider, so nothing to schedule.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.remotes.is_empty()
    }

    /// The configured name of provider `index` (empty when not remote).
    #[must_use]
    pub fn name(&self, index: usize) -> &str {
        self.remote(index).map_or("", |r| r.name.as_str())
    }

    /// Gives each fetch lock a value when it has none, so that claims
    /// compare-and-swap against a real version (a missing entry cannot be
    /// CAS-ed). Called once at configuration; failures are left to the
    /// claims, which then simply fetch.
    pub fn prepare_shared<H: JwksHost>(&self, host: &mut H) {
        for r in &self.remotes {
            if matches!(host.shared_get(&r.lock_entry), Ok((None, _))) {
                let _ = host.shared_set(&r.lock_entry, &[], None);
            }
        }
    }

    /// Whether a request's unknown `kid` may start a fetch for provider
    /// `index` at `now`: the provider is remote, no fetch of this worker is
    /// under way, and the last attempt is at least `refetch_interval_secs`
    /// old. This is what keeps forged `kid`s from flooding the IdP.
    #[must_use]
    pub fn may_refetch(&self, index: usize, now: u64) -> bool {
        self.remote(index).is_some_and(|r| {
            !r.state.is_busy(&r.remote, now)
                && r.state
                    .last_attempt
                    .is_none_or(|t| now.saturating_sub(t) >= r.remote.refetch_interval_secs)
        })
    }

    /// The periodic look at every remote provider. For each whose keys are
    /// stale, with no fetch under way and not backing off: take newer keys
    /// another worker fetched if they are fresh, else claim the lock and
    /// fetch. Returns the fetches started (provider index, call token or the
    /// host's refusal); a refused call still counts as an attempt.
    pub fn on_tick<H: JwksHost>(
        &mut self,
        now: u64,
        host: &mut H,
    ) -> Vec<(usize, Result<u32, H::Error>)> {
        let mut started = Vec::new();
        for r in &mut self.remotes {
            let due = r.state.is_stale(&r.remote, now)
                && !r.state.is_busy(&r.remote, now)
                && !r.state.is_backing_off(&r.remote, now);
            if !due {
                continue;
            }
            // Keys another worker fetched recently serve this one too.
            if r.adopt(host) && !r.state.is_stale(&r.remote, now) {
                continue;
            }
            if !r.claim(now, host) {
                continue;
            }
            started.push((r.index, r.dispatch(now, host)));
        }
        started
    }

    /// A request's decision asked for provider `index`'s keys
    /// ([`crate::Decision::FetchKeys`]). Another worker may have them
    /// already ([`RequestFetch::Adopted`]) or be fetching them
    /// ([`RequestFetch::Busy`]); otherwise this worker claims the lock and
    /// fetches.
    ///
    /// # Errors
    /// The host's refusal to start the call (the attempt still counts).
    pub fn fetch_for_request<H: JwksHost>(
        &mut self,
        index: usize,
        now: u64,
        host: &mut H,
    ) -> Result<RequestFetch, H::Error> {
        let Some(r) = self.remotes.iter_mut().find(|r| r.index == index) else {
            return Ok(RequestFetch::Busy);
        };
        if r.adopt(host) {
            return Ok(RequestFetch::Adopted);
        }
        if !r.claim(now, host) {
            return Ok(RequestFetch::Busy);
        }
        r.dispatch(now, host).map(RequestFetch::Started)
    }

    /// For a request that found provider `index`'s keys being fetched
    /// ([`RequestFetch::Busy`]) and waits: takes the keys if they have
    /// arrived, and says whether the fetch is still under way (by this
    /// worker, or another's lock not yet overdue). Once it is not, the
    /// request decides again with the keys there are; a fetch counts as
    /// under way for at most its timeout, so no request waits longer.
    pub fn still_fetching<H: JwksHost>(&mut self, index: usize, now: u64, host: &mut H) -> bool {
        let Some(r) = self.remotes.iter_mut().find(|r| r.index == index) else {
            return false;
        };
        if r.adopt(host) {
            return false;
        }
        self.fetch_under_way(index, now, host)
    }

    /// Whether provider `index`'s keys are being fetched at `now`: by this
    /// worker, or under another's lock that is not overdue. A request
    /// whose key is missing then waits for the fetch
    /// ([`JwksRefresh::still_fetching`]) rather than being refused for
    /// keys that are on their way; it starts no fetch of its own.
    pub fn fetch_under_way<H: JwksHost>(&self, index: usize, now: u64, host: &H) -> bool {
        let Some(r) = self.remote(index) else {
            return false;
        };
        if r.state.is_busy(&r.remote, now) {
            return true;
        }
        matches!(
            host.shared_get(&r.lock_entry),
            Ok((Some(value), _)) if value
                .first_chunk::<8>()
                .is_some_and(|stamp| now.saturating_sub(u64::from_le_bytes(*stamp)) <= lock_secs(&r.remote))
        )
    }

    /// Takes the answer to a fetch of provider `index`: its `:status` and
    /// body. A `200` with a JWKS installs the keys, shares them with the
    /// other workers and returns how many there are; anything else keeps the
    /// last keys. Either way the lock is released.
    ///
    /// # Errors
    /// Why the keys were kept.
    pub fn receive<H: JwksHost>(
        &mut self,
        index: usize,
        status: Option<&str>,
        body: Option<&[u8]>,
        now: u64,
        host: &mut H,
    ) -> Result<usize, FetchError> {
        let mut remote = self.remotes.iter_mut().find(|r| r.index == index);
        let keys = match (status, body) {
            (Some("200"), Some(body)) => {
                let keys = KeySet::from_jwks(body).map_err(FetchError::from);
                if let (Ok(_), Some(r)) = (&keys, remote.as_deref()) {
                    r.publish(now, body, host);
                }
                keys
            }
            (status, _) => Err(FetchError::Status(status.map(str::to_owned))),
        };
        if let Some(r) = remote.as_deref_mut() {
            // Released without compare-and-swap: the lock is ours, or so old
            // that another worker's claim of it has expired as well.
            let _ = host.shared_set(&r.lock_entry, &[], None);
            r.state.in_flight = false;
        }
        let keys = keys?;
        let count = keys.len();
        host.install_keys(index, keys);
        if let Some(r) = remote {
            r.state.last_success = Some(now);
        }
        Ok(count)
    }

    fn remote(&self, index: usize) -> Option<&Remote> {
        self.remotes.iter().find(|r| r.index == index)
    }
}

impl Remote {
    /// Takes the keys another worker fetched, when newer than this worker's.
    fn adopt<H: JwksHost>(&mut self, host: &mut H) -> bool {
        let Ok((Some(value), _)) = host.shared_get(&self.keys_entry) else {
            return false;
        };
        let Some((stamp, body)) = value.split_first_chunk::<8>() else {
            return false;
        };
        let fetched_at = u64::from_le_bytes(*stamp);
        if self.state.last_success.is_some_and(|t| t >= fetched_at) {
            return false;
        }
        let Ok(keys) = KeySet::from_jwks(body) else {
            return false;
        };
        host.install_keys(self.index, keys);
        self.state.last_success = Some(fetched_at);
        true
    }

    /// Claims the next fetch for every worker: false while another worker's
    /// fetch is out (and not overdue), so one fetch serves them all. A host
    /// without shared data leaves every worker to fetch for itself.
    fn claim<H: JwksHost>(&self, now: u64, host: &mut H) -> bool {
        let Ok((value, cas)) = host.shared_get(&self.lock_entry) else {
            return true;
        };
        if let Some(stamp) = value.as_deref().and_then(|v| v.first_chunk::<8>())
            && now.saturating_sub(u64::from_le_bytes(*stamp)) <= lock_secs(&self.remote)
        {
            return false;
        }
        host.shared_set(&self.lock_entry, &now.to_le_bytes(), cas)
            .is_ok()
    }

    /// Starts the fetch and notes the attempt, whether or not it started.
    fn dispatch<H: JwksHost>(&mut self, now: u64, host: &mut H) -> Result<u32, H::Error> {
        let call = host.dispatch_fetch(&self.remote);
        self.state.last_attempt = Some(now);
        self.state.in_flight = call.is_ok();
        call
    }

    /// Shares a fetched JWKS with the other workers: fetch time, then body.
    fn publish<H: JwksHost>(&self, now: u64, body: &[u8], host: &mut H) {
        let mut value = now.to_le_bytes().to_vec();
        value.extend_from_slice(body);
        let _ = host.shared_set(&self.keys_entry, &value, None);
    }
}

#[cfg(test)]
mod tests;
