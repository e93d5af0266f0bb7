use sea_orm_migration::{prelude::*, sea_orm::DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SessionEventCounts {
    Table,
    Hour,
    Kind,
    Count,
}

/// What the admin page, `/sessions` and `/metrics` need to cost the same at a million
/// registry rows and ten million events as at a thousand:
///
/// - the open (not ended) registry rows by when they were last seen, for the live sessions
///   table (most recently used first, a page at a time), and by when they expire, with
///   their store, for counting live sessions per store from the index alone. Both are
///   partial: ended rows, most of the table, are not in them;
/// - on PostgreSQL, users by email in byte order (`COLLATE "C"`), so that an email prefix
///   is a range the index serves whatever the database's collation (a linguistic
///   collation orders `a.b` and `ab` apart from their bytes). Emails are stored
///   lower-cased, so the prefix range is case-insensitive. SQLite's unique index on email
///   is in byte order already;
/// - `session_event_counts`: events per UTC hour and kind, kept by the audit writer in the
///   same transaction as the events themselves (refused attempts counted one by one), so
///   the 24-hour charts read at most 24 rows per kind instead of the trail. The events of
///   the last 25 hours are counted in here now; older hours are past the charts.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared(
            r#"CREATE INDEX "idx-user_sessions-open-last_seen_at" ON user_sessions (last_seen_at, id) WHERE ended_at IS NULL"#,
        )
        .await?;
        db.execute_unprepared(
            r#"CREATE INDEX "idx-user_sessions-open-expires_at" ON user_sessions (expires_at, store) WHERE ended_at IS NULL"#,
        )
        .await?;
        let postgres = m.get_database_backend() == DatabaseBackend::Postgres;
        if postgres {
            db.execute_unprepared(
                r#"CREATE INDEX "idx-users-email-bytes" ON users ((email COLLATE "C"))"#,
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(SessionEventCounts::Table)
                .col(
                    ColumnDef::new(SessionEventCounts::Hour)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(SessionEventCounts::Kind).string().not_null())
                .col(
                    ColumnDef::new(SessionEventCounts::Count)
                        .big_integer()
                        .not_null(),
                )
                .primary_key(
                    Index::create()
                        .col(SessionEventCounts::Hour)
                        .col(SessionEventCounts::Kind),
                )
                .to_owned(),
        )
        .await?;
        // Hours are written as the app writes them: UTC, RFC 3339 text on SQLite.
        let backfill = if postgres {
            r#"INSERT INTO session_event_counts ("hour", "kind", "count")
               SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', event, SUM(COALESCE(attempts, 1))
               FROM session_events WHERE created_at >= now() - interval '25 hours'
               GROUP BY 1, 2"#
        } else {
            r#"INSERT INTO session_event_counts ("hour", "kind", "count")
               SELECT strftime('%Y-%m-%dT%H:00:00+00:00', created_at), event, SUM(COALESCE(attempts, 1))
               FROM session_events WHERE created_at >= strftime('%Y-%m-%dT%H:00:00+00:00', 'now', '-25 hours')
               GROUP BY 1, 2"#
        };
        db.execute_unprepared(backfill).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(SessionEventCounts::Table).to_owned())
            .await?;
        let db = m.get_connection();
        if m.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared(r#"DROP INDEX "idx-users-email-bytes""#)
                .await?;
        }
        db.execute_unprepared(r#"DROP INDEX "idx-user_sessions-open-expires_at""#)
            .await?;
        db.execute_unprepared(r#"DROP INDEX "idx-user_sessions-open-last_seen_at""#)
            .await?;
        Ok(())
    }
}
