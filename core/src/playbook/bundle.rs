//! A bundle: a playbook's YAML files and its templates, by path, as one deployable whole. It is
//! what a deployment stores, what `PUT /v1/playbook` receives (a tar, or one file laid over the
//! bundle in force) and what `nurture playbook pull` writes back to a directory. Paths are the
//! layout of a repository: `campaigns/…` for the playbook, `templates/…` for templates.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

use super::{Identity, Playbook};
use crate::diagnostic::{Issue, Refused};
use crate::template::Templates;

/// The folder of a bundle that holds the playbook's YAML files.
pub const PLAYBOOK_FOLDER: &str = "campaigns";
/// The folder of a bundle that holds the templates.
pub const TEMPLATES_FOLDER: &str = "templates";
/// The most files a bundle holds.
pub const MAX_FILES: usize = 1_000;
/// The longest path a bundle file may have.
const MAX_PATH: usize = 255;

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BundleFile {
    /// `campaigns/…` (a `.yaml` or `.yml` playbook file) or `templates/…` (a `.hbs` template or
    /// a `.wechat.yaml` WeChat template).
    pub path: String,
    pub text: String,
}

/// Which part of a bundle a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Playbook,
    Templates,
}

/// A playbook and its templates, by path relative to their folder, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    playbook: BTreeMap<String, String>,
    templates: BTreeMap<String, String>,
}

/// A bundle and the playbook it validated into: what a deploy puts in force.
#[derive(Debug, Clone, Default)]
pub struct Deployable {
    pub playbook: Playbook,
    pub bundle: Bundle,
}

impl Deployable {
    /// Reads and validates a playbook directory and its templates (see [`Bundle::read`]).
    pub fn load(dir: &Path, templates: &Path) -> Result<Deployable, Refused> {
        Bundle::read(dir, templates)?.build(&dir.display().to_string())
    }
}

/// Whether `path` (relative to its folder) may be a file of `part`: relative, `/`-separated,
/// no `.` or `..` segment, printable, with the part's extension. The reason when not.
fn path_problem(part: Part, path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("the path is empty".into());
    }
    if path.len() > MAX_PATH {
        return Some(format!("the path is longer than {MAX_PATH} bytes"));
    }
    if path.chars().any(|c| c.is_control() || c == '\\' || c == ':') {
        return Some(
            "the path holds a control character, a backslash or a colon; use plain `/`-separated names".into(),
        );
    }
    if path.starts_with('/') || path.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Some("the path must be relative, without `.` or `..` or empty segments".into());
    }
    let fits = match part {
        Part::Playbook => super::is_playbook_file(path),
        Part::Templates => crate::template::is_template_file(path),
    };
    if !fits {
        return Some(match part {
            Part::Playbook => "a playbook file ends in .yaml or .yml".into(),
            Part::Templates => "a template ends in .hbs (or .wechat.yaml for WeChat)".into(),
        });
    }
    None
}

impl Bundle {
    /// A bundle of these files, each as (path relative to its folder, text). Every path is
    /// checked; the problems of all of them are reported together.
    pub fn new(playbook: Vec<(String, String)>, templates: Vec<(String, String)>) -> Result<Bundle, Refused> {
        let mut bundle = Bundle::default();
        let mut issues = Vec::new();
        for (part, files) in [(Part::Playbook, playbook), (Part::Templates, templates)] {
            for (path, text) in files {
                match path_problem(part, &path) {
                    Some(problem) => issues.push(Issue::new(&bundle_path(part, &path), problem)),
                    None => {
                        bundle.part_mut(part).insert(path, text);
                    }
                }
            }
        }
        if bundle.len() > MAX_FILES {
            issues.push(Issue::new(
                "",
                format!(
                    "the bundle holds {} files; it may hold at most {MAX_FILES}",
                    bundle.len()
                ),
            ));
        }
        if issues.is_empty() {
            Ok(bundle)
        } else {
            Err(Refused(issues))
        }
    }

    /// A bundle of files named by their bundle path (`campaigns/…`, `templates/…`), as stored
    /// and as [`Bundle::files`] gives them.
    pub fn from_files(files: Vec<BundleFile>) -> Result<Bundle, Refused> {
        let mut playbook = Vec::new();
        let mut templates = Vec::new();
        let mut issues = Vec::new();
        for file in files {
            match split_path(&file.path) {
                Some((Part::Playbook, rest)) => playbook.push((rest.to_owned(), file.text)),
                Some((Part::Templates, rest)) => templates.push((rest.to_owned(), file.text)),
                None => issues.push(Issue::new(
                    &file.path,
                    format!("a bundle holds files under {PLAYBOOK_FOLDER}/ and {TEMPLATES_FOLDER}/ only"),
                )),
            }
        }
        let bundle = Bundle::new(playbook, templates);
        match (bundle, issues.is_empty()) {
            (Ok(bundle), true) => Ok(bundle),
            (Ok(_), false) => Err(Refused(issues)),
            (Err(Refused(more)), _) => {
                issues.extend(more);
                Err(Refused(issues))
            }
        }
    }

    /// Reads the YAML files under `dir` and the templates under `templates`. A missing
    /// templates directory gives none (campaigns that name templates are then refused).
    pub fn read(dir: &Path, templates: &Path) -> Result<Bundle, Refused> {
        let playbook = super::read_yaml_files(dir)?;
        let (templates, issues) = crate::template::read_dir(templates);
        if !issues.is_empty() {
            return Err(Refused(issues));
        }
        Bundle::new(playbook, templates)
    }

    fn part_mut(&mut self, part: Part) -> &mut BTreeMap<String, String> {
        match part {
            Part::Playbook => &mut self.playbook,
            Part::Templates => &mut self.templates,
        }
    }

    /// How many files the bundle holds.
    pub fn len(&self) -> usize {
        self.playbook.len() + self.templates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text of the file at bundle path `path` (`campaigns/…`, `templates/…`), if it holds one.
    pub fn text_of(&self, path: &str) -> Option<&str> {
        let (part, rest) = split_path(path)?;
        let files = match part {
            Part::Playbook => &self.playbook,
            Part::Templates => &self.templates,
        };
        files.get(rest).map(String::as_str)
    }

    /// Every file by its bundle path, playbook first, each part sorted.
    pub fn files(&self) -> Vec<BundleFile> {
        let part = |part: Part, files: &BTreeMap<String, String>| {
            files
                .iter()
                .map(move |(path, text)| BundleFile {
                    path: bundle_path(part, path),
                    text: text.clone(),
                })
                .collect::<Vec<_>>()
        };
        let mut out = part(Part::Playbook, &self.playbook);
        out.extend(part(Part::Templates, &self.templates));
        out
    }

    /// The SHA-256 of the bundle's paths and texts, in hex: two bundles with the same files
    /// have the same hash.
    pub fn hash(&self) -> String {
        let mut digest = Sha256::new();
        for file in self.files() {
            for piece in [file.path.as_bytes(), b"\0", file.text.as_bytes(), b"\0"] {
                digest.update(piece);
            }
        }
        hex::encode(digest.finalize())
    }

    /// Validates the bundle. Playbook files are named `{shown_as}/{path}` in diagnostics and
    /// campaign versions (the directory they were read from, or `campaigns`).
    pub fn build(self, shown_as: &str) -> Result<Deployable, Refused> {
        let shown_as = shown_as.trim_end_matches('/').to_owned();
        self.build_shown(&|path| format!("{shown_as}/{path}"))
    }

    /// Validates the bundle, each playbook file named `shown(path)` in diagnostics and campaign
    /// versions (the name an upload gave it).
    pub fn build_shown(self, shown: &dyn Fn(&str) -> String) -> Result<Deployable, Refused> {
        let files: Vec<(String, String)> = self
            .playbook
            .iter()
            .map(|(path, text)| (shown(path), text.clone()))
            .collect();
        let templates = Templates::from_sources(None, self.templates.clone().into_iter().collect());
        let playbook = Playbook::from_files(&files, std::sync::Arc::new(templates))?;
        Ok(Deployable { playbook, bundle: self })
    }

    /// This bundle with `upload`'s parts in place of its own: the playbook when the upload has
    /// playbook files, the templates when it has templates.
    pub fn replaced_by(&self, upload: Bundle) -> Bundle {
        Bundle {
            playbook: if upload.playbook.is_empty() {
                self.playbook.clone()
            } else {
                upload.playbook
            },
            templates: if upload.templates.is_empty() {
                self.templates.clone()
            } else {
                upload.templates
            },
        }
    }

    /// This bundle with one playbook file laid over it: the file replaces the one that defines
    /// the same thing (the same `kind` and `id`; for `Rules` and `Queues`, the same kind) and
    /// takes its path, unless `name` gives one; a file that replaces none is added as `name`,
    /// else as `{id}.yaml` (`.yaml` is added to a name without it). The bundle, and the path
    /// the file took.
    pub fn with_yaml(&self, name: Option<&str>, text: String) -> Result<(Bundle, String), Refused> {
        // A name without the extension (`?file=welcome`) is kept as a YAML file.
        let name = name.map(|n| {
            let n = n.strip_prefix("campaigns/").unwrap_or(n);
            if super::is_playbook_file(n) {
                n.to_owned()
            } else {
                format!("{n}.yaml")
            }
        });
        let mine = Identity::of(&text);
        let replaced: Vec<String> = match &mine {
            Some(id) => self
                .playbook
                .iter()
                .filter(|(_, t)| Identity::of(t).as_ref() == Some(id))
                .map(|(p, _)| p.clone())
                .collect(),
            None => Vec::new(),
        };
        let path = match (&name, replaced.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(first)) => first.clone(),
            (None, None) => match &mine {
                Some((_, Some(id))) if super::is_playbook_id(id) => format!("{id}.yaml"),
                Some((kind, None)) if !kind.is_empty() && kind.chars().all(|c| c.is_ascii_alphanumeric()) => {
                    format!("{}.yaml", kind.to_ascii_lowercase())
                }
                _ => "request.yaml".to_owned(),
            },
        };
        let mut playbook: Vec<(String, String)> = self
            .playbook
            .iter()
            .filter(|(p, _)| !replaced.contains(p) && **p != path)
            .map(|(p, t)| (p.clone(), t.clone()))
            .collect();
        playbook.push((path.clone(), text));
        Ok((
            Bundle::new(playbook, self.templates.clone().into_iter().collect())?,
            path,
        ))
    }

    /// This bundle with one template added or replaced (`path` relative to `templates/`).
    pub fn with_template(&self, path: &str, text: String) -> Result<Bundle, Refused> {
        let path = path.strip_prefix("templates/").unwrap_or(path);
        let mut templates: Vec<(String, String)> = self.templates.clone().into_iter().collect();
        templates.retain(|(p, _)| p != path);
        templates.push((path.to_owned(), text));
        Bundle::new(self.playbook.clone().into_iter().collect(), templates)
    }
}

/// `campaigns/{path}` or `templates/{path}`.
pub fn bundle_path(part: Part, path: &str) -> String {
    match part {
        Part::Playbook => format!("{PLAYBOOK_FOLDER}/{path}"),
        Part::Templates => format!("{TEMPLATES_FOLDER}/{path}"),
    }
}

/// The part a bundle path is in, and the path within it.
pub fn split_path(path: &str) -> Option<(Part, &str)> {
    let (folder, rest) = path.split_once('/')?;
    match folder {
        PLAYBOOK_FOLDER => Some((Part::Playbook, rest)),
        TEMPLATES_FOLDER => Some((Part::Templates, rest)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Bundle {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Bundle::read(&root.join("campaigns"), &root.join("templates")).unwrap()
    }

    #[test]
    fn the_shipped_playbook_reads_and_builds_as_a_bundle() {
        let bundle = shipped();
        assert!(bundle.files().iter().any(|f| f.path == "campaigns/welcome.yaml"));
        assert!(bundle.files().iter().any(|f| f.path.starts_with("templates/en/")));
        let deployable = bundle.clone().build("campaigns").unwrap();
        assert!(deployable.playbook.campaigns.contains_key("welcome"));
        assert_eq!(deployable.bundle, bundle);
        // Stored and read back, it is the same bundle with the same hash.
        let again = Bundle::from_files(bundle.files()).unwrap();
        assert_eq!(again.hash(), bundle.hash());
        assert_eq!(bundle.hash().len(), 64);
    }

    #[test]
    fn a_changed_byte_changes_the_hash() {
        let bundle = shipped();
        let mut files = bundle.files();
        files[0].text.push(' ');
        assert_ne!(Bundle::from_files(files).unwrap().hash(), bundle.hash());
    }

    #[test]
    fn paths_that_would_leave_their_folder_are_refused() {
        for bad in [
            "../x.yaml",
            "/etc/x.yaml",
            "a/./b.yaml",
            "a//b.yaml",
            "a\\b.yaml",
            "c:x.yaml",
            "x.txt",
        ] {
            let refused = Bundle::new(vec![(bad.to_owned(), String::new())], Vec::new()).unwrap_err();
            assert_eq!(refused.0.len(), 1, "{bad}");
        }
        let refused = Bundle::from_files(vec![BundleFile {
            path: "elsewhere/x.yaml".into(),
            text: String::new(),
        }])
        .unwrap_err();
        assert!(refused.0[0].message.contains("campaigns/"), "{refused}");
        assert!(Bundle::new(Vec::new(), vec![("en/x.html.hbs".into(), String::new())]).is_ok());
    }

    #[test]
    fn one_yaml_file_replaces_the_one_that_defines_the_same_thing_at_its_path() {
        let bundle = shipped();
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../campaigns/welcome.yaml"))
            .unwrap()
            .replace("name:", "name: Changed ");
        let (laid, path) = bundle.with_yaml(None, text.clone()).unwrap();
        assert_eq!(path, "welcome.yaml");
        assert_eq!(laid.len(), bundle.len());
        assert_eq!(laid.playbook.get("welcome.yaml"), Some(&text));
        let (added, _) = bundle
            .with_yaml(None, "kind: Segment\nid: new-one\nwhen: {tag: a}\n".into())
            .unwrap();
        assert_eq!(added.len(), bundle.len() + 1);
        assert!(added.playbook.contains_key("new-one.yaml"));
    }

    #[test]
    fn an_upload_replaces_only_the_parts_it_has() {
        let bundle = shipped();
        let only_templates = Bundle::new(Vec::new(), vec![("a.html.hbs".into(), "hi".into())]).unwrap();
        let laid = bundle.replaced_by(only_templates);
        assert_eq!(laid.playbook, bundle.playbook);
        assert_eq!(laid.templates.len(), 1);
    }
}
