//! What every child the harness starts shares: which binary, which CPUs it
//! is pinned to, whether its log is printed when its handle drops, and (for
//! the two Gatehouse services) the wait for its ready file and `/readyz`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::process::ChildProcess;

/// How one child is started, set by the builder methods that
/// [`launch_options!`](crate::launch_options) gives a builder.
#[derive(Debug, Clone)]
pub struct Launch {
    pub(crate) binary: Option<PathBuf>,
    pub(crate) cpus: Option<String>,
    pub(crate) log_on_drop: bool,
}

impl Default for Launch {
    fn default() -> Self {
        Self {
            binary: None,
            cpus: None,
            log_on_drop: true,
        }
    }
}

/// A ready file that names the service's side HTTP port, where `/readyz`
/// answers.
pub(crate) trait ServesReadyz: serde::de::DeserializeOwned {
    fn http(&self) -> SocketAddr;
}

impl Launch {
    /// A command for `program`, pinned when asked, with an empty environment
    /// but `PATH`.
    pub(crate) fn command(&self, program: &Path) -> Result<Command> {
        let mut command = crate::process::pinned_command(self.cpus.as_deref(), program)?;
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        Ok(command)
    }

    /// A command for this workspace's service `name` (or the binary set with
    /// `binary`), as [`Launch::command`].
    pub(crate) fn service_command(&self, name: &str) -> Result<Command> {
        let bin = match &self.binary {
            Some(path) => path.clone(),
            None => crate::paths::service_bin(name)?,
        };
        self.command(&bin)
    }

    /// Spawns `command` as service `name` in `dir` (its log `dir/<name>.log`)
    /// and waits until it has written the ready file it is told of
    /// (`GATEHOUSE_READY_FILE`) and its `/readyz` answers 200.
    pub(crate) async fn start_service<R: ServesReadyz>(
        &self,
        name: &str,
        command: &mut Command,
        dir: &Path,
    ) -> Result<(ChildProcess, R, reqwest::Client)> {
        let ready_file = dir.join("ready.json");
        command.env("GATEHOUSE_READY_FILE", &ready_file);
        let mut process = ChildProcess::spawn(name, command, &dir.join(format!("{name}.log")))?;
        process.set_log_on_drop(self.log_on_drop);
        let client = reqwest::Client::builder().no_proxy().build()?;
        let ready: R =
            crate::process::until_ready_file(name, &mut process, &ready_file, |ready: &R| {
                crate::process::answers_ok(
                    client.clone(),
                    format!("http://{}/readyz", ready.http()),
                )
            })
            .await?;
        Ok((process, ready, client))
    }
}

/// Builder methods over a `launch: Launch` field: `cpus` and `log_on_drop`,
/// and with `binary` also `binary`.
#[macro_export]
macro_rules! launch_options {
    (binary) => {
        /// Runs this binary instead of the workspace's `target/debug` one.
        #[must_use]
        pub fn binary(mut self, path: std::path::PathBuf) -> Self {
            self.launch.binary = Some(path);
            self
        }
        $crate::launch_options!();
    };
    () => {
        /// Pins the child to a CPU list (`taskset -c`), e.g. `"0"`.
        #[must_use]
        pub fn cpus(mut self, list: &str) -> Self {
            self.launch.cpus = Some(list.to_owned());
            self
        }

        /// Whether dropping the child prints its log (default on, for tests).
        #[must_use]
        pub fn log_on_drop(mut self, on: bool) -> Self {
            self.launch.log_on_drop = on;
            self
        }
    };
}
