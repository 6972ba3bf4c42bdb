//! Where webhooks may go. A subscriber names a URL; nurture then POSTs from inside the
//! operator's network, so a URL that resolves to loopback, a private range, link-local (cloud
//! metadata at 169.254.169.254), carrier-grade NAT or another special-purpose range would let
//! an API key reach, and probe, what only the server can. Those ranges are refused unless the
//! operator allows a network (`serve --webhook-allow-network CIDR`), and the check is made on
//! every address a name resolves to, at every delivery, so a name that later resolves inside
//! (DNS rebinding) is refused then too.

pub use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The ranges no webhook reaches by default, each with what it is.
const SPECIAL: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\" address"),
    ("10.0.0.0/8", "private address"),
    (
        "100.64.0.0/10",
        "carrier-grade NAT address (cloud metadata services answer here too)",
    ),
    ("127.0.0.0/8", "loopback address"),
    (
        "169.254.0.0/16",
        "link-local address (where cloud metadata services answer)",
    ),
    ("172.16.0.0/12", "private address"),
    (
        "192.0.0.0/24",
        "IETF protocol address (some cloud metadata services answer here)",
    ),
    ("192.0.2.0/24", "documentation address"),
    ("192.168.0.0/16", "private address"),
    ("198.18.0.0/15", "benchmarking address"),
    ("198.51.100.0/24", "documentation address"),
    ("203.0.113.0/24", "documentation address"),
    ("224.0.0.0/4", "multicast address"),
    ("240.0.0.0/4", "reserved address"),
    ("::/128", "unspecified address"),
    ("::1/128", "loopback address"),
    ("64:ff9b:1::/48", "local-use NAT64 address"),
    ("100::/64", "discard address"),
    ("2001:db8::/32", "documentation address"),
    ("fc00::/7", "unique local (private) address"),
    ("fe80::/10", "link-local address"),
    ("ff00::/8", "multicast address"),
];

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub address: IpAddr,
    pub range: IpNet,
    pub what: &'static str,
}

impl Refused {
    /// What the address is, and how to allow it.
    fn explain(&self) -> String {
        format!(
            "a {} ({}); nurture sends no webhooks into internal networks. If the CRM runs on your own \
             network, start the server with --webhook-allow-network {}",
            self.what, self.range, self.range
        )
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}", self.address, self.explain())
    }
}

/// The networks webhooks may reach: anything public, plus what the operator allowed.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    allowed: Arc<Vec<IpNet>>,
}

impl Reach {
    /// Public addresses only (the default).
    pub fn public() -> Self {
        Self::default()
    }

    /// Public addresses, and these networks too.
    pub fn allowing(networks: Vec<IpNet>) -> Self {
        Self {
            allowed: Arc::new(networks),
        }
    }

    /// Why `address` may not be reached, or `None` when it may.
    pub fn refuses(&self, address: IpAddr) -> Option<Refused> {
        let canonical = address.to_canonical();
        if self
            .allowed
            .iter()
            .any(|net| net.contains(&address) || net.contains(&canonical))
        {
            return None;
        }
        // An IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4) goes where that one goes.
        let carried = match canonical {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        if let Some(v4) = carried {
            if self.allowed.iter().any(|net| net.contains(&v4)) {
                return None;
            }
        }
        [canonical].into_iter().chain(carried).find_map(|ip| {
            special().iter().find_map(|(range, what)| {
                range.contains(&ip).then_some(Refused {
                    address,
                    range: *range,
                    what,
                })
            })
        })
    }

    /// Refuses `host` when it is an address or a name (`localhost`) that may not be reached.
    /// Other names are checked when they are resolved.
    pub fn refuses_host(&self, host: &str) -> Option<Refused> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let address = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if is_localhost(host) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Err(_) => return None,
        };
        self.refuses(address)
    }

    /// Resolves `host` and keeps the addresses that may be reached; when there are none, says
    /// why.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Unreachable> {
        if let Some(refused) = host.parse().ok().and_then(|ip| self.refuses(ip)) {
            return Err(Unreachable::Refused(refused));
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Unreachable::Unresolved(format!("{host} does not resolve: {e}")))?
            .collect();
        let mut first_refused = None;
        let kept: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match self.refuses(a.ip()) {
                Some(refused) => {
                    first_refused.get_or_insert(refused);
                    false
                }
                None => true,
            })
            .collect();
        match (kept.is_empty(), first_refused) {
            (true, Some(refused)) => Err(Unreachable::Resolved(host.to_owned(), refused)),
            (true, None) => Err(Unreachable::Unresolved(format!("{host} resolves to no address"))),
            (false, _) => Ok(kept),
        }
    }
}

/// Why a host cannot be sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// The host is an address (or `localhost`) that is refused.
    Refused(Refused),
    /// The name resolves only to refused addresses (the first is named).
    Resolved(String, Refused),
    /// The name does not resolve.
    Unresolved(String),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::Refused(refused) => refused.fmt(f),
            Unreachable::Resolved(host, refused) => {
                write!(f, "{host} resolves to {}, {}", refused.address, refused.explain())
            }
            Unreachable::Unresolved(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Unreachable {}

/// A network as an operator writes it (`--webhook-allow-network`): CIDR, or one address.
pub fn parse_network(raw: &str) -> Result<IpNet, String> {
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{raw:?} is neither a CIDR network (10.20.0.0/16, fd00::/8) nor an address"))
}

fn is_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

fn special() -> &'static [(IpNet, &'static str)] {
    static TABLE: std::sync::LazyLock<Vec<(IpNet, &'static str)>> = std::sync::LazyLock::new(|| {
        SPECIAL
            .iter()
            .map(|(net, what)| (net.parse().expect("the table holds CIDR networks"), *what))
            .collect()
    });
    &TABLE
}

/// The IPv4 address inside an IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) or 6to4
/// (`2002::/16`) address. (Mapped addresses, `::ffff:a.b.c.d`, are made IPv4 by `to_canonical`.)
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let last = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6] == [0; 6] && v6 != Ipv6Addr::UNSPECIFIED && v6 != Ipv6Addr::LOCALHOST;
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if compatible || nat64 {
        Some(last)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else {
        None
    }
}

/// reqwest's resolver, so that every connection (each attempt, each redirect refused or not)
/// goes only to addresses `Reach` allows.
pub(super) struct Resolver(pub Reach);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let reach = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let kept = reach.resolve(&host, 0).await?;
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(reach: &Reach, ip: &str) -> Option<&'static str> {
        reach.refuses(ip.parse().unwrap()).map(|r| r.what)
    }

    #[test]
    fn internal_ranges_are_refused_and_public_ones_are_not() {
        let reach = Reach::public();
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "192.0.0.192",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a00:1::1",
        ] {
            assert!(refused(&reach, ip).is_some(), "{ip} should be refused");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2002:5db8:d822::1",
        ] {
            assert_eq!(refused(&reach, ip), None, "{ip} is public");
        }
        assert_eq!(
            refused(&reach, "169.254.169.254"),
            Some("link-local address (where cloud metadata services answer)")
        );
    }

    #[test]
    fn an_allowed_network_is_reached_and_only_it() {
        let reach = Reach::allowing(vec!["10.20.0.0/16".parse().unwrap()]);
        assert_eq!(refused(&reach, "10.20.3.4"), None);
        assert_eq!(refused(&reach, "::ffff:10.20.3.4"), None);
        assert!(refused(&reach, "10.21.0.1").is_some());
        assert!(refused(&reach, "127.0.0.1").is_some());
    }

    #[test]
    fn the_refusal_says_what_where_and_how_to_allow_it() {
        let text = Reach::public().refuses_host("[::ffff:10.0.0.7]").unwrap().to_string();
        assert_eq!(
            text,
            "::ffff:10.0.0.7 is a private address (10.0.0.0/8); nurture sends no webhooks into internal \
             networks. If the CRM runs on your own network, start the server with \
             --webhook-allow-network 10.0.0.0/8"
        );
        assert!(Reach::public().refuses_host("LOCALHOST.").is_some());
        assert!(Reach::public().refuses_host("app.localhost").is_some());
        assert_eq!(Reach::public().refuses_host("crm.example"), None);
    }

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_when_resolved() {
        let err = Reach::public().resolve("localhost", 80).await.unwrap_err();
        assert!(matches!(err, Unreachable::Resolved(..)), "{err}");
        assert!(err.to_string().starts_with("localhost resolves to "), "{err}");
        assert!(err.to_string().contains(", a loopback address"), "{err}");
        let allowed = Reach::allowing(vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
        assert!(!allowed.resolve("localhost", 80).await.unwrap().is_empty());
    }
}
