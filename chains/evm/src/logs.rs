//! Logs mode: the logs of a block range with as few `eth_getLogs` calls as the upstreams allow.
//!
//! A range is first asked for whole (or in pieces of the size learned so far). When an upstream refuses a piece as
//! too large ([`crate::range_limit`]), the piece is split — to the range the upstream suggested, to the span it
//! named, or in half — and the smaller size is kept for the next pieces and the next batches. After answers with
//! few logs the size grows again, up to the largest span a span-limited upstream accepts. A single block refused
//! (more logs than the upstream returns at once) gets its logs from `eth_getBlockReceipts`.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};

use alloy::eips::BlockId;
use alloy::network::AnyNetwork;
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, Log as RpcLog};
use alloy::transports::{RpcError as AlloyRpcError, TransportError, TransportErrorKind};
use chainmux_core::NetworkError;
use chainmux_rpc::RpcError;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tracing::{debug, info};

use crate::range_limit::{LimitKind, RangeLimit, http_range_limit, range_limit};

/// No limit known: ask for the whole range.
const UNLIMITED: u64 = u64::MAX;
/// An answer with fewer logs than this lets the range size grow (a fifth of the common 10,000-result cap).
const SPARSE_LOGS: usize = 2_000;

/// Blocks per `eth_getLogs` call, learned from the upstreams' answers; one per chain, shared by its fetches.
#[derive(Debug)]
pub(crate) struct RangeSizer {
    /// Blocks per call; [`UNLIMITED`] until an upstream refused a range.
    size: AtomicU64,
    /// The largest span the upstreams may accept, from span limits: the size never grows beyond it.
    ceiling: AtomicU64,
}

impl Default for RangeSizer {
    fn default() -> Self {
        Self { size: AtomicU64::new(UNLIMITED), ceiling: AtomicU64::new(UNLIMITED) }
    }
}

impl RangeSizer {
    /// Blocks to ask for in one call ([`u64::MAX`]: any number).
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// A piece of `blocks` blocks was answered with `logs` logs: when that was a full-size piece with few logs,
    /// the size grows (doubles, or half-way to the ceiling). Only one of several such answers grows it.
    pub(crate) fn on_success(&self, blocks: u64, logs: usize) {
        if logs >= SPARSE_LOGS {
            return;
        }
        let ceiling = self.ceiling.load(Ordering::Acquire);
        let grown = if ceiling == UNLIMITED {
            blocks.saturating_mul(2)
        } else {
            blocks.saturating_add((ceiling.saturating_sub(blocks) / 2).max(1)).min(ceiling)
        };
        if grown > blocks {
            let _ = self.size.compare_exchange(blocks, grown, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// A piece of `blocks` (≥ 2) blocks was refused: the size drops below `blocks` — to the suggested range, the
    /// named span, or half — and a span limit also lowers the ceiling. Returns the new size.
    pub(crate) fn on_limit(&self, blocks: u64, limit: &RangeLimit) -> u64 {
        let below = blocks.saturating_sub(1).max(1);
        let target = limit
            .suggested
            .map(|(from, to)| to - from + 1)
            .or(limit.max_blocks)
            .unwrap_or(blocks / 2)
            .clamp(1, below);
        if limit.kind == LimitKind::Span {
            let ceiling = limit.max_blocks.unwrap_or(below).clamp(1, below);
            self.ceiling.fetch_min(ceiling, Ordering::AcqRel);
        }
        let previous = self.size.fetch_min(target, Ordering::AcqRel);
        previous.min(target)
    }
}

/// Why an `eth_getLogs` call failed, when it is a refusal of the range as too large.
fn refusal(err: &TransportError) -> Option<RangeLimit> {
    match err {
        AlloyRpcError::ErrorResp(payload) => range_limit(&payload.message)
            .or_else(|| payload.data.as_ref().and_then(|data| range_limit(data.get()))),
        AlloyRpcError::Transport(TransportErrorKind::Custom(inner)) => {
            inner.downcast_ref::<RpcError>().and_then(pool_refusal)
        }
        _ => None,
    }
}

fn pool_refusal(err: &RpcError) -> Option<RangeLimit> {
    match err {
        RpcError::Http { status, .. } => http_range_limit(*status),
        RpcError::JsonRpc { error, .. } => range_limit(&error.message),
        RpcError::DeadlineExceeded { last: Some(last), .. } => pool_refusal(last),
        _ => None,
    }
}

/// The logs of block `number` from its receipts, when the upstreams have them.
async fn logs_from_receipts(provider: &RootProvider<AnyNetwork>, number: u64) -> Option<Vec<RpcLog>> {
    let receipts = provider.get_block_receipts(BlockId::number(number)).await.ok()??;
    Some(receipts.iter().flat_map(|receipt| receipt.inner.inner.logs().iter().cloned()).collect())
}

/// The logs of `range` that `filter` selects (its block range is replaced), in block order (within a block in the
/// order the upstream gave them), fetched in pieces of `sizer`'s size with up to `concurrency` calls in flight.
pub(crate) async fn logs_in_range(
    chain: &str,
    provider: &RootProvider<AnyNetwork>,
    sizer: &RangeSizer,
    concurrency: usize,
    range: RangeInclusive<u64>,
    filter: &Filter,
) -> Result<Vec<RpcLog>, NetworkError> {
    // Parts of the range not asked for yet, ascending except for refused pieces put back in front.
    let mut pending: VecDeque<(u64, u64)> = VecDeque::from([(*range.start(), *range.end())]);
    let mut answered: Vec<(u64, Vec<RpcLog>)> = Vec::new();
    let mut inflight = FuturesUnordered::new();
    loop {
        while inflight.len() < concurrency.max(1)
            && let Some((from, to)) = pending.pop_front()
        {
            let size = sizer.size();
            let end = to.min(from.saturating_add(size.saturating_sub(1)));
            if end < to {
                pending.push_front((end + 1, to));
            }
            let filter = filter.clone().from_block(from).to_block(end);
            inflight.push(async move {
                let mut result = provider.get_logs(&filter).await;
                // One block with more logs than the upstream returns at once: its receipts have them all.
                if from == end
                    && filter.address.is_empty()
                    && filter.topics.iter().all(|topic| topic.is_empty())
                    && result.as_ref().err().and_then(refusal).is_some()
                    && let Some(logs) = logs_from_receipts(provider, from).await
                {
                    result = Ok(logs);
                }
                (from, end, result)
            });
        }
        let Some((from, to, result)) = inflight.next().await else { break };
        let blocks = to - from + 1;
        match result {
            Ok(logs) => {
                sizer.on_success(blocks, logs.len());
                answered.push((from, logs));
            }
            Err(err) => match refusal(&err) {
                Some(limit) if blocks > 1 => {
                    let before = sizer.size();
                    let size = sizer.on_limit(blocks, &limit);
                    if size < before {
                        info!(chain, blocks, size, reason = %err, "eth_getLogs range refused; asking smaller ranges");
                    } else {
                        debug!(chain, blocks, size, reason = %err, "eth_getLogs range refused");
                    }
                    pending.push_front((from, to));
                }
                _ => return Err(crate::network::network_error(err)),
            },
        }
    }
    answered.sort_unstable_by_key(|(from, _)| *from);
    Ok(answered.into_iter().flat_map(|(_, logs)| logs).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(max_blocks: Option<u64>) -> RangeLimit {
        RangeLimit { kind: LimitKind::Span, max_blocks, suggested: None }
    }

    fn results(suggested: Option<(u64, u64)>) -> RangeLimit {
        RangeLimit { kind: LimitKind::Results, max_blocks: None, suggested }
    }

    #[test]
    fn a_named_span_is_taken_and_never_outgrown() {
        let sizer = RangeSizer::default();
        assert_eq!(sizer.size(), UNLIMITED);
        assert_eq!(sizer.on_limit(100, &span(Some(5))), 5);
        sizer.on_success(5, 0);
        assert_eq!(sizer.size(), 5, "the ceiling is the named span");
        // A named span larger than the refused piece cannot be right: below the piece.
        let sizer = RangeSizer::default();
        assert_eq!(sizer.on_limit(10, &span(Some(5000))), 9);
    }

    #[test]
    fn an_unnamed_span_is_halved_and_grows_back_below_the_refused_size() {
        let sizer = RangeSizer::default();
        assert_eq!(sizer.on_limit(100, &span(None)), 50);
        assert_eq!(sizer.on_limit(50, &span(None)), 25);
        sizer.on_success(25, 10);
        assert_eq!(sizer.size(), 37, "half-way to the ceiling (49)");
        sizer.on_success(37, 10);
        sizer.on_success(43, 10);
        sizer.on_success(46, 10);
        sizer.on_success(47, 10);
        sizer.on_success(48, 10);
        assert_eq!(sizer.size(), 49);
        sizer.on_success(49, 10);
        assert_eq!(sizer.size(), 49, "never beyond a size below a refused one");
    }

    #[test]
    fn result_limits_follow_the_suggestion_and_grow_while_sparse() {
        let sizer = RangeSizer::default();
        assert_eq!(sizer.on_limit(1000, &results(Some((10, 129)))), 120);
        sizer.on_success(120, 5_000);
        assert_eq!(sizer.size(), 120, "dense answers do not grow the size");
        sizer.on_success(120, 10);
        assert_eq!(sizer.size(), 240);
        // Answers for pieces of the old size (in flight meanwhile) do not grow it again.
        sizer.on_success(120, 10);
        assert_eq!(sizer.size(), 240);
        // A tail piece shorter than the size neither.
        sizer.on_success(7, 0);
        assert_eq!(sizer.size(), 240);
        assert_eq!(sizer.on_limit(240, &results(None)), 120);
        // A refusal of a piece smaller than the size lowers it below that piece.
        assert_eq!(sizer.on_limit(30, &results(None)), 15);
        assert_eq!(sizer.on_limit(2, &results(None)), 1);
        assert_eq!(
            sizer.on_limit(2, &results(Some((0, 9)))),
            1,
            "a suggestion never exceeds the refused piece"
        );
    }
}
