//! The names and formats the parts of a rendered configuration must agree
//! on: a route names the cluster `clusters` defines and switches on the
//! filter `filters` puts in the chain; gatehouse-router writes the header a
//! sticky route matches; gatehouse-authz serves the OIDC paths a route
//! leaves to it.

use crate::mapping::Mapping;
use crate::policy::Url;

/// The ext_authz filter in the chain, and in routes that set it.
pub(super) const AUTHZ_FILTER: &str = "gatehouse.authz";
/// The gatehouse-router wasm filter in the chain.
pub(super) const ROUTER_FILTER: &str = "gatehouse.router";
/// The header gatehouse-router names a sticky split's member in.
pub(super) const ROUTE_HEADER: &str = "x-gatehouse-route";
/// Where a JWT Filter's token arrives; routes it guards remove it.
pub(super) const JWT_TOKEN_HEADER: &str = "authorization";
/// The cluster of gatehouse-authz's fast-path feed (its Unix socket).
pub(super) const FEED_CLUSTER: &str = "gatehouse_authz_feed";
/// The header gatehouse-session marks a verified request with: ext_authz
/// is skipped for it, and the route table removes it before the upstream.
pub(super) const VERIFIED_HEADER: &str = "x-gatehouse-session-verified";
/// The clusters of gatehouse-authz and gatehouse-ratelimit.
pub(super) const AUTHZ_CLUSTER: &str = "gatehouse_authz";
pub(super) const RATELIMIT_CLUSTER: &str = "gatehouse_ratelimit";
/// Where an OAuth2 Filter's callback and logout live: `<prefix><filter>/…`.
pub const OIDC_PATH_PREFIX: &str = "/.gatehouse/oidc/";

/// The cluster of a Mapping's upstream: one per host, port, TLS and gRPC.
pub(super) fn cluster_name(m: &Mapping) -> String {
    let mut name = format!("{}_{}", name_safe(&m.host), m.port);
    if m.tls {
        name.push_str("_tls");
    }
    if m.grpc {
        name.push_str("_grpc");
    }
    name
}

/// The name of a JWT Filter's wasm filter in the chain and in routes.
pub(super) fn jwt_filter_name(filter: &str) -> String {
    format!("gatehouse.jwt.{filter}")
}

/// The name of an OAuth2 Filter's gatehouse-session filter in the chain
/// and in routes.
pub(super) fn session_filter_name(filter: &str) -> String {
    format!("gatehouse.session.{filter}")
}

/// The ticket cookie of the OAuth2 Filter `filter`.
pub(super) fn ticket_cookie_name(filter: &str) -> String {
    format!("{}_ticket", session_cookie_name(filter))
}

/// The cluster Envoy fetches a JWKS through.
pub(super) fn jwks_cluster_name(u: &Url) -> String {
    format!("jwks_{}_{}", name_safe(&u.host), u.port)
}

/// A host name as part of a cluster name: letters and digits kept, every
/// other character `_`.
fn name_safe(host: &str) -> String {
    host.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The session cookie of the OAuth2 Filter `filter`: a cookie name holds
/// only letters, digits and `_`.
pub(super) fn session_cookie_name(filter: &str) -> String {
    format!(
        "gatehouse_{}",
        filter.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// A duration as Envoy reads it: seconds with a fraction (`1.5s`).
pub(super) fn seconds_text(ms: u64) -> String {
    format!("{}s", ms as f64 / 1000.0)
}
