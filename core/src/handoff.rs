//! Handoffs: a lead waiting in a queue for an SDR or a salesperson, and what people do with it.
//! Pure: the state machine of one handoff (claim, release, accept, reject, convert) and the
//! round-robin choice of a member. The engine loads, decides here, and writes back.
//!
//! ```text
//!   open ──claim──► claimed ──accept──► accepted ──convert──► converted
//!    ▲  ◄─release──    │ └────reject──► rejected (recycled, or disqualified)
//!    └─(SLA: breach, maybe moved to another queue, still open)
//! ```

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

use crate::lead::{FieldError, LeadId, Stage};

/// Where a handoff is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HandoffStatus {
    /// Waiting in its queue (perhaps assigned to a member by round robin).
    Open,
    /// Taken by someone who is working it.
    Claimed,
    Accepted,
    Rejected,
    Converted,
    /// Recorded before queues existed, while an earlier request for the lead was open.
    Superseded,
}

impl HandoffStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Claimed => "claimed",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Converted => "converted",
            Self::Superseded => "superseded",
        }
    }
}

impl FromStr for HandoffStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "open" => Self::Open,
            "claimed" => Self::Claimed,
            "accepted" => Self::Accepted,
            "rejected" => Self::Rejected,
            "converted" => Self::Converted,
            "superseded" => Self::Superseded,
            other => return Err(format!("unknown handoff status {other:?}")),
        })
    }
}

impl fmt::Display for HandoffStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An id that is an integer inside and an opaque string outside, like [`LeadId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandoffId(pub i64);

impl Serialize for HandoffId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl schemars::JsonSchema for HandoffId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HandoffId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "Opaque handoff id."})
    }
}

impl FromStr for HandoffId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        s.parse::<i64>().map(HandoffId).map_err(|_| ())
    }
}

/// One handoff, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Handoff {
    pub id: HandoffId,
    pub lead_id: LeadId,
    pub queue: String,
    pub reason: String,
    /// 0-100; higher is claimed first.
    pub priority: i64,
    /// What made it: `mql`, `campaign:ID/STEP`, or `api:KEY NAME`.
    pub origin: String,
    pub status: HandoffStatus,
    /// The lead's score and tags when it was handed off.
    pub score: Option<i64>,
    pub tags: Vec<String>,
    pub campaign: Option<String>,
    pub step: Option<String>,
    /// The member round robin gave it to.
    pub assigned_to: Option<String>,
    pub claimed_by: Option<String>,
    pub claimed_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reject_reason: Option<String>,
    /// The deal's value, when a conversion gave one.
    pub amount: Option<Amount>,
    /// Unclaimed past this, the queue's SLA is breached.
    pub sla_due_at: Option<DateTime<Utc>>,
    pub sla_breached_at: Option<DateTime<Utc>>,
    /// The queue it was in before an SLA breach moved it.
    pub moved_from: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A sum of money in hundredths of its unit (cents, 分): exact, written as a decimal number
/// (`12000.5`). The currency is the company's own; nurture does not convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(pub i64);

impl Amount {
    /// The largest amount taken: ten trillion units, well inside an `f64`'s exact integers.
    pub const MAX: f64 = 1e13;

    /// Reads a decimal amount: not negative, at most two decimals.
    pub fn from_decimal(value: f64) -> Result<Amount, String> {
        if !value.is_finite() || !(0.0..=Self::MAX).contains(&value) {
            return Err(format!("amount must be a number from 0 to {}, not {value}", Self::MAX));
        }
        let hundredths = value * 100.0;
        let rounded = hundredths.round();
        if (hundredths - rounded).abs() > 1e-6 * rounded.abs().max(1.0) {
            return Err(format!("amount {value} has more than two decimals"));
        }
        Ok(Amount(rounded as i64))
    }

    /// The amount as a decimal number.
    pub fn as_decimal(self) -> f64 {
        self.0 as f64 / 100.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (units, hundredths) = (self.0 / 100, self.0 % 100);
        let digits = units.to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if hundredths == 0 {
            f.write_str(&grouped)
        } else {
            write!(f, "{grouped}.{hundredths:02}")
        }
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 {
            s.serialize_i64(self.0 / 100)
        } else {
            s.serialize_f64(self.as_decimal())
        }
    }
}

impl schemars::JsonSchema for Amount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Amount".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "minimum": 0,
            "maximum": Amount::MAX,
            "description": "A sum of money in the company's currency, at most two decimals."
        })
    }
}

/// What someone does with a handoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject {
        reason: String,
        recycle: bool,
    },
    /// The deal closed, perhaps for this much.
    Convert {
        amount: Option<Amount>,
    },
    Release,
}

impl Decision {
    /// The verb, as in the URL and the handoff log.
    pub fn verb(&self) -> &'static str {
        match self {
            Decision::Accept => "accepted",
            Decision::Reject { .. } => "rejected",
            Decision::Convert { .. } => "converted",
            Decision::Release => "released",
        }
    }

    /// The lead's stage afterwards, when the decision changes it.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            Decision::Accept => Some(Stage::Accepted),
            Decision::Reject { recycle: true, .. } => Some(Stage::Recycled),
            Decision::Reject { recycle: false, .. } => Some(Stage::Disqualified),
            Decision::Convert { .. } => Some(Stage::Customer),
            Decision::Release => None,
        }
    }

    /// The webhook event it emits.
    pub fn event(&self) -> &'static str {
        match self {
            Decision::Accept => "handoff.accepted",
            Decision::Reject { .. } => "handoff.rejected",
            Decision::Convert { .. } => "handoff.converted",
            Decision::Release => "handoff.released",
        }
    }
}

/// Why a decision cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The handoff is not in a state that allows it (409).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is incomplete (422).
    #[error("{0}")]
    Invalid(String),
}

impl Handoff {
    /// Applies a decision made by `by`. Only whoever holds a handoff decides it: the member who
    /// claimed it, or the one it is assigned to while it is open. `oversees` (admins and
    /// marketers; the CRM for a conversion, which it records) may act on anyone's.
    /// Accepting or rejecting an open handoff claims it in the same move: then it answers
    /// `true`.
    ///
    /// Long on purpose: the handoff state machine as one table: each decision against each
    /// status, so that every allowed move and every refusal reads in one place.
    pub fn decide(
        &mut self,
        decision: &Decision,
        by: &str,
        oversees: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, Refusal> {
        let theirs = |h: &Handoff| {
            h.claimed_by.as_deref().is_some_and(|c| c != by && !oversees).then(|| {
                format!(
                    "handoff {} is claimed by {}",
                    h.id.0,
                    h.claimed_by.as_deref().unwrap_or("")
                )
            })
        };
        let assigned_elsewhere = |h: &Handoff| {
            h.assigned_to
                .as_deref()
                .filter(|a| *a != by && !oversees && h.status == HandoffStatus::Open)
                .map(|other| format!("handoff {} is assigned to {other}", h.id.0))
        };
        if let Decision::Reject { reason, .. } = decision {
            if reason.trim().is_empty() {
                return Err(Refusal::Invalid(
                    "a rejection needs a reason: send {\"reason\": \"…\", \"recycle\": true}".into(),
                ));
            }
            if let Some(problem) = crate::lead::text_problem(reason) {
                return Err(Refusal::Invalid(problem));
            }
        }
        let mut claimed = false;
        match (decision, self.status) {
            (Decision::Release, HandoffStatus::Claimed) => {
                if let Some(conflict) = theirs(self) {
                    return Err(Refusal::Conflict(conflict));
                }
                self.status = HandoffStatus::Open;
                self.claimed_by = None;
                self.claimed_at = None;
            }
            (Decision::Release, status) => {
                return Err(Refusal::Conflict(format!(
                    "handoff {} is {status}; only a claimed handoff can be released",
                    self.id.0
                )))
            }
            (Decision::Accept | Decision::Reject { .. }, HandoffStatus::Open | HandoffStatus::Claimed) => {
                if let Some(conflict) = theirs(self) {
                    return Err(Refusal::Conflict(conflict));
                }
                if let Some(conflict) = assigned_elsewhere(self) {
                    return Err(Refusal::Conflict(conflict));
                }
                if self.status == HandoffStatus::Open {
                    self.claimed_by = Some(by.to_owned());
                    self.claimed_at = Some(now);
                    claimed = true;
                }
                self.status = match decision {
                    Decision::Accept => HandoffStatus::Accepted,
                    _ => HandoffStatus::Rejected,
                };
                if let Decision::Reject { reason, .. } = decision {
                    self.reject_reason = Some(reason.trim().to_owned());
                }
                self.decided_by = Some(by.to_owned());
                self.decided_at = Some(now);
            }
            // A deal closes whenever it closes: from the queue, in someone's hands, or accepted.
            (Decision::Convert { amount }, HandoffStatus::Open | HandoffStatus::Claimed | HandoffStatus::Accepted) => {
                if self.status == HandoffStatus::Accepted {
                    if let Some(owner) = self.decided_by.as_deref().filter(|d| *d != by && !oversees) {
                        return Err(Refusal::Conflict(format!(
                            "handoff {} was accepted by {owner}; the lead is theirs",
                            self.id.0
                        )));
                    }
                }
                if let Some(conflict) = theirs(self).or_else(|| assigned_elsewhere(self)) {
                    return Err(Refusal::Conflict(conflict));
                }
                self.status = HandoffStatus::Converted;
                self.amount = *amount;
                self.decided_by = Some(by.to_owned());
                self.decided_at = Some(now);
            }
            (_, status) => {
                return Err(Refusal::Conflict(format!(
                    "handoff {} is already {status}; it cannot be {} now",
                    self.id.0,
                    decision.verb()
                )))
            }
        }
        self.updated_at = now;
        Ok(claimed)
    }
}

/// A queue member as round robin sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Member {
    pub member: String,
    pub available: bool,
    /// At most this many handoffs in their hands (open and assigned, or claimed) at once.
    pub capacity: Option<i64>,
    /// A member of weight 2 gets twice the handoffs of a member of weight 1.
    pub weight: i64,
    /// Round-robin position (stride scheduling): the lowest eligible member goes next.
    #[serde(skip)]
    pub pass: i64,
    /// Handoffs in their hands now.
    pub load: i64,
}

/// What a `PUT …/members/{member}` changes; `None` leaves a setting as it is
/// (`capacity: Some(None)` removes the limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberChange {
    pub available: Option<bool>,
    pub capacity: Option<Option<i64>>,
    pub weight: Option<i64>,
}

/// The weights a member may have: a member of weight 100 gets a hundred times the handoffs of
/// one of weight 1.
pub const WEIGHTS: std::ops::RangeInclusive<i64> = 1..=100;

impl MemberChange {
    /// What is wrong with the change, field by field: a negative capacity, a weight outside
    /// [`WEIGHTS`].
    pub fn problems(&self) -> Vec<FieldError> {
        let mut problems = Vec::new();
        if self.capacity.flatten().is_some_and(|c| c < 0) {
            problems.push(FieldError::new("capacity", "must be 0 or more (null for no limit)"));
        }
        if self.weight.is_some_and(|w| !WEIGHTS.contains(&w)) {
            problems.push(FieldError::new("weight", "must be from 1 to 100"));
        }
        problems
    }
}

/// How far a member of weight 1 moves per handoff; weight w moves STRIDE / w.
pub const STRIDE: i64 = 1_000_000;

impl Member {
    pub fn new(member: &str) -> Self {
        Self {
            member: member.to_owned(),
            available: true,
            capacity: None,
            weight: 1,
            pass: 0,
            load: 0,
        }
    }

    fn eligible(&self) -> bool {
        self.available && self.capacity.is_none_or(|c| self.load < c)
    }
}

/// Gives the next handoff to a member: among the available members under capacity, the one
/// with the lowest pass (the playbook's order breaks ties), who then moves on by their stride.
/// `None` when nobody can take it. Fair over time and across restarts (the passes are stored).
pub fn pick_member(members: &mut [Member]) -> Option<usize> {
    let index = members
        .iter()
        .enumerate()
        .filter(|(_, m)| m.eligible())
        .min_by_key(|(i, m)| (m.pass, *i))
        .map(|(i, _)| i)?;
    let member = &mut members[index];
    member.pass += STRIDE / member.weight.clamp(1, STRIDE);
    member.load += 1;
    Some(index)
}

/// Where a member who joins, or comes back, starts: no earlier than the members already
/// taking work, so that they do not get a burst to catch up on what they were away for.
pub fn catch_up(members: &mut [Member], index: usize) {
    let floor = members
        .iter()
        .enumerate()
        .filter(|(i, m)| *i != index && m.available)
        .map(|(_, m)| m.pass)
        .min();
    if let Some(floor) = floor {
        members[index].pass = members[index].pass.max(floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, h, 0, 0).unwrap()
    }

    fn handoff() -> Handoff {
        Handoff {
            id: HandoffId(7),
            lead_id: LeadId(1),
            queue: "sdr".into(),
            reason: "MQL".into(),
            priority: 50,
            origin: "mql".into(),
            status: HandoffStatus::Open,
            score: Some(60),
            tags: vec![],
            campaign: None,
            step: None,
            assigned_to: None,
            claimed_by: None,
            claimed_at: None,
            decided_by: None,
            decided_at: None,
            reject_reason: None,
            amount: None,
            sla_due_at: None,
            sla_breached_at: None,
            moved_from: None,
            created_at: at(8),
            updated_at: at(8),
        }
    }

    #[test]
    fn accept_claimed_by_someone_else_is_a_conflict() {
        let mut h = handoff();
        h.status = HandoffStatus::Claimed;
        h.claimed_by = Some("alice".into());
        let err = h.decide(&Decision::Accept, "bob", false, at(9)).unwrap_err();
        assert_eq!(err, Refusal::Conflict("handoff 7 is claimed by alice".into()));
        assert_eq!(h.status, HandoffStatus::Claimed, "a refused decision changes nothing");
        h.decide(&Decision::Accept, "alice", false, at(9)).unwrap();
        assert_eq!(
            (h.status, h.decided_by.as_deref()),
            (HandoffStatus::Accepted, Some("alice"))
        );
    }

    #[test]
    fn admin_may_release_what_someone_else_claimed() {
        let mut h = handoff();
        h.status = HandoffStatus::Claimed;
        h.claimed_by = Some("alice".into());
        h.decide(&Decision::Release, "root", true, at(9)).unwrap();
        assert_eq!((h.status, h.claimed_by.clone()), (HandoffStatus::Open, None));
        let err = h.decide(&Decision::Release, "alice", false, at(9)).unwrap_err();
        assert!(matches!(err, Refusal::Conflict(m) if m.contains("only a claimed handoff")));
    }

    #[test]
    fn only_the_holder_or_an_overseer_converts() {
        let convert = |h: &mut Handoff, by: &str, oversees: bool| {
            h.decide(&Decision::Convert { amount: None }, by, oversees, at(9))
        };
        let mut claimed = handoff();
        claimed.status = HandoffStatus::Claimed;
        claimed.claimed_by = Some("alice".into());
        let err = convert(&mut claimed.clone(), "bob", false).unwrap_err();
        assert_eq!(err, Refusal::Conflict("handoff 7 is claimed by alice".into()));
        convert(&mut claimed.clone(), "crm", true).unwrap();
        convert(&mut claimed, "alice", false).unwrap();
        let mut assigned = handoff();
        assigned.assigned_to = Some("alice".into());
        let err = convert(&mut assigned.clone(), "bob", false).unwrap_err();
        assert_eq!(err, Refusal::Conflict("handoff 7 is assigned to alice".into()));
        let mut accepted = handoff();
        accepted.decide(&Decision::Accept, "alice", false, at(9)).unwrap();
        let err = convert(&mut accepted.clone(), "bob", false).unwrap_err();
        assert_eq!(
            err,
            Refusal::Conflict("handoff 7 was accepted by alice; the lead is theirs".into())
        );
        convert(&mut accepted, "alice", false).unwrap();
        assert_eq!(accepted.status, HandoffStatus::Converted);
    }

    #[test]
    fn reject_needs_a_reason_and_accepting_open_claims_it() {
        let mut h = handoff();
        let blank = Decision::Reject {
            reason: "  ".into(),
            recycle: true,
        };
        assert!(matches!(
            h.decide(&blank, "bob", false, at(9)),
            Err(Refusal::Invalid(_))
        ));
        let reject = Decision::Reject {
            reason: "no budget".into(),
            recycle: true,
        };
        h.decide(&reject, "bob", false, at(9)).unwrap();
        assert_eq!(h.claimed_by.as_deref(), Some("bob"));
        assert_eq!(h.reject_reason.as_deref(), Some("no budget"));
        assert_eq!(reject.stage(), Some(Stage::Recycled));
        let again = h.decide(&Decision::Accept, "bob", false, at(10)).unwrap_err();
        assert!(matches!(again, Refusal::Conflict(m) if m.contains("already rejected")));
    }

    #[test]
    fn round_robin_follows_weights_and_skips_the_unavailable_and_the_full() {
        let mut members = vec![Member::new("a"), Member::new("b"), Member::new("c")];
        members[1].weight = 2;
        members[2].available = false;
        let picks: Vec<usize> = (0..6).map(|_| pick_member(&mut members).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 4, "{picks:?}");
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 2, "{picks:?}");
        members[0].capacity = Some(2);
        members[1].capacity = Some(4);
        assert_eq!(pick_member(&mut members), None, "everyone available is full");
        members[2].available = true;
        catch_up(&mut members, 2);
        assert_eq!(members[2].pass, members[0].pass.min(members[1].pass));
        assert_eq!(pick_member(&mut members), Some(2));
    }

    #[test]
    fn amounts_are_exact_hundredths() {
        assert_eq!(Amount::from_decimal(12000.5), Ok(Amount(1_200_050)));
        assert_eq!(Amount::from_decimal(0.1 + 0.2), Ok(Amount(30)));
        assert_eq!(Amount(1_200_050).to_string(), "12,000.50");
        assert_eq!(Amount(100_000_000).to_string(), "1,000,000");
        assert_eq!(serde_json::to_string(&Amount(1_200_000)).unwrap(), "12000");
        assert_eq!(serde_json::to_string(&Amount(1_200_050)).unwrap(), "12000.5");
        assert!(Amount::from_decimal(-1.0).is_err());
        assert!(Amount::from_decimal(f64::NAN).is_err());
        assert!(Amount::from_decimal(1.005).unwrap_err().contains("two decimals"));
    }
}
