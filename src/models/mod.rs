pub mod _entities;
pub mod platforms;
pub mod session_events;
pub mod session_records;
pub mod task_runs;
pub mod user_sessions;
pub mod users;
