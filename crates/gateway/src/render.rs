//! JSON shapes of the REST API, in each chain family's own spelling: on EVM lowercase `0x` hex and EVM field names,
//! on Solana base58 and Solana's names (slot, signature, fee payer). 256-bit integers are decimal strings everywhere.
//! Transfers have one shape on every chain, so a client can follow value across chains.

use alloy::hex;
use chainmux_core::{BlockPtr, ChainKind, Finality, Heads};
use chainmux_store::{
    BlockRow, ContractRow, ContractSourceRow, EventRow, InstructionRow, LogRow, TransactionRow, TransferRow,
};
use serde_json::{Value, json};

/// `bytes` as the chain spells ids: `0x` hex on EVM, base58 on Solana.
pub(crate) fn id(kind: ChainKind, bytes: &[u8]) -> String {
    match kind {
        ChainKind::Evm => hex::encode_prefixed(bytes),
        ChainKind::Solana => bs58::encode(bytes).into_string(),
    }
}

/// The indexed head `{number, hash}`, or null before the first block.
pub(crate) fn ptr(kind: ChainKind, ptr: Option<BlockPtr>) -> Value {
    ptr.map_or(Value::Null, |p| json!({ "number": p.number, "hash": id(kind, p.hash.as_slice()) }))
}

/// How far a `[[chains.contracts]]` entry is indexed. An entry added to an indexed chain decodes new blocks from
/// `live_from` on and is `catching_up` on `[start_block, live_from)` until `caught_up_to` reaches `live_from - 1`
/// (at once when it starts at or above `live_from`); `indexed_to` is its catch-up progress until then, and the
/// chain's indexed head after.
pub(crate) fn progress(source: &ContractSourceRow, cursor: Option<BlockPtr>) -> Value {
    let caught_up = source.live_from <= source.start_block
        || source.caught_up_to.is_some_and(|done| done >= source.live_from - 1);
    let (status, indexed_to) = if caught_up {
        ("live", cursor.map(|c| json!(c.number)).unwrap_or(Value::Null))
    } else {
        ("catching_up", json!(source.caught_up_to))
    };
    json!({
        "status": status,
        "start_block": source.start_block,
        "live_from": source.live_from,
        "caught_up_to": source.caught_up_to,
        "indexed_to": indexed_to,
    })
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

    fn opt_id(&self, bytes: Option<&Vec<u8>>) -> Value {
        bytes.map_or(Value::Null, |b| Value::String(self.id(b)))
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

    pub(crate) fn block(&self, row: &BlockRow) -> Value {
        match self.kind {
            ChainKind::Evm => json!({
                "chain": self.chain,
                "number": row.number,
                "hash": self.id(&row.hash),
                "parent_hash": self.id(&row.parent_hash),
                "timestamp": row.timestamp,
                "transaction_count": row.tx_count,
                "log_count": row.log_count,
                "finality": self.finality(row.number),
            }),
            ChainKind::Solana => json!({
                "chain": self.chain,
                "slot": row.number,
                "hash": self.id(&row.hash),
                "parent_slot": row.parent_number,
                // Without a parent slot (the chain's first block) the stored parent hash is only a placeholder.
                "parent_hash": row.parent_number.map(|_| self.id(&row.parent_hash)),
                "height": row.height,
                // Solana blocks may lack a block time; the store keeps 0 for it, which is no time at all.
                "timestamp": (row.timestamp != 0).then_some(row.timestamp),
                "tx_count": row.tx_count,
                "finality": self.finality(row.number),
            }),
        }
    }

    pub(crate) fn transaction(&self, row: &TransactionRow) -> Value {
        match self.kind {
            ChainKind::Evm => json!({
                "chain": self.chain,
                "block_number": row.block_number,
                "block_hash": self.id(&row.block_hash),
                "hash": self.id(&row.hash),
                "transaction_index": row.tx_index,
                "from": self.id(&row.from_address),
                "to": self.opt_id(row.to_address.as_ref()),
                "value": row.value,
                "nonce": row.nonce,
                "gas": row.gas_limit,
                "gas_price": row.gas_price,
                "gas_used": row.gas_used,
                "status": row.status.map(u8::from),
                "contract_address": self.opt_id(row.contract_address.as_ref()),
                "input": self.id(&row.input),
                "finality": self.finality(row.block_number),
            }),
            ChainKind::Solana => json!({
                "chain": self.chain,
                "signature": self.id(&row.hash),
                "slot": row.block_number,
                "block_hash": self.id(&row.block_hash),
                "index": row.tx_index,
                "fee_payer": self.id(&row.from_address),
                "fee": row.fee,
                "success": row.status,
                // Stored as the node's JSON; shown as JSON, or as text should it ever not parse.
                "error": row.error.as_deref().map(|e| serde_json::from_str(e).unwrap_or_else(|_| json!(e))),
                // Compute units fit a u64 (the store's numeric(20,0)); a number, not a string, like the slot.
                "compute_units": row.gas_used.as_deref().and_then(|cu| cu.parse::<u64>().ok()),
                "finality": self.finality(row.block_number),
            }),
        }
    }

    pub(crate) fn transfer(&self, row: &TransferRow) -> Value {
        json!({
            "chain": self.chain,
            "block_number": row.block_number,
            "block_hash": self.id(&row.block_hash),
            "tx_hash": self.id(&row.tx_hash),
            "log_index": row.log_index,
            "batch_index": row.batch_index,
            "standard": row.standard,
            "token": self.opt_id(row.token.as_ref()),
            "from": self.id(&row.from_address),
            "to": self.id(&row.to_address),
            "amount": row.amount,
            "token_id": row.token_id,
            "from_owner": self.opt_id(row.from_owner.as_ref()),
            "to_owner": self.opt_id(row.to_owner.as_ref()),
            "decimals": row.decimals,
            "finality": self.finality(row.block_number),
        })
    }

    /// An EVM event log.
    pub(crate) fn log(&self, row: &LogRow) -> Value {
        let topics: Vec<String> = [&row.topic0, &row.topic1, &row.topic2, &row.topic3]
            .into_iter()
            .flatten()
            .map(|t| self.id(t))
            .collect();
        json!({
            "chain": self.chain,
            "block_number": row.block_number,
            "block_hash": self.id(&row.block_hash),
            "tx_hash": self.id(&row.tx_hash),
            "transaction_index": row.tx_index,
            "log_index": row.log_index,
            "address": self.id(&row.address),
            "topics": topics,
            "data": self.id(&row.data),
            "finality": self.finality(row.block_number),
        })
    }

    /// An ABI-decoded contract event (EVM).
    pub(crate) fn event(&self, row: &EventRow) -> Value {
        json!({
            "chain": self.chain,
            "block_number": row.block_number,
            "block_hash": self.id(&row.block_hash),
            "tx_hash": self.id(&row.tx_hash),
            "tx_index": row.tx_index,
            "log_index": row.log_index,
            "address": self.id(&row.address),
            "contract": row.contract,
            "name": row.name,
            "signature": row.signature,
            "args": row.args,
            "finality": self.finality(row.block_number),
        })
    }

    /// An indexed address of a contract entry: configured (no creation, always `finalized`) or created by the
    /// entry's factory (the finality of its creation block). `progress` is its entry's.
    pub(crate) fn contract(&self, row: &ContractRow, kind: &str, progress: &Value) -> Value {
        json!({
            "name": row.name,
            "address": self.id(&row.address),
            "kind": kind,
            "factory": self.opt_id(row.factory.as_ref()),
            "created_block": row.block_number,
            "created_block_hash": self.opt_id(row.block_hash.as_ref()),
            "created_tx_hash": self.opt_id(row.tx_hash.as_ref()),
            "created_log_index": row.log_index,
            "finality": row.block_number.map_or("finalized", |n| self.finality(n)),
            "progress": progress,
        })
    }

    /// A configured contract entry: what it decodes, its factory, its count of children and its progress.
    pub(crate) fn source(
        &self,
        source: &ContractSourceRow,
        signatures: Vec<String>,
        progress: Value,
    ) -> Value {
        json!({
            "name": source.name,
            "kind": source.kind,
            "factory": self.opt_id(source.factory.as_ref()),
            "factory_event": source.factory_event,
            "factory_parameter": source.factory_parameter,
            "start_block": source.start_block,
            "children": source.children,
            "events": signatures,
            "progress": progress,
        })
    }

    /// A Solana instruction; its data in base58, as Solana's own JSON-RPC shows instruction data.
    pub(crate) fn instruction(&self, row: &InstructionRow) -> Value {
        let accounts: Vec<String> = row.accounts.iter().map(|a| self.id(a)).collect();
        json!({
            "chain": self.chain,
            "slot": row.block_number,
            "block_hash": self.id(&row.block_hash),
            "signature": self.id(&row.tx_hash),
            "tx_index": row.tx_index,
            "position": row.position,
            "outer_index": row.outer_index,
            "inner_index": row.inner_index,
            "stack_height": row.stack_height,
            "program": self.id(&row.program),
            "accounts": accounts,
            "data": self.id(&row.data),
            "logs": row.logs,
            "tx_success": row.tx_success,
            "finality": self.finality(row.block_number),
        })
    }
}
