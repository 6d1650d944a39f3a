//! Forwarding metadata at the trust boundary: what gatehouse believes about the client's
//! address, scheme and host (client values only from `trusted_proxies`), and the headers
//! it sets for the upstream in their place: `X-Forwarded-For/-Proto/-Host`, `X-Real-IP`
//! and RFC 7239 `Forwarded`. Every client copy of these, and of the other spellings
//! upstreams trust (`X-Client-IP`, `True-Client-IP`, ...), was removed before by
//! `strip_identity`.

use axum::http::header::{GetAll, HOST};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The client's address, scheme and host as gatehouse believes them.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// X-Forwarded-For to send: the trusted chain plus the peer.
    pub for_chain: String,
    /// The client as gatehouse believes it (`X-Real-IP`, and `for=` in `Forwarded`): from
    /// a trusted proxy, the rightmost address of the chain that no trusted proxy is
    /// (see `believed_client`); otherwise the peer.
    pub client: IpAddr,
    pub proto: String,
    pub host: Option<String>,
    /// The peer is a configured trusted proxy.
    pub trusted: bool,
}

impl Forwarded {
    /// Reads forwarding metadata, believing it only when `peer` is a trusted proxy.
    pub fn read(headers: &HeaderMap, peer: SocketAddr, trusted_proxies: &[IpNet]) -> Forwarded {
        let ip = canonical(peer.ip());
        let trusted = trusted_proxies.iter().any(|n| n.contains(&ip));
        // The value the nearest trusted proxy set: the last element of the last line. An
        // appending load balancer puts whatever the client sent first, so the leftmost
        // value is the client's word (the same class as X-Forwarded-For's left end).
        let nearest = |name: &HeaderName| {
            headers
                .get_all(name)
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .map(|s| s.rsplit(',').next().unwrap_or("").trim().to_string())
        };
        let host_header = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !trusted {
            return Forwarded {
                client: ip,
                for_chain: crate::util::ip_text(ip),
                proto: "http".into(),
                host: host_header,
                trusted,
            };
        }
        let lines = headers.get_all(&X_FORWARDED_FOR);
        let client = believed_client(lines.iter(), ip, trusted_proxies);
        let for_chain = chain_with_peer(&lines, ip);
        let proto = nearest(&X_FORWARDED_PROTO)
            .filter(|p| p == "http" || p == "https")
            .unwrap_or_else(|| "http".into());
        let host = nearest(&X_FORWARDED_HOST)
            .filter(|h| !h.is_empty())
            .or(host_header);
        Forwarded {
            client,
            for_chain,
            proto,
            host,
            trusted,
        }
    }

    /// RFC 7239 `Forwarded: for=<client>;proto=<scheme>` (the host travels in
    /// `X-Forwarded-Host`). Built by hand: this runs for every proxied request.
    fn forwarded_value(&self, client: &str) -> String {
        let mut v = String::with_capacity(client.len() + self.proto.len() + 16);
        v.push_str("for=");
        if self.client.is_ipv6() {
            v.push_str("\"[");
            v.push_str(client);
            v.push_str("]\"");
        } else {
            v.push_str(client);
        }
        v.push_str(";proto=");
        v.push_str(&self.proto);
        v
    }

    /// Writes `X-Forwarded-For/-Proto/-Host`, `X-Real-IP` and `Forwarded` (after
    /// `strip_identity` removed every client copy).
    pub fn apply(&self, headers: &mut impl super::SetHeader) {
        // The client alone: its values are the same for every request from that address,
        // so each worker keeps the last one's.
        if let Some((ip, forwarded)) = (!self.trusted)
            .then(|| untrusted_values(self.client, |ip| self.forwarded_value(ip)))
            .flatten()
        {
            headers.set(X_REAL_IP, ip.clone());
            headers.set(FORWARDED, forwarded);
            headers.set(X_FORWARDED_FOR, ip);
            headers.set(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
            self.apply_host(headers);
            return;
        }
        let Ok(chain) = HeaderValue::from_str(&self.for_chain) else {
            return;
        };
        // From an untrusted peer the chain is the client alone: one value for both.
        let client = if self.trusted {
            crate::util::ip_text(self.client)
        } else {
            self.for_chain.clone()
        };
        let real_ip = if self.trusted {
            HeaderValue::from_str(&client).ok()
        } else {
            Some(chain.clone())
        };
        if let Some(v) = real_ip {
            headers.set(X_REAL_IP, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.forwarded_value(&client)) {
            headers.set(FORWARDED, v);
        }
        headers.set(X_FORWARDED_FOR, chain);
        let proto = if self.proto == "https" {
            HeaderValue::from_static("https")
        } else {
            HeaderValue::from_static("http")
        };
        headers.set(X_FORWARDED_PROTO, proto);
        self.apply_host(headers);
    }

    fn apply_host(&self, headers: &mut impl super::SetHeader) {
        if let Some(v) = self
            .host
            .as_deref()
            .and_then(|h| HeaderValue::from_str(h).ok())
        {
            headers.set(X_FORWARDED_HOST, v);
        }
    }
}

/// The client a chain of trusted proxies vouches for. Each proxy appends the address it
/// got the request from, so the chain (every `X-Forwarded-For` line in order, then the
/// peer) is read from the right: the peer, a trusted proxy, vouches for the last element;
/// an element that is itself a trusted proxy vouches for the one left of it; the first
/// address that is no trusted proxy is the client. Whatever stands left of it was written
/// by the client or by proxies nobody trusts, so a client cannot choose its own address
/// by sending `X-Forwarded-For` through a load balancer that appends to it.
///
/// An element that is not an address ([`element_ip`]: `unknown`, RFC 7239 obfuscated
/// names, garbage, an empty element, a line that is not text) stops the walk: the client
/// is then the last trusted hop walked, never a value left of the garbage. When every
/// element is a trusted proxy, the leftmost is the client. No allocation: this runs for
/// every request from a trusted proxy.
fn believed_client<'a>(
    lines: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    peer: IpAddr,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let mut client = peer;
    for line in lines.rev() {
        let Ok(line) = line.to_str() else {
            return client;
        };
        for element in line.rsplit(',') {
            match element_ip(element) {
                Some(ip) if trusted_proxies.iter().any(|n| n.contains(&ip)) => client = ip,
                Some(ip) => return ip,
                None => return client,
            }
        }
    }
    client
}

/// One `X-Forwarded-For` element as an address: `203.0.113.9`, `2001:db8::1`,
/// `[2001:db8::1]`, and with a port as some load balancers write them (`203.0.113.9:51234`,
/// `[2001:db8::1]:51234`; the port is dropped). An IPv4-mapped IPv6 address is read as
/// IPv4, as the peer is. `None` for anything else: `unknown`, `_obfuscated` names, zone
/// ids, octets with leading zeros, a port that is not 0-65535, an empty element. A bare
/// IPv6 address cannot carry a port (`2001:db8::1:80` is an address), as RFC 7239 says.
fn element_ip(element: &str) -> Option<IpAddr> {
    let e = element.trim_matches([' ', '\t']);
    let ip = if let Ok(ip) = e.parse::<IpAddr>() {
        ip
    } else if let Some(rest) = e.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() && !is_port(after.strip_prefix(':')?) {
            return None;
        }
        IpAddr::V6(inner.parse::<Ipv6Addr>().ok()?)
    } else {
        let (host, port) = e.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    };
    Some(canonical(ip))
}

/// Decimal digits only (no sign) and at most 65535.
fn is_port(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, how a dual-stack socket reports an
/// IPv4 peer) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `X-Forwarded-For` for the upstream: the text lines of the chain as they came, joined
/// by `, `, then the peer. Built in one string: this runs for every request from a
/// trusted proxy.
fn chain_with_peer(lines: &GetAll<'_, HeaderValue>, peer: IpAddr) -> String {
    let peer = crate::util::ip_text(peer);
    let texts = || lines.iter().filter_map(|v| v.to_str().ok());
    let len: usize = texts().map(|l| l.len() + 2).sum();
    if len == 0 {
        return peer;
    }
    let mut chain = String::with_capacity(len + peer.len());
    for (i, line) in texts().enumerate() {
        if i > 0 {
            chain.push_str(", ");
        }
        chain.push_str(line);
    }
    if chain.is_empty() {
        return peer;
    }
    chain.push_str(", ");
    chain.push_str(&peer);
    chain
}

/// `X-Real-IP`/`X-Forwarded-For` and `Forwarded` for a request from an untrusted `client`
/// (scheme http), cached per thread for the last address seen.
/// `forwarded` builds the `Forwarded` value from the address text.
fn untrusted_values(
    client: IpAddr,
    forwarded: impl FnOnce(&str) -> String,
) -> Option<(HeaderValue, HeaderValue)> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((ip, text, forwarded)) = last.as_ref() {
            if *ip == client {
                return Some((text.clone(), forwarded.clone()));
            }
        }
        let text = crate::util::ip_text(client);
        let forwarded = forwarded(&text);
        let text = HeaderValue::from_str(&text).ok()?;
        let forwarded = HeaderValue::from_str(&forwarded).ok()?;
        *last = Some((client, text.clone(), forwarded.clone()));
        Some((text, forwarded))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::headers::test_map as map;

    #[test]
    fn forwarded_headers_believed_only_from_trusted_proxies() {
        let h = map(&[
            ("X-Forwarded-For", "1.2.3.4"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil"),
            ("Host", "app"),
        ]);
        let peer: SocketAddr = "10.0.0.5:999".parse().unwrap();
        let untrusted = Forwarded::read(&h, peer, &[]);
        assert_eq!(
            (
                untrusted.for_chain.as_str(),
                untrusted.proto.as_str(),
                untrusted.host.as_deref()
            ),
            ("10.0.0.5", "http", Some("app"))
        );
        let trusted = Forwarded::read(&h, peer, &["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(trusted.for_chain, "1.2.3.4, 10.0.0.5");
        assert_eq!(trusted.proto, "https");
        assert_eq!(trusted.host.as_deref(), Some("evil"));
    }

    #[test]
    fn scheme_and_host_are_what_the_nearest_trusted_proxy_set() {
        // An appending load balancer: the client's words come first.
        let peer: SocketAddr = "10.0.0.5:999".parse().unwrap();
        let nets = ["10.0.0.0/8".parse().unwrap()];
        for (proto, host, want) in [
            (
                "https, http",
                "evil.example, app.example.com",
                ("http", "app.example.com"),
            ),
            (
                "http,https",
                "evil.example,app.example.com",
                ("https", "app.example.com"),
            ),
            ("https", "app.example.com", ("https", "app.example.com")),
        ] {
            let h = map(&[("X-Forwarded-Proto", proto), ("X-Forwarded-Host", host)]);
            let f = Forwarded::read(&h, peer, &nets);
            assert_eq!(
                (f.proto.as_str(), f.host.as_deref()),
                (want.0, Some(want.1))
            );
        }
        // Two lines: the last one is the nearest proxy's.
        let h = map(&[
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Host", "app.example.com"),
        ]);
        let f = Forwarded::read(&h, peer, &nets);
        assert_eq!(f.host.as_deref(), Some("app.example.com"));
    }

    #[test]
    fn the_believed_client_goes_into_x_real_ip_and_forwarded() {
        let h = map(&[
            ("X-Forwarded-For", "203.0.113.7, 10.0.0.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "app.example.com"),
        ]);
        let peer: SocketAddr = "10.0.0.5:999".parse().unwrap();
        let trusted = Forwarded::read(&h, peer, &["10.0.0.0/8".parse().unwrap()]);
        let mut out = HeaderMap::new();
        trusted.apply(&mut out);
        assert_eq!(out.get("x-real-ip").unwrap(), "203.0.113.7");
        assert_eq!(out.get("forwarded").unwrap(), "for=203.0.113.7;proto=https");
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        let untrusted = Forwarded::read(&h, v6, &[]);
        let mut out = HeaderMap::new();
        untrusted.apply(&mut out);
        assert_eq!(out.get("x-real-ip").unwrap(), "2001:db8::1");
        assert!(out
            .get("forwarded")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("for=\"[2001:db8::1]\";proto=http"));
        // Another untrusted client on the same thread gets its own values, not the last.
        for (peer, ip) in [("192.0.2.1:5", "192.0.2.1"), ("192.0.2.2:5", "192.0.2.2")] {
            let f = Forwarded::read(&h, peer.parse().unwrap(), &[]);
            let mut out = HeaderMap::new();
            f.apply(&mut out);
            assert_eq!(out.get("x-forwarded-for").unwrap(), ip);
            assert_eq!(out.get("x-real-ip").unwrap(), ip);
            assert_eq!(
                out.get("forwarded").unwrap(),
                &format!("for={ip};proto=http")
            );
        }
    }

    /// The client believed for `lines` of `X-Forwarded-For` from `peer`, with the
    /// trusted proxies 10.0.0.0/8 and 2001:db8:ffff::/48.
    fn client_of(lines: &[&[u8]], peer: &str) -> String {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(X_FORWARDED_FOR, HeaderValue::from_bytes(l).unwrap());
        }
        let trusted = [
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ];
        let f = Forwarded::read(&h, peer.parse().unwrap(), &trusted);
        assert!(f.trusted, "{peer} is a trusted proxy in these cases");
        f.client.to_string()
    }

    #[test]
    fn the_client_is_the_rightmost_address_no_trusted_proxy_vouches_for() {
        let p = "10.0.0.1:4711";
        let cases: &[(&[&[u8]], &str, &str)] = &[
            // A client's own X-Forwarded-For, appended to by the load balancer.
            (&[b"6.6.6.6, 203.0.113.9"], p, "203.0.113.9"),
            (&[b"203.0.113.9"], p, "203.0.113.9"),
            (&[], p, "10.0.0.1"),
            // Several trusted hops.
            (
                &[b"6.6.6.6, 203.0.113.9, 10.0.0.7, 10.9.9.9"],
                p,
                "203.0.113.9",
            ),
            // Spoofed entries left of the client, trusted-looking or not.
            (&[b"10.0.0.99, 6.6.6.6"], p, "6.6.6.6"),
            (
                &[b"10.0.0.99, 1.1.1.1, 10.0.0.98, 203.0.113.9"],
                p,
                "203.0.113.9",
            ),
            // Several header lines are one chain, in order.
            (&[b"6.6.6.6", b"203.0.113.9, 10.0.0.7"], p, "203.0.113.9"),
            (&[b"6.6.6.6, 203.0.113.9", b"10.0.0.7"], p, "203.0.113.9"),
            (
                &[b"203.0.113.9", b"10.0.0.7", b"10.0.0.8"],
                p,
                "203.0.113.9",
            ),
            // Everything trusted: the leftmost.
            (&[b"10.0.0.3, 10.0.0.2"], p, "10.0.0.3"),
            (&[b"10.0.0.3", b"10.0.0.2"], p, "10.0.0.3"),
            // Garbage stops the walk at the last trusted hop, never left of it.
            (&[b"203.0.113.9, garbage, 10.0.0.7"], p, "10.0.0.7"),
            (&[b"6.6.6.6, unknown, 10.0.0.7"], p, "10.0.0.7"),
            (&[b"6.6.6.6, _hidden"], p, "10.0.0.1"),
            (&[b"unknown"], p, "10.0.0.1"),
            (&[b"6.6.6.6", b"garbage", b"10.0.0.7"], p, "10.0.0.7"),
            (
                &[b"6.6.6.6", b"203.0.113.9 \xff", b"10.0.0.7"],
                p,
                "10.0.0.7",
            ),
            (&[b"203.0.113.9, 010.0.0.7"], p, "10.0.0.1"),
            (&[b"203.0.113.9, fe80::1%eth0"], p, "10.0.0.1"),
            (&[b"203.0.113.9, \"[2001:db8::1]\""], p, "10.0.0.1"),
            // ... but garbage left of the client is never reached.
            (&[b"garbage, 203.0.113.9"], p, "203.0.113.9"),
            // Empty elements stop the walk like garbage.
            (&[b"6.6.6.6, , 10.0.0.7"], p, "10.0.0.7"),
            (&[b"6.6.6.6,,10.0.0.7"], p, "10.0.0.7"),
            (&[b"203.0.113.9,"], p, "10.0.0.1"),
            (&[b""], p, "10.0.0.1"),
            (&[b"", b"203.0.113.9"], p, "203.0.113.9"),
            // Whitespace around elements.
            (&[b"6.6.6.6 ,\t203.0.113.9\t, 10.0.0.7 "], p, "203.0.113.9"),
            // IPv6, and IPv6 proxies.
            (&[b"6.6.6.6, 2001:db8::1"], p, "2001:db8::1"),
            (
                &[b"2001:db8::66, 2001:db8::1, 2001:db8:ffff::7"],
                "[2001:db8:ffff::1]:80",
                "2001:db8::1",
            ),
            (
                &[b"2001:db8:ffff::9, 2001:db8:ffff::7"],
                "[2001:db8:ffff::1]:80",
                "2001:db8:ffff::9",
            ),
            // IPv4-mapped IPv6 is IPv4, in the chain and as the peer.
            (&[b"::ffff:203.0.113.9"], p, "203.0.113.9"),
            (
                &[b"6.6.6.6, 203.0.113.9, ::ffff:10.0.0.7"],
                p,
                "203.0.113.9",
            ),
            (
                &[b"6.6.6.6, 203.0.113.9"],
                "[::ffff:10.0.0.1]:80",
                "203.0.113.9",
            ),
            // Ports, as some load balancers write them.
            (&[b"6.6.6.6, 203.0.113.9:51234"], p, "203.0.113.9"),
            (&[b"6.6.6.6, 203.0.113.9, 10.0.0.7:8080"], p, "203.0.113.9"),
            (&[b"6.6.6.6, [2001:db8::1]:443"], p, "2001:db8::1"),
            (&[b"6.6.6.6, [2001:db8::1]"], p, "2001:db8::1"),
            (
                &[b"6.6.6.6, 203.0.113.9, [2001:db8:ffff::7]:8080"],
                p,
                "203.0.113.9",
            ),
            (&[b"6.6.6.6, 203.0.113.9:99999"], p, "10.0.0.1"),
            (&[b"6.6.6.6, 203.0.113.9:"], p, "10.0.0.1"),
            (&[b"6.6.6.6, 203.0.113.9:+80"], p, "10.0.0.1"),
            (&[b"6.6.6.6, [2001:db8::1]x"], p, "10.0.0.1"),
            (&[b"6.6.6.6, [2001:db8::1"], p, "10.0.0.1"),
            (&[b"6.6.6.6, [203.0.113.9]"], p, "10.0.0.1"),
        ];
        for (lines, peer, want) in cases {
            let shown: Vec<String> = lines
                .iter()
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect();
            assert_eq!(client_of(lines, peer), *want, "{shown:?} from {peer}");
        }
    }

    #[test]
    fn the_chain_sent_on_is_every_line_plus_the_peer_whoever_the_client_is() {
        let mut h = HeaderMap::new();
        for l in ["6.6.6.6, 203.0.113.9", "garbage", "10.0.0.7"] {
            h.append(X_FORWARDED_FOR, HeaderValue::from_static(l));
        }
        h.append(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let peer: SocketAddr = "10.0.0.1:4711".parse().unwrap();
        let f = Forwarded::read(&h, peer, &["10.0.0.0/8".parse().unwrap()]);
        let mut out = HeaderMap::new();
        f.apply(&mut out);
        assert_eq!(
            out.get("x-forwarded-for").unwrap(),
            "6.6.6.6, 203.0.113.9, garbage, 10.0.0.7, 10.0.0.1"
        );
        assert_eq!(out.get("x-real-ip").unwrap(), "10.0.0.7");
        assert_eq!(out.get("forwarded").unwrap(), "for=10.0.0.7;proto=https");
        let h = map(&[("X-Forwarded-For", "6.6.6.6, 2001:db8::1:80")]);
        let f = Forwarded::read(&h, peer, &["10.0.0.0/8".parse().unwrap()]);
        let mut out = HeaderMap::new();
        f.apply(&mut out);
        assert_eq!(out.get("x-real-ip").unwrap(), "2001:db8::1:80");
        assert_eq!(
            out.get("forwarded").unwrap(),
            "for=\"[2001:db8::1:80]\";proto=http"
        );
    }
}
