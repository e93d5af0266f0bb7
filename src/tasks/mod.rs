//! Operator commands, run with `cargo loco task NAME key:value`.

pub mod users_create;
