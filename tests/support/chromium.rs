//! Headless Chromium driven over WebDriver: Debian's `chromium` and `chromium-driver`
//! packages (`.ci/run` installs them), one private chromedriver per test on a free port.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{wd::TimeoutConfiguration, Client, ClientBuilder, Locator};
use serde_json::{json, Map, Value};
use tempfile::TempDir;

use super::clock::{eventually, PATIENCE};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A laptop's window, the size every browser starts at.
pub const DESKTOP: (u32, u32) = (1280, 900);
/// A phone's window (an iPhone 12 to 15, in CSS pixels).
pub const PHONE: (u32, u32) = (390, 844);

/// axe-core, where `scripts/test` installs it (`npm ci` in `tests/browser/`).
const AXE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/browser/node_modules/axe-core/axe.min.js"
);

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
        let deadline = Instant::now() + PATIENCE;
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
            &format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
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
        // axe-core takes a while on a busy machine; WebDriver's default gives up after 30 s.
        client
            .update_timeouts(TimeoutConfiguration::new(Some(PATIENCE), None, None))
            .await
            .expect("script timeout set");
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

    /// The text of `css`, `None` while no such element is on the page (or the page is
    /// between two documents).
    pub async fn text_if_any(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Waits (at most [`PATIENCE`]) until the text of `css` is `wanted` by the test;
    /// whether it was. Pages change by themselves (a status check, a message from another
    /// tab, a reload): the test waits for the outcome, never for a time.
    pub async fn eventually_text(&self, css: &str, wanted: impl Fn(&str) -> bool) -> bool {
        eventually(PATIENCE, || async {
            self.text_if_any(css)
                .await
                .is_some_and(|text| wanted(&text))
        })
        .await
    }

    /// Waits (at most [`PATIENCE`]) until the browser is on `path`; whether it got there.
    pub async fn eventually_at(&self, path: &str) -> bool {
        eventually(PATIENCE, || async { self.path().await == path }).await
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
        let left = eventually(PATIENCE, || async {
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
        assert!(
            left,
            "clicking {css} loaded no new page within {PATIENCE:?}"
        );
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

    /// Resizes the window to `(width, height)` CSS pixels ([`DESKTOP`], [`PHONE`]).
    pub async fn resize(&self, (width, height): (u32, u32)) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize");
    }

    /// What axe-core finds wrong with the page as it is now, one readable paragraph per
    /// rule broken: its id, impact and help text, then each offending element and why.
    /// axe runs its default rules: WCAG 2.x levels A and AA, and its best practices.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        if self.script("return typeof window.axe").await != json!("object") {
            let axe = std::fs::read_to_string(AXE).unwrap_or_else(|e| {
                panic!("{AXE}: {e}: run scripts/test, or `npm ci --prefix tests/browser`, to install axe-core")
            });
            self.script(&axe).await;
        }
        let found = self
            .client
            .execute_async(
                r"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ['violations'] }).then(
                  (results) => done(results.violations.map((v) => ({
                    rule: v.id, impact: v.impact, help: v.help, url: v.helpUrl,
                    nodes: v.nodes.map((n) => ({ target: n.target.join(' '), why: n.failureSummary })),
                  }))),
                  (error) => done({ error: String(error) }),
                );",
                vec![],
            )
            .await
            .expect("axe-core runs");
        if let Some(error) = found.get("error") {
            panic!("axe-core failed: {error}");
        }
        let Value::Array(violations) = found else {
            panic!("axe-core answered {found}");
        };
        violations
            .iter()
            .map(|v| {
                let mut paragraph = format!(
                    "{} ({}): {}\n    {}",
                    v["rule"].as_str().unwrap_or_default(),
                    v["impact"].as_str().unwrap_or("no impact given"),
                    v["help"].as_str().unwrap_or_default(),
                    v["url"].as_str().unwrap_or_default(),
                );
                for node in v["nodes"].as_array().into_iter().flatten() {
                    // axe words it "Fix any of the following:\n  reason\n  reason".
                    let why = node["why"]
                        .as_str()
                        .unwrap_or_default()
                        .lines()
                        .map(str::trim)
                        .filter(|line| !line.is_empty() && !line.starts_with("Fix "))
                        .collect::<Vec<_>>()
                        .join("; ");
                    paragraph.push_str(&format!(
                        "\n    - {}: {why}",
                        node["target"].as_str().unwrap_or_default()
                    ));
                }
                paragraph
            })
            .collect()
    }

    /// What axe-core finds wrong with the page at a desktop's and at a phone's width,
    /// each violation prefixed with the page and the width; saves a screenshot at each
    /// width as `target/screenshots/{name}-desktop.png` and `-phone.png`. The window is
    /// left at the desktop's width.
    pub async fn accessibility_at_both_widths(&self, name: &str) -> Vec<String> {
        let path = self.path().await;
        let mut found = Vec::new();
        for (width, size) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.resize(size).await;
            self.screenshot(&format!("{name}-{width}")).await;
            for violation in self.accessibility_violations().await {
                found.push(format!("{name} ({path}) at {width} width: {violation}"));
            }
        }
        self.resize(DESKTOP).await;
        found
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

/// axe-core's findings over the pages of a test, reported together at its end, so one run
/// lists everything to fix.
#[derive(Default)]
pub struct AccessibilityAudit {
    pages: Vec<String>,
    violations: Vec<String>,
}

impl AccessibilityAudit {
    /// Checks the page `browser` shows, at both widths, under `name`.
    pub async fn check(&mut self, browser: &Browser, name: &str) {
        self.pages.push(name.to_string());
        self.violations
            .extend(browser.accessibility_at_both_widths(name).await);
    }

    /// Fails the test, listing every violation found, if there was any.
    pub fn assert_clean(&self) {
        assert!(
            self.violations.is_empty(),
            "axe-core found {} violation(s) on {} page(s) checked:\n\n{}",
            self.violations.len(),
            self.pages.len(),
            self.violations.join("\n\n")
        );
    }
}
