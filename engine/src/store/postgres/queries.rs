//! The PostgreSQL adapter's statements that are built once: the lead lookups and writes,
//! the lead list and the timeline.

use std::sync::LazyLock;

use super::*;

pub(super) fn recordset_columns() -> String {
    LEAD_COLUMNS
        .iter()
        .map(|(c, t)| format!("{c} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shards of the per-step counters (see migration 0004).
pub(super) const STEP_COUNT_SHARDS: i64 = 16;

pub(super) static SELECT_LEADS: LazyLock<String> = LazyLock::new(|| {
    format!(
        // One index lookup per key kind: `id = ANY OR email = ANY OR …` reads the whole table.
        // The ids are gathered into an array first (an init plan, run once), so that the rows
        // are fetched by the primary key: as `id IN (… UNION …)` the planner joined the whole
        // table against the ids once its plan was generic (seen: every claim batch and every
        // engine batch read all of `leads`).
        "SELECT {} FROM leads WHERE id = ANY(ARRAY(SELECT unnest($1::bigint[]) \
         UNION SELECT id FROM leads WHERE email = ANY($2) \
         UNION SELECT id FROM leads WHERE external_id = ANY($3))) ORDER BY id",
        lead_column_list()
    )
});

/// The leads of `$1` no other transaction holds, locked in id order and read in one statement,
/// through a function that keeps the plan on the primary key (see `migrations/postgres/0010`).
pub(super) static TAKE_FREE_LEADS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM take_free_leads($1)", lead_column_list()));

/// In a write transaction the leads are locked, in id order so that two writers never wait on
/// each other in a cycle: the engine computes new scores from what it read, and no other writer
/// may change them in between.
pub(super) static SELECT_LEADS_FOR_UPDATE: LazyLock<String> =
    LazyLock::new(|| format!("{} FOR UPDATE", SELECT_LEADS.as_str()));

pub(super) static WRITE_LEADS: LazyLock<String> = LazyLock::new(|| {
    let cols = lead_column_list();
    let updates: Vec<String> = LEAD_COLUMNS
        .iter()
        .skip(1)
        .map(|(c, _)| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO leads ({cols}) SELECT {cols} FROM jsonb_to_recordset($1::jsonb) AS r({}) \
         ON CONFLICT (id) DO UPDATE SET {}",
        recordset_columns(),
        updates.join(", ")
    )
});

pub(super) static LIST_LEADS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM leads WHERE id > $1 AND ($2::text IS NULL OR stage = $2) \
         AND ($3::text IS NULL OR id IN (SELECT lead_id FROM lead_tags WHERE tag = $3)) \
         AND ($4::text IS NULL OR lower(coalesce(email, '') || ' ' || coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(company, '')) LIKE $4 ESCAPE '\\') \
         ORDER BY id LIMIT $5",
        lead_column_list()
    )
});

pub(super) const TIMELINE: [(TimelineKind, &str); 7] = [
    (
        TimelineKind::Event,
        "SELECT id, occurred_at, jsonb_build_object('type', type, 'properties', properties, 'source', source, 'received_at', received_at)::text \
         FROM events WHERE lead_id = $1 AND (occurred_at < $2 OR (occurred_at = $2 AND id < $3)) ORDER BY occurred_at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::TagChange,
        "SELECT id, at, jsonb_build_object('tag', tag, 'family', family, 'change', CASE WHEN added THEN 'added' ELSE 'removed' END, 'by', jsonb_build_object('kind', actor_kind, 'name', actor))::text \
         FROM tag_changes WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::ScoreChange,
        "SELECT id, at, jsonb_build_object('delta', delta, 'reason', reason, 'rule', rule, 'by', jsonb_build_object('kind', actor_kind, 'name', actor))::text \
         FROM score_changes WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::Handoff,
        "SELECT id, created_at, jsonb_build_object('queue', queue, 'reason', reason, 'priority', priority, 'origin', origin, 'status', status, 'handoff_id', id::text, 'claimed_by', claimed_by, 'reject_reason', reject_reason)::text \
         FROM handoffs WHERE lead_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::CampaignStep,
        "SELECT id, at, jsonb_build_object('campaign', campaign_id, 'enrollment', enrollment_id, 'step', step, 'outcome', outcome, 'detail', detail)::text \
         FROM journey WHERE lead_id = $1 AND (at < $2 OR (at = $2 AND id < $3)) ORDER BY at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::Message,
        "SELECT id, created_at, jsonb_build_object('message', id, 'campaign', campaign_id, 'step', step, 'channel', channel, 'template', template, 'status', status, 'reason', reason, 'sent_at', sent_at)::text \
         FROM messages WHERE enrollment_id IN (SELECT id FROM enrollments WHERE lead_id = $1) AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
    ),
    (
        TimelineKind::Note,
        "SELECT id, created_at, jsonb_build_object('note', id::text, 'text', text, 'decision', decision, 'handoff_id', handoff_id::text, 'call', CASE WHEN call_outcome IS NULL THEN NULL ELSE jsonb_build_object('outcome', call_outcome, 'follow_up_on', follow_up_on) END, 'by', author)::text \
         FROM lead_notes WHERE lead_id = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3)) ORDER BY created_at DESC, id DESC LIMIT $4",
    ),
];
