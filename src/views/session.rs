//! The current session as the dashboard and `/api/session` show it.

/// The session as the dashboard and `/api/session` show it.
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
