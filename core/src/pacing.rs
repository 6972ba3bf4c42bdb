//! Pacing: whether a send may go now, and if not, when. Frequency caps across campaigns,
//! the campaign's send window and the playbook's quiet hours, all in the lead's time zone.
//! Pure: the journey's step function asks a [`Pacer`] before every send.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use sha2::Digest;

use crate::lead::LeadId;
use crate::playbook::{Channel, FrequencyCap, OnCap, QuietHours, Rules, SendWindow};

/// What a pacer says to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Send now.
    Go,
    /// Not now: the enrollment waits at the send step until `until`.
    Defer { until: DateTime<Utc>, why: String },
    /// Not at all, for a reason of pacing (a cap with `on_cap: skip`): the flow goes on
    /// without the message.
    Skip { why: String },
    /// The lead cannot get this channel (unsubscribed, no address, suppressed): the step
    /// records a skipped message with this reason and the flow goes on.
    Unreachable { why: String },
}

/// One send the step function is about to make.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub campaign: &'a str,
    pub step: &'a str,
    pub channel: Channel,
    pub window: Option<&'a SendWindow>,
    pub on_cap: OnCap,
}

/// Asked before every send. A `Go` counts the send against the caps.
pub trait Pacer {
    fn gate(&mut self, ask: Ask<'_>, now: DateTime<Utc>) -> Gate;
    /// The lead's time zone (its own, else the playbook's default): what a wait until a wall
    /// time reads it in.
    fn timezone(&self) -> Tz {
        Tz::UTC
    }
}

/// Lets every send go: for callers that pace elsewhere, and tests of other things.
pub struct Unpaced;

impl Pacer for Unpaced {
    fn gate(&mut self, _ask: Ask<'_>, _now: DateTime<Utc>) -> Gate {
        Gate::Go
    }
}

/// The pacing of one lead in one pass: the playbook's caps and quiet hours, the lead's time
/// zone, what was sent to the lead lately (and in this pass), and the channels it cannot get.
pub struct Pacing<'a> {
    rules: &'a Rules,
    lead: LeadId,
    tz: Tz,
    /// Times of sends by channel (see [`slot`]), oldest first.
    sent: [Vec<DateTime<Utc>>; 3],
    /// Why the lead cannot get a channel, by channel.
    unreachable: [Option<String>; 3],
}

/// A channel's place in a [`Pacing`]'s arrays: one is made for every lead of every pass, and
/// two hash maps for three channels cost more than the rest of it.
fn slot(channel: Channel) -> usize {
    match channel {
        Channel::Email => 0,
        Channel::Wechat => 1,
        Channel::Webhook => 2,
    }
}

impl<'a> Pacing<'a> {
    pub fn new(rules: &'a Rules, lead: LeadId, tz: Tz) -> Self {
        Self {
            rules,
            lead,
            tz,
            sent: Default::default(),
            unreachable: Default::default(),
        }
    }

    /// A send made before this pass (any campaign), that counts against the caps.
    pub fn sent(&mut self, channel: Channel, at: DateTime<Utc>) {
        let times = &mut self.sent[slot(channel)];
        let index = times.partition_point(|t| *t <= at);
        times.insert(index, at);
    }

    /// The lead cannot get `channel`, for this reason.
    pub fn unreachable(&mut self, channel: Channel, why: impl Into<String>) {
        self.unreachable[slot(channel)] = Some(why.into());
    }
}

impl Pacer for Pacing<'_> {
    fn timezone(&self) -> Tz {
        self.tz
    }

    fn gate(&mut self, ask: Ask<'_>, now: DateTime<Utc>) -> Gate {
        if let Some(why) = &self.unreachable[slot(ask.channel)] {
            return Gate::Unreachable { why: why.clone() };
        }
        let mut why = Vec::new();
        let mut at = now;
        if let Some(cap) = self.rules.frequency.get(&ask.channel) {
            let sent = self.sent[slot(ask.channel)].as_slice();
            let free = cap_free(sent, *cap, now);
            if free > now {
                let reached = format!(
                    "frequency cap of {} {} per {} reached",
                    cap.max,
                    ask.channel.as_str(),
                    cap.per
                );
                if ask.on_cap == OnCap::Skip {
                    return Gate::Skip {
                        why: format!("{reached}; on_cap: skip"),
                    };
                }
                why.push(format!("{reached} until {}", free.to_rfc3339()));
                at = free;
            }
        }
        let quiet = self.rules.quiet_hours.as_ref();
        let (open, close) = next_open(at, self.tz, ask.window, quiet);
        if open > at {
            let (what, spread) = match ask.window {
                Some(w) if !inside(at, self.tz, Some(w), None) => (
                    format!(
                        "outside the send window ({} {}-{} {})",
                        days(w),
                        w.from.format("%H:%M"),
                        w.to.format("%H:%M"),
                        self.tz
                    ),
                    w.spread,
                ),
                _ => {
                    let q = quiet.copied().unwrap_or(QuietHours {
                        from: NaiveTime::MIN,
                        to: NaiveTime::MIN,
                        spread: crate::playbook::default_spread(),
                    });
                    (
                        format!(
                            "in quiet hours ({}-{} {})",
                            q.from.format("%H:%M"),
                            q.to.format("%H:%M"),
                            self.tz
                        ),
                        ask.window.map_or(q.spread, |w| w.spread),
                    )
                }
            };
            // Spread over the first minutes of the opening, the same offset for the same lead
            // and step, and never past the window's close.
            let room = (close - open).num_seconds().min(spread.secs()).max(1);
            let offset = spread_offset(self.lead, ask.campaign, ask.step, room);
            at = open + Duration::seconds(offset);
            why.push(format!("{what}; opens {}", open.with_timezone(&self.tz).to_rfc3339()));
        }
        if at > now {
            Gate::Defer {
                until: at,
                why: why.join("; "),
            }
        } else {
            self.sent(ask.channel, now);
            Gate::Go
        }
    }
}

/// The first moment at or after `now` when fewer than `cap.max` of `sent` (sorted) fall in the
/// window `(t - per, t]`: sends only leave the window, so this is when the oldest one that
/// keeps the count at the cap leaves it.
pub fn cap_free(sent: &[DateTime<Utc>], cap: FrequencyCap, now: DateTime<Utc>) -> DateTime<Utc> {
    let per = cap.per.to_chrono();
    let inside: Vec<DateTime<Utc>> = sent.iter().copied().filter(|t| *t > now - per && *t <= now).collect();
    let max = cap.max as usize;
    if inside.len() < max {
        return now;
    }
    // Of the sends inside, the first (len - max + 1) must leave.
    inside[inside.len() - max] + per
}

fn days(window: &SendWindow) -> String {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    if window.days.len() == 7 {
        return "daily".into();
    }
    window
        .days
        .iter()
        .map(|d| NAMES[*d as usize % 7])
        .collect::<Vec<_>>()
        .join(",")
}

/// Seconds of the day, `86_400` standing for the midnight that ends it.
type Secs = u32;
const DAY: Secs = 86_400;

fn secs(time: NaiveTime) -> Secs {
    time.num_seconds_from_midnight()
}

/// The local intervals of `date` in which sends may go: inside the window (if any) and
/// outside the quiet hours (if any).
fn allowed(date: NaiveDate, window: Option<&SendWindow>, quiet: Option<&QuietHours>) -> Vec<(Secs, Secs)> {
    let mut open: Vec<(Secs, Secs)> = match window {
        Some(w) if w.has_day(date.weekday()) => vec![(secs(w.from), secs(w.to))],
        Some(_) => Vec::new(),
        None => vec![(0, DAY)],
    };
    if let Some(q) = quiet {
        let (from, to) = (secs(q.from), secs(q.to));
        let shut: Vec<(Secs, Secs)> = if from < to {
            vec![(from, to)]
        } else {
            vec![(0, to), (from, DAY)]
        };
        for (s0, s1) in shut {
            open = open
                .into_iter()
                .flat_map(|(a, b)| {
                    let mut parts = Vec::new();
                    if a < s0.min(b) {
                        parts.push((a, s0.min(b)));
                    }
                    if s1.max(a) < b {
                        parts.push((s1.max(a), b));
                    }
                    parts
                })
                .collect();
        }
    }
    open
}

/// The instant a local wall-clock time of `date` happens in `tz`. In an autumn overlap, the
/// first of the two; in a spring gap (the time never shows), the moment the clocks jump.
pub fn local_instant(tz: Tz, date: NaiveDate, secs: Secs) -> DateTime<Utc> {
    let wall: NaiveDateTime = date.and_time(NaiveTime::MIN) + Duration::seconds(i64::from(secs));
    for minutes in 0..=240 {
        match tz.from_local_datetime(&(wall + Duration::minutes(minutes))) {
            LocalResult::Single(t) => return t.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => continue,
        }
    }
    // No zone has a gap of four hours; fall back to reading the wall time as UTC.
    Utc.from_utc_datetime(&wall)
}

/// The next opening at or after `at` (`at` itself when open), and when that opening closes.
pub fn next_open(
    at: DateTime<Utc>,
    tz: Tz,
    window: Option<&SendWindow>,
    quiet: Option<&QuietHours>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    if window.is_none() && quiet.is_none() {
        return (at, at + Duration::days(1));
    }
    // A day before, for an opening that began yesterday in local terms and is still going.
    let today = at.with_timezone(&tz).date_naive();
    for offset in -1..=8 {
        let date = today + Duration::days(offset);
        for (from, to) in allowed(date, window, quiet) {
            let start = local_instant(tz, date, from);
            let end = local_instant(tz, date, to);
            if at < end && start < end {
                return (start.max(at), end);
            }
        }
    }
    (at, at + Duration::days(1))
}

/// Whether `at` is inside the window and outside the quiet hours.
pub fn inside(at: DateTime<Utc>, tz: Tz, window: Option<&SendWindow>, quiet: Option<&QuietHours>) -> bool {
    next_open(at, tz, window, quiet).0 == at
}

/// A stable offset in `0..room` seconds for this lead and step.
fn spread_offset(lead: LeadId, campaign: &str, step: &str, room: i64) -> i64 {
    let digest = sha2::Sha256::digest(format!("{campaign}/{step}/{}", lead.0).as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(bytes) % room.max(1) as u64) as i64
}

#[cfg(test)]
mod tests;
