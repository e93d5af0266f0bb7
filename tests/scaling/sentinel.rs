//! A master and a replica behind Sentinel: the master dies, Sentinel promotes the
//! replica, and the app follows without a restart.

use serial_test::serial;

use super::{all_served_again, authenticated, log_in, on_redis, session_status};
use crate::support::{redis_topology::RedisSentinel, TestApp};

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn the_app_follows_a_failover_and_replicated_sessions_survive() {
    let mut redis = RedisSentinel::start();
    let app = TestApp::with(on_redis(&redis.url())).await;
    let mut ids = Vec::new();
    for n in 0..10 {
        let email = format!("user{n}@example.com");
        app.create_user(&email, false).await;
        ids.push(log_in(&app, &email).await);
    }
    // Every write so far has reached the replica (waiting at most a minute for it).
    assert_eq!(
        redis.master.cli(&["WAIT", "1", "60000"]).as_deref(),
        Some("1")
    );

    redis.master.kill();
    redis.wait_for_failover();

    all_served_again(&app, &ids).await;
    // New sessions are written to the promoted replica.
    app.create_user("late@example.com", false).await;
    let late = log_in(&app, "late@example.com").await;
    let (status, body) = session_status(&app, &late).await;
    assert!(status == 200 && authenticated(&body), "{status} {body}");
}
