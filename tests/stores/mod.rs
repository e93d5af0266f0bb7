mod file;
mod redis;
