//! Forwarding metadata at the trust boundary: what gatehouse believes about the client's
//! address, scheme and host (client values only from `trusted_proxies`), and the headers
//! it sets for the upstream in their place: `X-Forwarded-For/-Proto/-Host`, `X-Real-IP`
//! and RFC 7239 `Forwarded`. Every client copy of these, and of the other spellings
//! upstreams trust (`X-Client-IP`, `True-Client-IP`, ...), was removed before by
//! `strip_identity`.

use axum::http::header::HOST;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

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
    /// The client as gatehouse believes it: the first address of a trusted chain, or the
    /// peer (`X-Real-IP`, and `for=` in `Forwarded`).
    pub client: IpAddr,
    pub proto: String,
    pub host: Option<String>,
    /// The peer is a configured trusted proxy.
    pub trusted: bool,
}

impl Forwarded {
    /// Reads forwarding metadata, believing it only when `peer` is a trusted proxy.
    pub fn read(headers: &HeaderMap, peer: SocketAddr, trusted_proxies: &[IpNet]) -> Forwarded {
        let ip: IpAddr = match peer.ip() {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        let trusted = trusted_proxies.iter().any(|n| n.contains(&ip));
        let first = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.split(',').next().unwrap_or("").trim().to_string())
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
        let chain = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let client = chain
            .split(',')
            .next()
            .and_then(|c| c.trim().parse::<IpAddr>().ok())
            .unwrap_or(ip);
        let for_chain = if chain.is_empty() {
            crate::util::ip_text(ip)
        } else {
            format!("{chain}, {ip}")
        };
        let proto = first(&X_FORWARDED_PROTO)
            .filter(|p| p == "http" || p == "https")
            .unwrap_or_else(|| "http".into());
        let host = first(&X_FORWARDED_HOST)
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
}
