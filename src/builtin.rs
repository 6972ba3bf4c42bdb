//! The shipped playbook (`campaigns/`) and templates (`templates/`), built into the binary, so
//! that `nurture demo` runs anywhere, not only in a clone of the repository.

use include_dir::{include_dir, Dir};
use nurture_engine::playbook::bundle::{Bundle, Deployable, PLAYBOOK_FOLDER};
use nurture_engine::playbook::Refused;

static CAMPAIGNS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/campaigns");
static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// The shipped playbook and its templates, validated as `campaigns/` and `templates/` would be.
pub fn playbook() -> Result<Deployable, Refused> {
    let yaml = texts(&CAMPAIGNS, &nurture_engine::playbook::is_playbook_file);
    let templates = texts(&TEMPLATES, &nurture_engine::template::is_template_file);
    Bundle::new(yaml, templates)?.build(PLAYBOOK_FOLDER)
}

/// Every file under `dir` that `keep` accepts, as (path relative to `dir`, text).
fn texts(dir: &Dir<'static>, keep: &dyn Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = dir
        .files()
        .filter_map(|file| {
            let path = file.path().to_string_lossy().replace('\\', "/");
            let text = file.contents_utf8()?;
            keep(&path).then(|| (path, text.to_owned()))
        })
        .collect();
    for sub in dir.dirs() {
        out.extend(texts(sub, keep));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in copy is the shipped playbook as it is on disk: the same files (so the same
    /// content hash, and the same campaigns at the same versions).
    #[test]
    fn the_built_in_playbook_is_the_shipped_one() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let on_disk = Deployable::load(&root.join("campaigns"), &root.join("templates")).unwrap();
        let built_in = playbook().unwrap();
        assert_eq!(built_in.bundle.hash(), on_disk.bundle.hash());
        let versions = |d: &Deployable| -> Vec<(String, String)> {
            d.playbook
                .campaigns
                .values()
                .map(|c| (c.id.clone(), c.version.clone()))
                .collect()
        };
        assert_eq!(versions(&built_in), versions(&on_disk));
        assert!(!built_in.playbook.campaigns.is_empty());
    }
}
