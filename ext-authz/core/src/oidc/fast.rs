//! The SSO fast path, the authority's side: which ticket a full check
//! issues, how it is set and cleared, and which sessions are revoked.
//!
//! A ticket says exactly what the full check decided (the identity headers
//! set and removed, the `cookie` header aside, which the filter rewrites
//! per request) and names the session by handles a revocation can match:
//! the session itself, the IdP's session id, the subject. It lasts at most
//! `ticket_seconds`, and never past the moment the full check would do
//! something else (refresh the access token, end the session).

use std::collections::{BTreeSet, HashMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_session_core::Ticket;
use sha2::{Digest, Sha256};

use crate::check::Verdict;
use crate::config::{FastPath, OidcFilter};
use crate::session::Session;

use super::cookie_attributes;

/// A revocation handle: `<kind>:<hash>`, the same for the ticket and the
/// revocation, revealing nothing of the value.
fn handle(kind: char, value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    format!("{kind}:{}", URL_SAFE_NO_PAD.encode(&digest[..16]))
}

/// The handle of one session: its subject, login time and ID token (which
/// no other session shares), bound to the filter by `purpose`.
#[must_use]
pub fn session_handle(purpose: &str, session: &Session) -> String {
    handle(
        's',
        &format!(
            "{purpose}\0{}\0{}\0{}",
            session.sub, session.created_at, session.id_token
        ),
    )
}

/// The handle a back-channel logout by the IdP's session id revokes.
#[must_use]
pub fn idp_session_handle(sid: &str) -> String {
    handle('i', sid)
}

/// The handle a back-channel logout by subject revokes.
#[must_use]
pub fn subject_handle(sub: &str) -> String {
    handle('u', sub)
}

/// Every handle of `session`.
#[must_use]
pub fn handles(purpose: &str, session: &Session) -> Vec<String> {
    let mut out = vec![
        session_handle(purpose, session),
        subject_handle(&session.sub),
    ];
    out.extend(session.sid.as_deref().map(idp_session_handle));
    out
}

/// Until when a ticket made at `now` may last: `ticket_secs`, and never
/// past a refresh, the idle or the absolute end of the session.
#[must_use]
pub fn ticket_expiry(filter: &OidcFilter, fast: &FastPath, session: &Session, now: u64) -> u64 {
    let mut until = now.saturating_add(fast.ticket_secs);
    if let Some(at) = session.access_expires_at {
        until = until.min(at.saturating_sub(filter.refresh_margin_secs));
    }
    until = until.min(
        session
            .created_at
            .saturating_add(filter.absolute_timeout_secs),
    );
    until.min(session.seen_at.saturating_add(filter.idle_timeout_secs))
}

/// The ticket for an allowed full check of `session`, or `None` when the
/// verdict is not an allow or the ticket would be over at once.
#[must_use]
pub fn ticket(
    filter: &OidcFilter,
    fast: &FastPath,
    purpose: &str,
    session: &Session,
    verdict: &Verdict,
    now: u64,
) -> Option<Ticket> {
    let Verdict::Allow { set, remove, .. } = verdict else {
        return None;
    };
    let expires_at = ticket_expiry(filter, fast, session, now);
    if expires_at <= now {
        return None;
    }
    // The cookie header depends on the request: the filter rewrites it.
    let not_cookie = |name: &str| !name.eq_ignore_ascii_case("cookie");
    Some(Ticket {
        expires_at,
        handles: handles(purpose, session),
        set: set.iter().filter(|(n, _)| not_cookie(n)).cloned().collect(),
        remove: remove.iter().filter(|n| not_cookie(n)).cloned().collect(),
    })
}

/// The `Set-Cookie` for a ticket `text` that lasts until `expires_at`.
#[must_use]
pub fn ticket_cookie(
    filter: &OidcFilter,
    fast: &FastPath,
    text: &str,
    expires_at: u64,
    now: u64,
) -> String {
    cookie_attributes(filter).set_cookie(
        &fast.ticket_cookie,
        text,
        Some(expires_at.saturating_sub(now)),
    )
}

/// The `Set-Cookie`s that end a session in the browser: the session
/// cookie, and the ticket cookie with the fast path.
#[must_use]
pub fn clear_cookies(filter: &OidcFilter) -> Vec<String> {
    let attributes = cookie_attributes(filter);
    let mut out = vec![attributes.set_cookie(&filter.cookie_name, "", Some(0))];
    if let Some(fast) = &filter.fast_path {
        out.push(attributes.set_cookie(&fast.ticket_cookie, "", Some(0)));
    }
    out
}

/// Sessions ended here (logout, back-channel logout), by handle, with the
/// time each was revoked. The full check refuses a revoked session for as
/// long as it could otherwise live (`retain_secs`, the absolute timeout):
/// in cookie mode nothing else stops a replayed cookie. The feed carries
/// the revocations younger than the longest ticket.
#[derive(Debug, Clone)]
pub struct Revocations {
    at: HashMap<String, u64>,
    order: VecDeque<(u64, String)>,
    retain_secs: u64,
    capacity: usize,
}

impl Revocations {
    /// Revocations kept `retain_secs`, at most `capacity` (the oldest go
    /// first beyond it: documented, and far above a day of logouts).
    #[must_use]
    pub fn new(retain_secs: u64, capacity: usize) -> Self {
        Self {
            at: HashMap::new(),
            order: VecDeque::new(),
            retain_secs,
            capacity: capacity.max(1),
        }
    }

    /// Revokes `handle` at `now`.
    pub fn revoke(&mut self, handle: String, now: u64) {
        self.prune(now);
        if self.at.insert(handle.clone(), now).is_none() {
            self.order.push_back((now, handle));
        }
        while self.order.len() > self.capacity {
            if let Some((_, old)) = self.order.pop_front() {
                self.at.remove(&old);
            }
        }
    }

    /// Whether any of `handles` was revoked (and is still remembered).
    #[must_use]
    pub fn any_revoked(&self, handles: &[String], now: u64) -> bool {
        handles.iter().any(|h| {
            self.at
                .get(h)
                .is_some_and(|t| now.saturating_sub(*t) < self.retain_secs)
        })
    }

    /// Handles revoked within the last `window` seconds: what the feed
    /// carries.
    #[must_use]
    pub fn recent(&self, now: u64, window: u64) -> BTreeSet<String> {
        self.order
            .iter()
            .rev()
            .take_while(|(t, _)| now.saturating_sub(*t) <= window)
            .map(|(_, h)| h.clone())
            .collect()
    }

    fn prune(&mut self, now: u64) {
        while let Some((t, _)) = self.order.front() {
            if now.saturating_sub(*t) < self.retain_secs {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.at.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests;
