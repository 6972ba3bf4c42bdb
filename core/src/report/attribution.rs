//! Conversion attribution: when a lead reaches a campaign's goal, is handed off, or its
//! handoff is accepted or converted, the campaign steps that sent it something in the
//! `ATTRIBUTION_DAYS` before get the credit, two ways, each named as such: the **last step**
//! (the one send step that reached the lead last) and **every campaign** (each campaign that
//! reached it, once). A credit keeps within which of the `WINDOWS` the outcome came after that
//! touch (whole days, rounded up), so a report counts those within any of them.

use serde::{Deserialize, Serialize};

/// How far back a touch may lie and still get credit.
pub const ATTRIBUTION_DAYS: i64 = 90;
const DAY_MICROS: i64 = 86_400_000_000;

/// The attribution windows a report may ask for, in days. A credit is counted by the shortest
/// that holds it: a few classes rather than every day keeps the counters small enough to read
/// 90 days of a million leads in milliseconds.
pub const WINDOWS: [i64; 7] = [1, 3, 7, 14, 30, 60, ATTRIBUTION_DAYS];

/// The shortest of the `WINDOWS` that holds `lag_days` (a same-instant touch, 0, is within a
/// day).
pub fn window_of(lag_days: i64) -> i64 {
    WINDOWS.into_iter().find(|w| lag_days <= *w).unwrap_or(ATTRIBUTION_DAYS)
}

/// What a lead went on to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Conversion {
    /// Reached a campaign's goal (`exit_when`); credited to that campaign only.
    Goal,
    Handoff,
    Accepted,
    Converted,
}

impl Conversion {
    pub const ALL: [Conversion; 4] = [Self::Goal, Self::Handoff, Self::Accepted, Self::Converted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Goal => "goal",
            Self::Handoff => "handoff",
            Self::Accepted => "accepted",
            Self::Converted => "converted",
        }
    }

    pub fn parse(text: &str) -> Option<Conversion> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// The two ways of giving credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Credit {
    /// The send step that reached the lead last.
    LastStep,
    /// Every campaign that reached the lead (step empty).
    Campaign,
}

impl Credit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LastStep => "last_step",
            Self::Campaign => "campaign",
        }
    }

    pub fn parse(text: &str) -> Option<Credit> {
        [Self::LastStep, Self::Campaign]
            .into_iter()
            .find(|c| c.as_str() == text)
    }
}

/// A campaign step's latest message to a lead (microseconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    pub campaign: String,
    pub step: String,
    pub sent_at: i64,
}

/// One credit for an outcome.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Credited {
    pub credit: Credit,
    pub campaign: String,
    /// The send step (empty for `Credit::Campaign`).
    pub step: String,
    /// Whole days from the touch to the outcome, rounded up (0: the same instant).
    pub lag_days: i64,
}

/// The credits for an outcome at `at`, from the lead's touches (those after `at`, or more than
/// `ATTRIBUTION_DAYS` before it, are not counted); `only` keeps a goal's credit in its own
/// campaign. Nothing when no campaign reached the lead.
pub fn credits(at: i64, only: Option<&str>, touches: &[Touch]) -> Vec<Credited> {
    let eligible: Vec<&Touch> = touches
        .iter()
        .filter(|t| t.sent_at <= at && at - t.sent_at <= ATTRIBUTION_DAYS * DAY_MICROS)
        .filter(|t| only.is_none_or(|c| c == t.campaign))
        .collect();
    let lag = |t: &Touch| (at - t.sent_at + DAY_MICROS - 1) / DAY_MICROS;
    let mut out = Vec::new();
    // The latest touch; ties go to the campaign and step first by name, so a rerun agrees.
    if let Some(last) = eligible.iter().max_by(|a, b| {
        a.sent_at
            .cmp(&b.sent_at)
            .then_with(|| b.campaign.cmp(&a.campaign))
            .then_with(|| b.step.cmp(&a.step))
    }) {
        out.push(Credited {
            credit: Credit::LastStep,
            campaign: last.campaign.clone(),
            step: last.step.clone(),
            lag_days: lag(last),
        });
    }
    let mut campaigns: std::collections::BTreeMap<&str, i64> = Default::default();
    for t in &eligible {
        let latest = campaigns.entry(t.campaign.as_str()).or_insert(t.sent_at);
        *latest = (*latest).max(t.sent_at);
    }
    out.extend(campaigns.into_iter().map(|(campaign, sent_at)| Credited {
        credit: Credit::Campaign,
        campaign: campaign.to_owned(),
        step: String::new(),
        lag_days: (at - sent_at + DAY_MICROS - 1) / DAY_MICROS,
    }));
    out
}

/// How many leads went on to each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConversionFigures {
    pub goal: i64,
    pub handoff: i64,
    pub accepted: i64,
    pub converted: i64,
}

impl ConversionFigures {
    pub fn add(&mut self, conversion: Conversion, n: i64) {
        match conversion {
            Conversion::Goal => self.goal += n,
            Conversion::Handoff => self.handoff += n,
            Conversion::Accepted => self.accepted += n,
            Conversion::Converted => self.converted += n,
        }
    }
}

/// A send step's outcomes, credited to it as the last step that reached the lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepConversions {
    pub step: String,
    #[serde(flatten)]
    pub figures: ConversionFigures,
}

/// What a campaign's leads went on to do in a report's window, within `window_days` of the
/// campaign reaching them: credited to the campaign (every campaign that reached the lead
/// gets one), and to the last step that reached the lead (the last step of any campaign: a
/// lead this campaign reached that another campaign reached later is credited there).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Conversions {
    pub window_days: i64,
    /// Every-campaign credit.
    pub campaign: ConversionFigures,
    /// Last-step credit, per send step in graph order.
    pub last_step: Vec<StepConversions>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = DAY_MICROS;

    fn touch(campaign: &str, step: &str, day: i64) -> Touch {
        Touch {
            campaign: campaign.into(),
            step: step.into(),
            sent_at: day * DAY,
        }
    }

    #[test]
    fn the_last_step_and_every_campaign_get_credit() {
        let touches = [
            touch("welcome", "hello", 0),
            touch("drip", "whitepaper", 10),
            touch("drip", "case", 20),
            // Too old, and after the outcome: neither counts.
            touch("old", "intro", -200),
            touch("later", "news", 40),
        ];
        let at = 30 * DAY + 1;
        assert_eq!(
            credits(at, None, &touches),
            vec![
                Credited {
                    credit: Credit::LastStep,
                    campaign: "drip".into(),
                    step: "case".into(),
                    lag_days: 11
                },
                Credited {
                    credit: Credit::Campaign,
                    campaign: "drip".into(),
                    step: String::new(),
                    lag_days: 11
                },
                Credited {
                    credit: Credit::Campaign,
                    campaign: "welcome".into(),
                    step: String::new(),
                    lag_days: 31
                },
            ]
        );
        // A goal counts in its own campaign only.
        let goal = credits(at, Some("welcome"), &touches);
        assert_eq!(goal.len(), 2);
        assert_eq!((goal[0].credit, goal[0].step.as_str()), (Credit::LastStep, "hello"));
        assert!(credits(at, Some("none"), &touches).is_empty());
        // The same instant is day 0; a touch exactly 90 days before still counts.
        assert_eq!(credits(20 * DAY, None, &touches)[0].lag_days, 0);
        assert_eq!(credits(90 * DAY, Some("welcome"), &touches)[0].lag_days, 90);
        assert!(credits(90 * DAY + 1, Some("welcome"), &touches).is_empty());
    }

    #[test]
    fn a_lag_is_counted_by_the_shortest_window_that_holds_it() {
        let classes: Vec<i64> = [0, 1, 2, 3, 4, 7, 8, 14, 15, 30, 31, 60, 61, 90]
            .into_iter()
            .map(window_of)
            .collect();
        assert_eq!(classes, [1, 1, 3, 3, 7, 7, 14, 14, 30, 30, 60, 60, 90, 90]);
    }
}
