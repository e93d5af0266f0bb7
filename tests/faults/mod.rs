mod concurrency;
mod fuzz;
mod redis_outage;
