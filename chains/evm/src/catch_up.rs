//! Bringing a chain's `[[chains.contracts]]` entries up to the indexer before it starts.
//!
//! The indexer decodes every configured entry in the blocks it writes. An entry that is new to an indexed chain (or
//! whose definition changed) has blocks the indexer will never see again: those below the block it indexes next.
//! [`prepare`] catches each such entry up on its own, oldest blocks first, so a factory's children are known before
//! their logs are decoded:
//!
//! - blocks below the chain's first stored block come from filtered `eth_getLogs` (the entry's addresses in chunks of
//!   `address_chunk`; for a factory with more than `topic_only_above` children, the entry's event topics alone, with
//!   the addresses filtered here);
//! - blocks the chain has stored come from the stored logs: nothing is fetched again.
//!
//! Every window of blocks commits its rows with the entry's progress, so a restart continues where it stopped, and no
//! other entry's rows are read or written.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use backon::{BackoffBuilder, ExponentialBuilder};
use chainmux_core::{Bytes, NetworkError, NormalizedBlock};
use chainmux_store::{ContractSourceDef, ContractSourceState, FactoryDef, Store, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::EvmNetwork;
use crate::events::{ContractSource, EventDecoder, SourceTarget};
use chainmux_core::BlockDecoder;

/// How contract history is fetched.
#[derive(Debug, Clone, Copy)]
pub struct CatchUpOptions {
    /// Most addresses per `eth_getLogs` filter.
    pub address_chunk: usize,
    /// Above this many addresses, fetch by topic only and filter locally.
    pub topic_only_above: usize,
    /// Blocks per committed window.
    pub window: u64,
}

impl Default for CatchUpOptions {
    fn default() -> Self {
        Self { address_chunk: 500, topic_only_above: 2_000, window: 2_000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error("chain {chain}: contract {contract}: {source}")]
    Network { chain: String, contract: String, source: NetworkError },
    #[error("chain {chain}: {source}")]
    Store { chain: String, source: StoreError },
    #[error("chain {chain}: stopped before the contracts caught up")]
    Cancelled { chain: String },
}

/// Syncs the stored entries of the chain with `sources`, catches every entry up to the block the indexer indexes
/// next (`cursor + 1`, or `indexer_start` on a chain not indexed yet), and returns the decoder for the indexer,
/// which knows every factory child stored so far.
pub async fn prepare(
    network: &EvmNetwork,
    store: &Store,
    sources: Vec<Arc<ContractSource>>,
    indexer_start: u64,
    options: CatchUpOptions,
    cancel: &CancellationToken,
) -> Result<EventDecoder, CatchUpError> {
    let chain = network.spec.name.clone();
    let span = info_span!("contracts", chain = %chain);
    async {
        let store_err = |source| CatchUpError::Store { chain: chain.clone(), source };
        let cursor = store.cursor(&chain).await.map_err(store_err)?;
        let live_from = cursor.map_or(indexer_start, |c| c.number + 1);
        let defs: Vec<ContractSourceDef> = sources.iter().map(|s| source_def(s)).collect();
        let sync = store.sync_contract_sources(&chain, &defs, live_from).await.map_err(store_err)?;
        for (name, events) in &sync.removed {
            warn!(contract = %name, events, "contract entry no longer configured: its rows were dropped");
        }
        for name in &sync.changed {
            warn!(contract = %name, "contract entry definition changed: its rows were dropped; indexing it anew");
        }
        for name in &sync.added {
            info!(contract = %name, live_from, "new contract entry");
        }
        let first_stored = store.first_block(&chain).await.map_err(store_err)?;
        for state in &sync.states {
            let Some(pending) = state.pending() else { continue };
            let Some(source) = sources.iter().find(|s| s.name() == state.name) else { continue };
            catch_up(network, store, source, state, pending, first_stored, options, cancel).await?;
        }
        let mut decoder = EventDecoder::new(&chain, sources);
        for (name, address, block) in store.factory_children(&chain).await.map_err(store_err)? {
            decoder.add_child(&name, Address::from_slice(&address), block);
        }
        Ok(decoder)
    }
    .instrument(span)
    .await
}

/// The store's view of an entry.
fn source_def(source: &ContractSource) -> ContractSourceDef {
    let (addresses, factory) = match source.target() {
        SourceTarget::Addresses(addresses) => {
            (addresses.iter().map(|a| Bytes::copy_from_slice(a.as_slice())).collect(), None)
        }
        SourceTarget::Factory { address, event, parameter } => (
            Vec::new(),
            Some(FactoryDef {
                address: Bytes::copy_from_slice(address.as_slice()),
                event: event.signature(),
                parameter: parameter.clone(),
            }),
        ),
    };
    ContractSourceDef {
        name: source.name().to_owned(),
        fingerprint: source.fingerprint(),
        addresses,
        factory,
        start_block: source.start_block(),
        events_json: source.events_json(),
    }
}

/// Catches one entry up on `pending`, window by window.
#[allow(clippy::too_many_arguments)]
async fn catch_up(
    network: &EvmNetwork,
    store: &Store,
    source: &Arc<ContractSource>,
    state: &ContractSourceState,
    pending: RangeInclusive<u64>,
    first_stored: Option<u64>,
    options: CatchUpOptions,
    cancel: &CancellationToken,
) -> Result<(), CatchUpError> {
    let chain = network.spec.name.clone();
    let name = source.name().to_owned();
    let store_err = |source| CatchUpError::Store { chain: chain.clone(), source };
    let mut decoder = entry_decoder(store, &chain, source).await.map_err(store_err)?;
    // Blocks below the first stored one (all of them on a chain not indexed yet) are history to fetch.
    let stored_from = first_stored.unwrap_or(u64::MAX);
    info!(contract = %name, from = pending.start(), to = pending.end(), live_from = state.live_from, "catching up");
    metrics::gauge!("chainmux_contract_catch_up_remaining_blocks", "chain" => chain.clone(), "contract" => name.clone())
        .set((pending.end() - pending.start() + 1) as f64);
    let mut next = *pending.start();
    while next <= *pending.end() {
        if cancel.is_cancelled() {
            return Err(CatchUpError::Cancelled { chain });
        }
        let from_store = next >= stored_from;
        let limit =
            if from_store { *pending.end() } else { pending.end().min(&(stored_from - 1)).to_owned() };
        let to = limit.min(next.saturating_add(options.window.max(1) - 1));
        let mut delays = backoff();
        loop {
            match catch_up_window(network, store, &mut decoder, source, next..=to, from_store, options).await
            {
                Ok(()) => break,
                Err(err) if err.is_retryable() && !cancel.is_cancelled() => {
                    let delay = delays.next().unwrap_or(MAX_RETRY_DELAY);
                    warn!(contract = %name, from = next, to, %err, retry_in_ms = delay.as_millis() as u64, "contract catch-up window failed; retrying");
                    tokio::time::sleep(delay).await;
                    // The failed attempt may have taught the decoder children it never stored: start the window
                    // over from what is stored, or they would never be announced (and so never stored) again.
                    decoder = entry_decoder(store, &chain, source).await.map_err(store_err)?;
                }
                Err(WindowError::Network(source)) => {
                    return Err(CatchUpError::Network { chain, contract: name, source });
                }
                Err(WindowError::Store(source)) => return Err(CatchUpError::Store { chain, source }),
            }
        }
        metrics::gauge!("chainmux_contract_catch_up_remaining_blocks", "chain" => chain.clone(), "contract" => name.clone())
            .set(pending.end().saturating_sub(to) as f64);
        info!(contract = %name, caught_up_to = to, target = pending.end(), "contract catch-up progress");
        next = to + 1;
    }
    Ok(())
}

/// Longest wait between retries of a failed window.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(MAX_RETRY_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Why one window of a catch-up failed.
#[derive(Debug, thiserror::Error)]
enum WindowError {
    #[error(transparent)]
    Network(NetworkError),
    #[error(transparent)]
    Store(StoreError),
}

impl WindowError {
    /// Upstream hiccups and database errors are waited out, as the indexer does; anything else is a bug or a
    /// configuration problem.
    fn is_retryable(&self) -> bool {
        match self {
            Self::Network(err) => err.is_retryable(),
            Self::Store(err) => matches!(err, StoreError::Database(_)),
        }
    }
}

/// A decoder for one entry that knows the entry's stored children.
async fn entry_decoder(
    store: &Store,
    chain: &str,
    source: &Arc<ContractSource>,
) -> Result<EventDecoder, StoreError> {
    let mut decoder = EventDecoder::new(chain, vec![Arc::clone(source)]);
    for (entry, address, block) in store.factory_children(chain).await? {
        if entry == source.name() {
            decoder.add_child(&entry, Address::from_slice(&address), block);
        }
    }
    Ok(decoder)
}

/// Fetches, decodes and writes one window of an entry's catch-up, with its progress.
async fn catch_up_window(
    network: &EvmNetwork,
    store: &Store,
    decoder: &mut EventDecoder,
    source: &ContractSource,
    window: RangeInclusive<u64>,
    from_store: bool,
    options: CatchUpOptions,
) -> Result<(), WindowError> {
    let chain = &network.spec.name;
    let to = *window.end();
    let mut blocks = if from_store {
        let mut blocks = stored_window(store, chain, source, window).await.map_err(WindowError::Store)?;
        decoder.decode(&mut blocks);
        blocks
    } else {
        // Decoded while fetching: a factory's creations first, so its children are known.
        history_window(network, decoder, source, window, options).await.map_err(WindowError::Network)?
    };
    blocks.retain(|b| !b.events.is_empty() || !b.created_contracts.is_empty());
    store.write_catch_up(chain, source.name(), &blocks, to).await.map_err(WindowError::Store)?;
    Ok(())
}

/// Stored logs of the window that can matter to `source`: those with its topics (and its factory's), or all of them
/// when it has anonymous events, which have no topic to select by.
async fn stored_window(
    store: &Store,
    chain: &str,
    source: &ContractSource,
    window: RangeInclusive<u64>,
) -> Result<Vec<NormalizedBlock>, StoreError> {
    let topics = selecting_topics(source);
    store.stored_logs(chain, window, topics.as_deref()).await
}

/// The first topics that select `source`'s logs, `None` when they cannot (anonymous events).
fn selecting_topics(source: &ContractSource) -> Option<Vec<B256>> {
    if source.has_anonymous_events() {
        return None;
    }
    let mut topics = source.topic0s();
    if let SourceTarget::Factory { .. } = source.target() {
        topics.push(source.factory_topic0()?);
    }
    Some(topics)
}

/// One window of history from the upstreams, decoded: a factory's creations first (so its children are known), then
/// the logs of the entry's addresses, by address chunks or, for many children, by topic alone.
async fn history_window(
    network: &EvmNetwork,
    decoder: &mut EventDecoder,
    source: &ContractSource,
    window: RangeInclusive<u64>,
    options: CatchUpOptions,
) -> Result<Vec<NormalizedBlock>, NetworkError> {
    let topics = if source.has_anonymous_events() { Vec::new() } else { source.topic0s() };
    let (addresses, mut blocks) = match source.target() {
        SourceTarget::Addresses(addresses) => (addresses.clone(), Vec::new()),
        SourceTarget::Factory { address, .. } => {
            let factory_topics: Vec<B256> = source.factory_topic0().into_iter().collect();
            let mut creations = network
                .filtered_logs(window.clone(), &[*address], &factory_topics, options.address_chunk)
                .await?;
            // Registers the window's children; the creations are decoded again below with the children's logs,
            // which no longer announces them, so keep what this pass found.
            decoder.decode(&mut creations);
            let children = decoder.child_addresses(source.name());
            let children: Vec<Address> =
                children.into_iter().filter(|(_, created)| created <= window.end()).map(|(a, _)| a).collect();
            (children, creations)
        }
    };
    if addresses.is_empty() {
        return Ok(blocks);
    }
    let by_topic = addresses.len() > options.topic_only_above && !topics.is_empty();
    let logs = if by_topic {
        network.filtered_logs(window.clone(), &[], &topics, options.address_chunk).await?
    } else {
        network.filtered_logs(window.clone(), &addresses, &topics, options.address_chunk).await?
    };
    let created: Vec<_> =
        blocks.iter_mut().map(|b| (b.ptr, std::mem::take(&mut b.created_contracts))).collect();
    blocks = merge(blocks, logs);
    for block in &mut blocks {
        block.events.clear();
    }
    decoder.decode(&mut blocks);
    for (ptr, contracts) in created {
        if let Some(block) = blocks.iter_mut().find(|b| b.ptr == ptr) {
            block.created_contracts = contracts;
        }
    }
    Ok(blocks)
}

/// Two lists of log-only blocks as one, each block's logs in log-index order without repeats.
fn merge(a: Vec<NormalizedBlock>, b: Vec<NormalizedBlock>) -> Vec<NormalizedBlock> {
    let mut all: Vec<NormalizedBlock> = Vec::with_capacity(a.len() + b.len());
    let mut blocks: Vec<NormalizedBlock> = a.into_iter().chain(b).collect();
    blocks.sort_by_key(|block| block.ptr.number);
    for block in blocks {
        match all.last_mut() {
            Some(last) if last.ptr == block.ptr => last.logs.extend(block.logs),
            _ => all.push(block),
        }
    }
    for block in &mut all {
        block.logs.sort_by_key(|log| log.log_index);
        block.logs.dedup_by_key(|log| log.log_index);
    }
    all
}
