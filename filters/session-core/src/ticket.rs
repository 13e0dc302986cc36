//! The identity ticket: `<key id>.<payload>.<mac>`, the payload base64url
//! JSON of [`Ticket`], the MAC HMAC-SHA-256 over `gh1.<key id>.<payload>`
//! in base64url. Small (a few hundred bytes without forwarded tokens) so
//! that checking it costs a few µs in wasm.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::keys::{KeyRing, TicketKey};

/// The longest ticket a verifier reads: a browser keeps cookies up to 4 KB.
pub const MAX_TICKET_LEN: usize = 4096;

/// What a verified ticket lets the filter do for one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Unix seconds after which the ticket is refused.
    #[serde(rename = "x")]
    pub expires_at: u64,
    /// What a revocation may name to stop it: the session, the IdP's
    /// session, the subject (opaque hashes).
    #[serde(rename = "s")]
    pub handles: Vec<String>,
    /// Request headers to set (client copies replaced), exactly as the full
    /// check would set them.
    #[serde(rename = "h", default)]
    pub set: Vec<(String, String)>,
    /// Request headers to remove, as the full check would.
    #[serde(rename = "r", default)]
    pub remove: Vec<String>,
}

/// Why a ticket was not taken. Every one sends the request the slow way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not three base64url parts, too long, or a payload that is not a ticket.
    #[error("the ticket is malformed")]
    Malformed,
    /// Signed with a key the verifier does not have (foreign, or too old).
    #[error("the ticket's key is unknown")]
    UnknownKey,
    /// The MAC does not match: tampered or forged.
    #[error("the ticket's signature does not match")]
    BadSignature,
    /// Past its expiry.
    #[error("the ticket has expired")]
    Expired,
}

fn mac_of(key: &TicketKey, payload: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(b"gh1.");
    mac.update(key.id.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac
}

impl Ticket {
    /// The ticket as a cookie value, signed with `key`.
    ///
    /// # Panics
    /// Never: a ticket of strings and numbers always serializes.
    #[must_use]
    pub fn issue(&self, key: &TicketKey) -> String {
        let json = serde_json::to_vec(self)
            .unwrap_or_else(|_| unreachable!("a ticket of strings and numbers serializes"));
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = mac_of(key, &payload).finalize().into_bytes();
        format!("{}.{payload}.{}", key.id, URL_SAFE_NO_PAD.encode(tag))
    }

    /// The ticket in `text` if it is one of `ring`'s, untampered and not
    /// expired at `now`. The MAC is checked (in constant time) before the
    /// payload is parsed: nothing unsigned is ever read.
    ///
    /// # Errors
    /// Which [`TicketError`] refused it.
    pub fn verify(text: &str, ring: &KeyRing, now: u64) -> Result<Self, TicketError> {
        if text.len() > MAX_TICKET_LEN {
            return Err(TicketError::Malformed);
        }
        let mut parts = text.split('.');
        let (Some(id), Some(payload), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TicketError::Malformed);
        };
        let key = ring.get(id).ok_or(TicketError::UnknownKey)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TicketError::Malformed)?;
        mac_of(key, payload)
            .verify_slice(&tag)
            .map_err(|_| TicketError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TicketError::Malformed)?;
        let ticket: Self = serde_json::from_slice(&json).map_err(|_| TicketError::Malformed)?;
        if ticket.expires_at <= now {
            return Err(TicketError::Expired);
        }
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            expires_at: 1_000,
            handles: vec!["s1".into()],
            set: vec![("x-gatehouse-user".into(), "alice".into())],
            remove: vec!["x-gatehouse-email".into()],
        }
    }

    fn ring(keys: &[&TicketKey]) -> KeyRing {
        KeyRing::new(keys.iter().map(|k| (*k).clone()).collect())
    }

    #[test]
    fn an_issued_ticket_verifies_until_it_expires() {
        let key = TicketKey::derive(b"m", "sso", 1);
        let text = ticket().issue(&key);
        assert_eq!(Ticket::verify(&text, &ring(&[&key]), 999), Ok(ticket()));
        assert_eq!(
            Ticket::verify(&text, &ring(&[&key]), 1_000),
            Err(TicketError::Expired)
        );
    }

    #[test]
    fn a_foreign_key_is_refused() {
        let ours = TicketKey::derive(b"m", "sso", 1);
        let theirs = TicketKey::derive(b"attacker", "sso", 1);
        let text = ticket().issue(&theirs);
        assert_eq!(
            Ticket::verify(&text, &ring(&[&ours]), 0),
            Err(TicketError::UnknownKey)
        );
        // Their ticket under our key's name: the MAC tells.
        let forged = format!("{}{}", ours.id, &text[theirs.id.len()..]);
        assert_eq!(
            Ticket::verify(&forged, &ring(&[&ours]), 0),
            Err(TicketError::BadSignature)
        );
    }

    #[test]
    fn a_changed_payload_is_refused() {
        let key = TicketKey::derive(b"m", "sso", 1);
        let text = ticket().issue(&key);
        let mut better = ticket();
        better.set[0].1 = "admin".into();
        better.expires_at = u64::MAX;
        let other = better.issue(&TicketKey::derive(b"x", "sso", 1));
        let payload = other.split('.').nth(1).unwrap();
        let mut parts: Vec<&str> = text.split('.').collect();
        parts[1] = payload;
        assert_eq!(
            Ticket::verify(&parts.join("."), &ring(&[&key]), 0),
            Err(TicketError::BadSignature)
        );
    }

    #[test]
    fn malformed_tickets_are_refused() {
        let key = TicketKey::derive(b"m", "sso", 1);
        let r = ring(&[&key]);
        let good = ticket().issue(&key);
        for bad in [
            String::new(),
            "a.b".into(),
            format!("{good}.x"),
            format!("{}.!!.x", key.id),
            format!("{good}{}", "A".repeat(MAX_TICKET_LEN)),
        ] {
            assert!(Ticket::verify(&bad, &r, 0).is_err(), "{bad}");
        }
        // A valid MAC over something that is not a ticket.
        let payload = URL_SAFE_NO_PAD.encode(b"[1,2]");
        let tag = URL_SAFE_NO_PAD.encode(mac_of(&key, &payload).finalize().into_bytes());
        assert_eq!(
            Ticket::verify(&format!("{}.{payload}.{tag}", key.id), &r, 0),
            Err(TicketError::Malformed)
        );
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics_or_verifies_without_the_key(text in "[A-Za-z0-9._-]{0,300}") {
            let key = TicketKey::derive(b"m", "sso", 1);
            proptest::prop_assert!(Ticket::verify(&text, &ring(&[&key]), 0).is_err());
        }
    }
}
