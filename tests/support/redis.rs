//! Private `redis-server` processes on free ports, so tests can stop and break Redis
//! without touching the machine's shared one.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

use super::clock::PATIENCE;

/// A redis-server this test owns. Killed on drop.
pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// Extra `redis-server` arguments (cluster mode, replication, ...).
    args: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A free port whose cluster bus port (+10000) is free too.
pub fn free_port_with_bus() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Runs `redis-cli ARGS` against the server (or sentinel) on `port`; its trimmed output,
/// `None` when it failed.
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    run_redis_cli(&["-h", "127.0.0.1", "-p", &port.to_string()], args)
}

/// Runs `redis-cli ARGS` against the server at `url` (`redis://host:port`); its trimmed
/// output, `None` when it failed.
pub fn redis_cli_url(url: &str, args: &[&str]) -> Option<String> {
    run_redis_cli(&["-u", url], args)
}

fn run_redis_cli(server: &[&str], args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(server)
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .filter(|s| !s.starts_with("Could not connect"))
}

/// Fails the test with one line saying what to install when `redis-server` is missing.
fn require_redis() {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "redis-server not found: install it (Debian: apt-get install redis-server) to run the Redis tests");
}

impl RedisServer {
    /// Starts a server that keeps every write in an append-only file (fsync always), so a
    /// killed and restarted server still has every session.
    pub fn start() -> Self {
        Self::start_with(free_port(), &[])
    }

    /// Starts a server on `port` with extra `redis-server` arguments.
    pub fn start_with(port: u16, args: &[&str]) -> Self {
        require_redis();
        let mut server = Self {
            port,
            dir: TempDir::new().expect("temp dir"),
            child: None,
            args: args.iter().map(ToString::to_string).collect(),
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(&self.args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while self.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The clients connected now, leaving out the redis-cli that asks and Redis's own
    /// replication links (`INFO`'s `connected_clients` counts a replica's link to its
    /// master).
    pub fn connected_clients(&self) -> Option<u64> {
        let clients = self.cli(&["CLIENT", "LIST", "TYPE", "normal"])?;
        let count = clients.lines().filter(|line| !line.is_empty()).count();
        Some(u64::try_from(count).ok()?.saturating_sub(1))
    }

    /// Runs a command with redis-cli; its trimmed output, `None` when it failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        redis_cli(self.port, args)
    }

    pub fn keys(&self) -> Vec<String> {
        self.cli(&["--scan"])
            .map(|out| {
                out.lines()
                    .map(str::to_string)
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The keys of session records: every key but Tessera's own (`tessera:*`, such as the
    /// throttle's counters).
    pub fn session_keys(&self) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter(|key| !key.starts_with("tessera:"))
            .collect()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
