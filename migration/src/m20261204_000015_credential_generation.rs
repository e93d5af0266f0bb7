use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The credential generation: a counter on the account, bumped by a password change and by
/// disabling it, and the generation each session was opened with. A session opened under
/// an older generation than its account's belongs to credentials that no longer hold.
/// Existing rows start at 0 on both sides, so nobody is logged out by the migration.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for table in ["users", "user_sessions"] {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .add_column(
                        ColumnDef::new(Alias::new("credential_generation"))
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in ["users", "user_sessions"] {
            m.alter_table(
                Table::alter()
                    .table(Alias::new(table))
                    .drop_column(Alias::new("credential_generation"))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
