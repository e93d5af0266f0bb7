//! The session library's clock: Unix seconds, the one representation of time inside
//! `src/sessions/`, and the conversions at its edges.
//!
//! Every timestamp the library keeps (a record's creation and last activity, an expiry, a
//! token's issue time) is a [`UnixTime`], and every reading of the time is [`now`]. Two
//! neighbours want their own types, and get them at the boundary, never further in:
//! tower-sessions' record expiry and the cookie's `Expires` are `time::OffsetDateTime`s
//! (see [`offset_time`]), and
//! the SQL tables SeaORM maps hold `chrono` timestamps (see [`sql_time`]).
//!
//! A leaf: it imports no other part of the session layer.

use time::OffsetDateTime;

/// Seconds since the Unix epoch; the unit of every session timestamp.
pub type UnixTime = i64;

/// Now, in Unix seconds: the library's one clock.
#[must_use]
pub fn now() -> UnixTime {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The pause between two batches of maintenance work, so requests waiting for the
/// database (SQLite's one writer) get their turn; a zero rest still yields.
pub async fn rest(pause: std::time::Duration) {
    if pause.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(pause).await;
    }
}

/// `t` as the SQL timestamps SeaORM maps; the epoch if out of range.
#[must_use]
pub fn sql_time(t: UnixTime) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .fixed_offset()
}

/// `t` as tower-sessions' record expiry and the cookie crate's `Expires` want it; `None`
/// if out of range.
#[must_use]
pub fn offset_time(t: UnixTime) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t).ok()
}

#[cfg(test)]
mod tests {
    use super::{offset_time, sql_time};

    #[test]
    fn timestamps_convert_for_sql_records_and_cookies() {
        assert_eq!(sql_time(86_400).to_rfc3339(), "1970-01-02T00:00:00+00:00");
        assert_eq!(
            offset_time(86_400).map(time::OffsetDateTime::unix_timestamp),
            Some(86_400)
        );
        assert_eq!(offset_time(i64::MAX), None);
    }
}
