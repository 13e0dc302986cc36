//! The JWKS schedule against a fake Envoy: workers that share one store of
//! shared data, each with its own calls and keys. Time is a parameter.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use serde_json::json;

use super::*;
use crate::config::FilterConfig;

const JWKS: &str = include_str!("../../testdata/jwks.json");
const T: u64 = 1_800_000_000;
/// `timeout_ms` 2000: a fetch or a lock counts as under way for 3 s.
const LOCK: u64 = 3;
const REFETCH: u64 = 10;
const CACHE: u64 = 300;

fn config() -> FilterConfig {
    let jwks: serde_json::Value = serde_json::from_str(JWKS).unwrap();
    let text = json!({
        "providers": {
            "idp": { "jwks": { "remote": {
                "uri": "http://keys.example:8080/jwks.json",
                "cluster": "idp_jwks",
                "cache_duration_seconds": CACHE,
                "timeout_ms": 2000,
                "refetch_interval_seconds": REFETCH
            } } },
            "local": { "jwks": { "inline": jwks } }
        }
    });
    FilterConfig::parse(text.to_string().as_bytes()).unwrap()
}

/// The remote provider's index.
const IDP: usize = 0;
/// The inline provider's index.
const LOCAL: usize = 1;

fn schedule() -> JwksRefresh {
    let refresh = JwksRefresh::new(config().policy());
    assert_eq!(refresh.name(IDP), "idp");
    refresh
}

/// Envoy's shared data: one store per VM, seen by every worker. Each entry
/// has a version that every write bumps, as in Envoy.
#[derive(Debug, Default, Clone)]
struct SharedData(Rc<RefCell<Store>>);

/// Value and version of each entry.
type Store = HashMap<String, (Vec<u8>, u32)>;

impl SharedData {
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.0.borrow().get(key).map(|(v, _)| v.clone())
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Refused> {
        let mut map = self.0.borrow_mut();
        let version = match map.get(key) {
            Some((_, v)) if cas.is_some_and(|c| c != *v) => return Err(Refused),
            Some((_, v)) => v + 1,
            None => 1,
        };
        map.insert(key.to_owned(), (value.to_vec(), version));
        Ok(())
    }
}

const KEYS_ENTRY: &str = "gatehouse-jwt/idp/keys.example:8080/jwks.json/keys";
const LOCK_ENTRY: &str = "gatehouse-jwt/idp/keys.example:8080/jwks.json/fetching";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refused;

/// One worker's view of a fake Envoy.
#[derive(Debug, Default)]
struct Worker {
    data: SharedData,
    /// Clusters of the calls this worker started, in order.
    calls: Vec<String>,
    /// Keys installed: provider index and how many keys.
    installed: Vec<(usize, usize)>,
    /// Envoy refuses to start calls.
    refuse_calls: bool,
    /// The shared data cannot be read or written.
    no_shared_data: bool,
    /// Another worker claims the lock between this worker's read and write.
    lose_races: bool,
}

impl Worker {
    fn on(data: &SharedData) -> Self {
        Self {
            data: data.clone(),
            ..Self::default()
        }
    }
}

impl JwksHost for Worker {
    type Error = Refused;

    fn shared_get(&self, key: &str) -> Result<SharedEntry, Refused> {
        if self.no_shared_data {
            return Err(Refused);
        }
        let found = self.data.0.borrow().get(key).cloned();
        if self.lose_races && key == LOCK_ENTRY {
            self.data.set(key, &T.to_le_bytes(), None)?;
        }
        Ok(found.map_or((None, None), |(v, version)| (Some(v), Some(version))))
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Refused> {
        if self.no_shared_data {
            return Err(Refused);
        }
        self.data.set(key, value, cas)
    }

    fn dispatch_fetch(&mut self, remote: &RemoteJwks) -> Result<u32, Refused> {
        if self.refuse_calls {
            return Err(Refused);
        }
        self.calls.push(remote.cluster.clone());
        Ok(u32::try_from(self.calls.len()).unwrap())
    }

    fn install_keys(&mut self, index: usize, keys: KeySet) {
        self.installed.push((index, keys.len()));
    }
}

fn all_keys() -> usize {
    KeySet::from_jwks(JWKS.as_bytes()).unwrap().len()
}

/// Answers a fetch with the test JWKS.
fn answer(refresh: &mut JwksRefresh, now: u64, worker: &mut Worker) -> Result<usize, FetchError> {
    refresh.receive(IDP, Some("200"), Some(JWKS.as_bytes()), now, worker)
}

fn started(fetches: &[(usize, Result<u32, Refused>)]) -> Vec<usize> {
    fetches
        .iter()
        .filter(|(_, call)| call.is_ok())
        .map(|(i, _)| *i)
        .collect()
}

// === fetching on the tick ===

#[test]
fn missing_keys_are_fetched_on_the_first_tick() {
    let mut refresh = schedule();
    let mut worker = Worker::default();
    assert_eq!(started(&refresh.on_tick(T, &mut worker)), vec![IDP]);
    assert_eq!(worker.calls, vec!["idp_jwks".to_owned()]);

    assert_eq!(answer(&mut refresh, T, &mut worker), Ok(all_keys()));
    assert_eq!(worker.installed, vec![(IDP, all_keys())]);
}

#[test]
fn a_provider_with_inline_keys_is_never_fetched() {
    let mut refresh = schedule();
    let mut worker = Worker::default();
    refresh.on_tick(T, &mut worker);
    assert!(!refresh.may_refetch(LOCAL, T));
    assert_eq!(
        refresh.fetch_for_request(LOCAL, T, &mut worker),
        Ok(RequestFetch::Busy)
    );
    assert_eq!(worker.calls.len(), 1, "only the remote provider");
    assert!(JwksRefresh::new(&crate::Policy::default()).is_empty());
    assert!(!schedule().is_empty());
}

#[test]
fn fresh_keys_are_fetched_again_only_after_the_cache_duration() {
    let mut refresh = schedule();
    let mut worker = Worker::default();
    refresh.on_tick(T, &mut worker);
    answer(&mut refresh, T + 1, &mut worker).unwrap();
    for now in [T + 2, T + 100, T + CACHE] {
        assert!(refresh.on_tick(now, &mut worker).is_empty(), "at {now}");
    }
    assert_eq!(
        started(&refresh.on_tick(T + 1 + CACHE, &mut worker)),
        vec![IDP]
    );
}

// === single flight ===

#[test]
fn a_fetch_under_way_is_not_started_again_by_the_same_worker() {
    let mut refresh = schedule();
    let mut worker = Worker::default();
    refresh.on_tick(T, &mut worker);
    for now in [T, T + 1, T + LOCK] {
        assert!(refresh.on_tick(now, &mut worker).is_empty(), "at {now}");
        assert!(!refresh.may_refetch(IDP, now), "at {now}");
    }
    assert_eq!(worker.calls.len(), 1);
}

/// Two workers on one store of shared data, the first fetching since `T`.
fn first_worker_fetching() -> (SharedData, Worker, Worker, JwksRefresh, JwksRefresh) {
    let data = SharedData::default();
    let (mut a, mut b) = (Worker::on(&data), Worker::on(&data));
    let (mut first, second) = (schedule(), schedule());
    first.prepare_shared(&mut a);
    second.prepare_shared(&mut b);
    assert_eq!(started(&first.on_tick(T, &mut a)), vec![IDP]);
    (data, a, b, first, second)
}

#[test]
fn one_worker_fetches_while_the_others_wait_for_its_lock() {
    let (data, mut a, mut b, mut first, mut second) = first_worker_fetching();
    assert!(second.on_tick(T, &mut b).is_empty());
    assert!(second.on_tick(T + LOCK, &mut b).is_empty());
    assert_eq!(
        second.fetch_for_request(IDP, T + 1, &mut b),
        Ok(RequestFetch::Busy)
    );
    assert!(b.calls.is_empty());

    // The answer frees the lock and leaves the keys for the other worker.
    answer(&mut first, T + 1, &mut a).unwrap();
    assert_eq!(data.get(LOCK_ENTRY), Some(Vec::new()));
    assert!(second.on_tick(T + 2, &mut b).is_empty());
    assert_eq!(b.installed, vec![(IDP, all_keys())]);
    assert!(b.calls.is_empty(), "one fetch served both workers");
}

#[test]
fn a_request_that_found_a_fetch_under_way_waits_for_it_and_no_longer() {
    let (_data, mut a, mut b, mut first, mut second) = first_worker_fetching();
    assert_eq!(
        second.fetch_for_request(IDP, T, &mut b),
        Ok(RequestFetch::Busy)
    );
    // Another worker's fetch is out: wait.
    assert!(second.fetch_under_way(IDP, T + 1, &b));
    assert!(second.still_fetching(IDP, T + 1, &mut b));
    assert!(b.installed.is_empty());
    // Its answer: the keys are taken, and the wait is over.
    answer(&mut first, T + 1, &mut a).unwrap();
    assert!(!second.still_fetching(IDP, T + 1, &mut b));
    assert_eq!(b.installed, vec![(IDP, all_keys())]);

    // A fetch whose answer never comes holds a request for its timeout only.
    let (_data, mut a, mut b, mut first, mut second) = first_worker_fetching();
    assert!(second.still_fetching(IDP, T + LOCK, &mut b));
    assert!(!second.still_fetching(IDP, T + LOCK + 1, &mut b));
    // The worker's own fetch counts too, for as long.
    assert!(first.still_fetching(IDP, T + LOCK, &mut a));
    assert!(!first.still_fetching(IDP, T + LOCK + 1, &mut a));
    // A provider with inline keys is never fetched.
    assert!(!first.still_fetching(LOCAL, T, &mut a));
}

#[test]
fn a_lost_answer_stops_blocking_after_the_timeout() {
    let data = SharedData::default();
    let (mut a, mut b) = (Worker::on(&data), Worker::on(&data));
    let (mut first, mut second) = (schedule(), schedule());
    first.on_tick(T, &mut a);
    // The answer never comes. Past the timeout the lock and the worker's
    // own fetch no longer count; the refetch interval still does.
    assert!(second.on_tick(T + LOCK, &mut b).is_empty());
    assert_eq!(started(&second.on_tick(T + LOCK + 1, &mut b)), vec![IDP]);
    assert!(
        first.on_tick(T + LOCK + 1, &mut a).is_empty(),
        "a's own attempt backs off"
    );
    assert!(
        first.may_refetch(IDP, T + REFETCH),
        "a's own fetch is overdue"
    );
}

#[test]
fn a_claim_that_loses_the_compare_and_swap_does_not_fetch() {
    let data = SharedData::default();
    let mut worker = Worker::on(&data);
    let mut refresh = schedule();
    refresh.prepare_shared(&mut worker);
    worker.lose_races = true;
    assert!(refresh.on_tick(T + 100, &mut worker).is_empty());
    assert_eq!(
        refresh.fetch_for_request(IDP, T + 100, &mut worker),
        Ok(RequestFetch::Busy)
    );
    assert!(worker.calls.is_empty());
}

#[test]
fn locks_get_a_version_at_configuration_and_keep_the_one_they_have() {
    let data = SharedData::default();
    let mut worker = Worker::on(&data);
    schedule().prepare_shared(&mut worker);
    assert_eq!(data.get(LOCK_ENTRY), Some(Vec::new()));
    assert_eq!(data.0.borrow().len(), 1, "only the remote provider's lock");

    data.set(LOCK_ENTRY, &T.to_le_bytes(), None).unwrap();
    schedule().prepare_shared(&mut worker);
    assert_eq!(data.get(LOCK_ENTRY), Some(T.to_le_bytes().to_vec()));
}

#[test]
fn without_shared_data_each_worker_fetches_for_itself() {
    let mut refresh = schedule();
    let mut worker = Worker {
        no_shared_data: true,
        ..Worker::default()
    };
    refresh.prepare_shared(&mut worker);
    assert_eq!(started(&refresh.on_tick(T, &mut worker)), vec![IDP]);
    assert_eq!(answer(&mut refresh, T, &mut worker), Ok(all_keys()));
    assert_eq!(worker.installed, vec![(IDP, all_keys())]);
}

// === adopting another worker's keys ===

#[test]
fn a_worker_adopts_newer_keys_another_worker_fetched() {
    let data = SharedData::default();
    let (mut a, mut b) = (Worker::on(&data), Worker::on(&data));
    let (mut first, mut second) = (schedule(), schedule());
    first.on_tick(T, &mut a);
    answer(&mut first, T, &mut a).unwrap();
    let mut published = T.to_le_bytes().to_vec();
    published.extend_from_slice(JWKS.as_bytes());
    assert_eq!(data.get(KEYS_ENTRY), Some(published));

    assert!(second.on_tick(T + 5, &mut b).is_empty());
    assert_eq!(b.installed, vec![(IDP, all_keys())]);
    // Adopted keys are as fresh as their fetch, not as their adoption.
    assert!(second.on_tick(T + CACHE - 1, &mut b).is_empty());
    assert_eq!(b.installed.len(), 1, "the same keys are not taken twice");
}

#[test]
fn adopted_keys_that_are_already_stale_are_fetched_anew() {
    let data = SharedData::default();
    let (mut a, mut b) = (Worker::on(&data), Worker::on(&data));
    let (mut first, mut second) = (schedule(), schedule());
    first.on_tick(T, &mut a);
    answer(&mut first, T, &mut a).unwrap();

    assert_eq!(started(&second.on_tick(T + CACHE, &mut b)), vec![IDP]);
    assert_eq!(b.installed, vec![(IDP, all_keys())], "used meanwhile");
}

#[test]
fn shared_keys_no_newer_than_the_workers_own_are_not_taken() {
    let data = SharedData::default();
    let mut worker = Worker::on(&data);
    let mut refresh = schedule();
    refresh.on_tick(T, &mut worker);
    answer(&mut refresh, T, &mut worker).unwrap();
    // A slower worker publishes what it fetched earlier.
    let mut older = (T - 1).to_le_bytes().to_vec();
    older.extend_from_slice(JWKS.as_bytes());
    data.set(KEYS_ENTRY, &older, None).unwrap();
    data.set(LOCK_ENTRY, &(T + CACHE).to_le_bytes(), None)
        .unwrap();

    assert!(refresh.on_tick(T + CACHE, &mut worker).is_empty(), "locked");
    assert_eq!(worker.installed.len(), 1);
}

#[test]
fn shared_keys_that_do_not_parse_are_not_taken() {
    let data = SharedData::default();
    let mut worker = Worker::on(&data);
    let mut refresh = schedule();
    let mut garbage = T.to_le_bytes().to_vec();
    garbage.extend_from_slice(b"not json");
    data.set(KEYS_ENTRY, &garbage, None).unwrap();
    data.set(LOCK_ENTRY, b"short", None).unwrap();

    assert_eq!(
        refresh.fetch_for_request(IDP, T, &mut worker),
        Ok(RequestFetch::Started(1)),
        "a lock without a time does not count either"
    );
    assert!(worker.installed.is_empty());
}

#[test]
fn a_request_takes_newer_shared_keys_instead_of_fetching() {
    let data = SharedData::default();
    let (mut a, mut b) = (Worker::on(&data), Worker::on(&data));
    let (mut first, mut second) = (schedule(), schedule());
    first.on_tick(T, &mut a);
    answer(&mut first, T, &mut a).unwrap();

    assert_eq!(
        second.fetch_for_request(IDP, T + 1, &mut b),
        Ok(RequestFetch::Adopted)
    );
    assert_eq!(b.installed, vec![(IDP, all_keys())]);
    assert!(b.calls.is_empty());
}

// === failures and backoff ===

#[test]
fn a_failed_fetch_keeps_the_keys_and_backs_off() {
    let data = SharedData::default();
    let mut worker = Worker::on(&data);
    let mut refresh = schedule();
    refresh.on_tick(T, &mut worker);
    assert_eq!(
        refresh.receive(
            IDP,
            Some("503"),
            Some(b"down".as_slice()),
            T + 1,
            &mut worker
        ),
        Err(FetchError::Status(Some("503".into())))
    );
    assert!(worker.installed.is_empty());
    assert_eq!(data.get(LOCK_ENTRY), Some(Vec::new()), "lock released");
    assert_eq!(data.get(KEYS_ENTRY), None, "nothing shared");

    for now in [T + 1, T + REFETCH - 1] {
        assert!(refresh.on_tick(now, &mut worker).is_empty(), "at {now}");
        assert!(!refresh.may_refetch(IDP, now), "at {now}");
    }
    assert_eq!(
        started(&refresh.on_tick(T + REFETCH, &mut worker)),
        vec![IDP]
    );
}

#[test]
fn a_body_that_is_not_a_jwks_keeps_the_keys_and_is_not_shared() {
    let data = SharedData::default();
    let mut worker = Worker::on(&data);
    let mut refresh = schedule();
    refresh.on_tick(T, &mut worker);
    let err = refresh
        .receive(IDP, Some("200"), Some(b"<html>".as_slice()), T, &mut worker)
        .unwrap_err();
    assert!(matches!(err, FetchError::Jwks(_)), "{err:?}");
    assert!(
        err.to_string().starts_with("jwks is not a JSON object"),
        "{err}"
    );
    assert!(worker.installed.is_empty());
    assert_eq!(data.get(KEYS_ENTRY), None);
    assert!(
        refresh.on_tick(T + 1, &mut worker).is_empty(),
        "backing off"
    );
}

#[test]
fn failures_name_the_status_they_got() {
    let mut refresh = schedule();
    let mut worker = Worker::default();
    fn status(
        refresh: &mut JwksRefresh,
        worker: &mut Worker,
        status: Option<&str>,
        body: Option<&[u8]>,
    ) -> String {
        refresh
            .receive(IDP, status, body, T, worker)
            .unwrap_err()
            .to_string()
    }
    assert_eq!(
        status(&mut refresh, &mut worker, Some("404"), Some(b"".as_slice())),
        "status 404"
    );
    assert_eq!(status(&mut refresh, &mut worker, None, None), "status none");
    assert_eq!(
        status(&mut refresh, &mut worker, Some("200"), None),
        "status 200",
        "a 200 without a body"
    );
}

#[test]
fn a_call_envoy_refuses_counts_as_an_attempt() {
    let mut refresh = schedule();
    let mut worker = Worker {
        refuse_calls: true,
        ..Worker::default()
    };
    let fetches = refresh.on_tick(T, &mut worker);
    assert_eq!(fetches, vec![(IDP, Err(Refused))]);
    assert!(!refresh.may_refetch(IDP, T + REFETCH - 1));
    assert!(refresh.on_tick(T + REFETCH - 1, &mut worker).is_empty());
    assert!(refresh.may_refetch(IDP, T + REFETCH));
    assert_eq!(
        refresh.fetch_for_request(IDP, T + REFETCH, &mut worker),
        Err(Refused)
    );
}

// === refetches for unknown kids ===

#[test]
fn unknown_kids_cause_at_most_one_fetch_per_refetch_interval() {
    let mut refresh = schedule();
    let mut worker = Worker::default();
    refresh.on_tick(T, &mut worker);
    answer(&mut refresh, T, &mut worker).unwrap();
    assert!(
        !refresh.may_refetch(IDP, T + REFETCH - 1),
        "the tick's fetch counts"
    );

    let now = T + REFETCH;
    assert!(refresh.may_refetch(IDP, now));
    assert_eq!(
        refresh.fetch_for_request(IDP, now, &mut worker),
        Ok(RequestFetch::Started(2))
    );
    // A flood of forged kids meanwhile: no second fetch.
    assert!(!refresh.may_refetch(IDP, now));
    answer(&mut refresh, now + 1, &mut worker).unwrap();
    assert!(!refresh.may_refetch(IDP, now + REFETCH - 1));
    assert!(refresh.may_refetch(IDP, now + REFETCH));
    assert_eq!(worker.calls.len(), 2);
}

#[test]
fn a_request_fetch_brings_keys_every_worker_then_uses() {
    let data = SharedData::default();
    let (mut a, mut b) = (Worker::on(&data), Worker::on(&data));
    let (mut first, mut second) = (schedule(), schedule());
    assert_eq!(
        first.fetch_for_request(IDP, T, &mut a),
        Ok(RequestFetch::Started(1))
    );
    answer(&mut first, T, &mut a).unwrap();
    assert_eq!(a.installed, vec![(IDP, all_keys())]);
    assert!(second.on_tick(T + 1, &mut b).is_empty());
    assert_eq!(b.installed, vec![(IDP, all_keys())]);
}
