mod collisions;
mod file;
mod redis;
