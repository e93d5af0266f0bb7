//! `users_create` and `sessions_stats`: the numbers match a known setup.

use serde_json::json;
use tessera::sessions::maintenance;

use crate::support::{Settings, TestApp};

#[tokio::test]
async fn users_create_is_idempotent_and_makes_admins() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
    let args = [
        "task",
        "users_create",
        "email:Boss@Example.com",
        "name:Boss",
        "password:correct horse battery",
        "admin:true",
    ];
    let (ok, out, err) = app.cli(&args).await;
    assert!(ok, "{err}");
    assert!(out.contains("created admin user boss@example.com"), "{out}");
    let (ok, out, _) = app.cli(&args).await;
    assert!(
        ok && out.contains("already exists; nothing changed"),
        "{out}"
    );

    let (admin, _) = app.browser_logged_in_as("boss@example.com").await;
    assert_eq!(
        admin.get("/admin/sessions").await.status_code(),
        200,
        "the new account is an admin"
    );
}

#[tokio::test]
async fn stats_match_a_known_setup() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
    for (email, logins) in [("cat@example.com", 3), ("dan@example.com", 1)] {
        app.create_user(email, false).await;
        for _ in 0..logins {
            app.browser_logged_in_as(email).await;
        }
    }
    let (browser, _) = app.browser_logged_in_as("dan@example.com").await;
    let token = crate::support::csrf_token_of(&browser, "/dashboard").await;
    browser
        .post("/logout")
        .form(&[("csrf_token", token.as_str())])
        .await;
    app.flush_audit().await;

    let sessions = app.sessions();
    let report = maintenance::stats(&sessions, &app.ctx.db)
        .await
        .expect("stats");
    assert_eq!(report.live_total, 4);
    assert_eq!(report.per_store, vec![("file".to_string(), 4)]);
    assert_eq!(
        report.top_users,
        vec![
            ("cat@example.com".to_string(), 3),
            ("dan@example.com".to_string(), 1)
        ]
    );
    assert_eq!(report.last_hour.created, 5);
    assert_eq!(report.last_day.created, 5);
    assert_eq!(report.last_hour.revoked, 0);
    assert!(report.health.ok);
    assert!(report.usage.contains(&("files", 4)), "{:?}", report.usage);

    let (ok, out, err) = app.cli(&["task", "sessions_stats"]).await;
    assert!(ok, "{err}");
    for line in [
        "live sessions: 4",
        "  in file: 4",
        "  cat@example.com: 3",
        "last hour: 5 created, 0 expired, 0 revoked",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}
