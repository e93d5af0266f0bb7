pub mod _entities;
pub mod platforms;
pub mod session_events;
pub mod session_records;
pub mod task_runs;
pub mod user_sessions;
pub mod users;

/// The most parameters one statement binds. SQLite allows 32,766 and PostgreSQL 65,535:
/// anything that works on many rows (the tasks, the audit writer) splits its statements
/// to stay far below both.
pub const MAX_BOUND_PARAMETERS: usize = 1_000;
