//! The audit trail says who did what, from where: a replayed cookie names the replayer
//! beside the browser that logged in, an admin's actions name the admin, disabling an
//! account and registering one are events, and a burst of refused attempts is one row.
//! Clients connect from distinct loopback addresses, as the app sees direct clients.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use tessera::models::_entities::session_events;

use crate::support::{
    csrf_token_of, direct::DirectClient, location, texts, Database, Settings, TestApp,
};

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

/// The trail's rows of `event`, oldest first.
async fn rows(app: &TestApp, event: &str) -> Vec<session_events::Model> {
    app.flush_audit().await;
    session_events::Entity::find()
        .filter(session_events::Column::Event.eq(event))
        .order_by_asc(session_events::Column::Id)
        .all(&app.ctx.db)
        .await
        .expect("events")
}

/// The only row of `event`.
async fn only_row(app: &TestApp, event: &str) -> session_events::Model {
    let mut found = rows(app, event).await;
    assert_eq!(found.len(), 1, "one {event} row: {found:?}");
    found.remove(0)
}

async fn log_in(client: &mut DirectClient, email: &str, password: &str) -> u16 {
    client
        .submit(
            "/login",
            "/login",
            &[("email", email), ("password", password)],
        )
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_cookie_names_the_replayer_beside_the_browser_that_logged_in() {
    let app = TestApp::start().await;
    let victim_user = app.create_user("vic@example.com", false).await;
    app.create_user("root@example.com", true).await;
    let base = app.serve().await;
    let cookie = app.sessions().config().cookie.name.clone();

    let mut victim = DirectClient::new(&base, "127.0.0.1", FIREFOX);
    assert_eq!(
        log_in(&mut victim, "vic@example.com", "correct horse battery").await,
        303
    );
    let stolen = victim
        .cookie(&cookie)
        .expect("a session cookie")
        .to_string();

    // The same browser string from another address: the session goes on, and every event
    // of it says where the request came from.
    let mut thief = DirectClient::new(&base, "127.0.0.7", FIREFOX);
    thief.set_cookie(&cookie, &stolen);
    let wrong = thief
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", "a guess"),
                ("new_password", "the thief's own password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, 422);
    let failed = only_row(&app, "login_failed").await;
    assert_eq!(failed.user_id, Some(victim_user.id));
    assert_eq!(
        failed.ip.as_deref(),
        Some("127.0.0.1"),
        "the session's client"
    );
    assert_eq!(failed.user_agent.as_deref(), Some(FIREFOX));
    assert_eq!(
        failed.request_ip.as_deref(),
        Some("127.0.0.7"),
        "the request's"
    );

    let changed = thief
        .submit(
            "/account",
            "/account/password",
            &[
                ("current_password", "correct horse battery"),
                ("new_password", "the thief's own password"),
            ],
        )
        .await;
    assert_eq!(changed.location(), "/account");
    for event in ["rotated", "password_changed"] {
        let row = only_row(&app, event).await;
        assert_eq!(row.ip.as_deref(), Some("127.0.0.1"), "{event}");
        assert_eq!(row.request_ip.as_deref(), Some("127.0.0.7"), "{event}");
    }

    // Another program with the (rotated) cookie: the session ends, and the trail names
    // both the browser that logged in and the replayer.
    let rotated = thief
        .cookie(&cookie)
        .expect("the rotated cookie")
        .to_string();
    let mut curl = DirectClient::new(&base, "127.0.0.7", "curl/8.0");
    curl.set_cookie(&cookie, &rotated);
    assert_eq!(curl.get("/dashboard").await.location(), "/login");
    let mismatch = only_row(&app, "fingerprint_mismatch").await;
    assert_eq!(mismatch.user_id, Some(victim_user.id));
    assert_eq!(mismatch.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(mismatch.user_agent.as_deref(), Some(FIREFOX));
    assert_eq!(mismatch.request_ip.as_deref(), Some("127.0.0.7"));
    assert_eq!(mismatch.request_user_agent.as_deref(), Some("curl/8.0"));
    // The victim's own requests, from where they logged in, are no replay.
    let login = only_row(&app, "login").await;
    assert_eq!(login.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!((login.request_ip, login.request_user_agent), (None, None));

    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let html = admin.get("/admin/sessions").await.text();
    assert_eq!(
        texts(
            &html,
            "#recent-events tr[data-event=fingerprint_mismatch] [data-request-client]"
        ),
        vec!["replayed from curl on 127.0.0.7"]
    );
}

#[tokio::test]
async fn disabling_an_account_is_an_event_of_the_admin_with_or_without_sessions() {
    let app = TestApp::start().await;
    let root = app.create_user("root@example.com", true).await;
    let pia = app.create_user("pia@example.com", false).await;
    let quinn = app.create_user("quinn@example.com", false).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let (_pia_browser, _) = app.browser_logged_in_as("pia@example.com").await;

    for (email, ended) in [("pia@example.com", 1), ("quinn@example.com", 0)] {
        let token = csrf_token_of(&admin, "/admin/sessions").await;
        let response = admin
            .post("/admin/users/disable")
            .form(&[("csrf_token", token.as_str()), ("email", email)])
            .await;
        assert_eq!(
            location(&response),
            format!("/admin/sessions?ended={ended}")
        );
    }

    let disabled = rows(&app, "account_disabled").await;
    let named: Vec<_> = disabled
        .iter()
        .map(|e| (e.user_id, e.actor_user_id, e.reason.clone()))
        .collect();
    assert_eq!(
        named,
        vec![
            (
                Some(pia.id),
                Some(root.id),
                Some("sessions ended: 1".into())
            ),
            (
                Some(quinn.id),
                Some(root.id),
                Some("sessions ended: 0".into())
            ),
        ]
    );
    let revoked = only_row(&app, "revoked").await;
    assert_eq!(revoked.user_id, Some(pia.id));
    assert_eq!(revoked.actor_user_id, Some(root.id), "the admin ended it");
    assert_eq!(revoked.reason.as_deref(), Some("user_disabled"));

    let html = admin.get("/admin/sessions").await.text();
    assert_eq!(
        texts(
            &html,
            "#recent-events tr[data-event=account_disabled] td[data-actor]"
        ),
        vec!["root@example.com", "root@example.com"]
    );
}

#[tokio::test]
async fn the_admin_is_named_on_their_actions_and_nobody_on_a_users_own() {
    let app = TestApp::start().await;
    let root = app.create_user("root@example.com", true).await;
    app.create_user("ned@example.com", false).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let (ned, _) = app.browser_logged_in_as("ned@example.com").await;
    let (_other, _) = app.browser_logged_in_as("ned@example.com").await;

    // Ned ends his other session himself: nobody else acted.
    let token = csrf_token_of(&ned, "/sessions").await;
    ned.post("/sessions/revoke-others")
        .form(&[("csrf_token", token.as_str())])
        .await;
    // The admin ends Ned's remaining session from the table.
    let own = only_row(&app, "revoked").await;
    assert_eq!(own.reason.as_deref(), Some("revoked_by_user"));
    assert_eq!(own.actor_user_id, None);
    let html = admin.get("/admin/sessions").await.text();
    let session_ref = crate::support::attrs(
        &html,
        "#live-sessions tr[data-email='ned@example.com']",
        "data-session-ref",
    );
    assert_eq!(session_ref.len(), 1);
    let token = csrf_token_of(&admin, "/admin/sessions").await;
    let response = admin
        .post(&format!("/admin/sessions/{}/revoke", session_ref[0]))
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(location(&response), "/admin/sessions?ended=1");
    let by_admin = rows(&app, "revoked").await;
    assert_eq!(by_admin.len(), 2);
    assert_eq!(by_admin[1].reason.as_deref(), Some("revoked_by_admin"));
    assert_eq!(by_admin[1].actor_user_id, Some(root.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_is_an_event_naming_the_new_account_and_its_client() {
    let app = TestApp::start().await;
    let base = app.serve().await;
    let mut newcomer = DirectClient::new(&base, "127.0.0.9", FIREFOX);
    let fields = [
        ("name", "Nia Newcomer"),
        ("email", "nia@example.com"),
        ("password", "correct horse battery"),
    ];
    let registered = newcomer.submit("/register", "/register", &fields).await;
    assert_eq!(registered.location(), "/login?notice=registered");
    // The same email again answers the same, and creates nothing to audit.
    let again = DirectClient::new(&base, "127.0.0.10", FIREFOX)
        .submit("/register", "/register", &fields)
        .await;
    assert_eq!(again.location(), "/login?notice=registered");

    let user = tessera::models::users::Model::find_by_email(
        &app.ctx.db,
        &tessera::models::users::EmailAddress::parse("nia@example.com").expect("email"),
    )
    .await
    .expect("the account");
    let event = only_row(&app, "registered").await;
    assert_eq!(event.user_id, Some(user.id));
    assert_eq!(event.ip.as_deref(), Some("127.0.0.9"));
    assert_eq!(event.user_agent.as_deref(), Some(FIREFOX));
}

/// Attempts refused by the throttle are one row per counter and window: a burst of 50 is
/// one row counting 50, with the first and the latest client; a later window gets a row
/// of its own.
async fn a_burst_of_refused_attempts_is_one_row(database: Database) {
    const LIMIT: usize = 2;
    let app = TestApp::with(Settings {
        database,
        sessions: json!({"throttle": {"account_failures": LIMIT, "ip_failures": 1_000_000}}),
        ..Settings::default()
    })
    .await;
    app.create_user("gus@example.com", false).await;
    let base = app.serve().await;
    let guess = |from: &str, agent: &str| {
        let mut client = DirectClient::new(&base, from, agent);
        async move { log_in(&mut client, "gus@example.com", "a wrong guess").await }
    };
    for _ in 0..LIMIT {
        assert_eq!(guess("127.0.0.20", "guesser").await, 422);
    }
    // 50 refused: the first alone, 48 at once, the last alone.
    assert_eq!(guess("127.0.0.21", "first-agent").await, 429);
    let burst = futures::future::join_all((0..48).map(|i| {
        let from = format!("127.0.1.{}", i + 1);
        let guess = &guess;
        async move { guess(&from, "burst-agent").await }
    }))
    .await;
    assert!(burst.iter().all(|status| *status == 429), "{burst:?}");
    assert_eq!(guess("127.0.0.22", "last-agent").await, 429);

    let row = only_row(&app, "login_throttled").await;
    assert_eq!(row.attempts, Some(50));
    assert_eq!(
        (row.ip.as_deref(), row.user_agent.as_deref()),
        (Some("127.0.0.21"), Some("first-agent")),
        "the first client"
    );
    assert_eq!(
        (row.request_ip.as_deref(), row.request_user_agent.as_deref()),
        (Some("127.0.0.22"), Some("last-agent")),
        "the latest client"
    );
    assert_eq!(rows(&app, "login_failed").await.len(), LIMIT);

    // The window ends (forced): the counter starts again, and so does the trail's row.
    use sea_orm::ConnectionTrait;
    for statement in [
        "UPDATE throttle_counters SET window_ends_at = 0",
        "UPDATE session_events SET window_ends_at = created_at WHERE event = 'login_throttled'",
    ] {
        app.ctx
            .db
            .execute_unprepared(statement)
            .await
            .expect(statement);
    }
    for _ in 0..LIMIT {
        assert_eq!(guess("127.0.0.20", "guesser").await, 422);
    }
    for _ in 0..3 {
        assert_eq!(guess("127.0.0.23", "next-window").await, 429);
    }
    let windows: Vec<_> = rows(&app, "login_throttled")
        .await
        .into_iter()
        .map(|r| (r.attempts, r.user_agent))
        .collect();
    assert_eq!(
        windows,
        vec![
            (Some(50), Some("first-agent".into())),
            (Some(3), Some("next-window".into()))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refused_attempts_is_one_row_sqlite() {
    a_burst_of_refused_attempts_is_one_row(Database::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refused_attempts_is_one_row_postgres() {
    a_burst_of_refused_attempts_is_one_row(Database::Postgres).await;
}
