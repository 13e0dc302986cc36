//! `gatehouse-authz-core`: what the `gatehouse-authz` ext_authz service
//! decides, without gRPC, files or clocks.
//!
//! The service reads its YAML configuration and key files and hands the text
//! here; [`AuthzConfig::parse`] validates it (errors name the file and the
//! field), [`ApiKeys`] holds the hashed keys of one filter, and
//! [`Filters::check`] turns one request into a [`Verdict`].

mod apikeys;
mod check;
mod config;
pub mod identity;
pub mod session;
pub mod web;

pub use apikeys::{ApiKeys, KeysError, sha256_hex};
pub use check::{CheckInput, Filters, Selected, Verdict};
pub use config::{
    ApiKeyFilter, AuthzConfig, BearerTokens, ClaimRequirement, ClientAuth, ConfigError,
    DEFAULT_CLIENT_HEADER, FILTER_EXTENSION, FilterKind, KeyLocation, KeySource, OidcFilter,
    RedisSessionStore, SecretSource,
};
