//! Ambassador's `insteadOfRedirect` (a FilterPolicy argument of an OAuth2
//! Filter): a request without a session that would be sent to the IdP gets
//! a status instead, when its header condition holds (or always, without
//! one). The route names it in `context_extensions`
//! ([`INSTEAD_OF_REDIRECT_EXTENSION`]), as JSON the renderer writes.

use std::collections::HashMap;

use serde::Deserialize;

/// The `context_extensions` key a route sets to answer instead of sending
/// a browser to the IdP.
pub const INSTEAD_OF_REDIRECT_EXTENSION: &str = "gatehouse_instead_of_redirect";

/// What a request without a session gets instead of the login redirect.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsteadOfRedirect {
    /// The status answered (4xx or 5xx).
    pub status: u16,
    /// Only for requests this holds for; `None`: every request.
    #[serde(default)]
    pub header: Option<HeaderRule>,
}

/// A header condition, as Ambassador's `ifRequestHeader`: the header is
/// present and non-empty, or equal to `value`; `negate` turns it around.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRule {
    /// Lowercase header name.
    pub name: String,
    /// The exact value, if one is asked for.
    #[serde(default)]
    pub value: Option<String>,
    /// Holds when the header does not match.
    #[serde(default)]
    pub negate: bool,
}

impl InsteadOfRedirect {
    /// Parses the route's extension.
    ///
    /// # Errors
    /// Not the JSON the renderer writes, or a status outside 400..=599.
    pub fn parse(text: &str) -> Result<Self, String> {
        let this: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if !(400..=599).contains(&this.status) {
            return Err(format!("status {} is not an error status", this.status));
        }
        if this
            .header
            .as_ref()
            .is_some_and(|h| h.name.is_empty() || h.name.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return Err("the header name must be lowercase and not empty".into());
        }
        Ok(this)
    }

    /// Whether a request with `headers` gets the status.
    #[must_use]
    pub fn applies(&self, headers: &HashMap<String, String>) -> bool {
        let Some(rule) = &self.header else {
            return true;
        };
        let value = headers.get(&rule.name).map(String::as_str);
        let matches = match &rule.value {
            Some(want) => value == Some(want.as_str()),
            None => value.is_some_and(|v| !v.is_empty()),
        };
        matches != rule.negate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_header_condition_decides_as_in_ambassador() {
        let always = InsteadOfRedirect::parse(r#"{"status": 403}"#).unwrap();
        assert!(always.applies(&headers(&[])));
        let present =
            InsteadOfRedirect::parse(r#"{"status": 401, "header": {"name": "x-api"}}"#).unwrap();
        assert!(present.applies(&headers(&[("x-api", "1")])));
        assert!(
            !present.applies(&headers(&[("x-api", "")])),
            "empty is absent"
        );
        assert!(!present.applies(&headers(&[])));
        let exact = InsteadOfRedirect::parse(
            r#"{"status": 401, "header": {"name": "accept", "value": "application/json", "negate": true}}"#,
        )
        .unwrap();
        assert!(!exact.applies(&headers(&[("accept", "application/json")])));
        assert!(exact.applies(&headers(&[("accept", "text/html")])));
        assert!(exact.applies(&headers(&[])));
    }

    #[test]
    fn anything_else_is_refused() {
        for text in [
            "",
            "{}",
            r#"{"status": 302}"#,
            r#"{"status": 403, "extra": 1}"#,
            r#"{"status": 403, "header": {"name": "X-Api"}}"#,
            r#"{"status": 403, "header": {"name": ""}}"#,
        ] {
            assert!(InsteadOfRedirect::parse(text).is_err(), "{text}");
        }
    }
}
