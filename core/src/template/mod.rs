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
//! `stage`, `timezone`, `campaign`/`step`, and `event.*`: the properties of the event that
//! enrolled the lead into an event-triggered campaign (empty text elsewhere). A field the lead lacks renders as empty text; a
//! name that is no lead field at all is a warning at load, so typos are caught before deploy.
//! The unsubscribe link and the tracking pixel are added here, never written by hand.

use handlebars::{Handlebars, Template};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::channel::Channel;
use crate::diagnostic::{Issue, Position};
use crate::lead::{Lead, TEXT_FIELDS};

mod helpers;
mod names;
mod render;
#[cfg(test)]
mod tests;

use helpers::*;
use names::*;

/// Names a template may use besides lead fields: what the render context provides.
const CONTEXT_NAMES: [&str; 14] = [
    "id",
    "email",
    "external_id",
    "owner",
    "stage",
    "score",
    "tags",
    "attributes",
    "event",
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
    /// `attributes.KEY` and `event.KEY` names the template uses, so that strict mode sees
    /// them present.
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
    /// The language of the template used, and of the footer.
    pub language: Language,
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

/// A language templates and e-mail footers are written in: top-level templates are in the
/// playbook's `default_language`, a copy in another language sits in its folder (`en/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Zh,
    En,
}

impl Language {
    pub fn code(self) -> &'static str {
        match self {
            Language::Zh => "zh",
            Language::En => "en",
        }
    }

    /// The other of the two.
    pub fn other(self) -> Language {
        match self {
            Language::Zh => Language::En,
            Language::En => Language::Zh,
        }
    }

    /// `en`, `en-US`, `EN_gb` are English; `zh`, `zh-CN`, `zh-Hans` Chinese; anything else none.
    pub fn parse(text: &str) -> Option<Language> {
        match primary_language(text)?.as_str() {
            "zh" => Some(Language::Zh),
            "en" => Some(Language::En),
            _ => None,
        }
    }
}

/// The primary subtag of a language tag, lower case: `en-US` → `en`.
fn primary_language(text: &str) -> Option<String> {
    text.trim()
        .to_lowercase()
        .split(['-', '_'])
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
}

/// What a template is rendered for.
pub struct RenderInput<'a> {
    pub lead: &'a Lead,
    pub tags: &'a [String],
    pub campaign: &'a str,
    pub step: &'a str,
    /// The lead's time zone, else the playbook's default.
    pub timezone: chrono_tz::Tz,
    /// The language of the top-level templates (the playbook's `default_language`).
    pub default_language: Language,
    /// The event that enrolled the lead into the campaign sending, where one did: its
    /// properties are `{{event.NAME}}`.
    pub event: Option<&'a crate::condition::EventFact>,
}

/// Whether a file is a template: `*.hbs`, or `*.wechat.yaml` for WeChat.
pub fn is_template_file(path: &str) -> bool {
    path.ends_with(".hbs") || path.ends_with(".wechat.yaml")
}

/// The e-mail a template file is part of (its body, subject or text part), by the name sends
/// and previews use: `en/welcome.subject.hbs` is part of `welcome`. None for partials, WeChat
/// and webhook templates.
pub fn email_of(path: &str) -> Option<String> {
    let path = path.strip_prefix("templates/").unwrap_or(path);
    if path.starts_with("partials/") || !path.ends_with(".hbs") {
        return None;
    }
    let (name, part) = split_name(path);
    if !matches!(part, Part::Html | Part::Subject | Part::Text) {
        return None;
    }
    let name = match name.split_once('/') {
        Some((folder, rest)) if Language::parse(folder).is_some() => rest.to_owned(),
        _ => name,
    };
    Some(name)
}

/// The template files under `dir` (`*.hbs`, `*.wechat.yaml`, recursively) as (path relative to
/// `dir` with `/` between folders, text), sorted, and the files that could not be read. A
/// missing directory has none.
pub fn read_dir(dir: &Path) -> (Vec<(String, String)>, Vec<Issue>) {
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
            if !is_template_file(&relative) {
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
    (sources, issues)
}

impl Templates {
    /// Loads every template under `dir`. A missing directory gives an empty set: campaigns
    /// that name templates are then refused with a message saying where they were looked for.
    pub fn load_dir(dir: &Path) -> Templates {
        let (sources, issues) = read_dir(dir);
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
        if parts.is_some_and(|p| p.broken) {
            // Its compile error is reported at the template; "does not exist" would repeat it
            // wrongly.
            return Ok(());
        }
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

    /// Whether template `name`, in any language, reads the event that enrolled the lead
    /// (`{{event.NAME}}`): the dispatcher then loads that event to render it.
    pub fn reads_event(&self, name: &str) -> bool {
        self.parts.iter().any(|(key, parts)| {
            (key == name || key.split_once('/').is_some_and(|(_, rest)| rest == name))
                && parts.attributes.iter().any(|read| read.starts_with("event."))
        })
    }

    /// The language `name` is written in for `lead`: the one `resolve` picks.
    pub fn language_of(&self, name: &str, lead: &Lead, default: Language) -> Language {
        self.resolve(name, lead, default).1
    }

    /// The template to use for a lead, and the language it is in (the footer follows it, so
    /// that body and footer agree). The copy in the lead's `language` when there is one; else
    /// the copy in the playbook's `default`. The top level is in `default`, unless a `default`
    /// folder holds a copy of the template, which makes the top level the other language.
    pub fn resolve(&self, name: &str, lead: &Lead, default: Language) -> (String, Language) {
        let default_copy = format!("{}/{name}", default.code());
        let has_default_copy = self.parts.contains_key(&default_copy);
        let top = if has_default_copy { default.other() } else { default };
        let wanted = lead
            .attributes
            .get("language")
            .and_then(Value::as_str)
            .and_then(primary_language);
        if let Some(wanted) = wanted {
            let localized = format!("{wanted}/{name}");
            if self.parts.contains_key(&localized) {
                // A folder in a language nurture has no footer for gets the English one.
                return (localized, Language::parse(&wanted).unwrap_or(Language::En));
            }
            if Language::parse(&wanted) == Some(top) {
                return (name.to_owned(), top);
            }
        }
        if has_default_copy {
            return (default_copy, default);
        }
        (name.to_owned(), top)
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
