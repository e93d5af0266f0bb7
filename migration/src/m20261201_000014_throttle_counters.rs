use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ThrottleCounters {
    Table,
    CounterKey,
    Attempts,
    WindowEndsAt,
}

/// The login throttle's counters when sessions are not in Redis: one row per account or
/// IP (a keyed hash, never the email or address), counted by an atomic upsert. The window
/// end is in unix milliseconds so that SQLite and PostgreSQL compare it the same way.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ThrottleCounters::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(ThrottleCounters::CounterKey)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(ThrottleCounters::Attempts)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ThrottleCounters::WindowEndsAt)
                        .big_integer()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx-throttle_counters-window_ends_at")
                .table(ThrottleCounters::Table)
                .col(ThrottleCounters::WindowEndsAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ThrottleCounters::Table).to_owned())
            .await
    }
}
