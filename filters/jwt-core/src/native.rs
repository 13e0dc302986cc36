//! What a host with native crypto needs to verify RS*/ES* signatures for us:
//! the public key as SubjectPublicKeyInfo DER, ECDSA signatures as DER, and
//! the protobuf messages of Envoy's `verify_signature` foreign function.
//!
//! Pure-Rust RSA under V8 costs about a millisecond and a half per verify;
//! Envoy's BoringSSL does it in tens of microseconds. The adapter hands a
//! [`NativeCheck`] to the host and falls back to pure Rust when it cannot.

use jsonwebtoken::Algorithm;

/// One signature for the host to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeCheck<'a> {
    /// `sha256`, `sha384` or `sha512`.
    pub hash: &'static str,
    /// SubjectPublicKeyInfo DER.
    pub public_key_der: &'a [u8],
    /// The signature as the host wants it (DER for ECDSA).
    pub signature: Vec<u8>,
    /// The signed bytes (`header.payload`).
    pub text: &'a [u8],
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    // Definite-length form (X.690 §8.1.3): short below 128, else long.
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    out.push(tag);
    der_len(&mut out, content.len());
    out.extend_from_slice(content);
    out
}

/// An unsigned big-endian integer as a DER INTEGER: no leading zero bytes,
/// except one when the high bit is set (else it would read as negative).
fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    let trimmed = &bytes[first.min(bytes.len())..];
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    der(0x02, &content)
}

const RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const DER_NULL: &[u8] = &[0x05, 0x00];
const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

fn spki(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(key.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(key);
    let mut content = der(0x30, algorithm);
    content.extend_from_slice(&der(0x03, &bits));
    der(0x30, &content)
}

/// SubjectPublicKeyInfo DER of an RSA key (modulus and exponent, big-endian).
#[must_use]
pub fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut key = der_uint(n);
    key.extend_from_slice(&der_uint(e));
    spki(&[RSA_ENCRYPTION, DER_NULL].concat(), &der(0x30, &key))
}

/// SubjectPublicKeyInfo DER of an EC key on P-256 (`p384` false) or P-384.
#[must_use]
pub fn ec_spki(p384: bool, x: &[u8], y: &[u8]) -> Vec<u8> {
    let curve = if p384 { P384 } else { P256 };
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(0x04); // uncompressed
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    spki(&[EC_PUBLIC_KEY, curve].concat(), &point)
}

/// Order `n` of the P-256 group, big-endian (SEC 2 §2.4.2).
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Order `n` of the P-384 group, big-endian (SEC 2 §2.5.1).
const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

/// Whether a fixed-width big-endian integer lies in `1..order`.
fn is_scalar(bytes: &[u8], order: &[u8]) -> bool {
    // Equal widths compare as numbers when compared as byte strings.
    bytes.len() == order.len() && bytes.iter().any(|&b| b != 0) && bytes < order
}

/// A JWS ECDSA signature as DER for a verifier that takes DER, or `None`
/// when the pure-Rust path would refuse it before any curve arithmetic.
///
/// RFC 7518 §3.4: the JWS form is `r‖s`, each exactly as wide as the
/// curve's order (32 bytes for ES256, 48 for ES384). DER holds integer
/// values, so converting a signature of another width would let the native
/// path accept what the pure path refuses: `00‖r‖00‖s` is a different JWS
/// signature (a different token) but the same DER. So the width must be
/// exact, and `r` and `s` must lie in `1..n`, as the pure path requires
/// (RustCrypto's `Signature::from_slice`); BoringSSL checks that range too,
/// but the answer must not depend on it. `alg` other than ES256 or ES384:
/// `None`.
#[must_use]
pub fn ecdsa_der(alg: Algorithm, raw: &[u8]) -> Option<Vec<u8>> {
    let order: &[u8] = match alg {
        Algorithm::ES256 => &P256_ORDER,
        Algorithm::ES384 => &P384_ORDER,
        _ => return None,
    };
    if raw.len() != 2 * order.len() {
        return None;
    }
    let (r, s) = raw.split_at(order.len());
    if !is_scalar(r, order) || !is_scalar(s, order) {
        return None;
    }
    let mut content = der_uint(r);
    content.extend_from_slice(&der_uint(s));
    Some(der(0x30, &content))
}

fn varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push((number << 3) | 2); // length-delimited
    varint(out, bytes.len());
    out.extend_from_slice(bytes);
}

impl NativeCheck<'_> {
    /// The `VerifySignatureArguments` message Envoy's `verify_signature`
    /// foreign function reads: `hash_function` = 1, `public_key` = 2 (DER),
    /// `signature` = 3, `text` = 4.
    #[must_use]
    pub fn to_protobuf(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.public_key_der.len() + self.signature.len() + self.text.len() + 24,
        );
        field(&mut out, 1, self.hash.as_bytes());
        field(&mut out, 2, self.public_key_der);
        field(&mut out, 3, &self.signature);
        field(&mut out, 4, self.text);
        out
    }
}

/// Reads a `VerifySignatureResult` (`result` = 1, a bool; `error` = 2):
/// `Some(valid)`, or `None` when the bytes are not that message.
#[must_use]
pub fn parse_result(bytes: &[u8]) -> Option<bool> {
    let mut result = false;
    let mut i = 0;
    while i < bytes.len() {
        let key = bytes[i];
        i += 1;
        match (key >> 3, key & 7) {
            (1, 0) => {
                result = *bytes.get(i)? != 0;
                i += 1;
            }
            (_, 2) => {
                // Skip a length-delimited field (the error text).
                let mut len = 0usize;
                let mut shift = 0;
                loop {
                    let b = *bytes.get(i)?;
                    i += 1;
                    len |= usize::from(b & 0x7f) << shift;
                    if b & 0x80 == 0 {
                        break;
                    }
                    shift += 7;
                    if shift > 28 {
                        return None;
                    }
                }
                i = i.checked_add(len).filter(|&end| end <= bytes.len())?;
            }
            _ => return None,
        }
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    fn pem_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).unwrap()
    }

    fn jwk(kid: &str) -> serde_json::Value {
        let jwks: serde_json::Value =
            serde_json::from_str(include_str!("../testdata/jwks.json")).unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()
            .clone()
    }

    fn b64(v: &serde_json::Value) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(v.as_str().unwrap()).unwrap()
    }

    #[test]
    fn rsa_spki_matches_what_openssl_wrote() {
        let k = jwk("rsa-1");
        assert_eq!(
            rsa_spki(&b64(&k["n"]), &b64(&k["e"])),
            pem_der(include_str!("../testdata/keys/rsa.pub.pem"))
        );
    }

    #[test]
    fn ec_spki_matches_what_openssl_wrote() {
        let k = jwk("ec-256");
        assert_eq!(
            ec_spki(false, &b64(&k["x"]), &b64(&k["y"])),
            pem_der(include_str!("../testdata/keys/ec256.pub.pem"))
        );
        let k = jwk("ec-384");
        assert_eq!(
            ec_spki(true, &b64(&k["x"]), &b64(&k["y"])),
            pem_der(include_str!("../testdata/keys/ec384.pub.pem"))
        );
    }

    #[test]
    fn ecdsa_signatures_become_der_integers() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r with the high bit set gets a zero byte
        raw[32..].copy_from_slice(&[0u8; 32]);
        raw[63] = 0x05; // s is 5 after stripping zeros
        let der = ecdsa_der(Algorithm::ES256, &raw).unwrap();
        assert_eq!(&der[..4], &[0x30, 0x26, 0x02, 0x21]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x05]);
        assert_eq!(ecdsa_der(Algorithm::ES256, &[1, 2, 3]), None);
    }

    #[test]
    fn arguments_and_results_speak_envoys_protobuf() {
        let check = NativeCheck {
            hash: "sha256",
            public_key_der: &[9, 9],
            signature: vec![7],
            text: b"ab",
        };
        assert_eq!(
            check.to_protobuf(),
            vec![
                0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6', 0x12, 2, 9, 9, 0x1a, 1, 7, 0x22, 2,
                b'a', b'b'
            ]
        );
        assert_eq!(parse_result(&[0x08, 0x01]), Some(true));
        assert_eq!(parse_result(&[]), Some(false), "proto3 omits false");
        assert_eq!(parse_result(&[0x12, 0x03, b'b', b'a', b'd']), Some(false));
        assert_eq!(parse_result(&[0x12, 0x09, b'x']), None, "truncated");
        assert_eq!(parse_result(&[0x1d]), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_result_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = parse_result(&bytes);
        }
    }
}
