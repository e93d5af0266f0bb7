//! Store micro-benchmarks: `cargo bench --bench stores`.
//!
//! Load and save of one session record through the memory, file and Redis stores, bare
//! and behind the production wrappers (hashed IDs + encryption); file store loads with 1k
//! and 100k files in the directory; and one sweep of 100k expired files. Redis is a private
//! `redis-server` on a free port, started and stopped here.

use std::{
    collections::HashMap,
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use criterion::{criterion_group, BenchmarkId, Criterion};
use serde_json::json;
use tessera::sessions::{
    keys::{IdHasher, SessionSecret},
    stores::{
        encrypted::{Encrypted, EncryptionKeys},
        file::FileStore,
        hashed::HashedIds,
        memory::MemoryStore,
        ops::StoreOps,
        redis::{RedisConfig, RedisSessionStore},
        Backend,
    },
};
use time::OffsetDateTime;
use tokio::runtime::Runtime;
use tower_sessions::{
    session::{Id, Record},
    session_store::SessionStore,
};

/// A record shaped like a logged-in Tessera session.
fn record() -> Record {
    Record {
        id: Id::default(),
        data: HashMap::from([(
            "tessera".to_string(),
            // SessionData's stored form: its fields in order, without names.
            json!([
                42,
                1_790_000_000,
                1_790_000_600,
                true,
                "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
                "203.0.113.7",
                "yPqk3Wq9w2nYb0G5j1rR4m",
                7,
                "q0Yd2mL8r5Vt1xW9bN3cKg",
                null
            ]),
        )]),
        expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(2),
    }
}

struct RedisProcess(Child, u16);

impl RedisProcess {
    fn start(dir: &std::path::Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        std::thread::sleep(Duration::from_millis(300));
        Self(child, port)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wrapped(backend: Backend) -> HashedIds<Encrypted<Backend>> {
    let secret = SessionSecret::new(b"benchmark-secret-0123456789abcdef0123".to_vec());
    let keys = EncryptionKeys::derive(secret.expose());
    HashedIds::new(Encrypted::new(backend, Some(keys)), IdHasher::new(&secret))
}

fn bench_store<S: SessionStore + Clone>(c: &mut Criterion, rt: &Runtime, name: &str, store: &S) {
    let mut stored = record();
    rt.block_on(store.create(&mut stored)).expect("create");
    let mut group = c.benchmark_group("store");
    group.bench_function(BenchmarkId::new("load", name), |b| {
        b.to_async(rt)
            .iter(|| async { store.load(&stored.id).await.expect("load") });
    });
    group.bench_function(BenchmarkId::new("save", name), |b| {
        b.to_async(rt)
            .iter(|| async { store.save(&stored).await.expect("save") });
    });
    group.finish();
}

fn stores(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let dir = tempfile::TempDir::new().expect("dir");
    let redis_process = RedisProcess::start(dir.path());
    let redis = rt.block_on(async {
        let store = RedisSessionStore::connect(&RedisConfig {
            url: format!("redis://127.0.0.1:{}", redis_process.1),
            pool_size: 2,
            command_timeout: Duration::from_secs(1),
            reconnect_max_delay: Duration::from_secs(1),
        })
        .expect("pool");
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.ping().await.is_err() && Instant::now() < deadline {}
        store
    });
    let file = FileStore::open(dir.path().join("sessions")).expect("file store");
    let backends = [
        ("memory", Backend::Memory(MemoryStore::default())),
        ("file", Backend::File(file)),
        ("redis", Backend::Redis(redis)),
    ];
    for (name, backend) in backends {
        bench_store(c, &rt, name, &backend);
        bench_store(
            c,
            &rt,
            &format!("{name}+hashed+encrypted"),
            &wrapped(backend),
        );
    }
}

fn fill(store: &FileStore, rt: &Runtime, count: usize, lifetime: time::Duration) {
    rt.block_on(async {
        for _ in 0..count {
            let mut r = record();
            r.expiry_date = OffsetDateTime::now_utc() + lifetime;
            store.create(&mut r).await.expect("create");
        }
    });
}

fn file_directory_size(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("file_load_with_n_files");
    for count in [1_000, 100_000] {
        let dir = tempfile::TempDir::new().expect("dir");
        let store = FileStore::open(dir.path()).expect("store");
        fill(&store, &rt, count - 1, time::Duration::hours(2));
        let mut probe = record();
        rt.block_on(store.create(&mut probe)).expect("create");
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.to_async(&rt)
                .iter(|| async { store.load(&probe.id).await.expect("load") });
        });
    }
    group.finish();
}

/// One sweep of 100k expired files, timed once (a criterion loop would need 100k new
/// files per sample).
fn cleanup_100k() {
    let rt = Runtime::new().expect("runtime");
    let dir = tempfile::TempDir::new().expect("dir");
    let store = FileStore::open(dir.path()).expect("store");
    fill(&store, &rt, 100_000, time::Duration::seconds(1));
    std::thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    let report = rt.block_on(store.sweep_expired()).expect("sweep");
    println!(
        "cleanup/100k_expired_files: {:.2} s ({} removed)",
        started.elapsed().as_secs_f64(),
        report.expired
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = stores, file_directory_size
}

fn main() {
    benches();
    cleanup_100k();
    Criterion::default().configure_from_args().final_summary();
}
