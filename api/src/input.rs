//! What a request carries, as extractors that both read it and document it: a handler's
//! signature is its OpenAPI operation's input (aide's `OperationInput`), so a parameter, a
//! body or an `Idempotency-Key` cannot be read without being documented, nor documented
//! without being read.

use std::collections::HashMap;
use std::marker::PhantomData;

use aide::generate::GenContext;
use aide::openapi::{Operation, Parameter, RequestBody};
use aide::operation::{add_parameters, set_body};
use aide::OperationInput;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;

fn parameter(value: Value) -> Parameter {
    serde_json::from_value(value).expect("a parameter written in this module is valid")
}

/// The query parameters an operation takes: their names, schemas and meaning. [`Params`]
/// refuses any other.
pub trait QuerySpec {
    const PARAMS: &'static [QueryParam];
}

/// A query parameter: its name, its JSON Schema and what it does.
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
pub struct Paged;
impl QuerySpec for Paged {
    const PARAMS: &'static [QueryParam] = &[LIMIT, CURSOR];
}

/// The query string, checked against `Q`'s parameters (400 naming the known ones).
pub struct Params<Q>(pub HashMap<String, String>, PhantomData<Q>);

impl<Q> Params<Q> {
    pub fn get(&self, name: &str) -> Option<&String> {
        self.0.get(name)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

impl<Q: QuerySpec, S: Send + Sync> FromRequestParts<S> for Params<Q> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::Malformed(format!("malformed query string: {}", e.body_text())))?;
        for name in params.keys() {
            if !Q::PARAMS.iter().any(|p| p.name == name) {
                let names: Vec<&str> = Q::PARAMS.iter().map(|p| p.name).collect();
                return Err(ApiError::Malformed(if names.is_empty() {
                    format!("unknown query parameter {name:?}; this operation takes none")
                } else {
                    format!("unknown query parameter {name:?}; known are {}", names.join(", "))
                }));
            }
        }
        Ok(Params(params, PhantomData))
    }
}

impl<Q: QuerySpec> OperationInput for Params<Q> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let params = Q::PARAMS.iter().map(|p| {
            parameter(json!({"in": "query", "name": p.name, "required": false,
                             "description": p.description, "schema": (p.schema)()}))
        });
        add_parameters(ctx, operation, params);
    }
}

/// The path parameter `{id}`.
#[derive(Deserialize, JsonSchema)]
#[schemars(inline)]
pub struct Id {
    pub id: String,
}

/// The path parameter `{name}` of a template.
#[derive(Deserialize, JsonSchema)]
#[schemars(inline)]
pub struct TemplateName {
    pub name: String,
}

/// The path parameter `{queue}`.
#[derive(Deserialize, JsonSchema)]
#[schemars(inline)]
pub struct QueueName {
    pub queue: String,
}

/// The path parameters `{queue}` and `{member}`.
#[derive(Deserialize, JsonSchema)]
#[schemars(inline)]
pub struct QueueMember {
    pub queue: String,
    pub member: String,
}

/// The path parameter `{token}` of a tracking or unsubscribe link.
#[derive(Deserialize, JsonSchema)]
#[schemars(inline)]
pub struct LinkToken {
    pub token: String,
}

/// A JSON body of type `T`, kept raw: the idempotency layer hashes the bytes before the
/// handler parses them (with the positions and field paths of `crate::body`). Documented as
/// required unless `REQUIRED` is false ([`OptionalBody`]).
pub struct JsonBody<T, const REQUIRED: bool = true> {
    pub raw: Result<Bytes, BytesRejection>,
    of: PhantomData<fn() -> T>,
}

/// A JSON body that may also be left out (an action whose body only adds to it, like a
/// decision's note).
pub type OptionalBody<T> = JsonBody<T, false>;

impl<T, S: Send + Sync, const REQUIRED: bool> FromRequest<S> for JsonBody<T, REQUIRED> {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(JsonBody {
            raw: Bytes::from_request(request, state).await,
            of: PhantomData,
        })
    }
}

impl<T: JsonSchema, const REQUIRED: bool> OperationInput for JsonBody<T, REQUIRED> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        document_body::<T>(ctx, operation, REQUIRED);
    }
}

fn document_body<T: JsonSchema>(ctx: &mut GenContext, operation: &mut Operation, required: bool) {
    let schema = ctx.schema.subschema_for::<T>();
    let body: RequestBody = serde_json::from_value(json!({
        "required": required,
        "content": {"application/json": {"schema": schema}}
    }))
    .expect("a JSON request body is valid");
    set_body(ctx, operation, body);
}

/// A body the operation does not read (an action named by its path); taken so that an
/// over-size one is still answered 413.
pub struct Unread(pub Result<Bytes, BytesRejection>);

impl<S: Send + Sync> FromRequest<S> for Unread {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Unread(Bytes::from_request(request, state).await))
    }
}

impl OperationInput for Unread {}

/// A playbook upload: one YAML file, or a tar archive of the playbook directory.
pub struct PlaybookBody(pub Result<Bytes, BytesRejection>);

impl<S: Send + Sync> FromRequest<S> for PlaybookBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(PlaybookBody(Bytes::from_request(request, state).await))
    }
}

impl OperationInput for PlaybookBody {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        // A playbook travels as YAML, a template or a tar, not as JSON; deploying the same
        // bundle twice is a no-op, so it takes no idempotency key.
        let body: RequestBody = serde_json::from_value(json!({
            "required": true,
            "description": "A tar archive with campaigns/ and templates/ (application/x-tar), or one playbook YAML file (application/yaml), or one template (text/plain, named by ?file=).",
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
                "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
                // Either, as bytes: the server tells a tar by its header.
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        }))
        .expect("the playbook body is valid");
        set_body(ctx, operation, body);
    }
}

/// The request's headers, read for its `Idempotency-Key` (retries of a write).
pub struct Keyed(pub HeaderMap);

impl<S: Send + Sync> FromRequestParts<S> for Keyed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Keyed(parts.headers.clone()))
    }
}

impl OperationInput for Keyed {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        let key = parameter(json!({"in": "header", "name": "Idempotency-Key", "required": false,
            "description": "Retry safely: the same key and body get the first answer again; another body, 409.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"}}));
        add_parameters(ctx, operation, [key]);
    }
}
