mod auth;
mod cookies;
mod csrf;
mod expiry;
mod production;
mod redis;
