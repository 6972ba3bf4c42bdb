//! The Handlebars registry and nurture's helpers (`default`, `date`, `upper`).

use chrono::{DateTime, Utc};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, JsonValue, RenderContext, RenderError, RenderErrorReason, ScopedJson,
};
use serde_json::Value;

pub(super) fn registry(escape: fn(&str) -> String) -> Handlebars<'static> {
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(escape);
    registry.register_helper("default", Box::new(DefaultHelper));
    registry.register_helper("date", Box::new(DateHelper));
    registry.register_helper("upper", Box::new(UpperHelper));
    registry
}

pub(super) fn json_escape(text: &str) -> String {
    let quoted = Value::String(text.to_owned()).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// `{{default first_name "there"}}`: the value, or the fallback when it is empty.
pub(super) struct DefaultHelper;

impl HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = h.param(0).map(|p| p.value().clone()).unwrap_or(Value::Null);
        let fallback = h
            .param(1)
            .map(|p| p.value().clone())
            .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex("default", 1))?;
        let empty = match &value {
            Value::Null => true,
            Value::String(s) => s.trim().is_empty(),
            _ => false,
        };
        Ok(ScopedJson::Derived(if empty { fallback } else { value }))
    }
}

/// `{{date created_at "%Y-%m-%d"}}`: an RFC 3339 time shown in the lead's time zone (the
/// `timezone` value of the context). Default format `%Y-%m-%d %H:%M`.
pub(super) struct DateHelper;

impl HelperDef for DateHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        context: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = h.param(0).map(|p| p.value().clone()).unwrap_or(Value::Null);
        let format = h
            .param(1)
            .and_then(|p| p.value().as_str().map(str::to_owned))
            .unwrap_or_else(|| "%Y-%m-%d %H:%M".to_owned());
        let zone: chrono_tz::Tz = context
            .data()
            .get("timezone")
            .and_then(JsonValue::as_str)
            .and_then(|z| z.parse().ok())
            .unwrap_or(chrono_tz::UTC);
        let text = match value.as_str().map(DateTime::parse_from_rfc3339) {
            Some(Ok(time)) => {
                use std::fmt::Write;
                let local = time.with_timezone(&Utc).with_timezone(&zone);
                let mut out = String::new();
                write!(out, "{}", local.format(&format))
                    .map_err(|_| RenderErrorReason::Other(format!("date format {format:?} is not valid")))?;
                out
            }
            _ => String::new(),
        };
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

/// `{{upper company}}`.
pub(super) struct UpperHelper;

impl HelperDef for UpperHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = h.param(0).map(|p| p.render()).unwrap_or_default();
        Ok(ScopedJson::Derived(Value::String(value.to_uppercase())))
    }
}
