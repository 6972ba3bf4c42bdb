//! What validation reports: an [`Issue`] (error or warning) at a file, line and column, and a
//! [`Refused`] playbook with every issue found.

use serde_saphyr::Location;
use std::fmt;

/// A line and column in a playbook file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, schemars::JsonSchema)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    pub fn of(location: &Location) -> Self {
        Self {
            line: location.line(),
            column: location.column(),
        }
    }
}

/// Whether an issue refuses the playbook (`error`) or only points at a likely mistake (`warning`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a playbook.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Issue {
    pub file: String,
    pub position: Option<Position>,
    pub severity: Severity,
    pub message: String,
}

impl Issue {
    pub fn at(file: &str, position: Position, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            position: Some(position),
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn new(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            position: None,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    /// The same issue, as a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub(crate) fn from_yaml(file: &str, error: &serde_saphyr::Error) -> Self {
        let options = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
        let rendered = error.render_with_options(options);
        let mut message = rendered.lines().next().unwrap_or_default().trim().to_owned();
        message = message.strip_prefix("error: ").unwrap_or(&message).to_owned();
        // The renderer prefixes "line L column C: "; the position is carried separately.
        if let Some(rest) = message.strip_prefix("line ") {
            if let Some((_, text)) = rest.split_once(": ") {
                message = text.to_owned();
            }
        }
        // … and, with snippets off, suffixes " at line L, column C".
        if let Some((text, _)) = message.rsplit_once(" at line ") {
            message = text.to_owned();
        }
        // The parser's words, said for someone who writes YAML by hand.
        if let Some(key) = message.strip_prefix("duplicate mapping key: ") {
            let key = key.split(", set DuplicateKeyPolicy").next().unwrap_or(key);
            message = format!("the key `{key}` appears twice; each key may appear once");
        } else if message.contains("tab") {
            message = format!("{message}; YAML is indented with spaces, not tabs");
        }
        match error.location() {
            Some(location) if location.line() > 0 => Issue::at(file, Position::of(&location), message),
            _ => Issue::new(file, message),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let warning = if self.is_error() { "" } else { "warning: " };
        match self.position {
            Some(p) => write!(f, "{}:{}:{}: {warning}{}", self.file, p.line, p.column, self.message),
            None => write!(f, "{}: {warning}{}", self.file, self.message),
        }
    }
}

/// A refused playbook: every error found, and the warnings beside them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refused(pub Vec<Issue>);

impl Refused {
    pub fn errors(&self) -> impl Iterator<Item = &Issue> {
        self.0.iter().filter(|i| i.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Issue> {
        self.0.iter().filter(|i| !i.is_error())
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors().count();
        writeln!(f, "the playbook has {n} error{}:", if n == 1 { "" } else { "s" })?;
        for issue in &self.0 {
            writeln!(f, "  {issue}")?;
        }
        Ok(())
    }
}

/// The ids a reference may name (segments, campaigns, queues, steps): whether one exists, and
/// which comes nearest to a misspelt one.
pub struct KnownIds<'a>(Vec<&'a str>);

impl<'a> KnownIds<'a> {
    pub fn new(ids: impl IntoIterator<Item = &'a String>) -> Self {
        Self(ids.into_iter().map(String::as_str).collect())
    }

    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(&id)
    }

    /// `; did you mean "icp"?` when a known id is close to `wanted`, else `otherwise`.
    pub fn hint(&self, wanted: &str, otherwise: &str) -> String {
        match did_you_mean(wanted, self.0.iter().copied()) {
            Some(id) => format!("; did you mean {id:?}?"),
            None => otherwise.to_owned(),
        }
    }
}

/// The id closest to `wanted`, if one is close enough to be a slip of the keyboard: at most
/// two edits, or a third of the longer name.
fn did_you_mean<'a>(wanted: &str, ids: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    ids.map(|id| (strsim::levenshtein(wanted, id), id))
        .filter(|(d, id)| *d <= 2.max(id.len().max(wanted.len()) / 3))
        .min()
        .map(|(_, id)| id)
}

/// An [`Issue`] as the API answers it and a deployment keeps it: file, line and column apart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct PlaybookIssue {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub severity: Severity,
    pub message: String,
}

impl From<&Issue> for PlaybookIssue {
    fn from(issue: &Issue) -> Self {
        Self {
            file: issue.file.clone(),
            line: issue.position.map(|p| p.line),
            column: issue.position.map(|p| p.column),
            severity: issue.severity,
            message: issue.message.clone(),
        }
    }
}
