mod requests;
mod stores;
mod support;
