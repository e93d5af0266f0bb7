//! Sessions in Redis, through `tower-sessions-redis-store` 0.16 on a `fred` pool.
//!
//! The released store needs three things from us:
//! - a pool with a [`ReconnectPolicy`]: without one, a fred client that lost its
//!   connection never reconnects and the app would need a restart after a Redis blip;
//! - a command timeout: a dead Redis must cost a request at most that long (then 503),
//!   not hang it;
//! - a `save` that survives a vanished key: the store saves with `SET .. XX`, and Redis
//!   answers nil when the key is gone (logout or expiry while the request ran), which
//!   0.16 fails to parse as a bool. Left alone, that error becomes an empty 500. Here a
//!   save whose key is gone is dropped: the session ended, and it stays ended.
//!
//! Keys are the bare session IDs (0.16 has no key prefix); give Tessera a Redis
//! database of its own with the db number in `REDIS_URL` (`redis://host:6379/2`).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use fred::{
    interfaces::{ClientLike, KeysInterface, ServerInterface},
    prelude::{Builder, Config as FredConfig, Pool, ReconnectPolicy},
    types::InfoKind,
};
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};
use tower_sessions_redis_store::RedisStore;

use crate::sessions::settings::RedisConfig;

/// Reconnect forever, from 100 ms backing off to at most 1 s between attempts, so the app
/// serves again within a second or two of Redis coming back.
const RECONNECT_MIN_DELAY_MS: u32 = 100;
const RECONNECT_MAX_DELAY_MS: u32 = 1000;

/// The Redis-backed session store.
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    pool: Pool,
    store: RedisStore<Pool>,
}

/// Memory and key count of the Redis database, for monitoring.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisUsage {
    pub used_memory: u64,
    pub keys: u64,
}

impl RedisSessionStore {
    /// Builds the pool and starts connecting. Returns without waiting for Redis: when it
    /// is down at start, session pages answer 503 until it is reachable.
    ///
    /// # Errors
    /// When `REDIS_URL` cannot be parsed or the pool cannot be built.
    pub fn connect(config: &RedisConfig) -> Result<Self, String> {
        let mut fred_config = FredConfig::from_url(&config.url)
            .map_err(|e| format!("REDIS_URL is not a usable Redis URL: {}", e.details()))?;
        // Keep retrying the first connection too, instead of failing every command.
        fred_config.fail_fast = false;
        let timeout = config.command_timeout;
        let pool = Builder::from_config(fred_config)
            .with_performance_config(|perf| perf.default_command_timeout = timeout)
            .with_connection_config(|conn| {
                conn.connection_timeout = timeout;
                conn.internal_command_timeout = timeout;
                conn.tcp.nodelay = Some(true);
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                RECONNECT_MIN_DELAY_MS,
                RECONNECT_MAX_DELAY_MS,
                2,
            ))
            .build_pool(config.pool_size)
            .map_err(|e| format!("cannot build the Redis pool: {}", e.details()))?;
        // The handle only reports the end of the connection tasks; the reconnect policy
        // keeps them alive for the life of the process.
        let _connection_task = pool.connect();
        let store = RedisStore::new(pool.clone());
        Ok(Self { pool, store })
    }

    /// Round-trip time of a `PING`.
    ///
    /// # Errors
    /// When Redis does not answer within the command timeout.
    pub async fn ping(&self) -> Result<Duration, fred::error::Error> {
        let start = Instant::now();
        let _: String = self.pool.ping(None).await?;
        Ok(start.elapsed())
    }

    /// `used_memory` and the number of keys in the selected database.
    ///
    /// # Errors
    /// When Redis does not answer.
    pub async fn usage(&self) -> Result<RedisUsage, fred::error::Error> {
        let info: String = self.pool.next().info(Some(InfoKind::Memory)).await?;
        let used_memory = info
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let keys: u64 = self.pool.next().dbsize().await?;
        Ok(RedisUsage { used_memory, keys })
    }

    /// The keys of every session record: the 22-character keys of the database, which
    /// leaves out Tessera's other keys (they carry a `tessera:` prefix).
    ///
    /// # Errors
    /// When Redis does not answer.
    pub async fn keys(&self) -> Result<Vec<Id>, fred::error::Error> {
        use futures::TryStreamExt;
        let pattern = "?".repeat(22);
        let keys: Vec<fred::types::Key> = self
            .pool
            .next()
            .scan_buffered(pattern, Some(1000), None)
            .try_collect()
            .await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.as_str().and_then(|s| s.parse().ok()))
            .collect())
    }

    /// The pool, for the parts of Tessera that keep other keys in Redis.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.store.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self.store.save(record).await {
            Ok(()) => Ok(()),
            Err(error) => match self.pool.exists::<u64, _>(record.id.to_string()).await {
                Ok(0) => {
                    tracing::debug!(
                        "session ended while the request ran; the late save is dropped"
                    );
                    Ok(())
                }
                _ => Err(error),
            },
        }
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        self.store.load(session_id).await
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.store.delete(session_id).await
    }
}
