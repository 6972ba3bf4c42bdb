//! Rendering a template for one lead: the context it sees, and the footer, unsubscribe link
//! and pixel added to every e-mail.

use super::*;
use handlebars::RenderError;
use indexmap::IndexMap;
use serde_json::{json, Map, Value};

use crate::lead::TEXT_FIELDS;

impl Templates {
    pub(super) fn context(&self, name: &str, input: &RenderInput<'_>) -> Value {
        let lead = input.lead;
        let mut root = Map::new();
        for field in TEXT_FIELDS {
            root.insert(
                field.to_owned(),
                Value::String(lead.fields.get(field).cloned().unwrap_or_default()),
            );
        }
        root.insert("timezone".into(), Value::String(input.timezone.name().to_owned()));
        root.insert("id".into(), Value::String(lead.id.to_string()));
        root.insert("email".into(), Value::String(lead.email.clone().unwrap_or_default()));
        root.insert(
            "external_id".into(),
            Value::String(lead.external_id.clone().unwrap_or_default()),
        );
        root.insert("owner".into(), Value::String(lead.owner.clone().unwrap_or_default()));
        root.insert("stage".into(), Value::String(lead.stage.as_str().to_owned()));
        root.insert("score".into(), Value::from(lead.score));
        root.insert("tags".into(), json!(input.tags));
        root.insert(
            "consent".into(),
            serde_json::to_value(&lead.consent).unwrap_or(Value::Null),
        );
        root.insert("campaign".into(), Value::String(input.campaign.to_owned()));
        root.insert("step".into(), Value::String(input.step.to_owned()));
        root.insert("created_at".into(), Value::String(lead.created_at.to_rfc3339()));
        root.insert(
            "last_activity_at".into(),
            Value::String(lead.last_activity_at.map(|t| t.to_rfc3339()).unwrap_or_default()),
        );
        let mut attributes = lead.attributes.clone();
        let mut event = input.event.map(|e| e.properties.clone()).unwrap_or_default();
        if let Some(parts) = self.parts.get(name) {
            for read in &parts.attributes {
                let blank = || Value::String(String::new());
                match read.split_once('.') {
                    Some(("attributes", key)) => {
                        attributes.entry(key.to_owned()).or_insert_with(blank);
                    }
                    Some(("event", key)) => {
                        event.entry(key.to_owned()).or_insert_with(blank);
                    }
                    _ => {}
                }
            }
        }
        root.insert("attributes".into(), Value::Object(attributes));
        root.insert("event".into(), Value::Object(event));
        Value::Object(root)
    }

    /// Renders e-mail `name` for a lead, in the lead's language where there is a translation,
    /// with the open pixel and the unsubscribe link added. The error says why, for the
    /// journey log.
    pub fn render_email(&self, name: &str, input: &RenderInput<'_>, links: &Links) -> Result<RenderedEmail, String> {
        let (resolved, language) = self.resolve(name, input.lead, input.default_language);
        let data = self.context(&resolved, input);
        let failed = |part: &str, e: RenderError| format!("template {resolved}.{part} failed to render: {e}");
        let subject = self
            .plain
            .render(&registry_key(&resolved, Part::Subject), &data)
            .map_err(|e| failed("subject.hbs", e))?;
        let html = self
            .html
            .render(&registry_key(&resolved, Part::Html), &data)
            .map_err(|e| failed("hbs", e))?;
        let english = language == Language::En;
        let has_text = self.parts.get(&resolved).is_some_and(|p| p.text);
        let text = if has_text {
            self.plain
                .render(&registry_key(&resolved, Part::Text), &data)
                .map_err(|e| failed("txt.hbs", e))?
        } else {
            html2text::from_read(html.as_bytes(), 78)
                .map_err(|e| format!("deriving the text part of {resolved}: {e}"))?
        };
        Ok(RenderedEmail {
            subject: subject.trim().replace(['\r', '\n'], " "),
            html: with_footer(&html, links, english),
            text: with_text_footer(&text, links, english),
            template: resolved,
            language,
        })
    }

    /// Renders WeChat template message `name` for a lead.
    pub fn render_wechat(&self, name: &str, input: &RenderInput<'_>) -> Result<RenderedWechat, String> {
        let (resolved, _) = self.resolve(name, input.lead, input.default_language);
        let spec = self
            .parts
            .get(&resolved)
            .and_then(|p| p.wechat.as_ref())
            .ok_or_else(|| format!("WeChat template {resolved:?} does not exist"))?;
        let data = self.context(&resolved, input);
        let render = |field: &str| {
            self.plain
                .render(&format!("{resolved}.wechat.{field}"), &data)
                .map_err(|e| format!("template {resolved}.wechat.yaml ({field}) failed to render: {e}"))
        };
        let mut out = IndexMap::new();
        for key in spec.data.keys() {
            out.insert(key.clone(), render(&format!("data.{key}"))?);
        }
        Ok(RenderedWechat {
            template_id: spec.template_id.clone(),
            url: match &spec.url {
                Some(_) => Some(render("url")?),
                None => None,
            },
            data: out,
        })
    }

    /// Renders the webhook body `name` for a lead.
    pub fn render_json(&self, name: &str, input: &RenderInput<'_>) -> Result<Value, String> {
        let data = self.context(name, input);
        let body = self
            .json
            .render(&registry_key(name, Part::Json), &data)
            .map_err(|e| format!("template {name}.json.hbs failed to render: {e}"))?;
        serde_json::from_str(&body).map_err(|e| format!("template {name}.json.hbs did not render JSON: {e}"))
    }
}

/// Adds the unsubscribe footer and the open pixel before `</body>` (or at the end).
pub(super) fn with_footer(html: &str, links: &Links, english: bool) -> String {
    let (question, action) = if english {
        ("Don't want these e-mails?", "Unsubscribe")
    } else {
        ("不想再收到此类邮件？", "退订")
    };
    let footer = format!(
        "<p style=\"font-size:12px;color:#888888;text-align:center\">{question} <a href=\"{}\">{action}</a></p>\n<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0\">\n",
        handlebars::html_escape(&links.unsubscribe),
        handlebars::html_escape(&links.open_pixel)
    );
    match html.to_lowercase().rfind("</body>") {
        Some(i) => format!("{}{footer}{}", &html[..i], &html[i..]),
        None => format!("{html}\n{footer}"),
    }
}

pub(super) fn with_text_footer(text: &str, links: &Links, english: bool) -> String {
    let label = if english { "Unsubscribe" } else { "退订" };
    format!("{}\n\n--\n{label}: {}\n", text.trim_end(), links.unsubscribe)
}
