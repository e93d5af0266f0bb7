//! Hostile input: arbitrary cookie values and arbitrary session files.

use std::{collections::BTreeSet, path::Path};

use axum::http::{header::COOKIE, HeaderMap, HeaderValue};
use proptest::{prelude::*, strategy::ValueTree};
use serde_json::json;
use tessera::sessions::{layer::session_id_from_headers, stores::file::FileStore};
use tower_sessions::{session::Id, session_store::SessionStore};

use crate::support::{Settings, TestApp};

/// Cookie values worth trying: path tricks, NUL and control bytes, long strings,
/// non-UTF-8, and near-misses of a real ID.
fn cookie_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 4000..4200),
        "[A-Za-z0-9_-]{20,24}".prop_map(String::into_bytes),
        Just(b"../../../../etc/passwd".to_vec()),
        Just(b"..%2F..%2F..%2Fetc%2Fpasswd".to_vec()),
        Just(b"AAAAAAAAAAAAAAAAAAAA/.".to_vec()),
        Just(b"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn cookie_parsing_never_panics_and_accepts_only_ids(value in cookie_value()) {
        let mut raw = b"session=".to_vec();
        raw.extend_from_slice(&value);
        if let Ok(header) = HeaderValue::from_bytes(&raw) {
            let mut headers = HeaderMap::new();
            headers.insert(COOKIE, header);
            if let Some(id) = session_id_from_headers(&headers, "session") {
                let text = id.to_string();
                prop_assert_eq!(text.len(), 22);
                prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
        }
    }

    #[test]
    fn arbitrary_file_contents_never_panic_the_loader(contents in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::TempDir::new().expect("dir");
            let store = FileStore::open(dir.path().join("s")).expect("store");
            let id = Id::default();
            std::fs::write(store.dir().join(id.to_string()), &contents).expect("write");
            let loaded = store.load(&id).await;
            assert!(
                matches!(loaded, Ok(_) | Err(tower_sessions::session_store::Error::Decode(_))),
                "a bad file is no session or undecodable (which the session layer removes), never a store failure"
            );
            let report = store.sweep_expired().await.expect("sweep");
            assert_eq!(report.failed, 0);
        });
    }
}

fn files_under(root: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.insert(
                path.strip_prefix(root)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            );
        }
    }
    found
}

#[tokio::test]
async fn hostile_cookies_never_5xx_and_never_touch_files_outside_the_session_dir() {
    let app = TestApp::with(Settings {
        sessions: json!({"store": "file"}),
        ..Settings::default()
    })
    .await;
    let scratch = app.scratch();
    let before = files_under(scratch.path());

    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 96,
        ..ProptestConfig::default()
    });
    let mut values = Vec::new();
    for _ in 0..96 {
        values.push(
            cookie_value()
                .new_tree(&mut runner)
                .expect("value")
                .current(),
        );
    }
    let browser = app.browser();
    for value in values {
        let mut raw = b"session=".to_vec();
        raw.extend_from_slice(&value);
        let Ok(header) = HeaderValue::from_bytes(&raw) else {
            continue;
        };
        for path in ["/dashboard", "/api/session", "/sessions"] {
            let response = browser.get(path).add_header(COOKIE, header.clone()).await;
            assert!(
                response.status_code().as_u16() < 500,
                "{path} with {value:?}: {}",
                response.status_code()
            );
        }
        // A state-changing form with a hostile cookie: refused, nothing written.
        let post = browser
            .post("/logout")
            .add_header(COOKIE, header.clone())
            .form(&[("csrf_token", "x")])
            .await;
        assert_eq!(post.status_code(), 403);
    }

    let after = files_under(scratch.path());
    let new: Vec<_> = after.difference(&before).collect();
    let outside: Vec<_> = new
        .iter()
        .filter(|p| !p.starts_with("sessions") && !p.starts_with("tessera.sqlite"))
        .collect();
    assert!(
        outside.is_empty(),
        "files appeared outside the session dir: {outside:?}"
    );
    let session_files = std::fs::read_dir(app.session_dir()).expect("dir").count();
    assert_eq!(
        session_files, 0,
        "hostile cookies created no session records"
    );
}
