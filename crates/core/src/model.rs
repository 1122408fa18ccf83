//! The normalized data model: one shape for every chain family, so the store and the API never branch on the chain.

use alloy::primitives::{B256, Bytes, U256};
use serde::{Deserialize, Serialize};

/// Which adapter a chain uses. Determines how ids are rendered (`0x` hex on EVM, base58 on Solana).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainKind {
    Evm,
    Solana,
}

impl ChainKind {
    /// The name used in configs and the `chains` table, e.g. `"evm"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evm => "evm",
            Self::Solana => "solana",
        }
    }
}

impl std::fmt::Display for ChainKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the rest of the system knows about a configured chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    /// Operator-chosen name: the URL segment and the `chain` column of every row.
    pub name: String,
    pub kind: ChainKind,
    /// Network id checked against every upstream at start-up (EIP-155 chain id on EVM). Solana chains are
    /// identified by their genesis hash instead and have 0 here.
    pub chain_id: u64,
}

/// Confirmations after which a block counts as final on chains (or nodes) without a `finalized` head of their own.
/// Known chains get their usual depth; unknown ones a conservative default.
pub fn default_confirmations(chain_id: u64) -> u64 {
    match chain_id {
        // Ethereum mainnet and testnets: two epochs.
        1 | 11_155_111 | 17_000 => 64,
        // BNB Smart Chain.
        56 | 97 => 15,
        // Polygon PoS.
        137 | 80_002 => 128,
        // Avalanche C-Chain: single-slot finality.
        43_114 | 43_113 => 1,
        // Gnosis.
        100 => 20,
        // OP Stack and Arbitrum chains settle on L1; their nodes have the tag, this is only the fallback.
        10 | 8453 | 42_161 | 42_170 => 64,
        // Local development chains (anvil, hardhat): no reorgs unless asked for.
        31_337 | 1337 => 0,
        _ => 64,
    }
}

/// A block identified by height and hash. The hash is what makes a pointer fork-proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockPtr {
    pub number: u64,
    pub hash: B256,
}

impl BlockPtr {
    pub fn new(number: u64, hash: B256) -> Self {
        Self { number, hash }
    }
}

/// The chain's tips as reported by the upstreams. `safe`/`finalized` are absent where the chain has no such tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Heads {
    pub latest: u64,
    pub safe: Option<u64>,
    pub finalized: Option<u64>,
}

/// How settled a row is, judged against the chain's current heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finality {
    Pending,
    Safe,
    Finalized,
}

impl Finality {
    /// Finality of the block at `number` given the latest known `safe` and `finalized` heights.
    pub fn of(number: u64, safe: Option<u64>, finalized: Option<u64>) -> Self {
        if finalized.is_some_and(|f| number <= f) {
            Self::Finalized
        } else if safe.is_some_and(|s| number <= s) {
            Self::Safe
        } else {
            Self::Pending
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Safe => "safe",
            Self::Finalized => "finalized",
        }
    }
}

/// One block, normalized: everything the store writes for it.
///
/// On Solana `ptr.number` is the slot and `parent` the parent slot, which is not always `slot - 1`: skipped slots
/// have no block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedBlock {
    pub ptr: BlockPtr,
    /// `None` only for a chain's first block.
    pub parent: Option<BlockPtr>,
    /// Seconds since the Unix epoch (0 where the chain did not record it).
    pub timestamp: u64,
    /// Count of blocks below this one, where it differs from `ptr.number` (Solana's block height, which does
    /// not count skipped slots). `None` on EVM.
    pub height: Option<u64>,
    pub transactions: Vec<Transaction>,
    pub logs: Vec<Log>,
    pub transfers: Vec<Transfer>,
    /// Instructions of the programs the chain's config lists (Solana); empty elsewhere.
    pub instructions: Vec<Instruction>,
    /// Logs decoded with the ABIs of the chain's `[[chains.contracts]]`. Filled in by the indexer's
    /// [`BlockDecoder`] just before the block is written, never by a [`crate::Network`].
    pub events: Vec<DecodedEvent>,
    /// Contracts a configured factory created in this block, filled in with [`Self::events`].
    pub created_contracts: Vec<CreatedContract>,
}

impl NormalizedBlock {
    /// A block that carries only `logs` (no parent, transactions or transfers): the input of a contract entry's
    /// catch-up, whose blocks were indexed earlier or are below the indexed range.
    pub fn logs_only(ptr: BlockPtr, logs: Vec<Log>) -> Self {
        Self {
            ptr,
            parent: None,
            timestamp: 0,
            height: None,
            transactions: Vec::new(),
            logs,
            transfers: Vec::new(),
            instructions: Vec::new(),
            events: Vec::new(),
            created_contracts: Vec::new(),
        }
    }

    /// Hash of the parent block, or zero for a chain's first block (as EVM genesis headers say).
    pub fn parent_hash(&self) -> B256 {
        self.parent.map(|p| p.hash).unwrap_or_default()
    }
}

/// A log decoded with the ABI of a configured contract (a `[[chains.contracts]]` entry).
///
/// `(block, log_index, contract)` is unique: two entries may decode the same log, each into its own row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedEvent {
    pub tx_hash: Bytes,
    pub tx_index: u32,
    /// Position of the log in the block.
    pub log_index: u32,
    /// The emitting contract.
    pub address: Bytes,
    /// Name of the `[[chains.contracts]]` entry that decoded it.
    pub contract: String,
    /// Event name as the ABI has it.
    pub name: String,
    /// Canonical signature, e.g. `Transfer(address,address,uint256)`: what tells overloaded events apart.
    pub signature: String,
    /// The arguments as the text of a JSON object keyed by parameter name: integers as decimal strings, addresses
    /// and bytes as lowercase `0x` hex, booleans and strings as themselves, tuples as objects and arrays as arrays;
    /// indexed parameters of dynamic types as the `0x` hex of the hash the log holds instead of their value.
    pub args: String,
}

/// A contract created by a configured factory: its events are decoded from the block of its creation on, so it
/// disappears with that block in a reorg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedContract {
    /// Name of the `[[chains.contracts]]` entry whose factory created it.
    pub contract: String,
    pub address: Bytes,
    pub factory: Bytes,
    /// The transaction and log of the factory event that announced it.
    pub tx_hash: Bytes,
    pub log_index: u32,
}

/// Derives rows from fetched blocks in chain order, with state that follows the index (the children of
/// factories). The indexer calls it once per batch, in order, after the batch is known to continue the cursor and
/// before it is written, and tells it about every rollback.
pub trait BlockDecoder: Send + Sync {
    /// Fills [`NormalizedBlock::events`] and [`NormalizedBlock::created_contracts`] of `blocks` (ascending,
    /// continuing the previous call's blocks), remembering the contracts created. Never fails: a log that does not
    /// decode is counted and reported, not fatal.
    fn decode(&mut self, blocks: &mut [NormalizedBlock]);
    /// Forgets every contract created above block `to`: those blocks were rolled back.
    fn revert(&mut self, to: u64);
}

/// What the indexer did to a chain's stored data, in order: for live feeds and caches that must follow the index.
/// Reorgs are a value in this stream, not an exception.
#[derive(Debug, Clone)]
pub enum ChainEvent {
    /// These blocks (ascending, linked) were written on top of the previous head.
    Apply(std::sync::Arc<[NormalizedBlock]>),
    /// Every block above `to` was removed: `from` was the indexed head before, on the abandoned branch.
    Revert { to: BlockPtr, from: BlockPtr },
}

/// A transaction as included in a block, with its outcome where the upstream reported one.
///
/// Solana transactions use the same shape: `hash` is the first signature (64 bytes), `from` the fee payer, `to`
/// `None`, `gas_used` the compute units consumed, `fee` the lamports paid; the EVM-only fields are zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub hash: Bytes,
    /// Position in the block.
    pub index: u32,
    pub from: Bytes,
    /// `None` for contract creation.
    pub to: Option<Bytes>,
    pub value: U256,
    pub nonce: u64,
    pub gas_limit: u64,
    /// Price actually paid per gas unit (effective gas price), when known.
    pub gas_price: Option<u128>,
    /// From the receipt; `None` when receipts were not available.
    pub gas_used: Option<u64>,
    /// `Some(true)` succeeded, `Some(false)` reverted, `None` unknown (no receipt).
    pub status: Option<bool>,
    /// Address of the contract a creation deployed.
    pub contract_address: Option<Bytes>,
    pub input: Bytes,
    /// Fee paid in the native currency's smallest unit, where the chain reports it as one number (Solana).
    pub fee: Option<u128>,
    /// Why the transaction failed, as the chain reports it (Solana's `err`, as JSON); `None` when it succeeded.
    pub error: Option<String>,
}

/// One executed instruction of a Solana program listed in the chain's config, top-level or invoked (CPI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The transaction's first signature.
    pub tx_hash: Bytes,
    pub tx_index: u32,
    /// Position in the transaction's execution order, top-level and inner instructions counted together; unique
    /// within the transaction.
    pub position: u32,
    /// The top-level instruction this one is, or runs under.
    pub outer_index: u32,
    /// Position among the inner instructions of `outer_index`; `None` for a top-level instruction.
    pub inner_index: Option<u32>,
    /// Invocation depth: 1 for top-level, 2 and more for cross-program invocations.
    pub stack_height: u32,
    pub program: Bytes,
    /// The instruction's accounts, resolved to addresses (address lookup tables included).
    pub accounts: Vec<Bytes>,
    pub data: Bytes,
    /// Log messages emitted while this instruction itself ran (not those of the instructions it invoked).
    pub logs: Vec<String>,
}

/// An event log emitted by a successful transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub tx_hash: Bytes,
    pub tx_index: u32,
    /// Position of the log in the block (not in the transaction).
    pub log_index: u32,
    pub address: Bytes,
    pub topics: Vec<B256>,
    pub data: Bytes,
}

/// The token standard (or native currency) a transfer moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferStandard {
    Native,
    Erc20,
    Erc721,
    Erc1155,
    /// Lamports moved by the System program (Solana).
    Sol,
    /// SPL Token or Token-2022 (Solana).
    Spl,
}

impl TransferStandard {
    pub const ALL: [Self; 6] = [Self::Native, Self::Erc20, Self::Erc721, Self::Erc1155, Self::Sol, Self::Spl];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Erc20 => "erc20",
            Self::Erc721 => "erc721",
            Self::Erc1155 => "erc1155",
            Self::Sol => "sol",
            Self::Spl => "spl",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A movement of value, in one shape for every standard.
///
/// `(block, standard, log_index, batch_index)` is unique: `log_index` is the log's index in the block, or for a native
/// transfer the transaction's index; `batch_index` is the element of an ERC-1155 batch and 0 otherwise.
/// On Solana `log_index` is the transaction's index in the block and `batch_index` the instruction's
/// [`Instruction::position`] in it; `from`/`to` are token accounts for SPL, with their wallets in
/// `from_owner`/`to_owner`. Mints come from the all-zero address and burns go to it, as on EVM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub tx_hash: Bytes,
    pub log_index: u32,
    pub batch_index: u32,
    pub standard: TransferStandard,
    /// Token contract; `None` for the native currency.
    pub token: Option<Bytes>,
    pub from: Bytes,
    pub to: Bytes,
    /// Exact amount in the token's smallest unit (1 for an ERC-721 token).
    pub amount: U256,
    /// ERC-721 / ERC-1155 token id.
    pub token_id: Option<U256>,
    /// Wallet owning the `from` token account (SPL); `None` where `from` is the wallet itself.
    pub from_owner: Option<Bytes>,
    /// Wallet owning the `to` token account (SPL); `None` where `to` is the wallet itself.
    pub to_owner: Option<Bytes>,
    /// The token's decimals, where the chain reports them with the transfer (SPL).
    pub decimals: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finality_follows_heads() {
        assert_eq!(Finality::of(10, Some(12), Some(10)), Finality::Finalized);
        assert_eq!(Finality::of(11, Some(12), Some(10)), Finality::Safe);
        assert_eq!(Finality::of(13, Some(12), Some(10)), Finality::Pending);
        assert_eq!(Finality::of(0, None, None), Finality::Pending);
    }

    #[test]
    fn transfer_standard_round_trips() {
        for standard in TransferStandard::ALL {
            assert_eq!(TransferStandard::parse(standard.as_str()), Some(standard));
        }
        assert_eq!(TransferStandard::parse("erc777"), None);
    }
}
