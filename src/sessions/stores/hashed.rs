//! Keys every store by a keyed hash of the session ID instead of the ID itself.
//!
//! The cookie's ID is a bearer credential; the store only ever sees
//! `HMAC-SHA256(SESSION_SECRET, id)`, cut to 128 bits. A dump of Redis, of the session
//! directory or of the database yields no usable cookie, because the hash cannot be turned
//! back into the ID (the idea behind Rack's private session IDs). Logs, SQL rows and URLs
//! name a session by its [`SessionRef`], a short prefix of the same hash.

use std::fmt;

use async_trait::async_trait;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};

use crate::sessions::settings::SessionSecret;

/// Characters of a [`SessionRef`]: 72 bits, unique enough to name one session among a
/// user's, and never enough to find its record without the secret.
const REF_LEN: usize = 12;

/// Derives store keys and refs from cookie IDs.
#[derive(Clone)]
pub struct IdHasher {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for IdHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdHasher(..)")
    }
}

/// How logs, SQL and URLs name a session: 12 URL-safe characters of its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SessionRef(String);

impl SessionRef {
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts a ref from a URL: only the shape a ref can have.
    #[must_use]
    pub fn parse(input: &str) -> Option<Self> {
        (input.len() == REF_LEN
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(input.to_string()))
    }
}

impl fmt::Display for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl IdHasher {
    #[must_use]
    pub fn new(secret: &SessionSecret) -> Self {
        // HMAC takes keys of any length; the settings check guarantees at least 32 bytes.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        Self { mac }
    }

    fn digest(&self, id: &Id) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(b"tessera-session-id\0");
        mac.update(&id.0.to_le_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The key the store files the session under.
    #[must_use]
    pub fn store_key(&self, id: &Id) -> Id {
        let digest = self.digest(id);
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        Id(i128::from_le_bytes(key))
    }

    /// The name logs, SQL and URLs use for the session.
    #[must_use]
    pub fn session_ref(&self, id: &Id) -> SessionRef {
        Self::ref_of_key(&self.store_key(id))
    }

    /// 16 bytes of the keyed hash of `value` under `purpose`: stable names for things
    /// that must not be stored in clear (emails, IPs).
    #[must_use]
    pub fn fingerprint_bytes(&self, purpose: &str, value: &str) -> [u8; 16] {
        let mut mac = self.mac.clone();
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        out
    }

    /// A browser fingerprint: 128 bits of the keyed hash of its user agent and network.
    #[must_use]
    pub fn fingerprint(&self, user_agent: &str, network: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(b"tessera-fingerprint\0");
        mac.update(user_agent.as_bytes());
        mac.update(b"\0");
        mac.update(network.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }

    /// The ref of a session known only by its store key (e.g. found in the store).
    #[must_use]
    pub fn ref_of_key(key: &Id) -> SessionRef {
        let encoded = URL_SAFE_NO_PAD.encode(key.0.to_le_bytes());
        SessionRef(encoded[..REF_LEN].to_string())
    }
}

/// A store wrapper that files each record under [`IdHasher::store_key`] of its ID.
#[derive(Debug, Clone)]
pub struct HashedIds<S> {
    inner: S,
    hasher: IdHasher,
}

impl<S> HashedIds<S> {
    pub const fn new(inner: S, hasher: IdHasher) -> Self {
        Self { inner, hasher }
    }

    #[must_use]
    pub const fn inner(&self) -> &S {
        &self.inner
    }

    #[must_use]
    pub const fn hasher(&self) -> &IdHasher {
        &self.hasher
    }
}

#[async_trait]
impl<S: SessionStore + Clone> SessionStore for HashedIds<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        loop {
            let key = self.hasher.store_key(&record.id);
            let mut stored = Record {
                id: key,
                ..record.clone()
            };
            self.inner.create(&mut stored).await?;
            if stored.id == key {
                return Ok(());
            }
            // The inner store met a colliding key and drew a new one, which no cookie ID
            // maps to. Drop it and draw a new cookie ID instead.
            self.inner.delete(&stored.id).await?;
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let stored = Record {
            id: self.hasher.store_key(&record.id),
            ..record.clone()
        };
        self.inner.save(&stored).await
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let loaded = self.inner.load(&self.hasher.store_key(session_id)).await?;
        Ok(loaded.map(|record| Record {
            id: *session_id,
            ..record
        }))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.inner.delete(&self.hasher.store_key(session_id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(secret: &str) -> IdHasher {
        IdHasher::new(&SessionSecret::new(secret.as_bytes().to_vec()))
    }

    #[test]
    fn keys_depend_on_the_secret_and_never_equal_the_id() {
        let id = Id::default();
        let a = hasher("a-secret-of-at-least-thirty-two-bytes!!");
        let b = hasher("another-secret-of-at-least-32-bytes!!!!");
        assert_ne!(a.store_key(&id), id);
        assert_eq!(a.store_key(&id), a.store_key(&id));
        assert_ne!(a.store_key(&id), b.store_key(&id));
        let r = a.session_ref(&id);
        assert_eq!(r.as_str().len(), REF_LEN);
        assert!(a.store_key(&id).to_string().starts_with(r.as_str()));
        assert_eq!(SessionRef::parse(r.as_str()), Some(r));
        assert_eq!(SessionRef::parse("../../etc"), None);
    }
}
