//! Compact JWS tokens (`header.payload.signature`), parsed without trusting them.

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
    base64url_decode(segment.as_bytes()).ok_or(TokenError::Base64(what))
}

/// Marks a byte that is not in the base64url alphabet (high bits set, so
/// one test over four lookups finds it).
const NOT_B64: u8 = 0xff;

const B64URL: [u8; 256] = {
    let mut table = [NOT_B64; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Unpadded base64url (RFC 7515 §2), strict like the `base64` crate's
/// `URL_SAFE_NO_PAD`: no padding, no other alphabet, no length that leaves
/// one character over, and the unused bits of the last character zero (so
/// each byte string has exactly one encoding). A table and four characters
/// a step: this runs over every token a worker has not seen, and the
/// general-purpose engine cost twice as much inside wasm.
#[must_use]
pub fn base64url_decode(text: &[u8]) -> Option<Vec<u8>> {
    let lookup = |c: u8| u32::from(B64URL[usize::from(c)]);
    let mut out = Vec::with_capacity(text.len() / 4 * 3 + 2);
    let mut quads = text.chunks_exact(4);
    for q in &mut quads {
        let (a, b, c, d) = (lookup(q[0]), lookup(q[1]), lookup(q[2]), lookup(q[3]));
        if (a | b | c | d) > 63 {
            return None;
        }
        let n = a << 18 | b << 12 | c << 6 | d;
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    match *quads.remainder() {
        [] => {}
        [a, b] => {
            let (a, b) = (lookup(a), lookup(b));
            if (a | b) > 63 || b & 0x0f != 0 {
                return None;
            }
            out.push((a << 2 | b >> 4) as u8);
        }
        [a, b, c] => {
            let (a, b, c) = (lookup(a), lookup(b), lookup(c));
            if (a | b | c) > 63 || c & 0x03 != 0 {
                return None;
            }
            let n = a << 10 | b << 4 | c >> 2;
            out.extend_from_slice(&[(n >> 8) as u8, n as u8]);
        }
        _ => return None,
    }
    Some(out)
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

    /// The payload's claims, taken out of the token (no copy).
    #[must_use]
    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
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
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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

    #[test]
    fn base64url_refuses_what_the_base64_crate_refuses() {
        for bad in [
            "a", "ab=", "AB==", "a+bc", "a/bc", "ab c", "AB", "ABC", "Zm9v\n",
        ] {
            assert_eq!(
                base64url_decode(bad.as_bytes()),
                URL_SAFE_NO_PAD.decode(bad).ok(),
                "{bad:?}"
            );
        }
        assert_eq!(base64url_decode(b"AA").as_deref(), Some(&[0u8][..]));
        assert_eq!(base64url_decode(b"_-8").as_deref(), Some(&[0xff, 0xef][..]));
        assert_eq!(base64url_decode(b"").as_deref(), Some(&[][..]));
    }

    proptest! {
        #[test]
        fn base64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = URL_SAFE_NO_PAD.encode(&bytes);
            prop_assert_eq!(base64url_decode(text.as_bytes()), Some(bytes));
        }

        #[test]
        fn base64url_agrees_with_the_base64_crate(text in "[A-Za-z0-9_=+/ -]{0,40}") {
            prop_assert_eq!(base64url_decode(text.as_bytes()), URL_SAFE_NO_PAD.decode(&text).ok());
        }

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
