//! JSON shapes of the REST API, in each chain family's own spelling: on EVM lowercase `0x` hex and EVM field names,
//! on Solana base58 and Solana's names (slot, signature, fee payer). 256-bit integers are decimal strings everywhere.
//! Transfers have one shape on every chain, so a client can follow value across chains.
//!
//! Every shape is a typed struct: what serializes the answer is also what `/openapi.json` describes (`ToSchema`),
//! so the document cannot drift from the responses. An `Option` field is always sent, as `null` when empty, hence
//! `required` in the schema too.

use alloy::hex;
use chainmux_core::{BlockPtr, ChainKind, Finality, Heads};
use chainmux_store::{
    BlockRow, ContractRow, ContractSourceRow, EventRow, InstructionRow, LogRow, TransactionRow, TransferRow,
};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `bytes` as the chain spells ids: `0x` hex on EVM, base58 on Solana.
pub(crate) fn id(kind: ChainKind, bytes: &[u8]) -> String {
    match kind {
        ChainKind::Evm => hex::encode_prefixed(bytes),
        ChainKind::Solana => bs58::encode(bytes).into_string(),
    }
}

/// A block (EVM) or slot (Solana) the index has reached.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct HeadPtr {
    number: u64,
    hash: String,
}

/// The indexed head `{number, hash}`, or null before the first block.
pub(crate) fn ptr(kind: ChainKind, ptr: Option<BlockPtr>) -> Option<HeadPtr> {
    ptr.map(|p| HeadPtr { number: p.number, hash: id(kind, p.hash.as_slice()) })
}

/// One page of a list endpoint, with the index position it was read at.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Pass as `cursor` to read the next page; null on the last page.
    #[schema(required)]
    pub(crate) next_cursor: Option<String>,
    /// How far the chain is indexed; null before the first block.
    #[schema(required)]
    pub(crate) indexed_head: Option<HeadPtr>,
    /// The chain's finalized height when the page was read; null while unknown.
    #[schema(required)]
    pub(crate) finalized_head: Option<u64>,
}

/// The page of `/contracts`: indexed addresses, plus the configured entries they belong to.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ContractsPage {
    pub(crate) items: Vec<ContractItem>,
    /// Pass as `cursor` to read the next page; null on the last page.
    #[schema(required)]
    pub(crate) next_cursor: Option<String>,
    /// The `[[chains.contracts]]` entries (only the one named by `name`, when given).
    pub(crate) sources: Vec<ContractSource>,
    /// How far the chain is indexed; null before the first block.
    #[schema(required)]
    pub(crate) indexed_head: Option<HeadPtr>,
    /// The chain's finalized height when the page was read; null while unknown.
    #[schema(required)]
    pub(crate) finalized_head: Option<u64>,
}

/// How far a contract entry is indexed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Progress {
    /// `live` or `catching_up`.
    status: &'static str,
    start_block: i64,
    live_from: i64,
    #[schema(required)]
    caught_up_to: Option<i64>,
    /// Catch-up progress while `catching_up`; the chain's indexed head once `live`.
    #[schema(required)]
    indexed_to: Option<i64>,
}

/// How far a `[[chains.contracts]]` entry is indexed. An entry added to an indexed chain decodes new blocks from
/// `live_from` on and is `catching_up` on `[start_block, live_from)` until `caught_up_to` reaches `live_from - 1`
/// (at once when it starts at or above `live_from`); `indexed_to` is its catch-up progress until then, and the
/// chain's indexed head after.
pub(crate) fn progress(source: &ContractSourceRow, cursor: Option<BlockPtr>) -> Progress {
    let caught_up = source.live_from <= source.start_block
        || source.caught_up_to.is_some_and(|done| done >= source.live_from - 1);
    let (status, indexed_to) = if caught_up {
        ("live", cursor.and_then(|c| i64::try_from(c.number).ok()))
    } else {
        ("catching_up", source.caught_up_to)
    };
    Progress {
        status,
        start_block: source.start_block,
        live_from: source.live_from,
        caught_up_to: source.caught_up_to,
        indexed_to,
    }
}

/// A block: the EVM or the Solana shape, by the chain's family.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Block {
    Evm(EvmBlock),
    Solana(SolanaBlock),
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EvmBlock {
    chain: String,
    number: i64,
    hash: String,
    parent_hash: String,
    /// Unix seconds.
    timestamp: i64,
    transaction_count: i32,
    log_count: i32,
    /// `pending`, `safe` or `finalized`.
    finality: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SolanaBlock {
    chain: String,
    slot: i64,
    hash: String,
    /// Null for the chain's first stored block.
    #[schema(required)]
    parent_slot: Option<i64>,
    #[schema(required)]
    parent_hash: Option<String>,
    #[schema(required)]
    height: Option<i64>,
    /// Unix seconds; null when the block has no block time.
    #[schema(required)]
    timestamp: Option<i64>,
    tx_count: i32,
    /// `confirmed` or `finalized`.
    finality: &'static str,
}

/// A transaction: the EVM or the Solana shape, by the chain's family.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum Transaction {
    Evm(EvmTransaction),
    Solana(SolanaTransaction),
}

/// 256-bit quantities (`value`, `gas_price`, …) are decimal strings.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EvmTransaction {
    chain: String,
    block_number: i64,
    block_hash: String,
    hash: String,
    transaction_index: i32,
    from: String,
    /// Null for a contract creation.
    #[schema(required)]
    to: Option<String>,
    value: String,
    nonce: String,
    gas: String,
    #[schema(required)]
    gas_price: Option<String>,
    #[schema(required)]
    gas_used: Option<String>,
    /// 1 success, 0 reverted; null before Byzantium.
    #[schema(required)]
    status: Option<u8>,
    #[schema(required)]
    contract_address: Option<String>,
    input: String,
    finality: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SolanaTransaction {
    chain: String,
    signature: String,
    slot: i64,
    block_hash: String,
    index: i32,
    fee_payer: String,
    /// Lamports, as a decimal string.
    #[schema(required)]
    fee: Option<String>,
    #[schema(required)]
    success: Option<bool>,
    /// The node's error JSON for a failed transaction; null on success.
    #[schema(required)]
    error: Option<Value>,
    #[schema(required)]
    compute_units: Option<u64>,
    finality: &'static str,
}

/// A token transfer, one shape on every chain. `amount` and `token_id` are decimal strings.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TransferItem {
    chain: String,
    block_number: i64,
    block_hash: String,
    tx_hash: String,
    log_index: i32,
    batch_index: i32,
    /// `native`, `erc20`, `erc721`, `erc1155`, `spl`, …
    standard: String,
    /// Null for the chain's native currency.
    #[schema(required)]
    token: Option<String>,
    from: String,
    to: String,
    amount: String,
    #[schema(required)]
    token_id: Option<String>,
    #[schema(required)]
    from_owner: Option<String>,
    #[schema(required)]
    to_owner: Option<String>,
    #[schema(required)]
    decimals: Option<i16>,
    finality: &'static str,
}

/// An EVM event log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LogItem {
    chain: String,
    block_number: i64,
    block_hash: String,
    tx_hash: String,
    transaction_index: i32,
    log_index: i32,
    address: String,
    topics: Vec<String>,
    data: String,
    finality: &'static str,
}

/// An ABI-decoded contract event (EVM).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventItem {
    chain: String,
    block_number: i64,
    block_hash: String,
    tx_hash: String,
    tx_index: i32,
    log_index: i32,
    address: String,
    /// The `[[chains.contracts]]` entry that decoded it.
    contract: String,
    name: String,
    signature: String,
    /// The decoded arguments by parameter name (position for unnamed ones).
    args: Value,
    finality: &'static str,
}

/// An indexed contract address.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ContractItem {
    name: String,
    address: String,
    /// `addresses` (configured) or `factory` (created by the entry's factory).
    kind: String,
    #[schema(required)]
    factory: Option<String>,
    #[schema(required)]
    created_block: Option<i64>,
    #[schema(required)]
    created_block_hash: Option<String>,
    #[schema(required)]
    created_tx_hash: Option<String>,
    #[schema(required)]
    created_log_index: Option<i32>,
    finality: &'static str,
    /// Its entry's progress.
    #[schema(required)]
    progress: Option<Progress>,
}

/// A configured `[[chains.contracts]]` entry.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ContractSource {
    name: String,
    kind: String,
    #[schema(required)]
    factory: Option<String>,
    #[schema(required)]
    factory_event: Option<String>,
    #[schema(required)]
    factory_parameter: Option<String>,
    start_block: i64,
    /// Addresses its factory created so far.
    children: i64,
    /// Signatures of the events it decodes.
    events: Vec<String>,
    progress: Progress,
}

/// A Solana instruction; `data` in base58.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InstructionItem {
    chain: String,
    slot: i64,
    block_hash: String,
    signature: String,
    tx_index: i32,
    position: i32,
    outer_index: i32,
    /// Null for an outer instruction.
    #[schema(required)]
    inner_index: Option<i32>,
    stack_height: i32,
    program: String,
    accounts: Vec<String>,
    data: String,
    logs: Vec<String>,
    #[schema(required)]
    tx_success: Option<bool>,
    finality: &'static str,
}

/// Renders the rows of one chain, whose finality is judged against `heads`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) chain: &'a str,
    pub(crate) kind: ChainKind,
    pub(crate) heads: Option<&'a Heads>,
}

impl View<'_> {
    fn id(&self, bytes: &[u8]) -> String {
        id(self.kind, bytes)
    }

    fn opt_id(&self, bytes: Option<&Vec<u8>>) -> Option<String> {
        bytes.map(|b| self.id(b))
    }

    /// EVM: pending, safe or finalized by the safe and finalized heads. Solana: the indexer follows the confirmed
    /// commitment, so every stored row is at least confirmed, and finalized up to the finalized slot.
    fn finality(&self, number: i64) -> &'static str {
        let number = u64::try_from(number).unwrap_or_default();
        let finalized = self.heads.and_then(|h| h.finalized).is_some_and(|f| number <= f);
        match self.kind {
            ChainKind::Evm => match self.heads {
                Some(h) => Finality::of(number, h.safe, h.finalized).as_str(),
                None => Finality::Pending.as_str(),
            },
            ChainKind::Solana if finalized => "finalized",
            ChainKind::Solana => "confirmed",
        }
    }

    pub(crate) fn block(&self, row: &BlockRow) -> Block {
        match self.kind {
            ChainKind::Evm => Block::Evm(EvmBlock {
                chain: self.chain.to_owned(),
                number: row.number,
                hash: self.id(&row.hash),
                parent_hash: self.id(&row.parent_hash),
                timestamp: row.timestamp,
                transaction_count: row.tx_count,
                log_count: row.log_count,
                finality: self.finality(row.number),
            }),
            ChainKind::Solana => Block::Solana(SolanaBlock {
                chain: self.chain.to_owned(),
                slot: row.number,
                hash: self.id(&row.hash),
                parent_slot: row.parent_number,
                // Without a parent slot (the chain's first block) the stored parent hash is only a placeholder.
                parent_hash: row.parent_number.map(|_| self.id(&row.parent_hash)),
                height: row.height,
                // Solana blocks may lack a block time; the store keeps 0 for it, which is no time at all.
                timestamp: (row.timestamp != 0).then_some(row.timestamp),
                tx_count: row.tx_count,
                finality: self.finality(row.number),
            }),
        }
    }

    pub(crate) fn transaction(&self, row: &TransactionRow) -> Transaction {
        match self.kind {
            ChainKind::Evm => Transaction::Evm(EvmTransaction {
                chain: self.chain.to_owned(),
                block_number: row.block_number,
                block_hash: self.id(&row.block_hash),
                hash: self.id(&row.hash),
                transaction_index: row.tx_index,
                from: self.id(&row.from_address),
                to: self.opt_id(row.to_address.as_ref()),
                value: row.value.clone(),
                nonce: row.nonce.clone(),
                gas: row.gas_limit.clone(),
                gas_price: row.gas_price.clone(),
                gas_used: row.gas_used.clone(),
                status: row.status.map(u8::from),
                contract_address: self.opt_id(row.contract_address.as_ref()),
                input: self.id(&row.input),
                finality: self.finality(row.block_number),
            }),
            ChainKind::Solana => Transaction::Solana(SolanaTransaction {
                chain: self.chain.to_owned(),
                signature: self.id(&row.hash),
                slot: row.block_number,
                block_hash: self.id(&row.block_hash),
                index: row.tx_index,
                fee_payer: self.id(&row.from_address),
                fee: row.fee.clone(),
                success: row.status,
                // Stored as the node's JSON; shown as JSON, or as text should it ever not parse.
                error: row
                    .error
                    .as_deref()
                    .map(|e| serde_json::from_str(e).unwrap_or_else(|_| Value::String(e.to_owned()))),
                // Compute units fit a u64 (the store's numeric(20,0)); a number, not a string, like the slot.
                compute_units: row.gas_used.as_deref().and_then(|cu| cu.parse::<u64>().ok()),
                finality: self.finality(row.block_number),
            }),
        }
    }

    pub(crate) fn transfer(&self, row: &TransferRow) -> TransferItem {
        TransferItem {
            chain: self.chain.to_owned(),
            block_number: row.block_number,
            block_hash: self.id(&row.block_hash),
            tx_hash: self.id(&row.tx_hash),
            log_index: row.log_index,
            batch_index: row.batch_index,
            standard: row.standard.clone(),
            token: self.opt_id(row.token.as_ref()),
            from: self.id(&row.from_address),
            to: self.id(&row.to_address),
            amount: row.amount.clone(),
            token_id: row.token_id.clone(),
            from_owner: self.opt_id(row.from_owner.as_ref()),
            to_owner: self.opt_id(row.to_owner.as_ref()),
            decimals: row.decimals,
            finality: self.finality(row.block_number),
        }
    }

    /// An EVM event log.
    pub(crate) fn log(&self, row: &LogRow) -> LogItem {
        let topics: Vec<String> = [&row.topic0, &row.topic1, &row.topic2, &row.topic3]
            .into_iter()
            .flatten()
            .map(|t| self.id(t))
            .collect();
        LogItem {
            chain: self.chain.to_owned(),
            block_number: row.block_number,
            block_hash: self.id(&row.block_hash),
            tx_hash: self.id(&row.tx_hash),
            transaction_index: row.tx_index,
            log_index: row.log_index,
            address: self.id(&row.address),
            topics,
            data: self.id(&row.data),
            finality: self.finality(row.block_number),
        }
    }

    /// An ABI-decoded contract event (EVM).
    pub(crate) fn event(&self, row: &EventRow) -> EventItem {
        EventItem {
            chain: self.chain.to_owned(),
            block_number: row.block_number,
            block_hash: self.id(&row.block_hash),
            tx_hash: self.id(&row.tx_hash),
            tx_index: row.tx_index,
            log_index: row.log_index,
            address: self.id(&row.address),
            contract: row.contract.clone(),
            name: row.name.clone(),
            signature: row.signature.clone(),
            args: row.args.clone(),
            finality: self.finality(row.block_number),
        }
    }

    /// An indexed address of a contract entry: configured (no creation, always `finalized`) or created by the
    /// entry's factory (the finality of its creation block). `progress` is its entry's.
    pub(crate) fn contract(&self, row: &ContractRow, kind: &str, progress: Option<Progress>) -> ContractItem {
        ContractItem {
            name: row.name.clone(),
            address: self.id(&row.address),
            kind: kind.to_owned(),
            factory: self.opt_id(row.factory.as_ref()),
            created_block: row.block_number,
            created_block_hash: self.opt_id(row.block_hash.as_ref()),
            created_tx_hash: self.opt_id(row.tx_hash.as_ref()),
            created_log_index: row.log_index,
            finality: row.block_number.map_or("finalized", |n| self.finality(n)),
            progress,
        }
    }

    /// A configured contract entry: what it decodes, its factory, its count of children and its progress.
    pub(crate) fn source(
        &self,
        source: &ContractSourceRow,
        signatures: Vec<String>,
        progress: Progress,
    ) -> ContractSource {
        ContractSource {
            name: source.name.clone(),
            kind: source.kind.clone(),
            factory: self.opt_id(source.factory.as_ref()),
            factory_event: source.factory_event.clone(),
            factory_parameter: source.factory_parameter.clone(),
            start_block: source.start_block,
            children: source.children,
            events: signatures,
            progress,
        }
    }

    /// A Solana instruction; its data in base58, as Solana's own JSON-RPC shows instruction data.
    pub(crate) fn instruction(&self, row: &InstructionRow) -> InstructionItem {
        InstructionItem {
            chain: self.chain.to_owned(),
            slot: row.block_number,
            block_hash: self.id(&row.block_hash),
            signature: self.id(&row.tx_hash),
            tx_index: row.tx_index,
            position: row.position,
            outer_index: row.outer_index,
            inner_index: row.inner_index,
            stack_height: row.stack_height,
            program: self.id(&row.program),
            accounts: row.accounts.iter().map(|a| self.id(a)).collect(),
            data: self.id(&row.data),
            logs: row.logs.clone(),
            tx_success: row.tx_success,
            finality: self.finality(row.block_number),
        }
    }
}
