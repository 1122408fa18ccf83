//! Error classes of upstream calls. Classification lives here, on the error, so every caller agrees on what is
//! worth retrying.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON-RPC error object as an upstream returned it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonRpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
}

impl JsonRpcError {
    /// Whether this error is the upstream's problem (overload, internal failure, missing data) rather than the
    /// caller's (bad params, revert). Only the former is worth sending to another upstream.
    pub fn is_upstream_fault(&self) -> bool {
        if self.is_range_limit() {
            return false;
        }
        let message = self.message.to_ascii_lowercase();
        let caller_fault = [
            "revert",
            "invalid argument",
            "invalid params",
            "insufficient funds",
            "nonce too low",
            "nonce too high",
            "already known",
            "underpriced",
            "intrinsic gas",
            "gas required exceeds",
            // Solana: the transaction itself is bad; every node answers the same.
            "transaction simulation failed",
            "signature verification failed",
            "unsupported transaction version",
        ];
        if caller_fault.iter().any(|needle| message.contains(needle)) {
            return false;
        }
        match self.code {
            // Internal error, provider-specific "limit exceeded" / "resource unavailable", HTTP-style 429.
            // Solana's -32004: block not available for this slot on this node.
            -32603 | -32005 | -32002 | -32004 | 429 => true,
            // Method not found: another upstream may support it.
            -32601 => true,
            // Generic server error: decide on the message, the only signal providers give.
            -32000 | -32001 | -32099..=-32006 => {
                let upstream_fault = [
                    "rate limit",
                    "too many requests",
                    "limit exceeded",
                    "capacity",
                    "timeout",
                    "timed out",
                    "header not found",
                    "unknown block",
                    "missing trie node",
                    "internal",
                    "unavailable",
                    "try again",
                    "overloaded",
                    // Solana: this node lacks the slot (pruned, not replayed yet, behind); another may have it.
                    // "Skipped, or missing" (-32007/-32009) is one node's word too: a node that jumped to a snapshot
                    // or lacks long-term storage says it for slots that have blocks. Whether a slot was skipped is
                    // proven by the adapter from `getBlocks` and parent slots; here it only means "ask another".
                    "was skipped",
                    "cleaned up",
                    "not available",
                    "not yet available",
                    "behind",
                    "minimum context slot",
                ];
                upstream_fault.iter().any(|needle| message.contains(needle))
            }
            _ => false,
        }
    }

    /// Whether the upstream cannot answer this request because it lacks the method or the data — a method it does
    /// not serve (`-32601`; `-32004` on EVM), a Solana slot it never stored, already pruned or has not replayed
    /// (`-32004`, `-32007`, `-32009`, `-32014`, `-32001` "cleaned up"). Another upstream may answer, so the call
    /// fails over; but it says nothing about the upstream's health, so it never counts towards its breaker.
    pub fn is_not_served(&self) -> bool {
        match self.code {
            -32601 | -32004 | -32007 | -32009 | -32014 => true,
            -32001 => self.message.to_ascii_lowercase().contains("cleaned up"),
            _ => false,
        }
    }

    /// Whether this is a provider refusing an `eth_getLogs` query as too large (too many blocks, results or
    /// bytes; often with code -32005, like rate limits). The caller must ask for less: this is neither an upstream
    /// fault nor a rate limit, so it comes back at once instead of being retried or throttling the upstream.
    pub fn is_range_limit(&self) -> bool {
        let message = self.message.to_ascii_lowercase();
        let range_limit = [
            "block range",
            "range limit",
            "max range",
            "range is too",
            "range too large",
            "too many blocks",
            "requested blocks",
            "blocks distance",
            "returned more than",
            "max results",
            "response size",
            "logs matched by query",
        ];
        range_limit.iter().any(|needle| message.contains(needle))
    }

    /// Whether a health check's error answer is the node saying it is unhealthy (Solana's `-32005` "Node is
    /// unhealthy" / "Node is behind by N slots").
    pub fn says_unhealthy(&self) -> bool {
        let message = self.message.to_ascii_lowercase();
        self.code == -32005 || message.contains("unhealthy") || message.contains("behind")
    }

    pub fn is_rate_limit(&self) -> bool {
        if self.is_range_limit() {
            return false;
        }
        let message = self.message.to_ascii_lowercase();
        // -32005 is "limit exceeded" on EVM providers but "node is unhealthy / behind by N slots" on Solana.
        let node_health = message.contains("unhealthy") || message.contains("behind");
        self.code == 429
            || (self.code == -32005 && !node_health)
            || message.contains("rate limit")
            || message.contains("too many requests")
    }
}

/// Why an upstream call failed.
///
/// Messages name upstreams by their configured name, never by URL: provider URLs often embed API keys.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// The request never reached the upstream (connection refused, DNS, TLS handshake).
    #[error("upstream {upstream}: connection failed: {message}")]
    Connect { upstream: String, message: String },
    /// No complete answer within the per-attempt timeout. The upstream may have executed the request.
    #[error("upstream {upstream}: timed out after {after:?}")]
    Timeout { upstream: String, after: Duration },
    /// A non-success HTTP status.
    #[error("upstream {upstream}: HTTP {status}")]
    Http { upstream: String, status: u16, retry_after: Option<Duration> },
    /// A body that is not a JSON-RPC response.
    #[error("upstream {upstream}: invalid response: {message}")]
    InvalidResponse { upstream: String, message: String },
    /// A JSON-RPC error object returned by the upstream.
    #[error("upstream {upstream}: JSON-RPC error {}: {}", error.code, error.message)]
    JsonRpc { upstream: String, error: JsonRpcError },
    /// The call's deadline passed before any upstream answered.
    #[error("chain {chain}: no answer within the {after:?} deadline{}", last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    DeadlineExceeded { chain: String, after: Duration, last: Option<Box<RpcError>> },
    /// No upstream is eligible (all excluded or unverified).
    #[error("no upstream available for chain {chain}: {reason}")]
    NoUpstream { chain: String, reason: String },
}

impl RpcError {
    /// Whether another attempt (on this or another upstream) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout { .. } | Self::InvalidResponse { .. } => true,
            Self::DeadlineExceeded { .. } => true,
            Self::Http { status, .. } => *status == 429 || *status >= 500 || *status == 408,
            Self::JsonRpc { error, .. } => error.is_upstream_fault(),
            Self::NoUpstream { .. } => false,
        }
    }

    /// Whether the upstream certainly did not receive the request; the only case where a write may be resent.
    pub fn was_not_delivered(&self) -> bool {
        matches!(self, Self::Connect { .. })
    }

    /// Minimum wait the upstream asked for before it is tried again.
    pub fn backoff_hint(&self) -> Option<Duration> {
        match self {
            Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_rate_limit(&self) -> bool {
        match self {
            Self::Http { status, .. } => *status == 429,
            Self::JsonRpc { error, .. } => error.is_rate_limit(),
            _ => false,
        }
    }

    /// The JSON-RPC error to hand to a client: the upstream's own object when it sent one, otherwise a generic
    /// server error that does not leak internals beyond the upstream name.
    pub fn to_client_error(&self) -> JsonRpcError {
        match self {
            Self::JsonRpc { error, .. } => error.clone(),
            Self::NoUpstream { .. } => {
                JsonRpcError { code: -32603, message: "no healthy upstream available".into(), data: None }
            }
            Self::DeadlineExceeded { .. } => {
                JsonRpcError { code: -32603, message: "upstream request timed out".into(), data: None }
            }
            other if other.is_rate_limit() => {
                JsonRpcError { code: -32005, message: "upstreams are rate limited".into(), data: None }
            }
            _ => JsonRpcError { code: -32603, message: "upstream request failed".into(), data: None },
        }
    }

    /// Low-cardinality outcome label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "connect_error",
            Self::Timeout { .. } => "timeout",
            Self::Http { status: 429, .. } => "rate_limited",
            Self::Http { .. } => "http_error",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::JsonRpc { error, .. } if error.is_rate_limit() => "rate_limited",
            Self::JsonRpc { error, .. } if error.is_upstream_fault() => "rpc_server_error",
            Self::JsonRpc { .. } => "rpc_client_error",
            Self::NoUpstream { .. } => "no_upstream",
            Self::DeadlineExceeded { .. } => "deadline",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: i64, message: &str) -> RpcError {
        RpcError::JsonRpc {
            upstream: "a".into(),
            error: JsonRpcError { code, message: message.into(), data: None },
        }
    }

    #[test]
    fn caller_faults_are_not_retried() {
        assert!(!rpc(-32602, "invalid params").is_retryable());
        assert!(!rpc(3, "execution reverted").is_retryable());
        assert!(!rpc(-32000, "execution reverted: nope").is_retryable());
        assert!(!rpc(-32000, "insufficient funds for gas * price + value").is_retryable());
        assert!(!rpc(-32603, "execution reverted").is_retryable());
    }

    #[test]
    fn upstream_faults_are_retried() {
        assert!(rpc(-32603, "internal error").is_retryable());
        assert!(rpc(-32005, "limit exceeded").is_retryable());
        assert!(rpc(-32000, "header not found").is_retryable());
        assert!(rpc(-32601, "the method eth_getBlockReceipts does not exist").is_retryable());
        assert!(rpc(429, "Too Many Requests").is_rate_limit());
    }

    #[test]
    fn solana_error_classes() {
        // A node that cannot serve a slot: another one may.
        assert!(rpc(-32004, "Block not available for slot 123").is_retryable());
        assert!(
            rpc(-32001, "Block 5 cleaned up, does not exist on node. First available block: 9")
                .is_retryable()
        );
        assert!(rpc(-32014, "Block status not yet available for slot 7").is_retryable());
        assert!(rpc(-32016, "Minimum context slot has not been reached").is_retryable());
        // Unhealthy is not throttled: it must not bench the node as rate limited.
        let behind = rpc(-32005, "Node is behind by 42 slots");
        assert!(behind.is_retryable() && !behind.is_rate_limit());
        assert!(!rpc(-32005, "Node is unhealthy").is_rate_limit());
        // Not served by this node: ask another, without holding it against the node's health.
        let object = |code, message: &str| JsonRpcError { code, message: message.into(), data: None };
        assert!(object(-32007, "Slot 9 was skipped, or missing due to ledger jump").is_not_served());
        assert!(object(-32001, "Block 5 cleaned up, does not exist on node").is_not_served());
        assert!(!object(-32603, "internal error").is_not_served());
        assert!(object(-32005, "Node is behind by 42 slots").says_unhealthy());
        assert!(!object(-32601, "Method not found").says_unhealthy());
        // "Skipped" is one node's word: another node may have the block.
        assert!(
            rpc(-32007, "Slot 9 was skipped, or missing due to ledger jump to recent snapshot")
                .is_retryable()
        );
        assert!(rpc(-32009, "Slot 9 was skipped, or missing in long-term storage").is_retryable());
        // A bad transaction is the caller's, on every node.
        assert!(!rpc(-32002, "Transaction simulation failed: Blockhash not found").is_retryable());
    }

    #[test]
    fn range_limits_come_back_at_once() {
        for (code, message) in [
            (-32005, "query returned more than 10000 results. Try with this block range [0x1, 0x2]."),
            (-32005, "query exceeds max block range 5"),
            (-32000, "range limit exceeded"),
            (
                -32602,
                "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
            ),
            (-32005, "query exceeds max results 20000"),
        ] {
            let err = rpc(code, message);
            assert!(!err.is_retryable() && !err.is_rate_limit(), "{message}");
            assert_eq!(err.outcome(), "rpc_client_error");
        }
        // A bare "limit exceeded" stays a provider limit: another upstream may take it.
        assert!(rpc(-32005, "limit exceeded").is_retryable());
    }

    #[test]
    fn transport_classes() {
        let http = |status| RpcError::Http { upstream: "a".into(), status, retry_after: None };
        assert!(http(500).is_retryable());
        assert!(http(429).is_retryable());
        assert!(!http(400).is_retryable());
        assert!(RpcError::Connect { upstream: "a".into(), message: "refused".into() }.was_not_delivered());
        assert!(
            !RpcError::Timeout { upstream: "a".into(), after: Duration::from_secs(1) }.was_not_delivered()
        );
    }
}
