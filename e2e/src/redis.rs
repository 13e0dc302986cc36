//! A private `redis-server` per test, on a free loopback port.

use std::process::Command;

use anyhow::{Result, bail};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::paths;
use crate::poll;
use crate::process::ChildProcess;

/// How many fresh ports to try when another process takes ours first.
const PORT_ATTEMPTS: usize = 5;

/// A running `redis-server` that keeps nothing on disk. Killed when dropped.
#[derive(Debug)]
pub struct Redis {
    process: ChildProcess,
    port: u16,
    _dir: TempDir,
}

impl Redis {
    /// Starts `redis-server` on a free port and waits until it answers.
    pub async fn start() -> Result<Self> {
        Self::start_with(None, &[]).await
    }

    /// Starts with extra `redis-server` arguments, e.g. `["--requirepass", "pw"]`.
    pub async fn start_with_args(args: &[&str]) -> Result<Self> {
        Self::start_with(None, args).await
    }

    /// Starts `redis-server` on `port` (a restart after a kill, in fault tests).
    pub async fn start_on(port: u16) -> Result<Self> {
        Self::start_with(Some(port), &[]).await
    }

    async fn start_with(fixed_port: Option<u16>, extra: &[&str]) -> Result<Self> {
        let bin = paths::tool("redis-server", "installs the Debian package redis-server")?;
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("gatehouse-redis-")
                .tempdir()?;
            // Redis must be told a port. Between picking a free one and Redis
            // binding it another process may take it: then Redis exits with
            // "Address already in use" and we pick again.
            let port = match fixed_port {
                Some(p) => p,
                None => free_port()?,
            };
            let mut command = Command::new(&bin);
            command
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(extra);
            let mut process =
                ChildProcess::spawn("redis-server", &mut command, &dir.path().join("redis.log"))?;
            let pid = process.pid();
            let password = extra
                .iter()
                .position(|a| *a == "--requirepass")
                .and_then(|i| extra.get(i + 1))
                .map(|p| (*p).to_owned());
            let ready = poll::until("redis-server", poll::READY_DEADLINE, || {
                let exited = process.exit_status();
                let password = password.clone();
                async move {
                    if exited?.is_some() {
                        return Ok(Some(false));
                    }
                    // Ready when *our* server answers: a server that someone
                    // else started on this port would report another pid.
                    Ok((server_pid(port, &password).await == Some(pid)).then_some(true))
                }
            })
            .await?;
            if ready {
                return Ok(Self {
                    process,
                    port,
                    _dir: dir,
                });
            }
            last_log = process.log_tail(20);
            if fixed_port.is_some() || !last_log.contains("Address already in use") {
                break;
            }
        }
        bail!("redis-server did not start; its log:\n{last_log}")
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether dropping the server prints its log (default on, for tests).
    pub fn set_log_on_drop(&mut self, on: bool) {
        self.process.set_log_on_drop(on);
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        self.process.kill();
    }

    /// The pid (and process group id) of the server.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Freezes the server (SIGSTOP to its pid only): connections stay open
    /// and nothing answers, as with a Redis stuck on a slow disk or a long
    /// command. [`resume`](Self::resume) lets it go on; a drop kills it anyway.
    pub fn pause(&self) -> Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.pid())?),
            nix::sys::signal::Signal::SIGSTOP,
        )?;
        Ok(())
    }

    /// Lets a [`pause`](Self::pause)d server go on (SIGCONT to its pid).
    pub fn resume(&self) -> Result<()> {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.pid())?),
            nix::sys::signal::Signal::SIGCONT,
        )?;
        Ok(())
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `n` free ports, all different: each is held until all are picked.
///
/// # Errors
/// No port could be bound.
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let held = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&held) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// The `process_id` a Redis server on `port` reports in `INFO server`, if one answers.
pub async fn server_pid(port: u16, password: &Option<String>) -> Option<u32> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    if let Some(password) = password {
        // Inline AUTH; its +OK precedes the INFO reply, which is searched below.
        stream
            .write_all(format!("AUTH {password}\r\n").as_bytes())
            .await
            .ok()?;
    }
    stream.write_all(b"INFO server\r\n").await.ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    // A bulk string `$<len>\r\n<text>\r\n`; read until the pid line is in.
    while reply.len() < 64 * 1024 {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        if let Some(start) = text.find("process_id:") {
            let rest = &text[start + "process_id:".len()..];
            if let Some(end) = rest.find('\r') {
                return rest[..end].trim().parse().ok();
            }
        }
    }
    None
}

/// A Redis Cluster of three masters on free ports, slots spread by `redis-cli
/// --cluster create`. Killed when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Redis>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them and waits for
    /// `cluster_state:ok` on every node.
    pub async fn start() -> Result<Self> {
        let cli = paths::tool(
            "redis-cli",
            "installs the Debian package redis-server, which brings redis-cli",
        )?;
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // The bus port is set explicitly: port + 10000 may be taken or out of range.
            let bus = free_port()?.to_string();
            nodes.push(
                Redis::start_with_args(&["--cluster-enabled", "yes", "--cluster-port", &bus])
                    .await?,
            );
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let (status, output) = crate::process::run_to_completion(
            tokio::process::Command::new(&cli)
                .arg("--cluster")
                .arg("create")
                .args(&addrs)
                .args(["--cluster-replicas", "0", "--cluster-yes"]),
            std::time::Duration::from_secs(60),
        )
        .await?;
        if !status.success() {
            bail!("redis-cli --cluster create failed: {output}");
        }
        for node in &nodes {
            let port = node.port().to_string();
            poll::until("redis cluster_state:ok", poll::READY_DEADLINE, || {
                let mut command = tokio::process::Command::new(&cli);
                command.args(["-p", &port, "cluster", "info"]);
                async move {
                    let (_, info) = crate::process::run_to_completion(
                        &mut command,
                        std::time::Duration::from_secs(10),
                    )
                    .await?;
                    Ok(info.contains("cluster_state:ok").then_some(()))
                }
            })
            .await?;
        }
        Ok(Self { nodes })
    }

    /// `REDIS_URL` for the cluster: `h:p,h:p,h:p`.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A Redis Sentinel watching one master (`mymaster`). Killed when dropped.
#[derive(Debug)]
pub struct RedisSentinel {
    process: ChildProcess,
    port: u16,
    _dir: TempDir,
}

impl RedisSentinel {
    /// Starts `redis-server --sentinel` monitoring `master` as `mymaster` and
    /// waits until it reports the master's address.
    pub async fn start(master: &Redis) -> Result<Self> {
        let bin = paths::tool("redis-server", "installs the Debian package redis-server")?;
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-sentinel-")
            .tempdir()?;
        let port = free_port()?;
        let conf = dir.path().join("sentinel.conf");
        // Sentinel rewrites its configuration file, so it must be its own.
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n",
                dir.path().display(),
                master.port()
            ),
        )?;
        let mut command = Command::new(&bin);
        command.arg(&conf).arg("--sentinel");
        let mut process = ChildProcess::spawn(
            "redis-sentinel",
            &mut command,
            &dir.path().join("sentinel.log"),
        )?;
        let expected = master.port().to_string();
        poll::until("sentinel knows the master", poll::READY_DEADLINE, || {
            let exited = process.exit_status();
            let expected = expected.clone();
            async move {
                if exited?.is_some() {
                    bail!("redis sentinel exited");
                }
                let reply = async {
                    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                    stream
                        .write_all(b"SENTINEL get-master-addr-by-name mymaster\r\n")
                        .await?;
                    let mut buf = [0u8; 256];
                    let n = stream.read(&mut buf).await?;
                    Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).into_owned())
                };
                Ok(reply
                    .await
                    .ok()
                    .filter(|r| r.contains(&expected))
                    .map(|_| ()))
            }
        })
        .await?;
        Ok(Self {
            process,
            port,
            _dir: dir,
        })
    }

    /// `REDIS_URL` for the reference's sentinel format: `mymaster,127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mymaster,127.0.0.1:{}", self.port)
    }

    /// The sentinel's pid.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
