//! Queue reports: what became of a queue's handoffs, per day or week and per member, added up
//! from the counters kept as handoffs move (`handoff_counts`: one row per queue, hour, member,
//! fact and detail). Times to claim are kept as a histogram of durations (`wait_bucket`), so
//! that percentiles of any span add up from hours.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{rate, Grouping, Span};

/// What a handoff counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HandoffFact {
    /// A handoff opened in the queue.
    Opened,
    /// A handoff moved here when another queue's SLA ran out.
    MovedIn,
    /// A handoff moved from here to another queue when this one's SLA ran out.
    MovedOut,
    /// A handoff left unclaimed past the queue's SLA (member: whom it was assigned to).
    Breached,
    /// A handoff taken by a member (a claim, or an accept or reject that claims as it decides).
    Claimed,
    /// How long a claimed handoff had waited since it was opened (detail: `wait_bucket`).
    ClaimWait,
    /// Given back to the queue by whoever held it.
    Released,
    Accepted,
    /// Rejected (detail: the reason as written).
    Rejected,
    Converted,
}

impl HandoffFact {
    pub const ALL: [HandoffFact; 10] = [
        Self::Opened,
        Self::MovedIn,
        Self::MovedOut,
        Self::Breached,
        Self::Claimed,
        Self::ClaimWait,
        Self::Released,
        Self::Accepted,
        Self::Rejected,
        Self::Converted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opened => "opened",
            Self::MovedIn => "moved_in",
            Self::MovedOut => "moved_out",
            Self::Breached => "breached",
            Self::Claimed => "claimed",
            Self::ClaimWait => "claim_wait",
            Self::Released => "released",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Converted => "converted",
        }
    }

    pub fn parse(text: &str) -> Option<HandoffFact> {
        Self::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

/// The longest rejection reason a counter keeps (longer ones are cut at a character edge).
pub const REASON_CHARS: usize = 200;

/// A rejection reason as counted: trimmed, at most `REASON_CHARS` characters.
pub fn reason_key(reason: &str) -> String {
    reason.trim().chars().take(REASON_CHARS).collect()
}

/// The histogram bucket of a duration in whole seconds: exact below 8 s, then eight buckets
/// per doubling, so that a bucket is at most 12.5% wider than its floor. Integer-only, so the
/// migration's backfill computes the same buckets in SQL.
pub fn wait_bucket(seconds: i64) -> i64 {
    let s = seconds.max(0);
    if s < 8 {
        return s;
    }
    let e = 63 - i64::from(s.leading_zeros());
    8 + (e - 3) * 8 + ((s >> (e - 3)) & 7)
}

/// The shortest duration (seconds) in `bucket`.
pub fn bucket_floor(bucket: i64) -> i64 {
    if bucket < 8 {
        return bucket.max(0);
    }
    let e = (bucket - 8) / 8 + 3;
    let k = (bucket - 8) % 8;
    (8 + k) << (e - 3)
}

/// The longest duration (seconds) in `bucket`.
pub fn bucket_ceiling(bucket: i64) -> i64 {
    bucket_floor(bucket + 1) - 1
}

/// Durations counted per `wait_bucket`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waits(BTreeMap<i64, i64>);

impl Waits {
    pub fn add(&mut self, bucket: i64, n: i64) {
        *self.0.entry(bucket).or_default() += n;
    }

    pub fn merge(&mut self, other: &Waits) {
        for (b, n) in &other.0 {
            self.add(*b, *n);
        }
    }

    pub fn count(&self) -> i64 {
        self.0.values().sum()
    }

    /// The duration (seconds) within which a share `p` (0 < p ≤ 1) of the counted ones fell:
    /// the ceiling of the bucket holding the ⌈p·n⌉-th shortest, so at most 12.5% above the
    /// true figure. `None` when nothing was counted.
    pub fn within(&self, p: f64) -> Option<i64> {
        let n = self.count();
        if n <= 0 {
            return None;
        }
        let rank = ((p * n as f64).ceil() as i64).clamp(1, n);
        let mut seen = 0;
        for (bucket, count) in &self.0 {
            seen += count;
            if seen >= rank {
                return Some(bucket_ceiling(*bucket));
            }
        }
        self.0.keys().last().map(|b| bucket_ceiling(*b))
    }
}

/// Handoff counts of a queue, or of one member in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HandoffFigures {
    pub opened: i64,
    pub moved_in: i64,
    pub moved_out: i64,
    pub breached: i64,
    pub claimed: i64,
    pub released: i64,
    pub accepted: i64,
    pub rejected: i64,
    pub converted: i64,
}

impl HandoffFigures {
    fn add(&mut self, fact: HandoffFact, n: i64) {
        let slot = match fact {
            HandoffFact::Opened => &mut self.opened,
            HandoffFact::MovedIn => &mut self.moved_in,
            HandoffFact::MovedOut => &mut self.moved_out,
            HandoffFact::Breached => &mut self.breached,
            HandoffFact::Claimed => &mut self.claimed,
            HandoffFact::ClaimWait => return,
            HandoffFact::Released => &mut self.released,
            HandoffFact::Accepted => &mut self.accepted,
            HandoffFact::Rejected => &mut self.rejected,
            HandoffFact::Converted => &mut self.converted,
        };
        *slot += n;
    }

    /// Handoffs that came into the queue: opened there or moved there.
    pub fn arrived(&self) -> i64 {
        self.opened + self.moved_in
    }
}

/// Handoff counts with their rates and times to claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HandoffSummary {
    #[serde(flatten)]
    pub figures: HandoffFigures,
    /// Opened here or moved here.
    pub arrived: i64,
    /// Accepted, rejected, over claimed; converted over accepted (of the same span: a deal
    /// closed this month may have been accepted last month).
    pub accept_rate: Option<f64>,
    pub reject_rate: Option<f64>,
    pub convert_rate: Option<f64>,
    /// Half of the claims came within this many seconds of the handoff opening, and nine in
    /// ten within `claim_p90_seconds` (histogram ceilings: at most 12.5% above the true time).
    pub claim_p50_seconds: Option<i64>,
    pub claim_p90_seconds: Option<i64>,
}

fn summary(f: &HandoffFigures, waits: &Waits) -> HandoffSummary {
    HandoffSummary {
        figures: *f,
        arrived: f.arrived(),
        accept_rate: rate(f.accepted, f.claimed),
        reject_rate: rate(f.rejected, f.claimed),
        convert_rate: rate(f.converted, f.accepted),
        claim_p50_seconds: waits.within(0.5),
        claim_p90_seconds: waits.within(0.9),
    }
}

/// A queue counter summed over one local day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffDayRow {
    pub day: NaiveDate,
    /// The member concerned; empty when none is (a handoff opened, moved, or breached unassigned).
    pub member: String,
    pub fact: HandoffFact,
    pub detail: String,
    pub n: i64,
}

/// A period of a queue report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HandoffPeriod {
    pub period: NaiveDate,
    #[serde(flatten)]
    pub summary: HandoffSummary,
}

/// A member's part of a queue report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberPart {
    pub member: String,
    #[serde(flatten)]
    pub summary: HandoffSummary,
}

/// How often a rejection reason was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReasonPart {
    pub reason: String,
    pub rejected: i64,
}

/// A period × member line of the CSV (member empty: the whole queue).
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffLine {
    pub period: NaiveDate,
    pub member: String,
    pub summary: HandoffSummary,
}

/// Queue counter rows added up for a report.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffTally {
    pub totals: HandoffSummary,
    /// Every period of the span, empty ones included.
    pub periods: Vec<HandoffPeriod>,
    /// Per member, in name order (only members something was counted for).
    pub members: Vec<MemberPart>,
    /// Most given first, then by reason.
    pub reasons: Vec<ReasonPart>,
    pub lines: Vec<HandoffLine>,
}

/// Adds up `rows` (days of `span`) into the span's periods, its members and the reasons given.
pub fn handoff_tally(rows: &[HandoffDayRow], span: &Span, by: Grouping) -> HandoffTally {
    type Acc = (HandoffFigures, Waits);
    let mut totals: Acc = Default::default();
    let mut periods: BTreeMap<NaiveDate, Acc> = span.periods(by).into_iter().map(|p| (p, Acc::default())).collect();
    let mut members: BTreeMap<String, Acc> = BTreeMap::new();
    let mut reasons: BTreeMap<String, i64> = BTreeMap::new();
    let mut lines: BTreeMap<(NaiveDate, String), Acc> = BTreeMap::new();
    let add = |acc: &mut Acc, row: &HandoffDayRow| {
        acc.0.add(row.fact, row.n);
        if row.fact == HandoffFact::ClaimWait {
            if let Ok(bucket) = row.detail.parse::<i64>() {
                acc.1.add(bucket, row.n);
            }
        }
    };
    for row in rows {
        if row.day < span.from || row.day > span.to {
            continue;
        }
        let period = by.period_of(row.day);
        add(&mut totals, row);
        add(periods.entry(period).or_default(), row);
        add(lines.entry((period, String::new())).or_default(), row);
        if !row.member.is_empty() {
            add(members.entry(row.member.clone()).or_default(), row);
            add(lines.entry((period, row.member.clone())).or_default(), row);
        }
        if row.fact == HandoffFact::Rejected {
            *reasons.entry(row.detail.clone()).or_default() += row.n;
        }
    }
    let mut reasons: Vec<ReasonPart> = reasons
        .into_iter()
        .map(|(reason, rejected)| ReasonPart { reason, rejected })
        .collect();
    reasons.sort_by(|a, b| b.rejected.cmp(&a.rejected).then_with(|| a.reason.cmp(&b.reason)));
    HandoffTally {
        totals: summary(&totals.0, &totals.1),
        periods: periods
            .into_iter()
            .map(|(period, (f, w))| HandoffPeriod {
                period,
                summary: summary(&f, &w),
            })
            .collect(),
        members: members
            .into_iter()
            .map(|(member, (f, w))| MemberPart {
                member,
                summary: summary(&f, &w),
            })
            .collect(),
        reasons,
        lines: lines
            .into_iter()
            .map(|((period, member), (f, w))| HandoffLine {
                period,
                member,
                summary: summary(&f, &w),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_exact_below_eight_seconds_then_an_eighth_of_a_doubling_wide() {
        for s in 0..8 {
            assert_eq!(wait_bucket(s), s);
            assert_eq!((bucket_floor(s), bucket_ceiling(s)), (s, s));
        }
        assert_eq!(wait_bucket(8), 8);
        assert_eq!(wait_bucket(15), 15);
        assert_eq!(wait_bucket(16), 16);
        assert_eq!(wait_bucket(17), 16);
        assert_eq!(wait_bucket(18), 17);
        // Two hours: 7,200 s lies in [7,168, 7,679].
        let b = wait_bucket(7_200);
        assert_eq!((bucket_floor(b), bucket_ceiling(b)), (7_168, 7_679));
        let mut last = -1;
        for s in 0..200_000 {
            let b = wait_bucket(s);
            assert!(bucket_floor(b) <= s && s <= bucket_ceiling(b), "{s} in bucket {b}");
            assert!(b == last || b == last + 1, "buckets follow one another at {s}");
            assert!((bucket_ceiling(b) - bucket_floor(b)) as f64 <= 0.125 * bucket_floor(b) as f64 + 1.0);
            last = b;
        }
        let year = 366 * 86_400;
        assert!(bucket_floor(wait_bucket(year)) <= year && year <= bucket_ceiling(wait_bucket(year)));
    }

    #[test]
    fn a_share_of_waits_falls_within_its_bucket_ceiling() {
        let mut w = Waits::default();
        assert_eq!(w.within(0.5), None);
        for s in [60, 120, 3_600, 7_200, 86_400] {
            w.add(wait_bucket(s), 1);
        }
        // Five waits: the 3rd shortest is the median, the 5th the 90th percentile.
        assert_eq!(w.within(0.5), Some(bucket_ceiling(wait_bucket(3_600))));
        assert_eq!(w.within(0.9), Some(bucket_ceiling(wait_bucket(86_400))));
        assert_eq!(w.within(0.2), Some(bucket_ceiling(wait_bucket(60))));
    }

    #[test]
    fn a_tally_adds_days_into_periods_members_and_reasons() {
        let span = Span {
            from: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 12, 3).unwrap(),
            tz: chrono_tz::UTC,
        };
        let day = |d| NaiveDate::from_ymd_opt(2026, 12, d).unwrap();
        let row = |d, member: &str, fact, detail: &str, n| HandoffDayRow {
            day: day(d),
            member: member.into(),
            fact,
            detail: detail.into(),
            n,
        };
        let rows = vec![
            row(1, "", HandoffFact::Opened, "", 4),
            row(2, "", HandoffFact::MovedIn, "", 1),
            row(1, "ann", HandoffFact::Claimed, "", 2),
            row(1, "ann", HandoffFact::ClaimWait, &wait_bucket(600).to_string(), 2),
            row(2, "bo", HandoffFact::Claimed, "", 1),
            row(2, "bo", HandoffFact::ClaimWait, &wait_bucket(7_200).to_string(), 1),
            row(2, "ann", HandoffFact::Accepted, "", 1),
            row(3, "ann", HandoffFact::Rejected, "no budget", 1),
            row(3, "bo", HandoffFact::Rejected, "no budget", 1),
            row(3, "bo", HandoffFact::Rejected, "student", 1),
            row(4, "bo", HandoffFact::Converted, "", 9),
        ];
        let t = handoff_tally(&rows, &span, Grouping::Day);
        assert_eq!(t.totals.arrived, 5);
        assert_eq!(t.totals.figures.claimed, 3);
        assert_eq!(t.totals.figures.rejected, 3);
        assert_eq!(t.totals.figures.converted, 0, "a day outside the span is left out");
        assert_eq!(t.totals.accept_rate, Some(0.3333));
        assert_eq!(t.totals.claim_p50_seconds, Some(bucket_ceiling(wait_bucket(600))));
        assert_eq!(t.totals.claim_p90_seconds, Some(bucket_ceiling(wait_bucket(7_200))));
        assert_eq!(t.periods.len(), 3);
        assert_eq!(t.periods[0].summary.figures.opened, 4);
        assert_eq!(t.periods[2].summary.figures.rejected, 3);
        let names: Vec<&str> = t.members.iter().map(|m| m.member.as_str()).collect();
        assert_eq!(names, ["ann", "bo"]);
        assert_eq!(t.members[1].summary.figures.rejected, 2);
        assert_eq!(
            t.members[1].summary.claim_p50_seconds,
            Some(bucket_ceiling(wait_bucket(7_200)))
        );
        assert_eq!(
            t.reasons,
            vec![
                ReasonPart {
                    reason: "no budget".into(),
                    rejected: 2
                },
                ReasonPart {
                    reason: "student".into(),
                    rejected: 1
                },
            ]
        );
        assert_eq!(
            t.lines.len(),
            3 + 3 + 2,
            "three queue lines, ann on days 1–3, bo on days 2–3"
        );
    }
}
