//! Reading `/metrics` as a scraper does: with the bearer token, as Prometheus text.

use std::collections::BTreeSet;

use super::TestApp;

/// The token tests give `settings.sessions.metrics_token`.
pub const TOKEN: &str = "scrape-token-123";

/// Scrapes `/metrics` with [`TOKEN`] (the app must have it as its `metrics_token`).
pub async fn scrape(app: &TestApp) -> String {
    let response = app
        .browser()
        .get("/metrics")
        .add_header("authorization", format!("Bearer {TOKEN}"))
        .await;
    assert_eq!(response.status_code(), 200, "{}", response.text());
    response.text()
}

/// The value of the sample `series` (its name and labels exactly as rendered), if served.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// The names of every series served (histograms by their `_bucket`, `_sum`, `_count`).
pub fn series_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}
