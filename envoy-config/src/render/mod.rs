//! Resources to an Envoy bootstrap. Deterministic: the same resources give
//! byte-identical output (objects are written with sorted keys).
//!
//! One concern a file; each uses only files above it in this list:
//! - `options`: what the caller chooses, and [`RenderError`];
//! - `names`: the cluster, filter and header names the parts agree on;
//! - `defaults`: the Module's defaults given to the Mappings;
//! - `groups`: Mappings with one match as one route, their order and weights;
//! - `context`: what every part needs to know, and the checks across resources;
//! - `rules`: FilterPolicy rules onto route groups;
//! - `filters`: the HTTP filter chain, per-route filter settings, and the
//!   gatehouse-jwt, gatehouse-router and gatehouse-authz configurations;
//! - `clusters`, `routes`, `listener` (with `crate::sanitize`);
//! - `bootstrap` ([`render`]), `live` ([`render_live`]) and `table`
//!   ([`route_table`]): the three outputs.

mod bootstrap;
mod clusters;
mod context;
mod defaults;
mod filters;
mod groups;
mod listener;
mod live;
mod names;
mod options;
mod quota;
mod routes;
mod rules;
mod table;
#[cfg(test)]
mod tests;

pub use bootstrap::{
    Rendered, XdsJoin, XdsTls, render, render_bootstrap, render_xds_bootstrap,
    render_xds_bootstrap_of, render_xds_join,
};
pub use live::{LiveFiles, render_live, union_cds};
pub use names::OIDC_PATH_PREFIX;
pub use options::{RenderError, RenderOptions};
pub use table::route_table;
