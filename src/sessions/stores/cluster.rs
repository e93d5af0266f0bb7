//! Routing keys to the masters of a Redis Cluster, over one fred pool per master.
//!
//! Why not fred's own clustered client: fred 10 re-synchronises all its cluster
//! connections together and fails the whole synchronisation while any master listed by
//! `CLUSTER SLOTS` is unreachable, so one dead master would stall the sessions of every
//! slot until it returns. Here each master has its own pool (with its own reconnect
//! policy): a dead master costs its own slots (503 within the command timeout), the others
//! keep serving. The slot map comes from `CLUSTER SLOTS` and is read again when a node
//! answers `MOVED`/`ASK` or stops answering, so a failover to a replica is followed.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use fred::{
    error::{Error, ErrorKind},
    interfaces::{ClientLike, ClusterInterface},
    prelude::{Config as FredConfig, Pool, ServerConfig},
    types::{cluster::ClusterRouting, config::Server, Value},
    util::redis_keyslot,
};

/// Builds a pool for one server (the same settings as the single-server store).
pub type PoolBuilder = Arc<dyn Fn(FredConfig) -> Result<Pool, Error> + Send + Sync>;

/// At most one `CLUSTER SLOTS` refresh per this interval, however many requests fail.
const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

struct SlotMap {
    routing: ClusterRouting,
    pools: HashMap<Server, Pool>,
}

/// The pools of a cluster's masters and which slots each serves.
pub struct SlotRouter {
    template: FredConfig,
    seeds: Vec<Server>,
    build: PoolBuilder,
    map: RwLock<Arc<SlotMap>>,
    refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for SlotRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotRouter")
            .field("seeds", &self.seeds)
            .finish_non_exhaustive()
    }
}

impl SlotRouter {
    /// A router for the cluster reached through `seeds`; connects lazily, on first use.
    #[must_use]
    pub fn new(template: FredConfig, seeds: Vec<Server>, build: PoolBuilder) -> Self {
        Self {
            template,
            seeds,
            build,
            map: RwLock::new(Arc::new(SlotMap {
                routing: ClusterRouting::new(),
                pools: HashMap::new(),
            })),
            refresh: tokio::sync::Mutex::new(None),
        }
    }

    fn current(&self) -> Arc<SlotMap> {
        self.map
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |map| map.clone())
    }

    /// The pool of the master that owns `key`'s slot.
    ///
    /// # Errors
    /// When no reachable node knows the slot map.
    pub async fn pool_for(&self, key: &str) -> Result<Pool, Error> {
        let slot = redis_keyslot(key.as_bytes());
        if let Some(pool) = Self::owner(&self.current(), slot) {
            return Ok(pool);
        }
        self.refresh().await?;
        Self::owner(&self.current(), slot)
            .ok_or_else(|| Error::new(ErrorKind::Cluster, format!("no master serves slot {slot}")))
    }

    fn owner(map: &SlotMap, slot: u16) -> Option<Pool> {
        map.routing
            .get_server(slot)
            .and_then(|server| map.pools.get(server))
            .cloned()
    }

    /// Every master's pool.
    ///
    /// # Errors
    /// When no reachable node knows the slot map.
    pub async fn masters(&self) -> Result<Vec<Pool>, Error> {
        if self.current().pools.is_empty() {
            self.refresh().await?;
        }
        Ok(self.current().pools.values().cloned().collect())
    }

    /// Reads the slot map again in the background, after a node failed to answer: if
    /// its slots moved to a replica, the next requests go there.
    pub fn refresh_soon(self: &Arc<Self>) {
        let router = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(error) = router.refresh().await {
                tracing::warn!(error = %error.details(), "cluster slot map not refreshed");
            }
        });
    }

    /// Reads the slot map again from the first node that answers (known masters, then
    /// the seeds), opening pools for new masters and keeping the pools of known ones.
    ///
    /// # Errors
    /// When no node answers `CLUSTER SLOTS`.
    pub async fn refresh(&self) -> Result<(), Error> {
        let mut last = self.refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < REFRESH_INTERVAL)
            && !self.current().pools.is_empty()
        {
            return Ok(());
        }
        *last = Some(Instant::now());
        let old = self.current();
        let mut candidates: Vec<Server> = old.pools.keys().cloned().collect();
        candidates.extend(self.seeds.iter().cloned());
        let mut failure = Error::new(ErrorKind::Cluster, "no cluster node answered");
        for server in candidates {
            let pool = match old.pools.get(&server) {
                Some(pool) => pool.clone(),
                None => match self.pool_on(&server) {
                    Ok(pool) => pool,
                    Err(error) => {
                        failure = error;
                        continue;
                    }
                },
            };
            match pool.next().cluster_slots::<Value>().await {
                Ok(slots) => {
                    let routing = ClusterRouting::from_cluster_slots(slots, server.host.clone())?;
                    let mut pools = HashMap::new();
                    for master in routing.unique_primary_nodes() {
                        let pool = match old.pools.get(&master) {
                            Some(pool) => pool.clone(),
                            None if master == server => pool.clone(),
                            None => self.pool_on(&master)?,
                        };
                        pools.insert(master, pool);
                    }
                    let map = Arc::new(SlotMap { routing, pools });
                    match self.map.write() {
                        Ok(mut current) => *current = map,
                        Err(poisoned) => *poisoned.into_inner() = map,
                    }
                    return Ok(());
                }
                Err(error) => failure = error,
            }
        }
        Err(failure)
    }

    fn pool_on(&self, server: &Server) -> Result<Pool, Error> {
        let pool = (self.build)(FredConfig {
            server: ServerConfig::Centralized {
                server: server.clone(),
            },
            ..self.template.clone()
        })?;
        // The handle only reports the end of the connection tasks, which the reconnect
        // policy keeps alive.
        let _connection_task = pool.connect();
        Ok(pool)
    }
}
