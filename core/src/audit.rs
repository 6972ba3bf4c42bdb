//! The audit trail: each change a person makes by hand (a deploy, a pause, an enrollment or exit,
//! a manual tag or score, a handoff decision, a queue member's settings, a webhook subscription,
//! an API key, an erasure) with who made it, from where, when, and what changed. The store
//! writes an entry in the same transaction as the change it records, so neither is ever kept
//! without the other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a change was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The REST API, by an API key.
    Api,
    /// The command line (`nurture apikey …`, `serve --playbook`, …).
    Cli,
    /// The web console, by a signed-in user.
    Console,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Api => "api",
            Via::Cli => "cli",
            Via::Console => "console",
        }
    }
}

impl std::str::FromStr for Via {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "api" => Ok(Via::Api),
            "cli" => Ok(Via::Cli),
            "console" => Ok(Via::Console),
            other => Err(format!("audit origin {other:?}")),
        }
    }
}

/// Who makes a change: the API key's name, or the user at the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct By {
    pub actor: String,
    pub via: Via,
}

impl By {
    /// A change made through the API by the key named `name`.
    pub fn api(name: &str) -> Self {
        By {
            actor: name.to_owned(),
            via: Via::Api,
        }
    }

    /// A change made in the console by the user with this e-mail.
    pub fn console(email: &str) -> Self {
        By {
            actor: email.to_owned(),
            via: Via::Console,
        }
    }

    /// The person at the command line: `$USER` (or `$USERNAME`), else `nurture`.
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .ok()
            .filter(|u| !u.trim().is_empty());
        By {
            actor: user.unwrap_or_else(|| "nurture".to_owned()),
            via: Via::Cli,
        }
    }

    /// An entry of `kind` about `subject`, with what changed.
    pub fn did(&self, kind: AuditKind, subject: impl ToString, detail: Value) -> Change {
        Change {
            by: self.clone(),
            kind,
            subject: subject.to_string(),
            detail,
        }
    }
}

/// What kind of change an entry records: `<what>.<what happened to it>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AuditKind {
    #[serde(rename = "playbook.deployed")]
    PlaybookDeployed,
    #[serde(rename = "campaign.paused")]
    CampaignPaused,
    #[serde(rename = "campaign.resumed")]
    CampaignResumed,
    #[serde(rename = "campaign.enrolled")]
    CampaignEnrolled,
    #[serde(rename = "campaign.exited")]
    CampaignExited,
    #[serde(rename = "lead.tagged")]
    LeadTagged,
    #[serde(rename = "lead.scored")]
    LeadScored,
    #[serde(rename = "lead.handed_off")]
    LeadHandedOff,
    #[serde(rename = "lead.erased")]
    LeadErased,
    #[serde(rename = "lead.note_added")]
    LeadNoteAdded,
    #[serde(rename = "handoff.accepted")]
    HandoffAccepted,
    #[serde(rename = "handoff.rejected")]
    HandoffRejected,
    #[serde(rename = "handoff.converted")]
    HandoffConverted,
    #[serde(rename = "handoff.released")]
    HandoffReleased,
    #[serde(rename = "queue.member_changed")]
    QueueMemberChanged,
    #[serde(rename = "webhook.created")]
    WebhookCreated,
    #[serde(rename = "webhook.deleted")]
    WebhookDeleted,
    #[serde(rename = "key.created")]
    KeyCreated,
    #[serde(rename = "key.revoked")]
    KeyRevoked,
    #[serde(rename = "key.rotated")]
    KeyRotated,
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.reset")]
    UserReset,
    #[serde(rename = "user.deactivated")]
    UserDeactivated,
}

impl AuditKind {
    pub const ALL: [AuditKind; 23] = [
        AuditKind::PlaybookDeployed,
        AuditKind::CampaignPaused,
        AuditKind::CampaignResumed,
        AuditKind::CampaignEnrolled,
        AuditKind::CampaignExited,
        AuditKind::LeadTagged,
        AuditKind::LeadScored,
        AuditKind::LeadHandedOff,
        AuditKind::LeadErased,
        AuditKind::LeadNoteAdded,
        AuditKind::HandoffAccepted,
        AuditKind::HandoffRejected,
        AuditKind::HandoffConverted,
        AuditKind::HandoffReleased,
        AuditKind::QueueMemberChanged,
        AuditKind::WebhookCreated,
        AuditKind::WebhookDeleted,
        AuditKind::KeyCreated,
        AuditKind::KeyRevoked,
        AuditKind::KeyRotated,
        AuditKind::UserCreated,
        AuditKind::UserReset,
        AuditKind::UserDeactivated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::PlaybookDeployed => "playbook.deployed",
            AuditKind::CampaignPaused => "campaign.paused",
            AuditKind::CampaignResumed => "campaign.resumed",
            AuditKind::CampaignEnrolled => "campaign.enrolled",
            AuditKind::CampaignExited => "campaign.exited",
            AuditKind::LeadTagged => "lead.tagged",
            AuditKind::LeadScored => "lead.scored",
            AuditKind::LeadHandedOff => "lead.handed_off",
            AuditKind::LeadErased => "lead.erased",
            AuditKind::LeadNoteAdded => "lead.note_added",
            AuditKind::HandoffAccepted => "handoff.accepted",
            AuditKind::HandoffRejected => "handoff.rejected",
            AuditKind::HandoffConverted => "handoff.converted",
            AuditKind::HandoffReleased => "handoff.released",
            AuditKind::QueueMemberChanged => "queue.member_changed",
            AuditKind::WebhookCreated => "webhook.created",
            AuditKind::WebhookDeleted => "webhook.deleted",
            AuditKind::KeyCreated => "key.created",
            AuditKind::KeyRevoked => "key.revoked",
            AuditKind::KeyRotated => "key.rotated",
            AuditKind::UserCreated => "user.created",
            AuditKind::UserReset => "user.reset",
            AuditKind::UserDeactivated => "user.deactivated",
        }
    }
}

impl AuditKind {
    /// Other words a filter may name this kind by: its verb (`pause`), its noun (`erasure`).
    fn words(self) -> &'static [&'static str] {
        match self {
            AuditKind::PlaybookDeployed => &["deploy", "deployed", "deployment"],
            AuditKind::CampaignPaused => &["pause", "paused"],
            AuditKind::CampaignResumed => &["resume", "resumed"],
            AuditKind::CampaignEnrolled => &["enroll", "enrolled", "enrollment"],
            AuditKind::CampaignExited => &["exit", "exited"],
            AuditKind::LeadTagged => &["tag", "tagged"],
            AuditKind::LeadScored => &["score", "scored"],
            AuditKind::LeadHandedOff => &["hand_off", "handed_off"],
            AuditKind::LeadErased => &["erase", "erased", "erasure"],
            AuditKind::LeadNoteAdded => &["note", "note_added", "call"],
            AuditKind::HandoffAccepted => &["accept", "accepted", "decision", "decided"],
            AuditKind::HandoffRejected => &["reject", "rejected", "decision", "decided"],
            AuditKind::HandoffConverted => &["convert", "converted", "decision", "decided"],
            AuditKind::HandoffReleased => &["release", "released", "decision", "decided"],
            AuditKind::QueueMemberChanged => &["member", "member_changed"],
            AuditKind::WebhookCreated => &["subscription"],
            AuditKind::WebhookDeleted => &["subscription"],
            AuditKind::KeyCreated => &["api_key", "apikey"],
            AuditKind::KeyRevoked => &["api_key", "apikey", "revoke", "revoked"],
            AuditKind::KeyRotated => &["api_key", "apikey", "rotate", "rotated"],
            AuditKind::UserCreated => &["invite", "invited"],
            AuditKind::UserReset => &["reset"],
            AuditKind::UserDeactivated => &["deactivate", "deactivated"],
        }
    }
}

impl std::str::FromStr for AuditKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        AuditKind::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| format!("audit kind {text:?}"))
    }
}

/// A change to record: who, what kind, about what (a campaign id, a lead id, …), and what
/// changed. The store adds the time.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub by: By,
    pub kind: AuditKind,
    pub subject: String,
    pub detail: Value,
}

impl Change {
    /// The same change about `subject`: for changes that create what they are about (a key, a
    /// webhook, a deployment), whose id is known only once it is written.
    pub fn about(&self, subject: impl ToString) -> Change {
        Change {
            subject: subject.to_string(),
            ..self.clone()
        }
    }

    /// The same change with `key` set to `value` in its detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Change {
        if !self.detail.is_object() {
            self.detail = Value::Object(Default::default());
        }
        if let Value::Object(map) = &mut self.detail {
            map.insert(key.to_owned(), value.into());
        }
        self
    }
}

/// One recorded change, as `GET /v1/audit` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AuditEntry {
    /// Ascending in the order the changes were recorded; the cursor of the list.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The API key's name, or the user at the command line.
    pub actor: String,
    pub via: Via,
    pub kind: AuditKind,
    /// What the change is about: a campaign id, a lead id, a handoff id, a queue, a webhook
    /// id, a key id or a deployment id.
    pub subject: String,
    /// What changed.
    pub detail: Value,
}

/// Which entries to list: every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Kinds to list: one kind (`campaign.paused`), or every kind of a family (`campaign`).
    pub kinds: Option<Vec<AuditKind>>,
    /// Entries at or after this time (microseconds).
    pub since: Option<i64>,
}

/// Every name a filter takes: each kind, each family, and the other words for them.
pub fn filter_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
    for kind in AuditKind::ALL {
        names.extend(kind.as_str().split('.').next());
        names.extend(kind.words());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(*n));
    names
}

/// The kinds `kind` names: that kind, or, for a family (`campaign`), each of its kinds. An
/// error names the families and kinds there are.
pub fn kinds_named(kind: &str) -> Result<Vec<AuditKind>, String> {
    let kind = kind.trim();
    let found: Vec<AuditKind> = AuditKind::ALL
        .into_iter()
        .filter(|k| k.as_str() == kind || k.as_str().split('.').next() == Some(kind) || k.words().contains(&kind))
        .collect();
    if found.is_empty() {
        let mut families: Vec<&str> = AuditKind::ALL
            .iter()
            .filter_map(|k| k.as_str().split('.').next())
            .collect();
        families.dedup();
        return Err(format!(
            "no audit kind {kind:?}; name a family ({}) or one kind such as \"campaign.paused\"",
            families.join(", ")
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_names_its_kinds_and_a_kind_itself() {
        assert_eq!(
            kinds_named("campaign").unwrap(),
            vec![
                AuditKind::CampaignPaused,
                AuditKind::CampaignResumed,
                AuditKind::CampaignEnrolled,
                AuditKind::CampaignExited
            ]
        );
        assert_eq!(kinds_named("key.revoked").unwrap(), vec![AuditKind::KeyRevoked]);
        assert_eq!(kinds_named("pause").unwrap(), vec![AuditKind::CampaignPaused]);
        assert_eq!(kinds_named("deployment").unwrap(), vec![AuditKind::PlaybookDeployed]);
        assert_eq!(kinds_named("decision").unwrap().len(), 4);
        let err = kinds_named("campain").unwrap_err();
        assert!(
            err.contains("playbook, campaign, lead, handoff, queue, webhook, key, user"),
            "{err}"
        );
    }

    #[test]
    fn every_kind_reads_back_from_its_name() {
        for kind in AuditKind::ALL {
            assert_eq!(kind.as_str().parse::<AuditKind>().unwrap(), kind);
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }

    #[test]
    fn a_change_about_what_it_made_keeps_the_rest() {
        let change = By::api("ops")
            .did(AuditKind::KeyCreated, "", serde_json::json!({"name": "crm"}))
            .about(7)
            .with("role", "crm");
        assert_eq!(change.subject, "7");
        assert_eq!(change.detail, serde_json::json!({"name": "crm", "role": "crm"}));
        assert_eq!(change.by.via, Via::Api);
    }
}
