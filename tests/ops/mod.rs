mod alerts;
mod database_store;
mod health;
mod metrics;
