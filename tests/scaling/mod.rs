//! Several app instances on a Redis deployment of several processes: a Redis Cluster and
//! a master behind Sentinel, built on 127.0.0.1 by the harness. One such test at a time:
//! each starts up to four Redis processes and takes a few seconds of failover.

mod cluster;
mod cluster_routing;
mod sentinel;
mod throttle;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{clock::PATIENCE, parse_id, session_id_set, Settings, TestApp};

/// Test settings with sessions in Redis at `url`, giving up on a command after 5 s. A
/// live node answers in milliseconds; the timeout decides how long a request for a dead
/// or silent node waits for its 503, which no test measures. On a loaded machine a short
/// one turned slow answers into 503s: the first login on a fresh cluster (reading the
/// slot map and connecting to every master) did not fit in 500 ms.
fn on_redis(url: &str) -> Settings {
    Settings {
        sessions: json!({"store": "redis", "redis": {"url": url, "command_timeout_ms": 5000}}),
        ..Settings::default()
    }
}

/// The Redis key of the session with cookie ID `id` (a keyed hash of it).
fn store_key(app: &TestApp, id: &str) -> String {
    app.sessions().hasher().store_key(&parse_id(id)).to_string()
}

/// Logs `email` in through `app`'s form; the new session's cookie ID.
async fn log_in(app: &TestApp, email: &str) -> String {
    let response = app
        .log_in(&app.browser(), email, "correct horse battery", false)
        .await;
    assert_eq!(response.status_code(), 303, "login of {email}");
    // The login's audit events are written in the background; a user created while
    // they are (the next one, in these tests) would find SQLite locked, as its
    // read-then-write transaction cannot wait for another writer.
    app.flush_audit().await;
    session_id_set(&response, "session").expect("a session cookie")
}

/// `GET /api/session` with cookie ID `id` through `app`: the status and the JSON body.
async fn session_status(app: &TestApp, id: &str) -> (u16, Value) {
    let response = app
        .browser()
        .get("/api/session")
        .add_header("cookie", format!("session={id}"))
        .await;
    let status = response.status_code().as_u16();
    let body = serde_json::from_str(&response.text()).unwrap_or(Value::Null);
    (status, body)
}

/// Waits (at most [`PATIENCE`]) until every session in `ids` is served by `app` again.
async fn all_served_again(app: &TestApp, ids: &[String]) {
    let deadline = Instant::now() + PATIENCE;
    for id in ids {
        loop {
            let (status, body) = session_status(app, id).await;
            if status == 200 && authenticated(&body) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not served again: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn authenticated(body: &Value) -> bool {
    body["authenticated"] == Value::Bool(true)
}
