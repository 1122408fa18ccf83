//! Which JSON-RPC answers the proxy's response cache ([`crate::rpc_cache`]) may keep, and for how long.
//!
//! A decision has two steps, both per chain family:
//! - [`plan`], before any upstream is asked, from the method and params alone: whether the cache is consulted
//!   at all (a "hit" or a "miss") or bypassed, and with which params. On EVM chains the block tags `latest`,
//!   `safe`, `finalized` and `earliest` are resolved to numbers here, and the resolved params are both the cache
//!   key and what is sent upstream, so the answer always matches its key;
//! - [`retention`], once an upstream answered successfully: whether that answer is kept, and whether for good
//!   ([`Retention::Final`]: it is about finalized data and can never change) or briefly
//!   ([`Retention::Unfinalized`]: about a block above the finalized head; it expires after the configured TTL and
//!   is dropped when the indexer reverts that block).
//!
//! Both use [`Finality`], what the gateway knows about the chain's heads (see `crate::finality`). Errors, `null`
//! and anything at `pending` are never kept; writes (`sendTransaction`, `eth_sendRawTransaction`, …) are never
//! cached, whatever the family.

use std::borrow::Cow;

use chainmux_core::ChainKind;
use serde_json::Value;
use serde_json::value::RawValue;

pub(crate) use crate::rpc_cache::Retention;

/// What the gateway knows about a chain's heads when it decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Finality {
    /// Highest block number (slot on Solana) that every upstream the pool may route to has finalized; `None`
    /// when unknown. It must be a floor for *every* upstream, not the best one's: a range query answered by a
    /// node that finalized less is silently cut short at its own finalized head, and must not be kept.
    pub(crate) finalized: Option<u64>,
    /// The chain's `safe` head as the indexer last stored it (never below `finalized`); EVM only.
    pub(crate) safe: Option<u64>,
    /// The best head the healthy upstreams reported: what `latest` means; EVM only.
    pub(crate) head: Option<u64>,
}

impl Finality {
    /// Nothing known: nothing about finality is cached. Solana chains always decide with this: the pool follows
    /// the indexer's commitment (usually `confirmed`) and keeps no per-upstream finalized slot, so a Solana range
    /// query could be cut short by a node that finalized less.
    pub(crate) const UNKNOWN: Finality = Finality { finalized: None, safe: None, head: None };
}

/// The params to look the request up with and send upstream, or `None` to bypass the cache (sent upstream as
/// is, no lookup).
pub(crate) fn plan<'a>(
    kind: ChainKind,
    method: &str,
    params: &'a Value,
    finality: Finality,
) -> Option<Cow<'a, Value>> {
    if chainmux_rpc::is_write_method(method) {
        return None;
    }
    match kind {
        ChainKind::Evm => evm::plan(method, params, finality),
        ChainKind::Solana => solana::may_cache(method, params, finality).then_some(Cow::Borrowed(params)),
    }
}

/// How long `result`, a successful answer to a request [`plan`] accepted (`params` are the planned ones), is
/// kept; `None`: not at all.
pub(crate) fn retention(
    kind: ChainKind,
    method: &str,
    params: &Value,
    result: &RawValue,
    finality: Finality,
) -> Option<Retention> {
    if plan(kind, method, params, finality).is_none() || result.get().trim() == "null" {
        return None;
    }
    match kind {
        ChainKind::Evm => evm::retention(method, params, result, finality),
        ChainKind::Solana => solana::keeps(method, params, result, finality).then_some(Retention::Final),
    }
}

/// EVM: answers pinned to a block, by number or by hash.
///
/// - By number (`eth_getBlockByNumber`, `eth_getBlockReceipts`, `eth_getBlockTransactionCountByNumber`,
///   `eth_getTransactionByBlockNumberAndIndex`, `eth_getBalance`, `eth_getCode`, `eth_getTransactionCount`,
///   `eth_getStorageAt`, `eth_getProof`, `eth_call`): the block parameter (a number, a tag, or an EIP-1898
///   `{"blockNumber"}` object) is resolved to a number; `latest` is the best upstream head, `safe` and
///   `finalized` the stored heads, `earliest` 0. A missing optional block parameter (`latest` by default) is
///   filled in. `pending`, `{"blockHash"}` objects and numbers above the known head bypass the cache.
/// - `eth_getLogs` with a range (no `blockHash`): both ends resolved (each `latest` when absent); the answer
///   depends on every block up to `toBlock`.
/// - By hash (`eth_getBlockByHash`, `eth_getTransactionByHash`, `eth_getTransactionReceipt`,
///   `eth_getTransactionByBlockHashAndIndex`, `eth_getBlockReceipts` of a hash): the block is the one the answer
///   names; a transaction not mined yet (`blockNumber: null`) is not kept.
/// - `eth_chainId`, `net_version`: fixed for the chain.
///
/// A block at or below [`Finality::finalized`] makes the answer final, one above it unfinalized.
mod evm {
    use std::borrow::Cow;

    use super::{Finality, RawValue, Retention, Value};

    /// Where a by-number method takes its block, and whether the node defaults it to `latest` when absent.
    fn block_position(method: &str) -> Option<(usize, bool)> {
        match method {
            "eth_getBlockByNumber"
            | "eth_getBlockReceipts"
            | "eth_getBlockTransactionCountByNumber"
            | "eth_getTransactionByBlockNumberAndIndex" => Some((0, false)),
            "eth_getBalance" | "eth_getCode" | "eth_getTransactionCount" => Some((1, true)),
            "eth_call" => Some((1, true)),
            "eth_getStorageAt" | "eth_getProof" => Some((2, true)),
            _ => None,
        }
    }

    /// Methods whose answer names its block, asked for by a hash at position 0.
    fn by_hash(method: &str) -> bool {
        matches!(
            method,
            "eth_getBlockByHash"
                | "eth_getTransactionByHash"
                | "eth_getTransactionReceipt"
                | "eth_getTransactionByBlockHashAndIndex"
        )
    }

    /// A `0x` quantity without excess: what nodes accept as a block number.
    fn quantity(value: &Value) -> Option<u64> {
        let hex = value.as_str()?.strip_prefix("0x")?;
        // Leading zeros are refused by geth ("hex number with leading zero digits"): left to the node to refuse.
        if hex.is_empty() || hex.len() > 16 || (hex.len() > 1 && hex.starts_with('0')) {
            return None;
        }
        u64::from_str_radix(hex, 16).ok()
    }

    fn encode(number: u64) -> Value {
        Value::String(format!("{number:#x}"))
    }

    /// A 32-byte `0x` hash.
    fn is_hash(value: &Value) -> bool {
        value.as_str().is_some_and(|s| {
            s.len() == 66 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
        })
    }

    /// The block number a block parameter means now; `None` for `pending`, hashes, unknown heads and garbage.
    fn resolve(block: &Value, finality: Finality) -> Option<u64> {
        match block {
            Value::String(tag) => match tag.as_str() {
                "latest" => finality.head,
                // Forwarded as they are, uncached: the node's own `safe`/`finalized` blocks are what a client
                // asking by tag expects, and the gateway's floor (the indexer's finality rule, read every
                // refresh, capped by the slowest upstream) may be an older block than the node would name.
                "safe" | "finalized" => None,
                "earliest" => Some(0),
                "pending" => None,
                _ => quantity(block),
            },
            // EIP-1898: `{"blockNumber": "0x…"}` (with `requireCanonical` or not: a number is canonical).
            Value::Object(fields) if !fields.contains_key("blockHash") => {
                resolve(fields.get("blockNumber")?, finality)
            }
            _ => None,
        }
    }

    /// Whether an answer about block `number` may be looked up: it is final, or at most the head (a number above
    /// the head is not answered consistently yet by every upstream).
    fn answerable(number: u64, finality: Finality) -> bool {
        finality.finalized.is_some_and(|f| number <= f) || finality.head.is_some_and(|h| number <= h)
    }

    pub(super) fn plan<'a>(method: &str, params: &'a Value, finality: Finality) -> Option<Cow<'a, Value>> {
        let Value::Array(items) = params else { return None };
        if matches!(method, "eth_chainId" | "net_version") {
            return items.is_empty().then_some(Cow::Borrowed(params));
        }
        if by_hash(method) {
            return is_hash(items.first()?).then_some(Cow::Borrowed(params));
        }
        if method == "eth_getBlockReceipts" && items.first().is_some_and(is_hash) {
            return (items.len() == 1).then_some(Cow::Borrowed(params));
        }
        if method == "eth_getLogs" {
            return plan_logs(items, finality).map(Cow::Owned);
        }
        let (position, optional) = block_position(method)?;
        let number = match items.get(position) {
            Some(block) => resolve(block, finality)?,
            // The node's default is `latest`; name it, so the key says which block.
            None if optional && items.len() == position => finality.head?,
            None => return None,
        };
        if !answerable(number, finality) {
            return None;
        }
        let mut resolved = items.clone();
        if position < resolved.len() {
            resolved[position] = encode(number);
        } else {
            resolved.push(encode(number));
        }
        Some(Cow::Owned(Value::Array(resolved)))
    }

    /// `[filter]` with both ends of the range resolved to numbers; `None` for `blockHash` filters (the answer of
    /// an unknown or empty block names no block) and ranges not fully answerable.
    fn plan_logs(items: &[Value], finality: Finality) -> Option<Value> {
        let [Value::Object(filter)] = items else { return None };
        if filter.contains_key("blockHash") {
            return None;
        }
        let latest = Value::String("latest".to_owned());
        // A log filter's ends are quantities or tags only (no EIP-1898 objects): anything else is the node's to
        // refuse, so it is forwarded untouched.
        let end = |name: &str| match filter.get(name) {
            None => Some(&latest),
            Some(tag @ Value::String(_)) => Some(tag),
            Some(_) => None,
        };
        let from = resolve(end("fromBlock")?, finality)?;
        let to = resolve(end("toBlock")?, finality)?;
        if from > to || !answerable(to, finality) {
            return None;
        }
        let mut filter = filter.clone();
        filter.insert("fromBlock".to_owned(), encode(from));
        filter.insert("toBlock".to_owned(), encode(to));
        Some(Value::Array(vec![Value::Object(filter)]))
    }

    pub(super) fn retention(
        method: &str,
        params: &Value,
        result: &RawValue,
        finality: Finality,
    ) -> Option<Retention> {
        if matches!(method, "eth_chainId" | "net_version") {
            return Some(Retention::Final);
        }
        let answer: Value = serde_json::from_str(result.get()).ok()?;
        let block = if by_hash(method) {
            // `blockNumber` is `null` while a transaction is pending.
            let field = if method == "eth_getBlockByHash" { "number" } else { "blockNumber" };
            quantity(answer.get(field)?)?
        } else if method == "eth_getBlockReceipts" && params.get(0).is_some_and(is_hash) {
            // An empty list does not say which block (or whether the node knows it).
            quantity(answer.get(0)?.get("blockNumber")?)?
        } else if method == "eth_getLogs" {
            if !answer.is_array() {
                return None;
            }
            quantity(params.get(0)?.get("toBlock")?)?
        } else {
            let (position, _) = block_position(method)?;
            let number = quantity(params.get(position)?)?;
            // A node that lags may answer with another block than the one asked for; keep only the right one.
            if method == "eth_getBlockByNumber" && answer.get("number").and_then(quantity) != Some(number) {
                return None;
            }
            number
        };
        if finality.finalized.is_some_and(|f| block <= f) {
            Some(Retention::Final)
        } else {
            Some(Retention::Unfinalized { block })
        }
    }
}

/// Solana: answers about finalized (rooted) slots and transactions, asked for with an explicit
/// `"commitment": "finalized"`. Most methods default to `finalized` on a real node, but providers and proxies may
/// change the default, so a request without a commitment is never cached.
///
/// - `getBlock`, `getTransaction`: `[slot | signature, {"commitment": "finalized", …}]`; a non-`null` answer
///   at `finalized` is a rooted block or a transaction in one, which no fork can undo. The other config keys
///   (encoding, transaction details, rewards, max supported version) are part of the cache key.
/// - `getGenesisHash`: fixed for the cluster (upstreams of another cluster are excluded at start-up).
/// - `getBlocks [start, end, {"commitment": "finalized"}]` (an explicit end), `getBlocksWithLimit [start, limit,
///   {"commitment": "finalized"}]` (kept only when complete: `limit` slots) and `getBlockTime [slot]` (which
///   takes no commitment): only when the range's end is at or below [`Finality::finalized`], which is unknown
///   today, so they are not cached for now.
///
/// Never cached: account state (`getAccountInfo`, `getBalance`, `getMultipleAccounts`, `getProgramAccounts`,
/// `getTokenAccountBalance`, …), slots, heights, blockhashes, health, signature statuses, and anything at
/// `processed` or `confirmed` commitment.
mod solana {
    use super::{Finality, RawValue, Value};

    pub(super) fn may_cache(method: &str, params: &Value, finality: Finality) -> bool {
        let Value::Array(params) = params else { return false };
        match (method, params.as_slice()) {
            ("getGenesisHash", []) => true,
            ("getBlock", [slot, config]) => slot.is_u64() && finalized(config),
            ("getTransaction", [signature, config]) => signature.is_string() && finalized(config),
            ("getBlocks", [start, end, config]) => match (start.as_u64(), end.as_u64()) {
                (Some(start), Some(end)) => start <= end && finalized(config) && is_final(end, finality),
                _ => false,
            },
            // The end of the range is the last slot of the answer; without a known finalized slot no answer
            // can qualify, so the cache is not even consulted.
            ("getBlocksWithLimit", [start, limit, config]) => {
                start.is_u64()
                    && limit.as_u64().is_some_and(|l| l > 0)
                    && finalized(config)
                    && finality.finalized.is_some()
            }
            ("getBlockTime", [slot]) => slot.as_u64().is_some_and(|slot| is_final(slot, finality)),
            _ => false,
        }
    }

    pub(super) fn keeps(method: &str, params: &Value, result: &RawValue, finality: Finality) -> bool {
        match method {
            "getGenesisHash" => parse(result).is_some_and(|hash| hash.is_string()),
            "getBlock" | "getTransaction" => parse(result).is_some_and(|answer| answer.is_object()),
            "getBlocks" => parse(result).is_some_and(|slots| slots.is_array()),
            "getBlockTime" => parse(result).is_some_and(|time| time.is_i64()),
            "getBlocksWithLimit" => {
                let limit = params.get(1).and_then(Value::as_u64);
                let Some(Value::Array(slots)) = parse(result) else { return false };
                // Fewer slots than asked for: the node stopped at its own finalized head, and the same
                // question will have a longer answer later.
                let complete = limit.is_some_and(|limit| slots.len() as u64 == limit);
                let last = slots.last().and_then(Value::as_u64);
                complete && last.is_some_and(|last| is_final(last, finality))
            }
            _ => false,
        }
    }

    /// A config object saying `"commitment": "finalized"` (the legacy `max`/`root` aliases are not trusted).
    fn finalized(config: &Value) -> bool {
        config.get("commitment").and_then(Value::as_str) == Some("finalized")
    }

    fn is_final(slot: u64, finality: Finality) -> bool {
        finality.finalized.is_some_and(|finalized| slot <= finalized)
    }

    fn parse(result: &RawValue) -> Option<Value> {
        serde_json::from_str(result.get()).ok()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn may_cache(kind: ChainKind, method: &str, params: &Value, finality: Finality) -> bool {
        plan(kind, method, params, finality).is_some()
    }

    /// Kept for good.
    fn keeps(kind: ChainKind, method: &str, params: &Value, result: &RawValue, finality: Finality) -> bool {
        retention(kind, method, params, result, finality) == Some(Retention::Final)
    }

    const SIG: &str =
        "5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnbJLgp8uirBgmQpjKhoR4tjF3ZpRzrFmBV6UjKdiSZkQUW";

    fn raw(value: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&value).expect("raw")
    }

    fn sol(method: &str, params: Value) -> bool {
        may_cache(ChainKind::Solana, method, &params, Finality::UNKNOWN)
    }

    fn sol_keeps(method: &str, params: Value, result: Value, finality: Finality) -> bool {
        keeps(ChainKind::Solana, method, &params, &raw(result), finality)
    }

    const KNOWN: Finality = Finality { finalized: Some(100), safe: None, head: None };

    #[test]
    fn solana_finalized_blocks_and_transactions_are_cacheable() {
        let config =
            json!({"commitment": "finalized", "encoding": "json", "maxSupportedTransactionVersion": 0});
        assert!(sol("getBlock", json!([42, config])));
        assert!(sol("getTransaction", json!([SIG, config])));
        assert!(sol("getGenesisHash", json!([])));
        let block = json!({"blockhash": "x", "parentSlot": 41, "transactions": []});
        assert!(sol_keeps("getBlock", json!([42, config]), block.clone(), Finality::UNKNOWN));
        assert!(sol_keeps("getTransaction", json!([SIG, config]), json!({"slot": 42}), Finality::UNKNOWN));
        assert!(sol_keeps(
            "getGenesisHash",
            json!([]),
            json!("EtWTRABZaYq6iMfeYKouRu166VU2xqa1"),
            Finality::UNKNOWN
        ));
    }

    #[test]
    fn solana_other_commitments_or_none_are_not_cacheable() {
        for commitment in ["confirmed", "processed", "max", "root", "FINALIZED"] {
            let config = json!({"commitment": commitment});
            assert!(!sol("getBlock", json!([42, config])), "{commitment}");
            assert!(!sol("getTransaction", json!([SIG, config])), "{commitment}");
        }
        assert!(
            !sol("getBlock", json!([42])),
            "no config: the node's default commitment may not be finalized"
        );
        assert!(!sol("getBlock", json!([42, {"encoding": "json"}])));
        assert!(!sol("getBlock", json!([42, "json"])), "legacy encoding-only form");
        assert!(!sol("getTransaction", json!([SIG])));
        assert!(!sol("getTransaction", json!([SIG, "json"])));
    }

    #[test]
    fn solana_malformed_requests_are_not_cacheable() {
        let config = json!({"commitment": "finalized"});
        assert!(!sol("getBlock", json!(["42", config])));
        assert!(!sol("getBlock", json!([-1, config])));
        assert!(!sol("getBlock", json!([42, config, "extra"])));
        assert!(!sol("getBlock", json!({"slot": 42, "commitment": "finalized"})), "named params");
        assert!(!sol("getTransaction", json!([42, config])));
        assert!(!sol("getGenesisHash", json!([{"commitment": "finalized"}])));
    }

    #[test]
    fn solana_null_errors_and_odd_answers_are_not_kept() {
        let config = json!({"commitment": "finalized"});
        assert!(!sol_keeps("getBlock", json!([42, config]), Value::Null, Finality::UNKNOWN));
        assert!(!sol_keeps("getTransaction", json!([SIG, config]), Value::Null, Finality::UNKNOWN));
        assert!(!sol_keeps("getBlock", json!([42, config]), json!("block"), Finality::UNKNOWN));
        assert!(!sol_keeps("getGenesisHash", json!([]), json!(7), Finality::UNKNOWN));
        // A result a request at another commitment got is not kept either.
        let confirmed = json!([42, {"commitment": "confirmed"}]);
        assert!(!sol_keeps("getBlock", confirmed, json!({"blockhash": "x"}), Finality::UNKNOWN));
    }

    #[test]
    fn solana_account_state_heads_and_statuses_are_never_cacheable() {
        let finalized = json!({"commitment": "finalized"});
        let key = "83astBRguLMdt2h5U1Tpdq5tjFoJ6noeGwaY3mDLVcri";
        let never = [
            ("getAccountInfo", json!([key, finalized])),
            ("getBalance", json!([key, finalized])),
            ("getMultipleAccounts", json!([[key], finalized])),
            ("getProgramAccounts", json!([key, finalized])),
            ("getTokenAccountBalance", json!([key, finalized])),
            ("getTokenAccountsByOwner", json!([key, {"mint": key}, finalized])),
            ("getSlot", json!([finalized])),
            ("getBlockHeight", json!([finalized])),
            ("getLatestBlockhash", json!([finalized])),
            ("getHealth", json!([])),
            ("getSignatureStatuses", json!([[SIG], {"searchTransactionHistory": true}])),
            ("getSignaturesForAddress", json!([key, finalized])),
            ("getEpochInfo", json!([finalized])),
            ("requestAirdrop", json!([key, 1_000_000_000u64])),
            ("sendTransaction", json!(["AQID", {"encoding": "base64"}])),
            ("simulateTransaction", json!(["AQID", {"encoding": "base64"}])),
        ];
        for (method, params) in never {
            assert!(!may_cache(ChainKind::Solana, method, &params, KNOWN), "{method}");
            assert!(!keeps(ChainKind::Solana, method, &params, &raw(json!(1)), KNOWN), "{method}");
        }
    }

    #[test]
    fn solana_ranges_need_a_known_finalized_slot_covering_them() {
        let finalized = json!({"commitment": "finalized"});
        // Unknown finality (today): never.
        assert!(!sol("getBlocks", json!([10, 20, finalized])));
        assert!(!sol("getBlocksWithLimit", json!([10, 5, finalized])));
        assert!(!sol("getBlockTime", json!([10])));

        let blocks = |params: Value| may_cache(ChainKind::Solana, "getBlocks", &params, KNOWN);
        assert!(blocks(json!([10, 100, finalized])));
        assert!(!blocks(json!([10, 101, finalized])), "end above the finalized slot");
        assert!(!blocks(json!([10, finalized])), "no end: up to the tip");
        assert!(!blocks(json!([10, 20, {"commitment": "confirmed"}])));
        assert!(!blocks(json!([10, 20])));
        assert!(!blocks(json!([20, 10, finalized])));
        assert!(sol_keeps("getBlocks", json!([10, 20, finalized]), json!([10, 12, 20]), KNOWN));

        let time = |slot: u64| may_cache(ChainKind::Solana, "getBlockTime", &json!([slot]), KNOWN);
        assert!(time(100) && !time(101));
        assert!(sol_keeps("getBlockTime", json!([100]), json!(1_700_000_000), KNOWN));

        let limited = json!([90, 3, finalized]);
        assert!(may_cache(ChainKind::Solana, "getBlocksWithLimit", &limited, KNOWN));
        assert!(sol_keeps("getBlocksWithLimit", limited.clone(), json!([90, 95, 100]), KNOWN));
        assert!(!sol_keeps("getBlocksWithLimit", limited.clone(), json!([90, 95]), KNOWN), "cut short");
        assert!(
            !sol_keeps("getBlocksWithLimit", limited.clone(), json!([90, 95, 101]), KNOWN),
            "past finality"
        );
        assert!(!may_cache(ChainKind::Solana, "getBlocksWithLimit", &json!([90, 0, finalized]), KNOWN));
    }

    const EVM: Finality = Finality { finalized: Some(100), safe: Some(110), head: Some(120) };
    const ADDR: &str = "0x00000000000000000000000000000000000000aa";
    const HASH: &str = "0x1111111111111111111111111111111111111111111111111111111111111111";

    fn evm_plan(method: &str, params: Value) -> Option<Value> {
        plan(ChainKind::Evm, method, &params, EVM).map(Cow::into_owned)
    }

    fn evm_retention(method: &str, params: Value, result: Value) -> Option<Retention> {
        retention(ChainKind::Evm, method, &params, &raw(result), EVM)
    }

    #[test]
    fn evm_block_tags_are_resolved_to_numbers() {
        let block = |tag: &str| evm_plan("eth_getBlockByNumber", json!([tag, true]));
        assert_eq!(block("latest"), Some(json!(["0x78", true])));
        assert_eq!(block("safe"), None, "the node names its own safe block");
        assert_eq!(block("finalized"), None, "the node names its own finalized block");
        assert_eq!(block("0x02"), None, "leading zeros are the node's to refuse");
        assert_eq!(block("earliest"), Some(json!(["0x0", true])));
        assert_eq!(block("0x2a"), Some(json!(["0x2a", true])));
        assert_eq!(block("pending"), None, "pending state is never cached");
        assert_eq!(block("0x79"), None, "above the known head");
        assert_eq!(block("0x"), None);
        assert_eq!(block("12"), None);
        assert_eq!(
            evm_plan("eth_getBalance", json!([ADDR, {"blockNumber": "latest"}])),
            Some(json!([ADDR, "0x78"]))
        );
        assert_eq!(evm_plan("eth_getBalance", json!([ADDR, {"blockHash": HASH}])), None);
        // An omitted block is the node's `latest`: it is named, so the key says which block.
        assert_eq!(evm_plan("eth_getBalance", json!([ADDR])), Some(json!([ADDR, "0x78"])));
        let call = json!({"to": ADDR, "data": "0x"});
        assert_eq!(evm_plan("eth_call", json!([call])), Some(json!([call, "0x78"])));
        assert_eq!(evm_plan("eth_call", json!([call, "pending"])), None);
        assert_eq!(evm_plan("eth_getStorageAt", json!([ADDR, "0x0", "finalized"])), None);
        assert_eq!(
            evm_plan("eth_getStorageAt", json!([ADDR, "0x0", "0x64"])),
            Some(json!([ADDR, "0x0", "0x64"]))
        );
        assert_eq!(evm_plan("eth_getBlockByNumber", json!([])), None, "the block is not optional");
        // Without a known head, `latest` cannot be resolved: the request goes upstream untouched.
        let unknown = Finality { head: None, ..EVM };
        assert!(plan(ChainKind::Evm, "eth_getBlockByNumber", &json!(["latest", false]), unknown).is_none());
        assert!(plan(ChainKind::Evm, "eth_getBlockByNumber", &json!(["0x5", false]), unknown).is_some());
    }

    #[test]
    fn evm_log_ranges_are_resolved_and_depend_on_their_end() {
        let filter = json!({"address": ADDR, "fromBlock": "0x10", "toBlock": "0x64"});
        let planned = evm_plan("eth_getLogs", json!([filter])).expect("cacheable");
        assert_eq!(planned, json!([{"address": ADDR, "fromBlock": "0x10", "toBlock": "0x64"}]));
        assert_eq!(
            evm_retention("eth_getLogs", planned, json!([])),
            Some(Retention::Final),
            "empty is an answer"
        );
        let open = evm_plan("eth_getLogs", json!([{"topics": []}])).expect("cacheable");
        assert_eq!(open, json!([{"topics": [], "fromBlock": "0x78", "toBlock": "0x78"}]));
        assert_eq!(
            evm_retention("eth_getLogs", open, json!([])),
            Some(Retention::Unfinalized { block: 120 })
        );
        assert_eq!(evm_plan("eth_getLogs", json!([{"fromBlock": "0x10", "toBlock": "pending"}])), None);
        assert_eq!(evm_plan("eth_getLogs", json!([{"fromBlock": "0x11", "toBlock": "0x10"}])), None);
        assert_eq!(evm_plan("eth_getLogs", json!([{"blockHash": HASH}])), None);
        assert_eq!(
            evm_plan("eth_getLogs", json!([{"toBlock": {"blockNumber": "0x10"}}])),
            None,
            "not a filter end"
        );
    }

    #[test]
    fn evm_retention_depends_on_the_block_and_finality() {
        let at = |n: u64| json!([format!("{n:#x}"), false]);
        let block = |n: u64| json!({"number": format!("{n:#x}"), "hash": HASH});
        assert_eq!(evm_retention("eth_getBlockByNumber", at(100), block(100)), Some(Retention::Final));
        assert_eq!(
            evm_retention("eth_getBlockByNumber", at(101), block(101)),
            Some(Retention::Unfinalized { block: 101 })
        );
        assert_eq!(
            evm_retention("eth_getBlockByNumber", at(100), block(99)),
            None,
            "another block than asked"
        );
        assert_eq!(evm_retention("eth_getBlockByNumber", at(100), Value::Null), None);
        assert_eq!(
            evm_retention("eth_getBalance", json!([ADDR, "0x64"]), json!("0x1")),
            Some(Retention::Final)
        );
        assert_eq!(
            evm_retention("eth_getBalance", json!([ADDR, "0x65"]), json!("0x1")),
            Some(Retention::Unfinalized { block: 101 })
        );

        let receipt = |n: Value| json!({"transactionHash": HASH, "blockNumber": n});
        let by_hash = json!([HASH]);
        assert_eq!(
            evm_retention("eth_getTransactionReceipt", by_hash.clone(), receipt(json!("0x5"))),
            Some(Retention::Final)
        );
        assert_eq!(
            evm_retention("eth_getTransactionByHash", by_hash.clone(), receipt(json!("0x70"))),
            Some(Retention::Unfinalized { block: 112 })
        );
        assert_eq!(
            evm_retention("eth_getTransactionByHash", by_hash.clone(), receipt(Value::Null)),
            None,
            "pending"
        );
        assert_eq!(evm_retention("eth_getTransactionReceipt", by_hash.clone(), Value::Null), None, "unknown");
        assert_eq!(
            evm_retention("eth_getBlockByHash", json!([HASH, false]), block(3)),
            Some(Retention::Final)
        );
        assert_eq!(
            evm_retention("eth_getBlockReceipts", json!([HASH]), json!([receipt(json!("0x3"))])),
            Some(Retention::Final)
        );
        assert_eq!(evm_retention("eth_getBlockReceipts", json!([HASH]), json!([])), None, "names no block");
        assert!(evm_plan("eth_getTransactionReceipt", json!(["0x12"])).is_none(), "not a hash");

        assert_eq!(evm_retention("eth_chainId", json!([]), json!("0x7a69")), Some(Retention::Final));
    }

    #[test]
    fn evm_never_caches_state_that_moves() {
        let never = [
            ("eth_blockNumber", json!([])),
            ("eth_gasPrice", json!([])),
            ("eth_estimateGas", json!([{"to": ADDR}, "0x5"])),
            ("eth_getFilterChanges", json!(["0x1"])),
            ("eth_sendRawTransaction", json!(["0x00"])),
            ("eth_getBalance", json!([ADDR, "pending"])),
            ("eth_getTransactionCount", json!([ADDR, "pending"])),
        ];
        for (method, params) in never {
            assert!(evm_plan(method, params.clone()).is_none(), "{method}");
            assert!(evm_retention(method, params, json!("0x1")).is_none(), "{method}");
        }
    }

    #[test]
    fn writes_are_never_cached() {
        for method in ["sendTransaction", "eth_sendRawTransaction", "eth_sendTransaction"] {
            for kind in [ChainKind::Evm, ChainKind::Solana] {
                assert!(!may_cache(kind, method, &json!(["AQID"]), KNOWN), "{kind} {method}");
            }
        }
    }
}
