//! What pages show, shaped for the templates: charts, times and devices in words.

pub mod admin;
pub mod charts;
pub mod device;
pub mod session;
pub mod sessions;
pub mod time;
