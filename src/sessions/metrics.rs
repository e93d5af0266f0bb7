//! Prometheus metrics of the app: every series name `/metrics` serves is written here.
//!
//! Two kinds, two paths:
//! - **counters and histograms** go through the `metrics` facade into the process's
//!   recorder: lifecycle counters driven by the audit trail (every event passes through
//!   [`record_event`]), store counters by the instrumented store wrapper, HTTP answers by
//!   the stack's outermost layer ([`record_http_response`]): one place each;
//! - **readings** (live sessions, whether the store answers, Redis memory, the audit
//!   queue, the last task runs) are taken at scrape time and rendered by [`render`]
//!   straight into the answer. Never kept in the recorder: a value there would outlive its
//!   source (a store label nobody reports any more stays at its last count), and two apps
//!   in one process would overwrite each other's.
//!
//! The alerting rules in `ops/prometheus/` and the dashboard in `ops/grafana/` use these
//! names; `tests/ops/alerts.rs` checks that every name they use is served.

use std::{fmt::Write as _, sync::OnceLock, time::Duration};

use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::events::{EndReason, EventKind};
use crate::models::task_runs::Outcome;

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
                Ok(handle) => {
                    describe_counters();
                    register_zeroed_counters();
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// The `HELP` lines of the recorder's series.
fn describe_counters() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        "tessera_sessions_created_total",
        "Sessions started by a login."
    );
    describe_counter!(
        "tessera_sessions_rotated_total",
        "Session IDs renewed while the session goes on."
    );
    describe_counter!(
        "tessera_sessions_expired_total",
        "Sessions ended by their idle timeout or absolute lifetime, by reason."
    );
    describe_counter!(
        "tessera_sessions_revoked_total",
        "Sessions ended by someone or something else than their user or the clock, by reason."
    );
    describe_counter!(
        "tessera_logins_total",
        "Login attempts by result: ok, failed (wrong email or password), throttled."
    );
    describe_counter!(
        "tessera_logouts_total",
        "Sessions ended by their user logging out."
    );
    describe_counter!(
        "tessera_session_store_operations_total",
        "Session store operations by kind (load, save, create, delete)."
    );
    describe_counter!(
        "tessera_session_store_errors_total",
        "Session store operations that failed, by kind."
    );
    describe_histogram!(
        "tessera_session_store_latency_seconds",
        "How long session store operations took, by kind."
    );
    describe_counter!(
        "tessera_audit_events_lost_total",
        "Audit events never written, by cause: queue_full, write_failed."
    );
}

/// Lifecycle and audit-loss counters, present at 0 from the start: a series that first
/// appears at 1 shows Prometheus no increase, so the first dropped audit event or
/// throttled login would go unseen by an alert, and a dashboard would show no line.
fn register_zeroed_counters() {
    let started = [
        EventKind::Created,
        EventKind::Rotated,
        EventKind::Login,
        EventKind::LoginFailed,
        EventKind::LoginThrottled,
    ]
    .map(|kind| (kind, None));
    let ended = EndReason::ALL.map(|reason| (reason.event(), Some(reason.as_str())));
    for (kind, reason) in started.into_iter().chain(ended) {
        if let Some(counter) = event_counter(kind, reason) {
            counter.increment(0);
        }
    }
    for cause in [AUDIT_LOSS_QUEUE_FULL, AUDIT_LOSS_WRITE_FAILED] {
        metrics::counter!("tessera_audit_events_lost_total", "cause" => cause).increment(0);
    }
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
    if let Some(counter) = event_counter(kind, reason) {
        counter.increment(1);
    }
}

/// The counter a lifecycle event of `kind` (ended for `reason`) moves, if any.
fn event_counter(kind: EventKind, reason: Option<&str>) -> Option<Counter> {
    Some(match kind {
        EventKind::Created => metrics::counter!("tessera_sessions_created_total"),
        EventKind::Rotated => metrics::counter!("tessera_sessions_rotated_total"),
        EventKind::IdleExpired => {
            metrics::counter!("tessera_sessions_expired_total", "reason" => "idle")
        }
        EventKind::AbsoluteExpired => {
            metrics::counter!("tessera_sessions_expired_total", "reason" => "absolute")
        }
        EventKind::Revoked => {
            let reason = reason.unwrap_or("").to_string();
            metrics::counter!("tessera_sessions_revoked_total", "reason" => reason)
        }
        EventKind::FingerprintMismatch => {
            metrics::counter!("tessera_sessions_revoked_total", "reason" => "fingerprint_mismatch")
        }
        EventKind::Login => metrics::counter!("tessera_logins_total", "result" => "ok"),
        EventKind::LoginFailed => metrics::counter!("tessera_logins_total", "result" => "failed"),
        EventKind::LoginThrottled => {
            metrics::counter!("tessera_logins_total", "result" => "throttled")
        }
        EventKind::Logout => metrics::counter!("tessera_logouts_total"),
        EventKind::PasswordChanged
        | EventKind::PlatformSwitched
        | EventKind::StoreError
        | EventKind::Registered
        | EventKind::AccountDisabled => return None,
    })
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

/// The `cause` of audit events dropped because the queue was full.
pub const AUDIT_LOSS_QUEUE_FULL: &str = "queue_full";
/// The `cause` of audit events lost to a failed database write.
pub const AUDIT_LOSS_WRITE_FAILED: &str = "write_failed";

/// Counts audit events lost: `cause` is [`AUDIT_LOSS_QUEUE_FULL`] or
/// [`AUDIT_LOSS_WRITE_FAILED`].
pub fn record_audit_loss(cause: &'static str, count: u64) {
    metrics::counter!("tessera_audit_events_lost_total", "cause" => cause).increment(count);
}

/// HTTP status classes, `1xx` to `5xx`.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One counter handle per status class, registered once (so every class is served from
/// the start, at 0) and then only incremented: nothing is built or hashed per answer.
fn http_responses() -> &'static [Counter; 5] {
    static RESPONSES: OnceLock<[Counter; 5]> = OnceLock::new();
    RESPONSES.get_or_init(|| {
        let _ = handle();
        metrics::describe_counter!(
            "tessera_http_responses_total",
            "HTTP answers by status class, counted around the whole stack."
        );
        STATUS_CLASSES
            .map(|class| metrics::counter!("tessera_http_responses_total", "class" => class))
    })
}

/// Registers the HTTP answer counters (at start, so each class is served at 0).
pub fn register_http_responses() {
    let _ = http_responses();
}

/// Counts one HTTP answer by its status class (a code outside 100..=599 is not counted).
pub fn record_http_response(status: u16) {
    let class = usize::from(status / 100);
    if let Some(counter) = class
        .checked_sub(1)
        .and_then(|index| http_responses().get(index))
    {
        counter.increment(1);
    }
}

/// What a scrape reads from the app's state, rendered fresh by [`render`].
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Live sessions per store, from the registry.
    pub live_sessions: Vec<(String, u64)>,
    /// The session store's answer to a ping.
    pub store: StoreReading,
    /// Redis's own figures, when sessions are in Redis and it answered.
    pub redis: Option<RedisReading>,
    /// Audit events waiting for the database, and how many fit before events are dropped.
    pub audit_queue: (usize, usize),
    /// The last runs of each recorded task.
    pub tasks: Vec<TaskReading>,
    /// Registry rows whose session the store lost before they expired, found by the last
    /// successful `sessions_cleanup` (`None` before its first recorded success).
    pub cleanup_vanished_sessions: Option<u64>,
}

/// The session store's answer to a ping.
#[derive(Debug, Clone, Default)]
pub struct StoreReading {
    pub store: &'static str,
    pub up: bool,
    pub ping: Duration,
}

/// Redis's figures, summed over every master of a cluster.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisReading {
    /// `INFO memory`'s `used_memory`.
    pub used_memory_bytes: u64,
    /// `DBSIZE`: every key of the database, sessions and Tessera's throttle counters, and
    /// anything else kept there.
    pub keys: u64,
}

/// One task's newest run and newest successful run, as Unix seconds.
#[derive(Debug, Clone, Default)]
pub struct TaskReading {
    pub task: String,
    /// When the newest run started, and how it is doing.
    pub last_run: Option<(f64, Outcome)>,
    /// When the newest run finished (`None` while it runs, or when its process died).
    pub last_finished: Option<f64>,
    /// When the newest successful run finished.
    pub last_success: Option<f64>,
}

/// The text `/metrics` serves: the recorder's counters and histograms, then `readings`.
#[must_use]
pub fn render(readings: &Readings) -> String {
    let mut out = handle().map(PrometheusHandle::render).unwrap_or_default();
    render_readings(&mut out, readings);
    out
}

#[allow(clippy::cast_precision_loss)]
fn render_readings(out: &mut String, r: &Readings) {
    let mut gauge = Gauge::new(out);
    gauge.family(
        "tessera_sessions_live",
        "Live sessions per store, from the session registry.",
    );
    for (store, count) in &r.live_sessions {
        gauge.sample(&[("store", store)], *count as f64);
    }
    let store = [("store", r.store.store)];
    gauge.family(
        "tessera_session_store_up",
        "1 when the session store answered this scrape's ping, else 0.",
    );
    gauge.sample(&store, if r.store.up { 1.0 } else { 0.0 });
    gauge.family(
        "tessera_session_store_ping_seconds",
        "How long this scrape's ping of the session store took (its timeout when it did not answer).",
    );
    gauge.sample(&store, r.store.ping.as_secs_f64());
    if let Some(redis) = r.redis {
        gauge.family(
            "tessera_redis_used_memory_bytes",
            "Redis INFO used_memory, summed over every master.",
        );
        gauge.sample(&[], redis.used_memory_bytes as f64);
        gauge.family(
            "tessera_redis_keys",
            "Keys in the session database (DBSIZE), summed over every master: sessions, throttle counters and anything else kept there.",
        );
        gauge.sample(&[], redis.keys as f64);
    }
    let (queued, capacity) = r.audit_queue;
    gauge.family(
        "tessera_audit_queue_depth",
        "Audit events waiting for the database.",
    );
    gauge.sample(&[], queued as f64);
    gauge.family(
        "tessera_audit_queue_capacity",
        "Audit events the queue holds before new ones are dropped.",
    );
    gauge.sample(&[], capacity as f64);
    render_tasks(&mut gauge, &r.tasks);
    if let Some(vanished) = r.cleanup_vanished_sessions {
        gauge.family(
            "tessera_cleanup_vanished_sessions",
            "Registry rows the last successful sessions_cleanup found live while the store no longer held their session.",
        );
        gauge.sample(&[], vanished as f64);
    }
}

fn render_tasks(gauge: &mut Gauge<'_>, tasks: &[TaskReading]) {
    gauge.family(
        "tessera_task_last_run_started_timestamp_seconds",
        "When the newest run of the task started (Unix time).",
    );
    for task in tasks {
        if let Some((started, _)) = task.last_run {
            gauge.sample(&[("task", &task.task)], started);
        }
    }
    gauge.family(
        "tessera_task_last_run_outcome",
        "1 for the outcome of the task's newest run (running, ok, failed), 0 for the others.",
    );
    for task in tasks {
        if let Some((_, outcome)) = task.last_run {
            for each in Outcome::ALL {
                let value = if each == outcome { 1.0 } else { 0.0 };
                gauge.sample(&[("task", &task.task), ("outcome", each.as_str())], value);
            }
        }
    }
    gauge.family(
        "tessera_task_last_run_finished_timestamp_seconds",
        "When the newest run of the task finished (Unix time); absent while it runs or when its process died.",
    );
    for task in tasks {
        if let Some(finished) = task.last_finished {
            gauge.sample(&[("task", &task.task)], finished);
        }
    }
    gauge.family(
        "tessera_task_last_success_timestamp_seconds",
        "When the newest successful run of the task finished (Unix time).",
    );
    for task in tasks {
        if let Some(success) = task.last_success {
            gauge.sample(&[("task", &task.task)], success);
        }
    }
}

/// Writes gauge families in the Prometheus text format; a family's `HELP` and `TYPE` lines
/// go out with its first sample, so a family with nothing to report is left out.
struct Gauge<'a> {
    out: &'a mut String,
    name: &'static str,
    help: &'static str,
    header_written: bool,
}

impl<'a> Gauge<'a> {
    fn new(out: &'a mut String) -> Self {
        Self {
            out,
            name: "",
            help: "",
            header_written: true,
        }
    }

    fn family(&mut self, name: &'static str, help: &'static str) {
        self.name = name;
        self.help = help;
        self.header_written = false;
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let name = self.name;
        if !self.header_written {
            let _ = write!(
                self.out,
                "# HELP {name} {}\n# TYPE {name} gauge\n",
                self.help
            );
            self.header_written = true;
        }
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_render_as_prometheus_text_with_escaped_labels() {
        let mut out = String::new();
        render_readings(
            &mut out,
            &Readings {
                live_sessions: vec![("a\"b\\c\nd".to_string(), 3)],
                store: StoreReading {
                    store: "redis",
                    up: true,
                    ping: Duration::from_millis(2),
                },
                audit_queue: (7, 10_000),
                tasks: vec![TaskReading {
                    task: "sessions_cleanup".to_string(),
                    last_run: Some((1_700_000_000.5, Outcome::Failed)),
                    last_finished: None,
                    last_success: Some(1_699_996_400.0),
                }],
                ..Readings::default()
            },
        );
        assert!(
            out.contains("# TYPE tessera_sessions_live gauge\ntessera_sessions_live{store=\"a\\\"b\\\\c\\nd\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("tessera_session_store_up{store=\"redis\"} 1\n"));
        assert!(out.contains("tessera_session_store_ping_seconds{store=\"redis\"} 0.002\n"));
        assert!(out.contains("tessera_audit_queue_depth 7\n"));
        assert!(out.contains(
            "tessera_task_last_run_outcome{task=\"sessions_cleanup\",outcome=\"failed\"} 1\n"
        ));
        assert!(out.contains(
            "tessera_task_last_run_outcome{task=\"sessions_cleanup\",outcome=\"ok\"} 0\n"
        ));
        assert!(out.contains(
            "tessera_task_last_run_started_timestamp_seconds{task=\"sessions_cleanup\"} 1700000000.5\n"
        ));
        // Nothing to report, no family: no finish time, no Redis, no cleanup findings.
        for absent in [
            "tessera_task_last_run_finished_timestamp_seconds",
            "tessera_redis_used_memory_bytes",
            "tessera_cleanup_vanished_sessions",
        ] {
            assert!(!out.contains(absent), "{absent}: {out}");
        }
    }
}
