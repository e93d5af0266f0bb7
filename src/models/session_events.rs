//! The audit trail's rows, and the questions the admin page asks of them.

use chrono::{DateTime, FixedOffset, Timelike, Utc};
use sea_orm::{entity::prelude::*, QueryOrder, QuerySelect};

pub use super::_entities::session_events::{self, ActiveModel, Entity, Model};

impl ActiveModelBehavior for ActiveModel {}

/// Events of the kinds asked for in the last 24 hours, counted per hour: 24 buckets,
/// oldest first, the last one being the current hour.
///
/// # Errors
/// A database error.
pub async fn hourly_counts(db: &DatabaseConnection, kinds: &[&str]) -> Result<Vec<u64>, DbErr> {
    let now = Utc::now();
    let current_hour = now
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now);
    let start = current_hour - chrono::Duration::hours(23);
    let times: Vec<DateTime<FixedOffset>> = Entity::find()
        .select_only()
        .column(session_events::Column::CreatedAt)
        .filter(session_events::Column::Event.is_in(kinds.iter().copied()))
        .filter(session_events::Column::CreatedAt.gte(start.fixed_offset()))
        .into_tuple()
        .all(db)
        .await?;
    let mut buckets = vec![0u64; 24];
    for time in times {
        let hours = (time.with_timezone(&Utc) - start).num_hours();
        if let Some(bucket) = usize::try_from(hours).ok().and_then(|h| buckets.get_mut(h)) {
            *bucket += 1;
        }
    }
    Ok(buckets)
}

/// The most recent events, newest first.
///
/// # Errors
/// A database error.
pub async fn recent(db: &DatabaseConnection, limit: u64) -> Result<Vec<Model>, DbErr> {
    Entity::find()
        .order_by_desc(session_events::Column::CreatedAt)
        .order_by_desc(session_events::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
