//! The verification matrix: every algorithm against every way a token can be wrong.

use jsonwebtoken::{EncodingKey, Header, encode};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::jwks::{JwksError, KeyKind};

mod ecdsa_parity;

const JWKS: &[u8] = include_bytes!("../../testdata/jwks.json");
const RSA: &[u8] = include_bytes!("../../testdata/keys/rsa.pem");
const RSA_OTHER: &[u8] = include_bytes!("../../testdata/keys/rsa-other.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../testdata/keys/rsa.pub.pem");
const EC256: &[u8] = include_bytes!("../../testdata/keys/ec256.pem");
const EC384: &[u8] = include_bytes!("../../testdata/keys/ec384.pem");
const ED25519: &[u8] = include_bytes!("../../testdata/keys/ed25519.pem");
const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://idp.example";
const AUD: &str = "gatehouse";

/// Every algorithm, with the key that signs it and its `kid` in the JWKS.
fn signers() -> Vec<(Algorithm, EncodingKey, &'static str)> {
    use Algorithm::*;
    let rsa = || EncodingKey::from_rsa_pem(RSA).unwrap();
    vec![
        (RS256, rsa(), "rsa-1"),
        (RS384, rsa(), "rsa-1"),
        (RS512, rsa(), "rsa-1"),
        (PS256, rsa(), "rsa-1"),
        (PS384, rsa(), "rsa-1"),
        (PS512, rsa(), "rsa-1"),
        (ES256, EncodingKey::from_ec_pem(EC256).unwrap(), "ec-256"),
        (ES384, EncodingKey::from_ec_pem(EC384).unwrap(), "ec-384"),
        (EdDSA, EncodingKey::from_ed_pem(ED25519).unwrap(), "ed-1"),
        (HS256, EncodingKey::from_secret(SECRET), "hmac"),
        (HS384, EncodingKey::from_secret(SECRET), "hmac"),
        (HS512, EncodingKey::from_secret(SECRET), "hmac"),
    ]
}

fn all_algorithms() -> Vec<Algorithm> {
    signers().into_iter().map(|(a, _, _)| a).collect()
}

/// The provider for a signer: the JWKS for public-key algorithms, the
/// configured secret for HMAC ones.
fn provider_for(alg: Algorithm) -> Provider {
    let keys = if KeyKind::Secret.verifies(alg) {
        KeySet::from_secret(Some("hmac".into()), SECRET)
    } else {
        KeySet::from_jwks(JWKS).unwrap()
    };
    Provider::new(
        Some(ISS.into()),
        vec![AUD.into()],
        all_algorithms(),
        keys,
        30,
    )
}

fn claims() -> serde_json::Value {
    json!({ "iss": ISS, "aud": AUD, "sub": "ann", "exp": NOW + 600, "iat": NOW - 5 })
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: &str, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, key).unwrap()
}

fn with(changes: serde_json::Value) -> serde_json::Value {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn every_algorithm_accepts_a_valid_token_and_refuses_each_defect() {
    for (alg, key, kid) in signers() {
        let p = provider_for(alg);
        let check = |claims: serde_json::Value| p.verify(&sign(alg, &key, kid, &claims), NOW);
        let verified = check(claims()).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(verified.claims["sub"], "ann", "{alg:?}");

        assert_eq!(
            check(with(json!({"exp": NOW - 100}))),
            Err(VerifyError::Expired),
            "{alg:?}"
        );
        assert!(
            check(with(json!({"exp": NOW - 10}))).is_ok(),
            "{alg:?}: within the leeway"
        );
        assert_eq!(
            check(with(json!({"nbf": NOW + 100}))),
            Err(VerifyError::NotYetValid),
            "{alg:?}"
        );
        assert!(
            check(with(json!({"nbf": NOW + 10}))).is_ok(),
            "{alg:?}: nbf within the leeway"
        );
        assert_eq!(
            check(with(json!({"iat": NOW + 100}))),
            Err(VerifyError::IssuedInFuture),
            "{alg:?}"
        );
        assert_eq!(
            check(with(json!({"iss": "https://evil.example"}))),
            Err(VerifyError::WrongIssuer),
            "{alg:?}"
        );
        assert_eq!(
            check(with(json!({"aud": "someone-else"}))),
            Err(VerifyError::WrongAudience),
            "{alg:?}"
        );
        assert!(
            check(with(json!({"aud": ["x", AUD]}))).is_ok(),
            "{alg:?}: aud as a list"
        );
        assert_eq!(
            check(with(json!({"exp": "tomorrow"}))),
            Err(VerifyError::BadTimeClaim("exp")),
            "{alg:?}"
        );

        // Tampered payload under the original signature.
        let token = sign(alg, &key, kid, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(with(json!({"sub": "root"})).to_string())
        };
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            p.verify(&forged, NOW),
            Err(VerifyError::BadSignature),
            "{alg:?}"
        );

        // Unknown kid.
        assert_eq!(
            p.verify(&sign(alg, &key, "nobody", &claims()), NOW),
            Err(VerifyError::UnknownKid(Some("nobody".into()))),
            "{alg:?}"
        );
        // Truncated and garbage tokens.
        assert!(p.verify(&token[..token.len() - 7], NOW).is_err(), "{alg:?}");
        assert!(
            matches!(p.verify("garbage", NOW), Err(VerifyError::Token(_))),
            "{alg:?}"
        );
    }
}

#[test]
fn a_signature_by_another_key_with_a_known_kid_is_refused() {
    let other = EncodingKey::from_rsa_pem(RSA_OTHER).unwrap();
    let p = provider_for(Algorithm::RS256);
    let token = sign(Algorithm::RS256, &other, "rsa-1", &claims());
    assert_eq!(p.verify(&token, NOW), Err(VerifyError::BadSignature));
    // Under its own kid (rsa-2 in the JWKS) it verifies.
    assert!(
        p.verify(&sign(Algorithm::RS256, &other, "rsa-2", &claims()), NOW)
            .is_ok()
    );
}

#[test]
fn alg_none_is_refused() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let token = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","kid":"rsa-1"}"#),
        b64(&claims().to_string())
    );
    let err = provider_for(Algorithm::RS256)
        .verify(&token, NOW)
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::Token(TokenError::Algorithm(_))),
        "{err}"
    );
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion: the attacker signs HS256 with the server's RSA
    // public key as the HMAC secret and hopes it is used to verify.
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC),
        "rsa-1",
        &claims(),
    );
    let jwks = KeySet::from_jwks(JWKS).unwrap();
    let permissive = Provider::new(
        Some(ISS.into()),
        vec![AUD.into()],
        all_algorithms(),
        jwks.clone(),
        30,
    );
    assert_eq!(
        permissive.verify(&forged, NOW),
        Err(VerifyError::KeyMismatch("rsa-1".into()))
    );
    let strict = Provider::new(
        Some(ISS.into()),
        vec![AUD.into()],
        vec![Algorithm::RS256],
        jwks,
        30,
    );
    assert_eq!(
        strict.verify(&forged, NOW),
        Err(VerifyError::AlgorithmNotAllowed("HS256".into()))
    );
}

#[test]
fn algorithms_off_the_allow_list_are_refused() {
    let es = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC256).unwrap(),
        "ec-256",
        &claims(),
    );
    let only_rs = Provider::new(
        None,
        vec![],
        vec![Algorithm::RS256],
        KeySet::from_jwks(JWKS).unwrap(),
        0,
    );
    assert_eq!(
        only_rs.verify(&es, NOW),
        Err(VerifyError::AlgorithmNotAllowed("ES256".into()))
    );
}

#[test]
fn a_token_without_kid_tries_the_keys_fit_for_its_algorithm() {
    let key = EncodingKey::from_rsa_pem(RSA_OTHER).unwrap();
    let token = encode(&Header::new(Algorithm::RS256), &claims(), &key).unwrap();
    assert!(provider_for(Algorithm::RS256).verify(&token, NOW).is_ok());
}

#[test]
fn jwks_skips_encryption_keys_and_names_a_broken_key() {
    let keys = KeySet::from_jwks(JWKS).unwrap();
    assert_eq!(keys.len(), 5, "the enc key is skipped");
    let broken = br#"{"keys":[{"kty":"RSA","kid":"a","n":"AQAB"}]}"#;
    assert_eq!(
        KeySet::from_jwks(broken).unwrap_err().to_string(),
        "jwks keys[0]: RSA key without e"
    );
    assert_eq!(
        KeySet::from_jwks(br#"{"keys":[]}"#).unwrap_err(),
        JwksError::Empty
    );
    assert!(matches!(KeySet::from_jwks(b"[]"), Err(JwksError::Json(_))));
    let mislabelled = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"RS256"}]}"#;
    assert!(
        KeySet::from_jwks(mislabelled)
            .unwrap_err()
            .to_string()
            .contains("alg does not fit")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn changing_any_character_of_a_valid_token_refuses_it(pos in 0usize..10_000, replacement in "[A-Za-z0-9_.-]") {
        let key = EncodingKey::from_ec_pem(EC256).unwrap();
        let token = sign(Algorithm::ES256, &key, "ec-256", &claims());
        let pos = pos % token.len();
        let mut bytes = token.clone().into_bytes();
        prop_assume!(bytes[pos] != replacement.as_bytes()[0]);
        bytes[pos] = replacement.as_bytes()[0];
        let changed = String::from_utf8(bytes).unwrap();
        prop_assert!(provider_for(Algorithm::ES256).verify(&changed, NOW).is_err());
    }

    #[test]
    fn verify_never_panics(input in "\\PC{0,300}") {
        let _ = provider_for(Algorithm::RS256).verify(&input, NOW);
    }
}

/// A host that answers every native check with `answer`, and remembers what
/// it was asked.
struct Native {
    answer: Option<bool>,
    asked: std::cell::RefCell<Vec<(&'static str, usize, u8)>>,
}

impl Host for Native {
    fn verify_natively(&self, check: &crate::native::NativeCheck<'_>) -> Option<bool> {
        self.asked
            .borrow_mut()
            .push((check.hash, check.public_key_der.len(), check.signature[0]));
        self.answer
    }
}

#[test]
fn rs_and_es_signatures_go_to_the_host_and_the_rest_stay_in_rust() {
    for (alg, key, kid) in signers() {
        let p = provider_for(alg);
        let token = sign(alg, &key, kid, &claims());
        let refusing = Native {
            answer: Some(false),
            asked: Default::default(),
        };
        let result = p.verify_with(&token, NOW, &refusing);
        let asked = refusing.asked.borrow().clone();
        use Algorithm::*;
        if matches!(alg, RS256 | RS384 | RS512 | ES256 | ES384) {
            // The host's word is final: a valid token it refuses is refused.
            assert_eq!(result, Err(VerifyError::BadSignature), "{alg:?}");
            let (hash, spki_len, first) = asked[0];
            assert_eq!(
                hash,
                match alg {
                    RS256 | ES256 => "sha256",
                    RS384 | ES384 => "sha384",
                    _ => "sha512",
                }
            );
            assert!(spki_len > 60, "{alg:?}: SubjectPublicKeyInfo DER");
            if matches!(alg, ES256 | ES384) {
                assert_eq!(first, 0x30, "{alg:?}: ECDSA goes as a DER SEQUENCE");
            }
        } else {
            assert!(asked.is_empty(), "{alg:?} is verified in Rust");
            assert!(result.is_ok(), "{alg:?}");
        }
        // A host that cannot answer falls back to Rust.
        let absent = Native {
            answer: None,
            asked: Default::default(),
        };
        assert!(p.verify_with(&token, NOW, &absent).is_ok(), "{alg:?}");
    }
}
