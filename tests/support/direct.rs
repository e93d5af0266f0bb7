//! A client that connects to the app from a loopback address of its choosing (127.x.y.z),
//! with a user agent of its choosing: to the app, a direct client at a distinct address,
//! as the TCP peer tells it (no proxy, no forwarded header). One plain HTTP/1.1 request
//! per connection, and a cookie jar of its own.

use std::net::{IpAddr, SocketAddr};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
};

/// One browser (or script) at one address.
pub struct DirectClient {
    server: SocketAddr,
    from: IpAddr,
    user_agent: String,
    cookies: Vec<(String, String)>,
}

/// An answer: status, headers (names lower-cased) and body.
pub struct DirectResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl DirectResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn location(&self) -> &str {
        self.header("location").unwrap_or_default()
    }
}

impl DirectClient {
    /// A client of the app served at `base` (`http://127.0.0.1:PORT`, from
    /// [`super::TestApp::serve`]) connecting from `from` (a 127.x.y.z address).
    pub fn new(base: &str, from: &str, user_agent: &str) -> Self {
        let server = base
            .trim_start_matches("http://")
            .parse()
            .expect("a base URL http://IP:PORT");
        Self {
            server,
            from: from.parse().expect("an IP address"),
            user_agent: user_agent.to_string(),
            cookies: Vec::new(),
        }
    }

    /// The value of cookie `name` in the jar.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Puts cookie `name` in the jar, as a stolen cookie would be.
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(n, _)| n != name);
        self.cookies.push((name.to_string(), value.to_string()));
    }

    pub async fn get(&mut self, path: &str) -> DirectResponse {
        self.send("GET", path, None).await
    }

    /// Posts a URL-encoded form.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> DirectResponse {
        let body = serde_urlencoded::to_string(fields).expect("a form");
        self.send("POST", path, Some(body)).await
    }

    /// Fetches the form at `form_page` and posts `fields` to `action` with its CSRF token.
    pub async fn submit(
        &mut self,
        form_page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> DirectResponse {
        let page = self.get(form_page).await;
        assert_eq!(page.status, 200, "GET {form_page}: {}", page.body);
        let token = super::hidden_field(&page.body, "csrf_token").expect("a csrf_token field");
        let mut form = vec![("csrf_token", token.as_str())];
        form.extend_from_slice(fields);
        self.post_form(action, &form).await
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<String>) -> DirectResponse {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::new(self.from, 0))
            .unwrap_or_else(|e| panic!("bind {}: {e}", self.from));
        let mut stream = socket.connect(self.server).await.expect("connect");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nConnection: close\r\n",
            self.server, self.user_agent
        );
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            request.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        let body = body.unwrap_or_default();
        if method == "POST" {
            request.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        stream
            .write_all(request.as_bytes())
            .await
            .expect("request sent");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("response read");
        let response = parse(&raw);
        for (name, value) in &response.headers {
            if name == "set-cookie" {
                self.keep_cookie(value);
            }
        }
        response
    }

    fn keep_cookie(&mut self, header: &str) {
        let Ok(cookie) = cookie::Cookie::parse(header.to_string()) else {
            return;
        };
        let name = cookie.name().to_string();
        self.cookies.retain(|(n, _)| *n != name);
        let expired = cookie
            .max_age()
            .is_some_and(|age| age <= cookie::time::Duration::ZERO);
        if !cookie.value().is_empty() && !expired {
            self.cookies.push((name, cookie.value().to_string()));
        }
    }
}

fn parse(raw: &[u8]) -> DirectResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    DirectResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&body[..end])
                .split(';')
                .next()
                .unwrap_or_default()
                .trim(),
            16,
        )
        .expect("a chunk size");
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    out
}
