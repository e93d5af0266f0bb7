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
    let hashing = app.sessions().hashing().clone();
    let duplicate = users::Model::create_with_password(&app.ctx.db, &hashing, &again, false).await;
    assert!(matches!(
        duplicate,
        Err(users::AccountError::Model(
            loco_rs::model::ModelError::EntityAlreadyExists
        ))
    ));

    let email = EmailAddress::parse("kim@example.com").expect("email");
    let stored = users::Model::find_by_email(&app.ctx.db, &email)
        .await
        .expect("found");
    assert!(stored
        .verify_password(&hashing, "correct horse battery")
        .await
        .expect("verified"));
    assert!(!stored
        .verify_password(&hashing, "another password")
        .await
        .expect("verified"));
}
