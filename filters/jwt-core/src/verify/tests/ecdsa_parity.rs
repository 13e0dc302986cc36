//! The native ECDSA path (JWS `r‖s` converted to DER for Envoy's
//! `verify_signature`) accepts exactly what the pure-Rust path accepts.
//!
//! The stand-in for BoringSSL reads the DER strictly into two integers, as
//! `ECDSA_SIG_from_bytes` does, and checks the signature those values make:
//! like any DER verifier it cannot tell `00‖r‖00‖s` from `r‖s`. What must
//! keep the two paths equal is the conversion, not the verifier.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use proptest::prelude::*;

use super::{EC256, EC384, NOW, claims, provider_for, sign};
use crate::native::NativeCheck;
use crate::verify::{Host, VerifyError};

/// Group orders from `openssl ecparam -param_enc explicit -text`, written
/// out again here so a slip in `native.rs` does not hide in both.
const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
const P384_N: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn order(alg: Algorithm) -> Vec<u8> {
    hex(if alg == Algorithm::ES256 {
        P256_N
    } else {
        P384_N
    })
}

/// `a - b`, big-endian, same width, `a >= b`.
fn sub(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        out[i] = d.rem_euclid(256) as u8;
    }
    out
}

/// A strict DER INTEGER: minimal, non-negative; its value's bytes.
fn der_integer(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if tag != 0x02 || len == 0 || len >= 0x80 || rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    if content[0] & 0x80 != 0 || (len > 1 && content[0] == 0 && content[1] & 0x80 == 0) {
        return None;
    }
    let value = content.iter().skip_while(|&&b| b == 0).copied().collect();
    Some((value, rest))
}

/// `SEQUENCE { INTEGER r, INTEGER s }`, strictly, nothing after.
fn der_signature(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (&tag, rest) = der.split_first()?;
    let (&len, rest) = rest.split_first()?;
    if tag != 0x30 || usize::from(len) != rest.len() || len >= 0x80 {
        return None;
    }
    let (r, rest) = der_integer(rest)?;
    let (s, rest) = der_integer(rest)?;
    rest.is_empty().then_some((r, s))
}

/// Envoy's `verify_signature` as far as ECDSA goes: the values in the DER,
/// checked against the key (through the pure path, at their natural width).
struct DerVerifier {
    alg: Algorithm,
}

impl Host for DerVerifier {
    fn verify_natively(&self, check: &NativeCheck<'_>) -> Option<bool> {
        let width = order(self.alg).len();
        let fixed = |v: Vec<u8>| (v.len() <= width).then(|| [vec![0; width - v.len()], v].concat());
        let Some((r, s)) = der_signature(&check.signature) else {
            return Some(false);
        };
        let (Some(r), Some(s)) = (fixed(r), fixed(s)) else {
            return Some(false);
        };
        let keys = crate::KeySet::from_jwks(super::JWKS).unwrap();
        let kid = if self.alg == Algorithm::ES256 {
            "ec-256"
        } else {
            "ec-384"
        };
        let key = keys.candidates(Some(kid), self.alg).next().unwrap();
        Some(
            jsonwebtoken::crypto::verify(
                &URL_SAFE_NO_PAD.encode([r, s].concat()),
                check.text,
                key.decoding_key(),
                self.alg,
            )
            .unwrap_or(false),
        )
    }
}

/// A valid token of `alg` with its signature replaced by `change(signature)`.
fn token_with(alg: Algorithm, change: impl FnOnce(Vec<u8>) -> Vec<u8>) -> String {
    let (pem, kid) = if alg == Algorithm::ES256 {
        (EC256, "ec-256")
    } else {
        (EC384, "ec-384")
    };
    let token = sign(alg, &EncodingKey::from_ec_pem(pem).unwrap(), kid, &claims());
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = change(URL_SAFE_NO_PAD.decode(signature).unwrap());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// (pure path accepts, native path accepts)
fn both(alg: Algorithm, token: &str) -> (bool, bool) {
    let provider = provider_for(alg);
    (
        provider.verify(token, NOW).is_ok(),
        provider
            .verify_with(token, NOW, &DerVerifier { alg })
            .is_ok(),
    )
}

#[test]
fn a_zero_padded_ecdsa_signature_is_refused_natively_as_in_rust() {
    for alg in [Algorithm::ES256, Algorithm::ES384] {
        let width = order(alg).len();
        let padded = token_with(alg, |sig| {
            let (r, s) = sig.split_at(width);
            [&[0][..], r, &[0], s].concat()
        });
        assert_eq!(both(alg, &padded), (false, false), "{alg:?}");
        let r_only = token_with(alg, |sig| [&[0][..], &sig].concat());
        assert_eq!(both(alg, &r_only), (false, false), "{alg:?}");
        // The same signature at its proper width passes both ways.
        assert_eq!(both(alg, &token_with(alg, |sig| sig)), (true, true));
    }
}

#[test]
fn high_s_and_out_of_range_scalars_get_the_same_answer_both_ways() {
    for alg in [Algorithm::ES256, Algorithm::ES384] {
        let n = order(alg);
        let width = n.len();
        // s and n - s both verify: neither path insists on low S.
        let high_s = token_with(alg, |sig| {
            let (r, s) = sig.split_at(width);
            [r.to_vec(), sub(&n, s)].concat()
        });
        assert_eq!(both(alg, &high_s), (true, true), "{alg:?}: high S");
        let n_minus_1 = sub(&n, &[vec![0; width - 1], vec![1]].concat());
        for value in [vec![0; width], n.clone(), n_minus_1, vec![0xff; width]] {
            for at in [0, width] {
                let token = token_with(alg, |mut sig| {
                    sig[at..at + width].copy_from_slice(&value);
                    sig
                });
                assert_eq!(both(alg, &token), (false, false), "{alg:?} at {at}");
            }
        }
        // r or s plus n (a different JWS, same value mod n) is out of range.
        let wrapped = token_with(alg, |sig| {
            let (r, s) = sig.split_at(width);
            let mut r = r.to_vec();
            // r + n overflows the width when r > 2^k - n; else it is >= n.
            let mut carry = 0u16;
            for i in (0..width).rev() {
                let v = u16::from(r[i]) + u16::from(n[i]) + carry;
                r[i] = v as u8;
                carry = v >> 8;
            }
            if carry == 1 {
                [vec![1], r, s.to_vec()].concat()
            } else {
                [r, s.to_vec()].concat()
            }
        });
        assert_eq!(both(alg, &wrapped), (false, false), "{alg:?}: r + n");
    }
}

#[test]
fn a_signature_of_the_wrong_width_never_reaches_the_host() {
    struct Accepting;
    impl Host for Accepting {
        fn verify_natively(&self, _check: &NativeCheck<'_>) -> Option<bool> {
            Some(true)
        }
    }
    for change in [
        |sig: Vec<u8>| [&[0][..], &sig[..32], &[0], &sig[32..]].concat(),
        |sig: Vec<u8>| [&sig[..], &[0, 0]].concat(),
        |sig: Vec<u8>| sig[..62].to_vec(),
    ] {
        let token = token_with(Algorithm::ES256, change);
        assert_eq!(
            provider_for(Algorithm::ES256).verify_with(&token, NOW, &Accepting),
            Err(VerifyError::BadSignature)
        );
    }
}

/// One way an attacker may rework a valid signature.
#[derive(Debug, Clone)]
enum Mutation {
    /// Leading zero bytes before `r` and before `s`.
    Pad(usize, usize),
    /// Leading bytes of `r` and of `s` dropped.
    Strip(usize, usize),
    /// Bytes appended.
    Extend(Vec<u8>),
    /// Bytes cut from the end.
    Truncate(usize),
    /// One bit flipped.
    Flip(usize, u8),
    /// `s` replaced by `n - s`, then padded.
    HighS(usize),
    /// Something else entirely.
    Replace(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0usize..3, 0usize..3).prop_map(|(r, s)| Mutation::Pad(r, s)),
        (0usize..2, 0usize..2).prop_map(|(r, s)| Mutation::Strip(r, s)),
        proptest::collection::vec(any::<u8>(), 1..4).prop_map(Mutation::Extend),
        (1usize..4).prop_map(Mutation::Truncate),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip(at, bit)),
        (0usize..2).prop_map(Mutation::HighS),
        proptest::collection::vec(any::<u8>(), 0..120).prop_map(Mutation::Replace),
    ]
}

fn apply(alg: Algorithm, m: &Mutation, sig: Vec<u8>) -> Vec<u8> {
    let n = order(alg);
    let width = n.len();
    let (r, s) = sig.split_at(width);
    let zeros = |k: usize| vec![0u8; k];
    match m {
        Mutation::Pad(a, b) => [zeros(*a), r.to_vec(), zeros(*b), s.to_vec()].concat(),
        Mutation::Strip(a, b) => [&r[*a..], &s[*b..]].concat(),
        Mutation::Extend(more) => [sig.clone(), more.clone()].concat(),
        Mutation::Truncate(k) => sig[..sig.len() - k].to_vec(),
        Mutation::Flip(at, bit) => {
            let mut sig = sig.clone();
            let at = at % sig.len();
            sig[at] ^= 1 << bit;
            sig
        }
        Mutation::HighS(pad) => [r.to_vec(), zeros(*pad), sub(&n, s)].concat(),
        Mutation::Replace(bytes) => bytes.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn native_and_pure_ecdsa_agree_on_every_reworked_signature(
        m in mutation(),
        p384 in any::<bool>(),
    ) {
        let alg = if p384 { Algorithm::ES384 } else { Algorithm::ES256 };
        let token = token_with(alg, |sig| apply(alg, &m, sig));
        let (pure, native) = both(alg, &token);
        prop_assert_eq!(pure, native, "{:?} {:?}", alg, m);
    }
}
