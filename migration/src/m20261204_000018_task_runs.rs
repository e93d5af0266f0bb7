use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum TaskRuns {
    Table,
    Id,
    Task,
    StartedAt,
    FinishedAt,
    Outcome,
    Error,
    Report,
}

/// One row per run of an operator task (`sessions_cleanup`): when it started, when and how
/// it ended. Tasks run in their own process; the web process reads the latest rows to
/// export them on `/metrics`, so an alert can tell a failing or missing cleanup. A run
/// whose process died keeps `outcome = 'running'` and no `finished_at`.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(TaskRuns::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(TaskRuns::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(ColumnDef::new(TaskRuns::Task).string().not_null())
                .col(
                    ColumnDef::new(TaskRuns::StartedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(TaskRuns::FinishedAt).timestamp_with_time_zone())
                .col(ColumnDef::new(TaskRuns::Outcome).string().not_null())
                .col(ColumnDef::new(TaskRuns::Error).text())
                .col(ColumnDef::new(TaskRuns::Report).text())
                .to_owned(),
        )
        .await?;
        // A scrape asks for one task's newest run and newest successful run: both walk
        // this index back from the task's newest row (the table keeps 30 days of runs).
        m.create_index(
            Index::create()
                .name("idx-task_runs-task-id")
                .table(TaskRuns::Table)
                .col(TaskRuns::Task)
                .col(TaskRuns::Id)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(TaskRuns::Table).to_owned())
            .await
    }
}
