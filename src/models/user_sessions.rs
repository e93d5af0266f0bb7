//! Rows of the session registry (see `crate::sessions::registry`, which owns the rules),
//! and the admin page's view of them.

pub use super::_entities::user_sessions::{self, ActiveModel, Entity, Model};
use super::_entities::users;
use sea_orm::{entity::prelude::*, QueryOrder, QuerySelect};

impl ActiveModelBehavior for ActiveModel {}

/// A live session with the account it belongs to.
#[derive(Debug, Clone)]
pub struct LiveSession {
    pub session: Model,
    pub user: users::Model,
}

/// Live sessions (not ended, not expired) of the users whose email contains `email`
/// (any case; all users when empty), most recently seen first, at most `limit`; and how
/// many match in all.
///
/// # Errors
/// A database error.
pub async fn live_with_users(
    db: &DatabaseConnection,
    email: &str,
    limit: u64,
) -> Result<(Vec<LiveSession>, u64), DbErr> {
    let mut query = Entity::find()
        .filter(user_sessions::Column::EndedAt.is_null())
        .filter(user_sessions::Column::ExpiresAt.gt(chrono::Utc::now().fixed_offset()))
        .inner_join(users::Entity);
    let email = email.trim().to_lowercase();
    if !email.is_empty() {
        // Emails are stored lower-cased (`EmailAddress::parse`).
        query = query.filter(users::Column::Email.contains(&email));
    }
    let total = query.clone().count(db).await?;
    let rows = query
        .select_also(users::Entity)
        .order_by_desc(user_sessions::Column::LastSeenAt)
        .order_by_desc(user_sessions::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    let sessions = rows
        .into_iter()
        .filter_map(|(session, user)| user.map(|user| LiveSession { session, user }))
        .collect();
    Ok((sessions, total))
}

/// The live session named `session_ref`, if there is one.
///
/// # Errors
/// A database error.
pub async fn live_by_ref(
    db: &DatabaseConnection,
    session_ref: &str,
) -> Result<Option<Model>, DbErr> {
    Entity::find()
        .filter(user_sessions::Column::SessionRef.eq(session_ref))
        .filter(user_sessions::Column::EndedAt.is_null())
        .filter(user_sessions::Column::ExpiresAt.gt(chrono::Utc::now().fixed_offset()))
        .one(db)
        .await
}
