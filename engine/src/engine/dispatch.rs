//! The dispatcher: takes pending outbox messages, renders them (templates, click-tracked links,
//! the open pixel and the unsubscribe link), and sends them with bounded concurrency. Rendering
//! happens here, not when the step runs, so transitions stay cheap.
//!
//! A message is leased while it is being sent; a crash makes it due again when the lease ends,
//! so an e-mail that was on the wire at the crash may go twice, but none is lost. A transient
//! failure is retried with exponential backoff; a permanent one, or too many attempts, marks
//! the message failed and the flow goes on without it.

use chrono::Duration;
use futures_util::stream::{self, StreamExt};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Arc;

use super::{Engine, EngineResult, Phase};
use crate::channel::Channel;
use crate::clock::to_micros;
use crate::condition::EventFact;
use crate::event::EventInput;
use crate::lead::{ConsentStatus, Lead, LeadRef};
use crate::mail::rate::SendLimits;
use crate::mail::{Mailer, OutgoingEmail, SendError};
use crate::report::{CountKey, MessageFigures};
use crate::store::handoffs::NotificationOutcome;
use crate::store::{email_hash, CountDelta, MessageOutcome, MessageTarget, PendingMessage};
use crate::template::{Links, RenderInput};
use crate::tracking::{Token, TrackingKey};
use crate::wechat::{TemplateMessage, WechatSender};

/// After this many attempts a transiently failing message is given up.
pub const MAX_ATTEMPTS: i64 = 8;
/// Messages a dispatch pass claims: enough that claiming, loading and rendering (spread over
/// the cores) are a small share of a pass, few enough that a pass's sends end well within the
/// lease at the pool's pace.
pub const DISPATCH_BATCH: i64 = 1_000;
/// How long a claimed message is held before another dispatcher may take it.
pub(super) const LEASE: Duration = Duration::minutes(5);
/// How long a manual clock's advance waits for sends in flight before it moves past their
/// leases (see `Engine::await_sends_in_flight`).
pub(super) const IN_FLIGHT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where and as whom mail goes.
#[derive(Clone)]
pub struct Sender {
    pub mailer: Arc<dyn Mailer>,
    /// `Name <address>`.
    pub from: String,
    /// The base of tracking and unsubscribe links (`--public-url`).
    pub public_url: String,
    pub key: TrackingKey,
    /// Messages on the wire at once.
    pub concurrency: usize,
    /// The WeChat Official Account, when one is configured; without it WeChat messages wait
    /// (retried with backoff) for a server that has one.
    pub wechat: Option<Arc<dyn WechatSender>>,
    /// Send rates (global, per recipient domain) and the warm-up schedule.
    pub limits: Arc<SendLimits>,
}

/// A dispatch pass waits this long at most for tokens of its rates; messages still waiting
/// then go back in the outbox for later (without counting an attempt), so a slow domain
/// cannot keep a claimed batch past its lease.
const HOLD_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// What one dispatch pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DispatchReport {
    pub sent: usize,
    pub failed: usize,
    pub retrying: usize,
    pub skipped: usize,
    /// Held back by a send rate or the warm-up's daily allowance: back in the outbox for later.
    pub held: usize,
    /// Of `failed`, recipients the relay refused for good: their addresses are suppressed.
    pub bounced: usize,
    /// Of `sent`, WeChat template messages.
    pub wechat: usize,
    /// (message id, lead id) of each e-mail sent.
    #[serde(skip)]
    pub delivered: Vec<(i64, i64)>,
}

impl DispatchReport {
    pub fn handled(&self) -> usize {
        self.sent + self.failed + self.retrying + self.skipped + self.held
    }
}

impl Sender {
    pub(super) fn link(&self, path: &str, token: &Token) -> String {
        format!(
            "{}/{path}/{}",
            self.public_url.trim_end_matches('/'),
            self.key.sign(token)
        )
    }

    /// The host of the sender's address, for Message-IDs.
    pub(super) fn domain(&self) -> String {
        self.from
            .rsplit('@')
            .next()
            .map(|d| d.trim_end_matches('>').trim().to_owned())
            .filter(|d| !d.is_empty() && !d.contains(' '))
            .unwrap_or_else(|| "nurture.local".into())
    }

    /// Points every `http(s)` link of the HTML at the click redirect, except our own links.
    /// The token carries the link as a browser reads it: the attribute's character references
    /// decoded (`&amp;` is `&`; Handlebars writes `=` as `&#x3D;`), else the query string of
    /// every link a template writes through `{{href}}` would arrive mangled.
    pub fn track_clicks(&self, html: &str, message: i64) -> Result<String, String> {
        use lol_html::{element, rewrite_str, RewriteStrSettings};
        let own = self.public_url.trim_end_matches('/').to_owned();
        let sender = self.clone();
        rewrite_str(
            html,
            RewriteStrSettings {
                element_content_handlers: vec![element!("a[href]", move |el| {
                    let raw = el.get_attribute("href").unwrap_or_default();
                    let href = html_escape::decode_html_entities(raw.trim()).into_owned();
                    let web = href.starts_with("http://") || href.starts_with("https://");
                    if web && !href.starts_with(&own) {
                        let link = el.get_attribute("data-link").unwrap_or_default();
                        let link = html_escape::decode_html_entities(&link).into_owned();
                        let token = Token::Click {
                            message,
                            url: href.clone(),
                            link,
                        };
                        el.set_attribute("href", &sender.link("t/c", &token))?;
                    }
                    Ok(())
                })],
                ..RewriteStrSettings::new()
            },
        )
        .map_err(|e| format!("rewriting links: {e}"))
    }
}

/// When to try again after `attempts` failures: 1, 2, 4, … minutes, at most an hour, with a
/// fixed jitter per message (±20%) so that retries of a batch spread out.
fn backoff(message: i64, attempts: i64) -> Duration {
    let base = 60i64 << attempts.clamp(0, 6);
    let base = base.min(3_600);
    let digest = sha2::Sha256::digest(format!("{message}/{attempts}").as_bytes());
    let spread = i64::from(digest[0]) * 40 / 255 - 20;
    Duration::seconds(base + base * spread / 100)
}

/// A send's result, or the rate that held it back (how long to wait, and which rate).
type Sent = Result<Result<(), SendError>, (std::time::Duration, String)>;

/// A claimed message and the language it is written in, for its counters.
struct Counted<'a> {
    message: &'a PendingMessage,
    language: &'static str,
}

enum Prepared {
    /// (message id, attempts so far, what goes out).
    Send(i64, i64, Outgoing),
    Done(MessageOutcome),
}

enum Outgoing {
    Email(OutgoingEmail),
    Wechat(TemplateMessage),
}

impl Engine {
    /// Sends up to `limit` due messages; returns what happened to them.
    ///
    /// Long on purpose: one pass of the dispatcher in its phases (claim, read, render, send
    /// while recording), timed phase by phase for `/metrics`; the send and record futures share
    /// the channel between them.
    pub async fn dispatch(&self, sender: &Sender, limit: i64) -> EngineResult<DispatchReport> {
        let _turn = self.dispatching.lock().await;
        let now = self.now();
        // While a manual clock is advanced, leases run from the end of its span: another
        // process on the same database, whose own manual clock may already stand there, must
        // not take messages in flight here for abandoned ones.
        let lease = now.max(self.advancing_to()) + LEASE;
        let mut report = DispatchReport::default();
        // No more than the warm-up allows today, nor than the rate sends well within the lease.
        let mut limit = match self.warmup_room(sender).await? {
            Some(room) if room <= 0 => return Ok(report),
            Some(room) => limit.min(room),
            None => limit,
        };
        if let Some(budget) = sender.limits.claim_budget(60) {
            limit = limit.min(budget);
        }
        let started = std::time::Instant::now();
        let claimed = self.store.claim_messages(now, lease, limit).await?;
        if claimed.is_empty() {
            return Ok(report);
        }
        let mut ids: Vec<i64> = claimed.iter().map(|m| m.lead_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.store.begin_read().await?;
        let leads: HashMap<i64, Lead> = tx
            .find_leads(&ids, &[], &[])
            .await?
            .into_iter()
            .map(|l| (l.id.0, l))
            .collect();
        let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
        for (id, tag, _) in tx.load_tags(&ids).await? {
            tags.entry(id).or_default().push(tag);
        }
        // Checked again at send time: a bounce or complaint since the step ran stops the message.
        let hashes: Vec<String> = leads
            .values()
            .filter_map(|l| l.email.as_deref().map(email_hash))
            .collect();
        let suppressed: HashMap<String, String> = tx
            .suppressions(&hashes)
            .await?
            .into_iter()
            .map(|s| (s.email_hash, s.reason))
            .collect();
        // Only messages whose template reads `{{event.…}}` need the event that enrolled the lead.
        let playbook = self.playbook();
        let mut reads: HashMap<&str, bool> = HashMap::new();
        let reading: Vec<i64> = claimed
            .iter()
            .filter(|m| {
                *reads
                    .entry(m.template.as_str())
                    .or_insert_with(|| playbook.templates.reads_event(&m.template))
            })
            .map(|m| m.enrollment_id)
            .collect();
        let events: HashMap<i64, EventFact> = if reading.is_empty() {
            HashMap::new()
        } else {
            tx.enrolling_events(&reading).await?.into_iter().collect()
        };
        tx.commit().await?;
        self.phases.since(Phase::Claim, started);

        // Rendering is the dispatcher's CPU work: spread over the cores for a large claim.
        let prepare = |part: &[PendingMessage]| -> Vec<(Prepared, &'static str)> {
            part.iter()
                .map(|m| {
                    let lead = leads.get(&m.lead_id);
                    let suppressed = lead
                        .and_then(|l| l.email.as_deref())
                        .and_then(|e| suppressed.get(&email_hash(e)))
                        .map(String::as_str);
                    let event = events.get(&m.enrollment_id);
                    self.prepare(
                        sender,
                        m,
                        Recipient {
                            lead,
                            tags: tags.get(&m.lead_id),
                            suppressed,
                            event,
                        },
                    )
                })
                .collect()
        };
        let rendering = std::time::Instant::now();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let prepared: Vec<(Prepared, &'static str)> = if cores > 1 && claimed.len() >= 64 {
            let size = claimed.len().div_ceil(cores);
            std::thread::scope(|scope| {
                let parts: Vec<_> = claimed
                    .chunks(size)
                    .map(|part| scope.spawn(move || prepare(part)))
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|part| part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                    .collect()
            })
        } else {
            prepare(&claimed)
        };
        self.phases.since(Phase::Render, rendering);
        let mut outcomes = Vec::with_capacity(prepared.len());
        let mut jobs = Vec::new();
        let mut about: HashMap<i64, Counted<'_>> = HashMap::with_capacity(claimed.len());
        for (m, (p, language)) in claimed.iter().zip(prepared) {
            about.insert(m.id, Counted { message: m, language });
            match p {
                Prepared::Done(outcome) => outcomes.push(outcome),
                Prepared::Send(id, attempts, outgoing) => jobs.push((id, attempts, outgoing)),
            }
        }
        let lead_of: HashMap<i64, i64> = claimed.iter().map(|m| (m.id, m.lead_id)).collect();
        self.finish(&mut report, outcomes, &about).await?;
        // Sending and recording overlap: while one batch of outcomes is written, the pool keeps
        // sending, and the next write takes every outcome that arrived meanwhile. Outcomes are
        // still written as sends complete, not once for the whole claim: a crash can then only
        // resend the e-mails whose outcome was not yet written.
        let pass = std::time::Instant::now();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let sending = stream::iter(jobs)
            .map(|(id, attempts, outgoing)| async move {
                let result = match &outgoing {
                    Outgoing::Email(email) => {
                        let domain = email.to.rsplit('@').next().unwrap_or_default();
                        loop {
                            match sender.limits.take(domain) {
                                Ok(()) => break Ok(sender.mailer.send(email).await),
                                Err((wait, _)) if pass.elapsed() + wait <= HOLD_MAX => tokio::time::sleep(wait).await,
                                Err(held) => break Err(held),
                            }
                        }
                    }
                    Outgoing::Wechat(message) => Ok(match &sender.wechat {
                        Some(wechat) => wechat.send(message).await.map(|_| ()),
                        None => Err(SendError::Transient(
                            "no WeChat Official Account is configured on this server (--wechat-appid, --wechat-secret)"
                                .into(),
                        )),
                    }),
                };
                (id, attempts, matches!(outgoing, Outgoing::Email(_)), result)
            })
            .buffer_unordered(sender.concurrency.max(1))
            .for_each(move |done| {
                // The receiver lives until every send is in; a send after it stopped (on a
                // database error) has nowhere to be recorded and is resent after the lease.
                let _ = done_tx.send(done);
                std::future::ready(())
            });
        let recording = async {
            let mut done = Vec::new();
            while done_rx.recv_many(&mut done, usize::MAX).await > 0 {
                let (outcomes, bounces) = self.outcomes(&mut report, &lead_of, std::mem::take(&mut done));
                self.finish(&mut report, outcomes, &about).await?;
                if !bounces.is_empty() {
                    // As if the relay's bounce had been posted: the address is suppressed, and
                    // the lead's journeys see the event like any other.
                    report.bounced += bounces.len();
                    self.ingest_events(bounces).await?;
                }
            }
            EngineResult::Ok(())
        };
        // A write that fails stops the sending too: what was sent but not recorded is resent
        // after the lease, so the fewer the better.
        futures_util::future::try_join(
            async {
                sending.await;
                self.phases.since(Phase::Send, pass);
                EngineResult::Ok(())
            },
            recording,
        )
        .await?;
        self.phases.pass_ended(started, claimed.len());
        Ok(report)
    }

    /// Sends due notifications (e-mails to people inside the company, such as a queue's
    /// `on_breach.notify`): no tracking, no unsubscribe, no send rates (there are few), retried
    /// with backoff like campaign mail. Returns how many were sent.
    pub async fn send_notifications(&self, sender: &Sender, limit: i64) -> EngineResult<usize> {
        let now = self.now();
        let taken = self
            .store
            .claim_notifications(to_micros(now), to_micros(now + LEASE), limit)
            .await?;
        let outcomes: Vec<NotificationOutcome> = stream::iter(taken)
            .map(|n| async move {
                let email = OutgoingEmail {
                    from: sender.from.clone(),
                    to: n.recipient.clone(),
                    subject: n.subject.clone(),
                    html: String::new(),
                    text: n.body.clone(),
                    message_id: format!("<n{}@{}>", n.id, sender.domain()),
                    unsubscribe_url: String::new(),
                };
                let result = sender.mailer.send(&email).await;
                let (status, error, next) = match result {
                    Ok(()) => ("sent", None, None),
                    Err(SendError::Transient(reason)) if n.attempts < MAX_ATTEMPTS => (
                        "pending",
                        Some(reason),
                        Some(to_micros(now + backoff(-n.id, n.attempts))),
                    ),
                    Err(e) => ("failed", Some(e.to_string()), None),
                };
                if let Some(error) = &error {
                    tracing::warn!(notification = n.id, to = %n.recipient, %error, status, "A notification was not sent.");
                }
                NotificationOutcome {
                    id: n.id,
                    status,
                    error,
                    next_attempt_at: next,
                    at: to_micros(now),
                }
            })
            .buffer_unordered(sender.concurrency.max(1))
            .collect()
            .await;
        self.store.finish_notifications(&outcomes).await?;
        Ok(outcomes.iter().filter(|o| o.status == "sent").count())
    }

    /// What the sends that completed mean for their messages, and the hard bounces among them.
    fn outcomes(
        &self,
        report: &mut DispatchReport,
        lead_of: &HashMap<i64, i64>,
        done: Vec<(i64, i64, bool, Sent)>,
    ) -> (Vec<MessageOutcome>, Vec<EventInput>) {
        let now = self.now();
        let mut outcomes = Vec::with_capacity(done.len());
        let mut bounces = Vec::new();
        for (id, attempts, email, result) in done {
            let result = match result {
                Ok(result) => result,
                Err((wait, which)) => {
                    let wait = Duration::from_std(wait).unwrap_or(Duration::seconds(1));
                    outcomes.push(MessageOutcome {
                        id,
                        status: "pending".into(),
                        reason: Some(format!("rate limited: {which}")),
                        next_attempt_at: Some(to_micros(now + wait)),
                        refund: 1,
                        ..Default::default()
                    });
                    continue;
                }
            };
            match (&result, email) {
                (Ok(()), true) => report
                    .delivered
                    .push((id, lead_of.get(&id).copied().unwrap_or_default())),
                (Ok(()), false) => report.wechat += 1,
                _ => {}
            }
            outcomes.push(match result {
                Ok(()) => MessageOutcome {
                    id,
                    status: "sent".into(),
                    reason: None,
                    sent_at: Some(to_micros(now)),
                    next_attempt_at: None,
                    refund: 0,
                    ..Default::default()
                },
                Err(SendError::Permanent(reason)) => failed(id, reason),
                Err(SendError::Rejected(reason)) => {
                    if let Some(lead) = lead_of.get(&id) {
                        bounces.push(hard_bounce(*lead, id, &reason));
                    }
                    MessageOutcome {
                        refused: true,
                        ..failed(id, reason)
                    }
                }
                Err(SendError::Transient(reason)) if attempts >= MAX_ATTEMPTS => {
                    failed(id, format!("gave up after {attempts} attempts: {reason}"))
                }
                Err(SendError::Transient(reason)) => {
                    tracing::debug!(message = id, attempts, %reason, "Send failed; retrying later.");
                    MessageOutcome {
                        id,
                        status: "pending".into(),
                        reason: Some(reason),
                        sent_at: None,
                        next_attempt_at: Some(to_micros(now + backoff(id, attempts))),
                        refund: 0,
                        ..Default::default()
                    }
                }
            });
        }
        (outcomes, bounces)
    }

    /// Records outcomes, with what they add to the report counters, and counts them in the
    /// pass's report.
    async fn finish(
        &self,
        report: &mut DispatchReport,
        mut outcomes: Vec<MessageOutcome>,
        about: &HashMap<i64, Counted<'_>>,
    ) -> EngineResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let hour = crate::report::hour_of(to_micros(self.now()));
        let mut deltas = Vec::new();
        for outcome in &mut outcomes {
            match outcome.status.as_str() {
                _ if outcome.refund > 0 => report.held += 1,
                "sent" => report.sent += 1,
                "failed" => report.failed += 1,
                "skipped" => report.skipped += 1,
                _ => report.retrying += 1,
            }
            let Some(counted) = about.get(&outcome.id) else {
                continue;
            };
            outcome.language = Some(counted.language.to_owned());
            let mut figures = MessageFigures::default();
            match outcome.status.as_str() {
                "sent" => figures.sent = 1,
                "failed" if outcome.refused => {
                    figures.sent = 1;
                    figures.bounced_hard = 1;
                }
                "failed" => figures.failed = 1,
                "skipped" => figures.skipped = 1,
                _ => continue,
            }
            let m = counted.message;
            deltas.push(CountDelta {
                key: CountKey {
                    campaign: m.campaign_id.clone(),
                    step: m.step.clone(),
                    version: m.version.clone(),
                    template: m.template.clone(),
                    channel: m.channel.as_str().to_owned(),
                    language: counted.language.to_owned(),
                },
                hour: outcome.sent_at.map_or(hour, crate::report::hour_of),
                shard: m.id,
                figures,
            });
        }
        let started = std::time::Instant::now();
        let deltas = crate::store::reports::merge_deltas(deltas);
        self.store.finish_messages(&outcomes, &deltas).await?;
        self.totals.add(&deltas);
        self.phases.since(Phase::Record, started);
        Ok(())
    }

    /// Long on purpose: every reason a claimed message is not sent (consent, suppression,
    /// missing address, render error, channel) in the order they are asked, then the message
    /// built for its channel.
    fn prepare(&self, sender: &Sender, message: &PendingMessage, to: Recipient<'_>) -> (Prepared, &'static str) {
        let playbook = self.playbook();
        let default = playbook.rules.default_language;
        let language = to.lead.map_or(default, |lead| {
            playbook.templates.language_of(&message.template, lead, default)
        });
        (self.prepare_in(sender, message, to), language.code())
    }

    fn prepare_in(&self, sender: &Sender, message: &PendingMessage, to: Recipient<'_>) -> Prepared {
        let Recipient {
            lead,
            tags,
            suppressed,
            event,
        } = to;
        let done = |status: &str, reason: String| {
            Prepared::Done(MessageOutcome {
                id: message.id,
                status: status.into(),
                reason: Some(reason),
                sent_at: None,
                next_attempt_at: None,
                refund: 0,
                ..Default::default()
            })
        };
        let Some(lead) = lead else {
            return done("skipped", "the lead was erased".into());
        };
        let playbook = self.playbook();
        let timezone = lead.timezone(playbook.rules.default_timezone);
        let no_tags = Vec::new();
        let input = RenderInput {
            lead,
            tags: tags.unwrap_or(&no_tags),
            campaign: &message.campaign_id,
            step: &message.step,
            timezone,
            default_language: playbook.rules.default_language,
            event,
        };
        // Consent is checked again at send time: an opt-out stops messages already queued.
        match message.channel {
            Channel::Email => {}
            Channel::Wechat => {
                if lead.consent.wechat.status == ConsentStatus::OptedOut {
                    return done("skipped", "unsubscribed".into());
                }
                let Some(openid) = lead
                    .attributes
                    .get("wechat_openid")
                    .and_then(|v| v.as_str())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                else {
                    return done("skipped", "no_wechat_openid".into());
                };
                return match playbook.templates.render_wechat(&message.template, &input) {
                    Ok(rendered) => Prepared::Send(
                        message.id,
                        message.attempts,
                        Outgoing::Wechat(TemplateMessage {
                            touser: openid.to_owned(),
                            template_id: rendered.template_id,
                            url: rendered.url,
                            data: rendered.data,
                        }),
                    ),
                    Err(reason) => done("failed", reason),
                };
            }
            Channel::Webhook => {
                return done(
                    "failed",
                    "webhook messages are not sent by this version of nurture".into(),
                )
            }
        }
        let Some(to) = lead.email.clone() else {
            return done("skipped", "no_email".into());
        };
        if lead.consent.email.status == ConsentStatus::OptedOut {
            return done("skipped", "unsubscribed".into());
        }
        if let Some(why) = suppressed {
            return done("skipped", format!("suppressed: {why}"));
        }
        let unsubscribe = sender.link("u", &Token::Unsubscribe { message: message.id });
        let links = Links {
            open_pixel: sender.link("t/o", &Token::Open { message: message.id }),
            unsubscribe: unsubscribe.clone(),
        };
        let rendered = match playbook.templates.render_email(&message.template, &input, &links) {
            Ok(rendered) => rendered,
            Err(reason) => return done("failed", reason),
        };
        let html = match sender.track_clicks(&rendered.html, message.id) {
            Ok(html) => html,
            Err(reason) => return done("failed", reason),
        };
        let stamp =
            hex::encode(&sha2::Sha256::digest(format!("{}/{}", message.enrollment_id, message.id).as_bytes())[..6]);
        Prepared::Send(
            message.id,
            message.attempts,
            Outgoing::Email(OutgoingEmail {
                from: sender.from.clone(),
                to,
                subject: rendered.subject,
                html,
                text: rendered.text,
                message_id: format!("<m{}.{stamp}@{}>", message.id, sender.domain()),
                unsubscribe_url: unsubscribe,
            }),
        )
    }

    /// How many more e-mails the warm-up allows today (`None`: no warm-up). Its first day is the
    /// day of the first dispatch with a warm-up, kept as a setting.
    async fn warmup_room(&self, sender: &Sender) -> EngineResult<Option<i64>> {
        let Some(warmup) = sender.limits.warmup else {
            return Ok(None);
        };
        let now = self.now();
        let today = now.date_naive();
        let first = self.store.setting("warmup_started", &today.to_string()).await?;
        let first = first.parse().unwrap_or(today);
        let midnight = today.and_time(chrono::NaiveTime::MIN).and_utc();
        let sent = self.store.emails_sent_since(to_micros(midnight)).await?;
        Ok(Some(
            i64::try_from(warmup.allowance(first, now)).unwrap_or(i64::MAX) - sent,
        ))
    }

    /// The lead a tracked message went to, its channel and when it was sent.
    pub async fn message_lead(&self, message: i64) -> EngineResult<Option<MessageTarget>> {
        Ok(self.store.message_lead(message).await?)
    }
}

/// The `email_bounced` event of a recipient the relay refused.
fn hard_bounce(lead: i64, message: i64, reason: &str) -> EventInput {
    let mut properties = serde_json::Map::new();
    properties.insert("kind".into(), "hard".into());
    properties.insert("message_id".into(), message.into());
    properties.insert("reason".into(), reason.into());
    EventInput {
        lead: LeadRef {
            id: Some(lead.to_string()),
            email: None,
            external_id: None,
        },
        kind: "email_bounced".into(),
        occurred_at: None,
        properties,
        idempotency_key: Some(format!("bounce:{message}")),
        source: Some("smtp".into()),
    }
}

fn failed(id: i64, reason: String) -> MessageOutcome {
    MessageOutcome {
        id,
        status: "failed".into(),
        reason: Some(reason),
        sent_at: None,
        next_attempt_at: None,
        refund: 0,
        ..Default::default()
    }
}

/// What `prepare` knows of a message's recipient: the lead (`None`: erased), its tags, why its
/// address is suppressed, and the event that enrolled it, where a template reads one.
struct Recipient<'a> {
    lead: Option<&'a Lead>,
    tags: Option<&'a Vec<String>>,
    suppressed: Option<&'a str>,
    event: Option<&'a EventFact>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_spreads() {
        let secs: Vec<i64> = (1..=8).map(|a| backoff(42, a).num_seconds()).collect();
        for (a, s) in secs.iter().enumerate() {
            let base = (60i64 << (a + 1).min(6)).min(3_600);
            assert!((base * 8 / 10..=base * 12 / 10).contains(s), "attempt {}: {s}s", a + 1);
        }
        assert_ne!(backoff(1, 3), backoff(2, 3), "messages retry at different moments");
    }
}
