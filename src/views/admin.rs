//! What the admin monitoring page shows, shaped for `admin/sessions.html`.

use serde::Serialize;

use super::{charts::HourlyChart, device};
use crate::models::{
    session_events::{EventPage, HourlyCounts},
    user_sessions::LiveSession,
};

/// One 24-hour chart: what it is called and which event kinds it counts.
struct ChartSpec {
    id: &'static str,
    title: &'static str,
    /// One event and many, for tooltips: ("login", "logins").
    unit: (&'static str, &'static str),
    kinds: &'static [&'static str],
}

const CHARTS: [ChartSpec; 4] = [
    ChartSpec {
        id: "logins",
        title: "Logins",
        unit: ("login", "logins"),
        kinds: &["login"],
    },
    ChartSpec {
        id: "failed",
        title: "Failed logins",
        unit: ("failed login", "failed logins"),
        kinds: &["login_failed"],
    },
    ChartSpec {
        id: "expired",
        title: "Expirations",
        unit: ("expiration", "expirations"),
        kinds: &["idle_expired", "absolute_expired"],
    },
    ChartSpec {
        id: "revoked",
        title: "Revocations",
        unit: ("revocation", "revocations"),
        kinds: &["revoked"],
    },
];

/// Every event kind the charts count, for the one aggregate query.
#[must_use]
pub fn chart_kinds() -> Vec<&'static str> {
    CHARTS
        .iter()
        .flat_map(|c| c.kinds.iter().copied())
        .collect()
}

/// The charts, from the hourly counts of [`chart_kinds`].
#[must_use]
pub fn charts(counts: &HourlyCounts) -> Vec<HourlyChart> {
    CHARTS
        .iter()
        .map(|c| HourlyChart::new(c.id, c.title, c.unit, &counts.of(c.kinds), counts.start))
        .collect()
}

/// One row of the live sessions table.
#[derive(Debug, Serialize)]
pub struct SessionRow {
    pub session_ref: String,
    pub email: String,
    pub name: String,
    pub device: String,
    pub ip: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub store: String,
    pub current: bool,
}

/// The live sessions table; `current_ref` is the admin's own session.
#[must_use]
pub fn session_rows(live: &[LiveSession], current_ref: Option<&str>) -> Vec<SessionRow> {
    live.iter()
        .map(|LiveSession { session, user }| SessionRow {
            session_ref: session.session_ref.clone(),
            email: user.email.clone(),
            name: user.name.clone(),
            device: device::describe(&session.user_agent),
            ip: session.ip.clone().unwrap_or_default(),
            created_at: session.created_at.to_rfc3339(),
            last_seen_at: session.last_seen_at.to_rfc3339(),
            store: session.store.clone(),
            current: current_ref == Some(session.session_ref.as_str()),
        })
        .collect()
}

/// One row of the recent events table.
#[derive(Debug, Serialize)]
pub struct EventRow {
    pub at: String,
    pub event: String,
    /// The session's user by email; "#12" when the account is gone; empty for none.
    pub user: String,
    /// Who did it, for actions taken on someone else's sessions (an admin).
    pub actor: String,
    pub session_ref: String,
    pub ip: String,
    pub reason: String,
}

/// The events table of one page.
#[must_use]
pub fn event_rows(page: EventPage) -> Vec<EventRow> {
    let who = |email: Option<String>, id: Option<i64>| {
        email
            .or_else(|| id.map(|id| format!("#{id}")))
            .unwrap_or_default()
    };
    page.events
        .into_iter()
        .map(|named| EventRow {
            at: named.event.created_at.to_rfc3339(),
            user: who(named.user_email, named.event.user_id),
            actor: who(named.actor_email, named.event.actor_user_id),
            event: named.event.event,
            session_ref: named.event.session_ref.unwrap_or_default(),
            ip: named.event.ip.unwrap_or_default(),
            reason: named.event.reason.unwrap_or_default(),
        })
        .collect()
}
