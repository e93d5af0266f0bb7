pub mod account;
pub mod admin;
pub mod api;
pub mod auth;
pub mod dashboard;
pub mod extract;
pub mod platforms;
pub mod sessions;
