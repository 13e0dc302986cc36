//! A session of Envoy's native oauth2 filter, for the benchmarks' in-proxy
//! peer row: a real login through the filter against the test IdP.

use anyhow::{Context, Result, bail};

use crate::envoy::Envoy;
use crate::idp::{Idp, location};

/// The `Host` every oauth2 request carries: the filter binds its cookies to
/// the host, and the bench's Envoy is another process on another port.
pub const HOST: &str = "bench.local";

/// The client the template names, as the IdP must know it.
pub fn idp_client() -> serde_json::Value {
    serde_json::json!({
        "client_id": "envoy-oauth2",
        "client_secret": "oauth2-bench-secret",
        "redirect_uris": [format!("http://{HOST}/oauth2/callback")],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_post"
    })
}

fn cookies_of(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        // An empty value clears a cookie; base64 values may end in '='.
        .filter(|kv| kv.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .map(str::to_owned)
        .collect()
}

/// Logs in through `envoy`'s oauth2 filter and returns the `Cookie` header
/// value of the session (Envoy's cookies are `Secure`, so they are carried
/// by hand over plain http).
pub async fn login(envoy: &Envoy, idp: &Idp) -> Result<String> {
    let idp_client = reqwest::Client::builder()
        .no_proxy()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let plain = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let first = plain
        .get(envoy.url("/app/"))
        .header("host", HOST)
        .header("accept", "text/html")
        .send()
        .await?;
    if first.status() != 302 {
        bail!("oauth2 filter: expected a redirect, got {}", first.status());
    }
    let mut flow_cookies = cookies_of(&first);
    let next = idp
        .sign_in(
            &idp_client,
            &location(&first),
            &format!("http://{HOST}/oauth2/callback"),
        )
        .await?;
    let path = next
        .strip_prefix(&format!("http://{HOST}"))
        .context("the IdP never came back to the callback")?;
    let done = plain
        .get(envoy.url(path))
        .header("host", HOST)
        .header("cookie", flow_cookies.join("; "))
        .send()
        .await?;
    if done.status() != 302 {
        bail!("oauth2 callback: {} {}", done.status(), done.text().await?);
    }
    flow_cookies.extend(cookies_of(&done));
    let session = flow_cookies.join("; ");
    let check = plain
        .get(envoy.url("/app/"))
        .header("host", HOST)
        .header("cookie", &session)
        .send()
        .await?;
    if check.status() != 200 {
        bail!("the oauth2 session does not pass: {}", check.status());
    }
    Ok(session)
}
