//! Chain-independent vocabulary of chainmux: block pointers, finality, the normalized data model every chain
//! adapter produces, and the [`Network`] trait through which the indexer talks to a chain.
//!
//! This crate does no I/O. Adapters (`chains/*`) implement [`Network`]; the indexer and the store only ever see the
//! types defined here, which is what keeps them chain-agnostic.

mod model;
mod network;

pub use model::{
    BlockDecoder, BlockPtr, ChainEvent, ChainKind, ChainSpec, CreatedContract, DecodedEvent, Finality, Heads,
    Instruction, Log, NormalizedBlock, Transaction, Transfer, TransferStandard, default_confirmations,
};
pub use network::{Network, NetworkError};

/// 32-byte hash: EVM block hashes, Solana blockhashes.
pub use alloy::primitives::B256;
/// Variable-length bytes: addresses (20 bytes on EVM, 32 on Solana), transaction ids (32 or 64 bytes), payloads.
pub use alloy::primitives::Bytes;
/// 256-bit unsigned integer used for amounts and token ids.
pub use alloy::primitives::U256;
