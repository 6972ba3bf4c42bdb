//! The JSON Schema of playbook files (`nurture playbook schema`), derived with schemars from the
//! same spec types the loader parses, so that an editor's completion and checks cannot drift
//! from what the engine accepts.

use schemars::{JsonSchema, Schema, SchemaGenerator};

use super::{CampaignSpec, QueuesSpec, RulesSpec, SegmentSpec};

/// One playbook file: whichever of the four kinds its `kind:` says.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)] // Never built: it only describes the schema.
enum PlaybookFile {
    Campaign(CampaignSpec),
    Rules(RulesSpec),
    Queues(QueuesSpec),
    Segment(SegmentSpec),
}

/// The schema of a playbook file, as JSON (draft 2020-12).
pub fn playbook_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(PlaybookFile);
    schema.insert("title".into(), "nurture playbook file".into());
    schema.insert(
        "description".into(),
        "A campaign, the rules, the queues or a segment of a nurture playbook (shared/spec/playbook.md).".into(),
    );
    schema.to_value()
}

fn kind(name: &str) -> Schema {
    schemars::json_schema!({ "const": name })
}

pub(crate) fn kind_campaign(_: &mut SchemaGenerator) -> Schema {
    kind("Campaign")
}

pub(crate) fn kind_rules(_: &mut SchemaGenerator) -> Schema {
    kind("Rules")
}

pub(crate) fn kind_queues(_: &mut SchemaGenerator) -> Schema {
    kind("Queues")
}

pub(crate) fn kind_segment(_: &mut SchemaGenerator) -> Schema {
    kind("Segment")
}
