//! Request parsing shared by every crate that reads requests
//! (gatehouse-jwt-core, gatehouse-router-core, gatehouse-authz-core): one
//! rule each for cookies ([`cookie`]), query parameters ([`query`]),
//! percent-decoding ([`percent`]), path prefixes ([`path`]), header lookup
//! ([`header`]) and the value condition of a matching rule ([`value`]).
//!
//! What does not live here: what a rule *does* with a value (that stays in
//! each core), and anything with I/O. Pure and dependency-free, so it
//! builds for `wasm32-wasip1`; the lookups are hand-written because the
//! filters' wasm size is paid per byte and these are a few dozen lines.

pub mod cookie;
pub mod header;
pub mod path;
pub mod percent;
pub mod query;
pub mod value;
