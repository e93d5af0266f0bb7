//! The pieces of the session hot path (`GET /api/session` with a live session), one
//! criterion benchmark each, so that a regression shows where it is:
//! `cargo bench --bench hot_path`.
//!
//! In request order: find the ID in the Cookie header, resolve the client's address
//! (directly connected, and behind a trusted proxy), hash the ID into the store key, open
//! the sealed record (XChaCha20-Poly1305; measured through the encrypting wrapper over
//! the memory store, next to the bare memory store so the difference is the opening),
//! decode the record's value into `SessionData` (as tower-sessions hands it over: a copy
//! of the JSON value, then deserialized), the browser fingerprint (one HMAC), and the
//! policy verdict. The Redis round trip is `cargo bench --bench stores`.
//!
//! Around them, the request ID (`request_id`): a new ID, its response header and the
//! task-local every log line reads, for a request that logs nothing, under production's
//! JSON logger; next to the same request without the layer, so the difference is its cost.

use std::{
    collections::HashMap, convert::Infallible, hint::black_box, net::IpAddr, time::Duration,
};

use axum::{
    body::Body,
    http::{header::COOKIE, HeaderMap, HeaderValue, Request},
    response::Response,
};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use tessera::middleware::request_id::RequestIdLayer;
use tessera::sessions::{
    client_address::TrustedProxies,
    data::SessionData,
    keys::{IdHasher, SessionSecret},
    layer::session_id_from_headers,
    policy::SessionPolicy,
    stores::encrypted::{Encrypted, EncryptionKeys},
};
use time::OffsetDateTime;
use tokio::runtime::Runtime;
use tower::{Layer, ServiceExt};
use tower_sessions::{
    session::{Id, Record},
    session_store::SessionStore,
    MemoryStore,
};
use tracing_subscriber::{filter::LevelFilter, layer::SubscriberExt};

const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                          Chrome/131.0.0.0 Safari/537.36";

/// The record value of a logged-in session, as Tessera writes it (a list, no names).
fn value() -> serde_json::Value {
    json!([
        42,
        1_790_000_000,
        1_790_000_600,
        true,
        USER_AGENT,
        "203.0.113.7",
        "yPqk3Wq9w2nYb0G5j1rR4m",
        7,
        "q0Yd2mL8r5Vt1xW9bN3cKg",
        null
    ])
}

fn record() -> Record {
    Record {
        id: Id::default(),
        data: HashMap::from([(SessionData::KEY.to_string(), value())]),
        expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(2),
    }
}

fn secret() -> SessionSecret {
    SessionSecret::new(b"benchmark-secret-0123456789abcdef0123".to_vec())
}

fn cookie_parse(c: &mut Criterion) {
    let id = Id::default().to_string();
    let mut headers = HeaderMap::new();
    // A browser sends other cookies too; ours is last, the worst case for the scan.
    let cookie = format!("_ga=GA1.1.123456789.1790000000; theme=dark; __Host-session={id}");
    headers.insert(COOKIE, HeaderValue::from_str(&cookie).expect("header"));
    c.bench_function("hot_path/cookie_parse", |b| {
        b.iter(|| session_id_from_headers(black_box(&headers), "__Host-session"));
    });
}

fn client_address(c: &mut Criterion) {
    let trusted = TrustedProxies::default();
    let mut headers = HeaderMap::new();
    // What nginx sends with `$proxy_add_x_forwarded_for` for a client that sent none.
    headers.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.23"));
    let mut group = c.benchmark_group("hot_path/client_address");
    // A direct client: the header is not read.
    group.bench_function("untrusted_peer", |b| {
        let peer = IpAddr::from([198, 51, 100, 9]);
        b.iter(|| trusted.client_address(black_box(peer), black_box(&headers)));
    });
    // Behind nginx on loopback: one entry walked.
    group.bench_function("behind_proxy", |b| {
        let peer = IpAddr::from([127, 0, 0, 1]);
        b.iter(|| trusted.client_address(black_box(peer), black_box(&headers)));
    });
    group.finish();
}

fn key_hash(c: &mut Criterion) {
    let hasher = IdHasher::new(&secret());
    let id = Id::default();
    c.bench_function("hot_path/key_hash", |b| {
        b.iter(|| hasher.store_key(black_box(&id)));
    });
}

fn open(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let memory = MemoryStore::default();
    let sealed = Encrypted::new(
        MemoryStore::default(),
        Some(EncryptionKeys::derive(secret().expose())),
    );
    let mut group = c.benchmark_group("hot_path/open");
    for (name, store) in [
        ("memory_load", &memory as &dyn SessionStore),
        ("memory_load+open", &sealed as &dyn SessionStore),
    ] {
        let mut stored = record();
        rt.block_on(store.create(&mut stored)).expect("create");
        group.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { store.load(black_box(&stored.id)).await.expect("load") });
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let stored = value();
    c.bench_function("hot_path/decode", |b| {
        b.iter(|| serde_json::from_value::<SessionData>(black_box(&stored).clone()).expect("data"));
    });
}

fn fingerprint(c: &mut Criterion) {
    let hasher = IdHasher::new(&secret());
    c.bench_function("hot_path/fingerprint", |b| {
        let stored = hasher.fingerprint(USER_AGENT, "");
        // What every request does: compare against the session's stored fingerprint.
        b.iter(|| hasher.fingerprint_matches(black_box(&stored), black_box(USER_AGENT), ""));
    });
}

fn policy(c: &mut Criterion) {
    let policy = SessionPolicy::new(7200, 604_800, None).expect("policy");
    c.bench_function("hot_path/policy", |b| {
        b.iter(|| {
            policy.judge(
                black_box(1_790_000_000),
                black_box(1_790_000_600),
                black_box(1_790_000_700),
            )
        });
    });
}

fn request_id(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let logger = tessera::logger::layer(std::io::sink, &loco_rs::logger::Format::Json, false);
    let subscriber = tracing_subscriber::registry()
        .with(logger)
        .with(LevelFilter::INFO);
    let _installed = tracing::subscriber::set_default(subscriber);
    let handler = tower::service_fn(|_: Request<Body>| async {
        tracing::debug!("filtered out, as on the hot path");
        Ok::<_, Infallible>(Response::new(Body::empty()))
    });
    let layered = RequestIdLayer.layer(handler);
    let mut group = c.benchmark_group("hot_path/request_id");
    group.bench_function("without", |b| {
        b.to_async(&rt)
            .iter(|| async { handler.oneshot(Request::new(Body::empty())).await });
    });
    group.bench_function("with", |b| {
        b.to_async(&rt)
            .iter(|| async { layered.clone().oneshot(Request::new(Body::empty())).await });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_secs(1));
    targets = cookie_parse, client_address, key_hash, open, decode, fingerprint, policy, request_id
}
criterion_main!(benches);
