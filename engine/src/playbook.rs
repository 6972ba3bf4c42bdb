//! The playbook: a directory of YAML files (`kind: Rules`, `kind: Segment`, …) parsed into spec
//! types and validated as a whole. Every problem is reported with file, line and column.

use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::{Location, Spanned};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use crate::condition::{Condition, Segments};
use crate::duration::Span;
use crate::event::check_event_type;
use crate::tag::normalize_tag;

/// A line and column in a playbook file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

/// One problem found in a playbook.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Issue {
    pub file: String,
    pub position: Option<Position>,
    pub message: String,
}

impl Issue {
    pub fn at(file: &str, position: Position, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            position: Some(position),
            message: message.into(),
        }
    }

    pub fn new(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            position: None,
            message: message.into(),
        }
    }

    fn from_yaml(file: &str, error: &serde_saphyr::Error) -> Self {
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
        match error.location() {
            Some(location) => Issue::at(file, Position::of(&location), message),
            None => Issue::new(file, message),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// All the problems of a playbook that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refused(pub Vec<Issue>);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "the playbook has {n} error{}:", if n == 1 { "" } else { "s" })?;
        for issue in &self.0 {
            writeln!(f, "  {issue}")?;
        }
        Ok(())
    }
}

// ---- Spec types: the YAML as written. ----

#[derive(Deserialize)]
struct Head {
    kind: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesSpec {
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    default_timezone: Option<Spanned<String>>,
    #[serde(default)]
    tagging: Vec<TaggingSpec>,
    #[serde(default)]
    attributes: Vec<AttributeSpec>,
    #[serde(default)]
    decay: Option<DecaySpec>,
    #[serde(default)]
    mql: Option<MqlSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaggingSpec {
    /// Optional stable name; caps and the change log use it. Defaults to the event type.
    #[serde(default)]
    id: Option<String>,
    on: OnSpec,
    #[serde(default)]
    tags: Vec<Spanned<String>>,
    #[serde(default)]
    tags_from: Option<TagsFrom>,
    #[serde(default)]
    score: Option<i64>,
    #[serde(default)]
    cap: Option<CapSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnSpec {
    event: Spanned<String>,
    #[serde(default, rename = "where")]
    properties: Option<Map<String, Value>>,
}

/// `tags_from: { field: topic, prefix: "interest:topic/" }`: one tag from an event property.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsFrom {
    pub field: String,
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapSpec {
    max: Spanned<i64>,
    per: Span,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributeSpec {
    field: Spanned<String>,
    prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecaySpec {
    every: Span,
    percent: Spanned<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqlSpec {
    when: Condition,
    handoff: HandoffSpec,
}

/// Where a qualified lead goes: `handoff: { queue: sdr, reason: …, priority: … }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffSpec {
    pub queue: String,
    pub reason: String,
    #[serde(default)]
    pub priority: Option<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentSpec {
    #[allow(dead_code)]
    kind: String,
    id: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    when: Condition,
}

// ---- Runtime types: validated and ready to apply. ----

/// Behaviour tagging and scoring, attribute tags, decay and MQL, ready to apply.
#[derive(Debug, Clone)]
pub struct Rules {
    pub default_timezone: chrono_tz::Tz,
    pub tagging: Vec<TaggingRule>,
    pub attributes: Vec<AttributeRule>,
    pub decay: Option<Decay>,
    pub mql: Option<Mql>,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            default_timezone: chrono_tz::UTC,
            tagging: Vec::new(),
            attributes: Vec::new(),
            decay: None,
            mql: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TaggingRule {
    /// Stable name: the `id:` given, else the event type (with `#2`, `#3` for repeats).
    pub id: String,
    pub event: String,
    pub properties: Option<Map<String, Value>>,
    pub tags: Vec<String>,
    pub tags_from: Option<TagsFrom>,
    pub score: i64,
    pub cap: Option<Cap>,
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

/// A validated playbook: what the engine runs.
#[derive(Debug, Clone, Default)]
pub struct Playbook {
    pub rules: Rules,
    pub segments: Segments,
}

impl Playbook {
    /// Reads every `*.yaml` / `*.yml` file under `dir` (recursively) and validates them together.
    pub fn load_dir(dir: &Path) -> Result<Playbook, Refused> {
        let mut files = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(folder) = pending.pop() {
            let entries = std::fs::read_dir(&folder).map_err(|e| {
                Refused(vec![Issue::new(
                    &folder.display().to_string(),
                    format!("cannot read the directory: {e}"),
                )])
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                    let name = path.display().to_string();
                    match std::fs::read_to_string(&path) {
                        Ok(text) => files.push((name, text)),
                        Err(e) => return Err(Refused(vec![Issue::new(&name, format!("cannot read the file: {e}"))])),
                    }
                }
            }
        }
        files.sort();
        Self::from_files(&files)
    }

    /// Validates a playbook given as (file name, text) pairs.
    pub fn from_files(files: &[(String, String)]) -> Result<Playbook, Refused> {
        let mut issues = Vec::new();
        let mut rules_spec: Option<(String, RulesSpec)> = None;
        let mut segment_specs: Vec<(String, SegmentSpec)> = Vec::new();
        for (file, text) in files {
            let head: Head = match serde_saphyr::from_str(text) {
                Ok(head) => head,
                Err(e) => {
                    issues.push(Issue::from_yaml(file, &e));
                    continue;
                }
            };
            match head.kind.value.as_str() {
                "Rules" => match serde_saphyr::from_str::<RulesSpec>(text) {
                    Ok(spec) => {
                        if let Some((first, _)) = &rules_spec {
                            issues.push(Issue::at(
                                file,
                                Position::of(&head.kind.referenced),
                                format!("a second `kind: Rules` file; the playbook has one, in {first}"),
                            ));
                        } else {
                            rules_spec = Some((file.clone(), spec));
                        }
                    }
                    Err(e) => issues.push(Issue::from_yaml(file, &e)),
                },
                "Segment" => match serde_saphyr::from_str::<SegmentSpec>(text) {
                    Ok(spec) => segment_specs.push((file.clone(), spec)),
                    Err(e) => issues.push(Issue::from_yaml(file, &e)),
                },
                // Campaigns and queues are run by the campaign engine; their validation lands there.
                "Campaign" | "Queues" => {}
                other => issues.push(Issue::at(
                    file,
                    Position::of(&head.kind.referenced),
                    format!("unknown kind {other:?}; kinds are Campaign, Rules, Queues and Segment"),
                )),
            }
        }

        let mut segment_files: HashMap<String, String> = HashMap::new();
        let mut segment_positions: HashMap<String, Position> = HashMap::new();
        for (file, spec) in &segment_specs {
            let id = &spec.id.value;
            if !is_playbook_id(id) {
                issues.push(Issue::at(
                    file,
                    Position::of(&spec.id.referenced),
                    format!("segment id {id:?} must be lower-case letters, digits and '-'"),
                ));
            }
            segment_positions
                .entry(id.clone())
                .or_insert(Position::of(&spec.id.referenced));
            if let Some(first) = segment_files.insert(id.clone(), file.clone()) {
                issues.push(Issue::at(
                    file,
                    Position::of(&spec.id.referenced),
                    format!("segment {id:?} is defined twice; the first is in {first}"),
                ));
            }
        }
        let exists = |id: &str| segment_files.contains_key(id);
        let mut segments = Segments::new();
        for (file, mut spec) in segment_specs {
            spec.when.check(&file, &exists, &mut issues);
            segments.insert(spec.id.value.clone(), spec.when);
        }
        check_segment_cycles(&segments, &segment_files, &segment_positions, &mut issues);

        let rules = match rules_spec {
            Some((file, spec)) => build_rules(&file, spec, &exists, &mut issues),
            None => Rules::default(),
        };
        if issues.is_empty() {
            Ok(Playbook { rules, segments })
        } else {
            issues.sort();
            Err(Refused(issues))
        }
    }
}

/// Ids of campaigns and segments: `[a-z0-9-]`.
pub fn is_playbook_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn check_segment_cycles(
    segments: &Segments,
    files: &HashMap<String, String>,
    positions: &HashMap<String, Position>,
    issues: &mut Vec<Issue>,
) {
    let mut reported = HashSet::new();
    let mut starts: Vec<&String> = segments.keys().collect();
    starts.sort();
    for start in starts {
        let mut path = vec![start.as_str()];
        if let Some(cycle) = find_cycle(segments, &mut path) {
            let mut members: Vec<_> = cycle.clone();
            members.sort();
            members.dedup();
            if reported.insert(members) {
                let file = files.get(start).map(String::as_str).unwrap_or("segments");
                let message = format!("segments refer to each other in a cycle: [ {} ]", cycle.join(" -> "));
                issues.push(match positions.get(start) {
                    Some(position) => Issue::at(file, *position, message),
                    None => Issue::new(file, message),
                });
            }
        }
    }
}

fn find_cycle<'a>(segments: &'a Segments, path: &mut Vec<&'a str>) -> Option<Vec<String>> {
    let last = *path.last()?;
    for next in segments.get(last).map(|c| c.segment_refs()).unwrap_or_default() {
        if let Some(i) = path.iter().position(|p| *p == next) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(next.to_owned());
            return Some(cycle);
        }
        if segments.contains_key(next) && path.len() < 64 {
            path.push(next);
            if let Some(c) = find_cycle(segments, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

fn build_rules(file: &str, spec: RulesSpec, exists: &dyn Fn(&str) -> bool, issues: &mut Vec<Issue>) -> Rules {
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
    let mut seen_ids: BTreeMap<String, usize> = BTreeMap::new();
    for rule in spec.tagging {
        let event = rule.on.event.value.clone();
        if let Err(message) = check_event_type(&event) {
            issues.push(Issue::at(file, Position::of(&rule.on.event.referenced), message));
        }
        let base = rule.id.clone().unwrap_or_else(|| event.clone());
        let n = seen_ids.entry(base.clone()).or_insert(0);
        *n += 1;
        let id = if *n == 1 { base } else { format!("{base}#{n}") };
        let mut tags = Vec::new();
        for tag in &rule.tags {
            match normalize_tag(&tag.value) {
                Ok(t) => tags.push(t),
                Err(message) => issues.push(Issue::at(file, Position::of(&tag.referenced), message)),
            }
        }
        if let Some(from) = &rule.tags_from {
            if let Err(message) = normalize_tag(&format!("{}x", from.prefix)) {
                issues.push(Issue::at(
                    file,
                    Position::of(&rule.on.event.referenced),
                    format!("tags_from prefix: {message}"),
                ));
            }
        }
        let cap = rule.cap.as_ref().map(|c| Cap {
            max: c.max.value,
            per: c.per,
        });
        if let Some(c) = &rule.cap {
            if c.max.value <= 0 {
                issues.push(Issue::at(
                    file,
                    Position::of(&c.max.referenced),
                    "cap max must be a positive number of points",
                ));
            }
        }
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
            tags,
            tags_from: rule.tags_from,
            score: rule.score.unwrap_or(0),
            cap,
        });
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
    if let Some(mut mql) = spec.mql {
        mql.when.check(file, exists, issues);
        rules.mql = Some(Mql {
            when: mql.when,
            handoff: mql.handoff,
        });
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(files: &[(&str, &str)]) -> Vec<String> {
        let files: Vec<_> = files.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        match Playbook::from_files(&files) {
            Ok(_) => panic!("the playbook was accepted"),
            Err(Refused(issues)) => issues.iter().map(|i| i.to_string()).collect(),
        }
    }

    const ICP: &str = "kind: Segment\nid: icp\nwhen: { field: { name: company_size, in: [\"200-1000\"] } }\n";

    #[test]
    fn shipped_rules_example_parses() {
        let rules = include_str!("../../campaigns/rules.yaml");
        let segment = include_str!("../../campaigns/segments/icp.yaml");
        let playbook =
            Playbook::from_files(&[("rules.yaml".into(), rules.into()), ("icp.yaml".into(), segment.into())])
                .unwrap_or_else(|e| panic!("{e}"));
        let ids: Vec<_> = playbook.rules.tagging.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["whitepaper_downloaded", "page_view", "webinar_attended"]);
        assert_eq!(playbook.rules.default_timezone, chrono_tz::Asia::Shanghai);
        assert_eq!(
            playbook.rules.tagging[1].cap,
            Some(Cap {
                max: 15,
                per: "30d".parse().unwrap()
            })
        );
    }

    #[test]
    fn every_error_has_file_line_and_column() {
        let rules = "kind: Rules\ndefault_timezone: Mars/Olympus\ntagging:\n  - on: { event: Bad Type }\n    tags: [\"a b\"]\n    score: 5\ndecay: { every: 30d, percent: 300 }\nmql:\n  when: { segment: nope }\n  handoff: { queue: sdr, reason: r }\n";
        assert_eq!(
            refuse(&[("rules.yaml", rules)]),
            [
                "rules.yaml:2:19: unknown time zone \"Mars/Olympus\"; use an IANA name such as Asia/Shanghai",
                "rules.yaml:4:18: event type \"Bad Type\" is not valid: use lower-case letters, digits, '_', '.' or '-', starting with a letter, at most 64 characters (e.g. whitepaper_downloaded)",
                "rules.yaml:5:12: tag \"a b\" contains whitespace, a control character or a comma; write e.g. interest:topic/iot",
                "rules.yaml:7:31: decay percent must be between 1 and 100",
                "rules.yaml:9:20: segment \"nope\" does not exist; define it in a `kind: Segment` file",
            ]
        );
    }

    #[test]
    fn syntax_and_unknown_keys_are_positioned() {
        assert_eq!(
            refuse(&[("a.yaml", "kind: Rules\ntaging: []\n"), ("b.yaml", "kind: Segment\nid: x\nwhen: { tagg: a }\n")]),
            [
                "a.yaml:2:1: unknown field `taging`, expected one of kind, default_timezone, tagging, attributes, decay, mql",
                "b.yaml:3:9: unknown variant `tagg`, expected one of tag, any_tag, all_tags, score, stage, field, event, opened, clicked, responded, segment, unsubscribed, all, any, not",
            ]
        );
    }

    #[test]
    fn unknown_kinds_duplicate_segments_and_cycles() {
        let a = "kind: Segment\nid: a\nwhen: { segment: b }\n";
        let b = "kind: Segment\nid: b\nwhen: { not: { segment: a } }\n";
        let errors = refuse(&[
            ("a.yaml", a),
            ("b.yaml", b),
            ("c.yaml", ICP),
            ("d.yaml", ICP),
            ("e.yaml", "kind: Rulez\n"),
        ]);
        assert_eq!(
            errors,
            [
                "a.yaml:2:5: segments refer to each other in a cycle: [ a -> b -> a ]",
                "d.yaml:2:5: segment \"icp\" is defined twice; the first is in c.yaml",
                "e.yaml:1:7: unknown kind \"Rulez\"; kinds are Campaign, Rules, Queues and Segment",
            ]
        );
    }

    #[test]
    fn event_types_in_conditions_are_positioned() {
        let segment = "kind: Segment\nid: webinar-fans\nwhen: { event: { type: Webinar Attended, within: 14d } }\n";
        assert_eq!(
            refuse(&[("s.yaml", segment)]),
            ["s.yaml:3:24: event type \"Webinar Attended\" is not valid: use lower-case letters, digits, '_', '.' or '-', starting with a letter, at most 64 characters (e.g. whitepaper_downloaded)"]
        );
    }

    #[test]
    fn message_conditions_need_a_campaign() {
        let rules = "kind: Rules\nmql:\n  when: { opened: whitepaper }\n  handoff: { queue: sdr, reason: r }\n";
        assert_eq!(
            refuse(&[("rules.yaml", rules)]),
            ["rules.yaml:3:19: message condition on step \"whitepaper\" needs a campaign send step; it cannot be used in rules or segments"]
        );
    }
}
