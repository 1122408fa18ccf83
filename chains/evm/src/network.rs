//! [`Network`] for EVM chains.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::network::{AnyNetwork, AnyRpcBlock, BlockResponse};
use alloy::primitives::U64;
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{Filter, Log as RpcLog};
use alloy::transports::{RpcError as AlloyRpcError, TransportError, TransportErrorKind};
use async_trait::async_trait;
use chainmux_core::{BlockPtr, ChainSpec, Heads, Network, NetworkError, NormalizedBlock};
use chainmux_rpc::{HeadProbe, IdentityCheck, Pool, PoolConfig, RequestHints, RpcError, UpstreamConfig};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::value::RawValue;
use tracing::warn;

use crate::logs::{RangeSizer, logs_in_range};
use crate::normalize::{normalize_block, normalize_header_with_logs};
use crate::transport::PoolTransport;

/// What [`EvmNetwork::fetch`] asks the upstreams for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FetchMode {
    /// Every block with its full transactions and their receipts (`eth_getBlockReceipts`, or `eth_getLogs` per
    /// block hash): transactions, logs, native and token transfers.
    #[default]
    Full,
    /// Block headers (`eth_getBlockByNumber` without transactions) and the logs of the whole range from as few
    /// `eth_getLogs` calls as the upstreams accept: logs and token transfers; no transactions, so no native
    /// transfers.
    Logs,
}

/// Adapter options from the chain's config.
#[derive(Debug, Clone)]
pub struct EvmOptions {
    /// Blocks fetched concurrently within one `fetch` call.
    pub fetch_concurrency: usize,
    /// Use `eth_getBlockReceipts`; when false (or when upstreams lack it), logs come from `eth_getLogs` and
    /// transaction outcomes (status, gas used) are not recorded.
    pub use_block_receipts: bool,
}

impl Default for EvmOptions {
    fn default() -> Self {
        Self { fetch_concurrency: 8, use_block_receipts: true }
    }
}

#[derive(Debug)]
pub struct EvmNetwork {
    pub(crate) spec: ChainSpec,
    pub(crate) provider: RootProvider<AnyNetwork>,
    pub(crate) fetch_concurrency: usize,
    use_block_receipts: AtomicBool,
    mode: FetchMode,
    /// Logs mode: blocks per `eth_getLogs` call, as learned so far.
    logs_range: RangeSizer,
    /// The same for filtered `eth_getLogs` calls (contract history), whose answers are much sparser.
    pub(crate) filtered_logs_range: RangeSizer,
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap_or_default()
}

fn parse_quantity(raw: &RawValue) -> Option<u64> {
    serde_json::from_str::<U64>(raw.get()).ok().map(|n| n.to::<u64>())
}

impl EvmNetwork {
    /// A pool for this chain: upstreams must answer `eth_chainId` with the configured id before they get traffic,
    /// and are probed with `eth_blockNumber`.
    pub fn pool(spec: &ChainSpec, upstreams: Vec<UpstreamConfig>, config: PoolConfig) -> Pool {
        let expected = spec.chain_id;
        let identity = IdentityCheck {
            method: "eth_chainId".into(),
            params: raw("[]"),
            verify: Box::new(move |answer| match parse_quantity(answer) {
                Some(id) if id == expected => Ok(()),
                Some(id) => Err(format!("wrong chain id: expected {expected}, upstream reports {id}")),
                None => Err(format!("unparseable eth_chainId answer {}", answer.get())),
            }),
        };
        let probe = HeadProbe {
            method: "eth_blockNumber".into(),
            params: raw("[]"),
            parse: parse_quantity,
            encode: |head| raw(&format!("\"{head:#x}\"")),
        };
        let hints = RequestHints {
            min_height: Some(crate::hints::min_height),
            duplicate_write: Some(crate::hints::raw_transaction_hash),
        };
        Pool::new(spec.name.clone(), upstreams, config)
            .with_identity_check(identity)
            .with_head_probe(probe)
            .with_hints(hints)
    }

    pub fn new(spec: ChainSpec, pool: Arc<Pool>, options: EvmOptions) -> Self {
        let client = RpcClient::new(PoolTransport::new(pool), false);
        Self {
            spec,
            provider: RootProvider::new(client),
            fetch_concurrency: options.fetch_concurrency.max(1),
            use_block_receipts: AtomicBool::new(options.use_block_receipts),
            mode: FetchMode::Full,
            logs_range: RangeSizer::default(),
            filtered_logs_range: RangeSizer::default(),
        }
    }

    /// This adapter fetching in `mode` ([`FetchMode::Full`] unless set).
    pub fn with_fetch_mode(mut self, mode: FetchMode) -> Self {
        self.mode = mode;
        self
    }

    /// Blocks per `eth_getLogs` call in logs mode as learned from the upstreams so far; `None` until one refused a
    /// range (whole ranges are asked for).
    pub fn logs_range_size(&self) -> Option<u64> {
        Some(self.logs_range.size()).filter(|&size| size != u64::MAX)
    }

    /// Logs mode: headers (concurrently) and the range's logs (adaptive `eth_getLogs` ranges), joined by height.
    async fn fetch_logs_mode(
        &self,
        range: RangeInclusive<u64>,
    ) -> Result<Vec<NormalizedBlock>, NetworkError> {
        let headers = stream::iter(range.clone())
            .map(|number| async move {
                self.block(number.into(), false).await?.ok_or(NetworkError::BlockUnavailable(number))
            })
            .buffered(self.fetch_concurrency)
            .try_collect::<Vec<_>>();
        let every_log = Filter::new();
        let logs = logs_in_range(
            &self.spec.name,
            &self.provider,
            &self.logs_range,
            self.fetch_concurrency,
            range.clone(),
            &every_log,
        );
        let (headers, logs) = tokio::try_join!(headers, logs)?;

        let mut by_block: Vec<Vec<RpcLog>> = vec![Vec::new(); headers.len()];
        for log in logs {
            let index = log
                .block_number
                .filter(|number| range.contains(number))
                .map(|number| (number - range.start()) as usize)
                .ok_or_else(|| {
                    NetworkError::Malformed(format!(
                        "eth_getLogs for blocks {}..={} returned a log of block {:?}",
                        range.start(),
                        range.end(),
                        log.block_number
                    ))
                })?;
            by_block[index].push(log);
        }
        headers.iter().zip(&by_block).map(|(header, logs)| normalize_header_with_logs(header, logs)).collect()
    }

    async fn block(&self, tag: BlockNumberOrTag, full: bool) -> Result<Option<AnyRpcBlock>, NetworkError> {
        let call = self.provider.get_block_by_number(tag);
        let call = if full { call.full() } else { call };
        call.await.map_err(network_error)
    }

    async fn fetch_one(&self, number: u64) -> Result<NormalizedBlock, NetworkError> {
        let block = self.block(number.into(), true);
        if self.use_block_receipts.load(Ordering::Relaxed) {
            let receipts = self.provider.get_block_receipts(BlockId::number(number));
            let (block, receipts) = tokio::join!(block, receipts);
            let block = block?.ok_or(NetworkError::BlockUnavailable(number))?;
            match receipts {
                Ok(Some(receipts)) => return normalize_block(&block, Some(&receipts), &[]),
                Ok(None) => return Err(NetworkError::BlockUnavailable(number)),
                Err(AlloyRpcError::ErrorResp(payload)) if payload.code == -32601 => {
                    warn!(chain = %self.spec.name, "upstreams lack eth_getBlockReceipts; using eth_getLogs");
                    self.use_block_receipts.store(false, Ordering::Relaxed);
                }
                Err(err) => return Err(network_error(err)),
            }
            let logs = self.logs_of(&block).await?;
            return normalize_block(&block, None, &logs);
        }
        let block = block.await?.ok_or(NetworkError::BlockUnavailable(number))?;
        let logs = self.logs_of(&block).await?;
        normalize_block(&block, None, &logs)
    }

    /// Logs of exactly this block, asked for by hash so a reorg between calls cannot mix forks.
    async fn logs_of(&self, block: &AnyRpcBlock) -> Result<Vec<RpcLog>, NetworkError> {
        let filter = Filter::new().at_block_hash(block.header().hash);
        self.provider.get_logs(&filter).await.map_err(network_error)
    }
}

/// Pool errors are transient from the indexer's point of view (an upstream may come back); a JSON-RPC error is
/// retryable only when it is the upstream's fault.
pub(crate) fn network_error(err: TransportError) -> NetworkError {
    match err {
        AlloyRpcError::ErrorResp(payload) => {
            let error = chainmux_rpc::JsonRpcError {
                code: payload.code,
                message: payload.message.to_string(),
                data: None,
            };
            NetworkError::Upstream {
                message: format!("JSON-RPC error {}: {}", error.code, error.message),
                retryable: error.is_upstream_fault(),
            }
        }
        AlloyRpcError::Transport(TransportErrorKind::Custom(inner)) => match inner.downcast::<RpcError>() {
            Ok(rpc) => NetworkError::Upstream { message: rpc.to_string(), retryable: true },
            Err(other) => NetworkError::Upstream { message: other.to_string(), retryable: true },
        },
        other => NetworkError::Upstream { message: other.to_string(), retryable: true },
    }
}

#[async_trait]
impl Network for EvmNetwork {
    fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    async fn heads(&self) -> Result<Heads, NetworkError> {
        let latest = async { self.provider.get_block_number().await.map_err(network_error) };
        // Chains or nodes without the tags answer with an error or null; that only means "no such head".
        let tagged =
            |tag| async move { self.block(tag, false).await.ok().flatten().map(|b| b.header().number) };
        let (latest, safe, finalized) =
            tokio::join!(latest, tagged(BlockNumberOrTag::Safe), tagged(BlockNumberOrTag::Finalized));
        Ok(Heads { latest: latest?, safe, finalized })
    }

    async fn block_ptr(&self, height: u64) -> Result<Option<BlockPtr>, NetworkError> {
        Ok(self.block(height.into(), false).await?.map(|b| BlockPtr::new(b.header().number, b.header().hash)))
    }

    async fn fetch(&self, range: RangeInclusive<u64>) -> Result<Vec<NormalizedBlock>, NetworkError> {
        let blocks: Vec<NormalizedBlock> = match self.mode {
            FetchMode::Full => {
                stream::iter(range)
                    .map(|number| self.fetch_one(number))
                    .buffered(self.fetch_concurrency)
                    .try_collect()
                    .await?
            }
            FetchMode::Logs => self.fetch_logs_mode(range).await?,
        };
        // Blocks fetched concurrently may straddle a reorg; only a linked range is handed out.
        for pair in blocks.windows(2) {
            if pair[1].parent != Some(pair[0].ptr) {
                return Err(NetworkError::Inconsistent(format!(
                    "block {} does not link to block {} (fork during fetch)",
                    pair[1].ptr.number, pair[0].ptr.number
                )));
            }
        }
        Ok(blocks)
    }
}
