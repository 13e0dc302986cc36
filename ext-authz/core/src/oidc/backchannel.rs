//! OpenID Connect Back-Channel Logout 1.0: the IdP posts a signed logout
//! token; every stored session of its `sid` (or, without one, its `sub`)
//! ends. Here: which requests and tokens are accepted, and the answers.
//! The service ends the sessions in the store.

use gatehouse_jwt_core::{Algorithm, KeySet, Provider, VerifyError};
use serde_json::Value;

use crate::check::Verdict;
use crate::config::OidcFilter;
use crate::web::form_value;

use super::HttpView;

/// The back-channel logout event (§2.4).
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What an IdP may sign logout tokens with: the asymmetric algorithms. A
/// shared-secret algorithm would let anyone who knows the client secret
/// log users out.
pub const LOGOUT_TOKEN_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Clock skew allowed on a logout token's times (seconds).
pub const LEEWAY_SECS: u64 = 30;

/// The verifier of the filter's logout tokens from the IdP's JWKS (JSON):
/// issued by the filter's issuer (exactly), for its client id, signed by
/// one of the IdP's keys with an asymmetric algorithm. `None` when the JWKS
/// does not parse (every logout token is then refused).
#[must_use]
pub fn verifier(filter: &OidcFilter, jwks: &[u8]) -> Option<Provider> {
    let keys = KeySet::from_jwks(jwks).ok()?;
    Some(Provider::new(
        Some(filter.issuer.clone()),
        vec![filter.client_id.clone()],
        LOGOUT_TOKEN_ALGORITHMS.to_vec(),
        keys,
        LEEWAY_SECS,
    ))
}

/// Whose sessions a valid logout token ends: `sid` when it names one (the
/// IdP session), else every session of `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutSubject {
    /// The IdP's session id.
    pub sid: Option<String>,
    /// The user.
    pub sub: Option<String>,
}

/// Why a back-channel logout is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogoutTokenError {
    /// Not a POST.
    #[error("not a POST")]
    NotPost,
    /// No `logout_token` in the form body.
    #[error("no logout token")]
    NoToken,
    /// The IdP is not discovered, or its keys did not parse.
    #[error("no verifier for logout tokens")]
    NoVerifier,
    /// The token does not verify: signature, algorithm, issuer, audience
    /// or times.
    #[error(transparent)]
    Refused(#[from] VerifyError),
    /// No back-channel logout event in `events` (§2.4): another kind of
    /// token, such as an ID token, replayed here.
    #[error("not a logout event")]
    NoEvent,
    /// A `nonce`, which a logout token must not carry (§2.4): an ID token.
    #[error("a logout token carries no nonce")]
    HasNonce,
    /// Neither `sid` nor `sub`: nobody to log out.
    #[error("neither sid nor sub")]
    NoSubject,
}

impl LogoutTokenError {
    /// The answer to the IdP: 405 for another method, else 400
    /// `invalid_request` (§2.8).
    #[must_use]
    pub fn answer(&self) -> Verdict {
        match self {
            Self::NotPost => answer(405, "invalid_request"),
            _ => answer(400, "invalid_request"),
        }
    }
}

/// Checks a back-channel logout `request` at `now` with the filter's
/// `verifier` (none before discovery): a POST whose form body carries a
/// `logout_token` that verifies, has the back-channel logout event, no
/// `nonce`, and a `sid` or a `sub` (§2.6).
///
/// # Errors
/// [`LogoutTokenError`], in the order of the checks.
pub fn check(
    request: &HttpView<'_>,
    verifier: Option<&Provider>,
    now: u64,
) -> Result<LogoutSubject, LogoutTokenError> {
    if !request.method.eq_ignore_ascii_case("POST") {
        return Err(LogoutTokenError::NotPost);
    }
    let token = form_value(request.body, "logout_token").ok_or(LogoutTokenError::NoToken)?;
    let verifier = verifier.ok_or(LogoutTokenError::NoVerifier)?;
    let claims = verifier.verify(&token, now)?.claims;
    let has_event = claims
        .get("events")
        .and_then(Value::as_object)
        .is_some_and(|e| e.contains_key(BACKCHANNEL_EVENT));
    if !has_event {
        return Err(LogoutTokenError::NoEvent);
    }
    if claims.contains_key("nonce") {
        return Err(LogoutTokenError::HasNonce);
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let (sid, sub) = (text("sid"), text("sub"));
    if sid.is_none() && sub.is_none() {
        return Err(LogoutTokenError::NoSubject);
    }
    Ok(LogoutSubject { sid, sub })
}

/// The sessions ended: 200, no body.
#[must_use]
pub fn ended() -> Verdict {
    answer(200, "")
}

/// The store did not answer: the IdP may retry (§2.8 leaves the code to the
/// RP; 501 as before).
#[must_use]
pub fn store_unavailable() -> Verdict {
    answer(501, "temporarily_unavailable")
}

/// A JSON answer to the IdP, never cached; `error` empty for none.
fn answer(status: u16, error: &str) -> Verdict {
    Verdict::Deny {
        status,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
        ],
        body: if error.is_empty() {
            String::new()
        } else {
            format!(r#"{{"error":"{error}"}}"#)
        },
    }
}

#[cfg(test)]
mod tests;
