//! What the gateway knows about each EVM chain's heads, for the response cache's policy, and the cache's reorg
//! eviction.
//!
//! One background task per EVM chain, started on the first `/rpc` request of the chain (or when the router is
//! built inside a runtime):
//! - every [`REFRESH`] it reads the chain's heads as the indexer stored them (so a gateway-only replica knows
//!   them too, without an upstream call per request) and caps the finalized head by the lowest head of the
//!   upstreams the pool may route to: an answer at or below that floor is about a block every such upstream has,
//!   on the branch the indexer's finality rule (the upstreams' `finalized` tag or `finality_confirmations`)
//!   declared final;
//! - it follows the indexer's events of the chain (when this process indexes it): on `Revert { to }` the cache
//!   drops every unfinalized answer about a block above `to`; when it lags behind the stream, every unfinalized
//!   answer of the chain, since which blocks went is unknown.
//!
//! `latest` is the pool's best head (its head probes and every `eth_blockNumber` answer keep it current), or a
//! higher head the gateway itself just passed on: a head from `eth_blockNumber` or the block of a receipt. So a
//! client that learns of its transaction's block through the gateway and then asks for `latest` gets at least that
//! block, as it would from the node, even between two head probes. That observed head is forgotten once the pool
//! has caught up with it, or on a revert.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chainmux_core::ChainEvent;
use chainmux_rpc::Pool;
use tokio::sync::broadcast;
use tracing::{Instrument, debug, info_span, warn};

use crate::cache_policy::Finality;
use crate::follow::{Wake, follow};
use crate::{AppState, Inner};

/// How often the stored heads are read again.
pub(crate) const REFRESH: Duration = Duration::from_millis(500);

/// `u64::MAX` stands for "unknown" in the atomics (no chain gets there).
const UNKNOWN: u64 = u64::MAX;

/// The heads of one EVM chain as last refreshed.
#[derive(Debug)]
pub(crate) struct ChainFinality {
    finalized: AtomicU64,
    safe: AtomicU64,
    /// The highest head seen in answers passed on since the pool last caught up; 0 for none.
    observed: AtomicU64,
    started: AtomicBool,
}

impl Default for ChainFinality {
    fn default() -> Self {
        Self {
            finalized: AtomicU64::new(UNKNOWN),
            safe: AtomicU64::new(UNKNOWN),
            observed: AtomicU64::new(0),
            started: AtomicBool::new(false),
        }
    }
}

fn known(value: &AtomicU64) -> Option<u64> {
    Some(value.load(Ordering::Acquire)).filter(|v| *v != UNKNOWN)
}

impl ChainFinality {
    /// What the cache policy decides with now.
    pub(crate) fn now(&self, pool: &Pool) -> Finality {
        let observed = Some(self.observed.load(Ordering::Acquire)).filter(|h| *h > 0);
        let head = pool.best_head().max(observed);
        let finalized = known(&self.finalized);
        // `safe` never below `finalized`, never above `latest`.
        let safe = known(&self.safe).max(finalized).map(|safe| head.map_or(safe, |h| safe.min(h)));
        Finality { finalized, safe, head }
    }
}

/// Starts chain `chain`'s task unless it runs already; does nothing outside a Tokio runtime (it is tried again on
/// the next request) or for a chain without a tracker (Solana).
pub(crate) fn start(state: &AppState, chain: &str) {
    let Some(tracker) = state.inner.finality.get(chain) else { return };
    if tracker.started.load(Ordering::Acquire) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if tracker.started.swap(true, Ordering::AcqRel) {
        return;
    }
    // Subscribed before any answer of the chain can be kept, so no revert is missed for a kept answer.
    let events = state.subscribe_chain(chain);
    let inner = Arc::downgrade(&state.inner);
    let span = info_span!("rpc_cache_finality", chain = %chain);
    runtime.spawn(run(inner, chain.to_owned(), events).instrument(span));
}

/// Refreshes the heads and evicts on reverts until the state is dropped.
async fn run(inner: Weak<Inner>, chain: String, events: Option<broadcast::Receiver<ChainEvent>>) {
    follow(inner, events, REFRESH, |inner, wake| {
        let chain = chain.clone();
        async move {
            match wake {
                Wake::Tick => refresh(&inner, &chain).await,
                Wake::Event(ChainEvent::Revert { to, from }) => {
                    if let Some(tracker) = inner.finality.get(&chain) {
                        tracker.observed.store(0, Ordering::Release);
                    }
                    let evicted = inner.rpc_cache.evict_above(&chain, to.number);
                    debug!(to = to.number, from = from.number, evicted, "reorg: evicted unfinalized answers");
                }
                Wake::Event(ChainEvent::Apply(_)) => {}
                Wake::Lagged(missed) => {
                    let evicted = inner.rpc_cache.evict_unfinalized(&chain);
                    warn!(
                        missed,
                        evicted, "fell behind the indexer's events: evicted every unfinalized answer"
                    );
                }
            }
        }
    })
    .await;
}

async fn refresh(inner: &Inner, chain: &str) {
    let (Some(tracker), Some(handle)) = (inner.finality.get(chain), inner.chains.get(chain)) else { return };
    let heads = match inner.store.chain_state(chain).await {
        Ok(state) => state.and_then(|s| s.heads),
        Err(err) => {
            // Keep the last known heads: they only ever lag behind the truth.
            debug!(%err, "cannot read the chain's heads");
            return;
        }
    };
    // The lowest head among the upstreams the pool may route to (`down` ones are still tried).
    let lowest = handle
        .pool
        .statuses()
        .into_iter()
        .filter(|s| matches!(s.state, "healthy" | "down"))
        .filter_map(|s| s.head)
        .min();
    let finalized = heads.and_then(|h| h.finalized).map(|f| lowest.map_or(f, |low| f.min(low)));
    // The pool knows the observed head now (or a higher one): stop overriding it.
    let observed = tracker.observed.load(Ordering::Acquire);
    if handle.pool.best_head().is_some_and(|best| best >= observed) {
        // Unless a higher head was observed meanwhile.
        let _ = tracker.observed.compare_exchange(observed, 0, Ordering::AcqRel, Ordering::Acquire);
    }
    let safe = heads.and_then(|h| h.safe);
    tracker.finalized.store(finalized.unwrap_or(UNKNOWN), Ordering::Release);
    tracker.safe.store(safe.unwrap_or(UNKNOWN), Ordering::Release);
    if let Some(finalized) = finalized {
        metrics::gauge!("chainmux_rpc_cache_finalized_block", "chain" => chain.to_owned())
            .set(finalized as f64);
    }
}

/// What the cache policy decides with for `handle`'s chain now: the tracked heads of an EVM chain (starting its
/// task if need be), nothing for other families.
pub(crate) fn current(state: &AppState, handle: &crate::ChainHandle) -> Finality {
    match state.inner.finality.get(&handle.spec.name) {
        Some(tracker) => {
            start(state, &handle.spec.name);
            tracker.now(&handle.pool)
        }
        None => Finality::UNKNOWN,
    }
}

/// Notes the head an answer passed on to a client reveals (`eth_blockNumber`, a receipt's block), so `latest`
/// means at least that block from now on (see the module docs).
pub(crate) fn observe(state: &AppState, chain: &str, method: &str, result: &serde_json::value::RawValue) {
    #[derive(serde::Deserialize)]
    struct Receipt<'a> {
        #[serde(rename = "blockNumber", borrow)]
        block_number: Option<&'a str>,
    }
    let Some(tracker) = state.inner.finality.get(chain) else { return };
    let hex = match method {
        "eth_blockNumber" => serde_json::from_str::<&str>(result.get()).ok(),
        "eth_getTransactionReceipt" => serde_json::from_str::<Option<Receipt<'_>>>(result.get())
            .ok()
            .flatten()
            .and_then(|r| r.block_number),
        _ => None,
    };
    if let Some(head) = hex.and_then(|h| u64::from_str_radix(h.strip_prefix("0x")?, 16).ok()) {
        tracker.observed.fetch_max(head, Ordering::AcqRel);
    }
}
