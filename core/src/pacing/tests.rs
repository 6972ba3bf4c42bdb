//! Pacing on a manual timeline: caps, windows, quiet hours, time zones and DST.

use super::*;
use crate::duration::Span;
use std::collections::BTreeSet;

fn at(text: &str) -> DateTime<Utc> {
    text.parse::<DateTime<Utc>>().unwrap()
}

fn time(text: &str) -> NaiveTime {
    crate::playbook::parse_time(text).unwrap()
}

fn weekdays(from: &str, to: &str) -> SendWindow {
    SendWindow {
        days: (0..5).collect::<BTreeSet<u32>>(),
        from: time(from),
        to: time(to),
        spread: Span::from_secs(15 * 60),
    }
}

fn rules(cap: Option<(u32, &str)>, quiet: Option<(&str, &str)>) -> Rules {
    let mut rules = Rules::default();
    if let Some((max, per)) = cap {
        rules.frequency.insert(
            Channel::Email,
            FrequencyCap {
                max,
                per: per.parse().unwrap(),
            },
        );
    }
    rules.quiet_hours = quiet.map(|(from, to)| QuietHours {
        from: time(from),
        to: time(to),
        spread: Span::from_secs(600),
    });
    rules
}

fn ask<'a>(campaign: &'a str, window: Option<&'a SendWindow>, on_cap: OnCap) -> Ask<'a> {
    Ask {
        campaign,
        step: "s",
        channel: Channel::Email,
        window,
        on_cap,
    }
}

fn deferred_to(gate: &Gate) -> DateTime<Utc> {
    match gate {
        Gate::Defer { until, .. } => *until,
        other => panic!("expected a deferral, got {other:?}"),
    }
}

#[test]
fn a_cap_frees_when_the_oldest_send_leaves_the_window() {
    let cap = FrequencyCap {
        max: 3,
        per: "7d".parse().unwrap(),
    };
    let sent = [
        at("2026-11-02T09:00:00Z"),
        at("2026-11-03T09:00:00Z"),
        at("2026-11-04T09:00:00Z"),
    ];
    assert_eq!(
        cap_free(&sent[..2], cap, at("2026-11-05T09:00:00Z")),
        at("2026-11-05T09:00:00Z")
    );
    assert_eq!(
        cap_free(&sent, cap, at("2026-11-05T09:00:00Z")),
        at("2026-11-09T09:00:00Z")
    );
    // Once the first has left, the second keeps it full no longer: room for one.
    assert_eq!(
        cap_free(&sent, cap, at("2026-11-09T09:00:00Z")),
        at("2026-11-09T09:00:00Z")
    );
}

#[test]
fn sends_count_against_the_cap_and_the_next_is_deferred_or_skipped() {
    let rules = rules(Some((2, "7d")), None);
    let mut pacing = Pacing::new(&rules, LeadId(7), chrono_tz::UTC);
    pacing.sent(Channel::Email, at("2026-11-01T10:00:00Z"));
    let now = at("2026-11-03T10:00:00Z");
    assert_eq!(pacing.gate(ask("a", None, OnCap::Defer), now), Gate::Go);
    let gate = pacing.gate(ask("b", None, OnCap::Defer), now);
    assert_eq!(
        deferred_to(&gate),
        at("2026-11-08T10:00:00Z"),
        "when the first send leaves the 7 days"
    );
    let Gate::Defer { why, .. } = &gate else { unreachable!() };
    assert!(
        why.starts_with("frequency cap of 2 email per 1w reached until 2026-11-08T10:00:00"),
        "{why}"
    );
    assert_eq!(
        pacing.gate(ask("c", None, OnCap::Skip), now),
        Gate::Skip {
            why: "frequency cap of 2 email per 1w reached; on_cap: skip".into()
        }
    );
    // WeChat has no cap here.
    let wechat = Ask {
        channel: Channel::Wechat,
        ..ask("d", None, OnCap::Defer)
    };
    assert_eq!(pacing.gate(wechat, now), Gate::Go);
}

#[test]
fn unreachable_channels_are_reported_before_any_pacing() {
    let rules = rules(Some((1, "1d")), Some(("21:00", "08:00")));
    let mut pacing = Pacing::new(&rules, LeadId(7), chrono_tz::UTC);
    pacing.unreachable(Channel::Email, "suppressed: hard_bounce");
    assert_eq!(
        pacing.gate(ask("a", None, OnCap::Defer), at("2026-11-03T23:00:00Z")),
        Gate::Unreachable {
            why: "suppressed: hard_bounce".into()
        }
    );
}

#[test]
fn a_send_outside_the_window_waits_for_the_lead_s_local_opening_across_a_dst_change() {
    // New York moves to summer time on Sunday 2026-03-08. A send on Saturday afternoon waits
    // for Monday 09:00 local, which is 13:00 UTC (EDT), not 14:00 (EST).
    let rules = rules(None, None);
    let window = weekdays("09:00", "18:00");
    let mut pacing = Pacing::new(&rules, LeadId(7), chrono_tz::America::New_York);
    let gate = pacing.gate(ask("a", Some(&window), OnCap::Defer), at("2026-03-07T20:00:00Z"));
    let until = deferred_to(&gate);
    let open = at("2026-03-09T13:00:00Z");
    assert!(
        until >= open && until < open + Duration::minutes(15),
        "spread over the first 15 minutes: {until}"
    );
    let Gate::Defer { why, .. } = &gate else { unreachable!() };
    assert!(
        why.contains("outside the send window (mon,tue,wed,thu,fri 09:00-18:00 America/New_York)"),
        "{why}"
    );
    assert!(why.contains("opens 2026-03-09T09:00:00-04:00"), "{why}");
    // The week before, still on standard time, the same opening was 14:00 UTC.
    let before = deferred_to(&pacing.gate(ask("a", Some(&window), OnCap::Defer), at("2026-02-28T20:00:00Z")));
    assert_eq!(
        until - before,
        Duration::days(7) - Duration::hours(1),
        "Monday 14:00 UTC then, 13:00 now"
    );
    // Inside the window, it goes at once; a Shanghai lead at the same instant is asleep.
    assert_eq!(
        pacing.gate(ask("a", Some(&window), OnCap::Defer), at("2026-03-09T15:00:00Z")),
        Gate::Go
    );
    let mut shanghai = Pacing::new(&rules, LeadId(7), chrono_tz::Asia::Shanghai);
    let until = deferred_to(&shanghai.gate(ask("a", Some(&window), OnCap::Defer), at("2026-03-09T15:00:00Z")));
    assert!(
        until >= at("2026-03-10T01:00:00Z") && until < at("2026-03-10T01:15:00Z"),
        "{until}"
    );
}

#[test]
fn quiet_hours_span_midnight_in_the_lead_s_zone() {
    let rules = rules(None, Some(("21:00", "08:00")));
    let mut pacing = Pacing::new(&rules, LeadId(7), chrono_tz::Asia::Shanghai);
    // 23:30 in Shanghai: quiet until 08:00, which is 00:00 UTC; spread over 10 minutes.
    let gate = pacing.gate(ask("a", None, OnCap::Defer), at("2026-11-03T15:30:00Z"));
    let until = deferred_to(&gate);
    assert!(
        until >= at("2026-11-04T00:00:00Z") && until < at("2026-11-04T00:10:00Z"),
        "{until}"
    );
    let Gate::Defer { why, .. } = &gate else { unreachable!() };
    assert!(why.starts_with("in quiet hours (21:00-08:00 Asia/Shanghai)"), "{why}");
    // 02:00 local, after midnight: the same morning.
    let until = deferred_to(&pacing.gate(ask("a", None, OnCap::Defer), at("2026-11-03T18:00:00Z")));
    assert!(
        until >= at("2026-11-04T00:00:00Z") && until < at("2026-11-04T00:10:00Z"),
        "{until}"
    );
    // Noon local goes.
    assert_eq!(
        pacing.gate(ask("a", None, OnCap::Defer), at("2026-11-04T04:00:00Z")),
        Gate::Go
    );
}

#[test]
fn a_cap_and_a_window_together_wait_for_the_first_moment_both_allow() {
    let rules = rules(Some((1, "1d")), None);
    let window = weekdays("09:00", "18:00");
    let mut pacing = Pacing::new(&rules, LeadId(7), chrono_tz::UTC);
    // Sent Friday 17:00; the cap frees Saturday 17:00, the window opens Monday 09:00.
    pacing.sent(Channel::Email, at("2026-11-06T17:00:00Z"));
    let gate = pacing.gate(ask("a", Some(&window), OnCap::Defer), at("2026-11-06T17:30:00Z"));
    let until = deferred_to(&gate);
    assert!(
        until >= at("2026-11-09T09:00:00Z") && until < at("2026-11-09T09:15:00Z"),
        "{until}"
    );
    let Gate::Defer { why, .. } = &gate else { unreachable!() };
    assert!(
        why.contains("frequency cap") && why.contains("outside the send window"),
        "{why}"
    );
}

#[test]
fn spread_is_stable_per_lead_and_differs_between_leads() {
    let rules = rules(None, None);
    let window = weekdays("09:00", "18:00");
    let now = at("2026-11-07T12:00:00Z");
    let until = |lead| {
        deferred_to(&Pacing::new(&rules, LeadId(lead), chrono_tz::UTC).gate(ask("a", Some(&window), OnCap::Defer), now))
    };
    assert_eq!(until(1), until(1));
    let distinct: BTreeSet<DateTime<Utc>> = (1..50).map(until).collect();
    assert!(
        distinct.len() > 40,
        "50 leads spread over 15 minutes: {} distinct times",
        distinct.len()
    );
}

#[test]
fn a_window_opening_in_a_spring_gap_opens_when_the_clocks_jump_and_an_autumn_overlap_takes_the_first() {
    let berlin = chrono_tz::Europe::Berlin;
    let day = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
    // 02:30 does not happen in Berlin that night: the clocks go from 02:00 CET to 03:00 CEST.
    assert_eq!(local_instant(berlin, day, 9_000), at("2026-03-29T01:00:00Z"));
    let ny = chrono_tz::America::New_York;
    let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    // 01:30 happens twice in New York that night; the first is EDT.
    assert_eq!(local_instant(ny, day, 5_400), at("2026-11-01T05:30:00Z"));
}

mod properties {
    //! Any interleaving of campaigns asking to send to one lead, in a time zone with or without
    //! daylight saving: the cap is never exceeded in any window, nothing goes out in quiet
    //! hours or outside a campaign's window, and a deferral is always to a later moment.

    use super::*;
    use proptest::prelude::*;

    const ZONES: [Tz; 5] = [
        chrono_tz::Asia::Shanghai,
        chrono_tz::America::New_York,
        chrono_tz::Europe::Berlin,
        chrono_tz::Australia::Sydney,
        chrono_tz::America::Sao_Paulo,
    ];
    const QUIET: [Option<(&str, &str)>; 4] = [
        None,
        Some(("21:00", "08:00")),
        Some(("01:30", "03:30")),
        Some(("12:00", "13:00")),
    ];
    const PERIODS: [&str; 4] = ["1h", "1d", "2d", "7d"];

    /// One campaign's wish to send: when it first asks, and whether it has a weekday window.
    #[derive(Debug, Clone)]
    struct Wish {
        campaign: usize,
        first_ask_minutes: i64,
        windowed: bool,
    }

    fn wishes() -> impl Strategy<Value = Vec<Wish>> {
        prop::collection::vec(
            (0usize..4, 0i64..60 * 24 * 30, any::<bool>()).prop_map(|(campaign, first_ask_minutes, windowed)| Wish {
                campaign,
                first_ask_minutes,
                windowed,
            }),
            1..25,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn caps_hold_and_nothing_goes_out_in_quiet_hours(
            zone in 0usize..ZONES.len(),
            quiet in 0usize..QUIET.len(),
            max in 1u32..4,
            period in 0usize..PERIODS.len(),
            wishes in wishes(),
        ) {
            let tz = ZONES[zone];
            let rules = rules(Some((max, PERIODS[period])), QUIET[quiet]);
            let window = weekdays("09:00", "17:00");
            let names = ["welcome", "drip", "webinar", "activation"];
            let start = at("2026-03-01T00:00:00Z"); // across both DST changes of the year's first half
            // (next ask, wish): asks are served in time order, a deferred one asks again then.
            let mut queue: Vec<(DateTime<Utc>, Wish)> = wishes
                .into_iter()
                .map(|w| (start + Duration::minutes(w.first_ask_minutes), w))
                .collect();
            let mut pacing = Pacing::new(&rules, LeadId(7), tz);
            let mut sent: Vec<DateTime<Utc>> = Vec::new();
            let mut asks = 0;
            while let Some(next) = (0..queue.len()).min_by_key(|i| queue[*i].0) {
                let (now, wish) = queue.swap_remove(next);
                asks += 1;
                prop_assert!(asks < 10_000, "asks never settle");
                let window = wish.windowed.then_some(&window);
                let gate = pacing.gate(
                    Ask { campaign: names[wish.campaign], step: "s", channel: Channel::Email, window, on_cap: OnCap::Defer },
                    now,
                );
                match gate {
                    Gate::Go => {
                        prop_assert!(inside(now, tz, window, rules.quiet_hours.as_ref()), "sent at {now} ({tz}) outside its hours");
                        sent.push(now);
                    }
                    Gate::Defer { until, why } => {
                        prop_assert!(until > now, "deferred to {until}, not after {now}: {why}");
                        queue.push((until, wish));
                    }
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            sent.sort();
            let per = rules.frequency[&Channel::Email].per.to_chrono();
            for (i, first) in sent.iter().enumerate() {
                let within = sent[i..].iter().take_while(|t| **t - *first < per).count();
                prop_assert!(within <= max as usize, "{within} sends within {per} from {first}, cap {max}");
            }
        }
    }
}
