//! The users model: normalized unique emails, hashed passwords, disabled accounts.

use tessera::models::users::{self, EmailAddress, NewUser};

use crate::support::TestApp;

#[tokio::test]
async fn emails_are_normalized_and_unique_and_passwords_hashed() {
    let app = TestApp::start().await;
    let user = app.create_user("  Kim@Example.COM ", false).await;
    assert_eq!(user.email, "kim@example.com");
    assert!(
        user.password.starts_with("$argon2id$"),
        "hashed, never stored in clear"
    );
    let again = NewUser::parse("Kim Two", "kim@example.com", "another password").expect("valid");
    let duplicate = users::Model::create_with_password(&app.ctx.db, &again, false).await;
    assert!(matches!(
        duplicate,
        Err(loco_rs::model::ModelError::EntityAlreadyExists)
    ));

    let email = EmailAddress::parse("kim@example.com").expect("email");
    assert!(
        users::Model::authenticate(&app.ctx.db, &email, "correct horse battery")
            .await
            .expect("db")
            .is_some()
    );
    user.set_disabled(&app.ctx.db, true).await.expect("disable");
    assert!(
        users::Model::authenticate(&app.ctx.db, &email, "correct horse battery")
            .await
            .expect("db")
            .is_none(),
        "a disabled account cannot authenticate"
    );
}
