//! The SQLite adapter's SQL texts that are built once (lead columns, timelines).

use super::*;
use std::sync::LazyLock;

/// Reads in the hot path aggregate their rows into one JSON array: sqlx hands SQLite rows over
/// one at a time from its worker thread, which costs more than parsing one string. A lead is an
/// array of its columns in [`LeadRow`]'s order (serde reads a struct from a sequence), not an
/// object: no 27 keys to write and parse for every lead.
pub(super) static SELECT_LEADS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} FROM leads WHERE id IN (SELECT value FROM json_each($1) \
         UNION SELECT id FROM leads WHERE email IN (SELECT value FROM json_each($2)) \
         UNION SELECT id FROM leads WHERE external_id IN (SELECT value FROM json_each($3)))",
        *LEADS_AS_JSON
    )
});

/// Leads by id alone, as every pass reads them: a join over the ids (see [`id_set`]), in id
/// order, with no `UNION` and no temporary b-tree of ids.
pub(super) static SELECT_LEADS_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("{} FROM {WANTED} CROSS JOIN leads ON id = i.wanted", *LEADS_AS_JSON));

/// The aggregate that both lead reads select.
pub(super) static LEADS_AS_JSON: LazyLock<String> = LazyLock::new(|| {
    let columns: Vec<String> = LEAD_COLUMNS
        .iter()
        .map(|(c, ty)| {
            if *ty == "jsonb" {
                format!("json({c})")
            } else {
                (*c).to_owned()
            }
        })
        .collect();
    format!("SELECT json_group_array(json_array({}))", columns.join(", "))
});

pub(super) static WRITE_LEADS: LazyLock<String> = LazyLock::new(|| {
    let cols = lead_column_list();
    let values: Vec<String> = LEAD_COLUMNS
        .iter()
        .map(|(c, ty)| {
            if *ty == "jsonb" {
                format!("json(j.value->'{c}')")
            } else {
                format!("j.value->>'{c}'")
            }
        })
        .collect();
    let updates: Vec<String> = LEAD_COLUMNS
        .iter()
        .skip(1)
        .map(|(c, _)| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO leads ({cols}) SELECT {} FROM jsonb_each(jsonb($1)) AS j WHERE true \
         ON CONFLICT (id) DO UPDATE SET {}",
        values.join(", "),
        updates.join(", ")
    )
});

pub(super) static LIST_LEADS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM leads WHERE id > $1 AND ($2 IS NULL OR stage = $2) \
         AND ($3 IS NULL OR id IN (SELECT lead_id FROM lead_tags WHERE tag = $3)) \
         AND ($4 IS NULL OR lower(coalesce(email, '') || ' ' || coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(company, '')) LIKE $4 ESCAPE '\\') \
         ORDER BY id LIMIT $5",
        lead_column_list()
    )
});

pub(super) const TIMELINE: [(TimelineKind, &str); 7] = [
    (
        TimelineKind::Event,
        "SELECT id, occurred_at, json_object('type', type, 'properties', json(properties), 'source', source, 'received_at', received_at) \
         FROM events WHERE lead_id = $1 AND (occurred_at < $2 OR (occurred_at = $2 AND id < $3)) ORDER BY occurred_at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::TagChange,
        "SELECT id, at, json_object('tag', tag, 'family', family, 'change', CASE WHEN added THEN 'added' ELSE 'removed' END, 'by', json_object('kind', actor_kind, 'name', actor)) \
         FROM tag_changes WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::ScoreChange,
        "SELECT id, at, json_object('delta', delta, 'reason', reason, 'rule', rule, 'by', json_object('kind', actor_kind, 'name', actor)) \
         FROM score_changes WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::Handoff,
        "SELECT id, created_at, json_object('queue', queue, 'reason', reason, 'priority', priority, 'origin', origin, 'status', status, 'handoff_id', CAST(id AS TEXT), 'claimed_by', claimed_by, 'reject_reason', reject_reason) \
         FROM handoffs WHERE lead_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::CampaignStep,
        "SELECT id, at, json_object('campaign', campaign_id, 'enrollment', enrollment_id, 'step', step, 'outcome', outcome, 'detail', detail) \
         FROM journey WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::Message,
        "SELECT id, created_at, json_object('message', id, 'campaign', campaign_id, 'step', step, 'channel', channel, 'template', template, 'status', status, 'reason', reason, 'sent_at', sent_at) \
         FROM messages WHERE enrollment_id IN (SELECT id FROM enrollments WHERE lead_id = $1) AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::Note,
        "SELECT id, created_at, json_object('note', CAST(id AS TEXT), 'text', text, 'decision', decision, 'handoff_id', CAST(handoff_id AS TEXT), 'call', CASE WHEN call_outcome IS NULL THEN NULL ELSE json_object('outcome', call_outcome, 'follow_up_on', follow_up_on) END, 'by', author) \
         FROM lead_notes WHERE lead_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
    ),
];
