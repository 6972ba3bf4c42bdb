//! The playbook editor (marketers, admins): the files in force and the latest deployments; one
//! file edited in the browser and checked as it is typed (every error at its line and column,
//! in the words of `nurture playbook validate`); an e-mail template previewed for a lead in
//! both languages; a deploy reviewed first (the lines changed, the warnings, the leads it
//! enrolls at once), then deployed and recorded as the person's.
//!
//! Validation, preview and deploy are the API's and the engine's (`crate::playbook`,
//! `Engine::preview_in`, `Engine::deploy`): the editor only lays the edited file over the
//! bundle in force.

use std::collections::BTreeMap;

use super::*;

use nurture_engine::engine::{Deployer, PreviewFor, PreviewLead};
use nurture_engine::lead::LeadRef;
use nurture_engine::playbook::bundle::{split_path, Bundle, Deployable, Part, TEMPLATES_FOLDER};
use nurture_engine::playbook::{is_playbook_file, Issue, Playbook};
use nurture_engine::store::{DeployReport, Origin};
use nurture_engine::template::{email_of, is_template_file, Language};

use crate::playbook::{check, enrolling, put_in_force, warnings_of, Upload};

/// Deployments listed on the playbook page.
const RECENT_DEPLOYMENTS: i64 = 10;

/// Lines of unchanged text shown around each change in a review.
const DIFF_CONTEXT: usize = 3;

#[derive(Template)]
#[template(path = "playbook.html")]
pub(super) struct FilesPage {
    t: &'static Text,
    nav: Nav,
    playbook: Vec<String>,
    templates: Vec<String>,
    deployments: Vec<DeploymentRow>,
    error: Option<&'static str>,
}

pub(super) struct DeploymentRow {
    id: i64,
    at: String,
    actor: String,
    origin: &'static str,
    changed: String,
    in_force: bool,
}

#[derive(Deserialize)]
pub(super) struct FileQuery {
    lang: Option<String>,
    file: Option<String>,
    error: Option<String>,
}

/// `GET /playbook`: the files in force, a new file, the latest deployments.
pub(super) async fn files(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<FileQuery>,
) -> Answer {
    let (user, csrf) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    let (mut playbook, mut templates) = (Vec::new(), Vec::new());
    for file in state.engine.bundle().files() {
        match split_path(&file.path) {
            Some((Part::Playbook, _)) => playbook.push(file.path),
            Some((Part::Templates, _)) => templates.push(file.path),
            None => {}
        }
    }
    let tz = zone(&state, &jar);
    let in_force = state.engine.deployment_id();
    let deployments = state
        .engine
        .deployments(None, RECENT_DEPLOYMENTS)
        .await
        .map_err(failed)?
        .into_iter()
        .map(|d| DeploymentRow {
            id: d.id,
            at: local(d.deployed_at, tz),
            actor: d.actor,
            origin: origin_name(t, d.origin),
            changed: report_line(t, &d.report),
            in_force: in_force == Some(d.id),
        })
        .collect();
    let error = q.error.as_deref().map(|_| t.not_a_playbook_file);
    let body = FilesPage {
        t,
        nav: Nav::new(t, &user, &csrf, "playbook"),
        playbook,
        templates,
        deployments,
        error,
    }
    .render();
    Ok(page(StatusCode::OK, body))
}

fn origin_name(t: &Text, origin: Origin) -> &'static str {
    match origin {
        Origin::Cli => t.origin_cli,
        Origin::Api => t.origin_api,
        Origin::Restore => t.origin_restore,
        Origin::Console => t.origin_console,
    }
}

/// "created: a · changed: b · retired: c", the parts there are; "no campaign changed" else.
fn report_line(t: &Text, report: &DeployReport) -> String {
    let parts: Vec<String> = [
        (t.report_created, &report.created),
        (t.report_changed, &report.changed),
        (t.report_retired, &report.retired),
    ]
    .into_iter()
    .filter(|(_, ids)| !ids.is_empty())
    .map(|(what, ids)| format!("{what}: {}", ids.join(", ")))
    .collect();
    if parts.is_empty() {
        t.report_none.to_owned()
    } else {
        parts.join(" · ")
    }
}

/// The file an editor page edits: `campaigns/NAME.yaml` (or `.yml`) or `templates/NAME.hbs`
/// (or `.wechat.yaml`), a path without `..` or an empty part.
fn editable(path: &str) -> Option<(Part, String)> {
    let path = path.trim();
    let (part, rest) = split_path(path)?;
    let sound = !rest.is_empty()
        && rest.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && nurture_engine::lead::text_problem(path).is_none();
    let kind_fits = match part {
        Part::Playbook => is_playbook_file(rest),
        Part::Templates => is_template_file(rest),
    };
    (sound && kind_fits).then(|| (part, rest.to_owned()))
}

#[derive(Template)]
#[template(path = "editor.html")]
pub(super) struct EditorPage<'a> {
    t: &'static Text,
    nav: Nav,
    csrf: &'a str,
    file: String,
    /// Whether the file is in force (else it is new).
    exists: bool,
    text: String,
    /// Numbers for the gutter, one a line.
    lines: usize,
    /// The e-mail the file is part of, when it is one (then it is previewed).
    email: Option<String>,
    lead: String,
    check: CheckView,
    review: Option<ReviewView>,
    deployed: Option<DeployedView>,
}

#[derive(Template)]
#[template(path = "check.html")]
pub(super) struct CheckView {
    t: &'static Text,
    valid: bool,
    campaigns: usize,
    errors: Vec<IssueView>,
    warnings: Vec<IssueView>,
    previews: Vec<PreviewView>,
    /// Why no preview is shown (the lead is not found, the template does not render).
    preview_error: Option<String>,
}

/// One error or warning, worded as the command line words it.
pub(super) struct IssueView {
    said: String,
    /// The line and column in the file edited, when it is there.
    line: Option<u64>,
    column: u64,
}

pub(super) struct PreviewView {
    language: &'static str,
    template: String,
    subject: String,
    html: String,
    text: String,
}

pub(super) struct ReviewView {
    /// The text reviewed, as a digest: a deploy of other text is reviewed again.
    digest: String,
    diff: Vec<DiffLine>,
    enrolling: Vec<(String, usize)>,
    enrolling_total: usize,
}

pub(super) struct DiffLine {
    sign: &'static str,
    /// `del`, `ins`, `same`, or `gap` between hunks.
    class: &'static str,
    old: String,
    new: String,
    text: String,
}

pub(super) struct DeployedView {
    id: i64,
    unchanged: bool,
    report: String,
    campaigns: Vec<String>,
    enrolling_total: usize,
}

#[derive(Deserialize)]
pub(super) struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    file: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    lead: String,
    /// The digest of the text reviewed: deploy it.
    #[serde(default)]
    reviewed: String,
}

/// `GET /playbook/edit?file=…`: the file in force (or an empty new one) in the editor.
pub(super) async fn edit(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<FileQuery>,
) -> Answer {
    let (user, csrf) = overseer(&state, &jar, &headers).await?;
    let t = text(q.lang.as_deref(), Some(&user), &headers);
    if q.file.as_deref().and_then(editable).is_none() {
        return Ok(Redirect::to("/playbook?error=file").into_response());
    }
    let file = q.file.unwrap_or_default().trim().to_owned();
    let in_force = state.engine.bundle().text_of(&file).map(str::to_owned);
    let exists = in_force.is_some();
    let text = in_force.unwrap_or_default();
    let check = checked(&state, t, &file, &text, "").await?.1;
    let body = editor(t, &user, &csrf, file, exists, text, String::new(), check, None, None);
    Ok(page(StatusCode::OK, body))
}

/// The editor page.
#[allow(clippy::too_many_arguments)]
fn editor(
    t: &'static Text,
    user: &User,
    csrf: &str,
    file: String,
    exists: bool,
    text: String,
    lead: String,
    check: CheckView,
    review: Option<ReviewView>,
    deployed: Option<DeployedView>,
) -> askama::Result<String> {
    EditorPage {
        t,
        nav: Nav::new(t, user, csrf, "playbook"),
        csrf,
        email: email_of(&file),
        lines: text.lines().count().max(1),
        file,
        exists,
        text,
        lead,
        check,
        review,
        deployed,
    }
    .render()
}

/// The bundle in force with `text` as `file`, validated as the API validates an upload; the
/// playbook when it is valid, and what the check shows (errors, warnings, previews).
async fn checked(
    state: &AppState,
    t: &'static Text,
    file: &str,
    text: &str,
    lead: &str,
) -> Result<(Option<Deployable>, CheckView), Response> {
    let mut view = CheckView {
        t,
        valid: false,
        campaigns: 0,
        errors: Vec::new(),
        warnings: Vec::new(),
        previews: Vec::new(),
        preview_error: None,
    };
    let Some((part, rest)) = editable(file) else {
        return Err(message(StatusCode::NOT_FOUND, t.not_a_playbook_file));
    };
    let current = state.engine.bundle();
    let laid = match part {
        Part::Playbook => current
            .with_yaml(Some(&rest), text.to_owned())
            .map(|(bundle, _)| bundle),
        Part::Templates => current.with_template(&rest, text.to_owned()),
    };
    let bundle: Bundle = match laid {
        Ok(bundle) => bundle,
        Err(refused) => {
            view.errors = refused.0.iter().map(|i| issue_view(i, file)).collect();
            return Ok((None, view));
        }
    };
    let upload = Upload {
        bundle,
        shown: BTreeMap::new(),
    };
    let built = check(upload).await.map_err(|e| {
        tracing::error!(error = %e, "Checking a playbook in the console failed.");
        failed(EngineError::Failed(e.to_string()))
    })?;
    let deployable = match built {
        Ok(deployable) => deployable,
        Err(refused) => {
            view.errors = refused.errors().map(|i| issue_view(i, file)).collect();
            view.warnings = refused.warnings().map(|i| issue_view(i, file)).collect();
            return Ok((None, view));
        }
    };
    let playbook = &deployable.playbook;
    view.valid = true;
    view.campaigns = playbook.campaigns.len();
    let stranded = state.engine.deploy_warnings(playbook).await.map_err(failed)?;
    view.warnings = warnings_of(playbook, &stranded).map(|i| issue_view(i, file)).collect();
    if let Some(email) = email_of(file) {
        match previews(state, playbook, &email, lead).await {
            Ok(previews) => view.previews = previews,
            Err(why) => view.preview_error = Some(why),
        }
    }
    Ok((Some(deployable), view))
}

/// An issue as the command line words it, placed in the edited file when it is there.
fn issue_view(issue: &Issue, file: &str) -> IssueView {
    let rest = file.split_once('/').map(|(_, r)| r).unwrap_or(file);
    let here = issue.file == file || issue.file == rest || issue.file.ends_with(&format!("/{rest}"));
    let position = issue.position.filter(|_| here);
    // Templates validated in a bundle are named by their path under templates/; the editor
    // names every file by its path in the bundle, as the command line does from the repository.
    let said = if split_path(&issue.file).is_none() && is_template_file(&issue.file) {
        Issue {
            file: format!("{TEMPLATES_FOLDER}/{}", issue.file),
            ..issue.clone()
        }
        .to_string()
    } else {
        issue.to_string()
    };
    IssueView {
        said,
        line: position.map(|p| p.line),
        column: position.map(|p| p.column).unwrap_or(1),
    }
}

/// E-mail `email` of `playbook` rendered for the lead given by e-mail or id (the sample lead
/// when none is), in Chinese and in English; why not, when it cannot be.
async fn previews(state: &AppState, playbook: &Playbook, email: &str, lead: &str) -> Result<Vec<PreviewView>, String> {
    let Some(sender) = state.mailer.as_ref() else {
        return Err("the server was started without a mailer".into());
    };
    let lead = lead.trim();
    let whom = if lead.is_empty() {
        PreviewLead::Sample
    } else {
        let by = if lead.contains('@') {
            LeadRef {
                email: Some(lead.to_owned()),
                ..LeadRef::default()
            }
        } else {
            LeadRef {
                id: Some(lead.to_owned()),
                ..LeadRef::default()
            }
        };
        match state.engine.find_lead(&by).await {
            Ok(view) => PreviewLead::Stored(view.lead.id),
            Err(EngineError::NotFound) => return Err(format!("no lead {lead:?}")),
            Err(e) => return Err(e.to_string()),
        }
    };
    let mut out = Vec::new();
    for language in [Language::Zh, Language::En] {
        let of = PreviewFor {
            lead: whom.clone(),
            language: Some(language),
            event: None,
        };
        let preview = state
            .engine
            .preview_in(playbook, email, of, sender)
            .await
            .map_err(|e| e.to_string())?;
        out.push(PreviewView {
            language: match language {
                Language::Zh => "中文",
                Language::En => "English",
            },
            template: preview.template,
            subject: preview.subject,
            html: preview.html,
            text: preview.text,
        });
    }
    Ok(out)
}

/// An edit as posted: who posted it, in which language, and the text checked.
struct Posted {
    user: User,
    t: &'static Text,
    deployable: Option<Deployable>,
    check: CheckView,
    /// Whether the file edited is in force (else it is new).
    exists: bool,
}

/// The edit a form posts, checked; else what to answer (sign in, a refused token).
async fn posted_edit(
    state: &AppState,
    jar: &CookieJar,
    headers: &HeaderMap,
    lang: Option<&str>,
    form: &mut EditForm,
) -> Result<Posted, Response> {
    form.text = lines_of_the_file(&form.text);
    let user = overseer_posting(state, jar, headers, &form.csrf).await?;
    let t = text(lang, Some(&user), headers);
    let (deployable, check) = checked(state, t, &form.file, &form.text, &form.lead).await?;
    Ok(Posted {
        user,
        t,
        deployable,
        check,
        exists: in_force(state, &form.file),
    })
}

/// `POST /playbook/check`: the edited text checked. With `X-Nurture-Fragment` (the editor's
/// script, as the person types) only the check's part of the page; else the whole editor.
pub(super) async fn check_text(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<Lang>,
    Form(mut form): Form<EditForm>,
) -> Answer {
    let Posted {
        user, t, check, exists, ..
    } = posted_edit(&state, &jar, &headers, q.lang.as_deref(), &mut form).await?;
    if headers.contains_key("x-nurture-fragment") {
        return Ok(page(StatusCode::OK, check.render()));
    }
    let body = editor(
        t, &user, &form.csrf, form.file, exists, form.text, form.lead, check, None, None,
    );
    Ok(page(StatusCode::OK, body))
}

fn in_force(state: &AppState, file: &str) -> bool {
    state.engine.bundle().text_of(file).is_some()
}

/// `POST /playbook/deploy`: a valid text is first reviewed (its changed lines, its warnings,
/// the leads it enrolls at once); the text reviewed is then deployed, as the person, and the
/// page says what changed. An invalid text shows its errors (422) and deploys nothing.
pub(super) async fn deploy(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<Lang>,
    Form(mut form): Form<EditForm>,
) -> Answer {
    let Posted {
        user,
        t,
        deployable,
        check,
        exists,
    } = posted_edit(&state, &jar, &headers, q.lang.as_deref(), &mut form).await?;
    let csrf = form.csrf.clone();
    let Some(deployable) = deployable else {
        let body = editor(
            t, &user, &csrf, form.file, exists, form.text, form.lead, check, None, None,
        );
        return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, body));
    };
    let counts = enrolling(&state, &deployable, true).await.map_err(|e| {
        tracing::error!(error = %e, "Counting a deploy's enrollments in the console failed.");
        failed(EngineError::Failed(e.to_string()))
    })?;
    let enrolling_total: usize = counts.values().sum();
    let digest = digest(&form.text);
    if form.reviewed != digest {
        let bundle = state.engine.bundle();
        let before = bundle.text_of(&form.file).unwrap_or_default();
        let review = ReviewView {
            digest,
            diff: diff(before, &form.text),
            enrolling: counts.into_iter().filter(|(_, n)| *n > 0).collect(),
            enrolling_total,
        };
        let body = editor(
            t,
            &user,
            &csrf,
            form.file,
            exists,
            form.text,
            form.lead,
            check,
            Some(review),
            None,
        );
        return Ok(page(StatusCode::OK, body));
    }
    let by = Deployer {
        actor: user.email.clone(),
        origin: Origin::Console,
        restored_from: None,
    };
    let answer = put_in_force(&state, deployable, by, counts).await.map_err(|e| {
        tracing::error!(error = %e, "Deploying from the console failed.");
        failed(EngineError::Failed(e.to_string()))
    })?;
    let report = &answer.report;
    let deployed = DeployedView {
        id: answer.deployment.id,
        unchanged: answer.deployment.unchanged,
        report: report_line(t, report),
        campaigns: report.created.iter().chain(&report.changed).cloned().collect(),
        enrolling_total,
    };
    let (_, check) = checked(&state, t, &form.file, &form.text, &form.lead).await?;
    let body = editor(
        t,
        &user,
        &csrf,
        form.file,
        true,
        form.text,
        form.lead,
        check,
        None,
        Some(deployed),
    );
    Ok(page(StatusCode::OK, body))
}

/// The text a browser sent, with the file's line ends: a form sends a textarea's lines ended
/// by CR LF, whatever the file had.
fn lines_of_the_file(sent: &str) -> String {
    sent.replace("\r\n", "\n")
}

/// The SHA-256 of a text, in hex.
fn digest(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The lines `after` changes in `before`, with a little context around each change and a gap
/// line between changes far apart.
fn diff(before: &str, after: &str) -> Vec<DiffLine> {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_lines(before, after);
    let mut out = Vec::new();
    for (i, group) in diff.grouped_ops(DIFF_CONTEXT).iter().enumerate() {
        if i > 0 {
            out.push(DiffLine {
                sign: "",
                class: "gap",
                old: String::new(),
                new: String::new(),
                text: "…".into(),
            });
        }
        for op in group {
            for change in diff.iter_changes(op) {
                let (sign, class) = match change.tag() {
                    ChangeTag::Delete => ("−", "del"),
                    ChangeTag::Insert => ("+", "ins"),
                    ChangeTag::Equal => (" ", "same"),
                };
                let number = |n: Option<usize>| n.map(|n| (n + 1).to_string()).unwrap_or_default();
                out.push(DiffLine {
                    sign,
                    class,
                    old: number(change.old_index()),
                    new: number(change.new_index()),
                    text: change.value().trim_end_matches(['\n', '\r']).to_owned(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_playbook_and_template_files_are_editable() {
        assert_eq!(
            editable("campaigns/welcome.yaml"),
            Some((Part::Playbook, "welcome.yaml".into()))
        );
        assert_eq!(
            editable("templates/en/welcome.subject.hbs"),
            Some((Part::Templates, "en/welcome.subject.hbs".into()))
        );
        for refused in [
            "welcome.yaml",
            "campaigns/",
            "campaigns/../etc/passwd.yaml",
            "campaigns//x.yaml",
            "campaigns/notes.txt",
            "templates/welcome.yaml",
            "other/welcome.yaml",
        ] {
            assert_eq!(editable(refused), None, "{refused}");
        }
    }

    #[test]
    fn a_review_shows_the_changed_lines_with_their_numbers() {
        let before = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let after = "a\nb\nC\nd\ne\nf\ng\nh\ni\nj\nk\n";
        let lines = diff(before, after);
        let changed: Vec<(&str, &str, &str, &str)> = lines
            .iter()
            .filter(|l| l.class != "same")
            .map(|l| (l.sign, l.old.as_str(), l.new.as_str(), l.text.as_str()))
            .collect();
        assert_eq!(
            changed,
            vec![
                ("−", "3", "", "c"),
                ("+", "", "3", "C"),
                ("", "", "", "…"),
                ("+", "", "11", "k"),
            ]
        );
        assert!(diff(before, before).is_empty());
    }
}
