//! Semantic checks that serde cannot express: ranges, name rules, uniqueness, URLs.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;

use url::Url;

use crate::{ChainConfig, Config, ConfigError, Problem, Result, RpcConfig, UpstreamConfig};

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

        let gw = &self.gateway;
        if gw.listen.parse::<SocketAddr>().is_err() {
            p.add(
                "gateway.listen",
                format!("invalid socket address {:?} (expected e.g. 127.0.0.1:8080)", gw.listen),
            );
        }
        p.range("gateway.max_body_bytes", gw.max_body_bytes, 1, 64 * 1024 * 1024);
        p.range("gateway.max_batch_size", gw.max_batch_size, 1, 10_000);
        p.range("gateway.max_page_size", gw.max_page_size, 1, 10_000);

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

fn check_chain(chain: &ChainConfig, key: &str, p: &mut Problems) {
    p.range(&format!("{key}.batch_size"), chain.batch_size, 1, 10_000);
    p.range(&format!("{key}.fetch_concurrency"), chain.fetch_concurrency, 1, 256);
    p.at_least(&format!("{key}.poll_interval_ms"), chain.poll_interval_ms, 10);
    check_rpc(&chain.rpc, &format!("{key}.rpc"), p);

    if chain.upstreams.is_empty() {
        p.add(format!("{key}.upstreams"), "at least one upstream is required");
    }
    let mut seen = BTreeMap::new();
    for (i, upstream) in chain.upstreams.iter().enumerate() {
        let key = format!("{key}.upstreams[{i}]");
        p.name(&format!("{key}.name"), &upstream.name, "upstream", &mut seen);
        check_upstream_url(upstream, &format!("{key}.url"), p);
    }
}

fn check_rpc(rpc: &RpcConfig, key: &str, p: &mut Problems) {
    p.at_least(&format!("{key}.request_timeout_ms"), rpc.request_timeout_ms, 1);
    p.range(&format!("{key}.max_attempts"), rpc.max_attempts, 1, 20);
    if rpc.backoff_max_ms < rpc.backoff_min_ms {
        p.add(
            format!("{key}.backoff_max_ms"),
            format!("must be >= backoff_min_ms ({} < {})", rpc.backoff_max_ms, rpc.backoff_min_ms),
        );
    }
    p.at_least(&format!("{key}.probe_interval_ms"), rpc.probe_interval_ms, 50);
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

    fn range<T: PartialOrd + Display>(&mut self, key: &str, value: T, min: T, max: T) {
        if value < min || value > max {
            self.add(key, format!("must be between {min} and {max}, got {value}"));
        }
    }

    fn at_least<T: PartialOrd + Display>(&mut self, key: &str, value: T, min: T) {
        if value < min {
            self.add(key, format!("must be at least {min}, got {value}"));
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
