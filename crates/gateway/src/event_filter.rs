//! The filters of `/events` that need the configured ABIs: which entry (`contract`), which event (`name`, or its
//! signature), and `arg.<param>=<value>` compared in the parameter's ABI type.
//!
//! The events an entry decodes are stored with it (`contract_sources.events`), so the gateway needs no ABI files.
//! An argument value is spelled the way the decoder stores it in the parameter's type (`1000`, `0x3e8` and `01000`
//! are all the uint `"1000"`; addresses are lowercased), and the row must contain `{param: value}`, which the GIN
//! index on `args` answers. A parameter with different types in different selected events is compared in each type
//! the value fits.

use alloy::dyn_abi::DynSolType;
use alloy::hex;
use alloy::primitives::U256;
use chainmux_store::{ArgMatch, ContractSourceRow, StoreError};
use serde::Deserialize;
use serde_json::Value;

use crate::AppError;

/// One event an entry decodes, as stored in `contract_sources.events`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EventSpec {
    pub(crate) name: String,
    pub(crate) signature: String,
    #[serde(default)]
    pub(crate) params: Vec<ParamSpec>,
}

/// One parameter of an [`EventSpec`].
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ParamSpec {
    #[serde(default)]
    pub(crate) name: String,
    /// The canonical ABI type: `uint256`, `address`, `(uint256,address)[]`, ...
    #[serde(rename = "type")]
    pub(crate) ty: String,
    #[serde(default)]
    pub(crate) indexed: bool,
}

/// The selected events of a stored entry; a stored value that does not parse is a corrupt store.
pub(crate) fn event_specs(source: &ContractSourceRow) -> Result<Vec<EventSpec>, AppError> {
    serde_json::from_value(source.events.clone()).map_err(|err| {
        AppError::Store(StoreError::Corrupt(format!("events of contract entry {}: {err}", source.name)))
    })
}

/// Which event `name` asks for: a name, or a full signature when it has a parenthesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventName<'a> {
    Name(&'a str),
    Signature(&'a str),
}

impl<'a> EventName<'a> {
    pub(crate) fn parse(text: &'a str) -> Self {
        if text.contains('(') { Self::Signature(text) } else { Self::Name(text) }
    }

    fn matches(self, event: &EventSpec) -> bool {
        match self {
            Self::Name(name) => event.name == name,
            Self::Signature(signature) => event.signature == signature,
        }
    }
}

/// The events a request selects: those of the `contract` entry (every entry when `None`) matching `name`.
#[derive(Debug)]
pub(crate) struct Selection {
    events: Vec<EventSpec>,
}

impl Selection {
    /// Checks `contract` and `name` against the stored entries; an entry or event that is not configured is a
    /// 400 naming the field and what is configured, so a typo does not pass for an empty result.
    pub(crate) fn new(
        sources: &[ContractSourceRow],
        contract: Option<&str>,
        name: Option<EventName<'_>>,
    ) -> Result<Self, AppError> {
        let sources: Vec<&ContractSourceRow> = match contract {
            None => sources.iter().collect(),
            Some(contract) => {
                let source = sources
                    .iter()
                    .find(|s| s.name == contract)
                    .ok_or_else(|| AppError::bad("contract", unknown_entry(contract, sources)))?;
                vec![source]
            }
        };
        let mut events = Vec::new();
        for source in sources {
            events.extend(event_specs(source)?);
        }
        if let Some(name) = name {
            let selected: Vec<EventSpec> = events.iter().filter(|e| name.matches(e)).cloned().collect();
            if selected.is_empty() {
                let (what, known) = match name {
                    EventName::Name(name) => {
                        (format!("named {name:?}"), distinct(events.iter().map(|e| &e.name)))
                    }
                    EventName::Signature(signature) => (
                        format!("with signature {signature:?}"),
                        distinct(events.iter().map(|e| &e.signature)),
                    ),
                };
                let scope = contract.map(|c| format!(" of contract entry {c:?}")).unwrap_or_default();
                return Err(AppError::bad(
                    "name",
                    format!("no decoded event {what}{scope}; {}", configured(&known)),
                ));
            }
            events = selected;
        }
        Ok(Self { events })
    }

    /// The filter of `arg.<param>=<text>`: `text` in each type `param` has among the selected events that it fits.
    pub(crate) fn arg_match(&self, param: &str, text: &str) -> Result<ArgMatch, AppError> {
        let field = format!("arg.{param}");
        let mut types: Vec<(&str, bool)> = Vec::new();
        for event in &self.events {
            for (position, p) in event.params.iter().enumerate() {
                let key = if p.name.is_empty() { position.to_string() } else { p.name.clone() };
                if key == param && !types.contains(&(p.ty.as_str(), p.indexed)) {
                    types.push((p.ty.as_str(), p.indexed));
                }
            }
        }
        if types.is_empty() {
            let keys = distinct(self.events.iter().flat_map(|e| {
                e.params
                    .iter()
                    .enumerate()
                    .map(|(i, p)| if p.name.is_empty() { i.to_string() } else { p.name.clone() })
            }));
            return Err(AppError::bad(
                field,
                format!("no selected event has a parameter {param:?}; parameters: {}", list_or_none(&keys)),
            ));
        }
        let mut values: Vec<Value> = Vec::new();
        let mut expected: Vec<String> = Vec::new();
        let mut unfilterable: Vec<&str> = Vec::new();
        for (ty, indexed) in types {
            match canonical(ty, indexed, text) {
                Ok(value) if !values.contains(&value) => values.push(value),
                Ok(_) => {}
                Err(Mismatch::Expected(what)) if !expected.contains(&what) => expected.push(what),
                Err(Mismatch::Expected(_)) => {}
                Err(Mismatch::NotFilterable) => unfilterable.push(ty),
            }
        }
        if values.is_empty() {
            let message = if expected.is_empty() {
                format!(
                    "parameter {param:?} is of type {}: arrays and tuples are not filterable (unless indexed, by \
                     their hash)",
                    unfilterable.join(" or ")
                )
            } else {
                format!("must be {}", expected.join(" or "))
            };
            return Err(AppError::bad(field, message));
        }
        Ok(ArgMatch { param: param.to_owned(), values })
    }
}

/// The message for a contract entry name that is not among the stored `sources`.
pub(crate) fn unknown_entry(name: &str, sources: &[ContractSourceRow]) -> String {
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    format!("no contract entry {name:?} on this chain; {}", configured(&names))
}

/// "configured: a, b" or "none is configured".
fn configured(names: &[impl AsRef<str>]) -> String {
    if names.is_empty() {
        "none is configured".to_owned()
    } else {
        format!("configured: {}", names.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", "))
    }
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

/// The distinct `items`, in first-seen order.
fn distinct<S: AsRef<str>>(items: impl Iterator<Item = S>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.iter().any(|o| o == item.as_ref()) {
            out.push(item.as_ref().to_owned());
        }
    }
    out
}

/// Why a value does not compare in a type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mismatch {
    /// The value does not fit; what the type takes, for the error message.
    Expected(String),
    /// The type is never compared by value (a non-indexed array or tuple, or a type this gateway cannot read).
    NotFilterable,
}

/// `text` as the decoder stores a value of the ABI type `ty` (the hash of it, for an indexed dynamic type).
fn canonical(ty: &str, indexed: bool, text: &str) -> Result<Value, Mismatch> {
    let Ok(parsed) = DynSolType::parse(ty) else { return Err(Mismatch::NotFilterable) };
    let expected = |what: String| Mismatch::Expected(what);
    let hex_of = |len: Option<usize>, what: String| -> Result<Value, Mismatch> {
        match hex_text(text) {
            Some(bytes) if len.is_none_or(|len| bytes.len() == len) => {
                Ok(Value::String(hex::encode_prefixed(bytes)))
            }
            _ => Err(expected(what)),
        }
    };
    match parsed {
        // An indexed parameter of a dynamic type (and any array or tuple) is stored as the topic: its hash.
        DynSolType::String
        | DynSolType::Bytes
        | DynSolType::Array(_)
        | DynSolType::FixedArray(..)
        | DynSolType::Tuple(_)
            if indexed =>
        {
            hex_of(Some(32), format!("0x hex of 32 bytes (an indexed {ty} is stored as its hash)"))
        }
        DynSolType::Address => hex_of(Some(20), "an address (0x followed by 40 hex digits)".to_owned()),
        DynSolType::Uint(bits) => {
            let what = || expected(format!("a {ty} (decimal or 0x hex)"));
            let value = magnitude(text).ok_or_else(what)?;
            if value.bit_len() > bits {
                return Err(what());
            }
            Ok(Value::String(value.to_string()))
        }
        DynSolType::Int(bits) => {
            let what = || expected(format!("an {ty} (decimal or 0x hex, - for negatives)"));
            let (negative, digits) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            let value = magnitude(digits).ok_or_else(what)?;
            // -2^(bits-1) ..= 2^(bits-1) - 1
            let bound = U256::from(1u8) << bits.saturating_sub(1);
            if (negative && value > bound) || (!negative && value >= bound) {
                return Err(what());
            }
            Ok(Value::String(if negative && !value.is_zero() {
                format!("-{value}")
            } else {
                value.to_string()
            }))
        }
        DynSolType::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(expected("true or false".to_owned())),
        },
        DynSolType::String => Ok(Value::String(text.to_owned())),
        DynSolType::Bytes => hex_of(None, "0x hex bytes (an even number of hex digits)".to_owned()),
        DynSolType::FixedBytes(len) => {
            hex_of(Some(len), format!("a {ty} (0x followed by {} hex digits)", 2 * len))
        }
        // A function pointer: an address and a selector, 24 bytes.
        DynSolType::Function => hex_of(Some(24), "a function (0x followed by 48 hex digits)".to_owned()),
        _ => Err(Mismatch::NotFilterable),
    }
}

/// `0x`-prefixed hex, either case, of whole bytes.
fn hex_text(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X"))?;
    hex::decode(digits).ok()
}

/// A non-negative integer in decimal or `0x` hex, leading zeros allowed; `None` past 256 bits.
fn magnitude(text: &str) -> Option<U256> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    let valid = |b: u8| if radix == 16 { b.is_ascii_hexdigit() } else { b.is_ascii_digit() };
    if digits.is_empty() || !digits.bytes().all(valid) {
        return None;
    }
    U256::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ty: &str, indexed: bool, text: &str) -> Value {
        canonical(ty, indexed, text).unwrap_or_else(|err| panic!("{ty} {text}: {err:?}"))
    }

    fn s(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    #[test]
    fn integers_by_value() {
        for text in ["1000", "0x3e8", "0X3E8", "01000", "0x00003e8"] {
            assert_eq!(ok("uint256", false, text), s("1000"), "{text}");
        }
        assert_eq!(ok("uint8", false, "255"), s("255"));
        assert_eq!(ok("uint256", false, &format!("0x{}", "f".repeat(64))), s(&U256::MAX.to_string()));
        for bad in ["256", "-1", "", "0x", "1_000", "+5", "1e3", " 1", "0xg"] {
            assert!(canonical("uint8", false, bad).is_err(), "{bad}");
        }
        assert!(canonical("uint256", false, &format!("0x1{}", "0".repeat(64))).is_err(), "2^256");

        assert_eq!(ok("int256", false, "-5"), s("-5"));
        assert_eq!(ok("int256", false, "-0x05"), s("-5"));
        assert_eq!(ok("int8", false, "-0"), s("0"));
        assert_eq!(ok("int8", false, "-128"), s("-128"));
        assert_eq!(ok("int8", false, "127"), s("127"));
        for bad in ["128", "-129", "--1", "-", "0x80"] {
            assert!(canonical("int8", false, bad).is_err(), "{bad}");
        }
        let min = format!("-{}", U256::from(1u8) << 255);
        assert_eq!(ok("int256", false, &min), s(&min));
    }

    #[test]
    fn bytes_addresses_and_hashes() {
        let upper = format!("0x{}", "AB".repeat(20));
        assert_eq!(ok("address", true, &upper), s(&format!("0x{}", "ab".repeat(20))));
        assert!(canonical("address", false, &format!("0x{}", "ab".repeat(19))).is_err());
        assert_eq!(ok("bytes", false, "0xDEADbeef"), s("0xdeadbeef"));
        assert_eq!(ok("bytes", false, "0x"), s("0x"));
        assert!(canonical("bytes", false, "0xabc").is_err(), "odd length");
        assert!(canonical("bytes4", false, "0xdeadbeef00").is_err(), "wrong length");
        assert_eq!(ok("bytes4", false, "0xDEADBEEF"), s("0xdeadbeef"));
        let hash = format!("0x{}", "C0".repeat(32));
        for ty in ["string", "bytes", "uint256[]", "(uint256,address)", "uint8[2]"] {
            assert_eq!(ok(ty, true, &hash), s(&hash.to_lowercase()), "{ty}");
            assert!(matches!(canonical(ty, true, "hello"), Err(Mismatch::Expected(_))), "{ty}");
        }
        assert_eq!(ok("string", false, "hello"), s("hello"));
        assert_eq!(ok("bool", false, "true"), Value::Bool(true));
        assert!(canonical("bool", false, "1").is_err());
        for ty in ["uint256[]", "(uint256,address)", "uint8[2]", "not a type"] {
            assert_eq!(canonical(ty, false, "1"), Err(Mismatch::NotFilterable), "{ty}");
        }
    }
}
