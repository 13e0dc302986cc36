//! A request on an ordinary path: with a session it passes (after a refresh
//! if due, if the groups fit), without one it passes anonymously (public
//! paths), gets 401 (programs) or goes to sign in (browsers).

use crate::check::Verdict;
use crate::config::OidcFilter;
use crate::identity::{BearerRefusal, IdentityHeaders, identity_headers};
use crate::session::{Lifetimes, LoginFlow, Session, SessionState};
use crate::web::{cookies_without, safe_return_path};

use super::{HttpView, login_cookie_name};

/// How often, at most, the idle clock of a session is written back
/// (seconds): not on every request.
pub const IDLE_WRITE_SECS: u64 = 60;

/// The session lifetimes the filter configures.
#[must_use]
pub fn lifetimes(filter: &OidcFilter) -> Lifetimes {
    Lifetimes {
        idle_secs: filter.idle_timeout_secs,
        absolute_secs: filter.absolute_timeout_secs,
        refresh_margin_secs: filter.refresh_margin_secs,
    }
}

/// What a request's opened session (if any) calls for at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStep {
    /// A valid session: go on with it.
    Use(Session),
    /// Valid, but its access token is expiring: refresh it first, then
    /// [`crate::session::after_refresh`] says what follows.
    Refresh(Session),
    /// No session, or one that is over (idle, absolute, expired without a
    /// refresh token): as if there were none, see [`without_session`].
    None,
}

/// What `session` (the cookie's, opened; `None` when absent, forged, sealed
/// for something else or gone from the store) calls for at `now`.
#[must_use]
pub fn session_step(filter: &OidcFilter, session: Option<Session>, now: u64) -> SessionStep {
    match session.map(|s| (s.state(now, lifetimes(filter)), s)) {
        Some((SessionState::Valid, s)) => SessionStep::Use(s),
        Some((SessionState::Refresh, s)) => SessionStep::Refresh(s),
        Some((SessionState::Expired, _)) | None => SessionStep::None,
    }
}

/// What a request without a usable session gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoSession {
    /// This answer: a public path goes on anonymously (the identity
    /// headers removed, so a client cannot claim one), a program gets 401.
    Answer(Verdict),
    /// A browser on a protected path: start a login at the IdP.
    SignIn,
}

/// What `request`, with no usable session, gets.
#[must_use]
pub fn without_session(filter: &OidcFilter, request: &HttpView<'_>) -> NoSession {
    if filter.is_public(request.path) {
        return NoSession::Answer(Verdict::Allow {
            set: Vec::new(),
            remove: vec![
                filter.user_header.clone(),
                filter.email_header.clone(),
                filter.groups_header.clone(),
            ],
            remove_query: Vec::new(),
        });
    }
    if request.is_api_client() {
        return NoSession::Answer(Verdict::deny(
            401,
            "login_required",
            "sign in first: no valid session",
        ));
    }
    if let Some(instead) = request.instead_of_redirect
        && instead.applies(request.headers)
    {
        return NoSession::Answer(Verdict::deny(
            instead.status,
            "login_required",
            "sign in first: no valid session",
        ));
    }
    NoSession::SignIn
}

/// The secrets of one login, each fresh from the OS random source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSecrets {
    /// `state`, base64url.
    pub state: String,
    /// `nonce`, base64url.
    pub nonce: String,
    /// The PKCE verifier, base64url.
    pub pkce_verifier: String,
}

/// The login flow a browser starts at `now` on `target` (its `:path`),
/// sealed in the login cookie until the callback. It returns only to a
/// path on this host ([`safe_return_path`]).
#[must_use]
pub fn start_login(secrets: LoginSecrets, target: &str, now: u64) -> LoginFlow {
    LoginFlow {
        state: secrets.state,
        nonce: secrets.nonce,
        pkce_verifier: secrets.pkce_verifier,
        return_to: safe_return_path(target),
        started_at: now,
    }
}

/// The scopes asked for besides `openid` (which the authorization request
/// always carries).
pub fn extra_scopes(filter: &OidcFilter) -> impl Iterator<Item = &str> {
    filter
        .scopes
        .iter()
        .map(String::as_str)
        .filter(|s| *s != "openid")
}

/// Whether a session may pass: with `required_groups`, it needs one of
/// them; else a 403.
///
/// # Errors
/// The 403 verdict.
pub fn admit(filter: &OidcFilter, session: &Session) -> Result<(), Verdict> {
    if !filter.required_groups.is_empty()
        && !session
            .groups
            .iter()
            .any(|g| filter.required_groups.contains(g))
    {
        return Err(Verdict::deny(
            403,
            "forbidden",
            "your account lacks a required group",
        ));
    }
    Ok(())
}

/// Moves the idle clock of `session` to `now` when it was last written at
/// least [`IDLE_WRITE_SECS`] ago; `true` when the session must be written
/// back (a refresh set `seen_at` back to force it).
pub fn touch(session: &mut Session, now: u64) -> bool {
    if session.seen_at.saturating_add(IDLE_WRITE_SECS) <= now {
        session.seen_at = now;
        return true;
    }
    false
}

/// How long the session store keeps `session` from `now` (seconds): until
/// its absolute timeout.
#[must_use]
pub fn stored_ttl(filter: &OidcFilter, session: &Session, now: u64) -> u64 {
    session
        .created_at
        .saturating_add(filter.absolute_timeout_secs)
        .saturating_sub(now)
}

/// What a signed-in request carries upstream: the identity headers (client
/// copies replaced or removed), the tokens when the filter forwards them,
/// and the cookies minus ours (the session and login cookies stay at the
/// edge).
#[must_use]
pub fn allow(filter: &OidcFilter, session: &Session, cookie_header: Option<&str>) -> Verdict {
    let identity = identity_headers(
        filter,
        &session.sub,
        session.email.as_deref(),
        &session.groups,
    );
    let (mut set, mut remove) = (identity.set, identity.remove);
    if filter.forward_id_token {
        set.push((
            "authorization".to_owned(),
            format!("Bearer {}", session.id_token),
        ));
    }
    if filter.forward_access_token {
        set.push((
            "authorization".to_owned(),
            format!("Bearer {}", session.access_token),
        ));
    }
    let login = login_cookie_name(filter);
    match cookie_header.and_then(|h| cookies_without(h, |n| n == filter.cookie_name || n == login))
    {
        Some(rest) => set.push(("cookie".to_owned(), rest)),
        None => remove.push("cookie".to_owned()),
    }
    Verdict::Allow {
        set,
        remove,
        remove_query: Vec::new(),
    }
}

/// A machine client's bearer token that verified and met the filter's
/// requirements: it passes with its identity (client copies replaced or
/// removed), without a session.
#[must_use]
pub fn bearer_allowed(identity: IdentityHeaders) -> Verdict {
    Verdict::Allow {
        set: identity.set,
        remove: identity.remove,
        remove_query: Vec::new(),
    }
}

/// A bearer token that verified but is refused: a token that never
/// expires is as good as no token (401 `invalid_token`, RFC 6750), a
/// missing claim or group is 403. Never a login page.
#[must_use]
pub fn bearer_refused(refusal: BearerRefusal) -> Verdict {
    if refusal.status() == 401 {
        return super::invalid_token();
    }
    Verdict::deny(refusal.status(), "forbidden", &refusal.to_string())
}

#[cfg(test)]
mod tests;
