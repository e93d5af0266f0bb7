//! Figures too costly to compute per request (every live session counted, every file of
//! the store listed): served as last computed, with the time they were, and computed again
//! in the background once they are older than their maximum age. A request never waits for
//! one, except for the very first of a process.

use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use chrono::{DateTime, Utc};

/// A figure and when it was computed.
#[derive(Debug, Clone)]
pub struct Counted<T> {
    pub value: T,
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
struct State<T> {
    latest: Option<Counted<T>>,
    /// A recount is under way: no second one starts.
    running: bool,
}

/// One figure, recounted at most once per `max_age`.
#[derive(Debug, Clone)]
pub struct Recounted<T> {
    state: Arc<Mutex<State<T>>>,
    max_age: Duration,
}

impl<T: Clone + Send + 'static> Recounted<T> {
    #[must_use]
    pub fn new(max_age: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                latest: None,
                running: false,
            })),
            max_age,
        }
    }

    /// The figure as last computed; `count` computes it again, in the background when the
    /// last one is older than the maximum age, here and now when there is none yet.
    /// (`count` is a future: nothing runs unless it is needed.)
    ///
    /// # Errors
    /// When there is no figure yet and `count` fails.
    pub async fn get<E>(
        &self,
        count: impl Future<Output = Result<T, E>> + Send + 'static,
    ) -> Result<Counted<T>, E>
    where
        E: std::fmt::Display + Send + 'static,
    {
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(latest) = state.latest.clone() {
                let stale = (Utc::now() - latest.at)
                    .to_std()
                    .is_ok_and(|age| age >= self.max_age);
                if stale && !state.running {
                    state.running = true;
                    let shared = self.state.clone();
                    tokio::spawn(async move {
                        let counted = count.await;
                        let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                        state.running = false;
                        match counted {
                            Ok(value) => {
                                state.latest = Some(Counted {
                                    value,
                                    at: Utc::now(),
                                });
                            }
                            Err(error) => tracing::warn!(%error, "a background recount failed"),
                        }
                    });
                }
                return Ok(latest);
            }
        }
        let counted = Counted {
            value: count.await?,
            at: Utc::now(),
        };
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latest = Some(counted.clone());
        Ok(counted)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn the_first_figure_is_counted_at_once_and_later_ones_in_the_background() {
        let counts = Arc::new(AtomicU32::new(0));
        let count = || {
            let counts = counts.clone();
            async move { Ok::<_, String>(counts.fetch_add(1, Ordering::SeqCst) + 1) }
        };
        let fresh = Recounted::new(Duration::from_secs(3600));
        assert_eq!(fresh.get(count()).await.map(|c| c.value), Ok(1));
        assert_eq!(
            fresh.get(count()).await.map(|c| c.value),
            Ok(1),
            "still fresh"
        );
        assert_eq!(counts.load(Ordering::SeqCst), 1, "not counted again");

        let stale = Recounted::new(Duration::ZERO);
        assert_eq!(stale.get(count()).await.map(|c| c.value), Ok(2));
        // Stale: served as it was, recounted behind the answer.
        assert_eq!(stale.get(count()).await.map(|c| c.value), Ok(2));
        let mut seen = 2;
        for _ in 0..1000 {
            tokio::task::yield_now().await;
            seen = stale.get(count()).await.map_or(0, |c| c.value);
            if seen > 2 {
                break;
            }
        }
        assert!(seen > 2, "the background recount landed: {seen}");
    }

    #[tokio::test]
    async fn a_failed_first_count_is_an_error_and_leaves_nothing() {
        let figure: Recounted<u32> = Recounted::new(Duration::from_secs(60));
        assert!(figure.get(async { Err("down".to_string()) }).await.is_err());
        assert_eq!(
            figure
                .get(async { Ok::<_, String>(5) })
                .await
                .map(|c| c.value),
            Ok(5)
        );
    }
}
