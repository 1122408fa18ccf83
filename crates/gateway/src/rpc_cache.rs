//! The JSON-RPC proxy's in-memory response cache: answers that can never change (see [`crate::cache_policy`])
//! are kept and served again without asking an upstream.
//!
//! Entries are keyed by chain, method and the params in canonical JSON (object keys sorted, no whitespace), so
//! two spellings of one question share an entry. The cache is bounded by entries and by bytes and evicts the
//! least recently used entry first; it is one `Mutex` around a hash map plus a recency index, held only for a
//! lookup or an insert (never across an upstream call). Two identical requests that miss at the same time both go
//! upstream; the second answer simply replaces the first.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use serde_json::value::RawValue;

/// Bounds of the response cache. Defaults (not configurable yet): 10,000 entries, 64 MiB, 8 MiB per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RpcCacheLimits {
    /// Most entries kept.
    pub(crate) max_entries: usize,
    /// Most bytes kept: keys plus answers plus a fixed overhead per entry.
    pub(crate) max_bytes: usize,
    /// Answers larger than this are not kept at all (a huge block would evict everything else).
    pub(crate) max_entry_bytes: usize,
}

impl Default for RpcCacheLimits {
    fn default() -> Self {
        Self { max_entries: 10_000, max_bytes: 64 << 20, max_entry_bytes: 8 << 20 }
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

/// A bounded LRU map of raw JSON-RPC results.
#[derive(Debug)]
pub(crate) struct RpcCache {
    limits: RpcCacheLimits,
    lru: Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    entries: HashMap<Arc<str>, Entry>,
    /// Recency stamp → key; the first entry is the least recently used.
    recency: BTreeMap<u64, Arc<str>>,
    clock: u64,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    /// Shared, so a hit copies the answer after the lock is released.
    result: Arc<RawValue>,
    stamp: u64,
    cost: usize,
}

impl Lru {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.recency.remove(&entry.stamp);
            self.bytes -= entry.cost;
        }
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.recency.pop_first() else { return false };
        if let Some(entry) = self.entries.remove(&key) {
            self.bytes -= entry.cost;
        }
        true
    }
}

impl RpcCache {
    pub(crate) fn new(limits: RpcCacheLimits) -> Self {
        Self { limits, lru: Mutex::default() }
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // Every update leaves the maps consistent before anything can panic, so a poisoned lock is still usable.
        self.lru.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kept answer to `key`, now the most recently used.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Box<RawValue>> {
        let result = {
            let mut guard = self.lock();
            let stamp = guard.tick();
            let lru = &mut *guard;
            let entry = lru.entries.get_mut(key.0.as_str())?;
            if let Some(key) = lru.recency.remove(&entry.stamp) {
                lru.recency.insert(stamp, key);
            }
            entry.stamp = stamp;
            Arc::clone(&entry.result)
        };
        Some((*result).to_owned())
    }

    /// Keeps `result` under `key` (replacing an earlier answer), evicting the least recently used entries beyond
    /// the limits. An answer larger than `max_entry_bytes` (or `max_bytes`) is not kept.
    pub(crate) fn insert(&self, key: CacheKey, result: Box<RawValue>) {
        let cost = key.0.len() + result.get().len() + ENTRY_OVERHEAD;
        if cost > self.limits.max_entry_bytes.min(self.limits.max_bytes) || self.limits.max_entries == 0 {
            return;
        }
        let key: Arc<str> = Arc::from(key.0);
        let mut lru = self.lock();
        lru.remove(&key);
        let stamp = lru.tick();
        lru.recency.insert(stamp, key.clone());
        lru.entries.insert(key, Entry { result: Arc::from(result), stamp, cost });
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
        if evicted > 0 {
            metrics::counter!("chainmux_rpc_cache_evictions_total").increment(evicted);
        }
        metrics::gauge!("chainmux_rpc_cache_entries").set(entries as f64);
        metrics::gauge!("chainmux_rpc_cache_bytes").set(bytes as f64);
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
        cache.insert(key(1), answer);
        assert_eq!(cached(&cache, 1).as_deref(), Some(r#"{"blockhash":"abc","transactions":[1, 2]}"#));
        assert_eq!(cached(&cache, 2), None);
    }

    #[test]
    fn least_recently_used_goes_first_when_full_by_entries() {
        let limits = RpcCacheLimits { max_entries: 3, ..RpcCacheLimits::default() };
        let cache = RpcCache::new(limits);
        for n in 1..=3 {
            cache.insert(key(n), raw(json!(n)));
        }
        // Reading 1 makes 2 the oldest.
        assert_eq!(cached(&cache, 1).as_deref(), Some("1"));
        cache.insert(key(4), raw(json!(4)));
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
        let limits = RpcCacheLimits { max_entries: 100, max_bytes: one * 2 + 10, max_entry_bytes: 5000 };
        let cache = RpcCache::new(limits);
        cache.insert(key(1), big('a'));
        cache.insert(key(2), big('b'));
        assert_eq!(cache.usage(), (2, one * 2));
        cache.insert(key(3), big('c'));
        assert_eq!(cached(&cache, 1), None, "the oldest was evicted for bytes");
        assert!(cached(&cache, 2).is_some() && cached(&cache, 3).is_some());
        assert_eq!(cache.usage(), (2, one * 2));

        cache.insert(key(4), raw(Value::String("d".repeat(6000))));
        assert_eq!(cached(&cache, 4), None, "larger than max_entry_bytes");
        assert_eq!(cache.usage().0, 2, "an answer not kept evicts nothing");
    }

    #[test]
    fn replacing_an_entry_keeps_the_accounting_right() {
        let cache = RpcCache::new(RpcCacheLimits::default());
        cache.insert(key(1), raw(json!("short")));
        cache.insert(key(1), raw(json!("a longer answer")));
        assert_eq!(cached(&cache, 1).as_deref(), Some("\"a longer answer\""));
        let expected = key(1).0.len() + "\"a longer answer\"".len() + ENTRY_OVERHEAD;
        assert_eq!(cache.usage(), (1, expected));
    }

    #[test]
    fn a_zero_sized_cache_keeps_nothing() {
        let cache = RpcCache::new(RpcCacheLimits { max_entries: 0, ..RpcCacheLimits::default() });
        cache.insert(key(1), raw(json!(1)));
        assert_eq!(cached(&cache, 1), None);
        assert_eq!(cache.usage(), (0, 0));
    }
}
