//! Which names a template uses, found by walking its parsed form, so that a name no lead has
//! is a warning at load.

use super::*;
use handlebars::template::{HelperTemplate, Parameter, TemplateElement};
use handlebars::{Path as HbsPath, PathSeg, Template};
use std::collections::BTreeSet;

/// What a template refers to.
pub(super) enum Use {
    Variable(String),
    Helper(String),
    Partial(String),
}

pub(super) type Found = Vec<(Use, Option<(usize, usize)>)>;

/// Collects the names a template uses at its top scope. Inside `each` and `with` blocks the
/// scope is another value, so names there are not checked.
pub(super) fn walk(template: &Template, found: &mut Found, attributes: &mut BTreeSet<String>) {
    for (i, element) in template.elements.iter().enumerate() {
        let at = template.mapping.get(i).map(|m| (m.0, m.1));
        match element {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                if h.params.is_empty() && h.hash.is_empty() {
                    match &h.name {
                        Parameter::Name(name) if HELPERS.contains(&name.as_str()) => {}
                        Parameter::Name(name) => found.push((Use::Variable(root_of(name)), at)),
                        Parameter::Path(path) => path_use(path, at, found, attributes),
                        _ => {}
                    }
                } else {
                    helper_use(h, at, found, attributes);
                }
            }
            TemplateElement::HelperBlock(h) => {
                helper_use(h, at, found, attributes);
                let scoped = matches!(&h.name, Parameter::Name(n) if n == "each" || n == "with");
                if let Some(inner) = &h.template {
                    if !scoped {
                        walk(inner, found, attributes);
                    }
                }
                if let Some(inverse) = &h.inverse {
                    walk(inverse, found, attributes);
                }
            }
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                if let Parameter::Name(name) = &d.name {
                    found.push((Use::Partial(name.clone()), at));
                }
            }
            _ => {}
        }
    }
}

pub(super) fn helper_use(
    h: &HelperTemplate,
    at: Option<(usize, usize)>,
    found: &mut Found,
    attributes: &mut BTreeSet<String>,
) {
    if let Parameter::Name(name) = &h.name {
        found.push((Use::Helper(name.clone()), at));
    }
    for param in h.params.iter().chain(h.hash.values()) {
        param_use(param, at, found, attributes);
    }
}

pub(super) fn param_use(
    param: &Parameter,
    at: Option<(usize, usize)>,
    found: &mut Found,
    attributes: &mut BTreeSet<String>,
) {
    match param {
        Parameter::Path(path) => path_use(path, at, found, attributes),
        Parameter::Name(name) => found.push((Use::Variable(root_of(name)), at)),
        Parameter::Subexpression(sub) => {
            if let TemplateElement::Expression(h) = sub.as_element() {
                helper_use(h, at, found, attributes);
            }
        }
        _ => {}
    }
}

pub(super) fn path_use(
    path: &HbsPath,
    at: Option<(usize, usize)>,
    found: &mut Found,
    attributes: &mut BTreeSet<String>,
) {
    let HbsPath::Relative((segments, raw)) = path else {
        return;
    };
    if raw.starts_with('@') || raw.starts_with("this") || raw.starts_with("../") || raw == "." {
        return;
    }
    let names: Vec<&str> = segments
        .iter()
        .filter_map(|s| match s {
            PathSeg::Named(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let Some(root) = names.first() else {
        return;
    };
    if *root == "attributes" || *root == "event" {
        if let Some(key) = names.get(1) {
            attributes.insert(format!("{root}.{key}"));
        }
    }
    found.push((Use::Variable((*root).to_owned()), at));
}

pub(super) fn root_of(name: &str) -> String {
    name.split(['.', '/', '[']).next().unwrap_or(name).to_owned()
}
