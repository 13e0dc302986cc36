//! The Redis session store: sealed sessions under random ids, with indexes
//! by the IdP's `sid` and by `sub` so a back-channel logout can end them.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

/// How long one store call may take before the request is answered without it.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Why the store could not answer (Redis down, slow, refusing).
#[derive(Debug, thiserror::Error)]
#[error("session store unavailable: {0}")]
pub struct StoreDown(pub String);

/// Sessions in Redis.
pub struct RedisSessions {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisSessions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

async fn bounded<T>(
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreDown> {
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StoreDown(format!("{:?}", e.kind()))),
        Err(_) => Err(StoreDown("timed out".to_owned())),
    }
}

impl RedisSessions {
    /// A store at `url` (connected on first use).
    pub fn new(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("session_store.redis_url: not usable ({:?})", e.kind()))?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
            prefix: prefix.to_owned(),
        })
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreDown> {
        self.conn
            .get_or_try_init(|| bounded(ConnectionManager::new(self.client.clone())))
            .await
            .cloned()
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    fn index(&self, kind: &str, value: &str) -> String {
        format!("{}{kind}:{value}", self.prefix)
    }

    /// The sealed session stored under `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<String>, StoreDown> {
        let mut conn = self.conn().await?;
        bounded(conn.get(self.key(id))).await
    }

    /// Stores a new sealed session for `ttl_secs`, indexed by `sid` and `sub`.
    pub async fn create(
        &self,
        id: &str,
        sealed: &str,
        ttl_secs: u64,
        sid: Option<&str>,
        sub: &str,
    ) -> Result<(), StoreDown> {
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set_ex(self.key(id), sealed, ttl_secs.max(1))
            .ignore();
        for index in sid
            .map(|s| self.index("sid", s))
            .into_iter()
            .chain([self.index("sub", sub)])
        {
            pipe.sadd(&index, id)
                .ignore()
                .expire(&index, i64::try_from(ttl_secs).unwrap_or(i64::MAX))
                .ignore();
        }
        bounded(pipe.query_async::<()>(&mut conn)).await
    }

    /// Rewrites an existing session (a refresh, the idle clock) only while
    /// it still exists: `SET … XX`. A session deleted meanwhile (logout,
    /// back-channel logout) stays deleted; `Ok(false)` says so.
    pub async fn update(&self, id: &str, sealed: &str, ttl_secs: u64) -> Result<bool, StoreDown> {
        let mut conn = self.conn().await?;
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::XX)
            .with_expiration(redis::SetExpiry::EX(ttl_secs.max(1)));
        let written: Option<String> =
            bounded(conn.set_options(self.key(id), sealed, options)).await?;
        Ok(written.is_some())
    }

    /// Records the first use of a login `state` (by its hash) for
    /// `ttl_secs`: `SET … NX`. `Ok(false)` when it was used before, by any
    /// replica sharing this Redis.
    pub async fn first_use(&self, state_hash: &str, ttl_secs: u64) -> Result<bool, StoreDown> {
        let mut conn = self.conn().await?;
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::EX(ttl_secs.max(1)));
        let written: Option<String> =
            bounded(conn.set_options(self.index("used-state", state_hash), "1", options)).await?;
        Ok(written.is_some())
    }

    /// Ends one session.
    pub async fn delete(&self, id: &str) -> Result<(), StoreDown> {
        let mut conn = self.conn().await?;
        bounded(conn.del::<_, ()>(self.key(id))).await
    }

    /// Ends every session of an IdP session (`sid`) or, without one, of a
    /// user (`sub`). Returns how many there were.
    pub async fn end_all(&self, sid: Option<&str>, sub: Option<&str>) -> Result<usize, StoreDown> {
        let index = match (sid, sub) {
            (Some(sid), _) => self.index("sid", sid),
            (None, Some(sub)) => self.index("sub", sub),
            (None, None) => return Ok(0),
        };
        let mut conn = self.conn().await?;
        let ids: Vec<String> = bounded(conn.smembers(&index)).await?;
        let mut keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        keys.push(index);
        bounded(conn.del::<_, ()>(keys)).await?;
        Ok(ids.len())
    }

    /// Records revoked fast-path handles at `now`, for every replica's
    /// feed; entries older than `window` seconds are dropped on the way.
    pub async fn revoke(&self, handles: &[String], now: u64, window: u64) -> Result<(), StoreDown> {
        let mut conn = self.conn().await?;
        let key = self.index("revoked", "tickets");
        let mut pipe = redis::pipe();
        pipe.atomic();
        for h in handles {
            pipe.zadd(&key, h, now).ignore();
        }
        pipe.zrembyscore(&key, 0, now.saturating_sub(window).saturating_sub(1))
            .ignore()
            .expire(&key, i64::try_from(window).unwrap_or(i64::MAX).max(1))
            .ignore();
        bounded(pipe.query_async::<()>(&mut conn)).await
    }

    /// The handles revoked at or after `since`.
    pub async fn revoked_since(&self, since: u64) -> Result<Vec<String>, StoreDown> {
        let mut conn = self.conn().await?;
        let key = self.index("revoked", "tickets");
        bounded(conn.zrangebyscore(key, since, "+inf")).await
    }
}
