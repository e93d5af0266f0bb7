use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SessionJobs {
    Table,
    Id,
    Kind,
    ActorUserId,
    StartedAt,
    HeartbeatAt,
    FinishedAt,
    Done,
    Total,
    Error,
    Running,
}

/// One row per background job over sessions (an admin ending everyone's sessions): who
/// started it, how far it got, how it ended. The web process runs the job and writes its
/// progress here after every batch, so any instance's admin page can show it.
///
/// `running` holds the job's kind while it runs and is cleared when it ends: the unique
/// index lets one job of a kind run at a time, even when two admins (or two instances)
/// start it at once. A job whose process died keeps it until its heartbeat is old and
/// the next start clears it.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(SessionJobs::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(SessionJobs::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(SessionJobs::Kind).string().not_null())
                .col(ColumnDef::new(SessionJobs::ActorUserId).big_integer())
                .col(
                    ColumnDef::new(SessionJobs::StartedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(SessionJobs::HeartbeatAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(SessionJobs::FinishedAt).timestamp_with_time_zone())
                .col(
                    ColumnDef::new(SessionJobs::Done)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(ColumnDef::new(SessionJobs::Total).big_integer())
                .col(ColumnDef::new(SessionJobs::Error).text())
                .col(ColumnDef::new(SessionJobs::Running).string())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx-session_jobs-running")
                .table(SessionJobs::Table)
                .col(SessionJobs::Running)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SessionJobs::Table).to_owned())
            .await
    }
}
