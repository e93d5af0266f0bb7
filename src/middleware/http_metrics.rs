//! Counts every answer by status class (`tessera_http_responses_total{class}`), so an
//! alert can watch the rate of 5xx. Outermost in the stack: it sees the answers the other
//! layers give themselves (a 503 when the session store is down, the panic page, a 413).
//!
//! Costs one indirect call and one atomic add per answer: the counters are registered
//! when the layer is built, and nothing is allocated per request. The answer's future is
//! tower's own `MapResponse`, with no box.

use axum::response::Response;
use tower::{util::MapResponse, Layer};

use crate::sessions::metrics;

/// The layer; building it registers the counters, so every class is served (at 0) from
/// the start.
#[derive(Debug, Clone, Copy)]
pub struct HttpMetricsLayer;

impl HttpMetricsLayer {
    #[must_use]
    pub fn new() -> Self {
        metrics::register_http_responses();
        Self
    }
}

impl Default for HttpMetricsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = MapResponse<S, fn(Response) -> Response>;

    fn layer(&self, inner: S) -> Self::Service {
        MapResponse::new(inner, count)
    }
}

fn count(response: Response) -> Response {
    metrics::record_http_response(response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::{body::Body, http::Request, http::StatusCode};
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;

    fn served(text: &str, class: &str) -> f64 {
        let series = format!("tessera_http_responses_total{{class=\"{class}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or(f64::NAN)
    }

    #[tokio::test]
    async fn answers_are_counted_by_class_and_every_class_is_served() {
        let layer = HttpMetricsLayer::new();
        let scrape = || metrics::render(&metrics::Readings::default());
        let before = scrape();
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            assert!(served(&before, class) >= 0.0, "{class} served: {before}");
        }
        for status in [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE] {
            let service = ServiceBuilder::new()
                .layer(layer)
                .service(tower::service_fn(move |_: Request<Body>| async move {
                    let mut response = Response::new(Body::empty());
                    *response.status_mut() = status;
                    Ok::<_, Infallible>(response)
                }));
            service
                .oneshot(Request::new(Body::empty()))
                .await
                .expect("an answer");
        }
        let after = scrape();
        // Other tests in this process count answers too: at least ours.
        assert!(
            served(&after, "5xx") >= served(&before, "5xx") + 1.0,
            "{after}"
        );
        assert!(
            served(&after, "2xx") >= served(&before, "2xx") + 1.0,
            "{after}"
        );
    }
}
