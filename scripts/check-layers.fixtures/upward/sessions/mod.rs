//! A leaf reaching up.
//!
//! - Layer 1 (leaves): `low.rs`
//! - Layer 2 (on top): `high.rs`, `mod.rs`

pub mod high;
pub mod low;
