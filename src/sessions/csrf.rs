//! Synchronizer CSRF tokens: a random token kept in the session, sent back by every form,
//! compared in constant time. `SameSite=Lax` on the cookie is the second line of defence,
//! not the only one.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;
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

#[cfg(test)]
mod tests {
    use super::*;

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
