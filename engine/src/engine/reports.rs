//! Reports: what a campaign's messages, or one template's, did over a span of days, read from
//! the counters the engine keeps as it sends and ingests (`store::reports`), never from the
//! journey or the events.

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use serde::Serialize;

use super::{Engine, EngineError, EngineResult, StepFunnel};
use crate::report::attribution::{ConversionFigures, Conversions, Credit, StepConversions};
use crate::report::queue::{HandoffLine, HandoffPeriod, HandoffSummary, MemberPart, ReasonPart};
use crate::report::{
    self, FlowPart, Grouping, Line, MessageFigures, Part, PeriodPart, Span, SplitRate, SplitReport, StepPart, Summary,
    WaitPart,
};
use crate::store::CountScope;

/// The days a report covers and how it groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportWindow {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Grouping,
    pub tz: Tz,
    /// How many days after a campaign step reached a lead an outcome is credited to it
    /// (a campaign report's conversions), one of `attribution::WINDOWS`.
    pub attribution_days: i64,
}

impl ReportWindow {
    /// The days the window covers, in its zone.
    pub fn span(&self) -> Span {
        Span {
            from: self.from,
            to: self.to,
            tz: self.tz,
        }
    }
}

/// The attribution window when none is asked for.
pub const DEFAULT_ATTRIBUTION_DAYS: i64 = 30;

/// The longest span a report covers, in days: a year and a day, by day or week.
pub const MAX_REPORT_DAYS: i64 = 366;

/// What a campaign's or a template's messages did in a window.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// The campaign reported on (a campaign report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The template reported on (a message report): every campaign step that sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The first and last day covered (both included), in `tz`.
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Grouping,
    pub tz: String,
    /// The messages sent (or decided) in the window and what became of them, whenever their
    /// opens and clicks came; rates over delivered.
    pub totals: Summary,
    /// Per send step (campaign step, template, channel), in the campaign's graph order.
    pub steps: Vec<StepPart>,
    /// Per campaign version, template, channel and language.
    pub versions: Vec<Part>,
    pub templates: Vec<Part>,
    pub channels: Vec<Part>,
    pub languages: Vec<Part>,
    /// Per day (or week, named by its Monday), every one of the window.
    pub periods: Vec<PeriodPart>,
    /// A campaign's splits: each arm's leads and messages side by side, later arms compared
    /// with the first on the rate asked for (`?rate=open|click|handoff`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub splits: Option<Vec<SplitReport>>,
    /// A campaign's flow since it was first deployed (not limited to the window): per step,
    /// arrivals, enrollments waiting now, and the journey's outcomes (moves along each edge:
    /// `yes`, `no`, `sent`, `waited`; exits by reason: `goal`, `exited`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<Vec<StepFunnel>>,
    /// A campaign's flow in the window, per step and version: arrivals and the journey's
    /// outcomes in the window, and the enrollments waiting at the step now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_in_window: Option<Vec<FlowPart>>,
    /// A campaign's wait steps: how long the enrollments that went on from each in the window
    /// had waited there (p50, p90; within 12.5% above), per step and version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits: Option<Vec<WaitPart>>,
    /// A campaign's conversions in the window: leads that reached its goal, were handed off,
    /// accepted or converted within `window_days` of the campaign reaching them, credited to
    /// every campaign that reached them and to the last send step that did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversions: Option<Conversions>,
    /// The finest grain (period × step × version × template × channel × language): the CSV.
    #[serde(skip)]
    pub lines: Vec<Line>,
}

/// A report's window as asked for in words (a query string, command-line flags).
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowAsked<'a> {
    /// The first day, `2026-11-01`.
    pub from: Option<&'a str>,
    /// The last day (included); today when left out.
    pub to: Option<&'a str>,
    /// Instead of `from`: a span back from `to`, `30d`, `12w` (whole days).
    pub since: Option<&'a str>,
    /// `day` or `week`.
    pub by: Option<&'a str>,
    /// An IANA time zone, `Asia/Shanghai`; the Rules' time zone when left out.
    pub tz: Option<&'a str>,
    /// The attribution window of conversions, whole days (`30d`); 30 days when left out.
    pub window: Option<&'a str>,
}

/// Days a report covers when neither `from` nor `since` says.
pub const DEFAULT_REPORT_DAYS: i64 = 30;

impl Engine {
    /// The last `days` days up to today in `tz` (the Rules' time zone when `None`), at most
    /// `MAX_REPORT_DAYS`: the window a page or the demo asks for with no words to check.
    pub fn last_days(&self, days: i64, by: Grouping, tz: Option<Tz>) -> ReportWindow {
        let tz = tz.unwrap_or_else(|| self.report_timezone());
        let to = self.now().with_timezone(&tz).date_naive();
        ReportWindow {
            from: to - chrono::Duration::days(days.clamp(1, MAX_REPORT_DAYS) - 1),
            to,
            by,
            tz,
            attribution_days: DEFAULT_ATTRIBUTION_DAYS,
        }
    }

    /// The window `asked` names, or what is wrong with it (which parameter, and what it takes).
    pub fn report_window(&self, asked: WindowAsked<'_>) -> Result<ReportWindow, String> {
        let tz = match asked.tz.map(str::trim) {
            None => self.report_timezone(),
            Some("") => return Err("tz is empty; name an IANA time zone (Asia/Shanghai) or leave it out".into()),
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| format!("tz {name:?} is not an IANA time zone (Asia/Shanghai, Europe/Berlin, UTC)"))?,
        };
        let by = match asked.by.map(str::trim) {
            None | Some("day") => Grouping::Day,
            Some("week") => Grouping::Week,
            Some(other) => return Err(format!("by {other:?} is neither day nor week")),
        };
        // Years past 9999 are no date a report covers, and their next day may not exist.
        let day = |name: &str, text: &str| {
            NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .ok()
                .filter(|d| (1970..=9999).contains(&d.year()))
                .ok_or_else(|| format!("{name} {text:?} is not a date (2026-11-01) between 1970 and 9999"))
        };
        let to = match asked.to {
            Some(text) => day("to", text)?,
            None => self.now().with_timezone(&tz).date_naive(),
        };
        let from = match (asked.from, asked.since) {
            (Some(_), Some(_)) => return Err("give from or since, not both".into()),
            (Some(text), None) => day("from", text)?,
            (None, Some(text)) => {
                let span = text
                    .trim()
                    .parse::<crate::duration::Span>()
                    .map_err(|_| format!("since {text:?} is not a span of days (30d, 12w)"))?;
                let days = span.to_chrono().num_days();
                if days < 1 {
                    return Err(format!(
                        "since {text:?} is shorter than a day; reports count whole days"
                    ));
                }
                if days > MAX_REPORT_DAYS {
                    return Err(format!(
                        "since {text:?} is more than {MAX_REPORT_DAYS} days; ask for a shorter span, by week if long"
                    ));
                }
                to - chrono::Duration::days(days - 1)
            }
            (None, None) => to - chrono::Duration::days(DEFAULT_REPORT_DAYS - 1),
        };
        if from > to {
            return Err(format!("from {from} is after to {to}"));
        }
        if (to - from).num_days() + 1 > MAX_REPORT_DAYS {
            return Err(format!(
                "{from} to {to} is more than {MAX_REPORT_DAYS} days; ask for a shorter span, by week if long"
            ));
        }
        let attribution_days = match asked.window.map(str::trim) {
            None => DEFAULT_ATTRIBUTION_DAYS,
            Some(text) => {
                let windows = crate::report::attribution::WINDOWS;
                let problem = || {
                    let named: Vec<String> = windows.iter().map(|d| format!("{d}d")).collect();
                    format!("window {text:?} is not one of {} (or 1w, 2w)", named.join(", "))
                };
                let span = text.parse::<crate::duration::Span>().map_err(|_| problem())?;
                let chrono = span.to_chrono();
                let days = chrono.num_days();
                if chrono != chrono::Duration::days(days) || !windows.contains(&days) {
                    return Err(problem());
                }
                days
            }
        };
        Ok(ReportWindow {
            from,
            to,
            by,
            tz,
            attribution_days,
        })
    }

    /// The Rules' time zone, the one reports use when none is asked for.
    pub fn report_timezone(&self) -> Tz {
        self.playbook().rules.default_timezone
    }

    /// What campaign `id`'s messages did in `window`, and its flow. A campaign ever deployed
    /// has a report (a retired one too); any other id is `NotFound`.
    pub async fn campaign_report(&self, id: &str, window: ReportWindow, rate: SplitRate) -> EngineResult<Report> {
        let playbook = self.playbook();
        let campaign = playbook.campaigns.get(id);
        let name = match campaign {
            Some(c) => c.name.clone(),
            None => self
                .store
                .campaigns()
                .await?
                .into_iter()
                .find(|c| c.id == id)
                .map(|c| c.name)
                .ok_or(EngineError::NotFound)?,
        };
        let order: Vec<String> = campaign
            .map(|c| c.steps().map(|s| s.id.clone()).collect())
            .unwrap_or_default();
        let step_rank = |step: &str| order.iter().position(|s| s == step).unwrap_or(order.len());
        let rank = |_: &str, step: &str| step_rank(step);
        let mut report = self.tally(CountScope::Campaign(id), window, &rank).await?;
        report.campaign = Some(id.to_owned());
        report.name = Some(name);
        if let Some(c) = campaign {
            let flow = self.funnel(c).await?;
            let mut messages: std::collections::HashMap<String, MessageFigures> = Default::default();
            for step in &report.steps {
                messages
                    .entry(step.step.clone())
                    .or_default()
                    .add(&step.summary.figures);
            }
            let entered: std::collections::HashMap<String, (i64, i64)> = flow
                .iter()
                .map(|s| {
                    let handed_off = s.outcomes.get("handed_off").copied().unwrap_or(0);
                    (s.step.clone(), (s.entered, handed_off))
                })
                .collect();
            report.splits = Some(report::splits(&c.split_arms(), &messages, &entered, rate));
            report.flow = Some(flow);
            let (from, to) = window.span().hours();
            report.conversions = Some(
                self.conversions(id, (from, to), window.attribution_days, &step_rank)
                    .await?,
            );
            let deployed: Vec<String> = self
                .store
                .campaign_versions(id)
                .await?
                .into_iter()
                .map(|v| v.version)
                .collect();
            let version_rank = |v: &str| deployed.iter().position(|d| d == v).unwrap_or(deployed.len());
            let flows = self.store.flow_counts(id, from, to).await?;
            let waiting = self.store.waiting_by_version(id).await?;
            report.flow_in_window = Some(report::flow_parts(
                flows.iter().map(|f| {
                    (
                        f.step.as_str(),
                        f.version.as_str(),
                        f.outcome.as_str(),
                        f.entered,
                        f.lines,
                    )
                }),
                waiting.iter().map(|(s, v, n)| (s.as_str(), v.as_str(), *n)),
                &step_rank,
                &version_rank,
            ));
            let waits = self.store.wait_counts(id, from, to).await?;
            report.waits = Some(report::wait_parts(
                waits
                    .iter()
                    .map(|w| (w.step.as_str(), w.version.as_str(), w.bucket, w.n)),
                &step_rank,
                &version_rank,
            ));
        }
        Ok(report)
    }

    /// What the messages of template `name` did in `window`, in every campaign step that sent
    /// it. A template of the playbook in force, or one that sent anything in the window, has
    /// a report; any other name is `NotFound`.
    pub async fn message_report(&self, name: &str, window: ReportWindow) -> EngineResult<Report> {
        let playbook = self.playbook();
        let order: Vec<(String, String)> = playbook
            .campaigns
            .values()
            .flat_map(|c| c.steps().map(|s| (c.id.clone(), s.id.clone())))
            .collect();
        let rank = |campaign: &str, step: &str| {
            order
                .iter()
                .position(|(c, s)| c == campaign && s == step)
                .unwrap_or(order.len())
        };
        let report = self.tally(CountScope::Template(name), window, &rank).await?;
        let known = playbook.templates.names().any(|t| t == name);
        if !known && report.totals.figures.is_empty() {
            return Err(EngineError::NotFound);
        }
        Ok(Report {
            template: Some(name.to_owned()),
            ..report
        })
    }

    /// Campaign `id`'s conversion counters for outcomes in hours `from` ≤ hour < `to`.
    async fn conversions(
        &self,
        id: &str,
        (from, to): (i64, i64),
        window_days: i64,
        rank: &(dyn Fn(&str) -> usize + Sync),
    ) -> EngineResult<Conversions> {
        let rows = self.store.conversion_counts(id, from, to, window_days).await?;
        let mut campaign = ConversionFigures::default();
        let mut steps: std::collections::BTreeMap<(usize, String), ConversionFigures> = Default::default();
        for row in rows {
            match row.credit {
                Credit::Campaign => campaign.add(row.outcome, row.n),
                Credit::LastStep => steps
                    .entry((rank(&row.step), row.step))
                    .or_default()
                    .add(row.outcome, row.n),
            }
        }
        Ok(Conversions {
            window_days,
            campaign,
            last_step: steps
                .into_iter()
                .map(|((_, step), figures)| StepConversions { step, figures })
                .collect(),
        })
    }

    /// The zone whose day rows (`Store::fold_counters`, kept in the report zone) may stand for
    /// `span`'s days: the report zone when it cuts the span into the same days as the zone
    /// asked for, else the zone asked for (whose days no rows are kept of: the hours are read).
    fn day_zone(&self, span: &report::Span) -> chrono_tz::Tz {
        let kept = self.report_timezone();
        if span.same_days(kept) {
            kept
        } else {
            span.tz
        }
    }

    async fn tally(
        &self,
        scope: CountScope<'_>,
        window: ReportWindow,
        rank: &(dyn Fn(&str, &str) -> usize + Sync),
    ) -> EngineResult<Report> {
        let span = window.span();
        let rows = self
            .store
            .message_counts_by_day(scope, &span, self.day_zone(&span))
            .await?;
        let t = report::tally(&rows, &span, window.by, rank);
        Ok(Report {
            campaign: None,
            name: None,
            template: None,
            from: window.from,
            to: window.to,
            by: window.by,
            tz: window.tz.name().to_owned(),
            totals: t.totals.summary(),
            steps: t.steps,
            versions: t.versions,
            templates: t.templates,
            channels: t.channels,
            languages: t.languages,
            periods: t.periods,
            splits: None,
            flow: None,
            flow_in_window: None,
            waits: None,
            conversions: None,
            lines: t.lines,
        })
    }
}

/// What became of a queue's handoffs in a window: arrivals, claims and how long they took,
/// decisions and their reasons, SLA breaches; per period and per member.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueueReport {
    pub queue: String,
    /// The queue's SLA as the playbook says it (`4h`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sla: Option<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Grouping,
    pub tz: String,
    /// What waits and is worked now (not limited to the window).
    pub now: QueueNow,
    /// Everything counted in the window. A handoff is counted where each thing happened to it:
    /// opened one day, claimed the next, converted in another month.
    pub totals: HandoffSummary,
    /// Per day (or week, named by its Monday), every one of the window.
    pub periods: Vec<HandoffPeriod>,
    /// Per member: claims and times to claim, decisions, and breaches of what was assigned
    /// to them.
    pub members: Vec<MemberPart>,
    /// Rejection reasons, most given first.
    pub reasons: Vec<ReasonPart>,
    /// Period × member (and the whole queue): the CSV.
    #[serde(skip)]
    pub lines: Vec<HandoffLine>,
}

/// A queue's handoffs now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct QueueNow {
    /// Waiting for a claim, of which `assigned` given to a member by round robin.
    pub open: i64,
    pub assigned: i64,
    pub claimed: i64,
    /// Open past the queue's SLA.
    pub overdue: i64,
}

impl Engine {
    /// What became of queue `queue`'s handoffs in `window`. A queue of the playbook in force,
    /// or one counted in the window, has a report; any other name is `NotFound`.
    pub async fn queue_report(&self, queue: &str, window: ReportWindow) -> EngineResult<QueueReport> {
        let playbook = self.playbook();
        let span = window.span();
        let rows = self
            .store
            .handoff_counts_by_day(queue, &span, self.day_zone(&span))
            .await?;
        let known = playbook.queues.queues.get(queue);
        if known.is_none() && rows.is_empty() {
            return Err(EngineError::NotFound);
        }
        let t = report::queue::handoff_tally(&rows, &span, window.by);
        let now = self
            .store
            .queue_counts(crate::clock::to_micros(self.now()))
            .await?
            .into_iter()
            .find(|c| c.queue == queue)
            .map(|c| QueueNow {
                open: c.open,
                assigned: c.assigned,
                claimed: c.claimed,
                overdue: c.overdue,
            })
            .unwrap_or_default();
        Ok(QueueReport {
            queue: queue.to_owned(),
            sla: known.and_then(|q| q.sla).map(|s| s.to_string()),
            from: window.from,
            to: window.to,
            by: window.by,
            tz: window.tz.name().to_owned(),
            now,
            totals: t.totals,
            periods: t.periods,
            members: t.members,
            reasons: t.reasons,
            lines: t.lines,
        })
    }
}

impl QueueReport {
    /// A header line, then a line per period for the whole queue (member empty) and for each
    /// member with something counted that period.
    pub fn csv(&self) -> String {
        let mut out = csv::Writer::from_writer(Vec::new());
        let _ = out.write_record([
            "period",
            "member",
            "arrived",
            "opened",
            "moved_in",
            "moved_out",
            "breached",
            "claimed",
            "released",
            "accepted",
            "rejected",
            "converted",
            "claim_p50_seconds",
            "claim_p90_seconds",
        ]);
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        for line in &self.lines {
            let s = &line.summary;
            let f = &s.figures;
            let _ = out.write_record([
                line.period.to_string(),
                line.member.clone(),
                s.arrived.to_string(),
                f.opened.to_string(),
                f.moved_in.to_string(),
                f.moved_out.to_string(),
                f.breached.to_string(),
                f.claimed.to_string(),
                f.released.to_string(),
                f.accepted.to_string(),
                f.rejected.to_string(),
                f.converted.to_string(),
                opt(s.claim_p50_seconds),
                opt(s.claim_p90_seconds),
            ]);
        }
        String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

/// What this process's committed work added to the report counters, per campaign since it
/// started: `/metrics`' `nurture_messages_total{campaign, outcome}`. Each process counts its
/// own (the counters in the database are everyone's).
#[derive(Debug, Default)]
pub struct MessageTotals(std::sync::Mutex<std::collections::BTreeMap<String, MessageFigures>>);

impl MessageTotals {
    /// Adds what a committed transaction counted.
    pub(super) fn add(&self, deltas: &[crate::store::CountDelta]) {
        if deltas.is_empty() {
            return;
        }
        let mut totals = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for d in deltas {
            totals.entry(d.key.campaign.clone()).or_default().add(&d.figures);
        }
    }

    /// The totals per campaign, by campaign id.
    pub fn read(&self) -> Vec<(String, MessageFigures)> {
        let totals = self.0.lock().unwrap_or_else(|p| p.into_inner());
        totals.iter().map(|(c, f)| (c.clone(), *f)).collect()
    }
}

impl Report {
    /// The finest grain as CSV: a header line, then a line per period, campaign step, version,
    /// template, channel and language, with every counter and delivered.
    pub fn csv(&self) -> String {
        let mut out = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<&str> = vec![
            "period", "campaign", "step", "version", "template", "channel", "language",
        ];
        header.extend(MessageFigures::NAMES);
        header.push("delivered");
        // Writing to a Vec cannot fail.
        let _ = out.write_record(&header);
        for line in &self.lines {
            let k = &line.key;
            let mut record = vec![
                line.period.to_string(),
                k.campaign.clone(),
                k.step.clone(),
                k.version.clone(),
                k.template.clone(),
                k.channel.clone(),
                k.language.clone(),
            ];
            record.extend(line.figures.to_array().iter().map(i64::to_string));
            record.push(line.figures.delivered().to_string());
            let _ = out.write_record(&record);
        }
        String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}
