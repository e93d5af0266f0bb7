mod collisions;
mod file;
mod listing;
mod redis;
