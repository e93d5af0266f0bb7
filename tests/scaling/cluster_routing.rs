//! A Redis Cluster that changes under the app: slots migrating and resharded while users
//! click, a master failing over to its replica, every node away, nodes on TLS. The
//! figures printed (run with --nocapture) are the README's "Scaling out" figures.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::future::join_all;
use serial_test::serial;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{authenticated, log_in, on_redis, session_status, store_key};
use crate::support::{
    clock::{eventually, PATIENCE},
    redis_topology::{ClusterTls, RedisCluster, SilentNode},
    TestApp,
};

/// Logs in `count` new users through `app`; their cookie IDs.
async fn log_in_users(app: &TestApp, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let email = format!("user{n}@example.com");
        app.create_user(&email, false).await;
        ids.push(log_in(app, &email).await);
    }
    ids
}

/// `GET /dashboard` over HTTP at `address` (from [`TestApp::serve`]) with cookie ID
/// `id`: its status (0 when no HTTP answer came). A page other than the dashboard or
/// the 503 page is reported with its title.
async fn click(address: &str, id: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(address).await else {
        return 0;
    };
    let request = format!(
        "GET /dashboard HTTP/1.1\r\nHost: {address}\r\nCookie: session={id}\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    if stream.write_all(request.as_bytes()).await.is_err()
        || stream.read_to_end(&mut answer).await.is_err()
    {
        return 0;
    }
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    if status != 200 && status != 503 {
        let title = answer
            .split_once("<title>")
            .and_then(|(_, rest)| rest.split_once("</title>"))
            .map_or("", |(title, _)| title);
        eprintln!("click: {status} {title}");
    }
    status
}

/// Every user clicks through `/dashboard` over HTTP, each in a task of their own (as a
/// server runs requests), one click after another, until `done`; the statuses each
/// user saw. `refused` counts the 503 answers as they come.
async fn click_until(
    app: &TestApp,
    ids: &[String],
    done: &Arc<AtomicBool>,
    refused: &Arc<AtomicUsize>,
) -> Vec<Vec<u16>> {
    let base = app.serve().await;
    let address = base.trim_start_matches("http://").to_string();
    let users = ids.iter().map(|id| {
        let (address, id) = (address.clone(), id.clone());
        let (done, refused) = (Arc::clone(done), Arc::clone(refused));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !done.load(Ordering::Acquire) {
                let status = click(&address, &id).await;
                if status == 503 {
                    refused.fetch_add(1, Ordering::AcqRel);
                }
                statuses.push(status);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            statuses
        })
    });
    join_all(users)
        .await
        .into_iter()
        .map(|user| user.expect("a clicking user"))
        .collect()
}

/// Waits (at most [`PATIENCE`]) until every session in `ids` is served again; fails as
/// soon as one is answered as logged out.
async fn served_again_without_logout(app: &TestApp, ids: &[String]) {
    let since = Instant::now();
    for id in ids {
        loop {
            let (status, body) = session_status(app, id).await;
            if status == 200 {
                assert!(authenticated(&body), "{id} was logged out: {body}");
                break;
            }
            assert!(
                since.elapsed() < PATIENCE,
                "{id} not served again within {PATIENCE:?}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn a_session_in_a_slot_being_migrated_is_followed_with_asking_then_moved() {
    let cluster = RedisCluster::start();
    let app = TestApp::with(on_redis(&cluster.url())).await;
    let ids = log_in_users(&app, 1).await;
    let key = store_key(&app, &ids[0]);
    let from = cluster.owner_of(&key).expect("an owner");
    let to = (from + 1) % cluster.masters.len();
    let (source, target) = (&cluster.masters[from], &cluster.masters[to]);
    let slot = source.cli(&["CLUSTER", "KEYSLOT", &key]).expect("KEYSLOT");
    let (source_id, target_id) = (RedisCluster::node_id(source), RedisCluster::node_id(target));

    // What `redis-cli --cluster reshard` does to a slot, stopped halfway: the key has
    // moved, the slot has not. Its old owner answers -ASK; the new one serves the key
    // only to a client that sent ASKING first (else it answers -MOVED back).
    for (node, state, peer) in [
        (target, "IMPORTING", &source_id),
        (source, "MIGRATING", &target_id),
    ] {
        assert_eq!(
            node.cli(&["CLUSTER", "SETSLOT", &slot, state, peer])
                .as_deref(),
            Some("OK")
        );
    }
    let migrated = source.cli(&[
        "MIGRATE",
        "127.0.0.1",
        &target.port.to_string(),
        &key,
        "0",
        "5000",
    ]);
    assert_eq!(migrated.as_deref(), Some("OK"));
    for _ in 0..3 {
        let (status, body) = session_status(&app, &ids[0]).await;
        assert!(
            status == 200 && authenticated(&body),
            "during migration: {status} {body}"
        );
    }

    // The slot is handed over: the old owner answers -MOVED, the app follows it.
    for node in &cluster.masters {
        assert_eq!(
            node.cli(&["CLUSTER", "SETSLOT", &slot, "NODE", &target_id])
                .as_deref(),
            Some("OK")
        );
    }
    let (status, body) = session_status(&app, &ids[0]).await;
    assert!(
        status == 200 && authenticated(&body),
        "after migration: {status} {body}"
    );
    assert_eq!(
        cluster.owner_of(&key),
        Some(to),
        "the session stayed where it moved"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn sixty_users_clicking_through_a_live_reshard_of_3000_slots_see_only_pages() {
    let cluster = RedisCluster::start();
    // MIGRATE and the fsync of nodes.conf after each CLUSTER SETSLOT stall a node for a
    // while on a busy disk; the command timeout (`on_redis`) outlasts such a stall, which
    // is not what this test is about.
    let app = TestApp::with(on_redis(&cluster.url())).await;
    let ids = log_in_users(&app, 60).await;
    let keys: Vec<String> = ids.iter().map(|id| store_key(&app, id)).collect();
    let owners_before: Vec<Option<usize>> = keys.iter().map(|k| cluster.owner_of(k)).collect();
    let slots_before = cluster.slot_count(1);

    let started = Instant::now();
    let mut reshard = cluster.reshard(0, 1, 3000);
    let done = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    // A bound on a stuck reshard, not a speed test: it takes seconds on an idle machine.
    let limit = 10 * PATIENCE;
    let watch = async {
        let outcome = loop {
            if let Some(succeeded) = reshard.finished() {
                break succeeded;
            }
            if started.elapsed() > limit {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        done.store(true, Ordering::Release);
        outcome
    };
    let (resharded, statuses) = tokio::join!(watch, click_until(&app, &ids, &done, &refused));
    let took = started.elapsed();
    assert!(
        resharded,
        "redis-cli --cluster reshard failed or took over {limit:?}"
    );
    assert_eq!(
        cluster.slot_count(1),
        slots_before + 3000,
        "3,000 slots moved"
    );

    let views: usize = statuses.iter().map(Vec::len).sum();
    let other: Vec<u16> = statuses
        .iter()
        .flatten()
        .copied()
        .filter(|&s| s != 200)
        .collect();
    let moved = keys
        .iter()
        .zip(&owners_before)
        .filter(|(key, before)| cluster.owner_of(key) != **before)
        .count();
    eprintln!(
        "reshard: {views} page views by 60 users over {took:.1?}, {} not 200, {moved} sessions moved",
        other.len()
    );
    assert!(other.is_empty(), "not a page: {other:?}");
    assert!(statuses.iter().all(|s| !s.is_empty()), "every user clicked");
    assert!(
        moved > 0,
        "no session was on a moved slot: the test proved nothing"
    );
    // And they were all served from their new master afterwards.
    served_again_without_logout(&app, &ids).await;
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn a_master_killed_fails_over_to_its_replica_and_nobody_is_logged_out() {
    let mut cluster = RedisCluster::start_with_replicas();
    let app = TestApp::with(on_redis(&cluster.url())).await;
    let ids = log_in_users(&app, 24).await;
    for master in &cluster.masters {
        // Every write so far has reached the master's replica (waiting at most a minute).
        assert_eq!(master.cli(&["WAIT", "1", "60000"]).as_deref(), Some("1"));
    }
    let victim = cluster
        .owner_of(&store_key(&app, &ids[0]))
        .expect("an owner");

    cluster.masters[victim].kill();
    let killed = Instant::now();
    served_again_without_logout(&app, &ids).await;
    eprintln!(
        "failover: every session served again {:.1?} after the kill",
        killed.elapsed()
    );

    // The old master comes back as a replica: the app's pool to it is shut down one
    // command timeout after it left the slot map, so nothing of the app stays connected
    // to it. A pool left running would be back within its reconnect delay (at most 1 s)
    // and stay: give it that chance, then wait for the count to reach zero.
    cluster.masters[victim].restart();
    cluster.wait_until_ok();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let demoted = &cluster.masters[victim];
    assert!(
        eventually(PATIENCE, || async {
            demoted.connected_clients() == Some(0)
        })
        .await,
        "the app still connects to the demoted master: {:?}",
        demoted.cli(&["CLIENT", "LIST"])
    );
    app.create_user("late@example.com", false).await;
    let late = log_in(&app, "late@example.com").await;
    let (status, body) = session_status(&app, &late).await;
    assert!(status == 200 && authenticated(&body), "{status} {body}");
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn with_no_cluster_node_answering_every_request_answers_at_once() {
    // One seed accepts connections and never answers, two refuse them.
    let silent = SilentNode::start();
    let refused: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port")
        })
        .collect();
    let url = RedisCluster::url_of(
        "redis-cluster",
        "127.0.0.1",
        &[silent.port, refused[0], refused[1]],
    );
    let app = TestApp::with(on_redis(&url)).await;
    let before = silent.accepted();

    for wave in 0..2 {
        // 12 returning users and 4 on the login page, all at once.
        let answers = join_all((0..16).map(|n| {
            let app = &app;
            async move {
                let started = Instant::now();
                let browser = app.browser();
                let request = if n < 12 {
                    let id = tower_sessions::session::Id::default();
                    browser
                        .get("/dashboard")
                        .add_header("cookie", format!("session={id}"))
                } else {
                    browser.get("/login")
                };
                let status = tokio::time::timeout(PATIENCE, request)
                    .await
                    .map(|response| response.status_code().as_u16());
                (n, status, started.elapsed())
            }
        }))
        .await;
        // How long they took is printed (the README's figure), not asserted: a loaded
        // machine is slow. That they answered, and what, is asserted.
        let slowest = answers.iter().map(|(_, _, took)| *took).max();
        eprintln!("unreachable: wave {wave}, slowest of 16 answers {slowest:.1?}");
        for (n, status, _) in answers {
            let expected = if n < 12 { 503 } else { 200 };
            assert_eq!(
                status,
                Ok(expected),
                "wave {wave}, request {n} (Err: no answer within {PATIENCE:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    // One refresh per wave shared by its requests (at most one more in the background),
    // not a connection per request (32).
    let probes = silent.accepted() - before;
    eprintln!("unreachable: {probes} connections to the silent node for 32 requests");
    assert!(
        probes <= 4,
        "{probes} connections to the silent node for 32 requests"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn connections_return_to_the_pool_sizes_after_an_outage_under_traffic() {
    let mut cluster = RedisCluster::start();
    let pool_size = 3;
    let mut settings = on_redis(&cluster.url());
    settings.sessions["redis"]["pool_size"] = pool_size.into();
    let app = TestApp::with(settings).await;
    let ids = log_in_users(&app, 12).await;
    served_again_without_logout(&app, &ids).await;
    let counts = |cluster: &RedisCluster| -> Vec<u64> {
        cluster
            .masters
            .iter()
            .map(|m| m.connected_clients().expect("CLIENT LIST"))
            .collect()
    };
    let before = counts(&cluster);
    assert!(
        before.iter().all(|&n| n == pool_size),
        "one pool per master: {before:?}"
    );

    let done = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let outage = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for master in &mut cluster.masters {
            master.kill();
        }
        // Ten seconds of outage (reconnect attempts pile up meanwhile), and in any case
        // until the users have met it: a loaded machine may have clicked little so far.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            eventually(PATIENCE, || async { refused.load(Ordering::Acquire) > 0 }).await,
            "the outage was never seen: {} page views answered 503",
            refused.load(Ordering::Acquire)
        );
        for master in &mut cluster.masters {
            master.restart();
        }
        cluster.wait_until_ok();
        served_again_without_logout(&app, &ids).await;
        done.store(true, Ordering::Release);
    };
    let ((), statuses) = tokio::join!(outage, click_until(&app, &ids, &done, &refused));
    let refused = statuses.iter().flatten().filter(|&&s| s == 503).count();
    assert!(
        statuses.iter().flatten().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );

    // Retired pools and one-off probes may still be closing: wait for them to go.
    let settled = |after: &[u64]| {
        before
            .iter()
            .zip(after)
            .all(|(b, a)| b.abs_diff(*a) <= pool_size)
    };
    let mut after = counts(&cluster);
    let deadline = Instant::now() + PATIENCE;
    while !settled(&after) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = counts(&cluster);
    }
    eprintln!("outage: connections per master before {before:?}, after {after:?}, {refused} page views answered 503");
    assert!(settled(&after), "before {before:?}, after {after:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn a_tls_cluster_is_verified_against_the_name_in_the_url() {
    let tls = ClusterTls::generate();
    let cluster = RedisCluster::start_with_tls(&tls);
    // rustls-native-certs reads it when the URL is parsed: the documented way to trust a
    // private CA. No other test in this binary uses TLS to Redis.
    std::env::set_var("SSL_CERT_FILE", tls.ca_file());
    let app = TestApp::with(on_redis(&cluster.tls_url())).await;
    let ids = log_in_users(&app, 30).await;
    served_again_without_logout(&app, &ids).await;
    // The certificate names localhost only; the nodes announce 127.0.0.1. Sessions on
    // every master prove the discovered nodes were verified against the URL's name.
    let owners: Vec<usize> = ids
        .iter()
        .map(|id| cluster.owner_of(&store_key(&app, id)).expect("an owner"))
        .collect();
    for master in 0..cluster.masters.len() {
        assert!(
            owners.contains(&master),
            "no session on master {master}: {owners:?}"
        );
    }
}
