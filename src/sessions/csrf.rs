//! CSRF tokens, two kinds:
//!
//! - **Synchronizer tokens** for logged-in sessions: a random token kept in the session
//!   record, sent back by every form, compared in constant time.
//! - **Signed double-submit tokens** ([`FormTokens`]) for the login and register forms,
//!   which anonymous visitors use: those visitors get no session record (a crawler must
//!   not fill the store), so the form token is an HMAC of a random nonce and its issue
//!   time, both kept in a separate cookie that the server signs (HttpOnly,
//!   `SameSite=Strict`, `__Host-` prefixed whenever it is `Secure`). A forged POST can
//!   neither read the cookie nor compute the token without the server's secret; a cookie
//!   the server did not sign (a nonce planted from a sibling host, an issue time moved
//!   forward) is not honoured; and the pair expires after the configured lifetime.
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

/// How far ahead of this server's clock a form cookie's issue time may be (another
/// instance's clock, a little fast) and still count.
const CLOCK_SKEW_SECS: i64 = 300;

/// The signed double-submit pair of the anonymous forms, under the session secret.
///
/// The form cookie holds a random nonce, the time it was issued and a signature of both
/// (purpose `tessera-csrf-cookie`): only a cookie this server issued is honoured, and its
/// issue time cannot be moved. The form's token is a second MAC of the nonce and the
/// time (purpose `tessera-csrf-form`) with the time in front, so it lives exactly as long
/// as its cookie. Every page view of one browser reuses a live cookie, so a second tab
/// gets the same token; after `lifetime` seconds both are refused.
///
/// ```
/// use tessera::sessions::csrf::FormTokens;
/// let tokens = FormTokens::new(b"a secret of at least thirty-two bytes", 7200, true);
/// let cookie = tokens.issue(1_790_000_000);
/// let token = tokens.token(&cookie);
/// assert_eq!(tokens.cookie_name(), "__Host-csrf");
/// assert!(token.starts_with("1790000000."));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FormTokens<'a> {
    secret: &'a [u8],
    lifetime_secs: i64,
    secure: bool,
}

/// A form cookie this server issued: its nonce and when it was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormCookie {
    nonce: String,
    issued_at: i64,
}

impl<'a> FormTokens<'a> {
    /// Tokens signed with `secret` that live `lifetime_secs`; `secure` when the session
    /// cookie is `Secure` (then the form cookie is too, and `__Host-` prefixed).
    #[must_use]
    pub fn new(secret: &'a [u8], lifetime_secs: u64, secure: bool) -> Self {
        Self {
            secret,
            lifetime_secs: i64::try_from(lifetime_secs).unwrap_or(i64::MAX),
            secure,
        }
    }

    /// `__Host-csrf` whenever the cookie is `Secure` (production), whatever the session
    /// cookie is called: no sibling host can plant or shadow it. `csrf` on plain http.
    #[must_use]
    pub const fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-csrf"
        } else {
            "csrf"
        }
    }

    /// A new cookie, issued at `now`.
    #[must_use]
    pub fn issue(&self, now: i64) -> FormCookie {
        FormCookie {
            nonce: new_token(),
            issued_at: now,
        }
    }

    /// The live cookie this server issued that the request carries, if it carries one:
    /// well formed, signed by this server, issued no more than `lifetime` ago.
    #[must_use]
    pub fn read(&self, headers: &HeaderMap, now: i64) -> Option<FormCookie> {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| Cookie::split_parse(value).filter_map(Result::ok))
            .filter(|cookie| cookie.name() == self.cookie_name())
            .find_map(|cookie| self.verified(cookie.value()))
            .filter(|cookie| self.is_live(cookie, now))
    }

    /// The token a form carries for `cookie`: `{issued_at}.{MAC}`.
    #[must_use]
    pub fn token(&self, cookie: &FormCookie) -> String {
        format!(
            "{}.{}",
            cookie.issued_at,
            self.mac(b"tessera-csrf-form\0", cookie)
        )
    }

    /// Whether `submitted` is the token of `cookie` (one [`Self::read`] found live), in
    /// constant time.
    #[must_use]
    pub fn accepts(&self, cookie: &FormCookie, submitted: &str) -> bool {
        tokens_match(&self.token(cookie), submitted)
    }

    /// The `Set-Cookie` for `cookie`: HttpOnly, `SameSite=Strict`, host-only, for every
    /// path, dropped by the browser when the token expires.
    #[must_use]
    pub fn set_cookie(&self, cookie: &FormCookie, now: i64) -> Cookie<'static> {
        let value = format!(
            "{}.{}.{}",
            cookie.nonce,
            cookie.issued_at,
            self.mac(b"tessera-csrf-cookie\0", cookie)
        );
        let left = cookie
            .issued_at
            .saturating_add(self.lifetime_secs)
            .saturating_sub(now)
            .max(0);
        Cookie::build((self.cookie_name(), value))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .secure(self.secure)
            .max_age(cookie::time::Duration::seconds(left))
            .build()
    }

    /// `nonce.issued_at.signature`, if the signature is this server's.
    fn verified(&self, value: &str) -> Option<FormCookie> {
        let mut parts = value.split('.');
        let (nonce, issued_at, signature) = (parts.next()?, parts.next()?, parts.next()?);
        let well_formed = parts.next().is_none()
            && is_token(nonce)
            && is_token(signature)
            && (1..=12).contains(&issued_at.len())
            && issued_at.bytes().all(|b| b.is_ascii_digit());
        if !well_formed {
            return None;
        }
        let cookie = FormCookie {
            nonce: nonce.to_string(),
            issued_at: issued_at.parse().ok()?,
        };
        tokens_match(&self.mac(b"tessera-csrf-cookie\0", &cookie), signature).then_some(cookie)
    }

    fn is_live(&self, cookie: &FormCookie, now: i64) -> bool {
        cookie.issued_at <= now.saturating_add(CLOCK_SKEW_SECS)
            && now < cookie.issued_at.saturating_add(self.lifetime_secs)
    }

    /// HMAC-SHA256 of the nonce and issue time under the secret, for one `purpose`, cut
    /// to 128 bits.
    fn mac(&self, purpose: &[u8], cookie: &FormCookie) -> String {
        // HMAC takes keys of any length; the error branch cannot happen.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.secret) else {
            return String::new();
        };
        mac.update(purpose);
        mac.update(cookie.nonce.as_bytes());
        mac.update(b"\0");
        mac.update(&cookie.issued_at.to_be_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }
}

/// 22 URL-safe base64 characters: 128 bits, the shape of every token this module makes.
fn is_token(value: &str) -> bool {
    value.len() == 22
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000;

    fn tokens(secret: &[u8]) -> FormTokens<'_> {
        FormTokens::new(secret, 7200, false)
    }

    /// The request headers of a browser holding `cookie`.
    fn holding(tokens: &FormTokens<'_>, cookie: &FormCookie) -> HeaderMap {
        let set = tokens.set_cookie(cookie, NOW);
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            format!("other=1; {}={}", set.name(), set.value())
                .parse()
                .expect("header"),
        );
        headers
    }

    /// Whether `submitted` fits the live cookie in `headers` at `now`, as a POST is checked.
    fn verify(tokens: &FormTokens<'_>, headers: &HeaderMap, submitted: &str, now: i64) -> bool {
        tokens
            .read(headers, now)
            .is_some_and(|cookie| tokens.accepts(&cookie, submitted))
    }

    #[test]
    fn form_tokens_are_bound_to_their_cookie_and_secret() {
        let ours = tokens(b"secret one");
        let cookie = ours.issue(NOW);
        let headers = holding(&ours, &cookie);
        let token = ours.token(&cookie);
        assert_eq!(ours.read(&headers, NOW + 10), Some(cookie.clone()));
        assert!(verify(&ours, &headers, &token, NOW + 10));
        // The same token on every read: a second tab gets it too.
        assert_eq!(
            ours.read(&headers, NOW + 60).map(|c| ours.token(&c)),
            Some(token.clone())
        );
        // Another secret neither honours the cookie nor makes the token.
        let theirs = tokens(b"secret two");
        assert_eq!(theirs.read(&headers, NOW), None);
        assert!(!tokens_match(&token, &theirs.token(&cookie)));
        // Another cookie's token does not fit.
        assert!(!verify(&ours, &headers, &ours.token(&ours.issue(NOW)), NOW));
        assert!(!verify(&ours, &headers, "", NOW));
    }

    #[test]
    fn a_cookie_the_server_did_not_sign_is_not_honoured() {
        let ours = tokens(b"secret one");
        let cookie = ours.issue(NOW);
        let set = ours.set_cookie(&cookie, NOW);
        let value = set.value().to_string();
        let (nonce_and_time, signature) = value.rsplit_once('.').expect("three parts");
        let forged = [
            // A bare nonce, as the old cookie held it, or any nonce a request brings.
            new_token(),
            cookie.nonce.clone(),
            // The issue time moved forward (to live longer) under the old signature.
            format!("{}.{}.{signature}", cookie.nonce, NOW + 3600),
            format!("{nonce_and_time}.{}", new_token()),
            format!("{value}.x"),
            format!("../{value}"),
            String::new(),
        ];
        for value in forged {
            let mut headers = HeaderMap::new();
            headers.insert(COOKIE, format!("csrf={value}").parse().expect("header"));
            assert_eq!(ours.read(&headers, NOW), None, "{value}");
        }
    }

    #[test]
    fn a_form_cookie_expires_with_its_lifetime() {
        let ours = tokens(b"secret one");
        let cookie = ours.issue(NOW);
        let headers = holding(&ours, &cookie);
        let token = ours.token(&cookie);
        assert!(verify(&ours, &headers, &token, NOW + 7199));
        assert!(!verify(&ours, &headers, &token, NOW + 7200));
        assert_eq!(ours.read(&headers, NOW + 7200), None);
        // Issued in the future beyond any clock skew: not this server's doing.
        assert_eq!(ours.read(&headers, NOW - CLOCK_SKEW_SECS - 1), None);
        assert!(ours.read(&headers, NOW - 60).is_some());
        // The browser drops it when it expires.
        let set = ours.set_cookie(&cookie, NOW + 200);
        assert_eq!(set.max_age(), Some(cookie::time::Duration::seconds(7000)));
    }

    #[test]
    fn the_form_cookie_is_host_prefixed_whenever_it_is_secure() {
        let secure = FormTokens::new(b"s", 7200, true);
        assert_eq!(secure.cookie_name(), "__Host-csrf");
        let set = secure.set_cookie(&secure.issue(NOW), NOW);
        assert_eq!(set.secure(), Some(true));
        assert_eq!(set.path(), Some("/"));
        assert_eq!(set.domain(), None);
        assert_eq!(set.http_only(), Some(true));
        assert_eq!(set.same_site(), Some(SameSite::Strict));
        assert_eq!(tokens(b"s").cookie_name(), "csrf");
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
