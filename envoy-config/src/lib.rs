//! `gatehouse-config`: users describe their edge in Kubernetes-style YAML
//! resources, the shapes Ambassador users already write, and get an Envoy
//! bootstrap. Pure: text in, text out; the `gatehouse` binary does the files.
//!
//! Supported: `Mapping`, `Host`, `Listener`, `Filter` (JWT, OAuth2, APIKey),
//! `FilterPolicy`, `RateLimit` and `RateLimitService` (see `envoy-config/README.md` for the
//! fields and the Ambassador compatibility table). Other kinds and fields
//! are refused with an error naming the document and the field.
//!
//! What lives here, bottom up (a module imports only the ones above it):
//! - `doc`: the document layer: [`ResourceError`], the common head, parse helpers;
//! - `limits`, `policy`, `host`, `mapping`: one kind (or two close ones) each,
//!   raw document to domain type;
//! - `resources`: [`load`] hands each document to its kind; [`substitute`];
//! - `sanitize`: what every listener does to a request before routing;
//! - `render`: domain types to Envoy's configuration and the services'.
//!
//! What does not: files, processes and the command line (`src/bin/gatehouse.rs`),
//! the services themselves (they read the text rendered here), and anything
//! that talks to Envoy.

pub mod diag;
mod doc;
pub mod doctor;
mod flags;
mod host;
mod limits;
mod mapping;
mod module;
mod output;
mod policy;
mod render;
mod resources;
mod sanitize;

pub use doc::ResourceError;
pub use flags::{RenderFlags, var};
pub use host::{Host, Insecure, Listener, SecurityModel};
pub use limits::{
    DEFAULT_RATELIMIT_TIMEOUT_MS, Label, Labels, Limit, RateLimit, RateLimitService,
    service_configs,
};
pub use mapping::{
    AddedHeader, CircuitBreaker, Cors, Docs, HashOn, HealthCheck, LoadBalancer, Mapping, Outlier,
    Probe, RetryPolicy, Sticky,
};
pub use module::{IpRange, IpRule, Module};
pub use output::{RENDERED_HEADER, Written, write_atomically, write_services};
pub use policy::{
    ApiKeyFilter, Filter, FilterKind, FilterPolicy, FilterUse, HeaderCondition, JwtFilter,
    OAuth2Filter, PathMatch, PolicyRule, Url,
};
pub use render::{
    LiveFiles, OIDC_PATH_PREFIX, RenderError, RenderOptions, Rendered, XdsJoin, XdsTls, render,
    render_bootstrap, render_live, render_xds_bootstrap, render_xds_bootstrap_of, render_xds_join,
    route_table, union_cds,
};
pub use resources::{
    Instance, Outcome, Resources, load, load_files, load_for, report, resource_files, substitute,
};
