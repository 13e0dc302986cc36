//! Pure rate-limit logic of `gatehouse-ratelimit`, compatible with
//! envoyproxy/ratelimit: its YAML configuration, descriptor matching,
//! fixed-window counting (plus an opt-in sliding window), shadow, quota and
//! `replaces` semantics, and the store abstraction with an in-memory store.
//!
//! No tokio, tonic, axum or I/O here: time comes in as a parameter, counters
//! through the [`Store`] trait, and wire types stop at the service crate.

mod answer;
mod config;
pub mod demand;
mod glob;
mod key;
mod limiter;
pub mod quota;
mod request;
mod store;
mod unit;

pub use answer::{Added, Answers, OVER_LIMIT_MESSAGE};
pub use config::{Algorithm, ConfigError, Matched, RateLimitConfig, Rule, sanitize_stat_key};
pub use glob::matches as wildcard_matches;
pub use key::MAX_VERBATIM_BYTES;
pub use limiter::{
    Code, CurrentLimit, Decision, HeaderNames, Limiter, LimiterSettings, Outcome, Status,
};
pub use request::{
    Descriptor, LimitOverride, MAX_DESCRIPTORS, MAX_DOMAIN_BYTES, MAX_ENTRIES, MAX_HITS, Request,
    RequestError,
};
pub use store::{DEFAULT_MAX_KEYS, MemoryStore, Op, Store, StoreError};
pub use unit::Unit;
