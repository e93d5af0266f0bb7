//! What Tessera keeps in a session record. The browser never sees any of it: its cookie
//! holds only the record's ID. Timestamps are Unix seconds (`clock::UnixTime`).
//!
//! A leaf but for [`super::client_address`], another leaf, which resolves a request's
//! address.

use serde::{Deserialize, Serialize};

use super::client_address::TrustedProxies;

/// Longest user agent kept; longer ones are cut (they are display-only).
pub const MAX_USER_AGENT_LEN: usize = 256;

/// The session's contents, stored as one value under [`SessionData::KEY`].
///
/// Written as a list of the fields in this order, without names: a record holds no key
/// strings, so it is smaller in the store, and reading it on every request builds and
/// copies no map (tower-sessions clones the stored value for each read). The order is
/// therefore the format: a new field goes at the end, with `#[serde(default)]`.
/// Records written as a map (before 2026-12), with the one- or two-letter names below,
/// still read, and so do lists written without the newer trailing fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SessionData {
    /// The logged-in user; `None` for an anonymous session (one that only holds a CSRF
    /// token for the login or register form).
    #[serde(rename = "u", default)]
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
    #[serde(rename = "ip", default)]
    pub ip: Option<String>,
    /// The synchronizer token every form of this session must send back.
    #[serde(rename = "t")]
    pub csrf_token: String,
    #[serde(rename = "p", default)]
    pub active_platform_id: Option<i64>,
    /// A keyed hash of the browser (user agent, optionally its network) that logged in;
    /// a request from another browser with this session's ID ends it.
    #[serde(rename = "f", default)]
    pub fingerprint: String,
    /// A one-time message for the next page ("flash"): set by an action, shown once.
    #[serde(rename = "n", default)]
    pub flash: Option<String>,
    /// The account's credential generation when the session was opened (carried over by
    /// the rotation after a password change). Older than the account's: the credentials
    /// it was opened with no longer hold, and the session ends. Records written before the
    /// generation existed read as 0, the generation every account started with.
    #[serde(rename = "g", default)]
    pub credential_generation: i64,
}

impl SessionData {
    /// The record key the whole struct lives under.
    pub const KEY: &'static str = "tessera";
}

impl Serialize for SessionData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (
            self.user_id,
            self.created_at,
            self.last_activity,
            self.remember,
            &self.user_agent,
            &self.ip,
            &self.csrf_token,
            self.active_platform_id,
            &self.fingerprint,
            &self.flash,
            self.credential_generation,
        )
            .serialize(serializer)
    }
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
    /// Reads the user agent and the client's address of a request: the TCP peer's, or
    /// the one forwarded by `trusted` proxies ([`TrustedProxies::client_address`]). A
    /// direct client's own `X-Forwarded-For` is never believed.
    #[must_use]
    pub fn from_parts(parts: &axum::http::request::Parts, trusted: &TrustedProxies) -> Self {
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|axum::extract::ConnectInfo(peer)| {
                trusted
                    .client_address(peer.ip(), &parts.headers)
                    .to_string()
            });
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
        let end = user_agent
            .char_indices()
            .nth(MAX_USER_AGENT_LEN)
            .map_or(user_agent.len(), |(at, _)| at);
        Self {
            user_agent: user_agent[..end].to_string(),
            ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn data() -> SessionData {
        SessionData {
            user_id: Some(42),
            created_at: 1_790_000_000,
            last_activity: 1_790_000_600,
            remember: true,
            user_agent: "Mozilla/5.0".into(),
            ip: Some("203.0.113.7".into()),
            csrf_token: "yPqk3Wq9w2nYb0G5j1rR4m".into(),
            active_platform_id: None,
            fingerprint: "q0Yd2mL8r5Vt1xW9bN3cKg".into(),
            flash: None,
            credential_generation: 3,
        }
    }

    /// [`data`] as a record written before the credential generation existed reads.
    fn data_without_generation() -> SessionData {
        SessionData {
            credential_generation: 0,
            ..data()
        }
    }

    #[test]
    fn is_stored_as_a_list_without_names() {
        let value = serde_json::to_value(data()).expect("serializes");
        assert_eq!(
            value,
            json!([
                42,
                1_790_000_000,
                1_790_000_600,
                true,
                "Mozilla/5.0",
                "203.0.113.7",
                "yPqk3Wq9w2nYb0G5j1rR4m",
                null,
                "q0Yd2mL8r5Vt1xW9bN3cKg",
                null,
                3
            ])
        );
        assert_eq!(
            serde_json::from_value::<SessionData>(value).expect("reads"),
            data()
        );
        let packed = rmp_serde::to_vec(&data()).expect("packs");
        assert_eq!(
            rmp_serde::from_slice::<SessionData>(&packed).expect("unpacks"),
            data()
        );
    }

    #[test]
    fn records_written_as_a_map_still_read() {
        let old = json!({
            "u": 42, "c": 1_790_000_000, "a": 1_790_000_600, "r": true, "ua": "Mozilla/5.0",
            "ip": "203.0.113.7", "t": "yPqk3Wq9w2nYb0G5j1rR4m", "f": "q0Yd2mL8r5Vt1xW9bN3cKg"
        });
        assert_eq!(
            serde_json::from_value::<SessionData>(old).expect("reads"),
            data_without_generation()
        );
    }

    #[test]
    fn a_list_without_the_newer_trailing_fields_reads_with_their_defaults() {
        let shorter = json!([
            42,
            1_790_000_000,
            1_790_000_600,
            true,
            "Mozilla/5.0",
            "203.0.113.7",
            "yPqk3Wq9w2nYb0G5j1rR4m",
            null,
            "q0Yd2mL8r5Vt1xW9bN3cKg"
        ]);
        assert_eq!(
            serde_json::from_value::<SessionData>(shorter).expect("reads"),
            data_without_generation()
        );
        let too_short = json!([42, 1_790_000_000]);
        assert!(serde_json::from_value::<SessionData>(too_short).is_err());
    }
}
