pub mod sessions;
pub mod view_engine;
