pub mod charts;
pub mod session;
pub mod sessions;
