//! `gatehouse serve`: an xDS control plane. It renders the same resources
//! `gatehouse render` does and serves them to many Envoys over the
//! aggregated discovery service (ADS): listeners (routes inline) and
//! clusters (endpoints inline), a new version whenever the resources change
//! and render, the last good version while they do not.

pub mod ads;
pub mod proto;
pub mod snapshot;
