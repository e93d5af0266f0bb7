// A comment naming super::top::Top is prose, not an import.
use super::clock::{self as c};

pub struct Key(pub i64);

pub fn key() -> Key {
    let _ = "crate::sessions::top::Top";
    Key(c::now())
}
