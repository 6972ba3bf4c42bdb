//! `kind: Rules`: behaviour tagging and scoring, attribute tags, decay and the MQL threshold.

use chrono::NaiveTime;
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap};

use super::{parse_time, schema, Channel, Issue, Position, Queues};
use crate::condition::Condition;
use crate::diagnostic::KnownIds;
use crate::duration::Span;
use crate::event::check_event_type;
use crate::pages::UrlPattern;
use crate::tag::normalize_tag;

/// `kind: Rules`, as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesSpec {
    /// Always `Rules`.
    #[schemars(schema_with = "schema::kind_rules")]
    pub kind: String,
    /// IANA time zone for leads without a `timezone` (e.g. Asia/Shanghai); UTC when absent.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    default_timezone: Option<Spanned<String>>,
    /// The language of the top-level templates (`en` or `zh`; `zh` when absent): what a lead
    /// whose language has no copy of a template (no `en/` file for an English lead) receives,
    /// body and unsubscribe footer alike.
    #[serde(default)]
    #[schemars(with = "Option<crate::template::Language>")]
    default_language: Option<Spanned<String>>,
    #[serde(default)]
    tagging: Vec<TaggingSpec>,
    #[serde(default)]
    attributes: Vec<AttributeSpec>,
    #[serde(default)]
    decay: Option<DecaySpec>,
    #[serde(default)]
    mql: Option<MqlSpec>,
    /// Caps across all campaigns, per channel: `frequency: { email: { max: 3, per: 7d } }`.
    #[serde(default)]
    frequency: Option<FrequencySpec>,
    /// No campaign sends in these hours, in the lead's time zone:
    /// `quiet_hours: { from: "21:00", to: "08:00" }` (may span midnight).
    #[serde(default)]
    quiet_hours: Option<QuietHoursSpec>,
    /// A deploy whose new or changed segment-triggered campaigns would enroll more leads than
    /// this at once waits for the marketer's `?confirm=true` (100 when absent; 0: always ask).
    #[serde(default)]
    deploy_confirm_over: Option<u64>,
    /// The sites whose pages the tracking script records, and whether it waits for consent:
    /// `tracking: { sites: [https://www.example.com], consent: required }`.
    #[serde(default)]
    tracking: Option<TrackingSpec>,
    /// Page rules: a page view whose address matches `url` tags and scores, with the caps
    /// tagging rules have: `- { url: /pricing*, tag: behaviour:viewed_pricing, score: 5 }`.
    #[serde(default)]
    pages: Vec<PageRuleSpec>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TrackingSpec {
    /// Origins allowed to post page views (CORS): scheme and host, no path.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    sites: Vec<Spanned<String>>,
    /// `implied` (the default): the script records from the first page; `required`: nothing
    /// is recorded until the site calls `nurture('consent', true)`.
    #[serde(default)]
    consent: TrackingConsent,
    /// Record nothing from browsers that send Do Not Track or Global Privacy Control.
    #[serde(default)]
    respect_dnt: bool,
    /// How long the page views of a visitor nobody knows are kept (90d when absent).
    #[serde(default)]
    keep_anonymous: Option<Span>,
}

/// Whether the tracking script records before the visitor consents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrackingConsent {
    #[default]
    Implied,
    Required,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PageRuleSpec {
    /// Optional stable name; caps and the change log use it. Defaults to `page:` and the url.
    #[serde(default)]
    id: Option<String>,
    /// A glob over the path (`/pricing*`) or over the whole address
    /// (`https://www.example.com/pricing*`), matched in either case, without the query.
    #[schemars(with = "String")]
    url: Spanned<UrlPattern>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    tag: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    tags: Vec<Spanned<String>>,
    #[serde(default)]
    score: Option<i64>,
    #[serde(default)]
    cap: Option<CapSpec>,
}

/// `frequency: { email: { max: 3, per: 7d }, wechat: { max: 1, per: 1d } }`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FrequencySpec {
    #[serde(default)]
    email: Option<CapSpec>,
    #[serde(default)]
    wechat: Option<CapSpec>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct QuietHoursSpec {
    /// `HH:MM` in the lead's time zone: quiet from here…
    #[schemars(with = "String")]
    from: Spanned<String>,
    /// …to here (the next morning when earlier than `from`).
    #[schemars(with = "String")]
    to: Spanned<String>,
    /// Sends held back by the quiet hours go out over this long after they end (default 15m),
    /// so the relay does not get them all in one second.
    #[serde(default)]
    spread: Option<Span>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TaggingSpec {
    /// Optional stable name; caps and the change log use it. Defaults to the event type.
    #[serde(default)]
    id: Option<String>,
    on: OnSpec,
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    tags: Vec<Spanned<String>>,
    #[serde(default)]
    tags_from: Option<TagsFrom>,
    #[serde(default)]
    score: Option<i64>,
    #[serde(default)]
    cap: Option<CapSpec>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct OnSpec {
    #[schemars(with = "String")]
    event: Spanned<String>,
    #[serde(default, rename = "where")]
    properties: Option<Map<String, Value>>,
    /// Opens and clicks by machines (image proxies, link scanners: `automated: true` on the
    /// event) fire the rule too. Off by default: rules count people, as conditions do.
    #[serde(default)]
    include_automated: bool,
}

/// `tags_from: { field: topic, prefix: "interest:topic/" }`: one tag from an event property.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsFrom {
    pub field: String,
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CapSpec {
    #[schemars(with = "i64")]
    max: Spanned<i64>,
    per: Span,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AttributeSpec {
    #[schemars(with = "String")]
    field: Spanned<String>,
    prefix: String,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DecaySpec {
    every: Span,
    #[schemars(with = "i64")]
    percent: Spanned<i64>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct MqlSpec {
    when: Condition,
    handoff: HandoffSpec,
}

/// Where a qualified lead goes: `handoff: { queue: sdr, reason: …, priority: … }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffSpec {
    /// A queue of the `kind: Queues` file.
    #[schemars(with = "String")]
    pub queue: Spanned<String>,
    /// Shown to the SDR who picks the lead up.
    pub reason: String,
    /// 0-100; higher is claimed first. Defaults to 50.
    #[serde(default)]
    #[schemars(range(max = 100))]
    pub priority: Option<u8>,
}

impl HandoffSpec {
    /// Reports a queue that the `kind: Queues` file does not define.
    pub(crate) fn check(&self, file: &str, queues: &Queues, issues: &mut Vec<Issue>) {
        if !queues.queues.contains_key(&self.queue.value) {
            issues.push(Issue::at(
                file,
                Position::of(&self.queue.referenced),
                format!(
                    "queue {:?} does not exist{}",
                    self.queue.value,
                    KnownIds::new(queues.queues.keys()).hint(&self.queue.value, &format!("; {}", queues.known()))
                ),
            ));
        }
        if self.reason.trim().is_empty() {
            issues.push(Issue::at(
                file,
                Position::of(&self.queue.referenced),
                "a handoff needs a `reason` the SDR will read",
            ));
        }
    }
}

/// Behaviour tagging and scoring, attribute tags, decay and MQL, ready to apply.
#[derive(Debug, Clone)]
pub struct Rules {
    pub default_timezone: chrono_tz::Tz,
    /// The language of the top-level templates.
    pub default_language: crate::template::Language,
    pub tagging: Vec<TaggingRule>,
    pub attributes: Vec<AttributeRule>,
    pub decay: Option<Decay>,
    pub mql: Option<Mql>,
    /// Caps on sends per channel, across all campaigns.
    pub frequency: HashMap<Channel, FrequencyCap>,
    pub quiet_hours: Option<QuietHours>,
    /// How many leads a deploy may enroll at once without `?confirm=true`.
    pub deploy_confirm_over: u64,
    /// The tracking script's sites and consent.
    pub tracking: Tracking,
}

/// The sites the tracking script may post from, and its consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracking {
    /// Origins (`https://www.example.com`), as browsers send them in `Origin`.
    pub sites: Vec<String>,
    pub consent: TrackingConsent,
    /// Nothing is recorded from browsers that send Do Not Track or Global Privacy Control.
    pub respect_dnt: bool,
    /// How long the page views of a visitor nobody knows are kept.
    pub keep_anonymous: Span,
}

impl Default for Tracking {
    fn default() -> Self {
        Tracking {
            sites: Vec::new(),
            consent: TrackingConsent::default(),
            respect_dnt: false,
            keep_anonymous: KEEP_ANONYMOUS,
        }
    }
}

/// [`Tracking::keep_anonymous`] when the rules do not say: 90 days.
pub const KEEP_ANONYMOUS: Span = Span::from_secs(90 * 86_400);

/// [`Rules::deploy_confirm_over`] when the rules do not say.
pub const DEPLOY_CONFIRM_OVER: u64 = 100;

impl Default for Rules {
    fn default() -> Self {
        Self {
            default_timezone: chrono_tz::UTC,
            default_language: Default::default(),
            tagging: Vec::new(),
            attributes: Vec::new(),
            decay: None,
            mql: None,
            frequency: HashMap::new(),
            quiet_hours: None,
            deploy_confirm_over: DEPLOY_CONFIRM_OVER,
            tracking: Tracking::default(),
        }
    }
}

/// At most `max` sends on a channel to one lead in any window of length `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrequencyCap {
    pub max: u32,
    pub per: Span,
}

/// Hours without sends, in the lead's time zone; `to` earlier than `from` spans midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub from: NaiveTime,
    pub to: NaiveTime,
    pub spread: Span,
}

/// How long deferred sends are spread over when none is given.
pub fn default_spread() -> Span {
    Span::from_secs(15 * 60)
}

#[derive(Debug, Clone)]
pub struct TaggingRule {
    /// Stable name: the `id:` given, else the event type (with `#2`, `#3` for repeats).
    pub id: String,
    pub event: String,
    pub properties: Option<Map<String, Value>>,
    /// Events marked `automated: true` fire the rule too (`on: {include_automated: true}`).
    pub include_automated: bool,
    pub tags: Vec<String>,
    pub tags_from: Option<TagsFrom>,
    pub score: i64,
    pub cap: Option<Cap>,
    /// A page rule's page: the rule fires for page views of matching addresses only.
    pub url: Option<UrlPattern>,
}

/// At most `max` points from one rule per lead in any window of length `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub max: i64,
    pub per: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeRule {
    pub field: String,
    pub prefix: String,
}

/// Scores of leads inactive for `every` lose `percent` of their value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decay {
    pub every: Span,
    pub percent: i64,
}

#[derive(Debug, Clone)]
pub struct Mql {
    pub when: Condition,
    pub handoff: HandoffSpec,
}

/// A rule's stable name: `base`, or `base#2`, `base#3` for its repeats.
fn rule_id(seen: &mut BTreeMap<String, usize>, base: String) -> String {
    let n = seen.entry(base.clone()).or_insert(0);
    *n += 1;
    if *n == 1 {
        base
    } else {
        format!("{base}#{n}")
    }
}

/// A rule's tags normalised; one that is no tag is reported where it is written.
fn checked_tags<'a>(
    file: &str,
    tags: impl IntoIterator<Item = &'a Spanned<String>>,
    issues: &mut Vec<Issue>,
) -> Vec<String> {
    tags.into_iter()
        .filter_map(|tag| match normalize_tag(&tag.value) {
            Ok(t) => Some(t),
            Err(message) => {
                issues.push(Issue::at(file, Position::of(&tag.referenced), message));
                None
            }
        })
        .collect()
}

/// A rule's cap; a max that is not a positive number of points is reported where written.
fn checked_cap(file: &str, cap: &Option<CapSpec>, issues: &mut Vec<Issue>) -> Option<Cap> {
    let c = cap.as_ref()?;
    if c.max.value <= 0 {
        issues.push(Issue::at(
            file,
            Position::of(&c.max.referenced),
            "cap max must be a positive number of points",
        ));
    }
    Some(Cap {
        max: c.max.value,
        per: c.per,
    })
}

/// Long on purpose: one section per key of the rules file (tagging, attributes, decay,
/// frequency, quiet hours, MQL), each short and checked where it is written; split, they would
/// share the issue list and the ids seen.
pub(crate) fn build_rules(
    file: &str,
    spec: RulesSpec,
    exists: &crate::diagnostic::KnownIds<'_>,
    queues: &Queues,
    issues: &mut Vec<Issue>,
) -> Rules {
    let mut rules = Rules::default();
    if let Some(tz) = &spec.default_timezone {
        match tz.value.parse::<chrono_tz::Tz>() {
            Ok(parsed) => rules.default_timezone = parsed,
            Err(_) => issues.push(Issue::at(
                file,
                Position::of(&tz.referenced),
                format!(
                    "unknown time zone {:?}; use an IANA name such as Asia/Shanghai",
                    tz.value
                ),
            )),
        }
    }
    if let Some(language) = &spec.default_language {
        match crate::template::Language::parse(&language.value) {
            Some(parsed) if language.value.trim().len() == 2 => rules.default_language = parsed,
            _ => issues.push(Issue::at(
                file,
                Position::of(&language.referenced),
                format!("unknown language {:?}; use en or zh", language.value),
            )),
        }
    }
    if let Some(over) = spec.deploy_confirm_over {
        rules.deploy_confirm_over = over;
    }
    let mut seen_ids: BTreeMap<String, usize> = BTreeMap::new();
    for rule in spec.tagging {
        let event = rule.on.event.value.clone();
        if let Err(message) = check_event_type(&event) {
            issues.push(Issue::at(file, Position::of(&rule.on.event.referenced), message));
        }
        let id = rule_id(&mut seen_ids, rule.id.clone().unwrap_or_else(|| event.clone()));
        let tags = checked_tags(file, &rule.tags, issues);
        if let Some(from) = &rule.tags_from {
            if let Err(message) = normalize_tag(&format!("{}x", from.prefix)) {
                issues.push(Issue::at(
                    file,
                    Position::of(&rule.on.event.referenced),
                    format!("tags_from prefix: {message}"),
                ));
            }
        }
        let cap = checked_cap(file, &rule.cap, issues);
        if tags.is_empty() && rule.tags_from.is_none() && rule.score.unwrap_or(0) == 0 {
            issues.push(Issue::at(
                file,
                Position::of(&rule.on.event.referenced),
                "this tagging rule neither tags nor scores; give it `tags`, `tags_from` or `score`",
            ));
        }
        rules.tagging.push(TaggingRule {
            id,
            event,
            properties: rule.on.properties,
            include_automated: rule.on.include_automated,
            tags,
            tags_from: rule.tags_from,
            score: rule.score.unwrap_or(0),
            cap,
            url: None,
        });
    }
    for page in spec.pages {
        let at = Position::of(&page.url.referenced);
        let id = rule_id(
            &mut seen_ids,
            page.id.clone().unwrap_or_else(|| format!("page:{}", page.url.value)),
        );
        let tags = checked_tags(file, page.tag.iter().chain(&page.tags), issues);
        let cap = checked_cap(file, &page.cap, issues);
        if page.tag.is_none() && page.tags.is_empty() && page.score.unwrap_or(0) == 0 {
            issues.push(Issue::at(
                file,
                at,
                "this page rule neither tags nor scores; give it `tag`, `tags` or `score`",
            ));
        }
        rules.tagging.push(TaggingRule {
            id,
            event: crate::pages::PAGE_VIEW.to_owned(),
            properties: None,
            include_automated: false,
            tags,
            tags_from: None,
            score: page.score.unwrap_or(0),
            cap,
            url: Some(page.url.value),
        });
    }
    if let Some(tracking) = &spec.tracking {
        for site in &tracking.sites {
            match crate::pages::origin(&site.value) {
                Ok(origin) if !rules.tracking.sites.contains(&origin) => rules.tracking.sites.push(origin),
                Ok(_) => {}
                Err(message) => issues.push(Issue::at(file, Position::of(&site.referenced), message)),
            }
        }
        rules.tracking.consent = tracking.consent;
        rules.tracking.respect_dnt = tracking.respect_dnt;
        if let Some(keep) = tracking.keep_anonymous {
            rules.tracking.keep_anonymous = keep;
        }
    }
    for attribute in spec.attributes {
        if let Err(message) = normalize_tag(&format!("{}x", attribute.prefix)) {
            issues.push(Issue::at(
                file,
                Position::of(&attribute.field.referenced),
                format!("attribute tag prefix: {message}"),
            ));
        }
        rules.attributes.push(AttributeRule {
            field: attribute.field.value,
            prefix: attribute.prefix.trim().to_lowercase(),
        });
    }
    if let Some(decay) = spec.decay {
        if !(1..=100).contains(&decay.percent.value) {
            issues.push(Issue::at(
                file,
                Position::of(&decay.percent.referenced),
                "decay percent must be between 1 and 100",
            ));
        }
        rules.decay = Some(Decay {
            every: decay.every,
            percent: decay.percent.value,
        });
    }
    if let Some(frequency) = &spec.frequency {
        for (channel, cap) in [(Channel::Email, &frequency.email), (Channel::Wechat, &frequency.wechat)] {
            let Some(cap) = cap else { continue };
            match u32::try_from(cap.max.value) {
                Ok(max) if max > 0 => {
                    rules.frequency.insert(channel, FrequencyCap { max, per: cap.per });
                }
                _ => issues.push(Issue::at(
                    file,
                    Position::of(&cap.max.referenced),
                    format!(
                        "a frequency cap's max must be a positive number of {} sends",
                        channel.as_str()
                    ),
                )),
            }
        }
    }
    if let Some(quiet) = &spec.quiet_hours {
        let mut time = |t: &Spanned<String>| {
            let parsed = parse_time(&t.value);
            if parsed.is_none() {
                issues.push(Issue::at(
                    file,
                    Position::of(&t.referenced),
                    format!(
                        "{:?} is not a time of day; write HH:MM on a 24-hour clock, e.g. \"21:00\"",
                        t.value
                    ),
                ));
            }
            parsed
        };
        if let (Some(from), Some(to)) = (time(&quiet.from), time(&quiet.to)) {
            if from == to {
                issues.push(Issue::at(
                    file,
                    Position::of(&quiet.to.referenced),
                    "quiet hours that start and end at the same time would stop every send; give `to` another time",
                ));
            } else {
                rules.quiet_hours = Some(QuietHours {
                    from,
                    to,
                    spread: quiet.spread.unwrap_or_else(default_spread),
                });
            }
        }
    }
    if let Some(mut mql) = spec.mql {
        mql.when.check(file, exists, None, issues);
        mql.handoff.check(file, queues, issues);
        rules.mql = Some(Mql {
            when: mql.when,
            handoff: mql.handoff,
        });
    }
    rules
}
