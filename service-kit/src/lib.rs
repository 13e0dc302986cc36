//! What `gatehouse-authz` and `gatehouse-ratelimit` share as services: the
//! process around the decisions, written once.
//!
//! Here: clean shutdown on SIGTERM/SIGINT ([`shutdown`]), the `tracing`
//! subscriber ([`logging`]), the `GATEHOUSE_READY_FILE` ([`ready_file`]), the
//! HTTP side port's `/healthz`, `/readyz` and `/metrics` ([`side_port`]), the
//! configuration watcher ([`watch`]) and the error of a configuration load
//! ([`LoadError`]).
//!
//! Not here: anything a service decides. No gRPC, no configuration format, no
//! metric of its own: each service registers its metrics, parses its files and
//! serves its protocol; the kit only runs them.

pub mod load;
pub mod logging;
pub mod ready_file;
pub mod shutdown;
pub mod side_port;
pub mod watch;

pub use load::LoadError;
pub use logging::{LogFormat, init_tracing};
pub use ready_file::Listening;
pub use shutdown::Shutdown;
pub use side_port::{NoDependencies, Readiness, SidePort};
pub use watch::{Reload, WatchPlan, spawn_watcher};
