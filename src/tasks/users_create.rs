//! `cargo loco task users_create email:ann@example.com name:Ann password:... admin:true`
//!
//! Creates an account, e.g. the first admin. Idempotent: an existing email is reported
//! and left unchanged.

use loco_rs::{
    app::AppContext,
    model::ModelError,
    task::{Task, TaskInfo, Vars},
    Error, Result,
};

use crate::{
    models::users::{self, AccountError, NewUser},
    sessions::hashing::PasswordHashing,
};

pub struct UsersCreate;

const USAGE: &str = "email:EMAIL name:NAME password:PASSWORD [admin:true|false]";

fn bad_args(reason: impl std::fmt::Display) -> Error {
    super::args::usage_error("users_create", USAGE, reason)
}

#[async_trait::async_trait]
impl Task for UsersCreate {
    fn task(&self) -> TaskInfo {
        TaskInfo {
            name: "users_create".to_string(),
            detail: "Create a user: email: name: password: admin:true|false".to_string(),
        }
    }

    async fn run(&self, ctx: &AppContext, vars: &Vars) -> Result<()> {
        super::args::only(
            vars,
            "users_create",
            USAGE,
            &["email", "name", "password", "admin"],
        )?;
        let arg = |key: &str| {
            vars.cli_arg(key)
                .map_err(|_| bad_args(format!("missing {key}:")))
        };
        let (email, name, password) = (arg("email")?, arg("name")?, arg("password")?);
        let admin = match vars.cli.get("admin").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(bad_args(format!(
                    "admin must be true or false, not `{other}`"
                )))
            }
        };
        let new_user = NewUser::parse(name, email, password).map_err(|errors| {
            let reasons: Vec<&str> = [errors.name, errors.email, errors.password]
                .into_iter()
                .flatten()
                .collect();
            bad_args(reasons.join(" "))
        })?;
        super::args::migrate_if_configured(ctx).await?;
        // One account from the command line: no queue to share with anyone.
        let hashing = PasswordHashing::new(1, 0);
        match users::Model::create_with_password(&ctx.db, &hashing, &new_user, admin).await {
            Ok(user) => {
                println!(
                    "created {} user {} (id {})",
                    if admin { "admin" } else { "regular" },
                    user.email,
                    user.id
                );
                Ok(())
            }
            Err(AccountError::Model(ModelError::EntityAlreadyExists)) => {
                println!(
                    "user {} already exists; nothing changed",
                    new_user.email.as_str()
                );
                Ok(())
            }
            Err(AccountError::Model(e)) => Err(e.into()),
            Err(AccountError::Hashing(e)) => Err(Error::Message(e.to_string())),
        }
    }
}
