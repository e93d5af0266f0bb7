//! Platform connections: add, activate (kept in this session only), 404 for another
//! user's platform, and deleting the active one clears it.

use serde_json::Value;

use crate::support::{csrf_token_of, location, texts, TestApp};

async fn add_platform(
    browser: &axum_test::TestServer,
    name: &str,
    url: &str,
) -> axum_test::TestResponse {
    let token = csrf_token_of(browser, "/platforms").await;
    browser
        .post("/platforms")
        .form(&[("csrf_token", token.as_str()), ("name", name), ("url", url)])
        .await
}

fn platform_ids(html: &str) -> Vec<String> {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse("#platforms li").expect("selector");
    document
        .select(&selector)
        .filter_map(|li| li.value().attr("data-platform-id").map(str::to_string))
        .collect()
}

#[tokio::test]
async fn activate_a_platform_and_see_it_everywhere_in_this_session_only() {
    let app = TestApp::start().await;
    app.create_user("ivy@example.com", false).await;
    let (laptop, _) = app.browser_logged_in_as("ivy@example.com").await;
    let (phone, _) = app.browser_logged_in_as("ivy@example.com").await;

    assert_eq!(
        location(&add_platform(&laptop, "Staging", "https://staging.example.com").await),
        "/platforms"
    );
    add_platform(&laptop, "Production", "https://prod.example.com").await;
    let ids = platform_ids(&laptop.get("/platforms").await.text());
    assert_eq!(ids.len(), 2);

    let staging = &ids[1]; // listed by name: Production, Staging
    let token = csrf_token_of(&laptop, "/platforms").await;
    let activate = laptop
        .post(&format!("/platforms/{staging}/activate"))
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(activate.status_code(), 303);

    for page in ["/dashboard", "/platforms", "/sessions", "/account"] {
        let html = laptop.get(page).await.text();
        assert_eq!(
            texts(&html, "#active-platform"),
            vec!["Staging"],
            "{page} header"
        );
    }
    let api: Value = laptop.get("/api/session").await.json();
    assert_eq!(api["active_platform_id"].to_string(), *staging);
    let api: Value = phone.get("/api/session").await.json();
    assert_eq!(
        api["active_platform_id"],
        Value::Null,
        "the phone's session chose nothing"
    );

    // Deleting the active platform clears it.
    let token = csrf_token_of(&laptop, "/platforms").await;
    laptop
        .post(&format!("/platforms/{staging}/delete"))
        .form(&[("csrf_token", token.as_str())])
        .await;
    let api: Value = laptop.get("/api/session").await.json();
    assert_eq!(api["active_platform_id"], Value::Null);
    assert_eq!(
        texts(&laptop.get("/dashboard").await.text(), "#active-platform"),
        vec!["No platform"]
    );
}

#[tokio::test]
async fn another_users_platform_is_not_found() {
    let app = TestApp::start().await;
    app.create_user("jay@example.com", false).await;
    app.create_user("kit@example.com", false).await;
    let (jay, _) = app.browser_logged_in_as("jay@example.com").await;
    let (kit, _) = app.browser_logged_in_as("kit@example.com").await;
    add_platform(&jay, "Jay's", "https://jay.example.com").await;
    let jays = platform_ids(&jay.get("/platforms").await.text()).remove(0);

    let token = csrf_token_of(&kit, "/platforms").await;
    for action in ["activate", "delete"] {
        let response = kit
            .post(&format!("/platforms/{jays}/{action}"))
            .form(&[("csrf_token", token.as_str())])
            .await;
        assert_eq!(response.status_code(), 404, "{action}");
    }
    let missing = kit
        .post("/platforms/999999/activate")
        .form(&[("csrf_token", token.as_str())])
        .await;
    assert_eq!(missing.status_code(), 404);
    assert_eq!(
        platform_ids(&jay.get("/platforms").await.text()),
        vec![jays],
        "Jay's platform is intact"
    );
}

#[tokio::test]
async fn a_bad_platform_is_explained() {
    let app = TestApp::start().await;
    app.create_user("lou@example.com", false).await;
    let (browser, _) = app.browser_logged_in_as("lou@example.com").await;
    let response = add_platform(&browser, "", "javascript:alert(1)").await;
    assert_eq!(response.status_code(), 422);
    let html = response.text();
    assert_eq!(
        texts(&html, "#name-error"),
        vec!["Enter a name of up to 80 characters."]
    );
    assert_eq!(
        texts(&html, "#url-error"),
        vec!["Enter an http:// or https:// address."]
    );
    assert!(platform_ids(&browser.get("/platforms").await.text()).is_empty());
}
