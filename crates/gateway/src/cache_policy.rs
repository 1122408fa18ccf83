//! Which JSON-RPC answers the proxy's response cache ([`crate::rpc_cache`]) may keep.
//!
//! The cache keeps an answer forever, so a policy says yes only for answers that can never change: data the
//! chain has finalized, asked for in a way that pins it. Everything else (account state, heads, anything at a
//! commitment or block tag that can still move, errors, `null`) goes to an upstream every time.
//!
//! A decision has two steps, both per chain family:
//! - [`may_cache`], before any upstream is asked, from the method and params alone: whether the cache is
//!   consulted at all (a "hit" or a "miss") or bypassed;
//! - [`keeps`], once an upstream answered successfully: whether that answer is stored.
//!
//! Both may use [`Finality`], what the gateway knows about the finalized head. Nothing supplies it yet (see
//! [`Finality::UNKNOWN`]); it is the extension point for range queries on Solana and for a finality-aware EVM
//! policy (`eth_getBlockByNumber` of a finalized number, receipts of finalized blocks, …), which only have to fill
//! in the `evm` functions below.
//!
//! Writes (`sendTransaction`, `eth_sendRawTransaction`, …) are never cached, whatever the family.

use chainmux_core::ChainKind;
use serde_json::Value;
use serde_json::value::RawValue;

/// What the gateway knows about finality when it decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Finality {
    /// Highest block number (slot on Solana) that every upstream the pool may route to has finalized; `None`
    /// when unknown. It must be a floor for *every* upstream, not the best one's: a range query answered by a
    /// node that finalized less is silently cut short at its own finalized head, and must not be kept.
    pub(crate) finalized: Option<u64>,
}

impl Finality {
    /// What the gateway knows today: nothing. The pool follows the indexer's commitment (usually `confirmed`)
    /// and keeps no per-upstream finalized head, so range queries are not cached until one is supplied.
    pub(crate) const UNKNOWN: Finality = Finality { finalized: None };
}

/// Whether the cache is consulted for this request: `false` sends it upstream without a lookup (a bypass).
pub(crate) fn may_cache(kind: ChainKind, method: &str, params: &Value, finality: Finality) -> bool {
    if chainmux_rpc::is_write_method(method) {
        return false;
    }
    match kind {
        ChainKind::Evm => evm::may_cache(method, params, finality),
        ChainKind::Solana => solana::may_cache(method, params, finality),
    }
}

/// Whether `result`, a successful answer to a request [`may_cache`] accepted, is kept forever.
pub(crate) fn keeps(
    kind: ChainKind,
    method: &str,
    params: &Value,
    result: &RawValue,
    finality: Finality,
) -> bool {
    if !may_cache(kind, method, params, finality) || result.get().trim() == "null" {
        return false;
    }
    match kind {
        ChainKind::Evm => evm::keeps(method, params, result, finality),
        ChainKind::Solana => solana::keeps(method, params, result, finality),
    }
}

/// EVM: nothing is cached yet. A finality-aware policy decides here, e.g. blocks, receipts and logs by hash or
/// by a number at or below [`Finality::finalized`].
mod evm {
    use super::{Finality, RawValue, Value};

    pub(super) fn may_cache(_method: &str, _params: &Value, _finality: Finality) -> bool {
        false
    }

    pub(super) fn keeps(_method: &str, _params: &Value, _result: &RawValue, _finality: Finality) -> bool {
        false
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

    const KNOWN: Finality = Finality { finalized: Some(100) };

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

    #[test]
    fn evm_caches_nothing_yet() {
        let requests = [
            ("eth_chainId", json!([])),
            ("eth_getBlockByNumber", json!(["finalized", false])),
            ("eth_getBlockByHash", json!(["0xab", false])),
            ("eth_getTransactionReceipt", json!(["0xab"])),
            ("eth_sendRawTransaction", json!(["0x00"])),
        ];
        for (method, params) in requests {
            assert!(!may_cache(ChainKind::Evm, method, &params, KNOWN), "{method}");
            assert!(
                !keeps(ChainKind::Evm, method, &params, &raw(json!({"number": "0x1"})), KNOWN),
                "{method}"
            );
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
