//! API keys: held only as SHA-256 digests, looked up by digest.

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ConfigError;

/// Why a key file or secret directory was refused.
pub type KeysError = ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyFile {
    keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    sha256: String,
}

/// One filter's keys: SHA-256 digest to client name. The keys themselves are
/// never kept.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys {
    by_digest: HashMap<[u8; 32], String>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Digests are not secrets, but there is no reason to print them.
        f.debug_struct("ApiKeys")
            .field("clients", &self.by_digest.len())
            .finish()
    }
}

/// The lowercase hex SHA-256 of `key`: what a key file stores
/// (`printf %s "$KEY" | sha256sum` gives the same).
#[must_use]
pub fn sha256_hex(key: &[u8]) -> String {
    Sha256::digest(key)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// A client name goes upstream as a header value: visible ASCII only.
fn is_client_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic())
}

impl ApiKeys {
    /// Reads a key file: `keys: [{name, sha256}]`, `sha256` the hex digest
    /// of the key. `file` is only used in errors.
    ///
    /// # Errors
    /// [`KeysError`] naming the file and entry: malformed YAML, a digest
    /// that is not 64 hex digits, an empty or non-ASCII name, or a name or
    /// digest listed twice.
    pub fn from_key_file(text: &str, file: &str) -> Result<Self, KeysError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let raw: RawKeyFile =
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::yaml(file, e))?;
        let mut keys = Self::default();
        for (i, k) in raw.keys.into_iter().enumerate() {
            let at = format!("keys[{i}]");
            let digest = parse_hex32(&k.sha256).ok_or_else(|| {
                ConfigError::new(
                    file,
                    format!("{at}.sha256"),
                    "not a SHA-256 digest: write 64 hex digits (printf %s \"$KEY\" | sha256sum)",
                )
            })?;
            keys.add(digest, k.name, file, &at)?;
        }
        Ok(keys)
    }

    /// Hashes keys read from a mounted secret: (client name, key) pairs, a
    /// trailing newline of the key ignored (`echo` into a file adds one).
    ///
    /// # Errors
    /// [`KeysError`] naming the entry: an empty key, a bad name, or a key
    /// shared by two clients.
    pub fn from_secrets(
        entries: impl IntoIterator<Item = (String, Vec<u8>)>,
        dir: &str,
    ) -> Result<Self, KeysError> {
        let mut keys = Self::default();
        for (name, mut key) in entries {
            while matches!(key.last(), Some(b'\n' | b'\r')) {
                key.pop();
            }
            if key.is_empty() {
                return Err(ConfigError::new(dir, name, "the key is empty"));
            }
            let digest: [u8; 32] = Sha256::digest(&key).into();
            let at = name.clone();
            keys.add(digest, name, dir, &at)?;
        }
        Ok(keys)
    }

    fn add(
        &mut self,
        digest: [u8; 32],
        name: String,
        file: &str,
        at: &str,
    ) -> Result<(), KeysError> {
        if !is_client_name(&name) {
            return Err(ConfigError::new(
                file,
                format!("{at}.name"),
                format!("{name:?} is not a client name: use visible ASCII, no spaces"),
            ));
        }
        if self.by_digest.values().any(|n| *n == name) {
            return Err(ConfigError::new(
                file,
                format!("{at}.name"),
                format!("client {name:?} is listed twice"),
            ));
        }
        if let Some(other) = self.by_digest.get(&digest) {
            return Err(ConfigError::new(
                file,
                at,
                format!("this key is also client {other:?}'s: each client needs its own"),
            ));
        }
        self.by_digest.insert(digest, name);
        Ok(())
    }

    /// The client whose key `presented` is.
    ///
    /// The presented key is hashed, then looked up by digest: a lookup's
    /// timing can only tell how a digest of the attacker's own input compares
    /// with stored digests, which says nothing about any key. The final
    /// comparison is constant-time all the same.
    #[must_use]
    pub fn client(&self, presented: &[u8]) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        self.by_digest
            .get_key_value(&digest)
            .filter(|(stored, _)| bool::from(stored.ct_eq(&digest)))
            .map(|(_, name)| name.as_str())
    }

    /// Number of clients.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_key_file_holds_digests_and_finds_clients() {
        let text = format!(
            "keys:\n  - name: acme\n    sha256: {}\n  - name: globex\n    sha256: {}\n",
            sha256_hex(b"acme-secret"),
            sha256_hex(b"globex-secret").to_uppercase()
        );
        let keys = ApiKeys::from_key_file(&text, "keys.yaml").unwrap();
        assert_eq!(keys.client(b"acme-secret"), Some("acme"));
        assert_eq!(keys.client(b"globex-secret"), Some("globex"));
        assert_eq!(keys.client(b"acme-secreT"), None);
        assert_eq!(keys.client(b""), None);
        assert_eq!(keys.len(), 2);
        assert!(!format!("{keys:?}").contains(&sha256_hex(b"acme-secret")));
    }

    #[test]
    fn the_digest_matches_sha256sum() {
        // printf %s abc | sha256sum
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bad_key_files_name_the_entry() {
        let err = |t: &str| {
            ApiKeys::from_key_file(t, "keys.yaml")
                .unwrap_err()
                .to_string()
        };
        let d = sha256_hex(b"k");
        assert_eq!(
            err("keys:\n  - {name: a, sha256: abc}\n"),
            "keys.yaml: keys[0].sha256: not a SHA-256 digest: write 64 hex digits (printf %s \"$KEY\" | sha256sum)"
        );
        assert_eq!(
            err(&format!(
                "keys:\n  - {{name: a, sha256: {d}}}\n  - {{name: b, sha256: {d}}}\n"
            )),
            "keys.yaml: keys[1]: this key is also client \"a\"'s: each client needs its own"
        );
        assert!(
            err(&format!(
                "keys:\n  - {{name: a, sha256: {d}}}\n  - {{name: a, sha256: {}}}\n",
                sha256_hex(b"j")
            ))
            .contains("listed twice")
        );
        assert!(
            err(&format!("keys:\n  - {{name: 'a b', sha256: {d}}}\n")).contains("keys[0].name")
        );
        assert!(
            err("keys:\n  - {name: a}\n").starts_with("keys.yaml: keys[0]: missing field `sha256`")
        );
    }

    #[test]
    fn secrets_are_hashed_and_lose_a_trailing_newline() {
        let keys = ApiKeys::from_secrets(
            [
                ("acme".to_owned(), b"s3cret\n".to_vec()),
                ("globex".to_owned(), b"other".to_vec()),
            ],
            "/secrets",
        )
        .unwrap();
        assert_eq!(keys.client(b"s3cret"), Some("acme"));
        assert_eq!(keys.client(b"s3cret\n"), None);
        let empty = ApiKeys::from_secrets([("a".to_owned(), b"\n".to_vec())], "/secrets");
        assert_eq!(
            empty.unwrap_err().to_string(),
            "/secrets: a: the key is empty"
        );
    }

    proptest! {
        #[test]
        fn only_the_exact_key_finds_its_client(key in proptest::collection::vec(any::<u8>(), 1..64), other in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut trimmed = key.clone();
            while matches!(trimmed.last(), Some(b'\n' | b'\r')) { trimmed.pop(); }
            prop_assume!(!trimmed.is_empty());
            let keys = ApiKeys::from_secrets([("c".to_owned(), key.clone())], "d").unwrap();
            prop_assert_eq!(keys.client(&trimmed), Some("c"));
            if other != trimmed {
                prop_assert_eq!(keys.client(&other), None);
            }
        }
    }
}
