//! The SSRF guard: which addresses a webhook may connect to.
//!
//! The check runs inside the HTTP client's DNS resolution ([`GuardedResolver`]), so
//! the addresses that are checked are exactly the addresses the client connects to:
//! a name that resolves to a private address is refused before any connection, and
//! DNS rebinding between a check and the connect is impossible. URLs whose host is
//! an IP literal skip DNS, so the destination checks those with the same predicate
//! when it is built.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> IpNet {
    IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix)
}

#[allow(clippy::too_many_arguments)]
const fn v6(s0: u16, s1: u16, s2: u16, s3: u16, s4: u16, s5: u16, s6: u16, s7: u16, prefix: u8) -> IpNet {
    IpNet::new_assert(IpAddr::V6(Ipv6Addr::new(s0, s1, s2, s3, s4, s5, s6, s7)), prefix)
}

/// Address ranges a webhook never connects to unless they are listed in
/// `allowed_cidrs`: loopback, private, link-local (cloud metadata), CGNAT, "this
/// network", multicast, reserved, documentation and benchmarking ranges, and the IPv6
/// ranges that embed or translate IPv4 addresses. IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`) are judged by the IPv4 address they embed.
pub const BLOCKED_RANGES: &[IpNet] = &[
    // IPv4
    v4(0, 0, 0, 0, 8),       // "this network"
    v4(10, 0, 0, 0, 8),      // private
    v4(100, 64, 0, 0, 10),   // carrier-grade NAT
    v4(127, 0, 0, 0, 8),     // loopback
    v4(169, 254, 0, 0, 16),  // link-local, incl. cloud metadata 169.254.169.254
    v4(172, 16, 0, 0, 12),   // private
    v4(192, 0, 0, 0, 24),    // IETF protocol assignments
    v4(192, 0, 2, 0, 24),    // documentation (TEST-NET-1)
    v4(192, 88, 99, 0, 24),  // 6to4 relay anycast
    v4(192, 168, 0, 0, 16),  // private
    v4(198, 18, 0, 0, 15),   // benchmarking
    v4(198, 51, 100, 0, 24), // documentation (TEST-NET-2)
    v4(203, 0, 113, 0, 24),  // documentation (TEST-NET-3)
    v4(224, 0, 0, 0, 4),     // multicast
    v4(240, 0, 0, 0, 4),     // reserved, incl. broadcast 255.255.255.255
    // IPv6
    v6(0, 0, 0, 0, 0, 0, 0, 0, 96),          // ::, ::1 and IPv4-compatible ::a.b.c.d
    v6(0, 0, 0, 0, 0xffff, 0, 0, 0, 96),     // IPv4-translated ::ffff:0:a.b.c.d
    v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0, 96),  // NAT64
    v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0, 48),  // local-use NAT64
    v6(0x100, 0, 0, 0, 0, 0, 0, 0, 64),      // discard-only
    v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 23),     // IETF protocol assignments, incl. Teredo
    v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0, 32), // documentation
    v6(0x2002, 0, 0, 0, 0, 0, 0, 0, 16),     // 6to4 (embeds IPv4)
    v6(0x3fff, 0, 0, 0, 0, 0, 0, 0, 20),     // documentation
    v6(0xfc00, 0, 0, 0, 0, 0, 0, 0, 7),      // unique local
    v6(0xfe80, 0, 0, 0, 0, 0, 0, 0, 10),     // link-local
    v6(0xfec0, 0, 0, 0, 0, 0, 0, 0, 10),     // site-local (deprecated)
    v6(0xff00, 0, 0, 0, 0, 0, 0, 0, 8),      // multicast
];

/// The IPv4 address an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) embeds, or the
/// address itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Whether `ip` is in one of the [`BLOCKED_RANGES`] (IPv4-mapped addresses judged by
/// the IPv4 address they embed).
pub fn is_blocked(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    BLOCKED_RANGES.iter().any(|net| net.contains(&ip))
}

/// The address policy of one destination: every public address, plus the blocked
/// addresses that fall in an explicitly allowed CIDR.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allowed: Vec<IpNet>,
}

impl AddressGuard {
    /// A guard that additionally allows `allowed` (e.g. `127.0.0.0/8` for a receiver on
    /// this machine).
    pub fn new(allowed: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            allowed: allowed.into_iter().collect(),
        }
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let canonical = canonical(ip);
        let listed = self
            .allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical));
        listed || !is_blocked(canonical)
    }

    /// The allowed CIDRs.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }
}

/// A destination's host resolved only to addresses the guard refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct AddressNotAllowed {
    /// The host name or IP literal from the URL.
    pub host: String,
    /// The refused addresses.
    pub addresses: Vec<IpAddr>,
}

impl fmt::Display for AddressNotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "destination address not allowed: {}", self.host)?;
        let shown: Vec<IpAddr> = self.addresses.iter().take(4).copied().collect();
        let is_literal = shown.len() == 1 && shown[0].to_string() == self.host.trim_matches(['[', ']']);
        if !shown.is_empty() && !is_literal {
            let list: Vec<String> = shown.iter().map(IpAddr::to_string).collect();
            write!(f, " resolves to {}", list.join(", "))?;
            if self.addresses.len() > shown.len() {
                write!(f, ", ...")?;
            }
        }
        write!(
            f,
            " (loopback, private, link-local or reserved; list it in allowed_cidrs to opt in)"
        )
    }
}

/// The DNS resolver every webhook client uses: resolves with the system resolver and
/// drops addresses the [`AddressGuard`] refuses. A name left without any allowed
/// address fails with [`AddressNotAllowed`], before any connection is attempted.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Arc<AddressGuard>,
}

impl GuardedResolver {
    /// A resolver enforcing `guard`.
    pub fn new(guard: Arc<AddressGuard>) -> Self {
        Self { guard }
    }

    /// Resolves `host` and keeps the allowed addresses (port 0).
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            resolved.into_iter().partition(|addr| self.guard.allows(addr.ip()));
        if allowed.is_empty() {
            if refused.is_empty() {
                return Err(format!("{host} did not resolve to any address").into());
            }
            return Err(Box::new(AddressNotAllowed {
                host: host.to_string(),
                addresses: refused.iter().map(SocketAddr::ip).collect(),
            }));
        }
        if !refused.is_empty() {
            tracing::debug!(
                host,
                refused = refused.len(),
                "webhook resolver dropped addresses not allowed"
            );
        }
        Ok(allowed)
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolver.lookup(&host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocked_addresses() {
        for s in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::808:808",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2001::1",
        ] {
            assert!(is_blocked(ip(s)), "{s} should be blocked");
            assert!(!AddressGuard::default().allows(ip(s)), "{s} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_blocked(ip(s)), "{s} should pass");
            assert!(AddressGuard::default().allows(ip(s)));
        }
    }

    #[test]
    fn allow_list_opts_in() {
        let guard = AddressGuard::new(["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        assert!(guard.allows(ip("127.0.0.1")));
        assert!(guard.allows(ip("::ffff:127.0.0.1")));
        assert!(guard.allows(ip("fd00::5")));
        assert!(!guard.allows(ip("::1")));
        assert!(!guard.allows(ip("10.0.0.1")));
        assert!(!guard.allows(ip("169.254.169.254")));
    }

    #[test]
    fn message_names_the_host() {
        let err = AddressNotAllowed {
            host: "localhost".into(),
            addresses: vec![ip("127.0.0.1"), ip("::1")],
        };
        let text = err.to_string();
        assert!(text.starts_with("destination address not allowed: localhost resolves to 127.0.0.1, ::1"));
        let literal = AddressNotAllowed {
            host: "10.0.0.1".into(),
            addresses: vec![ip("10.0.0.1")],
        };
        assert!(!literal.to_string().contains("resolves"));
    }
}
