//! The SSO fast path at run time: tickets set after a full check, the
//! revocations a logout records (here and, with Redis, for every replica),
//! and this filter's part of the feed. The rules are
//! `gatehouse_authz_core::oidc::fast`'s.

use std::collections::BTreeSet;

use super::*;
use gatehouse_authz_core::oidc::fast::{self as rules, Revocations};
use gatehouse_session_core::FilterFeed;

/// How many revocations one filter remembers (the oldest go beyond it).
const REVOCATIONS_KEPT: usize = 100_000;

impl OidcRuntime {
    fn with_revocations<T>(&self, f: impl FnOnce(&mut Revocations) -> T) -> T {
        let mut guard = self
            .shared
            .revocations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let revocations = guard.get_or_insert_with(|| {
            Revocations::new(self.filter.absolute_timeout_secs, REVOCATIONS_KEPT)
        });
        f(revocations)
    }

    /// Whether `session` itself was logged out here (a replayed cookie).
    /// Only the session's own handle counts: a back-channel logout by
    /// subject ends the sessions of that moment, not a later login (whose
    /// tickets merely take the full check until the entry leaves the feed).
    pub(super) fn is_revoked(&self, session: &Session, now: u64) -> bool {
        let handle = rules::session_handle(&self.ticket_purpose, session);
        self.with_revocations(|r| r.any_revoked(std::slice::from_ref(&handle), now))
    }

    /// Ends `handles` here and, with the store, for every replica's feed.
    pub(super) async fn revoke(&self, handles: Vec<String>, now: u64) {
        if let (Some(store), Some(fast)) = (&self.store, &self.filter.fast_path)
            && let Err(e) = store.revoke(&handles, now, fast.ticket_secs).await
        {
            tracing::warn!(error = %e, "session store unreachable while recording a revocation");
        }
        self.with_revocations(|r| {
            for h in handles {
                r.revoke(h, now);
            }
        });
    }

    /// The `Set-Cookie` of a ticket for an allowed full check, with the
    /// fast path on.
    pub(super) fn ticket_cookie(
        &self,
        session: &Session,
        verdict: &Verdict,
        now: u64,
    ) -> Option<String> {
        let fast = self.filter.fast_path.as_ref()?;
        let ticket = rules::ticket(
            &self.filter,
            fast,
            &self.ticket_purpose,
            session,
            verdict,
            now,
        )?;
        let key = self.keys.ticket_key(&self.ticket_purpose, now)?;
        let text = ticket.issue(&key);
        if text.len() > gatehouse_session_core::ticket::MAX_TICKET_LEN {
            // Forwarded tokens too large for a cookie: this session stays
            // on the full check.
            return None;
        }
        Some(rules::ticket_cookie(
            &self.filter,
            fast,
            &text,
            ticket.expires_at,
            now,
        ))
    }

    /// This filter's part of the feed: the keys, and the revocations its
    /// tickets could still outlive. `None` without the fast path.
    ///
    /// # Errors
    /// The store's, when it is down: no feed rather than one missing
    /// revocations (the filter then sends everything the slow way).
    pub async fn feed_part(&self, now: u64) -> Option<Result<FilterFeed, StoreDown>> {
        let fast = self.filter.fast_path.as_ref()?;
        let keys = self.keys.ticket_keys(&self.ticket_purpose, now)?;
        let mut revoked: BTreeSet<String> =
            self.with_revocations(|r| r.recent(now, fast.ticket_secs));
        if let Some(store) = &self.store {
            match store
                .revoked_since(now.saturating_sub(fast.ticket_secs))
                .await
            {
                Ok(more) => revoked.extend(more),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(FilterFeed::new(&keys, revoked)))
    }
}
