//! The chain's [`BlockDecoder`]: logs of the configured contracts, and of the children their factories create, into
//! decoded events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use alloy::primitives::{Address, B256};
use chainmux_core::{BlockDecoder, Bytes, CreatedContract, DecodedEvent, Log, NormalizedBlock};
use tracing::{debug, warn};

use super::source::{ContractSource, Failure, Outcome, Reason, SourceTarget};

/// Decodes the logs of a chain's `[[chains.contracts]]` entries block by block, and follows the children their
/// factories create.
///
/// Sources are indexed by address, so a log of an address nobody watches costs one hash lookup. Each source
/// decodes independently: a log of an address two entries watch can give a row for each, in source order.
#[derive(Debug)]
pub struct EventDecoder {
    chain: String,
    sources: Vec<Arc<ContractSource>>,
    by_name: HashMap<String, usize>,
    /// Address → the sources decoding its logs and from which block, by source position.
    watched: HashMap<Address, Vec<Watch>>,
    /// Factory address → the sources following it.
    factories: HashMap<Address, Vec<usize>>,
    /// Per source (by position): its known children and the block that created each.
    children: Vec<HashMap<Address, u64>>,
}

/// One source watching an address.
#[derive(Debug, Clone, Copy)]
struct Watch {
    source: usize,
    /// First block whose logs of the address the source decodes.
    from: u64,
}

impl EventDecoder {
    /// A decoder for `sources` of `chain` (the `chain` label of its metrics), with no factory children known yet
    /// (see [`Self::add_child`]).
    pub fn new(chain: &str, sources: Vec<Arc<ContractSource>>) -> Self {
        let mut by_name = HashMap::with_capacity(sources.len());
        let mut watched: HashMap<Address, Vec<Watch>> = HashMap::new();
        let mut factories: HashMap<Address, Vec<usize>> = HashMap::new();
        for (i, source) in sources.iter().enumerate() {
            by_name.entry(source.name().to_owned()).or_insert(i);
            match source.target() {
                SourceTarget::Addresses(addresses) => {
                    for address in addresses {
                        watched
                            .entry(*address)
                            .or_default()
                            .push(Watch { source: i, from: source.start_block() });
                    }
                }
                SourceTarget::Factory { address, .. } => factories.entry(*address).or_default().push(i),
            }
        }
        let children = vec![HashMap::new(); sources.len()];
        Self { chain: chain.to_owned(), sources, by_name, watched, factories, children }
    }

    /// A child that the factory of `source` created at block `created_at` (loaded from the `contracts` table at
    /// start-up): its logs are decoded from `max(created_at, start_block)` on. Idempotent; ignored for an unknown
    /// source or one that is not a factory entry.
    pub fn add_child(&mut self, source: &str, address: Address, created_at: u64) {
        let Some(&i) = self.by_name.get(source) else {
            debug!(chain = %self.chain, contract = source, %address, "child of an unknown contract entry ignored");
            return;
        };
        if self.sources[i].factory().is_none() {
            debug!(chain = %self.chain, contract = source, %address, "child of a non-factory entry ignored");
            return;
        }
        let start_block = self.sources[i].start_block();
        register(&mut self.children[i], &mut self.watched, i, start_block, address, created_at);
    }

    /// Number of known children of `source` (0 for an unknown source).
    pub fn children(&self, source: &str) -> usize {
        self.by_name.get(source).map_or(0, |&i| self.children[i].len())
    }

    /// Addresses of the known children of `source` with the block that created each, by block then address.
    pub fn child_addresses(&self, source: &str) -> Vec<(Address, u64)> {
        let Some(&i) = self.by_name.get(source) else { return Vec::new() };
        let mut children: Vec<(Address, u64)> = self.children[i].iter().map(|(a, b)| (*a, *b)).collect();
        children.sort_unstable_by_key(|(address, block)| (*block, *address));
        children
    }

    /// Registers the children that the factory events of `block` announce, in log order, each new one also in
    /// `block.created_contracts`.
    fn scan_factories(&mut self, block: &mut NormalizedBlock) {
        let number = block.ptr.number;
        for log in &block.logs {
            let Some(address) = address_of(log) else { continue };
            let Some(following) = self.factories.get(&address) else { continue };
            for &i in following {
                let source = &self.sources[i];
                let Some(factory) = source.factory() else { continue };
                if number < source.start_block() {
                    continue;
                }
                match factory.child(&log.topics, &log.data) {
                    None => {}
                    Some(Ok(child)) => {
                        let new = register(
                            &mut self.children[i],
                            &mut self.watched,
                            i,
                            source.start_block(),
                            child,
                            number,
                        );
                        if new {
                            block.created_contracts.push(CreatedContract {
                                contract: source.name().to_owned(),
                                address: Bytes::copy_from_slice(child.as_slice()),
                                factory: Bytes::copy_from_slice(factory.address.as_slice()),
                                tx_hash: log.tx_hash.clone(),
                                log_index: log.log_index,
                            });
                        }
                    }
                    Some(Err(error)) => report(
                        &self.chain,
                        source.name(),
                        number,
                        log,
                        &Failure { reason: Reason::Malformed, error },
                    ),
                }
            }
        }
    }
}

impl BlockDecoder for EventDecoder {
    /// For each block: first the factory events (so children created in the block are known, and their logs
    /// earlier in the block than their creation, constructor events, decoded), then every log of a watched address,
    /// appended to `events` by log index, then source order.
    fn decode(&mut self, blocks: &mut [NormalizedBlock]) {
        let mut decoded = vec![0u64; self.sources.len()];
        for block in blocks.iter_mut() {
            if !self.factories.is_empty() {
                self.scan_factories(block);
            }
            let number = block.ptr.number;
            let first_new = block.events.len();
            for log in &block.logs {
                let Some(address) = address_of(log) else { continue };
                let Some(watches) = self.watched.get(&address) else { continue };
                for watch in watches.iter().filter(|watch| number >= watch.from) {
                    let source = &self.sources[watch.source];
                    match source.decode_log(&log.topics, &log.data) {
                        Outcome::Decoded(event, args) => {
                            decoded[watch.source] += 1;
                            block.events.push(DecodedEvent {
                                tx_hash: log.tx_hash.clone(),
                                tx_index: log.tx_index,
                                log_index: log.log_index,
                                address: log.address.clone(),
                                contract: source.name().to_owned(),
                                name: event.name.clone(),
                                signature: event.signature.clone(),
                                args,
                            });
                        }
                        Outcome::Skipped => {}
                        Outcome::Failed(failure) => report(&self.chain, source.name(), number, log, &failure),
                    }
                }
            }
            // Logs come in log-index order; if they did not, the stable sort keeps source order per log.
            let new = &mut block.events[first_new..];
            if !new.is_sorted_by_key(|event| event.log_index) {
                new.sort_by_key(|event| event.log_index);
            }
        }
        for (source, count) in self.sources.iter().zip(decoded) {
            if count > 0 {
                metrics::counter!(
                    "chainmux_events_decoded_total",
                    "chain" => self.chain.clone(),
                    "contract" => source.name().to_owned()
                )
                .increment(count);
            }
        }
    }

    fn revert(&mut self, to: u64) {
        let watched = &mut self.watched;
        for (i, children) in self.children.iter_mut().enumerate() {
            children.retain(|address, created| {
                if *created <= to {
                    return true;
                }
                if let Some(watches) = watched.get_mut(address) {
                    watches.retain(|watch| watch.source != i);
                    if watches.is_empty() {
                        watched.remove(address);
                    }
                }
                false
            });
        }
    }
}

/// Records that source `i` has the child `address` created at block `created`, watching its logs from
/// `max(start_block, created)`. True if the child was not known; a known one keeps the earlier creation block.
fn register(
    children: &mut HashMap<Address, u64>,
    watched: &mut HashMap<Address, Vec<Watch>>,
    i: usize,
    start_block: u64,
    address: Address,
    created: u64,
) -> bool {
    let new = match children.get_mut(&address) {
        Some(known) if *known <= created => return false,
        Some(known) => {
            *known = created;
            false
        }
        None => {
            children.insert(address, created);
            true
        }
    };
    let from = created.max(start_block);
    let watches = watched.entry(address).or_default();
    match watches.binary_search_by_key(&i, |watch| watch.source) {
        Ok(at) => watches[at].from = from,
        Err(at) => watches.insert(at, Watch { source: i, from }),
    }
    new
}

fn address_of(log: &Log) -> Option<Address> {
    Address::try_from(log.address.as_ref()).ok()
}

/// (chain, contract, topic0) of the unknown events already warned about: a contract emitting an event its ABI
/// lacks would otherwise warn for every log.
static WARNED_UNKNOWN: LazyLock<Mutex<HashSet<(String, String, B256)>>> = LazyLock::new(Default::default);

/// Counts a log of a watched address that did not decode, and logs where it is: a warning, except for an unknown
/// topic0 already warned about for the contract in this process (debug then).
fn report(chain: &str, contract: &str, block: u64, log: &Log, failure: &Failure) {
    let reason = failure.reason.as_str();
    metrics::counter!(
        "chainmux_events_decode_failures_total",
        "chain" => chain.to_owned(),
        "contract" => contract.to_owned(),
        "reason" => reason
    )
    .increment(1);
    let first = failure.reason != Reason::UnknownEvent || {
        let topic0 = log.topics.first().copied().unwrap_or_default();
        // A poisoned set only costs repeated warnings.
        WARNED_UNKNOWN
            .lock()
            .map_or(true, |mut warned| warned.insert((chain.to_owned(), contract.to_owned(), topic0)))
    };
    let tx = &log.tx_hash;
    let address = &log.address;
    let error = &failure.error;
    if first {
        warn!(
            chain, block, %tx, log_index = log.log_index, %address, contract, reason, %error,
            "log of a watched contract does not decode with its ABI"
        );
    } else {
        debug!(
            chain, block, %tx, log_index = log.log_index, %address, contract, reason, %error,
            "log of a watched contract does not decode with its ABI"
        );
    }
}
