use loco_rs::schema::*;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The session registry: one row per session, named by its ref and store key (keyed
/// hashes), never by the cookie's ID.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            m,
            "user_sessions",
            &[
                ("id", ColType::PkAuto),
                ("session_ref", ColType::StringUniq),
                ("store_key", ColType::String),
                ("store", ColType::String),
                ("last_seen_at", ColType::TimestampWithTimeZone),
                ("expires_at", ColType::TimestampWithTimeZone),
                ("user_agent", ColType::String),
                ("ip", ColType::StringNull),
                ("ended_at", ColType::TimestampWithTimeZoneNull),
                ("end_reason", ColType::StringNull),
            ],
            &[("user", "")],
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx-user_sessions-user_id-ended_at")
                .table(Alias::new("user_sessions"))
                .col(Alias::new("user_id"))
                .col(Alias::new("ended_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_table(m, "user_sessions").await
    }
}
