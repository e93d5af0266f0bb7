//! The client's address: one place, trusting only the proxies the operator named.
//!
//! Behind a reverse proxy every connection comes from the proxy, and the client's address
//! is in `X-Forwarded-For`, a header anyone can write. The resolver follows Rails'
//! `ActionDispatch::RemoteIp`:
//!
//! 1. the TCP peer's address, when the peer is not a [`TrustedProxies`] member: a direct
//!    client's own `X-Forwarded-For` is never read;
//! 2. else the rightmost `X-Forwarded-For` entry that is not a trusted proxy (every
//!    header line, in order, as one list): the last address a trusted proxy vouched for;
//! 3. else, when every entry is trusted, the leftmost: behind a proxy on loopback,
//!    clients on loopback or on the LAN are still told apart.
//!
//! Where an entry is not an address (garbage, `unknown`, an empty entry, a header that is
//! not ASCII), the walk stops and the address nearest it on the right is the client's:
//! whatever stands to the left of such an entry was not vouched for by a trusted proxy.
//! (Rails skips such entries and reads on; here a broken chain of trust is never read
//! past.) Ports (`203.0.113.7:5100`, `[2001:db8::1]:443`) and brackets are accepted, as
//! some load balancers write them. At most [`MAX_HOPS`] entries are read, so a huge
//! header costs no more than a small one.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:203.0.113.7`, what a dual-stack socket reports
//! for an IPv4 client) are IPv4 addresses from here on: in the trust check, in the
//! result, and so in the throttle, the registry and the audit trail.
//!
//! A leaf: it imports no other part of the session layer.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use axum::http::{header::HeaderName, HeaderMap};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The proxies trusted by default, as Rails trusts them: loopback and the private ranges
/// (RFC 1918, IPv6 unique local addresses). Behind nginx, HAProxy or a cloud load
/// balancer on a private network this needs no setting.
pub const DEFAULT_TRUSTED_PROXIES: &str =
    "127.0.0.0/8, ::1, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7";

/// The most `X-Forwarded-For` entries read per request: far more hops than any
/// deployment has, far fewer than a hostile header can hold.
pub const MAX_HOPS: usize = 32;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The addresses whose `X-Forwarded-For` is believed: `settings.sessions.trusted_proxies`
/// (`TRUSTED_PROXIES`).
///
/// ```
/// use tessera::sessions::client_address::TrustedProxies;
/// let trusted = TrustedProxies::parse("10.0.0.0/8, 2001:db8::1").unwrap();
/// assert!(trusted.trusts("10.1.2.3".parse().unwrap()));
/// assert!(!trusted.trusts("203.0.113.7".parse().unwrap()));
/// assert!(!TrustedProxies::parse("none").unwrap().trusts("127.0.0.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

/// A `trusted_proxies` list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedProxiesError {
    #[error("is empty: list addresses and ranges separated by commas, or write none")]
    Empty,
    #[error("`{0}` is not an IP address or a CIDR range (such as 10.0.0.0/8 or fc00::/7)")]
    NotAnAddress(String),
    #[error("`none` cannot be combined with addresses")]
    NoneWithOthers,
}

impl TrustedProxies {
    /// Trusts nobody: every client's address is its TCP peer's.
    #[must_use]
    pub const fn none() -> Self {
        Self {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }

    /// Reads a comma-separated list of addresses and CIDR ranges, or `none`.
    ///
    /// # Errors
    /// An empty list, an entry that is neither an address nor a range, or `none` next to
    /// addresses.
    pub fn parse(list: &str) -> Result<Self, TrustedProxiesError> {
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        if entries.iter().all(|e| e.is_empty()) {
            return Err(TrustedProxiesError::Empty);
        }
        if entries.iter().any(|e| e.eq_ignore_ascii_case("none")) {
            return if entries.len() == 1 {
                Ok(Self::none())
            } else {
                Err(TrustedProxiesError::NoneWithOthers)
            };
        }
        let mut trusted = Self::none();
        for entry in entries {
            let net = IpNet::from_str(entry)
                .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                .map_err(|_| TrustedProxiesError::NotAnAddress(entry.to_string()))?;
            match canonical_net(net) {
                IpNet::V4(net) => trusted.v4.push(net.trunc()),
                IpNet::V6(net) => trusted.v6.push(net.trunc()),
            }
        }
        Ok(trusted)
    }

    /// Whether `ip` (IPv4-mapped or not) is a trusted proxy.
    #[must_use]
    pub fn trusts(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(ip) => self.v4.iter().any(|net| net.contains(&ip)),
            IpAddr::V6(ip) => self.v6.iter().any(|net| net.contains(&ip)),
        }
    }

    /// Whether nobody is trusted.
    #[must_use]
    pub fn is_none(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The client's address for a request from `peer` with `headers` (see the module
    /// doc). Reads no header unless the peer is trusted; allocates nothing.
    #[must_use]
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        // Right to left: the last header line first, each line's last entry first.
        let entries = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|line| line.as_bytes().rsplit(|b| *b == b','))
            .take(MAX_HOPS);
        let mut nearest = peer;
        for entry in entries {
            let Some(address) = parse_entry(entry) else {
                return nearest;
            };
            if !self.trusts(address) {
                return address;
            }
            nearest = address;
        }
        nearest
    }
}

impl Default for TrustedProxies {
    /// [`DEFAULT_TRUSTED_PROXIES`].
    fn default() -> Self {
        Self::parse(DEFAULT_TRUSTED_PROXIES).unwrap_or_else(|_| Self::none())
    }
}

/// One `X-Forwarded-For` entry as an address: trimmed, without brackets or a port,
/// IPv4-mapped addresses as IPv4. `None` for anything else.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    let address = if let Some(bracketed) = text.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        let (inside, rest) = bracketed.split_once(']')?;
        if !(rest.is_empty() || is_port(rest.strip_prefix(':')?)) {
            return None;
        }
        IpAddr::V6(Ipv6Addr::from_str(inside).ok()?)
    } else if let Ok(address) = IpAddr::from_str(text) {
        address
    } else {
        // `v4:port`; a bare IPv6 address has more than one colon and parsed above.
        let (host, port) = text.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from_str(host).ok()?)
    };
    Some(address.to_canonical())
}

fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// An IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`) as the IPv4 range it maps.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

/// The network `ip` belongs to: its IPv4 `/v4_prefix_len` or IPv6 `/v6_prefix_len`
/// (lengths beyond the family's are cut to it). The one notion of a client's network,
/// for the fingerprint (/24, /64) and the throttle.
///
/// ```
/// use tessera::sessions::client_address::network;
/// assert_eq!(network("203.0.113.77".parse().unwrap(), 24, 64).to_string(), "203.0.113.0/24");
/// assert_eq!(network("2001:db8:1:2:3::9".parse().unwrap(), 24, 64).to_string(), "2001:db8:1:2::/64");
/// ```
#[must_use]
pub fn network(ip: IpAddr, v4_prefix_len: u8, v6_prefix_len: u8) -> IpNet {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpNet::V4(
            Ipv4Net::new(v4, v4_prefix_len.min(32))
                .map_or_else(|_| Ipv4Net::from(v4), |net| net.trunc()),
        ),
        IpAddr::V6(v6) => IpNet::V6(
            Ipv6Net::new(v6, v6_prefix_len.min(128))
                .map_or_else(|_| Ipv6Net::from(v6), |net| net.trunc()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn headers(lines: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(
                X_FORWARDED_FOR.clone(),
                HeaderValue::from_bytes(line).expect("a header value"),
            );
        }
        headers
    }

    /// The address resolved for `peer` sending `X-Forwarded-For: forwarded`, with the
    /// default list.
    fn resolve(peer: &str, forwarded: &str) -> String {
        TrustedProxies::default()
            .client_address(ip(peer), &headers(&[forwarded.as_bytes()]))
            .to_string()
    }

    #[test]
    fn rails_remote_ip_cases() {
        // An untrusted peer is the client, whatever it forwards.
        assert_eq!(resolve("1.2.3.4", "3.4.5.6"), "1.2.3.4");
        // A trusted peer: the rightmost untrusted entry.
        assert_eq!(resolve("127.0.0.1", "3.4.5.6"), "3.4.5.6");
        assert_eq!(resolve("127.0.0.1", "unknown,3.4.5.6"), "3.4.5.6");
        assert_eq!(resolve("127.0.0.1", "172.16.0.1,3.4.5.6"), "3.4.5.6");
        assert_eq!(resolve("127.0.0.1", "192.168.0.1,3.4.5.6"), "3.4.5.6");
        assert_eq!(resolve("127.0.0.1", "10.0.0.1,3.4.5.6"), "3.4.5.6");
        assert_eq!(
            resolve("127.0.0.1", "10.0.0.1, 10.0.0.1, 3.4.5.6"),
            "3.4.5.6"
        );
        assert_eq!(resolve("127.0.0.1", "127.0.0.1,3.4.5.6"), "3.4.5.6");
        assert_eq!(
            resolve("10.0.0.1", "9.9.9.9, 3.4.5.6, 172.31.4.4, 10.0.0.1"),
            "3.4.5.6"
        );
        // 172.32.x is outside 172.16.0.0/12: not a proxy.
        assert_eq!(resolve("127.0.0.1", "3.4.5.6, 172.32.0.1"), "172.32.0.1");
        // Every entry trusted: the leftmost, the one furthest away.
        assert_eq!(resolve("127.0.0.1", "192.168.0.1"), "192.168.0.1");
        assert_eq!(resolve("127.0.0.1", "127.0.0.3, 10.0.0.1"), "127.0.0.3");
        assert_eq!(resolve("127.0.0.1", "unknown,192.168.0.1"), "192.168.0.1");
        // No header, or nothing usable in it: the peer.
        assert_eq!(resolve("127.0.0.1", "not_ip_address"), "127.0.0.1");
        assert_eq!(
            TrustedProxies::default()
                .client_address(ip("127.0.0.1"), &HeaderMap::new())
                .to_string(),
            "127.0.0.1"
        );
        // IPv6.
        assert_eq!(resolve("::1", "2001:db8::7"), "2001:db8::7");
        assert_eq!(resolve("::1", "2001:db8::7, fd00::1"), "2001:db8::7");
        assert_eq!(
            resolve("fd00::1", "fe80::202:b3ff:fe1e:8329"),
            "fe80::202:b3ff:fe1e:8329"
        );
        assert_eq!(resolve("2001:db8::9", "3.4.5.6"), "2001:db8::9");
    }

    #[test]
    fn every_header_line_counts_in_order() {
        let trusted = TrustedProxies::default();
        let lines = headers(&[b"198.51.100.1", b"3.4.5.6, 10.0.0.2", b"10.0.0.3"]);
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &lines),
            ip("3.4.5.6")
        );
        let all_trusted = headers(&[b"10.0.0.9", b"10.0.0.2"]);
        assert_eq!(
            trusted.client_address(ip("127.0.0.1"), &all_trusted),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn what_an_attacker_sends_never_names_an_address_no_trusted_proxy_vouched_for() {
        let trusted = TrustedProxies::default();
        let peer = ip("127.0.0.1");
        // Garbage, an empty entry or bad bytes where a trusted proxy's entry should be:
        // nothing to its left is read.
        for forwarded in [
            &b"203.0.113.66, garbage"[..],
            b"203.0.113.66,",
            b"203.0.113.66, , 10.0.0.2",
            b"203.0.113.66, 10.0.0.2:port",
            b"203.0.113.66, [10.0.0.2]",
            b"203.0.113.66, 10.0.0.2:99999999",
            b"203.0.113.66, 1.2.3.4.5",
            b"203.0.113.66, \"10.0.0.2\"",
            b"203.0.113.66, fe80::1%eth0",
            b"203.0.113.66, \xff\xfe",
        ] {
            let address = trusted.client_address(peer, &headers(&[forwarded]));
            assert_ne!(address, ip("203.0.113.66"), "{forwarded:?}");
            assert!(trusted.trusts(address), "{forwarded:?}: {address}");
        }
        // Ports and brackets, as load balancers write them.
        for (forwarded, expected) in [
            ("3.4.5.6:51234", "3.4.5.6"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("  3.4.5.6\t", "3.4.5.6"),
            ("2001:db8::1:80", "2001:db8::1:80"),
        ] {
            assert_eq!(resolve("10.1.1.1", forwarded), expected, "{forwarded}");
        }
        // A huge header of trusted entries: at most MAX_HOPS are read.
        let mut huge = "203.0.113.66".to_string();
        for _ in 0..10_000 {
            huge.push_str(", 10.0.0.1");
        }
        let address = trusted.client_address(peer, &headers(&[huge.as_bytes()]));
        assert_eq!(address, ip("10.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4_everywhere() {
        let trusted = TrustedProxies::default();
        // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
        assert_eq!(
            trusted.client_address(ip("::ffff:203.0.113.7"), &headers(&[b"9.9.9.9"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            trusted.client_address(ip("::ffff:127.0.0.1"), &headers(&[b"::ffff:3.4.5.6"])),
            ip("3.4.5.6")
        );
        assert_eq!(
            trusted.client_address(ip("::ffff:127.0.0.1"), &headers(&[b"[::ffff:10.0.0.1]:80"])),
            ip("10.0.0.1")
        );
        let mapped_range = TrustedProxies::parse("::ffff:10.0.0.0/104").expect("a range");
        assert!(mapped_range.trusts(ip("10.9.9.9")));
        assert!(mapped_range.trusts(ip("::ffff:10.9.9.9")));
        assert_eq!(
            network(ip("::ffff:203.0.113.77"), 24, 64).to_string(),
            "203.0.113.0/24"
        );
    }

    #[test]
    fn lists_parse_or_say_which_entry_is_wrong() {
        let default = TrustedProxies::default();
        for trusted in [
            "127.0.0.1",
            "127.255.0.9",
            "::1",
            "10.2.3.4",
            "172.31.255.255",
            "192.168.1.1",
            "fd12::1",
        ] {
            assert!(default.trusts(ip(trusted)), "{trusted}");
        }
        for untrusted in ["203.0.113.7", "172.32.0.1", "::2", "2001:db8::1", "fe80::1"] {
            assert!(!default.trusts(ip(untrusted)), "{untrusted}");
        }
        let none = TrustedProxies::parse(" None ").expect("none");
        assert!(none.is_none());
        assert_eq!(
            none.client_address(ip("127.0.0.1"), &headers(&[b"3.4.5.6"])),
            ip("127.0.0.1")
        );
        let narrow = TrustedProxies::parse("10.0.0.1/8 , 2001:db8::5").expect("a list");
        assert!(narrow.trusts(ip("10.200.0.1")), "host bits are ignored");
        assert!(narrow.trusts(ip("2001:db8::5")) && !narrow.trusts(ip("2001:db8::6")));
        assert_eq!(
            TrustedProxies::parse(" , "),
            Err(TrustedProxiesError::Empty)
        );
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/8, 10.0.0.300"),
            Err(TrustedProxiesError::NotAnAddress("10.0.0.300".into()))
        );
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/33"),
            Err(TrustedProxiesError::NotAnAddress("10.0.0.0/33".into()))
        );
        assert_eq!(
            TrustedProxies::parse("none, 10.0.0.1"),
            Err(TrustedProxiesError::NoneWithOthers)
        );
    }

    /// Counts this thread's allocations, so a test can prove the resolver makes none.
    mod counting {
        use std::{
            alloc::{GlobalAlloc, Layout, System},
            cell::Cell,
        };

        thread_local! {
            // A const-initialised Cell: no lazy set-up, so reading it never allocates.
            static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
        }

        struct Counting;

        // SAFETY: every call is forwarded to the system allocator unchanged; the counter
        // is a plain thread-local cell that needs no allocation.
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                ALLOCATIONS.with(|n| n.set(n.get() + 1));
                // SAFETY: the caller's contract, passed on.
                unsafe { System.alloc(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: the caller's contract, passed on.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        #[global_allocator]
        static GLOBAL: Counting = Counting;

        /// How many allocations `f` made on this thread.
        pub fn allocations_of(f: impl FnOnce()) -> usize {
            let before = ALLOCATIONS.with(Cell::get);
            f();
            ALLOCATIONS.with(Cell::get) - before
        }
    }

    #[test]
    fn resolving_an_address_allocates_nothing() {
        let trusted = TrustedProxies::default();
        let forwarded = headers(&[b"203.0.113.66, 10.0.0.2", b"[2001:db8::7]:443, 10.0.0.3"]);
        let nothing = HeaderMap::new();
        let allocations = counting::allocations_of(|| {
            for _ in 0..100 {
                // An untrusted peer: the header is not even looked at.
                std::hint::black_box(trusted.client_address(ip_const(), &forwarded));
                // Behind a proxy: the header is walked in place.
                std::hint::black_box(
                    trusted.client_address(IpAddr::V4(Ipv4Addr::LOCALHOST), &forwarded),
                );
                std::hint::black_box(
                    trusted.client_address(IpAddr::V4(Ipv4Addr::LOCALHOST), &nothing),
                );
            }
        });
        assert_eq!(allocations, 0);
    }

    fn ip_const() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9))
    }

    #[test]
    fn networks_cut_to_the_prefix_asked_for() {
        assert_eq!(
            network(ip("203.0.113.77"), 24, 64).to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            network(ip("203.0.113.77"), 32, 64).to_string(),
            "203.0.113.77/32"
        );
        assert_eq!(
            network(ip("203.0.113.77"), 40, 64).to_string(),
            "203.0.113.77/32"
        );
        assert_eq!(
            network(ip("2001:db8:1:2:3:4:5:6"), 24, 64).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            network(ip("2001:db8:1:2:3:4:5:6"), 24, 48).to_string(),
            "2001:db8:1::/48"
        );
    }
}
