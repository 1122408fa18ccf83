//! Semantic checks that serde cannot express: ranges, name rules, uniqueness, URLs, and which
//! keys a chain's `kind` allows. Checks that need files (the ABIs of `[[chains.contracts]]`)
//! are not here: [`load`](crate::load) runs them after these.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;

use url::Url;

use crate::{
    AddressList, ChainConfig, ChainKind, Config, ConfigError, ContractConfig, MethodsConfig, Problem,
    ProgramConfig, Result, RpcConfig, UpstreamConfig, UpstreamRpcOverrides,
};

impl Config {
    /// Checks every rule and returns all violations, in document order. Empty means valid.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        self.check(&mut p);
        p.0
    }

    /// Checks every rule; on failure returns [`ConfigError::Invalid`] listing all
    /// violations, attributed to `origin` (the file name, or e.g. `"testkit"`).
    /// [`load`](crate::load) calls this.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { file: origin.to_owned(), problems })
        }
    }

    fn check(&self, p: &mut Problems) {
        let db = &self.database;
        let url = db.url.expose_secret();
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            p.add("database.url", "must start with postgres:// or postgresql://");
        } else if let Err(err) = Url::parse(url) {
            // The url crate's messages never echo the input, so the password stays out.
            p.add("database.url", format!("invalid URL: {err}"));
        }
        p.range("database.max_connections", db.max_connections, 1, 1000);
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            match Url::parse(endpoint) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                Ok(_) => p.add("telemetry.otlp_endpoint", "must be an http:// or https:// URL"),
                Err(err) => p.add("telemetry.otlp_endpoint", format!("invalid URL: {err}")),
            }
        }

        if let Some(id) = &self.cluster.replica_id {
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
            if id.is_empty() || id.len() > 64 || !id.chars().all(allowed) {
                p.add("cluster.replica_id", "must be 1-64 characters of letters, digits, '.', '_', '-', ':'");
            }
        }
        p.range("cluster.leader_poll_ms", self.cluster.leader_poll_ms, 50, 60_000);
        if let Some(url) = &self.redis.url {
            match Url::parse(url.expose_secret()) {
                Ok(parsed) if matches!(parsed.scheme(), "redis" | "rediss") => {}
                Ok(_) => p.add("redis.url", "must start with redis:// or rediss://"),
                // The url crate's messages never echo the input, so the password stays out.
                Err(err) => p.add("redis.url", format!("invalid URL: {err}")),
            }
        }
        p.range("redis.timeout_ms", self.redis.timeout_ms, 1, 5_000);

        let gw = &self.gateway;
        if gw.listen.parse::<SocketAddr>().is_err() {
            p.add(
                "gateway.listen",
                format!("invalid socket address {:?} (expected e.g. 127.0.0.1:8080)", gw.listen),
            );
        }
        p.range("gateway.max_body_bytes", gw.max_body_bytes, 1, 64 * 1024 * 1024);
        p.range("gateway.max_batch_size", gw.max_batch_size, 1, 10_000);
        p.range("gateway.max_subscriptions_per_connection", gw.max_subscriptions_per_connection, 1, 10_000);
        p.range("gateway.max_page_size", gw.max_page_size, 1, 10_000);
        p.range("gateway.min_block_wait_ms", gw.min_block_wait_ms, 0, 60_000);
        p.range("gateway.max_sse_streams", gw.max_sse_streams, 1, 100_000);
        p.range("gateway.max_ws_connections", gw.max_ws_connections, 1, 1_000_000);
        p.range("gateway.max_live_connections_per_client", gw.max_live_connections_per_client, 1, 100_000);
        p.range("gateway.rpc_cache_max_entries", gw.rpc_cache_max_entries, 0, 10_000_000);
        p.range("gateway.rpc_cache_max_bytes", gw.rpc_cache_max_bytes, 0, 64 << 30);
        p.range("gateway.rpc_cache_unfinalized_ttl_ms", gw.rpc_cache_unfinalized_ttl_ms, 0, 3_600_000);
        for (name, rps, burst) in [
            ("anonymous", gw.anonymous_rps, gw.anonymous_burst),
            ("anonymous_rpc", gw.anonymous_rpc_rps, gw.anonymous_rpc_burst),
            ("default_key", gw.default_key_rps, gw.default_key_burst),
            ("default_key_rpc", gw.default_key_rpc_rps, gw.default_key_rpc_burst),
        ] {
            p.range(&format!("gateway.{name}_rps"), rps, 0, MAX_RATE);
            p.range(&format!("gateway.{name}_burst"), burst, 1, MAX_RATE);
        }
        check_cors_origins(&gw.cors_allowed_origins, "gateway.cors_allowed_origins", p);

        if self.chains.is_empty() {
            p.add("chains", "at least one chain is required");
        }
        let mut seen = BTreeMap::new();
        for (i, chain) in self.chains.iter().enumerate() {
            let key = format!("chains[{i}]");
            p.name(&format!("{key}.name"), &chain.name, "chain", &mut seen);
            check_chain(chain, &key, p);
        }
    }
}

/// Largest `[gateway]` rate or burst: far beyond what one process serves, small enough for the store's columns.
const MAX_RATE: u32 = 1_000_000;

/// `gateway.cors_allowed_origins`: `["*"]` alone, or origins exactly as browsers send them in `Origin`
/// (`scheme://host[:port]`, lowercase, no path or trailing slash), each listed once.
fn check_cors_origins(origins: &[String], key: &str, p: &mut Problems) {
    for (i, origin) in origins.iter().enumerate() {
        let key = format!("{key}[{i}]");
        if origin == "*" {
            if origins.len() > 1 {
                p.add(key, "\"*\" allows every origin; it must be the only entry");
            }
            continue;
        }
        let canonical = Url::parse(origin)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
            .map(|url| url.origin().ascii_serialization());
        match canonical {
            None => p.add(
                key,
                format!("invalid origin {origin:?} (expected e.g. \"https://app.example\" or \"*\")"),
            ),
            Some(canonical) if canonical != *origin => p.add(
                key,
                format!(
                    "origin {origin:?} would never match a browser's Origin header; write it as {canonical:?}"
                ),
            ),
            Some(_) => {
                if let Some(first) = origins[..i].iter().position(|o| o == origin) {
                    p.add(key, format!("duplicate origin {origin:?} (already listed at index {first})"));
                }
            }
        }
    }
}

fn check_chain(chain: &ChainConfig, key: &str, p: &mut Problems) {
    check_kind_keys(chain, key, p);
    p.range(&format!("{key}.batch_size"), chain.batch_size, 1, 10_000);
    p.range(&format!("{key}.fetch_concurrency"), chain.fetch_concurrency, 1, 256);
    p.at_least(&format!("{key}.poll_interval_ms"), chain.poll_interval_ms, 10);
    p.at_least(&format!("{key}.health_max_lag_seconds"), chain.health_max_lag_seconds, 1);
    let rpc_key = format!("{key}.rpc");
    check_rpc(&chain.rpc, &rpc_key, p);
    check_chain_burst(chain, &rpc_key, p);

    if chain.upstreams.is_empty() {
        p.add(format!("{key}.upstreams"), "at least one upstream is required");
    }
    let mut seen = BTreeMap::new();
    for (i, upstream) in chain.upstreams.iter().enumerate() {
        let key = format!("{key}.upstreams[{i}]");
        p.name(&format!("{key}.name"), &upstream.name, "upstream", &mut seen);
        check_upstream_url(upstream, &format!("{key}.url"), p);
        check_upstream_rpc(&chain.rpc, &upstream.rpc, &format!("{key}.rpc"), &rpc_key, p);
    }
    check_programs(&chain.programs, &format!("{key}.programs"), p);
    check_methods(&chain.methods, &format!("{key}.methods"), p);
    if chain.kind == ChainKind::Evm {
        if let Some(chunk) = chain.logs_address_chunk {
            p.range(&format!("{key}.logs_address_chunk"), chunk, 1, 10_000);
        }
        p.opt_at_least(&format!("{key}.logs_topic_only_above"), chain.logs_topic_only_above, 1);
        check_contracts(&chain.contracts, &format!("{key}.contracts"), p);
    }
}

/// The keys of one chain family: required where needed, and rejected on the other family, where they
/// would be silently ignored.
fn check_kind_keys(chain: &ChainConfig, key: &str, p: &mut Problems) {
    let k = |name: &str| format!("{key}.{name}");
    match chain.kind {
        ChainKind::Evm => {
            if chain.chain_id.is_none() {
                p.add(k("chain_id"), "required on evm chains");
            }
            let solana_only = [
                ("genesis_hash", chain.genesis_hash.is_some()),
                ("commitment", chain.commitment.is_some()),
                ("programs", !chain.programs.is_empty()),
            ];
            for (name, set) in solana_only {
                if set {
                    p.add(k(name), "only solana chains have this key; remove it or set kind = \"solana\"");
                }
            }
        }
        ChainKind::Solana => {
            if chain.chain_id.is_some() {
                p.add(
                    k("chain_id"),
                    "not used on solana chains: Solana chains are identified by genesis_hash; remove it",
                );
            }
            let evm_only = [
                ("use_block_receipts", chain.use_block_receipts.is_some()),
                ("fetch", chain.fetch.is_some()),
                ("logs_address_chunk", chain.logs_address_chunk.is_some()),
                ("logs_topic_only_above", chain.logs_topic_only_above.is_some()),
                ("contracts", !chain.contracts.is_empty()),
            ];
            for (name, set) in evm_only {
                if set {
                    p.add(k(name), "only evm chains have this key; remove it or set kind = \"evm\"");
                }
            }
        }
    }
}

/// `[[chains.programs]]`: names by the usual rule, and each program listed once.
fn check_programs(programs: &[ProgramConfig], key: &str, p: &mut Problems) {
    let mut names = BTreeMap::new();
    let mut ids = BTreeMap::new();
    for (i, program) in programs.iter().enumerate() {
        let key = format!("{key}[{i}]");
        p.name(&format!("{key}.name"), &program.name, "program", &mut names);
        match ids.get(&program.id) {
            Some(first) => p.add(
                format!("{key}.id"),
                format!("duplicate program id {} (already listed at {first})", program.id),
            ),
            None => {
                ids.insert(program.id, key);
            }
        }
    }
}

/// `[[chains.contracts]]`, as far as it goes without the ABI files: names by the usual rule, exactly one of
/// `address` and `factory`, address lists non-empty without duplicates, and a non-empty `events` list.
fn check_contracts(contracts: &[ContractConfig], key: &str, p: &mut Problems) {
    let mut names = BTreeMap::new();
    for (i, contract) in contracts.iter().enumerate() {
        let key = format!("{key}[{i}]");
        p.name(&format!("{key}.name"), &contract.name, "contract", &mut names);
        let address_key = format!("{key}.address");
        match (&contract.address, &contract.factory) {
            (Some(_), Some(_)) => p.add(&address_key, "set address or factory, not both"),
            (None, None) => p.add(&address_key, "set address or factory: one of them is required"),
            _ => {}
        }
        if let Some(AddressList::Many(addresses)) = &contract.address {
            if addresses.is_empty() {
                p.add(&address_key, "lists no address; give at least one");
            }
            for (j, address) in addresses.iter().enumerate() {
                if let Some(first) = addresses[..j].iter().position(|a| a == address) {
                    p.add(
                        format!("{address_key}[{j}]"),
                        format!("duplicate address {address} (already listed at {address_key}[{first}])"),
                    );
                }
            }
        }
        if contract.events.as_ref().is_some_and(Vec::is_empty) {
            p.add(
                format!("{key}.events"),
                "lists no event; leave the key out to index every event of the ABI",
            );
        }
    }
}

/// `[chains.methods]`: every `allow` and `deny` entry is a method pattern.
fn check_methods(methods: &MethodsConfig, key: &str, p: &mut Problems) {
    let lists = [("allow", methods.allow.as_slice()), ("deny", methods.deny.as_deref().unwrap_or_default())];
    for (name, list) in lists {
        for (i, pattern) in list.iter().enumerate() {
            if let Err(message) = check_method_pattern(pattern) {
                p.add(format!("{key}.{name}[{i}]"), message);
            }
        }
    }
}

/// A method pattern: an exact method name (ASCII letters, digits, `_`) or such a prefix followed by one `*`.
/// The gateway parses patterns by the same rule (`chainmux_gateway::MethodPattern`).
fn check_method_pattern(pattern: &str) -> std::result::Result<(), String> {
    const RULE: &str = "a pattern is a method name (letters, digits, _) optionally ending in *, e.g. debug_*";
    if pattern.is_empty() {
        return Err(format!("empty method pattern: {RULE}"));
    }
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        None => Ok(()),
        Some('*') => Err(format!("* may only end a method pattern, in {pattern:?}: {RULE}")),
        Some(bad) => Err(format!("invalid character {bad:?} in method pattern {pattern:?}: {RULE}")),
    }
}

/// `[chains.rpc]` on its own: the call-level keys, the per-upstream defaults by the same
/// rules as overrides, and the cross-field rules among the chain's values.
fn check_rpc(rpc: &RpcConfig, key: &str, p: &mut Problems) {
    let k = |name: &str| format!("{key}.{name}");
    p.range(&k("max_attempts"), rpc.max_attempts, 1, 20);
    if rpc.backoff_max_ms < rpc.backoff_min_ms {
        p.add(
            k("backoff_max_ms"),
            format!("must be >= backoff_min_ms ({} < {})", rpc.backoff_max_ms, rpc.backoff_min_ms),
        );
    }
    p.at_least(&k("probe_interval_ms"), rpc.probe_interval_ms, 50);
    p.range(&k("max_hedges"), rpc.max_hedges, 0, 4);
    p.range(&k("hysteresis"), rpc.hysteresis, 0.0, 1.0);
    p.range(&k("probe_share"), rpc.probe_share, 0.0, 0.5);

    check_overridable(&chain_values(rpc), key, p);

    if rpc.deadline_ms < rpc.request_timeout_ms {
        p.add(
            k("deadline_ms"),
            format!("must be >= request_timeout_ms ({} < {})", rpc.deadline_ms, rpc.request_timeout_ms),
        );
    }
    if rpc.hedge_delay_max_ms < rpc.hedge_delay_min_ms {
        p.add(
            k("hedge_delay_max_ms"),
            format!(
                "must be >= hedge_delay_min_ms ({} < {})",
                rpc.hedge_delay_max_ms, rpc.hedge_delay_min_ms
            ),
        );
    }
}

/// The chain's values of the keys an upstream may override, in the overrides' shape, so
/// that [`check_overridable`] states each rule once for both places.
fn chain_values(rpc: &RpcConfig) -> UpstreamRpcOverrides {
    UpstreamRpcOverrides {
        request_timeout_ms: Some(rpc.request_timeout_ms),
        max_lag_blocks: Some(rpc.max_lag_blocks),
        hedge_delay_ms: rpc.hedge_delay_ms,
        hedge_quantile: Some(rpc.hedge_quantile),
        hedge_delay_min_ms: Some(rpc.hedge_delay_min_ms),
        hedge_delay_max_ms: Some(rpc.hedge_delay_max_ms),
        breaker_failures: Some(rpc.breaker_failures),
        breaker_window_ms: Some(rpc.breaker_window_ms),
        breaker_cooldown_ms: Some(rpc.breaker_cooldown_ms),
        breaker_successes: Some(rpc.breaker_successes),
        rate_limit_rps: rpc.rate_limit_rps,
        rate_limit_burst: rpc.rate_limit_burst,
        rate_limit_cooldown_ms: Some(rpc.rate_limit_cooldown_ms),
    }
}

/// The single-key rules of the per-upstream keys, for whichever of them are set.
fn check_overridable(values: &UpstreamRpcOverrides, key: &str, p: &mut Problems) {
    let k = |name: &str| format!("{key}.{name}");
    let v = values;
    p.opt_at_least(&k("request_timeout_ms"), v.request_timeout_ms, 1);
    // max_lag_blocks: any value is meaningful (0 = must be at the best head).
    p.opt_at_least(&k("hedge_delay_ms"), v.hedge_delay_ms, 1);
    if let Some(quantile) = v.hedge_quantile {
        p.range(&k("hedge_quantile"), quantile, 0.5, 0.999);
    }
    p.opt_at_least(&k("hedge_delay_min_ms"), v.hedge_delay_min_ms, 1);
    // hedge_delay_max_ms: bounded below by hedge_delay_min_ms, a cross-field rule.
    p.opt_at_least(&k("breaker_failures"), v.breaker_failures, 1);
    p.opt_at_least(&k("breaker_window_ms"), v.breaker_window_ms, 1);
    p.opt_at_least(&k("breaker_cooldown_ms"), v.breaker_cooldown_ms, 1);
    p.opt_at_least(&k("breaker_successes"), v.breaker_successes, 1);
    p.opt_at_least(&k("rate_limit_rps"), v.rate_limit_rps, 1);
    p.opt_at_least(&k("rate_limit_burst"), v.rate_limit_burst, 1);
    p.opt_at_least(&k("rate_limit_cooldown_ms"), v.rate_limit_cooldown_ms, 1);
}

/// A chain-level `rate_limit_burst` without `rate_limit_rps` is fine only if every
/// upstream that inherits it sets its own `rate_limit_rps`.
fn check_chain_burst(chain: &ChainConfig, key: &str, p: &mut Problems) {
    if chain.rpc.rate_limit_burst.is_none() || chain.rpc.rate_limit_rps.is_some() {
        return;
    }
    let unlimited: Vec<String> = chain
        .upstreams
        .iter()
        .filter(|u| u.rpc.rate_limit_burst.is_none() && u.rpc.rate_limit_rps.is_none())
        .map(|u| format!("{:?}", u.name))
        .collect();
    if !unlimited.is_empty() {
        let (noun, verb) = if unlimited.len() == 1 { ("upstream", "does") } else { ("upstreams", "do") };
        p.add(
            format!("{key}.rate_limit_burst"),
            format!(
                "set without rate_limit_rps, which {noun} {} {verb} not set either",
                unlimited.join(", ")
            ),
        );
    }
}

/// An upstream's `[chains.upstreams.rpc]`: each override by its own rule, then the
/// cross-field rules on the effective values (override, else the chain's value at
/// `chain_key`).
fn check_upstream_rpc(
    chain: &RpcConfig,
    own: &UpstreamRpcOverrides,
    key: &str,
    chain_key: &str,
    p: &mut Problems,
) {
    check_overridable(own, key, p);
    let order = |p: &mut Problems, lo: Side<'_>, hi: Side<'_>| effective_order(p, key, chain_key, lo, hi);
    order(
        p,
        ("request_timeout_ms", chain.request_timeout_ms, own.request_timeout_ms),
        ("deadline_ms", chain.deadline_ms, None),
    );
    order(
        p,
        ("hedge_delay_min_ms", chain.hedge_delay_min_ms, own.hedge_delay_min_ms),
        ("hedge_delay_max_ms", chain.hedge_delay_max_ms, own.hedge_delay_max_ms),
    );
    if own.rate_limit_burst.is_some() && own.rate_limit_rps.or(chain.rate_limit_rps).is_none() {
        p.add(
            format!("{key}.rate_limit_burst"),
            format!("set without rate_limit_rps (neither here nor in {chain_key})"),
        );
    }
}

/// One side of a cross-field rule as an upstream sees it: key, chain value, override.
type Side<'a> = (&'a str, u64, Option<u64>);

/// Checks `lo <= hi` on an upstream's effective values. A violation is reported only if
/// the upstream overrides a side (else the chain's own check reports it), at the key of
/// the overridden side, `hi` when both are.
fn effective_order(p: &mut Problems, key: &str, chain_key: &str, lo: Side<'_>, hi: Side<'_>) {
    let (lo_name, lo_chain, lo_own) = lo;
    let (hi_name, hi_chain, hi_own) = hi;
    let (lo_value, hi_value) = (lo_own.unwrap_or(lo_chain), hi_own.unwrap_or(hi_chain));
    if lo_value <= hi_value {
        return;
    }
    let of_chain = |own: Option<u64>| if own.is_some() { String::new() } else { format!(" of {chain_key}") };
    if hi_own.is_some() {
        p.add(
            format!("{key}.{hi_name}"),
            format!("must be >= {lo_name}{} ({hi_value} < {lo_value})", of_chain(lo_own)),
        );
    } else if lo_own.is_some() {
        p.add(
            format!("{key}.{lo_name}"),
            format!("must be <= {hi_name}{} ({lo_value} > {hi_value})", of_chain(hi_own)),
        );
    }
}

fn check_upstream_url(upstream: &UpstreamConfig, key: &str, p: &mut Problems) {
    // Messages must not include the URL: it may carry an API key.
    match Url::parse(upstream.url.expose_secret()) {
        Err(err) => p.add(key, err.to_string()),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => p.add(key, "scheme must be http or https"),
        Ok(url) if url.host_str().is_none_or(str::is_empty) => p.add(key, "URL must have a host"),
        Ok(_) => {}
    }
}

/// Whether `name` matches `^[a-z0-9][a-z0-9_-]{0,63}$`.
fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let allowed = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-';
    matches!(bytes.first(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.len() <= 64
        && bytes.iter().all(allowed)
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(key, message));
    }

    /// `min..=max`; NaN (TOML has `nan`) is outside every range.
    fn range<T: PartialOrd + Display + Copy>(&mut self, key: &str, value: T, min: T, max: T) {
        if !(min..=max).contains(&value) {
            self.add(key, format!("must be between {min} and {max}, got {value}"));
        }
    }

    fn at_least<T: PartialOrd + Display>(&mut self, key: &str, value: T, min: T) {
        if value < min {
            self.add(key, format!("must be at least {min}, got {value}"));
        }
    }

    /// [`Self::at_least`] for an optional key, when set.
    fn opt_at_least<T: PartialOrd + Display>(&mut self, key: &str, value: Option<T>, min: T) {
        if let Some(value) = value {
            self.at_least(key, value, min);
        }
    }

    /// Checks the name rule and uniqueness. `seen` maps normalized names to the key of
    /// their first use. `-` and `_` count as the same character because environment
    /// overrides address elements by name and cannot tell them apart.
    fn name(&mut self, key: &str, name: &str, what: &str, seen: &mut BTreeMap<String, String>) {
        if !is_valid_name(name) {
            self.add(key, format!("invalid {what} name {name:?}: must match ^[a-z0-9][a-z0-9_-]{{0,63}}$"));
            return;
        }
        let normalized = name.replace('-', "_");
        match seen.get(&normalized) {
            Some(first) => self.add(key, format!("duplicate {what} name {name:?} (already used by {first})")),
            None => {
                seen.insert(normalized, key.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule() {
        for ok in ["a", "0", "local", "anvil-a", "main_net", "x1-2_3", &"a".repeat(64)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "a b", "a.b", "é", &"a".repeat(65)] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
