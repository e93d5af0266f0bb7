//! Password-guess and sign-up throttling, in fixed windows, that nobody can turn against a
//! user.
//!
//! An attempt is counted **before** it is judged: a `reserve_*` call adds one to each of its
//! counters in a single atomic step per counter and says whether the attempt may go on, so
//! however many guesses arrive at once, at most the limit of them ever reach argon2 in one
//! window. Which counters an attempt uses follows OWASP's device cookies
//! ([`super::device`]):
//!
//! - a login (or a check of the current password on the password form) from a browser
//!   holding a valid device cookie for that account is counted per device cookie only
//!   (`device_failures`): its owner's known browser gets in while someone hammers the
//!   account from anywhere, and N wrong guesses from it lock that cookie and nothing else;
//! - any other attempt counts toward the account's limit for unknown clients
//!   (`account_failures`) and its client network's (`ip_failures`);
//! - a sign-up counts toward its client network's sign-up limit.
//!
//! An attempt that turned out right, or that could not be judged (password hashing was at
//! capacity), gives its own reservations back ([`LoginThrottle::give_back`]): only failures
//! and refused attempts use up a window. A success never clears what others counted, so
//! logging in does not hand a guesser a fresh budget.
//!
//! Counters live where they can be updated atomically and every app instance sees them:
//! - in Redis when sessions are in Redis: one Lua script increments a key and sets its
//!   expiry together, so a counter can never be left without one (a lost `EXPIRE` after an
//!   `INCR` would lock an account for good); on a cluster each key goes to its slot's
//!   master, like a session record;
//! - otherwise in the `throttle_counters` SQL table, by one `INSERT .. ON CONFLICT DO
//!   UPDATE .. RETURNING` that restarts an expired window in the same statement.
//!
//! Accounts are counted by the email as typed (normalized), whether or not such an account
//! exists, so throttling reveals no accounts. IPv6 clients are counted per /64, the
//! smallest network a single host is usually given. Keys are keyed hashes: neither emails,
//! IPs nor device cookies are stored in clear.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use super::{
    client_address,
    device::DeviceToken,
    error::SessionError,
    keys::IdHasher,
    settings::ThrottleSettings,
    stores::{redis::RedisSessionStore, Backend},
};

/// Prefix of every throttle key in Redis.
pub const REDIS_PREFIX: &str = "tessera:throttle:";

/// Adds one attempt and returns `{count, milliseconds left}`. The expiry is set when the
/// window starts, and again if the key has none (written by an older version, or
/// restored without TTL), so a counter always ends.
const RESERVE_SCRIPT: &str = r"
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
";

/// Gives one attempt back, never creating a key nor going below zero.
const RELEASE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  local n = redis.call('DECR', KEYS[1])
  if n <= 0 then redis.call('DEL', KEYS[1]) end
end
return 0
";

/// What is being counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    /// Logins for one email from clients without a device cookie for it.
    Account,
    /// Logins and password checks from one IP address (IPv6: one /64) without a device
    /// cookie.
    Ip,
    /// Current-password checks of one logged-in user (the password form) from clients
    /// without a device cookie for the account.
    PasswordCheck,
    /// Logins and password checks from one device cookie.
    Device,
    /// Sign-ups from one IP address (IPv6: one /64).
    Registration,
}

impl Subject {
    const fn tag(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Ip => "ip",
            Self::PasswordCheck => "password",
            Self::Device => "device",
            Self::Registration => "register",
        }
    }
}

/// Where the counters live.
#[derive(Debug, Clone)]
enum Counters {
    Redis(RedisSessionStore),
    Sql(DatabaseConnection),
}

/// One counter an attempt is to be counted on, with its limit and window.
struct Limit {
    key: String,
    max: u32,
    window: Duration,
}

/// One counted attempt on one counter.
#[derive(Debug, Clone)]
struct Counted {
    count: u64,
    left: Duration,
    /// When the counter's window ends.
    ends_at: SystemTime,
}

impl Counted {
    /// The verdict on an attempt over the limit of the counter `key`.
    fn refusal(self, key: String) -> Reservation {
        Reservation::Refused {
            retry_after: self.left,
            counter: key,
            window_ends_at: self.ends_at,
        }
    }
}

/// The verdict on an attempt that was counted.
#[derive(Debug)]
#[must_use = "an allowed attempt must be given back on success, or left counted as a failure"]
pub enum Reservation {
    /// Go on and check the password. Give it back with [`LoginThrottle::give_back`] when
    /// it was right (or could not be judged); a failure needs nothing more: it was
    /// counted already.
    Allowed(Attempt),
    /// Over the limit: refuse without checking anything, for this long.
    Refused {
        retry_after: Duration,
        /// The counter that refused (a keyed hash, never an email or an address) and when
        /// its window ends: the audit trail keeps one row per counter and window.
        counter: String,
        window_ends_at: SystemTime,
    },
}

/// The counters one allowed attempt was counted on, to give back.
#[derive(Debug)]
pub struct Attempt {
    counted: Vec<String>,
}

/// Who is making a password attempt, as far as the throttle is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Claimant<'a> {
    /// A browser holding a valid device cookie for the account it tries.
    KnownDevice(&'a DeviceToken),
    /// Anyone else, from this address (when known).
    Unknown { ip: Option<&'a str> },
}

/// The password-guess throttle of one app.
#[derive(Debug, Clone)]
pub struct LoginThrottle {
    counters: Counters,
    hasher: IdHasher,
    limits: ThrottleSettings,
}

impl LoginThrottle {
    /// Counters in Redis when `store` is Redis, else in the app's SQL database.
    #[must_use]
    pub fn new(
        store: &Backend,
        db: DatabaseConnection,
        hasher: IdHasher,
        limits: ThrottleSettings,
    ) -> Self {
        let counters = store
            .redis()
            .map_or(Counters::Sql(db), |redis| Counters::Redis(redis.clone()));
        Self {
            counters,
            hasher,
            limits,
        }
    }

    fn limit(&self, subject: Subject, value: &str) -> Limit {
        let digest = self.hasher.fingerprint_bytes(subject.tag(), value);
        let (max, window_secs) = match subject {
            Subject::Account | Subject::PasswordCheck => {
                (self.limits.account_failures, self.limits.window_secs)
            }
            Subject::Ip => (self.limits.ip_failures, self.limits.window_secs),
            Subject::Device => (self.limits.device_failures(), self.limits.window_secs),
            Subject::Registration => (
                self.limits.registration_attempts,
                self.limits.registration_window_secs,
            ),
        };
        Limit {
            key: format!("{}{}", subject.tag(), URL_SAFE_NO_PAD.encode(digest)),
            max,
            window: Duration::from_secs(window_secs),
        }
    }

    /// The counters of a password attempt by `claimant`: its device cookie's, or the
    /// unknown clients' counter `unknown` and the client network's.
    fn password_limits(&self, claimant: Claimant<'_>, unknown: Limit) -> Vec<Limit> {
        match claimant {
            Claimant::KnownDevice(device) => {
                vec![self.limit(Subject::Device, &device.counter_name())]
            }
            Claimant::Unknown { ip } => std::iter::once(unknown)
                .chain(ip.map(|ip| self.limit(Subject::Ip, &ip_network(ip))))
                .collect(),
        }
    }

    /// Counts a login attempt for `account` (a normalized email) by `claimant`, before the
    /// password is checked.
    ///
    /// # Errors
    /// When the counters' store does not answer: the attempt must then not be judged.
    pub async fn reserve_login(
        &self,
        account: &str,
        claimant: Claimant<'_>,
    ) -> Result<Reservation, SessionError> {
        let limits = self.password_limits(claimant, self.limit(Subject::Account, account));
        self.reserve(limits).await
    }

    /// Counts a check of a logged-in user's current password (the password form) by
    /// `claimant`, before it is checked: a stolen cookie must not open a guessing game.
    ///
    /// # Errors
    /// When the counters' store does not answer.
    pub async fn reserve_password_check(
        &self,
        user_id: i64,
        claimant: Claimant<'_>,
    ) -> Result<Reservation, SessionError> {
        let unknown = self.limit(Subject::PasswordCheck, &user_id.to_string());
        let limits = self.password_limits(claimant, unknown);
        self.reserve(limits).await
    }

    /// Counts a sign-up from `ip`, whatever its outcome (a taken email and a form with
    /// mistakes count too: each costs a hash or invites a retry).
    ///
    /// # Errors
    /// When the counters' store does not answer.
    pub async fn reserve_registration(
        &self,
        ip: Option<&str>,
    ) -> Result<Reservation, SessionError> {
        let limits = ip
            .map(|ip| self.limit(Subject::Registration, &ip_network(ip)))
            .into_iter()
            .collect();
        self.reserve(limits).await
    }

    /// Counts one attempt on each of `limits`, in order. The first counter over its limit
    /// refuses the attempt; the counters before it get their count back (the attempt is
    /// not theirs to pay for), the refusing one keeps it.
    async fn reserve(&self, limits: Vec<Limit>) -> Result<Reservation, SessionError> {
        let mut counted: Vec<String> = Vec::with_capacity(limits.len());
        for limit in limits {
            let count = self.count(&limit.key, limit.window).await?;
            if count.count > u64::from(limit.max) {
                for key in &counted {
                    self.release(key).await?;
                }
                return Ok(count.refusal(limit.key));
            }
            counted.push(limit.key);
        }
        Ok(Reservation::Allowed(Attempt { counted }))
    }

    /// Gives an attempt's reservations back: it was right, or it could not be judged.
    /// Failures counted by other attempts stay.
    ///
    /// # Errors
    /// When the counters' store does not answer.
    pub async fn give_back(&self, attempt: Attempt) -> Result<(), SessionError> {
        for key in &attempt.counted {
            self.release(key).await?;
        }
        Ok(())
    }

    /// Adds one to `key`'s counter, starting a new window if the last one ended.
    async fn count(&self, key: &str, window: Duration) -> Result<Counted, SessionError> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let (count, left_ms) = match &self.counters {
            Counters::Redis(redis) => {
                let key = format!("{REDIS_PREFIX}{key}");
                let (count, left_ms): (i64, i64) = redis
                    .eval_routed(RESERVE_SCRIPT, &key, window_ms)
                    .await
                    .map_err(redis_error)?;
                (count.unsigned_abs(), left_ms.unsigned_abs())
            }
            Counters::Sql(db) => {
                let now = now_ms();
                let ends = now.saturating_add(i64::try_from(window_ms).unwrap_or(i64::MAX));
                let backend = db.get_database_backend();
                let sql = match backend {
                    DbBackend::Postgres => UPSERT_POSTGRES,
                    _ => UPSERT_SQLITE,
                };
                let row = db
                    .query_one_raw(Statement::from_sql_and_values(
                        backend,
                        sql,
                        [key.into(), ends.into(), now.into()],
                    ))
                    .await
                    .map_err(sql_error)?
                    .ok_or_else(|| sql_error("the upsert returned no row"))?;
                let count: i64 = row.try_get("", "attempts").map_err(sql_error)?;
                let window_ends_at: i64 = row.try_get("", "window_ends_at").map_err(sql_error)?;
                (
                    count.unsigned_abs(),
                    window_ends_at.saturating_sub(now).max(0).unsigned_abs(),
                )
            }
        };
        Ok(Counted {
            count,
            // Whole seconds, rounded up: `Retry-After` must not invite a retry too early.
            left: Duration::from_secs(left_ms.div_ceil(1000).max(1)),
            ends_at: SystemTime::now() + Duration::from_millis(left_ms),
        })
    }

    async fn release(&self, key: &str) -> Result<(), SessionError> {
        match &self.counters {
            Counters::Redis(redis) => {
                let key = format!("{REDIS_PREFIX}{key}");
                let _: i64 = redis
                    .eval_routed(RELEASE_SCRIPT, &key, ())
                    .await
                    .map_err(redis_error)?;
            }
            Counters::Sql(db) => {
                let backend = db.get_database_backend();
                let sql = match backend {
                    DbBackend::Postgres => RELEASE_POSTGRES,
                    _ => RELEASE_SQLITE,
                };
                db.execute_raw(Statement::from_sql_and_values(
                    backend,
                    sql,
                    [key.into(), now_ms().into()],
                ))
                .await
                .map_err(sql_error)?;
            }
        }
        Ok(())
    }

    /// Deletes up to `limit` SQL counters whose window ended (Redis expires its own), down
    /// the `window_ends_at` index; how many. The cleanup calls it until it returns less
    /// than `limit`.
    ///
    /// # Errors
    /// A database error.
    pub async fn sweep_expired(&self, limit: u64) -> Result<u64, SessionError> {
        let Counters::Sql(db) = &self.counters else {
            return Ok(0);
        };
        let backend = db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "DELETE FROM throttle_counters WHERE counter_key IN (SELECT counter_key FROM throttle_counters WHERE window_ends_at <= $1 LIMIT $2)",
            _ => "DELETE FROM throttle_counters WHERE counter_key IN (SELECT counter_key FROM throttle_counters WHERE window_ends_at <= ? LIMIT ?)",
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let result = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [now_ms().into(), limit.into()],
            ))
            .await
            .map_err(sql_error)?;
        Ok(result.rows_affected())
    }
}

/// One statement per attempt: insert the counter, or add one to it, or (when its window
/// ended) restart it at one with a new window. Every `SET` expression reads the row as it
/// was before the update, on both databases.
const UPSERT_SQLITE: &str = "INSERT INTO throttle_counters (counter_key, attempts, window_ends_at) VALUES (?1, 1, ?2) \
ON CONFLICT (counter_key) DO UPDATE SET \
attempts = CASE WHEN throttle_counters.window_ends_at <= ?3 THEN 1 ELSE throttle_counters.attempts + 1 END, \
window_ends_at = CASE WHEN throttle_counters.window_ends_at <= ?3 THEN excluded.window_ends_at ELSE throttle_counters.window_ends_at END \
RETURNING attempts, window_ends_at";
const UPSERT_POSTGRES: &str = "INSERT INTO throttle_counters (counter_key, attempts, window_ends_at) VALUES ($1, 1, $2) \
ON CONFLICT (counter_key) DO UPDATE SET \
attempts = CASE WHEN throttle_counters.window_ends_at <= $3 THEN 1 ELSE throttle_counters.attempts + 1 END, \
window_ends_at = CASE WHEN throttle_counters.window_ends_at <= $3 THEN excluded.window_ends_at ELSE throttle_counters.window_ends_at END \
RETURNING attempts, window_ends_at";
const RELEASE_SQLITE: &str = "UPDATE throttle_counters SET attempts = attempts - 1 \
WHERE counter_key = ?1 AND attempts > 0 AND window_ends_at > ?2";
const RELEASE_POSTGRES: &str = "UPDATE throttle_counters SET attempts = attempts - 1 \
WHERE counter_key = $1 AND attempts > 0 AND window_ends_at > $2";

/// The network an address is counted by: the address itself for IPv4, its /64 for IPv6
/// (a host is handed a whole /64 and can change addresses inside it at will). Text that
/// is no address (it cannot come from a socket) is counted as it is.
fn ip_network(ip: &str) -> String {
    ip.parse::<IpAddr>().map_or_else(
        |_| ip.to_string(),
        |ip| client_address::network(ip, 32, 64).to_string(),
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn redis_error(error: fred::error::Error) -> SessionError {
    SessionError::StoreUnavailable(format!("Redis (throttle): {}", error.details()))
}

fn sql_error(error: impl std::fmt::Display) -> SessionError {
    SessionError::StoreUnavailable(format!("database (throttle): {error}"))
}

#[cfg(test)]
mod tests {
    use super::ip_network;

    #[test]
    fn ipv6_hosts_are_counted_per_64_and_ipv4_per_address() {
        assert_eq!(ip_network("203.0.113.7"), "203.0.113.7/32");
        assert_eq!(
            ip_network("2001:db8:1:2:aaaa::1"),
            ip_network("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(ip_network("2001:db8:1:2::1"), ip_network("2001:db8:1:3::1"));
        assert_eq!(ip_network("::ffff:203.0.113.7"), "203.0.113.7/32");
    }
}
