#![allow(elided_lifetimes_in_paths)]
#![allow(clippy::wildcard_imports)]
pub use sea_orm_migration::prelude::*;
mod m20220101_000001_users;
mod m20261123_000002_platforms;
mod m20261123_000003_user_sessions;
mod m20261123_000004_session_events;
mod m20261123_000005_session_records;
mod m20261201_000010_session_event_actors;
mod m20261201_000014_throttle_counters;
mod m20261204_000015_credential_generation;
mod m20261204_000016_audit_clients;
mod m20261204_000018_task_runs;
mod m20261205_000019_scale_indexes;
mod m20261205_000020_session_jobs;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20220101_000001_users::Migration),
            Box::new(m20261123_000002_platforms::Migration),
            Box::new(m20261123_000003_user_sessions::Migration),
            Box::new(m20261123_000004_session_events::Migration),
            Box::new(m20261123_000005_session_records::Migration),
            Box::new(m20261201_000010_session_event_actors::Migration),
            Box::new(m20261201_000014_throttle_counters::Migration),
            Box::new(m20261204_000015_credential_generation::Migration),
            Box::new(m20261204_000016_audit_clients::Migration),
            Box::new(m20261204_000018_task_runs::Migration),
            Box::new(m20261205_000019_scale_indexes::Migration),
            Box::new(m20261205_000020_session_jobs::Migration),
            // inject-above (do not remove this comment)
        ]
    }
}
