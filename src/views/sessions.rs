//! "My sessions" as the page shows them: one row per live session.

use serde::Serialize;

use super::device;
use crate::{models::_entities::user_sessions, sessions::keys::SessionRef};

/// One of the user's live sessions, as `sessions/index.html` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct OwnSessionRow {
    #[serde(rename = "ref")]
    pub session_ref: String,
    pub device: String,
    pub user_agent: String,
    pub ip: String,
    pub created_at: String,
    pub last_seen_at: String,
    /// The session this page is shown in.
    pub current: bool,
}

impl OwnSessionRow {
    /// The row for registry row `row`; `current` is the ref of the session viewing it.
    #[must_use]
    pub fn of(row: &user_sessions::Model, current: Option<&SessionRef>) -> Self {
        Self {
            session_ref: row.session_ref.clone(),
            device: device::describe(&row.user_agent),
            user_agent: row.user_agent.clone(),
            ip: row.ip.clone().unwrap_or_default(),
            created_at: row.created_at.to_rfc3339(),
            last_seen_at: row.last_seen_at.to_rfc3339(),
            current: current.is_some_and(|r| r.as_str() == row.session_ref),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::device;

    #[test]
    fn devices_are_named_by_browser_and_system() {
        assert_eq!(
            device::describe(
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
            ),
            "Firefox on Linux"
        );
        assert_eq!(device::describe(""), "Unknown browser");
    }
}
