//! A library file that imports a page.
//!
//! - Layer 1 (leaves): `lib.rs`, `mod.rs`

pub mod lib;
