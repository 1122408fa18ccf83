//! The JSON of decoded arguments (`events.args`) and of the selected events (`contract_sources.events`).
//!
//! Arguments are written straight into one `String` per log, without an intermediate `serde_json::Value`: this runs
//! for every decoded log. Integers are decimal strings (they exceed JSON's safe integers), addresses and bytes
//! lowercase `0x` hex, so that the query API can canonicalise a filter value the same way and compare text.

use std::fmt::Write as _;

use alloy::dyn_abi::{DecodedEvent as AbiDecoded, DynSolValue};
use alloy::json_abi::{Event, Param};
use serde_json::{Value, json};

use super::source::{ParamPlan, Shape, keys};

/// The arguments of a decoded log as a JSON object keyed by parameter, in ABI order.
pub(crate) fn args(params: &[ParamPlan], decoded: &AbiDecoded) -> String {
    let mut out = String::with_capacity(16 + 80 * params.len());
    out.push('{');
    for (i, param) in params.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(&mut out, &param.key);
        out.push(':');
        let values = if param.indexed { &decoded.indexed } else { &decoded.body };
        match values.get(param.position) {
            Some(value) => self::value(&mut out, value, &param.shape),
            None => out.push_str("null"),
        }
    }
    out.push('}');
    out
}

fn value(out: &mut String, value: &DynSolValue, shape: &Shape) {
    match value {
        DynSolValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Writing to a String cannot fail.
        DynSolValue::Uint(v, _) => {
            let _ = write!(out, "\"{v}\"");
        }
        DynSolValue::Int(v, _) => {
            let _ = write!(out, "\"{v}\"");
        }
        DynSolValue::Address(address) => hex(out, address.as_slice()),
        DynSolValue::Function(function) => hex(out, function.as_slice()),
        DynSolValue::FixedBytes(word, size) => hex(out, &word[..(*size).min(32)]),
        DynSolValue::Bytes(bytes) => hex(out, bytes),
        DynSolValue::String(text) => string(out, text),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) => {
            let inner = match shape {
                Shape::Array(inner) => inner,
                _ => &Shape::Value,
            };
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                self::value(out, item, inner);
            }
            out.push(']');
        }
        DynSolValue::Tuple(items) => {
            let fields = match shape {
                Shape::Tuple(fields) => fields.as_slice(),
                _ => &[],
            };
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match fields.get(i) {
                    Some((key, shape)) => {
                        string(out, key);
                        out.push(':');
                        self::value(out, item, shape);
                    }
                    None => {
                        string(out, &i.to_string());
                        out.push(':');
                        self::value(out, item, &Shape::Value);
                    }
                }
            }
            out.push('}');
        }
        // With alloy's `eip712` feature there is also `CustomStruct`, which resolution never yields here (internal
        // types are dropped before resolving).
        #[allow(unreachable_patterns)]
        _ => out.push_str("null"),
    }
}

/// `bytes` as a JSON string of lowercase `0x` hex.
fn hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2 + 4);
    out.push_str("\"0x");
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out.push('"');
}

/// `text` as a JSON string (RFC 8259 escaping; everything else, non-ASCII included, as is). NUL becomes U+FFFD,
/// the replacement character: PostgreSQL's `jsonb` refuses `\u0000`, and one contract string holding it must not
/// fail the batch, and with it the chain's indexing.
fn string(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `[{"name", "signature", "anonymous", "params": [...]}]` for `events` (see `ContractSource::events_json`).
pub(crate) fn events_json<'a>(events: impl Iterator<Item = (&'a Event, &'a [ParamPlan])>) -> String {
    let events: Vec<Value> = events
        .map(|(event, plans)| {
            let params: Vec<Value> = event
                .inputs
                .iter()
                .zip(plans)
                .map(|(input, plan)| {
                    param(&plan.key, input.selector_type().into_owned(), input.indexed, &input.components)
                })
                .collect();
            json!({
                "name": event.name,
                "signature": event.signature(),
                "anonymous": event.anonymous,
                "params": params,
            })
        })
        .collect();
    Value::Array(events).to_string()
}

fn param(key: &str, ty: String, indexed: bool, components: &[Param]) -> Value {
    let mut param = json!({"name": key, "type": ty, "indexed": indexed});
    if !components.is_empty() {
        let keys = keys(components.iter().map(|c| c.name.as_str()));
        let components: Vec<Value> = components
            .iter()
            .zip(keys)
            .map(|(c, key)| self::param(&key, c.selector_type().into_owned(), false, &c.components))
            .collect();
        param["components"] = Value::Array(components);
    }
    param
}

#[cfg(test)]
mod tests {
    #[test]
    fn strings_escape_controls_and_replace_nul() {
        let mut out = String::new();
        super::string(&mut out, "a\"b\\c\n\u{1}\0é");
        assert_eq!(out, "\"a\\\"b\\\\c\\n\\u0001\u{FFFD}é\"");
        let parsed: String = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(parsed, "a\"b\\c\n\u{1}\u{FFFD}é");
    }
}
