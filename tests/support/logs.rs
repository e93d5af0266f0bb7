//! The app's log lines, captured for the whole test binary and formatted as the app
//! formats them (`tessera::logger`, compact): a line written while a request is served
//! ends with `request_id=…`.
//!
//! One process-wide subscriber, installed on first use: a thread-local one
//! (`set_default`) lost the app's lines at random while other tests ran in parallel.
//! Tests find their own lines in it by something only they log (a request ID, a
//! session ref).

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use loco_rs::logger::Format;
use tracing_subscriber::{filter::LevelFilter, layer::SubscriberExt};

/// Every log line written since the capture was installed.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).to_string()
    }

    /// The lines that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

/// The capture, installed on first use (debug level, every crate).
pub fn captured() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let logs = Captured::default();
            let writer = logs.clone();
            let subscriber = tracing_subscriber::registry()
                .with(tessera::logger::layer(
                    move || writer.clone(),
                    &Format::Compact,
                    false,
                ))
                .with(LevelFilter::DEBUG);
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the tests");
            logs
        })
        .clone()
}
