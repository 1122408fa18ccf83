//! Consistency for UIs: every chain route says how far the index is, and can wait for it.
//!
//! A UI that just sent a transaction wants to read its own write: it passes `min_block=N` (the block its receipt
//! named) and the request waits, bounded by [`crate::GatewayConfig::min_block_wait`], until the chain is indexed to
//! `N`. Every answer carries the indexed and finalized heights it was computed against in the
//! `x-chainmux-indexed-head` / `x-chainmux-finalized-head` headers, and pages (which have an envelope) also in the
//! body (`indexed_head`, `finalized_head`), so a client can tell whether what it read is final yet. A single block or
//! transaction keeps its body the resource itself; its `finality` field says the same per item.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chainmux_core::ChainKind;
use chainmux_store::ChainState;
use serde::Serialize;
use serde_json::json;

use crate::render::{self, HeadPtr, Page};
use crate::{AppError, AppState};

/// Header with the indexed head's number.
pub(crate) const INDEXED_HEAD: HeaderName = HeaderName::from_static("x-chainmux-indexed-head");
/// Header with the finalized head's number.
pub(crate) const FINALIZED_HEAD: HeaderName = HeaderName::from_static("x-chainmux-finalized-head");

/// How often a `min_block` wait looks at the store again.
const POLL: Duration = Duration::from_millis(50);
/// How long a chain state read from the store answers other requests too. Under load this saves a database round
/// trip per request; the heads an answer reports are then at most this much older than its rows, which errs the
/// safe way (an item may say `unfinalized` a moment longer, never `finalized` too early).
const STATE_REUSE: Duration = Duration::from_millis(50);

/// Each served chain's most recently read state, with when it was read.
#[derive(Debug, Default)]
pub(crate) struct RecentStates(Mutex<HashMap<String, (Instant, Option<ChainState>)>>);

impl RecentStates {
    fn get(&self, chain: &str) -> Option<Option<ChainState>> {
        let recent = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (read_at, stored) = recent.get(chain)?;
        (read_at.elapsed() < STATE_REUSE).then(|| stored.clone())
    }

    fn put(&self, chain: &str, stored: &Option<ChainState>, read_at: Instant) {
        let mut recent = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match recent.get_mut(chain) {
            Some(entry) if entry.0 >= read_at => {}
            Some(entry) => *entry = (read_at, stored.clone()),
            None => {
                recent.insert(chain.to_owned(), (read_at, stored.clone()));
            }
        }
    }
}

/// Whether `stored` is indexed to `min_block` (always, without one).
fn reaches(stored: Option<&ChainState>, min_block: Option<i64>) -> bool {
    let Some(min_block) = min_block else { return true };
    let indexed = stored.and_then(|s| s.cursor).map(|c| c.number);
    indexed.is_some_and(|n| i64::try_from(n).is_ok_and(|n| n >= min_block))
}

/// The chain's stored state once it is indexed to `min_block` (at once without one); a 503 with `Retry-After`
/// when that takes longer than `wait`. `chain` must be a served chain (it keys a cache).
pub(crate) async fn state_at(
    state: &AppState,
    chain: &str,
    min_block: Option<i64>,
    wait: Duration,
) -> Result<Option<ChainState>, AppError> {
    let started = Instant::now();
    loop {
        // A state read in the last moments by any request serves this one too; so requests waiting for
        // `min_block` poll the store once per reuse period between them, not each one per poll.
        let stored = match state.recent_states().get(chain) {
            Some(recent) => recent,
            None => {
                let read_at = Instant::now();
                let stored = state.store().chain_state(chain).await?;
                state.recent_states().put(chain, &stored, read_at);
                stored
            }
        };
        // Only a request waiting for `min_block` gets past this point.
        let Some(min_block) = min_block.filter(|_| !reaches(stored.as_ref(), min_block)) else {
            return Ok(stored);
        };
        let indexed = stored.as_ref().and_then(|s| s.cursor).map(|c| c.number);
        if started.elapsed() >= wait {
            let at =
                indexed.map_or("nothing is indexed yet".to_owned(), |n| format!("the indexed head is {n}"));
            return Err(AppError::NotYet(format!(
                "block {min_block} is not indexed after waiting {} ms; {at}",
                wait.as_millis()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A chain route's JSON answer with the index position it was computed against.
pub(crate) struct ChainJson {
    /// The body, already serialized (straight from the typed value, no intermediate JSON tree).
    body: Response,
    indexed: Option<u64>,
    finalized: Option<u64>,
}

impl ChainJson {
    /// A page of `items`: the body also says where the index stood (`indexed_head`, `finalized_head`).
    pub(crate) fn page<T: Serialize>(
        kind: ChainKind,
        items: Vec<T>,
        next_cursor: Option<String>,
        stored: Option<&ChainState>,
    ) -> Self {
        let (indexed_head, finalized_head) = heads(kind, stored);
        Self::resource(&Page { items, next_cursor, indexed_head, finalized_head }, stored)
    }

    /// A single resource: the index position goes in the headers only (and in the body, for a page's envelope).
    pub(crate) fn resource(body: &impl Serialize, stored: Option<&ChainState>) -> Self {
        let indexed = stored.and_then(|s| s.cursor).map(|c| c.number);
        let finalized = stored.and_then(|s| s.heads).and_then(|h| h.finalized);
        Self { body: Json(body).into_response(), indexed, finalized }
    }
}

/// A page envelope's `indexed_head` and `finalized_head` for the chain's `stored` state.
pub(crate) fn heads(kind: ChainKind, stored: Option<&ChainState>) -> (Option<HeadPtr>, Option<u64>) {
    let indexed = render::ptr(kind, stored.and_then(|s| s.cursor));
    (indexed, stored.and_then(|s| s.heads).and_then(|h| h.finalized))
}

impl IntoResponse for ChainJson {
    fn into_response(self) -> Response {
        let mut response = self.body;
        let headers = response.headers_mut();
        for (name, value) in [(INDEXED_HEAD, self.indexed), (FINALIZED_HEAD, self.finalized)] {
            if let Some(value) = value {
                headers.insert(name, HeaderValue::from(value));
            }
        }
        response
    }
}

/// The `Retry-After` a [`AppError::NotYet`] answer carries: the index moves every block, so soon.
pub(crate) fn not_yet_response(message: &str) -> Response {
    let body = json!({ "error": { "code": "not_indexed_yet", "message": message, "field": "min_block" } });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
