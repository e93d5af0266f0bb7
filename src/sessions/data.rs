//! What Tessera keeps in a session record. The browser never sees any of it: its cookie
//! holds only the record's ID. Timestamps are Unix seconds (`time::UnixTime`).
//!
//! A leaf: it imports no other part of the session layer.

use serde::{Deserialize, Serialize};

/// Longest user agent kept; longer ones are cut (they are display-only).
pub const MAX_USER_AGENT_LEN: usize = 256;

/// The session's contents, stored as one value under [`SessionData::KEY`].
///
/// Field names are one or two letters on purpose: every byte is paid for in each record,
/// and a Redis deployment holds millions of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionData {
    /// The logged-in user; `None` for an anonymous session (one that only holds a CSRF
    /// token for the login or register form).
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(rename = "c")]
    pub created_at: i64,
    #[serde(rename = "a")]
    pub last_activity: i64,
    /// "Remember me": a persistent cookie instead of a browser-session one.
    #[serde(rename = "r", default)]
    pub remember: bool,
    #[serde(rename = "ua", default)]
    pub user_agent: String,
    #[serde(rename = "ip", default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The synchronizer token every form of this session must send back.
    #[serde(rename = "t")]
    pub csrf_token: String,
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub active_platform_id: Option<i64>,
    /// A keyed hash of the browser (user agent, optionally its network) that logged in;
    /// a request from another browser with this session's ID ends it.
    #[serde(rename = "f", default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// A one-time message for the next page ("flash"): set by an action, shown once.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub flash: Option<String>,
}

impl SessionData {
    /// The record key the whole struct lives under.
    pub const KEY: &'static str = "tessera";
}

/// A record entry beside [`SessionData::KEY`] that `sessions_migrate` adds to every record
/// it copies. The copy was made without the registry's latest word (the session may have
/// ended in the old store since), so the first request that reads it asks the registry
/// whether the session is still live, then drops the mark.
pub const MIGRATED: &str = "migrated";

/// Who is on the other end of a request, as far as a session records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub user_agent: String,
    pub ip: Option<String>,
}

impl ClientInfo {
    /// Reads the user agent and the client IP of a request. The IP is what Loco's
    /// `RemoteIP` extractor resolves when `server.middlewares.remote_ip` is enabled (the
    /// address a trusted proxy forwarded), else the socket's peer: a client's own
    /// `X-Forwarded-For` is never believed unless the operator said so.
    pub async fn from_parts(parts: &mut axum::http::request::Parts) -> Self {
        use axum::extract::FromRequestParts;
        use loco_rs::controller::middleware::remote_ip::RemoteIP;
        let ip = match RemoteIP::from_request_parts(parts, &()).await {
            Ok(RemoteIP::Forwarded(ip) | RemoteIP::Socket(ip)) => Some(ip.to_string()),
            Ok(RemoteIP::None) | Err(_) => parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|axum::extract::ConnectInfo(addr)| addr.ip().to_string()),
        };
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Self::new(user_agent, ip)
    }

    /// Keeps at most [`MAX_USER_AGENT_LEN`] characters of the user agent.
    #[must_use]
    pub fn new(user_agent: &str, ip: Option<String>) -> Self {
        Self {
            user_agent: user_agent.chars().take(MAX_USER_AGENT_LEN).collect(),
            ip,
        }
    }
}
