//! `gatehouse-config`: users describe their edge in Kubernetes-style YAML
//! resources, the shapes Ambassador users already write, and get an Envoy
//! bootstrap. Pure: text in, text out; the `gatehouse` binary does the files.
//!
//! Supported today: `Mapping` (see `envoy-config/README.md` for the fields
//! and the Ambassador compatibility table). Other kinds are refused with an
//! error naming the document.

mod render;
mod resources;

pub use render::{LiveFiles, RenderOptions, render_bootstrap, render_live, route_table, union_cds};
pub use resources::{Cors, Listener, Mapping, ResourceError, Resources, RetryPolicy, load};
