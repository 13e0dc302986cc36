//! Child processes that cannot outlive their test.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;

/// How many trailing log lines a dropped child prints.
const LOG_TAIL_LINES: usize = 400;

/// A child in its own process group, with stdout and stderr in one log file.
///
/// Dropping it kills the whole group (SIGKILL), reaps the child and prints the
/// tail of its log to stderr, which the test runner shows for failing tests.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: std::process::Child,
    log_path: PathBuf,
    log_on_drop: bool,
}

impl ChildProcess {
    /// Starts `command` as `name`, logging to `log_path`.
    pub fn spawn(name: &str, command: &mut Command, log_path: &Path) -> Result<Self> {
        let log = File::create(log_path)
            .with_context(|| format!("creating log file {}", log_path.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log_path: log_path.to_path_buf(),
            log_on_drop: true,
        })
    }

    /// The child's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the child has exited.
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether dropping prints the log tail (on by default; tests want it, a
    /// benchmark or the quickstart that ends normally does not).
    pub fn set_log_on_drop(&mut self, on: bool) {
        self.log_on_drop = on;
    }

    /// Kills the process group and reaps the child. Idempotent.
    pub fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // ESRCH (already gone) is fine: the group is what we wanted dead.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
        if !self.log_on_drop {
            return;
        }
        eprintln!(
            "----- {} (pid {}) log, last {LOG_TAIL_LINES} lines: {} -----\n{}\n----- end of {} log -----",
            self.name,
            self.child.id(),
            self.log_path.display(),
            self.log_tail(LOG_TAIL_LINES),
            self.name
        );
    }
}

/// A command for `program`, pinned to the CPU list `cpus` (`taskset -c`)
/// when given. `taskset` execs the program, so the pid is the program's.
pub fn pinned_command(cpus: Option<&str>, program: &Path) -> Result<Command> {
    Ok(match cpus {
        Some(list) => {
            let mut command = Command::new(crate::paths::tool(
                "taskset",
                "installs the Debian package util-linux",
            )?);
            command.arg("-c").arg(list).arg(program);
            command
        }
        None => Command::new(program),
    })
}

/// Pids of the live processes in process group `pgid`, read from `/proc`.
/// Zombies count as gone: they run nothing and hold no port.
pub fn processes_in_group(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // Fields after the parenthesised command: state ppid pgrp ...
            let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                return false;
            };
            let fields: Vec<&str> = after.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2) == Some(&pgid.to_string().as_str())
        })
        .collect()
}

/// Runs `<bin> --check-config <config>` for a service binary of this
/// workspace and returns what it printed; a refused configuration is an
/// error carrying the service's message.
pub fn check_config(bin: &str, config: &Path) -> Result<String> {
    let out = Command::new(crate::paths::service_bin(bin)?)
        .arg("--check-config")
        .arg(config)
        .output()
        .with_context(|| format!("running {bin}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "{bin} --check-config {}: {}",
            config.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command to completion with a deadline, returning its combined output.
pub async fn run_to_completion(
    command: &mut tokio::process::Command,
    deadline: std::time::Duration,
) -> Result<(ExitStatus, String)> {
    command.kill_on_drop(true).stdin(Stdio::null());
    let output = tokio::time::timeout(deadline, command.output())
        .await
        .with_context(|| format!("{command:?} did not finish within {deadline:?}"))?
        .with_context(|| format!("running {command:?}"))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status, text))
}

/// Waits until `process` has written its ready file (JSON, read as `T`) and
/// `probe` finds the addresses in it answering, e.g. a `/readyz` URL that
/// answers 200. Fails at once, with the tail of its log, if the process
/// exits first.
pub async fn until_ready_file<T, F, Fut>(
    name: &str,
    process: &mut ChildProcess,
    path: &Path,
    probe: F,
) -> Result<T>
where
    T: serde::de::DeserializeOwned,
    F: Fn(&T) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    crate::poll::until(
        &format!("{name} ready"),
        crate::poll::READY_DEADLINE,
        || {
            let exited = process.exit_status();
            let log = process.log_tail(40);
            let ready = std::fs::read_to_string(path)
                .ok()
                .and_then(|f| serde_json::from_str::<T>(&f).ok());
            let probe = &probe;
            async move {
                if let Some(status) = exited? {
                    anyhow::bail!("{name} exited ({status}) before it was ready; its log:\n{log}");
                }
                let Some(ready) = ready else {
                    return Ok(None);
                };
                Ok(probe(&ready).await.then_some(ready))
            }
        },
    )
    .await
}

/// Sends SIGTERM to `process` and waits (bounded) for its exit status.
pub async fn terminate(name: &str, process: &mut ChildProcess) -> Result<ExitStatus> {
    let pid = Pid::from_raw(i32::try_from(process.pid())?);
    nix::sys::signal::kill(pid, Signal::SIGTERM)?;
    crate::poll::until(
        &format!("{name} exit after SIGTERM"),
        crate::poll::READY_DEADLINE,
        || {
            let status = process.exit_status();
            async move { status }
        },
    )
    .await
}

/// The value of the first Prometheus sample line starting with `prefix` in
/// `text`, 0 when there is none.
pub fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The value of the metric line starting with `prefix` on the Prometheus
/// page at `url`, 0 when absent.
pub async fn fetch_metric(client: &reqwest::Client, url: &str, prefix: &str) -> Result<f64> {
    let text = client.get(url).send().await?.text().await?;
    Ok(metric_value(&text, prefix))
}

/// Whether a GET of `url` answers with a success status.
pub async fn answers_ok(client: reqwest::Client, url: String) -> bool {
    client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
