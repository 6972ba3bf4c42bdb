//! How fast mail may leave: a global rate and per-recipient-domain rates (token buckets from
//! `governor`), and a warm-up schedule for a new sending domain (a daily allowance that grows).

use chrono::{DateTime, NaiveDate, Utc};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

/// A daily allowance for a new sending domain: `start` messages on the first day, times
/// `growth` each day after (`--warmup 200/d,1.5x`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmup {
    pub start: u32,
    pub growth: f64,
}

impl std::str::FromStr for Warmup {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let fail = || {
            format!("{text:?} is not a warm-up schedule; write e.g. 200/d,1.5x (200 e-mails the first day, 1.5 times more each day)")
        };
        // `200/d,1.5x`, or the same as YAML: `{start: 200/d, growth: 1.5x}`.
        let (start, growth) = text
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .split_once(',')
            .ok_or_else(fail)?;
        let value = |part: &str, key: &str| {
            let part = part.trim();
            match part.split_once(':') {
                Some((k, v)) if k.trim() == key => Ok(v.trim().to_string()),
                Some(_) => Err(fail()),
                None => Ok(part.to_string()),
            }
        };
        let (start, growth) = (value(start, "start")?, value(growth, "growth")?);
        let start: u32 = start.trim().trim_end_matches("/d").trim().parse().map_err(|_| fail())?;
        let growth: f64 = growth.trim().trim_end_matches('x').trim().parse().map_err(|_| fail())?;
        if start == 0 || !(1.0..=10.0).contains(&growth) {
            return Err(format!(
                "{text:?}: the start must be at least 1 a day and the growth between 1x and 10x"
            ));
        }
        Ok(Self { start, growth })
    }
}

impl Warmup {
    /// How many e-mails day `day` (0 = the first day of sending) allows.
    pub fn allowance(&self, first: NaiveDate, now: DateTime<Utc>) -> u64 {
        let day = (now.date_naive() - first).num_days().max(0);
        let allowed = f64::from(self.start) * self.growth.powi(day.min(365) as i32);
        allowed.min(u64::MAX as f64 / 2.0) as u64
    }
}

/// `domain=N` of `--domain-rate`.
pub fn parse_domain_rate(text: &str) -> Result<(String, u32), String> {
    let fail = || format!("{text:?} is not a domain rate; write e.g. qq.com=10 (messages a second)");
    let (domain, rate) = text.split_once('=').ok_or_else(fail)?;
    let rate: u32 = rate.trim().trim_end_matches("/s").parse().map_err(|_| fail())?;
    let domain = domain.trim().to_lowercase();
    if domain.is_empty() || rate == 0 {
        return Err(fail());
    }
    Ok((domain, rate))
}

/// The send rates in force.
#[derive(Default)]
pub struct SendLimits {
    global: Option<(u32, DefaultDirectRateLimiter)>,
    domains: HashMap<String, (u32, DefaultDirectRateLimiter)>,
    /// Every other domain, each at its own `default_domain` rate.
    others: Option<(u32, DefaultKeyedRateLimiter<String>)>,
    pub warmup: Option<Warmup>,
}

fn quota(per_second: u32) -> Option<Quota> {
    NonZeroU32::new(per_second).map(Quota::per_second)
}

impl SendLimits {
    /// `global`: messages a second in all (0: no limit); `domains`: a rate per recipient
    /// domain; `default_domain`: the rate of each domain not named (0: none).
    pub fn new(global: u32, domains: &[(String, u32)], default_domain: u32, warmup: Option<Warmup>) -> Self {
        Self {
            global: quota(global).map(|q| (global, governor::RateLimiter::direct(q))),
            domains: domains
                .iter()
                .filter_map(|(d, r)| quota(*r).map(|q| (d.to_lowercase(), (*r, governor::RateLimiter::direct(q)))))
                .collect(),
            others: quota(default_domain).map(|q| (default_domain, governor::RateLimiter::keyed(q))),
            warmup,
        }
    }

    /// Whether any rate applies.
    pub fn limited(&self) -> bool {
        self.global.is_some() || !self.domains.is_empty() || self.others.is_some()
    }

    /// The most messages worth claiming for one pass of about `seconds`: claimed messages are
    /// leased, and should leave well before the lease ends.
    pub fn claim_budget(&self, seconds: u32) -> Option<i64> {
        self.global
            .as_ref()
            .map(|(rate, _)| i64::from(*rate) * i64::from(seconds.max(1)))
    }

    /// Takes a token to send to `domain` now, or says how long until one is free (and which
    /// limit it was).
    pub fn take(&self, domain: &str) -> Result<(), (Duration, String)> {
        let clock = DefaultClock::default();
        let domain = domain.to_lowercase();
        let wait = |n: governor::NotUntil<_>| n.wait_time_from(clock.now());
        if let Some((rate, limiter)) = self.domains.get(&domain) {
            limiter.check().map_err(|n| (wait(n), format!("{domain} {rate}/s")))?;
        } else if let Some((rate, limiter)) = &self.others {
            limiter
                .check_key(&domain)
                .map_err(|n| (wait(n), format!("{domain} {rate}/s (each domain)")))?;
        }
        if let Some((rate, limiter)) = &self.global {
            limiter.check().map_err(|n| (wait(n), format!("{rate}/s in all")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_and_rates_parse_with_clear_errors() {
        let w: Warmup = "200/d,1.5x".parse().unwrap();
        assert_eq!(
            w,
            Warmup {
                start: 200,
                growth: 1.5
            }
        );
        let first = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let at = |d: u32| {
            format!("2026-11-{:02}T12:00:00Z", 2 + d)
                .parse::<DateTime<Utc>>()
                .unwrap()
        };
        assert_eq!([0, 1, 2, 3].map(|d| w.allowance(first, at(d))), [200, 300, 450, 675]);
        assert_eq!("{start: 200/d, growth: 1.5x}".parse::<Warmup>().unwrap(), w);
        assert!("{begin: 200/d, growth: 1.5x}".parse::<Warmup>().is_err());
        assert!("200".parse::<Warmup>().unwrap_err().contains("200/d,1.5x"));
        assert!("0/d,2x".parse::<Warmup>().is_err());
        assert_eq!(parse_domain_rate("QQ.com=10").unwrap(), ("qq.com".into(), 10));
        assert!(parse_domain_rate("qq.com").unwrap_err().contains("qq.com=10"));
    }

    #[test]
    fn a_domain_s_bucket_runs_out_before_the_global_one() {
        let limits = SendLimits::new(1_000, &[("qq.com".into(), 2)], 0, None);
        assert!(limits.take("qq.com").is_ok());
        assert!(limits.take("QQ.com").is_ok());
        let (wait, which) = limits.take("qq.com").unwrap_err();
        assert_eq!(which, "qq.com 2/s");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(limits.take("163.com").is_ok(), "other domains are not held up");
    }
}
