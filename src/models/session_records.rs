//! Rows of the `database` session store (see `crate::sessions::stores::database`).

pub use super::_entities::session_records::{self, ActiveModel, Entity, Model};
use sea_orm::entity::prelude::*;

impl ActiveModelBehavior for ActiveModel {}
