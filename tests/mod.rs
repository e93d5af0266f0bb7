mod faults;
mod requests;
mod stores;
mod support;
