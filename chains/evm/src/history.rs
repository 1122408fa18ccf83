//! Contract history with filtered `eth_getLogs`: the logs of a few addresses (or of a few event topics) over a block
//! range, for `[[chains.contracts]]` entries whose blocks the indexer has not fetched itself.

use std::ops::RangeInclusive;

use alloy::primitives::{Address, B256};
use alloy::rpc::types::{Filter, Log as RpcLog};
use chainmux_core::{BlockPtr, NetworkError, NormalizedBlock};

use crate::EvmNetwork;
use crate::logs::logs_in_range;
use crate::normalize::normalize_log;

impl EvmNetwork {
    /// The logs of `range` emitted by one of `addresses` (any address when empty) whose first topic is one of
    /// `topic0s` (any when empty), grouped into blocks (ascending, carrying only their logs in log-index order).
    ///
    /// Addresses go into filters of at most `address_chunk` each, one `eth_getLogs` series per chunk; a log that
    /// comes back twice is kept once. Each series adapts its block span to what the upstreams accept.
    pub async fn filtered_logs(
        &self,
        range: RangeInclusive<u64>,
        addresses: &[Address],
        topic0s: &[B256],
        address_chunk: usize,
    ) -> Result<Vec<NormalizedBlock>, NetworkError> {
        let mut base = Filter::new();
        if !topic0s.is_empty() {
            base = base.event_signature(topic0s.to_vec());
        }
        let filters: Vec<Filter> = if addresses.is_empty() {
            vec![base]
        } else {
            addresses.chunks(address_chunk.max(1)).map(|chunk| base.clone().address(chunk.to_vec())).collect()
        };
        let mut logs: Vec<RpcLog> = Vec::new();
        for filter in &filters {
            let chunk = logs_in_range(
                &self.spec.name,
                &self.provider,
                &self.filtered_logs_range,
                self.fetch_concurrency,
                range.clone(),
                filter,
            )
            .await?;
            logs.extend(chunk);
        }
        group_by_block(&range, logs)
    }
}

/// Logs (of any order, possibly repeated) as blocks in ascending order. Two logs of one height with different
/// block hashes mean a reorg raced the calls: inconsistent, to be asked again.
fn group_by_block(
    range: &RangeInclusive<u64>,
    logs: Vec<RpcLog>,
) -> Result<Vec<NormalizedBlock>, NetworkError> {
    let mut keyed = Vec::with_capacity(logs.len());
    for log in &logs {
        let (Some(number), Some(hash)) = (log.block_number, log.block_hash) else {
            return Err(NetworkError::Malformed("eth_getLogs returned a log without its block".into()));
        };
        if !range.contains(&number) || log.removed {
            return Err(NetworkError::Inconsistent(format!(
                "eth_getLogs for blocks {}..={} returned a{} log of block {number}",
                range.start(),
                range.end(),
                if log.removed { " removed" } else { "" },
            )));
        }
        let normalized = normalize_log(log, number)?;
        keyed.push((BlockPtr::new(number, hash), normalized));
    }
    keyed.sort_by_key(|(ptr, log)| (ptr.number, log.log_index));
    keyed.dedup_by(|b, a| a.0 == b.0 && a.1.log_index == b.1.log_index);
    let mut blocks: Vec<NormalizedBlock> = Vec::new();
    for (ptr, log) in keyed {
        match blocks.last_mut() {
            Some(block) if block.ptr.number == ptr.number => {
                if block.ptr.hash != ptr.hash {
                    return Err(NetworkError::Inconsistent(format!(
                        "eth_getLogs returned logs of two blocks at height {}: {} and {} (fork during fetch)",
                        ptr.number, block.ptr.hash, ptr.hash
                    )));
                }
                block.logs.push(log);
            }
            _ => {
                blocks.push(NormalizedBlock::logs_only(ptr, vec![log]));
            }
        }
    }
    Ok(blocks)
}
