//! Rows of the session registry. `crate::sessions::registry` owns the rules and is the
//! only code that queries them.

pub use super::_entities::user_sessions::{self, ActiveModel, Entity, Model};
use sea_orm::entity::prelude::*;

impl ActiveModelBehavior for ActiveModel {}
