//! `gatehouse serve`: an xDS control plane. It renders the same resources
//! `gatehouse render` does and serves them to many Envoys over the
//! aggregated discovery service (ADS): clusters, their endpoints (EDS),
//! listeners, their certificates (SDS, over mutual TLS) and their routes
//! (RDS), a new version whenever the resources change
//! and render, the last good version while they do not. An Envoy's node
//! cluster names the Ambassador instance whose resources it gets.

pub mod ads;
pub mod fleet;
pub mod proto;
pub mod snapshot;
pub mod split;
