//! Background workers (none yet; `cargo loco generate worker` adds them here).
