//! Two files of one layer that import each other.
//!
//! - Layer 1 (leaves): `a.rs`, `b.rs`
//! - Layer 2 (service): `mod.rs`

pub mod a;
pub mod b;
