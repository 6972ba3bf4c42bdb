//! Validation tests, data-driven: one small playbook per rule, each with the exact messages
//! expected (file:line:column: message).

use super::*;

const ICP: &str = "kind: Segment\nid: icp\nwhen: { field: { name: company_size, in: [\"200-1000\"] } }\n";
const QUEUES: &str = "kind: Queues\nqueues:\n  sdr: { sla: 4h }\n  sales: { sla: 24h }\n";

fn templates() -> Arc<Templates> {
    let sources = [
        ("hello.hbs", "<p>Hello {{first_name}}</p>"),
        ("hello.subject.hbs", "Hello"),
        ("bye.hbs", "<p>Bye {{company}}</p>"),
        ("bye.subject.hbs", "Bye"),
        (
            "nudge.wechat.yaml",
            "template_id: TM1\ndata:\n  first: \"{{first_name}}\"\n",
        ),
    ];
    Arc::new(Templates::from_sources(
        None,
        sources.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect(),
    ))
}

fn load(files: &[(&str, &str)]) -> Result<Playbook, Refused> {
    let mut all: Vec<(String, String)> = vec![("icp.yaml".into(), ICP.into()), ("queues.yaml".into(), QUEUES.into())];
    all.extend(files.iter().map(|(n, t)| (n.to_string(), t.to_string())));
    Playbook::from_files(&all, templates())
}

/// Every issue of a refused playbook, as printed.
fn refuse(files: &[(&str, &str)]) -> Vec<String> {
    match load(files) {
        Ok(_) => panic!("the playbook was accepted"),
        Err(Refused(issues)) => issues.iter().map(|i| i.to_string()).collect(),
    }
}

/// A campaign `c` in `c.yaml` whose `steps:` block is `steps` (it starts on line 8).
fn campaign(steps: &str) -> String {
    format!("kind: Campaign\nid: c\nname: C\ntype: drip\nentry: {{ trigger: manual }}\nstart: a\nsteps:\n{steps}")
}

/// The one-line check each rule's test makes: the campaign's steps, and what is reported.
fn check(steps: &str, expect: &[&str]) {
    assert_eq!(refuse(&[("c.yaml", &campaign(steps))]), expect, "steps:\n{steps}");
}

// ---- Campaigns: one rule per test. ----

#[test]
fn a_valid_campaign_builds_its_graph() {
    let playbook = load(&[(
        "c.yaml",
        &campaign(
            "  a: { send: { channel: email, template: hello }, next: w }\n  w: { wait: { for: 3d }, next: b }\n  b: { branch: { if: { opened: a }, then: h, else: x } }\n  h: { handoff: { queue: sdr, reason: Engaged } }\n  x: { exit: returned_to_pool }\n",
        ),
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(playbook.warnings.is_empty(), "{:?}", playbook.warnings);
    let c = &playbook.campaigns["c"];
    assert_eq!(c.graph.node_count(), 5);
    assert_eq!(c.graph.edge_count(), 4);
    let b = c.node("b").unwrap();
    assert_eq!(c.graph[c.follow(b, Edge::Yes).unwrap()].id, "h");
    assert_eq!(c.graph[c.follow(b, Edge::No).unwrap()].id, "x");
    assert_eq!(c.version.len(), 12);
}

#[test]
fn unknown_keys() {
    check(
        "  a: { sned: { channel: email, template: hello } }\n",
        &["c.yaml:8:8: unknown field `sned`, expected one of description, send, wait, branch, split, tag, score, handoff, enroll, exit, next"],
    );
}

#[test]
fn dangling_next_then_and_else() {
    check(
        "  a: { score: 1, next: wiat }\n  wait: { branch: { if: { tag: x }, then: nowhere, else: a } }\n",
        &[
            "c.yaml:8:24: `next` names step \"wiat\", which does not exist; did you mean \"wait\"?",
            "c.yaml:9:43: `then` names step \"nowhere\", which does not exist",
        ],
    );
}

#[test]
fn a_missing_start() {
    let text = "kind: Campaign\nid: c\nname: C\ntype: drip\nentry: { trigger: manual }\nstart: begin\nsteps:\n  a: { exit: done }\n";
    assert_eq!(
        refuse(&[("c.yaml", text)]),
        ["c.yaml:6:8: `start` names step \"begin\", which does not exist"]
    );
}

#[test]
fn unreachable_steps() {
    check(
        "  a: { exit: done }\n  orphan: { score: 5, next: a }\n",
        &["c.yaml:9:3: step \"orphan\" is never reached from `start` (a); lead to it with `next`, `then` or `else`, or remove it"],
    );
}

#[test]
fn a_step_with_no_way_on() {
    check(
        "  a: { score: 5 }\n",
        &["c.yaml:8:3: step \"a\" (score) has no `next`; say which step follows, or end the flow with an `exit` step"],
    );
}

/// A step that forgot its `next` is the one error: the steps after it are not also reported
/// as never reached.
#[test]
fn a_missing_next_is_not_also_unreachable_steps() {
    check(
        "  a: { score: 5 }\n  b: { score: 1, next: c }\n  c: { exit: done }\n",
        &["c.yaml:8:3: step \"a\" (score) has no `next`; say which step follows, or end the flow with an `exit` step"],
    );
}

#[test]
fn next_on_a_step_that_ends_or_branches() {
    check(
        "  a: { branch: { if: { tag: x }, then: b, else: b }, next: b }\n  b: { exit: done, next: a }\n",
        &[
            "c.yaml:8:60: a branch goes on by `then` and `else`; remove this `next`",
            "c.yaml:9:26: an exit ends the enrollment; remove this `next`",
        ],
    );
}

#[test]
fn one_kind_per_step() {
    check(
        "  a: { score: 5, tag: { add: [x] }, next: b }\n  b: { next: a }\n",
        &[
            "c.yaml:8:3: step \"a\" has both `tag` and `score`; a step does one thing: split it into steps joined by `next`",
            "c.yaml:9:3: step \"b\" does nothing; give it one of send, wait, branch, split, tag, score, handoff, enroll or exit",
        ],
    );
}

#[test]
fn a_loop_without_a_wait() {
    check(
        "  a: { score: 1, next: b }\n  b: { branch: { if: { score: { gte: 10 } }, then: done, else: a } }\n  done: { exit: done }\n",
        &["c.yaml:8:3: steps loop without a wait: [ a -> b -> a ]; a lead would go round at once, forever: put a `wait` in the loop"],
    );
    // The same loop through a wait is a legitimate re-check.
    load(&[(
        "c.yaml",
        &campaign("  a: { wait: { for: 1d }, next: b }\n  b: { branch: { if: { score: { gte: 10 } }, then: done, else: a } }\n  done: { exit: done }\n"),
    )])
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn message_conditions_name_a_send_that_precedes_them() {
    check(
        concat!(
            "  a: { branch: { if: { tag: x }, then: s, else: b } }\n",
            "  s: { send: { channel: email, template: hello }, next: b }\n",
            "  b: { branch: { if: { opened: s }, then: t, else: t } }\n",
            "  t: { wait: { until: { responded: nope }, timeout: 1d }, next: u }\n",
            "  u: { branch: { if: { clicked: t }, then: v, else: v } }\n",
            "  v: { exit: done }\n",
        ),
        &[
            "c.yaml:10:32: `opened: s` in step \"b\": not every path to this step passes \"s\" first, so its message may never have been sent; ask only about a send every path passes",
            "c.yaml:11:36: `responded: nope` names a step that does not exist",
            "c.yaml:12:33: `clicked: t` names a wait step; it must name a `send` step",
        ],
    );
}

#[test]
fn opened_needs_an_email() {
    check(
        "  a: { send: { channel: wechat, template: nudge }, next: b }\n  b: { branch: { if: { opened: a }, then: c, else: c } }\n  c: { exit: done }\n",
        &["c.yaml:9:32: `opened: a` asks about a wechat message, which reports no opens; ask `responded` instead"],
    );
}

#[test]
fn missing_templates() {
    check(
        "  a: { send: { channel: email, template: helo, variants: [ { when: { tag: x }, template: bye } ] }, next: b }\n  b: { send: { channel: wechat, template: hello }, next: c }\n  c: { exit: done }\n",
        &[
            "c.yaml:8:42: e-mail template \"helo\" does not exist: add helo.hbs and helo.subject.hbs",
            "c.yaml:9:43: WeChat template \"hello\" does not exist: add hello.wechat.yaml",
        ],
    );
}

/// A template that fails to compile is reported once, where it is, not also as missing from
/// the step that names it.
#[test]
fn a_template_that_does_not_compile_is_one_error() {
    let templates = Templates::from_sources(
        None,
        vec![
            ("broken.hbs".to_owned(), "<p>{{#if x}}Hi</p>".to_owned()),
            ("broken.subject.hbs".to_owned(), "Hi".to_owned()),
        ],
    );
    let files = vec![(
        "c.yaml".to_owned(),
        campaign("  a: { send: { channel: email, template: broken }, next: b }\n  b: { exit: done }\n"),
    )];
    let issues: Vec<String> = match Playbook::from_files(&files, Arc::new(templates)) {
        Ok(_) => panic!("the playbook was accepted"),
        Err(Refused(issues)) => issues.iter().map(|i| i.to_string()).collect(),
    };
    assert_eq!(
        issues,
        ["broken.hbs:1:19: the template does not compile: the template ends or breaks off here: is a {{#block}} missing its {{/block}}, or a {{ its }}?"]
    );
}

#[test]
fn unknown_segments_queues_and_campaigns() {
    check(
        "  a: { branch: { if: { segment: prospects }, then: b, else: c } }\n  b: { handoff: { queue: marketing, reason: Hot } }\n  c: { enroll: { campaign: nurture-2 } }\n",
        &[
            "c.yaml:8:33: segment \"prospects\" does not exist; define it in a `kind: Segment` file",
            "c.yaml:9:26: queue \"marketing\" does not exist; the queues are sales, sdr",
            "c.yaml:10:28: campaign \"nurture-2\" does not exist; enroll names the `id` of a `kind: Campaign` file",
        ],
    );
}

#[test]
fn misspelt_segments_queues_and_campaigns_get_the_nearest_id() {
    check(
        "  a: { branch: { if: { segment: icpp }, then: b, else: c } }\n  b: { handoff: { queue: sdrs, reason: Hot } }\n  c: { enroll: { campaign: d } }\n",
        &[
            "c.yaml:8:33: segment \"icpp\" does not exist; did you mean \"icp\"?",
            "c.yaml:9:26: queue \"sdrs\" does not exist; did you mean \"sdr\"?",
            "c.yaml:10:28: campaign \"d\" does not exist; did you mean \"c\"?",
        ],
    );
}

#[test]
fn campaigns_that_enroll_each_other_in_a_cycle() {
    let one = "kind: Campaign\nid: one\nname: One\ntype: drip\nentry: { trigger: manual }\nstart: a\nsteps:\n  a: { enroll: { campaign: two } }\n";
    let two = "kind: Campaign\nid: two\nname: Two\ntype: drip\nentry: { trigger: manual }\nstart: a\nsteps:\n  a: { wait: { for: 1d }, next: b }\n  b: { enroll: { campaign: one } }\n";
    assert_eq!(
        refuse(&[("one.yaml", one), ("two.yaml", two)]),
        ["one.yaml:8:28: campaigns enroll each other in a cycle: [ one -> two -> one ]; a lead would be passed round forever"]
    );
}

#[test]
fn ill_formed_durations_times_and_weekdays() {
    let text = concat!(
        "kind: Campaign\nid: c\nname: C\ntype: drip\nentry: { trigger: manual }\n",
        "send_window: { days: [mon, fri, funday], from: \"9am\", to: \"18:00\" }\n",
        "start: a\nsteps:\n",
        "  a: { wait: { for: 3days }, next: b }\n",
        "  b: { wait: { until: { tag: x }, timeout: 0d }, next: c }\n",
        "  c: { wait: { until: { tag: x } }, next: d }\n",
        "  d: { exit: done }\n",
    );
    assert_eq!(
        refuse(&[("c.yaml", text)]),
        [
            "c.yaml:6:33: \"funday\" is not a weekday; write mon, tue, wed, thu, fri, sat or sun",
            "c.yaml:6:48: \"9am\" is not a time of day; write HH:MM on a 24-hour clock, e.g. \"09:00\"",
            "c.yaml:9:21: invalid duration \"3days\": units are s, m, h, d and w; write e.g. 30s, 15m, 4h, 3d, 2w or 1d12h",
            "c.yaml:10:44: invalid duration \"0d\": it must be longer than zero; write e.g. 30s, 15m, 4h, 3d, 2w or 1d12h",
            "c.yaml:11:3: a wait `until` needs a `timeout`, so that no lead waits forever (e.g. `timeout: 3d`)",
        ]
    );
}

#[test]
fn split_weights_are_positive() {
    check(
        "  a: { split: [ { weight: 0, next: b }, { weight: -5, next: b } ] }\n  b: { exit: done }\n",
        &[
            "c.yaml:8:27: split weight 0 must be a positive whole number (at most 1000000)",
            "c.yaml:8:51: split weight -5 must be a positive whole number (at most 1000000)",
        ],
    );
}

#[test]
fn duplicate_ids_across_files() {
    let steps = "  a: { exit: done }\n";
    assert_eq!(
        refuse(&[
            ("c.yaml", &campaign(steps)),
            ("copy.yaml", &campaign(steps)),
            ("icp2.yaml", ICP)
        ]),
        [
            "copy.yaml:2:5: campaign \"c\" is defined twice; the first is in c.yaml",
            "icp2.yaml:2:5: segment \"icp\" is defined twice; the first is in icp.yaml",
        ]
    );
}

#[test]
fn entry_goals_and_tags() {
    let text = concat!(
        "kind: Campaign\nid: c\nname: C\ntype: welcome\n",
        "entry: { trigger: event, when: { opened: a } }\n",
        "exit_when: { tag: \"not a tag\" }\n",
        "priority: 101\n",
        "start: a\nsteps:\n",
        "  a: { tag: { add: [\"UPPER ok\"] }, next: b }\n",
        "  b: { score: 0, next: c }\n",
        "  c: { exit: Done }\n",
    );
    assert_eq!(
        refuse(&[("c.yaml", text)]),
        [
            "c.yaml:2:5: entry trigger `event` needs `event`: the event type that enrolls the lead (e.g. `event: registered`)",
            "c.yaml:5:42: `opened: a` asks about the message of a campaign step; use it in a campaign's steps, not in rules, segments, entry or exit_when",
            "c.yaml:6:19: tag \"not a tag\" contains whitespace, a control character or a comma; write e.g. interest:topic/iot",
            "c.yaml:7:11: priority must be between 0 and 100",
            "c.yaml:10:21: tag \"UPPER ok\" contains whitespace, a control character or a comma; write e.g. interest:topic/iot",
            "c.yaml:11:15: a score step of 0 changes nothing; give points (negative to take away) or remove the step",
            "c.yaml:12:14: exit outcome \"Done\" must be lower-case letters, digits and '_', e.g. returned_to_pool",
        ]
    );
}

#[test]
fn template_problems_reach_the_playbook() {
    let broken = Arc::new(Templates::from_sources(
        None,
        vec![
            ("hello.hbs".into(), "<p>{{#if first_name}}Hi</p>".into()),
            ("hello.subject.hbs".into(), "Hi {{compnay}}".into()),
        ],
    ));
    let files = vec![
        ("c.yaml".to_owned(), campaign("  a: { exit: done }\n")),
        ("queues.yaml".to_owned(), QUEUES.to_owned()),
    ];
    let Err(Refused(issues)) = Playbook::from_files(&files, broken) else {
        panic!("accepted a playbook whose template does not compile");
    };
    let printed: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    assert_eq!(
        printed,
        [
            "hello.hbs:1:28: the template does not compile: the template ends or breaks off here: is a {{#block}} missing its {{/block}}, or a {{ its }}?",
            "hello.subject.hbs:1:4: warning: \"compnay\" is not a lead field or a template value; did you mean \"company\"?",
        ]
    );
}

#[test]
fn versions_hash_content_not_formatting() {
    let a = campaign("  a: { score: 5, next: b }\n  b: { exit: done }\n");
    let reformatted = campaign("  # a comment\n  a:\n    next: b\n    score: 5\n  b: {exit: done}\n");
    let changed = campaign("  a: { score: 6, next: b }\n  b: { exit: done }\n");
    let version = |text: &str| load(&[("c.yaml", text)]).unwrap().campaigns["c"].version.clone();
    assert_eq!(version(&a), version(&reformatted));
    assert_ne!(version(&a), version(&changed));
}

// ---- Rules, segments and queues. ----

#[test]
fn rules_errors_have_file_line_and_column() {
    let rules = "kind: Rules\ndefault_timezone: Mars/Olympus\ndefault_language: fr\ntagging:\n  - on: { event: Bad Type }\n    tags: [\"a b\"]\n    score: 5\ndecay: { every: 30d, percent: 300 }\nmql:\n  when: { segment: nope }\n  handoff: { queue: sdrr, reason: r }\n";
    assert_eq!(
        refuse(&[("rules.yaml", rules)]),
        [
            "rules.yaml:2:19: unknown time zone \"Mars/Olympus\"; use an IANA name such as Asia/Shanghai",
            "rules.yaml:3:19: unknown language \"fr\"; use en or zh",
            "rules.yaml:5:18: event type \"Bad Type\" is not valid: use lower-case letters, digits, '_', '.' or '-', starting with a letter, at most 64 characters (e.g. whitepaper_downloaded)",
            "rules.yaml:6:12: tag \"a b\" contains whitespace, a control character or a comma; write e.g. interest:topic/iot",
            "rules.yaml:8:31: decay percent must be between 1 and 100",
            "rules.yaml:10:20: segment \"nope\" does not exist; define it in a `kind: Segment` file",
            "rules.yaml:11:21: queue \"sdrr\" does not exist; did you mean \"sdr\"?",
        ]
    );
}

#[test]
fn page_rules_and_tracking_sites_are_checked_where_they_are_written() {
    let rules = "kind: Rules\ntracking:\n  sites: [https://www.example.com, www.example.com, \"https://a.example/shop\"]\npages:\n  - url: /pricing*\n  - url: /docs*\n    tag: \"a b\"\n    cap: { max: 0, per: 30d }\n";
    assert_eq!(
        refuse(&[("rules.yaml", rules)]),
        [
            "rules.yaml:3:36: site \"www.example.com\" is not an origin like https://www.example.com (scheme and host, no path)",
            "rules.yaml:3:53: site \"https://a.example/shop\" is not an origin like https://www.example.com (scheme and host, no path)",
            "rules.yaml:5:10: this page rule neither tags nor scores; give it `tag`, `tags` or `score`",
            "rules.yaml:7:10: tag \"a b\" contains whitespace, a control character or a comma; write e.g. interest:topic/iot",
            "rules.yaml:8:17: cap max must be a positive number of points",
        ]
    );
    let pattern = "kind: Rules\npages:\n  - { url: pricing, score: 5 }\n";
    let refused = refuse(&[("rules.yaml", pattern)]);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].starts_with("rules.yaml:3:")
            && refused[0].contains("url \"pricing\" is neither a path (/pricing*) nor an address"),
        "{refused:?}"
    );
    let visited = "kind: Segment\nid: pricing-fans\nwhen: { visited: { url: \"/pricing[\", times: 2 } }\n";
    let refused = refuse(&[("fans.yaml", visited)]);
    assert!(
        refused.len() == 1 && refused[0].starts_with("fans.yaml:3:") && refused[0].contains("is not a valid pattern"),
        "{refused:?}"
    );
}

#[test]
fn page_rules_and_tracking_build_into_the_rules() {
    let rules = "kind: Rules\ntracking:\n  sites: [https://WWW.Example.com/, \"http://localhost:8080\"]\n  consent: required\n  respect_dnt: true\n  keep_anonymous: 30d\npages:\n  - { url: /pricing*, tag: behaviour:viewed_pricing, score: 5, cap: { max: 15, per: 30d } }\n  - { id: docs, url: \"https://docs.example.com/*\", tags: [interest:docs] }\n";
    let playbook = load(&[("rules.yaml", rules)]).unwrap();
    let tracking = &playbook.rules.tracking;
    assert_eq!(tracking.sites, ["https://www.example.com", "http://localhost:8080"]);
    assert_eq!(tracking.consent, crate::playbook::TrackingConsent::Required);
    assert!(tracking.respect_dnt);
    assert_eq!(tracking.keep_anonymous.secs(), 30 * 86_400);
    let pages: Vec<_> = playbook.rules.tagging.iter().filter(|r| r.url.is_some()).collect();
    assert_eq!(pages.len(), 2);
    assert_eq!(
        (pages[0].id.as_str(), pages[0].event.as_str(), pages[0].score),
        ("page:/pricing*", "page_view", 5)
    );
    assert_eq!(pages[0].tags, ["behaviour:viewed_pricing"]);
    assert_eq!(pages[0].cap.map(|c| c.max), Some(15));
    assert_eq!(
        (pages[1].id.as_str(), pages[1].tags.as_slice()),
        ("docs", &["interest:docs".to_owned()][..])
    );
    let none = load(&[("rules.yaml", "kind: Rules\n")]).unwrap();
    assert_eq!(none.rules.tracking, Default::default(), "no sites, consent implied");
    assert_eq!(none.rules.tracking.keep_anonymous.secs(), 90 * 86_400);
}

#[test]
fn syntax_and_unknown_keys_are_positioned() {
    assert_eq!(
        refuse(&[
            ("a.yaml", "kind: Rules\ntaging: []\n"),
            ("b.yaml", "kind: Segment\nid: x\nwhen: { tagg: a }\n")
        ]),
        [
            "a.yaml:2:1: unknown field `taging`, expected one of kind, default_timezone, default_language, tagging, attributes, decay, mql, frequency, quiet_hours, deploy_confirm_over, tracking, pages",
            "b.yaml:3:9: unknown variant `tagg`, expected one of tag, any_tag, all_tags, score, stage, field, event, opened, clicked, responded, segment, unsubscribed, inactive, visited, all, any, not",
        ]
    );
}

#[test]
fn unknown_kinds_and_segment_cycles() {
    let a = "kind: Segment\nid: a\nwhen: { segment: b }\n";
    let b = "kind: Segment\nid: b\nwhen: { not: { segment: a } }\n";
    assert_eq!(
        refuse(&[("a.yaml", a), ("b.yaml", b), ("e.yaml", "kind: Rulez\n")]),
        [
            "a.yaml:2:5: segments refer to each other in a cycle: [ a -> b -> a ]",
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
fn message_conditions_outside_campaign_steps() {
    let rules = "kind: Rules\nmql:\n  when: { opened: whitepaper }\n  handoff: { queue: sdr, reason: r }\n";
    assert_eq!(
        refuse(&[("rules.yaml", rules)]),
        ["rules.yaml:3:19: `opened: whitepaper` asks about the message of a campaign step; use it in a campaign's steps, not in rules, segments, entry or exit_when"]
    );
}

#[test]
fn queue_problems() {
    let queues = "kind: Queues\nqueues:\n  sdr:\n    routing: round_robin\n    on_breach: { move_to: vip }\n  Sales: { members: [not-an-email] }\n  \
                  gold: { sla: 1h, on_breach: {} }\n  \
                  ops: { sla: 1h, on_breach: { notify: [lead@corp.example, nobody, Lead@Corp.example] } }\n";
    let files = [
        ("queues.yaml".to_owned(), queues.to_owned()),
        ("more.yaml".to_owned(), QUEUES.to_owned()),
    ];
    let Err(Refused(issues)) = Playbook::from_files(&files, templates()) else {
        panic!("accepted bad queues");
    };
    assert_eq!(
        issues.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
        [
            "more.yaml:1:7: a second `kind: Queues` file; the playbook has one, in queues.yaml; merge them",
            "queues.yaml:4:14: round_robin routing needs `members` to assign handoffs to; list them, or use `routing: claim`",
            "queues.yaml:5:16: warning: on_breach never happens: the queue has no `sla` to breach; add e.g. `sla: 4h`",
            "queues.yaml:5:27: on_breach moves to queue \"vip\", which does not exist; the queues are sdr, Sales, gold, ops",
            "queues.yaml:6:3: queue name \"Sales\" must be 1 to 64 lower-case letters, digits, '-' or '_'",
            "queues.yaml:6:22: member \"not-an-email\" is not an e-mail address; members are named by e-mail",
            "queues.yaml:7:31: on_breach says nothing to do; give `move_to: QUEUE`, `notify: [E-MAIL, …]`, or both",
            "queues.yaml:8:60: on_breach.notify: \"nobody\" is not an e-mail address; list the people to e-mail",
            "queues.yaml:8:68: \"Lead@Corp.example\" is listed twice in on_breach.notify",
        ]
    );
}

// ---- Bad input: the loader never panics and stays bounded. ----

#[test]
fn malformed_yaml_tabs_and_duplicate_keys() {
    assert_eq!(
        refuse(&[
            ("a.yaml", "kind: Segment\nid: [unclosed\n"),
            ("b.yaml", "kind: Segment\n\tid: x\n"),
            ("c.yaml", "kind: Segment\nid: x\nid: y\nwhen: { tag: a }\n"),
        ]),
        [
            "a.yaml:2:5: unclosed bracket '['",
            "b.yaml:1:7: while scanning a plain scalar, found a tab; YAML is indented with spaces, not tabs",
            "c.yaml:3:1: the key `id` appears twice; each key may appear once",
        ]
    );
}

#[test]
fn a_huge_file_is_refused_before_parsing() {
    let huge = format!(
        "kind: Segment\nid: x\nwhen: {{ tag: a }}\n# {}\n",
        "x".repeat(10 * 1024 * 1024)
    );
    assert_eq!(
        refuse(&[("huge.yaml", &huge)]),
        ["huge.yaml: the file is 10485800 bytes; a playbook file may be at most 1048576 bytes (split large campaigns into several)"]
    );
}

#[test]
fn billion_laughs_and_deep_nesting_are_bounded() {
    let mut laughs =
        String::from("kind: Segment\nid: lol\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        laughs.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    laughs.push_str("when: { tag: a }\n");
    let started = std::time::Instant::now();
    let issues = refuse(&[("lol.yaml", &laughs)]);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(issues[0].starts_with("lol.yaml:"), "{issues:?}");
    let deep = format!(
        "kind: Segment\nid: deep\nwhen: {}{{ tag: a }}{}\n",
        "{ not: ".repeat(200),
        " }".repeat(200)
    );
    let issues = refuse(&[("deep.yaml", &deep)]);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(issues[0].starts_with("deep.yaml:"), "{issues:?}");
    // Bounded: the loader gives up long before expanding a billion items.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

// ---- The shipped playbook. ----

#[test]
fn the_shipped_playbook_is_valid_without_warnings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let playbook =
        Playbook::load_dir(&root.join("campaigns"), &root.join("templates")).unwrap_or_else(|e| panic!("{e}"));
    assert!(playbook.warnings.is_empty(), "{:?}", playbook.warnings);
    let ids: Vec<_> = playbook.rules.tagging.iter().map(|r| r.id.as_str()).collect();
    assert!(
        ids.starts_with(&["whitepaper_downloaded", "webinar_attended"]) && ids.ends_with(&["pricing_page"]),
        "{ids:?}"
    );
    assert_eq!(playbook.rules.tracking.sites, ["https://www.lumen-cloud.example"]);
    assert_eq!(playbook.rules.default_timezone, chrono_tz::Asia::Shanghai);
    let campaigns: Vec<_> = playbook.campaigns.keys().map(String::as_str).collect();
    assert_eq!(
        campaigns,
        ["activation", "industry-drip", "webinar-follow-up", "welcome"]
    );
    assert_eq!(
        playbook.queues.queues.keys().map(String::as_str).collect::<Vec<_>>(),
        ["sales", "sdr"]
    );
}

// ---- The editor schema. ----

#[test]
fn the_schema_accepts_the_shipped_files_and_refuses_mistakes() {
    let schema = schema::playbook_schema();
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("the schema is not valid: {e}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../campaigns");
    let files = read_playbook_dir(&root).unwrap();
    assert!(files.len() >= 8, "{} files", files.len());
    for (name, text) in &files {
        let value: serde_json::Value = serde_saphyr::from_str(text).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
    }
    let typo: serde_json::Value =
        serde_saphyr::from_str(&campaign("  a: { sned: { channel: email, template: hello } }\n")).unwrap();
    assert!(!validator.is_valid(&typo), "a misspelt step kind passes the schema");
    let bad_kind: serde_json::Value = serde_saphyr::from_str("kind: Campaing\nid: x\n").unwrap();
    assert!(!validator.is_valid(&bad_kind));
}

// ---- Property tests: random and mutated YAML never panics the loader, and every position it
// reports lies inside the file. Run longer with PROPTEST_CASES=100000. ----

mod properties {
    use super::*;
    use proptest::prelude::*;

    const DRIP: &str = include_str!("../../../campaigns/industry-drip.yaml");

    fn check_positions(name: &str, text: &str) {
        let files = vec![
            (name.to_owned(), text.to_owned()),
            ("queues.yaml".to_owned(), QUEUES.to_owned()),
        ];
        // YAML breaks lines at LF, CRLF and a lone CR.
        let breaks = text.matches('\n').count() + text.replace("\r\n", "").matches('\r').count();
        let lines = breaks as u64 + 1;
        if let Err(Refused(issues)) = Playbook::from_files(&files, templates()) {
            assert!(issues.iter().any(Issue::is_error));
            for issue in issues {
                if let Some(p) = issue.position {
                    if issue.file == name {
                        assert!(p.line >= 1 && p.line <= lines, "{issue} outside {lines} lines");
                    }
                }
                assert!(!issue.message.is_empty());
            }
        }
    }

    /// Tokens YAML is made of, so that random input reaches deep into the parser and the spec.
    fn token() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "kind: Campaign\n",
            "kind: Segment\n",
            "kind: Rules\n",
            "kind: Queues\n",
            "id: x\n",
            "steps:\n",
            "  a:\n",
            "    next: a\n",
            "    wait: { for: 3d }\n",
            "    send: { channel: email, template: hello }\n",
            "start: a\n",
            "  ",
            "\t",
            "- ",
            "{",
            "}",
            "[",
            "]",
            ": ",
            ", ",
            "&a ",
            "*a ",
            "<<: *a\n",
            "\"",
            "'",
            "#",
            "\n",
            "---\n",
            "...\n",
            "? ",
            "|\n",
            ">\n",
            "!!str ",
            "!!binary ",
            "0x1F",
            "1e999",
            "~",
            "null",
            "当",
            "\u{0}",
            "\u{feff}",
            "when: { tag: a }\n",
            "branch: { if: { opened: a }, then: a, else: a }\n",
        ])
    }

    proptest! {
        #[test]
        fn random_token_soup_never_panics(tokens in prop::collection::vec(token(), 0..80)) {
            check_positions("soup.yaml", &tokens.concat());
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            check_positions("text.yaml", &text);
        }

        #[test]
        fn mutated_shipped_campaigns_never_panic(
            cut in 0..DRIP.len(),
            len in 0usize..40,
            insert in prop::sample::select(vec!["", "\t", ": ", "{", "]", "\n  x:", "*a", "&a", "\u{feff}", "next: ", "  "]),
        ) {
            let mut text = DRIP.to_owned();
            let start = (0..=cut).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let end = (start + len..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
            text.replace_range(start..end, insert);
            check_positions("industry-drip.yaml", &text);
        }
    }
}

#[test]
fn frequency_caps_and_quiet_hours_are_checked() {
    let rules = concat!(
        "kind: Rules\n",
        "frequency: { email: { max: 0, per: 7d }, wechat: { max: 1, per: 1d } }\n",
        "quiet_hours: { from: \"22:00\", to: \"22:00\" }\n",
    );
    assert_eq!(
        refuse(&[("rules.yaml", rules)]),
        [
            "rules.yaml:2:28: a frequency cap's max must be a positive number of email sends",
            "rules.yaml:3:35: quiet hours that start and end at the same time would stop every send; give `to` another time",
        ]
    );
    let rules =
        "kind: Rules\nfrequency: { webhook: { max: 1, per: 1d } }\nquiet_hours: { from: \"9pm\", to: \"08:00\" }\n";
    let refused = refuse(&[("rules.yaml", rules)]);
    assert!(
        refused[0].starts_with("rules.yaml:2:14: unknown field `webhook`, expected"),
        "{refused:?}"
    );
    let rules = "kind: Rules\nquiet_hours: { from: \"9pm\", to: \"08:00\" }\n";
    assert_eq!(
        refuse(&[("rules.yaml", rules)]),
        ["rules.yaml:2:22: \"9pm\" is not a time of day; write HH:MM on a 24-hour clock, e.g. \"21:00\""]
    );
}

#[test]
fn on_cap_is_defer_or_skip() {
    check(
        "  a: { send: { channel: email, template: hello, on_cap: drop }, next: b }\n  b: { exit: done }\n",
        &["c.yaml:8:57: unknown variant `drop`, expected one of defer, skip"],
    );
}

#[test]
fn waits_until_a_moment_are_checked_where_written() {
    check(
        "  a: { wait: { until_time: tomorrow }, next: b }\n  b: { exit: done }\n",
        &["c.yaml:8:28: invalid moment \"tomorrow\"; write 2026-12-10T09:00:00+08:00, or 2026-12-10 09:00 for the lead's time zone"],
    );
    check(
        "  a: { wait: { until: { attribute: webinar_at, offset: 1 day } }, next: b }\n  b: { exit: done }\n",
        &[
            "c.yaml:8:56: invalid duration \"1 day\": units are s, m, h, d and w; write e.g. 30s, 15m, 4h, 3d, 2w or 1d12h (with `-` before it for earlier)",
        ],
    );
    check(
        "  a: { wait: { until: { event_property: starts_at, offset: -1h } }, next: b }\n  b: { exit: done }\n",
        &["c.yaml:8:3: step \"a\" waits until `event_property: starts_at`, but no event enrolls leads into this campaign: use `entry: { trigger: event, event: … }`, or a date attribute of the lead (`attribute: starts_at`)"],
    );
    check(
        "  a: { wait: { until: { attribute: a, offst: 1d } }, next: b }\n  b: { exit: done }\n",
        &["c.yaml:8:39: unknown field `offst`, expected one of attribute, event_property, offset"],
    );
    // A condition in `until` reads as before, errors and all.
    check(
        "  a: { wait: { until: { tagg: x }, timeout: 3d }, next: b }\n  b: { exit: done }\n",
        &["c.yaml:8:25: unknown variant `tagg`, expected one of tag, any_tag, all_tags, score, stage, field, event, opened, clicked, responded, segment, unsubscribed, inactive, visited, all, any, not"],
    );
    let playbook = load(&[(
        "c.yaml",
        &campaign("  a: { wait: { until: { attribute: webinar_at, offset: -1d } }, next: b }\n  b: { exit: done }\n"),
    )])
    .unwrap_or_else(|e| panic!("{e}"));
    let a = playbook.campaigns["c"].step("a").unwrap();
    assert_eq!(draw::summary(&a.action), "wait until webinar_at - 1d");
}

/// A webinar follow-up sends the recording to attendees and another e-mail to no-shows, then
/// asks whether either was clicked: each path sends one of them, so the question is sound.
#[test]
fn any_over_messages_on_different_paths_is_sound_when_every_path_sends_one() {
    let steps = |second: &str| {
        format!(
            concat!(
                "  a: {{ branch: {{ if: {{ tag: attended }}, then: rec, else: miss }} }}\n",
                "  rec: {{ send: {{ channel: email, template: hello }}, next: w }}\n",
                "  miss: {{ send: {{ channel: email, template: bye }}, next: w }}\n",
                "  w: {{ wait: {{ for: 3d }}, next: b }}\n",
                "  b: {{ branch: {{ if: {{ any: [{{ clicked: rec }}, {{ clicked: {} }}] }}, then: h, else: x }} }}\n",
                "  h: {{ handoff: {{ queue: sdr, reason: Clicked }} }}\n",
                "  x: {{ exit: returned_to_pool }}\n",
            ),
            second
        )
    };
    let playbook = load(&[("c.yaml", &campaign(&steps("miss")))]);
    assert!(playbook.is_ok(), "{:?}", playbook.err());
    // Asked alone, each is refused: a lead may have taken the other path.
    check(
        &steps("miss").replace("{ any: [{ clicked: rec }, { clicked: miss }] }", "{ clicked: rec }"),
        &["c.yaml:12:33: `clicked: rec` in step \"b\": not every path to this step passes \"rec\" first, so its message may never have been sent; ask only about a send every path passes"],
    );
    // Both on one path: the other path sends neither.
    check(
        &steps("rec"),
        &[
            "c.yaml:12:41: `clicked: rec` in step \"b\": not every path to this step passes \"rec\" first, so its message may never have been sent; ask only about a send every path passes",
            "c.yaml:12:59: `clicked: rec` in step \"b\": not every path to this step passes \"rec\" first, so its message may never have been sent; ask only about a send every path passes",
        ],
    );
}

#[test]
fn any_over_messages_is_refused_when_a_path_sends_none_of_them() {
    check(
        concat!(
            "  a: { split: [{ weight: 1, next: s1 }, { weight: 1, next: s2 }, { weight: 1, next: s3 }] }\n",
            "  s1: { send: { channel: email, template: hello }, next: w }\n",
            "  s2: { send: { channel: email, template: bye }, next: w }\n",
            "  s3: { score: 5, next: w }\n",
            "  w: { wait: { for: 3d }, next: b }\n",
            "  b: { branch: { if: { any: [{ opened: s1 }, { opened: s2 }] }, then: x, else: x } }\n",
            "  x: { exit: done }\n",
        ),
        &[
            "c.yaml:13:40: `opened: s1` in step \"b\": not every path to this step passes one of \"s1\", \"s2\" first, so none of their messages may have been sent; ask only about sends every path passes one of",
            "c.yaml:13:56: `opened: s2` in step \"b\": not every path to this step passes one of \"s1\", \"s2\" first, so none of their messages may have been sent; ask only about sends every path passes one of",
        ],
    );
}

/// The console's drawing: every step, whatever its shape, is a link with its title, and the
/// drawing is still one SVG document.
#[test]
fn a_drawing_links_every_step() {
    let steps = "  a: { send: { channel: email, template: hello }, next: w }\n  w: { wait: { for: 3d }, next: b }\n  b: { branch: { if: { opened: a }, then: h, else: x } }\n  h: { handoff: { queue: sdr, reason: Engaged } }\n  x: { exit: returned_to_pool }\n";
    let playbook = load(&[("c.yaml", &campaign(steps))]).unwrap_or_else(|e| panic!("{e}"));
    let link = |step: &str| (format!("/s/{step}"), format!("{step} & \"more\""));
    let notes = [("w".to_owned(), "3 here".to_owned())].into_iter().collect();
    let svg = draw::svg_linked(&playbook.campaigns["c"], None, &notes, &link).unwrap();
    assert!(svg.contains("3 here"), "{svg}");
    for step in ["a", "w", "b", "h", "x"] {
        assert!(svg.contains(&format!("href=\"/s/{step}\"")), "{step}: {svg}");
        assert!(
            svg.contains(&format!("<title>{step} &amp; &quot;more&quot;</title>")),
            "{svg}"
        );
    }
    assert_eq!(svg.matches("<a class=\"step\"").count(), 5, "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
}
