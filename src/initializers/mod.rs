pub mod sessions;
pub mod static_cache;
pub mod view_engine;
