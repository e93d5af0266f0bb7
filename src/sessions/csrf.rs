//! CSRF tokens, two kinds:
//!
//! - **Synchronizer tokens** for logged-in sessions: a random token kept in the session
//!   record, sent back by every form, compared in constant time.
//! - **Signed double-submit tokens** for the login and register forms, which anonymous
//!   visitors use: those visitors get no session record (a crawler must not fill the
//!   store), so the form token is an HMAC of a random nonce kept in a separate cookie
//!   (HttpOnly, `SameSite=Strict`, `__Host-` prefixed when the session cookie is). A forged
//!   POST can neither read the cookie nor compute the token without the server's secret,
//!   and a nonce planted from a sibling host is worthless without its signature.
//!
//! `SameSite` on the cookies is the second line of defence, not the only one.

use axum::http::{header::COOKIE, HeaderMap};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The form field every state-changing request carries.
pub const FIELD: &str = "csrf_token";

/// A fresh token: 128 bits from the OS's CSPRNG (OWASP's floor for unguessable tokens),
/// URL-safe base64. Every session record carries one, so every byte counts.
#[must_use]
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `submitted` is the session's token, in time that does not depend on where they
/// differ. An empty expected token never matches.
#[must_use]
pub fn tokens_match(expected: &str, submitted: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// The form cookie's name, with the same prefix as the session cookie's (`__Host-` in
/// production), so that it gets the same protection from the browser.
#[must_use]
pub fn form_cookie_name(session_cookie_name: &str) -> String {
    let prefix = ["__Host-", "__Secure-"]
        .into_iter()
        .find(|p| session_cookie_name.starts_with(p))
        .unwrap_or_default();
    format!("{prefix}csrf")
}

/// The nonce in the request's form cookie, if it is one this server could have issued
/// (22 URL-safe base64 characters); anything else is ignored.
#[must_use]
pub fn form_nonce(headers: &HeaderMap, cookie_name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| Cookie::split_parse(value).filter_map(Result::ok))
        .filter(|cookie| cookie.name() == cookie_name)
        .map(|cookie| cookie.value().to_string())
        .find(|value| {
            value.len() == 22
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The token a form carries for `nonce`: HMAC-SHA256 under the session secret,
/// domain-separated from every other use of the secret, cut to 128 bits.
#[must_use]
pub fn form_token(secret: &[u8], nonce: &str) -> String {
    // HMAC takes keys of any length; the error branch cannot happen.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(b"tessera-csrf-form\0");
    mac.update(nonce.as_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

/// The cookie holding `nonce`: HttpOnly, `SameSite=Strict`, host-only, for every path,
/// gone when the browser closes.
#[must_use]
pub fn form_cookie(name: &str, nonce: &str, secure: bool) -> Cookie<'static> {
    Cookie::build((name.to_string(), nonce.to_string()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(secure)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_tokens_are_bound_to_their_nonce_and_secret() {
        let nonce = new_token();
        let token = form_token(b"secret one", &nonce);
        assert!(tokens_match(&token, &form_token(b"secret one", &nonce)));
        assert!(!tokens_match(&token, &form_token(b"secret two", &nonce)));
        assert!(!tokens_match(
            &token,
            &form_token(b"secret one", &new_token())
        ));
        assert_eq!(form_cookie_name("__Host-session"), "__Host-csrf");
        assert_eq!(form_cookie_name("session"), "csrf");
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            format!("csrf=../x; csrf={nonce}").parse().expect("header"),
        );
        assert_eq!(form_nonce(&headers, "csrf"), Some(nonce));
    }

    #[test]
    fn tokens_are_unique_and_compared_exactly() {
        let token = new_token();
        assert_eq!(token.len(), 22);
        assert_ne!(token, new_token());
        assert!(tokens_match(&token, &token));
        assert!(!tokens_match(&token, &token[1..]));
        assert!(!tokens_match("", ""));
    }
}
