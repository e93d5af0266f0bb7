//! `settings.sessions`: what an operator configures, checked once at start.
//!
//! Every value can come from the config files or from the environment variables the
//! contract names (the config files read them with `get_env`). A bad value stops the app
//! with one line naming the key, e.g.
//! `settings.sessions.store: unknown variant `disk`, expected one of `memory`, `file`, `redis``.

use std::{path::PathBuf, time::Duration};

use loco_rs::environment::Environment;
use serde::Deserialize;

use super::client_address::{TrustedProxies, DEFAULT_TRUSTED_PROXIES};
use super::keys::SessionSecret;
use super::policy::{PolicyError, SessionPolicy};
use super::stores::{encrypted::EncryptionKeys, redis::RedisConfig, StoreConfig};

/// Shortest accepted `SESSION_SECRET`: the HMAC key for session refs needs 256 bits.
pub const MIN_SECRET_LEN: usize = 32;

use super::stores::ops::StoreKind;

/// `settings.sessions` as written in `config/{env}.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// `SESSION_STORE`: memory | file | redis | database.
    pub store: StoreKind,
    /// `SESSION_DIR`: the file store's directory.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// `SESSION_SECRET`: at least 32 bytes; keys the hashes that stand for session IDs.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    #[serde(default = "default_absolute_lifetime")]
    pub absolute_lifetime_secs: u64,
    /// How often sliding expiry may write the store; default a tenth of the idle timeout.
    #[serde(default)]
    pub touch_interval_secs: Option<u64>,
    /// Live sessions one user may hold; a login past it ends the least recently used.
    #[serde(default = "default_max_per_user")]
    pub max_per_user: usize,
    /// A record whose data serializes larger than this is refused, never written.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// Seal every record with XChaCha20-Poly1305 before it reaches the store.
    #[serde(default)]
    pub encrypt: bool,
    /// `SESSION_ENCRYPTION_KEYS`: comma-separated base64 of 32 bytes each; the first
    /// encrypts, all decrypt. Unset: one key derived from the secret.
    #[serde(default)]
    pub encryption_keys: Option<String>,
    /// `SESSION_ENCRYPTION_KEEP_DERIVED_KEY`: with `encryption_keys` set, the key derived
    /// from the secret still opens records (it never seals), so moving from the derived key
    /// to a key list logs nobody out. Turn it off once the absolute lifetime has passed.
    #[serde(default = "default_true")]
    pub encryption_keep_derived_key: bool,
    /// Bind a logged-in session to the browser's user agent, and optionally its network.
    #[serde(default)]
    pub fingerprint: FingerprintSettings,
    /// Failed-login throttling per device cookie, account and IP, and sign-ups per IP.
    #[serde(default)]
    pub throttle: ThrottleSettings,
    /// Argon2 hashes at once, and the queue for them.
    #[serde(default)]
    pub password_hashing: PasswordHashingSettings,
    /// How the tasks and the admin's "end everyone's sessions" work through big tables.
    #[serde(default)]
    pub maintenance: MaintenanceSettings,
    /// How many days the audit trail (`session_events`) keeps an event; `sessions_cleanup`
    /// deletes older ones.
    #[serde(default = "default_events_retention_days")]
    pub events_retention_days: u32,
    /// `METRICS_TOKEN`: a bearer token that opens `/metrics` to a scraper. Unset: only
    /// logged-in admins see the metrics.
    #[serde(default)]
    pub metrics_token: Option<String>,
    #[serde(default)]
    pub cookie: CookieSettings,
    #[serde(default)]
    pub redis: RedisSettings,
    /// `TRUSTED_PROXIES`: the proxies whose `X-Forwarded-For` is believed, as a
    /// comma-separated list of addresses and CIDR ranges, or `none`. Unset: loopback and
    /// the private ranges ([`DEFAULT_TRUSTED_PROXIES`]).
    #[serde(default)]
    pub trusted_proxies: Option<String>,
    /// How long the anonymous forms' CSRF token (login, register) and its cookie live,
    /// from the cookie's first page view; a form older than this is shown again.
    #[serde(default = "default_form_token_lifetime")]
    pub form_token_lifetime_secs: u64,
}

/// `settings.sessions.fingerprint`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintSettings {
    /// Also bind to the client's network: the IPv4 /24 or IPv6 /64. Off by default:
    /// mobile users change networks often, and would be logged out each time.
    #[serde(default)]
    pub bind_ip_prefix: bool,
}

/// `settings.sessions.throttle`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSettings {
    /// Failed logins per account from clients without its device cookie, within the window,
    /// before further attempts from such clients are refused.
    #[serde(default = "default_account_failures")]
    pub account_failures: u32,
    /// Failed logins per client network within the window (clients without a device
    /// cookie for the account they try).
    #[serde(default = "default_ip_failures")]
    pub ip_failures: u32,
    /// Failed logins per device cookie within the window; unset: `account_failures`, so a
    /// known browser that guesses wrong is throttled like an unknown one, alone.
    #[serde(default)]
    pub device_failures: Option<u32>,
    #[serde(default = "default_throttle_window")]
    pub window_secs: u64,
    /// How long a device cookie is good for after the login that issued it, whatever
    /// "remember me" said.
    #[serde(default = "default_device_cookie_lifetime_days")]
    pub device_cookie_lifetime_days: u32,
    /// Sign-ups per client network within `registration_window_secs`.
    #[serde(default = "default_registration_attempts")]
    pub registration_attempts: u32,
    #[serde(default = "default_registration_window")]
    pub registration_window_secs: u64,
}

impl ThrottleSettings {
    /// Failures per device cookie and window.
    #[must_use]
    pub fn device_failures(&self) -> u32 {
        self.device_failures.unwrap_or(self.account_failures)
    }

    /// How long a device cookie lives.
    #[must_use]
    pub fn device_cookie_lifetime(&self) -> Duration {
        Duration::from_secs(u64::from(self.device_cookie_lifetime_days) * 24 * 3600)
    }
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            account_failures: default_account_failures(),
            ip_failures: default_ip_failures(),
            device_failures: None,
            window_secs: default_throttle_window(),
            device_cookie_lifetime_days: default_device_cookie_lifetime_days(),
            registration_attempts: default_registration_attempts(),
            registration_window_secs: default_registration_window(),
        }
    }
}

/// `settings.sessions.password_hashing`: how many Argon2 hashes may run at once per app
/// instance, and how many may wait.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordHashingSettings {
    /// Hashes at once; unset: the number of cores.
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Requests that may wait for a hash; beyond them the answer is 503.
    #[serde(default = "default_hashing_queue")]
    pub queue: usize,
}

impl Default for PasswordHashingSettings {
    fn default() -> Self {
        Self {
            concurrency: None,
            queue: default_hashing_queue(),
        }
    }
}

impl PasswordHashingSettings {
    /// Hashes at once: as configured, else one per core.
    #[must_use]
    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }
}

/// `settings.sessions.maintenance`: the batches the tasks, the retention sweep and the
/// admin's "end everyone's sessions" work in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSettings {
    /// Rows per batch: each batch is one short transaction, and no statement binds more
    /// than [`MAX_BATCH_SIZE`] rows' parameters.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Rest between two batches, so the requests waiting for the database get it.
    #[serde(default = "default_batch_rest_ms")]
    pub batch_rest_ms: u64,
}

impl Default for MaintenanceSettings {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            batch_rest_ms: default_batch_rest_ms(),
        }
    }
}

/// The largest batch: a batch's statements bind its row ids plus a few values, and must
/// stay within [`crate::models::MAX_BOUND_PARAMETERS`].
pub const MAX_BATCH_SIZE: usize = 900;

const fn default_batch_size() -> usize {
    500
}
const fn default_batch_rest_ms() -> u64 {
    20
}
const fn default_device_cookie_lifetime_days() -> u32 {
    180
}
const fn default_registration_attempts() -> u32 {
    10
}
const fn default_registration_window() -> u64 {
    3600
}
const fn default_hashing_queue() -> usize {
    64
}
const fn default_form_token_lifetime() -> u64 {
    7200
}
const fn default_events_retention_days() -> u32 {
    90
}
const fn default_account_failures() -> u32 {
    5
}
const fn default_ip_failures() -> u32 {
    20
}
const fn default_throttle_window() -> u64 {
    900
}
const fn default_max_record_bytes() -> usize {
    16 * 1024
}

/// `settings.sessions.cookie`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieSettings {
    #[serde(default = "default_cookie_name")]
    pub name: String,
    #[serde(default)]
    pub secure: bool,
    /// Leave unset: a host-only cookie is the safe default, and `__Host-` forbids a domain.
    #[serde(default)]
    pub domain: Option<String>,
}

impl Default for CookieSettings {
    fn default() -> Self {
        Self {
            name: default_cookie_name(),
            secure: false,
            domain: None,
        }
    }
}

/// `settings.sessions.redis`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `REDIS_URL`, which also names the topology: `redis://` (one server),
    /// `redis-cluster://` (a Redis Cluster, seed nodes as `?node=host:port`),
    /// `redis-sentinel://` (behind Sentinel: sentinel addresses, `sentinelServiceName`);
    /// each with `rediss` for TLS, and password and db number if needed.
    #[serde(default = "default_redis_url")]
    pub url: String,
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Every Redis command gives up after this long, so a dead Redis costs a page at most
    /// this much before the 503.
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
    /// After a lost connection, reconnect attempts back off from 100 ms to this.
    #[serde(default = "default_reconnect_max_delay_ms")]
    pub reconnect_max_delay_ms: u32,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: default_redis_url(),
            pool_size: default_pool_size(),
            command_timeout_ms: default_command_timeout_ms(),
            reconnect_max_delay_ms: default_reconnect_max_delay_ms(),
        }
    }
}

fn default_dir() -> PathBuf {
    PathBuf::from("tmp/sessions")
}
const fn default_idle_timeout() -> u64 {
    7200
}
const fn default_absolute_lifetime() -> u64 {
    7 * 24 * 3600
}
const fn default_true() -> bool {
    true
}

const fn default_max_per_user() -> usize {
    10
}
fn default_cookie_name() -> String {
    "session".to_string()
}
fn default_redis_url() -> String {
    "redis://127.0.0.1:6379".to_string()
}
const fn default_pool_size() -> usize {
    4
}
const fn default_reconnect_max_delay_ms() -> u32 {
    1000
}
const fn default_command_timeout_ms() -> u64 {
    1000
}

/// A setting that cannot be used, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("settings.sessions.{key}: {reason}")]
pub struct SettingsError {
    pub key: String,
    pub reason: String,
}

impl From<PolicyError> for SettingsError {
    fn from(error: PolicyError) -> Self {
        Self::new(error.key, error.reason)
    }
}

impl SettingsError {
    fn new(key: &str, reason: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

/// How the session cookie is written, after the `__Host-` rules were checked.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    pub name: String,
    pub secure: bool,
    pub domain: Option<String>,
}

/// Everything the session layer needs, checked: build it with [`SessionConfig::from_settings`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Which store, and where it keeps its records.
    pub store: StoreConfig,
    pub secret: SessionSecret,
    pub policy: SessionPolicy,
    pub max_per_user: usize,
    pub max_record_bytes: usize,
    /// The keys records are sealed with; `None` when encryption is off.
    pub encryption: Option<EncryptionKeys>,
    pub fingerprint: FingerprintSettings,
    pub throttle: ThrottleSettings,
    pub password_hashing: PasswordHashingSettings,
    /// How long the audit trail keeps an event.
    pub events_retention: Duration,
    pub metrics_token: Option<String>,
    pub cookie: CookieConfig,
    /// Whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// How long an anonymous form's CSRF token lives.
    pub form_token_lifetime: Duration,
    pub maintenance: MaintenanceConfig,
}

/// The batches maintenance works in, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// Rows per batch, 1 to [`MAX_BATCH_SIZE`].
    pub batch_size: usize,
    pub batch_rest: Duration,
}

impl MaintenanceConfig {
    fn check(settings: &MaintenanceSettings) -> Result<Self, SettingsError> {
        if !(1..=MAX_BATCH_SIZE).contains(&settings.batch_size) {
            return Err(SettingsError::new(
                "maintenance.batch_size",
                format!("must be between 1 and {MAX_BATCH_SIZE}"),
            ));
        }
        Ok(Self {
            batch_size: settings.batch_size,
            batch_rest: Duration::from_millis(settings.batch_rest_ms),
        })
    }

    /// The pause between two batches: requests waiting for the database (SQLite's one
    /// writer) get their turn.
    pub async fn rest(&self) {
        super::clock::rest(self.batch_rest).await;
    }

    /// [`Self::batch_size`] as SQL's `LIMIT` takes it.
    #[must_use]
    pub const fn limit(&self) -> u64 {
        self.batch_size as u64
    }
}

impl SessionConfig {
    /// Reads `settings.sessions` out of Loco's `settings` value.
    ///
    /// # Errors
    /// The first unusable key, with why.
    pub fn from_loco_settings(
        settings: Option<&serde_json::Value>,
        environment: &Environment,
    ) -> Result<Self, SettingsError> {
        let raw = settings.and_then(|s| s.get("sessions")).ok_or_else(|| {
            SettingsError::new(
                "store",
                "missing: add a `settings.sessions` block to the config file",
            )
        })?;
        let settings: SessionSettings = serde_path_to_error::deserialize(raw).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." {
                "store".to_string()
            } else {
                path
            };
            SettingsError::new(&key, e.into_inner().to_string())
        })?;
        Self::from_settings(settings, environment)
    }

    /// Checks the settings against each other and against the environment, one settings
    /// block at a time, in the order of the fields below.
    ///
    /// # Errors
    /// The first unusable key, with why.
    pub fn from_settings(
        settings: SessionSettings,
        environment: &Environment,
    ) -> Result<Self, SettingsError> {
        let production = *environment == Environment::Production;
        let secret = check_secret(settings.secret)?;
        let maintenance = MaintenanceConfig::check(&settings.maintenance)?;
        Ok(Self {
            policy: SessionPolicy::new(
                settings.idle_timeout_secs,
                settings.absolute_lifetime_secs,
                settings.touch_interval_secs,
            )?,
            cookie: check_cookie(settings.cookie, production)?,
            max_record_bytes: at_least("max_record_bytes", settings.max_record_bytes, 1024)?,
            throttle: check_throttle(settings.throttle)?,
            password_hashing: check_password_hashing(settings.password_hashing)?,
            encryption: check_encryption(
                settings.encrypt,
                settings.encryption_keys.as_deref(),
                settings.encryption_keep_derived_key,
                &secret,
            )?,
            events_retention: Duration::from_secs(
                u64::from(at_least(
                    "events_retention_days",
                    settings.events_retention_days,
                    1,
                )?) * 24
                    * 3600,
            ),
            max_per_user: at_least("max_per_user", settings.max_per_user, 1)?,
            store: check_store(settings.store, settings.dir, settings.redis, &maintenance)?,
            trusted_proxies: check_trusted_proxies(settings.trusted_proxies.as_deref())?,
            // Shorter than a minute, people filling in the form would keep losing it.
            form_token_lifetime: Duration::from_secs(at_least(
                "form_token_lifetime_secs",
                settings.form_token_lifetime_secs,
                60,
            )?),
            fingerprint: settings.fingerprint,
            metrics_token: settings.metrics_token.filter(|t| !t.trim().is_empty()),
            maintenance,
            secret: SessionSecret::new(secret.into_bytes()),
        })
    }
}

/// `value` when it is at least `min`, else the error naming `key`.
fn at_least<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    min: T,
) -> Result<T, SettingsError> {
    if value < min {
        return Err(SettingsError::new(key, format!("must be at least {min}")));
    }
    Ok(value)
}

/// `secret`: set, and long enough to key the session refs' HMAC.
fn check_secret(secret: Option<String>) -> Result<String, SettingsError> {
    let secret = secret.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        SettingsError::new(
            "secret",
            format!("SESSION_SECRET is not set; give it at least {MIN_SECRET_LEN} random bytes"),
        )
    })?;
    if secret.len() < MIN_SECRET_LEN {
        return Err(SettingsError::new(
            "secret",
            format!(
                "SESSION_SECRET is {} bytes; it needs at least {MIN_SECRET_LEN}",
                secret.len()
            ),
        ));
    }
    Ok(secret)
}

/// `store`, `dir` and `redis`: which store, and where it keeps its records.
fn check_store(
    kind: StoreKind,
    dir: PathBuf,
    redis: RedisSettings,
    maintenance: &MaintenanceConfig,
) -> Result<StoreConfig, SettingsError> {
    let redis = check_redis(redis)?;
    if dir.as_os_str().is_empty() {
        return Err(SettingsError::new("dir", "SESSION_DIR is empty"));
    }
    Ok(StoreConfig {
        kind,
        dir,
        redis,
        sweep_batch: maintenance.limit(),
        sweep_rest: maintenance.batch_rest,
    })
}

/// `throttle`: every limit and window more than 0.
fn check_throttle(throttle: ThrottleSettings) -> Result<ThrottleSettings, SettingsError> {
    for (key, value) in [
        (
            "throttle.account_failures",
            u64::from(throttle.account_failures),
        ),
        ("throttle.ip_failures", u64::from(throttle.ip_failures)),
        (
            "throttle.device_failures",
            u64::from(throttle.device_failures()),
        ),
        ("throttle.window_secs", throttle.window_secs),
        (
            "throttle.device_cookie_lifetime_days",
            u64::from(throttle.device_cookie_lifetime_days),
        ),
        (
            "throttle.registration_attempts",
            u64::from(throttle.registration_attempts),
        ),
        (
            "throttle.registration_window_secs",
            throttle.registration_window_secs,
        ),
    ] {
        if value == 0 {
            return Err(SettingsError::new(key, "must be more than 0"));
        }
    }
    Ok(throttle)
}

/// `password_hashing`: a concurrency of 0 would never hash.
fn check_password_hashing(
    hashing: PasswordHashingSettings,
) -> Result<PasswordHashingSettings, SettingsError> {
    if hashing.concurrency == Some(0) {
        return Err(SettingsError::new(
            "password_hashing.concurrency",
            "must be more than 0 (leave it unset for one per core)",
        ));
    }
    Ok(hashing)
}

/// `encrypt`, `encryption_keys` and `encryption_keep_derived_key`: the keys records are
/// sealed with, `None` when encryption is off.
fn check_encryption(
    encrypt: bool,
    keys: Option<&str>,
    keep_derived_key: bool,
    secret: &str,
) -> Result<Option<EncryptionKeys>, SettingsError> {
    if !encrypt {
        return Ok(None);
    }
    let derived = EncryptionKeys::derive(secret.as_bytes());
    let Some(list) = keys.map(str::trim).filter(|k| !k.is_empty()) else {
        return Ok(Some(derived));
    };
    let keys = EncryptionKeys::parse(list)
        .map_err(|e| SettingsError::new("encryption_keys", e.to_string()))?;
    Ok(Some(if keep_derived_key {
        keys.also_opening_with(&derived)
    } else {
        keys
    }))
}

/// `trusted_proxies`: unset means loopback and the private ranges.
fn check_trusted_proxies(list: Option<&str>) -> Result<TrustedProxies, SettingsError> {
    TrustedProxies::parse(list.unwrap_or(DEFAULT_TRUSTED_PROXIES))
        .map_err(|e| SettingsError::new("trusted_proxies", format!("TRUSTED_PROXIES {e}")))
}

/// RFC 6265 cookie-name characters (an HTTP token).
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_cookie(cookie: CookieSettings, production: bool) -> Result<CookieConfig, SettingsError> {
    if !is_cookie_name(&cookie.name) {
        return Err(SettingsError::new(
            "cookie.name",
            format!("`{}` is not a valid cookie name", cookie.name),
        ));
    }
    let domain = cookie.domain.filter(|d| !d.trim().is_empty());
    // The `__Host-` prefix promises a cookie that only this host set, over TLS, for every
    // path; browsers drop a `__Host-` cookie that breaks that promise, which would log
    // everybody out silently. Refuse to start instead.
    if cookie.name.starts_with("__Host-") {
        if !cookie.secure {
            return Err(SettingsError::new(
                "cookie.secure",
                "a `__Host-` cookie must be Secure",
            ));
        }
        if domain.is_some() {
            return Err(SettingsError::new(
                "cookie.domain",
                "a `__Host-` cookie must not name a Domain",
            ));
        }
    }
    if cookie.name.starts_with("__Secure-") && !cookie.secure {
        return Err(SettingsError::new(
            "cookie.secure",
            "a `__Secure-` cookie must be Secure",
        ));
    }
    if production && !cookie.secure {
        return Err(SettingsError::new(
            "cookie.secure",
            "production sends the session cookie only over https; set it to true",
        ));
    }
    Ok(CookieConfig {
        name: cookie.name,
        secure: cookie.secure,
        domain,
    })
}

fn check_redis(redis: RedisSettings) -> Result<RedisConfig, SettingsError> {
    const SCHEMES: [&str; 6] = [
        "redis://",
        "rediss://",
        "redis-cluster://",
        "rediss-cluster://",
        "redis-sentinel://",
        "rediss-sentinel://",
    ];
    if !SCHEMES.iter().any(|scheme| redis.url.starts_with(scheme)) {
        return Err(SettingsError::new(
            "redis.url",
            "REDIS_URL must start with redis://, redis-cluster:// or redis-sentinel:// (rediss for TLS)",
        ));
    }
    if redis.pool_size == 0 || redis.pool_size > 256 {
        return Err(SettingsError::new(
            "redis.pool_size",
            "must be between 1 and 256",
        ));
    }
    if redis.command_timeout_ms == 0 {
        return Err(SettingsError::new(
            "redis.command_timeout_ms",
            "must be more than 0",
        ));
    }
    if redis.reconnect_max_delay_ms < 100 {
        return Err(SettingsError::new(
            "redis.reconnect_max_delay_ms",
            "must be at least 100",
        ));
    }
    Ok(RedisConfig {
        url: redis.url,
        pool_size: redis.pool_size,
        command_timeout: Duration::from_millis(redis.command_timeout_ms),
        reconnect_max_delay: Duration::from_millis(u64::from(redis.reconnect_max_delay_ms)),
    })
}
