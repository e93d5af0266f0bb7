//! Session time: Unix seconds, and the two forms pages and SQL want them in.
//!
//! A leaf: it imports no other part of the session layer.

use time::OffsetDateTime;

/// Seconds since the Unix epoch; the unit of every session timestamp.
pub type UnixTime = i64;

/// Now, in Unix seconds.
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

/// `t` as RFC 3339 text for pages and the JSON API; empty if out of range.
#[must_use]
pub fn rfc3339(t: UnixTime) -> String {
    OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `t` as the registry's SQL timestamps; the epoch if out of range.
#[must_use]
pub fn chrono_time(t: UnixTime) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .fixed_offset()
}

#[cfg(test)]
mod tests {
    use super::{chrono_time, rfc3339};

    #[test]
    fn timestamps_format_for_pages_and_sql() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            chrono_time(86_400).to_rfc3339(),
            "1970-01-02T00:00:00+00:00"
        );
    }
}
