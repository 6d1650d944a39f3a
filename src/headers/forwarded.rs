//! Forwarding metadata at the trust boundary: what gatehouse believes about the client's
//! address, scheme and host (client values only from `trusted_proxies`), and the headers
//! it sets for the upstream in their place: `X-Forwarded-For/-Proto/-Host`, `X-Real-IP`
//! and RFC 7239 `Forwarded`. Every client copy of these, and of the other spellings
//! upstreams trust (`X-Client-IP`, `True-Client-IP`, ...), was removed before by
//! `strip_identity`. Nothing left of the client gatehouse believes reaches the upstream:
//! its `X-Forwarded-For` is only the part of the chain that trusted proxies vouch for.

use axum::http::header::HOST;
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
    /// X-Forwarded-For to send: the vouched part of the chain (`vouched_chain`: the
    /// believed client, the trusted hops right of it), then the peer, each address
    /// written canonically. It always starts with the client's text, `client_len` long.
    pub for_chain: String,
    client_len: usize,
    /// The client as gatehouse believes it (`X-Real-IP`, and `for=` in `Forwarded`): from
    /// a trusted proxy, the rightmost address of the chain that no trusted proxy is
    /// (see `vouched_chain`); otherwise the peer.
    pub client: IpAddr,
    pub proto: String,
    pub host: Option<String>,
    /// The peer is a configured trusted proxy.
    pub trusted: bool,
}

impl Forwarded {
    /// Reads forwarding metadata for a request that came over plain http.
    pub fn read(headers: &HeaderMap, peer: SocketAddr, trusted_proxies: &[IpNet]) -> Forwarded {
        Forwarded::read_on(headers, peer, trusted_proxies, false)
    }

    /// Reads forwarding metadata, believing it only when `peer` is a trusted proxy.
    /// `tls`: the connection itself is https (`tls_cert_file`): the scheme when no
    /// trusted proxy says otherwise.
    pub fn read_on(
        headers: &HeaderMap,
        peer: SocketAddr,
        trusted_proxies: &[IpNet],
        tls: bool,
    ) -> Forwarded {
        let own_scheme = if tls { "https" } else { "http" };
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
            let for_chain = crate::util::ip_text(ip);
            return Forwarded {
                client: ip,
                client_len: for_chain.len(),
                for_chain,
                proto: own_scheme.into(),
                host: host_header,
                trusted,
            };
        }
        let lines = headers.get_all(&X_FORWARDED_FOR);
        let vouched = vouched_chain(lines.iter(), trusted_proxies);
        let client = vouched.client().unwrap_or(ip);
        let (for_chain, client_len) = chain_text(&vouched, ip);
        let proto = nearest(&X_FORWARDED_PROTO)
            .filter(|p| p == "http" || p == "https")
            .unwrap_or_else(|| own_scheme.into());
        let host = nearest(&X_FORWARDED_HOST)
            .filter(|h| !h.is_empty())
            .or(host_header);
        Forwarded {
            client,
            for_chain,
            client_len,
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
        let https = self.proto == "https";
        // The client alone: its values are the same for every request from that address
        // over the same scheme, so each worker keeps the last one's.
        if let Some((ip, forwarded)) = (!self.trusted)
            .then(|| untrusted_values(self.client, https, |ip| self.forwarded_value(ip)))
            .flatten()
        {
            headers.set(X_REAL_IP, ip.clone());
            headers.set(FORWARDED, forwarded);
            headers.set(X_FORWARDED_FOR, ip);
            headers.set(X_FORWARDED_PROTO, scheme_value(https));
            self.apply_host(headers);
            return;
        }
        let Ok(chain) = HeaderValue::from_str(&self.for_chain) else {
            return;
        };
        // The chain starts with the client: its text is a slice of it, no string of its own.
        let client = self.for_chain.get(..self.client_len).unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(client) {
            headers.set(X_REAL_IP, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.forwarded_value(client)) {
            headers.set(FORWARDED, v);
        }
        headers.set(X_FORWARDED_FOR, chain);
        headers.set(X_FORWARDED_PROTO, scheme_value(https));
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

/// How many vouched addresses [`Vouched`] keeps without a heap allocation: a client and
/// a few load balancers and ingresses, far more than real chains hold.
const INLINE: usize = 8;

/// The part of the `X-Forwarded-For` chain that trusted proxies vouch for, as the walk
/// from the right found it: the trusted hops, then the client (the address the walk
/// stopped at, or the last trusted hop). Kept right to left, the first [`INLINE`] on the
/// stack; only a longer run of trusted-looking addresses (which a client inside
/// `trusted_proxies` can write) spills to the heap.
struct Vouched {
    inline: [IpAddr; INLINE],
    len: usize,
    spill: Vec<IpAddr>,
}

impl Vouched {
    fn push(&mut self, ip: IpAddr) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = ip;
                self.len += 1;
            }
            None => self.spill.push(ip),
        }
    }

    /// The client: the leftmost vouched address; `None` when nothing is vouched for
    /// (no chain, or garbage at its right end), and the peer is then the client.
    fn client(&self) -> Option<IpAddr> {
        self.spill
            .last()
            .or_else(|| self.inline[..self.len].last())
            .copied()
    }

    /// The vouched addresses as the upstream reads them: left to right, the client first.
    fn left_to_right(&self) -> impl Iterator<Item = &IpAddr> {
        self.spill
            .iter()
            .rev()
            .chain(self.inline[..self.len].iter().rev())
    }
}

/// The part of the chain a chain of trusted proxies vouches for, and so the client. Each
/// proxy appends the address it got the request from, so the chain (every
/// `X-Forwarded-For` line in order, then the peer) is read from the right: the peer, a
/// trusted proxy, vouches for the last element; an element that is itself a trusted proxy
/// vouches for the one left of it; the first address that is no trusted proxy is the
/// client. Whatever stands left of it was written by the client or by proxies nobody
/// trusts, so a client cannot choose its own address by sending `X-Forwarded-For`
/// through a load balancer that appends to it, and it is not passed on either.
///
/// An element that is not an address ([`element_ip`]: `unknown`, RFC 7239 obfuscated
/// names, garbage, an empty element, a line that is not text) stops the walk: the client
/// is then the last trusted hop walked (the peer when there is none), never a value left
/// of the garbage. When every element is a trusted proxy, the leftmost is the client. No
/// heap allocation for real chains: this runs for every request from a trusted proxy.
fn vouched_chain<'a>(
    lines: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    trusted_proxies: &[IpNet],
) -> Vouched {
    let mut vouched = Vouched {
        inline: [IpAddr::V4(Ipv4Addr::UNSPECIFIED); INLINE],
        len: 0,
        spill: Vec::new(),
    };
    for line in lines.rev() {
        let Ok(line) = line.to_str() else {
            return vouched;
        };
        for element in line.rsplit(',') {
            let Some(ip) = element_ip(element) else {
                return vouched;
            };
            vouched.push(ip);
            if !trusted_proxies.iter().any(|n| n.contains(&ip)) {
                return vouched;
            }
        }
    }
    vouched
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

/// `X-Forwarded-For` for the upstream: the vouched addresses, the client first, then the
/// peer, joined by `, `, each written canonically (no port, IPv4-mapped IPv6 as IPv4),
/// so its leftmost entry is the client of `X-Real-IP` and `Forwarded`. With the length
/// of that first entry. One string: this runs for every request from a trusted proxy.
fn chain_text(vouched: &Vouched, peer: IpAddr) -> (String, usize) {
    // Room for IPv4 addresses and their separators; IPv6 grows it.
    let mut chain = String::with_capacity((vouched.len + vouched.spill.len() + 1) * 17);
    let mut client_len = None;
    for ip in vouched.left_to_right() {
        crate::util::push_ip_text(&mut chain, *ip);
        client_len.get_or_insert(chain.len());
        chain.push_str(", ");
    }
    crate::util::push_ip_text(&mut chain, peer);
    let client_len = client_len.unwrap_or(chain.len());
    (chain, client_len)
}

/// `X-Real-IP`/`X-Forwarded-For` and `Forwarded` for a request from an untrusted `client`
/// over `https` or not, cached per thread for the last address and scheme seen.
/// `forwarded` builds the `Forwarded` value from the address text.
fn untrusted_values(
    client: IpAddr,
    https: bool,
    forwarded: impl FnOnce(&str) -> String,
) -> Option<(HeaderValue, HeaderValue)> {
    type Last = Option<((IpAddr, bool), HeaderValue, HeaderValue)>;
    thread_local! {
        static LAST: std::cell::RefCell<Last> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((key, text, forwarded)) = last.as_ref() {
            if *key == (client, https) {
                return Some((text.clone(), forwarded.clone()));
            }
        }
        let text = crate::util::ip_text(client);
        let forwarded = forwarded(&text);
        let text = HeaderValue::from_str(&text).ok()?;
        let forwarded = HeaderValue::from_str(&forwarded).ok()?;
        *last = Some(((client, https), text.clone(), forwarded.clone()));
        Some((text, forwarded))
    })
}

/// `X-Forwarded-Proto`'s value.
fn scheme_value(https: bool) -> HeaderValue {
    HeaderValue::from_static(if https { "https" } else { "http" })
}

#[cfg(test)]
#[path = "forwarded_tests.rs"]
mod tests;
