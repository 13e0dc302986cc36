//! `gatehouse-authz-core`: what the `gatehouse-authz` ext_authz service
//! decides, without gRPC, files, clocks, randomness or network.
//!
//! What lives here: the configuration ([`AuthzConfig::parse`] validates the
//! YAML the service read, errors naming the file and the field), API keys
//! ([`ApiKeys`], [`Filters::check`] turning a request into a [`Verdict`]),
//! sealed sessions and login flows ([`session`]), the identity headers
//! ([`identity`]), the small HTTP rules of the flow ([`web`]) and every
//! decision of OpenID Connect single sign-on ([`oidc`]: which part of the
//! flow a request is for, the callback's checks, refresh, logout,
//! back-channel logout), each a pure function of the request, the time,
//! the opened cookie and the IdP's answers, unit-tested branch by branch.
//!
//! What does not: talking to the IdP, Redis, the OS random source, the
//! clock, the file system, logging and Envoy's wire types. The service
//! (`ext-authz/server`) does that I/O and asks this crate what to do. Time
//! comes in as Unix seconds, random bytes as arguments.

mod apikeys;
mod check;
mod config;
pub mod identity;
pub mod oidc;
pub mod session;
pub mod web;

pub use apikeys::{ApiKeys, KeysError, sha256_hex};
pub use check::{CheckInput, Filters, Selected, Verdict};
pub use config::{
    ApiKeyFilter, AuthzConfig, BearerTokens, ClaimRequirement, ClientAuth, ConfigError,
    DEFAULT_CLIENT_HEADER, FILTER_EXTENSION, FastPath, FilterKind, KeyLocation, KeySource,
    OidcFilter, RedisSessionStore, SecretSource,
};
