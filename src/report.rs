//! How `nurture playbook validate` prints what it found: `file:line:col: message`, then the
//! offending line with a caret under the column, as compilers do.

use nurture_engine::playbook::{Issue, Playbook};
use std::path::Path;
use std::time::Duration;

/// One issue, with the line it points at when the file can be read.
pub fn issue(issue: &Issue) -> String {
    let mut out = issue.to_string();
    let Some(position) = issue.position else {
        return out;
    };
    let Ok(text) = std::fs::read_to_string(&issue.file) else {
        return out;
    };
    let Some(line) = text.lines().nth(position.line.saturating_sub(1) as usize) else {
        return out;
    };
    let number = position.line.to_string();
    let gutter = " ".repeat(number.len());
    // The caret goes under the column's character; tabs keep their width.
    let lead: String = line
        .chars()
        .take(position.column.saturating_sub(1) as usize)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    out.push_str(&format!("\n {gutter} |\n {number} | {line}\n {gutter} | {lead}^"));
    out
}

/// The one line printed for a valid playbook.
pub fn summary(dir: &Path, playbook: &Playbook, took: Duration) -> String {
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    format!(
        "The playbook in {} is valid: {}, {}, {}, {}, {} ({} ms).",
        dir.display(),
        count(playbook.campaigns.len(), "campaign"),
        count(playbook.segments.len(), "segment"),
        count(playbook.queues.queues.len(), "queue"),
        count(playbook.rules.tagging.len(), "tagging rule"),
        count(playbook.warnings.len(), "warning"),
        took.as_millis()
    )
}
