//! Rows of the session registry (see `crate::sessions::registry`, which owns the rules).

pub use super::_entities::user_sessions::{self, ActiveModel, Entity, Model};
use sea_orm::entity::prelude::*;

impl ActiveModelBehavior for ActiveModel {}
