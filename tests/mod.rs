mod browser;
mod faults;
mod models;
mod ops;
mod requests;
mod stores;
mod support;
mod tasks;
