//! Bar charts as data for server-rendered SVG: the template draws what this module
//! measures. No JavaScript, no chart library to ship.
//!
//! A chart reads at a glance: bars over an hour axis (UTC, labelled every six hours), the
//! busiest hour's count labelled on the value axis, and each bar's hour and count in its
//! tooltip. A chart with nothing to show says so instead of drawing an empty box.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// Drawing area of one chart, in SVG user units.
const WIDTH: f64 = 320.0;
const HEIGHT: f64 = 130.0;
/// Room for the value axis' labels on the left and the hour labels below.
const LEFT: f64 = 26.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 112.0;
const GAP: f64 = 2.0;
/// Hours between two labels of the hour axis.
const TICK_EVERY: usize = 6;

/// One bar: its box and what it stands for.
#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub count: u64,
    /// The bar's tooltip: "06:00–07:00 UTC: 3 logins".
    pub label: String,
}

/// A label of the hour axis.
#[derive(Debug, Clone, Serialize)]
pub struct Tick {
    pub x: f64,
    pub text: String,
}

/// A chart of hourly counts over the last 24 hours, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct HourlyChart {
    pub id: &'static str,
    pub title: &'static str,
    pub total: u64,
    pub max: u64,
    pub width: f64,
    pub height: f64,
    /// Where the plot sits: the axes are drawn along its left and bottom edges.
    pub left: f64,
    pub top: f64,
    pub bottom: f64,
    pub bars: Vec<Bar>,
    pub ticks: Vec<Tick>,
}

impl HourlyChart {
    /// Lays out `counts` (one per hour, oldest first, the first starting at `start`);
    /// `unit` names one event in tooltips ("login", "logins").
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn new(
        id: &'static str,
        title: &'static str,
        unit: (&str, &str),
        counts: &[u64],
        start: DateTime<Utc>,
    ) -> Self {
        let max = counts.iter().copied().max().unwrap_or(0);
        let slots = counts.len().max(1) as f64;
        let slot_width = (WIDTH - LEFT) / slots;
        let plot_height = BOTTOM - TOP;
        let hour = |i: usize| start + Duration::hours(i64::try_from(i).unwrap_or(0));
        let bars = counts
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                // An empty hour still shows a hairline, so the hour axis reads.
                let height = if max == 0 {
                    1.0
                } else {
                    (count as f64 / max as f64 * plot_height).max(1.0)
                };
                let noun = if count == 1 { unit.0 } else { unit.1 };
                Bar {
                    x: LEFT + i as f64 * slot_width + GAP / 2.0,
                    y: BOTTOM - height,
                    width: slot_width - GAP,
                    height,
                    count,
                    label: format!(
                        "{}–{} UTC: {count} {noun}",
                        hour(i).format("%H:%M"),
                        hour(i + 1).format("%H:%M")
                    ),
                }
            })
            .collect();
        let ticks = (0..counts.len())
            .step_by(TICK_EVERY)
            .map(|i| Tick {
                x: LEFT + i as f64 * slot_width,
                text: hour(i).format("%H:00").to_string(),
            })
            .collect();
        Self {
            id,
            title,
            total: counts.iter().sum(),
            max,
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            top: TOP,
            bottom: BOTTOM,
            bars,
            ticks,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 6, 0, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn bars_scale_to_the_busiest_hour_and_say_what_they_count() {
        let chart = HourlyChart::new("logins", "Logins", ("login", "logins"), &[0, 1, 4], start());
        assert_eq!(chart.total, 5);
        assert_eq!(chart.max, 4);
        assert!((chart.bars[2].height - (BOTTOM - TOP)).abs() < f64::EPSILON);
        assert!((chart.bars[1].height - (BOTTOM - TOP) / 4.0).abs() < f64::EPSILON);
        assert!((chart.bars[0].height - 1.0).abs() < f64::EPSILON);
        assert_eq!(chart.bars[0].label, "06:00–07:00 UTC: 0 logins");
        assert_eq!(chart.bars[1].label, "07:00–08:00 UTC: 1 login");
        assert!(chart.bars.iter().all(|b| b.x >= LEFT && b.y >= TOP));
    }

    #[test]
    fn the_hour_axis_is_labelled_every_six_hours() {
        let chart = HourlyChart::new("logins", "Logins", ("login", "logins"), &[0; 24], start());
        let labels: Vec<_> = chart.ticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(labels, ["06:00", "12:00", "18:00", "00:00"]);
    }
}
