//! The SSRF guard: URLs and addresses only, no traffic.

use std::net::IpAddr;

use smm_notify::TargetPolicy;
use smm_notify::guard::{GuardResolver, TargetError, check_url, is_refused_ip};

const DENY: TargetPolicy = TargetPolicy {
    allow_private: false,
};
const ALLOW: TargetPolicy = TargetPolicy {
    allow_private: true,
};

#[test]
fn refused_addresses() {
    let refused = [
        // unspecified and "this network"
        "0.0.0.0",
        "0.1.2.3",
        "::",
        // loopback
        "127.0.0.1",
        "127.255.255.254",
        "::1",
        // private
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "192.168.255.255",
        "fc00::1",
        "fd12:3456:789a::1",
        // link-local (cloud metadata lives here)
        "169.254.169.254",
        "169.254.0.1",
        "fe80::1",
        "febf::1",
        // shared address space (CGNAT)
        "100.64.0.1",
        "100.127.255.255",
        // IETF protocol assignments, benchmarking
        "192.0.0.8",
        "198.18.0.1",
        "198.19.255.255",
        // documentation
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "2001:db8::1",
        // multicast, reserved, broadcast
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "240.0.0.1",
        "255.255.255.255",
        // site-local (deprecated), discard-only
        "fec0::1",
        "100::1",
        // IPv6 spellings of refused IPv4 addresses
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::a00:1",
        "2002:c0a8:101::1",
        "::ffff:0:127.0.0.1",
        "::ffff:0:a00:1",
        // tunnels and translations whose other end is not known here
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "64:ff9b:1::a00:1",
        "64:ff9b:1::808:808",
        "192.88.99.1",
    ];
    for ip in refused {
        let addr: IpAddr = ip.parse().unwrap();
        assert!(is_refused_ip(addr), "{ip} should be refused");
        let url = match addr {
            IpAddr::V4(_) => format!("http://{ip}/hook"),
            IpAddr::V6(_) => format!("http://[{ip}]/hook"),
        };
        let url = url.parse().unwrap();
        assert_eq!(
            check_url(&url, &DENY),
            Err(TargetError::PrivateAddress),
            "{ip}"
        );
        assert_eq!(check_url(&url, &ALLOW), Ok(()), "{ip} with allow_private");
    }
}

#[test]
fn allowed_public_addresses() {
    let public = [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "192.169.0.1",
        "198.20.0.1",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "::ffff:0:808:808",
        "2001:4860:4860::8888",
    ];
    for ip in public {
        let addr: IpAddr = ip.parse().unwrap();
        assert!(!is_refused_ip(addr), "{ip} should be allowed");
        let url = match addr {
            IpAddr::V4(_) => format!("https://{ip}/hook"),
            IpAddr::V6(_) => format!("https://[{ip}]/hook"),
        };
        assert_eq!(check_url(&url.parse().unwrap(), &DENY), Ok(()), "{ip}");
    }
}

#[test]
fn odd_spellings_of_loopback_are_refused() {
    // The URL parser normalises these to 127.0.0.1 / ::ffff:7f00:1.
    for url in [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://[::ffff:127.0.0.1]/",
        "http://[0:0:0:0:0:ffff:7f00:1]:8080/",
    ] {
        assert_eq!(
            check_url(&url.parse().unwrap(), &DENY),
            Err(TargetError::PrivateAddress),
            "{url}"
        );
    }
}

#[test]
fn localhost_names_are_refused_unless_allowed() {
    for url in [
        "http://localhost/",
        "http://LOCALHOST:9090/admin",
        "http://localhost./",
        "https://api.localhost/hook",
    ] {
        let url = url.parse().unwrap();
        assert_eq!(check_url(&url, &DENY), Err(TargetError::PrivateAddress));
        assert_eq!(check_url(&url, &ALLOW), Ok(()));
    }
    // A name merely containing "localhost" is someone else's host.
    let url = "https://localhost.example.com/".parse().unwrap();
    assert_eq!(check_url(&url, &DENY), Ok(()));
}

#[test]
fn scheme_host_and_credentials() {
    let cases = [
        ("ftp://example.com/hook", TargetError::Scheme),
        ("file:///etc/passwd", TargetError::Scheme),
        ("gopher://example.com/", TargetError::Scheme),
        (
            "https://user:pass@example.com/hook",
            TargetError::Credentials,
        ),
        ("https://user@example.com/hook", TargetError::Credentials),
        ("https://:pass@example.com/hook", TargetError::Credentials),
    ];
    for (url, expected) in cases {
        let url = url.parse().unwrap();
        assert_eq!(check_url(&url, &DENY), Err(expected.clone()), "{url}");
        assert_eq!(check_url(&url, &ALLOW), Err(expected), "{url} allowed");
    }
    assert_eq!(
        check_url(&"https://example.com/hook".parse().unwrap(), &DENY),
        Ok(())
    );
    assert_eq!(
        TargetError::Scheme.to_string(),
        "webhook URL must use http or https"
    );
    assert_eq!(
        TargetError::PrivateAddress.to_string(),
        "webhook URL points at a private, loopback or link-local address"
    );
}

#[test]
fn a_failed_lookup_is_not_a_refusal() {
    assert!(!TargetError::Resolve("no such host".to_owned()).is_refusal());
    for refusal in [
        TargetError::Scheme,
        TargetError::NoHost,
        TargetError::Credentials,
        TargetError::PrivateAddress,
        TargetError::PrivateResolution,
    ] {
        assert!(refusal.is_refusal(), "{refusal:?}");
    }
}

#[test]
fn allow_private_allows_loopback() {
    let url = "http://127.0.0.1:8080/hook".parse().unwrap();
    assert_eq!(check_url(&url, &ALLOW), Ok(()));
    assert_eq!(check_url(&url, &DENY), Err(TargetError::PrivateAddress));
}

/// `localhost` resolves through /etc/hosts, so no DNS traffic leaves the machine.
#[tokio::test]
async fn the_resolver_drops_refused_addresses() {
    use reqwest::dns::Resolve;

    let refused = GuardResolver::new(DENY)
        .resolve("localhost".parse().unwrap())
        .await
        .map(|addrs| addrs.collect::<Vec<_>>())
        .unwrap_err();
    assert_eq!(
        refused.downcast_ref::<TargetError>(),
        Some(&TargetError::PrivateResolution)
    );

    let allowed: Vec<_> = GuardResolver::new(ALLOW)
        .resolve("localhost".parse().unwrap())
        .await
        .unwrap()
        .collect();
    assert!(!allowed.is_empty());
    assert!(allowed.iter().all(|a| a.ip().is_loopback()), "{allowed:?}");

    assert_eq!(
        smm_notify::guard::resolve("127.0.0.1", 25, &DENY).await,
        Err(TargetError::PrivateResolution)
    );
}
