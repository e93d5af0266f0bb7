//! What `/metrics` reads at scrape time, besides the counters: live sessions (the
//! registry: counted per scrape up to 10,000, past that as counted in the background at
//! most a minute before), whether the store answers and how fast, Redis's memory and keys, the audit
//! queue, and the last `sessions_cleanup` runs, which the task's own process records in
//! the database. Each is one cheap question (the store ping and Redis's `INFO memory` and
//! `DBSIZE` are bounded by [`STORE_PROBE_TIMEOUT`]; the task runs are one or two lookups
//! down an index), so a scrape stays cheap at any table size.

use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;

use super::{
    error::SessionError,
    maintenance::{CleanupReport, CLEANUP_TASK},
    metrics::{Readings, RedisReading, StoreReading, TaskReading},
    stores::ops::StoreOps,
    Sessions,
};
use crate::models::task_runs::{self, Model as TaskRun};

/// How long a scrape waits for the session store: a store that takes longer counts as down.
pub const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Takes the readings one scrape serves.
///
/// # Errors
/// When the database does not answer.
pub async fn readings(
    sessions: &Sessions,
    db: &DatabaseConnection,
) -> Result<Readings, SessionError> {
    // The store is asked while the database is: a slow store does not delay the queries.
    let (from_database, (store, redis)) = tokio::join!(
        async {
            let live_sessions = sessions.live_counts().await?.per_store;
            let runs = task_runs::last_runs(db, CLEANUP_TASK).await?;
            Ok::<_, SessionError>((live_sessions, runs))
        },
        probe_store(sessions)
    );
    let (live_sessions, runs) = from_database?;
    Ok(Readings {
        live_sessions,
        store,
        redis,
        audit_queue: sessions.audit().queue_depth(),
        cleanup_vanished_sessions: runs
            .last_success
            .as_ref()
            .and_then(TaskRun::report_as::<CleanupReport>)
            .map(|report| report.registry_vanished),
        tasks: vec![TaskReading {
            task: CLEANUP_TASK.to_string(),
            last_run: runs.last.as_ref().and_then(|run| {
                run.outcome()
                    .map(|outcome| (unix_seconds(run.started_at), outcome))
            }),
            last_finished: runs
                .last
                .as_ref()
                .and_then(|run| run.finished_at.map(unix_seconds)),
            last_success: runs
                .last_success
                .as_ref()
                .and_then(|run| run.finished_at.map(unix_seconds)),
        }],
    })
}

/// Pings the store and, when it is Redis and answers, reads its memory and key count.
async fn probe_store(sessions: &Sessions) -> (StoreReading, Option<RedisReading>) {
    let started = Instant::now();
    let probe = async {
        let health = sessions.health().await;
        let ping = started.elapsed();
        let redis = match sessions.backend().redis() {
            Some(redis) if health.ok => redis.usage().await.ok().map(|usage| {
                let figure = |name| {
                    usage
                        .iter()
                        .find_map(|(label, value)| (*label == name).then_some(*value))
                        .unwrap_or(0)
                };
                RedisReading {
                    used_memory_bytes: figure("used_memory"),
                    keys: figure("keys"),
                }
            }),
            _ => None,
        };
        (health.ok, ping, redis)
    };
    let store = sessions.store_kind().name();
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, probe).await {
        Ok((up, ping, redis)) => (StoreReading { store, up, ping }, redis),
        Err(_) => (
            StoreReading {
                store,
                up: false,
                ping: started.elapsed(),
            },
            None,
        ),
    }
}

#[allow(clippy::cast_precision_loss)]
fn unix_seconds(at: chrono::DateTime<chrono::FixedOffset>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}
