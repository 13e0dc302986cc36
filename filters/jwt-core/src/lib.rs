//! Pure logic of the Gatehouse JWT filter, shared with `gatehouse-authz`.
//!
//! This crate builds for `wasm32-wasip1` and for the host. It must not depend on
//! proxy-wasm, tonic, axum, tokio, threads or the filesystem: adapters gather the
//! inputs (headers, time, configuration bytes), call in here and apply the outcome.
//!
//! Today it holds the filter's configuration and the rule that protects every
//! header the stack writes from verified data: client-sent copies are removed
//! before anything else runs (see `../shared/DESIGN.md`, "Contracts").

mod config;

pub use config::{ConfigError, FilterConfig};
