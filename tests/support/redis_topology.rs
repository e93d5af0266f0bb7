//! Redis deployments of more than one process, built on 127.0.0.1 from `redis-server`
//! processes on free ports: a three-master Redis Cluster, and a master with a replica
//! watched by Sentinel. Every process is killed on drop; every wait is bounded.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::redis::{free_port_with_bus, redis_cli, RedisServer};

/// Polls `condition` every 100 ms for at most `limit`; panics with `what` when it never held.
fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three masters, no replicas. A master that is down leaves its slots unserved while the
/// others keep serving (`cluster-require-full-coverage no`).
pub struct RedisCluster {
    pub masters: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let masters: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(
                    free_port_with_bus(),
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        "--cluster-require-full-coverage",
                        "no",
                    ],
                )
            })
            .collect();
        let nodes: Vec<String> = masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = Self { masters };
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every running master reports `cluster_state:ok`.
    pub fn wait_until_ok(&self) {
        wait_until(Duration::from_secs(20), "cluster_state:ok", || {
            self.masters.iter().all(|m| {
                m.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            })
        });
    }

    /// `redis-cluster://` with every master as a seed node.
    pub fn url(&self) -> String {
        let mut nodes = self.masters.iter().map(|m| format!("127.0.0.1:{}", m.port));
        let first = nodes.next().unwrap_or_default();
        let rest: Vec<String> = nodes.map(|n| format!("node={n}")).collect();
        format!("redis-cluster://{first}?{}", rest.join("&"))
    }

    /// Which master holds `key` (asked of each: only the owner has it).
    pub fn owner_of(&self, key: &str) -> Option<usize> {
        self.masters
            .iter()
            .position(|m| m.cli(&["EXISTS", key]).as_deref() == Some("1"))
    }

    /// The number of keys on each master.
    pub fn key_counts(&self) -> Vec<u64> {
        self.masters
            .iter()
            .map(|m| m.cli(&["DBSIZE"]).and_then(|n| n.parse().ok()).unwrap_or(0))
            .collect()
    }
}

/// A master, one replica, and one Sentinel (quorum 1) that fails over after 1 s.
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel_port: u16,
    sentinel: Child,
    _dir: TempDir,
}

pub const SENTINEL_SERVICE: &str = "tessera";

impl RedisSentinel {
    pub fn start() -> Self {
        let master = RedisServer::start();
        let replica = RedisServer::start_with(
            free_port_with_bus(),
            &["--replicaof", "127.0.0.1", &master.port.to_string()],
        );
        wait_until(Duration::from_secs(10), "the replica in sync", || {
            replica
                .cli(&["INFO", "replication"])
                .is_some_and(|info| info.contains("master_link_status:up"))
        });
        let dir = TempDir::new().expect("temp dir");
        let sentinel_port = free_port_with_bus();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                 sentinel failover-timeout {SENTINEL_SERVICE} 5000\n",
                dir = dir.path().display(),
                master = master.port,
            ),
        )
        .expect("sentinel.conf");
        let sentinel = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-sentinel starts");
        let this = Self {
            master,
            replica,
            sentinel_port,
            sentinel,
            _dir: dir,
        };
        wait_until(Duration::from_secs(10), "sentinel sees the replica", || {
            this.sentinel_cli(&["SENTINEL", "replicas", SENTINEL_SERVICE])
                .is_some_and(|out| out.contains(&this.replica.port.to_string()))
        });
        this
    }

    pub fn sentinel_cli(&self, args: &[&str]) -> Option<String> {
        redis_cli(self.sentinel_port, args)
    }

    /// `redis-sentinel://` naming the sentinel and the service.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName={SENTINEL_SERVICE}",
            self.sentinel_port
        )
    }

    /// The port Sentinel currently names as the master.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinel_cli(&["SENTINEL", "get-master-addr-by-name", SENTINEL_SERVICE])?
            .lines()
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }

    /// Waits until Sentinel has promoted the replica.
    pub fn wait_for_failover(&self) {
        wait_until(
            Duration::from_secs(30),
            "Sentinel promotes the replica",
            || self.master_port() == Some(self.replica.port),
        );
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
    }
}
