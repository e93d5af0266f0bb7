mod concurrency;
mod credentials;
mod fuzz;
mod redis_outage;
