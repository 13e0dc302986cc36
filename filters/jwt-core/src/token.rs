//! Compact JWS tokens (`header.payload.signature`), parsed without trusting them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Longest token accepted, in bytes. Real tokens are a few KiB; anything
/// larger is refused before any decoding work.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token could not be parsed. Messages are safe to log (no token text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token is {0} bytes, longer than the {MAX_TOKEN_BYTES} accepted")]
    TooLong(usize),
    /// Not three dot-separated segments.
    #[error("token is not three dot-separated segments")]
    Segments,
    /// A segment is not unpadded base64url.
    #[error("token {0} is not base64url")]
    Base64(&'static str),
    /// The header or payload is not a JSON object.
    #[error("token {0} is not a JSON object")]
    Json(&'static str),
    /// The header names no algorithm, or `none`.
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(String),
    /// The header carries `crit` extensions we do not understand (RFC 7515 §4.1.11).
    #[error("token has critical header extensions")]
    Critical,
}

#[derive(Debug, Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// A parsed, not yet verified, token.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactJwt<'a> {
    alg: String,
    kid: Option<String>,
    claims: Map<String, Value>,
    signing_input: &'a str,
    signature_b64: &'a str,
    signature: Vec<u8>,
}

fn decode(segment: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Base64(what))
}

impl<'a> CompactJwt<'a> {
    /// Splits and decodes a compact token. Checks shape only: no signature,
    /// no claims. Refuses `alg: none` (and a missing `alg`) outright.
    ///
    /// # Errors
    /// [`TokenError`] naming what is malformed.
    pub fn parse(token: &'a str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong(token.len()));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Segments);
        };
        let raw: RawHeader = serde_json::from_slice(&decode(header, "header")?)
            .map_err(|_| TokenError::Json("header"))?;
        let alg = match raw.alg {
            Some(alg) if !alg.is_empty() && !alg.eq_ignore_ascii_case("none") => alg,
            other => return Err(TokenError::Algorithm(other.unwrap_or_default())),
        };
        if raw.crit.is_some() {
            return Err(TokenError::Critical);
        }
        let claims: Map<String, Value> = serde_json::from_slice(&decode(payload, "payload")?)
            .map_err(|_| TokenError::Json("payload"))?;
        let signature_bytes = decode(signature, "signature")?;
        let signing_input = &token[..header.len() + 1 + payload.len()];
        Ok(Self {
            alg,
            kid: raw.kid,
            claims,
            signing_input,
            signature_b64: signature,
            signature: signature_bytes,
        })
    }

    /// The header's `alg`.
    #[must_use]
    pub fn alg(&self) -> &str {
        &self.alg
    }

    /// The header's `kid`, if any.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The payload's claims.
    #[must_use]
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// `header.payload` as sent: the bytes the signature covers.
    #[must_use]
    pub fn signing_input(&self) -> &'a str {
        self.signing_input
    }

    /// The signature segment as sent (base64url).
    #[must_use]
    pub fn signature_b64(&self) -> &'a str {
        self.signature_b64
    }

    /// The decoded signature bytes.
    #[must_use]
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn a_well_formed_token_parses() {
        let token = format!(
            "{}.{}.{}",
            b64(r#"{"alg":"RS256","kid":"k1"}"#),
            b64(r#"{"sub":"ann"}"#),
            b64("sig")
        );
        let jwt = CompactJwt::parse(&token).unwrap();
        assert_eq!((jwt.alg(), jwt.kid()), ("RS256", Some("k1")));
        assert_eq!(jwt.claims()["sub"], "ann");
        assert_eq!(jwt.signature(), b"sig");
        assert_eq!(jwt.signing_input(), &token[..token.rfind('.').unwrap()]);
    }

    #[test]
    fn alg_none_and_missing_alg_are_refused() {
        for header in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"NONE"}"#,
            r#"{"typ":"JWT"}"#,
            r#"{"alg":""}"#,
        ] {
            let token = format!("{}.{}.", b64(header), b64("{}"));
            assert!(
                matches!(CompactJwt::parse(&token), Err(TokenError::Algorithm(_))),
                "{header}"
            );
        }
    }

    #[test]
    fn malformed_tokens_name_what_is_wrong() {
        assert_eq!(CompactJwt::parse("a.b"), Err(TokenError::Segments));
        assert_eq!(CompactJwt::parse("a.b.c.d"), Err(TokenError::Segments));
        assert_eq!(
            CompactJwt::parse("!!.e30.e30"),
            Err(TokenError::Base64("header"))
        );
        let not_json = format!("{}.{}.", b64("[1]"), b64("{}"));
        assert_eq!(
            CompactJwt::parse(&not_json),
            Err(TokenError::Json("header"))
        );
        let crit = format!(
            "{}.{}.",
            b64(r#"{"alg":"RS256","crit":["exp"]}"#),
            b64("{}")
        );
        assert_eq!(CompactJwt::parse(&crit), Err(TokenError::Critical));
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            CompactJwt::parse(&long),
            Err(TokenError::TooLong(_))
        ));
    }

    proptest! {
        #[test]
        fn compact_jwt_parser_never_panics(input in "\\PC{0,512}") {
            let _ = CompactJwt::parse(&input);
        }

        #[test]
        fn parser_never_panics_on_dotted_base64(a in "[A-Za-z0-9_-]{0,64}", b in "[A-Za-z0-9_-]{0,64}", c in "[A-Za-z0-9_-]{0,64}") {
            let token = format!("{a}.{b}.{c}");
            let _ = CompactJwt::parse(&token);
        }
    }
}
