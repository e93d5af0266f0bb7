//! Headless Chromium driven over WebDriver: Debian's `chromium` and `chromium-driver`
//! packages (`.ci/run` installs them), one private chromedriver per test on a free port.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Map, Value};
use tempfile::TempDir;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver this test owns, and the browsers it started. Killed on drop.
pub struct Chromium {
    url: String,
    driver: Child,
    profiles: Vec<TempDir>,
}

impl Chromium {
    /// Starts chromedriver; fails the test with one line saying what to install when
    /// Chromium or its driver is missing.
    pub fn start() -> Self {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} not found: install Debian's chromium and chromium-driver to run the browser tests (.ci/run does)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // A reader far from UTC, so pages that show times in the reader's zone show it.
            .env("TZ", "Asia/Kolkata")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            url: format!("http://127.0.0.1:{port}"),
            driver,
            profiles: Vec::new(),
        }
    }

    /// A new browser with an empty profile of its own: its own cookies and storage, as a
    /// second device would have.
    pub async fn browser(&mut self) -> Browser {
        let profile = TempDir::new().expect("profile dir");
        // Without the background-networking flags Chromium keeps calling home, which this
        // machine's closed network refuses.
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut capabilities = Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("chromium session");
        self.profiles.push(profile);
        Browser { client }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One browser window and its tabs.
pub struct Browser {
    pub client: Client,
}

/// Where the screenshots of the browser tests go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join("screenshots")
}

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigation");
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        url.path().to_string()
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    /// Whether an element matching `css` is on the page.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find")
            .is_empty()
    }

    /// Types `value` into the field `css`, replacing what was there.
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("field {css}: {e}"));
        field.clear().await.expect("clear");
        field.send_keys(value).await.expect("type");
    }

    /// Clicks `css` on the current page: for controls that do not leave the page (a
    /// checkbox). Use [`Browser::submit`] for a click that loads another page.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Clicks `css` (a submit button or a link) and waits until the page it leads to has
    /// loaded. WebDriver's click returns as soon as the click is dispatched, often before
    /// a form's navigation has begun: reading the page straight after it raced the old
    /// page (the login "landed" on `/login`, elements went stale). The old document is
    /// marked, and the wait ends when a document without the mark is complete.
    pub async fn submit(&self, css: &str) {
        let element = self.find(css).await;
        self.script("window.__tesseraOldPage = true").await;
        element.click().await.expect("click");
        let left = eventually(Duration::from_secs(10), || async {
            // Scripts fail while the next document is being set up: not loaded yet.
            self.client
                .execute(
                    "return window.__tesseraOldPage !== true && document.readyState === 'complete'",
                    vec![],
                )
                .await
                .is_ok_and(|loaded| loaded == Value::Bool(true))
        })
        .await;
        assert!(left, "clicking {css} loaded no new page within 10 s");
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    /// Whether the page fits the window's width: nothing scrolls sideways.
    pub async fn fits_its_width(&self) -> bool {
        self.script("return document.documentElement.scrollWidth <= window.innerWidth")
            .await
            == Value::Bool(true)
    }

    pub async fn script(&self, js: &str) -> Value {
        self.client.execute(js, vec![]).await.expect("script runs")
    }

    /// Saves a PNG of the current page as `target/screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot saved");
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Polls `condition` every 50 ms until it holds or `within` has passed; whether it held.
pub async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
