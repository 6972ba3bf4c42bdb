//! The playbook: a directory of YAML files (`kind: Campaign`, `Rules`, `Queues`, `Segment`)
//! parsed into spec types and validated as a whole. Every problem is reported with file, line
//! and column, and a message that says how to fix it; a playbook with any error is refused whole.
//!
//! Spec types (what the YAML says) are kept apart from runtime types (what the engine runs):
//! `Campaign::build` turns a `CampaignSpec` into a petgraph graph or every error found.

use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::channel::Channel;
use crate::condition::{Condition, Segments};
use crate::diagnostic::KnownIds;
pub use crate::diagnostic::{Issue, PlaybookIssue, Position, Refused, Severity};
use crate::template::Templates;
use crate::yaml::parse;
pub use crate::yaml::{yaml_options, MAX_FILE_BYTES};

pub mod bundle;
mod campaign;
pub mod draw;
mod queues;
mod rules;
pub mod schema;

pub use campaign::*;
pub use queues::*;
pub use rules::*;

// ---- Spec types: the YAML as written. ----

/// The first look at a file: which kind it is. Everything else is left for the kind's own parse,
/// so that its errors are the ones reported.
#[derive(Deserialize)]
struct Head {
    kind: Spanned<String>,
}

/// What a file defines, for laying one file over a playbook.
#[derive(Deserialize)]
struct Identity {
    kind: String,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

impl Identity {
    /// The `kind` and `id` a playbook file defines (no id for `Rules` and `Queues`), when it
    /// reads as YAML at all.
    fn of(text: &str) -> Option<(String, Option<String>)> {
        serde_saphyr::from_str_with_options::<Identity>(text, yaml_options())
            .ok()
            .map(|i| (i.kind, i.id.and_then(|id| id.as_str().map(str::to_owned))))
    }
}

/// `kind: Segment`: a named, reusable condition.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    /// Always `Segment`.
    #[schemars(schema_with = "schema::kind_segment")]
    pub kind: String,
    /// `[a-z0-9-]`, unique in the playbook; conditions name it as `segment: ID`.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub when: Condition,
}

// ---- Runtime types: validated and ready to apply. ----

/// A validated playbook: what the engine runs.
#[derive(Debug, Clone, Default)]
pub struct Playbook {
    pub rules: Rules,
    pub segments: Segments,
    pub queues: Queues,
    /// Campaigns by id.
    pub campaigns: BTreeMap<String, Arc<Campaign>>,
    pub templates: Arc<Templates>,
    /// Likely mistakes that do not refuse the playbook.
    pub warnings: Vec<Issue>,
    /// The files as given, so a single changed file can be validated against the rest.
    pub sources: Vec<(String, String)>,
    /// The event types the playbook's conditions look at, with the widest window of each
    /// (`None`: all time), so that the engine loads exactly those events.
    pub event_needs: HashMap<String, Option<crate::duration::Span>>,
}

impl Playbook {
    /// Reads every `*.yaml` / `*.yml` file under `dir` (recursively), loads the templates from
    /// `templates`, and validates them together.
    pub fn load_dir(dir: &Path, templates: &Path) -> Result<Playbook, Refused> {
        let files = read_playbook_dir(dir)?;
        Self::from_files(&files, Arc::new(Templates::load_dir(templates)))
    }

    /// Validates a playbook given as (file name, text) pairs, against `templates`.
    ///
    /// Long on purpose: validation in its stages (parse each file, unique ids, segments, rules
    /// and queues, campaigns, cycles), in order, every error collected; the stages share the
    /// ids each defines.
    pub fn from_files(files: &[(String, String)], templates: Arc<Templates>) -> Result<Playbook, Refused> {
        let mut issues: Vec<Issue> = templates.issues().to_vec();
        let mut rules_spec: Option<(String, RulesSpec)> = None;
        let mut queues_spec: Option<(String, QueuesSpec)> = None;
        let mut segment_specs: Vec<(String, SegmentSpec)> = Vec::new();
        let mut campaign_specs: Vec<(String, CampaignSpec, String)> = Vec::new();
        for (file, text) in files {
            if text.len() > MAX_FILE_BYTES {
                issues.push(Issue::new(
                    file,
                    format!(
                        "the file is {} bytes; a playbook file may be at most {MAX_FILE_BYTES} bytes (split large campaigns into several)",
                        text.len()
                    ),
                ));
                continue;
            }
            let head: Head = match parse(file, text) {
                Ok(head) => head,
                Err(issue) => {
                    issues.push(issue);
                    continue;
                }
            };
            let second = |kind: &str, first: &str| {
                Issue::at(
                    file,
                    Position::of(&head.kind.referenced),
                    format!("a second `kind: {kind}` file; the playbook has one, in {first}; merge them"),
                )
            };
            match head.kind.value.as_str() {
                "Rules" => match parse::<RulesSpec>(file, text) {
                    Ok(spec) => match &rules_spec {
                        Some((first, _)) => issues.push(second("Rules", first)),
                        None => rules_spec = Some((file.clone(), spec)),
                    },
                    Err(issue) => issues.push(issue),
                },
                "Queues" => match parse::<QueuesSpec>(file, text) {
                    Ok(spec) => match &queues_spec {
                        Some((first, _)) => issues.push(second("Queues", first)),
                        None => queues_spec = Some((file.clone(), spec)),
                    },
                    Err(issue) => issues.push(issue),
                },
                "Segment" => match parse::<SegmentSpec>(file, text) {
                    Ok(spec) => segment_specs.push((file.clone(), spec)),
                    Err(issue) => issues.push(issue),
                },
                "Campaign" => match parse::<CampaignSpec>(file, text) {
                    Ok(spec) => campaign_specs.push((file.clone(), spec, text.clone())),
                    Err(issue) => issues.push(issue),
                },
                other => issues.push(Issue::at(
                    file,
                    Position::of(&head.kind.referenced),
                    format!("unknown kind {other:?}; kinds are Campaign, Rules, Queues and Segment"),
                )),
            }
        }

        // Ids: one definition each, across files.
        let segment_files = unique_ids(
            "segment",
            segment_specs.iter().map(|(file, spec)| (file.as_str(), &spec.id)),
            &mut issues,
        );
        let campaign_files = unique_ids(
            "campaign",
            campaign_specs.iter().map(|(file, spec, _)| (file.as_str(), &spec.id)),
            &mut issues,
        );

        let segment_exists = KnownIds::new(segment_files.keys());
        let mut segments = Segments::new();
        let mut segment_refs = BTreeMap::new();
        for (file, mut spec) in segment_specs {
            spec.when.check(&file, &segment_exists, None, &mut issues);
            segment_refs.insert(
                spec.id.value.clone(),
                spec.when.segment_refs().into_iter().map(str::to_owned).collect(),
            );
            segments.insert(spec.id.value.clone(), spec.when);
        }
        for cycle in find_cycles(&segment_refs) {
            let (file, position) = &segment_files[&cycle[0]];
            issues.push(Issue::at(
                file,
                *position,
                format!("segments refer to each other in a cycle: [ {} ]", cycle.join(" -> ")),
            ));
        }

        let queues = match queues_spec {
            Some((file, spec)) => build_queues(&file, spec, &mut issues),
            None => Queues::default(),
        };
        let rules = match rules_spec {
            Some((file, spec)) => build_rules(&file, spec, &segment_exists, &queues, &mut issues),
            None => Rules::default(),
        };

        let campaign_exists = KnownIds::new(campaign_files.keys());
        let context = BuildContext {
            segments: &segment_exists,
            campaigns: &campaign_exists,
            queues: &queues,
            templates: &templates,
        };
        let mut campaigns = BTreeMap::new();
        let mut enrolls = BTreeMap::new();
        for (file, spec, text) in campaign_specs {
            match Campaign::build(&file, spec, &text, &context) {
                Ok((campaign, warnings)) => {
                    issues.extend(warnings);
                    enrolls.insert(campaign.id.clone(), campaign.enrolled_campaigns());
                    campaigns.insert(campaign.id.clone(), Arc::new(campaign));
                }
                Err(errors) => issues.extend(errors),
            }
        }
        for cycle in find_cycles(&enrolls) {
            let campaign = &campaigns[&cycle[0]];
            let position = campaign.enroll_position(&cycle[1]).unwrap_or(campaign.id_position);
            issues.push(Issue::at(
                &campaign.file,
                position,
                format!(
                    "campaigns enroll each other in a cycle: [ {} ]; a lead would be passed round forever",
                    cycle.join(" -> ")
                ),
            ));
        }

        issues.sort();
        issues.dedup();
        if issues.iter().any(Issue::is_error) {
            return Err(Refused(issues));
        }
        let mut event_needs = HashMap::new();
        let conditions = rules
            .mql
            .iter()
            .map(|m| &m.when)
            .chain(segments.values())
            .chain(campaigns.values().flat_map(|c| c.conditions()));
        for condition in conditions {
            condition.event_needs(&segments, &mut event_needs);
        }
        Ok(Playbook {
            rules,
            segments,
            queues,
            campaigns,
            templates,
            warnings: issues,
            sources: files.to_vec(),
            event_needs,
        })
    }

    /// Builds an earlier deployed version of a campaign (its stored source) in this playbook's
    /// context, for enrollments that entered it.
    pub fn build_version(&self, file: &str, source: &str) -> Result<Campaign, Refused> {
        let spec: CampaignSpec = parse(file, source).map_err(|issue| Refused(vec![issue]))?;
        let segment_exists = KnownIds::new(self.segments.keys());
        let campaign_exists = KnownIds::new(self.campaigns.keys());
        let context = BuildContext {
            segments: &segment_exists,
            campaigns: &campaign_exists,
            queues: &self.queues,
            templates: &self.templates,
        };
        Campaign::build(file, spec, source, &context)
            .map(|(campaign, _)| campaign)
            .map_err(Refused)
    }
}

/// Whether a file is a playbook file: `*.yaml` or `*.yml`.
pub fn is_playbook_file(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// Reads the YAML files of a playbook directory, sorted by name, each named by its path
/// (`dir` joined with the path under it).
pub fn read_playbook_dir(dir: &Path) -> Result<Vec<(String, String)>, Refused> {
    Ok(read_yaml_files(dir)?
        .into_iter()
        .map(|(relative, text)| (dir.join(relative).display().to_string(), text))
        .collect())
}

/// The `*.yaml` / `*.yml` files under `dir` (recursively), as (path relative to `dir` with `/`
/// between folders, text), sorted by path.
pub fn read_yaml_files(dir: &Path) -> Result<Vec<(String, String)>, Refused> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|e| {
            Refused(vec![Issue::new(
                &folder.display().to_string(),
                format!("cannot read the playbook directory: {e}"),
            )])
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if is_playbook_file(&path.to_string_lossy()) {
                let name = path.display().to_string();
                let relative = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                match std::fs::read(&path) {
                    Ok(bytes) => match String::from_utf8(bytes) {
                        Ok(text) => files.push((relative, text)),
                        Err(_) => {
                            return Err(Refused(vec![Issue::new(
                                &name,
                                "the file is not UTF-8 text; save it as UTF-8",
                            )]))
                        }
                    },
                    Err(e) => return Err(Refused(vec![Issue::new(&name, format!("cannot read the file: {e}"))])),
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Ids of campaigns and segments: `[a-z0-9-]`.
pub fn is_playbook_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks that ids are well formed and defined once; returns where each is defined.
fn unique_ids<'a>(
    what: &str,
    ids: impl Iterator<Item = (&'a str, &'a Spanned<String>)>,
    issues: &mut Vec<Issue>,
) -> HashMap<String, (String, Position)> {
    let mut seen: HashMap<String, (String, Position)> = HashMap::new();
    for (file, id) in ids {
        let position = Position::of(&id.referenced);
        if !is_playbook_id(&id.value) {
            issues.push(Issue::at(
                file,
                position,
                format!(
                    "{what} id {:?} must be 1 to 64 lower-case letters, digits and '-'",
                    id.value
                ),
            ));
        }
        match seen.get(&id.value) {
            Some((first, _)) => issues.push(Issue::at(
                file,
                position,
                format!("{what} {:?} is defined twice; the first is in {first}", id.value),
            )),
            None => {
                seen.insert(id.value.clone(), (file.to_owned(), position));
            }
        }
    }
    seen
}

/// Every cycle in a graph of references (segments naming segments, campaigns enrolling into
/// campaigns), each reported once, starting from its smallest member: `[a, b, a]`.
pub(crate) fn find_cycles(refs: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    fn walk<'a>(refs: &'a BTreeMap<String, Vec<String>>, path: &mut Vec<&'a str>) -> Option<Vec<String>> {
        let last = *path.last()?;
        for next in refs.get(last).into_iter().flatten() {
            if let Some(i) = path.iter().position(|p| p == next) {
                let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if refs.contains_key(next) && path.len() < 64 {
                path.push(next);
                if let Some(c) = walk(refs, path) {
                    return Some(c);
                }
                path.pop();
            }
        }
        None
    }
    let mut reported = BTreeSet::new();
    let mut cycles = Vec::new();
    for start in refs.keys() {
        if let Some(cycle) = walk(refs, &mut vec![start.as_str()]) {
            let members: BTreeSet<String> = cycle.iter().cloned().collect();
            if reported.insert(members) {
                // Rotate so that the cycle starts at its smallest member, for stable messages.
                let body = &cycle[..cycle.len() - 1];
                let least = body
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| *s)
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                let mut rotated: Vec<String> = body[least..].iter().chain(&body[..least]).cloned().collect();
                rotated.push(rotated[0].clone());
                cycles.push(rotated);
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests;
