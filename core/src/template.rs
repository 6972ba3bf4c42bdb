//! Message templates: Handlebars in strict mode, loaded from the templates directory and checked
//! before deploy.
//!
//! Layout of the directory:
//! - `NAME.hbs` (HTML body), `NAME.subject.hbs`, optional `NAME.txt.hbs` (text part; derived
//!   from the HTML when absent): an e-mail;
//! - `NAME.wechat.yaml`: a WeChat template message (`template_id`, `url`, `data`);
//! - `NAME.json.hbs`: the body of a webhook send;
//! - `partials/*.hbs`: shared pieces such as a header and footer (`{{> footer}}`);
//! - `LANG/…` (e.g. `en/`): the same names in another language, chosen by the lead's
//!   `language` attribute; the top level is the default language.
//!
//! Templates see every lead field by name (`{{first_name}}`), `attributes.*`, `tags`, `score`,
//! `stage`, `timezone`, and `campaign`/`step`. A field the lead lacks renders as empty text; a
//! name that is no lead field at all is a warning at load, so typos are caught before deploy.
//! The unsubscribe link and the tracking pixel are added here, never written by hand.

use chrono::{DateTime, Utc};
use handlebars::template::{HelperTemplate, Parameter, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, JsonValue, Path as HbsPath, PathSeg, RenderContext, RenderError,
    RenderErrorReason, ScopedJson, Template,
};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::channel::Channel;
use crate::diagnostic::{Issue, Position};
use crate::lead::{Lead, TEXT_FIELDS};

/// Names a template may use besides lead fields: what the render context provides.
const CONTEXT_NAMES: [&str; 13] = [
    "id",
    "email",
    "external_id",
    "owner",
    "stage",
    "score",
    "tags",
    "attributes",
    "consent",
    "campaign",
    "step",
    "created_at",
    "last_activity_at",
];

/// Helpers a template may call: Handlebars' own and ours.
const HELPERS: [&str; 20] = [
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte", "and", "or", "not",
    "len", "default", "date", "upper",
];

/// The parts found for one template name.
#[derive(Debug, Clone, Default)]
struct Parts {
    html: bool,
    subject: bool,
    text: bool,
    json: bool,
    wechat: Option<WechatSpec>,
    /// `attributes.KEY` names the template uses, so that strict mode sees them present.
    attributes: BTreeSet<String>,
    /// A part did not compile (already reported).
    broken: bool,
}

/// `NAME.wechat.yaml`: a WeChat Official Account template message. Values are Handlebars.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WechatSpec {
    template_id: String,
    #[serde(default)]
    url: Option<String>,
    data: IndexMap<String, String>,
}

/// The templates of a playbook, compiled, with every problem found while loading them.
pub struct Templates {
    dir: Option<PathBuf>,
    /// HTML bodies, escaped for HTML.
    html: Handlebars<'static>,
    /// Subjects, text parts and WeChat values: not escaped.
    plain: Handlebars<'static>,
    /// Webhook bodies: values escaped as JSON string content.
    json: Handlebars<'static>,
    /// By name, with the language folder as a prefix (`en/welcome`).
    parts: BTreeMap<String, Parts>,
    issues: Vec<Issue>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("dir", &self.dir)
            .field("names", &self.parts.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::from_sources(None, Vec::new())
    }
}

/// A rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub html: String,
    pub text: String,
    /// The template actually used, language folder included (`en/welcome`).
    pub template: String,
}

/// A rendered WeChat template message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedWechat {
    pub template_id: String,
    pub url: Option<String>,
    pub data: IndexMap<String, String>,
}

/// Links the engine adds to every e-mail.
#[derive(Debug, Clone)]
pub struct Links {
    pub open_pixel: String,
    pub unsubscribe: String,
}

/// What a template is rendered for.
pub struct RenderInput<'a> {
    pub lead: &'a Lead,
    pub tags: &'a [String],
    pub campaign: &'a str,
    pub step: &'a str,
    /// The lead's time zone, else the playbook's default.
    pub timezone: chrono_tz::Tz,
}

impl Templates {
    /// Loads every template under `dir`. A missing directory gives an empty set: campaigns
    /// that name templates are then refused with a message saying where they were looked for.
    pub fn load_dir(dir: &Path) -> Templates {
        let mut sources = Vec::new();
        let mut issues = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(folder) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&folder) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                if !(relative.ends_with(".hbs") || relative.ends_with(".wechat.yaml")) {
                    continue;
                }
                match std::fs::read_to_string(&path) {
                    Ok(text) => sources.push((relative, text)),
                    Err(e) => issues.push(Issue::new(
                        &path.display().to_string(),
                        format!("cannot read the template: {e}"),
                    )),
                }
            }
        }
        sources.sort();
        let mut templates = Templates::from_sources(Some(dir.to_path_buf()), sources);
        templates.issues.extend(issues);
        templates.issues.sort();
        templates
    }

    /// Compiles templates given as (path relative to the templates directory, text).
    pub fn from_sources(dir: Option<PathBuf>, sources: Vec<(String, String)>) -> Templates {
        let mut templates = Templates {
            dir,
            html: registry(handlebars::html_escape),
            plain: registry(handlebars::no_escape),
            json: registry(json_escape),
            parts: BTreeMap::new(),
            issues: Vec::new(),
        };
        // Partials first: templates that use them are checked against them.
        let (partials, others): (Vec<_>, Vec<_>) = sources.into_iter().partition(|(p, _)| p.starts_with("partials/"));
        let mut partial_names = BTreeSet::new();
        for (path, text) in &partials {
            let name = path.trim_start_matches("partials/").trim_end_matches(".hbs").to_owned();
            if let Some(template) = templates.compile(path, text) {
                templates.html.register_template(&name, template.clone());
                templates.plain.register_template(&name, template.clone());
                templates.json.register_template(&name, template);
                partial_names.insert(name);
            }
        }
        for (path, text) in others {
            let (name, part) = split_name(&path);
            if part == Part::Wechat {
                templates.load_wechat(&path, &name, &text, &partial_names);
                continue;
            }
            let Some(template) = templates.compile(&path, &text) else {
                templates.parts.entry(name).or_default().broken = true;
                continue;
            };
            let mut attributes = BTreeSet::new();
            let known = &partial_names;
            templates.check_names(&path, &template, known, &mut attributes);
            let key = registry_key(&name, part);
            let entry = templates.parts.entry(name.clone()).or_default();
            entry.attributes.extend(attributes);
            match part {
                Part::Html => {
                    entry.html = true;
                    templates.html.register_template(&key, template);
                }
                Part::Subject => {
                    entry.subject = true;
                    templates.plain.register_template(&key, template);
                }
                Part::Text => {
                    entry.text = true;
                    templates.plain.register_template(&key, template);
                }
                Part::Json => {
                    entry.json = true;
                    templates.json.register_template(&key, template);
                }
                Part::Wechat => {}
            }
        }
        templates.check_languages();
        templates.issues.sort();
        templates
    }

    /// The directory the templates were loaded from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Problems found while loading: compile errors (errors) and unknown names (warnings).
    pub fn issues(&self) -> &[Issue] {
        &self.issues
    }

    /// Template names (language folders included).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.keys().map(String::as_str)
    }

    fn display(&self, relative: &str) -> String {
        match &self.dir {
            Some(dir) => dir.join(relative).display().to_string(),
            None => relative.to_owned(),
        }
    }

    fn compile(&mut self, path: &str, text: &str) -> Option<Template> {
        match Template::compile(text) {
            Ok(template) => Some(template),
            Err(e) => {
                let file = self.display(path);
                let mut reason = e.reason().to_string();
                if reason.contains("expected escape, expression") {
                    // Handlebars lists every rule it could have taken; say what usually happened.
                    reason =
                        "the template ends or breaks off here: is a {{#block}} missing its {{/block}}, or a {{ its }}?"
                            .to_owned();
                }
                let message = format!("the template does not compile: {reason}");
                self.issues.push(match e.pos() {
                    Some((line, column)) => Issue::at(
                        &file,
                        Position {
                            line: line as u64,
                            column: column as u64,
                        },
                        message,
                    ),
                    None => Issue::new(&file, message),
                });
                None
            }
        }
    }

    fn load_wechat(&mut self, path: &str, name: &str, text: &str, partials: &BTreeSet<String>) {
        let file = self.display(path);
        let spec: WechatSpec = match crate::yaml::parse(&file, text) {
            Ok(spec) => spec,
            Err(issue) => {
                self.issues.push(issue);
                return;
            }
        };
        let mut attributes = BTreeSet::new();
        let mut values: Vec<(String, &String)> = spec.data.iter().map(|(k, v)| (format!("data.{k}"), v)).collect();
        if let Some(url) = &spec.url {
            values.push(("url".to_owned(), url));
        }
        for (field, value) in values {
            if let Some(template) = self.compile(path, value) {
                self.check_names(path, &template, partials, &mut attributes);
                self.plain
                    .register_template(&format!("{name}.wechat.{field}"), template);
            }
        }
        let entry = self.parts.entry(name.to_owned()).or_default();
        entry.attributes.extend(attributes);
        entry.wechat = Some(spec);
    }

    /// Warns about names no lead field, attribute or context provides, and errors on partials
    /// that do not exist.
    fn check_names(
        &mut self,
        path: &str,
        template: &Template,
        partials: &BTreeSet<String>,
        attributes: &mut BTreeSet<String>,
    ) {
        let mut found = Vec::new();
        walk(template, &mut found, attributes);
        let file = self.display(path);
        for (use_, position) in found {
            let position = position.map(|(line, column)| Position {
                line: line as u64,
                column: column as u64,
            });
            let issue = |message: String| match position {
                Some(p) => Issue::at(&file, p, message),
                None => Issue::new(&file, message),
            };
            match use_ {
                Use::Variable(root) => {
                    if !TEXT_FIELDS.contains(&root.as_str()) && !CONTEXT_NAMES.contains(&root.as_str()) {
                        let nearest = TEXT_FIELDS
                            .iter()
                            .chain(CONTEXT_NAMES.iter())
                            .map(|n| (strsim::levenshtein(n, &root), *n))
                            .min()
                            .filter(|(d, _)| *d <= 2)
                            .map(|(_, n)| format!("; did you mean {n:?}?"))
                            .unwrap_or_else(|| {
                                "; use a lead field (first_name, company, …), attributes.NAME, tags, score, campaign or step"
                                    .to_owned()
                            });
                        self.issues.push(
                            issue(format!("{root:?} is not a lead field or a template value{nearest}")).warning(),
                        );
                    }
                }
                Use::Helper(name) => {
                    if !HELPERS.contains(&name.as_str()) {
                        self.issues.push(issue(format!(
                            "helper {name:?} does not exist; the helpers are {}",
                            HELPERS.join(", ")
                        )));
                    }
                }
                Use::Partial(name) => {
                    if !partials.contains(&name) {
                        self.issues.push(issue(format!(
                            "partial {name:?} does not exist; add partials/{name}.hbs to the templates directory"
                        )));
                    }
                }
            }
        }
    }

    /// A language folder's template must have the parts its default has, and a default.
    fn check_languages(&mut self) {
        let mut found = Vec::new();
        for (name, parts) in self.parts.iter().filter(|(_, p)| !p.broken) {
            if parts.html != parts.subject {
                let (present, missing) = if parts.html {
                    ("hbs", "subject.hbs")
                } else {
                    ("subject.hbs", "hbs")
                };
                found.push(Issue::new(
                    &self.display(&format!("{name}.{present}")),
                    format!("e-mail template {name:?} needs both NAME.hbs and NAME.subject.hbs; add {name}.{missing}"),
                ));
            }
            let Some((language, base)) = name.split_once('/') else {
                continue;
            };
            if !self.parts.contains_key(base) {
                found.push(
                    Issue::new(
                        &self.display(&format!("{name}.hbs")),
                        format!(
                            "{language}/{base} is never used: the default-language template {base:?} does not exist, and campaigns name defaults"
                        ),
                    )
                    .warning(),
                );
            }
        }
        self.issues.extend(found);
    }

    /// Whether a send on `channel` can use template `name`; if not, what to do about it.
    pub fn check(&self, channel: Channel, name: &str) -> Result<(), String> {
        let where_ = match &self.dir {
            Some(dir) if !dir.exists() => format!(" (the templates directory {} does not exist)", dir.display()),
            Some(dir) => format!(" in {}", dir.display()),
            None => String::new(),
        };
        if name.is_empty() || name.contains("..") || name.starts_with('/') {
            return Err(format!(
                "template name {name:?} is not valid; name a file of the templates directory without its extension"
            ));
        }
        let parts = self.parts.get(name);
        let ok = match channel {
            Channel::Email => parts.is_some_and(|p| p.html && p.subject),
            Channel::Wechat => parts.is_some_and(|p| p.wechat.is_some()),
            Channel::Webhook => parts.is_some_and(|p| p.json),
        };
        if ok {
            return Ok(());
        }
        Err(match channel {
            Channel::Email => {
                format!("e-mail template {name:?} does not exist: add {name}.hbs and {name}.subject.hbs{where_}")
            }
            Channel::Wechat => {
                format!("WeChat template {name:?} does not exist: add {name}.wechat.yaml{where_}")
            }
            Channel::Webhook => {
                format!("webhook template {name:?} does not exist: add {name}.json.hbs{where_}")
            }
        })
    }

    /// The template to use for a lead: `LANG/NAME` when the lead's `language` attribute names a
    /// language folder that has it, else `NAME`.
    pub fn resolve(&self, name: &str, lead: &Lead) -> String {
        let language = lead
            .attributes
            .get("language")
            .and_then(Value::as_str)
            .map(|l| l.trim().to_lowercase())
            .and_then(|l| l.split(['-', '_']).next().map(str::to_owned))
            .filter(|l| !l.is_empty());
        if let Some(language) = language {
            let localized = format!("{language}/{name}");
            if self.parts.contains_key(&localized) {
                return localized;
            }
        }
        name.to_owned()
    }

    fn context(&self, name: &str, input: &RenderInput<'_>) -> Value {
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
        if let Some(parts) = self.parts.get(name) {
            for key in &parts.attributes {
                attributes.entry(key.clone()).or_insert(Value::String(String::new()));
            }
        }
        root.insert("attributes".into(), Value::Object(attributes));
        Value::Object(root)
    }

    /// Renders e-mail `name` for a lead, in the lead's language where there is a translation,
    /// with the open pixel and the unsubscribe link added. The error says why, for the
    /// journey log.
    pub fn render_email(&self, name: &str, input: &RenderInput<'_>, links: &Links) -> Result<RenderedEmail, String> {
        let resolved = self.resolve(name, input.lead);
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
        let english = resolved.starts_with("en/");
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
        })
    }

    /// Renders WeChat template message `name` for a lead.
    pub fn render_wechat(&self, name: &str, input: &RenderInput<'_>) -> Result<RenderedWechat, String> {
        let resolved = self.resolve(name, input.lead);
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Html,
    Subject,
    Text,
    Json,
    Wechat,
}

/// `en/welcome.subject.hbs` → (`en/welcome`, Subject).
fn split_name(path: &str) -> (String, Part) {
    for (suffix, part) in [
        (".subject.hbs", Part::Subject),
        (".txt.hbs", Part::Text),
        (".json.hbs", Part::Json),
        (".wechat.yaml", Part::Wechat),
        (".hbs", Part::Html),
    ] {
        if let Some(name) = path.strip_suffix(suffix) {
            return (name.to_owned(), part);
        }
    }
    (path.to_owned(), Part::Html)
}

fn registry_key(name: &str, part: Part) -> String {
    match part {
        Part::Html => format!("{name}.html"),
        Part::Subject => format!("{name}.subject"),
        Part::Text => format!("{name}.txt"),
        Part::Json => format!("{name}.json"),
        Part::Wechat => format!("{name}.wechat"),
    }
}

fn registry(escape: fn(&str) -> String) -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(escape);
    registry.register_helper("default", Box::new(DefaultHelper));
    registry.register_helper("date", Box::new(DateHelper));
    registry.register_helper("upper", Box::new(UpperHelper));
    registry
}

fn json_escape(text: &str) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// `{{default first_name "there"}}`: the value, or the fallback when it is empty.
struct DefaultHelper;

impl HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = h.param(0).map(|p| p.value().clone()).unwrap_or(Value::Null);
        let fallback = h
            .param(1)
            .map(|p| p.value().clone())
            .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("default", 1))?;
        let empty = match &value {
            Value::Null => true,
            Value::String(s) => s.trim().is_empty(),
            _ => false,
        };
        Ok(ScopedJson::Derived(if empty { fallback } else { value }))
    }
}

/// `{{date created_at "%Y-%m-%d"}}`: an RFC 3339 time shown in the lead's time zone (the
/// `timezone` value of the context). Default format `%Y-%m-%d %H:%M`.
struct DateHelper;

impl HelperDef for DateHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        context: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = h.param(0).map(|p| p.value().clone()).unwrap_or(Value::Null);
        let format = h
            .param(1)
            .and_then(|p| p.value().as_str().map(str::to_owned))
            .unwrap_or_else(|| "%Y-%m-%d %H:%M".to_owned());
        let zone: chrono_tz::Tz = context
            .data()
            .get("timezone")
            .and_then(JsonValue::as_str)
            .and_then(|z| z.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        let text = match value.as_str().map(DateTime::parse_from_rfc3339) {
            Some(Ok(time)) => {
                use std::fmt::Write;
                let local = time.with_timezone(&Utc).with_timezone(&zone);
                let mut out = String::new();
                write!(out, "{}", local.format(&format))
                    .map_err(|_| RenderErrorReason::Other(format!("date format {format:?} is not valid")))?;
                out
            }
            _ => String::new(),
        };
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

/// `{{upper company}}`.
struct UpperHelper;

impl HelperDef for UpperHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = h.param(0).map(|p| p.render()).unwrap_or_default();
        Ok(ScopedJson::Derived(Value::String(value.to_uppercase())))
    }
}

/// What a template refers to.
enum Use {
    Variable(String),
    Helper(String),
    Partial(String),
}

type Found = Vec<(Use, Option<(usize, usize)>)>;

/// Collects the names a template uses at its top scope. Inside `each` and `with` blocks the
/// scope is another value, so names there are not checked.
fn walk(template: &Template, found: &mut Found, attributes: &mut BTreeSet<String>) {
    for (i, element) in template.elements.iter().enumerate() {
        let at = template.mapping.get(i).map(|m| (m.0, m.1));
        match element {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                if h.params.is_empty() && h.hash.is_empty() {
                    match &h.name {
                        Parameter::Name(name) if HELPERS.contains(&name.as_str()) => {}
                        Parameter::Name(name) => found.push((Use::Variable(root_of(name)), at)),
                        Parameter::Path(path) => path_use(path, at, found, attributes),
                        _ => {}
                    }
                } else {
                    helper_use(h, at, found, attributes);
                }
            }
            TemplateElement::HelperBlock(h) => {
                helper_use(h, at, found, attributes);
                let scoped = matches!(&h.name, Parameter::Name(n) if n == "each" || n == "with");
                if let Some(inner) = &h.template {
                    if !scoped {
                        walk(inner, found, attributes);
                    }
                }
                if let Some(inverse) = &h.inverse {
                    walk(inverse, found, attributes);
                }
            }
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                if let Parameter::Name(name) = &d.name {
                    found.push((Use::Partial(name.clone()), at));
                }
            }
            _ => {}
        }
    }
}

fn helper_use(h: &HelperTemplate, at: Option<(usize, usize)>, found: &mut Found, attributes: &mut BTreeSet<String>) {
    if let Parameter::Name(name) = &h.name {
        found.push((Use::Helper(name.clone()), at));
    }
    for param in h.params.iter().chain(h.hash.values()) {
        param_use(param, at, found, attributes);
    }
}

fn param_use(param: &Parameter, at: Option<(usize, usize)>, found: &mut Found, attributes: &mut BTreeSet<String>) {
    match param {
        Parameter::Path(path) => path_use(path, at, found, attributes),
        Parameter::Name(name) => found.push((Use::Variable(root_of(name)), at)),
        Parameter::Subexpression(sub) => {
            if let TemplateElement::Expression(h) = sub.as_element() {
                helper_use(h, at, found, attributes);
            }
        }
        _ => {}
    }
}

fn path_use(path: &HbsPath, at: Option<(usize, usize)>, found: &mut Found, attributes: &mut BTreeSet<String>) {
    let HbsPath::Relative((segments, raw)) = path else {
        return;
    };
    if raw.starts_with('@') || raw.starts_with("this") || raw.starts_with("../") || raw == "." {
        return;
    }
    let names: Vec<&str> = segments
        .iter()
        .filter_map(|s| match s {
            PathSeg::Named(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let Some(root) = names.first() else {
        return;
    };
    if *root == "attributes" {
        if let Some(key) = names.get(1) {
            attributes.insert((*key).to_owned());
        }
    }
    found.push((Use::Variable((*root).to_owned()), at));
}

fn root_of(name: &str) -> String {
    name.split(['.', '/', '[']).next().unwrap_or(name).to_owned()
}

/// Adds the unsubscribe footer and the open pixel before `</body>` (or at the end).
fn with_footer(html: &str, links: &Links, english: bool) -> String {
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

fn with_text_footer(text: &str, links: &Links, english: bool) -> String {
    let label = if english { "Unsubscribe" } else { "退订" };
    format!("{}\n\n--\n{label}: {}\n", text.trim_end(), links.unsubscribe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::LeadId;

    fn templates(sources: &[(&str, &str)]) -> Templates {
        Templates::from_sources(
            None,
            sources.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect(),
        )
    }

    fn lead() -> Lead {
        let mut lead = Lead::new(LeadId(7), "2026-11-20T08:00:00Z".parse().unwrap());
        lead.email = Some("li.wei@acme.example".into());
        lead.fields.insert("company", "Acme & Co".into());
        lead
    }

    fn links() -> Links {
        Links {
            open_pixel: "https://t.example/t/o/abc".into(),
            unsubscribe: "https://t.example/u/abc".into(),
        }
    }

    fn input(lead: &Lead) -> RenderInput<'_> {
        RenderInput {
            lead,
            tags: &[],
            campaign: "welcome",
            step: "first",
            timezone: chrono_tz::Asia::Shanghai,
        }
    }

    #[test]
    fn renders_fields_defaults_dates_and_adds_the_footer() {
        let t = templates(&[
            ("partials/footer.hbs", "<footer>{{company}}</footer>"),
            ("hello.subject.hbs", "{{default first_name \"您好\"}}，欢迎"),
            (
                "hello.hbs",
                "<html><body><p>{{company}} {{attributes.plan}}</p><p>{{date created_at \"%Y-%m-%d %H:%M\"}}</p>{{> footer}}</body></html>",
            ),
        ]);
        assert!(t.issues().is_empty(), "{:?}", t.issues());
        let lead = lead();
        let email = t.render_email("hello", &input(&lead), &links()).unwrap();
        assert_eq!(email.subject, "您好，欢迎");
        assert!(email.html.contains("<p>Acme &amp; Co </p>"), "{}", email.html);
        assert!(
            email.html.contains("2026-11-20 16:00"),
            "time in Asia/Shanghai: {}",
            email.html
        );
        assert!(email.html.contains("<a href=\"https://t.example/u/abc\">退订</a>"));
        assert!(email.html.contains("<img src=\"https://t.example/t/o/abc\""));
        let body = email.html.find("</body>").unwrap();
        assert!(email.html.find("t/o/abc").unwrap() < body, "pixel inside the body");
        assert!(email.text.contains("Acme & Co"), "{}", email.text);
        assert!(
            email.text.ends_with("退订: https://t.example/u/abc\n"),
            "{}",
            email.text
        );
    }

    #[test]
    fn the_language_attribute_picks_a_translation() {
        let t = templates(&[
            ("hello.subject.hbs", "欢迎"),
            ("hello.hbs", "<p>欢迎</p>"),
            ("en/hello.subject.hbs", "Welcome"),
            ("en/hello.hbs", "<p>Welcome</p>"),
            ("en/hello.txt.hbs", "Welcome, in text"),
        ]);
        let mut lead = lead();
        assert_eq!(
            t.render_email("hello", &input(&lead), &links()).unwrap().subject,
            "欢迎"
        );
        lead.attributes.insert("language".into(), "en-US".into());
        let email = t.render_email("hello", &input(&lead), &links()).unwrap();
        assert_eq!(
            (email.subject.as_str(), email.template.as_str()),
            ("Welcome", "en/hello")
        );
        assert!(email.html.contains(">Unsubscribe</a>"));
        assert!(email.text.starts_with("Welcome, in text"));
    }

    #[test]
    fn load_problems_are_positioned() {
        let t = templates(&[
            ("a.subject.hbs", "Hi {{frist_name}}"),
            ("a.hbs", "<p>{{#if company}}x{{/each}}</p>"),
            (
                "b.hbs",
                "{{> header}} {{shout company}} {{#each tags}}{{this}} {{whatever}}{{/each}}",
            ),
            ("c.json.hbs", "{\"who\": \"{{email}}\"}"),
            (
                "d.wechat.yaml",
                "template_id: TM1\ndata:\n  first: \"{{first_name}}\"\n  x: \"{{nope}}\"\n",
            ),
        ]);
        let issues: Vec<String> = t.issues().iter().map(|i| i.to_string()).collect();
        assert_eq!(
            issues,
            [
                "a.hbs:1:20: the template does not compile: helper \"if\" was opened, but \"each\" is closing",
                "a.subject.hbs:1:4: warning: \"frist_name\" is not a lead field or a template value; did you mean \"first_name\"?",
                "b.hbs: e-mail template \"b\" needs both NAME.hbs and NAME.subject.hbs; add b.subject.hbs",
                "b.hbs:1:1: partial \"header\" does not exist; add partials/header.hbs to the templates directory",
                "b.hbs:1:14: helper \"shout\" does not exist; the helpers are if, unless, each, with, lookup, raw, log, eq, ne, gt, gte, lt, lte, and, or, not, len, default, date, upper",
                "d.wechat.yaml:1:1: warning: \"nope\" is not a lead field or a template value; use a lead field (first_name, company, …), attributes.NAME, tags, score, campaign or step",
            ]
        );
        assert!(t.check(Channel::Webhook, "c").is_ok());
        assert!(t.check(Channel::Wechat, "d").is_ok());
        assert_eq!(
            t.check(Channel::Email, "zzz"),
            Err("e-mail template \"zzz\" does not exist: add zzz.hbs and zzz.subject.hbs".into())
        );
    }

    #[test]
    fn every_shipped_template_renders_in_both_languages() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        let t = Templates::load_dir(&dir);
        assert!(t.issues().is_empty(), "{:?}", t.issues());
        let mut lead = lead();
        lead.fields.insert("first_name", "伟".into());
        lead.fields.insert("industry", "Manufacturing".into());
        let names: Vec<String> = t.names().filter(|n| !n.contains('/')).map(str::to_owned).collect();
        assert!(names.len() >= 22, "{names:?}");
        for language in ["zh-CN", "en"] {
            lead.attributes.insert("language".into(), language.into());
            for name in &names {
                if t.check(Channel::Email, name).is_ok() {
                    let email = t
                        .render_email(name, &input(&lead), &links())
                        .unwrap_or_else(|e| panic!("{name} ({language}): {e}"));
                    assert!(
                        !email.subject.is_empty() && !email.subject.contains("{{"),
                        "{name}: {email:?}"
                    );
                    assert!(
                        email.html.contains("https://t.example/u/abc"),
                        "{name}: unsubscribe link"
                    );
                    assert!(
                        email.html.contains("utm_campaign=welcome"),
                        "{name}: campaign in the link"
                    );
                    assert!(
                        !email.text.contains('<'),
                        "{name}: the text part is text: {}",
                        email.text
                    );
                    assert_eq!(email.template.starts_with("en/"), language == "en", "{name}");
                } else {
                    let message = t
                        .render_wechat(name, &input(&lead))
                        .unwrap_or_else(|e| panic!("{name} ({language}): {e}"));
                    assert!(message.template_id.starts_with("OPENTM_"), "{name}");
                    assert!(
                        message.data.values().all(|v| !v.is_empty() && !v.contains("{{")),
                        "{name}: {message:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn wechat_and_json_render() {
        let t = templates(&[
            ("d.wechat.yaml", "template_id: TM1\nurl: \"https://x.example/{{id}}\"\ndata:\n  first: \"{{default first_name \\\"您好\\\"}}\"\n"),
            ("c.json.hbs", "{\"company\": \"{{company}}\", \"quote\": \"{{attributes.note}}\"}"),
        ]);
        let mut lead = lead();
        lead.attributes.insert("note".into(), "say \"hi\"".into());
        let w = t.render_wechat("d", &input(&lead)).unwrap();
        assert_eq!(w.template_id, "TM1");
        assert_eq!(w.url.as_deref(), Some("https://x.example/7"));
        assert_eq!(w.data["first"], "您好");
        let j = t.render_json("c", &input(&lead)).unwrap();
        assert_eq!(j, json!({"company": "Acme & Co", "quote": "say \"hi\""}));
    }
}
