//! `gatehouse-session-core`: the identity ticket of the SSO fast path, and
//! what the `gatehouse-session` proxy-wasm filter decides with it.
//!
//! gatehouse-authz stays the authority: after a full session check it
//! issues a short-lived ticket (a cookie) that says which identity headers
//! the request gets, MAC'd with a key derived from the filter's session
//! key. The filter verifies it inside Envoy with HMAC-SHA-256 (a few µs in
//! wasm, where opening the AES-sealed session would cost tens) and lets a
//! verified request skip the ext_authz call; anything else goes the slow
//! way, to gatehouse-authz.
//!
//! Here: the ticket's format ([`ticket`]), the keys and their rotation by
//! epoch ([`keys`]), the document gatehouse-authz serves the filter (keys
//! and revoked sessions, [`feed`]) and the filter's decision
//! ([`decide`]). Pure, no I/O, builds for `wasm32-wasip1`. What does not
//! live here: sealing sessions, the OIDC flow (gatehouse-authz-core) and
//! any host call (the filter, the service).

pub mod decide;
pub mod feed;
pub mod keys;
pub mod ticket;

pub use decide::{FastPath, FeedState, FilterConfig, Slow, decide};
pub use feed::{Feed, FilterFeed};
pub use keys::{KeyRing, TicketKey};
pub use ticket::{Ticket, TicketError};
