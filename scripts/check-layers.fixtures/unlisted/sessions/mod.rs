//! A file the layer list forgets.
//!
//! - Layer 1 (leaves): `mod.rs`

pub mod stray;
