//! What the pool needs to know about Solana requests without knowing Solana: the slot a request needs an upstream
//! to have reached, and the answer a duplicate `sendTransaction` would have had.

use base64::Engine;
use serde_json::Value;
use serde_json::value::RawValue;

/// The slot an upstream must have reached to answer: `getBlock`'s slot, the end of a `getBlocks` range (its start
/// when open-ended), `getBlocksWithLimit`'s start. Upstreams known to be behind it are not asked, so a node stuck
/// at an old slot cannot answer `null` for a block that exists.
pub(crate) fn min_height(method: &str, params: &RawValue) -> Option<u64> {
    let position = match method {
        "getBlock" | "getBlocksWithLimit" | "getBlockTime" => 0,
        "getBlocks" => 1,
        _ => return None,
    };
    let params: Value = serde_json::from_str(params.get()).ok()?;
    let slot = |i: usize| params.get(i).and_then(Value::as_u64);
    slot(position).or_else(|| slot(0))
}

/// `sendTransaction`'s answer is the transaction's first signature, which the signed bytes carry: a retry that
/// a node rejects as "already processed" is answered with it.
pub(crate) fn transaction_signature(method: &str, params: &RawValue) -> Option<Box<RawValue>> {
    if method != "sendTransaction" {
        return None;
    }
    let params: Value = serde_json::from_str(params.get()).ok()?;
    let encoded = params.get(0)?.as_str()?;
    // The default encoding is base58 (deprecated, still accepted); clients send base64.
    let encoding = params.get(1).and_then(|c| c.get("encoding")).and_then(Value::as_str).unwrap_or("base58");
    let bytes = match encoding {
        "base64" => base64::engine::general_purpose::STANDARD.decode(encoded).ok()?,
        "base58" => bs58::decode(encoded).into_vec().ok()?,
        _ => return None,
    };
    // Wire format: a compact-u16 signature count, then the 64-byte signatures. Counts below 128 take one byte.
    let (&count, rest) = bytes.split_first()?;
    if count == 0 || count >= 0x80 {
        return None;
    }
    let signature = rest.get(..64)?;
    RawValue::from_string(format!("\"{}\"", bs58::encode(signature).into_string())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("json")
    }

    #[test]
    fn slots_of_block_requests() {
        assert_eq!(min_height("getBlock", &raw(r#"[250, {"encoding": "json"}]"#)), Some(250));
        assert_eq!(min_height("getBlocks", &raw("[10, 20]")), Some(20));
        assert_eq!(min_height("getBlocks", &raw("[10]")), Some(10));
        assert_eq!(min_height("getBlocksWithLimit", &raw("[10, 5]")), Some(10));
        assert_eq!(min_height("getBalance", &raw(r#"["11111111111111111111111111111111"]"#)), None);
        assert_eq!(min_height("getBlock", &raw("[]")), None);
    }

    #[test]
    fn signature_of_a_signed_transaction() {
        let mut wire = vec![1u8];
        wire.extend((0..64).map(|i| i as u8));
        wire.extend([1, 0, 0, 0]);
        let signature = bs58::encode(&wire[1..65]).into_string();
        let base64 = base64::engine::general_purpose::STANDARD.encode(&wire);
        let params = raw(&format!(r#"["{base64}", {{"encoding": "base64"}}]"#));
        let answer = transaction_signature("sendTransaction", &params).expect("signature");
        assert_eq!(answer.get(), format!("\"{signature}\""));
        let base58 = bs58::encode(&wire).into_string();
        let answer =
            transaction_signature("sendTransaction", &raw(&format!(r#"["{base58}"]"#))).expect("signature");
        assert_eq!(answer.get(), format!("\"{signature}\""));
        assert!(transaction_signature("sendTransaction", &raw(r#"["not base58 0OIl"]"#)).is_none());
        assert!(transaction_signature("getBalance", &params).is_none());
        // No signatures: nothing to answer with.
        let empty = base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2]);
        assert!(
            transaction_signature(
                "sendTransaction",
                &raw(&format!(r#"["{empty}", {{"encoding": "base64"}}]"#))
            )
            .is_none()
        );
    }
}
