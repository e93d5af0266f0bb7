//! Reading the request's cookies by name.
//!
//! A leaf: it imports no other part of the session layer.

use axum::http::{header::COOKIE, HeaderMap};
use cookie::Cookie;

/// The values of the cookies named `name` in the request's `Cookie` headers, in order.
/// Headers that are not text and pairs that do not parse are skipped: a cookie the app
/// cannot read is no cookie, never an error.
pub fn request_cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| Cookie::split_parse(value).filter_map(Result::ok))
        .filter(move |cookie| cookie.name() == name)
        .filter_map(|cookie| cookie.value_raw())
}
