//! The JSON-RPC proxy's in-memory response cache: answers the policy accepts (see [`crate::cache_policy`]) are
//! kept and served again without asking an upstream.
//!
//! Entries are keyed by chain, method and the params in canonical JSON (object keys sorted, no whitespace), so
//! two spellings of one question share an entry. The cache is bounded by entries and by bytes and evicts the
//! least recently used entry first; it is one `Mutex` around a hash map plus a recency index, held only for a
//! lookup or an insert (never across an upstream call). Two identical requests that miss at the same time both go
//! upstream; the second answer simply replaces the first.
//!
//! An entry is either final (kept until the bounds evict it) or unfinalized: it depends on a block above the
//! chain's finalized head, expires after [`RpcCacheLimits::unfinalized_ttl`] and is dropped when that block is
//! reverted ([`RpcCache::evict_above`]). Unfinalized entries are indexed by chain and block, so a reorg removes
//! exactly the entries above the fork without a scan.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;

/// Bounds of the response cache. Defaults: 10,000 entries, 64 MiB, 8 MiB per entry, unfinalized answers kept 2 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcCacheLimits {
    /// Most entries kept; 0 disables the cache.
    pub max_entries: usize,
    /// Most bytes kept: keys plus answers plus a fixed overhead per entry.
    pub max_bytes: usize,
    /// Answers larger than this are not kept at all (a huge block would evict everything else).
    pub max_entry_bytes: usize,
    /// How long an answer about a block above the finalized head is kept (it is also dropped when the block is
    /// reverted); zero keeps none.
    pub unfinalized_ttl: Duration,
}

impl Default for RpcCacheLimits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 64 << 20,
            max_entry_bytes: 8 << 20,
            unfinalized_ttl: Duration::from_secs(2),
        }
    }
}

/// Bookkeeping bytes counted per entry besides its key and answer (map slots, the recency index, the `Arc`).
const ENTRY_OVERHEAD: usize = 96;

/// A cache key: `[chain, method, params]` as canonical JSON, which no two different questions share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey(String);

impl CacheKey {
    pub(crate) fn new(chain: &str, method: &str, params: &Value) -> Self {
        let mut text = String::with_capacity(64);
        text.push('[');
        push_json(&mut text, &Value::String(chain.to_owned()));
        text.push(',');
        push_json(&mut text, &Value::String(method.to_owned()));
        text.push(',');
        push_json(&mut text, params);
        text.push(']');
        Self(text)
    }

    /// The canonical JSON text, e.g. for naming the answer in a shared cache.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Appends `value` as compact JSON with object keys in sorted order, whatever order the map keeps.
fn push_json(out: &mut String, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                push_json(out, item);
            }
            out.push('}');
        }
        // Scalars have one compact spelling.
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Why entries left the cache, the `reason` label of `chainmux_rpc_cache_evictions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The entry or byte bound was reached (least recently used first).
    Size,
    /// An unfinalized entry outlived its TTL.
    Ttl,
    /// The block an unfinalized entry depends on was reverted (or the reorg stream lagged).
    Reorg,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Ttl => "ttl",
            Self::Reorg => "reorg",
        }
    }
}

fn count_evictions(reason: Reason, evicted: u64) {
    if evicted > 0 {
        metrics::counter!("chainmux_rpc_cache_evictions_total", "reason" => reason.as_str())
            .increment(evicted);
    }
}

/// A bounded LRU map of raw JSON-RPC results.
#[derive(Debug)]
pub(crate) struct RpcCache {
    limits: RpcCacheLimits,
    lru: Mutex<Lru>,
    /// Bumped (under the lock) by every reorg eviction. An unfinalized answer is only kept when no eviction ran
    /// since its request was planned ([`RpcCache::epoch`]): an answer from the abandoned branch that arrives after
    /// the eviction must not come back.
    epoch: AtomicU64,
}

/// Where an unfinalized entry sits in the reorg index: chain, block, key.
type Scope = (Arc<str>, u64, Arc<str>);

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<Arc<str>, Entry>,
    /// Recency stamp → key; the first entry is the least recently used.
    recency: BTreeMap<u64, Arc<str>>,
    /// The unfinalized entries by chain and block.
    unfinalized: BTreeSet<Scope>,
    clock: u64,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    /// Shared, so a hit copies the answer after the lock is released.
    result: Arc<RawValue>,
    stamp: u64,
    cost: usize,
    /// Unfinalized entries only: where they are in the reorg index and when they expire.
    unfinalized: Option<(Scope, Instant)>,
}

impl Lru {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn remove(&mut self, key: &str) -> bool {
        let Some(entry) = self.entries.remove(key) else { return false };
        self.recency.remove(&entry.stamp);
        self.forget(entry);
        true
    }

    /// Bookkeeping of an entry already taken out of `entries` and `recency`.
    fn forget(&mut self, entry: Entry) {
        self.bytes -= entry.cost;
        if let Some((scope, _)) = entry.unfinalized {
            self.unfinalized.remove(&scope);
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.recency.pop_first() else { return false };
        if let Some(entry) = self.entries.remove(&key) {
            self.forget(entry);
        }
        true
    }

    /// Removes chain `chain`'s unfinalized entries with a block of at least `from`; how many.
    fn remove_unfinalized(&mut self, chain: &str, from: u64) -> u64 {
        let chain: Arc<str> = Arc::from(chain);
        let low: Scope = (chain.clone(), from, Arc::from(""));
        let doomed: Vec<Arc<str>> = self
            .unfinalized
            .range(low..)
            .take_while(|(c, _, _)| *c == chain)
            .map(|(_, _, key)| key.clone())
            .collect();
        let mut removed = 0;
        for key in doomed {
            removed += u64::from(self.remove(&key));
        }
        removed
    }
}

/// How long a kept answer stays valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retention {
    /// It can never change: kept until the bounds evict it.
    Final,
    /// It depends on block `block` (and below) of the chain, which is above the finalized head: kept for the
    /// unfinalized TTL, and dropped when that block is reverted.
    Unfinalized { block: u64 },
}

impl RpcCache {
    pub(crate) fn new(limits: RpcCacheLimits) -> Self {
        Self { limits, lru: Mutex::default(), epoch: AtomicU64::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // Every update leaves the maps consistent before anything can panic, so a poisoned lock is still usable.
        self.lru.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether anything can be kept at all (`max_entries` is not 0).
    pub(crate) fn enabled(&self) -> bool {
        self.limits.max_entries > 0
    }

    /// The reorg epoch to hand back to [`RpcCache::insert`]; read it before asking an upstream.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The kept answer to `key`, now the most recently used. An expired unfinalized answer is dropped instead.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Box<RawValue>> {
        let result = {
            let mut guard = self.lock();
            let stamp = guard.tick();
            let lru = &mut *guard;
            let entry = lru.entries.get_mut(key.0.as_str())?;
            if entry.unfinalized.as_ref().is_some_and(|(_, expires)| *expires <= Instant::now()) {
                lru.remove(key.0.as_str());
                drop(guard);
                count_evictions(Reason::Ttl, 1);
                return None;
            }
            if let Some(key) = lru.recency.remove(&entry.stamp) {
                lru.recency.insert(stamp, key);
            }
            entry.stamp = stamp;
            Arc::clone(&entry.result)
        };
        Some((*result).to_owned())
    }

    /// Keeps `result` under `key` of chain `chain` (replacing an earlier answer) for as long as `retention` says,
    /// evicting the least recently used entries beyond the limits. Not kept: an answer larger than
    /// `max_entry_bytes` (or `max_bytes`), an unfinalized one when the TTL is zero, and an unfinalized one whose
    /// request was planned before the last reorg eviction (`epoch` is what [`RpcCache::epoch`] said then).
    pub(crate) fn insert(
        &self,
        chain: &str,
        key: CacheKey,
        result: Box<RawValue>,
        retention: Retention,
        epoch: u64,
    ) {
        let cost = key.0.len() + result.get().len() + ENTRY_OVERHEAD;
        if cost > self.limits.max_entry_bytes.min(self.limits.max_bytes) || self.limits.max_entries == 0 {
            return;
        }
        let unfinalized_block = match retention {
            Retention::Final => None,
            Retention::Unfinalized { .. } if self.limits.unfinalized_ttl.is_zero() => return,
            Retention::Unfinalized { block } => Some(block),
        };
        let key: Arc<str> = Arc::from(key.0);
        let mut lru = self.lock();
        if unfinalized_block.is_some() && self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        lru.remove(&key);
        let unfinalized = unfinalized_block.map(|block| {
            let scope: Scope = (Arc::from(chain), block, key.clone());
            lru.unfinalized.insert(scope.clone());
            (scope, Instant::now() + self.limits.unfinalized_ttl)
        });
        let stamp = lru.tick();
        lru.recency.insert(stamp, key.clone());
        lru.entries.insert(key, Entry { result: Arc::from(result), stamp, cost, unfinalized });
        lru.bytes += cost;
        let mut evicted = 0u64;
        while lru.entries.len() > self.limits.max_entries || lru.bytes > self.limits.max_bytes {
            if !lru.evict_oldest() {
                break;
            }
            evicted += 1;
        }
        let (entries, bytes) = (lru.entries.len(), lru.bytes);
        drop(lru);
        count_evictions(Reason::Size, evicted);
        metrics::gauge!("chainmux_rpc_cache_entries").set(entries as f64);
        metrics::gauge!("chainmux_rpc_cache_bytes").set(bytes as f64);
    }

    /// Chain `chain` reverted every block above `to`: drops its unfinalized entries about those blocks.
    pub(crate) fn evict_above(&self, chain: &str, to: u64) -> u64 {
        self.evict_unfinalized_from(chain, to.saturating_add(1))
    }

    /// Drops every unfinalized entry of chain `chain` (its reorg stream lagged: which blocks went is unknown).
    pub(crate) fn evict_unfinalized(&self, chain: &str) -> u64 {
        self.evict_unfinalized_from(chain, 0)
    }

    fn evict_unfinalized_from(&self, chain: &str, from: u64) -> u64 {
        let mut lru = self.lock();
        // Under the lock, so an insert either lands before the eviction (and is evicted) or sees the new epoch.
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let removed = lru.remove_unfinalized(chain, from);
        let (entries, bytes) = (lru.entries.len(), lru.bytes);
        drop(lru);
        count_evictions(Reason::Reorg, removed);
        metrics::gauge!("chainmux_rpc_cache_entries").set(entries as f64);
        metrics::gauge!("chainmux_rpc_cache_bytes").set(bytes as f64);
        removed
    }

    #[cfg(test)]
    fn usage(&self) -> (usize, usize) {
        let lru = self.lock();
        (lru.entries.len(), lru.bytes)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(value: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&value).expect("raw")
    }

    fn key(n: u64) -> CacheKey {
        CacheKey::new("sol", "getBlock", &json!([n, {"commitment": "finalized"}]))
    }

    fn keep(cache: &RpcCache, key: CacheKey, result: Box<RawValue>) {
        cache.insert("sol", key, result, Retention::Final, cache.epoch());
    }

    fn cached(cache: &RpcCache, n: u64) -> Option<String> {
        cache.get(&key(n)).map(|raw| raw.get().to_owned())
    }

    #[test]
    fn keys_are_canonical_and_unambiguous() {
        let a = CacheKey::new("c", "getBlock", &json!([1, {"encoding": "json", "commitment": "finalized"}]));
        let b: Value =
            serde_json::from_str(r#"[1, { "commitment" : "finalized", "encoding":"json" }]"#).expect("json");
        assert_eq!(a, CacheKey::new("c", "getBlock", &b));
        assert_eq!(a.0, r#"["c","getBlock",[1,{"commitment":"finalized","encoding":"json"}]]"#);
        assert_ne!(a, CacheKey::new("d", "getBlock", &b), "chains do not share entries");
        assert_ne!(a, CacheKey::new("c", "getTransaction", &b), "methods do not share entries");
        assert_ne!(
            a,
            CacheKey::new("c", "getBlock", &json!([2, {"commitment": "finalized", "encoding": "json"}]))
        );
        // Separators inside names cannot make two questions collide.
        assert_ne!(CacheKey::new("a\",\"b", "m", &json!([])), CacheKey::new("a", "b\",\"m", &json!([])));
        let nested = CacheKey::new("c", "m", &json!([{"z": {"b": 1, "a": [{"y": 2, "x": 3}]}}]));
        assert_eq!(nested.0, r#"["c","m",[{"z":{"a":[{"x":3,"y":2}],"b":1}}]]"#);
    }

    #[test]
    fn answers_come_back_verbatim() {
        let cache = RpcCache::new(RpcCacheLimits::default());
        assert_eq!(cached(&cache, 1), None);
        let answer: Box<RawValue> =
            serde_json::from_str(r#"{"blockhash":"abc","transactions":[1, 2]}"#).expect("raw");
        keep(&cache, key(1), answer);
        assert_eq!(cached(&cache, 1).as_deref(), Some(r#"{"blockhash":"abc","transactions":[1, 2]}"#));
        assert_eq!(cached(&cache, 2), None);
    }

    #[test]
    fn least_recently_used_goes_first_when_full_by_entries() {
        let limits = RpcCacheLimits { max_entries: 3, ..RpcCacheLimits::default() };
        let cache = RpcCache::new(limits);
        for n in 1..=3 {
            keep(&cache, key(n), raw(json!(n)));
        }
        // Reading 1 makes 2 the oldest.
        assert_eq!(cached(&cache, 1).as_deref(), Some("1"));
        keep(&cache, key(4), raw(json!(4)));
        assert_eq!(cached(&cache, 2), None);
        for n in [1, 3, 4] {
            assert_eq!(cached(&cache, n), Some(n.to_string()), "{n}");
        }
        assert_eq!(cache.usage().0, 3);
    }

    #[test]
    fn bounded_by_bytes_and_too_large_answers_are_not_kept() {
        let big = |fill: char| raw(Value::String(fill.to_string().repeat(1000)));
        let one = key(1).0.len() + 1002 + ENTRY_OVERHEAD;
        let limits = RpcCacheLimits {
            max_entries: 100,
            max_bytes: one * 2 + 10,
            max_entry_bytes: 5000,
            ..RpcCacheLimits::default()
        };
        let cache = RpcCache::new(limits);
        keep(&cache, key(1), big('a'));
        keep(&cache, key(2), big('b'));
        assert_eq!(cache.usage(), (2, one * 2));
        keep(&cache, key(3), big('c'));
        assert_eq!(cached(&cache, 1), None, "the oldest was evicted for bytes");
        assert!(cached(&cache, 2).is_some() && cached(&cache, 3).is_some());
        assert_eq!(cache.usage(), (2, one * 2));

        keep(&cache, key(4), raw(Value::String("d".repeat(6000))));
        assert_eq!(cached(&cache, 4), None, "larger than max_entry_bytes");
        assert_eq!(cache.usage().0, 2, "an answer not kept evicts nothing");
    }

    #[test]
    fn replacing_an_entry_keeps_the_accounting_right() {
        let cache = RpcCache::new(RpcCacheLimits::default());
        keep(&cache, key(1), raw(json!("short")));
        keep(&cache, key(1), raw(json!("a longer answer")));
        assert_eq!(cached(&cache, 1).as_deref(), Some("\"a longer answer\""));
        let expected = key(1).0.len() + "\"a longer answer\"".len() + ENTRY_OVERHEAD;
        assert_eq!(cache.usage(), (1, expected));
    }

    #[test]
    fn a_zero_sized_cache_keeps_nothing() {
        let cache = RpcCache::new(RpcCacheLimits { max_entries: 0, ..RpcCacheLimits::default() });
        keep(&cache, key(1), raw(json!(1)));
        assert_eq!(cached(&cache, 1), None);
        assert_eq!(cache.usage(), (0, 0));
    }

    fn evm_key(n: u64) -> CacheKey {
        CacheKey::new("eth", "eth_getBlockByNumber", &json!([format!("{n:#x}"), false]))
    }

    fn unfinalized(cache: &RpcCache, chain: &str, n: u64) {
        let key = CacheKey::new(chain, "eth_getBlockByNumber", &json!([format!("{n:#x}"), false]));
        cache.insert(chain, key, raw(json!(n)), Retention::Unfinalized { block: n }, cache.epoch());
    }

    fn has(cache: &RpcCache, chain: &str, n: u64) -> bool {
        cache.get(&CacheKey::new(chain, "eth_getBlockByNumber", &json!([format!("{n:#x}"), false]))).is_some()
    }

    #[test]
    fn a_revert_drops_the_unfinalized_entries_above_the_fork_of_that_chain_only() {
        let cache =
            RpcCache::new(RpcCacheLimits { unfinalized_ttl: Duration::from_secs(600), ..Default::default() });
        for n in 10..=15 {
            unfinalized(&cache, "eth", n);
            unfinalized(&cache, "other", n);
        }
        // A final entry of a block number that gets reverted cannot exist (finality), but one about an older
        // block is untouched anyway.
        cache.insert("eth", evm_key(5), raw(json!(5)), Retention::Final, cache.epoch());
        assert_eq!(cache.evict_above("eth", 12), 3);
        for n in 10..=12 {
            assert!(has(&cache, "eth", n), "{n} is at or below the fork");
        }
        for n in 13..=15 {
            assert!(!has(&cache, "eth", n), "{n} was reverted");
            assert!(has(&cache, "other", n), "{n} of another chain stays");
        }
        assert!(has(&cache, "eth", 5));
        assert_eq!(cache.evict_unfinalized("eth"), 3, "a lagged stream drops every unfinalized entry");
        assert!(!has(&cache, "eth", 10) && has(&cache, "eth", 5));
        assert_eq!(cache.usage().0, 7);
    }

    #[test]
    fn an_answer_planned_before_a_reorg_eviction_is_not_kept() {
        let cache =
            RpcCache::new(RpcCacheLimits { unfinalized_ttl: Duration::from_secs(600), ..Default::default() });
        let before = cache.epoch();
        cache.evict_above("eth", 3);
        cache.insert("eth", evm_key(7), raw(json!(7)), Retention::Unfinalized { block: 7 }, before);
        assert!(!has(&cache, "eth", 7), "it may come from the abandoned branch");
        // A final answer cannot be on a branch that a reorg abandons.
        cache.insert("eth", evm_key(2), raw(json!(2)), Retention::Final, before);
        assert!(has(&cache, "eth", 2));
    }

    #[test]
    fn unfinalized_entries_expire_and_a_zero_ttl_keeps_none() {
        let cache = RpcCache::new(RpcCacheLimits { unfinalized_ttl: Duration::ZERO, ..Default::default() });
        unfinalized(&cache, "eth", 1);
        assert_eq!(cache.usage(), (0, 0));

        let cache =
            RpcCache::new(RpcCacheLimits { unfinalized_ttl: Duration::from_millis(1), ..Default::default() });
        unfinalized(&cache, "eth", 1);
        assert_eq!(cache.usage().0, 1);
        // Expiry is checked against the clock on lookup; wait past it (this is not a timing assertion).
        std::thread::sleep(Duration::from_millis(5));
        assert!(!has(&cache, "eth", 1), "expired");
        assert_eq!(cache.usage(), (0, 0), "the expired entry is gone with its reorg index slot");
        assert_eq!(cache.evict_unfinalized("eth"), 0);
    }

    #[test]
    fn size_evictions_keep_the_reorg_index_consistent() {
        let limits = RpcCacheLimits {
            max_entries: 2,
            unfinalized_ttl: Duration::from_secs(600),
            ..Default::default()
        };
        let cache = RpcCache::new(limits);
        for n in 1..=3 {
            unfinalized(&cache, "eth", n);
        }
        assert!(!has(&cache, "eth", 1));
        assert_eq!(cache.lock().unfinalized.len(), 2);
        assert_eq!(cache.evict_above("eth", 0), 2);
        assert_eq!(cache.usage(), (0, 0));
    }
}
