//! Who a request comes from, for the rate limiter: the peer address, or the `X-Forwarded-For`
//! hop a trusted proxy vouches for; IPv6 clients keyed by their /64.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The rate-limit key of a client address: IPv4 addresses (and IPv4-mapped IPv6) whole,
/// other IPv6 addresses by their /64 network, since one subscriber is commonly handed a
/// whole /64 and could otherwise rotate through 2^64 buckets.
pub fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        },
    }
}

/// The client address of a request that arrived from `peer`.
///
/// `X-Forwarded-For` is believed only when `peer` is inside one of `trusted`: its entries are
/// then read right to left (the right-most was appended by the proxy nearest us) and the
/// first address outside `trusted` is the client; entries to its left were written by the
/// client itself and are ignored. An entry that is not an address stops the walk at the
/// nearest hop read so far, as does a header that is absent or not text. With no trusted
/// proxies every header is ignored.
///
/// Invariant: a peer outside `trusted` is always keyed by its own address.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(&normalise(*ip)));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    // Several headers are one list, in order.
    let mut hops: Vec<&str> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(s) = v.to_str() else {
            return client;
        };
        hops.extend(s.split(','));
    }
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// IPv4-mapped IPv6 addresses as IPv4, so `10.0.0.0/8` covers `::ffff:10.1.2.3`.
fn normalise(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly bracketed or with a port.
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(normalise(ip));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(normalise(sa.ip()));
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<IpAddr>().ok())
        .map(normalise)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn ipv6_by_64_and_ipv4_whole() {
        assert_eq!(
            bucket_key(ip("2001:db8:1:2:aaaa::1")),
            bucket_key(ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            bucket_key(ip("2001:db8:1:2::1")),
            bucket_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(bucket_key(ip("2001:db8:1:2::9")), ip("2001:db8:1:2::"));
        assert_ne!(bucket_key(ip("192.0.2.1")), bucket_key(ip("192.0.2.2")));
        assert_eq!(bucket_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net")];
        let spoof = xff(&["203.0.113.9"]);
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.7"), &spoof, &proxies),
            ip("198.51.100.7")
        );
        // No trusted proxies: ignored too.
        assert_eq!(client_ip(ip("10.0.0.1"), &spoof, &[]), ip("10.0.0.1"));
        // From a trusted proxy: the right-most untrusted hop; what the client wrote to its
        // left does not matter.
        let h = xff(&["1.1.1.1, 203.0.113.9, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &proxies), ip("203.0.113.9"));
        let h = xff(&["1.1.1.1", "203.0.113.9"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &proxies), ip("203.0.113.9"));
        // Garbage stops at the nearest hop read so far.
        let h = xff(&["203.0.113.9, not-an-ip, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &proxies), ip("10.0.0.2"));
        // Only proxies: the left-most.
        let h = xff(&["10.9.9.9, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &proxies), ip("10.9.9.9"));
        // Ports and brackets.
        let h = xff(&["[2001:db8::1]:443"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &proxies), ip("2001:db8::1"));
        let h = xff(&["203.0.113.9:5555"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &proxies),
            ip("203.0.113.9")
        );
        // No header from a proxy: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &proxies),
            ip("10.0.0.1")
        );
    }
}
