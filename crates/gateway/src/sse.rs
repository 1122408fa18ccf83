//! Live feeds for frontends: `GET /v1/chains/{chain}/transfers/stream` and `/events/stream` as Server-Sent Events,
//! with the filters of `/transfers` and `/events`.
//!
//! The store is the source of truth: a feed pages through it (one page of `limit` rows per read) from a position
//! up to the indexed head, then waits for the index to move and reads again. The indexer's events of the chain
//! ([`AppState::subscribe_chain`]) only say when to look; without them (a gateway-only process) or when a feed
//! fell behind them, it polls the indexed head. So a feed misses nothing and sends nothing twice, whatever the
//! indexer did meanwhile, and a client resumes exactly where it was with `Last-Event-ID`.
//!
//! Messages:
//! - `transfer` / `event`: `{"item", "block": {number, hash}, "finality"}`, `item` rendered as the list endpoint
//!   renders it; its `id:` is a resume token: the item's block (number and hash) and its position in the block.
//! - `revert`: `{"to": {number, hash} | null, "from": {number, hash}}` after a reorg: the client drops every item
//!   above `to` (all of them when `to` is null); the new branch's items follow. Its `id:` is the end of block `to`.
//! - `ready`: once, when the feed has caught up with the index at connect: `{"indexed_head", "finalized_head"}`,
//!   with the position's token as `id:`, so a client that has received no item yet resumes without a gap.
//! - comments every [`KEEP_ALIVE`] while nothing else is sent.
//!
//! A feed's reorg check: every block it has delivered items of (and every indexed head it caught up with) is kept,
//! the last [`HISTORY`] of them; when the last one is no longer the stored block at its height, the newest one still
//! stored is where the branches meet as far as the client can tell, and the `revert` goes there. When none is (a
//! client resuming with a token of a block reorged away meanwhile), it goes to the finalized head.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chainmux_core::{B256, BlockPtr, ChainEvent, ChainKind};
use chainmux_store::{ChainState, EventFilter, EventKey, StoreError, TransferFilter, TransferKey};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};
use tracing::Instrument;

use crate::auth::RpcCharge;
use crate::live_slots::{self, LiveSlot};
use crate::params::{self, QueryParams};
use crate::routes::{self, Pairs};
use crate::{AppError, AppState, render};

/// Comment sent on an idle feed, so proxies keep the connection and clients notice a dead one.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a feed without the indexer's events looks at the indexed head.
const POLL: Duration = Duration::from_secs(1);
/// How often a feed with the indexer's events looks anyway (another process may index the chain too).
const SAFETY_POLL: Duration = Duration::from_secs(30);
/// Pause after a store error before the feed reads again.
const RETRY: Duration = Duration::from_secs(1);
/// Pause before reading again when the index changed between two reads of one scan.
const INCONSISTENT_PAUSE: Duration = Duration::from_millis(20);
/// Delivered blocks a feed remembers to find where a reorg forked.
const HISTORY: usize = 128;
/// Query parameter standing in for the `Last-Event-ID` header (clients without `EventSource`).
const LAST_EVENT_ID: &str = "last_event_id";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    Transfers,
    Events,
}

impl Feed {
    /// The `feed` metrics label.
    fn label(self) -> &'static str {
        match self {
            Self::Transfers => "transfers",
            Self::Events => "events",
        }
    }

    /// The SSE `event:` of an item.
    fn item_event(self) -> &'static str {
        match self {
            Self::Transfers => "transfer",
            Self::Events => "event",
        }
    }
}

/// `GET /v1/chains/{chain}/transfers/stream`.
#[utoipa::path(get, path = "/v1/chains/{chain}/transfers/stream", tag = "live", operation_id = "transfers_stream",
    summary = "Live transfers (Server-Sent Events), with the filters of `/transfers`.",
    params(
        params::ChainPath, params::TransferParams, params::BlockRangeParams, params::LimitParam,
        params::MinBlockParam,
        ("Last-Event-ID" = String, Header, description = "The `id:` of the last message received: the feed \
            resumes right after it, without gaps (`EventSource` sends it when it reconnects). Without it, the feed \
            starts at `from_block`, or at the indexed head."),
        params::ResumeParam,
    ),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "Server-Sent \
        Events. `transfer`: `{\"item\", \"block\": {number, hash}, \"finality\"}`, `item` shaped as in the list \
        route; `revert`: `{\"to\": {number, hash} | null, \"from\": {number, hash}}` after a reorg (drop every item \
        above `to`); `ready`: `{\"indexed_head\", \"finalized_head\"}` once caught up. Each message's `id:` is its \
        resume token."))
)]
pub(crate) async fn transfers(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    headers: HeaderMap,
    charge: Option<Extension<RpcCharge>>,
    pairs: Pairs,
) -> Result<Response, AppError> {
    let q = routes::query_prefixed(
        pairs,
        &["address", "token", "from_block", "to_block", "limit", LAST_EVENT_ID],
        None,
    )?;
    let (kind, stored) = routes::chain_state(&state, &chain, &q).await?;
    let filter = Filter::Transfers(routes::transfer_filter(&q, kind)?);
    let client_slot = match live_slots::take(&state, charge.as_ref().map(|Extension(c)| c)) {
        Ok(slot) => slot,
        Err(refused) => return Ok(refused.into_response()),
    };
    open(state, chain, kind, Feed::Transfers, filter, &q, &headers, stored, client_slot)
}

/// `GET /v1/chains/{chain}/events/stream`.
#[utoipa::path(get, path = "/v1/chains/{chain}/events/stream", tag = "live", operation_id = "events_stream",
    summary = "Live decoded events (Server-Sent Events, EVM chains), with the filters of `/events`.",
    params(
        params::ChainPath, params::EventParams, params::BlockRangeParams, params::LimitParam,
        params::MinBlockParam,
        ("Last-Event-ID" = String, Header, description = "The `id:` of the last message received: the feed \
            resumes right after it, without gaps (`EventSource` sends it when it reconnects). Without it, the feed \
            starts at `from_block`, or at the indexed head."),
        params::ResumeParam,
    ),
    responses((status = 200, content_type = "text/event-stream", body = String, description = "Server-Sent \
        Events. `event`: `{\"item\", \"block\": {number, hash}, \"finality\"}`, `item` shaped as in the list \
        route; `revert`: `{\"to\": {number, hash} | null, \"from\": {number, hash}}` after a reorg (drop every item \
        above `to`); `ready`: `{\"indexed_head\", \"finalized_head\"}` once caught up. Each message's `id:` is its \
        resume token."))
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    headers: HeaderMap,
    charge: Option<Extension<RpcCharge>>,
    pairs: Pairs,
) -> Result<Response, AppError> {
    let q = routes::query_prefixed(
        pairs,
        &["contract", "name", "address", "from_block", "to_block", "limit", LAST_EVENT_ID],
        Some("arg."),
    )?;
    let (kind, stored) = routes::chain_state(&state, &chain, &q).await?;
    routes::evm_only(&chain, kind)?;
    let filter = Filter::Events(routes::event_filter(&state, &chain, &q).await?);
    let client_slot = match live_slots::take(&state, charge.as_ref().map(|Extension(c)| c)) {
        Ok(slot) => slot,
        Err(refused) => return Ok(refused.into_response()),
    };
    open(state, chain, kind, Feed::Events, filter, &q, &headers, stored, client_slot)
}

/// Checks what is left of the request and starts the feed; every error comes before the stream starts.
#[allow(clippy::too_many_arguments)] // the pieces both handlers parsed, passed on once
fn open(
    state: AppState,
    chain: String,
    kind: ChainKind,
    feed: Feed,
    filter: Filter,
    q: &QueryParams,
    headers: &HeaderMap,
    stored: Option<ChainState>,
    client_slot: Option<LiveSlot>,
) -> Result<Response, AppError> {
    let page = q.limit(state.config().default_page_size, state.config().max_page_size)?;
    // The header wins: a browser reconnecting sends its newest id there while its URL keeps the first one.
    let resume = match headers.get("last-event-id") {
        Some(value) => {
            let text = value.to_str().map_err(|_| AppError::bad("Last-Event-ID", "not a resume token"))?;
            Some(Position::decode(feed, text).map_err(|m| AppError::bad("Last-Event-ID", m))?)
        }
        None => q
            .get(LAST_EVENT_ID)
            .map(|t| Position::decode(feed, t))
            .transpose()
            .map_err(|m| AppError::bad(LAST_EVENT_ID, m))?,
    };
    if state.is_draining() {
        return Err(AppError::Unavailable("draining: shutting down".into()));
    }
    let slot = state.inner.sse_slots.clone().try_acquire_owned().map_err(|_| {
        AppError::Unavailable(format!(
            "too many live feeds open (at most {}); retry later",
            state.config().max_sse_streams
        ))
    })?;
    let from_block = match &filter {
        Filter::Transfers(f) => f.from_block,
        Filter::Events(f) => f.from_block,
    };
    // Where the feed starts: after the client's last item; at `from_block`; else at the indexed head (only what
    // is indexed from now on).
    let position = match resume {
        Some(position) => Some(position),
        None if from_block.is_some() => None,
        None => stored.as_ref().and_then(|s| s.cursor).map(Position::AfterBlock),
    };
    let history = position.iter().map(Position::block).collect();
    let events = state.subscribe_chain(&chain);
    let drained = state.drained();
    metrics::gauge!("chainmux_sse_connections", "feed" => feed.label()).increment(1.0);
    let live = Live {
        state,
        chain,
        kind,
        feed,
        filter,
        page,
        position,
        history,
        events,
        drained,
        pending: VecDeque::new(),
        ready_sent: false,
        caught_up: false,
        _slots: (slot, client_slot),
    };
    Ok(Sse::new(live.into_stream()).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response())
}

/// A list endpoint's filter, without page position and size (set per read).
enum Filter {
    Transfers(TransferFilter),
    Events(EventFilter),
}

/// An item's place in its block, in the list endpoints' keyset order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Transfer(TransferKey),
    Event(EventKey),
}

/// Everything up to here has been sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    /// Every item of this block and below.
    AfterBlock(BlockPtr),
    /// Every item up to this one, of this block.
    AfterItem(BlockPtr, Key),
}

impl Position {
    fn block(&self) -> BlockPtr {
        match self {
            Self::AfterBlock(block) | Self::AfterItem(block, _) => *block,
        }
    }

    /// The resume token: `{number}.{0x hash}` for a whole block, followed by the item's position in the block
    /// (the list endpoint's cursor without its block number) for an item. Opaque to clients.
    fn token(&self) -> String {
        let block = self.block();
        let head = format!("{}.{}", block.number, alloy::hex::encode_prefixed(block.hash));
        match self {
            Self::AfterBlock(_) => head,
            Self::AfterItem(_, Key::Transfer(key)) => {
                let cursor = params::encode_transfer_cursor(key);
                format!("{head}{}", &cursor[cursor.find('.').unwrap_or(cursor.len())..])
            }
            Self::AfterItem(_, Key::Event(key)) => {
                let cursor = params::encode_event_cursor(key);
                format!("{head}{}", &cursor[cursor.find('.').unwrap_or(cursor.len())..])
            }
        }
    }

    fn decode(feed: Feed, token: &str) -> Result<Self, &'static str> {
        const INVALID: &str = "not a resume token of this feed (an `id:` it sent)";
        let mut parts = token.splitn(3, '.');
        let number = parts.next().and_then(|n| n.parse::<u64>().ok()).ok_or(INVALID)?;
        let hash = parts.next().ok_or(INVALID)?;
        let hash = params::hex_bytes("", hash, 32).map_err(|_| INVALID)?;
        let block = BlockPtr::new(number, B256::from_slice(&hash));
        let Some(rest) = parts.next() else { return Ok(Self::AfterBlock(block)) };
        let cursor = format!("{number}.{rest}");
        let key = match feed {
            Feed::Transfers => Key::Transfer(params::decode_transfer_cursor(&cursor).map_err(|_| INVALID)?),
            Feed::Events => Key::Event(params::decode_event_cursor(&cursor).map_err(|_| INVALID)?),
        };
        Ok(Self::AfterItem(block, key))
    }
}

/// One item read from the store, rendered.
struct Item {
    block: BlockPtr,
    key: Key,
    json: Value,
}

/// What a scan of the store found to do next.
enum Next {
    /// Read again at once: more pages, or the index moved under the read.
    Continue,
    /// Caught up with the indexed head: wait for it to move.
    Wait,
}

/// One open feed.
struct Live {
    state: AppState,
    chain: String,
    kind: ChainKind,
    feed: Feed,
    filter: Filter,
    /// Rows per store read.
    page: u32,
    /// `None`: nothing sent and nothing to resume from; the filter's `from_block` (or the chain's start) is next.
    position: Option<Position>,
    /// Blocks items were delivered from and indexed heads caught up with, oldest first: where to revert to.
    history: VecDeque<BlockPtr>,
    events: Option<broadcast::Receiver<ChainEvent>>,
    /// True once the gateway drains: the feed ends.
    drained: watch::Receiver<bool>,
    /// Messages of the last scan not yet sent.
    pending: VecDeque<Event>,
    ready_sent: bool,
    caught_up: bool,
    /// Held while the feed is open: the process's and the client's.
    _slots: (OwnedSemaphorePermit, Option<LiveSlot>),
}

impl Drop for Live {
    fn drop(&mut self) {
        metrics::gauge!("chainmux_sse_connections", "feed" => self.feed.label()).decrement(1.0);
    }
}

impl Live {
    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> {
        futures_util::stream::unfold(self, |mut live| async move {
            let event = live.next_event().await?;
            metrics::counter!("chainmux_sse_messages_total", "feed" => live.feed.label()).increment(1);
            Some((Ok(event), live))
        })
    }

    /// The next message to send, reading the store and waiting for the index as needed; `None` ends the feed
    /// (the gateway is draining).
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if *self.drained.borrow() {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.caught_up {
                self.wait().await;
                self.caught_up = false;
            }
            let span = tracing::debug_span!("sse_scan", chain = %self.chain, feed = self.feed.label());
            match self.scan().instrument(span).await {
                Ok(Next::Continue) => {}
                Ok(Next::Wait) => self.caught_up = true,
                Err(err) => {
                    tracing::warn!(%err, chain = %self.chain, feed = self.feed.label(), "live feed: store read failed");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Until the index may have moved: the indexer's next event, or a poll interval.
    async fn wait(&mut self) {
        let drained = self.drained.clone();
        let drained = async move {
            let mut drained = drained;
            // An error means the state is gone, which ends the feed as well.
            let _ = drained.wait_for(|d| *d).await;
        };
        let Some(events) = self.events.as_mut() else {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = drained => {}
            }
            return;
        };
        tokio::select! {
            () = drained => {}
            received = events.recv() => match received {
                // Lagging only means more happened: the store has it all.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Whatever else is queued is covered by the same read.
                    while !matches!(events.try_recv(), Err(broadcast::error::TryRecvError::Empty
                        | broadcast::error::TryRecvError::Closed)) {}
                }
                Err(broadcast::error::RecvError::Closed) => self.events = None,
            },
            () = tokio::time::sleep(SAFETY_POLL) => {}
        }
    }

    /// One read of the store: a revert, a page of items, or nothing new.
    async fn scan(&mut self) -> Result<Next, AppError> {
        let store = self.state.store();
        let stored = store.chain_state(&self.chain).await?;
        let Some(head) = stored.as_ref().and_then(|s| s.cursor) else { return Ok(Next::Wait) };
        if let Some(position) = &self.position
            && !self.stored(&[position.block()], head).await?
        {
            self.revert(stored.as_ref(), position.block()).await?;
            return Ok(Next::Continue);
        }
        let at_head = match &self.position {
            Some(Position::AfterBlock(block)) => block.number >= head.number,
            _ => false,
        };
        if at_head {
            self.send_ready(stored.as_ref());
            return Ok(Next::Wait);
        }
        let (items, has_more) = self.read(head.number, stored.as_ref()).await?;
        // The rows and the head must be one consistent view: every block they come from still stored, and the
        // head too. Otherwise the index changed under the read; the next scan sees how.
        let mut blocks: Vec<BlockPtr> = items.iter().map(|i| i.block).collect();
        blocks.push(head);
        blocks.dedup();
        if !self.stored(&blocks, head).await? {
            // Mid-change (a revert between the reads): give the indexer a moment before reading again.
            tokio::time::sleep(INCONSISTENT_PAUSE).await;
            return Ok(Next::Continue);
        }
        for item in items {
            if self.history.back() != Some(&item.block) {
                self.remember(item.block);
            }
            let position = Position::AfterItem(item.block, item.key);
            let message = json!({
                "item": item.json,
                "block": render::ptr(self.kind, Some(item.block)),
                "finality": item.json["finality"],
            });
            self.pending.push_back(event(self.feed.item_event(), &message, Some(&position)));
            self.position = Some(position);
        }
        if has_more {
            return Ok(Next::Continue);
        }
        // Every item up to the head is sent.
        if self.position.as_ref().is_none_or(|p| p.block().number <= head.number) {
            self.position = Some(Position::AfterBlock(head));
            self.remember(head);
        }
        self.send_ready(stored.as_ref());
        Ok(Next::Wait)
    }

    /// One page of items after the position, up to `head` (and the filter's `to_block`).
    async fn read(&self, head: u64, stored: Option<&ChainState>) -> Result<(Vec<Item>, bool), AppError> {
        let store = self.state.store();
        let head = i64::try_from(head).unwrap_or(i64::MAX);
        let (after_block, after_key) = match &self.position {
            None => (None, None),
            Some(Position::AfterBlock(block)) => (Some(block.number), None),
            Some(Position::AfterItem(_, key)) => (None, Some(key)),
        };
        // After a whole block: from the next one on.
        let from = |from_block: Option<i64>| match after_block {
            Some(n) => {
                Some(from_block.unwrap_or(0).max(i64::try_from(n).unwrap_or(i64::MAX).saturating_add(1)))
            }
            None => from_block,
        };
        let view = routes::view(&self.chain, self.kind, stored);
        match &self.filter {
            Filter::Transfers(filter) => {
                let filter = TransferFilter {
                    from_block: from(filter.from_block),
                    to_block: Some(filter.to_block.map_or(head, |to| to.min(head))),
                    after: match after_key {
                        Some(Key::Transfer(key)) => Some(key.clone()),
                        _ => None,
                    },
                    limit: self.page,
                    ..filter.clone()
                };
                let rows = store.transfers(&self.chain, &filter).await?;
                let items = rows
                    .items
                    .iter()
                    .map(|row| {
                        let block = block_ptr(row.block_number, &row.block_hash)?;
                        Ok(Item { block, key: Key::Transfer(row.key()), json: json!(view.transfer(row)) })
                    })
                    .collect::<Result<_, AppError>>()?;
                Ok((items, rows.has_more))
            }
            Filter::Events(filter) => {
                let filter = EventFilter {
                    from_block: from(filter.from_block),
                    to_block: Some(filter.to_block.map_or(head, |to| to.min(head))),
                    after: match after_key {
                        Some(Key::Event(key)) => Some(key.clone()),
                        _ => None,
                    },
                    limit: self.page,
                    ..filter.clone()
                };
                let rows = store.events(&self.chain, &filter).await?;
                let items = rows
                    .items
                    .iter()
                    .map(|row| {
                        let block = block_ptr(row.block_number, &row.block_hash)?;
                        Ok(Item { block, key: Key::Event(row.key()), json: json!(view.event(row)) })
                    })
                    .collect::<Result<_, AppError>>()?;
                Ok((items, rows.has_more))
            }
        }
    }

    /// Whether none of `blocks` was replaced: each is the stored block at its height or, at or below `head`, at a
    /// height without a stored block (rows of history caught up below the chain's start block have none).
    async fn stored(&self, blocks: &[BlockPtr], head: BlockPtr) -> Result<bool, AppError> {
        let numbers: Vec<u64> = blocks.iter().map(|b| b.number).collect();
        let found = self.state.store().blocks_at(&self.chain, &numbers).await?;
        Ok(blocks.iter().all(|b| match found.iter().find(|f| f.number == b.number) {
            Some(stored) => stored.hash == b.hash,
            None => b.number <= head.number,
        }))
    }

    fn remember(&mut self, block: BlockPtr) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(block);
    }

    /// The client's items above the fork are gone: tells it where to drop them from, and goes on from there.
    async fn revert(&mut self, stored: Option<&ChainState>, from: BlockPtr) -> Result<(), AppError> {
        let numbers: Vec<u64> = self.history.iter().map(|b| b.number).collect();
        let found = self.state.store().blocks_at(&self.chain, &numbers).await?;
        let mut to = self.history.iter().rev().find(|b| found.contains(b)).copied();
        if to.is_none() {
            // No block the feed delivered is left: the finalized head is the highest block known to be shared.
            let lowest = self.history.front().map_or(from.number, |b| b.number);
            let finalized = stored.and_then(|s| s.heads).and_then(|h| h.finalized);
            if let Some(finalized) = finalized {
                to = self
                    .state
                    .store()
                    .block_at_or_below(&self.chain, finalized.min(lowest.saturating_sub(1)))
                    .await?;
            }
        }
        tracing::debug!(chain = %self.chain, feed = self.feed.label(), from = from.number, to = ?to.map(|t| t.number), "live feed: revert");
        self.history.retain(|b| to.is_some_and(|to| b.number <= to.number));
        self.position = to.map(Position::AfterBlock);
        let message = json!({ "to": render::ptr(self.kind, to), "from": render::ptr(self.kind, Some(from)) });
        self.pending.push_back(event("revert", &message, self.position.as_ref()));
        Ok(())
    }

    /// The `ready` message, once, when the feed first catches up.
    fn send_ready(&mut self, stored: Option<&ChainState>) {
        if self.ready_sent {
            return;
        }
        self.ready_sent = true;
        let message = json!({
            "indexed_head": render::ptr(self.kind, stored.and_then(|s| s.cursor)),
            "finalized_head": stored.and_then(|s| s.heads).and_then(|h| h.finalized),
        });
        self.pending.push_back(event("ready", &message, self.position.as_ref()));
    }
}

fn block_ptr(number: i64, hash: &[u8]) -> Result<BlockPtr, AppError> {
    let number =
        u64::try_from(number).map_err(|_| StoreError::Corrupt(format!("negative block number {number}")))?;
    let hash = B256::try_from(hash)
        .map_err(|_| StoreError::Corrupt(format!("block hash of {} bytes", hash.len())))?;
    Ok(BlockPtr::new(number, hash))
}

/// An SSE message: `event:` name, JSON `data:`, and the position's token as `id:`.
fn event(name: &'static str, data: &Value, position: Option<&Position>) -> Event {
    let event = Event::default().event(name).data(data.to_string());
    // An `id:` cannot hold line breaks or NUL (axum panics on them); entry names never have them, but a token
    // that did would only cost the client its resume point, not the feed.
    match position.map(Position::token) {
        Some(token) if !token.contains(['\n', '\r', '\0']) => event.id(token),
        _ => event,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let block = BlockPtr::new(42, B256::repeat_byte(0xab));
        let transfer =
            TransferKey { block_number: 42, log_index: 3, batch_index: 1, standard: "erc1155".into() };
        let event = EventKey { block_number: 42, log_index: 7, contract: "pools.v2".into() };
        for (feed, position) in [
            (Feed::Transfers, Position::AfterBlock(block)),
            (Feed::Transfers, Position::AfterItem(block, Key::Transfer(transfer))),
            (Feed::Events, Position::AfterBlock(block)),
            (Feed::Events, Position::AfterItem(block, Key::Event(event))),
        ] {
            let token = position.token();
            assert_eq!(Position::decode(feed, &token), Ok(position), "{token}");
        }
        let hash = format!("0x{}", "ab".repeat(32));
        assert_eq!(
            Position::AfterBlock(block).token(),
            format!("42.{hash}"),
            "a whole block's token is its number and hash"
        );
        for bad in [
            "".to_owned(),
            "42".to_owned(),
            "x.{hash}".to_owned(),
            format!("42.0x{}", "ab".repeat(31)),
            format!("42.{hash}.3.1.erc777"),
            format!("42.{hash}.3"),
        ] {
            assert!(Position::decode(Feed::Transfers, &bad).is_err(), "{bad}");
        }
        assert!(Position::decode(Feed::Events, &format!("42.{hash}.x.c")).is_err());
    }
}
