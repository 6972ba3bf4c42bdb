//! The storage contract: every case runs unchanged against SQLite and PostgreSQL, through the
//! engine (which composes the store's set-based primitives) and through the store port directly.
//! Rules cases (tagging, tags_from, attribute tags, caps, decay, MQL) move a manual clock.

use chrono::Duration;
use nurture_engine::access::{key_hash, Role};
use nurture_engine::audit::{AuditKind, By};
use nurture_engine::engine::{Deployer, IngestReport, LeadView, Target, Upserted};
use nurture_engine::event::EventInput;
use nurture_engine::lead::{ConsentStatus, LeadId, LeadInput, LeadRef, Stage};
use nurture_engine::store::{
    sqlite::SqliteStore, ActivityRow, CampaignStatus, CampaignVersion, Idempotency, LeadFilter, Store, StoreError,
    TimelineKind,
};
use nurture_engine::tag::Actor;
use serde_json::{json, Value};

use crate::support::{key_audit, start, Backend, Db, TestEngine};
use std::sync::Arc;

fn input(v: Value) -> LeadInput {
    serde_json::from_value(v).unwrap()
}

fn event(email: &str, kind: &str, properties: Value) -> EventInput {
    EventInput {
        lead: LeadRef {
            id: None,
            email: Some(email.into()),
            external_id: None,
        },
        kind: kind.into(),
        occurred_at: None,
        properties: properties.as_object().cloned().unwrap_or_default(),
        idempotency_key: None,
        source: None,
    }
}

fn crm() -> Actor {
    Actor::User("crm-bot".into())
}

async fn upsert(t: &TestEngine, v: Value) -> Upserted {
    t.engine
        .upsert_leads(vec![(Target::Keys, input(v))], &crm())
        .await
        .unwrap()
        .pop()
        .unwrap()
        .unwrap()
}

fn id_of(u: &Upserted) -> LeadId {
    match u {
        Upserted::Created(v) | Upserted::Updated(v) => v.lead.id,
    }
}

async fn by_email(t: &TestEngine, email: &str) -> LeadView {
    let by = LeadRef {
        email: Some(email.into()),
        ..Default::default()
    };
    t.engine.find_lead(&by).await.unwrap()
}

async fn search(t: &TestEngine, q: &str) -> (Vec<LeadView>, Option<LeadId>) {
    let filter = LeadFilter {
        q: Some(q.into()),
        ..Default::default()
    };
    t.engine.list_leads(&filter, None, None, 10).await.unwrap()
}

async fn ingest(t: &TestEngine, events: Vec<EventInput>) -> IngestReport {
    t.engine.ingest_events(events).await.unwrap()
}

both_backends!(crate::support::engine;
    migrated_store_is_ready,
    planner_statistics_follow_a_growing_table,
    upsert_finds_by_email_case_insensitively,
    upsert_prefers_external_id_and_links_email,
    conflicting_external_ids_are_refused,
    one_batch_with_a_repeated_email_makes_one_lead,
    text_round_trips_exactly,
    event_idempotency_key_stores_once,
    event_for_unknown_email_creates_the_lead,
    tagging_rules_tag_and_score,
    tags_from_derives_interest_tags,
    attribute_tags_follow_the_field,
    caps_hold_across_batches_and_windows,
    decay_is_set_based_and_in_the_ledger,
    mql_moves_the_stage_and_requests_a_handoff,
    manual_tags_and_scores_record_who,
    an_audit_entry_is_kept_only_with_its_transaction,
    lists_filter_and_paginate,
    timeline_is_newest_first_and_pages,
    erasure_keeps_a_suppression,
    erasure_reaches_every_table_that_names_the_person,
    claim_many_hands_the_nth_open_handoff_to_the_nth_caller,
    idempotent_requests_replay,
    api_keys_are_found_by_hash,
    concurrent_batches_on_the_same_leads_all_land,
    deploys_keep_every_campaign_version,
    an_event_enters_a_campaign_and_its_wait_ends_on_time,
    a_paused_campaign_runs_no_step_and_resumes_where_it_stopped,
    a_human_open_takes_the_yes_branch_and_a_missing_openid_skips_wechat,
    a_goal_reached_by_an_event_ends_enrollments_mid_wait,
    two_workers_share_due_work_and_no_step_runs_twice,
    leads_that_already_match_enter_a_deployed_campaign,
    runner_passes_beside_goals_reached_by_events_never_undo_an_exit,
    hand_enrollment_beside_runner_passes_enrolls_every_lead,
    running_enrollments_are_counted_by_campaign_and_version,
    a_commit_that_queues_mail_wakes_the_dispatcher,
    a_deployment_is_kept_whole_and_another_process_follows_it,
);

/// Migration 0008 keeps the journey one row per move. A store that an earlier release filled
/// (one row per line) keeps every line, in its order, and what is written after comes after.
async fn journey_lines_survive_the_move_to_one_row_per_move(backend: Backend) {
    let Some(t) = crate::support::unmigrated_store(backend).await else {
        return;
    };
    let db = Db::connect(&t.postgres_url().unwrap_or_else(|| t.url.clone())).await;
    let dir = crate::support::repo().join(match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    });
    db.migrate_to(&dir, 7).await;
    db.execute(
        "INSERT INTO journey (enrollment_id, lead_id, campaign_id, step, outcome, detail, at) VALUES \
         (1, 10, 'drip', 'insight', 'sent', 'queued as message 5', 100), \
         (1, 10, 'drip', 'wait_3d', 'waiting', 'until day 3', 100), \
         (2, 11, 'drip', 'insight', 'skipped', 'no e-mail', 100), \
         (1, 10, 'drip', 'wait_3d', 'waited', 'waited 3 days', 400)",
    )
    .await;
    t.store.migrate().await.unwrap();
    let lines = "SELECT CAST(enrollment_id AS TEXT) || ' ' || step || ':' || outcome || ' (' || detail || ') at ' || CAST(at AS TEXT) \
                 FROM journey ORDER BY id";
    let before = [
        "1 insight:sent (queued as message 5) at 100",
        "1 wait_3d:waiting (until day 3) at 100",
        "2 insight:skipped (no e-mail) at 100",
        "1 wait_3d:waited (waited 3 days) at 400",
    ];
    assert_eq!(db.strings(lines).await, before);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM journey_moves").await,
        4,
        "each old line is a move"
    );
    // A move of two lines, written after the migration, reads back after the old lines.
    db.execute(
        "INSERT INTO journey_moves (enrollment_id, lead_id, campaign_id, at, steps) VALUES \
         (1, 10, 'drip', 400, '[[\"opened\",\"no\",\"no open\"],[\"angle\",\"sent\",\"queued as message 9\"]]')",
    )
    .await;
    let mut after = before.to_vec();
    after.extend([
        "1 opened:no (no open) at 400",
        "1 angle:sent (queued as message 9) at 400",
    ]);
    assert_eq!(db.strings(lines).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_journey_lines_survive_the_move_to_one_row_per_move() {
    journey_lines_survive_the_move_to_one_row_per_move(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_journey_lines_survive_the_move_to_one_row_per_move() {
    journey_lines_survive_the_move_to_one_row_per_move(Backend::Postgres).await;
}

async fn migrated_store_is_ready(t: TestEngine) {
    assert!(t.store.store.ready().await.unwrap());
    t.store.store.migrate().await.unwrap();
    assert!(t.store.store.ready().await.unwrap(), "migrating twice is harmless");
}

async fn planner_statistics_follow_a_growing_table(t: TestEngine) {
    let store = &t.store.store;
    // Whatever the migrations left stale is refreshed first.
    store.refresh_statistics().await.unwrap();
    let leads = (0..200)
        .map(|i| (Target::Keys, input(json!({"email": format!("s{i}@x.example")}))))
        .collect();
    for outcome in t.engine.upsert_leads(leads, &crm()).await.unwrap() {
        outcome.unwrap();
    }
    if store.backend() != "postgres" {
        assert_eq!(store.refresh_statistics().await.unwrap(), Vec::<String>::new());
        return;
    }
    // PostgreSQL's activity counters reach other sessions within a second or so.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let refreshed = loop {
        let refreshed = store.refresh_statistics().await.unwrap();
        if refreshed.iter().any(|t| t == "leads") || std::time::Instant::now() > deadline {
            break refreshed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(refreshed.iter().any(|t| t == "leads"), "200 new leads: {refreshed:?}");
    let again = store.refresh_statistics().await.unwrap();
    assert!(!again.iter().any(|t| t == "leads"), "nothing changed since: {again:?}");
}

async fn upsert_finds_by_email_case_insensitively(t: TestEngine) {
    let first = upsert(&t, json!({"email": "Li.Wei@Acme.example", "first_name": "Wei"})).await;
    assert!(matches!(first, Upserted::Created(_)));
    let second = upsert(&t, json!({"email": "  li.wei@ACME.example ", "company": "Acme"})).await;
    let Upserted::Updated(view) = second else {
        panic!("expected an update: {second:?}")
    };
    assert_eq!(view.lead.id, id_of(&first));
    assert_eq!(view.lead.email.as_deref(), Some("li.wei@acme.example"));
    assert_eq!(view.lead.fields["first_name"], "Wei");
    assert_eq!(view.lead.fields["company"], "Acme");
    assert_eq!(view.lead.stage, Stage::New);
    let found = by_email(&t, "LI.WEI@acme.example").await;
    assert_eq!(found.lead.id, id_of(&first));
}

async fn upsert_prefers_external_id_and_links_email(t: TestEngine) {
    let by_email = upsert(&t, json!({"email": "a@x.example"})).await;
    let linked = upsert(&t, json!({"email": "a@x.example", "external_id": "crm-1"})).await;
    assert_eq!(
        id_of(&linked),
        id_of(&by_email),
        "the CRM id attaches to the lead found by e-mail"
    );
    let moved = upsert(&t, json!({"external_id": "crm-1", "email": "new@x.example"})).await;
    assert_eq!(
        id_of(&moved),
        id_of(&by_email),
        "found by external id, the e-mail changes"
    );
    let found = t
        .engine
        .find_lead(&LeadRef {
            external_id: Some("crm-1".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.lead.email.as_deref(), Some("new@x.example"));
}

async fn conflicting_external_ids_are_refused(t: TestEngine) {
    upsert(&t, json!({"email": "a@x.example", "external_id": "crm-1"})).await;
    upsert(&t, json!({"email": "b@x.example"})).await;
    let results = t
        .engine
        .upsert_leads(
            vec![
                (
                    Target::Keys,
                    input(json!({"email": "a@x.example", "external_id": "crm-2"})),
                ),
                (
                    Target::Keys,
                    input(json!({"external_id": "crm-1", "email": "b@x.example"})),
                ),
                (Target::Keys, input(json!({"email": "c@x.example"}))),
            ],
            &crm(),
        )
        .await
        .unwrap();
    assert!(
        matches!(&results[0], Err(nurture_engine::engine::ItemError::Conflict(m)) if m.contains("crm-1")),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(&results[1], Err(nurture_engine::engine::ItemError::Conflict(_))),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(&results[2], Ok(Upserted::Created(_))),
        "the good item is stored: {:?}",
        results[2]
    );
}

async fn one_batch_with_a_repeated_email_makes_one_lead(t: TestEngine) {
    let results = t
        .engine
        .upsert_leads(
            vec![
                (Target::Keys, input(json!({"email": "dup@x.example", "title": "CTO"}))),
                (
                    Target::Keys,
                    input(json!({"email": "DUP@x.example", "company": "Acme"})),
                ),
            ],
            &crm(),
        )
        .await
        .unwrap();
    let ids: Vec<LeadId> = results.iter().map(|r| id_of(r.as_ref().unwrap())).collect();
    assert_eq!(ids[0], ids[1]);
    assert!(matches!(results[0], Ok(Upserted::Created(_))));
    assert!(matches!(results[1], Ok(Upserted::Updated(_))));
    let lead = t.engine.get_lead(ids[0]).await.unwrap().lead;
    assert_eq!(
        (lead.fields["title"].as_str(), lead.fields["company"].as_str()),
        ("CTO", "Acme")
    );
}

async fn text_round_trips_exactly(t: TestEngine) {
    let tricky = "Robert'); DROP TABLE leads;-- 李伟 🚀 \"quoted\" \\ back%slash_";
    let created = upsert(&t, json!({"email": "x@x.example", "company": tricky, "attributes": {"note": tricky, "n": 3, "nested": {"a": [1, "二"]}}})).await;
    let lead = t.engine.get_lead(id_of(&created)).await.unwrap().lead;
    assert_eq!(lead.fields["company"], tricky);
    assert_eq!(lead.attributes["note"], tricky);
    assert_eq!(lead.attributes["nested"], json!({"a": [1, "二"]}));
    let (found, _) = search(&t, "drop table").await;
    assert_eq!(found.len(), 1);
    let (none, _) = search(&t, "%").await;
    assert_eq!(none.len(), 1, "% is searched for literally, and the company has one");
}

async fn event_idempotency_key_stores_once(t: TestEngine) {
    let mut e = event("li@x.example", "whitepaper_downloaded", json!({}));
    e.idempotency_key = Some("crm-7781".into());
    let first = ingest(&t, vec![e.clone(), e.clone()]).await;
    assert_eq!((first.accepted, first.duplicates), (1, 1));
    let again = ingest(&t, vec![e]).await;
    assert_eq!((again.accepted, again.duplicates), (0, 1));
    let lead = by_email(&t, "li@x.example").await;
    assert_eq!(lead.lead.score, 10, "the rule applied once");
    let (timeline, _) = t.engine.timeline(lead.lead.id, None, 100).await.unwrap();
    assert_eq!(timeline.iter().filter(|e| e.kind == TimelineKind::Event).count(), 1);
}

async fn event_for_unknown_email_creates_the_lead(t: TestEngine) {
    let mut e = event("New.Person@X.example", "page_view", json!({"path": "/"}));
    e.source = Some("Website".into());
    let report = ingest(&t, vec![e]).await;
    assert_eq!(report.accepted, 1);
    let view = by_email(&t, "new.person@x.example").await;
    assert_eq!(view.lead.stage, Stage::New);
    assert_eq!(view.lead.fields["source"], "Website");
    assert_eq!(view.tags, ["source:website"]);
    let unknown_id = ingest(
        &t,
        vec![EventInput {
            lead: LeadRef {
                id: Some("999999".into()),
                ..Default::default()
            },
            ..event("", "page_view", json!({}))
        }],
    )
    .await;
    assert_eq!(unknown_id.accepted, 0);
    assert_eq!(
        (
            unknown_id.rejected[0].error.code.as_str(),
            unknown_id.rejected[0].error.message.as_str()
        ),
        ("not_found", "lead 999999 not found")
    );
}

async fn tagging_rules_tag_and_score(t: TestEngine) {
    ingest(
        &t,
        vec![
            event("a@x.example", "whitepaper_downloaded", json!({})),
            event("a@x.example", "page_view", json!({"path": "/pricing/enterprise"})),
            event("a@x.example", "page_view", json!({"path": "/blog"})),
        ],
    )
    .await;
    let view = by_email(&t, "a@x.example").await;
    assert_eq!(view.tags, ["behaviour:downloaded_whitepaper", "interest:pricing"]);
    assert_eq!(view.lead.score, 15);
    assert_eq!(view.lead.last_activity_at, Some(start()));
    let families = t.store.store.lead_tags(view.lead.id).await.unwrap();
    let families: Vec<&str> = families.iter().map(|(_, f)| f.as_str()).collect();
    assert_eq!(families, ["behaviour", "interest"]);
}

async fn tags_from_derives_interest_tags(t: TestEngine) {
    ingest(
        &t,
        vec![
            event("a@x.example", "webinar_attended", json!({"topic": "Smart Factory"})),
            event("a@x.example", "webinar_attended", json!({})),
        ],
    )
    .await;
    let view = by_email(&t, "a@x.example").await;
    assert_eq!(view.tags, ["interest:topic/smart-factory"]);
    assert_eq!(view.lead.score, 40, "both webinars score; only one had a topic");
}

async fn attribute_tags_follow_the_field(t: TestEngine) {
    let created = upsert(
        &t,
        json!({"email": "a@x.example", "industry": "Energy", "source": "Trade Show"}),
    )
    .await;
    let Upserted::Created(view) = created else { panic!() };
    assert_eq!(view.tags, ["industry:energy", "source:trade-show"]);
    let Upserted::Updated(view) = upsert(&t, json!({"email": "a@x.example", "industry": "Manufacturing"})).await else {
        panic!()
    };
    assert_eq!(view.tags, ["industry:manufacturing", "source:trade-show"]);
    let view = t
        .engine
        .patch_lead(view.lead.id, input(json!({"industry": null})), &crm())
        .await
        .unwrap();
    assert_eq!(view.tags, ["source:trade-show"]);
    let (timeline, _) = t.engine.timeline(view.lead.id, None, 100).await.unwrap();
    let changes: Vec<String> = timeline
        .iter()
        .filter(|e| e.kind == TimelineKind::TagChange)
        .map(|e| {
            format!(
                "{} {}",
                e.data["change"].as_str().unwrap(),
                e.data["tag"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(changes.len(), 5);
    assert!(changes.contains(&"removed industry:energy".to_string()), "{changes:?}");
    assert!(
        changes.contains(&"removed industry:manufacturing".to_string()),
        "{changes:?}"
    );
}

async fn caps_hold_across_batches_and_windows(t: TestEngine) {
    let pricing = || event("a@x.example", "page_view", json!({"path": "/pricing"}));
    for _ in 0..2 {
        ingest(&t, vec![pricing(), pricing()]).await;
    }
    assert_eq!(
        by_email(&t, "a@x.example").await.lead.score,
        15,
        "capped at 15 per 30 days across batches"
    );
    t.clock.advance(Duration::days(31));
    ingest(&t, vec![pricing()]).await;
    assert_eq!(
        by_email(&t, "a@x.example").await.lead.score,
        20,
        "a new window gives points again"
    );
}

async fn decay_is_set_based_and_in_the_ledger(t: TestEngine) {
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(event(&format!("l{i}@x.example"), "webinar_attended", json!({})));
    }
    events.push(event("l0@x.example", "webinar_attended", json!({})));
    ingest(&t, events).await;
    assert_eq!(t.engine.decay().await.unwrap(), 0, "nobody is inactive yet");
    t.clock.advance(Duration::days(20));
    ingest(&t, vec![event("l2@x.example", "page_view", json!({"path": "/"}))]).await;
    t.clock.advance(Duration::days(10));
    assert_eq!(
        t.engine.decay().await.unwrap(),
        2,
        "l0 and l1 were inactive 30 days; l2 only 10"
    );
    assert_eq!(t.engine.decay().await.unwrap(), 0, "one decay per period");
    assert_eq!(by_email(&t, "l0@x.example").await.lead.score, 36, "40 less 10%");
    assert_eq!(by_email(&t, "l1@x.example").await.lead.score, 18, "20 less 10%");
    assert_eq!(by_email(&t, "l2@x.example").await.lead.score, 20);
    t.clock.advance(Duration::days(30));
    assert_eq!(t.engine.decay().await.unwrap(), 3);
    let l0 = by_email(&t, "l0@x.example").await.lead;
    assert_eq!(l0.score, 32, "36 less 10% (rounded up to whole points)");
    let (timeline, _) = t.engine.timeline(l0.id, None, 100).await.unwrap();
    let decays: Vec<i64> = timeline
        .iter()
        .filter(|e| e.kind == TimelineKind::ScoreChange && e.data["reason"] == "decay")
        .map(|e| e.data["delta"].as_i64().unwrap())
        .collect();
    assert_eq!(decays, [-4, -4]);
}

async fn mql_moves_the_stage_and_requests_a_handoff(t: TestEngine) {
    upsert(
        &t,
        json!({"email": "icp@x.example", "industry": "Manufacturing", "company_size": "1000+"}),
    )
    .await;
    upsert(
        &t,
        json!({"email": "small@x.example", "industry": "Manufacturing", "company_size": "1-10"}),
    )
    .await;
    let many = |email: &str| {
        (0..3)
            .map(|_| event(email, "webinar_attended", json!({})))
            .collect::<Vec<_>>()
    };
    ingest(&t, [many("icp@x.example"), many("small@x.example")].concat()).await;
    let icp = by_email(&t, "icp@x.example").await.lead;
    let small = by_email(&t, "small@x.example").await.lead;
    assert_eq!(
        (icp.score, icp.stage),
        (60, Stage::HandedOff),
        "an MQL waits in its queue in the stage of every lead handed off"
    );
    assert_eq!(
        (small.score, small.stage),
        (60, Stage::Nurturing),
        "score alone is not enough: not in the icp segment, so the industry drip nurtures it"
    );
    ingest(&t, many("icp@x.example")).await;
    let (timeline, _) = t.engine.timeline(icp.id, None, 100).await.unwrap();
    let handoffs: Vec<&Value> = timeline
        .iter()
        .filter(|e| e.kind == TimelineKind::Handoff)
        .map(|e| &e.data["queue"])
        .collect();
    assert_eq!(handoffs, [&json!("sdr")], "one handoff request, to the sdr queue");
    // A company-size correction that puts the other lead in the segment qualifies it at once.
    let small = t
        .engine
        .patch_lead(small.id, input(json!({"company_size": "200-1000"})), &crm())
        .await
        .unwrap();
    assert_eq!(small.lead.stage, Stage::HandedOff);
}

/// An audit entry written in a transaction that does not commit is not kept; one that commits
/// is listed, newest first, by actor, kind and time.
async fn an_audit_entry_is_kept_only_with_its_transaction(t: TestEngine) {
    use nurture_engine::audit::AuditFilter;
    let store = &t.store.store;
    let at = nurture_engine::clock::to_micros(start());
    let change = |actor: &str, kind: AuditKind| By::api(actor).did(kind, "c", json!({"n": 1}));
    let mut tx = store.begin().await.unwrap();
    tx.write_audit(&[change("ann", AuditKind::CampaignPaused)], at)
        .await
        .unwrap();
    drop(tx);
    let none = AuditFilter::default();
    assert!(store.audit_log(&none, None, 10).await.unwrap().is_empty());
    let mut tx = store.begin().await.unwrap();
    let written = [
        change("ann", AuditKind::CampaignPaused),
        change("bob", AuditKind::CampaignResumed),
        change("ann", AuditKind::LeadTagged),
    ];
    tx.write_audit(&written, at).await.unwrap();
    tx.write_audit(&[change("ann", AuditKind::KeyCreated)], at + 1_000_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let all = store.audit_log(&none, None, 10).await.unwrap();
    let kinds: Vec<&str> = all.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["key.created", "lead.tagged", "campaign.resumed", "campaign.paused"]
    );
    assert_eq!(all[1].detail, json!({"n": 1}));
    assert_eq!((all[1].actor.as_str(), all[1].subject.as_str()), ("ann", "c"));
    let page = store.audit_log(&none, Some(all[1].id), 1).await.unwrap();
    assert_eq!(page[0].kind, AuditKind::CampaignResumed);
    let filter = AuditFilter {
        actor: Some("ann".into()),
        kinds: Some(vec![AuditKind::CampaignPaused, AuditKind::LeadTagged]),
        since: None,
    };
    let kinds: Vec<AuditKind> = store
        .audit_log(&filter, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, [AuditKind::LeadTagged, AuditKind::CampaignPaused]);
    let later = AuditFilter {
        since: Some(at + 1),
        ..AuditFilter::default()
    };
    assert_eq!(store.audit_log(&later, None, 10).await.unwrap().len(), 1);
    let nothing = AuditFilter {
        kinds: Some(Vec::new()),
        ..AuditFilter::default()
    };
    assert!(store.audit_log(&nothing, None, 10).await.unwrap().is_empty());
}

async fn manual_tags_and_scores_record_who(t: TestEngine) {
    let id = id_of(&upsert(&t, json!({"email": "a@x.example"})).await);
    let sdr = By::api("alice");
    let view = t
        .engine
        .tag_lead(id, &["VIP".into(), "persona:cxo".into()], &[], &sdr)
        .await
        .unwrap();
    assert_eq!(view.tags, ["persona:cxo", "vip"]);
    let view = t.engine.tag_lead(id, &[], &["vip".into()], &sdr).await.unwrap();
    assert_eq!(view.tags, ["persona:cxo"]);
    let view = t.engine.score_lead(id, 25, "Good call", &sdr).await.unwrap();
    assert_eq!(view.lead.score, 25);
    let (timeline, _) = t.engine.timeline(id, None, 100).await.unwrap();
    let scored = timeline.iter().find(|e| e.kind == TimelineKind::ScoreChange).unwrap();
    assert_eq!(scored.data["by"], json!({"kind": "user", "name": "alice"}));
    assert_eq!(scored.data["reason"], "Good call");
    let removed = timeline
        .iter()
        .find(|e| e.kind == TimelineKind::TagChange && e.data["change"] == "removed")
        .unwrap();
    assert_eq!(removed.data["tag"], "vip");
    assert_eq!(removed.data["family"], "manual");
    let bad = t.engine.tag_lead(id, &["two words".into()], &[], &sdr).await;
    assert!(matches!(bad, Err(nurture_engine::engine::EngineError::Invalid(_))));
    assert!(matches!(
        t.engine.tag_lead(LeadId(424242), &["x".into()], &[], &sdr).await,
        Err(nurture_engine::engine::EngineError::NotFound)
    ));
}

async fn lists_filter_and_paginate(t: TestEngine) {
    for i in 0..7 {
        let industry = if i % 2 == 0 { "Energy" } else { "Finance" };
        let size = if i < 4 { "1000+" } else { "1-10" };
        upsert(&t, json!({"email": format!("p{i}@x.example"), "industry": industry, "company_size": size, "company": format!("Co {i}")})).await;
    }
    let all = |filter: LeadFilter, segment: Option<&'static str>| {
        let engine = t.engine.clone();
        async move {
            let mut emails = Vec::new();
            let mut after = None;
            loop {
                let (page, next) = engine.list_leads(&filter, segment, after, 2).await.unwrap();
                assert!(page.len() <= 2);
                emails.extend(page.into_iter().map(|v| v.lead.email.unwrap()));
                match next {
                    Some(n) => after = Some(n),
                    None => return emails,
                }
            }
        }
    };
    assert_eq!(all(LeadFilter::default(), None).await.len(), 7);
    assert_eq!(
        all(
            LeadFilter {
                tag: Some("industry:energy".into()),
                ..Default::default()
            },
            None
        )
        .await,
        ["p0@x.example", "p2@x.example", "p4@x.example", "p6@x.example"]
    );
    assert_eq!(
        all(
            LeadFilter {
                q: Some("co 3".into()),
                ..Default::default()
            },
            None
        )
        .await,
        ["p3@x.example"]
    );
    assert_eq!(
        all(LeadFilter::default(), Some("icp")).await,
        ["p0@x.example", "p2@x.example"]
    );
    assert_eq!(
        all(
            LeadFilter {
                stage: Some(Stage::Mql),
                ..Default::default()
            },
            None
        )
        .await
        .len(),
        0
    );
}

async fn timeline_is_newest_first_and_pages(t: TestEngine) {
    for day in 0..5 {
        let mut e = event("a@x.example", "whitepaper_downloaded", json!({"n": day}));
        // Days before the clock's now: events may not be more than a day ahead of it.
        e.occurred_at = Some(start() - Duration::days(4 - day));
        ingest(&t, vec![e]).await;
    }
    let id = by_email(&t, "a@x.example").await.lead.id;
    let (everything, none) = t.engine.timeline(id, None, 100).await.unwrap();
    assert!(none.is_none());
    assert_eq!(everything.len(), 5 + 1 + 5, "5 events, 1 tag change, 5 score changes");
    assert!(everything.windows(2).all(|w| w[0].at >= w[1].at), "newest first");
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = t.engine.timeline(id, cursor, 3).await.unwrap();
        paged.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(
        paged, everything,
        "pages add up to the whole, with nothing repeated or lost"
    );
}

async fn erasure_keeps_a_suppression(t: TestEngine) {
    let id = id_of(&upsert(&t, json!({"email": "gone@x.example", "first_name": "Gone"})).await);
    ingest(&t, vec![event("gone@x.example", "whitepaper_downloaded", json!({}))]).await;
    t.engine.erase_lead(id, &By::api("ops")).await.unwrap();
    assert!(matches!(
        t.engine.get_lead(id).await,
        Err(nurture_engine::engine::EngineError::NotFound)
    ));
    assert!(matches!(
        t.engine.erase_lead(id, &By::api("ops")).await,
        Err(nurture_engine::engine::EngineError::NotFound)
    ));
    let Upserted::Created(again) = upsert(&t, json!({"email": "GONE@x.example"})).await else {
        panic!()
    };
    assert_ne!(again.lead.id, id, "ids are never reused");
    assert_eq!(
        again.lead.consent.email.status,
        ConsentStatus::OptedOut,
        "an erased address stays suppressed"
    );
    assert_eq!(again.lead.fields.get("first_name"), None);
    let (timeline, _) = t.engine.timeline(again.lead.id, None, 100).await.unwrap();
    assert!(
        timeline.iter().all(|e| e.kind != TimelineKind::Event),
        "the old events are gone"
    );
}

async fn erasure_reaches_every_table_that_names_the_person(t: TestEngine) {
    t.engine.deploy_current(Deployer::cli()).await.unwrap();
    t.store
        .store
        .create_webhook(
            "http://crm.example/hook",
            &["*".to_owned()],
            "whsec_0123456789abcdef",
            0,
            &By::api("crm").did(AuditKind::WebhookCreated, "", json!({})),
        )
        .await
        .unwrap();
    // An industry: the drip takes the lead and queues its first e-mail.
    let id = id_of(&upsert(&t, json!({"email": "erase.me@x.example", "industry": "Energy"})).await);
    ingest(
        &t,
        vec![event("erase.me@x.example", "whitepaper_downloaded", json!({}))],
    )
    .await;
    let handoff = t
        .engine
        .hand_off(&LeadRef::by_id(id.0), "sdr", "Asked for a call", None, "sdr-bot")
        .await
        .unwrap();
    // Unclaimed past the SDR queue's SLA: the SDR lead is to be e-mailed about this person.
    t.engine
        .advance_clock(&t.clock, Duration::hours(5), None)
        .await
        .unwrap();
    let tables = [
        "events WHERE lead_id = {id}",
        "lead_tags WHERE lead_id = {id}",
        "tag_changes WHERE lead_id = {id}",
        "score_changes WHERE lead_id = {id}",
        "handoffs WHERE lead_id = {id}",
        "handoff_log WHERE handoff_id = {handoff}",
        "messages WHERE lead_id = {id}",
        "journey WHERE lead_id = {id}",
        "enrollments WHERE lead_id = {id}",
        "webhook_deliveries WHERE lead_id = {id}",
        "notifications WHERE lead_id = {id}",
        "leads WHERE id = {id}",
    ];
    let count = |table: &str| {
        let sql = format!(
            "SELECT COUNT(*) FROM {}",
            table
                .replace("{id}", &id.0.to_string())
                .replace("{handoff}", &handoff.id.0.to_string())
        );
        let store = &t.store;
        async move { store.count(&sql).await }
    };
    for table in tables {
        assert!(count(table).await > 0, "the fixture fills {table}");
    }
    t.engine.erase_lead(id, &By::api("ops")).await.unwrap();
    for table in tables {
        assert_eq!(count(table).await, 0, "erased from {table}");
    }
    assert_eq!(count("suppressions").await, 1, "the e-mail's hash stays");
    let text = count("webhook_deliveries WHERE payload LIKE '%erase.me%'").await;
    assert_eq!(text, 0, "no delivery keeps the address");
    let text = count("notifications WHERE body LIKE '%erase.me%'").await;
    assert_eq!(text, 0, "no notification keeps the address");
}

async fn claim_many_hands_the_nth_open_handoff_to_the_nth_caller(t: TestEngine) {
    t.engine.deploy_current(Deployer::cli()).await.unwrap();
    let mut opened = Vec::new();
    for (i, priority) in [10u8, 90, 50].into_iter().enumerate() {
        let id = id_of(&upsert(&t, json!({"email": format!("many{i}@x.example")})).await);
        let by = LeadRef::by_id(id.0);
        opened.push(
            t.engine
                .hand_off(&by, "sales", "demo", Some(priority), "crm")
                .await
                .unwrap()
                .id,
        );
    }
    let members: Vec<String> = ["ann", "bo", "ann", "cy"].map(String::from).to_vec();
    let mut tx = t.store.store.begin().await.unwrap();
    let got = tx.claim_many("sales", &members, 1).await.unwrap();
    tx.commit().await.unwrap();
    let summary: Vec<Option<(i64, String)>> = got
        .iter()
        .map(|h| h.as_ref().map(|h| (h.priority, h.claimed_by.clone().unwrap())))
        .collect();
    // Highest priority first; `ann` asked twice and gets two (which of her slots gets which
    // does not matter); `cy` comes last and finds none.
    let mut anns: Vec<i64> = summary
        .iter()
        .flatten()
        .filter(|(_, m)| m == "ann")
        .map(|(p, _)| *p)
        .collect();
    anns.sort_unstable();
    assert_eq!(anns, [10, 90], "{summary:?}");
    assert_eq!(summary[1], Some((50, "bo".to_owned())), "{summary:?}");
    assert_eq!(summary[3], None, "{summary:?}");
    assert!(got
        .iter()
        .flatten()
        .all(|h| h.status == nurture_engine::handoff::HandoffStatus::Claimed));
}

async fn idempotent_requests_replay(t: TestEngine) {
    let store = &t.store.store;
    assert_eq!(
        store.idempotency_begin("k1|PUT", "abc", "f1", start()).await.unwrap(),
        Idempotency::Proceed
    );
    assert_eq!(
        store.idempotency_begin("k1|PUT", "abc", "f1", start()).await.unwrap(),
        Idempotency::InFlight
    );
    store
        .idempotency_finish("k1|PUT", "abc", 201, "{\"id\":\"1\"}")
        .await
        .unwrap();
    assert_eq!(
        store.idempotency_begin("k1|PUT", "abc", "f1", start()).await.unwrap(),
        Idempotency::Replay {
            status: 201,
            body: "{\"id\":\"1\"}".into()
        }
    );
    assert_eq!(
        store.idempotency_begin("k1|PUT", "abc", "f2", start()).await.unwrap(),
        Idempotency::Mismatch
    );
    assert_eq!(
        store.idempotency_begin("k2|PUT", "abc", "f2", start()).await.unwrap(),
        Idempotency::Proceed,
        "keys are per caller"
    );
    store.idempotency_abort("k2|PUT", "abc").await.unwrap();
    assert_eq!(
        store.idempotency_begin("k2|PUT", "abc", "f2", start()).await.unwrap(),
        Idempotency::Proceed,
        "an aborted request may be retried"
    );
}

async fn api_keys_are_found_by_hash(t: TestEngine) {
    let store = &t.store.store;
    store
        .create_api_key("alice", Role::Sdr, &key_hash("secret"), start(), &key_audit("alice"))
        .await
        .unwrap();
    let found = store.find_api_key(&key_hash("secret")).await.unwrap().unwrap();
    assert_eq!((found.name.as_str(), found.role), ("alice", Role::Sdr));
    assert_eq!(store.find_api_key(&key_hash("other")).await.unwrap(), None);
    assert!(store
        .create_api_key("again", Role::Admin, &key_hash("secret"), start(), &key_audit("again"))
        .await
        .is_err());
}

async fn concurrent_batches_on_the_same_leads_all_land(t: TestEngine) {
    let batch = |n: usize| {
        (0..200)
            .map(|i| {
                event(
                    &format!("c{}@x.example", i % 20),
                    "whitepaper_downloaded",
                    json!({"n": n}),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut tasks = Vec::new();
    for n in 0..4 {
        let engine = t.engine.clone();
        let events = batch(n);
        tasks.push(tokio::spawn(async move { engine.ingest_events(events).await.unwrap() }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.unwrap().accepted;
    }
    assert_eq!(accepted, 800);
    let (leads, _) = t
        .engine
        .list_leads(&LeadFilter::default(), None, None, 100)
        .await
        .unwrap();
    assert_eq!(leads.len(), 20);
    assert!(
        leads.iter().all(|l| l.lead.score == 400),
        "40 downloads of 10 points each, none lost"
    );
}

async fn deploys_keep_every_campaign_version(t: TestEngine) {
    let store = &t.store.store;
    let version = |id: &str, v: &str| CampaignVersion {
        campaign_id: id.into(),
        version: v.into(),
        number: 0,
        name: format!("{id} campaign"),
        campaign_type: "drip".into(),
        definition: format!("{{\"v\":\"{v}\"}}"),
        source: format!("kind: Campaign\nid: {id}\n# {v}\n"),
        file: format!("campaigns/{id}.yaml"),
        deployed_at: start(),
    };
    let first = store
        .deploy_campaigns(&[version("a", "v1"), version("b", "v1")], None, start())
        .await
        .unwrap()
        .0;
    assert_eq!(
        (first.created.clone(), first.changed.len()),
        (vec!["a".to_string(), "b".into()], 0)
    );
    let again = store
        .deploy_campaigns(&[version("a", "v1"), version("b", "v1")], None, start())
        .await
        .unwrap()
        .0;
    assert_eq!(again.unchanged, ["a", "b"], "an unchanged deploy is a no-op");
    assert!(again.created.is_empty() && again.changed.is_empty() && again.retired.is_empty());

    let later = start() + Duration::hours(1);
    assert!(store
        .set_campaign_status("a", CampaignStatus::Paused, later, &pause_audit("a"))
        .await
        .unwrap());
    let changed = store
        .deploy_campaigns(&[version("a", "v2")], None, later)
        .await
        .unwrap()
        .0;
    assert_eq!(
        (changed.changed, changed.retired),
        (vec!["a".to_string()], vec!["b".to_string()])
    );
    let versions = store.campaign_versions("a").await.unwrap();
    let seen: Vec<(&str, i64)> = versions.iter().map(|v| (v.version.as_str(), v.number)).collect();
    assert_eq!(seen, [("v1", 1), ("v2", 2)]);
    assert_eq!(versions[1].source, "kind: Campaign\nid: a\n# v2\n");
    assert_eq!(versions[1].deployed_at, later);

    let now = store.campaigns().await.unwrap();
    let states: Vec<(&str, &str, i64, &str)> = now
        .iter()
        .map(|c| (c.id.as_str(), c.version.as_str(), c.number, c.status.as_str()))
        .collect();
    assert_eq!(
        states,
        [("a", "v2", 2, "paused"), ("b", "v1", 1, "retired")],
        "a deploy keeps a pause"
    );
    assert!(
        !store
            .set_campaign_status("b", CampaignStatus::Active, later, &pause_audit("b"))
            .await
            .unwrap(),
        "retired stays retired"
    );

    // Back to the first version: no third version; a retired campaign that returns is active.
    let back = store
        .deploy_campaigns(&[version("a", "v1"), version("b", "v1")], None, later)
        .await
        .unwrap()
        .0;
    assert_eq!(
        (back.changed, back.created),
        (vec!["a".to_string(), "b".into()], Vec::<String>::new())
    );
    assert_eq!(store.campaign_versions("a").await.unwrap().len(), 2);
    let states: Vec<(String, i64, String)> = store
        .campaigns()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.version, c.number, c.status.as_str().to_owned()))
        .collect();
    assert_eq!(
        states,
        [("v1".into(), 1, "paused".into()), ("v1".into(), 1, "active".into())]
    );
}

/// The lead's journey, oldest first, as `campaign/step:outcome`.
async fn journey(t: &TestEngine, lead: LeadId) -> Vec<String> {
    let (timeline, _) = t.engine.timeline(lead, None, 1000).await.unwrap();
    let mut steps: Vec<String> = timeline
        .iter()
        .filter(|e| e.kind == TimelineKind::CampaignStep)
        .map(|e| {
            format!(
                "{}/{}:{}",
                e.data["campaign"].as_str().unwrap(),
                e.data["step"].as_str().unwrap(),
                e.data["outcome"].as_str().unwrap()
            )
        })
        .collect();
    steps.reverse();
    steps
}

/// The lead's messages, oldest first: (id, step, template, status, reason).
async fn messages(t: &TestEngine, lead: LeadId) -> Vec<(i64, String, String, String, Option<String>)> {
    let (timeline, _) = t.engine.timeline(lead, None, 1000).await.unwrap();
    let mut out: Vec<_> = timeline
        .iter()
        .filter(|e| e.kind == TimelineKind::Message)
        .map(|e| {
            (
                e.data["message"].as_i64().unwrap(),
                e.data["step"].as_str().unwrap().to_owned(),
                e.data["template"].as_str().unwrap().to_owned(),
                e.data["status"].as_str().unwrap().to_owned(),
                e.data["reason"].as_str().map(str::to_owned),
            )
        })
        .collect();
    out.reverse();
    out
}

async fn an_event_enters_a_campaign_and_its_wait_ends_on_time(t: TestEngine) {
    ingest(&t, vec![event("new@x.example", "registered", json!({}))]).await;
    let lead = by_email(&t, "new@x.example").await.lead;
    assert_eq!(lead.stage, Stage::Nurturing, "entering a campaign starts nurturing");
    assert_eq!(
        journey(&t, lead.id).await,
        ["welcome/welcome:sent", "welcome/wait_2d:waiting"]
    );
    let sent = messages(&t, lead.id).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].1.as_str(), sent[0].2.as_str(), sent[0].3.as_str()),
        ("welcome", "welcome", "pending")
    );
    assert_eq!(t.engine.next_wake().await.unwrap(), Some(start() + Duration::days(2)));

    t.clock.advance(Duration::days(2) - Duration::minutes(1));
    assert_eq!(t.engine.run_due(100).await.unwrap(), 0, "a minute early, nothing moves");
    t.clock.advance(Duration::minutes(1));
    assert_eq!(t.engine.run_due(100).await.unwrap(), 1);
    assert_eq!(journey(&t, lead.id).await, WELCOME_PAST_FIRST_WAIT);
    assert_eq!(t.engine.run_due(100).await.unwrap(), 0, "nothing runs twice");
    // Registering again does not make a second enrollment (re-entry: never).
    ingest(&t, vec![event("new@x.example", "registered", json!({}))]).await;
    assert_eq!(messages(&t, lead.id).await.len(), 2);
}

/// What a deploy warns of reads these counts: running (active or waiting) enrollments only.
async fn running_enrollments_are_counted_by_campaign_and_version(t: TestEngine) {
    t.engine.deploy_current(Deployer::cli()).await.unwrap();
    let store = &t.store.store;
    let version = t.engine.playbook().campaigns["welcome"].version.clone();
    ingest(
        &t,
        ["a@x.example", "b@x.example", "c@x.example"]
            .iter()
            .map(|email| event(email, "registered", json!({})))
            .collect(),
    )
    .await;
    let count = |campaign: &'static str, version: Option<String>| {
        let store = store.clone();
        async move { store.open_enrollments(campaign, version.as_deref()).await.unwrap() }
    };
    assert_eq!(count("welcome", None).await, 3);
    assert_eq!(count("welcome", Some(version.clone())).await, 3);
    assert_eq!(count("welcome", Some("an-earlier-version".into())).await, 0);
    assert_eq!(count("no-such-campaign", None).await, 0);
    // Through the whole series: finished enrollments are not running.
    for _ in 0..20 {
        t.clock.advance(Duration::days(3));
        while t.engine.run_due(100).await.unwrap() > 0 {}
    }
    let lead = by_email(&t, "a@x.example").await.lead;
    let lines = journey(&t, lead.id).await;
    // The welcome series hands the lead on to the industry drip, which runs to its end.
    let last_of = |campaign: &str| lines.iter().rev().find(|l| l.starts_with(campaign)).cloned();
    assert_eq!(
        last_of("welcome/").as_deref(),
        Some("welcome/to_industry_drip:enrolled")
    );
    assert_eq!(
        last_of("industry-drip/").as_deref(),
        Some("industry-drip/returned:completed")
    );
    assert_eq!(count("welcome", None).await, 0, "{lines:?}");
    assert_eq!(count("welcome", Some(version)).await, 0);
    assert_eq!(count("industry-drip", None).await, 0);
}

/// The welcome drip's journey once its first wait has ended.
const WELCOME_PAST_FIRST_WAIT: [&str; 5] = [
    "welcome/welcome:sent",
    "welcome/wait_2d:waiting",
    "welcome/wait_2d:waited",
    "welcome/getting_started:sent",
    "welcome/wait_3d:waiting",
];

async fn a_paused_campaign_runs_no_step_and_resumes_where_it_stopped(t: TestEngine) {
    t.engine.deploy_current(Deployer::cli()).await.unwrap();
    ingest(&t, vec![event("pause@x.example", "registered", json!({}))]).await;
    let lead = by_email(&t, "pause@x.example").await.lead;
    t.engine
        .set_campaign_status("welcome", CampaignStatus::Paused, &By::api("marketer"))
        .await
        .unwrap();
    t.clock.advance(Duration::days(2));
    assert_eq!(t.engine.run_due(100).await.unwrap(), 0, "paused: the wait does not end");
    assert_eq!(
        journey(&t, lead.id).await,
        ["welcome/welcome:sent", "welcome/wait_2d:waiting"]
    );
    t.engine
        .set_campaign_status("welcome", CampaignStatus::Active, &By::api("marketer"))
        .await
        .unwrap();
    assert_eq!(t.engine.run_due(100).await.unwrap(), 1, "resumed: the wait ends");
    assert_eq!(journey(&t, lead.id).await, WELCOME_PAST_FIRST_WAIT);
}

async fn a_human_open_takes_the_yes_branch_and_a_missing_openid_skips_wechat(t: TestEngine) {
    ingest(
        &t,
        vec![
            event("open@x.example", "registered", json!({})),
            event("shut@x.example", "registered", json!({})),
        ],
    )
    .await;
    let open = by_email(&t, "open@x.example").await.lead;
    let shut = by_email(&t, "shut@x.example").await.lead;
    let welcome = messages(&t, open.id).await[0].0;
    // An automated open (a proxy) does not count; the person's later open does.
    ingest(
        &t,
        vec![
            event(
                "open@x.example",
                "email_opened",
                json!({"message_id": welcome, "automated": true}),
            ),
            event("open@x.example", "email_opened", json!({"message_id": welcome})),
        ],
    )
    .await;
    t.engine.advance_clock(&t.clock, Duration::days(5), None).await.unwrap();
    let steps = journey(&t, open.id).await;
    assert!(steps.contains(&"welcome/opened_any:yes".to_string()), "{steps:?}");
    assert!(steps.contains(&"welcome/tag_welcomed:tagged".to_string()), "{steps:?}");
    assert!(by_email(&t, "open@x.example")
        .await
        .tags
        .contains(&"engagement:welcomed".to_string()));

    let steps = journey(&t, shut.id).await;
    assert!(steps.contains(&"welcome/opened_any:no".to_string()), "{steps:?}");
    let sent = messages(&t, shut.id).await;
    let wechat = sent
        .iter()
        .find(|m| m.1 == "wechat_hello")
        .expect("the WeChat step made a message row");
    assert_eq!(
        (wechat.3.as_str(), wechat.4.as_deref()),
        ("skipped", Some("no_wechat_openid"))
    );
    // Day 5 is a Saturday: the case study waits for Monday's send window, then goes.
    assert!(steps.contains(&"welcome/case_study:deferred".to_string()), "{steps:?}");
    t.engine.advance_clock(&t.clock, Duration::days(2), None).await.unwrap();
    let sent = messages(&t, shut.id).await;
    assert!(
        sent.iter().any(|m| m.1 == "case_study"),
        "the flow goes on after a skipped send: {sent:?}"
    );
}

async fn a_goal_reached_by_an_event_ends_enrollments_mid_wait(t: TestEngine) {
    upsert(
        &t,
        json!({"email": "goal@x.example", "industry": "Energy", "company_size": "1000+"}),
    )
    .await;
    ingest(&t, vec![event("goal@x.example", "registered", json!({}))]).await;
    let lead = by_email(&t, "goal@x.example").await.lead;
    let steps = journey(&t, lead.id).await;
    assert!(steps.contains(&"welcome/wait_2d:waiting".to_string()), "{steps:?}");
    assert!(
        steps.contains(&"industry-drip/wait_insight:waiting".to_string()),
        "{steps:?}"
    );
    t.clock.advance(Duration::hours(1));
    // Three webinars: score 60 in the icp segment, MQL, and the goal of both campaigns holds.
    ingest(
        &t,
        (0..3)
            .map(|_| event("goal@x.example", "webinar_attended", json!({})))
            .collect(),
    )
    .await;
    assert_eq!(by_email(&t, "goal@x.example").await.lead.stage, Stage::HandedOff);
    let steps = journey(&t, lead.id).await;
    assert!(steps.contains(&"welcome/wait_2d:goal".to_string()), "{steps:?}");
    assert!(
        steps.contains(&"industry-drip/wait_insight:goal".to_string()),
        "{steps:?}"
    );
    assert_eq!(
        t.engine.next_wake().await.unwrap(),
        None,
        "no enrollment waits any more"
    );
}

async fn two_workers_share_due_work_and_no_step_runs_twice(t: TestEngine) {
    let events: Vec<EventInput> = (0..60)
        .map(|i| event(&format!("w{i}@x.example"), "registered", json!({})))
        .collect();
    ingest(&t, events).await;
    t.clock.advance(Duration::days(2));
    let second = Arc::new(nurture_engine::engine::Engine::new(
        t.store.store.clone(),
        crate::support::playbook(),
        Arc::new(t.clock.clone()),
    ));
    let workers: Vec<_> = [t.engine.clone(), second]
        .into_iter()
        .map(|engine| {
            tokio::spawn(async move {
                let mut moved = 0;
                loop {
                    match engine.run_due(7).await.unwrap() {
                        0 => return moved,
                        n => moved += n,
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.await.unwrap();
    }
    assert_eq!(total, 60, "every due enrollment moved once");
    for i in 0..60 {
        let lead = by_email(&t, &format!("w{i}@x.example")).await.lead;
        let steps = journey(&t, lead.id).await;
        assert_eq!(
            steps.iter().filter(|s| s.as_str() == "welcome/wait_2d:waited").count(),
            1,
            "{steps:?}"
        );
        let sent: Vec<_> = messages(&t, lead.id).await.into_iter().map(|m| m.1).collect();
        assert_eq!(sent, ["welcome", "getting_started"]);
    }
    // The per-step counters, written by both workers, agree with the journeys.
    let counts = t.store.store.step_counts("welcome").await.unwrap();
    let of = |step: &str| {
        counts
            .iter()
            .find(|c| c.step == step)
            .unwrap_or_else(|| panic!("{step}: {counts:?}"))
    };
    assert_eq!((of("welcome").entered, of("welcome").outcomes["sent"]), (60, 60));
    let wait = of("wait_2d");
    assert_eq!(
        (
            wait.entered,
            wait.outcomes["waiting"],
            wait.outcomes["waited"],
            wait.waiting
        ),
        (60, 60, 60, 0),
        "leaving a wait is not arriving at it"
    );
    assert_eq!((of("getting_started").entered, of("wait_3d").waiting), (60, 60));
}

async fn leads_that_already_match_enter_a_deployed_campaign(t: TestEngine) {
    t.engine.deploy_current(Deployer::cli()).await.unwrap();
    t.engine
        .set_campaign_status(
            "industry-drip",
            nurture_engine::store::CampaignStatus::Paused,
            &By::api("marketer"),
        )
        .await
        .unwrap();
    for i in 0..3 {
        upsert(&t, json!({"email": format!("m{i}@x.example"), "industry": "Energy"})).await;
    }
    upsert(&t, json!({"email": "none@x.example"})).await;
    let lead = by_email(&t, "m0@x.example").await.lead;
    assert!(journey(&t, lead.id).await.is_empty(), "paused: nobody enters");
    t.engine
        .set_campaign_status(
            "industry-drip",
            nurture_engine::store::CampaignStatus::Active,
            &By::api("marketer"),
        )
        .await
        .unwrap();
    let entered = t
        .engine
        .enter_matching(&["industry-drip".into(), "welcome".into()])
        .await
        .unwrap();
    assert_eq!(
        entered, 3,
        "the three leads with an industry; the event-triggered welcome is not entered this way"
    );
    assert_eq!(
        journey(&t, lead.id).await,
        ["industry-drip/insight:sent", "industry-drip/wait_insight:waiting"]
    );
    assert_eq!(
        t.engine.enter_matching(&["industry-drip".into()]).await.unwrap(),
        0,
        "once"
    );
}

/// Whether a pass over `leads` decided in the snapshot numbered `seq` gets to write: its
/// staged transaction commits, or finds when it comes to write that it is `Stale`.
async fn pass_writes(store: &SqliteStore, seq: i64, leads: &[i64]) -> bool {
    match store.begin_checked(seq, leads).commit().await {
        Ok(()) => true,
        Err(StoreError::Stale) => false,
        Err(e) => panic!("a checked pass failed: {e}"),
    }
}

/// SQLite: a journey pass may decide in a snapshot and write later, if everything committed
/// meanwhile was a journey pass over other leads. (PostgreSQL locks rows instead.)
#[tokio::test]
async fn sqlite_a_pass_decided_in_a_snapshot_writes_only_if_nothing_it_read_changed() {
    let (t, store) = crate::support::sqlite_engine().await;
    let store = &*store;
    let snapshot = store.begin_snapshot().await.unwrap();
    drop(snapshot.tx);
    // A pass over leads 1 and 2 commits after the snapshot.
    store.begin_pass(&[2, 1]).await.unwrap().commit().await.unwrap();
    assert!(
        !pass_writes(store, snapshot.seq, &[1, 3]).await,
        "lead 1 was written since the snapshot"
    );
    assert!(
        pass_writes(store, snapshot.seq, &[3, 4]).await,
        "a pass over other leads does not stop this one"
    );
    // Any write that is not a journey pass stops every pass decided before it.
    let later = store.begin_snapshot().await.unwrap();
    drop(later.tx);
    assert!(pass_writes(store, later.seq, &[9]).await);
    upsert(&t, json!({"email": "changed@x.example"})).await;
    assert!(
        !pass_writes(store, later.seq, &[9]).await,
        "an upsert committed since the snapshot"
    );
    t.engine.deploy_current(Deployer::cli()).await.unwrap();
    let before_pause = store.begin_snapshot().await.unwrap();
    drop(before_pause.tx);
    t.engine
        .set_campaign_status("welcome", CampaignStatus::Paused, &By::api("marketer"))
        .await
        .unwrap();
    assert!(
        !pass_writes(store, before_pause.seq, &[9]).await,
        "a campaign paused since the snapshot"
    );
    // A write transaction that is dropped takes no number for good.
    let fresh = store.begin_snapshot().await.unwrap();
    drop(fresh.tx);
    drop(store.begin().await.unwrap());
    assert!(pass_writes(store, fresh.seq, &[9]).await);
    // A pass that finds its snapshot out of date only when it comes to write writes nothing
    // of what it staged; one that is still fresh writes all of it.
    let Upserted::Created(view) = upsert(&t, json!({"email": "staged@x.example"})).await else {
        panic!("a new lead")
    };
    let mut lead = view.lead;
    let id = lead.id.0;
    lead.score = 77;
    let stale = store.begin_snapshot().await.unwrap();
    drop(stale.tx);
    let mut pass = store.begin_checked(stale.seq, &[id]);
    store.begin_pass(&[id]).await.unwrap().commit().await.unwrap();
    pass.write_lead_activity(&[ActivityRow::from(&lead)]).await.unwrap();
    assert!(matches!(pass.commit().await, Err(StoreError::Stale)));
    assert_eq!(
        by_email(&t, "staged@x.example").await.lead.score,
        0,
        "nothing of a stale pass is written"
    );
    let now = store.begin_snapshot().await.unwrap();
    drop(now.tx);
    let mut pass = store.begin_checked(now.seq, &[id]);
    pass.write_lead_activity(&[ActivityRow::from(&lead)]).await.unwrap();
    pass.commit().await.unwrap();
    assert_eq!(by_email(&t, "staged@x.example").await.lead.score, 77);
}

/// Two runner tasks moving due waits, `batch` leads a pass, until none is due.
fn two_runners(t: &TestEngine, batch: i64) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2)
        .map(|_| {
            let engine = t.engine.clone();
            tokio::spawn(async move { while engine.run_due(batch).await.unwrap() > 0 {} })
        })
        .collect()
}

/// Runner passes move enrollments while events make the same leads reach their campaigns'
/// goal. Whichever comes first, an enrollment that ended by its goal stays ended: a pass that
/// decided before the goal was reached must not write its stale decision over it.
async fn runner_passes_beside_goals_reached_by_events_never_undo_an_exit(t: TestEngine) {
    let emails: Vec<String> = (0..80).map(|i| format!("race{i}@x.example")).collect();
    for email in &emails {
        upsert(
            &t,
            json!({"email": email, "industry": "Energy", "company_size": "1000+"}),
        )
        .await;
    }
    ingest(&t, emails.iter().map(|e| event(e, "registered", json!({}))).collect()).await;
    t.clock.advance(Duration::days(2) + Duration::hours(1));
    let runners = two_runners(&t, 5);
    // Three webinars each: score 60 in the icp segment, MQL, and the goals hold.
    for email in &emails {
        ingest(
            &t,
            (0..3).map(|_| event(email, "webinar_attended", json!({}))).collect(),
        )
        .await;
    }
    for runner in runners {
        runner.await.unwrap();
    }
    while t.engine.run_due(100).await.unwrap() > 0 {}
    assert_eq!(
        t.engine.next_wake().await.unwrap(),
        None,
        "no enrollment waits any more"
    );
    for email in &emails {
        let lead = by_email(&t, email).await.lead;
        assert_eq!(lead.stage, Stage::HandedOff, "{email}");
        let steps = journey(&t, lead.id).await;
        let welcome: Vec<&String> = steps.iter().filter(|s| s.starts_with("welcome/")).collect();
        let goal = welcome.iter().position(|s| s.ends_with(":goal"));
        assert_eq!(
            goal,
            Some(welcome.len() - 1),
            "the goal ends the welcome series: {steps:?}"
        );
        let sent: Vec<String> = messages(&t, lead.id).await.into_iter().map(|m| m.1).collect();
        assert!(sent.iter().filter(|m| *m == "getting_started").count() <= 1, "{sent:?}");
    }
}

/// Leads enrolled by hand while runner passes move the same leads' waits: each enters, none is
/// left out because a runner pass held it at that moment.
async fn hand_enrollment_beside_runner_passes_enrolls_every_lead(t: TestEngine) {
    let emails: Vec<String> = (0..120).map(|i| format!("both{i}@x.example")).collect();
    ingest(&t, emails.iter().map(|e| event(e, "registered", json!({}))).collect()).await;
    let mut ids = Vec::new();
    for email in &emails {
        ids.push(by_email(&t, email).await.lead.id.0);
    }
    t.clock.advance(Duration::days(2) + Duration::hours(1));
    let runners = two_runners(&t, 3);
    let mut enrolled = 0;
    for chunk in ids.chunks(3) {
        let refs: Vec<LeadRef> = chunk.iter().map(|id| LeadRef::by_id(*id)).collect();
        let report = t.engine.enroll("industry-drip", &refs, &By::cli()).await.unwrap();
        assert!(report.not_found.is_empty(), "{report:?}");
        enrolled += report.enrolled;
    }
    for runner in runners {
        runner.await.unwrap();
    }
    assert_eq!(enrolled, 120, "every lead entered the drip by hand");
    // An enrolling pass also moves the lead's due waits, so the runners moved only some of
    // them; each ended once.
    for id in ids {
        let steps = journey(&t, LeadId(id)).await;
        assert_eq!(
            steps.iter().filter(|s| s.as_str() == "welcome/wait_2d:waited").count(),
            1,
            "{steps:?}"
        );
    }
}

/// The dispatcher sleeps until mail is queued: the commit of a transaction that queued a
/// message wakes it (on PostgreSQL through `NOTIFY`, as another process's would).
async fn a_commit_that_queues_mail_wakes_the_dispatcher(t: TestEngine) {
    let queued = t.store.store.mail_queued().await;
    let within = std::time::Duration::from_secs(10);
    // An event that starts no campaign queues nothing; the registration enters the welcome
    // series, whose first step queues an e-mail.
    ingest(&t, vec![event("quiet@x.example", "page_view", json!({}))]).await;
    ingest(&t, vec![event("wake@x.example", "registered", json!({}))]).await;
    tokio::time::timeout(within, queued.notified())
        .await
        .expect("the commit that queued an e-mail woke the dispatcher");
    let lead = by_email(&t, "wake@x.example").await.lead;
    assert_eq!(messages(&t, lead.id).await.len(), 1);
    let quiet = by_email(&t, "quiet@x.example").await.lead;
    assert!(messages(&t, quiet.id).await.is_empty());
}

/// A deployment keeps its files, who made it and what it changed; the same content again
/// records nothing; an engine on the same database (another process) follows the latest.
async fn a_deployment_is_kept_whole_and_another_process_follows_it(t: TestEngine) {
    use nurture_engine::playbook::bundle::Bundle;
    use nurture_engine::store::Origin;
    let first = t.engine.deploy_current(Deployer::cli()).await.unwrap();
    assert!(!first.unchanged);
    let again = t.engine.deploy_current(Deployer::cli()).await.unwrap();
    assert_eq!((again.deployment, again.unchanged), (first.deployment, true));

    let other =
        nurture_engine::engine::Engine::new(t.store.store.clone(), Default::default(), Arc::new(t.clock.clone()));
    assert_eq!(other.resume_deployment().await.unwrap(), Some(first.deployment));
    assert_eq!(other.bundle().hash(), t.engine.bundle().hash());
    assert_eq!(other.playbook().campaigns.len(), t.engine.playbook().campaigns.len());
    assert_eq!(other.resume_deployment().await.unwrap(), None, "nothing new to follow");

    // A smaller playbook from the API: recorded with its actor, origin and what it retired.
    let shipped = t.engine.bundle();
    let kept: Vec<_> = shipped
        .files()
        .into_iter()
        .filter(|f| f.path != "campaigns/webinar-follow-up.yaml")
        .collect();
    let smaller = Bundle::from_files(kept).unwrap().build("campaigns").unwrap();
    let by = Deployer {
        actor: "mei".into(),
        origin: Origin::Api,
        restored_from: None,
    };
    let second = t.engine.deploy(smaller, by).await.unwrap();
    assert_eq!(second.report.retired, ["webinar-follow-up"]);
    assert!(
        second
            .warnings
            .iter()
            .any(|w| w.message.contains("retires the campaign")),
        "{:?}",
        second.warnings
    );
    let read = t.engine.deployment(Some(second.deployment)).await.unwrap().unwrap();
    assert_eq!((read.head.actor.as_str(), read.head.origin), ("mei", Origin::Api));
    assert_eq!(read.head.report.retired, ["webinar-follow-up"]);
    assert_eq!(read.head.content_hash, second.content_hash);
    assert_eq!(Bundle::from_files(read.files).unwrap().hash(), second.content_hash);

    assert_eq!(other.resume_deployment().await.unwrap(), Some(second.deployment));
    assert!(!other.playbook().campaigns.contains_key("webinar-follow-up"));
    let heads = t.engine.deployments(None, 10).await.unwrap();
    let ids: Vec<i64> = heads.iter().map(|h| h.id).collect();
    assert_eq!(ids, [second.deployment, first.deployment]);
    assert_eq!(
        t.engine.deployments(Some(second.deployment), 10).await.unwrap().len(),
        1
    );
}

/// The audit entry of pausing campaign `id` by hand, for calls to the store.
fn pause_audit(id: &str) -> nurture_engine::audit::Change {
    By::api("marketer").did(AuditKind::CampaignPaused, id, json!({}))
}
