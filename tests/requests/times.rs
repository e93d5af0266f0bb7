//! Times on pages read as words ("3 minutes ago", "in 2 h") with the exact time on
//! hover; no page shows RFC 3339 text, and no time carries sub-second digits.

use chrono::Utc;

use crate::support::{attrs, clock::words_during, csrf_token_of, texts, visible_text, TestApp};

/// Whether `text` holds an RFC 3339 / ISO 8601 timestamp like `2026-12-01T06:33:37`.
fn has_iso_timestamp(text: &str) -> bool {
    let shape = b"dddd-dd-ddTdd:dd";
    text.as_bytes().windows(shape.len()).any(|window| {
        window.iter().zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
    })
}

#[test]
fn the_detector_finds_what_it_looks_for() {
    assert!(has_iso_timestamp(
        "at 2026-12-01T06:33:37.787609718+00:00 ok"
    ));
    assert!(!has_iso_timestamp("2026-12-01 06:33:37 UTC"));
    assert!(!has_iso_timestamp("3 minutes ago"));
}

#[tokio::test]
async fn no_page_shows_a_raw_timestamp() {
    let app = TestApp::start().await;
    app.create_user("root@example.com", true).await;
    let (admin, _) = app.browser_logged_in_as("root@example.com").await;
    let (_other, _) = app.browser_logged_in_as("root@example.com").await;
    let token = csrf_token_of(&admin, "/platforms").await;
    admin
        .post("/platforms")
        .form(&[
            ("csrf_token", token.as_str()),
            ("name", "Acme CRM"),
            ("url", "https://crm.example.com"),
        ])
        .await;
    app.flush_audit().await;

    for page in [
        "/dashboard",
        "/sessions",
        "/platforms",
        "/account",
        "/admin/sessions",
    ] {
        let response = admin.get(page).await;
        assert_eq!(response.status_code(), 200, "{page}");
        let html = response.text();
        let text = visible_text(&html);
        assert!(
            !has_iso_timestamp(&text),
            "{page} shows a raw timestamp: {text}"
        );
        for at in attrs(&html, "time", "datetime") {
            assert!(
                chrono::DateTime::parse_from_rfc3339(&at).is_ok() && !at.contains('.'),
                "{page}: <time datetime={at:?}>"
            );
        }
        for title in attrs(&html, "time", "title") {
            assert!(
                title.ends_with(" UTC") && !title.contains('.'),
                "{page}: title {title:?}"
            );
        }
    }
    // The pages with times show them as words.
    let sessions = admin.get("/sessions").await.text();
    assert!(
        attrs(&sessions, "time", "datetime").len() >= 4,
        "created and last seen per row"
    );
    let before_page = Utc::now();
    let admin_page = admin.get("/admin/sessions").await.text();
    let rendered = (before_page, Utc::now());
    let times = attrs(&admin_page, "#recent-events time", "datetime");
    assert!(times.len() >= 3, "{times:?}");
    for (at, shown) in times.iter().zip(texts(&admin_page, "#recent-events time")) {
        assert!(
            words_during(at, rendered).contains(&shown),
            "{shown:?} for {at}"
        );
    }
}
