//! Platform connections: named URLs a user switches between. The active one lives in
//! the session.

use loco_rs::prelude::*;

pub use super::_entities::platforms::{self, ActiveModel, Entity, Model};

impl ActiveModelBehavior for ActiveModel {}

/// A platform connection as entered in the form, checked.
#[derive(Debug, Clone)]
pub struct NewPlatform {
    pub name: String,
    pub url: url::Url,
}

/// Per-field messages for a platform form that did not pass.
#[derive(Debug, Default, serde::Serialize)]
pub struct PlatformErrors {
    pub name: Option<&'static str>,
    pub url: Option<&'static str>,
}

impl NewPlatform {
    /// # Errors
    /// Every field's problem at once.
    pub fn parse(name: &str, url: &str) -> Result<Self, PlatformErrors> {
        let mut errors = PlatformErrors::default();
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 80 {
            errors.name = Some("Enter a name of up to 80 characters.");
        }
        let url = url::Url::parse(url.trim())
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if url.is_none() {
            errors.url = Some("Enter an http:// or https:// address.");
        }
        match url {
            Some(url) if errors.name.is_none() => Ok(Self {
                name: name.to_string(),
                url,
            }),
            _ => Err(errors),
        }
    }
}

impl Model {
    /// The user's platforms, by name.
    ///
    /// # Errors
    /// A database error.
    pub async fn list_for(db: &DatabaseConnection, user_id: i64) -> ModelResult<Vec<Self>> {
        Ok(Entity::find()
            .filter(platforms::Column::UserId.eq(user_id))
            .order_by_asc(platforms::Column::Name)
            .order_by_asc(platforms::Column::Id)
            .all(db)
            .await?)
    }

    /// One of the user's platforms. Another user's platform is "not found", never "forbidden":
    /// its existence is nobody else's business.
    ///
    /// # Errors
    /// `EntityNotFound`, or a database error.
    pub async fn find_for(db: &DatabaseConnection, user_id: i64, id: i64) -> ModelResult<Self> {
        Entity::find_by_id(id)
            .filter(platforms::Column::UserId.eq(user_id))
            .one(db)
            .await?
            .ok_or(ModelError::EntityNotFound)
    }

    /// # Errors
    /// A database error.
    pub async fn create_for(
        db: &DatabaseConnection,
        user_id: i64,
        new: &NewPlatform,
    ) -> ModelResult<Self> {
        Ok(ActiveModel {
            user_id: ActiveValue::Set(user_id),
            name: ActiveValue::Set(new.name.clone()),
            url: ActiveValue::Set(new.url.to_string()),
            ..Default::default()
        }
        .insert(db)
        .await?)
    }

    /// # Errors
    /// `EntityNotFound` when it is not the user's, or a database error.
    pub async fn delete_for(db: &DatabaseConnection, user_id: i64, id: i64) -> ModelResult<()> {
        let result = Entity::delete_many()
            .filter(platforms::Column::Id.eq(id))
            .filter(platforms::Column::UserId.eq(user_id))
            .exec(db)
            .await?;
        if result.rows_affected == 0 {
            return Err(ModelError::EntityNotFound);
        }
        Ok(())
    }
}
