pub mod api;
pub mod auth;
pub mod dashboard;
pub mod extract;
