//! Tessera as it is deployed: the shipped production config (`config/production.yaml`:
//! Redis store, sealed records, `__Host-` cookies, SQLite here) served over plain HTTP on
//! 127.0.0.1, behind Debian's nginx terminating TLS with a stock reverse-proxy config, and
//! driven by clients that connect from loopback addresses of their own (127.0.0.2,
//! 127.0.0.3, ...), each with its own cookie jar.
//!
//! ```ignore
//! let deployed = DeployedApp::start(DeployOptions::default()).await;
//! deployed.app.create_user("ann@example.com", false).await;
//! let ann = deployed.client(ip("127.0.0.2"));
//! let reply = ann.login("ann@example.com", "correct horse battery", false).await;
//! assert_eq!(reply.location(), "/dashboard");
//! ```
//!
//! What differs from a real deployment, and only that: the database is a throwaway
//! SQLite file, the secret is a test value, Redis is a private `redis-server` on a free
//! port, and a test may merge settings of its own into `settings.sessions` (a narrower
//! `trusted_proxies`, throttle limits).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use loco_rs::environment::Environment;
use reqwest::{cookie::CookieStore, header::HeaderMap, Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

use super::{hidden_field, redis::RedisServer, Settings, TestApp};

const NGINX: &str = "/usr/sbin/nginx";

/// The name clients reach the deployment by (resolved to nginx's address by the client,
/// named by the certificate).
pub const HOST: &str = "tessera.test";

/// The `n`-th client address of a test: 127.0.0.2, 127.0.0.3, ..., then 127.0.1.2, ...
/// Never 127.0.0.1, the address nginx connects to the app from.
#[must_use]
pub fn loopback(n: u32) -> IpAddr {
    let third = u8::try_from(n / 250).expect("fewer than 64,000 clients");
    let fourth = u8::try_from(n % 250 + 2).expect("below 252");
    IpAddr::V4(Ipv4Addr::new(127, 0, third, fourth))
}

/// `text` as an IP address (a test's literal).
#[must_use]
pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

/// What a test may change about the deployment.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// Merged into `settings.sessions` of the shipped production config, e.g.
    /// `json!({"trusted_proxies": "127.0.0.1"})`.
    pub sessions: Value,
}

impl Default for DeployOptions {
    fn default() -> Self {
        Self {
            sessions: serde_json::json!({}),
        }
    }
}

/// The production app behind nginx, its private Redis and its certificate authority.
/// Everything stops when it is dropped.
pub struct DeployedApp {
    /// The app itself: its context (database), its `Sessions`, the test helpers.
    pub app: TestApp,
    /// The app's own Redis server.
    pub redis: RedisServer,
    nginx: Nginx,
    /// Where the app listens, behind nginx (plain HTTP).
    pub app_address: SocketAddr,
    ca: reqwest::Certificate,
}

impl DeployedApp {
    /// Boots the production app on its own Redis, serves it on 127.0.0.1 and puts nginx
    /// with a fresh certificate in front of it.
    pub async fn start(options: DeployOptions) -> Self {
        let redis = RedisServer::start();
        let mut sessions = serde_json::json!({"redis": {"url": redis.url()}});
        super::merge(&mut sessions, &options.sessions);
        let app = TestApp::with(Settings {
            environment: Environment::Production,
            sessions,
            shipped_database_pool: true,
            ..Settings::default()
        })
        .await;
        let app_address = app.listen().await;
        let certificate = Certificate::generate();
        let ca = reqwest::Certificate::from_pem(&certificate.ca_pem()).expect("a PEM certificate");
        let nginx = Nginx::start(app_address, certificate);
        Self {
            app,
            redis,
            nginx,
            app_address,
            ca,
        }
    }

    /// A browser connecting from `source` (a loopback address) to nginx over TLS, with a
    /// cookie jar of its own. Redirects are not followed, so a test sees them.
    #[must_use]
    pub fn client(&self, source: IpAddr) -> Client {
        let http = reqwest::Client::builder()
            .local_address(source)
            .resolve(HOST, SocketAddr::from(([127, 0, 0, 1], self.nginx.port)))
            .add_root_certificate(self.ca.clone())
            .https_only(true);
        Client::new(http, format!("https://{HOST}:{}", self.nginx.port), source)
    }

    /// A client that skips nginx: it connects from `source` straight to the app's port
    /// (plain HTTP), as anyone who can reach that port could, and may send any header.
    #[must_use]
    pub fn direct_client(&self, source: IpAddr) -> Client {
        let http = reqwest::Client::builder().local_address(source);
        Client::new(http, format!("http://{}", self.app_address), source)
    }

    /// nginx's log `name` so far: `error.log` (start-up warnings, upstream errors) or
    /// `access.log` (one line per request, with the client's address).
    #[must_use]
    pub fn nginx_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.nginx.dir.path().join(name)).unwrap_or_default()
    }
}

/// A browser: one source address, one cookie jar, one base URL. A clone is another tab of
/// the same browser (same jar), cheap to move into a spawned task.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    base: reqwest::Url,
    /// The address this client connects from.
    pub source: IpAddr,
}

impl Client {
    fn new(builder: reqwest::ClientBuilder, base: String, source: IpAddr) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = builder
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0")
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        Self {
            http,
            jar,
            base: base.parse().expect("a base URL"),
            source,
        }
    }

    /// The absolute URL of `path`.
    #[must_use]
    pub fn url(&self, path: &str) -> reqwest::Url {
        self.base.join(path).expect("a path")
    }

    /// A request to build further (headers of a test's choosing), sent with [`Self::send`].
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }

    /// Sends a request built with [`Self::request`] and reads the whole answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the request is answered");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("a body");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.request(Method::GET, path)).await
    }

    /// `GET path` with extra headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.request(Method::GET, path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    /// Posts `fields` to `path` as they are (no CSRF token is added).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.send(self.request(Method::POST, path).form(fields))
            .await
    }

    /// Fills in the form of the page at `path` and posts it there: the page's
    /// `csrf_token` first, then `fields`.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.post_form_on(path, path, fields).await
    }

    /// Loads `page` for its `csrf_token` and posts it with `fields` to `action` (a form
    /// that posts elsewhere, e.g. `/sessions` to `/sessions/revoke-others`).
    pub async fn post_form_on(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> Reply {
        let token = self.csrf_token(page).await;
        let mut form = vec![("csrf_token", token.as_str())];
        form.extend_from_slice(fields);
        self.post(action, &form).await
    }

    /// The `csrf_token` of the page at `path`.
    pub async fn csrf_token(&self, path: &str) -> String {
        let page = self.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "GET {path}: {}", page.body);
        page.hidden_field("csrf_token")
            .unwrap_or_else(|| panic!("{path} has a csrf_token field"))
    }

    /// Logs in through the form (303 to `/dashboard` on success).
    pub async fn login(&self, email: &str, password: &str, remember: bool) -> Reply {
        let mut fields = vec![("email", email), ("password", password)];
        if remember {
            fields.push(("remember", "on"));
        }
        self.post_form("/login", &fields).await
    }

    /// Registers through the form (303 to `/login?notice=registered`).
    pub async fn register(&self, name: &str, email: &str, password: &str) -> Reply {
        self.post_form(
            "/register",
            &[("name", name), ("email", email), ("password", password)],
        )
        .await
    }

    /// Logs out with the logout button of the dashboard.
    pub async fn logout(&self) -> Reply {
        self.post_form_on("/dashboard", "/logout", &[]).await
    }

    /// Puts a cookie into the jar as if the server had set it (`Set-Cookie` syntax).
    pub fn add_cookie(&self, set_cookie: &str) {
        self.jar.add_cookie_str(set_cookie, &self.base);
    }

    /// The `Cookie` header the jar would send now.
    #[must_use]
    pub fn cookie_header(&self) -> String {
        self.jar
            .cookies(&self.base)
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .unwrap_or_default()
    }
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The first value of header `name`.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `Set-Cookie` line.
    #[must_use]
    pub fn set_cookies(&self) -> Vec<&str> {
        self.headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The `Set-Cookie` line for cookie `name`.
    #[must_use]
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=");
        self.set_cookies()
            .into_iter()
            .find(|line| line.starts_with(&prefix))
    }

    /// The `Location` header, or "".
    #[must_use]
    pub fn location(&self) -> &str {
        self.header("location").unwrap_or_default()
    }

    /// The value of the page's hidden input `name`.
    #[must_use]
    pub fn hidden_field(&self, name: &str) -> Option<String> {
        hidden_field(&self.body, name)
    }

    /// The body as JSON.
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("JSON ({e}): {}", self.body))
    }
}

/// A certificate authority and a server certificate for [`HOST`] (and 127.0.0.1), made by
/// `openssl` in a directory of their own.
struct Certificate {
    dir: TempDir,
}

impl Certificate {
    fn generate() -> Self {
        require(
            "openssl",
            Command::new("openssl").arg("version"),
            "apt-get install openssl",
        );
        let dir = TempDir::new().expect("temp dir");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            dir.path(),
            &[
                &["req", "-x509"],
                &ec[..],
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ],
            &["-days", "2", "-subj", "/CN=Tessera test CA"],
        );
        openssl(
            dir.path(),
            &[
                &["req"],
                &ec[..],
                &["-keyout", "server.key", "-out", "server.csr"],
            ],
            &["-subj", &format!("/CN={HOST}")],
        );
        std::fs::write(
            dir.path().join("server.ext"),
            format!(
                "subjectAltName = DNS:{HOST}, IP:127.0.0.1\nbasicConstraints = CA:FALSE\nextendedKeyUsage = serverAuth\n"
            ),
        )
        .expect("extensions file");
        openssl(
            dir.path(),
            &[&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
            ]],
            &[
                "-set_serial",
                "1",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        Self { dir }
    }

    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("ca.pem")).expect("the CA certificate")
    }

    fn server_pem(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    fn server_key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
}

fn openssl(dir: &Path, parts: &[&[&str]], more: &[&str]) {
    let output = Command::new("openssl")
        .args(parts.iter().flat_map(|p| p.iter()))
        .args(more)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl {parts:?} {more:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Fails the test with one line saying what to install when `program` does not run.
fn require(program: &str, probe: &mut Command, install: &str) {
    let runs = probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        runs,
        "{program} not found: install it (Debian: {install}; scripts/test does) to run the deployed-app tests"
    );
}

/// nginx in front of `upstream`, run by this test under a prefix of its own: its own
/// config, temp directories, pid file and logs; stopped on drop.
struct Nginx {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    _certificate: Certificate,
}

impl Nginx {
    fn start(upstream: SocketAddr, certificate: Certificate) -> Self {
        require(
            "nginx",
            Command::new(NGINX).arg("-v"),
            "apt-get install nginx-light",
        );
        let dir = TempDir::new().expect("temp dir");
        // A port another process takes between our probe and nginx's bind makes nginx
        // exit at once: try another.
        let mut log = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free port");
            std::fs::write(
                dir.path().join("nginx.conf"),
                config(dir.path(), port, upstream, &certificate),
            )
            .expect("nginx.conf");
            let child = nginx_command(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nginx starts");
            let mut child = Some(child);
            if wait_until_listening(&mut child, port) {
                return Self {
                    port,
                    dir,
                    child,
                    _certificate: certificate,
                };
            }
            log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            assert!(
                log.contains("Address already in use"),
                "nginx did not start: {log}"
            );
        }
        panic!("nginx found no free port: {log}")
    }

    /// `nginx -s stop` (the master ends its workers), then waits for the master; kills it
    /// if it lingers.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = nginx_command(self.dir.path())
            .args(["-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// nginx with everything under `dir`: prefix, config, error log.
fn nginx_command(dir: &Path) -> Command {
    let mut command = Command::new(NGINX);
    command
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"));
    command
}

/// Whether the nginx in `child` accepts connections on `port`; `false` when it exited.
fn wait_until_listening(child: &mut Option<Child>, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(running) = child.as_mut() {
            if running.try_wait().ok().flatten().is_some() {
                *child = None;
                return false;
            }
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        assert!(Instant::now() < deadline, "nginx did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A stock TLS-terminating reverse proxy, as the README tells operators to write it.
fn config(dir: &Path, port: u16, upstream: SocketAddr, certificate: &Certificate) -> String {
    // Run as root, the master would hand the workers to `nobody`, who cannot enter this
    // test's private directories: keep them as the user running the tests.
    let user = if dir.metadata().is_ok_and(|m| m.uid() == 0) {
        "user root root;"
    } else {
        ""
    };
    let dir = dir.display();
    format!(
        r"{user}
daemon off;
master_process on;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {HOST};
        ssl_certificate {cert};
        ssl_certificate_key {key};

        location / {{
            proxy_pass http://{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
",
        cert = certificate.server_pem().display(),
        key = certificate.server_key().display(),
    )
}
