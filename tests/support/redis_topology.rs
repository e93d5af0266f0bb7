//! Redis deployments of more than one process, built on 127.0.0.1 from `redis-server`
//! processes on free ports: a three-master Redis Cluster, and a master with a replica
//! watched by Sentinel. Every process is killed on drop; every wait is bounded.

use std::{
    io::ErrorKind,
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::{
    clock::PATIENCE,
    redis::{free_port_with_bus, redis_cli, RedisServer},
};

/// Polls `condition` every 100 ms for at most [`PATIENCE`]; panics with `what` when it
/// never held.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `redis-server` arguments of a cluster node (failover 1 s after a master stops
/// answering; a master that is down leaves its slots unserved while the others keep
/// serving).
const CLUSTER_NODE_ARGS: [&str; 8] = [
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "1000",
    "--cluster-require-full-coverage",
    "no",
];

/// TLS for the nodes of a cluster: a CA and a certificate for the name `localhost`
/// only (no IP address), made with the `openssl` command line in a directory of their
/// own. A client that verifies a node against the IP address it announces fails.
pub struct ClusterTls {
    dir: TempDir,
}

impl ClusterTls {
    pub fn generate() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let run = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl runs (Debian: apt-get install openssl)");
            assert!(status.success(), "openssl {args:?} failed");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Tessera test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "node.key",
            "-out",
            "node.csr",
        ]);
        std::fs::write(dir.path().join("san.ext"), "subjectAltName=DNS:localhost\n")
            .expect("san.ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "node.crt",
        ]);
        Self { dir }
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The CA certificate, for `SSL_CERT_FILE`.
    pub fn ca_file(&self) -> String {
        self.file("ca.crt")
    }

    /// `redis-server` arguments for a TLS port (the plain port stays for the harness).
    fn server_args(&self, tls_port: u16) -> Vec<String> {
        [
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &self.file("node.crt"),
            "--tls-key-file",
            &self.file("node.key"),
            "--tls-ca-cert-file",
            &self.file("ca.crt"),
            "--tls-auth-clients",
            "no",
            "--tls-cluster",
            "yes",
        ]
        .iter()
        .map(ToString::to_string)
        .collect()
    }
}

/// Three masters, each with `replicas` replicas.
pub struct RedisCluster {
    pub masters: Vec<RedisServer>,
    pub replicas: Vec<RedisServer>,
    /// The TLS port of each master, in the order of `masters`, when the cluster has TLS.
    pub tls_ports: Vec<u16>,
}

impl RedisCluster {
    /// Three masters, no replicas.
    pub fn start() -> Self {
        Self::build(0, None)
    }

    /// Three masters with one replica each.
    pub fn start_with_replicas() -> Self {
        Self::build(1, None)
    }

    /// Three masters, no replicas, clients on TLS ports (`tls_ports`).
    pub fn start_with_tls(tls: &ClusterTls) -> Self {
        Self::build(0, Some(tls))
    }

    fn build(replicas: usize, tls: Option<&ClusterTls>) -> Self {
        let mut tls_ports = Vec::new();
        let mut nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| {
                let mut args: Vec<String> =
                    CLUSTER_NODE_ARGS.iter().map(ToString::to_string).collect();
                if let Some(tls) = tls {
                    let port = free_port_with_bus();
                    tls_ports.push(port);
                    args.extend(tls.server_args(port));
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                RedisServer::start_with(free_port_with_bus(), &args)
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        // redis-cli makes the first three nodes the masters.
        let replicas = nodes.split_off(3);
        let cluster = Self {
            masters: nodes,
            replicas,
            tls_ports,
        };
        cluster.wait_until_ok();
        for replica in &cluster.replicas {
            wait_until("replicas in sync", || {
                replica
                    .cli(&["INFO", "replication"])
                    .is_some_and(|info| info.contains("master_link_status:up"))
            });
        }
        cluster
    }

    /// Waits until every running node reports `cluster_state:ok`.
    pub fn wait_until_ok(&self) {
        wait_until("cluster_state:ok", || {
            self.masters.iter().chain(&self.replicas).all(|m| {
                !m.is_running()
                    || m.cli(&["CLUSTER", "INFO"])
                        .is_some_and(|info| info.contains("cluster_state:ok"))
            })
        });
    }

    /// `redis-cluster://` with every master as a seed node.
    pub fn url(&self) -> String {
        let ports: Vec<u16> = self.masters.iter().map(|m| m.port).collect();
        Self::url_of("redis-cluster", "127.0.0.1", &ports)
    }

    /// `rediss-cluster://localhost:…` on the masters' TLS ports.
    pub fn tls_url(&self) -> String {
        Self::url_of("rediss-cluster", "localhost", &self.tls_ports)
    }

    /// `SCHEME://HOST:PORT?node=HOST:PORT&…` naming every port.
    pub fn url_of(scheme: &str, host: &str, ports: &[u16]) -> String {
        let mut nodes = ports.iter().map(|port| format!("{host}:{port}"));
        let first = nodes.next().unwrap_or_default();
        let rest: Vec<String> = nodes.map(|n| format!("node={n}")).collect();
        format!("{scheme}://{first}?{}", rest.join("&"))
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

    /// The cluster's node ID of `node`.
    pub fn node_id(node: &RedisServer) -> String {
        node.cli(&["CLUSTER", "MYID"])
            .expect("CLUSTER MYID answers")
    }

    /// Starts `redis-cli --cluster reshard`, moving `slots` slots from master `from` to
    /// master `to`, in the background; the caller waits for it and must kill it on panic
    /// (a [`Reshard`] does on drop).
    pub fn reshard(&self, from: usize, to: usize, slots: u32) -> Reshard {
        let child = Command::new("redis-cli")
            .args(["--cluster", "reshard"])
            .arg(format!("127.0.0.1:{}", self.masters[from].port))
            .args(["--cluster-from", &Self::node_id(&self.masters[from])])
            .args(["--cluster-to", &Self::node_id(&self.masters[to])])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli runs");
        Reshard { child }
    }

    /// How many slots master `index` serves, as it says itself.
    pub fn slot_count(&self, index: usize) -> usize {
        let master = &self.masters[index];
        let id = Self::node_id(master);
        master
            .cli(&["CLUSTER", "NODES"])
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with(&id))
            .flat_map(|line| line.split_whitespace().skip(8))
            .map(|range| match range.split_once('-') {
                Some((start, end)) => {
                    end.parse::<usize>().unwrap_or(0) + 1 - start.parse::<usize>().unwrap_or(0)
                }
                None => usize::from(!range.starts_with('[')),
            })
            .sum()
    }
}

/// A running `redis-cli --cluster reshard`, killed on drop.
pub struct Reshard {
    child: Child,
}

impl Reshard {
    /// `None` while it runs, then whether it succeeded.
    pub fn finished(&mut self) -> Option<bool> {
        self.child
            .try_wait()
            .expect("redis-cli reshard state")
            .map(|status| status.success())
    }
}

impl Drop for Reshard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
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
        wait_until("the replica in sync", || {
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
        wait_until("sentinel sees the replica", || {
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
        wait_until("Sentinel promotes the replica", || {
            self.master_port() == Some(self.replica.port)
        });
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let _ = self.sentinel.kill();
        let _ = self.sentinel.wait();
    }
}

/// A port that accepts connections and never answers (a node behind a dead firewall,
/// or a hung process); counts the connections it accepted. Stops on drop.
pub struct SilentNode {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentNode {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("local address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut held: Vec<TcpStream> = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::AcqRel);
                            held.push(stream);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        Self {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// How many connections were opened to it so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Acquire)
    }
}

impl Drop for SilentNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
