//! Device cookies: OWASP's "Slow Down Online Guessing Attacks with Device Cookies".
//!
//! A throttle that counts failures per account lets anyone who knows an email lock its
//! owner out, for as long as they keep guessing. So a browser that logged in to an account
//! once gets a device cookie for it, and its later attempts on that account are limited per
//! device cookie only ([`super::throttle`]): a stranger hammering the account from anywhere
//! uses up the budget of unknown clients, never the owner's known browser.
//!
//! The cookie names nobody: it holds a keyed hash of the user id and the account's
//! credential generation (so a password change or a disable makes every earlier cookie
//! stranger's again), a random nonce (the counter the cookie is throttled by), the time it
//! was issued, and a signature over all three. Its lifetime is fixed at issue, whatever
//! "remember me" says; logging out keeps it.
//!
//! ```
//! use tessera::sessions::{device::DeviceCookies, keys::SessionSecret};
//! let devices = DeviceCookies::new(
//!     &SessionSecret::new(b"a-secret-of-at-least-thirty-two-bytes".to_vec()),
//!     false,
//!     std::time::Duration::from_secs(180 * 24 * 3600),
//! );
//! let cookie = devices.issue(7, 0, 1_700_000_000);
//! let token = devices.parse(cookie.value(), 1_700_000_100).expect("a valid cookie");
//! assert!(devices.recognises(&token, 7, 0));
//! assert!(!devices.recognises(&token, 7, 1), "not after a password change");
//! assert!(!devices.recognises(&token, 8, 0), "not for another account");
//! ```

use std::time::Duration;

use axum::http::HeaderMap;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{clock::UnixTime, cookies::request_cookies, keys::SessionSecret};

/// Bytes of the account hash, the nonce and the signature (128 bits each).
const PART: usize = 16;
/// subject | nonce | issued at (big-endian seconds) | signature.
const TOKEN_LEN: usize = PART + PART + 8 + PART;

/// A device cookie whose signature checked out and which has not expired. Which account it
/// is good for is [`DeviceCookies::recognises`]'s question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceToken {
    subject: [u8; PART],
    nonce: [u8; PART],
    issued_at: UnixTime,
}

impl DeviceToken {
    /// What the throttle counts this device's failures under: its nonce, never the user.
    #[must_use]
    pub fn counter_name(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.nonce)
    }

    #[must_use]
    pub const fn issued_at(&self) -> UnixTime {
        self.issued_at
    }
}

/// Issues and checks the device cookies of one app.
#[derive(Clone)]
pub struct DeviceCookies {
    mac: Hmac<Sha256>,
    name: &'static str,
    secure: bool,
    lifetime: Duration,
}

impl std::fmt::Debug for DeviceCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCookies")
            .field("name", &self.name)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl DeviceCookies {
    /// `secure`: sent over TLS only, and then named with the `__Host-` prefix (host-only,
    /// every path, no `Domain`), so no sibling host can plant or overwrite it.
    #[must_use]
    pub fn new(secret: &SessionSecret, secure: bool, lifetime: Duration) -> Self {
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        Self {
            mac,
            name: if secure { "__Host-device" } else { "device" },
            secure,
            lifetime,
        }
    }

    /// The cookie's name: `__Host-device` over TLS, else `device`.
    #[must_use]
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// A new device cookie for the account `user_id` at credential generation
    /// `generation`, issued at `now`.
    #[must_use]
    pub fn issue(&self, user_id: i64, generation: i64, now: UnixTime) -> Cookie<'static> {
        let mut token = [0u8; TOKEN_LEN];
        token[..PART].copy_from_slice(&self.subject(user_id, generation));
        rand::rngs::OsRng.fill_bytes(&mut token[PART..2 * PART]);
        token[2 * PART..2 * PART + 8].copy_from_slice(&now.to_be_bytes());
        let signature = self.signature(&token[..TOKEN_LEN - PART]);
        token[TOKEN_LEN - PART..].copy_from_slice(&signature);
        let max_age = cookie::time::Duration::seconds(
            i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX),
        );
        Cookie::build((self.name, URL_SAFE_NO_PAD.encode(token)))
            .http_only(true)
            .secure(self.secure)
            // Only the login and password forms of this site ever need it.
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(max_age)
            .build()
    }

    /// The request's device cookie, if it carries one this app issued that has not
    /// expired at `now`. Anything else (garbage, a forged or altered value, an old one) is
    /// no device cookie at all.
    #[must_use]
    pub fn from_headers(&self, headers: &HeaderMap, now: UnixTime) -> Option<DeviceToken> {
        request_cookies(headers, self.name).find_map(|value| self.parse(value, now))
    }

    /// Checks one cookie value.
    #[must_use]
    pub fn parse(&self, value: &str, now: UnixTime) -> Option<DeviceToken> {
        // Decoding bounds the work: a value of any other length is refused first.
        if value.len() != (TOKEN_LEN * 4).div_ceil(3) {
            return None;
        }
        let mut token = [0u8; TOKEN_LEN];
        let decoded = URL_SAFE_NO_PAD.decode_slice(value, &mut token).ok()?;
        if decoded != TOKEN_LEN {
            return None;
        }
        let (signed, signature) = token.split_at(TOKEN_LEN - PART);
        if !bool::from(self.signature(signed).ct_eq(signature)) {
            return None;
        }
        let mut issued_at = [0u8; 8];
        issued_at.copy_from_slice(&token[2 * PART..2 * PART + 8]);
        let issued_at = i64::from_be_bytes(issued_at);
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX);
        // A cookie from the future was not issued by this clock: refuse it too.
        if issued_at > now.saturating_add(60) || now >= issued_at.saturating_add(lifetime) {
            return None;
        }
        let mut subject = [0u8; PART];
        subject.copy_from_slice(&token[..PART]);
        let mut nonce = [0u8; PART];
        nonce.copy_from_slice(&token[PART..2 * PART]);
        Some(DeviceToken {
            subject,
            nonce,
            issued_at,
        })
    }

    /// Whether `token` was issued to a browser that logged in to `user_id` at the account's
    /// current credential `generation`.
    #[must_use]
    pub fn recognises(&self, token: &DeviceToken, user_id: i64, generation: i64) -> bool {
        bool::from(self.subject(user_id, generation).ct_eq(&token.subject))
    }

    fn subject(&self, user_id: i64, generation: i64) -> [u8; PART] {
        let mut mac = self.mac.clone();
        mac.update(b"tessera-device-subject\0");
        mac.update(&user_id.to_be_bytes());
        mac.update(&generation.to_be_bytes());
        truncate(&mac.finalize().into_bytes())
    }

    fn signature(&self, signed: &[u8]) -> [u8; PART] {
        let mut mac = self.mac.clone();
        mac.update(b"tessera-device-cookie\0");
        mac.update(signed);
        truncate(&mac.finalize().into_bytes())
    }
}

fn truncate(digest: &[u8]) -> [u8; PART] {
    let mut out = [0u8; PART];
    out.copy_from_slice(&digest[..PART]);
    out
}

#[cfg(test)]
mod tests {
    use axum::http::{header::COOKIE, HeaderValue};

    use super::*;

    const DAY: i64 = 24 * 3600;

    fn devices(secret: &str) -> DeviceCookies {
        DeviceCookies::new(
            &SessionSecret::new(secret.as_bytes().to_vec()),
            true,
            Duration::from_secs(180 * 24 * 3600),
        )
    }

    #[test]
    fn a_cookie_names_no_user_and_is_good_for_its_account_and_generation_only() {
        let devices = devices("a-secret-of-at-least-thirty-two-bytes");
        let cookie = devices.issue(42, 3, 1_000 * DAY);
        assert_eq!(cookie.name(), "__Host-device");
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Strict));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.domain(), None);
        assert_eq!(
            cookie.max_age(),
            Some(cookie::time::Duration::days(180)),
            "a fixed lifetime"
        );
        assert!(!cookie.value().contains("42"));
        let token = devices
            .parse(cookie.value(), 1_000 * DAY + 5)
            .expect("valid");
        assert!(devices.recognises(&token, 42, 3));
        assert!(!devices.recognises(&token, 42, 4));
        assert!(!devices.recognises(&token, 41, 3));
        let again = devices.issue(42, 3, 1_000 * DAY);
        assert_ne!(
            cookie.value(),
            again.value(),
            "every cookie has its own nonce"
        );
    }

    #[test]
    fn forged_altered_foreign_and_expired_cookies_are_no_cookie() {
        let devices = devices("a-secret-of-at-least-thirty-two-bytes");
        let now = 1_000 * DAY;
        let value = devices.issue(1, 0, now).value().to_string();
        assert!(devices.parse(&value, now + 179 * DAY).is_some());
        assert!(devices.parse(&value, now + 180 * DAY).is_none(), "expired");
        assert!(
            devices.parse(&value, now - DAY).is_none(),
            "from the future"
        );
        let other = devices_of_another_app();
        assert!(other.parse(&value, now).is_none(), "another secret");
        let mut altered = value.clone().into_bytes();
        altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).expect("ascii");
        assert!(devices.parse(&altered, now).is_none(), "altered");
        for garbage in [
            "",
            "x",
            "../../etc/passwd",
            &value[1..],
            &format!("{value}A"),
            &"é".repeat(75),
        ] {
            assert!(devices.parse(garbage, now).is_none(), "{garbage}");
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("__Host-device=junk; __Host-device={value}"))
                .expect("header"),
        );
        assert!(devices.from_headers(&headers, now).is_some());
    }

    fn devices_of_another_app() -> DeviceCookies {
        devices("another-secret-of-at-least-32-bytes!!!!")
    }
}
