//! Test harness for Gatehouse: runs the real stack as child processes on loopback.
//!
//! Every test gets its own stock Envoy (from the project's `.venv`, installed by
//! `make setup`), its own upstream echo servers and, when asked, its own
//! `redis-server`, all on ephemeral loopback ports, so tests run in parallel.
//! Readiness is polled with a deadline, never slept on. Children run in their own
//! process group and the whole group is killed when its handle drops: at the end
//! of a test that passes, fails or panics. Each child's log is printed when its
//! handle drops; the test runner shows that output only for failing tests.
//!
//! What lives here: one module per thing a test starts (Envoy from the
//! templates in `testdata/envoy/`, the two services, Redis, the OpenID
//! provider, echo upstreams, a JWKS server, a DNS server, Chromium), the demo token issuer,
//! and the scenario tests in `tests/`. What does not: the benchmark runner and
//! its null services (`bench/`, crate gatehouse-bench) and the `make run`
//! quickstart (`deploy/quickstart/`, crate gatehouse-quickstart), which use
//! this harness but are not tests; and Gatehouse itself: the harness runs
//! the real binaries and wasm filters, built by `make test`.

// Test support: failing loudly is the point, and an unwrap in a helper reads better
// than plumbing. The lints stay on for the rest of the workspace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod authz;
pub mod browser;
pub mod demo;
pub mod dns;
pub mod echo;
pub mod envoy;
pub mod idp;
pub mod jwks;
pub mod launch;
pub mod oauth2;
pub mod paths;
pub mod poll;
pub mod process;
pub mod ratelimit;
pub mod raw;
pub mod redis;
pub mod sso;

pub use authz::AuthzService;
pub use echo::{Echo, Echoed};
pub use envoy::{Envoy, EnvoyBuilder};
pub use ratelimit::RateLimitService;
pub use redis::Redis;
