//! What a refresh at the IdP means for the session, and how long one
//! refresh's outcome is shared. What follows an outcome is
//! [`crate::session::after_refresh`].

use std::time::Duration;

use crate::session::{RefreshOutcome, Session};

use super::access::IDLE_WRITE_SECS;

/// How long a refresh's outcome is reused for requests that carry the same
/// (old) refresh token: parallel requests of one page, and those that left
/// the browser before the new cookie came back, share one IdP call instead
/// of spending the refresh token again (rotating IdPs revoke a token spent
/// twice). Also the back-off after the IdP did not answer.
pub const REFRESH_REUSE: Duration = Duration::from_secs(15);

/// A refresh still not done after this long was abandoned (every request
/// waiting for it went away); longer than the HTTP client's timeout.
pub const ABANDONED_FLIGHT: Duration = Duration::from_secs(60);

/// Whether a refresh started `age` ago (`done` when its outcome is in) is
/// still shared: a done one for [`REFRESH_REUSE`], a running one until
/// [`ABANDONED_FLIGHT`].
#[must_use]
pub fn flight_is_kept(age: Duration, done: bool) -> bool {
    age < REFRESH_REUSE || (!done && age < ABANDONED_FLIGHT)
}

/// What the token endpoint answered to a token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAnswer<T> {
    /// New tokens.
    Tokens(T),
    /// The IdP answered with an OAuth error (`invalid_grant`: spent,
    /// revoked or expired).
    Refused,
    /// No answer: not discovered, no token endpoint, down, timed out, or an
    /// answer that is not OAuth.
    Unreachable,
}

/// The tokens of a successful refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshedTokens {
    /// The new access token.
    pub access_token: String,
    /// `expires_in` of the access token (seconds), if the IdP said.
    pub expires_in: Option<u64>,
    /// A new refresh token (a rotating IdP), or `None` to keep the old one.
    pub refresh_token: Option<String>,
}

/// What `answer`, to a refresh of `session` at `now`, comes to. A session
/// without a refresh token cannot refresh: refused, whatever the answer.
/// Refreshed, the session gets the new tokens and its idle clock is set
/// back by [`IDLE_WRITE_SECS`] so the answer carries the new cookie
/// ([`super::access::touch`] rewrites it).
#[must_use]
pub fn refresh_outcome(
    mut session: Session,
    answer: TokenAnswer<RefreshedTokens>,
    now: u64,
) -> RefreshOutcome {
    if session.refresh_token.is_none() {
        return RefreshOutcome::Refused;
    }
    match answer {
        TokenAnswer::Tokens(tokens) => {
            session.access_token = tokens.access_token;
            session.access_expires_at = tokens.expires_in.map(|d| now.saturating_add(d));
            if let Some(r) = tokens.refresh_token {
                session.refresh_token = Some(r);
            }
            session.seen_at = now.saturating_sub(IDLE_WRITE_SECS);
            RefreshOutcome::Refreshed(session)
        }
        TokenAnswer::Refused => RefreshOutcome::Refused,
        TokenAnswer::Unreachable => RefreshOutcome::Unreachable,
    }
}

#[cfg(test)]
mod tests;
