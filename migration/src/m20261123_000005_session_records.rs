use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SessionRecords {
    Table,
    Id,
    Record,
    ExpiresAt,
}

/// The `database` session store: one row per record, keyed by the hashed ID.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SessionRecords::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(SessionRecords::Id)
                        .string_len(32)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(SessionRecords::Record).text().not_null())
                .col(
                    ColumnDef::new(SessionRecords::ExpiresAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx-session_records-expires_at")
                .table(SessionRecords::Table)
                .col(SessionRecords::ExpiresAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SessionRecords::Table).to_owned())
            .await
    }
}
