//! The current session as the dashboard and `/api/session` show it.

use super::time::rfc3339;
use crate::sessions::lifecycle::SessionSummary;

/// The session as the dashboard and `/api/session` show it: times as RFC 3339 text.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    pub authenticated: bool,
    pub user_id: Option<i64>,
    pub active_platform_id: Option<i64>,
    pub created_at: String,
    pub last_activity: String,
    pub expires_at: String,
    pub persistent: bool,
    pub store: &'static str,
}

impl From<SessionSummary> for SessionView {
    fn from(session: SessionSummary) -> Self {
        Self {
            authenticated: session.user_id.is_some(),
            user_id: session.user_id,
            active_platform_id: session.active_platform_id,
            created_at: rfc3339(session.created_at),
            last_activity: rfc3339(session.last_activity),
            expires_at: rfc3339(session.expires_at),
            persistent: session.persistent,
            store: session.store,
        }
    }
}
