//! Static assets: cacheable with revalidation, and a missing file is an honest 404.

use axum_test::TestResponse;

use crate::support::TestApp;

fn header(response: &TestResponse, name: &str) -> String {
    response
        .maybe_header(name)
        .and_then(|v| v.to_str().ok().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test]
async fn stylesheet_and_script_are_cached_for_an_hour_then_revalidated() {
    let app = TestApp::start().await;
    let browser = app.browser();
    for path in ["/static/app.css", "/static/session-sync.js"] {
        let response = browser.get(path).await;
        assert_eq!(response.status_code(), 200, "{path}");
        assert_eq!(
            header(&response, "cache-control"),
            "public, max-age=3600",
            "{path}"
        );
        let last_modified = header(&response, "last-modified");
        assert!(!last_modified.is_empty(), "{path} can be revalidated");

        let again = browser
            .get(path)
            .add_header("if-modified-since", last_modified.as_str())
            .await;
        assert_eq!(again.status_code(), 304, "{path} unchanged: no body again");
        assert_eq!(
            header(&again, "cache-control"),
            "public, max-age=3600",
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_missing_asset_is_a_404_with_the_friendly_page_and_is_not_cached() {
    let app = TestApp::start().await;
    let browser = app.browser();
    for path in ["/static/x.css", "/static/nested/missing.js", "/static/"] {
        let response = browser.get(path).await;
        assert_eq!(response.status_code(), 404, "{path}");
        assert_eq!(header(&response, "cache-control"), "no-store", "{path}");
        assert!(
            header(&response, "content-type").starts_with("text/html"),
            "{path}"
        );
        let html = response.text();
        assert!(html.contains("Not found"), "{path}: {html}");
        assert!(html.contains(r#"href="/""#), "{path}: a way back");
        assert!(html.contains("/static/app.css"), "{path}: the site's look");
        assert!(
            response.headers().contains_key("content-security-policy"),
            "{path}: the security headers still apply"
        );
    }
}
