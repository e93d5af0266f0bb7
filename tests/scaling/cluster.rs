//! A three-master Redis Cluster behind two app instances.

use serial_test::serial;

use super::{all_served_again, authenticated, log_in, on_redis, session_status, store_key};
use crate::support::{
    clock::PATIENCE, listed_keys, redis::RedisServer, redis_topology::RedisCluster, Settings,
    TestApp,
};

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn sessions_spread_over_every_master_and_every_instance_reads_every_session() {
    let cluster = RedisCluster::start();
    let one = TestApp::with(on_redis(&cluster.url())).await;
    let two = TestApp::with(Settings {
        share_with: Some(one.scratch()),
        ..on_redis(&cluster.url())
    })
    .await;

    let mut ids = Vec::new();
    for n in 0..200 {
        let email = format!("user{n}@example.com");
        one.create_user(&email, false).await;
        let through = if n % 2 == 0 { &one } else { &two };
        ids.push(log_in(through, &email).await);
    }
    for id in &ids {
        for app in [&one, &two] {
            let (status, body) = session_status(app, id).await;
            assert!(
                status == 200 && authenticated(&body),
                "{id}: {status} {body}"
            );
        }
    }

    let mut per_master = vec![0; cluster.masters.len()];
    for id in &ids {
        let owner = cluster
            .owner_of(&store_key(&one, id))
            .expect("every session is on some master");
        per_master[owner] += 1;
    }
    assert!(per_master.iter().all(|&n| n > 0), "{per_master:?}");
    let listed = listed_keys(one.sessions().backend()).await.expect("keys");
    assert_eq!(listed.len(), 200, "listing visits every master");
    // What a session costs the cluster, for the README's sessions-per-GiB figure (run
    // with --nocapture): MEMORY USAGE of each key on its master (key, value, expiry).
    let total: u64 = ids
        .iter()
        .map(|id| {
            let key = store_key(&one, id);
            let owner = cluster.owner_of(&key).expect("an owner");
            cluster.masters[owner]
                .cli(&["MEMORY", "USAGE", &key])
                .and_then(|bytes| bytes.parse::<u64>().ok())
                .expect("MEMORY USAGE answers")
        })
        .sum();
    let per_session = total / 200;
    eprintln!("cluster: MEMORY USAGE {per_session} bytes per session (200 sessions)");
    assert!(
        (200..1024).contains(&per_session),
        "{per_session} bytes per session"
    );

    // Throttling counters live on the cluster too.
    let wrong = one
        .log_in(&one.browser(), "user0@example.com", "wrong password", false)
        .await;
    assert_eq!(wrong.status_code(), 422);
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn a_dead_master_costs_only_its_own_sessions_and_they_return_with_it() {
    let mut cluster = RedisCluster::start();
    let app = TestApp::with(on_redis(&cluster.url())).await;
    let mut ids = Vec::new();
    for n in 0..24 {
        let email = format!("user{n}@example.com");
        app.create_user(&email, false).await;
        ids.push(log_in(&app, &email).await);
    }
    let owners: Vec<usize> = ids
        .iter()
        .map(|id| cluster.owner_of(&store_key(&app, id)).expect("an owner"))
        .collect();
    let victim = owners[0];
    assert!(
        owners.iter().any(|&o| o != victim),
        "sessions on one master only"
    );

    cluster.masters[victim].kill();
    for (id, &owner) in ids.iter().zip(&owners) {
        let (status, body) = tokio::time::timeout(PATIENCE, session_status(&app, id))
            .await
            .expect("answered, not hung");
        if owner == victim {
            assert_eq!(status, 503, "a session on the dead master: {body}");
        } else {
            assert!(status == 200 && authenticated(&body), "{status} {body}");
        }
    }

    cluster.masters[victim].restart();
    cluster.wait_until_ok();
    all_served_again(&app, &ids).await;
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn a_url_that_names_the_wrong_topology_stops_the_start_with_one_line() {
    let plain = RedisServer::start();
    let error = TestApp::try_with(on_redis(&format!(
        "redis-cluster://127.0.0.1:{}",
        plain.port
    )))
    .await
    .err()
    .expect("cluster settings against a plain Redis are refused")
    .to_string();
    assert!(error.contains("settings.sessions.redis.url"), "{error}");
    assert!(error.contains("not a cluster node"), "{error}");
    assert!(!error.contains('\n'), "one line: {error}");

    let cluster = RedisCluster::start();
    let error = TestApp::try_with(on_redis(&cluster.masters[0].url()))
        .await
        .err()
        .expect("a plain URL to a cluster node is refused")
        .to_string();
    assert!(error.contains("use redis-cluster://"), "{error}");
}
