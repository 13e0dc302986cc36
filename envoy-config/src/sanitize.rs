//! What every rendered listener does to a request before any route is
//! chosen, so that a path or header an attacker shapes cannot reach an
//! upstream by a route the filters of its real target do not run on.
//! `docs/security.md` is the threat model; `e2e/tests/adversarial.rs` attacks
//! each point through real Envoy.

use serde_json::{Value, json};

/// The HTTP connection manager settings every listener gets.
///
/// - `normalize_path` (RFC 3986 dot segments, `%2e` included, backslashes to
///   slashes) and `merge_slashes`: `/x/../secure`, `//secure` and
///   `/./secure` are routed, filtered and forwarded as `/secure`.
/// - `path_with_escaped_slashes_action: REJECT_REQUEST`: `%2F` and `%5C`
///   are answered 400. Routing sees `/a%2Fb` as one segment while many
///   upstreams decode it into two; unescaping instead would change the
///   meaning of an API that carries an escaped slash on purpose, so
///   neither is guessed.
/// - `headers_with_underscores_action: DROP_HEADER`: `x_gatehouse_user` is
///   removed, because CGI-style servers (WSGI, Rack, PHP) read it as
///   `X-Gatehouse-User`, a header the stack writes. Dropped rather than
///   refused so a client that sends a harmless one still gets an answer;
///   Envoy counts them (`http.<listener>.dropped_headers_with_underscores`
///   for HTTP/2, `http1.dropped_headers_with_underscores`).
pub(crate) fn harden(hcm: &mut Value) {
    hcm["normalize_path"] = json!(true);
    hcm["merge_slashes"] = json!(true);
    hcm["path_with_escaped_slashes_action"] = json!("REJECT_REQUEST");
    hcm["common_http_protocol_options"] =
        json!({ "headers_with_underscores_action": "DROP_HEADER" });
}

/// Paths no rendered route may see, answered 400 by the first route of
/// every virtual host: a `;` (Java servers strip `;params` from each
/// segment, so `/secure;x/y` routed as public reaches Tomcat as
/// `/secure/y`) and an encoded NUL (`%00`, where C-string upstreams cut the
/// path). Route matching reads the path without its query, so `;` in a
/// query string is unaffected. `per_filter` switches the listener's filters
/// off for it.
pub(crate) fn refused_paths_route(per_filter: serde_json::Map<String, Value>) -> Value {
    let mut route = json!({
        "name": "gatehouse-refused-path",
        "match": { "safe_regex": { "regex": REFUSED_PATH_REGEX } },
        "direct_response": {
            "status": 400,
            "body": { "inline_string": "{\"code\":\"bad_path\",\"message\":\"path parameters (;) and %00 are refused\"}" },
        },
        "response_headers_to_add": [{
            "header": { "key": "content-type", "value": "application/json" },
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }],
    });
    if !per_filter.is_empty() {
        route["typed_per_filter_config"] = Value::Object(per_filter);
    }
    route
}

/// RE2, matched against the whole path without its query.
const REFUSED_PATH_REGEX: &str = "[^;]*(;|%00).*";

/// The path as the access log writes it: without the query, which carries
/// OIDC `code` and `state`, reset tokens and API keys some clients put
/// there. The original path (before a Mapping's rewrite) when there is one.
pub(crate) const LOGGED_PATH: &str = "%PATH(NQ:ORIG_OR_PATH)%";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listener_setting_is_the_strict_one() {
        let mut hcm = json!({});
        harden(&mut hcm);
        assert_eq!(hcm["normalize_path"], true);
        assert_eq!(hcm["merge_slashes"], true);
        assert_eq!(hcm["path_with_escaped_slashes_action"], "REJECT_REQUEST");
        assert_eq!(
            hcm["common_http_protocol_options"]["headers_with_underscores_action"],
            "DROP_HEADER"
        );
    }

    #[test]
    fn logged_path_leaves_the_query_out() {
        assert!(LOGGED_PATH.contains("NQ"));
    }
}
