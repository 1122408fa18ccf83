//! Which JSON-RPC methods the proxy forwards on a chain, and which of its reads may share one upstream call.
//!
//! A [`MethodPolicy`] is a chain's `[chains.methods]`: `allow` and `deny` lists of [`MethodPattern`]s. A method
//! passes when `allow` is empty or one of its patterns matches, and no `deny` pattern matches (deny always wins).
//! EVM chains deny the node-administration and debugging namespaces by default ([`DEFAULT_EVM_DENY`]): they
//! expose the node itself (peers, accounts, mining, tracing that can take a node down), not the chain. Solana
//! chains deny nothing by default.
//!
//! `deny` patterns match ignoring ASCII case and `allow` patterns exactly: a node that resolves method names
//! case-insensitively cannot be reached around a deny list, and an allow list never lets through more than it
//! names.
//!
//! [`may_coalesce`] decides which reads the proxy may merge with an identical one in flight (see
//! [`crate::coalesce`]).

use std::fmt;

use chainmux_core::ChainKind;
use serde_json::Value;

/// The `deny` list of an EVM chain that configures none: node administration, debugging and tracing, accounts
/// held by the node, mining, and the consensus-client engine API.
pub const DEFAULT_EVM_DENY: &[&str] = &["admin_*", "debug_*", "personal_*", "miner_*", "engine_*"];

/// One entry of an `allow` or `deny` list: an exact method name, or a prefix ending in `*` (`debug_*`; a lone
/// `*` matches every method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodPattern {
    /// This method only.
    Exact(String),
    /// Every method starting with this text (the pattern without its `*`).
    Prefix(String),
}

/// Why a text is not a [`MethodPattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The text is empty.
    #[error("a method pattern cannot be empty")]
    Empty,
    /// A character other than letters, digits and `_` (and a final `*`).
    #[error(
        "invalid character {0:?} in method pattern: a pattern is a method name (letters, digits, _) optionally \
         ending in *"
    )]
    Character(char),
    /// A `*` elsewhere than at the end.
    #[error("* may only end a method pattern (a prefix such as debug_*)")]
    Wildcard,
}

impl MethodPattern {
    /// Parses `text`: letters, digits and `_`, optionally followed by one `*`.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let (name, prefix) = match text.strip_suffix('*') {
            Some(name) => (name, true),
            None => (text, false),
        };
        if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
            return Err(if bad == '*' { PatternError::Wildcard } else { PatternError::Character(bad) });
        }
        Ok(if prefix { Self::Prefix(name.to_owned()) } else { Self::Exact(name.to_owned()) })
    }

    /// Whether `method` matches exactly (case-sensitively).
    pub fn matches(&self, method: &str) -> bool {
        match self {
            Self::Exact(name) => method == name,
            Self::Prefix(prefix) => method.starts_with(prefix.as_str()),
        }
    }

    /// Whether `method` matches ignoring ASCII case.
    pub fn matches_ignoring_case(&self, method: &str) -> bool {
        match self {
            Self::Exact(name) => method.eq_ignore_ascii_case(name),
            Self::Prefix(prefix) => method
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes())),
        }
    }
}

impl fmt::Display for MethodPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// A chain's `allow` and `deny` lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MethodPolicy {
    allow: Vec<MethodPattern>,
    deny: Vec<MethodPattern>,
}

impl MethodPolicy {
    /// The policy of a chain of `kind` that configures no lists: on EVM [`DEFAULT_EVM_DENY`], on Solana nothing
    /// denied.
    pub fn default_for(kind: ChainKind) -> Self {
        let deny = match kind {
            ChainKind::Evm => DEFAULT_EVM_DENY.iter().map(|p| prefix_of(p)).collect(),
            ChainKind::Solana => Vec::new(),
        };
        Self { allow: Vec::new(), deny }
    }

    /// A chain's configured lists; `deny: None` (the key left out) is the family's default list, `Some(&[])` denies
    /// nothing. The error names the offending entry's text.
    pub fn new<S: AsRef<str>>(
        kind: ChainKind,
        allow: &[S],
        deny: Option<&[S]>,
    ) -> Result<Self, (String, PatternError)> {
        let parse = |list: &[S]| {
            list.iter()
                .map(|text| {
                    MethodPattern::parse(text.as_ref()).map_err(|err| (text.as_ref().to_owned(), err))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let allow = parse(allow)?;
        let deny = match deny {
            Some(deny) => parse(deny)?,
            None => Self::default_for(kind).deny,
        };
        Ok(Self { allow, deny })
    }

    /// Whether `method` may be forwarded: no `deny` pattern matches it (ignoring case), and `allow` is empty or
    /// one of its patterns matches it.
    pub fn allows(&self, method: &str) -> bool {
        if self.deny.iter().any(|p| p.matches_ignoring_case(method)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|p| p.matches(method))
    }

    /// The `allow` list.
    pub fn allowed(&self) -> &[MethodPattern] {
        &self.allow
    }

    /// The `deny` list in effect.
    pub fn denied(&self) -> &[MethodPattern] {
        &self.deny
    }
}

/// A default pattern, known to be a valid prefix.
fn prefix_of(pattern: &str) -> MethodPattern {
    MethodPattern::Prefix(pattern.trim_end_matches('*').to_owned())
}

/// Methods that create, poll or remove server-side state (filters, subscriptions): each call has its own effect
/// or answer, so two identical ones are never merged.
const STATEFUL: &[&str] = &[
    "eth_newFilter",
    "eth_newBlockFilter",
    "eth_newPendingTransactionFilter",
    "eth_getFilterChanges",
    "eth_getFilterLogs",
    "eth_uninstallFilter",
    "eth_subscribe",
    "eth_unsubscribe",
];

/// Whether an identical request in flight may answer this one too (see [`crate::coalesce`]).
///
/// Only reads qualify, and only reads whose answer any caller asking during the shared call could have got
/// itself: a merged caller's answer may come from a call sent a moment before it asked.
/// - Never: writes (`eth_sendRawTransaction`, `eth_sendTransaction`, `sendTransaction`), filter and subscription
///   methods (each call has its own effect), and methods not known to be reads (anything outside `eth_`, `net_`
///   and `web3_` on EVM, `get…` on Solana: node control such as `evm_mine` or `anvil_*`, `requestAirdrop`,
///   signing, …). Signing (`eth_sign…`) and `eth_submit…` are excluded too.
/// - Never at the EVM `pending` tag: pending state moves with every transaction sent, and a wallet asking for its
///   pending nonce right after a send must see that send; a merged answer started before it would reuse a nonce.
///   Requests at `latest` are merged: any upstream the pool routes to may be a moment behind anyway.
pub(crate) fn may_coalesce(kind: ChainKind, method: &str, params: &Value) -> bool {
    if chainmux_rpc::is_write_method(method) || STATEFUL.contains(&method) {
        return false;
    }
    match kind {
        ChainKind::Evm => {
            let read = ["eth_", "net_", "web3_"].iter().any(|ns| method.starts_with(ns))
                && !method.starts_with("eth_sign")
                && !method.starts_with("eth_submit")
                && !method.starts_with("eth_send");
            read && !mentions_pending(params)
        }
        ChainKind::Solana => {
            method.strip_prefix("get").is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
        }
    }
}

/// Whether an EVM request names the `pending` block tag: as a param, or as the `blockTag`/`blockNumber`,
/// `fromBlock` or `toBlock` of an object param.
fn mentions_pending(params: &Value) -> bool {
    let is_pending = |value: &Value| value.as_str() == Some("pending");
    let items: &[Value] = match params {
        Value::Array(items) => items,
        single => std::slice::from_ref(single),
    };
    items.iter().any(|item| match item {
        Value::Object(map) => ["blockTag", "blockNumber", "fromBlock", "toBlock"]
            .iter()
            .any(|key| map.get(*key).is_some_and(is_pending)),
        other => is_pending(other),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn policy(kind: ChainKind, allow: &[&str], deny: Option<&[&str]>) -> MethodPolicy {
        MethodPolicy::new(kind, allow, deny).expect("valid patterns")
    }

    #[test]
    fn patterns_parse_names_and_prefixes() {
        assert_eq!(MethodPattern::parse("eth_call"), Ok(MethodPattern::Exact("eth_call".into())));
        assert_eq!(MethodPattern::parse("debug_*"), Ok(MethodPattern::Prefix("debug_".into())));
        assert_eq!(MethodPattern::parse("*"), Ok(MethodPattern::Prefix(String::new())));
        assert_eq!(MethodPattern::parse("getBlock"), Ok(MethodPattern::Exact("getBlock".into())));
        assert_eq!(MethodPattern::parse(""), Err(PatternError::Empty));
        assert_eq!(MethodPattern::parse("debug*_x"), Err(PatternError::Wildcard));
        assert_eq!(MethodPattern::parse("**"), Err(PatternError::Wildcard));
        assert_eq!(MethodPattern::parse("*_trace"), Err(PatternError::Wildcard));
        assert_eq!(MethodPattern::parse("eth call"), Err(PatternError::Character(' ')));
        assert_eq!(MethodPattern::parse("eth.call*"), Err(PatternError::Character('.')));
        assert_eq!(MethodPattern::parse("debug_?"), Err(PatternError::Character('?')));
        for text in ["eth_call", "debug_*", "*"] {
            assert_eq!(MethodPattern::parse(text).expect("valid").to_string(), text);
        }
    }

    #[test]
    fn exact_and_prefix_matching() {
        let exact = MethodPattern::parse("eth_call").expect("valid");
        assert!(exact.matches("eth_call"));
        assert!(!exact.matches("eth_callMany"), "an exact name is not a prefix");
        assert!(!exact.matches("eth_cal"));
        assert!(!exact.matches("ETH_CALL"), "exact matching is case-sensitive");
        assert!(exact.matches_ignoring_case("ETH_CALL"));
        let prefix = MethodPattern::parse("debug_*").expect("valid");
        assert!(prefix.matches("debug_traceTransaction"));
        assert!(prefix.matches("debug_"));
        assert!(!prefix.matches("debug"));
        assert!(!prefix.matches("xdebug_trace"));
        assert!(prefix.matches_ignoring_case("DEBUG_traceTransaction"));
        assert!(!prefix.matches_ignoring_case("DEBUG"));
        // Multi-byte text shorter or longer than the prefix never panics.
        assert!(!prefix.matches_ignoring_case("dé"));
        assert!(!prefix.matches_ignoring_case("débug_x"));
        let all = MethodPattern::parse("*").expect("valid");
        assert!(all.matches("anything") && all.matches(""));
    }

    #[test]
    fn evm_defaults_deny_node_namespaces_and_solana_denies_nothing() {
        let evm = MethodPolicy::default_for(ChainKind::Evm);
        for denied in [
            "admin_peers",
            "debug_traceTransaction",
            "personal_unlockAccount",
            "miner_start",
            "engine_newPayloadV3",
            "Debug_traceTransaction",
            "DEBUG_TRACECALL",
        ] {
            assert!(!evm.allows(denied), "{denied}");
        }
        for allowed in
            ["eth_call", "eth_getBalance", "net_version", "web3_clientVersion", "trace_block", "admin"]
        {
            assert!(evm.allows(allowed), "{allowed}");
        }
        let solana = MethodPolicy::default_for(ChainKind::Solana);
        for method in ["getBlock", "sendTransaction", "debug_traceTransaction", "admin_peers"] {
            assert!(solana.allows(method), "{method}");
        }
        let listed: Vec<String> = evm.denied().iter().map(ToString::to_string).collect();
        assert_eq!(listed, DEFAULT_EVM_DENY);
    }

    #[test]
    fn configured_lists_replace_the_default_and_deny_wins() {
        let none_denied = policy(ChainKind::Evm, &[], Some(&[]));
        assert!(
            none_denied.allows("debug_traceTransaction"),
            "an explicit empty deny list removes the default"
        );

        let left_out = policy(ChainKind::Evm, &["eth_*", "debug_*"], None);
        assert!(left_out.allows("eth_call"));
        assert!(!left_out.allows("net_version"), "not in allow");
        assert!(!left_out.allows("debug_traceTransaction"), "deny (the default) wins over allow");

        let own =
            policy(ChainKind::Evm, &["eth_*", "debug_traceTransaction"], Some(&["eth_sendTransaction"]));
        assert!(own.allows("debug_traceTransaction"), "allowed by name, default deny replaced");
        assert!(!own.allows("debug_traceCall"));
        assert!(!own.allows("eth_sendTransaction"));
        assert!(!own.allows("ETH_SENDTRANSACTION"), "deny ignores case");
        assert!(!own.allows("ETH_CALL"), "allow does not");
        assert!(own.allows("eth_sendRawTransaction"));

        let solana = policy(ChainKind::Solana, &[], Some(&["requestAirdrop", "get*"]));
        assert!(!solana.allows("requestAirdrop") && !solana.allows("getBlock"));
        assert!(solana.allows("sendTransaction"));

        let everything = policy(ChainKind::Solana, &[], Some(&["*"]));
        assert!(!everything.allows("getSlot"));
    }

    #[test]
    fn invalid_entries_are_named() {
        let err = MethodPolicy::new(ChainKind::Evm, &["eth_*"], Some(&["debug_*", "trace *"]))
            .expect_err("invalid");
        assert_eq!(err, ("trace *".to_owned(), PatternError::Character(' ')));
        let err = MethodPolicy::new(ChainKind::Evm, &["*eth"], None).expect_err("invalid");
        assert_eq!(err, ("*eth".to_owned(), PatternError::Wildcard));
    }

    #[test]
    fn only_plain_reads_are_coalesced() {
        let evm = |method: &str, params: Value| may_coalesce(ChainKind::Evm, method, &params);
        let addr = "0x00000000000000000000000000000000000000aa";
        assert!(evm("eth_getBalance", json!([addr, "latest"])));
        assert!(evm("eth_getBalance", json!([addr, "0x10"])));
        assert!(evm("eth_call", json!([{"to": addr}, "latest"])));
        assert!(evm("eth_getLogs", json!([{"fromBlock": "0x1", "toBlock": "latest"}])));
        assert!(evm("eth_chainId", json!([])));
        assert!(evm("net_version", json!([])));
        assert!(evm("web3_clientVersion", json!([])));
        for (method, params) in [
            ("eth_sendRawTransaction", json!(["0x00"])),
            ("eth_sendTransaction", json!([{"from": addr}])),
            ("eth_sign", json!([addr, "0x00"])),
            ("eth_signTransaction", json!([{"from": addr}])),
            ("eth_signTypedData_v4", json!([addr, {}])),
            ("eth_submitWork", json!([])),
            ("eth_newFilter", json!([{}])),
            ("eth_newBlockFilter", json!([])),
            ("eth_newPendingTransactionFilter", json!([])),
            ("eth_getFilterChanges", json!(["0x1"])),
            ("eth_getFilterLogs", json!(["0x1"])),
            ("eth_uninstallFilter", json!(["0x1"])),
            ("eth_subscribe", json!(["newHeads"])),
            ("eth_unsubscribe", json!(["0x1"])),
            ("eth_getTransactionCount", json!([addr, "pending"])),
            ("eth_getBalance", json!([addr, "pending"])),
            ("eth_call", json!([{"to": addr}, "pending"])),
            ("eth_getBlockByNumber", json!(["pending", false])),
            ("eth_getLogs", json!([{"fromBlock": "0x1", "toBlock": "pending"}])),
            ("eth_call", json!([{"to": addr}, {"blockNumber": "pending"}])),
            ("evm_mine", json!([])),
            ("anvil_mine", json!([1])),
            ("debug_traceTransaction", json!(["0x00"])),
            ("personal_sign", json!(["0x00", addr])),
        ] {
            assert!(!evm(method, params.clone()), "{method} {params}");
        }

        let sol = |method: &str| may_coalesce(ChainKind::Solana, method, &json!([]));
        for read in ["getBalance", "getBlock", "getSlot", "getAccountInfo", "getSignatureStatuses"] {
            assert!(sol(read), "{read}");
        }
        for never in
            ["sendTransaction", "requestAirdrop", "simulateTransaction", "getter", "get", "slotSubscribe"]
        {
            assert!(!sol(never), "{never}");
        }
    }
}
