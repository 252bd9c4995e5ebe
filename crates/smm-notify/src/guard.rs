//! SSRF protection: which URLs and addresses an outbound call may reach.
//!
//! A webhook URL is typed by a customer (or an alert target by the reseller), so without a guard
//! the gateway could be made to POST to its own admin listener, a cloud metadata service or a
//! database on the private network. Two checks close that:
//!
//! - [`check_url`], before anything is sent: the scheme, the absence of credentials in the URL,
//!   and the host when it is an IP literal (in any spelling the URL parser accepts: `2130706433`,
//!   `0x7f.1`, `[::ffff:127.0.0.1]` all normalise to the address they mean) or `localhost`.
//! - [`GuardResolver`], at connect time: a host name is resolved once, refused addresses are
//!   dropped, and the addresses kept are the ones the connection is made to. A name that
//!   resolves to `127.0.0.1` or `10.0.0.5` is therefore refused, and there is no window between
//!   a check and a second lookup for DNS rebinding to use.
//!
//! [`TargetPolicy::allow_private`] turns both off (the alert targets a reseller configures may
//! well live on the private network; that is the caller's decision).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Which targets an outbound call may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Allow loopback, private, link-local and other non-public addresses and `localhost`.
    /// `false` (the default) refuses them.
    pub allow_private: bool,
}

/// Why a target was refused. The messages never include the URL (its path may hold a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The scheme is neither `http` nor `https`.
    #[error("webhook URL must use http or https")]
    Scheme,
    /// The URL has no host.
    #[error("webhook URL has no host")]
    NoHost,
    /// The URL carries a user name or password (`user:pass@host`).
    #[error("webhook URL must not contain a user name or password")]
    Credentials,
    /// The host is an address (or `localhost`) outside the public internet.
    #[error("webhook URL points at a private, loopback or link-local address")]
    PrivateAddress,
    /// The host name resolved only to refused addresses.
    #[error("webhook host resolves only to private, loopback or link-local addresses")]
    PrivateResolution,
    /// The host name did not resolve.
    #[error("webhook host did not resolve: {0}")]
    Resolve(String),
}

impl TargetError {
    /// Whether this is the policy refusing the target (never worth a retry), rather than a
    /// host name that failed to resolve ([`TargetError::Resolve`], possibly transient).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Resolve(_))
    }
}

/// Checks a URL before anything is sent to it: scheme `http`/`https`, a host, no credentials,
/// and (unless `policy.allow_private`) no refused IP literal and no `localhost` / `*.localhost`.
///
/// Host names other than `localhost` pass here; their addresses are checked when they are
/// resolved (see [`GuardResolver`]).
pub fn check_url(url: &Url, policy: &TargetPolicy) -> Result<(), TargetError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Credentials);
    }
    let host = url.host().ok_or(TargetError::NoHost)?;
    if policy.allow_private {
        return Ok(());
    }
    let refused = match host {
        Host::Ipv4(v4) => is_refused_ip(IpAddr::V4(v4)),
        Host::Ipv6(v6) => is_refused_ip(IpAddr::V6(v6)),
        Host::Domain(name) => is_local_name(name),
    };
    if refused {
        Err(TargetError::PrivateAddress)
    } else {
        Ok(())
    }
}

/// `localhost`, `*.localhost` (RFC 6761), with or without the root's trailing dot.
pub(crate) fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Whether an address is outside the public internet and so refused by the default policy:
/// unspecified, loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), link-local
/// (169.254/16, fe80::/10), shared address space (100.64/10), "this network" (0/8), IETF
/// protocol assignments (192.0.0/24), benchmarking (198.18/15), documentation (192.0.2/24,
/// 198.51.100/24, 203.0.113/24, 2001:db8::/32), multicast, reserved (240/4), broadcast,
/// site-local (fec0::/10) and discard-only (100::/64). IPv6 addresses that embed an IPv4
/// address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`,
/// 6to4 `2002::/16`) are judged by the IPv4 address they carry.
pub fn is_refused_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_refused_v4(v4),
        IpAddr::V6(v6) => is_refused_v6(v6),
    }
}

fn is_refused_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", including 0.0.0.0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast (deprecated)
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn is_refused_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = embedded_v4(ip) {
        return is_refused_v4(v4);
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || (s[0] & 0xff00) == 0xff00 // multicast ff00::/8
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only 100::/64
        || (s[0] == 0x2001 && s[1] == 0) // Teredo 2001::/32: a tunnel to an address it hides
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 64:ff9b:1::/48
}

/// The IPv4 address an IPv6 address stands for, when it embeds one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    // IPv4-compatible ::a.b.c.d (deprecated), which also covers :: and ::1 as 0.0.0.0/8.
    if s[..6].iter().all(|&x| x == 0) {
        return Some(low);
    }
    // SIIT IPv4-translated ::ffff:0:a.b.c.d.
    if s[..4].iter().all(|&x| x == 0) && s[4] == 0xffff && s[5] == 0 {
        return Some(low);
    }
    // NAT64 well-known prefix 64:ff9b::/96.
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        return Some(low);
    }
    // 6to4 2002:a.b.c.d::/48.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Resolves a host name with tokio's `lookup_host` and keeps only the addresses the policy
/// allows; an error when none remain. With `port` 0 (as reqwest asks) the caller fills in the
/// URL's port.
pub async fn resolve(
    host: &str,
    port: u16,
    policy: &TargetPolicy,
) -> Result<Vec<SocketAddr>, TargetError> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| TargetError::Resolve(e.to_string()))?
        .collect();
    if found.is_empty() {
        return Err(TargetError::Resolve("no addresses".to_owned()));
    }
    if policy.allow_private {
        return Ok(found);
    }
    let total = found.len();
    let kept: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| !is_refused_ip(a.ip()))
        .collect();
    if kept.len() < total {
        tracing::debug!(
            host,
            dropped = total - kept.len(),
            "dropped refused addresses of an outbound host"
        );
    }
    if kept.is_empty() {
        Err(TargetError::PrivateResolution)
    } else {
        Ok(kept)
    }
}

/// A `reqwest` resolver that applies a [`TargetPolicy`] to every address it returns (see
/// [`resolve`]), so the addresses a connection is made to are the ones that were checked.
///
/// reqwest does not resolve IP literals, which is why [`check_url`] judges those.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardResolver {
    policy: TargetPolicy,
}

impl GuardResolver {
    /// A resolver applying `policy`.
    pub fn new(policy: TargetPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for GuardResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let addrs = resolve(name.as_str(), 0, &policy).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}
