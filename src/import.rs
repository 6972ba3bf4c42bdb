//! `nurture leads import FILE.csv`: the header row names lead fields (other columns become
//! attributes); rows are upserted in batches; a rejected row never stops the import.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use nurture_engine::engine::{Engine, ItemError, Target, Upserted};
use nurture_engine::lead::{LeadInput, TEXT_FIELDS};
use nurture_engine::tag::Actor;
use serde_json::{Map, Value};
use std::path::Path;

const BATCH: usize = 1_000;

/// What an import did; rejected rows with their line and reason, in line order.
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub rejected: Vec<(u64, String)>,
}

/// Imports `file` and prints what happened to each rejected row. Any rejected row makes the
/// command fail (after the rest was imported) unless `allow_rejects`: a partial import must
/// not pass for a whole one in a script.
pub async fn run(engine: &Engine, file: &Path, allow_rejects: bool) -> Result<()> {
    let report = load(engine, file, true).await?;
    println!(
        "Imported {}: {} created, {} updated, {} rejected.",
        file.display(),
        report.created,
        report.updated,
        report.rejected.len()
    );
    for (line, reason) in &report.rejected {
        println!("  line {line}: {reason}");
    }
    if !report.rejected.is_empty() && !allow_rejects {
        anyhow::bail!(
            "{} rows of {} were rejected (listed above); fix them and import the file again \
             (rows already imported are updated, not doubled), or pass --allow-rejects to accept a partial import",
            report.rejected.len(),
            file.display()
        );
    }
    Ok(())
}

/// Upserts every row of `file` in batches, with a progress bar when `progress`.
///
/// Long on purpose: the import loop: rows read, parsed and checked, sent in batches, progress
/// and per-line reasons kept; the loop's state is the report.
pub async fn load(engine: &Engine, file: &Path, progress: bool) -> Result<ImportReport> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let mut reader = csv::ReaderBuilder::new()
        // Row lengths are checked here, after the line-break check that explains a row
        // swallowed by an open quote better than its length does.
        .flexible(true)
        .from_path(file)
        .with_context(|| format!("opening {}", file.display()))?;
    let headers: Vec<String> = reader
        .headers()
        .context("reading the header row")?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    check_headers(&headers)?;
    let bar = if progress {
        ProgressBar::new(size)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let actor = Actor::User(format!("import:{}", file.display()));
    let (mut created, mut updated) = (0usize, 0usize);
    let mut rejected: Vec<(u64, String)> = Vec::new();
    let mut batch: Vec<(u64, LeadInput)> = Vec::with_capacity(BATCH);
    let mut records = reader.records();
    loop {
        let next = records.next();
        let done = next.is_none();
        if let Some(record) = next {
            let line = match &record {
                Ok(r) => r.position().map(|p| p.line()).unwrap_or(0),
                Err(e) => e.position().map(|p| p.line()).unwrap_or(0),
            };
            let end = records.reader().position().line();
            match record
                .map_err(|e| csv_problem(&e))
                .and_then(|r| one_line_fields(&headers, &r, line, end).map(|()| r))
                .and_then(|r| {
                    if r.len() == headers.len() {
                        Ok(r)
                    } else {
                        Err(format!(
                            "the row has {} fields; the header has {}",
                            r.len(),
                            headers.len()
                        ))
                    }
                })
                .and_then(|r| row_input(&headers, &r))
            {
                Ok(input) => batch.push((line, input)),
                Err(reason) => rejected.push((line, reason)),
            }
            bar.set_position(records.reader().position().byte());
        }
        if batch.len() >= BATCH || (done && !batch.is_empty()) {
            let lines: Vec<u64> = batch.iter().map(|(l, _)| *l).collect();
            let items = batch.drain(..).map(|(_, i)| (Target::Keys, i)).collect();
            let results = engine
                .upsert_leads(items, &actor)
                .await
                .context("writing a batch of leads")?;
            for (line, result) in lines.into_iter().zip(results) {
                match result {
                    Ok(Upserted::Created(_)) => created += 1,
                    Ok(Upserted::Updated(_)) => updated += 1,
                    Err(ItemError::Invalid(errors)) => rejected.push((
                        line,
                        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "),
                    )),
                    Err(ItemError::Conflict(m) | ItemError::NotFound(m)) => rejected.push((line, m)),
                }
            }
            bar.set_message(format!(
                "{created} created, {updated} updated, {} rejected",
                rejected.len()
            ));
        }
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    rejected.sort();
    Ok(ImportReport {
        created,
        updated,
        rejected,
    })
}

/// A header row whose columns each have a name of their own: an empty name would drop the
/// column, a repeated one would let the last column silently win.
fn check_headers(headers: &[String]) -> Result<()> {
    for (i, name) in headers.iter().enumerate() {
        if name.is_empty() {
            anyhow::bail!(
                "column {} of the header row has no name; name it (a lead field such as email, or an attribute) or remove the column. Nothing was imported",
                i + 1
            );
        }
        if let Some(j) = headers[..i]
            .iter()
            .position(|earlier| earlier.eq_ignore_ascii_case(name))
        {
            anyhow::bail!(
                "the header row names {name:?} twice (columns {} and {}); each column needs a name of its own. Nothing was imported",
                j + 1,
                i + 1
            );
        }
    }
    Ok(())
}

/// Lead fields are one line each. A line break in one means a quoted cell ran on across
/// lines, most often a quote that is never closed, which reads the rows after it into one cell.
fn one_line_fields(headers: &[String], record: &csv::StringRecord, line: u64, end: u64) -> Result<(), String> {
    for (name, cell) in headers.iter().zip(record.iter()) {
        if is_lead_field(name) && cell.trim().contains(['\n', '\r']) {
            return Err(format!(
                "{name} runs from line {line} to line {}: a quote opened there is probably not closed, so the lines after it were read into this cell (none of them was imported); close the quote, or write a quote inside a cell as \"\"",
                end.saturating_sub(1).max(line)
            ));
        }
    }
    Ok(())
}

fn csv_problem(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("the row has {len} fields; the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "the row is not valid UTF-8; save the file as UTF-8".into(),
        _ => error.to_string(),
    }
}

/// A column that names a lead field (the rest are attributes).
fn is_lead_field(name: &str) -> bool {
    TEXT_FIELDS.contains(&name) || matches!(name, "email" | "external_id" | "owner" | "stage")
}

/// One CSV row as an upsert: named columns are lead fields, `attributes.x` or any other column
/// an attribute; empty cells are left out.
fn row_input(headers: &[String], record: &csv::StringRecord) -> Result<LeadInput, String> {
    let mut fields = Map::new();
    let mut attributes = Map::new();
    for (name, cell) in headers.iter().zip(record.iter()) {
        let cell = cell.trim();
        if cell.is_empty() || name.is_empty() {
            continue;
        }
        if is_lead_field(name) {
            fields.insert(name.clone(), Value::String(cell.to_owned()));
        } else {
            attributes.insert(
                name.strip_prefix("attributes.").unwrap_or(name).to_owned(),
                Value::String(cell.to_owned()),
            );
        }
    }
    if !attributes.is_empty() {
        fields.insert("attributes".into(), Value::Object(attributes));
    }
    serde_json::from_value(Value::Object(fields)).map_err(|e| e.to_string())
}
