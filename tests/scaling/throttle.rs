//! The login throttle on a Redis Cluster whose slots move under it: its counters follow
//! `-ASK` and `-MOVED` like session records, so logins are judged (never a 503) and
//! counted right while the slot holding the account's counter is migrated.

use std::{
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use serde_json::json;
use serial_test::serial;

use super::on_redis;
use crate::support::{redis::redis_cli, redis_topology::RedisCluster, TestApp};

const EMAIL: &str = "ada@example.com";
const RIGHT: &str = "correct horse battery";
const WRONG: &str = "a wrong guess";
/// Failed logins of the account allowed per window: more than the rounds will make, so
/// every answer of theirs is a judged one.
const LIMIT: usize = 1000;

/// One login through a fresh browser (no cookie of an earlier attempt); its status.
async fn attempt(app: &TestApp, password: &str) -> u16 {
    app.log_in(&app.browser(), EMAIL, password, false)
        .await
        .status_code()
        .as_u16()
}

/// `redis-cli ARGS` on the node at `port`, off the async workers so that the logins go
/// on meanwhile; its output, which must be `expect` when given.
async fn cli(port: u16, args: &[&str], expect: Option<&str>) -> String {
    let owned: Vec<String> = args.iter().map(ToString::to_string).collect();
    let output = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = owned.iter().map(String::as_str).collect();
        redis_cli(port, &args)
    })
    .await
    .expect("redis-cli task")
    .unwrap_or_else(|| panic!("redis-cli {args:?} failed on port {port}"));
    if let Some(expected) = expect {
        assert_eq!(output, expected, "redis-cli {args:?} on port {port}");
    }
    output
}

/// Logs in round after round until `done`: the right password (303: it gives back its
/// own attempt and clears nothing), then a wrong one (422: counted). So the account's
/// counter holds exactly the number of rounds ended, plus the failure made before them;
/// one attempt counted twice, or a give-back that did not reach the counter, shows in its
/// value. While `hold` is set, the rounds wait between two of them, with `held` set. Every
/// answer that was not the expected one is returned.
async fn log_in_rounds(app: &TestApp, rounds: &AtomicUsize, pause: &Pause) -> Vec<String> {
    let mut unexpected = Vec::new();
    while !pause.done.load(Ordering::Acquire) {
        let round = rounds.load(Ordering::Acquire);
        let status = attempt(app, RIGHT).await;
        if status != 303 {
            unexpected.push(format!("round {round}, right password: {status}"));
        }
        let status = attempt(app, WRONG).await;
        if status != 422 {
            unexpected.push(format!("round {round}, wrong password: {status}"));
        }
        rounds.fetch_add(1, Ordering::AcqRel);
        while pause.hold.load(Ordering::Acquire) {
            pause.held.store(true, Ordering::Release);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        pause.held.store(false, Ordering::Release);
    }
    unexpected
}

/// How the migration steps meet the login rounds.
#[derive(Default)]
struct Pause {
    hold: AtomicBool,
    held: AtomicBool,
    done: AtomicBool,
}

impl Pause {
    /// Holds the rounds between two of them (at most 120 s to get there).
    async fn hold(&self) {
        self.hold.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.held.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the login rounds did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn release(&self) {
        self.hold.store(false, Ordering::Release);
    }
}

/// Waits until two more rounds than `since` have ended, so that at least one whole round
/// ran in the state the cluster is in now.
async fn two_more_rounds(rounds: &AtomicUsize, since: usize, stage: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while rounds.load(Ordering::Acquire) < since + 2 {
        assert!(Instant::now() < deadline, "no login round ended {stage}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[serial(redis_topology)]
async fn logins_through_a_live_migration_of_the_throttle_counters_slot_are_judged_and_counted() {
    let cluster = RedisCluster::start();
    // The default command timeout (1 s): MIGRATE and the fsync of nodes.conf after each
    // CLUSTER SETSLOT stall a node for a while on a busy disk; a stall is not the point.
    let mut settings = on_redis(&cluster.url());
    settings.sessions["redis"]["command_timeout_ms"] = 1000.into();
    // The IP's counter only grows here (a success gives back its own attempt only).
    settings.sessions["throttle"] =
        json!({"account_failures": LIMIT, "ip_failures": 1_000_000, "window_secs": 3600});
    let app = TestApp::with(settings).await;
    app.create_user(EMAIL, false).await;
    assert_eq!(attempt(&app, WRONG).await, 422);

    // The account's counter, wherever it is.
    let found: Vec<(usize, String)> = cluster
        .masters
        .iter()
        .enumerate()
        .flat_map(|(index, master)| {
            master
                .cli(&["--scan", "--pattern", "tessera:throttle:account*"])
                .unwrap_or_default()
                .lines()
                .map(|key| (index, key.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let [(from, key)] = found.as_slice() else {
        panic!("one account counter expected: {found:?}");
    };
    let (from, key) = (*from, key.clone());
    let to = (from + 1) % cluster.masters.len();
    let (source, target) = (cluster.masters[from].port, cluster.masters[to].port);
    let slot = cluster.masters[from]
        .cli(&["CLUSTER", "KEYSLOT", &key])
        .expect("KEYSLOT");
    let source_id = RedisCluster::node_id(&cluster.masters[from]);
    let target_id = RedisCluster::node_id(&cluster.masters[to]);
    let others: Vec<u16> = cluster
        .masters
        .iter()
        .map(|m| m.port)
        .filter(|&port| port != source && port != target)
        .collect();
    let rounds = AtomicUsize::new(0);
    let pause = Pause::default();
    // What `redis-cli --cluster reshard` does to one slot, each step followed by login
    // rounds until two ended in the state it left.
    let migration = async {
        two_more_rounds(&rounds, 0, "before the migration").await;

        // Between two rounds (the counter holds one failure per round, plus the first):
        // the slot starts migrating and its keys, the counter among them, move to the new
        // owner. The old owner now answers -ASK for them, and the new one serves them
        // only after ASKING.
        pause.hold().await;
        assert_eq!(
            cli(source, &["GET", &key], None).await,
            (rounds.load(Ordering::Acquire) + 1).to_string(),
            "the counter, before it moves"
        );
        cli(
            target,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id],
            Some("OK"),
        )
        .await;
        cli(
            source,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id],
            Some("OK"),
        )
        .await;
        let target_port = target.to_string();
        let mut moved = Vec::new();
        loop {
            let keys = cli(source, &["CLUSTER", "GETKEYSINSLOT", &slot, "100"], None).await;
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            moved.extend(keys.iter().map(ToString::to_string));
            let mut migrate = vec![
                "MIGRATE",
                "127.0.0.1",
                &target_port,
                "",
                "0",
                "5000",
                "KEYS",
            ];
            migrate.extend(keys);
            cli(source, &migrate, Some("OK")).await;
        }
        assert!(moved.contains(&key), "the counter moved: {moved:?}");
        let since = rounds.load(Ordering::Acquire);
        pause.release();
        two_more_rounds(&rounds, since, "while the slot was migrating").await;

        // The slot is handed over: the old owner answers -MOVED.
        let since = rounds.load(Ordering::Acquire);
        for port in [target, source].into_iter().chain(others.iter().copied()) {
            cli(
                port,
                &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id],
                Some("OK"),
            )
            .await;
        }
        two_more_rounds(&rounds, since, "after the slot was handed over").await;
        pause.done.store(true, Ordering::Release);
    };
    let ((), unexpected) = tokio::join!(migration, log_in_rounds(&app, &rounds, &pause));
    let rounds = rounds.load(Ordering::Acquire);
    eprintln!(
        "throttle migration: {rounds} login rounds, {} unexpected answers",
        unexpected.len()
    );
    assert!(unexpected.is_empty(), "{unexpected:#?}");

    // The counter lives on the new owner, every failure counted once, and it still stops
    // the account at its limit: once it holds the limit, the next attempt is refused.
    assert_eq!(cluster.owner_of(&key), Some(to), "the counter moved");
    assert_eq!(
        cluster.masters[to].cli(&["GET", &key]).as_deref(),
        Some((rounds + 1).to_string().as_str()),
        "every failure counted once"
    );
    assert_eq!(
        cluster.masters[to]
            .cli(&["SET", &key, &LIMIT.to_string(), "KEEPTTL"])
            .as_deref(),
        Some("OK")
    );
    assert_eq!(attempt(&app, WRONG).await, 429, "over the limit");
    assert_eq!(
        attempt(&app, RIGHT).await,
        429,
        "even the right password waits"
    );
}
