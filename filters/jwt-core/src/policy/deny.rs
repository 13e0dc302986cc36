//! The answer to a refused request: status, RFC 6750 challenge and JSON body.

use super::{Decision, DenyReason, Policy};
use crate::verify::VerifyError;

impl Policy {
    pub(super) fn deny(&self, reason: DenyReason, error: Option<&VerifyError>) -> Decision {
        // RFC 6750 §3: a request without credentials gets the challenge
        // without an error code; a bad token gets invalid_token. The
        // description is generic on purpose: it must not help forging.
        let description = match (reason, error) {
            (DenyReason::InsufficientClaims, _) => "the token lacks a required claim",
            (_, Some(VerifyError::Expired)) => "the token has expired",
            (_, Some(VerifyError::NotYetValid)) => "the token is not valid yet",
            (_, Some(_)) => "the token is not valid",
            (DenyReason::MissingToken, None) => "a bearer token is required",
            (DenyReason::InvalidToken, None) => "the token is not valid",
        };
        let challenge = match reason {
            DenyReason::MissingToken => format!("Bearer realm=\"{}\"", self.realm),
            DenyReason::InsufficientClaims => format!(
                "Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"{description}\"",
                self.realm
            ),
            DenyReason::InvalidToken => format!(
                "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{description}\"",
                self.realm
            ),
        };
        Decision::Deny {
            reason,
            status: reason.status(),
            headers: vec![
                ("www-authenticate".into(), challenge),
                ("content-type".into(), "application/json".into()),
            ],
            body: serde_json::json!({ "code": reason.code(), "message": description }).to_string(),
        }
    }
}
