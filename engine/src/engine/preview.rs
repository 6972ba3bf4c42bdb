//! Seeing an e-mail before it goes: a template rendered for a lead exactly as the dispatcher
//! renders it (links tracked, footer in the template's language), and one test e-mail sent
//! through the mailer. Neither is a message: no tracking is counted, no frequency cap used.

use super::*;
use crate::lead::{Lead, LeadId, LeadInput};
use crate::mail::{OutgoingEmail, SendError};
use crate::template::{Language, Links, RenderInput};
use crate::tracking::Token;

/// The message id a preview's links carry: no message has it, so an open, click or
/// unsubscribe through them records nothing (a click still goes where the link points).
const NO_MESSAGE: i64 = 0;

/// The id of a lead rendered for but stored nowhere (a given or a sample lead).
const UNSTORED: LeadId = LeadId(0);

/// Whom a template is rendered for.
#[derive(Debug, Clone)]
pub enum PreviewLead {
    /// A stored lead, with its tags.
    Stored(LeadId),
    /// A lead as given (the fields of `PUT /v1/leads`), stored nowhere.
    Given(Box<LeadInput>),
    /// A sample lead: "Mei Lin" at "Acme".
    Sample,
}

/// A template rendered as it would be sent.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Preview {
    /// The template used, language folder included (`en/webinar-reminder`).
    pub template: String,
    /// The language of the template used and of its footer.
    pub language: Language,
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// A test e-mail sent.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct TestSent {
    pub to: String,
    pub message_id: String,
    #[serde(flatten)]
    pub preview: Preview,
}

/// What a preview renders for: a lead, in `language` when given (else the lead's), with the
/// properties of an enrolling event for `{{event.…}}` when given.
#[derive(Debug, Clone)]
pub struct PreviewFor {
    pub lead: PreviewLead,
    pub language: Option<Language>,
    pub event: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Engine {
    /// Renders e-mail template `name` as the dispatcher would send it, for what `of` says.
    /// `NotFound` when the lead is not stored; `Invalid` when the template does not exist or
    /// does not render for this lead.
    pub async fn preview(&self, name: &str, of: PreviewFor, sender: &Sender) -> EngineResult<Preview> {
        self.preview_in(&self.playbook(), name, of, sender).await
    }

    /// Renders e-mail template `name` of `playbook` (one not yet deployed: the console's
    /// editor shows a change before it goes out) as [`Engine::preview`] does.
    pub async fn preview_in(
        &self,
        playbook: &Playbook,
        name: &str,
        of: PreviewFor,
        sender: &Sender,
    ) -> EngineResult<Preview> {
        let PreviewFor { lead, language, event } = of;
        let event = event.map(|properties| crate::condition::EventFact {
            kind: "preview".into(),
            occurred_at: self.now(),
            properties,
        });
        if !playbook.templates.names().any(|n| n == name) {
            return Err(EngineError::Missing(format!(
                "no template {name:?} is deployed; deploy it with the playbook (PUT /v1/playbook)"
            )));
        }
        if let Err(why) = playbook.templates.check(crate::channel::Channel::Email, name) {
            return Err(EngineError::Invalid(vec![crate::lead::FieldError::new("name", why)]));
        }
        let (mut lead, tags) = match lead {
            PreviewLead::Stored(id) => {
                let view = self.get_lead(id).await?;
                (view.lead, view.tags)
            }
            PreviewLead::Given(input) => {
                let problems = input.validate(false);
                if !problems.is_empty() {
                    return Err(EngineError::Invalid(
                        problems
                            .into_iter()
                            .map(|p| crate::lead::FieldError::new(format!("lead.{}", p.field), p.message))
                            .collect(),
                    ));
                }
                let mut lead = Lead::new(UNSTORED, self.now());
                input.apply(&mut lead, self.now());
                (lead, Vec::new())
            }
            PreviewLead::Sample => (sample_lead(self.now()), Vec::new()),
        };
        if let Some(language) = language {
            lead.attributes
                .insert("language".into(), serde_json::Value::String(language.code().into()));
        }
        let input = RenderInput {
            lead: &lead,
            tags: &tags,
            campaign: "preview",
            step: "preview",
            timezone: lead.timezone(playbook.rules.default_timezone),
            default_language: playbook.rules.default_language,
            event: event.as_ref(),
        };
        let links = Links {
            open_pixel: sender.link("t/o", &Token::Open { message: NO_MESSAGE }),
            unsubscribe: sender.link("u", &Token::Unsubscribe { message: NO_MESSAGE }),
        };
        let invalid = |why: String| EngineError::Invalid(vec![crate::lead::FieldError::new("name", why)]);
        let rendered = playbook.templates.render_email(name, &input, &links).map_err(invalid)?;
        let html = sender.track_clicks(&rendered.html, NO_MESSAGE).map_err(invalid)?;
        Ok(Preview {
            template: rendered.template,
            language: rendered.language,
            subject: rendered.subject,
            html,
            text: rendered.text,
        })
    }

    /// Sends one test e-mail of template `name` to `to`, rendered as [`Engine::preview`] does,
    /// its subject marked as a test in the template's language. Nothing is recorded: no
    /// message, no tracking, no frequency cap or send rate used.
    pub async fn test_send(&self, name: &str, to: &str, of: PreviewFor, sender: &Sender) -> EngineResult<TestSent> {
        let mut preview = self.preview(name, of, sender).await?;
        let mark = match preview.language {
            Language::Zh => "[测试]",
            Language::En => "[Test]",
        };
        preview.subject = format!("{mark} {}", preview.subject);
        let message_id = format!("<test.{}@{}>", uuid::Uuid::new_v4().simple(), sender.domain());
        let email = OutgoingEmail {
            from: sender.from.clone(),
            to: to.to_owned(),
            subject: preview.subject.clone(),
            html: preview.html.clone(),
            text: preview.text.clone(),
            message_id: message_id.clone(),
            unsubscribe_url: sender.link("u", &Token::Unsubscribe { message: NO_MESSAGE }),
        };
        match sender.mailer.send(&email).await {
            Ok(()) => Ok(TestSent {
                to: to.to_owned(),
                message_id,
                preview,
            }),
            Err(SendError::Rejected(why)) => Err(EngineError::Invalid(vec![crate::lead::FieldError::new(
                "to",
                format!("the mail server refused this address: {why}"),
            )])),
            Err(e) => Err(EngineError::Upstream(format!("the test e-mail was not sent: {e}"))),
        }
    }
}

/// The lead a template is previewed for when none is named.
fn sample_lead(now: DateTime<Utc>) -> Lead {
    let mut lead = Lead::new(UNSTORED, now);
    lead.email = Some("mei.lin@acme.example".into());
    for (field, value) in [
        ("first_name", "Mei"),
        ("last_name", "Lin"),
        ("company", "Acme"),
        ("title", "IT Director"),
        ("industry", "manufacturing"),
    ] {
        if let Some(name) = crate::lead::TEXT_FIELDS.iter().find(|f| **f == field) {
            lead.fields.insert(name, value.to_owned());
        }
    }
    lead
}
