pub mod app;
pub mod controllers;
pub mod errors;
pub mod initializers;
pub mod models;
pub mod sessions;
pub mod tasks;
pub mod workers;
