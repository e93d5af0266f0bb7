//! Password-guess throttling, per account and per IP network, in fixed windows.
//!
//! An attempt is counted **before** it is judged: [`LoginThrottle::reserve`] adds one to
//! each counter in a single atomic step and says whether the attempt may go on, so however
//! many guesses arrive at once, at most the limit of them ever reach argon2 in one window.
//! A success gives its reservations back ([`LoginThrottle::succeeded`]): the account's
//! count is cleared and the IP's attempt is returned, so only failures (and refused
//! attempts) use up a window.
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
//! smallest network a single host is usually given. Keys are keyed hashes: neither emails
//! nor IPs are stored in clear.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use fred::interfaces::{KeysInterface, LuaInterface};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use super::{
    error::SessionError,
    settings::ThrottleSettings,
    stores::{hashed::IdHasher, redis::RedisSessionStore, Backend},
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
    /// Logins for one email.
    Account,
    /// Logins from one IP address (IPv6: one /64).
    Ip,
    /// Current-password checks of one logged-in user (the password form).
    PasswordCheck,
}

impl Subject {
    const fn tag(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Ip => "ip",
            Self::PasswordCheck => "password",
        }
    }
}

/// Where the counters live.
#[derive(Debug, Clone)]
enum Counters {
    Redis(RedisSessionStore),
    Sql(DatabaseConnection),
}

/// One counted attempt on one counter.
#[derive(Debug, Clone)]
struct Counted {
    key: String,
    count: u64,
    left: Duration,
    /// When the counter's window ends.
    ends_at: SystemTime,
}

impl Counted {
    /// The verdict on an attempt over this counter's limit.
    fn refusal(self) -> Reservation {
        Reservation::Refused {
            retry_after: self.left,
            counter: self.key,
            window_ends_at: self.ends_at,
        }
    }
}

/// The verdict on an attempt that was counted.
#[derive(Debug)]
#[must_use = "an allowed attempt must be reported with `succeeded` or left as a failure"]
pub enum Reservation {
    /// Go on and check the password. Report a success with [`LoginThrottle::succeeded`];
    /// a failure needs nothing more: it was counted already.
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

/// The counters one allowed attempt holds, to give back on success.
#[derive(Debug)]
pub struct Attempt {
    /// The counter cleared on success (the account or the user's password checks).
    cleared: String,
    /// The counters given one attempt back on success (the IP's).
    returned: Vec<String>,
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

    fn key(&self, subject: Subject, value: &str) -> String {
        let digest = self.hasher.fingerprint_bytes(subject.tag(), value);
        format!("{}{}", subject.tag(), URL_SAFE_NO_PAD.encode(digest))
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.limits.window_secs)
    }

    /// Counts a login attempt for `account` (a normalized email) and `ip`, before the
    /// password is checked.
    ///
    /// # Errors
    /// When the counters' store does not answer: the attempt must then not be judged.
    pub async fn reserve(
        &self,
        account: &str,
        ip: Option<&str>,
    ) -> Result<Reservation, SessionError> {
        let account_key = self.key(Subject::Account, account);
        let counted = self.count(&account_key).await?;
        if counted.count > u64::from(self.limits.account_failures) {
            return Ok(counted.refusal());
        }
        let mut returned = Vec::new();
        if let Some(network) = ip.map(ip_network) {
            let ip_key = self.key(Subject::Ip, &network);
            let by_ip = self.count(&ip_key).await?;
            if by_ip.count > u64::from(self.limits.ip_failures) {
                // Refused for the IP: this attempt is not the account's doing.
                self.release(&account_key).await?;
                return Ok(by_ip.refusal());
            }
            returned.push(by_ip.key);
        }
        Ok(Reservation::Allowed(Attempt {
            cleared: counted.key,
            returned,
        }))
    }

    /// Counts a check of a logged-in user's current password (the password form), before
    /// it is checked; the account limit applies.
    ///
    /// # Errors
    /// When the counters' store does not answer.
    pub async fn reserve_password_check(&self, user_id: i64) -> Result<Reservation, SessionError> {
        let counted = self
            .count(&self.key(Subject::PasswordCheck, &user_id.to_string()))
            .await?;
        if counted.count > u64::from(self.limits.account_failures) {
            return Ok(counted.refusal());
        }
        Ok(Reservation::Allowed(Attempt {
            cleared: counted.key,
            returned: Vec::new(),
        }))
    }

    /// The attempt succeeded: the account's failures are forgotten and the IP's counter
    /// gets this attempt back (a success is not a guess).
    ///
    /// # Errors
    /// When the counters' store does not answer.
    pub async fn succeeded(&self, attempt: Attempt) -> Result<(), SessionError> {
        self.clear(&attempt.cleared).await?;
        for key in &attempt.returned {
            self.release(key).await?;
        }
        Ok(())
    }

    /// Adds one to `key`'s counter, starting a new window if the last one ended.
    async fn count(&self, key: &str) -> Result<Counted, SessionError> {
        let window_ms = u64::try_from(self.window().as_millis()).unwrap_or(u64::MAX);
        let (count, left_ms) = match &self.counters {
            Counters::Redis(redis) => {
                let key = format!("{REDIS_PREFIX}{key}");
                let pool = redis.client_for(&key).await.map_err(redis_error)?;
                let (count, left_ms): (i64, i64) = pool
                    .eval(RESERVE_SCRIPT, key, window_ms)
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
            key: key.to_string(),
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
                let pool = redis.client_for(&key).await.map_err(redis_error)?;
                let _: i64 = pool
                    .eval(RELEASE_SCRIPT, key, ())
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

    async fn clear(&self, key: &str) -> Result<(), SessionError> {
        match &self.counters {
            Counters::Redis(redis) => {
                let key = format!("{REDIS_PREFIX}{key}");
                let pool = redis.client_for(&key).await.map_err(redis_error)?;
                let _: u64 = pool.del(key).await.map_err(redis_error)?;
            }
            Counters::Sql(db) => {
                let backend = db.get_database_backend();
                let sql = match backend {
                    DbBackend::Postgres => "DELETE FROM throttle_counters WHERE counter_key = $1",
                    _ => "DELETE FROM throttle_counters WHERE counter_key = ?",
                };
                db.execute_raw(Statement::from_sql_and_values(backend, sql, [key.into()]))
                    .await
                    .map_err(sql_error)?;
            }
        }
        Ok(())
    }

    /// Deletes SQL counters whose window ended (Redis expires its own); how many.
    ///
    /// # Errors
    /// A database error.
    pub async fn sweep_expired(&self) -> Result<u64, SessionError> {
        let Counters::Sql(db) = &self.counters else {
            return Ok(0);
        };
        let backend = db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "DELETE FROM throttle_counters WHERE window_ends_at <= $1",
            _ => "DELETE FROM throttle_counters WHERE window_ends_at <= ?",
        };
        let result = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [now_ms().into()],
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
/// (a host is handed a whole /64 and can change addresses inside it at will). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
fn ip_network(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => ip.to_string(),
    }
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
        assert_eq!(ip_network("203.0.113.7"), "203.0.113.7");
        assert_eq!(
            ip_network("2001:db8:1:2:aaaa::1"),
            ip_network("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(ip_network("2001:db8:1:2::1"), ip_network("2001:db8:1:3::1"));
        assert_eq!(ip_network("::ffff:203.0.113.7"), "203.0.113.7");
    }
}
