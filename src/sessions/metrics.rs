//! Prometheus metrics of the session layer, through the `metrics` facade.
//!
//! Lifecycle counters are driven by the audit trail (every event passes through
//! [`record_event`]), store counters by the instrumented store wrapper: one place each.

use std::{sync::OnceLock, time::Duration};

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::events::EventKind;

/// Store latency buckets, in seconds: from a memory hit to a Redis timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. `None` if another recorder
/// was installed first (then metrics go there instead).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tessera_session_store_latency_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// How often histogram samples are folded into their buckets. The exporter keeps every
/// sample until then (or until a scrape), so without it memory grows with the request
/// rate between scrapes, and without any scraper for ever.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the exporter's upkeep every [`UPKEEP_INTERVAL`] on the current Tokio runtime, for
/// as long as it lives. Does nothing if Tessera's recorder is not the installed one.
pub fn spawn_upkeep() {
    let Some(handle) = handle() else {
        return;
    };
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            handle.run_upkeep();
        }
    });
}

/// Counts one lifecycle event.
pub fn record_event(kind: EventKind, reason: Option<&str>) {
    let reason = reason.unwrap_or("").to_string();
    match kind {
        EventKind::Created => metrics::counter!("tessera_sessions_created_total").increment(1),
        EventKind::Rotated => metrics::counter!("tessera_sessions_rotated_total").increment(1),
        EventKind::IdleExpired => {
            metrics::counter!("tessera_sessions_expired_total", "reason" => "idle").increment(1)
        }
        EventKind::AbsoluteExpired => {
            metrics::counter!("tessera_sessions_expired_total", "reason" => "absolute")
                .increment(1);
        }
        EventKind::Revoked => {
            metrics::counter!("tessera_sessions_revoked_total", "reason" => reason).increment(1)
        }
        EventKind::FingerprintMismatch => {
            metrics::counter!("tessera_sessions_revoked_total", "reason" => "fingerprint_mismatch")
                .increment(1);
        }
        EventKind::Login => {
            metrics::counter!("tessera_logins_total", "result" => "ok").increment(1)
        }
        EventKind::LoginFailed => {
            metrics::counter!("tessera_logins_total", "result" => "failed").increment(1)
        }
        EventKind::LoginThrottled => {
            metrics::counter!("tessera_logins_total", "result" => "throttled").increment(1)
        }
        EventKind::Logout => metrics::counter!("tessera_logouts_total").increment(1),
        EventKind::PasswordChanged
        | EventKind::PlatformSwitched
        | EventKind::StoreError
        | EventKind::Registered
        | EventKind::AccountDisabled => {}
    }
}

/// The handles of one store operation's series, registered once: a `counter!` with a
/// variable label builds and hashes its key on every call (one per request on the hot
/// path).
struct StoreOpMetrics {
    op: &'static str,
    operations: Counter,
    latency: Histogram,
    errors: Counter,
}

impl StoreOpMetrics {
    fn register(op: &'static str) -> Self {
        Self {
            op,
            operations: metrics::counter!("tessera_session_store_operations_total", "op" => op),
            latency: metrics::histogram!("tessera_session_store_latency_seconds", "op" => op),
            errors: metrics::counter!("tessera_session_store_errors_total", "op" => op),
        }
    }
}

/// The operations of the store wrapper, registered with the recorder on first use (after
/// installing it, so the handles never point at the no-op recorder).
fn store_ops() -> &'static [StoreOpMetrics] {
    static OPS: OnceLock<Vec<StoreOpMetrics>> = OnceLock::new();
    OPS.get_or_init(|| {
        let _ = handle();
        ["load", "save", "create", "delete"]
            .into_iter()
            .map(StoreOpMetrics::register)
            .collect()
    })
}

/// Counts one store operation, its latency and whether it failed.
pub fn record_store_op(op: &'static str, elapsed: Duration, failed: bool) {
    let registered = store_ops().iter().find(|m| m.op == op);
    let fresh;
    let metrics = match registered {
        Some(metrics) => metrics,
        None => {
            fresh = StoreOpMetrics::register(op);
            &fresh
        }
    };
    metrics.operations.increment(1);
    metrics.latency.record(elapsed.as_secs_f64());
    if failed {
        metrics.errors.increment(1);
    }
}

/// Sets the live-sessions gauge (from the registry, at scrape time).
#[allow(clippy::cast_precision_loss)]
pub fn set_live_sessions(store: &str, count: u64) {
    metrics::gauge!("tessera_sessions_live", "store" => store.to_string()).set(count as f64);
}

/// Counts audit events lost to a full queue or a failed write.
pub fn record_audit_loss(kind: &'static str, count: u64) {
    metrics::counter!("tessera_audit_events_lost_total", "cause" => kind).increment(count);
}
