//! Request handlers.

use std::borrow::Cow;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chainmux_core::ChainKind;
use chainmux_rpc::{CallTrace, JsonRpcError, RpcError, UpstreamStatus};
use chainmux_store::{ChainState, ContractFilter, EventFilter, InstructionFilter, LogFilter, TransferFilter};
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::cache_policy;
use crate::coalesce::Role;
use crate::consistency::{self, ChainJson};
use crate::error::ErrorBody;
use crate::event_filter::{self, EventName, Selection};
use crate::params::{self, Id, QueryParams};
use crate::rpc_cache::{CacheKey, Retention};
use crate::rpc_policy;
use crate::{AppError, AppState, ChainHandle, READY_TIMEOUT, render};

pub(crate) type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn query(pairs: Pairs, allowed: &[&str]) -> Result<QueryParams, AppError> {
    query_prefixed(pairs, allowed, None)
}

/// [`query`] that also accepts the parameters named `prefix` and something (`arg.<param>`).
/// Every chain route also takes `min_block` (see [`crate::consistency`]).
pub(crate) fn query_prefixed(
    pairs: Pairs,
    allowed: &[&str],
    prefix: Option<&str>,
) -> Result<QueryParams, AppError> {
    let Query(pairs) = pairs.map_err(|err| AppError::bad("query", err.body_text()))?;
    let allowed: Vec<&str> = allowed.iter().copied().chain(["min_block"]).collect();
    QueryParams::parse(pairs, &allowed, prefix)
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health", tag = "status", security(()),
    responses((status = 200, description = "Up", body = Status)))]
pub(crate) async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Readiness: the store answers and the server is not draining.
#[utoipa::path(get, path = "/ready", tag = "status", security(()), responses(
    (status = 200, description = "Ready", body = Status),
    (status = 503, description = "Draining, or the store is unreachable", body = ErrorBody),
))]
pub(crate) async fn ready(State(state): State<AppState>) -> Result<Json<Status>, AppError> {
    if state.is_draining() {
        return Err(AppError::Unavailable("draining: shutting down".into()));
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store().ping()).await {
        Ok(Ok(())) => Ok(Json(Status { status: "ready" })),
        Ok(Err(err)) => {
            tracing::warn!(%err, "readiness: store unreachable");
            Err(AppError::Unavailable("store unreachable".into()))
        }
        Err(_) => Err(AppError::Unavailable("store did not answer in time".into())),
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "status", security(()),
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.store().publish_pool_gauges();
    state.inner.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.inner.metrics.render())
}

pub(crate) async fn not_found() -> AppError {
    AppError::NotFound("no such route".into())
}

/// The body of `/v1/chains`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChainList {
    chains: Vec<ChainView>,
}

/// A served chain: its heads, how far it is indexed, and its upstreams' health.
#[derive(Serialize, ToSchema)]
pub(crate) struct ChainView {
    name: String,
    /// `evm` or `solana`.
    kind: &'static str,
    chain_id: u64,
    /// The best head the upstreams (or the indexer) reported.
    #[schema(required)]
    head: Option<u64>,
    #[schema(required)]
    safe: Option<u64>,
    #[schema(required)]
    finalized: Option<u64>,
    /// Solana only: the stored heads per commitment level.
    #[serde(skip_serializing_if = "Option::is_none")]
    heads: Option<SolanaHeads>,
    #[schema(required)]
    indexed_head: Option<render::HeadPtr>,
    /// Blocks between `head` and `indexed_head`.
    #[schema(required)]
    lag: Option<u64>,
    upstreams: Vec<UpstreamStatus>,
}

/// A Solana chain's stored heads per commitment level.
#[derive(Serialize, ToSchema)]
pub(crate) struct SolanaHeads {
    #[schema(required)]
    confirmed: Option<u64>,
    #[schema(required)]
    finalized: Option<u64>,
}

/// `{"status": …}` of the probes.
#[derive(Serialize, ToSchema)]
pub(crate) struct Status {
    /// `ok` (`/health`) or `ready` (`/ready`).
    status: &'static str,
}

/// The served chains: heads, indexing progress and upstream health.
#[utoipa::path(get, path = "/v1/chains", tag = "chains",
    responses((status = 200, description = "Every served chain", body = ChainList)))]
pub(crate) async fn chains(State(state): State<AppState>) -> Result<Json<ChainList>, AppError> {
    let stored = state.store().chain_states().await?;
    let views: Vec<ChainView> = state
        .inner
        .chains
        .values()
        .map(|handle| {
            let kind = handle.spec.kind;
            let stored = stored.iter().find(|s| s.name == handle.spec.name);
            let heads = stored.and_then(|s| s.heads);
            let cursor = stored.and_then(|s| s.cursor);
            // This replica's own view of the upstreams, or what the indexer (maybe elsewhere) last recorded.
            let head = handle.pool.best_head().max(heads.map(|h| h.latest));
            ChainView {
                name: handle.spec.name.clone(),
                kind: kind.as_str(),
                chain_id: handle.spec.chain_id,
                head,
                safe: heads.and_then(|h| h.safe),
                finalized: heads.and_then(|h| h.finalized),
                // The indexer stores the confirmed slot as the latest head; the pool's own probe may follow
                // another commitment, so only the stored heads are named by theirs.
                heads: (kind == ChainKind::Solana).then(|| SolanaHeads {
                    confirmed: heads.map(|h| h.latest),
                    finalized: heads.and_then(|h| h.finalized),
                }),
                indexed_head: render::ptr(kind, cursor),
                lag: head.map(|h| h.saturating_sub(cursor.map_or(0, |c| c.number))),
                upstreams: handle.pool.statuses(),
            }
        })
        .collect();
    Ok(Json(ChainList { chains: views }))
}

/// A served chain's kind and what the store knows about it, once it is indexed to the request's `min_block`; 404
/// for a chain this gateway does not serve.
pub(crate) async fn chain_state(
    state: &AppState,
    chain: &str,
    q: &QueryParams,
) -> Result<(ChainKind, Option<ChainState>), AppError> {
    let kind = state.chain(chain)?.spec.kind;
    let min_block = q.block("min_block")?;
    let stored = consistency::state_at(state, chain, min_block, state.config().min_block_wait).await?;
    Ok((kind, stored))
}

pub(crate) fn view<'a>(chain: &'a str, kind: ChainKind, stored: Option<&'a ChainState>) -> render::View<'a> {
    render::View { chain, kind, heads: stored.and_then(|s| s.heads.as_ref()) }
}

/// A block by number or hash.
#[utoipa::path(get, path = "/v1/chains/{chain}/blocks/{id}", tag = "chains",
    params(
        params::ChainPath,
        ("id" = String, Path, description = "EVM: a decimal block number or a `0x` 32-byte block hash. Solana: a \
                                             slot (digits) or a base58 block hash."),
        params::MinBlockParam,
    ),
    responses((status = 200, description = "The block, in its chain family's shape", body = render::Block)))]
pub(crate) async fn block(
    State(state): State<AppState>,
    Path((chain, id)): Path<(String, String)>,
    pairs: Pairs,
) -> Result<ChainJson, AppError> {
    let q = query(pairs, &[])?;
    let (kind, stored) = chain_state(&state, &chain, &q).await?;
    let row = match kind {
        // A `0x` id is a block hash; heights are decimal. A short `0x` id is a truncated hash, not a quantity.
        ChainKind::Evm if id.starts_with("0x") || id.starts_with("0X") => {
            let hash = params::id_bytes(kind, Id::BlockHash, "id", &id)?;
            state.store().block_by_hash(&chain, &hash).await?
        }
        ChainKind::Evm => {
            let number = params::block_number("id", &id).map_err(|_| {
                AppError::bad("id", "must be a block number or a 0x-prefixed 32-byte block hash")
            })?;
            state.store().block_by_number(&chain, number).await?
        }
        // All digits is a slot; anything else a base58 blockhash (which always has a letter in practice).
        ChainKind::Solana if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            let slot = id.parse::<i64>().map_err(|_| AppError::bad("id", "slot out of range"))?;
            state.store().block_by_number(&chain, slot).await?
        }
        ChainKind::Solana => {
            let hash = params::id_bytes(kind, Id::BlockHash, "id", &id).map_err(|_| {
                AppError::bad("id", "must be a slot number or a base58 block hash (32 bytes)")
            })?;
            state.store().block_by_hash(&chain, &hash).await?
        }
    };
    let row = row.ok_or_else(|| AppError::NotFound(format!("block {id} is not indexed")))?;
    Ok(ChainJson::resource(&view(&chain, kind, stored.as_ref()).block(&row), stored.as_ref()))
}

/// A transaction by hash (EVM) or signature (Solana).
#[utoipa::path(get, path = "/v1/chains/{chain}/transactions/{hash}", tag = "chains",
    params(
        params::ChainPath,
        ("hash" = String, Path, description = "EVM: the `0x` 32-byte transaction hash. Solana: the base58 \
                                               transaction signature."),
        params::MinBlockParam,
    ),
    responses((status = 200, description = "The transaction, in its chain family's shape",
        body = render::Transaction)))]
pub(crate) async fn transaction(
    State(state): State<AppState>,
    Path((chain, hash)): Path<(String, String)>,
    pairs: Pairs,
) -> Result<ChainJson, AppError> {
    let q = query(pairs, &[])?;
    let (kind, stored) = chain_state(&state, &chain, &q).await?;
    // The path segment is a transaction's hash on EVM, its signature on Solana.
    let field = match kind {
        ChainKind::Evm => "hash",
        ChainKind::Solana => "signature",
    };
    let bytes = params::id_bytes(kind, Id::TxHash, field, &hash)?;
    let row = state
        .store()
        .transaction(&chain, &bytes)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("transaction {hash} is not indexed")))?;
    Ok(ChainJson::resource(&view(&chain, kind, stored.as_ref()).transaction(&row), stored.as_ref()))
}

/// The filters of `/transfers` and `/transfers/stream` (without their page position and size).
pub(crate) fn transfer_filter(q: &QueryParams, kind: ChainKind) -> Result<TransferFilter, AppError> {
    let (from_block, to_block) = q.block_range()?;
    Ok(TransferFilter {
        address: q.id("address", kind, Id::Address)?,
        token: q.id("token", kind, Id::Address)?,
        from_block,
        to_block,
        after: None,
        limit: 0,
    })
}

/// Token and native transfers, oldest first.
#[utoipa::path(get, path = "/v1/chains/{chain}/transfers", tag = "chains",
    params(params::ChainPath, params::TransferParams, params::BlockRangeParams,
        params::LimitParam, params::CursorParam, params::MinBlockParam),
    responses((status = 200, description = "A page of transfers", body = render::Page<render::TransferItem>)))]
pub(crate) async fn transfers(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    pairs: Pairs,
) -> Result<ChainJson, AppError> {
    let q = query(pairs, &["address", "token", "from_block", "to_block", "limit", "cursor"])?;
    let (kind, stored) = chain_state(&state, &chain, &q).await?;
    let filter = TransferFilter {
        after: q.get("cursor").map(params::decode_transfer_cursor).transpose()?,
        limit: q.limit(state.config().default_page_size, state.config().max_page_size)?,
        ..transfer_filter(&q, kind)?
    };
    let rows = state.store().transfers(&chain, &filter).await?;
    let view = view(&chain, kind, stored.as_ref());
    let next =
        rows.items.last().filter(|_| rows.has_more).map(|row| params::encode_transfer_cursor(&row.key()));
    let items = rows.items.iter().map(|row| view.transfer(row)).collect();
    Ok(ChainJson::page(kind, items, next, stored.as_ref()))
}

/// Event logs (EVM chains), oldest first.
#[utoipa::path(get, path = "/v1/chains/{chain}/logs", tag = "chains",
    params(params::ChainPath, params::LogParams, params::BlockRangeParams,
        params::LimitParam, params::CursorParam, params::MinBlockParam),
    responses((status = 200, description = "A page of logs", body = render::Page<render::LogItem>)))]
pub(crate) async fn logs(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    pairs: Pairs,
) -> Result<ChainJson, AppError> {
    let q = query(
        pairs,
        &["address", "topic0", "topic1", "topic2", "topic3", "from_block", "to_block", "limit", "cursor"],
    )?;
    let (kind, stored) = chain_state(&state, &chain, &q).await?;
    if kind != ChainKind::Evm {
        return Err(AppError::NotFound(format!(
            "chain {chain:?} is a {kind} chain: event logs exist on EVM chains only; its programs' log messages \
             are in /v1/chains/{chain}/instructions"
        )));
    }
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
    let view = view(&chain, kind, stored.as_ref());
    let next = rows.items.last().filter(|_| rows.has_more).map(|row| params::encode_log_cursor(&row.key()));
    let items = rows.items.iter().map(|row| view.log(row)).collect();
    Ok(ChainJson::page(kind, items, next, stored.as_ref()))
}

/// Instructions (Solana chains), outer and inner, oldest first.
#[utoipa::path(get, path = "/v1/chains/{chain}/instructions", tag = "chains",
    params(params::ChainPath, params::InstructionParams, params::BlockRangeParams,
        params::LimitParam, params::CursorParam, params::MinBlockParam),
    responses((status = 200, description = "A page of instructions",
        body = render::Page<render::InstructionItem>)))]
pub(crate) async fn instructions(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    pairs: Pairs,
) -> Result<ChainJson, AppError> {
    let q = query(pairs, &["program", "tx_hash", "from_block", "to_block", "limit", "cursor"])?;
    let (kind, stored) = chain_state(&state, &chain, &q).await?;
    if kind != ChainKind::Solana {
        return Err(AppError::NotFound(format!(
            "chain {chain:?} is an {kind} chain: instructions exist on Solana chains only; its contracts' event \
             logs are in /v1/chains/{chain}/logs"
        )));
    }
    let (from_block, to_block) = q.block_range()?;
    let filter = InstructionFilter {
        program: q.id("program", kind, Id::Address)?,
        tx_hash: q.id("tx_hash", kind, Id::TxHash)?,
        from_block,
        to_block,
        after: q.get("cursor").map(params::decode_instruction_cursor).transpose()?,
        limit: q.limit(state.config().default_page_size, state.config().max_page_size)?,
    };
    let rows = state.store().instructions(&chain, &filter).await?;
    let view = view(&chain, kind, stored.as_ref());
    let next =
        rows.items.last().filter(|_| rows.has_more).map(|row| params::encode_instruction_cursor(&row.key()));
    let items = rows.items.iter().map(|row| view.instruction(row)).collect();
    Ok(ChainJson::page(kind, items, next, stored.as_ref()))
}

/// 404 for the contract-event routes on a chain that is not EVM: ABI-decoded events exist on EVM chains only.
pub(crate) fn evm_only(chain: &str, kind: ChainKind) -> Result<(), AppError> {
    if kind == ChainKind::Evm {
        return Ok(());
    }
    Err(AppError::NotFound(format!(
        "chain {chain:?} is a {kind} chain: ABI-decoded contract events exist on EVM chains only; its programs' \
         instructions are in /v1/chains/{chain}/instructions"
    )))
}

/// The filters of `/events` and `/events/stream` (without their page position and size); the names and
/// `arg.<param>` values are checked against the chain's configured entries.
pub(crate) async fn event_filter(
    state: &AppState,
    chain: &str,
    q: &QueryParams,
) -> Result<EventFilter, AppError> {
    let (from_block, to_block) = q.block_range()?;
    // Signatures are stored without spaces; `Transfer(address, address, uint256)` asks for the same event.
    let name_text: Option<String> =
        q.get("name").map(|n| if n.contains('(') { n.split_whitespace().collect() } else { n.to_owned() });
    let name = name_text.as_deref().map(EventName::parse);
    let mut filter = EventFilter {
        contract: q.get("contract").map(str::to_owned),
        name: None,
        signature: None,
        address: q.hex("address", 20)?,
        args: Vec::new(),
        from_block,
        to_block,
        after: None,
        limit: 0,
    };
    match name {
        Some(EventName::Name(name)) => filter.name = Some(name.to_owned()),
        Some(EventName::Signature(signature)) => filter.signature = Some(signature.to_owned()),
        None => {}
    }
    let args: Vec<(&str, &str)> = q.prefixed("arg.").collect();
    // The configured entries are only needed to check the names and to type the argument filters.
    if filter.contract.is_some() || name.is_some() || !args.is_empty() {
        let sources = state.store().contract_sources(chain).await?;
        let selection = Selection::new(&sources, filter.contract.as_deref(), name)?;
        for (param, value) in args {
            filter.args.push(selection.arg_match(param, value)?);
        }
    }
    Ok(filter)
}

/// `GET /v1/chains/{chain}/events`: decoded events of the chain's `[[chains.contracts]]` entries, filtered by entry,
/// event (name or signature), emitting address, block range and `arg.<param>` values compared in their ABI types.
#[utoipa::path(get, path = "/v1/chains/{chain}/events", tag = "chains",
    summary = "ABI-decoded events of the configured contracts (EVM chains), oldest first.",
    params(params::ChainPath, params::EventParams, params::BlockRangeParams,
        params::LimitParam, params::CursorParam, params::MinBlockParam),
    responses((status = 200, description = "A page of decoded events", body = render::Page<render::EventItem>)))]
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    pairs: Pairs,
) -> Result<ChainJson, AppError> {
    let q = query_prefixed(
        pairs,
        &["contract", "name", "address", "from_block", "to_block", "limit", "cursor"],
        Some("arg."),
    )?;
    let (kind, stored) = chain_state(&state, &chain, &q).await?;
    evm_only(&chain, kind)?;
    let filter = EventFilter {
        after: q.get("cursor").map(params::decode_event_cursor).transpose()?,
        limit: q.limit(state.config().default_page_size, state.config().max_page_size)?,
        ..event_filter(&state, &chain, &q).await?
    };
    let rows = state.store().events(&chain, &filter).await?;
    let view = view(&chain, kind, stored.as_ref());
    let next = rows.items.last().filter(|_| rows.has_more).map(|row| params::encode_event_cursor(&row.key()));
    let items = rows.items.iter().map(|row| view.event(row)).collect();
    Ok(ChainJson::page(kind, items, next, stored.as_ref()))
}

/// `GET /v1/chains/{chain}/contracts`: every address the chain's `[[chains.contracts]]` entries decode (configured
/// and factory-created), paginated, with each entry's progress; `sources` lists the entries themselves.
#[utoipa::path(get, path = "/v1/chains/{chain}/contracts", tag = "chains",
    summary = "Addresses the configured contract entries decode, and the entries' progress (EVM chains).",
    params(params::ChainPath, params::ContractParams, params::LimitParam, params::CursorParam,
        params::MinBlockParam),
    responses((status = 200, description = "A page of contract addresses", body = render::ContractsPage)))]
pub(crate) async fn contracts(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    pairs: Pairs,
) -> Result<ChainJson, AppError> {
    let q = query(pairs, &["name", "limit", "cursor"])?;
    let (kind, stored) = chain_state(&state, &chain, &q).await?;
    evm_only(&chain, kind)?;
    let filter = ContractFilter {
        name: q.get("name").map(str::to_owned),
        after: q.get("cursor").map(params::decode_contract_cursor).transpose()?,
        limit: q.limit(state.config().default_page_size, state.config().max_page_size)?,
    };
    let mut sources = state.store().contract_sources(&chain).await?;
    if let Some(name) = &filter.name {
        if !sources.iter().any(|s| &s.name == name) {
            return Err(AppError::bad("name", event_filter::unknown_entry(name, &sources)));
        }
        sources.retain(|s| &s.name == name);
    }
    let rows = state.store().indexed_contracts(&chain, &filter).await?;
    let cursor = stored.as_ref().and_then(|s| s.cursor);
    let view = view(&chain, kind, stored.as_ref());
    let items: Vec<render::ContractItem> = rows
        .items
        .iter()
        .map(|row| {
            let source = sources.iter().find(|s| s.name == row.name);
            // Every address belongs to a stored entry (they are written and dropped together).
            let entry_kind = source
                .map_or(if row.factory.is_some() { "factory" } else { "addresses" }, |s| s.kind.as_str());
            let progress = source.map(|s| render::progress(s, cursor));
            view.contract(row, entry_kind, progress)
        })
        .collect();
    let next =
        rows.items.last().filter(|_| rows.has_more).map(|row| params::encode_contract_cursor(&row.key()));
    let mut listed = Vec::with_capacity(sources.len());
    for source in &sources {
        let signatures = event_filter::event_specs(source)?.into_iter().map(|e| e.signature).collect();
        listed.push(view.source(source, signatures, render::progress(source, cursor)));
    }
    let (indexed_head, finalized_head) = consistency::heads(kind, stored.as_ref());
    let body =
        render::ContractsPage { items, next_cursor: next, sources: listed, indexed_head, finalized_head };
    Ok(ChainJson::resource(&body, stored.as_ref()))
}

/// One JSON-RPC response object. `result` stays raw: the upstream's bytes are passed on without re-encoding.
#[derive(Serialize)]
pub(crate) struct RpcResponse {
    jsonrpc: &'static str,
    id: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsonRpcError>,
}

impl RpcResponse {
    /// A successful answer to request `id`.
    pub(crate) fn result(id: Value, result: Box<RawValue>) -> Self {
        Self { jsonrpc: "2.0", id, result: Some(result), error: None }
    }

    pub(crate) fn error(id: Value, code: i64, message: impl Into<String>) -> Self {
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
///
/// Answers that can never change come from the response cache when it has them (see `cache_policy`). A single
/// request's answer says how in `x-chainmux-cache`: `hit` (served from the cache, no upstream asked:
/// `x-chainmux-upstream: cache`, `x-chainmux-attempts: 0`), `miss` (cacheable, not in the cache yet: asked
/// upstream, and kept if the answer qualifies) or `bypass` (never cacheable: writes, account state, heads,
/// commitments that can still move, …). Invalid requests and notifications carry no such header.
///
/// A method the chain's policy denies (see `rpc_policy`) is answered with a `-32601` error of its own, per batch
/// element, without reaching an upstream. Identical reads in flight at the same time share one upstream call (see
/// `coalesce`); a single request answered that way says so with `x-chainmux-coalesced: true`.
#[utoipa::path(post, path = "/rpc/{chain}", tag = "rpc",
    summary = "JSON-RPC 2.0, single or batch, answered like the chain's own nodes.",
    params(params::ChainPath),
    request_body(content = Value, description = "A JSON-RPC request object, or a batch (array) of them.",
        content_type = "application/json"),
    responses(
        (status = 200, description = "The JSON-RPC response (an array for a batch). Single requests say how they \
            were served in `x-chainmux-cache` (`hit`, `miss`, `bypass`), `x-chainmux-upstream`, \
            `x-chainmux-attempts` and, when shared with an identical request in flight, `x-chainmux-coalesced`.",
            content_type = "application/json", body = Value),
        (status = 204, description = "Only notifications were sent: nothing to answer."),
        (status = 413, description = "The body exceeds the server's `max_body_bytes`", body = ErrorBody),
    ))]
pub(crate) async fn rpc(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    charge: Option<axum::Extension<crate::auth::RpcCharge>>,
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
    // The middleware charged the request as one call; every further call of a batch counts too.
    if let (Some(axum::Extension(charge)), Value::Array(items)) = (&charge, &request)
        && items.len() > 1
        && let Err(wait) =
            charge.charge_rpc_n(&state, u32::try_from(items.len() - 1).unwrap_or(u32::MAX)).await
    {
        return crate::auth::too_many_requests(wait);
    }
    match answer_message(&state, &handle, request, &mut |_| None).await {
        Reply::Refused(answer) => json_response(StatusCode::OK, &answer),
        Reply::Batch(answers) if answers.is_empty() => StatusCode::NO_CONTENT.into_response(),
        Reply::Batch(answers) => json_response(StatusCode::OK, &answers),
        Reply::Single(forwarded) => {
            let mut response = match forwarded.answer {
                Some(answer) => json_response(StatusCode::OK, &answer),
                None => StatusCode::NO_CONTENT.into_response(),
            };
            if let Some(trace) = forwarded.trace {
                add_trace_headers(&mut response, &trace);
            }
            if let Some(cache) = forwarded.cache {
                response.headers_mut().insert(CACHE_HEADER, HeaderValue::from_static(cache.as_str()));
            }
            if forwarded.coalesced {
                response.headers_mut().insert(COALESCED_HEADER, HeaderValue::from_static("true"));
            }
            response
        }
    }
}

/// How one JSON-RPC message (a request or a batch) was answered.
pub(crate) enum Reply {
    /// A single request's fate.
    Single(Forwarded),
    /// A batch's answers in request order; empty when every element was a notification.
    Batch(Vec<RpcResponse>),
    /// The message as a whole was refused (empty or oversized batch).
    Refused(RpcResponse),
}

/// Answers a request the caller serves itself (the WebSocket's `eth_subscribe`), seeing each request object
/// before validation; `None` leaves it to the pool.
pub(crate) type LocalMethods<'a> = dyn FnMut(&Value) -> Option<Forwarded> + Send + 'a;

/// The core of `POST /rpc/{chain}`, shared with JSON-RPC over the WebSocket: batch limits, then each request
/// answered by `local` or, when it declines, by `forward` (method policy, cache, coalescing, the pool).
pub(crate) async fn answer_message(
    state: &AppState,
    handle: &ChainHandle,
    request: Value,
    local: &mut LocalMethods<'_>,
) -> Reply {
    match request {
        Value::Array(items) => {
            if items.is_empty() {
                return Reply::Refused(RpcResponse::error(Value::Null, -32600, "empty batch"));
            }
            let max = state.config().max_batch_size;
            if items.len() > max {
                let message = format!("batch of {} requests exceeds the limit of {max}", items.len());
                return Reply::Refused(RpcResponse::error(Value::Null, -32600, message));
            }
            // Each element is looked up in the cache on its own; only the others reach the pool.
            let answers = join_all(items.into_iter().map(|item| {
                let answered = local(&item);
                async move {
                    match answered {
                        Some(answered) => answered,
                        None => forward(state, handle, item).await,
                    }
                }
            }))
            .await;
            Reply::Batch(answers.into_iter().filter_map(|forwarded| forwarded.answer).collect())
        }
        single => match local(&single) {
            Some(answered) => Reply::Single(answered),
            None => Reply::Single(forward(state, handle, single).await),
        },
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
pub(crate) struct ValidRequest {
    pub(crate) id: Value,
    pub(crate) method: String,
    /// What the cache policy reads and the cache key is made of.
    pub(crate) params: Value,
    /// What is sent upstream.
    raw_params: Box<RawValue>,
    /// No `id`: forwarded, but answered with nothing.
    pub(crate) is_notification: bool,
}

/// Checks one JSON-RPC request object; the error is the answer to send instead.
pub(crate) fn validate(request: Value) -> Result<ValidRequest, RpcResponse> {
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
        // geth takes `"params": null` as no params, like an absent member.
        None | Some(Value::Null) => Value::Array(Vec::new()),
        Some(params @ (Value::Array(_) | Value::Object(_))) => params,
        Some(_) => {
            return Err(RpcResponse::error(id, -32602, "Invalid params: must be an array or an object"));
        }
    };
    match serde_json::value::to_raw_value(&params) {
        Ok(raw_params) => Ok(ValidRequest { id, method, params, raw_params, is_notification }),
        Err(_) => Err(RpcResponse::error(id, -32602, "Invalid params")),
    }
}

/// Response header saying how the cache took part in a single request's answer.
const CACHE_HEADER: &str = "x-chainmux-cache";

/// How the response cache took part in answering one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheUse {
    /// Answered from the cache; no upstream was asked.
    Hit,
    /// Cacheable, but not in the cache: asked upstream.
    Miss,
    /// Not cacheable: the cache was not consulted.
    Bypass,
}

impl CacheUse {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

/// What became of one request.
pub(crate) struct Forwarded {
    /// `None` for a notification, which gets no answer.
    pub(crate) answer: Option<RpcResponse>,
    /// `None` when the request never reached the pool (invalid); for a cache hit, one naming the cache.
    trace: Option<CallTrace>,
    /// `None` for invalid requests and notifications.
    cache: Option<CacheUse>,
    /// Answered by an identical request's upstream call that was already in flight.
    coalesced: bool,
}

impl Forwarded {
    /// A request answered without the pool or the cache (see [`LocalMethods`]).
    pub(crate) fn local(answer: Option<RpcResponse>) -> Self {
        Self { answer, trace: None, cache: None, coalesced: false }
    }
}

/// Response header on a single request's answer that came from an identical request's upstream call.
const COALESCED_HEADER: &str = "x-chainmux-coalesced";

/// JSON-RPC "method not found", the code nodes answer for a method they do not serve.
pub(crate) const METHOD_NOT_ALLOWED: i64 = -32601;

/// What an upstream call gave, as every request sharing it receives it.
pub(crate) type Upstreamed = (Result<Box<RawValue>, RpcError>, CallTrace);

/// Validates one request and answers it from the cache or through the pool.
async fn forward(state: &AppState, handle: &ChainHandle, request: Value) -> Forwarded {
    let request = match validate(request) {
        Ok(request) => request,
        Err(answer) => return Forwarded { answer: Some(answer), trace: None, cache: None, coalesced: false },
    };
    let chain = handle.spec.name.as_str();
    let kind = handle.spec.kind;
    // A denied method never reaches an upstream, nor the cache.
    if !state.method_policy(chain).is_none_or(|policy| policy.allows(&request.method)) {
        metrics::counter!("chainmux_rpc_denied_total", "chain" => chain.to_owned()).increment(1);
        let message = format!("method {} is not allowed on chain {chain}", request.method);
        let answer = RpcResponse::error(request.id, METHOD_NOT_ALLOWED, message);
        let answer = (!request.is_notification).then_some(answer);
        return Forwarded { answer, trace: None, cache: None, coalesced: false };
    }
    let finality = crate::finality::current(state, handle);
    // A notification gets no answer, so a cached one would be of no use to it: it is just forwarded.
    // Without a cache, requests go upstream exactly as sent: resolving `latest` only serves the key, and the
    // number it names would also steer routing (the pool's height hint) away from upstreams a probe behind.
    let planned = if request.is_notification || !state.rpc_cache().enabled() {
        None
    } else {
        cache_policy::plan(kind, &request.method, &request.params, finality).map(|params| match params {
            Cow::Owned(resolved) => Some(resolved),
            Cow::Borrowed(_) => None,
        })
    };
    // Block tags resolved to numbers make both the key and what is sent upstream, so the answer matches its key.
    let mut cacheable = planned.is_some();
    let (params, raw_params) = match planned.flatten() {
        None => (request.params, request.raw_params),
        Some(resolved) => match serde_json::value::to_raw_value(&resolved) {
            Ok(raw) => (resolved, raw),
            Err(_) => {
                cacheable = false;
                (request.params, request.raw_params)
            }
        },
    };
    // Read before the upstream is asked: an answer that arrives after a reorg eviction is not kept unfinalized.
    let epoch = state.rpc_cache().epoch();
    let key = cacheable.then(|| CacheKey::new(chain, &request.method, &params));
    if let Some(key) = &key {
        let mut cached = state.rpc_cache().get(key).map(|result| (result, "hit"));
        // Then the replicas' shared cache (`[redis] rpc_cache`), which holds finalized answers only.
        if cached.is_none()
            && let Some(shared) = state.shared()
            && let Some(result) = shared.cache_get(key).await
        {
            state.rpc_cache().insert(chain, key.clone(), result.clone(), Retention::Final, epoch);
            cached = Some((result, "shared_hit"));
        }
        let outcome = cached.as_ref().map_or("miss", |(_, outcome)| *outcome);
        metrics::counter!("chainmux_rpc_cache_total", "chain" => chain.to_owned(), "result" => outcome)
            .increment(1);
        if let Some((result, _)) = cached {
            let answer = RpcResponse { jsonrpc: "2.0", id: request.id, result: Some(result), error: None };
            let trace = CallTrace { upstream: Some("cache".to_owned()), attempts: 0, hedges: 0 };
            let (trace, cache) = (Some(trace), Some(CacheUse::Hit));
            return Forwarded { answer: Some(answer), trace, cache, coalesced: false };
        }
    }

    let (result, trace, role) = if rpc_policy::may_coalesce(kind, &request.method, &params) {
        let coalesce_key = key.clone().unwrap_or_else(|| CacheKey::new(chain, &request.method, &params));
        let pool = handle.pool.clone();
        let (method, params) = (request.method.clone(), raw_params.clone());
        let call = move || async move { pool.call_traced(&method, &params).await };
        match state.coalescer().run(coalesce_key, call).await {
            (Some((result, trace)), role) => (result, trace, role),
            (None, role) => {
                tracing::error!(method = %request.method, "a shared upstream call panicked");
                let answer = RpcResponse::error(request.id, -32603, "internal error");
                let answer = (!request.is_notification).then_some(answer);
                return Forwarded { answer, trace: None, cache: None, coalesced: role == Role::Follower };
            }
        }
    } else {
        let (result, trace) = handle.pool.call_traced(&request.method, &raw_params).await;
        (result, trace, Role::Leader)
    };
    let coalesced = role == Role::Follower;
    if coalesced {
        metrics::counter!("chainmux_rpc_coalesced_total", "chain" => chain.to_owned()).increment(1);
    }
    let id = request.id;
    let answer = match result {
        Ok(result) => {
            crate::finality::observe(state, chain, &request.method, &result);
            // A follower's answer is the leader's, which the leader keeps when it qualifies.
            if let Some(key) = key.filter(|_| !coalesced)
                && let Some(retention) =
                    cache_policy::retention(kind, &request.method, &params, &result, finality)
            {
                if retention == Retention::Final
                    && let Some(shared) = state.shared()
                {
                    shared.cache_put(&key, &result);
                }
                state.rpc_cache().insert(chain, key, result.clone(), retention, epoch);
            }
            RpcResponse { jsonrpc: "2.0", id, result: Some(result), error: None }
        }
        Err(err) => {
            tracing::debug!(%err, method = %request.method, "proxied request failed");
            RpcResponse { jsonrpc: "2.0", id, result: None, error: Some(err.to_client_error()) }
        }
    };
    let cache = match (request.is_notification, cacheable) {
        (true, _) => None,
        (false, true) => Some(CacheUse::Miss),
        (false, false) => Some(CacheUse::Bypass),
    };
    Forwarded { answer: (!request.is_notification).then_some(answer), trace: Some(trace), cache, coalesced }
}
