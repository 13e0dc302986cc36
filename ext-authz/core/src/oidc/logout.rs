//! Logging out: who may, and where the browser goes then. The service ends
//! the stored session (if any) and clears the cookie in between.

use std::collections::HashMap;

use crate::check::Verdict;
use crate::config::OidcFilter;
use crate::web::percent_encode;

use super::{HttpView, redirect};

/// Whether `request` may log out: POST only (a link or an image cannot log
/// anyone out) and only from this site, so a cross-site form cannot either.
///
/// # Errors
/// 405 for another method, 403 for a request not from this site
/// ([`is_from_this_site`]).
pub fn check(request: &HttpView<'_>) -> Result<(), Verdict> {
    if !request.method.eq_ignore_ascii_case("POST") {
        return Err(Verdict::deny(
            405,
            "method_not_allowed",
            "log out with POST",
        ));
    }
    if !is_from_this_site(request.headers, request.host) {
        return Err(Verdict::deny(
            403,
            "cross_site_logout",
            "log out from this site",
        ));
    }
    Ok(())
}

/// Whether a request comes from a page of `host` itself. `Sec-Fetch-Site`
/// decides when the browser sent it (only `same-origin`: a sibling
/// subdomain is `same-site` and is refused); else `Origin`'s host must be
/// `host` (ASCII case aside). Neither header, or an opaque `Origin: null`:
/// not from here.
#[must_use]
pub fn is_from_this_site(headers: &HashMap<String, String>, host: &str) -> bool {
    let same_site = headers.get("sec-fetch-site").map(String::as_str);
    let origin_host = headers
        .get("origin")
        .and_then(|o| o.split_once("://"))
        .map(|(_, h)| h);
    match (same_site, origin_host) {
        (Some(site), _) => site == "same-origin",
        (None, Some(origin)) => origin.eq_ignore_ascii_case(host),
        (None, None) => false,
    }
}

/// Where the browser goes after logging out. With RP-initiated logout
/// configured, an `end_session_endpoint` discovered and a session that was
/// open (its ID token, `id_token_hint`), the IdP's logout, which returns
/// to `post_logout_redirect_url` if configured. Else, locally, to
/// `post_logout_redirect_url` or `/`. Only configured and discovered URLs:
/// nothing in the request chooses the target.
#[must_use]
pub fn location(filter: &OidcFilter, end_session: Option<&str>, id_token: Option<&str>) -> String {
    let after = filter.post_logout_redirect_url.as_deref();
    match (end_session.filter(|_| filter.rp_initiated_logout), id_token) {
        (Some(endpoint), Some(id_token)) => {
            let mut url = format!(
                "{endpoint}{}id_token_hint={}&client_id={}",
                if endpoint.contains('?') { '&' } else { '?' },
                percent_encode(id_token),
                percent_encode(&filter.client_id)
            );
            if let Some(after) = after {
                url.push_str("&post_logout_redirect_uri=");
                url.push_str(&percent_encode(after));
            }
            url
        }
        _ => after.unwrap_or("/").to_owned(),
    }
}

/// Logged out: to `location`, clearing the session cookie (`clear`).
#[must_use]
pub fn logged_out(location: &str, clear: Vec<String>) -> Verdict {
    redirect(location, clear)
}

#[cfg(test)]
mod tests;
