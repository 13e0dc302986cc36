//! Verifying a token against one provider: algorithm allow-list, key,
//! signature, then the registered claims.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::jwks::{KeyIdentity, KeySet, VerifyingKey, parse_algorithm};
use crate::native::{NativeCheck, ecdsa_der};
use crate::token::{CompactJwt, TokenError};

/// Why a token was refused. Messages name the problem, never the token, and
/// say nothing that helps forge one (no expected signature, no key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Malformed token.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The algorithm is not on the provider's allow-list.
    #[error("algorithm {0} is not allowed")]
    AlgorithmNotAllowed(String),
    /// No key has the token's `kid` (or, without a `kid`, fits its algorithm).
    #[error("no key for kid {0:?}")]
    UnknownKid(Option<String>),
    /// A key with the token's `kid` exists but cannot verify its algorithm.
    #[error("key {0:?} does not fit the token's algorithm")]
    KeyMismatch(String),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("token not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// A time claim is not a number.
    #[error("claim {0} is not a number")]
    BadTimeClaim(&'static str),
    /// `iss` is not the provider's issuer.
    #[error("issuer does not match")]
    WrongIssuer,
    /// No `aud` value is one of the provider's audiences.
    #[error("audience does not match")]
    WrongAudience,
}

/// What the adapter's host offers the core. Both have defaults that offer
/// nothing, so pure callers (tests, services) implement neither.
pub trait Host {
    /// Whether a JWKS fetch for provider `index` may start now.
    fn may_refetch(&self, _index: usize) -> bool {
        false
    }

    /// Verifies a signature natively: `Some(valid)`, or `None` when the host
    /// cannot (then pure Rust verifies).
    fn verify_natively(&self, _check: &NativeCheck<'_>) -> Option<bool> {
        None
    }

    /// Claims of a token provider `index` verified before and that is still
    /// valid at `now`, from the host's cache.
    fn cached_claims(
        &self,
        _index: usize,
        _token: &str,
        _now: u64,
    ) -> Option<std::rc::Rc<Map<String, Value>>> {
        None
    }

    /// Offers a freshly verified token to the host's cache, valid until
    /// `valid_until` (Unix seconds). `key` is the key that verified it: the
    /// entry must go when new keys no longer hold that key
    /// ([`crate::TokenCache::retain_keys`]).
    fn remember(
        &self,
        _index: usize,
        _token: &str,
        _key: &KeyIdentity,
        _claims: std::rc::Rc<Map<String, Value>>,
        _valid_until: u64,
    ) {
    }
}

/// A host that offers nothing: pure-Rust verification, no fetches.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHost;

impl Host for NoHost {}

/// The hash a native verifier needs for `alg`, where natively verifiable:
/// RSASSA-PKCS1-v1_5 and ECDSA. (PSS, EdDSA and HMAC stay in pure Rust.)
fn native_hash(alg: Algorithm) -> Option<&'static str> {
    match alg {
        Algorithm::RS256 | Algorithm::ES256 => Some("sha256"),
        Algorithm::RS384 | Algorithm::ES384 => Some("sha384"),
        Algorithm::RS512 => Some("sha512"),
        _ => None,
    }
}

/// Whether `key` signed `jwt`: natively when the host can, else pure Rust.
fn signature_holds(
    jwt: &CompactJwt<'_>,
    alg: Algorithm,
    key: &VerifyingKey,
    host: &dyn Host,
) -> bool {
    if let (Some(hash), Some(spki)) = (native_hash(alg), key.spki_der()) {
        let signature = if matches!(alg, Algorithm::ES256 | Algorithm::ES384) {
            ecdsa_der(alg, jwt.signature())
        } else {
            Some(jwt.signature().to_vec())
        };
        // What `ecdsa_der` refuses, the pure path refuses as well (wrong
        // width, `r` or `s` out of range): refused without asking anyone.
        let Some(signature) = signature else {
            return false;
        };
        let check = NativeCheck {
            hash,
            public_key_der: spki,
            signature,
            text: jwt.signing_input().as_bytes(),
        };
        if let Some(valid) = host.verify_natively(&check) {
            return valid;
        }
    }
    jsonwebtoken::crypto::verify(
        jwt.signature_b64(),
        jwt.signing_input().as_bytes(),
        key.decoding_key(),
        alg,
    )
    .unwrap_or(false)
}

/// What a provider checks.
#[derive(Debug, Clone)]
pub struct Provider {
    issuer: Option<String>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    keys: KeySet,
    leeway_secs: u64,
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Every claim of the payload.
    pub claims: Map<String, Value>,
    /// The key whose signature holds.
    pub key: KeyIdentity,
}

impl Provider {
    /// A provider. `issuer` `None` accepts any `iss`; empty `audiences`
    /// accepts any `aud`; `algorithms` is the allow-list (never empty in
    /// practice: an empty list refuses every token).
    #[must_use]
    pub fn new(
        issuer: Option<String>,
        audiences: Vec<String>,
        algorithms: Vec<Algorithm>,
        keys: KeySet,
        leeway_secs: u64,
    ) -> Self {
        Self {
            issuer,
            audiences,
            algorithms,
            keys,
            leeway_secs,
        }
    }

    /// Until when a token with these verified claims may be trusted without
    /// verifying again: its `exp` plus the leeway, or a bounded time without.
    #[must_use]
    pub fn trusted_until(&self, claims: &Map<String, Value>, now: u64) -> u64 {
        claims
            .get("exp")
            .and_then(Value::as_u64)
            .map_or(now.saturating_add(crate::cache::MAX_TRUST_SECS), |exp| {
                exp.saturating_add(self.leeway_secs)
            })
    }

    /// Replaces the keys (a JWKS refresh); everything else stays.
    pub fn set_keys(&mut self, keys: KeySet) {
        self.keys = keys;
    }

    /// Verifies `token` at `now` (Unix seconds).
    ///
    /// # Errors
    /// [`VerifyError`]: the first check that fails, in this order: shape,
    /// allow-list, key, signature, `exp`, `nbf`, `iat`, `iss`, `aud`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Verified, VerifyError> {
        self.verify_with(token, now, &NoHost)
    }

    /// As [`Provider::verify`], checking RS*/ES* signatures through `host`
    /// when it can.
    ///
    /// # Errors
    /// As [`Provider::verify`].
    pub fn verify_with(
        &self,
        token: &str,
        now: u64,
        host: &dyn Host,
    ) -> Result<Verified, VerifyError> {
        let jwt = CompactJwt::parse(token)?;
        let alg = parse_algorithm(jwt.alg())
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| VerifyError::AlgorithmNotAllowed(jwt.alg().to_owned()))?;
        let mut candidates = self.keys.candidates(jwt.kid(), alg).peekable();
        if candidates.peek().is_none() {
            return Err(match jwt.kid() {
                Some(kid) if self.keys.has_kid(kid) => VerifyError::KeyMismatch(kid.to_owned()),
                kid => VerifyError::UnknownKid(kid.map(str::to_owned)),
            });
        }
        let key = candidates
            .find(|key| signature_holds(&jwt, alg, key, host))
            .map(|key| key.identity().clone())
            .ok_or(VerifyError::BadSignature)?;
        drop(candidates);
        self.check_claims(jwt.claims(), now)?;
        Ok(Verified {
            claims: jwt.into_claims(),
            key,
        })
    }

    fn check_claims(&self, claims: &Map<String, Value>, now: u64) -> Result<(), VerifyError> {
        let time = |name: &'static str| -> Result<Option<u64>, VerifyError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or(VerifyError::BadTimeClaim(name)),
            }
        };
        // The IdP's clock and ours can differ by seconds: every time check
        // gets the leeway, so a token minted "now" never fails `nbf`.
        let leeway = self.leeway_secs;
        if time("exp")?.is_some_and(|exp| now >= exp.saturating_add(leeway)) {
            return Err(VerifyError::Expired);
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(VerifyError::NotYetValid);
        }
        if time("iat")?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(VerifyError::IssuedInFuture);
        }
        if let Some(issuer) = &self.issuer
            && claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str())
        {
            return Err(VerifyError::WrongIssuer);
        }
        if !self.audiences.is_empty() {
            let matches = |v: &Value| {
                v.as_str()
                    .is_some_and(|a| self.audiences.iter().any(|x| x == a))
            };
            let ok = match claims.get("aud") {
                Some(Value::Array(list)) => list.iter().any(matches),
                Some(single) => matches(single),
                None => false,
            };
            if !ok {
                return Err(VerifyError::WrongAudience);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
