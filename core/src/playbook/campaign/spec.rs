//! What a `kind: Campaign` file says: the spec types, as serde reads them.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

use crate::channel::Channel;
use crate::condition::Condition;
use crate::duration::Span;
use crate::playbook::{schema, HandoffSpec};

// ---- Spec types: the YAML as written. ----

/// `kind: Campaign`, as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// Always `Campaign`.
    #[schemars(schema_with = "schema::kind_campaign")]
    pub kind: String,
    /// `[a-z0-9-]`, unique in the playbook, stable across versions.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub campaign_type: CampaignType,
    #[serde(default)]
    pub description: Option<String>,
    pub entry: EntrySpec,
    /// The goal: checked after every step and on every event; the lead leaves at once.
    #[serde(default)]
    pub exit_when: Option<Condition>,
    /// Sends happen only inside this window, in the lead's time zone.
    #[serde(default)]
    pub send_window: Option<SendWindowSpec>,
    /// 0-100 (default 50): when frequency caps force a choice, the higher priority sends.
    #[serde(default)]
    #[schemars(with = "Option<u8>", range(max = 100))]
    pub priority: Option<Spanned<i64>>,
    /// The first step.
    #[schemars(with = "String")]
    pub start: Spanned<String>,
    /// Steps by id (`[a-z0-9_-]`); each does one thing.
    #[schemars(with = "BTreeMap<String, StepSpec>")]
    pub steps: IndexMap<Spanned<String>, StepSpec>,
}

/// What kind of programme a campaign is, from the nurture method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CampaignType {
    Drip,
    Activation,
    Welcome,
    Custom,
}

impl CampaignType {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignType::Drip => "drip",
            CampaignType::Activation => "activation",
            CampaignType::Welcome => "welcome",
            CampaignType::Custom => "custom",
        }
    }
}

/// How leads enter.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    pub trigger: Trigger,
    /// `segment`: leads matching this are enrolled as soon as they match. `event`: a further
    /// condition on the lead. `manual`: optional guard.
    #[serde(default)]
    pub when: Option<Condition>,
    /// `event` trigger: the event type that enrolls the lead (e.g. `registered`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub event: Option<Spanned<String>>,
    /// What happens when an enrolled-before lead matches again. Default `never`.
    #[serde(default)]
    pub reentry: Option<Reentry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Segment,
    Event,
    Manual,
}

/// `never | always | { after: 30d }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reentry {
    Never,
    Always,
    After(Span),
}

/// `send_window: { days: [mon, tue, …], from: "09:00", to: "18:00" }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendWindowSpec {
    /// Weekdays as `mon` … `sun`; every day when absent.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub days: Vec<Spanned<String>>,
    /// `HH:MM` in the lead's time zone.
    #[schemars(with = "String")]
    pub from: Spanned<String>,
    #[schemars(with = "String")]
    pub to: Spanned<String>,
    /// Sends held back until the window opens go out over this long after it opens
    /// (default 15m), so the relay does not get them all in one second.
    #[serde(default)]
    pub spread: Option<Span>,
}

/// One step, as written: exactly one of the kinds, and `next` where the kind goes on.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub send: Option<SendSpec>,
    #[serde(default)]
    pub wait: Option<WaitSpec>,
    #[serde(default)]
    pub branch: Option<BranchSpec>,
    /// Arms chosen by weight, deterministically per lead and step.
    #[serde(default)]
    pub split: Option<Vec<SplitArmSpec>>,
    #[serde(default)]
    pub tag: Option<TagStepSpec>,
    /// Points to add (negative to take away).
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub score: Option<Spanned<i64>>,
    /// Ends the enrollment: the lead goes to a queue.
    #[serde(default)]
    pub handoff: Option<HandoffSpec>,
    #[serde(default)]
    pub enroll: Option<EnrollSpec>,
    /// Ends the enrollment with this outcome, e.g. `returned_to_pool`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub exit: Option<Spanned<String>>,
    /// The step that follows.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub next: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSpec {
    pub channel: Channel,
    /// `templates/NAME.hbs` (+ `.subject.hbs`, optional `.txt.hbs`) for e-mail,
    /// `templates/NAME.wechat.yaml` for WeChat, `templates/NAME.json.hbs` for a webhook.
    #[schemars(with = "String")]
    pub template: Spanned<String>,
    /// First match wins, else `template`.
    #[serde(default)]
    pub variants: Vec<VariantSpec>,
    /// When the send would break a frequency cap of the Rules: `defer` (the default) sends at
    /// the first moment the cap allows; `skip` goes on without it.
    #[serde(default)]
    pub on_cap: Option<OnCap>,
}

/// What a send does at a frequency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnCap {
    #[default]
    Defer,
    Skip,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    pub when: Condition,
    #[schemars(with = "String")]
    pub template: Spanned<String>,
}

/// `for: DURATION`; or `until: CONDITION` with a `timeout`; or a moment: `until_time:
/// "2026-12-10T09:00:00+08:00"`, or `until: { attribute: webinar_at, offset: -1d }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitSpec {
    #[serde(default, rename = "for")]
    #[schemars(with = "Option<Span>")]
    pub wait_for: Option<Spanned<String>>,
    /// Wakes as soon as the condition holds; or at a moment of the lead.
    #[serde(default)]
    pub until: Option<UntilSpec>,
    #[serde(default)]
    #[schemars(with = "Option<Span>")]
    pub timeout: Option<Spanned<String>>,
    /// Wakes at this moment: RFC 3339, or a date and time without an offset, read in the
    /// lead's time zone (`2026-12-10 09:00`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub until_time: Option<Spanned<String>>,
}

/// What a wait's `until` names: a condition, or a moment of the lead.
#[derive(Debug, Clone, schemars::JsonSchema)]
#[serde(untagged)]
pub enum UntilSpec {
    Condition(Condition),
    Moment(MomentSpec),
}

/// `{ attribute: webinar_at, offset: -1d }`: the moment a date attribute of the lead names,
/// moved by `offset`; or `{ event_property: starts_at, offset: -1h }`, a property of the event
/// that enrolled the lead.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MomentSpec {
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub attribute: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub event_property: Option<Spanned<String>>,
    /// A duration, `-` before it for earlier: `-1d`, `2h`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub offset: Option<Spanned<String>>,
}

/// The keys that make an `until` a moment rather than a condition.
const MOMENT_KEYS: [&str; 3] = ["attribute", "event_property", "offset"];

/// An `until` is read by its first key: a moment's keys make a [`MomentSpec`], anything else a
/// [`Condition`], each with its own errors (not serde's "did not match any variant").
impl<'de> Deserialize<'de> for UntilSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UntilVisitor)
    }
}

struct UntilVisitor;

impl<'de> serde::de::Visitor<'de> for UntilVisitor {
    type Value = UntilSpec;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a condition, or a moment such as { attribute: webinar_at, offset: -1d }")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UntilSpec, A::Error> {
        use serde::de::value::MapAccessDeserializer;
        let Some(first) = map.next_key::<String>()? else {
            return Err(serde::de::Error::custom(
                "`until` is empty: give a condition, or a moment such as { attribute: webinar_at, offset: -1d }",
            ));
        };
        let moment = MOMENT_KEYS.contains(&first.as_str());
        let peeked = Peeked {
            first: Some(first),
            map,
        };
        if moment {
            MomentSpec::deserialize(MapAccessDeserializer::new(peeked)).map(UntilSpec::Moment)
        } else {
            Condition::deserialize(MapAccessDeserializer::new(peeked)).map(UntilSpec::Condition)
        }
    }
}

/// A map whose first key was already read.
struct Peeked<A> {
    first: Option<String>,
    map: A,
}

impl<'de, A: serde::de::MapAccess<'de>> serde::de::MapAccess<'de> for Peeked<A> {
    type Error = A::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        use serde::de::IntoDeserializer;
        match self.first.take() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => self.map.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchSpec {
    #[serde(rename = "if")]
    pub condition: Condition,
    #[schemars(with = "String")]
    pub then: Spanned<String>,
    #[serde(rename = "else")]
    #[schemars(with = "String")]
    pub otherwise: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitArmSpec {
    #[schemars(with = "u32", range(min = 1))]
    pub weight: Spanned<i64>,
    #[schemars(with = "String")]
    pub next: Spanned<String>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagStepSpec {
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub add: Vec<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub remove: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollSpec {
    #[schemars(with = "String")]
    pub campaign: Spanned<String>,
}
