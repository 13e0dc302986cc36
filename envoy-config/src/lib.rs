//! `gatehouse-config`: users describe their edge in Kubernetes-style YAML
//! resources, the shapes Ambassador users already write, and get an Envoy
//! bootstrap. Pure: text in, text out; the `gatehouse` binary does the files.
//!
//! Supported: `Mapping`, `Host`, `Listener`, `Filter` (JWT, OAuth2, APIKey),
//! `FilterPolicy`, `RateLimit` and `RateLimitService` (see `envoy-config/README.md` for the
//! fields and the Ambassador compatibility table). Other kinds and fields
//! are refused with an error naming the document and the field.

mod limits;
mod policy;
mod render;
mod resources;
mod sanitize;

pub use limits::{
    DEFAULT_RATELIMIT_TIMEOUT_MS, Label, Labels, Limit, RateLimit, RateLimitService,
    service_configs,
};
pub use policy::{
    ApiKeyFilter, Filter, FilterKind, FilterPolicy, FilterUse, HeaderCondition, JwtFilter,
    OAuth2Filter, PathMatch, PolicyRule, Url,
};
pub use render::{
    LiveFiles, OIDC_PATH_PREFIX, RenderError, RenderOptions, Rendered, render, render_bootstrap,
    render_live, route_table, union_cds,
};
pub use resources::{
    CircuitBreaker, Cors, Host, Insecure, Listener, Mapping, ResourceError, Resources, RetryPolicy,
    Sticky, load, substitute,
};
