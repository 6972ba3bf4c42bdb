//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the routes themselves. Each
//! route is registered with aide's `api_route`, its handler and its documentation together:
//! the path and method come from the registration, the parameters and the request body from
//! the handler's extractors (`crate::input`), the answers and roles from the registration's
//! [`Doc`] calls. Body schemas come from the very types the handlers parse and answer with
//! (`schemars` follows their serde attributes). A pass over the finished document adds what
//! every operation shares: operationIds, tags, the error answers, and the NUL rule on text.

use std::cell::RefCell;

use aide::axum::ApiRouter;
use aide::openapi::{OpenApi, ReferenceOr, Response, StatusCode};
use aide::transform::TransformOperation;
use axum::Router;
use nurture_engine::access::Role;
use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::error::ErrorBody;

thread_local! {
    /// Answers are described as the server writes them (serde's serialize side: a field
    /// skipped when empty is not required); aide's own generator describes requests.
    static ANSWERS: RefCell<SchemaGenerator> = RefCell::new(generator(Contract::Serialize));
}

/// What a route's registration says beside its handler.
pub trait Doc: Sized {
    /// Who may call it besides admin; empty: public, no key.
    fn allow(self, roles: &[Role]) -> Self;
    /// A success answer whose JSON body is a `T`.
    fn answers<T: JsonSchema>(self, status: u16) -> Self;
    /// A success answer that is not JSON (a page, a picture, a redirect) or has no body.
    fn answers_plain(self, status: u16, description: &str) -> Self;
    /// An error answer of this operation alone (those every operation may give are added by
    /// the pass over the document).
    fn fails(self, status: u16, description: &str) -> Self;
}

impl Doc for TransformOperation<'_> {
    fn allow(mut self, roles: &[Role]) -> Self {
        if !roles.is_empty() {
            let operation = self.inner_mut();
            operation.security = vec![[("apiKey".to_owned(), Vec::new())].into_iter().collect()];
            let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            operation.extensions.insert("x-roles".into(), json!(roles));
        }
        self
    }

    fn answers<T: JsonSchema>(self, status: u16) -> Self {
        let schema = ANSWERS.with(|answers| answers.borrow_mut().subschema_for::<T>());
        let answer = json!({"description": "Success.", "content": {"application/json": {"schema": schema}}});
        respond(self, status, answer)
    }

    fn answers_plain(self, status: u16, description: &str) -> Self {
        respond(self, status, json!({ "description": description }))
    }

    fn fails(self, status: u16, description: &str) -> Self {
        let schema = ANSWERS.with(|answers| answers.borrow_mut().subschema_for::<crate::error::ErrorBody>());
        let answer = json!({"description": description, "content": {"application/json": {"schema": schema}}});
        respond(self, status, answer)
    }
}

fn respond(mut op: TransformOperation<'_>, status: u16, answer: Value) -> TransformOperation<'_> {
    let answer: Response = serde_json::from_value(answer).expect("an answer written here is valid");
    op.inner_mut()
        .responses
        .get_or_insert_with(Default::default)
        .responses
        .insert(StatusCode::Code(status), ReferenceOr::Item(answer));
    op
}

/// Builds the routes with their documentation; answers the router and the document.
pub fn assemble<S: Clone + Send + Sync + 'static>(routes: impl FnOnce() -> ApiRouter<S>) -> (Router<S>, Value) {
    let (router, document, conflicts) = assemble_checked(routes);
    debug_assert!(
        conflicts.is_empty(),
        "schemas differ between requests and answers: {conflicts:?}"
    );
    (router, document)
}

/// [`assemble`], and the names of schemas that mean different things in requests and answers
/// (none may exist: a test checks).
pub fn assemble_checked<S: Clone + Send + Sync + 'static>(
    routes: impl FnOnce() -> ApiRouter<S>,
) -> (Router<S>, Value, Vec<String>) {
    aide::generate::extract_schemas(true);
    aide::generate::infer_responses(false);
    aide::generate::in_context(|ctx| ctx.schema = generator(Contract::Deserialize));
    ANSWERS.with(|answers| *answers.borrow_mut() = generator(Contract::Serialize));
    let mut api = OpenApi::default();
    let router = routes().finish_api(&mut api);
    let (document, conflicts) = finish(api);
    (router, document, conflicts)
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

fn generator(contract: Contract) -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.contract = contract;
        })
        .into_generator()
}

/// What every operation shares, added to what its registration and extractors said: its
/// operationId and tag, and the errors it may answer.
fn shared(path: &str, method: &str, operation: &mut Map<String, Value>, error: &Value) {
    operation.insert("operationId".into(), json!(operation_id(method, path)));
    operation.insert("tags".into(), json!([tag_of(path)]));
    let keyed = operation.contains_key("security");
    let has_body = operation.contains_key("requestBody");
    let takes_query = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
    let idempotent = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Idempotency-Key"));
    if method == "put" && path == "/v1/leads" {
        // An upsert finds its lead by one of these (a PATCH names it in the path).
        let schema = &mut operation["requestBody"]["content"]["application/json"]["schema"];
        *schema = json!({"allOf": [schema.take()], "anyOf": [
            {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}},
            {"type": "object", "required": ["external_id"], "properties": {"external_id": {"type": "string", "pattern": "^[^\\u0000]*[^\\s\\u0000][^\\u0000]*$"}}}
        ]});
    }
    let Some(Value::Object(responses)) = operation.get_mut("responses") else {
        panic!("{method} {path} documents no answer: add `.answers::<T>(status)` to its route");
    };
    let mut errors = vec![];
    if keyed {
        errors.extend([401, 403, 429]);
    }
    if path.contains('{') || has_body {
        // A body may name a lead or a queue that does not exist, too.
        errors.push(404);
    }
    if method != "get" && keyed {
        // A write may find the thing in another state than it needs (a claimed handoff).
        errors.push(409);
    }
    // What the caller sent may be malformed: a body, a query, an idempotency key.
    let queried = keyed && (method == "get" || takes_query);
    if has_body || queried || idempotent {
        errors.push(400);
    }
    if has_body {
        errors.push(413);
    }
    if has_body || queried {
        errors.push(422);
    }
    for status in errors {
        responses.insert(
            status.to_string(),
            json!({"description": "See the error's code and message.", "content": {"application/json": {"schema": error}}}),
        );
    }
    if keyed || path.starts_with("/t/") || path.starts_with("/u/") || path == "/readyz" {
        let body = if path == "/readyz" {
            json!({"type": "object"})
        } else {
            error.clone()
        };
        responses.insert(
            "503".into(),
            json!({"description": "The database is unreachable; retry after `Retry-After` seconds.",
                   "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                   "content": {"application/json": {"schema": body}}}),
        );
    }
}

/// The finished document: aide's paths and request schemas, with what every operation
/// shares, the answers' schemas and the webhooks; and the names of schemas that mean
/// different things in requests and answers.
fn finish(api: OpenApi) -> (Value, Vec<String>) {
    let aide = serde_json::to_value(&api).expect("an OpenAPI document is JSON");
    let (error, webhooks, answers) = ANSWERS.with(|answers| {
        let mut answers = answers.borrow_mut();
        let error = json!(answers.subschema_for::<ErrorBody>());
        let webhooks = webhooks(&mut answers);
        (error, webhooks, answers.take_definitions(true))
    });
    let mut paths = aide.get("paths").cloned().unwrap_or_else(|| json!({}));
    for (path, item) in paths.as_object_mut().into_iter().flatten() {
        for (method, operation) in item.as_object_mut().into_iter().flatten() {
            if let Value::Object(operation) = operation {
                shared(path, method, operation, &error);
            }
        }
    }
    let mut schemas = answers;
    let mut conflicts = Vec::new();
    let requests = aide["components"]["schemas"].as_object().cloned().unwrap_or_default();
    for (name, schema) in requests {
        match schemas.get(&name) {
            Some(existing) if *existing != schema => conflicts.push(name),
            Some(_) => {}
            None => {
                schemas.insert(name, schema);
            }
        }
    }
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

/// `GET /openapi.json`: the document built with the router.
pub async fn serve(document: axum::Extension<std::sync::Arc<Value>>) -> axum::Json<Value> {
    axum::Json(Value::clone(&document))
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_and_answer_schemas_agree_on_names() {
        let (_, document, conflicts) = super::assemble_checked(crate::routes);
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
        // Path parameters are documented where they are used, not as schemas of their own.
        assert!(!schemas.contains_key("Id") && !schemas.contains_key("QueueMember"));
    }

    /// The path parameters a handler extracts are exactly those its route's path names: a
    /// handler that read `{id}` on a route of `{queue}` would be documented with a parameter
    /// no client can send.
    #[test]
    fn every_operation_documents_the_parameters_of_its_path() {
        let (_, document, _) = super::assemble_checked(crate::routes);
        for (path, item) in document["paths"].as_object().unwrap() {
            let mut named: Vec<&str> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .collect();
            named.sort_unstable();
            for (method, operation) in item.as_object().unwrap() {
                let mut documented: Vec<&str> = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                documented.sort_unstable();
                assert_eq!(documented, named, "{method} {path}");
                assert!(operation["summary"].is_string(), "{method} {path} has no summary");
            }
        }
    }
}
