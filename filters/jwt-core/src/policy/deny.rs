//! The answer to a refused request: status, RFC 6750 challenge and JSON body,
//! or Ambassador's `errorResponse` when one is configured.

use serde_json::Value;

use super::{Decision, DenyReason, Policy, RequestView};
use crate::verify::VerifyError;
use gatehouse_template_core::{Field, Template};

/// Ambassador's `errorResponse`: the content type, extra headers and body
/// template of every refusal.
#[derive(Debug, Clone, Default)]
pub struct ErrorResponse {
    pub(crate) content_type: Option<String>,
    pub(crate) headers: Vec<(String, Template)>,
    pub(crate) body: Option<Template>,
}

impl ErrorResponse {
    fn templates(&self) -> impl Iterator<Item = &Template> {
        self.headers.iter().map(|(_, t)| t).chain(&self.body)
    }

    /// The request headers its templates read, `x-request-id` for
    /// `.request_id`.
    pub(crate) fn request_headers(&self) -> impl Iterator<Item = &str> {
        let request_id = self
            .templates()
            .any(|t| t.prints(&Field::RequestId))
            .then_some(REQUEST_ID);
        self.templates()
            .flat_map(Template::request_headers)
            .chain(request_id)
    }
}

/// The header Envoy puts its request id in.
const REQUEST_ID: &str = "x-request-id";

impl Policy {
    pub(super) fn deny(
        &self,
        reason: DenyReason,
        error: Option<&VerifyError>,
        request: &RequestView<'_>,
    ) -> Decision {
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
        let status = reason.status();
        // Ambassador's default body has `message` and `status_code`; `code`
        // is ours, stable for clients to branch on.
        let default_body = || {
            serde_json::json!({ "code": reason.code(), "message": description, "status_code": status })
                .to_string()
        };
        let Some(custom) = &self.error else {
            return Decision::Deny {
                reason,
                status,
                headers: vec![
                    ("www-authenticate".into(), challenge),
                    ("content-type".into(), "application/json".into()),
                ],
                body: default_body(),
            };
        };
        let value = |f: &Field| match f {
            Field::StatusCode => Some(Value::from(status)),
            Field::Message => Some(Value::from(description)),
            Field::RequestId => Some(Value::from(request.header(REQUEST_ID).unwrap_or_default())),
            Field::RequestHeader(name) => {
                Some(Value::from(request.header(name).unwrap_or_default()))
            }
            _ => None,
        };
        let mut headers = vec![("www-authenticate".to_owned(), challenge)];
        // A `content-type` entry of the headers replaces the default.
        if !custom.headers.iter().any(|(n, _)| n == "content-type") {
            headers.push((
                "content-type".to_owned(),
                custom
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/json".into()),
            ));
        }
        headers.extend(
            custom
                .headers
                .iter()
                .filter_map(|(name, t)| t.render(&value).map(|v| (name.clone(), v))),
        );
        Decision::Deny {
            reason,
            status,
            headers,
            body: custom
                .body
                .as_ref()
                .and_then(|t| t.render(&value))
                .unwrap_or_else(default_body),
        }
    }
}
