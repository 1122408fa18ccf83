//! JSON shapes of the REST API (EVM rendering: lowercase `0x` hex, decimal strings for 256-bit integers).

use alloy::hex;
use chainmux_core::{BlockPtr, Finality, Heads};
use chainmux_store::{BlockRow, LogRow, TransactionRow, TransferRow};
use serde_json::{Value, json};

pub(crate) fn hex(bytes: &[u8]) -> String {
    hex::encode_prefixed(bytes)
}

fn opt_hex(bytes: Option<&Vec<u8>>) -> Value {
    bytes.map_or(Value::Null, |b| Value::String(hex(b)))
}

pub(crate) fn finality(number: i64, heads: Option<&Heads>) -> &'static str {
    let number = u64::try_from(number).unwrap_or_default();
    match heads {
        Some(h) => Finality::of(number, h.safe, h.finalized).as_str(),
        None => Finality::Pending.as_str(),
    }
}

pub(crate) fn ptr(ptr: Option<BlockPtr>) -> Value {
    ptr.map_or(Value::Null, |p| json!({ "number": p.number, "hash": p.hash.to_string() }))
}

pub(crate) fn block(chain: &str, row: &BlockRow, heads: Option<&Heads>) -> Value {
    json!({
        "chain": chain,
        "number": row.number,
        "hash": hex(&row.hash),
        "parent_hash": hex(&row.parent_hash),
        "timestamp": row.timestamp,
        "transaction_count": row.tx_count,
        "log_count": row.log_count,
        "finality": finality(row.number, heads),
    })
}

pub(crate) fn transaction(chain: &str, row: &TransactionRow, heads: Option<&Heads>) -> Value {
    json!({
        "chain": chain,
        "block_number": row.block_number,
        "block_hash": hex(&row.block_hash),
        "hash": hex(&row.hash),
        "transaction_index": row.tx_index,
        "from": hex(&row.from_address),
        "to": opt_hex(row.to_address.as_ref()),
        "value": row.value,
        "nonce": row.nonce,
        "gas": row.gas_limit,
        "gas_price": row.gas_price,
        "gas_used": row.gas_used,
        "status": row.status.map(u8::from),
        "contract_address": opt_hex(row.contract_address.as_ref()),
        "input": hex(&row.input),
        "finality": finality(row.block_number, heads),
    })
}

pub(crate) fn transfer(chain: &str, row: &TransferRow, heads: Option<&Heads>) -> Value {
    json!({
        "chain": chain,
        "block_number": row.block_number,
        "block_hash": hex(&row.block_hash),
        "tx_hash": hex(&row.tx_hash),
        "log_index": row.log_index,
        "batch_index": row.batch_index,
        "standard": row.standard,
        "token": opt_hex(row.token.as_ref()),
        "from": hex(&row.from_address),
        "to": hex(&row.to_address),
        "amount": row.amount,
        "token_id": row.token_id,
        "finality": finality(row.block_number, heads),
    })
}

pub(crate) fn log(chain: &str, row: &LogRow, heads: Option<&Heads>) -> Value {
    let topics: Vec<String> =
        [&row.topic0, &row.topic1, &row.topic2, &row.topic3].into_iter().flatten().map(|t| hex(t)).collect();
    json!({
        "chain": chain,
        "block_number": row.block_number,
        "block_hash": hex(&row.block_hash),
        "tx_hash": hex(&row.tx_hash),
        "transaction_index": row.tx_index,
        "log_index": row.log_index,
        "address": hex(&row.address),
        "topics": topics,
        "data": hex(&row.data),
        "finality": finality(row.block_number, heads),
    })
}
