//! A request on an ordinary path: with a session it passes (after a refresh
//! if due, if the groups fit), without one it passes anonymously (public
//! paths), gets 401 (programs) or goes to sign in (browsers).

use std::cell::OnceCell;
use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_template_core::Field;
use serde_json::Value;

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
/// the `inject_request_headers` templates over the session's tokens and
/// the request's `headers` (a template naming what the tokens lack sets no
/// header, and the client's copy is removed), and the cookies minus ours
/// (the session and login cookies stay at the edge).
#[must_use]
pub fn allow(
    filter: &OidcFilter,
    session: &Session,
    headers: &HashMap<String, String>,
    cookie_header: Option<&str>,
) -> Verdict {
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
        // RFC 6750 §2.1: a bearer token is a b64token. Ambassador refuses
        // to send another unless told to (`allowMalformedAccessToken`);
        // what no header may carry is never sent.
        let b64token = is_b64token(&session.access_token);
        let header_safe = !session.access_token.is_empty()
            && !session
                .access_token
                .bytes()
                .any(|b| b.is_ascii_control() || !b.is_ascii());
        if !header_safe || (!b64token && !filter.allow_malformed_access_token) {
            return Verdict::deny(
                502,
                "malformed_access_token",
                "the identity provider's access token cannot be sent as a bearer token",
            );
        }
        set.push((
            "authorization".to_owned(),
            format!("Bearer {}", session.access_token),
        ));
    }
    let tokens = SessionTokens {
        session,
        headers,
        segments: Default::default(),
    };
    for (name, template) in &filter.inject_request_headers {
        match template.render(&|f| tokens.field(f)) {
            Some(value) => set.push((name.clone(), value)),
            None => remove.push(name.clone()),
        }
    }
    let login = login_cookie_name(filter);
    let ticket = filter.fast_path.as_ref().map(|f| f.ticket_cookie.as_str());
    // Our cookies stay at the edge: the session, the login and the ticket.
    let ours = |n: &str| n == filter.cookie_name || n == login || Some(n) == ticket;
    match cookie_header.and_then(|h| cookies_without(h, ours)) {
        Some(rest) => set.push(("cookie".to_owned(), rest)),
        None => remove.push("cookie".to_owned()),
    }
    Verdict::Allow {
        set,
        remove,
        remove_query: Vec::new(),
    }
}

/// Whether `token` is an RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" /
/// "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// A JSON segment of a compact JWT (`index` 0: the header, 1: the claims);
/// `None` for an opaque token.
fn jwt_segment(token: &str, index: usize) -> Option<serde_json::Map<String, Value>> {
    let segments: Vec<&str> = token.split('.').collect();
    if segments.len() != 3 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(segments[index]).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The session's tokens for the templates of one request: each JSON
/// segment decoded once, when a template first asks for it.
struct SessionTokens<'a> {
    session: &'a Session,
    headers: &'a HashMap<String, String>,
    /// Access token header and claims, ID token header and claims.
    segments: [OnceCell<Option<serde_json::Map<String, Value>>>; 4],
}

impl SessionTokens<'_> {
    /// A template field of an OAuth2 session: the access token's and the ID
    /// token's parts (both came from the IdP itself, the ID token verified
    /// at the callback, so they are only decoded here; an opaque access
    /// token has no header, claims or signature), or a request header
    /// (empty when absent).
    fn field(&self, field: &Field) -> Option<Value> {
        let (access, id) = (
            self.session.access_token.as_str(),
            self.session.id_token.as_str(),
        );
        let lookup = |slot: usize, token: &str, index: usize, path: &[String]| {
            let map = self.segments[slot]
                .get_or_init(|| jwt_segment(token, index))
                .as_ref()?;
            let (first, rest) = path.split_first()?;
            rest.iter()
                .try_fold(map.get(first)?, |v, k| v.get(k))
                .cloned()
        };
        let signature = |token: &str| {
            let segments: Vec<&str> = token.split('.').collect();
            (segments.len() == 3).then(|| Value::from(segments[2]))
        };
        match field {
            Field::TokenRaw => Some(Value::from(access)),
            Field::TokenSignature => signature(access),
            Field::TokenHeader(p) => lookup(0, access, 0, p),
            Field::Claim(p) => lookup(1, access, 1, p),
            Field::IdTokenRaw => Some(Value::from(id)),
            Field::IdTokenSignature => signature(id),
            Field::IdTokenHeader(p) => lookup(2, id, 0, p),
            Field::IdTokenClaim(p) => lookup(3, id, 1, p),
            Field::RequestHeader(name) => Some(Value::from(
                self.headers
                    .get(name)
                    .map(String::as_str)
                    .unwrap_or_default(),
            )),
            _ => None,
        }
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
