//! alloy's RPC types to the normalized model.

use std::collections::HashMap;

use alloy::consensus::Transaction as _;
use alloy::network::{
    AnyRpcBlock, AnyTransactionReceipt, BlockResponse, ReceiptResponse, TransactionResponse,
};
use alloy::primitives::{Bloom, Bytes, TxKind, U256};
use alloy::rpc::types::{BlockTransactions, Log as RpcLog};
use chainmux_core::{BlockPtr, Log, NetworkError, NormalizedBlock, Transaction, Transfer, TransferStandard};

use crate::transfers::decode_transfers;

fn address_bytes(address: alloy::primitives::Address) -> Bytes {
    Bytes::copy_from_slice(address.as_slice())
}

fn u32_index(value: Option<u64>, what: &str, block: u64) -> Result<u32, NetworkError> {
    value
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| NetworkError::Malformed(format!("block {block}: missing or oversized {what}")))
}

pub(crate) fn normalize_log(log: &RpcLog, block: u64) -> Result<Log, NetworkError> {
    let tx_hash = log
        .transaction_hash
        .ok_or_else(|| NetworkError::Malformed(format!("block {block}: log without transactionHash")))?;
    Ok(Log {
        tx_hash: Bytes::copy_from_slice(tx_hash.as_slice()),
        tx_index: u32_index(log.transaction_index, "log transactionIndex", block)?,
        log_index: u32_index(log.log_index, "logIndex", block)?,
        address: address_bytes(log.address()),
        topics: log.topics().to_vec(),
        data: log.data().data.clone(),
    })
}

/// Normalizes one block. Receipts (when given) must be the block's, in any order; `logs` are used when receipts
/// are not available (the `eth_getLogs` path), and transaction outcomes are then unknown.
pub(crate) fn normalize_block(
    block: &AnyRpcBlock,
    receipts: Option<&[AnyTransactionReceipt]>,
    logs_without_receipts: &[RpcLog],
) -> Result<NormalizedBlock, NetworkError> {
    let header = block.header();
    let number = header.number;
    let hash = header.hash;
    let ptr = BlockPtr::new(number, hash);
    let parent = number.checked_sub(1).map(|n| BlockPtr::new(n, header.parent_hash));

    let BlockTransactions::Full(txs) = block.transactions() else {
        return Err(NetworkError::Malformed(format!("block {number}: transactions are not full objects")));
    };

    let by_hash: HashMap<_, _> = match receipts {
        Some(receipts) => {
            if receipts.len() != txs.len() {
                return Err(NetworkError::Inconsistent(format!(
                    "block {number}: {} receipts for {} transactions",
                    receipts.len(),
                    txs.len()
                )));
            }
            let mut map = HashMap::with_capacity(receipts.len());
            for receipt in receipts {
                if receipt.block_hash() != Some(hash) {
                    return Err(NetworkError::Inconsistent(format!(
                        "block {number}: receipt of {} belongs to block {:?}, not {hash}",
                        receipt.transaction_hash(),
                        receipt.block_hash()
                    )));
                }
                map.insert(receipt.transaction_hash(), receipt);
            }
            map
        }
        None => HashMap::new(),
    };

    let mut transactions = Vec::with_capacity(txs.len());
    let mut logs = Vec::new();
    let mut transfers = Vec::new();
    for (position, tx) in txs.iter().enumerate() {
        let tx_hash = tx.tx_hash();
        let index = u32::try_from(tx.transaction_index().unwrap_or(position as u64))
            .map_err(|_| NetworkError::Malformed(format!("block {number}: oversized transaction index")))?;
        let receipt = match receipts {
            Some(_) => Some(by_hash.get(&tx_hash).ok_or_else(|| {
                NetworkError::Inconsistent(format!("block {number}: no receipt for transaction {tx_hash}"))
            })?),
            None => None,
        };
        let status = receipt.map(|r| r.status());
        let contract_address = receipt.and_then(|r| r.contract_address()).map(address_bytes);
        let to = match tx.kind() {
            TxKind::Call(to) => Some(address_bytes(to)),
            TxKind::Create => None,
        };
        let from = address_bytes(TransactionResponse::from(tx));
        let value = tx.value();

        // A reverted transaction moved no value; with unknown status the transfer is recorded as sent.
        if value > U256::ZERO
            && status != Some(false)
            && let Some(recipient) = to.clone().or_else(|| contract_address.clone())
        {
            transfers.push(Transfer {
                tx_hash: Bytes::copy_from_slice(tx_hash.as_slice()),
                log_index: index,
                batch_index: 0,
                standard: TransferStandard::Native,
                token: None,
                from: from.clone(),
                to: recipient,
                amount: value,
                token_id: None,
                from_owner: None,
                to_owner: None,
                decimals: None,
            });
        }
        if let Some(receipt) = receipt {
            for log in receipt.inner.inner.logs() {
                logs.push(normalize_log(log, number)?);
            }
        }
        transactions.push(Transaction {
            hash: Bytes::copy_from_slice(tx_hash.as_slice()),
            index,
            from,
            to,
            value,
            nonce: tx.nonce(),
            gas_limit: tx.gas_limit(),
            gas_price: receipt
                .map(|r| r.effective_gas_price())
                .or(tx.effective_gas_price)
                .or(TransactionResponse::gas_price(tx)),
            gas_used: receipt.map(|r| r.gas_used()),
            status,
            contract_address,
            input: tx.input().clone(),
            fee: None,
            error: None,
        });
    }
    if receipts.is_none() {
        for log in logs_without_receipts {
            logs.push(normalize_log(log, number)?);
        }
    }
    logs.sort_by_key(|log| log.log_index);
    for log in &logs {
        transfers.extend(decode_transfers(log));
    }

    Ok(NormalizedBlock {
        ptr,
        parent,
        timestamp: header.timestamp,
        height: None,
        transactions,
        logs,
        transfers,
        instructions: Vec::new(),
        events: Vec::new(),
        created_contracts: Vec::new(),
    })
}

/// Normalizes a block from its header and its logs as `eth_getLogs` returned them (logs mode): no transactions,
/// hence no native transfers; token transfers are decoded from the logs. Every log must name this block by hash
/// (a log of another block at this height means a reorg raced the fetch), and a block whose logs bloom is not
/// empty must have logs (an upstream that silently dropped results).
pub(crate) fn normalize_header_with_logs(
    block: &AnyRpcBlock,
    block_logs: &[RpcLog],
) -> Result<NormalizedBlock, NetworkError> {
    let header = block.header();
    let number = header.number;
    let hash = header.hash;
    let mut logs = Vec::with_capacity(block_logs.len());
    for log in block_logs {
        if log.block_hash != Some(hash) || log.block_number != Some(number) || log.removed {
            return Err(NetworkError::Inconsistent(format!(
                "block {number} is {hash}, but eth_getLogs returned a log of block {:?} {:?}{} (fork during fetch)",
                log.block_number,
                log.block_hash,
                if log.removed { ", removed" } else { "" }
            )));
        }
        logs.push(normalize_log(log, number)?);
    }
    logs.sort_by_key(|log| log.log_index);
    if let Some(pair) = logs.windows(2).find(|pair| pair[0].log_index == pair[1].log_index) {
        return Err(NetworkError::Inconsistent(format!(
            "block {number}: eth_getLogs returned two logs with index {}",
            pair[0].log_index
        )));
    }
    if logs.is_empty() && header.logs_bloom != Bloom::ZERO {
        return Err(NetworkError::Inconsistent(format!(
            "block {number}: eth_getLogs returned no logs, but the block's logs bloom is not empty"
        )));
    }
    let transfers = logs.iter().flat_map(decode_transfers).collect();
    Ok(NormalizedBlock {
        ptr: BlockPtr::new(number, hash),
        parent: number.checked_sub(1).map(|n| BlockPtr::new(n, header.parent_hash)),
        timestamp: header.timestamp,
        height: None,
        transactions: Vec::new(),
        logs,
        transfers,
        instructions: Vec::new(),
        events: Vec::new(),
        created_contracts: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainmux_core::TransferStandard;
    use serde_json::Value;

    fn fixture(block: &str, file: &str) -> Value {
        let path = format!("{}/tests/fixtures/{block}/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut json: Value = serde_json::from_str(&text).expect("fixture is JSON");
        json["response"]["result"].take()
    }

    /// Native transfers the raw JSON implies: value > 0 in a transaction whose receipt says success.
    fn expected_native(block: &Value, receipts: &Value) -> usize {
        let txs = block["transactions"].as_array().expect("transactions");
        let receipts = receipts.as_array().expect("receipts");
        txs.iter()
            .filter(|tx| tx["value"] != "0x0")
            .filter(|tx| receipts.iter().any(|r| r["transactionHash"] == tx["hash"] && r["status"] == "0x1"))
            .count()
    }

    fn check(block_dir: &str, txs: usize, failed: usize, logs: usize, erc20: usize, erc721: usize) {
        let block_json = fixture(block_dir, "block.json");
        let receipts_json = fixture(block_dir, "receipts.json");
        let native = expected_native(&block_json, &receipts_json);
        let block: AnyRpcBlock = serde_json::from_value(block_json.clone()).expect("block decodes");
        let receipts: Vec<AnyTransactionReceipt> =
            serde_json::from_value(receipts_json).expect("receipts decode");

        let normalized = normalize_block(&block, Some(&receipts), &[]).expect("normalizes");
        assert_eq!(normalized.ptr.hash.to_string(), block_json["hash"].as_str().expect("hash"));
        assert_eq!(
            normalized.parent.map(|p| p.hash.to_string()).as_deref(),
            block_json["parentHash"].as_str()
        );
        assert_eq!(normalized.transactions.len(), txs);
        assert_eq!(normalized.transactions.iter().filter(|t| t.status == Some(false)).count(), failed);
        assert_eq!(normalized.logs.len(), logs);
        let indexes: Vec<u32> = normalized.logs.iter().map(|l| l.log_index).collect();
        assert_eq!(indexes, (0..logs as u32).collect::<Vec<_>>(), "log indexes run without gaps");
        let count = |standard| normalized.transfers.iter().filter(|t| t.standard == standard).count();
        assert_eq!(count(TransferStandard::Erc20), erc20);
        assert_eq!(count(TransferStandard::Erc721), erc721);
        assert_eq!(count(TransferStandard::Native), native);
        assert!(native > 0, "fixture has native transfers");
    }

    #[test]
    fn mainnet_block_18000000_normalizes_to_known_counts() {
        check("mainnet-18000000", 94, 2, 291, 141, 2);
    }

    #[test]
    fn mainnet_block_17000000_normalizes_to_known_counts() {
        check("mainnet-17000000", 102, 6, 237, 93, 19);
    }

    #[test]
    fn receipts_of_another_block_are_rejected() {
        let block: AnyRpcBlock =
            serde_json::from_value(fixture("mainnet-18000000", "block.json")).expect("block decodes");
        let receipts: Vec<AnyTransactionReceipt> =
            serde_json::from_value(fixture("mainnet-17000000", "receipts.json")).expect("receipts decode");
        assert!(matches!(normalize_block(&block, Some(&receipts), &[]), Err(NetworkError::Inconsistent(_))));
    }

    /// The fixture block with the logs of its receipts, as `eth_getLogs` would return them.
    fn block_and_logs(block_dir: &str) -> (AnyRpcBlock, Vec<AnyTransactionReceipt>, Vec<RpcLog>) {
        let block: AnyRpcBlock =
            serde_json::from_value(fixture(block_dir, "block.json")).expect("block decodes");
        let receipts: Vec<AnyTransactionReceipt> =
            serde_json::from_value(fixture(block_dir, "receipts.json")).expect("receipts decode");
        let logs = receipts.iter().flat_map(|r| r.inner.inner.logs().to_vec()).collect();
        (block, receipts, logs)
    }

    #[test]
    fn logs_mode_gives_the_logs_and_token_transfers_of_full_mode() {
        for block_dir in ["mainnet-18000000", "mainnet-17000000"] {
            let (block, receipts, mut logs) = block_and_logs(block_dir);
            let full = normalize_block(&block, Some(&receipts), &[]).expect("full");
            logs.reverse();
            let from_logs = normalize_header_with_logs(&block, &logs).expect("logs mode");
            assert_eq!(
                (from_logs.ptr, from_logs.parent, from_logs.timestamp),
                (full.ptr, full.parent, full.timestamp)
            );
            assert!(from_logs.transactions.is_empty());
            assert_eq!(from_logs.logs, full.logs, "{block_dir}: same logs, in log index order");
            let tokens: Vec<_> =
                full.transfers.iter().filter(|t| t.standard != TransferStandard::Native).cloned().collect();
            assert_eq!(from_logs.transfers, tokens, "{block_dir}: token transfers, no native ones");
        }
    }

    #[test]
    fn logs_of_another_fork_or_missing_logs_are_inconsistent() {
        let (block, _, logs) = block_and_logs("mainnet-18000000");
        let mut foreign = logs.clone();
        foreign[3].block_hash = Some(alloy::primitives::B256::repeat_byte(7));
        assert!(matches!(normalize_header_with_logs(&block, &foreign), Err(NetworkError::Inconsistent(_))));
        let mut removed = logs.clone();
        removed[0].removed = true;
        assert!(matches!(normalize_header_with_logs(&block, &removed), Err(NetworkError::Inconsistent(_))));
        let mut twice = logs.clone();
        twice.push(logs[5].clone());
        assert!(matches!(normalize_header_with_logs(&block, &twice), Err(NetworkError::Inconsistent(_))));
        // The block's bloom says it has logs.
        assert!(matches!(normalize_header_with_logs(&block, &[]), Err(NetworkError::Inconsistent(_))));
    }
}
