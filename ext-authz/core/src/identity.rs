//! Who a request is, and how that goes upstream in headers.
//!
//! Claim values come from the IdP (or a machine client's token issuer), and
//! a header is no place for everything a JSON string can hold: a CR/LF could
//! split a header where a proxy on the way is lax, and a comma inside one
//! group would read upstream as two groups. So every identity header value
//! is encoded the same way, see [`header_value`].

use serde_json::{Map, Value};

use crate::config::OidcFilter;

/// The identity headers of one request: what to set, what to remove (a
/// client's own copies of the headers we do not set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    /// Headers to set, replacing any client copy.
    pub set: Vec<(String, String)>,
    /// Headers to remove.
    pub remove: Vec<String>,
}

/// A claim value as it goes into a header: `%`, `,` and every control
/// character (`0x00`–`0x1f`, `0x7f`: CR, LF, NUL, TAB, …) are
/// percent-encoded as `%XX` (uppercase hex); everything else stays as the
/// issuer sent it. Lossless: an upstream that percent-decodes each item gets
/// the exact claim back, and an upstream that does not still never sees a
/// line break or a stray list separator.
#[must_use]
pub fn header_value(claim: &str) -> String {
    let mut out = String::with_capacity(claim.len());
    for c in claim.chars() {
        if c == '%' || c == ',' || c.is_ascii_control() {
            out.push_str(&format!("%{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// A list claim (`groups`) as one header value: each item encoded with
/// [`header_value`] (so a `,` inside a group becomes `%2C`), joined by `,`.
#[must_use]
pub fn list_header_value(items: &[String]) -> String {
    items
        .iter()
        .map(|i| header_value(i))
        .collect::<Vec<_>>()
        .join(",")
}

/// The identity headers for a user: `sub`, `email` (removed when absent)
/// and `groups` (removed when empty), under the filter's header names.
#[must_use]
pub fn identity_headers(
    filter: &OidcFilter,
    sub: &str,
    email: Option<&str>,
    groups: &[String],
) -> IdentityHeaders {
    let mut out = IdentityHeaders {
        set: vec![(filter.user_header.clone(), header_value(sub))],
        remove: Vec::new(),
    };
    match email {
        Some(e) => out.set.push((filter.email_header.clone(), header_value(e))),
        None => out.remove.push(filter.email_header.clone()),
    }
    if groups.is_empty() {
        out.remove.push(filter.groups_header.clone());
    } else {
        out.set
            .push((filter.groups_header.clone(), list_header_value(groups)));
    }
    out
}

/// Why a verified bearer token is still refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerRefusal {
    /// The token has no `exp` (or not a number): a token that never expires
    /// is not accepted. 401.
    #[error("the token has no expiry")]
    NoExpiry,
    /// A required claim is missing or has another value. 403.
    #[error("the token lacks a required claim")]
    MissingClaim,
    /// None of the filter's required groups. 403.
    #[error("the token lacks a required group")]
    MissingGroup,
}

impl BearerRefusal {
    /// The HTTP status the refusal gets.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::NoExpiry => 401,
            Self::MissingClaim | Self::MissingGroup => 403,
        }
    }
}

/// What the filter asks of a bearer token beyond its signature, issuer,
/// audience and times (which the JWT verifier checked): an `exp`, the
/// required claims and groups. The token's identity headers when it passes.
///
/// # Errors
/// [`BearerRefusal`]: no `exp`, a required claim or group missing.
pub fn bearer_identity(
    filter: &OidcFilter,
    claims: &Map<String, Value>,
) -> Result<IdentityHeaders, BearerRefusal> {
    if !claims.get("exp").is_some_and(Value::is_number) {
        return Err(BearerRefusal::NoExpiry);
    }
    if !filter.required_claims.iter().all(|r| r.holds(claims)) {
        return Err(BearerRefusal::MissingClaim);
    }
    let groups: Vec<String> = claims
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if !filter.required_groups.is_empty()
        && !groups.iter().any(|g| filter.required_groups.contains(g))
    {
        return Err(BearerRefusal::MissingGroup);
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    Ok(identity_headers(
        filter,
        text("sub").unwrap_or_default(),
        text("email"),
        &groups,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthzConfig, FilterKind};
    use proptest::prelude::*;

    fn filter(extra: &str) -> OidcFilter {
        let config = AuthzConfig::parse(
            &format!("filters:\n  sso:\n    oidc:\n      issuer: https://idp.example\n      client_id: app\n      client_secret_file: s\n      callback_url: https://app.example/cb\n      session_keys_file: k\n{extra}"),
            "authz.yaml",
        )
        .unwrap();
        let FilterKind::Oidc(f) = &config.filters()["sso"] else {
            panic!("oidc expected")
        };
        (**f).clone()
    }

    #[test]
    fn control_characters_and_separators_in_claims_are_encoded() {
        assert_eq!(header_value("alice"), "alice");
        assert_eq!(header_value("alice\r\nx-admin: 1"), "alice%0D%0Ax-admin: 1");
        assert_eq!(header_value("a\0b\tc\u{7f}"), "a%00b%09c%7F");
        assert_eq!(header_value("100%,a"), "100%25%2Ca");
        assert_eq!(header_value("Zoë"), "Zoë", "non-ASCII stays");
        assert_eq!(
            list_header_value(&["staff".into(), "admins,ops".into(), "x\ny".into()]),
            "staff,admins%2Cops,x%0Ay",
            "a comma inside a group never splits it"
        );
    }

    #[test]
    fn identity_headers_carry_encoded_claims_and_remove_what_is_absent() {
        let f = filter("");
        let h = identity_headers(&f, "bob\r\nx-gatehouse-groups: admins", None, &[]);
        assert_eq!(
            h.set,
            [(
                "x-gatehouse-user".to_owned(),
                "bob%0D%0Ax-gatehouse-groups: admins".to_owned()
            )]
        );
        assert_eq!(h.remove, ["x-gatehouse-email", "x-gatehouse-groups"]);
    }

    #[test]
    fn a_bearer_token_without_exp_is_refused() {
        let f = filter("");
        let claims = |v: serde_json::Value| v.as_object().cloned().unwrap();
        assert_eq!(
            bearer_identity(&f, &claims(serde_json::json!({"sub": "ci"}))),
            Err(BearerRefusal::NoExpiry)
        );
        assert_eq!(
            bearer_identity(&f, &claims(serde_json::json!({"sub": "ci", "exp": "soon"}))),
            Err(BearerRefusal::NoExpiry)
        );
        let ok = bearer_identity(
            &f,
            &claims(serde_json::json!({"sub": "ci", "exp": 10, "groups": ["a,b"]})),
        )
        .unwrap();
        assert_eq!(
            ok.set,
            [
                ("x-gatehouse-user".to_owned(), "ci".to_owned()),
                ("x-gatehouse-groups".to_owned(), "a%2Cb".to_owned())
            ]
        );
    }

    #[test]
    fn bearer_tokens_need_the_required_groups_and_claims() {
        let f = filter(
            "      required_groups: [ops]\n      required_claims: [{claim: tier, equals: gold}]\n",
        );
        let claims = |v: serde_json::Value| v.as_object().cloned().unwrap();
        assert_eq!(
            bearer_identity(&f, &claims(serde_json::json!({"exp": 1, "tier": "gold"}))),
            Err(BearerRefusal::MissingGroup)
        );
        assert_eq!(
            bearer_identity(
                &f,
                &claims(serde_json::json!({"exp": 1, "groups": ["ops"]}))
            ),
            Err(BearerRefusal::MissingClaim)
        );
        assert!(
            bearer_identity(
                &f,
                &claims(serde_json::json!({"exp": 1, "groups": ["ops"], "tier": "gold"}))
            )
            .is_ok()
        );
    }

    proptest! {
        #[test]
        fn an_encoded_claim_has_no_control_characters_or_commas(s in "\\PC*|[\\x00-\\x7f]{0,40}") {
            let v = header_value(&s);
            prop_assert!(!v.chars().any(|c| c.is_ascii_control() || c == ','));
        }
    }
}
