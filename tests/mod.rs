mod faults;
mod ops;
mod requests;
mod stores;
mod support;
mod tasks;
