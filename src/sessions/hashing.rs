//! Password hashing at a bounded cost.
//!
//! One Argon2id hash takes 19 MiB and tens of milliseconds of a core, on purpose. Run
//! without a bound, a burst of sign-ups or logins costs memory and CPU in proportion to the
//! burst (120 sign-ups at once took 1.4 GB and starved every other request). Here at most
//! `concurrency` hashes run at once per app instance; further requests wait in a bounded
//! queue, logins (and other checks of a user's own password) ahead of sign-ups, so a wave of
//! registrations never crowds out people logging in. Beyond the queue the answer is
//! [`HashingError::Busy`]: the caller answers 503 with `Retry-After`, having given back any
//! throttle reservation the attempt took.
//!
//! A slot is held by the hashing work itself, not by the request waiting for it: a request
//! that is cancelled while its hash runs still holds the slot until the hash ends.
//!
//! A leaf: it imports no other part of the session layer.

use std::{
    collections::VecDeque,
    sync::{Arc, LazyLock, Mutex, MutexGuard},
    time::Duration,
};

use tokio::sync::oneshot;

/// How long a refused caller is told to wait: a queue's worth of hashes is gone by then.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Who is waiting for a hash: logins go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A user proving who they are: a login, the current password on the password form,
    /// setting a new password.
    Login,
    /// A new account.
    SignUp,
}

/// Why a hash did not run.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// Every slot is busy and the queue is full: try again after [`RETRY_AFTER`].
    #[error("password hashing is at capacity ({running} running, {queued} waiting)")]
    Busy { running: usize, queued: usize },
    /// The hash itself failed (or its thread panicked).
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// What the queue is doing now, and the most hashes it ever ran at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashingLoad {
    pub running: usize,
    pub queued: usize,
    /// The highest `running` seen since start: never above the concurrency.
    pub peak_running: usize,
    /// Requests refused because the queue was full, since start.
    pub refused: u64,
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    peak_running: usize,
    refused: u64,
    /// Waiting callers, logins first; each is sent a [`Slot`] when one frees up.
    logins: VecDeque<oneshot::Sender<Slot>>,
    sign_ups: VecDeque<oneshot::Sender<Slot>>,
}

impl State {
    fn queued(&self) -> usize {
        self.logins.len() + self.sign_ups.len()
    }

    fn next_waiter(&mut self) -> Option<oneshot::Sender<Slot>> {
        self.logins
            .pop_front()
            .or_else(|| self.sign_ups.pop_front())
    }
}

/// The password hasher of one app instance: Argon2id (Loco's `hash` module) behind a
/// bounded, prioritised queue.
///
/// ```
/// # tokio_test_block_on(async {
/// use tessera::sessions::hashing::{PasswordHashing, Priority};
/// let hashing = PasswordHashing::new(2, 64);
/// let hash = hashing.hash(Priority::SignUp, "correct horse battery").await.unwrap();
/// assert!(hashing.verify(Priority::Login, "correct horse battery", &hash).await.unwrap());
/// # });
/// # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PasswordHashing {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    concurrency: usize,
    queue: usize,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few counters and queues, consistent after every statement: a
        // panic elsewhere while it was locked leaves nothing half done.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands a freed slot to the next live waiter, or frees it.
    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut state = self.lock();
                match state.next_waiter() {
                    Some(waiter) => waiter,
                    None => {
                        state.running = state.running.saturating_sub(1);
                        return;
                    }
                }
            };
            match next.send(Slot(Some(self.clone()))) {
                Ok(()) => return,
                // That waiter gave up (its request was cancelled): the slot goes on to the
                // next one, without running this slot's release a second time.
                Err(mut slot) => slot.0 = None,
            }
        }
    }
}

/// One running hash's place; freeing it (on drop) lets the next waiter in.
#[derive(Debug)]
struct Slot(Option<Arc<Shared>>);

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.release();
        }
    }
}

/// A hash of a password nobody has, checked when an email is unknown so that a login for
/// a missing account costs what a wrong password costs.
static DECOY_HASH: LazyLock<Option<String>> =
    LazyLock::new(|| loco_rs::hash::hash_password("tessera-decoy-password").ok());

impl PasswordHashing {
    /// At most `concurrency` hashes at once (at least one), `queue` more waiting.
    #[must_use]
    pub fn new(concurrency: usize, queue: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                concurrency: concurrency.max(1),
                queue,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The Argon2id hash of `password`, to store.
    ///
    /// # Errors
    /// [`HashingError::Busy`] when the queue is full, or the hash failed.
    pub async fn hash(&self, priority: Priority, password: &str) -> Result<String, HashingError> {
        let password = password.to_string();
        self.run(priority, move || loco_rs::hash::hash_password(&password))
            .await?
            .map_err(|e| HashingError::Failed(e.to_string()))
    }

    /// Whether `password` is the one `hash` was made from.
    ///
    /// # Errors
    /// [`HashingError::Busy`] when the queue is full.
    pub async fn verify(
        &self,
        priority: Priority,
        password: &str,
        hash: &str,
    ) -> Result<bool, HashingError> {
        let (password, hash) = (password.to_string(), hash.to_string());
        self.run(priority, move || {
            loco_rs::hash::verify_password(&password, &hash)
        })
        .await
    }

    /// Spends what [`Self::verify`] spends and says no: for an email without an account.
    ///
    /// # Errors
    /// [`HashingError::Busy`] when the queue is full.
    pub async fn verify_nobody(&self, password: &str) -> Result<bool, HashingError> {
        let password = password.to_string();
        self.run(Priority::Login, move || {
            if let Some(decoy) = DECOY_HASH.as_deref() {
                let _ = loco_rs::hash::verify_password(&password, decoy);
            }
            false
        })
        .await
    }

    /// What the queue is doing.
    #[must_use]
    pub fn load(&self) -> HashingLoad {
        let state = self.shared.lock();
        HashingLoad {
            running: state.running,
            queued: state.queued(),
            peak_running: state.peak_running,
            refused: state.refused,
        }
    }

    /// Runs `work` on the blocking pool in one of the hasher's slots, once one is free:
    /// what [`Self::hash`] and [`Self::verify`] do. For other work that must share the
    /// bound (and for tests that hold a slot).
    ///
    /// # Errors
    /// [`HashingError::Busy`] when the queue is full, or the work panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        priority: Priority,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let slot = self.acquire(priority).await?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(|e| HashingError::Failed(e.to_string()))
    }

    async fn acquire(&self, priority: Priority) -> Result<Slot, HashingError> {
        let waiting = {
            let mut state = self.shared.lock();
            if state.running < self.shared.concurrency {
                state.running += 1;
                state.peak_running = state.peak_running.max(state.running);
                return Ok(Slot(Some(self.shared.clone())));
            }
            if state.queued() >= self.shared.queue {
                state.refused += 1;
                // A full queue refuses a login only when it holds nothing but logins: the
                // latest sign-up waiting gives its place up (its caller answers 503), so a
                // wave of registrations never keeps people from logging in.
                let displaced = priority == Priority::Login && state.sign_ups.pop_back().is_some();
                if !displaced {
                    return Err(HashingError::Busy {
                        running: state.running,
                        queued: state.queued(),
                    });
                }
            }
            let (sender, receiver) = oneshot::channel();
            match priority {
                Priority::Login => state.logins.push_back(sender),
                Priority::SignUp => state.sign_ups.push_back(sender),
            }
            receiver
        };
        // The sender lives in the queue until a slot is handed over, or until a login
        // displaces this sign-up: dropped unsent, it means the queue was full.
        waiting.await.map_err(|_| HashingError::Busy {
            running: self.shared.concurrency,
            queued: self.shared.queue,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Occupies the hasher's slots with work that waits for `release`.
    async fn hold(
        hashing: &PasswordHashing,
        priority: Priority,
        release: &Arc<tokio::sync::Notify>,
        order: &Arc<Mutex<Vec<&'static str>>>,
        name: &'static str,
    ) -> Result<(), HashingError> {
        let (release, order) = (release.clone(), order.clone());
        let handle = tokio::runtime::Handle::current();
        hashing
            .run(priority, move || {
                order.lock().expect("order").push(name);
                handle.block_on(release.notified());
            })
            .await
    }

    async fn until(mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Releases held work until every task is done; each must have succeeded.
    async fn drain(
        tasks: Vec<tokio::task::JoinHandle<Result<(), HashingError>>>,
        release: &tokio::sync::Notify,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !tasks.iter().all(tokio::task::JoinHandle::is_finished) {
            assert!(tokio::time::Instant::now() < deadline, "the queue drains");
            release.notify_one();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for task in tasks {
            assert!(task.await.expect("joined").is_ok());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_at_most_the_concurrency_queues_the_rest_and_refuses_beyond_the_queue() {
        let hashing = PasswordHashing::new(2, 3);
        let release = Arc::new(tokio::sync::Notify::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for name in ["a", "b", "c", "d", "e"] {
            let (queue, release, order) = (hashing.clone(), release.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                hold(&queue, Priority::SignUp, &release, &order, name).await
            }));
            // Each joins the queue before the next one arrives, in this order.
            let expected = tasks.len();
            until(|| {
                let load = hashing.load();
                load.running + load.queued == expected
            })
            .await;
        }
        assert_eq!(
            hashing.load(),
            HashingLoad {
                running: 2,
                queued: 3,
                peak_running: 2,
                refused: 0
            }
        );
        let refused = hashing.hash(Priority::SignUp, "x").await;
        assert!(matches!(
            refused,
            Err(HashingError::Busy {
                running: 2,
                queued: 3
            })
        ));
        // Everyone waiting gets through once slots free up, never more than two at once.
        drain(tasks, &release).await;
        let load = hashing.load();
        assert_eq!(
            (load.running, load.queued, load.peak_running, load.refused),
            (0, 0, 2, 1)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logins_go_ahead_of_sign_ups() {
        let hashing = PasswordHashing::new(1, 10);
        let release = Arc::new(tokio::sync::Notify::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [
            ("running", Priority::SignUp),
            ("sign-up 1", Priority::SignUp),
            ("sign-up 2", Priority::SignUp),
            ("login", Priority::Login),
        ] {
            let (queue, release, order) = (hashing.clone(), release.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                hold(&queue, priority, &release, &order, name).await
            }));
            let expected = tasks.len();
            until(|| {
                let load = hashing.load();
                load.running + load.queued == expected
            })
            .await;
        }
        for _ in 0..4 {
            let started = order.lock().expect("order").len();
            release.notify_one();
            until(|| {
                order.lock().expect("order").len() > started
                    || tasks.iter().all(tokio::task::JoinHandle::is_finished)
            })
            .await;
        }
        for task in tasks {
            assert!(task.await.expect("joined").is_ok());
        }
        assert_eq!(
            *order.lock().expect("order"),
            vec!["running", "login", "sign-up 1", "sign-up 2"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_login_takes_the_place_of_the_latest_sign_up_in_a_full_queue() {
        let hashing = PasswordHashing::new(1, 2);
        let release = Arc::new(tokio::sync::Notify::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for name in ["running", "sign-up 1", "sign-up 2"] {
            let (queue, release, order) = (hashing.clone(), release.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                hold(&queue, Priority::SignUp, &release, &order, name).await
            }));
            let expected = tasks.len();
            until(|| {
                let load = hashing.load();
                load.running + load.queued == expected
            })
            .await;
        }
        let login = {
            let (queue, release, order) = (hashing.clone(), release.clone(), order.clone());
            tokio::spawn(
                async move { hold(&queue, Priority::Login, &release, &order, "login").await },
            )
        };
        let displaced = tasks.pop().expect("sign-up 2");
        assert!(matches!(
            displaced.await.expect("joined"),
            Err(HashingError::Busy { .. })
        ));
        tasks.push(login);
        drain(tasks, &release).await;
        assert_eq!(
            *order.lock().expect("order"),
            vec!["running", "login", "sign-up 1"]
        );
        assert_eq!(hashing.load().refused, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_that_gives_up_does_not_keep_a_slot() {
        let hashing = PasswordHashing::new(1, 5);
        let release = Arc::new(tokio::sync::Notify::new());
        let order = Arc::new(Mutex::new(Vec::new()));
        let running = {
            let (queue, release, order) = (hashing.clone(), release.clone(), order.clone());
            tokio::spawn(
                async move { hold(&queue, Priority::SignUp, &release, &order, "first").await },
            )
        };
        until(|| hashing.load().running == 1).await;
        let given_up = {
            let queue = hashing.clone();
            tokio::spawn(async move { queue.hash(Priority::Login, "x").await })
        };
        until(|| hashing.load().queued == 1).await;
        given_up.abort();
        release.notify_one();
        assert!(running.await.expect("joined").is_ok());
        // The abandoned turn was passed on: the slot is free again.
        until(|| hashing.load().running == 0).await;
        assert!(hashing
            .verify(Priority::Login, "x", "not a hash")
            .await
            .is_ok());
    }
}
