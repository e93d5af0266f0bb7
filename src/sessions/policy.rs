//! When a session ends and when it is worth writing: the idle timeout, the absolute
//! lifetime and the touch interval, as pure functions of timestamps.
//!
//! Both timeouts are enforced here, on the server, from the timestamps inside the
//! record, whatever the store's own TTL or the cookie's lifetime say. Timestamps are
//! seconds since the Unix epoch (`clock::UnixTime`).
//!
//! A leaf: it imports no other part of the session layer.
//!
//! Sliding expiry writes the store at most once per touch interval. The price is
//! precision: a session idle for `idle_timeout - touch_interval` may already be gone.
//! With the default interval (a tenth of the idle timeout) that is 12 minutes of a 2 h
//! timeout, for one store write per 12 minutes instead of one per request.

use std::time::Duration;

/// A timeout setting that cannot be used, named by its key under `settings.sessions`.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct PolicyError {
    pub key: &'static str,
    pub reason: &'static str,
}

/// The rules a session lives by.
///
/// ```
/// use tessera::sessions::policy::{SessionPolicy, Verdict};
/// let policy = SessionPolicy::new(7200, 7 * 86400, None).unwrap();
/// assert_eq!(policy.judge(0, 0, 60), Verdict::Live { touch: false });
/// assert_eq!(policy.judge(0, 0, 7200), Verdict::IdleExpired);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    idle_timeout: i64,
    absolute_lifetime: i64,
    touch_interval: i64,
}

/// What [`SessionPolicy::judge`] decides about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Still valid; `touch` says whether its last activity should be written now.
    Live { touch: bool },
    /// Unused for longer than the idle timeout.
    IdleExpired,
    /// Older than the absolute lifetime, however active.
    AbsoluteExpired,
}

impl SessionPolicy {
    /// # Errors
    /// When a timeout is zero, the lifetime is shorter than the idle timeout, or the
    /// touch interval is not shorter than the idle timeout.
    pub fn new(
        idle_timeout_secs: u64,
        absolute_lifetime_secs: u64,
        touch_interval_secs: Option<u64>,
    ) -> Result<Self, PolicyError> {
        let err = |key: &'static str, reason: &'static str| PolicyError { key, reason };
        let idle = i64::try_from(idle_timeout_secs).unwrap_or(i64::MAX);
        let absolute = i64::try_from(absolute_lifetime_secs).unwrap_or(i64::MAX);
        if idle == 0 {
            return Err(err("idle_timeout_secs", "must be more than 0"));
        }
        if absolute < idle {
            return Err(err(
                "absolute_lifetime_secs",
                "must be at least idle_timeout_secs",
            ));
        }
        let touch = match touch_interval_secs {
            Some(t) => i64::try_from(t).unwrap_or(i64::MAX),
            None => idle / 10,
        };
        if touch >= idle {
            return Err(err(
                "touch_interval_secs",
                "must be shorter than idle_timeout_secs",
            ));
        }
        Ok(Self {
            idle_timeout: idle,
            absolute_lifetime: absolute,
            touch_interval: touch,
        })
    }

    #[must_use]
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout.unsigned_abs())
    }

    #[must_use]
    pub fn absolute_lifetime(&self) -> Duration {
        Duration::from_secs(self.absolute_lifetime.unsigned_abs())
    }

    #[must_use]
    pub fn touch_interval(&self) -> Duration {
        Duration::from_secs(self.touch_interval.unsigned_abs())
    }

    /// Decides whether a session created at `created_at` and last seen at `last_activity`
    /// is still valid at `now`, and whether this request should record its activity.
    #[must_use]
    pub fn judge(&self, created_at: i64, last_activity: i64, now: i64) -> Verdict {
        if now.saturating_sub(created_at) >= self.absolute_lifetime {
            Verdict::AbsoluteExpired
        } else if now.saturating_sub(last_activity) >= self.idle_timeout {
            Verdict::IdleExpired
        } else {
            Verdict::Live {
                touch: now.saturating_sub(last_activity) >= self.touch_interval,
            }
        }
    }

    /// The moment the session ends unless it is used again: the earlier of the idle
    /// deadline and the absolute one.
    #[must_use]
    pub fn expires_at(&self, created_at: i64, last_activity: i64) -> i64 {
        last_activity
            .saturating_add(self.idle_timeout)
            .min(self.absolute_deadline(created_at))
    }

    /// The moment the session ends however active it is; a "remember me" cookie lives
    /// until then.
    #[must_use]
    pub fn absolute_deadline(&self, created_at: i64) -> i64 {
        created_at.saturating_add(self.absolute_lifetime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SessionPolicy {
        SessionPolicy::new(100, 1000, Some(10)).expect("valid policy")
    }

    #[test]
    fn touches_only_after_the_interval() {
        assert_eq!(policy().judge(0, 0, 9), Verdict::Live { touch: false });
        assert_eq!(policy().judge(0, 0, 10), Verdict::Live { touch: true });
    }

    #[test]
    fn idle_and_absolute_both_end_a_session() {
        assert_eq!(policy().judge(0, 0, 100), Verdict::IdleExpired);
        assert_eq!(policy().judge(0, 995, 1000), Verdict::AbsoluteExpired);
    }

    #[test]
    fn deadlines_fall_on_the_second() {
        // Over at the deadline itself, live a second before it.
        assert_eq!(policy().judge(0, 0, 99), Verdict::Live { touch: true });
        assert_eq!(policy().judge(0, 0, 100), Verdict::IdleExpired);
        assert_eq!(policy().judge(0, 999, 999), Verdict::Live { touch: false });
        assert_eq!(policy().judge(0, 999, 1000), Verdict::AbsoluteExpired);
    }

    #[test]
    fn steady_use_outlives_the_idle_timeout_but_not_the_lifetime() {
        // Used once a minute, touched each time: never idle, over at the first use past
        // the absolute lifetime.
        let (mut last_activity, mut now) = (0, 0);
        let verdict = loop {
            now += 60;
            match policy().judge(0, last_activity, now) {
                Verdict::Live { touch } => {
                    assert!(touch, "a minute is past the touch interval");
                    last_activity = now;
                }
                ended => break ended,
            }
        };
        assert_eq!(verdict, Verdict::AbsoluteExpired);
        assert_eq!(now, 1020, "the first use at or past 1000 s");
    }

    #[test]
    fn expiry_is_the_earlier_deadline() {
        assert_eq!(policy().expires_at(0, 50), 150);
        assert_eq!(policy().expires_at(0, 950), 1000);
    }

    #[test]
    fn rejects_inconsistent_settings() {
        assert!(SessionPolicy::new(0, 10, None).is_err());
        assert!(SessionPolicy::new(100, 10, None).is_err());
        assert!(SessionPolicy::new(100, 1000, Some(100)).is_err());
    }
}
