//! Concurrent requests on one session. The semantics are tower-sessions': each request
//! loads the record, and the last writer wins for the whole record. What must never happen
//! is a late save undoing a logout: a deleted session stays deleted.

use serde_json::json;

use crate::support::{csrf_token_of, location, redis::RedisServer, Settings, TestApp};

async fn logout_is_never_undone_by_concurrent_writes(settings: Settings) {
    let app = TestApp::with(settings).await;
    app.create_user("bo@example.com", false).await;
    let (browser, id) = app.browser_logged_in_as("bo@example.com").await;
    for name in ["One", "Two"] {
        let token = csrf_token_of(&browser, "/platforms").await;
        browser
            .post("/platforms")
            .form(&[
                ("csrf_token", token.as_str()),
                ("name", name),
                ("url", "https://example.com"),
            ])
            .await;
    }
    let html = browser.get("/platforms").await.text();
    let document = scraper::Html::parse_document(&html);
    let selector = scraper::Selector::parse("#platforms li").expect("selector");
    let ids: Vec<String> = document
        .select(&selector)
        .filter_map(|li| li.value().attr("data-platform-id").map(str::to_string))
        .collect();
    let token = csrf_token_of(&browser, "/platforms").await;

    // Twenty session-writing requests race one logout.
    let writes = (0..20).map(|i| {
        let (browser, token, platform) = (&browser, token.clone(), ids[i % 2].clone());
        async move {
            browser
                .post(&format!("/platforms/{platform}/activate"))
                .form(&[("csrf_token", token.as_str())])
                .await
                .status_code()
                .as_u16()
        }
    });
    let logout = async {
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        browser
            .post("/logout")
            .form(&[("csrf_token", token.as_str())])
            .await
            .status_code()
            .as_u16()
    };
    let (statuses, logout_status) = tokio::join!(futures::future::join_all(writes), logout);
    assert_eq!(logout_status, 303);
    for status in statuses {
        assert!(
            matches!(status, 303 | 403),
            "a racing write answered {status}"
        );
    }

    assert!(!app.store_has(&id).await, "the logout stands: no record");
    let replay = app
        .browser()
        .get("/dashboard")
        .add_header(
            "cookie",
            format!("{}={id}", app.sessions().config().cookie.name),
        )
        .await;
    assert_eq!(location(&replay), "/login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_logout_is_never_undone() {
    logout_is_never_undone_by_concurrent_writes(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_logout_is_never_undone() {
    let server = RedisServer::start();
    logout_is_never_undone_by_concurrent_writes(Settings {
        sessions: json!({"store": "redis", "redis": {"url": server.url()}}),
        ..Settings::default()
    })
    .await;
}
