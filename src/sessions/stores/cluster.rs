//! Routing keys to the masters of a Redis Cluster, over one fred pool per master.
//!
//! Why not fred's own clustered client (re-checked against fred 10.1): its router keeps
//! every cluster connection in one task and re-synchronises them together
//! (`router::clustered::sync` joins the connections to every master and fails as a
//! whole when one cannot be reached), queueing every command meanwhile. With
//! `ClusterDiscoveryPolicy::UseCache` or any reconnect policy, a single dead master
//! still stalls the sessions of all 16,384 slots until it returns or is failed over,
//! and a cluster that is unreachable at start queues every request for the whole
//! reconnect delay. Those are the cases this module exists for, so routing stays ours:
//!
//! - Each master has its own pool (with its own reconnect policy): a dead master costs
//!   its own slots (503 within the command timeout), the others keep serving.
//! - `-MOVED slot node` updates the slot map and the command is retried once at that
//!   node; `-ASK slot node` (a slot being migrated by `redis-cli --cluster reshard`)
//!   retries once at that node with `ASKING` in the same pipeline, so on the same
//!   connection and right before the command. `TRYAGAIN` and `CLUSTERDOWN` are retried
//!   until the command timeout has passed. A whole call is cut at twice the command
//!   timeout, whatever happens.
//! - The slot map (`CLUSTER SLOTS`) is read by one refresh at a time, shared by every
//!   request that needs it, at most once per [`MIN_REFRESH_INTERVAL`], and bounded by
//!   the command timeout: the known masters' pools are asked first (no new connection),
//!   then the seed nodes, all at once, each through a one-off connection that is closed
//!   whatever the answer. While no node answers, a request costs one bounded wait, never
//!   a walk of every seed.
//! - A pool whose node is no longer a master (failed over, demoted, removed), or that
//!   was opened for a redirection to a node that turned out not to be one, is shut down
//!   (`QUIT`, which also ends its reconnect loop) one command timeout after it left the
//!   map, so commands already sent on it can finish.
//! - TLS (`rediss-cluster://`): nodes announce IP addresses in `CLUSTER SLOTS`, while a
//!   cluster's certificate usually names the DNS name clients use. When the URL's first
//!   node is a DNS name, every node announced by IP address is verified against that
//!   name; a node that announces a host name (`cluster-preferred-endpoint-type
//!   hostname`) is verified against its own name; when the URL names an IP address,
//!   each node's certificate must carry its IP address. A private CA is trusted through
//!   `SSL_CERT_FILE` (read by rustls-native-certs when the URL is parsed).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};

use fred::{
    error::{Error, ErrorKind},
    interfaces::{ClientLike, ClusterInterface},
    prelude::{Builder, Config as FredConfig, Pool, ServerConfig},
    types::{
        cluster::ClusterRouting,
        config::{Options, Server},
        ClusterHash, CustomCommand, Value,
    },
    util::redis_keyslot,
};

/// Builds a pool for one server (the same settings as the single-server store).
pub type PoolBuilder = Arc<dyn Fn(FredConfig) -> Result<Pool, Error> + Send + Sync>;

/// At most one `CLUSTER SLOTS` refresh per this interval, however many requests fail;
/// requests in between get the last refresh's outcome at once.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(500);

/// Pause between two attempts of a command answered `TRYAGAIN` or `CLUSTERDOWN`.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

const SLOTS: usize = 16_384;
const NO_OWNER: u16 = u16::MAX;

/// One command on one key: its name and arguments. The key it is routed by is given to
/// [`SlotRouter::call`] beside it, so the key need not come first (`EVAL script 1 key`).
#[derive(Debug, Clone)]
pub struct KeyCommand {
    name: &'static str,
    args: Vec<Value>,
}

impl KeyCommand {
    #[must_use]
    pub const fn new(name: &'static str, args: Vec<Value>) -> Self {
        Self { name, args }
    }

    fn custom(&self) -> CustomCommand {
        // Each pool talks to one node: fred never routes by this hash.
        CustomCommand::new_static(self.name, ClusterHash::Random, false)
    }
}

/// A cluster error reply, as far as routing cares.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Moved(u16, Server),
    Ask(Server),
    /// `TRYAGAIN` (a multi-key command during migration) or `CLUSTERDOWN`.
    Later,
    /// Anything else: an answer for the caller.
    Final,
}

impl Reply {
    /// Classifies `error` received from `from` (a redirection may leave the host out,
    /// meaning the same host).
    fn of(error: &Error, from: &Server) -> Self {
        let mut parts = error.details().split_whitespace();
        let kind = parts.next().unwrap_or_default();
        match kind {
            "MOVED" | "ASK" => {
                let slot = parts.next().and_then(|slot| slot.parse::<u16>().ok());
                let node = parts.next().and_then(|node| parse_node(node, from));
                match (kind, slot, node) {
                    ("MOVED", Some(slot), Some(node)) => Self::Moved(slot, node),
                    ("ASK", Some(_), Some(node)) => Self::Ask(node),
                    _ => Self::Final,
                }
            }
            "TRYAGAIN" | "CLUSTERDOWN" => Self::Later,
            _ => Self::Final,
        }
    }
}

/// `host:port` (IPv6 hosts keep their colons); an empty host is `from`'s.
fn parse_node(node: &str, from: &Server) -> Option<Server> {
    let (host, port) = node.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(if host.is_empty() {
        Server {
            port,
            ..from.clone()
        }
    } else {
        Server::new(host, port)
    })
}

/// The masters' pools and which slots each serves.
#[derive(Clone)]
struct SlotMap {
    /// Per slot, an index into `nodes`, or [`NO_OWNER`].
    owners: Vec<u16>,
    nodes: Vec<Server>,
    /// The masters' pools, and those opened for a redirection since the last refresh.
    pools: HashMap<Server, Pool>,
}

impl SlotMap {
    fn empty() -> Self {
        Self {
            owners: vec![NO_OWNER; SLOTS],
            nodes: Vec::new(),
            pools: HashMap::new(),
        }
    }

    fn owner(&self, slot: u16) -> Option<(&Server, &Pool)> {
        let index = *self.owners.get(usize::from(slot))?;
        let server = self.nodes.get(usize::from(index))?;
        self.pools.get(server).map(|pool| (server, pool))
    }

    fn index_of(&mut self, server: &Server) -> u16 {
        if let Some(index) = self.nodes.iter().position(|node| node == server) {
            return u16::try_from(index).unwrap_or(NO_OWNER);
        }
        self.nodes.push(server.clone());
        u16::try_from(self.nodes.len() - 1).unwrap_or(NO_OWNER)
    }
}

/// The outcome of the last slot map refresh, and when it ended.
type LastRefresh = Option<(Instant, Result<(), Error>)>;

/// The pools of a cluster's masters and which slots each serves.
pub struct SlotRouter {
    template: FredConfig,
    seeds: Vec<Server>,
    /// The TLS server name of nodes announced by IP address (see the module doc).
    tls_name: Option<fred::bytes_utils::Str>,
    build: PoolBuilder,
    timeout: Duration,
    map: RwLock<Arc<SlotMap>>,
    /// Held by the one refresh in flight; the others wait for its outcome.
    refresh_gate: tokio::sync::Mutex<LastRefresh>,
    refreshes: AtomicU64,
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
    /// `timeout` is the command timeout: it bounds a refresh and a command's retries.
    #[must_use]
    pub fn new(
        template: FredConfig,
        seeds: Vec<Server>,
        build: PoolBuilder,
        timeout: Duration,
    ) -> Self {
        let tls_name = template.tls.as_ref().and_then(|_| {
            let seed = seeds.first()?;
            seed.tls_server_name
                .clone()
                .or_else(|| (seed.host.parse::<IpAddr>().is_err()).then(|| seed.host.clone()))
        });
        Self {
            template,
            seeds,
            tls_name,
            build,
            timeout,
            map: RwLock::new(Arc::new(SlotMap::empty())),
            refresh_gate: tokio::sync::Mutex::new(None),
            refreshes: AtomicU64::new(0),
        }
    }

    /// `server` with the TLS server name it is verified against.
    fn named(&self, mut server: Server) -> Server {
        if server.tls_server_name.is_none() && server.host.parse::<IpAddr>().is_ok() {
            server.tls_server_name.clone_from(&self.tls_name);
        }
        server
    }

    fn current(&self) -> Arc<SlotMap> {
        self.map
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |map| map.clone())
    }

    /// Replaces the map with `change(current)`, under the lock, so that no pool built or
    /// retired by another change is lost; retired pools are shut down.
    fn change(&self, change: impl FnOnce(&SlotMap) -> (SlotMap, Vec<Pool>)) {
        let retired = {
            let mut guard = self
                .map
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (map, retired) = change(&guard);
            *guard = Arc::new(map);
            retired
        };
        for pool in retired {
            self.retire(pool);
        }
    }

    /// Shuts `pool` down once commands already sent on it had their command timeout.
    fn retire(&self, pool: Pool) {
        let grace = self.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let _ = tokio::time::timeout(grace, pool.quit()).await;
        });
    }

    fn build_pool(&self, server: &Server) -> Result<Pool, Error> {
        let pool = (self.build)(FredConfig {
            server: ServerConfig::Centralized {
                server: server.clone(),
            },
            ..self.template.clone()
        })?;
        // The handle only reports the end of the connection tasks, which the reconnect
        // policy keeps alive until the pool is retired.
        let _connection_task = pool.connect();
        Ok(pool)
    }

    /// The pool of `server`, opened (and kept in the map) when there is none yet.
    fn pool_of(&self, server: &Server) -> Result<Pool, Error> {
        if let Some(pool) = self.current().pools.get(server) {
            return Ok(pool.clone());
        }
        let mut found = Err(Error::new(ErrorKind::Cluster, "no pool"));
        self.change(|current| {
            let mut map = current.clone();
            found = match map.pools.get(server) {
                Some(pool) => Ok(pool.clone()),
                None => self.build_pool(server).inspect(|pool| {
                    map.pools.insert(server.clone(), pool.clone());
                }),
            };
            (map, Vec::new())
        });
        found
    }

    /// After `-MOVED slot server`: `slot` is served by `server` from now on.
    fn moved(&self, slot: u16, server: &Server) -> Result<Pool, Error> {
        let pool = self.pool_of(server)?;
        self.change(|current| {
            let mut map = current.clone();
            let index = map.index_of(server);
            if let Some(owner) = map.owners.get_mut(usize::from(slot)) {
                *owner = index;
            }
            (map, Vec::new())
        });
        Ok(pool)
    }

    /// The master that owns `slot`, reading the slot map first when it is unknown.
    async fn owner(&self, slot: u16) -> Result<(Server, Pool), Error> {
        if let Some((server, pool)) = self.current().owner(slot) {
            return Ok((server.clone(), pool.clone()));
        }
        self.refresh().await?;
        self.current()
            .owner(slot)
            .map(|(server, pool)| (server.clone(), pool.clone()))
            .ok_or_else(|| Error::new(ErrorKind::Cluster, format!("no master serves slot {slot}")))
    }

    /// Every master's pool.
    ///
    /// # Errors
    /// When no reachable node knows the slot map.
    pub async fn masters(&self) -> Result<Vec<Pool>, Error> {
        if self.current().nodes.is_empty() {
            self.refresh().await?;
        }
        let map = self.current();
        Ok(map
            .nodes
            .iter()
            .filter(|node| {
                map.owners
                    .iter()
                    .any(|&i| map.nodes.get(usize::from(i)) == Some(node))
            })
            .filter_map(|node| map.pools.get(node).cloned())
            .collect())
    }

    /// Runs `command` on the master of `key`'s slot, following one redirection and
    /// retrying `TRYAGAIN`/`CLUSTERDOWN` within the command timeout. Answers within
    /// twice the command timeout.
    ///
    /// # Errors
    /// Redis's error, or a timeout.
    pub async fn call(self: &Arc<Self>, key: &str, command: &KeyCommand) -> Result<Value, Error> {
        let limit = self.timeout * 2;
        match tokio::time::timeout(limit, self.call_unbounded(key, command)).await {
            Ok(result) => result,
            Err(_) => {
                self.refresh_soon();
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no cluster answer within {limit:?}"),
                ))
            }
        }
    }

    async fn call_unbounded(
        self: &Arc<Self>,
        key: &str,
        command: &KeyCommand,
    ) -> Result<Value, Error> {
        let retry_until = Instant::now() + self.timeout;
        let slot = redis_keyslot(key.as_bytes());
        let (mut server, mut pool) = self.owner(slot).await?;
        let mut asking = false;
        let mut redirected = false;
        loop {
            let client = pool.next();
            let result = if asking {
                let pipeline = client.pipeline();
                let _: () = pipeline
                    .custom(
                        CustomCommand::new_static("ASKING", ClusterHash::Random, false),
                        Vec::<Value>::new(),
                    )
                    .await?;
                let _: () = pipeline
                    .custom(command.custom(), command.args.clone())
                    .await?;
                pipeline.try_all::<Value>().await.pop().unwrap_or_else(|| {
                    Err(Error::new(ErrorKind::Protocol, "empty pipeline answer"))
                })
            } else {
                client.custom(command.custom(), command.args.clone()).await
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            match Reply::of(&error, &server) {
                Reply::Moved(moved_slot, node) if !redirected => {
                    redirected = true;
                    asking = false;
                    server = self.named(node);
                    pool = self.moved(moved_slot, &server)?;
                    // Other slots probably moved with it.
                    self.refresh_soon();
                }
                Reply::Ask(node) if !redirected => {
                    redirected = true;
                    asking = true;
                    server = self.named(node);
                    pool = self.pool_of(&server)?;
                }
                Reply::Later if Instant::now() + RETRY_PAUSE < retry_until => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Reply::Final if error.details().starts_with("ERR") => return Err(error),
                _ => {
                    // A node that does not answer may have been failed over.
                    self.refresh_soon();
                    return Err(error);
                }
            }
        }
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

    /// Reads the slot map again: one refresh at a time, at most one per
    /// [`MIN_REFRESH_INTERVAL`]; callers that waited for a refresh, or come within the
    /// interval, get its outcome.
    ///
    /// # Errors
    /// When no node answered `CLUSTER SLOTS` within the command timeout.
    pub async fn refresh(&self) -> Result<(), Error> {
        let seen = self.refreshes.load(Ordering::Acquire);
        let mut last = self.refresh_gate.lock().await;
        if let Some((at, outcome)) = &*last {
            if self.refreshes.load(Ordering::Acquire) != seen || at.elapsed() < MIN_REFRESH_INTERVAL
            {
                return outcome.clone();
            }
        }
        let outcome = match tokio::time::timeout(self.timeout, self.read_slots()).await {
            Ok(Ok((routing, from))) => {
                self.install(&routing, &from);
                Ok(())
            }
            Ok(Err(error)) => Err(error),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                "no cluster node answered CLUSTER SLOTS in time",
            )),
        };
        *last = Some((Instant::now(), outcome.clone()));
        self.refreshes.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    /// `CLUSTER SLOTS` from the first node that answers: the known masters (over their
    /// pools, failing fast when disconnected), else the seeds not among them.
    async fn read_slots(&self) -> Result<(ClusterRouting, Server), Error> {
        let known = self.current();
        let fail_fast = Options {
            fail_fast: true,
            timeout: Some(self.timeout),
            ..Options::default()
        };
        let from_pools = known.pools.iter().map(|(server, pool)| {
            let client = pool.next().with_options(&fail_fast);
            let server = server.clone();
            async move { (server, client.cluster_slots::<Value>().await) }
        });
        let mut failure = Error::new(ErrorKind::Cluster, "no cluster node answered");
        if let Some(found) = first_answer(from_pools.collect(), &mut failure).await {
            return Ok(found);
        }
        let (sender, mut answers) = tokio::sync::mpsc::channel(self.seeds.len().max(1));
        for seed in self
            .seeds
            .iter()
            .filter(|seed| !known.pools.contains_key(*seed))
        {
            let probe = self.probe(seed.clone());
            let sender = sender.clone();
            // Spawned, so that the one-off connection is closed even when another seed
            // answered first and nobody waits for this one any more.
            tokio::spawn(async move {
                let answer = probe.await;
                let _ = sender.send(answer).await;
            });
        }
        drop(sender);
        while let Some((server, answer)) = answers.recv().await {
            match answer
                .and_then(|slots| ClusterRouting::from_cluster_slots(slots, server.host.clone()))
            {
                Ok(routing) => return Ok((routing, server)),
                Err(error) => failure = error,
            }
        }
        Err(failure)
    }

    /// `CLUSTER SLOTS` of `seed` through a connection of its own, closed afterwards.
    fn probe(
        &self,
        seed: Server,
    ) -> impl std::future::Future<Output = (Server, Result<Value, Error>)> + Send + 'static {
        let timeout = self.timeout;
        let client = Builder::from_config(FredConfig {
            server: ServerConfig::Centralized {
                server: self.named(seed.clone()),
            },
            fail_fast: true,
            ..self.template.clone()
        })
        .with_connection_config(|conn| {
            conn.connection_timeout = timeout;
            conn.internal_command_timeout = timeout;
        })
        .with_performance_config(|perf| perf.default_command_timeout = timeout)
        .build();
        async move {
            let client = match client {
                Ok(client) => client,
                Err(error) => return (seed, Err(error)),
            };
            let answer = match client.init().await {
                Ok(_) => client.cluster_slots::<Value>().await,
                Err(error) => Err(error),
            };
            let _ = tokio::time::timeout(timeout, client.quit()).await;
            (seed, answer)
        }
    }

    /// Makes `routing` (read from `from`) the slot map: pools of known masters are kept,
    /// new masters get one, and every other pool is retired.
    fn install(&self, routing: &ClusterRouting, from: &Server) {
        tracing::debug!(node = %from, "cluster slot map read");
        self.change(|current| {
            let nodes: Vec<Server> = routing
                .unique_primary_nodes()
                .into_iter()
                .map(|node| self.named(node))
                .collect();
            let mut pools = HashMap::new();
            for node in &nodes {
                let pool = match current.pools.get(node) {
                    Some(pool) => Ok(pool.clone()),
                    None => self.build_pool(node),
                };
                match pool {
                    Ok(pool) => {
                        pools.insert(node.clone(), pool);
                    }
                    // Its slots stay without owner (503) until the next refresh.
                    Err(error) => tracing::warn!(node = %node, error = %error.details(), "no pool for a cluster master"),
                }
            }
            let retired = current
                .pools
                .iter()
                .filter(|(server, _)| !pools.contains_key(*server))
                .map(|(_, pool)| pool.clone())
                .collect();
            let mut owners = vec![NO_OWNER; SLOTS];
            for range in routing.slots() {
                let index = nodes
                    .iter()
                    .position(|node| *node == range.primary)
                    .and_then(|index| u16::try_from(index).ok())
                    .unwrap_or(NO_OWNER);
                let end = usize::from(range.end).min(SLOTS - 1);
                for owner in owners.iter_mut().take(end + 1).skip(usize::from(range.start)) {
                    *owner = index;
                }
            }
            (SlotMap { owners, nodes, pools }, retired)
        });
    }
}

/// The first `CLUSTER SLOTS` answer among `asks` that parses; `failure` keeps the last
/// error. Every ask is bounded by its own command timeout.
async fn first_answer<F>(asks: Vec<F>, failure: &mut Error) -> Option<(ClusterRouting, Server)>
where
    F: std::future::Future<Output = (Server, Result<Value, Error>)>,
{
    let mut pending: futures::stream::FuturesUnordered<F> = asks.into_iter().collect();
    use futures::StreamExt;
    while let Some((server, answer)) = pending.next().await {
        match answer
            .and_then(|slots| ClusterRouting::from_cluster_slots(slots, server.host.clone()))
        {
            Ok(routing) => return Some((routing, server)),
            Err(error) => *failure = error,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> Server {
        Server::new("10.0.0.1", port)
    }

    #[test]
    fn redirections_name_the_slot_and_the_node() {
        let from = node(7000);
        let moved = Error::new(ErrorKind::Cluster, "MOVED 3999 10.0.0.2:7001");
        assert_eq!(
            Reply::of(&moved, &from),
            Reply::Moved(3999, Server::new("10.0.0.2", 7001))
        );
        let ask = Error::new(ErrorKind::Cluster, "ASK 3999 10.0.0.2:7001");
        assert_eq!(
            Reply::of(&ask, &from),
            Reply::Ask(Server::new("10.0.0.2", 7001))
        );
        // Redis leaves the host out when it does not know it: the same host.
        let hostless = Error::new(ErrorKind::Cluster, "MOVED 1 :7002");
        assert_eq!(Reply::of(&hostless, &from), Reply::Moved(1, node(7002)));
        let ipv6 = Error::new(ErrorKind::Cluster, "ASK 1 ::1:7003");
        assert_eq!(
            Reply::of(&ipv6, &from),
            Reply::Ask(Server::new("::1", 7003))
        );
    }

    #[test]
    fn busy_clusters_are_asked_again_and_other_errors_are_answers() {
        let from = node(7000);
        for later in [
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
        ] {
            assert_eq!(
                Reply::of(&Error::new(ErrorKind::Unknown, later), &from),
                Reply::Later
            );
        }
        for last in [
            "MOVED nonsense",
            "ASK 1",
            "WRONGTYPE Operation",
            "ERR unknown command",
        ] {
            assert_eq!(
                Reply::of(&Error::new(ErrorKind::Unknown, last), &from),
                Reply::Final
            );
        }
    }
}
