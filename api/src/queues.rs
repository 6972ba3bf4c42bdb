//! The Handoff queues section of the API: queues SDRs pull from, claims, decisions, members.
//! An SDR is known by their API key's name: members of a `round_robin` queue are named in the
//! playbook, and a key with the same name works their assignments.

use aide::axum::routing::{get_with, post_with, put_with};
use aide::axum::ApiRouter;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use nurture_engine::access::Role;
use nurture_engine::engine::{queue_cursor, EngineError, LeadView};
use nurture_engine::handoff::{Amount, Decision, Handoff, HandoffId, Member, MemberChange};
use nurture_engine::lead::{FieldError, LeadRef};
use nurture_engine::playbook::Routing;
use nurture_engine::store::handoffs::HandoffLogEntry;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::input::{Id, JsonBody, Keyed, OptionalBody, Paged, Params, QueueMember, QueueName, Unread};
use crate::openapi::Doc;
use crate::{body, idempotency, page, AppState};

const SDRS: &[Role] = &[Role::Sdr];
/// Who decides handoffs: SDRs their own, marketers (and admins) anyone's.
const DECIDERS: &[Role] = &[Role::Sdr, Role::Marketer];
const DECIDERS_AND_CRMS: &[Role] = &[Role::Sdr, Role::Marketer, Role::Crm];
const EVERYONE: &[Role] = &[Role::Admin, Role::Marketer, Role::Sdr, Role::Crm];

const WORKERS: &[Role] = &[Role::Sdr, Role::Marketer];
const HANDERS: &[Role] = &[Role::Sdr, Role::Marketer, Role::Crm];

/// Long on purpose: the route table of the Queues section, one entry per operation with its
/// OpenAPI text.
pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/v1/queues",
            get_with(list, |o| {
                o.summary("The handoff queues of the playbook in force: SLA, routing, members, cool-down.")
                    .allow(EVERYONE)
                    .answers::<QueueList>(200)
            }),
        )
        .api_route(
            "/v1/queues/{queue}",
            get_with(read, |o| {
                o.summary(
                    "Open handoffs, highest priority first, then oldest, with lead summary and reason; paginated.",
                )
                .allow(WORKERS)
                .answers::<HandoffPage>(200)
            }),
        )
        .api_route(
            "/v1/queues/{queue}/claim",
            post_with(claim, |o| {
                o.summary(
                    "Atomically take the next open handoff (yours by round robin, or unassigned); 204 \
                     when none. Two callers never get the same one.",
                )
                .allow(SDRS)
                .answers::<HandoffView>(200)
                .answers_plain(204, "The queue has nothing this SDR may claim now.")
            }),
        )
        .api_route(
            "/v1/queues/{queue}/members",
            get_with(members, |o| {
                o.summary("The queue's members: availability, capacity, weight and handoffs in their hands.")
                    .allow(EVERYONE)
                    .answers::<MemberList>(200)
            }),
        )
        .api_route(
            "/v1/queues/{queue}/members/{member}",
            put_with(set_member, |o| {
                o.summary(
                    "Mark a member away or back (an SDR: only themselves), set their capacity or \
                     round-robin weight (marketer, admin; 403 for an SDR).",
                )
                .allow(WORKERS)
                .answers::<Member>(200)
            }),
        )
        .api_route(
            "/v1/handoffs",
            post_with(create, |o| {
                o.summary("Hand a lead to a queue (409 when the lead already has an open handoff).")
                    .allow(HANDERS)
                    .answers::<HandoffView>(201)
            }),
        )
        .api_route(
            "/v1/handoffs/{id}",
            get_with(handoff, |o| {
                o.summary("A handoff, its lead and its history.")
                    .allow(EVERYONE)
                    .answers::<HandoffView>(200)
            }),
        )
        .api_route(
            "/v1/handoffs/{id}/accept",
            post_with(accept, |o| {
                o.summary(
                    "Accept (claiming it if open): lead stage `accepted`, owner the caller. 409 when \
                     another SDR holds it (claimed, or assigned while open); marketers and admins may \
                     act on anyone's.",
                )
                .allow(DECIDERS)
                .answers::<HandoffView>(200)
            }),
        )
        .api_route(
            "/v1/handoffs/{id}/reject",
            post_with(reject, |o| {
                o.summary(
                    "Reject with a reason (422 without); `recycle` (default true) returns the lead to \
                     nurture after the queue's cool-down, else `disqualified`. 409 when another SDR \
                     holds it.",
                )
                .allow(DECIDERS)
                .answers::<HandoffView>(200)
            }),
        )
        .api_route(
            "/v1/handoffs/{id}/convert",
            post_with(convert, |o| {
                o.summary(
                    "The deal closed: lead stage `customer`; `{\"amount\": 12000, \"note\": \"…\"}` (both \
                     optional) records its value and a note. 409 for an SDR when another SDR holds it \
                     (claimed, assigned, or accepted it); the CRM, marketers and admins record it \
                     whoever holds it.",
                )
                .allow(DECIDERS_AND_CRMS)
                .answers::<HandoffView>(200)
            }),
        )
        .api_route(
            "/v1/handoffs/{id}/release",
            post_with(release, |o| {
                o.summary("Give a claimed handoff back to its queue (409 when another SDR claimed it).")
                    .allow(DECIDERS)
                    .answers::<HandoffView>(200)
            }),
        )
}

/// A handoff with its lead (in queue listings and claims) or its history (read alone).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct HandoffView {
    #[serde(flatten)]
    pub handoff: Handoff,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead: Option<LeadView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<Vec<HandoffLogEntry>>,
}

/// A queue as the playbook defines it.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct QueueView {
    pub name: String,
    pub description: Option<String>,
    /// How long an open handoff may wait unclaimed, e.g. `4h`.
    pub sla: Option<String>,
    pub routing: Routing,
    pub members: Vec<String>,
    pub cooldown: Option<String>,
    pub on_breach_move_to: Option<String>,
    /// Who is e-mailed when a handoff breaches the SLA.
    pub on_breach_notify: Vec<String>,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct QueueList {
    pub items: Vec<QueueView>,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct HandoffPage {
    pub items: Vec<HandoffView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct MemberList {
    pub items: Vec<Member>,
}

async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<QueueList>, ApiError> {
    caller.require(EVERYONE)?;
    let playbook = state.engine.playbook();
    let items = playbook
        .queues
        .queues
        .values()
        .map(|q| QueueView {
            name: q.name.clone(),
            description: q.description.clone(),
            sla: q.sla.map(|s| s.to_string()),
            routing: q.routing,
            members: q.members.clone(),
            cooldown: q.cooldown.map(|s| s.to_string()),
            on_breach_move_to: q.move_on_breach.clone(),
            on_breach_notify: q.notify_on_breach.clone(),
        })
        .collect();
    Ok(Json(QueueList { items }))
}

fn not_found(e: EngineError) -> ApiError {
    match e {
        EngineError::NotFound => ApiError::NotFound("no such lead".into()),
        other => ApiError::from(other),
    }
}

/// `GET /v1/queues/{queue}?limit=&cursor=`: open handoffs, highest priority first, then oldest.
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path(QueueName { queue }): Path<QueueName>,
    query: Params<Paged>,
) -> Result<Json<HandoffPage>, ApiError> {
    caller.require(WORKERS)?;
    let limit = page::limit(query.get("limit").map(String::as_str))?;
    let after = match query.get("cursor") {
        None => None,
        Some(c) => {
            let text = page::decode(c)?;
            let parts: Vec<i64> = text.split(':').filter_map(|p| p.parse().ok()).collect();
            match parts.as_slice() {
                [p, c, i] => Some((*p, *c, *i)),
                _ => return Err(page::foreign()),
            }
        }
    };
    let rows = state.engine.queue(&queue, after, limit + 1).await.map_err(not_found)?;
    let more = rows.len() as i64 > limit;
    let items: Vec<HandoffView> = rows
        .into_iter()
        .take(limit as usize)
        .map(|(handoff, lead)| HandoffView {
            handoff,
            lead,
            log: None,
        })
        .collect();
    let next_cursor = more.then(|| items.last()).flatten().map(|v| {
        let (p, c, i) = queue_cursor(&v.handoff);
        page::encode(&format!("{p}:{c}:{i}"))
    });
    Ok(Json(HandoffPage { items, next_cursor }))
}

/// With the lead, as an SDR needs it.
async fn with_lead(state: &AppState, handoff: Handoff) -> Result<Value, ApiError> {
    let lead = lead_of(state, &handoff).await?;
    Ok(json!(HandoffView {
        handoff,
        lead,
        log: None
    }))
}

/// A handoff's lead; none when the person was erased.
async fn lead_of(state: &AppState, handoff: &Handoff) -> Result<Option<LeadView>, ApiError> {
    match state.engine.get_lead(handoff.lead_id).await {
        Ok(lead) => Ok(Some(lead)),
        Err(EngineError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `POST /v1/queues/{queue}/claim`: 200 with the handoff and its lead, 204 when the queue is empty.
async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    Path(QueueName { queue }): Path<QueueName>,
    Keyed(headers): Keyed,
    Unread(raw): Unread,
) -> Response {
    let route = format!("claim:{queue}");
    let member = caller.0.name.clone();
    idempotency::write(&state, &caller, SDRS, &route, &headers, raw, |_| async {
        match state.engine.claim(&queue, &member).await? {
            Some((handoff, lead)) => Ok((
                StatusCode::OK,
                json!(HandoffView {
                    handoff,
                    lead,
                    log: None
                }),
            )),
            None => Ok((StatusCode::NO_CONTENT, Value::Null)),
        }
    })
    .await
}

/// `POST /v1/handoffs`: hand a lead to a queue by hand.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffBody {
    /// `{"id": …}`, `{"email": …}` or `{"external_id": …}`.
    pub lead: LeadRef,
    pub queue: String,
    #[schemars(regex(pattern = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"))]
    pub reason: String,
    /// 0-100 (default 50); higher is claimed first.
    #[serde(default, deserialize_with = "crate::body::whole_opt")]
    #[schemars(range(min = 0, max = 100))]
    pub priority: Option<i64>,
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Keyed(headers): Keyed,
    body: JsonBody<HandoffBody>,
) -> Response {
    let by = caller.0.name.clone();
    let engine = state.clone();
    idempotency::write(
        &state,
        &caller,
        HANDERS,
        "handoffs",
        &headers,
        body.raw,
        |raw| async move {
            let state = engine;
            let input: HandoffBody = body::object(&raw)?;
            let mut problems = Vec::new();
            if input.reason.trim().is_empty() {
                problems.push(FieldError::new("reason", "must say why the lead is handed off"));
            }
            if input.priority.is_some_and(|p| !(0..=100).contains(&p)) {
                problems.push(FieldError::new("priority", "must be from 0 to 100"));
            }
            if !problems.is_empty() {
                return Err(ApiError::invalid(problems));
            }
            let h = state
                .engine
                .hand_off(
                    &input.lead,
                    &input.queue,
                    input.reason.trim(),
                    input.priority.and_then(|p| u8::try_from(p).ok()),
                    &by,
                )
                .await
                .map_err(not_found)?;
            Ok((StatusCode::CREATED, with_lead(&state, h).await?))
        },
    )
    .await
}

fn handoff_id(raw: &str) -> Result<HandoffId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::NotFound(format!("no handoff {raw:?}")))
}

async fn handoff(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
) -> Result<Json<HandoffView>, ApiError> {
    caller.require(EVERYONE)?;
    let (handoff, log) = state.engine.handoff(handoff_id(&id)?).await?;
    let lead = lead_of(&state, &handoff).await?;
    Ok(Json(HandoffView {
        handoff,
        lead,
        log: Some(log),
    }))
}

/// `{"reason": "…", "recycle": true, "note": "…"}`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    #[serde(default)]
    pub reason: Option<String>,
    /// Back to the nurture pool (stage `recycled`, after the queue's cool-down) rather than
    /// `disqualified`. Default true.
    #[serde(default)]
    pub recycle: Option<bool>,
    /// What the SDR has to say: kept as a note on the lead and sent with the webhook events.
    #[serde(default)]
    pub note: Option<String>,
}

/// `{"amount": 12000, "note": "…"}`: both optional.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertBody {
    /// The deal's value in the company's currency, at most two decimals.
    #[serde(default)]
    pub amount: Option<f64>,
    /// Kept as a note on the lead and sent with the webhook events.
    #[serde(default)]
    pub note: Option<String>,
}

/// `{"note": "…"}`, optional: kept as a note on the lead and sent with the webhook events.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    #[serde(default)]
    pub note: Option<String>,
}

/// The body of a decision: an object, or nothing at all.
fn optional<T: serde::de::DeserializeOwned + Default>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        body::object(raw)
    }
}

/// The decision a request asks for, and the note that comes with it.
fn decision_of(verb: &str, raw: &[u8]) -> Result<(Decision, Option<String>), ApiError> {
    Ok(match verb {
        "accept" => (Decision::Accept, optional::<NoteBody>(raw)?.note),
        "release" => (Decision::Release, optional::<NoteBody>(raw)?.note),
        "convert" => {
            let input: ConvertBody = optional(raw)?;
            let amount = input
                .amount
                .map(Amount::from_decimal)
                .transpose()
                .map_err(|m| ApiError::invalid(vec![FieldError::new("amount", m)]))?;
            (Decision::Convert { amount }, input.note)
        }
        _ => {
            let input: RejectBody = optional(raw)?;
            let decision = Decision::Reject {
                reason: input.reason.unwrap_or_default(),
                recycle: input.recycle.unwrap_or(true),
            };
            (decision, input.note)
        }
    })
}

async fn decide(
    state: AppState,
    caller: Caller,
    id: String,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
    roles: &'static [Role],
    verb: &'static str,
) -> Response {
    let route = format!("handoff:{id}:{verb}");
    idempotency::write(
        &state.clone(),
        &caller.clone(),
        roles,
        &route,
        &headers,
        raw,
        |raw| async move {
            let id = handoff_id(&id)?;
            let (decision, note) = decision_of(verb, &raw)?;
            // The CRM is where deals close: it records a conversion whoever holds the lead.
            let oversees = caller.0.role.oversees_queues() || (caller.0.role == Role::Crm && verb == "convert");
            let h = state
                .engine
                .decide(id, &decision, note.as_deref(), &caller.by(), oversees)
                .await?;
            Ok((StatusCode::OK, with_lead(&state, h).await?))
        },
    )
    .await
}

async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Keyed(headers): Keyed,
    body: OptionalBody<NoteBody>,
) -> Response {
    decide(state, caller, id, headers, body.raw, DECIDERS, "accept").await
}

async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Keyed(headers): Keyed,
    body: JsonBody<RejectBody>,
) -> Response {
    decide(state, caller, id, headers, body.raw, DECIDERS, "reject").await
}

async fn convert(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Keyed(headers): Keyed,
    body: OptionalBody<ConvertBody>,
) -> Response {
    decide(state, caller, id, headers, body.raw, DECIDERS_AND_CRMS, "convert").await
}

async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Path(Id { id }): Path<Id>,
    Keyed(headers): Keyed,
    body: OptionalBody<NoteBody>,
) -> Response {
    decide(state, caller, id, headers, body.raw, DECIDERS, "release").await
}

async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(QueueName { queue }): Path<QueueName>,
) -> Result<Json<MemberList>, ApiError> {
    caller.require(EVERYONE)?;
    Ok(Json(MemberList {
        items: state.engine.members(&queue).await?,
    }))
}

/// `{"available": false}`, `{"capacity": 20}` (null: no limit), `{"weight": 2}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    #[serde(default)]
    pub available: Option<bool>,
    /// At most this many handoffs in their hands at once; `null` removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schemars(range(min = 0))]
    pub capacity: Option<Option<i64>>,
    #[serde(default, deserialize_with = "crate::body::whole_opt")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i64>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    crate::body::whole_opt(d).map(Some)
}

/// Sets a member's availability, capacity or weight, at most once per `Idempotency-Key`.
async fn set_member(
    State(state): State<AppState>,
    caller: Caller,
    Path(QueueMember { queue, member }): Path<QueueMember>,
    Keyed(headers): Keyed,
    body: JsonBody<MemberBody>,
) -> Response {
    let route = format!("PUT /v1/queues/{queue}/members/{member}");
    let (state, caller) = (&state, &caller);
    idempotency::write(state, caller, WORKERS, &route, &headers, body.raw, |bytes| async move {
        let member = member_change(state, caller, &queue, &member, &bytes).await?;
        Ok((StatusCode::OK, serde_json::to_value(member).unwrap_or_default()))
    })
    .await
}

async fn member_change(
    state: &AppState,
    caller: &Caller,
    queue: &str,
    member: &str,
    bytes: &[u8],
) -> Result<Member, ApiError> {
    let input: MemberBody = body::object(bytes)?;
    let change = MemberChange {
        available: input.available,
        capacity: input.capacity,
        weight: input.weight,
    };
    let problems = change.problems();
    if !problems.is_empty() {
        return Err(ApiError::invalid(problems));
    }
    Ok(state
        .engine
        .set_member(queue, member, &change, &caller.by(), caller.0.role.oversees_queues())
        .await?)
}
