use super::{keys::Key, Service};

pub struct Top(pub Service, pub Key);

pub fn stamp() -> i64 {
    super::stamp() + crate::sessions::clock::now()
}
