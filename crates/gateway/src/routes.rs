//! Request handlers.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chainmux_rpc::{CallTrace, JsonRpcError, UpstreamStatus};
use chainmux_store::{ChainState, LogFilter, TransferFilter};
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::params::{self, QueryParams};
use crate::{AppError, AppState, READY_TIMEOUT, render};

type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn query(pairs: Pairs, allowed: &[&str]) -> Result<QueryParams, AppError> {
    let Query(pairs) = pairs.map_err(|err| AppError::bad("query", err.body_text()))?;
    QueryParams::parse(pairs, allowed)
}

pub(crate) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    if state.is_draining() {
        return Err(AppError::Unavailable("draining: shutting down".into()));
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store().ping()).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ready" }))),
        Ok(Err(err)) => {
            tracing::warn!(%err, "readiness: store unreachable");
            Err(AppError::Unavailable("store unreachable".into()))
        }
        Err(_) => Err(AppError::Unavailable("store did not answer in time".into())),
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.inner.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.inner.metrics.render())
}

pub(crate) async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}

#[derive(Serialize)]
struct ChainView {
    name: String,
    kind: &'static str,
    chain_id: u64,
    head: Option<u64>,
    safe: Option<u64>,
    finalized: Option<u64>,
    indexed_head: Value,
    lag: Option<u64>,
    upstreams: Vec<UpstreamStatus>,
}

pub(crate) async fn chains(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    let stored = state.store().chain_states().await?;
    let views: Vec<ChainView> = state
        .inner
        .chains
        .values()
        .map(|handle| {
            let stored = stored.iter().find(|s| s.name == handle.spec.name);
            let heads = stored.and_then(|s| s.heads);
            let cursor = stored.and_then(|s| s.cursor);
            // This replica's own view of the upstreams, or what the indexer (maybe elsewhere) last recorded.
            let head = handle.pool.best_head().max(heads.map(|h| h.latest));
            ChainView {
                name: handle.spec.name.clone(),
                kind: handle.spec.kind.as_str(),
                chain_id: handle.spec.chain_id,
                head,
                safe: heads.and_then(|h| h.safe),
                finalized: heads.and_then(|h| h.finalized),
                indexed_head: render::ptr(cursor),
                lag: head.map(|h| h.saturating_sub(cursor.map_or(0, |c| c.number))),
                upstreams: handle.pool.statuses(),
            }
        })
        .collect();
    Ok(Json(json!({ "chains": views })))
}

async fn chain_state(state: &AppState, chain: &str) -> Result<Option<ChainState>, AppError> {
    state.chain(chain)?;
    Ok(state.store().chain_state(chain).await?)
}

pub(crate) async fn block(
    State(state): State<AppState>,
    Path((chain, id)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let stored = chain_state(&state, &chain).await?;
    // A `0x` id is a block hash; heights are decimal. A short `0x` id is a truncated hash, not a quantity.
    let row = if id.starts_with("0x") || id.starts_with("0X") {
        let hash = params::hex_bytes("id", &id, 32)?;
        state.store().block_by_hash(&chain, &hash).await?
    } else {
        let number = params::block_number("id", &id)
            .map_err(|_| AppError::bad("id", "must be a block number or a 0x-prefixed 32-byte block hash"))?;
        state.store().block_by_number(&chain, number).await?
    };
    let row = row.ok_or_else(|| AppError::NotFound(format!("block {id} is not indexed")))?;
    Ok(Json(render::block(&chain, &row, stored.and_then(|s| s.heads).as_ref())))
}

pub(crate) async fn transaction(
    State(state): State<AppState>,
    Path((chain, hash)): Path<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let stored = chain_state(&state, &chain).await?;
    let bytes = params::hex_bytes("hash", &hash, 32)?;
    let row = state
        .store()
        .transaction(&chain, &bytes)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("transaction {hash} is not indexed")))?;
    Ok(Json(render::transaction(&chain, &row, stored.and_then(|s| s.heads).as_ref())))
}

fn page(items: Vec<Value>, next_cursor: Option<String>, stored: Option<&ChainState>) -> Json<Value> {
    Json(json!({
        "items": items,
        "next_cursor": next_cursor,
        "indexed_head": render::ptr(stored.and_then(|s| s.cursor)),
    }))
}

pub(crate) async fn transfers(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    pairs: Pairs,
) -> Result<Json<Value>, AppError> {
    let q = query(pairs, &["address", "token", "from_block", "to_block", "limit", "cursor"])?;
    let stored = chain_state(&state, &chain).await?;
    let (from_block, to_block) = q.block_range()?;
    let filter = TransferFilter {
        address: q.hex("address", 20)?,
        token: q.hex("token", 20)?,
        from_block,
        to_block,
        after: q.get("cursor").map(params::decode_transfer_cursor).transpose()?,
        limit: q.limit(state.config().default_page_size, state.config().max_page_size)?,
    };
    let rows = state.store().transfers(&chain, &filter).await?;
    let heads = stored.as_ref().and_then(|s| s.heads);
    let next =
        rows.items.last().filter(|_| rows.has_more).map(|row| params::encode_transfer_cursor(&row.key()));
    let items = rows.items.iter().map(|row| render::transfer(&chain, row, heads.as_ref())).collect();
    Ok(page(items, next, stored.as_ref()))
}

pub(crate) async fn logs(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    pairs: Pairs,
) -> Result<Json<Value>, AppError> {
    let q = query(
        pairs,
        &["address", "topic0", "topic1", "topic2", "topic3", "from_block", "to_block", "limit", "cursor"],
    )?;
    let stored = chain_state(&state, &chain).await?;
    let (from_block, to_block) = q.block_range()?;
    let filter = LogFilter {
        address: q.hex("address", 20)?,
        topics: [q.hex("topic0", 32)?, q.hex("topic1", 32)?, q.hex("topic2", 32)?, q.hex("topic3", 32)?],
        from_block,
        to_block,
        after: q.get("cursor").map(params::decode_log_cursor).transpose()?,
        limit: q.limit(state.config().default_page_size, state.config().max_page_size)?,
    };
    let rows = state.store().logs(&chain, &filter).await?;
    let heads = stored.as_ref().and_then(|s| s.heads);
    let next = rows.items.last().filter(|_| rows.has_more).map(|row| params::encode_log_cursor(&row.key()));
    let items = rows.items.iter().map(|row| render::log(&chain, row, heads.as_ref())).collect();
    Ok(page(items, next, stored.as_ref()))
}

/// One JSON-RPC response object. `result` stays raw: the upstream's bytes are passed on without re-encoding.
#[derive(Serialize)]
struct RpcResponse {
    jsonrpc: &'static str,
    id: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsonRpcError>,
}

impl RpcResponse {
    fn error(id: Value, code: i64, message: impl Into<String>) -> Self {
        Self {
            jsonrpc: "2.0",
            id,
            result: None,
            error: Some(JsonRpcError { code, message: message.into(), data: None }),
        }
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(err) => {
            tracing::error!(%err, "cannot encode JSON-RPC response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `POST /rpc/{chain}`: single or batch JSON-RPC, forwarded through the chain's pool. Batch elements run
/// concurrently, are answered in request order, and fail independently.
pub(crate) async fn rpc(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let handle = match state.chain(&chain) {
        Ok(handle) => handle.clone(),
        Err(err) => return err.into_response(),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return AppError::PayloadTooLarge(state.config().max_body_bytes).into_response();
        }
        Err(rejection) => return AppError::bad("body", rejection.body_text()).into_response(),
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(_) => {
            return json_response(StatusCode::OK, &RpcResponse::error(Value::Null, -32700, "Parse error"));
        }
    };
    match request {
        Value::Array(items) => {
            if items.is_empty() {
                return json_response(
                    StatusCode::OK,
                    &RpcResponse::error(Value::Null, -32600, "empty batch"),
                );
            }
            let max = state.config().max_batch_size;
            if items.len() > max {
                let message = format!("batch of {} requests exceeds the limit of {max}", items.len());
                return json_response(StatusCode::OK, &RpcResponse::error(Value::Null, -32600, message));
            }
            let answers = join_all(items.into_iter().map(|item| forward(&handle.pool, item))).await;
            let answers: Vec<RpcResponse> = answers.into_iter().filter_map(|(answer, _)| answer).collect();
            if answers.is_empty() {
                return StatusCode::NO_CONTENT.into_response();
            }
            json_response(StatusCode::OK, &answers)
        }
        single => {
            let (answer, trace) = forward(&handle.pool, single).await;
            let mut response = match answer {
                Some(answer) => json_response(StatusCode::OK, &answer),
                None => StatusCode::NO_CONTENT.into_response(),
            };
            if let Some(trace) = trace {
                add_trace_headers(&mut response, &trace);
            }
            response
        }
    }
}

/// Says which upstream answered a single request and what it took, so routing is never a mystery to a client.
fn add_trace_headers(response: &mut Response, trace: &CallTrace) {
    let headers = response.headers_mut();
    if let Some(upstream) = trace.upstream.as_deref().and_then(|name| HeaderValue::from_str(name).ok()) {
        headers.insert("x-chainmux-upstream", upstream);
    }
    headers.insert("x-chainmux-attempts", HeaderValue::from(trace.attempts));
    if trace.hedges > 0 {
        headers.insert("x-chainmux-hedges", HeaderValue::from(trace.hedges));
    }
}

/// A request that passed validation.
struct ValidRequest {
    id: Value,
    method: String,
    params: Box<RawValue>,
    /// No `id`: forwarded, but answered with nothing.
    is_notification: bool,
}

/// Checks one JSON-RPC request object; the error is the answer to send instead.
fn validate(request: Value) -> Result<ValidRequest, RpcResponse> {
    let Value::Object(mut request) = request else {
        return Err(RpcResponse::error(Value::Null, -32600, "Invalid Request: not an object"));
    };
    let id = request.remove("id");
    let is_notification = id.is_none();
    let id = id.unwrap_or(Value::Null);
    if !matches!(id, Value::Null | Value::Number(_) | Value::String(_)) {
        return Err(RpcResponse::error(
            Value::Null,
            -32600,
            "Invalid Request: id must be a number, string or null",
        ));
    }
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(RpcResponse::error(id, -32600, "Invalid Request: jsonrpc must be \"2.0\""));
    }
    let Some(Value::String(method)) = request.remove("method") else {
        return Err(RpcResponse::error(id, -32600, "Invalid Request: method must be a string"));
    };
    let params = match request.remove("params") {
        None => Value::Array(Vec::new()),
        Some(params @ (Value::Array(_) | Value::Object(_))) => params,
        Some(_) => {
            return Err(RpcResponse::error(id, -32602, "Invalid params: must be an array or an object"));
        }
    };
    match serde_json::value::to_raw_value(&params) {
        Ok(params) => Ok(ValidRequest { id, method, params, is_notification }),
        Err(_) => Err(RpcResponse::error(id, -32602, "Invalid params")),
    }
}

/// Validates and forwards one request. The answer is `None` for a notification, which gets none; the trace is
/// `None` when the request never reached the pool.
async fn forward(pool: &chainmux_rpc::Pool, request: Value) -> (Option<RpcResponse>, Option<CallTrace>) {
    let request = match validate(request) {
        Ok(request) => request,
        Err(answer) => return (Some(answer), None),
    };
    let (result, trace) = pool.call_traced(&request.method, &request.params).await;
    let id = request.id;
    let answer = match result {
        Ok(result) => RpcResponse { jsonrpc: "2.0", id, result: Some(result), error: None },
        Err(err) => {
            tracing::debug!(%err, method = %request.method, "proxied request failed");
            RpcResponse { jsonrpc: "2.0", id, result: None, error: Some(err.to_client_error()) }
        }
    };
    ((!request.is_notification).then_some(answer), Some(trace))
}
