//! The service's counter stores: memory (from the core) and Redis.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::resp;
use gatehouse_ratelimit_core::{MemoryStore, Op, Store, StoreError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::settings::{RedisSettings, RedisType};

/// The configured store.
pub enum Backend {
    /// In-process counters.
    Memory(MemoryStore),
    /// Redis (single, sentinel-resolved or cluster).
    Redis(RedisStore),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Memory(_) => "Backend::Memory",
            Self::Redis(_) => "Backend::Redis",
        })
    }
}

impl Store for Backend {
    fn execute(
        &self,
        ops: &[Op],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send {
        let memory = match self {
            Self::Memory(m) => Some(m.apply(ops, now_ms)),
            Self::Redis(_) => None,
        };
        let redis = match self {
            Self::Redis(r) => Some(r.run(ops)),
            Self::Memory(_) => None,
        };
        async move {
            match (memory, redis) {
                (Some(values), _) => Ok(values),
                (None, Some(run)) => run.await,
                (None, None) => Err(StoreError::Backend("no store".into())),
            }
        }
    }
}

impl Backend {
    /// Whether the store can serve now (Redis answers `PING`).
    pub async fn is_ready(&self) -> bool {
        match self {
            Self::Memory(_) => true,
            Self::Redis(r) => r.ping().await,
        }
    }
}

#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// Redis counters: `INCRBY` + `EXPIRE` (and `GET` for sliding windows) for
/// every counter of a request. `INCRBY` is atomic in Redis, which keeps counts
/// exact across any number of service replicas.
///
/// Requests in flight at the same moment are batched: a task gathers every
/// decision waiting for Redis into one pipeline, so a burst of N concurrent
/// decisions costs one write, one read and one reply parse instead of N.
///
/// A single node without TLS (the common deployment) is spoken to over
/// [`resp`](crate::resp) connections, one per worker thread, each owned by
/// its batching task: while one batch is out, the next gathers. Cluster,
/// Sentinel and TLS go through redis-rs.
///
/// A slow Redis must not turn into a growing queue whose every entry misses
/// Envoy's timeout. Each decision takes one of `max_pending` slots before it
/// is queued, holding it until answered (queue-full answers at once), and
/// waits at most `op_timeout` in all, queue included; a decision whose caller
/// gave up or whose deadline passed is dropped before it is sent. Either
/// failure is [`StoreError`], answered as gRPC `UNAVAILABLE`, so the
/// configured failure policy decides within the timeout.
pub struct RedisStore {
    lanes: Vec<tokio::sync::mpsc::UnboundedSender<Pending>>,
    next: std::sync::atomic::AtomicUsize,
    probe: Probe,
    op_timeout: Duration,
    slots: Arc<Semaphore>,
    metrics: RedisMetrics,
}

/// What the Redis store reports.
#[derive(Debug, Clone)]
pub struct RedisMetrics {
    /// Decisions per pipeline.
    pub batch_sizes: Histogram,
    /// Decisions waiting for Redis or in flight (at most `max_pending`).
    pub pending: Gauge,
    /// Decisions refused at once because `max_pending` were waiting.
    pub overloaded: Counter,
}

/// How readiness checks reach Redis.
enum Probe {
    Lean {
        address: resp::Address,
        auth: String,
    },
    Client(Conn),
}

/// One decision waiting for Redis.
struct Pending {
    ops: Vec<Op>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<u64>, StoreError>>,
    /// When the caller stops waiting.
    deadline: Instant,
    _slot: Slot,
}

/// One of the store's `max_pending` slots, given back when the decision is
/// answered or dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    pending: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pending.dec();
    }
}

impl Pending {
    /// Whether anyone still waits for the answer.
    fn is_wanted(&self, now: Instant) -> bool {
        !self.reply.is_closed() && self.deadline > now
    }
}

/// Keeps the decisions someone still waits for, and the latest of their
/// deadlines (the batch's own).
fn still_wanted(batch: Vec<Pending>) -> Option<(Vec<Pending>, Instant)> {
    let now = Instant::now();
    let batch: Vec<Pending> = batch.into_iter().filter(|p| p.is_wanted(now)).collect();
    let deadline = batch.iter().map(|p| p.deadline).max()?;
    Some((batch, deadline))
}

/// Most decisions one batch carries.
const MAX_BATCH: usize = 256;

impl RedisStore {
    /// Connects (reconnecting by itself later) as the settings say.
    pub async fn connect(settings: &RedisSettings, metrics: RedisMetrics) -> Result<Self> {
        let batch_sizes = metrics.batch_sizes.clone();
        let slots = Arc::new(Semaphore::new(settings.max_pending.max(1)));
        // Multiplexed connections carry any number of requests at once, so
        // more than one per worker thread only splits batches.
        let workers = std::thread::available_parallelism().map_or(1, usize::from);
        let lanes = settings.pool_size.min(workers).max(1);
        if settings.kind == RedisType::Single && !settings.tls {
            let address = if settings.socket_type == "unix" {
                resp::Address::Unix(settings.url.clone().into())
            } else {
                resp::Address::Tcp(settings.url.clone())
            };
            // Fail at startup as the reference does when Redis is not there.
            let probe = Probe::Lean {
                address: address.clone(),
                auth: settings.auth.clone(),
            };
            if !ping(&probe, settings.connect_timeout).await {
                bail!("no PONG from Redis at {}", settings.url);
            }
            let senders = (0..lanes)
                .map(|_| {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    tokio::spawn(lean_lane(
                        rx,
                        LeanLane {
                            address: address.clone(),
                            auth: settings.auth.clone(),
                            connect_timeout: settings.connect_timeout.min(settings.op_timeout),
                            jitter_max: settings.expiration_jitter_max_seconds,
                            batch_sizes: batch_sizes.clone(),
                        },
                    ));
                    tx
                })
                .collect();
            return Ok(Self {
                lanes: senders,
                next: std::sync::atomic::AtomicUsize::new(0),
                probe,
                op_timeout: settings.op_timeout,
                slots,
                metrics,
            });
        }
        let conns = client_conns(settings, lanes).await?;
        let probe = Probe::Client(conns[0].clone());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(batcher(
            rx,
            conns,
            settings.expiration_jitter_max_seconds,
            batch_sizes,
        ));
        Ok(Self {
            lanes: vec![tx],
            next: std::sync::atomic::AtomicUsize::new(0),
            probe,
            op_timeout: settings.op_timeout,
            slots,
            metrics,
        })
    }

    fn run(&self, ops: &[Op]) -> impl Future<Output = Result<Vec<u64>, StoreError>> + Send + use<> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let deadline = Instant::now() + self.op_timeout;
        let sent = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                self.metrics.pending.inc();
                let slot = Slot {
                    _permit: permit,
                    pending: self.metrics.pending.clone(),
                };
                let lane =
                    self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.lanes.len();
                self.lanes[lane]
                    .send(Pending {
                        ops: ops.to_vec(),
                        reply,
                        deadline,
                        _slot: slot,
                    })
                    .map_err(|_| StoreError::Backend("redis batcher stopped".into()))
            }
            Err(_) => {
                self.metrics.overloaded.inc();
                Err(StoreError::Overloaded)
            }
        };
        async move {
            sent?;
            // Queue and round trip together: the caller never waits longer.
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(answer) => answer
                    .unwrap_or_else(|_| Err(StoreError::Backend("redis batch dropped".into()))),
                Err(_) => Err(StoreError::Timeout),
            }
        }
    }

    async fn ping(&self) -> bool {
        ping(&self.probe, self.op_timeout).await
    }
}

/// `count` redis-rs connections as the settings say (single, Sentinel-resolved
/// or cluster; TLS or not), each reconnecting by itself.
pub(crate) async fn client_conns(settings: &RedisSettings, count: usize) -> Result<Vec<Conn>> {
    if settings.tls {
        // One process-wide crypto provider for rustls; a second install is a no-op error.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    Ok(match settings.kind {
        RedisType::Single | RedisType::Sentinel => {
            let client = if settings.kind == RedisType::Single {
                redis::Client::open(connection_info(settings, &settings.url)?)
                    .context("REDIS_URL: invalid address")?
            } else {
                sentinel_master(settings).await?
            };
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(settings.connect_timeout))
                .set_response_timeout(Some(settings.op_timeout))
                // Fail fast while Redis is down: the failure policy answers,
                // and the manager keeps reconnecting in the background.
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            let mut conns = Vec::with_capacity(count);
            for _ in 0..count.max(1) {
                let manager = ConnectionManager::new_with_config(client.clone(), config.clone())
                    .await
                    .context("connecting to Redis")?;
                conns.push(Conn::Single(manager));
            }
            conns
        }
        RedisType::Cluster => {
            let nodes = settings
                .url
                .split(',')
                .map(|node| connection_info(settings, node.trim()))
                .collect::<Result<Vec<_>>>()?;
            let client = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(settings.connect_timeout)
                .response_timeout(settings.op_timeout)
                .build()
                .context("REDIS_URL: invalid cluster nodes")?;
            let conn = client
                .get_async_connection()
                .await
                .context("connecting to Redis Cluster")?;
            vec![Conn::Cluster(conn)]
        }
    })
}

/// Whether Redis answers `PING` within `timeout`.
async fn ping(probe: &Probe, timeout: Duration) -> bool {
    match probe {
        Probe::Lean { address, auth } => {
            let check = async {
                let mut conn = resp::Connection::connect(address, auth, timeout).await?;
                let mut out = Vec::new();
                resp::encode(&mut out, "PING", &[]);
                conn.round_trip(&out, 1).await
            };
            matches!(
                tokio::time::timeout(timeout, check).await,
                Ok(Ok(replies)) if replies.first() == Some(&resp::Reply::Simple("PONG".into()))
            )
        }
        Probe::Client(conn) => {
            let query = async {
                match conn.clone() {
                    Conn::Single(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await,
                    Conn::Cluster(mut c) => redis::cmd("PING").query_async::<String>(&mut c).await,
                }
            };
            matches!(tokio::time::timeout(timeout, query).await, Ok(Ok(_)))
        }
    }
}

/// The batch that starts with `first`: every decision already waiting, up to
/// [`MAX_BATCH`]. The other request tasks that are ready run first, so that
/// everything arriving in this instant joins.
async fn gather(
    first: Pending,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Pending>,
) -> Vec<Pending> {
    tokio::task::yield_now().await;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
    batch
}

/// Answers every decision of a batch with the same failure.
fn fail_batch(batch: Vec<Pending>, error: &StoreError) {
    for pending in batch {
        // The caller may have gone (its request ended): nothing to do then.
        let _ = pending.reply.send(Err(error.clone()));
    }
}

/// A key's expiry: the window's length plus, as in the reference, up to
/// `jitter_max` random seconds, so keys of one window do not all expire in the
/// same second.
fn jittered_ttl(ttl_secs: u64, jitter_max: u64) -> u64 {
    ttl_secs
        + if jitter_max > 0 {
            fastrand::u64(0..jitter_max)
        } else {
            0
        }
}

/// What a lean lane needs.
struct LeanLane {
    address: resp::Address,
    auth: String,
    connect_timeout: Duration,
    jitter_max: u64,
    batch_sizes: Histogram,
}

/// Gathers decisions into batches and runs them on its own connection, one
/// batch at a time: while Redis answers one, the next gathers. A failed or
/// timed-out batch drops the connection; the next batch reconnects.
/// Decisions nobody waits for any more are dropped unsent.
async fn lean_lane(mut rx: tokio::sync::mpsc::UnboundedReceiver<Pending>, lane: LeanLane) {
    let mut conn: Option<resp::Connection> = None;
    let mut out = Vec::with_capacity(16 * 1024);
    while let Some(first) = rx.recv().await {
        let Some((batch, deadline)) = still_wanted(gather(first, &mut rx).await) else {
            continue;
        };
        lane.batch_sizes.observe(batch.len() as f64);
        out.clear();
        let mut expected = 0;
        batch_commands(&batch, lane.jitter_max, |name, args, _| {
            resp::encode(&mut out, name, args);
            expected += 1;
        });
        let exchange = async {
            if conn.is_none() {
                conn = Some(
                    resp::Connection::connect(&lane.address, &lane.auth, lane.connect_timeout)
                        .await?,
                );
            }
            match conn.as_mut() {
                Some(c) => c.round_trip(&out, expected).await,
                None => Err(resp::RespError::Protocol("no connection".into())),
            }
        };
        let result = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(replies)) => Ok(replies),
            Ok(Err(e)) => Err(StoreError::Backend(e.to_string())),
            Err(_) => Err(StoreError::Timeout),
        };
        match result {
            Ok(replies) => answer_batch(batch, replies),
            Err(e) => {
                // The connection's state is unknown after a failure: start afresh.
                conn = None;
                fail_batch(batch, &e);
            }
        }
    }
}

/// The commands a batch sends, in order, each with whether its reply is a
/// decision's value: `INCRBY key hits` (counted) then `EXPIRE key ttl` (not)
/// for a hit, `GET key` (counted) for a read. Both Redis paths send these.
fn batch_commands(
    batch: &[Pending],
    jitter_max: u64,
    mut emit: impl FnMut(&'static str, &[&[u8]], bool),
) {
    for pending in batch {
        for op in &pending.ops {
            match op {
                Op::IncrBy {
                    key,
                    hits,
                    ttl_secs,
                } => {
                    let ttl = jittered_ttl(*ttl_secs, jitter_max);
                    emit(
                        "INCRBY",
                        &[key.as_bytes(), hits.to_string().as_bytes()],
                        true,
                    );
                    emit(
                        "EXPIRE",
                        &[key.as_bytes(), ttl.to_string().as_bytes()],
                        false,
                    );
                }
                Op::Get { key } => emit("GET", &[key.as_bytes()], true),
            }
        }
    }
}

/// Hands each decision its values: `INCRBY`'s new count, `GET`'s count (0
/// when absent); an error reply fails that decision only.
fn answer_batch(batch: Vec<Pending>, replies: Vec<resp::Reply>) {
    let mut replies = replies.into_iter();
    for pending in batch {
        let mut values = Vec::with_capacity(pending.ops.len());
        let mut failure = None;
        for op in &pending.ops {
            let counted = replies.next();
            if matches!(op, Op::IncrBy { .. })
                && let Some(resp::Reply::Error(e)) = replies.next()
            {
                failure = Some(e);
            }
            match counted {
                Some(resp::Reply::Integer(n)) => values.push(u64::try_from(n).unwrap_or(0)),
                Some(resp::Reply::Nil) => values.push(0),
                Some(resp::Reply::Bulk(b)) => {
                    values.push(
                        std::str::from_utf8(&b)
                            .ok()
                            .and_then(|t| t.parse().ok())
                            .unwrap_or(0),
                    );
                }
                Some(resp::Reply::Error(e)) => failure = Some(e),
                other => failure = Some(format!("unexpected reply {other:?}")),
            }
        }
        let answer = match failure {
            None => Ok(values),
            Some(e) => Err(StoreError::Backend(e)),
        };
        let _ = pending.reply.send(answer);
    }
}

/// Gathers waiting decisions into pipelines until the store is dropped.
///
/// Each batch runs in a task of its own; the tasks are bounded with the
/// decisions they carry, by the store's slots.
async fn batcher(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Pending>,
    conns: Vec<Conn>,
    jitter_max: u64,
    batch_sizes: Histogram,
) {
    let mut next = 0usize;
    while let Some(first) = rx.recv().await {
        let Some((batch, deadline)) = still_wanted(gather(first, &mut rx).await) else {
            continue;
        };
        batch_sizes.observe(batch.len() as f64);
        let conn = conns[next % conns.len()].clone();
        next = next.wrapping_add(1);
        tokio::spawn(send_batch(conn, batch, jitter_max, deadline));
    }
}

async fn send_batch(conn: Conn, batch: Vec<Pending>, jitter_max: u64, deadline: Instant) {
    let mut pipe = redis::pipe();
    batch_commands(&batch, jitter_max, |name, args, counted| {
        let command = pipe.cmd(name);
        for arg in args {
            command.arg(*arg);
        }
        if !counted {
            command.ignore();
        }
    });
    let query = async {
        match conn {
            Conn::Single(mut c) => pipe.query_async::<Vec<Option<u64>>>(&mut c).await,
            Conn::Cluster(mut c) => pipe.query_async::<Vec<Option<u64>>>(&mut c).await,
        }
    };
    let result = match tokio::time::timeout_at(deadline, query).await {
        Ok(result) => result.map_err(|e| StoreError::Backend(e.to_string())),
        Err(_) => Err(StoreError::Timeout),
    };
    match result {
        Ok(values) => {
            let mut values = values.into_iter().map(Option::unwrap_or_default);
            for pending in batch {
                let mine: Vec<u64> = values.by_ref().take(pending.ops.len()).collect();
                let answer = if mine.len() == pending.ops.len() {
                    Ok(mine)
                } else {
                    Err(StoreError::Backend(
                        "redis answered fewer values than asked".into(),
                    ))
                };
                // The caller may have timed out and gone: nothing to do then.
                let _ = pending.reply.send(answer);
            }
        }
        Err(e) => fail_batch(batch, &e),
    }
}

/// A reference-format address (`host:port`, or a socket path with
/// `REDIS_SOCKET_TYPE=unix`) as a redis-rs connection.
fn connection_info(settings: &RedisSettings, address: &str) -> Result<redis::ConnectionInfo> {
    let addr = if settings.socket_type == "unix" {
        redis::ConnectionAddr::Unix(address.into())
    } else {
        let (host, port) = address
            .rsplit_once(':')
            .with_context(|| format!("REDIS_URL={address:?}: expected host:port"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("REDIS_URL={address:?}: bad port"))?;
        let host = host.trim_matches(['[', ']']).to_owned();
        if settings.tls {
            redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        } else {
            redis::ConnectionAddr::Tcp(host, port)
        }
    };
    Ok(addr
        .into_connection_info()?
        .set_redis_settings(credentials(settings)))
}

/// `REDIS_AUTH`: `password`, or `user:password` split at the first `:`.
fn credentials(settings: &RedisSettings) -> redis::RedisConnectionInfo {
    let info = redis::RedisConnectionInfo::default();
    match settings.auth.split_once(':') {
        _ if settings.auth.is_empty() => info,
        Some((user, pass)) => info.set_username(user).set_password(pass),
        None => info.set_password(settings.auth.clone()),
    }
}

/// Asks the sentinels for the master's address (`REDIS_URL` =
/// `master-name,host:port,...`).
async fn sentinel_master(settings: &RedisSettings) -> Result<redis::Client> {
    let mut parts = settings.url.split(',');
    let Some(master) = parts.next().filter(|m| !m.is_empty()) else {
        bail!("REDIS_URL: sentinel wants master-name,host:port[,host:port...]");
    };
    let sentinels = parts
        .map(|node| {
            connection_info(
                &RedisSettings {
                    auth: String::new(),
                    ..settings.clone()
                },
                node.trim(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let mut sentinel =
        redis::sentinel::Sentinel::build(sentinels).context("REDIS_URL: invalid sentinel nodes")?;
    let node_info = redis::sentinel::SentinelNodeConnectionInfo::default();
    let master_client = sentinel
        .async_master_for(master, Some(&node_info))
        .await
        .with_context(|| format!("asking the sentinels for master {master}"))?;
    let info = master_client
        .get_connection_info()
        .clone()
        .set_redis_settings(credentials(settings));
    redis::Client::open(info).context("opening the sentinel-resolved master")
}
