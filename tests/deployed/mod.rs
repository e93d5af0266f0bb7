//! The shipped production config behind nginx terminating TLS, driven by clients from
//! distinct loopback addresses (`support::nginx`).

mod addresses;
mod cookies;
mod forms;
mod throttle;
