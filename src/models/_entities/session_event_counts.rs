//! `SeaORM` Entity for `session_event_counts` (migration `m20261205_000019_scale_indexes`).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Audit events of one kind in one UTC hour, kept by the audit writer as it writes them.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Eq, Serialize, Deserialize)]
#[sea_orm(table_name = "session_event_counts")]
pub struct Model {
    /// The hour's start, UTC.
    #[sea_orm(primary_key, auto_increment = false)]
    pub hour: DateTimeWithTimeZone,
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// Events, a row of refused attempts counting each attempt.
    pub count: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
