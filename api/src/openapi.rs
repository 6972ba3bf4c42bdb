//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the code. Body schemas come
//! from the very types the handlers parse and answer with (`schemars` follows their serde
//! attributes); the paths come from [`OPERATIONS`], and a test calls every documented operation
//! on a live server, so that a documented route that does not exist fails the build.

use nurture_engine::access::Role;
use nurture_engine::engine::{IngestReport, LeadView};
use nurture_engine::event::EventInput;
use nurture_engine::lead::LeadInput;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::admin::{AdvanceBody, ClockAnswer};
use crate::campaigns::{CampaignDetail, CampaignList, DeployAnswer, EnrollBody, ValidationAnswer};
use crate::error::ErrorBody;
use crate::leads::{BulkAnswer, LeadPage, ScoreBody, TagsBody, TimelinePage};
use crate::queues::{HandoffBody, HandoffPage, HandoffView, MemberBody, MemberList, QueueList, RejectBody};
use crate::webhooks::{DeliveryPage, WebhookBody, WebhookList, WebhookView};
use nurture_engine::handoff::Member;

type SchemaOf = fn(&mut SchemaGenerator) -> Schema;

fn of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// One documented operation.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Roles allowed besides admin; empty: public, no key.
    pub roles: &'static [Role],
    pub request: Option<SchemaOf>,
    pub status: u16,
    pub response: Option<SchemaOf>,
    /// The query parameters the handler reads (it refuses others).
    pub query: &'static [QueryParam],
    /// Other success statuses besides `status`, e.g. 204 when there is nothing to give.
    pub also: &'static [(u16, &'static str)],
}

/// A query parameter: its name, its JSON Schema (as JSON text) and what it does. Handlers
/// check the parameters they are given against the same list.
pub struct QueryParam {
    pub name: &'static str,
    pub schema: fn() -> Value,
    pub description: &'static str,
}

/// `?limit=`: the page size.
pub const LIMIT: QueryParam = QueryParam {
    name: "limit",
    schema: || json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}),
    description: "Items per page.",
};

/// `?cursor=`: where the previous page ended.
pub const CURSOR: QueryParam = QueryParam {
    name: "cursor",
    schema: || json!({"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}),
    description: "The `next_cursor` of the previous page, as given; a cursor this server did not give out is refused.",
};

/// `?limit=&cursor=`.
pub const PAGED: &[QueryParam] = &[LIMIT, CURSOR];

/// Refuses parameters that `known` does not list, naming the ones it does.
pub fn check_query<'a>(
    params: impl IntoIterator<Item = &'a String>,
    known: &[QueryParam],
) -> Result<(), crate::error::ApiError> {
    for name in params {
        if !known.iter().any(|p| p.name == name) {
            let names: Vec<&str> = known.iter().map(|p| p.name).collect();
            return Err(crate::error::ApiError::Malformed(if names.is_empty() {
                format!("unknown query parameter {name:?}; this operation takes none")
            } else {
                format!("unknown query parameter {name:?}; known are {}", names.join(", "))
            }));
        }
    }
    Ok(())
}

/// What every entry leaves at its default unless it says otherwise.
const PLAIN: Operation = Operation {
    method: "",
    path: "",
    summary: "",
    roles: &[],
    request: None,
    status: 200,
    response: None,
    query: &[],
    also: &[],
};

const WRITERS: &[Role] = &[Role::Crm, Role::Marketer];
const EVERYONE: &[Role] = &[Role::Admin, Role::Marketer, Role::Sdr, Role::Crm];

/// Every operation the server offers.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/healthz",
        summary: "The process is up.",
        roles: &[],
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/readyz",
        summary: "The database answers and migrations are current (503 otherwise).",
        roles: &[],
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/metrics",
        summary: "Prometheus metrics (text format).",
        roles: &[],
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/openapi.json",
        summary: "This document.",
        roles: &[],
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "put",
        path: "/v1/leads",
        summary: "Upsert one lead by external_id, else e-mail (201 created, 200 updated).",
        roles: WRITERS,
        request: Some(of::<LeadInput>),
        status: 201,
        response: Some(of::<LeadView>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/leads",
        summary: "Search leads: tag, stage, segment, q, email, external_id; paginated.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: Some(of::<LeadPage>),
        query: crate::leads::LIST_QUERY,
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/leads/bulk",
        summary: "Upsert up to 10,000 leads; one result per item, in order.",
        roles: WRITERS,
        request: Some(of::<Vec<LeadInput>>),
        status: 200,
        response: Some(of::<BulkAnswer>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/leads/{id}",
        summary: "A lead with its tags, score, stage, owner and consent.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: Some(of::<LeadView>),
        ..PLAIN
    },
    Operation {
        method: "patch",
        path: "/v1/leads/{id}",
        summary: "Change fields (absent: kept, null: cleared).",
        roles: WRITERS,
        request: Some(of::<LeadInput>),
        status: 200,
        response: Some(of::<LeadView>),
        ..PLAIN
    },
    Operation {
        method: "delete",
        path: "/v1/leads/{id}",
        summary: "Erase the person; a suppression hash of the e-mail is kept.",
        roles: &[Role::Admin],
        request: None,
        status: 204,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/leads/{id}/tags",
        summary: "Add and remove manual tags, recorded with who did it.",
        roles: &[Role::Sdr, Role::Marketer, Role::Crm],
        request: Some(of::<TagsBody>),
        status: 200,
        response: Some(of::<LeadView>),
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/leads/{id}/score",
        summary: "Manual scoring, recorded in the ledger.",
        roles: &[Role::Sdr, Role::Marketer],
        request: Some(of::<ScoreBody>),
        status: 200,
        response: Some(of::<LeadView>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/leads/{id}/timeline",
        summary: "Events, tag and score changes and handoffs, newest first; paginated.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: Some(of::<TimelinePage>),
        query: PAGED,
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/events",
        summary: "One behaviour event, or an array of up to 10,000.",
        roles: WRITERS,
        request: Some(of::<OneOrManyEvents>),
        status: 200,
        response: Some(of::<IngestReport>),
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/playbook/validate",
        summary: "Validate one playbook YAML file (checked against the playbook in force) or a tar of the playbook directory; every error and warning with file, line and column.",
        roles: &[Role::Marketer],
        request: Some(of::<PlaybookUpload>),
        status: 200,
        response: Some(of::<ValidationAnswer>),
        query: &[QueryParam {
            name: "file",
            schema: || json!({"type": "string"}),
            description: "The name errors give an uploaded single file (default `request.yaml`).",
        }],
        ..PLAIN
    },
    Operation {
        method: "put",
        path: "/v1/playbook",
        summary: "Validate and deploy (422 with every error, nothing deployed); a changed campaign becomes a new version, an unchanged one is left as it is.",
        roles: &[Role::Marketer],
        request: Some(of::<PlaybookUpload>),
        status: 200,
        response: Some(of::<DeployAnswer>),
        query: &[QueryParam {
            name: "file",
            schema: || json!({"type": "string"}),
            description: "The name errors give an uploaded single file (default `request.yaml`).",
        }],
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/campaigns",
        summary: "Deployed campaigns: id, name, type, version, status.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: Some(of::<CampaignList>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/campaigns/{id}",
        summary: "A campaign's graph (steps and edges) and its deployed versions.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: Some(of::<CampaignDetail>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/campaigns/{id}/graph.svg",
        summary: "The campaign drawn as SVG.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/campaigns/{id}/graph.dot",
        summary: "The campaign as Graphviz DOT.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/campaigns/{id}/pause",
        summary: "Pause: no step runs; waits keep counting.",
        roles: &[Role::Marketer],
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/campaigns/{id}/resume",
        summary: "Resume a paused campaign.",
        roles: &[Role::Marketer],
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/campaigns/{id}/enroll",
        summary: "Enroll leads by hand: {\"leads\": [ids or refs]} or {\"segment\": \"icp\"}; the campaign's re-entry rule holds.",
        roles: &[Role::Marketer, Role::Crm],
        request: Some(of::<EnrollBody>),
        status: 200,
        response: Some(of::<nurture_engine::engine::EnrollReport>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/queues",
        summary: "The handoff queues of the playbook in force: SLA, routing, members, cool-down.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: Some(of::<QueueList>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/queues/{queue}",
        summary: "Open handoffs, highest priority first, then oldest, with lead summary and reason; paginated.",
        roles: &[Role::Sdr, Role::Marketer],
        request: None,
        status: 200,
        response: Some(of::<HandoffPage>),
        query: PAGED,
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/queues/{queue}/claim",
        summary: "Atomically take the next open handoff (yours by round robin, or unassigned); 204 when none. Two callers never get the same one.",
        roles: &[Role::Sdr],
        request: None,
        status: 200,
        response: Some(of::<HandoffView>),
        also: &[(204, "The queue has nothing this SDR may claim now.")],
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/queues/{queue}/members",
        summary: "The queue's members: availability, capacity, weight and handoffs in their hands.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: Some(of::<MemberList>),
        ..PLAIN
    },
    Operation {
        method: "put",
        path: "/v1/queues/{queue}/members/{member}",
        summary: "Mark a member away or back (an SDR: only themselves), set their capacity or round-robin weight (marketer, admin; 403 for an SDR).",
        roles: &[Role::Sdr, Role::Marketer],
        request: Some(of::<MemberBody>),
        status: 200,
        response: Some(of::<Member>),
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/handoffs",
        summary: "Hand a lead to a queue (409 when the lead already has an open handoff).",
        roles: &[Role::Sdr, Role::Marketer, Role::Crm],
        request: Some(of::<HandoffBody>),
        status: 201,
        response: Some(of::<HandoffView>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/handoffs/{id}",
        summary: "A handoff, its lead and its history.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: Some(of::<HandoffView>),
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/handoffs/{id}/accept",
        summary: "Accept (claiming it if open): lead stage `accepted`, owner the caller. 409 when another SDR holds it (claimed, or assigned while open); marketers and admins may act on anyone's.",
        roles: &[Role::Sdr, Role::Marketer],
        request: None,
        status: 200,
        response: Some(of::<HandoffView>),
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/handoffs/{id}/reject",
        summary: "Reject with a reason (422 without); `recycle` (default true) returns the lead to nurture after the queue's cool-down, else `disqualified`. 409 when another SDR holds it.",
        roles: &[Role::Sdr, Role::Marketer],
        request: Some(of::<RejectBody>),
        status: 200,
        response: Some(of::<HandoffView>),
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/handoffs/{id}/convert",
        summary: "The deal closed: lead stage `customer`. 409 for an SDR when another SDR holds it (claimed, assigned, or accepted it); the CRM, marketers and admins record it whoever holds it.",
        roles: &[Role::Sdr, Role::Marketer, Role::Crm],
        request: None,
        status: 200,
        response: Some(of::<HandoffView>),
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/handoffs/{id}/release",
        summary: "Give a claimed handoff back to its queue (409 when another SDR claimed it).",
        roles: &[Role::Sdr, Role::Marketer],
        request: None,
        status: 200,
        response: Some(of::<HandoffView>),
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/webhooks",
        summary: "Subscribe a CRM URL to event types; deliveries are signed (X-Nurture-Signature) and retried for 24 h. The secret is shown in this answer only.",
        roles: &[Role::Crm],
        request: Some(of::<WebhookBody>),
        status: 201,
        response: Some(of::<WebhookView>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/webhooks",
        summary: "The active subscriptions.",
        roles: &[Role::Crm],
        request: None,
        status: 200,
        response: Some(of::<WebhookList>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/webhooks/{id}",
        summary: "One subscription.",
        roles: &[Role::Crm],
        request: None,
        status: 200,
        response: Some(of::<WebhookView>),
        ..PLAIN
    },
    Operation {
        method: "delete",
        path: "/v1/webhooks/{id}",
        summary: "Unsubscribe; pending deliveries are dropped (204).",
        roles: &[Role::Crm],
        request: None,
        status: 204,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/webhooks/{id}/deliveries",
        summary: "The delivery log, newest first: each delivery with its id, status and every attempt; paginated.",
        roles: &[Role::Crm],
        request: None,
        status: 200,
        response: Some(of::<DeliveryPage>),
        query: PAGED,
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/v1/admin/clock",
        summary: "The server's time, and whether it is a manual clock.",
        roles: EVERYONE,
        request: None,
        status: 200,
        response: Some(of::<ClockAnswer>),
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/v1/admin/clock/advance",
        summary: "Manual clock only (409 otherwise): move time forward, running every step that falls due in the span, in order; answers once the engine is idle at the new time.",
        roles: &[Role::Admin],
        request: Some(of::<AdvanceBody>),
        status: 200,
        response: Some(of::<ClockAnswer>),
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/t/o/{token}",
        summary: "Open pixel (1x1 GIF); records email_opened, flagged automated for proxies and HEAD requests. A forged token: 404.",
        roles: &[],
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/t/c/{token}",
        summary: "Click redirect: 302 to the link signed into the token (never anywhere else); records email_clicked.",
        roles: &[],
        request: None,
        status: 302,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "get",
        path: "/u/{token}",
        summary: "Unsubscribe page with a confirm button; changes nothing by itself.",
        roles: &[],
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
    Operation {
        method: "post",
        path: "/u/{token}",
        summary: "Unsubscribe (the confirm button, and RFC 8058 one-click): the lead stops getting that channel at once.",
        roles: &[],
        request: None,
        status: 200,
        response: None,
        ..PLAIN
    },
];

/// A playbook upload: one YAML file, or a tar archive of the playbook directory.
#[derive(JsonSchema)]
#[allow(dead_code)]
#[schemars(
    description = "One playbook YAML file (application/yaml), or a tar archive of the playbook directory (application/x-tar)."
)]
struct PlaybookUpload(String);

/// `POST /v1/events` takes one event or an array of them.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum OneOrManyEvents {
    One(EventInput),
    Many(Vec<EventInput>),
}

/// What a CRM receives (OpenAPI 3.1 `webhooks`): one POST per event type, with its headers
/// and its payload, from the types the engine builds deliveries from.
fn webhooks(generator: &mut SchemaGenerator) -> Value {
    use nurture_engine::webhook::payload::{data_of, Payload};
    let envelope = json!(generator.subschema_for::<Payload>());
    let mut hooks = Map::new();
    for kind in nurture_engine::engine::WEBHOOK_EVENTS {
        let data = json!(data_of(kind)(generator));
        let header = |name: &str, description: &str| json!({"name": name, "in": "header", "required": true, "description": description, "schema": {"type": "string"}});
        hooks.insert(
            kind.to_owned(),
            json!({"post": {
                "operationId": operation_id("webhook", &format!("/{kind}")),
                "summary": format!("`{kind}`, POSTed to each subscription that asked for it."),
                "parameters": [
                    header("X-Nurture-Event", "The event type."),
                    header("X-Nurture-Delivery", "The delivery's id, the same on every retry: drop duplicates by it."),
                    header("X-Nurture-Signature", "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" with the subscription's secret>`."),
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "allOf": [envelope.clone(), {"properties": {"type": {"const": kind}, "data": data}}]
                }}}},
                "responses": {"2XX": {"description": "Received. Any other answer, or none within 10 s, is retried with backoff for 24 hours."}}
            }}),
        );
    }
    Value::Object(hooks)
}

/// A stable operationId from the method and path: `GET /v1/leads/{id}/timeline` is
/// `getLeadsByIdTimeline`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for segment in path
        .trim_start_matches("/v1")
        .split(['/', '.', '-'])
        .filter(|s| !s.is_empty())
    {
        let (by, word) = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => ("By", name),
            None => ("", segment),
        };
        id.push_str(by);
        for part in word.split('_') {
            let mut chars = part.chars();
            if let Some(first) = chars.next() {
                id.extend(first.to_uppercase());
                id.push_str(chars.as_str());
            }
        }
    }
    id
}

/// The tag an operation is grouped under: its resource (`leads`, `queues`, …).
fn tag_of(path: &str) -> &'static str {
    const TAGS: &[&str] = &[
        "leads",
        "events",
        "playbook",
        "campaigns",
        "queues",
        "handoffs",
        "webhooks",
        "admin",
    ];
    let resource = path.trim_start_matches("/v1/").split('/').next().unwrap_or_default();
    match TAGS.iter().find(|t| **t == resource) {
        Some(tag) => tag,
        None if path.starts_with("/t/") || path.starts_with("/u/") => "tracking",
        None => "operations",
    }
}

/// Calls `rule` on every object of `value`, a parent before its children.
fn each_object(value: &mut Value, rule: &mut impl FnMut(&mut Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            rule(map);
            map.values_mut().for_each(|child| each_object(child, rule));
        }
        Value::Array(items) => items.iter_mut().for_each(|child| each_object(child, rule)),
        _ => {}
    }
}

/// `true` ("any JSON") written `{}`: the same schema, which client generators that do not
/// read boolean schemas (openapi-python-client) understand.
fn no_boolean_schema(map: &mut Map<String, Value>) {
    for key in ["items", "additionalProperties", "unevaluatedProperties"] {
        if map.get(key) == Some(&Value::Bool(true)) {
            map.insert(key.into(), json!({}));
        }
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for schema in properties.values_mut() {
            if *schema == Value::Bool(true) {
                *schema = json!({});
            }
        }
    }
}

/// An enum whose variants schemars documents one by one (`oneOf` of `const` and `enum`
/// strings) written as one `enum` of strings, the descriptions joined: the same values, in the
/// shape client generators read (openapi-python-client matched only the first `const`).
fn plain_enum(map: &mut Map<String, Value>) {
    let strings = map.get("oneOf").and_then(Value::as_array).and_then(|options| {
        let mut values = Vec::new();
        let mut notes = Vec::new();
        for option in options {
            if option.get("type")? != "string" {
                return None;
            }
            match (option.get("const"), option.get("enum")) {
                (Some(Value::String(one)), None) => values.push(json!(one)),
                (None, Some(Value::Array(many))) => values.extend(many.iter().cloned()),
                _ => return None,
            }
            if let (Some(Value::String(one)), Some(Value::String(note))) =
                (option.get("const"), option.get("description"))
            {
                notes.push(format!("`{one}`: {note}"));
            }
        }
        Some((values, notes))
    });
    if let Some((values, notes)) = strings {
        map.remove("oneOf");
        map.insert("type".into(), json!("string"));
        map.insert("enum".into(), Value::Array(values));
        if !notes.is_empty() {
            let head = map
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let text = [head, notes.join(" ")].join(" ").trim().to_owned();
            map.insert("description".into(), json!(text));
        }
    }
}

/// Every text the API reads refuses the NUL character (PostgreSQL cannot store it): said on
/// each string schema that does not constrain its text otherwise.
fn refuse_nul(map: &mut Map<String, Value>) {
    let is_string = match map.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
        _ => false,
    };
    let constrained = ["pattern", "enum", "const", "format", "contentEncoding"]
        .iter()
        .any(|k| map.contains_key(*k));
    if is_string && !constrained {
        map.insert("pattern".into(), json!("^[^\\u0000]*$"));
    }
}

fn generator(serialize: bool) -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .with(|s| {
            s.contract = if serialize {
                schemars::generate::Contract::Serialize
            } else {
                schemars::generate::Contract::Deserialize
            }
        })
        .into_generator()
}

/// The document, and the names of schemas that mean different things in requests and answers
/// (none may exist: a test checks).
pub fn build() -> (Value, Vec<String>) {
    let mut requests = generator(false);
    let mut answers = generator(true);
    let error = answers.subschema_for::<ErrorBody>();
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut operation = Map::new();
        operation.insert("operationId".into(), json!(operation_id(op.method, op.path)));
        operation.insert("tags".into(), json!([tag_of(op.path)]));
        operation.insert("summary".into(), json!(op.summary));
        if !op.roles.is_empty() {
            let roles: Vec<&str> = op.roles.iter().map(|r| r.as_str()).collect();
            operation.insert("security".into(), json!([{"apiKey": []}]));
            operation.insert("x-roles".into(), json!(roles));
        }
        let names: Vec<&str> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let mut parameters: Vec<Value> = names
            .iter()
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        for param in op.query {
            let schema = (param.schema)();
            parameters.push(json!({"name": param.name, "in": "query", "required": false,
                                   "description": param.description, "schema": schema}));
        }
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if op.path.starts_with("/v1/playbook") {
            // A playbook travels as YAML or as a tar of its directory, not as JSON; deploying
            // the same playbook twice is a no-op, so no idempotency key is needed.
            operation.insert(
                "requestBody".into(),
                json!({"required": true, "content": {
                    "application/yaml": {"schema": {"type": "string"}},
                    "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
                    // Either, as bytes: the server tells a tar by its header.
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                }}),
            );
        } else if let Some(schema) = op.request {
            let mut schema = json!(schema(&mut requests));
            if op.method == "put" && op.path == "/v1/leads" {
                // An upsert finds its lead by one of these (a PATCH names it in the path).
                schema = json!({"allOf": [schema], "anyOf": [
                    {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}},
                    {"type": "object", "required": ["external_id"], "properties": {"external_id": {"type": "string", "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"}}}
                ]});
            }
            operation.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
            let key = json!({"name": "Idempotency-Key", "in": "header", "required": false,
                             "description": "Retry safely: the same key and body get the first answer again; another body, 409.",
                             "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"}});
            let mut parameters: Vec<Value> = operation
                .get("parameters")
                .and_then(|p| p.as_array())
                .cloned()
                .unwrap_or_default();
            parameters.push(key);
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        let mut responses = Map::new();
        let ok = match op.response {
            Some(schema) => {
                json!({"description": "Success.", "content": {"application/json": {"schema": schema(&mut answers)}}})
            }
            None => json!({"description": "Success."}),
        };
        responses.insert(op.status.to_string(), ok);
        for (status, description) in op.also {
            responses.insert(status.to_string(), json!({"description": description}));
        }
        if op.method == "put" && op.status == 201 {
            responses.insert("200".into(), responses["201"].clone());
        }
        let mut errors = vec![];
        if !op.roles.is_empty() {
            errors.extend([401, 403, 429]);
        }
        if op.path.contains('{') || op.request.is_some() {
            // A body may name a lead or a queue that does not exist, too.
            errors.push(404);
        }
        if op.method != "get" && !op.roles.is_empty() {
            // A write may find the thing in another state than it needs (a claimed handoff).
            errors.push(409);
        }
        if op.request.is_some() {
            errors.extend([400, 413, 422]);
        } else if !op.roles.is_empty() && op.method == "get" {
            errors.extend([400, 422]);
        }
        for status in errors {
            responses.insert(status.to_string(), json!({"description": "See the error's code and message.", "content": {"application/json": {"schema": error}}}));
        }
        if !op.roles.is_empty() || op.path.starts_with("/t/") || op.path.starts_with("/u/") || op.path == "/readyz" {
            responses.insert(
                "503".into(),
                json!({"description": "The database is unreachable; retry after `Retry-After` seconds.",
                       "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                       "content": {"application/json": {"schema": if op.path == "/readyz" { json!({"type": "object"}) } else { error.clone().into() }}}}),
            );
        }
        operation.insert("responses".into(), Value::Object(responses));
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method] = Value::Object(operation);
    }
    let webhooks = webhooks(&mut answers);
    let mut schemas = answers.take_definitions(true);
    let mut conflicts = Vec::new();
    for (name, schema) in requests.take_definitions(true) {
        match schemas.get(&name) {
            Some(existing) if *existing != schema => conflicts.push(name),
            Some(_) => {}
            None => {
                schemas.insert(name, schema);
            }
        }
    }
    let mut paths = Value::Object(paths);
    let mut schemas = Value::Object(schemas);
    // What the server reads refuses NUL; what it sends (webhooks) is documented as it is.
    each_object(&mut paths, &mut refuse_nul);
    each_object(&mut schemas, &mut refuse_nul);
    let mut webhooks = webhooks;
    for part in [&mut paths, &mut schemas, &mut webhooks] {
        each_object(part, &mut |map| {
            no_boolean_schema(map);
            plain_enum(map);
        });
    }
    let document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "nurture",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "B2B lead-nurturing engine: the contract with CRMs, SDR tools and scripts."
        },
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "An API key from `nurture apikey create`."}}
        }
    });
    (document, conflicts)
}

pub async fn serve() -> axum::Json<Value> {
    axum::Json(build().0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_and_answer_schemas_agree_on_names() {
        let (document, conflicts) = super::build();
        assert_eq!(conflicts, Vec::<String>::new());
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for name in [
            "LeadView",
            "LeadInput",
            "EventInput",
            "IngestReport",
            "ErrorBody",
            "Stage",
        ] {
            assert!(schemas.contains_key(name), "{name} missing");
        }
        assert_eq!(
            document["components"]["schemas"]["LeadView"]["properties"]["id"]["$ref"],
            "#/components/schemas/LeadId"
        );
    }
}
