use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Who did it, from where. `ip` and `user_agent` stay the session's client (the browser
/// that logged in); `request_ip` and `request_user_agent` hold the client of the request
/// that caused the event, where it differs (a replayed cookie, an admin acting on someone
/// else's session).
///
/// Refused (throttled) attempts are one row per throttle counter and window, updated as
/// attempts come: `throttle_key` names the counter (a keyed hash, as in the throttle) while
/// its window is open, `window_ends_at` says when the window ends, `attempts` counts them;
/// the first attempt's client is in `ip`/`user_agent`, the latest one's in `request_*`.
/// The unique index makes the update an upsert; a row leaves it (its key is cleared) once
/// its window has ended, so the next window gets a row of its own.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let columns = [
            ColumnDef::new(Alias::new("request_ip"))
                .string()
                .null()
                .to_owned(),
            ColumnDef::new(Alias::new("request_user_agent"))
                .string()
                .null()
                .to_owned(),
            ColumnDef::new(Alias::new("attempts"))
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Alias::new("throttle_key"))
                .string()
                .null()
                .to_owned(),
            ColumnDef::new(Alias::new("window_ends_at"))
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        ];
        // One column per statement: SQLite alters one column at a time.
        for column in columns {
            m.alter_table(
                Table::alter()
                    .table(Alias::new("session_events"))
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("idx-session_events-throttle_key")
                .table(Alias::new("session_events"))
                .col(Alias::new("throttle_key"))
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("idx-session_events-throttle_key")
                .table(Alias::new("session_events"))
                .to_owned(),
        )
        .await?;
        for column in [
            "request_ip",
            "request_user_agent",
            "attempts",
            "throttle_key",
            "window_ends_at",
        ] {
            m.alter_table(
                Table::alter()
                    .table(Alias::new("session_events"))
                    .drop_column(Alias::new(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
