//! Template loading and rendering, on small in-memory template sets and the shipped ones.

use super::*;
use crate::lead::LeadId;
use serde_json::json;

fn templates(sources: &[(&str, &str)]) -> Templates {
    Templates::from_sources(
        None,
        sources.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect(),
    )
}

fn lead() -> Lead {
    let mut lead = Lead::new(LeadId(7), "2026-11-20T08:00:00Z".parse().unwrap());
    lead.email = Some("li.wei@acme.example".into());
    lead.fields.insert("company", "Acme & Co".into());
    lead
}

fn links() -> Links {
    Links {
        open_pixel: "https://t.example/t/o/abc".into(),
        unsubscribe: "https://t.example/u/abc".into(),
    }
}

fn input(lead: &Lead) -> RenderInput<'_> {
    RenderInput {
        lead,
        tags: &[],
        campaign: "welcome",
        step: "first",
        timezone: chrono_tz::Asia::Shanghai,
        default_language: Language::Zh,
        event: None,
    }
}

#[test]
fn renders_fields_defaults_dates_and_adds_the_footer() {
    let t = templates(&[
        ("partials/footer.hbs", "<footer>{{company}}</footer>"),
        ("hello.subject.hbs", "{{default first_name \"您好\"}}，欢迎"),
        (
            "hello.hbs",
            "<html><body><p>{{company}} {{attributes.plan}}</p><p>{{date created_at \"%Y-%m-%d %H:%M\"}}</p>{{> footer}}</body></html>",
        ),
    ]);
    assert!(t.issues().is_empty(), "{:?}", t.issues());
    let lead = lead();
    let email = t.render_email("hello", &input(&lead), &links()).unwrap();
    assert_eq!(email.subject, "您好，欢迎");
    assert!(email.html.contains("<p>Acme &amp; Co </p>"), "{}", email.html);
    assert!(
        email.html.contains("2026-11-20 16:00"),
        "time in Asia/Shanghai: {}",
        email.html
    );
    assert!(email.html.contains("<a href=\"https://t.example/u/abc\">退订</a>"));
    assert!(email.html.contains("<img src=\"https://t.example/t/o/abc\""));
    let body = email.html.find("</body>").unwrap();
    assert!(email.html.find("t/o/abc").unwrap() < body, "pixel inside the body");
    assert!(email.text.contains("Acme & Co"), "{}", email.text);
    assert!(
        email.text.ends_with("退订: https://t.example/u/abc\n"),
        "{}",
        email.text
    );
}

#[test]
fn the_language_attribute_picks_a_translation() {
    let t = templates(&[
        ("hello.subject.hbs", "欢迎"),
        ("hello.hbs", "<p>欢迎</p>"),
        ("en/hello.subject.hbs", "Welcome"),
        ("en/hello.hbs", "<p>Welcome</p>"),
        ("en/hello.txt.hbs", "Welcome, in text"),
    ]);
    let mut lead = lead();
    assert_eq!(
        t.render_email("hello", &input(&lead), &links()).unwrap().subject,
        "欢迎"
    );
    lead.attributes.insert("language".into(), "en-US".into());
    let email = t.render_email("hello", &input(&lead), &links()).unwrap();
    assert_eq!(
        (email.subject.as_str(), email.template.as_str()),
        ("Welcome", "en/hello")
    );
    assert!(email.html.contains(">Unsubscribe</a>"));
    assert!(email.text.starts_with("Welcome, in text"));
}

/// A template with no copy in the lead's language goes out in the playbook's default language,
/// and its footer with it: an English playbook's English lead never gets the Chinese footer.
#[test]
fn the_default_language_decides_a_template_without_a_copy_in_the_leads() {
    let t = templates(&[("note.subject.hbs", "Hello"), ("note.hbs", "<p>Hello</p>")]);
    let mut lead = lead();
    lead.attributes.insert("language".into(), "en".into());
    let chinese = t.render_email("note", &input(&lead), &links()).unwrap();
    assert_eq!(
        chinese.language,
        Language::Zh,
        "the top level is Chinese unless the playbook says"
    );
    assert!(chinese.html.contains(">退订</a>"));
    let english = RenderInput {
        default_language: Language::En,
        event: None,
        ..input(&lead)
    };
    let email = t.render_email("note", &english, &links()).unwrap();
    assert_eq!((email.template.as_str(), email.language), ("note", Language::En));
    assert!(email.html.contains(">Unsubscribe</a>") && !email.html.contains("退订"));
    assert!(email.text.ends_with("Unsubscribe: https://t.example/u/abc\n"));
    // A Chinese lead of an English playbook gets the same: there is no Chinese copy.
    lead.attributes.insert("language".into(), "zh-CN".into());
    let input_zh = RenderInput {
        default_language: Language::En,
        event: None,
        ..input(&lead)
    };
    assert_eq!(
        t.render_email("note", &input_zh, &links()).unwrap().language,
        Language::En
    );

    // Chinese at the top level with English copies, English by default: a lead of a language
    // with no copy gets English; a Chinese lead the top level.
    let t = templates(&[
        ("note.subject.hbs", "你好"),
        ("note.hbs", "<p>你好</p>"),
        ("en/note.subject.hbs", "Hello"),
        ("en/note.hbs", "<p>Hello</p>"),
    ]);
    for (language, template, expected) in [
        ("fr", "en/note", Language::En),
        ("", "en/note", Language::En),
        ("zh", "note", Language::Zh),
        ("en", "en/note", Language::En),
    ] {
        lead.attributes.insert("language".into(), language.into());
        let input = RenderInput {
            default_language: Language::En,
            event: None,
            ..input(&lead)
        };
        let email = t.render_email("note", &input, &links()).unwrap();
        assert_eq!(
            (email.template.as_str(), email.language),
            (template, expected),
            "{language}"
        );
    }
    for (tag, language) in [
        ("en-GB", Some(Language::En)),
        ("ZH_hans", Some(Language::Zh)),
        ("fr", None),
        ("", None),
    ] {
        assert_eq!(Language::parse(tag), language, "{tag}");
    }
}

#[test]
fn load_problems_are_positioned() {
    let t = templates(&[
        ("a.subject.hbs", "Hi {{frist_name}}"),
        ("a.hbs", "<p>{{#if company}}x{{/each}}</p>"),
        (
            "b.hbs",
            "{{> header}} {{shout company}} {{#each tags}}{{this}} {{whatever}}{{/each}}",
        ),
        ("c.json.hbs", "{\"who\": \"{{email}}\"}"),
        (
            "d.wechat.yaml",
            "template_id: TM1\ndata:\n  first: \"{{first_name}}\"\n  x: \"{{nope}}\"\n",
        ),
    ]);
    let issues: Vec<String> = t.issues().iter().map(|i| i.to_string()).collect();
    assert_eq!(
        issues,
        [
            "a.hbs:1:20: the template does not compile: helper \"if\" was opened, but \"each\" is closing",
            "a.subject.hbs:1:4: warning: \"frist_name\" is not a lead field or a template value; did you mean \"first_name\"?",
            "b.hbs: e-mail template \"b\" needs both NAME.hbs and NAME.subject.hbs; add b.subject.hbs",
            "b.hbs:1:1: partial \"header\" does not exist; add partials/header.hbs to the templates directory",
            "b.hbs:1:14: helper \"shout\" does not exist; the helpers are if, unless, each, with, lookup, raw, log, eq, ne, gt, gte, lt, lte, and, or, not, len, default, date, upper",
            "d.wechat.yaml:1:1: warning: \"nope\" is not a lead field or a template value; use a lead field (first_name, company, …), attributes.NAME, tags, score, campaign or step",
        ]
    );
    assert!(t.check(Channel::Webhook, "c").is_ok());
    assert!(t.check(Channel::Wechat, "d").is_ok());
    assert_eq!(
        t.check(Channel::Email, "zzz"),
        Err("e-mail template \"zzz\" does not exist: add zzz.hbs and zzz.subject.hbs".into())
    );
}

#[test]
fn every_shipped_template_renders_in_both_languages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    let t = Templates::load_dir(&dir);
    assert!(t.issues().is_empty(), "{:?}", t.issues());
    let mut lead = lead();
    lead.fields.insert("first_name", "伟".into());
    lead.fields.insert("industry", "Manufacturing".into());
    let names: Vec<String> = t.names().filter(|n| !n.contains('/')).map(str::to_owned).collect();
    assert!(names.len() >= 22, "{names:?}");
    for language in ["zh-CN", "en"] {
        lead.attributes.insert("language".into(), language.into());
        for name in &names {
            if t.check(Channel::Email, name).is_ok() {
                let email = t
                    .render_email(name, &input(&lead), &links())
                    .unwrap_or_else(|e| panic!("{name} ({language}): {e}"));
                assert!(
                    !email.subject.is_empty() && !email.subject.contains("{{"),
                    "{name}: {email:?}"
                );
                assert!(
                    email.html.contains("https://t.example/u/abc"),
                    "{name}: unsubscribe link"
                );
                assert!(
                    email.html.contains("utm_campaign=welcome"),
                    "{name}: campaign in the link"
                );
                assert!(
                    !email.text.contains('<'),
                    "{name}: the text part is text: {}",
                    email.text
                );
                assert_eq!(email.template.starts_with("en/"), language == "en", "{name}");
            } else {
                let message = t
                    .render_wechat(name, &input(&lead))
                    .unwrap_or_else(|e| panic!("{name} ({language}): {e}"));
                assert!(message.template_id.starts_with("OPENTM_"), "{name}");
                assert!(
                    message.data.values().all(|v| !v.is_empty() && !v.contains("{{")),
                    "{name}: {message:?}"
                );
            }
        }
    }
}

#[test]
fn wechat_and_json_render() {
    let t = templates(&[
        ("d.wechat.yaml", "template_id: TM1\nurl: \"https://x.example/{{id}}\"\ndata:\n  first: \"{{default first_name \\\"您好\\\"}}\"\n"),
        ("c.json.hbs", "{\"company\": \"{{company}}\", \"quote\": \"{{attributes.note}}\"}"),
    ]);
    let mut lead = lead();
    lead.attributes.insert("note".into(), "say \"hi\"".into());
    let w = t.render_wechat("d", &input(&lead)).unwrap();
    assert_eq!(w.template_id, "TM1");
    assert_eq!(w.url.as_deref(), Some("https://x.example/7"));
    assert_eq!(w.data["first"], "您好");
    let j = t.render_json("c", &input(&lead)).unwrap();
    assert_eq!(j, json!({"company": "Acme & Co", "quote": "say \"hi\""}));
}

#[test]
fn the_enrolling_event_is_read_as_event_and_is_empty_without_one() {
    let t = templates(&[
        ("reminder.subject.hbs", "明天：{{event.title}}"),
        (
            "reminder.hbs",
            "<p><a href=\"{{event.join_url}}\">入会</a>{{attributes.plan}}</p>",
        ),
        ("plain.subject.hbs", "Hi"),
        ("plain.hbs", "<p>{{company}}</p>"),
    ]);
    assert!(t.issues().is_empty(), "{:?}", t.issues());
    assert!(t.reads_event("reminder"));
    assert!(!t.reads_event("plain"));
    let lead = lead();
    let event = crate::condition::EventFact {
        kind: "registered".into(),
        occurred_at: lead.created_at,
        properties: json!({"title": "工业物联网直播", "join_url": "https://live.example/j/42"})
            .as_object()
            .unwrap()
            .clone(),
    };
    let with = RenderInput {
        event: Some(&event),
        ..input(&lead)
    };
    let email = t.render_email("reminder", &with, &links()).unwrap();
    assert_eq!(email.subject, "明天：工业物联网直播");
    assert!(
        email.html.contains("href=\"https://live.example/j/42\""),
        "{}",
        email.html
    );
    let without = t.render_email("reminder", &input(&lead), &links()).unwrap();
    assert_eq!(without.subject, "明天：");
}

#[test]
fn the_shipped_webinar_reminder_reads_its_event() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
    let t = Templates::load_dir(&dir);
    let event = crate::condition::EventFact {
        kind: "webinar_registered".into(),
        occurred_at: "2026-12-01T08:00:00Z".parse().unwrap(),
        properties: json!({
            "title": "Predictive maintenance",
            "starts_at": "2026-12-10T06:00:00Z",
            "join_url": "https://live.example/pdm"
        })
        .as_object()
        .unwrap()
        .clone(),
    };
    let mut lead = lead();
    for (language, subject) in [
        ("zh-CN", "明天见：Predictive maintenance"),
        ("en", "Predictive maintenance"),
    ] {
        lead.attributes.insert("language".into(), language.into());
        let with = RenderInput {
            event: Some(&event),
            ..input(&lead)
        };
        let email = t.render_email("webinar-reminder", &with, &links()).unwrap();
        assert!(email.subject.contains(subject), "{language}: {}", email.subject);
        assert!(
            email.html.contains("https://live.example/pdm"),
            "{language}: {}",
            email.html
        );
        // 06:00 UTC is 14:00 in Shanghai, the lead's time zone here.
        assert!(email.html.contains("14:00"), "{language}: {}", email.html);
    }
    assert!(t.reads_event("webinar-reminder"));
}
