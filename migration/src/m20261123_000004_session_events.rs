use loco_rs::schema::*;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The audit trail of session lifecycle events. `user_id` is not a foreign key: the trail
/// outlives deleted users.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create_table(
            m,
            "session_events",
            &[
                ("id", ColType::PkAuto),
                ("event", ColType::String),
                ("user_id", ColType::BigIntegerNull),
                ("session_ref", ColType::StringNull),
                ("ip", ColType::StringNull),
                ("user_agent", ColType::StringNull),
                ("reason", ColType::StringNull),
            ],
            &[],
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx-session_events-created_at")
                .table(Alias::new("session_events"))
                .col(Alias::new("created_at"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        drop_table(m, "session_events").await
    }
}
