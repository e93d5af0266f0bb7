//! Operator commands, run with `cargo loco task NAME key:value`.

mod args;
pub mod sessions_cleanup;
pub mod sessions_list;
pub mod sessions_migrate;
pub mod sessions_revoke;
pub mod sessions_stats;
pub mod users_create;
