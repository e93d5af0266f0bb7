//! Users: who can log in. Emails are normalized before they reach the database, so
//! `Ann@Example.com` and `ann@example.com` are one account.

use loco_rs::prelude::*;
use sea_orm::{
    sea_query::{Expr, ExprTrait},
    SqlErr, TransactionTrait,
};
use uuid::Uuid;

use crate::sessions::hashing::{HashingError, PasswordHashing, Priority};

pub use super::_entities::users::{self, ActiveModel, Entity, Model};

/// Shortest password accepted at registration (NIST SP 800-63B asks for at least 8).
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted; bounds the work an attacker can ask argon2 to do.
pub const MAX_PASSWORD_LEN: usize = 128;

/// Whether `password` may become an account's password: the one rule, used by
/// registration and by the password form.
///
/// ```
/// use tessera::models::users::check_new_password;
/// assert!(check_new_password("correct horse battery").is_ok());
/// assert!(check_new_password("short").is_err());
/// ```
///
/// # Errors
/// A message fit for the form.
pub fn check_new_password(password: &str) -> Result<(), &'static str> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_LEN {
        Err("Use at least 8 characters.")
    } else if length > MAX_PASSWORD_LEN {
        Err("Use at most 128 characters.")
    } else {
        Ok(())
    }
}

/// An email address in its canonical form: trimmed, lower-cased, with one `@` between a
/// non-empty local part and a dotted domain.
///
/// ```
/// use tessera::models::users::EmailAddress;
/// assert_eq!(EmailAddress::parse(" Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
/// assert!(EmailAddress::parse("not-an-email").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// # Errors
    /// A message fit for the form when the input is not an email address.
    pub fn parse(input: &str) -> Result<Self, &'static str> {
        let email = input.trim().to_lowercase();
        let valid = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            })
            && !email.chars().any(char::is_whitespace);
        if valid {
            Ok(Self(email))
        } else {
            Err("Enter a valid email address, like name@example.com.")
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The start of an email address, for finding accounts by it: lower-cased, as emails are
/// stored, so the match is case-insensitive. A prefix is a range of the email index:
/// `[prefix, successor)`, where the successor is the first string after every string that
/// starts with the prefix (in byte order, which is code point order in UTF-8: SQLite's
/// binary collation, and PostgreSQL's `COLLATE "C"`, which the migration indexes).
///
/// ```
/// use tessera::models::users::EmailPrefix;
/// let prefix = EmailPrefix::parse(" ALI ").unwrap();
/// assert_eq!(prefix.range(), ("ali", Some("alj".to_string())));
/// assert!(EmailPrefix::parse("  ").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailPrefix(String);

impl EmailPrefix {
    /// `None` for a blank filter.
    #[must_use]
    pub fn parse(input: &str) -> Option<Self> {
        let prefix = input.trim().to_lowercase();
        (!prefix.is_empty()).then_some(Self(prefix))
    }

    /// The prefix, and the first string past those it starts (none when no string is).
    #[must_use]
    pub fn range(&self) -> (&str, Option<String>) {
        let mut upper: Vec<char> = self.0.chars().collect();
        while let Some(last) = upper.pop() {
            // The next scalar value: past the surrogates, nothing after char::MAX.
            let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
            if let Some(next) = next {
                upper.push(next);
                return (&self.0, Some(upper.into_iter().collect()));
            }
        }
        (&self.0, None)
    }

    /// The ids of the first `limit` accounts (in email order) whose email starts with
    /// this prefix: a range of the email index.
    ///
    /// # Errors
    /// A database error.
    pub async fn matching_ids<C: ConnectionTrait>(
        &self,
        db: &C,
        limit: u64,
    ) -> Result<Vec<i64>, DbErr> {
        self.matching_ids_query(db.get_database_backend(), limit)
            .into_tuple::<i64>()
            .all(db)
            .await
    }

    /// The query of [`Self::matching_ids`] on `backend` (public for the query-plan tests).
    #[must_use]
    pub fn matching_ids_query(
        &self,
        backend: sea_orm::DatabaseBackend,
        limit: u64,
    ) -> sea_orm::Select<users::Entity> {
        // PostgreSQL compares in the database's collation unless told otherwise, and a
        // linguistic one does not keep a prefix's strings together: the bytes' order,
        // which the migration's `COLLATE "C"` index holds, does.
        let email = match backend {
            sea_orm::DatabaseBackend::Postgres => Expr::cust(r#""users"."email" COLLATE "C""#),
            _ => Expr::col((users::Entity, users::Column::Email)),
        };
        let (lower, upper) = self.range();
        let mut query = users::Entity::find()
            .select_only()
            .column(users::Column::Id)
            .filter(email.clone().gte(lower));
        if let Some(upper) = upper {
            query = query.filter(email.clone().lt(upper));
        }
        query.order_by(email, sea_orm::Order::Asc).limit(limit)
    }
}

/// What registration needs, already checked: build it with [`NewUser::parse`].
#[derive(Debug)]
pub struct NewUser {
    pub name: String,
    pub email: EmailAddress,
    pub password: String,
}

/// Per-field messages for a registration form that did not pass.
#[derive(Debug, Default, serde::Serialize)]
pub struct RegistrationErrors {
    pub name: Option<&'static str>,
    pub email: Option<&'static str>,
    pub password: Option<&'static str>,
}

impl NewUser {
    /// # Errors
    /// Every field's problem at once, so the form can show them all.
    pub fn parse(name: &str, email: &str, password: &str) -> Result<Self, RegistrationErrors> {
        let mut errors = RegistrationErrors::default();
        let name = name.trim();
        if name.chars().count() < 2 || name.chars().count() > 100 {
            errors.name = Some("Enter a name between 2 and 100 characters.");
        }
        let email = EmailAddress::parse(email)
            .map_err(|e| errors.email = Some(e))
            .ok();
        errors.password = check_new_password(password).err();
        match email {
            Some(email) if errors.name.is_none() && errors.password.is_none() => Ok(Self {
                name: name.to_string(),
                email,
                password: password.to_string(),
            }),
            _ => Err(errors),
        }
    }
}

/// Why an account's password could not be set.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Password hashing is at capacity, or failed.
    #[error(transparent)]
    Hashing(#[from] HashingError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

#[async_trait::async_trait]
impl ActiveModelBehavior for super::_entities::users::ActiveModel {
    async fn before_save<C>(self, _db: &C, insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        if insert {
            let mut this = self;
            this.pid = ActiveValue::Set(Uuid::new_v4());
            Ok(this)
        } else {
            Ok(self)
        }
    }
}

impl Model {
    /// # Errors
    /// `EntityNotFound` when no user has this id, or a database error.
    pub async fn find_by_id(db: &DatabaseConnection, id: i64) -> ModelResult<Self> {
        users::Entity::find_by_id(id)
            .one(db)
            .await?
            .ok_or(ModelError::EntityNotFound)
    }

    /// # Errors
    /// `EntityNotFound` when no user has this email, or a database error.
    pub async fn find_by_email(db: &DatabaseConnection, email: &EmailAddress) -> ModelResult<Self> {
        users::Entity::find()
            .filter(users::Column::Email.eq(email.as_str()))
            .one(db)
            .await?
            .ok_or(ModelError::EntityNotFound)
    }

    /// Checks `password` against this user's hash, on the bounded hasher (ahead of
    /// sign-ups).
    ///
    /// # Errors
    /// When hashing is at capacity or fails.
    pub async fn verify_password(
        &self,
        hashing: &PasswordHashing,
        password: &str,
    ) -> Result<bool, HashingError> {
        hashing
            .verify(Priority::Login, password, &self.password)
            .await
    }

    /// Replaces the password and bumps the credential generation; returns the account as
    /// it now is. The caller ends the user's other sessions and rotates the current one (a
    /// privilege change).
    ///
    /// # Errors
    /// When hashing is at capacity or fails, or a database error.
    pub async fn set_password(
        &self,
        db: &DatabaseConnection,
        hashing: &PasswordHashing,
        password: &str,
    ) -> Result<Self, AccountError> {
        let password_hash = hashing.hash(Priority::Login, password).await?;
        Ok(self
            .change_credentials(
                db,
                users::Entity::update_many()
                    .col_expr(users::Column::Password, Expr::value(password_hash)),
            )
            .await?)
    }

    /// Disables (or re-enables) the account; returns it as it now is. A disabled user
    /// cannot log in, and the caller ends their sessions. Disabling bumps the credential
    /// generation.
    ///
    /// # Errors
    /// A database error.
    pub async fn set_disabled(&self, db: &DatabaseConnection, disabled: bool) -> ModelResult<Self> {
        if !disabled {
            // Re-enabling revives no session: those of the disabled account have ended.
            let mut user: ActiveModel = self.clone().into();
            user.disabled = ActiveValue::Set(false);
            return Ok(user.update(db).await?);
        }
        self.change_credentials(
            db,
            users::Entity::update_many().col_expr(users::Column::Disabled, Expr::value(true)),
        )
        .await
    }

    /// Applies `update` to this account and bumps its credential generation, in one
    /// transaction, and reads the account back in it: the generation returned is the one
    /// this change wrote. A login registers its session only under the generation it
    /// read with the password hash (`SessionRegistry::register`), so a login racing this
    /// change either registered before it (and its session is listed with the others that
    /// the caller ends) or fails.
    async fn change_credentials(
        &self,
        db: &DatabaseConnection,
        update: sea_orm::UpdateMany<users::Entity>,
    ) -> ModelResult<Self> {
        let txn = db.begin().await?;
        update
            .col_expr(
                users::Column::CredentialGeneration,
                Expr::col(users::Column::CredentialGeneration).add(1),
            )
            .filter(users::Column::Id.eq(self.id))
            .exec(&txn)
            .await?;
        let user = users::Entity::find_by_id(self.id)
            .one(&txn)
            .await?
            .ok_or(ModelError::EntityNotFound)?;
        txn.commit().await?;
        Ok(user)
    }

    /// Creates a user with an Argon2 password hash, hashed on the bounded hasher behind
    /// logins.
    ///
    /// # Errors
    /// `EntityAlreadyExists` when the email is taken, hashing at capacity, or a database
    /// error.
    pub async fn create_with_password(
        db: &DatabaseConnection,
        hashing: &PasswordHashing,
        new_user: &NewUser,
        admin: bool,
    ) -> Result<Self, AccountError> {
        let password_hash = hashing.hash(Priority::SignUp, &new_user.password).await?;
        // One INSERT, no read first: the unique index on email decides, also between two
        // registrations at once. (A read-then-write transaction failed at once with
        // "database is locked" on SQLite whenever another connection wrote in between.)
        let user = users::ActiveModel {
            email: ActiveValue::set(new_user.email.as_str().to_string()),
            password: ActiveValue::set(password_hash),
            name: ActiveValue::set(new_user.name.clone()),
            admin: ActiveValue::set(admin),
            // Written out rather than left to the column's default: the row comes back
            // through RETURNING, and on SQLite a connection that had read the schema
            // before the column was added (by a migration at start) returned NULL for a
            // defaulted value (seen under load as "Missing value for column").
            credential_generation: ActiveValue::set(0),
            ..Default::default()
        }
        .insert(db)
        .await
        .map_err(|e| match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => ModelError::EntityAlreadyExists {},
            _ => e.into(),
        })?;
        Ok(user)
    }
}
