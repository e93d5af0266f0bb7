//! Bar charts as data for server-rendered SVG: the template draws the rectangles this
//! module measures. No JavaScript, no chart library to ship.

use serde::Serialize;

/// Drawing area of one chart, in SVG user units.
const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 120.0;
const GAP: f64 = 2.0;

/// One bar: its box and what it stands for.
#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub count: u64,
    /// e.g. "3 h ago".
    pub label: String,
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
    pub bars: Vec<Bar>,
}

impl HourlyChart {
    /// Lays out `counts` (one per hour, oldest first, the last being the current hour).
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn new(id: &'static str, title: &'static str, counts: &[u64]) -> Self {
        let max = counts.iter().copied().max().unwrap_or(0);
        let slots = counts.len().max(1) as f64;
        let width = WIDTH / slots - GAP;
        let bars = counts
            .iter()
            .enumerate()
            .map(|(i, &count)| {
                // An empty hour still shows a hairline, so the time axis reads.
                let height = if max == 0 {
                    1.0
                } else {
                    (count as f64 / max as f64 * HEIGHT).max(1.0)
                };
                let hours_ago = counts.len() - 1 - i;
                Bar {
                    x: i as f64 * (width + GAP),
                    y: HEIGHT - height,
                    width,
                    height,
                    count,
                    label: if hours_ago == 0 {
                        "this hour".to_string()
                    } else {
                        format!("{hours_ago} h ago")
                    },
                }
            })
            .collect();
        Self {
            id,
            title,
            total: counts.iter().sum(),
            max,
            width: WIDTH,
            height: HEIGHT,
            bars,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_hour() {
        let chart = HourlyChart::new("logins", "Logins", &[0, 2, 4]);
        assert_eq!(chart.total, 6);
        assert_eq!(chart.max, 4);
        assert!((chart.bars[2].height - HEIGHT).abs() < f64::EPSILON);
        assert!((chart.bars[1].height - HEIGHT / 2.0).abs() < f64::EPSILON);
        assert!((chart.bars[0].height - 1.0).abs() < f64::EPSILON);
        assert_eq!(chart.bars[2].label, "this hour");
    }
}
