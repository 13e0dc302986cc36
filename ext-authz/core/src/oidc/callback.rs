//! The login callback: the browser comes back from the IdP with a `code`
//! and a `state`. The checks come in a fixed order, each refusing before
//! the next costs anything:
//!
//! 1. [`begin`]: a login of this browser is waiting (its sealed login
//!    cookie opened) and has not expired, and `state` is its state;
//! 2. [`PendingCallback::after_first_use`]: the state is used for the first
//!    time (the service records it, in Redis or in memory), and only then
//!    the IdP's `error` or `code` is read;
//! 3. the service exchanges the code; [`session_from_login`] checks the
//!    verified ID token's required claims and makes the session;
//! 4. [`signed_in`]: back to where the login started, on this host.
//!
//! Every answer clears the login cookie (see
//! [`super::clear_login_cookie`]): a flow is used once.

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::check::Verdict;
use crate::config::OidcFilter;
use crate::session::{LOGIN_FLOW_SECS, LoginFlow, Session, StateUse};
use crate::web::{form_value, safe_return_path};

use super::{page, redirect};

/// Why a callback is refused. Each has a status, a stable code and a page
/// for the person in the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// No login of this browser is waiting: a replayed or forged callback,
    /// another browser's, or one that took longer than [`LOGIN_FLOW_SECS`].
    #[error("no sign-in is in progress")]
    NoLoginInProgress,
    /// `state` is missing or not the waiting login's: a forged answer.
    #[error("the state does not match")]
    StateMismatch,
    /// The state was used before: a replay, refused before any IdP call.
    #[error("the sign-in was already used")]
    AlreadyUsed,
    /// Whether the state was used cannot be known (the store is down).
    #[error("the session store is unavailable")]
    StoreUnavailable,
    /// The IdP answered with `error` (the user declined, or the IdP did).
    #[error("the IdP refused the sign-in")]
    LoginRefused,
    /// No `code` in the answer.
    #[error("the answer carries no code")]
    NoCode,
    /// The IdP is not discovered, or did not answer the code exchange.
    #[error("the IdP is unavailable")]
    IdpUnavailable,
    /// The IdP announced no token endpoint.
    #[error("the IdP has no token endpoint")]
    NoTokenEndpoint,
    /// The IdP refused the code (spent, expired, another client's).
    #[error("the code exchange was refused")]
    ExchangeRefused,
    /// The token answer has no ID token.
    #[error("no ID token")]
    NoIdToken,
    /// The ID token does not verify (signature, issuer, audience, nonce,
    /// times).
    #[error("the ID token is not valid")]
    IdTokenInvalid,
    /// The ID token lacks one of the filter's required claims.
    #[error("a required claim is missing")]
    ClaimsNotMet,
}

impl CallbackError {
    /// The HTTP status.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::NoLoginInProgress
            | Self::StateMismatch
            | Self::AlreadyUsed
            | Self::NoCode
            | Self::ExchangeRefused
            | Self::NoIdToken
            | Self::IdTokenInvalid => 400,
            Self::LoginRefused | Self::ClaimsNotMet => 403,
            Self::StoreUnavailable | Self::IdpUnavailable | Self::NoTokenEndpoint => 503,
        }
    }

    /// The stable code in the page (`data-code`).
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::NoLoginInProgress => "no_login_in_progress",
            Self::StateMismatch => "state_mismatch",
            Self::AlreadyUsed => "login_already_used",
            Self::StoreUnavailable => "session_store_unavailable",
            Self::LoginRefused => "login_refused",
            Self::NoCode => "no_code",
            Self::IdpUnavailable | Self::NoTokenEndpoint => "idp_unavailable",
            Self::ExchangeRefused | Self::NoIdToken | Self::IdTokenInvalid => "login_failed",
            Self::ClaimsNotMet => "claims_not_met",
        }
    }

    /// What the person reads.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::NoLoginInProgress => "no sign-in is in progress in this browser: start again",
            Self::StateMismatch => "the sign-in answer does not belong to this browser",
            Self::AlreadyUsed => "this sign-in was already used: start again",
            Self::StoreUnavailable => "sessions cannot be stored: try again shortly",
            Self::LoginRefused => "the sign-in service refused the sign-in",
            Self::NoCode => "the sign-in answer carries no code",
            Self::IdpUnavailable => "the sign-in service is not reachable: try again shortly",
            Self::NoTokenEndpoint => "the sign-in service has no token endpoint",
            Self::ExchangeRefused => "the sign-in could not be completed: start again",
            Self::NoIdToken => "the sign-in service sent no ID token",
            Self::IdTokenInvalid => "the sign-in service's ID token is not valid",
            Self::ClaimsNotMet => "your account does not meet this site's requirements",
        }
    }

    /// The page, clearing the login cookie (`clear`).
    #[must_use]
    pub fn page(self, clear: String) -> Verdict {
        page(self.status(), self.code(), self.message(), vec![clear])
    }
}

/// What the IdP's answer carries in the callback's query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: bool,
}

impl CallbackParams {
    /// Reads `state`, `code` and whether there is an `error` from a request
    /// target (`/callback?code=…&state=…`), percent-decoded; the first of
    /// repeated names counts.
    #[must_use]
    pub fn parse(target: &str) -> Self {
        let query = gatehouse_http_core::query::of(target).unwrap_or_default();
        Self {
            state: form_value(query, "state"),
            code: form_value(query, "code"),
            error: form_value(query, "error").is_some(),
        }
    }
}

/// A callback whose login flow and state checked out, waiting for its
/// single-use check. The code is only reachable through
/// [`PendingCallback::after_first_use`], so nothing can send it to the IdP
/// before the state was marked used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCallback {
    flow: LoginFlow,
    params: CallbackParams,
}

/// Step 1: `flow` is the login cookie's flow (`None` when absent, forged or
/// sealed for something else), `params` the callback's. The flow must be
/// younger than [`LOGIN_FLOW_SECS`] at `now`, and `state` must be its
/// state (compared in constant time).
///
/// # Errors
/// [`CallbackError::NoLoginInProgress`], [`CallbackError::StateMismatch`].
pub fn begin(
    flow: Option<LoginFlow>,
    params: CallbackParams,
    now: u64,
) -> Result<PendingCallback, CallbackError> {
    let Some(flow) = flow.filter(|f| now < f.started_at.saturating_add(LOGIN_FLOW_SECS)) else {
        return Err(CallbackError::NoLoginInProgress);
    };
    let state_ok = params
        .state
        .as_deref()
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(flow.state.as_bytes())));
    if !state_ok {
        return Err(CallbackError::StateMismatch);
    }
    Ok(PendingCallback { flow, params })
}

/// A callback allowed to exchange its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The authorization code to exchange.
    pub code: String,
    /// The login flow: its PKCE verifier, nonce and return path.
    pub flow: LoginFlow,
}

impl PendingCallback {
    /// The login's state, to mark used.
    #[must_use]
    pub fn state(&self) -> &str {
        &self.flow.state
    }

    /// Until when (Unix seconds) the used state must be remembered: the
    /// flow's expiry; after it the login cookie is refused anyway.
    #[must_use]
    pub fn used_until(&self) -> u64 {
        self.flow.started_at.saturating_add(LOGIN_FLOW_SECS)
    }

    /// How long (seconds, at least 1) a store remembers the used state.
    #[must_use]
    pub fn used_ttl(&self, now: u64) -> u64 {
        self.used_until().saturating_sub(now).max(1)
    }

    /// Step 2: `used` says whether this was the state's first use (`None`:
    /// it could not be known, the store did not answer). Only a first use
    /// reads the IdP's answer: an `error` refuses, a `code` is exchanged.
    ///
    /// # Errors
    /// [`CallbackError::AlreadyUsed`], [`CallbackError::StoreUnavailable`],
    /// [`CallbackError::LoginRefused`], [`CallbackError::NoCode`].
    pub fn after_first_use(self, used: Option<StateUse>) -> Result<Exchange, CallbackError> {
        match used {
            Some(StateUse::First) => {}
            Some(StateUse::Replayed) => return Err(CallbackError::AlreadyUsed),
            None => return Err(CallbackError::StoreUnavailable),
        }
        if self.params.error {
            return Err(CallbackError::LoginRefused);
        }
        let code = self.params.code.ok_or(CallbackError::NoCode)?;
        Ok(Exchange {
            code,
            flow: self.flow,
        })
    }
}

/// The token endpoint's answer to a code exchange, the ID token verified
/// (signature, issuer, audience, nonce, times) by the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginTokens {
    /// The ID token as received (kept for `id_token_hint` at logout).
    pub id_token: String,
    /// Its verified `sub`.
    pub sub: String,
    /// Its verified `email`, if any.
    pub email: Option<String>,
    /// The access token.
    pub access_token: String,
    /// `expires_in` of the access token (seconds), if the IdP said.
    pub expires_in: Option<u64>,
    /// The refresh token, if the IdP gave one.
    pub refresh_token: Option<String>,
}

/// The payload of a compact JWT (the ID token, already verified), as a JSON
/// object; empty when it is not one.
#[must_use]
pub fn jwt_payload(token: &str) -> Map<String, Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .unwrap_or_default()
}

/// `groups` of an ID token's payload: a list of strings, or none at all (a
/// list with anything else in it counts as none).
#[must_use]
pub fn groups_of(payload: &Map<String, Value>) -> Vec<String> {
    payload
        .get("groups")
        .cloned()
        .and_then(|g| serde_json::from_value::<Vec<String>>(g).ok())
        .unwrap_or_default()
}

/// `sid` of an ID token's payload, when it is a string.
#[must_use]
pub fn sid_of(payload: &Map<String, Value>) -> Option<String> {
    payload
        .get("sid")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Step 3: the session a verified login makes at `now`, if the ID token
/// meets the filter's required claims. `groups` and `sid` come from the ID
/// token's payload; the idle and absolute clocks start now.
///
/// # Errors
/// [`CallbackError::ClaimsNotMet`].
pub fn session_from_login(
    filter: &OidcFilter,
    tokens: LoginTokens,
    now: u64,
) -> Result<Session, CallbackError> {
    let payload = jwt_payload(&tokens.id_token);
    if !filter.required_claims.iter().all(|r| r.holds(&payload)) {
        return Err(CallbackError::ClaimsNotMet);
    }
    Ok(Session {
        sub: tokens.sub,
        email: tokens.email,
        groups: groups_of(&payload),
        id_token: tokens.id_token,
        access_token: tokens.access_token,
        access_expires_at: tokens.expires_in.map(|d| now.saturating_add(d)),
        refresh_token: tokens.refresh_token,
        sid: sid_of(&payload),
        created_at: now,
        seen_at: now,
    })
}

/// Step 4: signed in, back to where the login started. The flow was sealed
/// by us, but its return path is checked again ([`safe_return_path`]): it
/// never leaves this host. Sets the session cookie (`session_cookie`; none
/// when only the store changed) and clears the login cookie.
#[must_use]
pub fn signed_in(flow: &LoginFlow, session_cookie: Option<String>, clear: String) -> Verdict {
    redirect(
        &safe_return_path(&flow.return_to),
        session_cookie.into_iter().chain([clear]).collect(),
    )
}

#[cfg(test)]
mod tests;
