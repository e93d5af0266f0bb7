pub mod leaf;

pub use self::leaf::Leaf;
use super::{clock, Key};

pub fn make() -> (Leaf, Key, i64) {
    (Leaf, Key(0), clock::now())
}
