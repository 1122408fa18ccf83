//! [`Network`] for Solana clusters.
//!
//! Heights are slots. Slots the leader skipped have no block, and a node may also lack a slot it never replayed or
//! already pruned, answering much like it does for a skipped one (`-32004`, `-32007`, `-32009`). A slot is only
//! treated as skipped when the chain itself proves it: `getBlocks` leaves it out *and* the next block's
//! `parentSlot` jumps over it. Anything less is an error to retry, never a silent gap.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chainmux_core::{B256, BlockPtr, ChainSpec, Heads, Network, NetworkError, NormalizedBlock};
use chainmux_rpc::{
    HeadProbe, HealthCheck, IdentityCheck, Pool, PoolConfig, RequestHints, RpcError, UpstreamConfig,
};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde_json::json;
use serde_json::value::RawValue;
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client::rpc_client::RpcClientConfig;
use solana_rpc_client_api::client_error::{Error as ClientError, ErrorKind};
use solana_rpc_client_api::request::{RpcError as SolanaRpcError, RpcRequest};
use solana_transaction_status_client_types::UiConfirmedBlock;
use tracing::{info, warn};

use crate::normalize::{ProgramFilter, decode_array, normalize_block};
use crate::sender::{PoolSender, pool_error};

/// Slots past the one in question that `block_ptr` looks at to find the next block, whose parent proves a skip.
/// Skipped runs on mainnet are a few slots; 64 leaves a wide margin at the cost of one `getBlocks` call.
const SKIP_PROOF_WINDOW: u64 = 64;

/// Which commitment the indexer follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Commitment {
    /// Voted on by a supermajority: the tip worth indexing; may still be rolled back (rarely).
    #[default]
    Confirmed,
    /// Rooted: never rolled back; ~13 s behind `confirmed`.
    Finalized,
}

impl Commitment {
    fn config(self) -> CommitmentConfig {
        match self {
            Self::Confirmed => CommitmentConfig::confirmed(),
            Self::Finalized => CommitmentConfig::finalized(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Finalized => "finalized",
        }
    }
}

/// Adapter options from the chain's config.
#[derive(Debug, Clone)]
pub struct SolanaOptions {
    pub commitment: Commitment,
    /// Blocks fetched concurrently within one `fetch` call.
    pub fetch_concurrency: usize,
    /// Programs whose instructions (with their log messages) are kept.
    pub programs: ProgramFilter,
}

impl Default for SolanaOptions {
    fn default() -> Self {
        Self { commitment: Commitment::Confirmed, fetch_concurrency: 8, programs: ProgramFilter::default() }
    }
}

pub struct SolanaNetwork {
    spec: ChainSpec,
    client: RpcClient,
    options: SolanaOptions,
}

impl std::fmt::Debug for SolanaNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SolanaNetwork")
            .field("spec", &self.spec)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn raw(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap_or_default()
}

fn parse_slot(raw: &RawValue) -> Option<u64> {
    serde_json::from_str(raw.get()).ok()
}

impl SolanaNetwork {
    /// A pool for a Solana chain: upstreams must answer `getGenesisHash` with `genesis_hash` (base58) before they
    /// get traffic — or, when none is configured, with the same hash as the first upstream verified; they are
    /// probed with `getHealth` (a node that says it is behind is excluded) and `getSlot` at `commitment`.
    pub fn pool(
        spec: &ChainSpec,
        genesis_hash: Option<String>,
        commitment: Commitment,
        upstreams: Vec<UpstreamConfig>,
        config: PoolConfig,
    ) -> Pool {
        let pinned = OnceLock::new();
        if let Some(expected) = genesis_hash {
            let _ = pinned.set(expected);
        }
        let chain = spec.name.clone();
        let identity = IdentityCheck {
            method: "getGenesisHash".into(),
            params: raw("[]"),
            verify: Box::new(move |answer| {
                let Ok(answered) = serde_json::from_str::<String>(answer.get()) else {
                    return Err(format!("unparseable getGenesisHash answer {}", answer.get()));
                };
                let expected = pinned.get_or_init(|| {
                    info!(%chain, genesis_hash = %answered, "no genesis_hash configured: pinned the first upstream's");
                    answered.clone()
                });
                if *expected == answered {
                    Ok(())
                } else {
                    Err(format!("wrong genesis hash: expected {expected}, upstream reports {answered}"))
                }
            }),
        };
        let probe = HeadProbe {
            method: "getSlot".into(),
            params: raw(&format!(r#"[{{"commitment":"{}"}}]"#, commitment.as_str())),
            parse: parse_slot,
            encode: |slot| raw(&slot.to_string()),
        };
        let health = HealthCheck { method: "getHealth".into(), params: raw("[]") };
        let hints = RequestHints {
            min_height: Some(crate::hints::min_height),
            duplicate_write: Some(crate::hints::transaction_signature),
        };
        Pool::new(spec.name.clone(), upstreams, config)
            .with_identity_check(identity)
            .with_head_probe(probe)
            .with_health_check(health)
            .with_hints(hints)
    }

    pub fn new(spec: ChainSpec, pool: Arc<Pool>, options: SolanaOptions) -> Self {
        let config = RpcClientConfig::with_commitment(options.commitment.config());
        let client = RpcClient::new_sender(PoolSender::new(pool), config);
        Self { spec, client, options }
    }

    fn commitment(&self) -> CommitmentConfig {
        self.options.commitment.config()
    }

    /// Produced slots in `range` at the followed commitment, ascending.
    async fn produced_slots(&self, range: RangeInclusive<u64>) -> Result<Vec<u64>, NetworkError> {
        let (start, end) = range.into_inner();
        let mut slots = self
            .client
            .get_blocks_with_commitment(start, Some(end), self.commitment())
            .await
            .map_err(network_error)?;
        // Some nodes list slots past the requested end (or past the commitment's tip); only the range counts.
        slots.retain(|slot| (start..=end).contains(slot));
        slots.sort_unstable();
        slots.dedup();
        Ok(slots)
    }

    /// `getBlock` at the followed commitment; `Ok(None)` when the node answers `null` (not produced yet).
    async fn block(&self, slot: u64, details: &str) -> Result<Option<UiConfirmedBlock>, NetworkError> {
        let config = json!({
            "encoding": "json",
            "transactionDetails": details,
            "rewards": false,
            "maxSupportedTransactionVersion": 0,
            "commitment": self.options.commitment.as_str(),
        });
        self.client
            .send::<Option<UiConfirmedBlock>>(RpcRequest::GetBlock, json!([slot, config]))
            .await
            .map_err(|err| block_error(slot, err))
    }

    /// The lowest slot the upstreams have a block for.
    async fn first_available_slot(&self) -> Result<u64, NetworkError> {
        self.client.get_first_available_block().await.map_err(network_error)
    }

    /// The block at `slot` as the upstreams serve it now; an error if there is none.
    async fn served_ptr(&self, slot: u64) -> Result<BlockPtr, NetworkError> {
        let block = self.block(slot, "none").await?.ok_or(NetworkError::BlockUnavailable(slot))?;
        Ok(BlockPtr::new(slot, parse_hash(slot, &block.blockhash)?))
    }

    async fn fetch_one(&self, slot: u64) -> Result<NormalizedBlock, NetworkError> {
        let block = self.block(slot, "full").await?.ok_or(NetworkError::BlockUnavailable(slot))?;
        normalize_block(slot, &block, &self.options.programs)
    }
}

#[async_trait]
impl Network for SolanaNetwork {
    fn spec(&self) -> &ChainSpec {
        &self.spec
    }

    fn skips_heights(&self) -> bool {
        true
    }

    async fn heads(&self) -> Result<Heads, NetworkError> {
        let (followed, finalized) = tokio::try_join!(
            self.client.get_slot_with_commitment(self.commitment()),
            self.client.get_slot_with_commitment(CommitmentConfig::finalized()),
        )
        .map_err(network_error)?;
        Ok(Heads { latest: followed.max(finalized), safe: None, finalized: Some(finalized) })
    }

    async fn block_ptr(&self, slot: u64) -> Result<Option<BlockPtr>, NetworkError> {
        let head = self.client.get_slot_with_commitment(self.commitment()).await.map_err(network_error)?;
        // Beyond the head the upstreams know of, nothing is proven either way. `None` here would read as "skipped
        // on the canonical fork" and could roll back good blocks when the best upstream is briefly out of the pool.
        if slot > head {
            return Err(NetworkError::BlockUnavailable(slot));
        }
        let window_end = slot.saturating_add(SKIP_PROOF_WINDOW).min(head);
        let produced = self.produced_slots(slot..=window_end).await?;
        if produced.first() == Some(&slot) {
            return self.served_ptr(slot).await.map(Some);
        }
        // Not listed: skipped only if the next block's parent jumps over it.
        let Some(&next) = produced.first() else {
            return Err(NetworkError::Inconsistent(format!(
                "slot {slot}: no block listed up to slot {window_end}; cannot tell a skip from a gap yet"
            )));
        };
        let block = self.block(next, "none").await?.ok_or(NetworkError::BlockUnavailable(next))?;
        if block.parent_slot < slot {
            Ok(None)
        } else {
            Err(NetworkError::Inconsistent(format!(
                "slot {slot}: getBlocks leaves it out, but block {next} names slot {} as its parent",
                block.parent_slot
            )))
        }
    }

    async fn fetch(&self, range: RangeInclusive<u64>) -> Result<Vec<NormalizedBlock>, NetworkError> {
        let start = *range.start();
        let slots = self.produced_slots(range.clone()).await?;
        let fetched: Vec<NormalizedBlock> = stream::iter(slots.iter().copied())
            .map(|slot| self.fetch_one(slot))
            .buffered(self.options.fetch_concurrency.max(1))
            .try_collect()
            .await?;
        // A block whose parent slot lies in the range but was not listed proves the listing incomplete (a node
        // that lacks some slots answered `getBlocks`): the parent exists, so it is fetched too — from whichever
        // upstream has it — instead of failing the whole range.
        let mut by_slot: BTreeMap<u64, NormalizedBlock> =
            fetched.into_iter().map(|b| (b.ptr.number, b)).collect();
        // Each such parent is asked for, so the pool can find an upstream that has it. Only when none does and the
        // parent lies below the upstreams' first stored slot (the first block a node has names a parent it never
        // had; or every node pruned it) is the block's own claim kept — loudly, since those slots stay unindexed.
        let mut beyond_history: BTreeSet<u64> = BTreeSet::new();
        let mut added = 0;
        while let Some(missing) = by_slot
            .values()
            .filter_map(|b| b.parent.map(|p| p.number))
            .find(|p| range.contains(p) && !by_slot.contains_key(p) && !beyond_history.contains(p))
        {
            added += 1;
            if added > range.end() - start + 1 {
                return Err(NetworkError::Inconsistent(format!(
                    "slots {start}..={}: parent slots do not settle",
                    range.end()
                )));
            }
            warn!(chain = %self.spec.name, slot = missing, "a block names an unlisted parent slot; fetching it");
            match self.fetch_one(missing).await {
                Ok(block) => {
                    by_slot.insert(missing, block);
                }
                Err(err) => {
                    let first = self.first_available_slot().await?;
                    if missing >= first {
                        return Err(err);
                    }
                    warn!(
                        chain = %self.spec.name,
                        slot = missing,
                        first_available = first,
                        %err,
                        "no upstream has blocks below its first available slot; slots below it stay unindexed"
                    );
                    beyond_history.insert(missing);
                }
            }
        }
        let mut blocks: Vec<NormalizedBlock> = by_slot.into_values().collect();
        // The parent slots prove the listed slots complete: each block's parent is the block before it, and the
        // first one's parent lies below the range. A slot the node left out of `getBlocks` shows up here as a
        // parent slot that is not the previous block.
        //
        // Parents are linked by slot and the parent's blockhash *as served*, not by `previousBlockhash`: on a real
        // cluster the two are equal, but some nodes (surfpool, the local test node) serve blockhashes that do not
        // match the next block's `previousBlockhash`. A fork still shows: the orphaned slot's block is served with
        // another hash, or not at all, and the indexer's parent check fails at the cursor.
        let mut previous: Option<BlockPtr> = None;
        for block in &mut blocks {
            let parent_slot = block.parent.map(|p| p.number);
            let parent = match (previous, parent_slot) {
                (Some(previous), Some(slot)) if slot == previous.number => Some(previous),
                // A parent the node does not serve at all (below its first block) keeps the block's own claim.
                (None, Some(slot)) if slot < start => match self.block(slot, "none").await? {
                    Some(parent) => Some(BlockPtr::new(slot, parse_hash(slot, &parent.blockhash)?)),
                    None => block.parent,
                },
                (None, None) => None,
                // The parent lies in the range but below every upstream's history (see above): its own claim.
                (None, Some(slot)) if beyond_history.contains(&slot) => block.parent,
                _ => {
                    return Err(NetworkError::Inconsistent(format!(
                        "slot {}: parent slot {parent_slot:?} does not continue the listed blocks of {start}..={}",
                        block.ptr.number,
                        range.end()
                    )));
                }
            };
            block.parent = parent;
            previous = Some(block.ptr);
        }
        Ok(blocks)
    }
}

fn parse_hash(slot: u64, text: &str) -> Result<B256, NetworkError> {
    decode_array::<32>(text).map(B256::from).ok_or_else(|| {
        NetworkError::Malformed(format!("slot {slot}: blockhash {text:?} is not 32 bytes of base58"))
    })
}

/// A `getBlock` failure: a node that cannot serve the slot is asked again (the pool may pick another node);
/// "skipped" answers are not believed here, since `fetch` only asks for slots `getBlocks` listed.
fn block_error(slot: u64, err: ClientError) -> NetworkError {
    if let ErrorKind::RpcError(SolanaRpcError::RpcResponseError { code, message, .. }) = err.kind()
        && matches!(code, -32004 | -32007 | -32009 | -32014 | -32001)
    {
        return NetworkError::Inconsistent(format!("slot {slot}: {message}"));
    }
    network_error(err)
}

fn network_error(err: ClientError) -> NetworkError {
    if let Some(pool) = pool_error(&err) {
        return upstream(pool);
    }
    let retryable = match err.kind() {
        ErrorKind::RpcError(SolanaRpcError::RpcResponseError { code, message, .. }) => {
            chainmux_rpc::JsonRpcError { code: *code, message: message.clone(), data: None }
                .is_upstream_fault()
        }
        ErrorKind::SerdeJson(_) => {
            return NetworkError::Malformed(err.to_string());
        }
        _ => true,
    };
    NetworkError::Upstream { message: err.to_string(), retryable }
}

/// A failure of the pool itself (every upstream failed or none is eligible): the pool has done its retries, but
/// the same call may well succeed once an upstream recovers, so the indexer waits and asks again — as on EVM.
fn upstream(err: &RpcError) -> NetworkError {
    NetworkError::Upstream { message: err.to_string(), retryable: true }
}
