//! Pure logic of the Gatehouse JWT filter, shared with `gatehouse-authz`.
//!
//! This crate builds for `wasm32-wasip1` and for the host. It must not depend on
//! proxy-wasm, tonic, axum, tokio, threads or the filesystem: adapters gather the
//! inputs (headers, time, configuration bytes), call in here and apply the outcome.
//! The crypto backend of `jsonwebtoken` is chosen by each binary, not here.
//!
//! It holds the filter's configuration, the rule that protects every header the
//! stack writes from verified data (client-sent copies are removed before
//! anything else runs, see `../shared/DESIGN.md`, "Contracts"), token
//! verification (compact JWS parsing, JWKS keys, signatures and claims), the
//! per-request decision with its refusal reasons, the verified-token cache, and
//! the schedule of remote JWKS fetches shared by Envoy's workers ([`refresh`],
//! behind the [`JwksHost`] trait the adapter implements with proxy-wasm calls).
//! What it does not hold: host calls, logs and stats, which stay in the adapter.

mod cache;
mod config;
mod error;
mod jwks;
pub mod native;
mod policy;
pub mod refresh;
mod token;
mod verify;

pub use cache::{MAX_TRUST_SECS, TokenCache};
pub use config::FilterConfig;
pub use error::ConfigError;
pub use jsonwebtoken::Algorithm;
pub use jwks::{JwksError, KeyIdentity, KeyKind, KeySet, VerifyingKey, parse_algorithm};
pub use policy::{
    Decision, DenyReason, ErrorResponse, Location, Needs, Policy, ProviderConfig, RemoteJwks,
    RequestView,
};
pub use refresh::{FetchError, JwksHost, JwksRefresh, RequestFetch, SharedEntry};
pub use token::{CompactJwt, MAX_TOKEN_BYTES, TokenError};
pub use verify::{Host, NoHost, Provider, Verified, VerifyError};
