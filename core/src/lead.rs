//! Leads: the people being nurtured, their fields, lifecycle stage and consent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::str::FromStr;

/// Longest e-mail address accepted (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 320;
/// Longest value of any other text field, in characters (as JSON Schema's `maxLength` counts).
pub const MAX_FIELD_LEN: usize = 1_024;
/// A score stays within ±`MAX_SCORE`: changes beyond saturate there, and the ledger records
/// the change that was made, so a lead's score is always the sum of its ledger.
pub const MAX_SCORE: i64 = 1_000_000_000;
/// The largest manual score change, either way.
pub const MAX_MANUAL_DELTA: i64 = 1_000_000;

/// `score` moved by `delta`, saturating at ±[`MAX_SCORE`].
pub fn bounded_score(score: i64, delta: i64) -> i64 {
    score.saturating_add(delta).clamp(-MAX_SCORE, MAX_SCORE)
}

/// Largest `attributes` object, measured as compact JSON.
pub const MAX_ATTRIBUTES_BYTES: usize = 64 * 1024;

/// A lead's id: an integer inside, an opaque string outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeadId(pub i64);

impl Serialize for LeadId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl schemars::JsonSchema for LeadId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LeadId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "Opaque lead id."})
    }
}

impl fmt::Display for LeadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for LeadId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        s.parse::<i64>().map(LeadId).map_err(|_| ())
    }
}

/// Lifecycle stages, in the order a lead usually passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    New,
    Nurturing,
    Mql,
    HandedOff,
    Accepted,
    Customer,
    Recycled,
    Disqualified,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::New,
        Stage::Nurturing,
        Stage::Mql,
        Stage::HandedOff,
        Stage::Accepted,
        Stage::Customer,
        Stage::Recycled,
        Stage::Disqualified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::New => "new",
            Stage::Nurturing => "nurturing",
            Stage::Mql => "mql",
            Stage::HandedOff => "handed_off",
            Stage::Accepted => "accepted",
            Stage::Customer => "customer",
            Stage::Recycled => "recycled",
            Stage::Disqualified => "disqualified",
        }
    }

    /// Stages from which reaching the MQL condition moves a lead to `mql`. Leads already handed
    /// on, or recycled by an SDR, are not re-qualified by the same score that got them there.
    pub fn can_become_mql(self) -> bool {
        matches!(self, Stage::New | Stage::Nurturing)
    }
}

impl Lead {
    /// Whether the lead rests after a recycle at `now`: campaigns leave it alone.
    pub fn resting(&self, now: DateTime<Utc>) -> bool {
        self.cooldown_until.is_some_and(|until| now < until)
    }

    /// The lead's time zone: its `timezone` field when it names an IANA zone, else `default`.
    pub fn timezone(&self, default: chrono_tz::Tz) -> chrono_tz::Tz {
        self.fields
            .get("timezone")
            .and_then(|z| z.trim().parse().ok())
            .unwrap_or(default)
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = Stage::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown stage {s:?}; stages are {}", names.join(", "))
        })
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A normalised e-mail address: trimmed, lower-cased and syntactically valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let normal = raw.trim().to_lowercase();
        if normal.len() > MAX_EMAIL_LEN {
            return Err(format!("is longer than {MAX_EMAIL_LEN} bytes"));
        }
        if normal.contains('\0') {
            return Err("contains a NUL character".into());
        }
        if !email_address::EmailAddress::is_valid(&normal) {
            return Err(format!("{raw:?} is not a valid e-mail address"));
        }
        Ok(Self(normal))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Consent on one channel. Leads are opted in until they opt out (B2B legitimate interest);
/// an opt-out keeps when and through what it happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChannelConsent {
    pub status: ConsentStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    #[default]
    OptedIn,
    OptedOut,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Consent {
    pub email: ChannelConsent,
    pub wechat: ChannelConsent,
}

/// The named text fields of a lead, besides e-mail and external id.
pub const TEXT_FIELDS: [&str; 11] = [
    "first_name",
    "last_name",
    "title",
    "company",
    "industry",
    "company_size",
    "region",
    "phone",
    "timezone",
    "source",
    "persona",
];

/// A lead as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Lead {
    pub id: LeadId,
    pub email: Option<String>,
    pub external_id: Option<String>,
    /// Values of [`TEXT_FIELDS`], by name; absent fields are not in the map (and show as null).
    /// The names are the constants of [`TEXT_FIELDS`], so a lead allocates only its values.
    #[serde(flatten, serialize_with = "every_text_field")]
    #[schemars(with = "TextFields")]
    pub fields: std::collections::BTreeMap<&'static str, String>,
    pub attributes: Map<String, Value>,
    pub stage: Stage,
    pub owner: Option<String>,
    pub score: i64,
    pub consent: Consent,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The last behaviour event; decay counts inactivity from here.
    pub last_activity_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub last_decay_at: Option<DateTime<Utc>>,
    /// A recycled lead rests until then: no campaign enrolls it, and the MQL rule waits.
    pub cooldown_until: Option<DateTime<Utc>>,
}

/// The shape [`every_text_field`] gives the named fields, for the API's schema.
struct TextFields;

impl schemars::JsonSchema for TextFields {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TextFields".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let properties: Map<String, Value> = TEXT_FIELDS
            .iter()
            .map(|name| (name.to_string(), serde_json::json!({"type": ["string", "null"]})))
            .collect();
        schemars::json_schema!({"type": "object", "properties": properties})
    }
}

/// Serialises every named field, `null` where the lead has none, so that clients see one shape.
fn every_text_field<S: serde::Serializer>(
    fields: &std::collections::BTreeMap<&'static str, String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(TEXT_FIELDS.len()))?;
    for name in TEXT_FIELDS {
        map.serialize_entry(name, &fields.get(name))?;
    }
    map.end()
}

impl Lead {
    /// A new lead with no fields yet, as an event or an import creates it.
    pub fn new(id: LeadId, now: DateTime<Utc>) -> Self {
        Self {
            id,
            email: None,
            external_id: None,
            fields: Default::default(),
            attributes: Map::new(),
            stage: Stage::New,
            owner: None,
            score: 0,
            consent: Consent::default(),
            created_at: now,
            updated_at: now,
            last_activity_at: None,
            last_decay_at: None,
            cooldown_until: None,
        }
    }

    /// A field by the name used in conditions, templates and rules: a named field, `email`,
    /// `owner`, `stage`, `attributes.key`, or a bare attribute key.
    pub fn field(&self, name: &str) -> Option<Value> {
        match name {
            "email" => self.email.clone().map(Value::String),
            "external_id" => self.external_id.clone().map(Value::String),
            "owner" => self.owner.clone().map(Value::String),
            "stage" => Some(Value::String(self.stage.as_str().into())),
            "score" => Some(Value::from(self.score)),
            _ => {
                if let Some(v) = self.fields.get(name) {
                    return Some(Value::String(v.clone()));
                }
                let key = name.strip_prefix("attributes.").unwrap_or(name);
                self.attributes.get(key).filter(|v| !v.is_null()).cloned()
            }
        }
    }
}

/// A lead reference in request bodies: by e-mail or by the CRM's id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("anyOf" = [
    {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
    {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}},
    {"type": "object", "required": ["external_id"], "properties": {"external_id": {"type": "string"}}}
]))]
pub struct LeadRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

impl LeadRef {
    /// Whether it names no lead at all (`{}`, or `[]`, which serde reads as an empty struct).
    pub fn names_nobody(&self) -> bool {
        self.id.is_none() && self.email.is_none() && self.external_id.is_none()
    }

    /// The lead with this id.
    pub fn by_id(id: i64) -> Self {
        LeadRef {
            id: Some(id.to_string()),
            email: None,
            external_id: None,
        }
    }
}

/// A problem with one field of client input, named so the client can find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: without_nul(field.into()),
            message: without_nul(message.into()),
        }
    }
}

/// `text` with any NUL character written `\0`: error answers may quote what a client sent
/// (a field name, say), and they never carry a NUL character back.
pub fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\\0")
    } else {
        text
    }
}

/// One sentence for a list of field problems: the field and its problem when there is one,
/// else how many and which fields.
pub fn summary(problems: &[FieldError]) -> String {
    match problems {
        [one] => format!("{} {}", one.field, one.message),
        many => format!(
            "{} fields are invalid: {}",
            many.len(),
            many.iter().map(|e| e.field.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Distinguishes a field left out (`None`) from one set to null (`Some(None)`), so that
/// a PATCH or upsert can clear a field without touching the others.
fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Consent as a client may set it: an opt-out (or opt back in) with its source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    pub status: ConsentStatus,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// What a client sends to create or change a lead. Absent fields are left as they are;
/// `null` clears a field; attributes merge key by key (a `null` value removes the key).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadInput {
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub external_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub last_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub company: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub industry: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub company_size: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub region: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub phone: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub timezone: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub source: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub persona: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schemars(with = "Option<String>")]
    pub owner: Option<Option<String>>,
    #[serde(default)]
    pub stage: Option<Stage>,
    #[serde(default)]
    pub attributes: Option<Map<String, Value>>,
    #[serde(default)]
    pub consent: Option<ConsentInputs>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInputs {
    #[serde(default)]
    pub email: Option<ConsentInput>,
    #[serde(default)]
    pub wechat: Option<ConsentInput>,
}

impl LeadInput {
    /// The named text fields given, with their names ([`TEXT_FIELDS`], in order).
    fn text_fields(&self) -> impl Iterator<Item = (&'static str, &Option<Option<String>>)> {
        TEXT_FIELDS.into_iter().zip([
            &self.first_name,
            &self.last_name,
            &self.title,
            &self.company,
            &self.industry,
            &self.company_size,
            &self.region,
            &self.phone,
            &self.timezone,
            &self.source,
            &self.persona,
        ])
    }

    /// The normalised e-mail given, if any (validated by [`LeadInput::validate`]).
    pub fn email_key(&self) -> Option<String> {
        self.email
            .clone()
            .flatten()
            .and_then(|raw| EmailAddress::parse(&raw).ok())
            .map(|e| e.0)
    }

    /// The external id given, trimmed, if any.
    pub fn external_id_key(&self) -> Option<String> {
        self.external_id
            .clone()
            .flatten()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// Checks every field and returns all the problems found, each naming its field.
    /// `for_create` requires a key (e-mail or external id) to find the lead by.
    pub fn validate(&self, for_create: bool) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if let Some(Some(raw)) = &self.email {
            if let Err(message) = EmailAddress::parse(raw) {
                errors.push(FieldError::new("email", message));
            }
        }
        let mut check_text = |name: &str, value: &Option<Option<String>>| {
            if let Some(Some(text)) = value {
                if let Some(message) = text_problem(text) {
                    errors.push(FieldError::new(name, message));
                }
            }
        };
        check_text("external_id", &self.external_id);
        check_text("owner", &self.owner);
        for (name, value) in self.text_fields() {
            check_text(name, value);
        }
        if let Some(attributes) = &self.attributes {
            let size = serde_json::to_string(attributes).map(|s| s.len()).unwrap_or(0);
            if size > MAX_ATTRIBUTES_BYTES {
                errors.push(FieldError::new(
                    "attributes",
                    format!("is {size} bytes as JSON; the limit is {MAX_ATTRIBUTES_BYTES}"),
                ));
            }
            errors.extend(map_problem(attributes, "attributes"));
        }
        let email_given = matches!(&self.email, Some(Some(_)));
        if for_create && !email_given && self.external_id_key().is_none() {
            errors.push(FieldError::new(
                "email",
                "a lead needs an email or an external_id to be found by",
            ));
        }
        errors
    }

    /// Applies this input onto a lead. Call [`LeadInput::validate`] first.
    pub fn apply(&self, lead: &mut Lead, now: DateTime<Utc>) {
        if let Some(email) = &self.email {
            lead.email = email
                .as_deref()
                .and_then(|raw| EmailAddress::parse(raw).ok())
                .map(|e| e.0);
        }
        if let Some(ext) = &self.external_id {
            lead.external_id = ext.as_deref().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        }
        if let Some(owner) = &self.owner {
            lead.owner = owner.clone();
        }
        for (name, value) in self.text_fields() {
            match value {
                None => {}
                Some(None) => {
                    lead.fields.remove(name);
                }
                Some(Some(text)) => {
                    lead.fields.insert(name, text.clone());
                }
            }
        }
        if let Some(stage) = self.stage {
            lead.stage = stage;
        }
        if let Some(attributes) = &self.attributes {
            for (key, value) in attributes {
                if value.is_null() {
                    lead.attributes.remove(key);
                } else {
                    lead.attributes.insert(key.clone(), value.clone());
                }
            }
        }
        if let Some(consent) = &self.consent {
            for (slot, input) in [
                (&mut lead.consent.email, &consent.email),
                (&mut lead.consent.wechat, &consent.wechat),
            ] {
                if let Some(input) = input {
                    if slot.status != input.status {
                        *slot = ChannelConsent {
                            status: input.status,
                            at: Some(input.at.unwrap_or(now)),
                            source: input.source.clone().or_else(|| Some("api".into())),
                        };
                    }
                }
            }
        }
        lead.updated_at = now;
    }
}

/// What is wrong with a client-supplied text value, if anything.
pub fn text_problem(text: &str) -> Option<String> {
    if text.contains('\0') {
        Some("contains a NUL character".into())
    } else if text.chars().count() > MAX_FIELD_LEN {
        Some(format!("is longer than {MAX_FIELD_LEN} characters"))
    } else {
        None
    }
}

/// How deeply `attributes` and event `properties` may nest (an object in an object counts
/// one level each).
pub const MAX_JSON_DEPTH: usize = 32;

/// The first value under a free-form object (`attributes`, `properties`) that could not be
/// stored and read back as given on both backends, as a field error naming its path
/// (`attributes.k[0]`): a NUL character in a string or key (PostgreSQL refuses it, so SQLite
/// refuses it too), a negative zero (PostgreSQL's `jsonb` keeps `-0` as `0`), or nesting past
/// [`MAX_JSON_DEPTH`]. Such input is refused rather than altered. Numbers are otherwise kept
/// as the double or 64-bit integer serde_json parsed them into; the API refuses integer
/// literals that do not fit one exactly (`api::body`).
pub fn map_problem(map: &Map<String, Value>, path: &str) -> Option<FieldError> {
    map_problem_at(map, path, 1)
}

fn too_deep(path: &str) -> FieldError {
    FieldError::new(path, format!("nests deeper than {MAX_JSON_DEPTH} levels; flatten it"))
}

fn map_problem_at(map: &Map<String, Value>, path: &str, depth: usize) -> Option<FieldError> {
    if depth > MAX_JSON_DEPTH {
        return Some(too_deep(path));
    }
    // Paths are built only on the way to a problem: the common case allocates nothing.
    if !map.iter().any(|(k, v)| k.contains('\0') || value_needs_look(v)) {
        return None;
    }
    map.iter().find_map(|(k, v)| {
        if k.contains('\0') {
            // Escaped: an answer never carries a NUL character back.
            let here = format!("{path}.{}", k.escape_debug());
            Some(FieldError::new(here, "has a key with a NUL character"))
        } else {
            value_problem(v, &format!("{path}.{k}"), depth)
        }
    })
}

fn value_needs_look(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Number(n) => is_negative_zero(n),
        Value::Array(_) | Value::Object(_) => true,
        _ => false,
    }
}

fn is_negative_zero(n: &serde_json::Number) -> bool {
    n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) && n.is_f64()
}

fn value_problem(value: &Value, path: &str, depth: usize) -> Option<FieldError> {
    match value {
        Value::String(s) if s.contains('\0') => Some(FieldError::new(path, "contains a NUL character")),
        Value::Number(n) if is_negative_zero(n) => {
            Some(FieldError::new(path, "is -0, which PostgreSQL would keep as 0; send 0"))
        }
        Value::Array(_) if depth + 1 > MAX_JSON_DEPTH => Some(too_deep(path)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| value_problem(v, &format!("{path}[{i}]"), depth + 1)),
        Value::Object(map) => map_problem_at(map, path, depth + 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            EmailAddress::parse("  Li.Wei@ACME.example ").unwrap().as_str(),
            "li.wei@acme.example"
        );
        assert!(EmailAddress::parse("not-an-email").is_err());
        assert!(EmailAddress::parse(&format!("{}@x.example", "a".repeat(330))).is_err());
    }

    /// Each named field of an input is read under its own name.
    #[test]
    fn input_text_fields_are_named_as_sent() {
        let sent: Map<String, Value> = TEXT_FIELDS.iter().map(|f| (f.to_string(), Value::from(*f))).collect();
        let input: LeadInput = serde_json::from_value(Value::Object(sent)).unwrap();
        let read: Vec<(&str, Option<&str>)> = input
            .text_fields()
            .map(|(name, value)| (name, value.as_ref().and_then(|v| v.as_deref())))
            .collect();
        let expected: Vec<(&str, Option<&str>)> = TEXT_FIELDS.iter().map(|f| (*f, Some(*f))).collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn input_validation_names_every_field() {
        let input: LeadInput = serde_json::from_value(serde_json::json!({
            "email": "nope", "company": "a\u{0}b", "attributes": {"k": ["x\u{0}"]}
        }))
        .unwrap();
        let fields: Vec<_> = input.validate(true).into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["email", "company", "attributes.k[0]"]);
    }

    fn attribute_problem(attributes: Value) -> Option<(String, String)> {
        let map = attributes.as_object().unwrap();
        map_problem(map, "attributes").map(|e| (e.field, e.message))
    }

    #[test]
    fn values_that_would_not_read_back_as_given_are_named() {
        let check = |attributes: Value, expect: Option<(&str, &str)>| {
            let got = attribute_problem(attributes.clone());
            let got = got.as_ref().map(|(f, m)| (f.as_str(), m.as_str()));
            assert_eq!(got, expect, "{attributes}");
        };
        check(
            serde_json::json!({"x": 1.7976931348623157e308, "y": 5e-324, "z": u64::MAX}),
            None,
        );
        check(serde_json::json!({"x": 0, "y": 0.0}), None);
        check(
            serde_json::json!({"a": {"b": [1, -0.0]}}),
            Some(("attributes.a.b[1]", "is -0, which PostgreSQL would keep as 0; send 0")),
        );
        check(
            serde_json::json!({"k\u{0}": 1}),
            Some(("attributes.k\\0", "has a key with a NUL character")),
        );
        // The attributes object is the first level; each array inside adds one.
        let nested = |levels: usize| (0..levels).fold(Value::from(1), |v, _| serde_json::json!([v]));
        check(serde_json::json!({ "d": nested(MAX_JSON_DEPTH - 1) }), None);
        let too_deep = attribute_problem(serde_json::json!({ "d": nested(MAX_JSON_DEPTH) })).unwrap();
        assert_eq!(
            too_deep,
            (
                format!("attributes.d{}", "[0]".repeat(MAX_JSON_DEPTH - 1)),
                format!("nests deeper than {MAX_JSON_DEPTH} levels; flatten it")
            )
        );
    }

    #[test]
    fn scores_saturate_at_their_bounds() {
        assert_eq!(bounded_score(10, -3), 7);
        assert_eq!(bounded_score(MAX_SCORE - 1, i64::MAX), MAX_SCORE);
        assert_eq!(bounded_score(0, i64::MIN), -MAX_SCORE);
        assert_eq!(bounded_score(i64::MIN, 0), -MAX_SCORE);
    }

    #[test]
    fn null_clears_and_absent_keeps() {
        let now = Utc::now();
        let mut lead = Lead::new(LeadId(1), now);
        lead.fields.insert("company", "Acme".into());
        lead.fields.insert("title", "CTO".into());
        let input: LeadInput = serde_json::from_str(r#"{"company": null, "attributes": {"a": 1}}"#).unwrap();
        input.apply(&mut lead, now);
        assert_eq!(lead.fields.get("company"), None);
        assert_eq!(lead.fields.get("title").map(String::as_str), Some("CTO"));
        assert_eq!(lead.attributes.get("a"), Some(&Value::from(1)));
    }
}
