//! Verification keys: a JWKS as an identity provider publishes it, or an
//! explicitly configured HMAC secret.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The family of a key, which decides the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA: RS256/384/512 and PS256/384/512.
    Rsa,
    /// EC P-256: ES256.
    P256,
    /// EC P-384: ES384.
    P384,
    /// Ed25519: EdDSA.
    Ed25519,
    /// A shared secret: HS256/384/512, only ever from explicit configuration.
    Secret,
}

impl KeyKind {
    /// Whether a key of this kind may verify `alg`. This is what stops
    /// algorithm confusion: an RSA public key is never an HMAC secret.
    #[must_use]
    pub fn verifies(self, alg: Algorithm) -> bool {
        use Algorithm::{
            ES256, ES384, EdDSA, HS256, HS384, HS512, PS256, PS384, PS512, RS256, RS384, RS512,
        };
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::P256 => alg == ES256,
            Self::P384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
            Self::Secret => matches!(alg, HS256 | HS384 | HS512),
        }
    }
}

/// What makes a key the same key across two fetches of a JWKS: its `kid`,
/// family, published `alg` and public material (SubjectPublicKeyInfo DER for
/// RSA and EC, the point for Ed25519, the secret for HMAC). A cached token
/// keeps the identity of the key that verified it, so a refetch drops only
/// the tokens whose key left the set or whose `kid` now names other material
/// ([`KeySet::contains`]). Cloning is a reference count.
#[derive(Clone)]
pub struct KeyIdentity(Arc<Identity>);

#[derive(PartialEq, Eq)]
struct Identity {
    kid: Option<String>,
    alg: Option<Algorithm>,
    kind: KeyKind,
    material: Box<[u8]>,
}

impl PartialEq for KeyIdentity {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for KeyIdentity {}

impl std::fmt::Debug for KeyIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the material: for HMAC it is the secret.
        f.debug_struct("KeyIdentity")
            .field("kid", &self.0.kid)
            .field("alg", &self.0.alg)
            .field("kind", &self.0.kind)
            .finish_non_exhaustive()
    }
}

/// One verification key, decoded once when the key set loads.
#[derive(Clone)]
pub struct VerifyingKey {
    identity: KeyIdentity,
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material: secrets must not reach a log.
        f.debug_struct("VerifyingKey")
            .field("kid", &self.identity.0.kid)
            .field("alg", &self.identity.0.alg)
            .field("kind", &self.identity.0.kind)
            .finish()
    }
}

impl VerifyingKey {
    fn new(
        kid: Option<String>,
        alg: Option<Algorithm>,
        kind: KeyKind,
        key: DecodingKey,
        material: Vec<u8>,
    ) -> Self {
        Self {
            identity: KeyIdentity(Arc::new(Identity {
                kid,
                alg,
                kind,
                material: material.into(),
            })),
            key,
        }
    }

    /// The key id.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.identity.0.kid.as_deref()
    }

    /// The key family.
    #[must_use]
    pub fn kind(&self) -> KeyKind {
        self.identity.0.kind
    }

    /// What makes this key the same key in another fetch.
    #[must_use]
    pub fn identity(&self) -> &KeyIdentity {
        &self.identity
    }

    /// Whether this key may verify a token signed with `alg`: the family
    /// allows it, and the key's own `alg`, when published, is that one.
    #[must_use]
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.kind().verifies(alg) && self.identity.0.alg.is_none_or(|a| a == alg)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// SubjectPublicKeyInfo DER of an RSA or EC key, built once at load.
    #[must_use]
    pub fn spki_der(&self) -> Option<&[u8]> {
        matches!(self.kind(), KeyKind::Rsa | KeyKind::P256 | KeyKind::P384)
            .then_some(&*self.identity.0.material)
    }
}

/// Why a key set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Not a JWKS document.
    #[error("jwks is not a JSON object with a keys array: {0}")]
    Json(String),
    /// A key is malformed; `index` is its place in `keys`.
    #[error("jwks keys[{index}]: {problem}")]
    Key {
        /// Position in `keys`.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// No key can verify signatures.
    #[error("jwks has no signature key")]
    Empty,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Parses a JWT `alg` name.
#[must_use]
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::{
        ES256, ES384, EdDSA, HS256, HS384, HS512, PS256, PS384, PS512, RS256, RS384, RS512,
    };
    Some(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        _ => return None,
    })
}

/// A set of verification keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// Parses a JWKS. Keys for encryption (`use: enc`), symmetric keys (a
    /// secret never comes from a JWKS URI) and unknown key types are skipped;
    /// a malformed signature key is an error naming its index.
    ///
    /// # Errors
    /// [`JwksError`] when the document is not a JWKS, a key is malformed, or
    /// no key is left.
    pub fn from_jwks(json: &[u8]) -> Result<Self, JwksError> {
        let raw: RawJwks =
            serde_json::from_slice(json).map_err(|e| JwksError::Json(e.to_string()))?;
        let mut keys = Vec::new();
        for (index, jwk) in raw.keys.into_iter().enumerate() {
            if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let bad = |problem: &str| JwksError::Key {
                index,
                problem: problem.to_owned(),
            };
            let field = |v: &Option<String>, name: &str| {
                v.clone()
                    .ok_or_else(|| bad(&format!("{} key without {name}", jwk.kty)))
            };
            let raw = |v: &str, what: &str| {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(v)
                    .map_err(|_| bad(&format!("{what} is not base64url")))
            };
            let (kind, key, material) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("RSA", _) => {
                    let (n, e) = (field(&jwk.n, "n")?, field(&jwk.e, "e")?);
                    let key = DecodingKey::from_rsa_components(&n, &e)
                        .map_err(|_| bad("RSA n or e is not base64url"))?;
                    let spki = crate::native::rsa_spki(&raw(&n, "n")?, &raw(&e, "e")?);
                    (KeyKind::Rsa, key, spki)
                }
                ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                    let (x, y) = (field(&jwk.x, "x")?, field(&jwk.y, "y")?);
                    let key = DecodingKey::from_ec_components(&x, &y)
                        .map_err(|_| bad("EC x or y is not a curve point"))?;
                    let p384 = crv == "P-384";
                    let spki = crate::native::ec_spki(p384, &raw(&x, "x")?, &raw(&y, "y")?);
                    let kind = if p384 { KeyKind::P384 } else { KeyKind::P256 };
                    (kind, key, spki)
                }
                ("OKP", Some("Ed25519")) => {
                    let x = field(&jwk.x, "x")?;
                    let key = DecodingKey::from_ed_components(&x)
                        .map_err(|_| bad("Ed25519 x is not base64url"))?;
                    (KeyKind::Ed25519, key, raw(&x, "x")?)
                }
                _ => continue,
            };
            let alg = match jwk.alg.as_deref() {
                None => None,
                Some(name) => Some(
                    parse_algorithm(name).ok_or_else(|| bad(&format!("unknown alg {name:?}")))?,
                ),
            };
            if alg.is_some_and(|a| !kind.verifies(a)) {
                return Err(bad("alg does not fit the key type"));
            }
            keys.push(VerifyingKey::new(jwk.kid, alg, kind, key, material));
        }
        if keys.is_empty() {
            return Err(JwksError::Empty);
        }
        Ok(Self { keys })
    }

    /// A set holding one HMAC secret (HS256/384/512 only).
    #[must_use]
    pub fn from_secret(kid: Option<String>, secret: &[u8]) -> Self {
        Self {
            keys: vec![VerifyingKey::new(
                kid,
                None,
                KeyKind::Secret,
                DecodingKey::from_secret(secret),
                secret.to_vec(),
            )],
        }
    }

    /// Keys that may verify a token with this `kid` and `alg`: the key with
    /// that id, or, when the token names none, every key fit for `alg`.
    pub fn candidates(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &VerifyingKey> {
        self.keys
            .iter()
            .filter(move |k| k.accepts(alg) && (kid.is_none() || k.kid() == kid))
    }

    /// Whether a key with this id exists (whatever its type).
    #[must_use]
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// Whether this set holds the key `identity` names: same `kid`, family,
    /// `alg` and material.
    #[must_use]
    pub fn contains(&self, identity: &KeyIdentity) -> bool {
        self.keys.iter().any(|k| k.identity == *identity)
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
