//! Reports: what the messages of a campaign did, per step, version, template, channel and
//! language, by day or week in a time zone. Pure: the store keeps counters per hour of sending
//! (`MessageFigures` per `CountKey` and hour); this module adds them up into periods, derives
//! delivered and the rates, and compares two arms of a split.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Microseconds in an hour: counters are kept per hour since the Unix epoch (UTC).
pub const HOUR_MICROS: i64 = 3_600_000_000;

/// The hour bucket of a time given in microseconds since the epoch.
pub fn hour_of(micros: i64) -> i64 {
    micros.div_euclid(HOUR_MICROS)
}

/// What a set of messages did. Every count is of the messages sent (or decided) in the period
/// the figures cover, wherever their opens and clicks fell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageFigures {
    /// Handed to the relay or WeChat (a relay's refusal counts here and as a hard bounce).
    pub sent: i64,
    /// Not sent: a render error, a channel that cannot send, retries given up.
    pub failed: i64,
    /// Not sent at send time: unsubscribed, suppressed, no address, the lead erased.
    pub skipped: i64,
    /// Hard bounces (the address does not exist; the relay refused it).
    pub bounced_hard: i64,
    /// Soft bounces (a full mailbox, a server down).
    pub bounced_soft: i64,
    /// Marked as spam by the reader.
    pub complained: i64,
    /// Unsubscribed through the message's link.
    pub unsubscribed: i64,
    /// Messages a person opened (unique human opens).
    pub opened: i64,
    /// Every human open.
    pub opens: i64,
    /// Messages a person clicked in (unique human clicks).
    pub clicked: i64,
    /// Every human click.
    pub clicks: i64,
    /// Opens by mail proxies and scanners, apart.
    pub opens_automated: i64,
    /// Clicks by link scanners, apart.
    pub clicks_automated: i64,
}

impl MessageFigures {
    pub const COUNT: usize = 13;
    /// The counters' names, as the store's columns and the CSV's headers name them.
    pub const NAMES: [&'static str; Self::COUNT] = [
        "sent",
        "failed",
        "skipped",
        "bounced_hard",
        "bounced_soft",
        "complained",
        "unsubscribed",
        "opened",
        "opens",
        "clicked",
        "clicks",
        "opens_automated",
        "clicks_automated",
    ];

    /// The counters in `NAMES` order.
    pub fn to_array(&self) -> [i64; Self::COUNT] {
        [
            self.sent,
            self.failed,
            self.skipped,
            self.bounced_hard,
            self.bounced_soft,
            self.complained,
            self.unsubscribed,
            self.opened,
            self.opens,
            self.clicked,
            self.clicks,
            self.opens_automated,
            self.clicks_automated,
        ]
    }

    /// Counters in `NAMES` order.
    pub fn from_array(values: [i64; Self::COUNT]) -> Self {
        let [sent, failed, skipped, bounced_hard, bounced_soft, complained, unsubscribed, opened, opens, clicked, clicks, opens_automated, clicks_automated] =
            values;
        MessageFigures {
            sent,
            failed,
            skipped,
            bounced_hard,
            bounced_soft,
            complained,
            unsubscribed,
            opened,
            opens,
            clicked,
            clicks,
            opens_automated,
            clicks_automated,
        }
    }

    /// Adds `other` into these figures.
    pub fn add(&mut self, other: &MessageFigures) {
        let mut mine = self.to_array();
        for (a, b) in mine.iter_mut().zip(other.to_array()) {
            *a += b;
        }
        *self = MessageFigures::from_array(mine);
    }

    /// Sent and not bounced.
    pub fn delivered(&self) -> i64 {
        (self.sent - self.bounced_hard - self.bounced_soft).max(0)
    }

    /// Whether every counter is zero.
    pub fn is_empty(&self) -> bool {
        self.to_array().iter().all(|n| *n == 0)
    }

    /// The figures with delivered and the rates, as reports answer them.
    pub fn summary(&self) -> Summary {
        let delivered = self.delivered();
        Summary {
            figures: *self,
            delivered,
            open_rate: rate(self.opened, delivered),
            click_rate: rate(self.clicked, delivered),
            click_to_open_rate: rate(self.clicked, self.opened),
            bounce_rate: rate(self.bounced_hard + self.bounced_soft, self.sent),
            unsubscribe_rate: rate(self.unsubscribed, delivered),
            complaint_rate: rate(self.complained, delivered),
        }
    }
}

/// `part / whole` rounded to four places (a tenth of a percent point and then some); `None`
/// when `whole` is zero.
pub fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

/// Figures with what is derived from them: delivered, and the rates over delivered (the bounce
/// rate over sent, click-to-open over unique opens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Summary {
    #[serde(flatten)]
    pub figures: MessageFigures,
    pub delivered: i64,
    pub open_rate: Option<f64>,
    pub click_rate: Option<f64>,
    pub click_to_open_rate: Option<f64>,
    pub bounce_rate: Option<f64>,
    pub unsubscribe_rate: Option<f64>,
    pub complaint_rate: Option<f64>,
}

/// What one counter row is about: a campaign step's messages of one version, template,
/// channel and language.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CountKey {
    pub campaign: String,
    pub step: String,
    pub version: String,
    pub template: String,
    pub channel: String,
    pub language: String,
}

/// How a report groups time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Grouping {
    #[default]
    Day,
    /// ISO weeks, Monday first.
    Week,
}

impl Grouping {
    /// The first day of the period `date` falls in.
    pub fn period_of(self, date: NaiveDate) -> NaiveDate {
        match self {
            Grouping::Day => date,
            Grouping::Week => date - Duration::days(i64::from(date.weekday().num_days_from_monday())),
        }
    }
}

/// The days a report covers, in a time zone: `from` to `to`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub tz: Tz,
}

impl Span {
    /// The hour buckets that cover the span: from the hour holding its first local midnight to
    /// the hour holding the midnight after its last day (excluded). In zones whose offset is
    /// not whole hours, a day's first and last half hour fall with the hour they start in.
    pub fn hours(&self) -> (i64, i64) {
        let start = local_midnight(self.from, self.tz);
        let end = local_midnight(self.to + Duration::days(1), self.tz);
        (
            hour_of(start.timestamp_micros()),
            hour_of(end.timestamp_micros() + HOUR_MICROS - 1),
        )
    }

    /// The span's hours cut where the zone's offset changes (a DST change): each piece's
    /// hours `from` ≤ hour < `to` and its offset in minutes, so that the local day of an hour
    /// `h` in it is `(h * 60 + offset) / 1440` days after 1970-01-01 (`day_number`).
    pub fn pieces(&self) -> Vec<Piece> {
        let (start, end) = self.hours();
        hour_pieces(self.tz, start, end)
    }

    /// Whether zone `other` cuts the span into the same local days: the same hours, with the
    /// same offsets (another name for the zone, or one that keeps the same time over the span).
    pub fn same_days(&self, other: Tz) -> bool {
        let theirs = Span { tz: other, ..*self };
        other == self.tz || (theirs.hours() == self.hours() && theirs.pieces() == self.pieces())
    }

    /// Every period of the span, in order.
    pub fn periods(&self, by: Grouping) -> Vec<NaiveDate> {
        let mut out = Vec::new();
        let mut day = by.period_of(self.from);
        while day <= self.to {
            out.push(day);
            day = match by {
                Grouping::Day => day + Duration::days(1),
                Grouping::Week => day + Duration::days(7),
            };
        }
        out
    }
}

/// Hours of a span with one UTC offset (see [`Span::pieces`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub from: i64,
    pub to: i64,
    /// Minutes ahead of UTC.
    pub offset: i64,
}

/// Hours `start` ≤ hour < `end` cut where `tz`'s offset changes (see [`Span::pieces`]).
pub fn hour_pieces(tz: Tz, start: i64, end: i64) -> Vec<Piece> {
    let offset = |hour: i64| {
        let at = DateTime::<Utc>::from_timestamp_micros(hour * HOUR_MICROS).unwrap_or_default();
        i64::from(at.with_timezone(&tz).offset().fix().local_minus_utc()) / 60
    };
    let mut pieces: Vec<Piece> = Vec::new();
    for hour in start..end {
        let minutes = offset(hour);
        match pieces.last_mut() {
            Some(p) if p.offset == minutes => p.to = hour + 1,
            _ => pieces.push(Piece {
                from: hour,
                to: hour + 1,
                offset: minutes,
            }),
        }
    }
    pieces
}

/// The date `days` days after 1970-01-01.
pub fn day_number(days: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default() + Duration::days(days)
}

/// The first instant of a local day (a day that starts in a DST gap starts when clocks jump).
fn local_midnight(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&midnight) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        chrono::LocalResult::None => tz
            .from_local_datetime(&(midnight + Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| midnight.and_utc()),
    }
}

/// A counter row as stored: a key's figures for one hour of sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    pub key: CountKey,
    pub hour: i64,
    pub figures: MessageFigures,
}

/// A key's figures for one local day of sending (the counters summed over its hours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRow {
    pub key: CountKey,
    pub day: NaiveDate,
    pub figures: MessageFigures,
}

/// One part of a breakdown: its name and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Part {
    pub name: String,
    #[serde(flatten)]
    pub summary: Summary,
}

/// A send step's figures (or a template's in one campaign step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepPart {
    pub campaign: String,
    pub step: String,
    pub template: String,
    pub channel: String,
    #[serde(flatten)]
    pub summary: Summary,
}

/// A period's figures: the day (or the Monday of the week) it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PeriodPart {
    pub period: NaiveDate,
    #[serde(flatten)]
    pub summary: Summary,
}

/// The finest grain a report has: a period, a key, its figures. What the CSV holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub period: NaiveDate,
    pub key: CountKey,
    pub figures: MessageFigures,
}

/// Counter rows added up for a report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub totals: MessageFigures,
    /// Per campaign step, in the order of `order` (steps it does not name after, by name).
    pub steps: Vec<StepPart>,
    pub versions: Vec<Part>,
    pub templates: Vec<Part>,
    pub channels: Vec<Part>,
    pub languages: Vec<Part>,
    /// Every period of the span, empty ones included.
    pub periods: Vec<PeriodPart>,
    pub lines: Vec<Line>,
}

/// Adds up `rows` (days of `span`) into the span's periods and breakdowns. `order` ranks
/// campaign steps (their graph order).
pub fn tally(rows: &[DayRow], span: &Span, by: Grouping, order: &dyn Fn(&str, &str) -> usize) -> Tally {
    use std::collections::BTreeMap;
    let mut totals = MessageFigures::default();
    let mut steps: BTreeMap<(usize, String, String, String, String), MessageFigures> = BTreeMap::new();
    let mut versions: BTreeMap<String, MessageFigures> = BTreeMap::new();
    let mut templates: BTreeMap<String, MessageFigures> = BTreeMap::new();
    let mut channels: BTreeMap<String, MessageFigures> = BTreeMap::new();
    let mut languages: BTreeMap<String, MessageFigures> = BTreeMap::new();
    let mut periods: BTreeMap<NaiveDate, MessageFigures> = span
        .periods(by)
        .into_iter()
        .map(|p| (p, MessageFigures::default()))
        .collect();
    let mut lines: BTreeMap<(NaiveDate, CountKey), MessageFigures> = BTreeMap::new();
    for row in rows {
        let day = row.day;
        if day < span.from || day > span.to {
            continue;
        }
        let period = by.period_of(day);
        let k = &row.key;
        let f = &row.figures;
        totals.add(f);
        steps
            .entry((
                order(&k.campaign, &k.step),
                k.campaign.clone(),
                k.step.clone(),
                k.template.clone(),
                k.channel.clone(),
            ))
            .or_default()
            .add(f);
        versions.entry(k.version.clone()).or_default().add(f);
        templates.entry(k.template.clone()).or_default().add(f);
        channels.entry(k.channel.clone()).or_default().add(f);
        languages.entry(k.language.clone()).or_default().add(f);
        periods.entry(period).or_default().add(f);
        lines.entry((period, k.clone())).or_default().add(f);
    }
    let parts = |map: BTreeMap<String, MessageFigures>| -> Vec<Part> {
        map.into_iter()
            .map(|(name, f)| Part {
                name,
                summary: f.summary(),
            })
            .collect()
    };
    Tally {
        totals,
        steps: steps
            .into_iter()
            .map(|((_, campaign, step, template, channel), f)| {
                let mut summary = f.summary();
                if channel != "email" {
                    // Only e-mail carries an open pixel and tracked links.
                    summary.open_rate = None;
                    summary.click_rate = None;
                    summary.click_to_open_rate = None;
                }
                StepPart {
                    campaign,
                    step,
                    template,
                    channel,
                    summary,
                }
            })
            .collect(),
        versions: parts(versions),
        templates: parts(templates),
        channels: parts(channels),
        languages: parts(languages),
        periods: periods
            .into_iter()
            .map(|(period, f)| PeriodPart {
                period,
                summary: f.summary(),
            })
            .collect(),
        lines: lines
            .into_iter()
            .map(|((period, key), figures)| Line { period, key, figures })
            .collect(),
    }
}

/// Two arms of a split compared on one rate: the difference B − A and its 95% interval
/// (a Wald interval for the difference of two proportions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Comparison {
    pub rate_a: Option<f64>,
    pub rate_b: Option<f64>,
    pub difference: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    /// Whether the interval excludes zero: the arms differ at 95%.
    pub significant: bool,
    /// Why nothing can be told yet, when the samples are too small: each arm needs at least
    /// ten successes and ten failures for the interval to hold.
    pub too_small: bool,
}

/// Compares `a_hits` of `a_total` with `b_hits` of `b_total`.
pub fn compare(a_hits: i64, a_total: i64, b_hits: i64, b_total: i64) -> Comparison {
    let p = |hits: i64, total: i64| (total > 0).then(|| hits as f64 / total as f64);
    let (pa, pb) = (p(a_hits, a_total), p(b_hits, b_total));
    let enough = |hits: i64, total: i64| hits >= 10 && total - hits >= 10;
    let too_small = !(enough(a_hits, a_total) && enough(b_hits, b_total));
    let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
    match (pa, pb) {
        (Some(pa), Some(pb)) => {
            let difference = pb - pa;
            let se = (pa * (1.0 - pa) / a_total as f64 + pb * (1.0 - pb) / b_total as f64).sqrt();
            let (low, high) = (difference - 1.96 * se, difference + 1.96 * se);
            Comparison {
                rate_a: Some(round(pa)),
                rate_b: Some(round(pb)),
                difference: Some(round(difference)),
                low: Some(round(low)),
                high: Some(round(high)),
                significant: !too_small && (low > 0.0 || high < 0.0),
                too_small,
            }
        }
        _ => Comparison {
            rate_a: pa.map(round),
            rate_b: pb.map(round),
            difference: None,
            low: None,
            high: None,
            significant: false,
            too_small: true,
        },
    }
}

/// The rate a split's arms are compared on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SplitRate {
    /// Unique human opens over delivered, of the arm's messages in the window.
    #[default]
    Open,
    /// Unique human clicks over delivered, of the arm's messages in the window.
    Click,
    /// Leads handed off in the arm over leads that entered it, since the campaign started.
    Handoff,
}

impl SplitRate {
    pub fn parse(text: &str) -> Option<SplitRate> {
        match text.trim() {
            "open" => Some(SplitRate::Open),
            "click" => Some(SplitRate::Click),
            "handoff" => Some(SplitRate::Handoff),
            _ => None,
        }
    }
}

/// One arm of a split in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArmReport {
    /// 1 for the first arm written.
    pub arm: u32,
    pub weight: u32,
    /// The step the arm leads to.
    pub first_step: String,
    /// Leads that took the arm, and of them those handed off in it (since the campaign started).
    pub entered: i64,
    pub handed_off: i64,
    /// The messages of the steps only this arm reaches, in the window.
    pub messages: Summary,
}

/// A split's arms side by side, each compared with the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SplitReport {
    /// The split step.
    pub step: String,
    pub rate: SplitRate,
    pub arms: Vec<ArmReport>,
    /// Each later arm against arm 1: B − A on `rate` with its 95% interval.
    pub comparisons: Vec<ArmComparison>,
}

/// An arm compared with the first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArmComparison {
    pub arm: u32,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// A campaign's splits as a report shows them: `arms` from `Campaign::split_arms`, the
/// window's message figures per step, and per step the leads that entered it and those it
/// handed off (all time).
pub fn splits(
    arms: &[(String, Vec<crate::playbook::SplitArm>)],
    messages: &std::collections::HashMap<String, MessageFigures>,
    flow: &std::collections::HashMap<String, (i64, i64)>,
    rate: SplitRate,
) -> Vec<SplitReport> {
    arms.iter()
        .map(|(split, arms)| {
            let reports: Vec<ArmReport> = arms
                .iter()
                .map(|arm| {
                    let mut figures = MessageFigures::default();
                    let mut handed_off = 0;
                    for step in &arm.steps {
                        if let Some(f) = messages.get(step) {
                            figures.add(f);
                        }
                        handed_off += flow.get(step).map_or(0, |(_, h)| *h);
                    }
                    ArmReport {
                        arm: arm.number,
                        weight: arm.weight,
                        first_step: arm.first.clone(),
                        entered: flow.get(&arm.first).map_or(0, |(e, _)| *e),
                        handed_off,
                        messages: figures.summary(),
                    }
                })
                .collect();
            let hits = |a: &ArmReport| match rate {
                SplitRate::Open => (a.messages.figures.opened, a.messages.delivered),
                SplitRate::Click => (a.messages.figures.clicked, a.messages.delivered),
                SplitRate::Handoff => (a.handed_off, a.entered),
            };
            let comparisons = match reports.first() {
                Some(first) => reports[1..]
                    .iter()
                    .map(|b| {
                        let ((ah, at), (bh, bt)) = (hits(first), hits(b));
                        ArmComparison {
                            arm: b.arm,
                            comparison: compare(ah, at, bh, bt),
                        }
                    })
                    .collect(),
                None => Vec::new(),
            };
            SplitReport {
                step: split.clone(),
                rate,
                arms: reports,
                comparisons,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_adds_up_per_step_and_version_in_graph_order() {
        let order = |step: &str| {
            ["welcome", "pause", "branch"]
                .iter()
                .position(|s| *s == step)
                .unwrap_or(3)
        };
        let rows = [
            ("branch", "v2", "yes", 3, 3),
            ("branch", "v1", "no", 2, 2),
            ("pause", "v1", "waiting", 5, 5),
            ("pause", "v1", "waited", 0, 4),
            ("welcome", "v1", "sent", 5, 5),
            ("pause", "v2", "waiting", 2, 2),
        ];
        // v2 was deployed before v1 (names are content hashes, in no order of their own).
        let deployed = |v: &str| usize::from(v == "v1");
        let flow = flow_parts(rows, [("pause", "v2", 2), ("pause", "v1", 1)], &order, &deployed);
        let steps: Vec<&str> = flow.iter().map(|f| f.step.as_str()).collect();
        assert_eq!(steps, ["welcome", "pause", "branch"]);
        let pause = &flow[1];
        assert_eq!((pause.entered, pause.waiting), (7, 3));
        assert_eq!(
            pause.outcomes,
            [("waited".to_owned(), 4), ("waiting".to_owned(), 7)].into()
        );
        assert_eq!(
            pause.versions,
            vec![
                FlowVersion {
                    version: "v2".into(),
                    entered: 2,
                    waiting: 2,
                    outcomes: [("waiting".to_owned(), 2)].into(),
                },
                FlowVersion {
                    version: "v1".into(),
                    entered: 5,
                    waiting: 1,
                    outcomes: [("waited".to_owned(), 4), ("waiting".to_owned(), 5)].into(),
                },
            ]
        );
        assert_eq!(flow[2].entered, 5);
        assert_eq!(flow[2].outcomes, [("no".to_owned(), 2), ("yes".to_owned(), 3)].into());
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// The local day an hour bucket starts in, worked out from the zone itself: what the
    /// pieces' day numbers must agree with.
    fn day_of(span: &Span, hour: i64) -> NaiveDate {
        let at = DateTime::<Utc>::from_timestamp_micros(hour * HOUR_MICROS).unwrap();
        at.with_timezone(&span.tz).date_naive()
    }

    #[test]
    fn rates_are_over_delivered_and_absent_without_any() {
        let f = MessageFigures {
            sent: 10,
            bounced_hard: 1,
            bounced_soft: 1,
            opened: 4,
            clicked: 1,
            ..Default::default()
        };
        let s = f.summary();
        assert_eq!(s.delivered, 8);
        assert_eq!(s.open_rate, Some(0.5));
        assert_eq!(s.click_rate, Some(0.125));
        assert_eq!(s.click_to_open_rate, Some(0.25));
        assert_eq!(s.bounce_rate, Some(0.2));
        assert_eq!(MessageFigures::default().summary().open_rate, None);
    }

    #[test]
    fn figures_round_trip_through_their_array() {
        let f = MessageFigures {
            sent: 1,
            clicks_automated: 13,
            ..Default::default()
        };
        assert_eq!(MessageFigures::from_array(f.to_array()), f);
        assert_eq!(MessageFigures::NAMES.len(), MessageFigures::COUNT);
        assert_eq!(MessageFigures::NAMES[12], "clicks_automated");
    }

    #[test]
    fn a_span_covers_its_local_days_in_whole_hours() {
        let shanghai = Span {
            from: day("2026-12-01"),
            to: day("2026-12-01"),
            tz: chrono_tz::Asia::Shanghai,
        };
        let (start, end) = shanghai.hours();
        // Midnight in Shanghai is 16:00 UTC the day before.
        let expected = Utc.with_ymd_and_hms(2026, 11, 30, 16, 0, 0).unwrap().timestamp_micros();
        assert_eq!(start, hour_of(expected));
        assert_eq!(end - start, 24);
        assert_eq!(day_of(&shanghai, start), day("2026-12-01"));
        assert_eq!(day_of(&shanghai, start - 1), day("2026-11-30"));
    }

    #[test]
    fn a_day_with_a_dst_change_has_its_own_length() {
        let berlin = Span {
            from: day("2026-03-29"),
            to: day("2026-03-29"),
            tz: chrono_tz::Europe::Berlin,
        };
        let (start, end) = berlin.hours();
        assert_eq!(end - start, 23);
    }

    #[test]
    fn weeks_start_on_monday() {
        let span = Span {
            from: day("2026-12-02"),
            to: day("2026-12-15"),
            tz: chrono_tz::UTC,
        };
        assert_eq!(
            span.periods(Grouping::Week),
            vec![day("2026-11-30"), day("2026-12-07"), day("2026-12-14")]
        );
        assert_eq!(span.periods(Grouping::Day).len(), 14);
    }

    #[test]
    fn a_tally_puts_each_hour_in_its_local_day() {
        let span = Span {
            from: day("2026-12-01"),
            to: day("2026-12-02"),
            tz: chrono_tz::Asia::Shanghai,
        };
        let (start, end) = span.hours();
        assert_eq!(
            span.pieces(),
            [Piece {
                from: start,
                to: end,
                offset: 480
            }]
        );
        // As the store groups an hour: its local day number.
        let local = |hour: i64| day_number((hour * 60 + 480).div_euclid(1440));
        assert_eq!(local(start), day("2026-12-01"));
        assert_eq!(local(start + 23), day("2026-12-01"));
        assert_eq!(local(start + 24), day("2026-12-02"));
        assert_eq!(local(start - 1), day("2026-11-30"));
        let key = |step: &str, language: &str| CountKey {
            campaign: "c".into(),
            step: step.into(),
            version: "v1".into(),
            template: "t".into(),
            channel: "email".into(),
            language: language.into(),
        };
        let row = |step: &str, language: &str, hour: i64, sent: i64, opened: i64| DayRow {
            key: key(step, language),
            day: local(hour),
            figures: MessageFigures {
                sent,
                opened,
                ..Default::default()
            },
        };
        let rows = vec![
            row("b", "zh", start, 2, 1),
            row("a", "en", start + 23, 1, 0),
            row("a", "en", start + 24, 4, 0),
            // The day before the span is left out.
            row("a", "en", start - 1, 100, 0),
        ];
        let order = |_: &str, step: &str| if step == "b" { 0 } else { 1 };
        let t = tally(&rows, &span, Grouping::Day, &order);
        assert_eq!(t.totals.sent, 7);
        assert_eq!(
            t.periods.iter().map(|p| p.summary.figures.sent).collect::<Vec<_>>(),
            vec![3, 4]
        );
        assert_eq!(
            t.steps.iter().map(|s| s.step.as_str()).collect::<Vec<_>>(),
            vec!["b", "a"]
        );
        assert_eq!(
            t.languages
                .iter()
                .map(|p| (p.name.as_str(), p.summary.figures.sent))
                .collect::<Vec<_>>(),
            vec![("en", 5), ("zh", 2)]
        );
        assert_eq!(t.lines.len(), 3);
        assert_eq!(t.steps[0].summary.open_rate, Some(0.5));
    }

    #[test]
    fn a_span_over_a_dst_change_is_cut_where_the_offset_changes() {
        let berlin = Span {
            from: day("2026-10-24"),
            to: day("2026-10-26"),
            tz: chrono_tz::Europe::Berlin,
        };
        let (start, end) = berlin.hours();
        let pieces = berlin.pieces();
        assert_eq!(pieces.len(), 2, "{pieces:?}");
        assert_eq!((pieces[0].from, pieces[0].offset), (start, 120));
        assert_eq!((pieces[1].to, pieces[1].offset), (end, 60));
        assert_eq!(pieces[0].to, pieces[1].from);
        // Three days, one of them 25 hours long.
        assert_eq!(end - start, 73);
        for piece in &pieces {
            for hour in piece.from..piece.to {
                assert_eq!(
                    day_number((hour * 60 + piece.offset).div_euclid(1440)),
                    day_of(&berlin, hour)
                );
            }
        }
    }

    #[test]
    fn zones_that_keep_the_same_time_cut_a_span_into_the_same_days() {
        let span = |from: &str, to: &str, tz| Span {
            from: day(from),
            to: day(to),
            tz,
        };
        let berlin = span("2026-10-01", "2026-10-31", chrono_tz::Europe::Berlin);
        assert!(berlin.same_days(chrono_tz::Europe::Paris), "the same DST rules");
        assert!(!berlin.same_days(chrono_tz::Europe::London), "an hour apart");
        assert!(
            !berlin.same_days(chrono_tz::Africa::Lagos),
            "UTC+1 all year: not after the change"
        );
        // Before the change Lagos (UTC+1) and Berlin (UTC+2) differ too; in winter they agree.
        let winter = span("2026-12-01", "2026-12-31", chrono_tz::Europe::Berlin);
        assert!(winter.same_days(chrono_tz::Africa::Lagos));
        let shanghai = span("2026-09-01", "2026-11-29", chrono_tz::Asia::Shanghai);
        assert!(shanghai.same_days(chrono_tz::Asia::Chongqing));
        assert!(!shanghai.same_days(chrono_tz::UTC));
    }

    #[test]
    fn a_split_says_when_it_cannot_tell() {
        let small = compare(3, 20, 5, 20);
        assert!(small.too_small);
        assert!(!small.significant);
        // 20% against 30% of 1,000 each: the difference is 0.1 with a standard error of
        // sqrt(0.2*0.8/1000 + 0.3*0.7/1000) = 0.019235, so the interval is 0.1 ± 0.0377.
        let large = compare(200, 1000, 300, 1000);
        assert!(!large.too_small);
        assert!(large.significant);
        assert_eq!(large.difference, Some(0.1));
        assert_eq!(large.low, Some(0.0623));
        assert_eq!(large.high, Some(0.1377));
    }
}

pub mod attribution;
pub mod queue;

/// A campaign step's flow in a span: arrivals, the journey's lines by outcome (moves along
/// each edge: `yes`, `no`, `sent`, `waited`, `arm 1`; exits by reason: `goal`, `exited`, …),
/// and the enrollments waiting there now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FlowPart {
    pub step: String,
    pub entered: i64,
    /// Waiting at the step now (whatever the span).
    pub waiting: i64,
    pub outcomes: std::collections::BTreeMap<String, i64>,
    /// The same per campaign version, in version order.
    pub versions: Vec<FlowVersion>,
}

/// A step's flow in one campaign version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FlowVersion {
    pub version: String,
    pub entered: i64,
    pub waiting: i64,
    pub outcomes: std::collections::BTreeMap<String, i64>,
}

impl FlowVersion {
    fn add(&mut self, outcome: &str, entered: i64, lines: i64) {
        self.entered += entered;
        if lines != 0 {
            *self.outcomes.entry(outcome.to_owned()).or_default() += lines;
        }
    }
}

/// Flow counters (step, version, outcome, arrivals, lines) and the enrollments waiting now
/// (step, version, how many) added up per step and version, steps ranked by `order` (their
/// graph order), versions by `versions` (the order they were deployed in).
pub fn flow_parts<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a str, &'a str, i64, i64)>,
    waiting: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
    order: &dyn Fn(&str) -> usize,
    versions: &dyn Fn(&str) -> usize,
) -> Vec<FlowPart> {
    use std::collections::BTreeMap;
    type Versions = BTreeMap<(usize, String), FlowVersion>;
    let mut steps: BTreeMap<(usize, String), (FlowVersion, Versions)> = BTreeMap::new();
    for (step, version, outcome, entered, lines) in rows {
        let (all, by_version) = steps.entry((order(step), step.to_owned())).or_default();
        all.add(outcome, entered, lines);
        by_version
            .entry((versions(version), version.to_owned()))
            .or_default()
            .add(outcome, entered, lines);
    }
    for (step, version, n) in waiting {
        let (all, by_version) = steps.entry((order(step), step.to_owned())).or_default();
        all.waiting += n;
        by_version
            .entry((versions(version), version.to_owned()))
            .or_default()
            .waiting += n;
    }
    steps
        .into_iter()
        .map(|((_, step), (all, versions))| FlowPart {
            step,
            entered: all.entered,
            waiting: all.waiting,
            outcomes: all.outcomes,
            versions: versions
                .into_iter()
                .map(|((_, version), v)| FlowVersion { version, ..v })
                .collect(),
        })
        .collect()
}

/// How long enrollments waited at a wait step before going on, of those that went on in a
/// span (within 12.5% above: histogram ceilings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WaitPart {
    pub step: String,
    pub went_on: i64,
    pub p50_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
    /// The same per campaign version, in version order.
    pub versions: Vec<WaitVersion>,
}

/// A wait step's times in one campaign version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WaitVersion {
    pub version: String,
    pub went_on: i64,
    pub p50_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
}

/// Wait counters (step, version, `queue::wait_bucket`, how many) added up per step and
/// version, steps ranked by `order` (their graph order), versions by `versions` (the order
/// they were deployed in).
pub fn wait_parts<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a str, i64, i64)>,
    order: &dyn Fn(&str) -> usize,
    versions: &dyn Fn(&str) -> usize,
) -> Vec<WaitPart> {
    use std::collections::BTreeMap;
    type Versions = BTreeMap<(usize, String), queue::Waits>;
    let mut steps: BTreeMap<(usize, String), (queue::Waits, Versions)> = BTreeMap::new();
    for (step, version, bucket, n) in rows {
        let (all, by_version) = steps.entry((order(step), step.to_owned())).or_default();
        all.add(bucket, n);
        by_version
            .entry((versions(version), version.to_owned()))
            .or_default()
            .add(bucket, n);
    }
    steps
        .into_iter()
        .map(|((_, step), (all, versions))| WaitPart {
            step,
            went_on: all.count(),
            p50_seconds: all.within(0.5),
            p90_seconds: all.within(0.9),
            versions: versions
                .into_iter()
                .map(|((_, version), w)| WaitVersion {
                    version,
                    went_on: w.count(),
                    p50_seconds: w.within(0.5),
                    p90_seconds: w.within(0.9),
                })
                .collect(),
        })
        .collect()
}
