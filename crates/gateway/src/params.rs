//! Strict parsing of path and query parameters: every rejection names the offending field. Ids are spelled as the
//! chain spells them: `0x` hex on EVM, base58 on Solana.

use chainmux_core::ChainKind;
use chainmux_store::{ContractKey, EventKey, InstructionKey, LogKey, TransferKey};

use utoipa::IntoParams;

use crate::AppError;

/// Query parameters of one request, checked against the names the endpoint accepts.
pub(crate) struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    /// Rejects unknown and repeated parameters, so a typo (`fromBlock`) is an error instead of a silently ignored
    /// filter. With a `prefix`, every name made of it and a non-empty rest (`arg.<param>`) is accepted too, read
    /// with [`Self::prefixed`].
    pub(crate) fn parse(
        pairs: Vec<(String, String)>,
        allowed: &[&str],
        prefix: Option<&str>,
    ) -> Result<Self, AppError> {
        for (i, (name, _)) in pairs.iter().enumerate() {
            let prefixed = prefix.and_then(|p| name.strip_prefix(p));
            if prefixed == Some("") {
                return Err(AppError::bad(name.clone(), "parameter name missing after the prefix"));
            }
            if prefixed.is_none() && !allowed.contains(&name.as_str()) {
                let mut accepted = allowed.join(", ");
                if let Some(prefix) = prefix {
                    accepted.push_str(&format!(", {prefix}<name>"));
                }
                return Err(AppError::bad(name.clone(), format!("unknown parameter; accepted: {accepted}")));
            }
            if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(AppError::bad(name.clone(), "parameter given more than once"));
            }
        }
        Ok(Self { pairs })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The parameters named `prefix` and something, as (something, value), in request order.
    pub(crate) fn prefixed<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.pairs.iter().filter_map(move |(n, v)| Some((n.strip_prefix(prefix)?, v.as_str())))
    }

    pub(crate) fn block(&self, name: &'static str) -> Result<Option<i64>, AppError> {
        self.get(name).map(|v| block_number(name, v)).transpose()
    }

    pub(crate) fn hex(&self, name: &'static str, len: usize) -> Result<Option<Vec<u8>>, AppError> {
        self.get(name).map(|v| hex_bytes(name, v, len)).transpose()
    }

    /// An id in the chain's spelling.
    pub(crate) fn id(
        &self,
        name: &'static str,
        kind: ChainKind,
        id: Id,
    ) -> Result<Option<Vec<u8>>, AppError> {
        self.get(name).map(|v| id_bytes(kind, id, name, v)).transpose()
    }

    pub(crate) fn limit(&self, default: u32, max: u32) -> Result<u32, AppError> {
        let Some(text) = self.get("limit") else { return Ok(default) };
        match text.parse::<u32>() {
            Ok(limit) if (1..=max).contains(&limit) => Ok(limit),
            _ => Err(AppError::bad("limit", format!("must be an integer from 1 to {max}"))),
        }
    }

    /// `from_block` and `to_block`, checked for order.
    pub(crate) fn block_range(&self) -> Result<(Option<i64>, Option<i64>), AppError> {
        let (from, to) = (self.block("from_block")?, self.block("to_block")?);
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(AppError::bad("to_block", "must not be below from_block"));
        }
        Ok((from, to))
    }
}

// What `/openapi.json` says about the parameters, next to the parsers that read them. These types are only
// described, never built: handlers read the query through `QueryParams`, whose accepted names the OpenAPI test
// checks against these (each documented name accepted, others refused).

/// `{chain}` of every chain route.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct ChainPath {
    /// A served chain's name, as `/v1/chains` lists it.
    chain: String,
}

/// `min_block`, accepted by every chain route (see [`crate::consistency`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct MinBlockParam {
    /// Wait (bounded by the server's `min_block_wait`) until the chain is indexed to this block, then answer;
    /// 503 `not_indexed_yet` with `Retry-After` if it is not reached in time. Decimal or `0x` hex.
    #[param(required = false)]
    min_block: String,
}

/// Page size of the list routes (and rows per store read of the live feeds).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct LimitParam {
    /// Items per page, 1 to the server's `max_page_size` (default 1000); the server's `default_page_size` (default
    /// 100) when absent.
    #[param(required = false, minimum = 1)]
    limit: u32,
}

/// Paging of the list routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct CursorParam {
    /// The previous page's `next_cursor`, to read the page after it. Opaque.
    #[param(required = false)]
    cursor: String,
}

/// Where a live feed resumes, besides the `Last-Event-ID` header.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ResumeParam {
    /// The same as the `Last-Event-ID` header, for clients that cannot set headers.
    #[param(required = false)]
    last_event_id: String,
}

/// Block range of the list routes, inclusive; decimal or `0x` hex.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct BlockRangeParams {
    /// Lowest block (slot, on Solana).
    #[param(required = false)]
    from_block: String,
    /// Highest block (slot); not below `from_block`.
    #[param(required = false)]
    to_block: String,
}

/// Filters of `/transfers` (and its live feed). Addresses in the chain's spelling: `0x` hex or base58.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct TransferParams {
    /// Transfers from or to this address (or owner, for token accounts).
    #[param(required = false)]
    address: String,
    /// Transfers of this token (contract or mint).
    #[param(required = false)]
    token: String,
}

/// Filters of `/logs`: `0x` hex.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct LogParams {
    /// Emitting contract (20 bytes).
    #[param(required = false)]
    address: String,
    /// First topic (32 bytes): the event's signature hash.
    #[param(required = false)]
    topic0: String,
    #[param(required = false)]
    topic1: String,
    #[param(required = false)]
    topic2: String,
    #[param(required = false)]
    topic3: String,
}

/// Filters of `/instructions`: base58.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct InstructionParams {
    /// Instructions of this program.
    #[param(required = false)]
    program: String,
    /// Instructions of this transaction (its signature).
    #[param(required = false)]
    tx_hash: String,
}

/// Filters of `/events` (and its live feed).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct EventParams {
    /// Events of this `[[chains.contracts]]` entry.
    #[param(required = false)]
    contract: String,
    /// Event name (`Transfer`) or signature (`Transfer(address,address,uint256)`).
    #[param(required = false)]
    name: String,
    /// Emitting contract (`0x` hex, 20 bytes).
    #[param(required = false)]
    address: String,
    /// `arg.<param>=<value>`, repeatable for different parameters: events whose decoded argument `<param>` (its
    /// name, or position when unnamed) equals `<value>`, compared in the parameter's ABI type (`1000` and `0x3e8`
    /// are the same uint). An indexed string, bytes, array or tuple is matched by its 32-byte hash.
    #[param(rename = "arg.<param>", required = false)]
    arg: String,
}

/// Filter of `/contracts`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(crate) struct ContractParams {
    /// Only this `[[chains.contracts]]` entry.
    #[param(required = false)]
    name: String,
}

/// A block height: a decimal number, or a `0x` quantity.
pub(crate) fn block_number(field: &str, text: &str) -> Result<i64, AppError> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => text.parse::<i64>().ok(),
    };
    parsed.filter(|n| *n >= 0).ok_or_else(|| AppError::bad(field, "must be a non-negative block number"))
}

/// What an id names; it fixes the id's length on each chain family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Id {
    /// An account, contract, token (mint) or program.
    Address,
    BlockHash,
    /// A transaction hash; on Solana the transaction's first signature.
    TxHash,
}

impl Id {
    fn len(self, kind: ChainKind) -> usize {
        match (kind, self) {
            (ChainKind::Evm, Self::Address) => 20,
            (ChainKind::Evm, Self::BlockHash | Self::TxHash) => 32,
            (ChainKind::Solana, Self::Address | Self::BlockHash) => 32,
            (ChainKind::Solana, Self::TxHash) => 64,
        }
    }

    fn noun(self, kind: ChainKind) -> &'static str {
        match (kind, self) {
            (_, Self::Address) => "address",
            (_, Self::BlockHash) => "block hash",
            (ChainKind::Evm, Self::TxHash) => "transaction hash",
            (ChainKind::Solana, Self::TxHash) => "transaction signature",
        }
    }
}

/// `text` as an id of a `kind` chain: `0x` hex or base58, of the id's exact length.
pub(crate) fn id_bytes(kind: ChainKind, id: Id, field: &str, text: &str) -> Result<Vec<u8>, AppError> {
    match kind {
        ChainKind::Evm => hex_bytes(field, text, id.len(kind)),
        ChainKind::Solana => base58_bytes(field, text, id.len(kind), id.noun(kind)),
    }
}

/// Base58 (Bitcoin alphabet, as Solana uses) of exactly `len` bytes.
fn base58_bytes(field: &str, text: &str, len: usize, noun: &str) -> Result<Vec<u8>, AppError> {
    let invalid = || AppError::bad(field, format!("must be a base58 {noun} ({len} bytes)"));
    // Base58 decoding takes time quadratic in the length: anything longer than `len` bytes can be is refused
    // before decoding. Each character carries log2(58) > 5.85 bits, so `len` bytes take at most 1.37 · len.
    if text.len() > len * 137 / 100 + 1 {
        return Err(invalid());
    }
    let bytes = bs58::decode(text).into_vec().map_err(|_| invalid())?;
    if bytes.len() != len {
        return Err(invalid());
    }
    Ok(bytes)
}

/// `0x`-prefixed hex of exactly `len` bytes, either case.
pub(crate) fn hex_bytes(field: &str, text: &str, len: usize) -> Result<Vec<u8>, AppError> {
    let invalid = || AppError::bad(field, format!("must be 0x-prefixed hex of {len} bytes"));
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).ok_or_else(invalid)?;
    let bytes = alloy::hex::decode(digits).map_err(|_| invalid())?;
    if bytes.len() != len {
        return Err(invalid());
    }
    Ok(bytes)
}

/// Cursors are the sort key of the last row of a page, dot-separated; opaque to clients.
pub(crate) fn encode_transfer_cursor(key: &TransferKey) -> String {
    format!("{}.{}.{}.{}", key.block_number, key.log_index, key.batch_index, key.standard)
}

pub(crate) fn decode_transfer_cursor(text: &str) -> Result<TransferKey, AppError> {
    let invalid = || AppError::bad("cursor", "not a cursor returned by this endpoint");
    let mut parts = text.split('.');
    let key = TransferKey {
        block_number: parts.next().and_then(|p| p.parse().ok()).ok_or_else(invalid)?,
        log_index: parts.next().and_then(|p| p.parse().ok()).ok_or_else(invalid)?,
        batch_index: parts.next().and_then(|p| p.parse().ok()).ok_or_else(invalid)?,
        standard: parts
            .next()
            .filter(|s| chainmux_core::TransferStandard::parse(s).is_some())
            .ok_or_else(invalid)?
            .to_owned(),
    };
    if parts.next().is_some() {
        return Err(invalid());
    }
    Ok(key)
}

pub(crate) fn encode_log_cursor(key: &LogKey) -> String {
    format!("{}.{}", key.block_number, key.log_index)
}

pub(crate) fn decode_log_cursor(text: &str) -> Result<LogKey, AppError> {
    let invalid = || AppError::bad("cursor", "not a cursor returned by this endpoint");
    let (block, log) = text.split_once('.').ok_or_else(invalid)?;
    Ok(LogKey {
        block_number: block.parse().map_err(|_| invalid())?,
        log_index: log.parse().map_err(|_| invalid())?,
    })
}

pub(crate) fn encode_instruction_cursor(key: &InstructionKey) -> String {
    format!("{}.{}.{}", key.block_number, key.tx_index, key.position)
}

pub(crate) fn decode_instruction_cursor(text: &str) -> Result<InstructionKey, AppError> {
    let invalid = || AppError::bad("cursor", "not a cursor returned by this endpoint");
    let mut parts = text.split('.').map(|p| p.parse::<i64>().map_err(|_| invalid()));
    let mut next = || parts.next().unwrap_or_else(|| Err(invalid()));
    let block_number = next()?;
    let tx_index = i32::try_from(next()?).map_err(|_| invalid())?;
    let position = i32::try_from(next()?).map_err(|_| invalid())?;
    if parts.next().is_some() {
        return Err(invalid());
    }
    Ok(InstructionKey { block_number, tx_index, position })
}

pub(crate) fn encode_event_cursor(key: &EventKey) -> String {
    format!("{}.{}.{}", key.block_number, key.log_index, key.contract)
}

/// The entry name comes last: everything after the second dot is the name.
pub(crate) fn decode_event_cursor(text: &str) -> Result<EventKey, AppError> {
    let invalid = || AppError::bad("cursor", "not a cursor returned by this endpoint");
    let mut parts = text.splitn(3, '.');
    let block_number = parts.next().and_then(|p| p.parse().ok()).ok_or_else(invalid)?;
    let log_index = parts.next().and_then(|p| p.parse().ok()).ok_or_else(invalid)?;
    let contract = parts.next().filter(|c| !c.is_empty()).ok_or_else(invalid)?.to_owned();
    Ok(EventKey { block_number, log_index, contract })
}

/// `{creation block, or s for a configured address}.{address}.{entry name}`.
pub(crate) fn encode_contract_cursor(key: &ContractKey) -> String {
    let block = key.block_number.map_or_else(|| "s".to_owned(), |n| n.to_string());
    format!("{block}.{}.{}", alloy::hex::encode_prefixed(&key.address), key.name)
}

pub(crate) fn decode_contract_cursor(text: &str) -> Result<ContractKey, AppError> {
    let invalid = || AppError::bad("cursor", "not a cursor returned by this endpoint");
    let mut parts = text.splitn(3, '.');
    let block_number = match parts.next().ok_or_else(invalid)? {
        "s" => None,
        number => Some(number.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(invalid)?),
    };
    let address = hex_bytes("cursor", parts.next().ok_or_else(invalid)?, 20).map_err(|_| invalid())?;
    let name = parts.next().filter(|c| !c.is_empty()).ok_or_else(invalid)?.to_owned();
    Ok(ContractKey { name, block_number, address })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let key = TransferKey { block_number: 12, log_index: 3, batch_index: 1, standard: "erc1155".into() };
        assert_eq!(decode_transfer_cursor(&encode_transfer_cursor(&key)).ok(), Some(key));
        assert!(decode_transfer_cursor("12.3.1.erc777").is_err());
        assert!(decode_transfer_cursor("12.3").is_err());
        let log = LogKey { block_number: 5, log_index: 9 };
        assert_eq!(decode_log_cursor(&encode_log_cursor(&log)).ok(), Some(log));
        assert!(decode_log_cursor("x.1").is_err());
        let instruction = InstructionKey { block_number: 303, tx_index: 2, position: 17 };
        assert_eq!(
            decode_instruction_cursor(&encode_instruction_cursor(&instruction)).ok(),
            Some(instruction)
        );
        for bad in ["303.2", "303.2.17.1", "303.x.17", "", "303.2.99999999999"] {
            assert!(decode_instruction_cursor(bad).is_err(), "{bad}");
        }
        let event = EventKey { block_number: 7, log_index: 2, contract: "a.b".into() };
        assert_eq!(decode_event_cursor(&encode_event_cursor(&event)).ok(), Some(event));
        for bad in ["7.2", "7.2.", "x.2.a", "7.-x.a", ""] {
            assert!(decode_event_cursor(bad).is_err(), "{bad}");
        }
        for block_number in [None, Some(12)] {
            let contract = ContractKey { name: "pools".into(), block_number, address: vec![0xab; 20] };
            assert_eq!(decode_contract_cursor(&encode_contract_cursor(&contract)).ok(), Some(contract));
        }
        let address = format!("0x{}", "ab".repeat(20));
        for bad in [format!("-1.{address}.a"), format!("s.{address}."), "s.0xab.a".into(), "s".into()] {
            assert!(decode_contract_cursor(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base58_ids_of_exact_length() {
        let system = "11111111111111111111111111111111";
        assert_eq!(id_bytes(ChainKind::Solana, Id::Address, "a", system).ok(), Some(vec![0; 32]));
        let token = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
        let bytes = id_bytes(ChainKind::Solana, Id::Address, "a", token).expect("program id");
        assert_eq!(bytes[..4], [0x06, 0xdd, 0xf6, 0xe1]);
        let signature = bs58::encode([0xffu8; 64]).into_string();
        assert_eq!(id_bytes(ChainKind::Solana, Id::TxHash, "s", &signature).ok(), Some(vec![0xff; 64]));
        assert!(id_bytes(ChainKind::Solana, Id::Address, "a", &signature).is_err(), "64 bytes is no address");
        assert!(id_bytes(ChainKind::Solana, Id::TxHash, "s", token).is_err(), "32 bytes is no signature");
        // 0, O, I and l are not in the alphabet; hex is not base58 of the right length.
        for bad in [
            "",
            "0OIl",
            "0x7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e",
            &format!("{token}1"),
            &"1".repeat(5000),
        ] {
            let err = id_bytes(ChainKind::Solana, Id::Address, "token", bad).expect_err(bad);
            assert!(
                matches!(err, AppError::BadRequest { ref field, .. } if field == "token"),
                "{bad}: {err}"
            );
        }
        // EVM ids stay hex.
        assert!(id_bytes(ChainKind::Evm, Id::Address, "a", token).is_err());
        assert_eq!(
            id_bytes(ChainKind::Evm, Id::Address, "a", &format!("0x{}", "ab".repeat(20))).ok(),
            Some(vec![0xab; 20])
        );
    }

    #[test]
    fn hex_accepts_either_case_and_exact_length() {
        assert_eq!(hex_bytes("a", "0xABcd", 2).ok(), Some(vec![0xab, 0xcd]));
        assert!(hex_bytes("a", "abcd", 2).is_err());
        assert!(hex_bytes("a", "0xabcd", 3).is_err());
        assert!(hex_bytes("a", "0xzz", 1).is_err());
    }

    #[test]
    fn block_numbers() {
        assert_eq!(block_number("n", "42").ok(), Some(42));
        assert_eq!(block_number("n", "0x2a").ok(), Some(42));
        assert!(block_number("n", "-1").is_err());
        assert!(block_number("n", "latest").is_err());
    }
}
