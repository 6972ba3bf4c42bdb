//! Row shapes: what the engine hands the store and reads back (leads, events, enrollments,
//! messages, campaigns), and their conversions from and to the domain types.

use super::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::channel::Channel;
use crate::clock::{from_micros, to_micros};
use crate::journey::{Enrollment, Status as JourneyStatus};
use crate::lead::{ChannelConsent, Consent, ConsentStatus, Lead, LeadId, Stage, TEXT_FIELDS};
use crate::nurture::Changes;

/// A new behaviour event, resolved to its lead; borrows from the request.
#[derive(Debug, Clone, Serialize)]
pub struct NewEvent<'a> {
    pub lead_id: i64,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub properties: &'a Map<String, Value>,
    pub occurred_at: i64,
    pub received_at: i64,
    pub idempotency_key: Option<&'a str>,
    pub source: Option<&'a str>,
}

/// Filters of `GET /v1/leads` that the database answers; segments are evaluated by the engine.
#[derive(Debug, Clone, Default)]
pub struct LeadFilter {
    pub tag: Option<String>,
    pub stage: Option<Stage>,
    /// Case-insensitive substring of e-mail, names or company.
    pub q: Option<String>,
}

/// What the console's lead search asks: leads whose e-mail, first name, last name or company
/// starts with `prefix` (any case), with a tag, in a stage, with a score in a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeadSearch {
    pub prefix: Option<String>,
    pub tag: Option<String>,
    pub stage: Option<Stage>,
    pub score_min: Option<i64>,
    pub score_max: Option<i64>,
}

/// The columns a prefix search reads (e-mail, first and last name, company), each as its
/// index holds it (e-mails are stored lower-case).
pub(crate) const SEARCHED: [&str; 4] = ["email", "lower(first_name)", "lower(last_name)", "lower(company)"];

/// The first text after every text that starts with `prefix`, in byte-wise order (the prefix
/// with its last character's code point one up); `None` when there is none.
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        // Skip the surrogate range, which no `char` holds.
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A running enrollment at a step: its lead, when it wakes (if it waits), and since when it is
/// there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtStep {
    pub lead: LeadId,
    pub wakes_at: Option<DateTime<Utc>>,
    pub since: DateTime<Utc>,
}

/// Who a message went to, on which channel, and when it left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTarget {
    pub lead: LeadId,
    pub channel: Channel,
    pub sent_at: Option<DateTime<Utc>>,
}

/// One deployed version of a campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignVersion {
    pub campaign_id: String,
    pub version: String,
    /// 1 for the first version deployed, then 2, 3, …
    pub number: i64,
    pub name: String,
    pub campaign_type: String,
    /// The canonical content the version hashes.
    pub definition: String,
    /// The YAML as deployed.
    pub source: String,
    pub file: String,
    pub deployed_at: DateTime<Utc>,
}

/// How many went through one step of a campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct StepCount {
    pub step: String,
    /// Times an enrollment arrived at the step (one that loops back counts again).
    pub entered: i64,
    /// Enrollments waiting at the step now.
    pub waiting: i64,
    /// Journey lines by outcome: `sent`, `yes`, `no`, `waited`, `arm 1`, `goal`, …
    pub outcomes: std::collections::BTreeMap<String, i64>,
}

/// The count of `step`, made empty on first use.
pub(crate) fn step_slot(steps: &mut std::collections::BTreeMap<String, StepCount>, step: String) -> &mut StepCount {
    steps.entry(step.clone()).or_insert_with(|| StepCount {
        step,
        ..Default::default()
    })
}

/// A campaign as deployed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRecord {
    pub id: String,
    pub version: String,
    pub number: i64,
    pub status: CampaignStatus,
    pub name: String,
    pub campaign_type: String,
    pub deployed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Whether a deployed campaign runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignStatus {
    Active,
    Paused,
    /// Left out of the playbook by a later deploy; deploying it again makes it active.
    Retired,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Active => "active",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Retired => "retired",
        }
    }
}

impl std::str::FromStr for CampaignStatus {
    type Err = StoreError;

    fn from_str(text: &str) -> StoreResult<Self> {
        Ok(match text {
            "active" => CampaignStatus::Active,
            "paused" => CampaignStatus::Paused,
            "retired" => CampaignStatus::Retired,
            other => return Err(StoreError::Corrupt(format!("campaign status {other:?}"))),
        })
    }
}

/// What waits for the engine now, as `/metrics` shows it: enrollments waiting and the oldest
/// wake-up already due outside paused campaigns (the runner's lag), messages waiting to be sent and the oldest already
/// due (the dispatcher's), webhook deliveries not yet made and given up, and per queue its open handoffs
/// and those of them past their SLA.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    pub waiting: i64,
    pub oldest_due_wake: Option<DateTime<Utc>>,
    pub outbox: i64,
    pub oldest_due_message: Option<DateTime<Utc>>,
    pub webhooks_pending: i64,
    /// Webhook deliveries given up after a day of failures, ever.
    pub webhooks_failed: i64,
    /// (queue, open, of those past their SLA), by queue name.
    pub queues: Vec<(String, i64, i64)>,
}

/// What a deploy changed, by campaign id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeployReport {
    pub created: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    pub retired: Vec<String>,
}

/// An API key as listed: never the key, nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ApiKeyRecord {
    pub id: i64,
    pub name: String,
    pub role: crate::access::Role,
    pub created_at: DateTime<Utc>,
    /// When it was revoked; it works no more (within a second, on every server).
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Where a deployment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The command line: `serve` at start (`--playbook DIR`, or `campaigns/` on an empty
    /// database), `demo`, `simulate`.
    Cli,
    /// `PUT /v1/playbook`.
    Api,
    /// `POST /v1/deployments/{id}/restore`: an earlier deployment's content again.
    Restore,
    /// The console's playbook editor.
    Console,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cli => "cli",
            Origin::Api => "api",
            Origin::Restore => "restore",
            Origin::Console => "console",
        }
    }
}

impl std::str::FromStr for Origin {
    type Err = StoreError;

    fn from_str(text: &str) -> StoreResult<Self> {
        Ok(match text {
            "cli" => Origin::Cli,
            "api" => Origin::Api,
            "restore" => Origin::Restore,
            "console" => Origin::Console,
            other => return Err(StoreError::Corrupt(format!("deployment origin {other:?}"))),
        })
    }
}

/// A deployment to record with the campaigns it deploys.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub actor: String,
    pub origin: Origin,
    pub content_hash: String,
    pub files: Vec<crate::playbook::bundle::BundleFile>,
    pub warnings: Vec<crate::playbook::PlaybookIssue>,
    pub restored_from: Option<i64>,
}

impl NewDeployment {
    /// The audit entry of this deployment, recorded as `id`, which did `report`.
    pub fn audit(&self, id: i64, report: &DeployReport) -> crate::audit::Change {
        let via = match self.origin {
            Origin::Cli => crate::audit::Via::Cli,
            Origin::Api | Origin::Restore => crate::audit::Via::Api,
            Origin::Console => crate::audit::Via::Console,
        };
        let by = crate::audit::By {
            actor: self.actor.clone(),
            via,
        };
        by.did(
            crate::audit::AuditKind::PlaybookDeployed,
            id,
            serde_json::json!({
                "origin": self.origin,
                "content_hash": self.content_hash,
                "restored_from": self.restored_from,
                "created": report.created,
                "changed": report.changed,
                "retired": report.retired,
            }),
        )
    }
}

/// A recorded deployment, without its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DeploymentHead {
    pub id: i64,
    pub deployed_at: DateTime<Utc>,
    /// The API key's name, or the user at the command line.
    pub actor: String,
    pub origin: Origin,
    /// SHA-256 of the files (paths and texts): equal hashes, equal content.
    pub content_hash: String,
    /// The deployment whose content this one restored.
    pub restored_from: Option<i64>,
    /// What the deployment changed, by campaign id.
    pub report: DeployReport,
    /// What validation and the running enrollments warned of when it was deployed.
    pub warnings: Vec<crate::playbook::PlaybookIssue>,
}

/// A recorded deployment with its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub head: DeploymentHead,
    pub files: Vec<crate::playbook::bundle::BundleFile>,
}

/// An enrollment as stored.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct EnrollmentRow {
    pub id: i64,
    pub campaign_id: String,
    pub version: String,
    pub lead_id: i64,
    pub step: String,
    #[sqlx(try_from = "String")]
    pub status: JourneyStatus,
    pub wake_at: Option<i64>,
    pub outcome: Option<String>,
    pub transitions: i64,
    pub entered_at: i64,
    pub updated_at: i64,
}

/// The columns of [`EnrollmentRow`], in order.
pub const ENROLLMENT_COLUMNS: &str =
    "id, campaign_id, version, lead_id, step, status, wake_at, outcome, transitions, entered_at, updated_at";

impl From<&Enrollment> for EnrollmentRow {
    fn from(e: &Enrollment) -> Self {
        Self {
            id: e.id,
            campaign_id: e.campaign.clone(),
            version: e.version.clone(),
            lead_id: e.lead.0,
            step: e.step.clone(),
            status: e.status,
            wake_at: e.wake_at.map(to_micros),
            outcome: e.outcome.clone(),
            transitions: e.transitions,
            entered_at: to_micros(e.entered_at),
            updated_at: to_micros(e.updated_at),
        }
    }
}

impl EnrollmentRow {
    pub fn into_enrollment(self) -> StoreResult<Enrollment> {
        Ok(Enrollment {
            id: self.id,
            status: self.status,
            campaign: self.campaign_id,
            version: self.version,
            lead: LeadId(self.lead_id),
            step: self.step,
            wake_at: self.wake_at.map(from_micros),
            outcome: self.outcome,
            transitions: self.transitions,
            entered_at: from_micros(self.entered_at),
            updated_at: from_micros(self.updated_at),
        })
    }
}

pub(crate) fn leads_from(rows: Vec<LeadRow>) -> StoreResult<Vec<Lead>> {
    rows.into_iter().map(Lead::try_from).collect()
}

pub(crate) fn enrollments_from(rows: Vec<EnrollmentRow>) -> StoreResult<Vec<Enrollment>> {
    rows.into_iter().map(EnrollmentRow::into_enrollment).collect()
}

/// A message for the outbox: created with its step, sent later by the dispatcher.
#[derive(Debug, Clone, Serialize)]
pub struct NewMessage {
    pub enrollment_id: i64,
    pub seq: i64,
    pub lead_id: i64,
    pub campaign_id: String,
    pub version: String,
    pub step: String,
    pub channel: Channel,
    pub template: String,
    /// `pending`, or `skipped` (with the reason) when it must not be sent.
    pub status: String,
    pub reason: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    /// A skipped message's language, for its report counter (a pending one's is known when
    /// it is sent).
    #[serde(skip)]
    pub language: Option<&'static str>,
}

/// A message taken for sending.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PendingMessage {
    pub id: i64,
    pub enrollment_id: i64,
    pub lead_id: i64,
    pub campaign_id: String,
    pub version: String,
    pub step: String,
    #[sqlx(try_from = "String")]
    pub channel: Channel,
    pub template: String,
    pub attempts: i64,
}

/// What sending a message did: `sent`, `failed` (with the reason), or still `pending` with the
/// time of the next attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MessageOutcome {
    pub id: i64,
    pub status: String,
    pub reason: Option<String>,
    pub sent_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
    /// 1 when the claim's attempt does not count (held back by a rate, not tried).
    pub refund: i64,
    /// The language the message was (or would have been) written in: `zh`, `en`.
    pub language: Option<String>,
    /// The relay refused the recipient: counted as sent and hard-bounced.
    #[serde(skip)]
    pub refused: bool,
}

/// A message an enrollment sent: which step, and its id (events about it carry the id).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, sqlx::FromRow)]
pub struct SentMessage {
    pub enrollment_id: i64,
    pub id: i64,
    pub step: String,
}

/// A lead as a database row; both backends read and write this shape.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct LeadRow {
    pub id: i64,
    pub email: Option<String>,
    pub external_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub title: Option<String>,
    pub company: Option<String>,
    pub industry: Option<String>,
    pub company_size: Option<String>,
    pub region: Option<String>,
    pub phone: Option<String>,
    pub timezone: Option<String>,
    pub source: Option<String>,
    pub persona: Option<String>,
    pub owner: Option<String>,
    pub attributes: sqlx::types::Json<Map<String, Value>>,
    pub stage: String,
    pub score: i64,
    pub email_opt_out_at: Option<i64>,
    pub email_opt_out_source: Option<String>,
    pub wechat_opt_out_at: Option<i64>,
    pub wechat_opt_out_source: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_activity_at: Option<i64>,
    pub last_decay_at: Option<i64>,
    pub cooldown_until: Option<i64>,
}

/// Columns of `leads` and their types, in [`LeadRow`] order (the text fields are
/// [`TEXT_FIELDS`]); the adapters build their SQL from it.
pub static LEAD_COLUMNS: std::sync::LazyLock<Vec<(&str, &str)>> = std::sync::LazyLock::new(|| {
    let keys = [("id", "bigint"), ("email", "text"), ("external_id", "text")];
    let rest = [
        ("owner", "text"),
        ("attributes", "jsonb"),
        ("stage", "text"),
        ("score", "bigint"),
        ("email_opt_out_at", "bigint"),
        ("email_opt_out_source", "text"),
        ("wechat_opt_out_at", "bigint"),
        ("wechat_opt_out_source", "text"),
        ("created_at", "bigint"),
        ("updated_at", "bigint"),
        ("last_activity_at", "bigint"),
        ("last_decay_at", "bigint"),
        ("cooldown_until", "bigint"),
    ];
    keys.into_iter()
        .chain(TEXT_FIELDS.map(|f| (f, "text")))
        .chain(rest)
        .collect()
});

/// `col, col, …` of `leads`.
pub fn lead_column_list() -> String {
    LEAD_COLUMNS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
}

fn consent_from(at: Option<i64>, source: Option<String>) -> ChannelConsent {
    match at {
        Some(at) => ChannelConsent {
            status: ConsentStatus::OptedOut,
            at: Some(from_micros(at)),
            source,
        },
        None => ChannelConsent::default(),
    }
}

fn consent_to(c: &ChannelConsent) -> (Option<i64>, Option<String>) {
    match c.status {
        ConsentStatus::OptedOut => (Some(to_micros(c.at.unwrap_or_default())), c.source.clone()),
        ConsentStatus::OptedIn => (None, None),
    }
}

impl TryFrom<LeadRow> for Lead {
    type Error = StoreError;
    fn try_from(row: LeadRow) -> StoreResult<Lead> {
        let stage: Stage = row.stage.parse().map_err(StoreError::Corrupt)?;
        let values = [
            row.first_name,
            row.last_name,
            row.title,
            row.company,
            row.industry,
            row.company_size,
            row.region,
            row.phone,
            row.timezone,
            row.source,
            row.persona,
        ];
        // Inserted one by one: a lead has a few of the eleven, and collecting them would sort
        // them in a vector of their own first.
        let mut fields = std::collections::BTreeMap::new();
        for (name, value) in TEXT_FIELDS.iter().zip(values) {
            if let Some(value) = value {
                fields.insert(*name, value);
            }
        }
        Ok(Lead {
            id: LeadId(row.id),
            email: row.email,
            external_id: row.external_id,
            fields,
            attributes: row.attributes.0,
            stage,
            owner: row.owner,
            score: row.score,
            consent: Consent {
                email: consent_from(row.email_opt_out_at, row.email_opt_out_source),
                wechat: consent_from(row.wechat_opt_out_at, row.wechat_opt_out_source),
            },
            created_at: from_micros(row.created_at),
            updated_at: from_micros(row.updated_at),
            last_activity_at: row.last_activity_at.map(from_micros),
            last_decay_at: row.last_decay_at.map(from_micros),
            cooldown_until: row.cooldown_until.map(from_micros),
        })
    }
}

impl From<&Lead> for LeadRow {
    fn from(lead: &Lead) -> LeadRow {
        let [first_name, last_name, title, company, industry, company_size, region, phone, timezone, source, persona] =
            TEXT_FIELDS.map(|name| lead.fields.get(name).cloned());
        let (email_opt_out_at, email_opt_out_source) = consent_to(&lead.consent.email);
        let (wechat_opt_out_at, wechat_opt_out_source) = consent_to(&lead.consent.wechat);
        LeadRow {
            id: lead.id.0,
            email: lead.email.clone(),
            external_id: lead.external_id.clone(),
            first_name,
            last_name,
            title,
            company,
            industry,
            company_size,
            region,
            phone,
            timezone,
            source,
            persona,
            owner: lead.owner.clone(),
            attributes: sqlx::types::Json(lead.attributes.clone()),
            stage: lead.stage.as_str().to_owned(),
            score: lead.score,
            email_opt_out_at,
            email_opt_out_source,
            wechat_opt_out_at,
            wechat_opt_out_source,
            created_at: to_micros(lead.created_at),
            updated_at: to_micros(lead.updated_at),
            last_activity_at: lead.last_activity_at.map(to_micros),
            last_decay_at: lead.last_decay_at.map(to_micros),
            cooldown_until: lead.cooldown_until.map(to_micros),
        }
    }
}

/// Rows of tag changes, score changes and handoffs as the JSON batches carry them.
#[derive(Serialize)]
pub(crate) struct TagChangeRow<'a> {
    pub lead_id: i64,
    pub tag: &'a str,
    pub family: &'a str,
    pub added: bool,
    pub actor_kind: &'a str,
    pub actor: &'a str,
    pub at: i64,
}

#[derive(Serialize)]
pub(crate) struct ScoreChangeRow<'a> {
    pub lead_id: i64,
    pub delta: i64,
    pub reason: &'a str,
    pub actor_kind: &'a str,
    pub actor: &'a str,
    pub rule: Option<&'a str>,
    pub occurred_at: i64,
    pub at: i64,
}

#[derive(Serialize)]
pub(crate) struct NewHandoffRow<'a> {
    lead_id: i64,
    queue: &'a str,
    reason: &'a str,
    priority: i64,
    origin: &'a str,
    score: i64,
    tags: String,
    campaign_id: Option<&'a str>,
    step: Option<&'a str>,
    sla_due_at: Option<i64>,
    created_at: i64,
}

/// The rows of one [`Changes`]: the tag log, the net tag change per (lead, tag), scores and
/// handoffs. SQLite binds them as values; [`ChangeBatches`] carries them as JSON.
pub(crate) struct ChangeRows<'a> {
    pub tag_log: Vec<TagChangeRow<'a>>,
    /// Indexes into `tag_log` of the last change per (lead, tag), in log order: its net effect.
    finals: Vec<usize>,
    pub scores: Vec<ScoreChangeRow<'a>>,
    pub handoffs: Vec<NewHandoffRow<'a>>,
}

impl<'a> ChangeRows<'a> {
    pub fn of(changes: &'a Changes) -> ChangeRows<'a> {
        let tag_log: Vec<TagChangeRow> = changes
            .tags
            .iter()
            .map(|c| TagChangeRow {
                lead_id: c.lead_id.0,
                tag: &c.tag,
                family: c.family.as_str(),
                added: c.added,
                actor_kind: c.actor.kind(),
                actor: c.actor.name(),
                at: to_micros(c.at),
            })
            .collect();
        // The net effect per (lead, tag): the last change wins.
        let mut last = std::collections::HashMap::new();
        for (i, row) in tag_log.iter().enumerate() {
            last.insert((row.lead_id, row.tag), i);
        }
        let mut finals: Vec<usize> = last.into_values().collect();
        finals.sort_unstable();
        let scores = changes
            .scores
            .iter()
            .map(|c| ScoreChangeRow {
                lead_id: c.lead_id.0,
                delta: c.delta,
                reason: &c.reason,
                actor_kind: c.actor.kind(),
                actor: c.actor.name(),
                rule: c.rule.as_deref(),
                occurred_at: to_micros(c.occurred_at),
                at: to_micros(c.at),
            })
            .collect();
        let handoffs = changes
            .handoffs
            .iter()
            .map(|h| NewHandoffRow {
                lead_id: h.lead_id.0,
                queue: &h.queue,
                reason: &h.reason,
                priority: i64::from(h.priority.unwrap_or(50)),
                origin: &h.origin,
                score: h.score,
                tags: serde_json::to_string(&h.tags).unwrap_or_else(|_| "[]".into()),
                campaign_id: h.campaign.as_deref(),
                step: h.step.as_deref(),
                sla_due_at: h.sla_due_at.map(to_micros),
                created_at: to_micros(h.at),
            })
            .collect();
        ChangeRows {
            tag_log,
            finals,
            scores,
            handoffs,
        }
    }

    /// The batch's net tag changes: with `added`, the tags it leaves on their leads (their
    /// last change adds them); without, the tags it takes off.
    pub fn net_tags(&self, added: bool) -> Vec<&TagChangeRow<'a>> {
        self.finals
            .iter()
            .map(|&i| &self.tag_log[i])
            .filter(|r| r.added == added)
            .collect()
    }
}

/// The JSON batches of one [`Changes`]: tag log, tags added, tags removed, scores, handoffs.
pub(crate) struct ChangeBatches {
    pub tag_log: Option<String>,
    pub tag_adds: Option<String>,
    pub tag_removes: Option<String>,
    pub scores: Option<String>,
    pub handoffs: Option<String>,
}

impl ChangeBatches {
    pub fn of(changes: &Changes) -> ChangeBatches {
        let rows = ChangeRows::of(changes);
        ChangeBatches {
            tag_log: json_batch(&rows.tag_log),
            tag_adds: json_batch(&rows.net_tags(true)),
            tag_removes: json_batch(&rows.net_tags(false)),
            scores: json_batch(&rows.scores),
            handoffs: json_batch(&rows.handoffs),
        }
    }
}

/// The columns [`Tx::write_lead_activity`] writes.
#[derive(Debug, Clone, Serialize)]
pub struct ActivityRow {
    pub(crate) id: i64,
    pub(crate) score: i64,
    pub(crate) stage: &'static str,
    pub(crate) last_activity_at: Option<i64>,
    pub(crate) updated_at: i64,
}

impl From<&Lead> for ActivityRow {
    fn from(l: &Lead) -> Self {
        ActivityRow {
            id: l.id.0,
            score: l.score,
            stage: l.stage.as_str(),
            last_activity_at: l.last_activity_at.map(to_micros),
            updated_at: to_micros(l.updated_at),
        }
    }
}
