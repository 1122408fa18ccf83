//! What the pool needs to know about EVM methods without knowing the chain: which block height a request needs,
//! and what a re-sent signed transaction's answer is.

use alloy::primitives::keccak256;
use serde_json::Value;
use serde_json::value::RawValue;

/// A block number given as a `0x` quantity (tags like `latest` need no particular height).
fn quantity(value: &Value) -> Option<u64> {
    let hex = value.as_str()?.strip_prefix("0x")?;
    u64::from_str_radix(hex, 16).ok()
}

/// Position of the block parameter of state-reading methods.
fn block_param_position(method: &str) -> Option<usize> {
    match method {
        "eth_getBlockByNumber"
        | "eth_getBlockReceipts"
        | "eth_getBlockTransactionCountByNumber"
        | "eth_getUncleCountByBlockNumber" => Some(0),
        "eth_getBalance"
        | "eth_getCode"
        | "eth_getTransactionCount"
        | "eth_call"
        | "eth_estimateGas"
        | "eth_getTransactionByBlockNumberAndIndex" => Some(1),
        "eth_getStorageAt" | "eth_getProof" => Some(2),
        _ => None,
    }
}

/// The height an upstream must have reached to answer `method` with `params`, when it names one.
pub(crate) fn min_height(method: &str, params: &RawValue) -> Option<u64> {
    let params: Value = serde_json::from_str(params.get()).ok()?;
    if method == "eth_getLogs" {
        let filter = params.get(0)?;
        return quantity(filter.get("toBlock")?).or_else(|| quantity(filter.get("fromBlock")?));
    }
    let block = params.get(block_param_position(method)?)?;
    // EIP-1898 objects: {"blockNumber": "0x…"}.
    quantity(block).or_else(|| quantity(block.get("blockNumber")?))
}

/// `eth_sendRawTransaction`'s answer is the transaction hash, the keccak of the signed bytes.
pub(crate) fn raw_transaction_hash(method: &str, params: &RawValue) -> Option<Box<RawValue>> {
    if method != "eth_sendRawTransaction" {
        return None;
    }
    let params: Value = serde_json::from_str(params.get()).ok()?;
    let bytes = alloy::hex::decode(params.get(0)?.as_str()?).ok()?;
    RawValue::from_string(format!("\"{}\"", keccak256(bytes))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("json")
    }

    #[test]
    fn heights_of_common_methods() {
        assert_eq!(min_height("eth_getBlockByNumber", &raw(r#"["0x10", true]"#)), Some(16));
        assert_eq!(min_height("eth_getBlockByNumber", &raw(r#"["latest", true]"#)), None);
        assert_eq!(min_height("eth_getBlockReceipts", &raw(r#"["0xff"]"#)), Some(255));
        assert_eq!(min_height("eth_getBalance", &raw(r#"["0xabc", "0x5"]"#)), Some(5));
        assert_eq!(min_height("eth_call", &raw(r#"[{}, {"blockNumber": "0x7"}]"#)), Some(7));
        assert_eq!(min_height("eth_getLogs", &raw(r#"[{"fromBlock": "0x1", "toBlock": "0x9"}]"#)), Some(9));
        assert_eq!(min_height("eth_getLogs", &raw(r#"[{"blockHash": "0xab"}]"#)), None);
        assert_eq!(min_height("eth_chainId", &raw("[]")), None);
    }

    #[test]
    fn raw_transaction_hash_is_keccak_of_the_bytes() {
        let answer = raw_transaction_hash("eth_sendRawTransaction", &raw(r#"["0x0102"]"#)).expect("hash");
        assert_eq!(answer.get(), format!("\"{}\"", keccak256([1u8, 2])));
        assert!(raw_transaction_hash("eth_call", &raw(r#"["0x0102"]"#)).is_none());
    }
}
