//! Contract events decoded from their ABI: the `[[chains.contracts]]` entries of a chain.
//!
//! A [`ContractSource`] is one entry compiled for decoding: its selected events resolved to alloy's dynamic ABI
//! types once, their selectors and argument keys precomputed. An [`EventDecoder`] holds a chain's sources, indexes
//! them by address and, as the indexer's [`chainmux_core::BlockDecoder`], turns the logs of each block into
//! [`chainmux_core::DecodedEvent`]s, following the children that factories create.
//!
//! Decoding is strict: a log must be the canonical ABI encoding of the event (as Solidity and Vyper emit it), with
//! every value inside its type's range, or it is a decode failure, counted and reported, never a row of garbage.
//! The arguments become a JSON object whose shape [`ContractSource::events_json`] describes, so the query API can
//! compare filter values in their ABI types.

mod decoder;
mod json;
mod source;

pub use decoder::EventDecoder;
pub use source::{ContractSource, SourceTarget};

#[cfg(test)]
mod tests;
