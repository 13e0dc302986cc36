//! Sealed cookies: sessions and login flows, encrypted and authenticated
//! with AES-256-GCM under a key ring (seal with the newest key, open with
//! any), so keys rotate without logging anyone out.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gatehouse_session_core::TicketKey;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// Sealing keys, newest first. `Debug` shows only how many.
#[derive(Clone)]
pub struct SessionKeys {
    keys: Vec<Aes256Gcm>,
    /// The newest key's bytes: what the fast path's ticket keys are
    /// derived from (never used as a ticket key itself).
    newest: Option<[u8; 32]>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Why a sealed value was refused. Deliberately coarse: which check failed
/// is nobody's business outside the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not base64url, too short, no key opens it, or not the expected shape.
    #[error("the sealed value does not open")]
    Invalid,
    /// Sealing failed (no key, or the value does not serialize): nothing
    /// is sealed, never an empty or half-made value.
    #[error("the value cannot be sealed")]
    Seal,
}

/// Version byte in front of every sealed value, so the format can change.
const VERSION: u8 = 1;

impl SessionKeys {
    /// Reads a key file: one key a line, newest first, each 32 random bytes
    /// in base64 (standard or url-safe; `openssl rand -base64 32` makes
    /// one). Blank lines and `#` comments are skipped.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and line: no keys, or a line that is
    /// not 32 bytes of base64. The key itself is never in the message.
    pub fn from_key_file(text: &str, file: &str) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        let mut newest = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = STANDARD
                .decode(line)
                .or_else(|_| URL_SAFE_NO_PAD.decode(line.trim_end_matches('=')))
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    ConfigError::new(
                        file,
                        format!("line {}", i + 1),
                        "not a session key: write 32 random bytes in base64 (openssl rand -base64 32)",
                    )
                })?;
            keys.push(Self::cipher(&bytes)?);
            if newest.is_none() {
                newest = <[u8; 32]>::try_from(bytes.as_slice()).ok();
            }
        }
        if keys.is_empty() {
            return Err(ConfigError::new(
                file,
                ".",
                "no session key: add one line of openssl rand -base64 32",
            ));
        }
        Ok(Self { keys, newest })
    }

    fn cipher(bytes: &[u8]) -> Result<Aes256Gcm, ConfigError> {
        Aes256Gcm::new_from_slice(bytes)
            .map_err(|_| ConfigError::new("session key", ".", "a session key is 32 bytes"))
    }

    /// Keys from raw 32-byte values, newest first (tests, generated keys).
    #[must_use]
    pub fn from_raw(keys: &[[u8; 32]]) -> Self {
        Self {
            keys: keys.iter().map(|k| Aes256Gcm::new(&(*k).into())).collect(),
            newest: keys.first().copied(),
        }
    }

    /// The fast path's ticket keys around `now` for `purpose` (previous,
    /// current, next epoch), derived from the newest session key: a new
    /// session key changes them all. `None` without a key.
    #[must_use]
    pub fn ticket_keys(&self, purpose: &str, now: u64) -> Option<[TicketKey; 3]> {
        self.newest
            .map(|master| TicketKey::around(&master, purpose, now))
    }

    /// The ticket key that signs new tickets at `now`: the middle one of
    /// [`SessionKeys::ticket_keys`], derived alone.
    #[must_use]
    pub fn ticket_key(&self, purpose: &str, now: u64) -> Option<TicketKey> {
        self.newest
            .map(|master| TicketKey::current(&master, purpose, now))
    }

    /// Seals `value` for `purpose` (the associated data: a value sealed for
    /// one purpose does not open for another; see
    /// [`crate::OidcFilter::seal_purpose`]) with the newest key. `nonce`
    /// must be fresh random bytes for every call: the caller gets them from
    /// the OS and refuses to seal when it cannot (never a fixed nonce).
    ///
    /// # Errors
    /// [`SealError::Seal`] when there is no key or the value does not
    /// serialize.
    pub fn seal<T: Serialize>(
        &self,
        purpose: &str,
        value: &T,
        nonce: [u8; 12],
    ) -> Result<String, SealError> {
        let plain = serde_json::to_vec(value).map_err(|_| SealError::Seal)?;
        let key = self.keys.first().ok_or(SealError::Seal)?;
        let sealed = key
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(1 + 12 + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a value [`SessionKeys::seal`] made for `purpose`, with any key.
    ///
    /// # Errors
    /// [`SealError::Invalid`] for anything that is not such a value.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Result<T, SealError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SealError::Invalid)?;
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Err(SealError::Invalid);
        };
        if rest.len() < 12 + 16 {
            return Err(SealError::Invalid);
        }
        let (nonce, body) = rest.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| SealError::Invalid)?;
        let plain = self
            .keys
            .iter()
            .find_map(|k| {
                k.decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: body,
                        aad: purpose.as_bytes(),
                    },
                )
                .ok()
            })
            .ok_or(SealError::Invalid)?;
        serde_json::from_slice(&plain).map_err(|_| SealError::Invalid)
    }
}

/// A signed-in browser's session, as sealed in its cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The ID token's `sub`.
    pub sub: String,
    /// `email`, when the IdP gave one.
    #[serde(default)]
    pub email: Option<String>,
    /// `groups`, when the IdP gave them.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The ID token, for `id_token_hint` at logout.
    pub id_token: String,
    /// The access token.
    pub access_token: String,
    /// Unix seconds the access token expires at, if the IdP said.
    #[serde(default)]
    pub access_expires_at: Option<u64>,
    /// The refresh token, if the IdP gave one.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The IdP's session id (`sid` of the ID token), for back-channel logout.
    #[serde(default)]
    pub sid: Option<String>,
    /// Unix seconds of the login.
    pub created_at: u64,
    /// Unix seconds of the last request (idle timeout).
    pub seen_at: u64,
}

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// A session unused this long ends (seconds).
    pub idle_secs: u64,
    /// A session this old ends, used or not (seconds).
    pub absolute_secs: u64,
    /// An access token this close to expiry is refreshed (seconds).
    pub refresh_margin_secs: u64,
}

/// What a session is worth at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Good as it is.
    Valid,
    /// Good, but the access token is expiring: refresh it (or, without a
    /// refresh token, log in again once it has expired).
    Refresh,
    /// Over: idle or absolute timeout, or an expired access token with no
    /// way to refresh it.
    Expired,
}

impl Session {
    /// The session's state at `now` (Unix seconds).
    #[must_use]
    pub fn state(&self, now: u64, lifetimes: Lifetimes) -> SessionState {
        if now >= self.created_at.saturating_add(lifetimes.absolute_secs)
            || now >= self.seen_at.saturating_add(lifetimes.idle_secs)
        {
            return SessionState::Expired;
        }
        match self.access_expires_at {
            Some(exp) if now.saturating_add(lifetimes.refresh_margin_secs) >= exp => {
                if self.refresh_token.is_some() {
                    SessionState::Refresh
                } else if now >= exp {
                    SessionState::Expired
                } else {
                    SessionState::Valid
                }
            }
            _ => SessionState::Valid,
        }
    }
}

/// A login in progress, sealed in a short-lived cookie of the browser that
/// started it: the callback must come back to the same browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFlow {
    /// The `state` sent to the IdP.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
    /// Where to go after login: a path (and query) on this host.
    pub return_to: String,
    /// Unix seconds the login started.
    pub started_at: u64,
}

/// Purpose (AAD) of sessions sealed into the Redis store: a stored
/// session does not open as a cookie, nor a cookie as a stored session.
pub const STORED_SESSION_PURPOSE: &str = "gatehouse-stored-session";

/// What the cookie holds when sessions live in Redis: the key, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    /// Random id, hex.
    pub id: String,
}

/// How long a login may take, from redirect to callback.
pub const LOGIN_FLOW_SECS: u64 = 600;

/// The key a login's `state` is remembered under once its callback came:
/// hex SHA-256, so the set (or Redis) never holds a live `state`.
#[must_use]
pub fn state_key(state: &str) -> String {
    crate::apikeys::sha256_hex(state.as_bytes())
}

/// Whether a callback's `state` is used for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateUse {
    /// First use: go on to the IdP.
    First,
    /// Used before: refuse before any IdP call (a replay).
    Replayed,
}

/// The login `state`s whose callbacks came, each remembered until its login
/// flow expires (after that its cookie does not open anyway). Bounded: at
/// most `capacity` entries; when full, the oldest is forgotten. That lets
/// its replay through only after `capacity` newer logins, which costs an
/// attacker more than starting fresh logins would, while a flood of logins
/// never locks real users out. Time comes in as a parameter.
#[derive(Debug, Clone)]
pub struct UsedStates {
    until: std::collections::HashMap<String, u64>,
    /// Keys in the order they were remembered, with their expiry.
    order: std::collections::VecDeque<(String, u64)>,
    capacity: usize,
}

/// How many used states a filter remembers at most (about 150 bytes each).
pub const USED_STATES_CAPACITY: usize = 100_000;

impl UsedStates {
    /// An empty set holding at most `capacity` states (at least one).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            until: std::collections::HashMap::new(),
            order: std::collections::VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Marks `state` used, to be remembered until `until` (Unix seconds, the
    /// flow's expiry), and says whether this was its first use at `now`.
    pub fn first_use(&mut self, state: &str, until: u64, now: u64) -> StateUse {
        let key = state_key(state);
        if self.until.get(&key).is_some_and(|&u| now < u) {
            return StateUse::Replayed;
        }
        while let Some((_, u)) = self.order.front()
            && (*u <= now || self.order.len() >= self.capacity)
        {
            self.forget_oldest();
        }
        self.until.insert(key.clone(), until);
        self.order.push_back((key, until));
        StateUse::First
    }

    fn forget_oldest(&mut self) {
        if let Some((key, u)) = self.order.pop_front()
            && self.until.get(&key) == Some(&u)
        {
            self.until.remove(&key);
        }
    }

    /// How many states are remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.until.len()
    }

    /// Whether none is.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// What a refresh at the IdP came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// New tokens: the session with them.
    Refreshed(Session),
    /// The IdP answered and refused (`invalid_grant`: the refresh token is
    /// spent, revoked or expired).
    Refused,
    /// The IdP did not answer (down, timed out, not discovered yet).
    Unreachable,
}

/// What to do with a session after a refresh attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRefresh {
    /// Go on with this session (refreshed, or unchanged while still valid).
    Use(Session),
    /// The session is over: clear the cookie (and the stored session) and
    /// send the user to log in. Retrying a refused refresh token on every
    /// request would only hammer the IdP.
    End,
    /// No usable session now, but keep the cookie: the refresh token may
    /// still work once the IdP answers again.
    Login,
}

/// Decides what follows a refresh of `before` at `now`: a refused refresh
/// ends the session; an unreachable IdP keeps it while its access token is
/// still valid (the service backs off before asking again), else the user
/// logs in without losing the cookie.
#[must_use]
pub fn after_refresh(before: Session, outcome: RefreshOutcome, now: u64) -> AfterRefresh {
    match outcome {
        RefreshOutcome::Refreshed(s) => AfterRefresh::Use(s),
        RefreshOutcome::Refused => AfterRefresh::End,
        RefreshOutcome::Unreachable => match before.access_expires_at {
            Some(exp) if now >= exp => AfterRefresh::Login,
            _ => AfterRefresh::Use(before),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            sub: "alice".into(),
            email: Some("alice@example.test".into()),
            groups: vec!["staff".into()],
            id_token: "id".into(),
            access_token: "at".into(),
            access_expires_at: Some(1_000),
            refresh_token: Some("rt".into()),
            sid: None,
            created_at: 100,
            seen_at: 500,
        }
    }

    #[test]
    fn sealed_sessions_open_with_any_key_of_the_ring() {
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let sealed_with_old = SessionKeys::from_raw(&[old])
            .seal("s", &session(), [7; 12])
            .unwrap();
        let rotated = SessionKeys::from_raw(&[new, old]);
        assert_eq!(
            rotated.open::<Session>("s", &sealed_with_old),
            Ok(session())
        );
        let resealed = rotated.seal("s", &session(), [8; 12]).unwrap();
        assert_eq!(
            SessionKeys::from_raw(&[new]).open::<Session>("s", &resealed),
            Ok(session()),
            "sealed with the newest"
        );
        assert!(
            SessionKeys::from_raw(&[old])
                .open::<Session>("s", &resealed)
                .is_err()
        );
    }

    #[test]
    fn tampered_foreign_and_misplaced_values_do_not_open() {
        let keys = SessionKeys::from_raw(&[[1; 32]]);
        let sealed = keys.seal("s", &session(), [7; 12]).unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in [0, 1, 13, bytes.len() - 1] {
            bytes[i] ^= 1;
            let tampered = URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(
                keys.open::<Session>("s", &tampered),
                Err(SealError::Invalid),
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        assert!(
            SessionKeys::from_raw(&[[9; 32]])
                .open::<Session>("s", &sealed)
                .is_err()
        );
        assert!(
            keys.open::<Session>("flow", &sealed).is_err(),
            "another cookie's value"
        );
        for junk in ["", "AA", "not base64!", &"A".repeat(40)] {
            assert!(keys.open::<Session>("s", junk).is_err());
        }
    }

    #[test]
    fn sessions_expire_idle_absolute_and_ask_for_refresh() {
        let l = Lifetimes {
            idle_secs: 1_000,
            absolute_secs: 10_000,
            refresh_margin_secs: 60,
        };
        let s = session();
        assert_eq!(s.state(900, l), SessionState::Valid);
        assert_eq!(s.state(940, l), SessionState::Refresh, "within the margin");
        assert_eq!(s.state(1_499, l), SessionState::Refresh);
        assert_eq!(s.state(1_500, l), SessionState::Expired, "idle");
        let busy = Session {
            seen_at: 9_900,
            access_expires_at: None,
            ..s.clone()
        };
        assert_eq!(busy.state(10_099, l), SessionState::Valid);
        assert_eq!(busy.state(10_100, l), SessionState::Expired, "absolute");
        let no_refresh = Session {
            refresh_token: None,
            ..s
        };
        assert_eq!(no_refresh.state(950, l), SessionState::Valid);
        assert_eq!(no_refresh.state(1_000, l), SessionState::Expired);
    }

    #[test]
    fn a_state_is_used_once_and_remembered_until_its_flow_expires() {
        let mut used = UsedStates::new(2);
        assert_eq!(used.first_use("s1", 700, 100), StateUse::First);
        assert_eq!(used.first_use("s1", 700, 101), StateUse::Replayed);
        assert_eq!(used.first_use("s1", 700, 699), StateUse::Replayed);
        assert_eq!(used.first_use("s2", 710, 120), StateUse::First);
        assert_eq!(used.first_use("s2", 710, 130), StateUse::Replayed);
        assert_eq!(
            used.first_use("s1", 1_400, 700),
            StateUse::First,
            "after its flow expired, a state is nobody's"
        );
        assert_eq!(used.len(), 2, "s1 once, s2");
        assert!(
            !used
                .until
                .keys()
                .any(|k| k.contains("s1") || k.contains("s2")),
            "only hashes are kept"
        );
    }

    #[test]
    fn a_full_set_forgets_its_oldest_state_first() {
        let mut used = UsedStates::new(3);
        for (i, s) in ["a", "b", "c", "d"].iter().enumerate() {
            assert_eq!(used.first_use(s, 1_000, 100 + i as u64), StateUse::First);
        }
        assert_eq!(used.len(), 3, "bounded");
        for s in ["b", "c", "d"] {
            assert_eq!(used.first_use(s, 1_000, 200), StateUse::Replayed, "{s}");
        }
        assert_eq!(
            used.first_use("a", 1_000, 200),
            StateUse::First,
            "the oldest went"
        );
    }

    #[test]
    fn a_refused_refresh_ends_the_session_and_an_unreachable_idp_keeps_it_while_valid() {
        let s = session();
        let newer = Session {
            access_token: "at2".into(),
            ..s.clone()
        };
        assert_eq!(
            after_refresh(s.clone(), RefreshOutcome::Refreshed(newer.clone()), 950),
            AfterRefresh::Use(newer)
        );
        assert_eq!(
            after_refresh(s.clone(), RefreshOutcome::Refused, 950),
            AfterRefresh::End
        );
        assert_eq!(
            after_refresh(s.clone(), RefreshOutcome::Unreachable, 950),
            AfterRefresh::Use(s.clone()),
            "the access token is still good"
        );
        assert_eq!(
            after_refresh(s, RefreshOutcome::Unreachable, 1_000),
            AfterRefresh::Login
        );
    }

    #[test]
    fn key_files_take_base64_lines_and_name_bad_ones() {
        let good = format!(
            "# newest first\n{}\n\n{}\n",
            STANDARD.encode([1u8; 32]),
            URL_SAFE_NO_PAD.encode([2u8; 32])
        );
        assert_eq!(
            format!("{:?}", SessionKeys::from_key_file(&good, "k").unwrap()),
            "SessionKeys { keys: 2 }"
        );
        let err = SessionKeys::from_key_file("c2hvcnQ=\n", "keys")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("keys: line 1: not a session key"), "{err}");
        assert!(SessionKeys::from_key_file("# none\n", "keys").is_err());
    }
}
