//! Who fetched a tracking pixel or link: a person, or a machine (an image proxy, a privacy
//! prefetcher, a security gateway that follows every link). B2B "branch on opened" is only as
//! good as this: both kinds are recorded, and conditions count people unless told otherwise.
//! The known fetchers are data (`engine/data/automated-fetchers.txt`). Pure.

use chrono::{DateTime, Duration, Utc};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::LazyLock;

/// A fetch this soon after the message left is a machine: gateways and prefetchers fetch on
/// delivery, before anyone could have read it.
pub const ON_DELIVERY: Duration = Duration::seconds(10);
/// Clicks on different links of one message this close together are a scanner walking the
/// links, not a reader.
pub const BURST: Duration = Duration::seconds(3);

/// One fetch of a pixel or a link, as the server saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fetch<'a> {
    /// A HEAD request: link checkers ask whether a page is there; people's browsers GET it.
    pub head: bool,
    pub agent: &'a str,
    pub ip: Option<IpAddr>,
    /// How long after the message was sent (unknown when it was never marked sent).
    pub since_sent: Option<Duration>,
}

enum Pattern {
    Agent(String),
    Network(IpNet),
}

struct Known {
    pattern: Pattern,
    who: String,
}

static KNOWN: LazyLock<Vec<Known>> = LazyLock::new(|| {
    parse(include_str!("../data/automated-fetchers.txt")).unwrap_or_else(|e| panic!("automated-fetchers.txt: {e}"))
});

fn parse(text: &str) -> Result<Vec<Known>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (kind, rest) = line
            .split_once(char::is_whitespace)
            .ok_or(format!("line {}: no pattern", n + 1))?;
        let rest = rest.trim();
        // The pattern runs to the first run of two spaces; the rest says who it is.
        let (pattern, who) = match rest.find("  ") {
            Some(at) => (rest[..at].trim(), rest[at..].trim()),
            None => (rest, ""),
        };
        let pattern = match kind {
            "agent" => Pattern::Agent(pattern.to_lowercase()),
            "network" => Pattern::Network(
                pattern
                    .parse()
                    .map_err(|e| format!("line {}: {pattern:?} is not a CIDR network: {e}", n + 1))?,
            ),
            other => return Err(format!("line {}: {other:?} is neither `agent` nor `network`", n + 1)),
        };
        out.push(Known {
            pattern,
            who: who.to_owned(),
        });
    }
    Ok(out)
}

/// Why a fetch is a machine's, or `None` for a person's.
pub fn automated(fetch: &Fetch<'_>) -> Option<String> {
    if fetch.head {
        return Some("HEAD request".into());
    }
    if let Some(since) = fetch.since_sent {
        if since < ON_DELIVERY {
            return Some(format!("{} s after sending", since.num_seconds().max(0)));
        }
    }
    let agent = fetch.agent.to_lowercase();
    KNOWN.iter().find_map(|known| {
        let hit = match &known.pattern {
            Pattern::Agent(text) => agent.contains(text.as_str()),
            Pattern::Network(net) => fetch.ip.is_some_and(|ip| net.contains(&ip)),
        };
        hit.then(|| known.who.clone())
    })
}

/// Of a message's clicks (time, URL), those in a burst: within [`BURST`] of a click on another
/// URL of the same message.
pub fn in_burst(clicks: &[(DateTime<Utc>, &str)]) -> Vec<bool> {
    clicks
        .iter()
        .map(|(at, url)| {
            clicks
                .iter()
                .any(|(other_at, other)| other != url && (*other_at - *at).abs() <= BURST)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_list_parses_and_names_who() {
        assert!(KNOWN.len() >= 10);
        let gmail = Fetch {
            agent: "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            ..Default::default()
        };
        assert_eq!(automated(&gmail).as_deref(), Some("Gmail image proxy"));
        let apple = Fetch {
            agent: "Mozilla/5.0",
            ip: Some("17.58.100.1".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(
            automated(&apple).as_deref(),
            Some("Apple Mail Privacy Protection (Apple's network)")
        );
        assert!(parse("agent\n").is_err());
        assert!(parse("network 300.1.1.1/8  nobody\n").is_err());
        assert!(parse("proxy GoogleImageProxy\n").is_err());
    }

    #[test]
    fn a_person_is_a_get_from_a_browser_some_time_after_sending() {
        let person = Fetch {
            agent: "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15",
            ip: Some("203.0.113.9".parse().unwrap()),
            since_sent: Some(Duration::minutes(42)),
            head: false,
        };
        assert_eq!(automated(&person), None);
        assert_eq!(
            automated(&Fetch {
                since_sent: Some(Duration::seconds(2)),
                ..person
            })
            .as_deref(),
            Some("2 s after sending")
        );
        assert_eq!(
            automated(&Fetch { head: true, ..person }).as_deref(),
            Some("HEAD request")
        );
    }

    #[test]
    fn clicks_on_every_link_at_once_are_a_burst() {
        let clicks = [
            (at(0), "https://a"),
            (at(1), "https://b"),
            (at(2), "https://c"),
            (at(600), "https://a"),
        ];
        assert_eq!(in_burst(&clicks), [true, true, true, false]);
        // The same link twice is a person double-clicking.
        assert_eq!(in_burst(&[(at(0), "https://a"), (at(1), "https://a")]), [false, false]);
    }
}
