//! Failed-login throttling, per account and per IP address, in fixed windows.
//!
//! Counters live where every app instance sees them: in Redis when sessions are in
//! Redis (an `INCR` and an `EXPIRE` on keys under `tessera:throttle:`), otherwise as small
//! records in the configured session store. Accounts are counted by the email as typed
//! (normalized), whether or not such an account exists, so the answer to an unknown email
//! is the same as to a known one: throttling reveals no accounts. Keys are keyed hashes:
//! neither emails nor IPs are stored in clear.

use std::{collections::HashMap, time::Duration};

use fred::interfaces::KeysInterface;
use serde_json::json;
use time::OffsetDateTime;
use tower_sessions::{
    session::{Id, Record},
    session_store::SessionStore,
};

use super::{
    error::SessionError,
    settings::ThrottleSettings,
    stores::{hashed::IdHasher, Backend},
};

/// Prefix of every throttle key in Redis.
const REDIS_PREFIX: &str = "tessera:throttle:";

/// What is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Account,
    Ip,
}

impl Subject {
    const fn tag(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Ip => "ip",
        }
    }
}

/// The login throttle of one app.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    store: Backend,
    hasher: IdHasher,
    limits: ThrottleSettings,
}

impl LoginThrottle {
    #[must_use]
    pub const fn new(store: Backend, hasher: IdHasher, limits: ThrottleSettings) -> Self {
        Self {
            store,
            hasher,
            limits,
        }
    }

    fn key(&self, subject: Subject, value: &str) -> Id {
        Id(i128::from_le_bytes(
            self.hasher.fingerprint_bytes(subject.tag(), value),
        ))
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.limits.window_secs)
    }

    /// How long `account` (a normalized email) or `ip` must wait before trying again;
    /// `None` when they may try now.
    ///
    /// # Errors
    /// When the store does not answer.
    pub async fn blocked(
        &self,
        account: &str,
        ip: Option<&str>,
    ) -> Result<Option<Duration>, SessionError> {
        let mut wait = None;
        let checks = [
            (
                Subject::Account,
                Some(account),
                self.limits.account_failures,
            ),
            (Subject::Ip, ip, self.limits.ip_failures),
        ];
        for (subject, value, limit) in checks {
            let Some(value) = value else { continue };
            let (count, ttl) = self.read(self.key(subject, value)).await?;
            if count >= u64::from(limit) {
                wait = wait.max(Some(ttl));
            }
        }
        Ok(wait)
    }

    /// Counts one failed login for `account` and `ip`.
    ///
    /// # Errors
    /// When the store does not answer.
    pub async fn record_failure(
        &self,
        account: &str,
        ip: Option<&str>,
    ) -> Result<(), SessionError> {
        self.increment(self.key(Subject::Account, account)).await?;
        if let Some(ip) = ip {
            self.increment(self.key(Subject::Ip, ip)).await?;
        }
        Ok(())
    }

    /// Forgets an account's failures after a successful login. The IP's stay.
    ///
    /// # Errors
    /// When the store does not answer.
    pub async fn clear_account(&self, account: &str) -> Result<(), SessionError> {
        let key = self.key(Subject::Account, account);
        match &self.store {
            Backend::Redis(redis) => {
                let key = redis_key(key);
                let pool = redis.client_for(&key).await.map_err(redis_error)?;
                let _: u64 = pool.del(key).await.map_err(redis_error)?;
            }
            store => store.delete(&key).await?,
        }
        Ok(())
    }

    async fn read(&self, key: Id) -> Result<(u64, Duration), SessionError> {
        match &self.store {
            Backend::Redis(redis) => {
                let key = redis_key(key);
                let pool = redis.client_for(&key).await.map_err(redis_error)?;
                let count: Option<u64> = pool.get(&key).await.map_err(redis_error)?;
                let ttl: i64 = pool.ttl(&key).await.map_err(redis_error)?;
                Ok((
                    count.unwrap_or(0),
                    Duration::from_secs(ttl.max(0).unsigned_abs()),
                ))
            }
            store => Ok(match store.load(&key).await? {
                Some(record) => (counter_of(&record), remaining(&record)),
                None => (0, Duration::ZERO),
            }),
        }
    }

    async fn increment(&self, key: Id) -> Result<(), SessionError> {
        match &self.store {
            Backend::Redis(redis) => {
                let key = redis_key(key);
                let pool = redis.client_for(&key).await.map_err(redis_error)?;
                let count: u64 = pool.incr(&key).await.map_err(redis_error)?;
                if count == 1 {
                    let window = i64::try_from(self.limits.window_secs).unwrap_or(i64::MAX);
                    let _: bool = pool.expire(&key, window, None).await.map_err(redis_error)?;
                }
            }
            // Not atomic across instances, unlike Redis: a burst may count a little low.
            // Memory and file stores serve one host, where that is good enough.
            store => match store.load(&key).await? {
                Some(mut record) => {
                    let count = counter_of(&record) + 1;
                    record.data.insert("n".to_string(), json!(count));
                    store.save(&record).await?;
                }
                None => {
                    let mut record = Record {
                        id: key,
                        data: HashMap::from([("n".to_string(), json!(1))]),
                        expiry_date: OffsetDateTime::now_utc() + self.window(),
                    };
                    store.create(&mut record).await?;
                }
            },
        }
        Ok(())
    }
}

fn redis_key(key: Id) -> String {
    format!("{REDIS_PREFIX}{key}")
}

fn redis_error(error: fred::error::Error) -> SessionError {
    SessionError::StoreUnavailable(format!("Redis: {}", error.details()))
}

fn counter_of(record: &Record) -> u64 {
    record
        .data
        .get("n")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

fn remaining(record: &Record) -> Duration {
    let left = record.expiry_date - OffsetDateTime::now_utc();
    Duration::from_secs(left.whole_seconds().max(0).unsigned_abs())
}
