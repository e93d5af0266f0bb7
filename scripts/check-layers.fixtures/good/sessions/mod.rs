//! A tree that keeps its order: every kind of path the check reads, all pointing down.
//!
//! - Layer 1 (leaves): `clock.rs`, `keys.rs`, `inner/leaf.rs`
//! - Layer 2 (components): `inner/mod.rs`, `store.rs`
//! - Layer 3 (service): `mod.rs`
//! - Layer 4 (on top): `top.rs`

pub mod clock;
pub mod inner;
pub mod keys;
pub mod store;
pub mod top;

pub use self::keys::Key;
use self::store::Store;

pub struct Service(Store);

pub fn stamp() -> i64 {
    clock::now()
}
