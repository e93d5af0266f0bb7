//! Names of a session: the cookie's ID (a bearer credential, only ever in the cookie), the
//! [`StoreKey`] the store files its record under and the [`SessionRef`] logs, SQL and URLs
//! use, both keyed hashes of the ID made by an [`IdHasher`] from the [`SessionSecret`].
//!
//! The cookie's ID is a bearer credential; the store only ever sees
//! `HMAC-SHA256(SESSION_SECRET, id)`, cut to 128 bits. A dump of Redis, of the session
//! directory or of the database yields no usable cookie, because the hash cannot be turned
//! back into the ID (the idea behind Rack's private session IDs). The store key has a type
//! of its own so that it can never be passed where a cookie ID is meant, or back.
//!
//! A leaf: it imports no other part of the session layer.

use std::{fmt, str::FromStr};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tower_sessions::session::Id;

/// The secret that keys session-ID hashes. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct SessionSecret(Vec<u8>);

impl SessionSecret {
    #[must_use]
    pub const fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(..)")
    }
}

/// Where a store files a session's record: the keyed hash of its cookie ID.
///
/// ```
/// use tessera::sessions::keys::{IdHasher, SessionSecret};
/// let hasher = IdHasher::new(&SessionSecret::new(b"a-secret-of-at-least-thirty-two-bytes".to_vec()));
/// let cookie_id = tower_sessions::session::Id::default();
/// let key = hasher.store_key(&cookie_id);
/// assert_ne!(key.as_id(), &cookie_id);
/// assert!(key.to_string().starts_with(hasher.session_ref(&cookie_id).as_str()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey(Id);

impl StoreKey {
    /// A key as a store listed it (its records are filed under store keys).
    #[must_use]
    pub const fn listed(id: Id) -> Self {
        Self(id)
    }

    /// The key in the form tower-sessions' stores take.
    #[must_use]
    pub const fn as_id(&self) -> &Id {
        &self.0
    }

    /// The ref of the session filed under this key.
    #[must_use]
    pub fn session_ref(&self) -> SessionRef {
        let encoded = URL_SAFE_NO_PAD.encode(self.0 .0.to_le_bytes());
        SessionRef(encoded[..REF_LEN].to_string())
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for StoreKey {
    type Err = <Id as FromStr>::Err;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

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

    /// The key the store files the session with cookie ID `id` under.
    #[must_use]
    pub fn store_key(&self, id: &Id) -> StoreKey {
        let digest = self.digest(id);
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        StoreKey(Id(i128::from_le_bytes(key)))
    }

    /// The name logs, SQL and URLs use for the session.
    #[must_use]
    pub fn session_ref(&self, id: &Id) -> SessionRef {
        self.store_key(id).session_ref()
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
        URL_SAFE_NO_PAD.encode(self.fingerprint_digest(user_agent, network))
    }

    /// Whether `stored` (a [`Self::fingerprint`]) is this browser's, compared in constant
    /// time and without allocating: it runs on every request.
    #[must_use]
    pub fn fingerprint_matches(&self, stored: &str, user_agent: &str, network: &str) -> bool {
        use subtle::ConstantTimeEq;
        let mut encoded = [0u8; 22];
        let digest = self.fingerprint_digest(user_agent, network);
        URL_SAFE_NO_PAD
            .encode_slice(digest, &mut encoded)
            .is_ok_and(|len| len == encoded.len() && bool::from(encoded.ct_eq(stored.as_bytes())))
    }

    fn fingerprint_digest(&self, user_agent: &str, network: &str) -> [u8; 16] {
        let mut mac = self.mac.clone();
        mac.update(b"tessera-fingerprint\0");
        mac.update(user_agent.as_bytes());
        mac.update(b"\0");
        mac.update(network.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&mac.finalize().into_bytes()[..16]);
        out
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
        assert_ne!(a.store_key(&id).as_id(), &id);
        assert_eq!(a.store_key(&id), a.store_key(&id));
        assert_ne!(a.store_key(&id), b.store_key(&id));
        let r = a.session_ref(&id);
        assert_eq!(r.as_str().len(), REF_LEN);
        assert!(a.store_key(&id).to_string().starts_with(r.as_str()));
        assert_eq!(SessionRef::parse(r.as_str()), Some(r));
        assert_eq!(SessionRef::parse("../../etc"), None);
        let key = a.store_key(&id);
        assert_eq!(key.to_string().parse::<StoreKey>().ok(), Some(key));
    }
}
