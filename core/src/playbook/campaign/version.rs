//! A campaign's version: the hash of its canonical content, so that comments, key order and
//! formatting do not make a new version.

use crate::playbook::Issue;

/// The file's content as JSON with keys sorted: what a campaign's version hashes, so that
/// comments, key order and formatting do not make a new version.
pub(super) fn canonical_definition(file: &str, text: &str) -> Result<String, Issue> {
    let value: serde_json::Value = crate::yaml::parse(file, text)?;
    let mut out = String::new();
    write_canonical(&value, &mut out);
    Ok(out)
}

pub(super) fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The first 12 hex digits of the SHA-256 of the canonical definition.
pub(super) fn version_of(definition: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(definition.as_bytes());
    hex::encode(digest)[..12].to_owned()
}
