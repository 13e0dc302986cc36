//! `gatehouse-router-core`: what the `gatehouse-router` proxy-wasm filter
//! decides, without proxy-wasm.
//!
//! Ordered rules match a request's headers, cookies, query parameters, path
//! and method (verified claims arrive as headers written by gatehouse-jwt),
//! optionally only for a sticky percentage of users, and the first match
//! names the target the route table reads (through `cluster_header`), sets
//! or removes headers, and may rewrite the path prefix.

mod config;
mod decide;

pub use config::{ConfigError, RouterConfig};
pub use decide::{Action, Request, bucket_of};
