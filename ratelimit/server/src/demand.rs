//! Where the quota service keeps the Envoys' claims: in this process, or in
//! Redis so replicas split a limit from the same figures. The Redis layout:
//! one hash per bucket (`quota:<counter key>`), a field per reporting stream
//! holding `<demand>:<seen ms>`, expiring when nobody renews it.

use std::future::Future;
use std::time::Duration;

use gatehouse_ratelimit_core::StoreError;
use gatehouse_ratelimit_core::demand::{
    CLAIM_STALE_MS, DemandReport, DemandStore, MemoryDemands, decode_claim, encode_claim,
};
use gatehouse_ratelimit_core::quota::Claim;

use crate::store::Conn;

/// A bucket hash outlives its last claim by this much, then Redis drops it.
const HASH_TTL_MS: u64 = 4 * CLAIM_STALE_MS;

/// The configured claim store.
pub enum Demands {
    /// This process only: one replica.
    Memory(MemoryDemands),
    /// Shared by every replica using this Redis.
    Redis(RedisDemands),
}

impl std::fmt::Debug for Demands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Memory(_) => "Demands::Memory",
            Self::Redis(_) => "Demands::Redis",
        })
    }
}

/// Claims in Redis, over their own connection: a report per Envoy every few
/// seconds is a trickle next to the per-request path's batches.
pub struct RedisDemands {
    conn: Conn,
    timeout: Duration,
}

impl RedisDemands {
    /// Claims over `conn`, each call given up after `timeout`.
    pub fn new(conn: Conn, timeout: Duration) -> Self {
        Self { conn, timeout }
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let run = async {
            match self.conn.clone() {
                Conn::Single(mut c) => pipe.query_async::<T>(&mut c).await,
                Conn::Cluster(mut c) => pipe.query_async::<T>(&mut c).await,
            }
        };
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::Backend(e.to_string())),
            Err(_) => Err(StoreError::Timeout),
        }
    }
}

fn hash_key(key: &str) -> String {
    format!("quota:{key}")
}

impl DemandStore for Demands {
    fn report(
        &self,
        reports: &[DemandReport],
        now_ms: u64,
    ) -> impl Future<Output = Result<Vec<Vec<Claim>>, StoreError>> + Send {
        let memory = match self {
            Self::Memory(m) => Some(m.record(reports, now_ms)),
            Self::Redis(_) => None,
        };
        let pipe = match self {
            Self::Redis(_) => {
                let mut pipe = redis::pipe();
                for r in reports {
                    let key = hash_key(&r.key);
                    pipe.hset(&key, r.claim.reporter, encode_claim(&r.claim, now_ms))
                        .ignore()
                        .pexpire(&key, i64::try_from(HASH_TTL_MS).unwrap_or(i64::MAX))
                        .ignore()
                        .hgetall(&key);
                }
                Some(pipe)
            }
            Self::Memory(_) => None,
        };
        async move {
            match (memory, pipe, self) {
                (Some(answers), _, _) => Ok(answers),
                (None, Some(pipe), Self::Redis(redis)) => {
                    let hashes: Vec<Vec<(String, String)>> = redis.query(&pipe).await?;
                    Ok(hashes
                        .into_iter()
                        .map(|fields| {
                            let mut claims: Vec<Claim> = fields
                                .iter()
                                .filter_map(|(reporter, value)| {
                                    decode_claim(reporter, value, now_ms)
                                })
                                .collect();
                            claims.sort_by_key(|c| c.reporter);
                            claims
                        })
                        .collect())
                }
                _ => Err(StoreError::Backend("no claim store".into())),
            }
        }
    }

    fn leave(
        &self,
        keys: &[String],
        reporter: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        if let Self::Memory(m) = self {
            m.forget(keys, reporter);
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.hdel(hash_key(key), reporter).ignore();
        }
        async move {
            match self {
                Self::Redis(redis) if !keys.is_empty() => redis.query::<()>(&pipe).await,
                _ => Ok(()),
            }
        }
    }
}
