//! Reading one playbook or template document: YAML with duplicate keys refused and the parser's
//! budgets bounding what nesting and aliases can cost, errors turned into an [`Issue`] with its
//! position.

use crate::diagnostic::Issue;

/// A playbook file larger than this is refused before it is parsed: the largest real campaign
/// is a few hundred lines, and a bound keeps a stray upload from costing memory.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The options every playbook file is parsed with: duplicate keys are errors, and the parser's
/// budgets bound what nesting and aliases ("billion laughs") can cost.
pub fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    if let Some(budget) = options.budget.as_mut() {
        budget.max_reader_input_bytes = Some(MAX_FILE_BYTES);
        budget.max_events = 200_000;
        budget.max_nodes = 100_000;
        budget.max_aliases = 1_000;
        budget.max_anchors = 1_000;
        budget.max_depth = 48;
        budget.max_documents = 1;
    }
    options.alias_limits.max_total_replayed_events = 100_000;
    options.alias_limits.max_replay_stack_depth = 16;
    options
}

/// Parses one playbook document into `T` with [`yaml_options`].
pub(crate) fn parse<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, Issue> {
    serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| Issue::from_yaml(file, &e))
}
