use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Who did it: the acting user of an event (an admin ending someone's sessions, a user
/// ending their own), so the trail answers "who ended this session?". Like `user_id`, not
/// a foreign key: the trail outlives deleted users.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("session_events"))
                .add_column(
                    ColumnDef::new(Alias::new("actor_user_id"))
                        .big_integer()
                        .null(),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Alias::new("session_events"))
                .drop_column(Alias::new("actor_user_id"))
                .to_owned(),
        )
        .await
    }
}
