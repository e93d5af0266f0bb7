//! Sessions in Redis, through `tower-sessions-redis-store` 0.16 on a `fred` pool.
//!
//! The released store needs four things from us:
//! - a pool with a [`ReconnectPolicy`]: without one, a fred client that lost its
//!   connection never reconnects and the app would need a restart after a Redis blip;
//! - a command timeout: a dead Redis must cost a request at most that long (then 503),
//!   not hang it;
//! - a `save` that survives a vanished key: the store saves with `SET .. XX`, and Redis
//!   answers nil when the key is gone (logout or expiry while the request ran), which
//!   0.16 fails to parse as a bool. Left alone, that error becomes an empty 500. Here a
//!   save whose key is gone is dropped: the session ended, and it stays ended.
//! - a `create` that draws a new ID on a collision: the store creates with `SET .. NX`
//!   and fails on the same nil when the key is taken. Here `create` sends that `SET`
//!   itself, in the store's format, and draws again as every store does
//!   ([`super::ops::create_unique`]); loading, saving and deleting stay the store's.
//!
//! Keys are the bare session IDs (0.16 has no key prefix); give Tessera a Redis
//! database of its own with the db number in `REDIS_URL` (`redis://host:6379/2`).
//!
//! The URL also names the topology, parsed by fred: one server (`redis://`), a Redis
//! Cluster (`redis-cluster://seed:7000?node=seed2:7001`) or a master behind Sentinel
//! (`redis-sentinel://sentinel:26379?sentinelServiceName=mymaster&node=sentinel2:26379`).
//! Every command Tessera sends names one key, so none crosses cluster slots; listing keys
//! and measuring memory visit every cluster master. Cluster routing is ours
//! ([`super::cluster`]), over fred pools to each master; on a cluster the four store
//! commands go through it (to follow `-MOVED`/`-ASK` during resharding) and write the
//! released store's format: the record as MessagePack, expiring at its expiry date.
//! The app's other keys (the login throttle's counters) take the same route, through
//! [`RedisSessionStore::eval_routed`]: no pool is handed out to bypass it.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use fred::{
    interfaces::{ClientLike, KeysInterface, LuaInterface, ServerInterface},
    prelude::{Builder, Config as FredConfig, Pool, ReconnectPolicy, ServerConfig},
    types::{config::Server, Expiration, FromValue, InfoKind, SetOptions, Value},
};
use futures::stream;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};
use tower_sessions_redis_store::RedisStore;

use super::cluster::{KeyCommand, PoolBuilder, SlotRouter};
use super::ops::{create_unique, KeyPages, Progress, StoreError, StoreKind, StoreOps, StoreSweep};

/// Session keys (bare 22-character IDs), for `SCAN`: the app's other keys are longer.
const SESSION_KEY_PATTERN: &str = "??????????????????????";

/// Where a listing of the keys is: the masters still to scan (the last one is being
/// scanned) and the cursor in it.
struct Scan {
    masters: Vec<Pool>,
    cursor: String,
}

impl Scan {
    /// The cursor that starts a `SCAN`, and that it answers when done.
    const START: &'static str = "0";
}

/// Reconnect forever, from 100 ms backing off to `redis.reconnect_max_delay_ms` between
/// attempts, so the app serves again soon after Redis (or a failover) comes back.
const RECONNECT_MIN_DELAY_MS: u32 = 100;

/// How the Redis deployment is laid out, as `REDIS_URL` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Single,
    Cluster,
    Sentinel,
}

impl Topology {
    fn of(config: &FredConfig) -> Self {
        match config.server {
            ServerConfig::Centralized { .. } => Self::Single,
            ServerConfig::Clustered { .. } => Self::Cluster,
            ServerConfig::Sentinel { .. } => Self::Sentinel,
        }
    }

    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Cluster => "cluster",
            Self::Sentinel => "sentinel",
        }
    }
}

/// The Redis-backed session store.
#[derive(Debug, Clone)]
pub struct RedisSessionStore {
    connection: Connection,
    config: FredConfig,
    timeout: Duration,
}

/// One pool (a single server, or the master Sentinel names), or one pool per cluster master.
#[derive(Debug, Clone)]
enum Connection {
    Pool(Pool),
    Cluster(Arc<SlotRouter>),
}

/// How to reach Redis, checked (`settings.sessions.redis`).
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `REDIS_URL`; its scheme names the topology (plain, cluster, Sentinel).
    pub url: String,
    pub pool_size: usize,
    /// Every command gives up after this long.
    pub command_timeout: Duration,
    /// Reconnect attempts back off up to this.
    pub reconnect_max_delay: Duration,
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
    pub fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let mut fred_config =
            FredConfig::from_url(&config.url).map_err(|e| StoreError::RedisUrl {
                reason: format!("REDIS_URL is not a usable Redis URL: {}", e.details()),
            })?;
        let max_delay = u32::try_from(config.reconnect_max_delay.as_millis()).unwrap_or(u32::MAX);
        // Keep retrying the first connection too, instead of failing every command.
        fred_config.fail_fast = false;
        let timeout = config.command_timeout;
        let pool_size = config.pool_size;
        let build: PoolBuilder = Arc::new(move |fred_config| {
            Builder::from_config(fred_config)
                .with_performance_config(|perf| perf.default_command_timeout = timeout)
                .with_connection_config(|conn| {
                    conn.connection_timeout = timeout;
                    conn.internal_command_timeout = timeout;
                    conn.tcp.nodelay = Some(true);
                })
                .set_policy(ReconnectPolicy::new_exponential(
                    0,
                    RECONNECT_MIN_DELAY_MS,
                    max_delay,
                    2,
                ))
                .build_pool(pool_size)
        });
        let connection = match &fred_config.server {
            ServerConfig::Clustered { hosts, .. } => Connection::Cluster(Arc::new(
                SlotRouter::new(fred_config.clone(), hosts.clone(), build, timeout),
            )),
            _ => {
                let pool = build(fred_config.clone()).map_err(|e| StoreError::RedisUrl {
                    reason: format!("cannot build the Redis pool: {}", e.details()),
                })?;
                // The handle only reports the end of the connection tasks; the reconnect
                // policy keeps them alive for the life of the process.
                let _connection_task = pool.connect();
                Connection::Pool(pool)
            }
        };
        Ok(Self {
            connection,
            config: fred_config,
            timeout,
        })
    }

    /// Runs the Lua `script` on `key` (its one key) with `args`, where `key` lives: on the
    /// one server, or on a cluster through the slot router, which follows `-MOVED` and
    /// `-ASK` and retries `TRYAGAIN`/`CLUSTERDOWN` as it does for session records, so a
    /// reshard of `key`'s slot costs no error. Other Redis users of the app (the login
    /// throttle) go through here, never to a pool directly.
    ///
    /// ```no_run
    /// # async fn demo(redis: &tessera::sessions::stores::redis::RedisSessionStore) -> Result<(), fred::error::Error> {
    /// let count: i64 = redis.eval_routed("return redis.call('INCR', KEYS[1])", "tessera:n", ()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// Redis's error, a script error, a reply that is not an `R`, or a timeout.
    pub async fn eval_routed<R, V>(
        &self,
        script: &str,
        key: &str,
        args: V,
    ) -> Result<R, fred::error::Error>
    where
        R: FromValue,
        V: TryInto<Value> + Send,
        V::Error: Into<fred::error::Error> + Send,
    {
        let args: Value = args.try_into().map_err(Into::into)?;
        match &self.connection {
            Connection::Pool(pool) => pool.eval(script, key, args).await,
            Connection::Cluster(router) => {
                let mut command = vec![script.into(), 1.into(), key.into()];
                // As fred spreads a script's arguments: none, one, or a list of them.
                match args {
                    Value::Null => {}
                    Value::Array(values) => command.extend(values),
                    value => command.push(value),
                }
                router
                    .call(key, &KeyCommand::new("EVAL", command))
                    .await?
                    .convert()
            }
        }
    }

    /// Every pool that holds keys: the one pool, or one per cluster master.
    async fn key_pools(&self) -> Result<Vec<Pool>, fred::error::Error> {
        match &self.connection {
            Connection::Pool(pool) => Ok(vec![pool.clone()]),
            Connection::Cluster(router) => router.masters().await,
        }
    }

    /// Sets the record as the released store writes it (MessagePack, expiring at its
    /// expiry date) under `condition`, where its key lives; false when the condition did
    /// not hold. Redis then answers nil, which the released store 0.16 fails to parse
    /// ("Could not convert to bool") instead of reading it as "not set".
    async fn set(&self, record: &Record, condition: SetOptions) -> session_store::Result<bool> {
        let key = record.id.to_string();
        let value =
            rmp_serde::to_vec(record).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let expiry = record.expiry_date.unix_timestamp();
        let reply: Value = match &self.connection {
            Connection::Pool(pool) => {
                pool.set(
                    key,
                    value.as_slice(),
                    Some(Expiration::EXAT(expiry)),
                    Some(condition),
                    false,
                )
                .await
            }
            Connection::Cluster(router) => {
                let condition = match condition {
                    SetOptions::NX => "NX",
                    SetOptions::XX => "XX",
                };
                let command = KeyCommand::new(
                    "SET",
                    vec![
                        key.as_str().into(),
                        value.as_slice().into(),
                        "EXAT".into(),
                        expiry.into(),
                        condition.into(),
                    ],
                );
                router.call(&key, &command).await
            }
        }
        .map_err(backend)?;
        Ok(!reply.is_null())
    }

    #[must_use]
    pub fn topology(&self) -> Topology {
        Topology::of(&self.config)
    }

    /// Checks that the Redis named by the URL is laid out as the URL says: cluster
    /// settings must reach a cluster node, and a plain URL must not (a cluster node would
    /// answer MOVED for most keys). A server that cannot be reached now is not an error:
    /// session pages answer 503 until it can.
    ///
    /// # Errors
    /// A one-line reason when the topology is wrong.
    pub async fn check_topology(&self) -> Result<(), StoreError> {
        let seed = match &self.config.server {
            ServerConfig::Centralized { server } => server.clone(),
            ServerConfig::Clustered { hosts, .. } => match hosts.first() {
                Some(host) => host.clone(),
                None => {
                    return Err(StoreError::RedisUrl {
                        reason: "redis-cluster:// names no node".to_string(),
                    })
                }
            },
            // The master is whatever Sentinel says; fred asks it on every (re)connect.
            ServerConfig::Sentinel { .. } => return Ok(()),
        };
        let Some(cluster_enabled) = self.probe_cluster_enabled(&seed).await else {
            tracing::warn!(node = %seed, "Redis is not reachable at start; its topology is checked when it is");
            return Ok(());
        };
        match (self.topology(), cluster_enabled) {
            (Topology::Cluster, false) => Err(StoreError::RedisUrl {
                reason: format!(
                    "redis-cluster:// names {seed}, which is not a cluster node (cluster_enabled:0); use redis://"
                ),
            }),
            (Topology::Single, true) => Err(StoreError::RedisUrl {
                reason: format!(
                    "{seed} is a Redis Cluster node; use redis-cluster:// so keys reach the node that owns them"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// `cluster_enabled` of `INFO cluster` on one node, through a one-off connection;
    /// `None` when the node does not answer in time.
    async fn probe_cluster_enabled(&self, node: &Server) -> Option<bool> {
        let config = FredConfig {
            server: ServerConfig::Centralized {
                server: node.clone(),
            },
            fail_fast: true,
            ..self.config.clone()
        };
        let client = Builder::from_config(config)
            .with_connection_config(|conn| conn.connection_timeout = self.timeout)
            .with_performance_config(|perf| perf.default_command_timeout = self.timeout)
            .build()
            .ok()?;
        let probe = async {
            client.init().await.ok()?;
            let info = client.info::<String>(Some(InfoKind::Cluster)).await;
            // Closed whatever the answer: a connection left open would live as long as
            // the process.
            let _ = client.quit().await;
            info.ok()?
                .lines()
                .find_map(|line| line.trim().strip_prefix("cluster_enabled:"))
                .map(|flag| flag == "1")
        };
        tokio::time::timeout(self.timeout * 2, probe)
            .await
            .ok()
            .flatten()
    }
}

#[async_trait]
impl StoreOps for RedisSessionStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Redis
    }

    /// `SET .. NX`: Redis drops expired keys by itself.
    async fn create_if_absent(&self, record: &Record) -> session_store::Result<bool> {
        self.set(record, SetOptions::NX).await
    }

    /// The keys of every session record (on every master of a cluster): the 22-character
    /// keys of the database, which leaves out Tessera's other keys (they carry a
    /// `tessera:` prefix).
    ///
    /// `SCAN` on one master after another, a page per call, the cursor kept between
    /// pages: nothing is read ahead of the reader. `SCAN` may return a key twice, and
    /// a key written during the listing may be missed.
    fn key_pages(&self, page_size: usize) -> KeyPages<'_> {
        let count = u32::try_from(page_size.max(1)).unwrap_or(u32::MAX);
        Box::pin(stream::try_unfold(
            None,
            move |scan: Option<Scan>| async move {
                let mut scan = match scan {
                    Some(scan) => scan,
                    None => Scan {
                        masters: self
                            .key_pools()
                            .await
                            .map_err(|e| failed("list keys", &e))?,
                        cursor: Scan::START.to_string(),
                    },
                };
                while let Some(master) = scan.masters.last() {
                    let (cursor, keys): (String, Vec<String>) = master
                        .next()
                        .scan_page(scan.cursor.clone(), SESSION_KEY_PATTERN, Some(count), None)
                        .await
                        .map_err(|e| failed("list keys", &e))?;
                    if cursor == Scan::START {
                        scan.masters.pop();
                    }
                    scan.cursor = cursor;
                    let page: Vec<Id> = keys.iter().filter_map(|key| key.parse().ok()).collect();
                    if !page.is_empty() {
                        return Ok(Some((page, Some(scan))));
                    }
                }
                Ok(None)
            },
        ))
    }

    /// Redis expires records by itself: nothing to sweep.
    async fn sweep(&self, _progress: Progress) -> Result<StoreSweep, StoreError> {
        Ok(StoreSweep::default())
    }

    /// `used_memory` and the number of keys, summed over every master of a cluster.
    async fn usage(&self) -> Result<Vec<(&'static str, u64)>, StoreError> {
        let (mut used_memory, mut keys) = (0, 0);
        for pool in self
            .key_pools()
            .await
            .map_err(|e| failed("report usage", &e))?
        {
            let info: String = pool
                .next()
                .info(Some(InfoKind::Memory))
                .await
                .map_err(|e| failed("report usage", &e))?;
            used_memory += info
                .lines()
                .find_map(|line| line.strip_prefix("used_memory:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            keys += pool
                .next()
                .dbsize::<u64>()
                .await
                .map_err(|e| failed("report usage", &e))?;
        }
        Ok(vec![("used_memory", used_memory), ("keys", keys)])
    }

    /// A `PING` to every master.
    async fn ping(&self) -> Result<String, StoreError> {
        for pool in self
            .key_pools()
            .await
            .map_err(|e| failed("answer a ping", &e))?
        {
            let _: String = pool
                .ping(None)
                .await
                .map_err(|e| failed("answer a ping", &e))?;
        }
        Ok("PING answered".to_string())
    }
}

fn failed(operation: &'static str, error: &fred::error::Error) -> StoreError {
    StoreError::failed(
        StoreKind::Redis,
        operation,
        format!("Redis: {}", error.details()),
    )
}

fn backend(error: fred::error::Error) -> session_store::Error {
    session_store::Error::Backend(error.details().to_string())
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    /// `SET .. NX` of our own ([`StoreOps::create_if_absent`]; on a cluster, an ID drawn
    /// again belongs to its own slot): the released store's `create` errs on a collision
    /// instead of drawing again.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        create_unique(self, record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let pool = match &self.connection {
            Connection::Pool(pool) => pool,
            Connection::Cluster(_) => {
                if !self.set(record, SetOptions::XX).await? {
                    tracing::debug!(
                        "session ended while the request ran; the late save is dropped"
                    );
                }
                return Ok(());
            }
        };
        match RedisStore::new(pool.clone()).save(record).await {
            Ok(()) => Ok(()),
            Err(error) => {
                if let Ok(0) = pool.exists::<u64, _>(record.id.to_string()).await {
                    tracing::debug!(
                        "session ended while the request ran; the late save is dropped"
                    );
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        match &self.connection {
            Connection::Pool(pool) => RedisStore::new(pool.clone()).load(session_id).await,
            Connection::Cluster(router) => {
                let key = session_id.to_string();
                let command = KeyCommand::new("GET", vec![key.as_str().into()]);
                let reply = router.call(&key, &command).await.map_err(backend)?;
                match reply.as_bytes() {
                    None => Ok(None),
                    Some(bytes) => rmp_serde::from_slice(bytes)
                        .map(Some)
                        .map_err(|e| session_store::Error::Decode(e.to_string())),
                }
            }
        }
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        match &self.connection {
            Connection::Pool(pool) => RedisStore::new(pool.clone()).delete(session_id).await,
            Connection::Cluster(router) => {
                let key = session_id.to_string();
                let command = KeyCommand::new("DEL", vec![key.as_str().into()]);
                router.call(&key, &command).await.map_err(backend)?;
                Ok(())
            }
        }
    }
}
