//! What `eth_subscribe` serves, fed from the indexer's canonical stream rather than an upstream's socket, so one
//! upstream dying never drops a subscriber.
//!
//! Each EVM chain with an event source gets one [`Hub`] task, started by its first subscriber. It turns the
//! indexer's [`ChainEvent`]s into [`HubEvent`]s every WebSocket connection of the chain receives:
//! - each new canonical block once, with its geth-format header (fetched once per block through the pool, and only
//!   while someone listens for `newHeads`) and its logs rendered as `eth_getLogs` renders them;
//! - on a rollback, the blocks removed, newest first, so `logs` subscribers get every log they were sent from
//!   them again with `removed: true` before the new branch's logs (as geth does). Blocks sent recently are kept
//!   for that, up to [`RECENT_BLOCKS`].
//!
//! When the hub falls behind the indexer's channel it cannot know what it missed; it says so
//! ([`HubEvent::Lagged`]) and connections close their subscriptions rather than silently skip logs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chainmux_core::{B256, BlockPtr, ChainEvent, NormalizedBlock};
use chainmux_rpc::Pool;
use futures_util::future::join_all;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;
use tracing::Instrument;

/// Blocks whose logs the hub remembers for `removed: true` notifications: deeper than any reorg the indexer
/// follows by default (`max_reorg_depth` 128 on EVM), so every removed block is still known.
pub(crate) const RECENT_BLOCKS: usize = 1024;
/// Hub events a connection may fall behind by before it is told it lagged (and closed).
const HUB_BUFFER: usize = 1024;
/// Attempts at fetching a new block's header before `newHeads` falls back to the fields the index has.
const HEADER_ATTEMPTS: u32 = 3;
/// Pause between header attempts: an upstream a little behind the indexer may not know the block yet.
const HEADER_RETRY: Duration = Duration::from_millis(200);
/// Most topic positions a filter may constrain, as geth allows.
const MAX_TOPICS: usize = 4;
/// Most addresses, and most alternatives at one topic position, a filter may list (geth's limits too): a
/// subscription's filter stays small however large the message carrying it.
const MAX_ALTERNATIVES: usize = 1000;

/// One block as subscribers see it.
#[derive(Debug)]
pub(crate) struct BlockNote {
    pub(crate) ptr: BlockPtr,
    /// The `newHeads` notification's result; `None` when nobody listened for heads as the block arrived.
    header: Option<Value>,
    parent_hash: B256,
    timestamp: u64,
    pub(crate) logs: Vec<LogNote>,
}

impl BlockNote {
    /// The `newHeads` notification's result: the fetched header, or the fields the index has when none was
    /// fetched (a subscription that started while the block was being prepared).
    pub(crate) fn header(&self) -> Value {
        match &self.header {
            Some(header) => header.clone(),
            None => indexed_header(self.ptr, self.parent_hash, self.timestamp),
        }
    }
}

/// The header fields the index has.
fn indexed_header(ptr: BlockPtr, parent_hash: B256, timestamp: u64) -> Value {
    json!({
        "number": quantity(ptr.number),
        "hash": ptr.hash.to_string(),
        "parentHash": parent_hash.to_string(),
        "timestamp": quantity(timestamp),
    })
}

/// One log, with what filters match on kept apart from its rendering.
#[derive(Debug)]
pub(crate) struct LogNote {
    address: Vec<u8>,
    topics: Vec<B256>,
    /// geth's log object without `removed`.
    json: Map<String, Value>,
}

impl LogNote {
    /// The `logs` notification's result.
    pub(crate) fn render(&self, removed: bool) -> Value {
        let mut json = self.json.clone();
        json.insert("removed".to_owned(), Value::Bool(removed));
        Value::Object(json)
    }
}

/// What a hub tells every connection of its chain, in order.
#[derive(Debug)]
pub(crate) enum HubEvent {
    /// A new canonical block.
    Block(Arc<BlockNote>),
    /// These blocks left the canonical chain; newest first.
    Removed(Vec<Arc<BlockNote>>),
    /// The hub missed indexer events: what was removed or added meanwhile is unknown.
    Lagged,
    /// The chain's event source is gone (the indexer stopped).
    Closed,
}

/// The per-chain fan-out of [`HubEvent`]s.
#[derive(Debug)]
pub(crate) struct Hub {
    events: broadcast::Sender<Arc<HubEvent>>,
    /// Open `newHeads` subscriptions: headers are fetched only while there is one.
    heads_listeners: AtomicUsize,
}

impl Hub {
    /// Starts chain `chain`'s hub task on `source`, the indexer's events; headers come through `pool`.
    pub(crate) fn start(chain: &str, pool: Arc<Pool>, source: broadcast::Receiver<ChainEvent>) -> Arc<Hub> {
        let (events, _) = broadcast::channel(HUB_BUFFER);
        let hub = Arc::new(Hub { events, heads_listeners: AtomicUsize::new(0) });
        let span = tracing::info_span!("subscription_hub", chain = %chain);
        tokio::spawn(run(Arc::downgrade(&hub), pool, source).instrument(span));
        hub
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<HubEvent>> {
        self.events.subscribe()
    }

    /// Counts a `newHeads` subscription until the returned guard drops.
    pub(crate) fn listen_heads(self: &Arc<Self>) -> HeadsListener {
        self.heads_listeners.fetch_add(1, Ordering::SeqCst);
        HeadsListener(self.clone())
    }
}

/// A `newHeads` subscription's claim on header fetching.
#[derive(Debug)]
pub(crate) struct HeadsListener(Arc<Hub>);

impl Drop for HeadsListener {
    fn drop(&mut self) {
        self.0.heads_listeners.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The hub task: runs until the indexer's channel closes or the hub is dropped.
async fn run(hub: std::sync::Weak<Hub>, pool: Arc<Pool>, mut source: broadcast::Receiver<ChainEvent>) {
    let mut recent: VecDeque<Arc<BlockNote>> = VecDeque::new();
    loop {
        let event = source.recv().await;
        let Some(hub) = hub.upgrade() else { return };
        match event {
            Ok(ChainEvent::Apply(blocks)) => {
                // Only blocks not sent already: a batch repeating the head must not repeat its logs.
                let fresh: Vec<&NormalizedBlock> =
                    blocks.iter().filter(|b| !recent.iter().any(|r| r.ptr == b.ptr)).collect();
                let Some(first) = fresh.first() else { continue };
                // A block at or below the last one sent replaces it: a rollback the hub was not told about.
                let replaced = take_above(&mut recent, first.ptr.number.saturating_sub(1));
                if !replaced.is_empty() {
                    let _ = hub.events.send(Arc::new(HubEvent::Removed(replaced)));
                }
                let want_headers = hub.heads_listeners.load(Ordering::SeqCst) > 0;
                let headers = if want_headers {
                    join_all(fresh.iter().map(|block| header(&pool, block))).await
                } else {
                    vec![None; fresh.len()]
                };
                for (block, header) in fresh.into_iter().zip(headers) {
                    let note = Arc::new(BlockNote {
                        ptr: block.ptr,
                        header,
                        parent_hash: block.parent_hash(),
                        timestamp: block.timestamp,
                        logs: render_logs(block),
                    });
                    recent.push_back(note.clone());
                    if recent.len() > RECENT_BLOCKS {
                        recent.pop_front();
                    }
                    // No connection listening is fine.
                    let _ = hub.events.send(Arc::new(HubEvent::Block(note)));
                }
            }
            Ok(ChainEvent::Revert { to, .. }) => {
                let removed = take_above(&mut recent, to.number);
                tracing::debug!(to = to.number, removed = removed.len(), "revert");
                if !removed.is_empty() {
                    let _ = hub.events.send(Arc::new(HubEvent::Removed(removed)));
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "subscription hub fell behind the indexer; closing subscriptions");
                recent.clear();
                let _ = hub.events.send(Arc::new(HubEvent::Lagged));
            }
            Err(broadcast::error::RecvError::Closed) => {
                let _ = hub.events.send(Arc::new(HubEvent::Closed));
                return;
            }
        }
    }
}

/// Removes the blocks above `number` from `recent`; newest first.
fn take_above(recent: &mut VecDeque<Arc<BlockNote>>, number: u64) -> Vec<Arc<BlockNote>> {
    let mut removed = Vec::new();
    while recent.back().is_some_and(|b| b.ptr.number > number) {
        removed.extend(recent.pop_back());
    }
    removed
}

fn quantity(value: u64) -> Value {
    Value::String(format!("{value:#x}"))
}

/// The block's logs in geth's shape (`removed` is added per notification).
fn render_logs(block: &NormalizedBlock) -> Vec<LogNote> {
    let block_hash = Value::String(block.ptr.hash.to_string());
    let block_number = quantity(block.ptr.number);
    let timestamp = quantity(block.timestamp);
    block
        .logs
        .iter()
        .map(|log| {
            let mut json = Map::new();
            json.insert("address".into(), Value::String(log.address.to_string()));
            json.insert("topics".into(), log.topics.iter().map(|t| Value::String(t.to_string())).collect());
            json.insert("data".into(), Value::String(log.data.to_string()));
            json.insert("blockHash".into(), block_hash.clone());
            json.insert("blockNumber".into(), block_number.clone());
            // Recent geth and anvil give it too (saves clients a header lookup).
            json.insert("blockTimestamp".into(), timestamp.clone());
            json.insert("transactionHash".into(), Value::String(log.tx_hash.to_string()));
            json.insert("transactionIndex".into(), quantity(log.tx_index.into()));
            json.insert("logIndex".into(), quantity(log.log_index.into()));
            LogNote { address: log.address.to_vec(), topics: log.topics.clone(), json }
        })
        .collect()
}

/// Fields of `eth_getBlockByHash` that are not part of a header (geth's `newHeads` leaves them out).
const NOT_HEADER: &[&str] = &["transactions", "uncles", "withdrawals", "size", "totalDifficulty"];

/// `block`'s header as geth's `newHeads` sends it, fetched through the pool. When no upstream gives it, the fields
/// the index has (number, hash, parentHash, timestamp), so the subscriber still learns of the block.
async fn header(pool: &Pool, block: &NormalizedBlock) -> Option<Value> {
    let params = json!([block.ptr.hash.to_string(), false]);
    let params = serde_json::value::to_raw_value(&params).ok()?;
    for attempt in 1..=HEADER_ATTEMPTS {
        match pool.call("eth_getBlockByHash", &params).await.map(|raw| serde_json::from_str(raw.get())) {
            Ok(Ok(Value::Object(mut fields))) => {
                for field in NOT_HEADER {
                    fields.remove(*field);
                }
                return Some(Value::Object(fields));
            }
            Ok(_) => {
                tracing::debug!(attempt, number = block.ptr.number, "upstream does not know the block yet")
            }
            Err(err) => tracing::debug!(attempt, number = block.ptr.number, %err, "cannot fetch the header"),
        }
        if attempt < HEADER_ATTEMPTS {
            tokio::time::sleep(HEADER_RETRY).await;
        }
    }
    tracing::warn!(number = block.ptr.number, "no upstream gave the header; sending the indexed fields only");
    None
}

/// A `logs` subscription's filter, with geth's semantics: any of `addresses` (none = any), and per topic
/// position any of the listed topics (an empty list, from `null`, matches anything there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LogFilter {
    addresses: Vec<Vec<u8>>,
    topics: Vec<Vec<B256>>,
}

impl LogFilter {
    /// Parses `eth_subscribe("logs", filter)`'s filter object as geth does; the error names the field.
    pub(crate) fn parse(filter: Option<&Value>) -> Result<LogFilter, String> {
        let fields = match filter {
            None | Some(Value::Null) => return Ok(LogFilter::default()),
            Some(Value::Object(fields)) => fields,
            Some(_) => return Err("invalid logs filter: expected an object".to_owned()),
        };
        if fields.get("blockHash").is_some_and(|v| !v.is_null()) {
            return Err("invalid logs filter: blockHash is not supported by subscriptions".to_owned());
        }
        for key in ["fromBlock", "toBlock"] {
            match fields.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(tag)) if tag == "latest" => {}
                Some(_) => {
                    return Err(format!("invalid logs filter: {key} is not supported by subscriptions"));
                }
            }
        }
        let addresses = match fields.get("address") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(one)) => vec![address(one).ok_or("invalid logs filter: invalid address")?],
            Some(Value::Array(many)) if many.len() > MAX_ALTERNATIVES => {
                return Err(format!("invalid logs filter: more than {MAX_ALTERNATIVES} addresses"));
            }
            Some(Value::Array(many)) => many
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    a.as_str()
                        .and_then(address)
                        .ok_or_else(|| format!("invalid logs filter: invalid address at index {i}"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("invalid logs filter: address must be a string or an array".to_owned()),
        };
        let topics = match fields.get("topics") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(positions)) => {
                if positions.len() > MAX_TOPICS {
                    return Err(format!("invalid logs filter: more than {MAX_TOPICS} topics"));
                }
                positions.iter().enumerate().map(|(i, p)| topic_position(i, p)).collect::<Result<_, _>>()?
            }
            Some(_) => return Err("invalid logs filter: topics must be an array".to_owned()),
        };
        Ok(LogFilter { addresses, topics })
    }

    pub(crate) fn matches(&self, log: &LogNote) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(&log.address) {
            return false;
        }
        if self.topics.len() > log.topics.len() {
            return false;
        }
        self.topics.iter().zip(&log.topics).all(|(wanted, topic)| wanted.is_empty() || wanted.contains(topic))
    }
}

fn address(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))?;
    let mut bytes = [0u8; 20];
    alloy::hex::decode_to_slice(digits, &mut bytes).ok()?;
    Some(bytes.to_vec())
}

/// One topic position: `null` (any), a topic, or an array of topics any of which matches (a `null` in it makes the
/// position match anything, as in geth).
fn topic_position(index: usize, position: &Value) -> Result<Vec<B256>, String> {
    let topic = |value: &str| {
        value.parse::<B256>().map_err(|_| format!("invalid logs filter: invalid topic at index {index}"))
    };
    match position {
        Value::Null => Ok(Vec::new()),
        Value::String(one) => Ok(vec![topic(one)?]),
        Value::Array(any) if any.len() > MAX_ALTERNATIVES => Err(format!(
            "invalid logs filter: more than {MAX_ALTERNATIVES} alternatives for the topic at index {index}"
        )),
        Value::Array(any) => {
            let mut topics = Vec::with_capacity(any.len());
            for value in any {
                match value {
                    Value::Null => return Ok(Vec::new()),
                    Value::String(one) => topics.push(topic(one)?),
                    _ => return Err(format!("invalid logs filter: invalid topic at index {index}")),
                }
            }
            Ok(topics)
        }
        _ => Err(format!("invalid logs filter: invalid topic at index {index}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(address: u8, topics: &[u8]) -> LogNote {
        LogNote {
            address: vec![address; 20],
            topics: topics.iter().map(|t| B256::repeat_byte(*t)).collect(),
            json: Map::new(),
        }
    }

    fn hex(byte: u8, len: usize) -> String {
        format!("0x{}", format!("{byte:02x}").repeat(len))
    }

    fn filter(value: Value) -> LogFilter {
        LogFilter::parse(Some(&value)).expect("valid filter")
    }

    #[test]
    fn filters_match_as_geth() {
        let any = LogFilter::parse(None).expect("no filter");
        assert!(any.matches(&log(1, &[])));
        let by_address = filter(json!({"address": hex(1, 20)}));
        assert!(by_address.matches(&log(1, &[7])) && !by_address.matches(&log(2, &[7])));
        let addresses = filter(json!({"address": [hex(1, 20), hex(2, 20)]}));
        assert!(addresses.matches(&log(2, &[])) && !addresses.matches(&log(3, &[])));
        // Wildcard in position 0, an OR in position 1.
        let topics = filter(json!({"topics": [null, [hex(5, 32), hex(6, 32)]]}));
        assert!(topics.matches(&log(9, &[1, 6, 3])));
        assert!(!topics.matches(&log(9, &[1, 7])));
        // More positions constrained than the log has topics: no match, even with wildcards.
        assert!(!filter(json!({"topics": [null, null]})).matches(&log(9, &[1])));
        // A null inside an OR array is a wildcard.
        assert!(filter(json!({"topics": [[hex(5, 32), null]]})).matches(&log(9, &[8])));
    }

    #[test]
    fn bad_filters_name_the_field() {
        let err = |value: Value| LogFilter::parse(Some(&value)).expect_err("invalid");
        assert!(err(json!({"address": "0x12"})).contains("invalid address"));
        assert!(err(json!({"address": [hex(1, 20), "x"]})).contains("address at index 1"));
        assert!(err(json!({"topics": [null, "0x1"]})).contains("topic at index 1"));
        assert!(err(json!({"topics": [null, null, null, null, null]})).contains("more than 4 topics"));
        assert!(err(json!({"blockHash": hex(1, 32)})).contains("blockHash"));
        assert!(err(json!({"fromBlock": "0x1"})).contains("fromBlock"));
        assert!(err(json!(5)).contains("expected an object"));
        let many = |n: usize| (0..n).map(|i| hex((i % 250) as u8, 20)).collect::<Vec<_>>();
        assert!(err(json!({"address": many(1001)})).contains("more than 1000 addresses"));
        assert!(LogFilter::parse(Some(&json!({"address": many(1000)}))).is_ok());
        let topics = (0..1001).map(|i| hex((i % 250) as u8, 32)).collect::<Vec<_>>();
        assert!(err(json!({"topics": [null, topics]})).contains("alternatives for the topic at index 1"));
    }
}
