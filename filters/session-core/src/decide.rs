//! What the `gatehouse-session` filter does with one request: verify the
//! ticket cookie against the latest feed and, when it holds, set the
//! identity headers the full check would set and mark the request so that
//! ext_authz is skipped. Anything less sends the request the slow way.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;

use crate::feed::{FeedError, FilterFeed};
use crate::keys::KeyRing;
use crate::ticket::{Ticket, TicketError};
use gatehouse_http_core::cookie;

/// The filter's plugin configuration: one SSO filter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The SSO filter's name in gatehouse-authz: which part of the feed.
    pub filter: String,
    /// The cookie that carries the ticket.
    pub ticket_cookie: String,
    /// Cookies that never go upstream: the session, login and ticket
    /// cookies (the full check drops the same).
    pub strip_cookies: Vec<String>,
    /// The header a verified request is marked with. Envoy removes any
    /// client copy before the filters run, skips ext_authz for a request
    /// that carries ours, and removes it before the upstream.
    pub verified_header: String,
    /// Where the feed comes from.
    pub feed: FeedSource,
    /// Envoy removes every header a ticket may set or remove from the
    /// client's request before the filters run (the rendered listener's
    /// early header mutation): the ticket's removals are then already
    /// done, and each header set saves a host call.
    #[serde(default)]
    pub reserved_headers_stripped_by_envoy: bool,
    /// How often each worker polls the feed.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// A feed older than this is no longer trusted (revocations might be
    /// missing): every request goes the slow way until a poll succeeds.
    /// The bound on how long a revoked session can pass here.
    #[serde(default = "default_max_feed_age_ms")]
    pub max_feed_age_ms: u64,
}

fn default_poll_ms() -> u64 {
    2_000
}

fn default_max_feed_age_ms() -> u64 {
    10_000
}

/// The Envoy cluster and path of gatehouse-authz's feed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSource {
    /// The cluster (a Unix socket only Envoy and gatehouse-authz share).
    pub cluster: String,
    /// The request path.
    pub path: String,
    /// `:authority` of the request.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// How long a poll may take.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_authority() -> String {
    "gatehouse-authz".to_owned()
}

fn default_timeout_ms() -> u64 {
    1_000
}

impl FilterConfig {
    /// Parses the plugin configuration.
    ///
    /// # Errors
    /// What is wrong, with the field's path.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let config: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if config.ticket_cookie.is_empty() || config.verified_header.is_empty() {
            return Err("ticket_cookie and verified_header must not be empty".to_owned());
        }
        if config.poll_ms == 0 || config.max_feed_age_ms < config.poll_ms {
            return Err("poll_ms must be positive and at most max_feed_age_ms".to_owned());
        }
        Ok(config)
    }
}

/// Request headers to set and to remove.
type Writes = (Vec<(String, String)>, Vec<String>);

/// How many verified tickets one worker remembers. A browser sends the
/// same ticket for minutes: a repeat skips the MAC and the parsing.
pub const VERIFIED_CAPACITY: usize = 4096;

/// What one worker knows from the feed, and the tickets it verified.
#[derive(Debug, Clone, Default)]
pub struct FeedState {
    ring: KeyRing,
    revoked: BTreeSet<String>,
    /// When the last good feed arrived (ms); `None` before the first.
    fresh_at_ms: Option<u64>,
    /// Tickets verified with the current ring, by their MAC, with their
    /// whole text (a hit must be the very same ticket). Emptied when the
    /// ring changes: a retired key retires its tickets at once. Expiry and
    /// revocation are checked at every use.
    verified: HashMap<String, (String, Ticket)>,
}

impl FeedState {
    /// Takes this filter's part of a feed that arrived at `now_ms`. A feed
    /// without the filter is a good feed with no keys: nothing verifies.
    ///
    /// # Errors
    /// A bad key: the old state is kept (and ages out).
    pub fn accept(&mut self, part: Option<&FilterFeed>, now_ms: u64) -> Result<usize, FeedError> {
        let (ring, revoked) = match part {
            Some(p) => (p.ring()?, p.revoked.clone()),
            None => (KeyRing::default(), BTreeSet::new()),
        };
        let keys = ring.len();
        if ring != self.ring {
            self.verified.clear();
        }
        self.ring = ring;
        self.revoked = revoked;
        self.fresh_at_ms = Some(now_ms);
        Ok(keys)
    }

    /// What the ticket in `text` lets through at `now`: its headers to set
    /// and remove, if it verifies with the ring (from the verified tickets
    /// when this very text verified before), has not expired and names no
    /// revoked session.
    fn admit(&mut self, text: &str, now: u64) -> Result<Writes, Slow> {
        let mac = text.rsplit('.').next().unwrap_or_default();
        let hit = self
            .verified
            .get(mac)
            .is_some_and(|(known, _)| known == text);
        if !hit {
            let ticket = Ticket::verify(text, &self.ring, now).map_err(Slow::Refused)?;
            if self.verified.len() >= VERIFIED_CAPACITY {
                // Full: start over rather than track ages; the next
                // requests verify again.
                self.verified.clear();
            }
            self.verified
                .insert(mac.to_owned(), (text.to_owned(), ticket));
        }
        let Some((_, ticket)) = self.verified.get(mac) else {
            return Err(Slow::Refused(TicketError::Malformed));
        };
        if ticket.expires_at <= now {
            return Err(Slow::Refused(TicketError::Expired));
        }
        if ticket.handles.iter().any(|h| self.revoked.contains(h)) {
            return Err(Slow::Revoked);
        }
        Ok((ticket.set.clone(), ticket.remove.clone()))
    }

    /// Whether the feed is recent enough to trust at `now_ms`.
    #[must_use]
    pub fn is_fresh(&self, now_ms: u64, max_age_ms: u64) -> bool {
        self.fresh_at_ms
            .is_some_and(|t| now_ms.saturating_sub(t) <= max_age_ms)
    }
}

/// Why a request goes the slow way (counted by the filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slow {
    /// No feed yet, or too old to trust.
    NoFeed,
    /// No ticket cookie.
    NoTicket,
    /// More than one ticket cookie: which one the browser meant is unknown.
    TicketTwins,
    /// The ticket did not verify.
    Refused(TicketError),
    /// The ticket's session was ended.
    Revoked,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastPath {
    /// Verified: set and remove these request headers; ext_authz is skipped.
    Verified {
        /// Headers to set, replacing any copy (identity, the rewritten
        /// `cookie`, the verified mark).
        set: Vec<(String, String)>,
        /// Headers to remove.
        remove: Vec<String>,
    },
    /// Leave the request alone: ext_authz decides.
    Slow(Slow),
}

/// Decides one request from its `cookie` headers at `now` (seconds and ms).
#[must_use]
pub fn decide(
    config: &FilterConfig,
    state: &mut FeedState,
    cookies: &[&str],
    now_secs: u64,
    now_ms: u64,
) -> FastPath {
    if !state.is_fresh(now_ms, config.max_feed_age_ms) {
        return FastPath::Slow(Slow::NoFeed);
    }
    let mut tickets = cookies.iter().flat_map(|h| {
        h.split(';').filter_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == config.ticket_cookie).then_some(v)
        })
    });
    let Some(text) = tickets.next() else {
        return FastPath::Slow(Slow::NoTicket);
    };
    if tickets.next().is_some() {
        return FastPath::Slow(Slow::TicketTwins);
    }
    let (mut set, mut remove) = match state.admit(text, now_secs) {
        Ok(parts) => parts,
        Err(why) => return FastPath::Slow(why),
    };
    // What the full check would write, and never anything it would not:
    // the ticket cannot smuggle our own mark or a cookie in.
    set.retain(|(name, _)| !is_ours(config, name));
    if config.reserved_headers_stripped_by_envoy {
        remove.clear();
    } else {
        remove.retain(|name| !is_ours(config, name));
    }
    // One `cookie` header (the usual case) is read in place.
    let joined = match cookies {
        [one] => std::borrow::Cow::Borrowed(*one),
        many => std::borrow::Cow::Owned(many.join("; ")),
    };
    match cookie::without(&joined, |n| config.strip_cookies.iter().any(|s| s == n)) {
        Some(rest) => set.push(("cookie".to_owned(), rest)),
        None => remove.push("cookie".to_owned()),
    }
    set.push((config.verified_header.clone(), "1".to_owned()));
    FastPath::Verified { set, remove }
}

fn is_ours(config: &FilterConfig, name: &str) -> bool {
    name.eq_ignore_ascii_case("cookie") || name.eq_ignore_ascii_case(&config.verified_header)
}

#[cfg(test)]
mod tests;
