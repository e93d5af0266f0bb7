use super::{high::High};

pub fn high() -> High {
    High
}
