//! Times for people: "3 minutes ago" or "in 1 h 58 min", with the exact time on hover.
//!
//! Pages never show RFC 3339 text. A template writes `{{ row.created_at | when }}` for any
//! RFC 3339 value and gets
//! `<time datetime="2026-12-01T06:33:37Z" title="2026-12-01 06:33:37 UTC">3 minutes ago</time>`;
//! `/static/local-time.js` rewrites the title in the reader's own time zone. The JSON API
//! keeps RFC 3339.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::sessions::clock::UnixTime;

/// The name templates use: `{{ value | when }}`.
pub const FILTER: &str = "when";

/// "just now", "3 minutes ago", "in 1 h 58 min", "2 days ago", relative to `now`.
///
/// ```
/// use chrono::{Duration, Utc};
/// use tessera::views::time::relative;
/// let now = Utc::now();
/// assert_eq!(relative(now - Duration::minutes(3), now), "3 minutes ago");
/// assert_eq!(relative(now + Duration::minutes(118), now), "in 1 h 58 min");
/// ```
#[must_use]
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    let span = span(seconds.unsigned_abs());
    match (seconds, span) {
        (_, None) => "just now".to_string(),
        (s, Some(span)) if s < 0 => format!("{span} ago"),
        (_, Some(span)) => format!("in {span}"),
    }
}

/// A distance in words, or `None` under a minute.
fn span(seconds: u64) -> Option<String> {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    Some(match seconds {
        s if s < MINUTE => return None,
        s if s < HOUR => plural(s / MINUTE, "minute"),
        s if s < DAY => match (s / HOUR, s % HOUR / MINUTE) {
            (hours, 0) => format!("{hours} h"),
            (hours, minutes) => format!("{hours} h {minutes} min"),
        },
        s => plural(s / DAY, "day"),
    })
}

/// The exact time to the second, for the hover text: "2026-12-01 06:33:37 UTC".
#[must_use]
pub fn exact(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A session library time as RFC 3339 text, for the JSON API and the `when` filter; empty
/// if out of range.
///
/// ```
/// assert_eq!(tessera::views::time::rfc3339(0), "1970-01-01T00:00:00Z");
/// ```
#[must_use]
pub fn rfc3339(t: UnixTime) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The `<time>` element for `at`. Only digits, letters and our own punctuation reach the
/// markup, so nothing needs escaping.
#[must_use]
pub fn element(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        r#"<time datetime="{}" title="{}">{}</time>"#,
        at.to_rfc3339_opts(SecondsFormat::Secs, true),
        exact(at),
        relative(at, now)
    )
}

/// Registers the `when` filter. A value that is not an RFC 3339 time is shown as it is,
/// escaped: a page should not fail over one odd timestamp.
pub fn register(tera: &mut tera::Tera) {
    tera.register_filter(
        FILTER,
        |value: &str, _: tera::Kwargs, _: &tera::State| -> tera::Value {
            DateTime::parse_from_rfc3339(value).map_or_else(
                |_| tera::Value::normal_string(value),
                |at| tera::Value::safe_string(&element(at.with_timezone(&Utc), Utc::now())),
            )
        },
    );
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    /// The fixed moment the examples are read at.
    fn reading_time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 6, 33, 37)
            .single()
            .expect("valid")
    }

    #[test]
    fn distances_read_as_words() {
        let now = reading_time();
        for (offset, words) in [
            (Duration::seconds(-20), "just now"),
            (Duration::seconds(30), "just now"),
            (Duration::seconds(-60), "1 minute ago"),
            (Duration::minutes(-3), "3 minutes ago"),
            (Duration::hours(-2), "2 h ago"),
            (Duration::minutes(118), "in 1 h 58 min"),
            (Duration::days(1), "in 1 day"),
            (Duration::days(7) - Duration::seconds(5), "in 6 days"),
            (Duration::days(-40), "40 days ago"),
        ] {
            assert_eq!(relative(now + offset, now), words, "{offset}");
        }
    }

    #[test]
    fn the_element_carries_the_exact_time_without_fractions() {
        let at = reading_time() + Duration::nanoseconds(787_609_718);
        assert_eq!(
            element(at, reading_time() + Duration::seconds(181)),
            r#"<time datetime="2026-12-01T06:33:37Z" title="2026-12-01 06:33:37 UTC">3 minutes ago</time>"#
        );
    }

    #[test]
    fn session_times_read_as_rfc3339_text() {
        assert_eq!(rfc3339(86_400), "1970-01-02T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "");
    }
}
