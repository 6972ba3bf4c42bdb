//! The step function on a manual timeline: every step kind and the conditions they ask.

use super::*;
use crate::lead::Stage;
use crate::pacing::{Pacing, Unpaced};
use crate::playbook::Playbook;
use crate::template::Templates;
use std::sync::Arc;

fn t(hours: i64) -> DateTime<Utc> {
    "2026-11-02T09:00:00Z".parse::<DateTime<Utc>>().unwrap() + chrono::Duration::hours(hours)
}

/// A playbook with one campaign `c` whose steps are `steps`, and `exit_when` if given.
fn playbook(exit_when: &str, steps: &str) -> Playbook {
    let campaign = format!(
        "kind: Campaign\nid: c\nname: C\ntype: drip\nentry: {{ trigger: manual }}\n{exit_when}start: a\nsteps:\n{steps}"
    );
    let other = "kind: Campaign\nid: other\nname: Other\ntype: drip\nentry: { trigger: manual }\nstart: x\nsteps:\n  x: { exit: done }\n";
    let queues = "kind: Queues\nqueues:\n  sdr: { sla: 4h }\n";
    let templates = Templates::from_sources(
        None,
        [("hello", "Hello"), ("hello-cxo", "Hello, chief"), ("bye", "Bye")]
            .iter()
            .flat_map(|(n, s)| {
                [
                    (format!("{n}.hbs"), format!("<p>{s}</p>")),
                    (format!("{n}.subject.hbs"), s.to_string()),
                ]
            })
            .collect(),
    );
    Playbook::from_files(
        &[
            ("c.yaml".into(), campaign),
            ("other.yaml".into(), other.into()),
            ("queues.yaml".into(), queues.into()),
        ],
        Arc::new(templates),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

struct Run {
    playbook: Playbook,
    enrollment: Enrollment,
    lead: Lead,
    tags: BTreeSet<String>,
    events: Vec<EventFact>,
    messages: Vec<MessageFact>,
    /// When e-mails went out, for the pacer's caps.
    sent: Vec<DateTime<Utc>>,
}

impl Run {
    fn new(playbook: Playbook) -> Self {
        let lead = Lead::new(LeadId(42), t(0));
        let enrollment = Enrollment::start(1, &playbook.campaigns["c"], lead.id, t(0));
        Self {
            playbook,
            enrollment,
            lead,
            tags: BTreeSet::new(),
            events: Vec::new(),
            messages: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Advances at `now`; returns the journey's outcomes, as `step:outcome`.
    fn at(&mut self, now: DateTime<Utc>) -> (Vec<String>, Vec<Effect>) {
        let mut facts = JourneyFacts {
            lead: std::borrow::Cow::Owned(self.lead.clone()),
            tags: self.tags.clone(),
            events: &self.events,
            messages: &self.messages,
            enrolling_event: None,
        };
        let rules = &self.playbook.rules;
        let mut pacing = Pacing::new(rules, self.lead.id, self.lead.timezone(rules.default_timezone));
        for at in &self.sent {
            pacing.sent(Channel::Email, *at);
        }
        let out = advance(
            &self.playbook.campaigns["c"],
            self.enrollment.clone(),
            &mut facts,
            &self.playbook.segments,
            &mut pacing,
            now,
        );
        for effect in &out.effects {
            if let Effect::Send { skipped: None, .. } = effect {
                self.sent.push(now);
            }
        }
        self.enrollment = out.enrollment;
        self.lead = facts.lead.into_owned();
        self.tags = facts.tags;
        (
            out.journey
                .iter()
                .map(|j| format!("{}:{}", j.step, j.outcome))
                .collect(),
            out.effects,
        )
    }

    fn opened(&mut self, step: &str) {
        self.messages.push(MessageFact {
            step: step.into(),
            id: 8812,
            opened: true,
            ..Default::default()
        });
    }
}

const DRIP: &str = concat!(
    "  a: { send: { channel: email, template: hello }, next: w }\n",
    "  w: { wait: { for: 3d }, next: b }\n",
    "  b: { branch: { if: { opened: a }, then: yes, else: no } }\n",
    "  yes: { tag: { add: [engagement:deep] }, next: done }\n",
    "  no: { exit: returned_to_pool }\n",
    "  done: { exit: engaged }\n",
);

#[test]
fn a_three_day_wait_ends_at_three_days_not_before() {
    let mut run = Run::new(playbook("", DRIP));
    let (steps, effects) = run.at(t(0));
    assert_eq!(steps, ["a:sent", "w:waiting"]);
    assert_eq!(
        effects,
        [Effect::Send {
            step: "a".into(),
            channel: Channel::Email,
            template: "hello".into(),
            seq: 0,
            skipped: None,
        }]
    );
    assert_eq!(run.enrollment.status, Status::Waiting);
    assert_eq!(run.enrollment.wake_at, Some(t(72)));
    // A minute early: nothing moves.
    let (steps, _) = run.at(t(72) - chrono::Duration::minutes(1));
    assert!(steps.is_empty());
    assert_eq!(run.enrollment.step, "w");
    let (steps, _) = run.at(t(72));
    assert_eq!(steps, ["w:waited", "b:no", "no:completed"]);
    assert_eq!(
        (run.enrollment.status, run.enrollment.outcome.as_deref()),
        (Status::Completed, Some("returned_to_pool"))
    );
}

#[test]
fn a_branch_on_opened_takes_yes_after_a_human_open() {
    let mut run = Run::new(playbook("", DRIP));
    run.at(t(0));
    run.opened("a");
    let (steps, effects) = run.at(t(72));
    assert_eq!(steps, ["w:waited", "b:yes", "yes:tagged", "done:completed"]);
    assert_eq!(
        effects,
        [Effect::Tag {
            step: "yes".into(),
            add: vec!["engagement:deep".into()],
            remove: vec![]
        }]
    );
    assert!(run.tags.contains("engagement:deep"));
}

#[test]
fn the_journey_log_says_why() {
    let mut run = Run::new(playbook("", DRIP));
    run.at(t(0));
    let mut facts = JourneyFacts {
        lead: std::borrow::Cow::Owned(run.lead.clone()),
        tags: BTreeSet::new(),
        events: &[],
        messages: &[],
        enrolling_event: None,
    };
    let out = advance(
        &run.playbook.campaigns["c"],
        run.enrollment.clone(),
        &mut facts,
        &Segments::new(),
        &mut Unpaced,
        t(72),
    );
    assert_eq!(out.journey[1].detail, "branch b: no (no message from step a)");
    assert_eq!(out.journey[0].detail, "wait 3d passed at 2026-11-05T09:00:00+00:00");

    // With the message: its id, and whether a person opened it.
    for (opened, why) in [
        (
            false,
            "branch b: no (no human open of message 8812 by 2026-11-05T09:00Z)",
        ),
        (true, "branch b: yes (human open of message 8812)"),
    ] {
        let messages = [MessageFact {
            step: "a".into(),
            id: 8812,
            opened,
            ..Default::default()
        }];
        let mut facts = JourneyFacts {
            lead: std::borrow::Cow::Owned(run.lead.clone()),
            tags: BTreeSet::new(),
            events: &[],
            messages: &messages,
            enrolling_event: None,
        };
        let out = advance(
            &run.playbook.campaigns["c"],
            run.enrollment.clone(),
            &mut facts,
            &Segments::new(),
            &mut Unpaced,
            t(72),
        );
        assert_eq!(out.journey[1].detail, why);
    }
}

#[test]
fn conditions_without_messages_say_what_was_asked_and_when() {
    let campaign = concat!(
        "  a: { branch: { if: { tag: persona:cxo }, then: y, else: n } }\n",
        "  y: { exit: cxo }\n",
        "  n: { exit: other }\n",
    );
    let run = Run::new(playbook("", campaign));
    let mut facts = JourneyFacts {
        lead: std::borrow::Cow::Owned(run.lead.clone()),
        tags: BTreeSet::new(),
        events: &[],
        messages: &[],
        enrolling_event: None,
    };
    let out = advance(
        &run.playbook.campaigns["c"],
        run.enrollment.clone(),
        &mut facts,
        &Segments::new(),
        &mut Unpaced,
        t(0),
    );
    let detail = &out.journey[0].detail;
    assert_eq!(
        detail,
        "branch a: no (tag persona:cxo? false at 2026-11-02T09:00:00+00:00)"
    );
}

#[test]
fn an_open_during_until_wakes_at_once_and_the_timeout_otherwise() {
    let steps = concat!(
        "  a: { send: { channel: email, template: hello }, next: w }\n",
        "  w: { wait: { until: { opened: a }, timeout: 3d }, next: b }\n",
        "  b: { branch: { if: { opened: a }, then: y, else: n } }\n",
        "  y: { exit: opened }\n",
        "  n: { exit: not_opened }\n",
    );
    let mut run = Run::new(playbook("", steps));
    run.at(t(0));
    assert_eq!(run.at(t(5)).0, Vec::<String>::new(), "nothing yet");
    run.opened("a");
    let (journey, _) = run.at(t(6));
    assert_eq!(
        journey,
        ["w:waited", "b:yes", "y:completed"],
        "woken by the open at hour 6"
    );

    let mut run = Run::new(playbook("", steps));
    run.at(t(0));
    assert_eq!(run.at(t(72)).0, ["w:waited", "b:no", "n:completed"]);
}

#[test]
fn exit_when_removes_a_lead_mid_wait() {
    let mut run = Run::new(playbook("exit_when: { stage: [handed_off, customer] }\n", DRIP));
    run.at(t(0));
    run.lead.stage = Stage::Customer;
    let (journey, effects) = run.at(t(10));
    assert_eq!(journey, ["w:goal"]);
    assert!(effects.is_empty());
    assert_eq!(
        (
            run.enrollment.status,
            run.enrollment.outcome.as_deref(),
            run.enrollment.wake_at
        ),
        (Status::Exited, Some("goal"), None)
    );
}

#[test]
fn tags_and_scores_are_seen_by_later_steps() {
    let steps = concat!(
        "  a: { score: 30, next: b }\n",
        "  b: { tag: { add: [x], remove: [old] }, next: c }\n",
        "  c: { branch: { if: { all: [ { score: { gte: 30 } }, { tag: x }, { not: { tag: old } } ] }, then: h, else: e } }\n",
        "  h: { handoff: { queue: sdr, reason: Hot, priority: 80 } }\n",
        "  e: { exit: cold }\n",
    );
    let mut run = Run::new(playbook("", steps));
    run.tags.insert("old".into());
    let (journey, effects) = run.at(t(0));
    assert_eq!(journey, ["a:scored", "b:tagged", "c:yes", "h:handed_off"]);
    assert_eq!(
        effects.last(),
        Some(&Effect::Handoff {
            step: "h".into(),
            queue: "sdr".into(),
            reason: "Hot".into(),
            priority: 80
        })
    );
    assert_eq!(run.enrollment.status, Status::HandedOff);
    assert_eq!(run.lead.score, 30);
}

#[test]
fn variants_pick_the_first_that_matches() {
    let steps = "  a: { send: { channel: email, template: hello, variants: [ { when: { tag: persona:cxo }, template: hello-cxo } ] }, next: e }\n  e: { exit: completed }\n";
    let mut run = Run::new(playbook("", steps));
    run.tags.insert("persona:cxo".into());
    let (_, effects) = run.at(t(0));
    assert!(matches!(&effects[0], Effect::Send { template, .. } if template == "hello-cxo"));
    assert_eq!(
        (run.enrollment.status, run.enrollment.outcome.as_deref()),
        (Status::Completed, Some("completed"))
    );
}

#[test]
fn splits_are_deterministic_per_lead_and_follow_the_weights() {
    let steps = concat!(
        "  a: { split: [ { weight: 3, next: x }, { weight: 1, next: y } ] }\n",
        "  x: { exit: x }\n",
        "  y: { exit: y }\n",
    );
    let pb = playbook("", steps);
    let mut xs = 0;
    for lead in 0..4000 {
        let run = |now| {
            let mut facts = JourneyFacts {
                lead: std::borrow::Cow::Owned(Lead::new(LeadId(lead), t(0))),
                tags: BTreeSet::new(),
                events: &[],
                messages: &[],
                enrolling_event: None,
            };
            let e = Enrollment::start(1, &pb.campaigns["c"], LeadId(lead), t(0));
            advance(&pb.campaigns["c"], e, &mut facts, &pb.segments, &mut Unpaced, now)
                .enrollment
                .outcome
        };
        let first = run(t(0));
        assert_eq!(first, run(t(5)), "the same lead takes the same arm");
        if first.as_deref() == Some("x") {
            xs += 1;
        }
    }
    assert!((2800..3200).contains(&xs), "weight 3 of 4: {xs} of 4000");
}

#[test]
fn enroll_hands_on_to_another_campaign() {
    let mut run = Run::new(playbook("", "  a: { enroll: { campaign: other } }\n"));
    let (journey, effects) = run.at(t(0));
    assert_eq!(journey, ["a:enrolled"]);
    assert_eq!(
        effects,
        [Effect::Enroll {
            step: "a".into(),
            campaign: "other".into()
        }]
    );
    assert_eq!(run.enrollment.outcome.as_deref(), Some("enrolled:other"));
}

#[test]
fn reentry_policies() {
    let pb = playbook("", DRIP);
    let mut ended = Enrollment::start(1, &pb.campaigns["c"], LeadId(1), t(0));
    ended.status = Status::Completed;
    ended.updated_at = t(24);
    let mut open = ended.clone();
    open.status = Status::Waiting;
    assert!(may_enter(Reentry::Never, &[], t(0)));
    assert!(!may_enter(Reentry::Always, &[&open], t(100)), "never twice at once");
    assert!(!may_enter(Reentry::Never, &[&ended], t(1000)));
    assert!(may_enter(Reentry::Always, &[&ended], t(25)));
    let after = Reentry::After("30d".parse().unwrap());
    assert!(!may_enter(after, &[&ended], t(24 + 24 * 29)));
    assert!(may_enter(after, &[&ended], t(24 + 24 * 30)));
}

#[test]
fn a_send_outside_its_window_waits_at_the_step_and_events_do_not_hurry_it() {
    let window = "send_window: { days: [mon, tue, wed, thu, fri], from: \"09:00\", to: \"18:00\", spread: 10m }\n";
    let mut run = Run::new(playbook(window, DRIP));
    // Saturday 2026-11-07 09:00 UTC.
    let saturday = t(5 * 24);
    let (steps, effects) = run.at(saturday);
    assert_eq!(steps, ["a:deferred"]);
    assert!(effects.is_empty(), "nothing is sent on a Saturday");
    assert_eq!(run.enrollment.status, Status::Waiting);
    let until = run.enrollment.wake_at.unwrap();
    let monday = t(7 * 24);
    assert!(
        until >= monday && until < monday + chrono::Duration::minutes(10),
        "{until}"
    );
    // An event on Sunday moves nothing.
    run.opened("a");
    let (steps, _) = run.at(t(6 * 24));
    assert!(steps.is_empty(), "{steps:?}");
    // At the opening the send goes and the flow goes on.
    let (steps, effects) = run.at(until);
    assert_eq!(steps, ["a:sent", "w:waiting"]);
    assert_eq!(effects.len(), 1);
}

#[test]
fn a_deferred_send_counts_once_as_an_arrival() {
    let window = "send_window: { days: [mon], from: \"09:00\", to: \"10:00\" }\n";
    let mut run = Run::new(playbook(window, DRIP));
    let saturday = t(5 * 24);
    let mut facts = JourneyFacts {
        lead: std::borrow::Cow::Owned(run.lead.clone()),
        tags: BTreeSet::new(),
        events: &[],
        messages: &[],
        enrolling_event: None,
    };
    let campaign = &run.playbook.campaigns["c"];
    let mut pacing = Pacing::new(&run.playbook.rules, run.lead.id, chrono_tz::UTC);
    let first = advance(
        campaign,
        run.enrollment.clone(),
        &mut facts,
        &Segments::new(),
        &mut pacing,
        saturday,
    );
    assert!(first.journey[0].arrived);
    let due = first.enrollment.wake_at.unwrap();
    let second = advance(
        campaign,
        first.enrollment,
        &mut facts,
        &Segments::new(),
        &mut pacing,
        due,
    );
    assert_eq!(second.journey[0].outcome, "sent");
    assert!(
        !second.journey[0].arrived,
        "the enrollment arrived at `a` once, when it was deferred"
    );
    run.enrollment = second.enrollment;
}

#[test]
fn a_send_at_its_cap_is_skipped_when_the_step_says_so() {
    let steps = concat!(
        "  a: { send: { channel: email, template: hello }, next: b }\n",
        "  b: { send: { channel: email, template: bye, on_cap: skip }, next: done }\n",
        "  done: { exit: done }\n",
    );
    let rules = "kind: Rules\nfrequency: { email: { max: 1, per: 1d } }\n";
    let mut pb = playbook("", steps);
    let mut files = pb.sources.clone();
    files.push(("rules.yaml".into(), rules.into()));
    pb = Playbook::from_files(&files, pb.templates.clone()).unwrap_or_else(|e| panic!("{e}"));
    let mut run = Run::new(pb);
    let (steps, effects) = run.at(t(0));
    assert_eq!(steps, ["a:sent", "b:skipped", "done:completed"]);
    assert_eq!(effects.len(), 1, "{effects:?}");
}

#[test]
fn a_minute_is_written_as_chrono_writes_it() {
    use chrono::TimeZone;
    let times = [
        Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 59).unwrap(),
        Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
        Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(-1, 6, 15, 12, 30, 0).unwrap(),
    ];
    for time in times {
        assert_eq!(
            super::Minute(time).to_string(),
            time.format("%Y-%m-%dT%H:%MZ").to_string(),
            "{time:?}"
        );
    }
}

mod properties {
    //! Any sequence of what can happen to a lead (opens, tags, stage changes, time passing)
    //! over small valid campaigns: after every advance the enrollment waits or has ended, no
    //! step sends twice, an ended enrollment does nothing more, and the log explains each move.

    use super::*;
    use proptest::prelude::*;

    /// Small campaigns of every step kind: sends, waits (fixed and `until` with a timeout),
    /// branches on opens, tags and scores, tagging, scoring, a handoff, exits, and a goal.
    const SHAPES: [(&str, &str); 4] = [
        ("", DRIP),
        (
            "",
            concat!(
                "  a: { send: { channel: email, template: hello }, next: w }\n",
                "  w: { wait: { until: { opened: a }, timeout: 3d }, next: b }\n",
                "  b: { branch: { if: { opened: a }, then: y, else: m } }\n",
                "  m: { send: { channel: email, template: bye }, next: w2 }\n",
                "  w2: { wait: { for: 2d }, next: n }\n",
                "  y: { exit: opened }\n",
                "  n: { exit: not_opened }\n",
            ),
        ),
        (
            "exit_when: { stage: [customer] }\n",
            concat!(
                "  a: { score: 30, next: b }\n",
                "  b: { wait: { for: 1d }, next: c }\n",
                "  c: { branch: { if: { all: [ { score: { gte: 30 } }, { tag: x } ] }, then: h, else: s } }\n",
                "  s: { send: { channel: email, template: hello-cxo }, next: w }\n",
                "  w: { wait: { for: 2d }, next: e }\n",
                "  h: { handoff: { queue: sdr, reason: Hot, priority: 80 } }\n",
                "  e: { exit: cold }\n",
            ),
        ),
        (
            "exit_when: { tag: stop }\n",
            concat!(
                "  a: { tag: { add: [x] }, next: s }\n",
                "  s: { send: { channel: email, template: hello }, next: w }\n",
                "  w: { wait: { until: { tag: go }, timeout: 5d }, next: t }\n",
                "  t: { send: { channel: email, template: bye }, next: d }\n",
                "  d: { exit: done }\n",
            ),
        ),
    ];

    /// What happens to the lead before the next advance.
    #[derive(Debug, Clone)]
    enum Happening {
        Nothing,
        Opens(&'static str),
        Tagged(&'static str),
        BecomesCustomer,
    }

    fn happening() -> impl Strategy<Value = Happening> {
        prop_oneof![
            Just(Happening::Nothing),
            prop::sample::select(vec!["a", "m", "s"]).prop_map(Happening::Opens),
            prop::sample::select(vec!["x", "go", "stop"]).prop_map(Happening::Tagged),
            Just(Happening::BecomesCustomer),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn every_advance_ends_or_waits_sends_once_and_explains_itself(
            shape in 0usize..SHAPES.len(),
            story in prop::collection::vec((0i64..100, happening()), 1..20),
        ) {
            let (exit_when, steps) = SHAPES[shape];
            let mut run = Run::new(playbook(exit_when, steps));
            let mut now = t(0);
            let mut sent_steps: Vec<String> = Vec::new();
            for (i, (hours, happening)) in story.into_iter().enumerate() {
                if i > 0 {
                    now += chrono::Duration::hours(hours);
                    match happening {
                        Happening::Nothing => {}
                        Happening::Opens(step) => run.opened(step),
                        Happening::Tagged(tag) => {
                            run.tags.insert(tag.to_owned());
                        }
                        Happening::BecomesCustomer => run.lead.stage = Stage::Customer,
                    }
                }
                let before = run.enrollment.clone();
                let (journey, effects) = run.at(now);
                let after = &run.enrollment;
                prop_assert!(after.status != Status::Active, "left active at {}: {journey:?}", after.step);
                if after.status == Status::Waiting {
                    prop_assert!(after.wake_at.is_some_and(|w| w > now), "waits with no wake-up ahead: {after:?}");
                }
                if !before.status.is_open() {
                    prop_assert!(journey.is_empty() && effects.is_empty(), "an ended enrollment moved: {journey:?}");
                }
                if after.step != before.step || after.status != before.status {
                    prop_assert!(!journey.is_empty(), "{} -> {} with nothing in the log", before.step, after.step);
                }
                if let Some(last) = journey.last() {
                    prop_assert!(last.starts_with(&format!("{}:", after.step)), "the log ends at {last}, the enrollment at {}", after.step);
                }
                for effect in effects {
                    if let Effect::Send { step, .. } = effect {
                        prop_assert!(!sent_steps.contains(&step), "step {step} sent twice");
                        sent_steps.push(step);
                    }
                }
            }
        }
    }
}

#[test]
fn edge_counts_follow_typed_outcomes_and_split_arms_in_written_order() {
    let steps = concat!(
        "  a: { split: [ { weight: 3, next: b }, { weight: 1, next: w } ] }\n",
        "  b: { branch: { if: { tag: vip }, then: x, else: w } }\n",
        "  w: { wait: { for: 1d }, next: x }\n",
        "  x: { exit: done }\n",
    );
    let pb = playbook("", steps);
    let lines = [
        ("a", Outcome::Arm(1), 7),
        ("a", Outcome::Arm(2), 2),
        ("b", Outcome::Yes, 4),
        ("b", Outcome::No, 3),
        ("w", Outcome::Waiting, 5),
        ("w", Outcome::Waited, 4),
    ];
    let counts = edge_counts(&pb.campaigns["c"], lines);
    let edge = |from: &str, to: &str| counts.get(&(from.to_owned(), to.to_owned())).copied();
    assert_eq!(edge("a", "b"), Some(7), "arm 1 is the first arm written");
    assert_eq!(edge("a", "w"), Some(2));
    assert_eq!(edge("b", "x"), Some(4));
    assert_eq!(edge("b", "w"), Some(3));
    assert_eq!(
        edge("w", "x"),
        Some(4),
        "a wait goes on when it is over, not when it begins"
    );
    assert_eq!(edge("x", "a"), None, "a step without lines has no counts");
}

/// A webinar reminder: the day before the date the lead registered for, read in the lead's
/// time zone; the same wait for a lead whose day before has passed goes on at once and says
/// so, and one without the date says what is missing.
#[test]
fn a_wait_until_a_date_of_the_lead_ends_then_and_a_past_one_goes_on_at_once() {
    let steps = concat!(
        "  a: { wait: { until: { attribute: webinar_at, offset: -1d } }, next: b }\n",
        "  b: { send: { channel: email, template: hello }, next: done }\n",
        "  done: { exit: reminded }\n",
    );
    let mut run = Run::new(playbook("", steps));
    run.lead.fields.insert("timezone", "Asia/Shanghai".into());
    run.lead
        .attributes
        .insert("webinar_at".into(), "2026-11-10 09:00".into());
    let (steps, _) = run.at(t(0));
    assert_eq!(steps, ["a:waiting"]);
    // 09:00 in Shanghai on the 9th is 01:00 UTC.
    let due: DateTime<Utc> = "2026-11-09T01:00:00Z".parse().unwrap();
    assert_eq!(run.enrollment.wake_at, Some(due));
    assert!(run.at(due - chrono::Duration::seconds(1)).0.is_empty());
    let (steps, _) = run.at(due);
    assert_eq!(steps, ["a:waited", "b:sent", "done:completed"]);

    let mut late = Run::new(playbook(
        "",
        concat!(
            "  a: { wait: { until: { attribute: webinar_at, offset: -1d } }, next: b }\n",
            "  b: { exit: reminded }\n",
        ),
    ));
    late.lead
        .attributes
        .insert("webinar_at".into(), "2026-11-02T12:00:00+08:00".into());
    let mut facts = JourneyFacts {
        lead: std::borrow::Cow::Owned(late.lead.clone()),
        tags: BTreeSet::new(),
        events: &[],
        messages: &[],
        enrolling_event: None,
    };
    let out = advance(
        &late.playbook.campaigns["c"],
        late.enrollment.clone(),
        &mut facts,
        &late.playbook.segments,
        &mut Unpaced,
        t(0),
    );
    assert_eq!(
        out.journey[0].detail,
        "until webinar_at - 1d: 2026-11-01T04:00:00+00:00 had passed; going on at once"
    );
    assert_eq!(out.enrollment.status, Status::Completed);

    let mut missing = Run::new(playbook("", steps_of_missing()));
    let (steps, _) = missing.at(t(0));
    assert_eq!(steps, ["a:waited", "b:completed"]);
}

fn steps_of_missing() -> &'static str {
    concat!(
        "  a: { wait: { until: { attribute: webinar_at } }, next: b }\n",
        "  b: { exit: reminded }\n",
    )
}

/// `until_time` with an offset is that instant; without one, the wall time in the lead's zone.
#[test]
fn a_wait_until_a_fixed_time_ends_then() {
    let mut run = Run::new(playbook(
        "",
        "  a: { wait: { until_time: \"2026-11-03T09:00:00+08:00\" }, next: b }\n  b: { exit: done }\n",
    ));
    run.at(t(0));
    assert_eq!(run.enrollment.wake_at, Some("2026-11-03T01:00:00Z".parse().unwrap()));
    let mut local = Run::new(playbook(
        "",
        "  a: { wait: { until_time: \"2026-11-03 09:00\" }, next: b }\n  b: { exit: done }\n",
    ));
    local.lead.fields.insert("timezone", "America/New_York".into());
    local.at(t(0));
    assert_eq!(local.enrollment.wake_at, Some("2026-11-03T14:00:00Z".parse().unwrap()));
}
