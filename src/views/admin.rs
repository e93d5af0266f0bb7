//! What the admin monitoring page shows, shaped for `admin/sessions.html`.

use serde::Serialize;

use super::{charts::HourlyChart, device};
use crate::{
    models::session_events::{EventPage, HourlyCounts, Model},
    sessions::{
        jobs::{JobState, JobStatus},
        registry::LiveSession,
    },
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
    pub id: i64,
    pub at: String,
    pub event: String,
    /// The session's user by email; "#12" when the account is gone; empty for none.
    pub user: String,
    /// Who did it, for actions taken on someone else's sessions (an admin).
    pub actor: String,
    pub session_ref: String,
    pub ip: String,
    /// The request's client where it differs from the session's, in words: "replayed
    /// from curl on 10.1.2.3", "from Firefox on Linux on 10.0.0.9" beside an actor, "last
    /// from …" on a row of refused attempts; empty when it does not differ.
    pub request_client: String,
    pub reason: String,
}

/// A client in words: "curl on 10.1.2.3".
fn client_in_words(user_agent: Option<&str>, ip: Option<&str>) -> String {
    let device = device::describe(user_agent.unwrap_or_default());
    match ip {
        Some(ip) => format!("{device} on {ip}"),
        None => device,
    }
}

/// What the row says of the request's client, if anything.
fn request_client(event: &Model) -> String {
    if event.request_ip.is_none() && event.request_user_agent.is_none() {
        return String::new();
    }
    let request = client_in_words(
        event.request_user_agent.as_deref(),
        event.request_ip.as_deref(),
    );
    if event.attempts.is_some() {
        // Refused attempts keep the latest client always; say it only when it is another.
        let first = client_in_words(event.user_agent.as_deref(), event.ip.as_deref());
        return if request == first {
            String::new()
        } else {
            format!("last from {request}")
        };
    }
    if event.actor_user_id.is_some() {
        format!("from {request}")
    } else {
        format!("replayed from {request}")
    }
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
        .map(|named| {
            let request_client = request_client(&named.event);
            let event = named.event;
            let reason = event.reason.unwrap_or_default();
            EventRow {
                id: event.id,
                at: event.created_at.to_rfc3339(),
                user: who(named.user_email, event.user_id),
                actor: who(named.actor_email, event.actor_user_id),
                event: event.event,
                session_ref: event.session_ref.unwrap_or_default(),
                ip: event.ip.unwrap_or_default(),
                request_client,
                reason: match event.attempts {
                    Some(1) => format!("{reason} (1 attempt)"),
                    Some(n) => format!("{reason} ({n} attempts)"),
                    None => reason,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Model {
        let at = chrono::Utc::now().fixed_offset();
        Model {
            created_at: at,
            updated_at: at,
            id: 1,
            event: "fingerprint_mismatch".into(),
            user_id: Some(7),
            session_ref: Some("AbCdEfGhIjKl".into()),
            ip: Some("127.0.0.1".into()),
            user_agent: Some(
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".into(),
            ),
            reason: None,
            actor_user_id: None,
            request_ip: None,
            request_user_agent: None,
            attempts: None,
            throttle_key: None,
            window_ends_at: None,
        }
    }

    #[test]
    fn another_client_on_the_session_is_a_replay_and_an_actor_acts_from_theirs() {
        assert_eq!(request_client(&event()), "");
        let replayed = Model {
            request_ip: Some("10.1.2.3".into()),
            request_user_agent: Some("curl/8.0".into()),
            ..event()
        };
        assert_eq!(request_client(&replayed), "replayed from curl on 10.1.2.3");
        let acted = Model {
            actor_user_id: Some(1),
            ..replayed
        };
        assert_eq!(request_client(&acted), "from curl on 10.1.2.3");
    }

    #[test]
    fn refused_attempts_name_their_latest_client_when_it_is_another() {
        let refused = Model {
            attempts: Some(50),
            request_ip: Some("127.0.0.1".into()),
            request_user_agent: event().user_agent,
            ..event()
        };
        assert_eq!(request_client(&refused), "");
        let other = Model {
            request_ip: Some("10.1.2.3".into()),
            ..refused
        };
        assert_eq!(
            request_client(&other),
            "last from Firefox on Linux on 10.1.2.3"
        );
    }
}

/// The "end everyone's sessions" job, as one status line.
#[derive(Debug, Clone, Serialize)]
pub struct JobLine {
    /// `running`, `finished`, `failed` or `interrupted`.
    pub state: &'static str,
    pub text: String,
}

/// `n` with thousands separated: 4,000.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[must_use]
pub fn job_line(job: &JobStatus) -> JobLine {
    let done = thousands(job.done);
    let (state, text) = match job.state {
        JobState::Running => (
            "running",
            match job.total {
                Some(total) => format!(
                    "Ending all sessions: {done} of {}",
                    thousands(total.max(job.done))
                ),
                None => format!("Ending all sessions: {done} so far"),
            },
        ),
        JobState::Finished => (
            "finished",
            format!("Ending all sessions: finished, {done} ended"),
        ),
        JobState::Failed => (
            "failed",
            format!(
                "Ending all sessions: failed after {done} ended ({}); start it again to end the rest",
                job.error.as_deref().unwrap_or("unknown error")
            ),
        ),
        JobState::Interrupted => (
            "interrupted",
            format!("Ending all sessions: interrupted after {done} ended; start it again to end the rest"),
        ),
    };
    JobLine { state, text }
}

#[cfg(test)]
mod job_tests {
    use super::thousands;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_500), "1,500");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
