//! Seals every record with XChaCha20-Poly1305 before it reaches the store.
//!
//! Only the record's data is sealed; its key and expiry stay readable because the store
//! needs them (TTL, sweep). The key is the AEAD's associated data, so a sealed record
//! moved to another key does not open. Each sealed value names its key by a 4-byte key id,
//! so after a rotation (`SESSION_ENCRYPTION_KEYS=new,old`) old records still open and are
//! re-sealed with the new key on their next write: nobody is logged out. A record that
//! does not open (tampered, unknown key, or written before encryption was turned on) is
//! "no session", logged and counted, never an error page.
//!
//! The plaintext is MessagePack, not JSON (version 2): the sealed bytes reach Redis as
//! base64 text inside the Redis store's record, so every plaintext byte costs 1.33 bytes
//! there, and MessagePack drops JSON's quotes, colons and decimal numbers. Version 1
//! records (JSON) still open, so an upgrade logs nobody out.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use async_trait::async_trait;
use base64::{engine::general_purpose::STANDARD, Engine};
use chacha20poly1305::{
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
    XChaCha20Poly1305, XNonce,
};
use hkdf::Hkdf;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower_sessions::{
    session::{Id, Record},
    session_store::{self, SessionStore},
};

use crate::sessions::data::MIGRATED;

/// A record's data, as tower-sessions keeps it.
type Data = HashMap<String, Value>;

/// The one data entry of a sealed record.
const SEALED: &str = "sealed";
/// Envelope versions: 1 sealed JSON, 2 seals MessagePack.
const VERSION_JSON: u8 = 1;
const VERSION: u8 = 2;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;

/// An entry of `SESSION_ENCRYPTION_KEYS` that is not a key, counted from 1.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyListError {
    #[error("key {index} is not base64")]
    NotBase64 { index: usize },
    #[error("key {index} is {len} bytes; each key must be 32")]
    WrongLength { index: usize, len: usize },
}

/// The keys records are sealed with: the first seals, every one opens.
#[derive(Clone)]
pub struct EncryptionKeys {
    keys: Vec<([u8; KEY_ID_LEN], XChaCha20Poly1305)>,
}

impl fmt::Debug for EncryptionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionKeys({} keys)", self.keys.len())
    }
}

impl EncryptionKeys {
    fn from_raw(raw: &[[u8; 32]]) -> Self {
        let keys = raw
            .iter()
            .map(|key| {
                let digest = Sha256::digest(key);
                let mut id = [0u8; KEY_ID_LEN];
                id.copy_from_slice(&digest[..KEY_ID_LEN]);
                (id, XChaCha20Poly1305::new(key.into()))
            })
            .collect();
        Self { keys }
    }

    /// Parses `SESSION_ENCRYPTION_KEYS`: comma-separated standard base64, 32 bytes each.
    ///
    /// # Errors
    /// Which entry is not 32 bytes of base64.
    pub fn parse(list: &str) -> Result<Self, KeyListError> {
        let mut raw = Vec::new();
        for (index, entry) in (1..).zip(list.split(',').map(str::trim)) {
            let bytes = STANDARD
                .decode(entry)
                .map_err(|_| KeyListError::NotBase64 { index })?;
            let key: [u8; 32] =
                bytes
                    .try_into()
                    .map_err(|b: Vec<u8>| KeyListError::WrongLength {
                        index,
                        len: b.len(),
                    })?;
            raw.push(key);
        }
        Ok(Self::from_raw(&raw))
    }

    /// One key derived from the session secret (HKDF-SHA256), for when no keys are given.
    #[must_use]
    pub fn derive(secret: &[u8]) -> Self {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"tessera-session-encryption"), secret)
            .expand(b"record sealing key v1", &mut key)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 output length"));
        Self::from_raw(&[key])
    }

    /// These keys, then `other`'s as opening keys only (the first key still seals); a key
    /// listed in both is kept once.
    #[must_use]
    pub fn also_opening_with(mut self, other: &Self) -> Self {
        for (id, cipher) in &other.keys {
            if !self.keys.iter().any(|(known, _)| known == id) {
                self.keys.push((*id, cipher.clone()));
            }
        }
        self
    }

    fn seal(&self, key_id: &Id, data: &Data) -> Option<String> {
        let plaintext = rmp_serde::to_vec(data).ok()?;
        let (id, cipher) = self.keys.first()?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = key_id.0.to_le_bytes();
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .ok()?;
        let mut sealed = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + ciphertext.len());
        sealed.push(VERSION);
        sealed.extend_from_slice(id);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Some(STANDARD.encode(sealed))
    }

    fn open(&self, key_id: &Id, sealed: &str) -> Option<Data> {
        let bytes = STANDARD.decode(sealed).ok()?;
        let (&version, rest) = bytes.split_first()?;
        if !matches!(version, VERSION | VERSION_JSON) || rest.len() < KEY_ID_LEN + NONCE_LEN {
            return None;
        }
        let (id, rest) = rest.split_at(KEY_ID_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let (_, cipher) = self.keys.iter().find(|(candidate, _)| candidate == id)?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let aad = key_id.0.to_le_bytes();
        let plaintext = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .ok()?;
        if version == VERSION_JSON {
            serde_json::from_slice(&plaintext).ok()
        } else {
            rmp_serde::from_slice(&plaintext).ok()
        }
    }
}

/// A store wrapper that seals record data on the way in and opens it on the way out;
/// without keys (`encrypt: false`) it passes records through untouched.
#[derive(Debug, Clone)]
pub struct Encrypted<S> {
    inner: S,
    keys: Option<Arc<EncryptionKeys>>,
    failures: Arc<AtomicU64>,
}

impl<S> Encrypted<S> {
    /// Seals with `keys`, or passes records through without.
    pub fn new(inner: S, keys: Option<EncryptionKeys>) -> Self {
        Self {
            inner,
            keys: keys.map(Arc::new),
            failures: Arc::default(),
        }
    }

    #[must_use]
    pub const fn inner(&self) -> &S {
        &self.inner
    }

    /// Records that failed to open since start.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn sealed(&self, record: &Record) -> session_store::Result<Record> {
        let Some(keys) = &self.keys else {
            return Ok(record.clone());
        };
        let sealed = keys
            .seal(&record.id, &record.data)
            .ok_or_else(|| session_store::Error::Encode("record could not be sealed".into()))?;
        Ok(Record {
            data: HashMap::from([(SEALED.to_string(), Value::String(sealed))]),
            ..record.clone()
        })
    }

    /// The record with its data opened. A record that does not open is a decode error,
    /// as tower-sessions reports any record it cannot read: the session layer above
    /// removes it and audits it as no session.
    fn opened(&self, record: Record) -> session_store::Result<Record> {
        let Some(keys) = &self.keys else {
            return Ok(record);
        };
        let Some(mut data) = record
            .data
            .get(SEALED)
            .and_then(Value::as_str)
            .and_then(|sealed| keys.open(&record.id, sealed))
        else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err(session_store::Error::Decode(
                "record does not decrypt".into(),
            ));
        };
        // The migration's mark sits beside the sealed value (the migration copies records
        // without opening them); it must reach the session layer.
        if let Some(mark) = record.data.get(MIGRATED) {
            data.insert(MIGRATED.to_string(), mark.clone());
        }
        Ok(Record { data, ..record })
    }
}

#[async_trait]
impl<S: SessionStore + Clone> SessionStore for Encrypted<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let mut sealed = self.sealed(record)?;
        self.inner.create(&mut sealed).await?;
        // A colliding ID drawn again by the store: the AAD must follow it.
        if sealed.id != record.id {
            record.id = sealed.id;
            self.inner.save(&self.sealed(record)?).await?;
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.inner.save(&self.sealed(record)?).await
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        self.inner
            .load(session_id)
            .await?
            .map(|record| self.opened(record))
            .transpose()
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.inner.delete(session_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    fn data(text: &str) -> Data {
        HashMap::from([("tessera".to_string(), Value::String(text.to_string()))])
    }

    #[test]
    fn sealed_records_open_only_with_a_known_key_and_their_own_id() {
        let id = Id::default();
        let old = EncryptionKeys::parse(&key(1)).expect("keys");
        let sealed = old.seal(&id, &data("secret data")).expect("sealed");
        assert!(!sealed.contains("secret"));
        assert_eq!(old.open(&id, &sealed), Some(data("secret data")));
        assert!(
            old.open(&Id::default(), &sealed).is_none(),
            "bound to its id"
        );

        let rotated = EncryptionKeys::parse(&format!("{},{}", key(2), key(1))).expect("keys");
        assert_eq!(
            rotated.open(&id, &sealed),
            Some(data("secret data")),
            "old keys still open"
        );
        let resealed = rotated.seal(&id, &data("x")).expect("sealed");
        assert!(old.open(&id, &resealed).is_none(), "the first key seals");
        assert!(EncryptionKeys::parse(&key(3))
            .expect("keys")
            .open(&id, &sealed)
            .is_none());
    }

    #[test]
    fn records_sealed_as_json_before_the_upgrade_still_open() {
        let id = Id::default();
        let keys = EncryptionKeys::parse(&key(1)).expect("keys");
        let (key_id, cipher) = &keys.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let plaintext = serde_json::to_vec(&data("from version 1")).expect("json");
        let aad = id.0.to_le_bytes();
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .expect("sealed");
        let envelope = [&[VERSION_JSON][..], key_id, &nonce, &ciphertext].concat();
        assert_eq!(
            keys.open(&id, &STANDARD.encode(envelope)),
            Some(data("from version 1"))
        );
    }

    #[test]
    fn messagepack_keeps_the_sealed_record_small() {
        let keys = EncryptionKeys::parse(&key(1)).expect("keys");
        let record = data(&"x".repeat(200));
        let json_len = serde_json::to_vec(&record).expect("json").len();
        let sealed = keys.seal(&Id::default(), &record).expect("sealed");
        let overhead = 1 + KEY_ID_LEN + NONCE_LEN + 16;
        assert!(STANDARD.decode(sealed).expect("base64").len() < json_len + overhead);
    }

    #[test]
    fn bad_key_lists_are_refused_with_the_entry() {
        assert_eq!(
            EncryptionKeys::parse("not base64!")
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("key 1 is not base64")
        );
        let short = STANDARD.encode([0u8; 16]);
        assert_eq!(
            EncryptionKeys::parse(&format!("{},{short}", key(1)))
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("key 2 is 16 bytes; each key must be 32")
        );
    }
}
