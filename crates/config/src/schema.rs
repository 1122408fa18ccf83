//! The configuration types, their defaults and typed accessors.

use std::fmt;
use std::net::{AddrParseError, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use crate::redact::{redact_database_url, redact_url};

const DEFAULT_MAX_CONNECTIONS: u32 = 10;
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
const DEFAULT_MAX_BATCH_SIZE: usize = 100;
const DEFAULT_MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_DRAIN_DELAY_MS: u64 = 1000;
const DEFAULT_START_BLOCK: u64 = 0;
const DEFAULT_BATCH_SIZE: u64 = 100;
const DEFAULT_FETCH_CONCURRENCY: usize = 8;
const DEFAULT_POLL_INTERVAL_MS: u64 = 1000;
const DEFAULT_USE_BLOCK_RECEIPTS: bool = true;
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_MAX_ATTEMPTS: u32 = 4;
const DEFAULT_BACKOFF_MIN_MS: u64 = 50;
const DEFAULT_BACKOFF_MAX_MS: u64 = 2000;
const DEFAULT_PROBE_INTERVAL_MS: u64 = 2000;

/// The whole chainmux configuration file.
///
/// `Serialize` writes URLs in redacted form (see [`DatabaseUrl`], [`UpstreamUrl`]), so
/// serializing a `Config` is always safe to show to humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[database]`: the Postgres database the indexer writes and the gateway reads.
    pub database: DatabaseConfig,
    /// `[gateway]`: the HTTP/JSON-RPC listener. Optional; all keys have defaults.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// `[[chains]]`: the chains to index and serve. At least one is required.
    // Defaulted so that a missing list is reported by validation together with the other
    // problems instead of as a lone "missing field" error.
    #[serde(default)]
    pub chains: Vec<ChainConfig>,
}

impl Config {
    /// The chain with the given name, if configured.
    pub fn chain(&self, name: &str) -> Option<&ChainConfig> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// The resolved configuration as TOML, with secrets redacted: the database password
    /// becomes `***`, upstream URLs keep only scheme, user, host and port (see
    /// [`redact_url`]). Meant for `chainmux check-config` and startup logs.
    pub fn redacted(&self) -> String {
        match toml::to_string(self) {
            Ok(text) => text,
            // Only reachable for hand-built configs holding integers beyond TOML's i64
            // range; a config read from TOML always fits. A comment keeps the output TOML.
            Err(err) => format!("# cannot render configuration: {err}\n"),
        }
    }
}

/// `[database]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL, `postgres://` or `postgresql://`. Required. Usually `"${DATABASE_URL}"`.
    pub url: DatabaseUrl,
    /// Connection pool size. Default 10, range 1..=1000.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

/// `[gateway]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Listen address; must parse as a socket address. Default `127.0.0.1:8080`.
    pub listen: String,
    /// Maximum request body size in bytes. Default 1 MiB, range 1..=67108864 (64 MiB).
    pub max_body_bytes: usize,
    /// Maximum number of elements in a JSON-RPC batch. Default 100, range 1..=10000.
    pub max_batch_size: usize,
    /// Maximum `?limit=` of REST list endpoints. Default 1000, range 1..=10000.
    pub max_page_size: usize,
    /// After SIGTERM, `/ready` answers 503 for this long before the listener closes, so
    /// load balancers stop routing to us first. Default 1000.
    pub drain_delay_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            drain_delay_ms: DEFAULT_DRAIN_DELAY_MS,
        }
    }
}

impl GatewayConfig {
    /// [`Self::listen`] parsed. Cannot fail for a validated config.
    pub fn listen_addr(&self) -> Result<SocketAddr, AddrParseError> {
        self.listen.parse()
    }

    /// [`Self::drain_delay_ms`] as a duration.
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms)
    }
}

/// The family of a chain, which selects the adapter; one vocabulary with the rest of chainmux.
pub use chainmux_core::ChainKind;

/// One `[[chains]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Unique chain name, `^[a-z0-9][a-z0-9_-]{0,63}$`. Required.
    pub name: String,
    /// Chain family. Required; only `"evm"` exists.
    pub kind: ChainKind,
    /// Chain id the upstreams must report. Required.
    pub chain_id: u64,
    /// First block to index. Default 0.
    #[serde(default = "default_start_block")]
    pub start_block: u64,
    /// Blocks per indexer batch. Default 100, range 1..=10000.
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    /// Concurrent block fetches. Default 8, range 1..=256.
    #[serde(default = "default_fetch_concurrency")]
    pub fetch_concurrency: usize,
    /// Head polling interval in milliseconds. Default 1000, at least 10.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Fetch receipts with `eth_getBlockReceipts` (else `eth_getLogs`). Default true.
    #[serde(default = "default_use_block_receipts")]
    pub use_block_receipts: bool,
    /// `[chains.rpc]`: upstream client tuning. Optional.
    #[serde(default)]
    pub rpc: RpcConfig,
    /// `[[chains.upstreams]]`: RPC endpoints. At least one is required.
    // Defaulted so an absent list is reported by validation along with other problems.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
}

impl ChainConfig {
    /// [`Self::poll_interval_ms`] as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }
}

/// `[chains.rpc]` section: how the upstream client behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Per-request timeout in milliseconds. Default 10000, at least 1.
    pub request_timeout_ms: u64,
    /// Attempts per request, including the first. Default 4, range 1..=20.
    pub max_attempts: u32,
    /// Smallest retry backoff in milliseconds. Default 50.
    pub backoff_min_ms: u64,
    /// Largest retry backoff in milliseconds; at least `backoff_min_ms`. Default 2000.
    pub backoff_max_ms: u64,
    /// Health probe interval in milliseconds. Default 2000, at least 50.
    pub probe_interval_ms: u64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_min_ms: DEFAULT_BACKOFF_MIN_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            probe_interval_ms: DEFAULT_PROBE_INTERVAL_MS,
        }
    }
}

impl RpcConfig {
    /// [`Self::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// [`Self::backoff_min_ms`] as a duration.
    pub fn backoff_min(&self) -> Duration {
        Duration::from_millis(self.backoff_min_ms)
    }

    /// [`Self::backoff_max_ms`] as a duration.
    pub fn backoff_max(&self) -> Duration {
        Duration::from_millis(self.backoff_max_ms)
    }

    /// [`Self::probe_interval_ms`] as a duration.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms)
    }
}

/// One `[[chains.upstreams]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name unique within the chain, same rule as chain names. Required.
    pub name: String,
    /// `http`/`https` endpoint URL. Required.
    pub url: UpstreamUrl,
}

/// A Postgres connection URL, which usually embeds a password.
///
/// `Debug`, `Display` and `Serialize` all show [`redact_database_url`]'s form, so the
/// password cannot leak through logs or `check-config`; use
/// [`expose_secret`](Self::expose_secret) to connect.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The real URL, password included. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_database_url(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

/// An upstream RPC URL. Providers embed API keys in the path, query or userinfo.
///
/// `Debug`, `Display` and `Serialize` all show [`redact_url`]'s form; use
/// [`expose_secret`](Self::expose_secret) to send requests.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct UpstreamUrl(String);

impl UpstreamUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The real URL, API key included. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The URL reduced to scheme, user, host and port (see [`redact_url`]).
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UpstreamUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for UpstreamUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

// serde's `default = "..."` needs functions, not constants.
fn default_max_connections() -> u32 {
    DEFAULT_MAX_CONNECTIONS
}
fn default_start_block() -> u64 {
    DEFAULT_START_BLOCK
}
fn default_batch_size() -> u64 {
    DEFAULT_BATCH_SIZE
}
fn default_fetch_concurrency() -> usize {
    DEFAULT_FETCH_CONCURRENCY
}
fn default_poll_interval_ms() -> u64 {
    DEFAULT_POLL_INTERVAL_MS
}
fn default_use_block_receipts() -> bool {
    DEFAULT_USE_BLOCK_RECEIPTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_secrets() {
        let db = DatabaseUrl::new("postgres://app:hunter2@db:5432/chainmux");
        let up = UpstreamUrl::new("https://eth.example.com/v2/SECRETKEY?token=QQQ");
        for text in [format!("{db:?}"), db.to_string(), format!("{up:?}"), up.to_string()] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains("SECRETKEY"), "{text}");
            assert!(!text.contains("QQQ"), "{text}");
        }
        assert_eq!(format!("{db:?}"), r#"DatabaseUrl("postgres://app:***@db:5432/chainmux")"#);
        assert_eq!(up.to_string(), "https://eth.example.com/***");
        assert_eq!(db.expose_secret(), "postgres://app:hunter2@db:5432/chainmux");
        assert_eq!(up.expose_secret(), "https://eth.example.com/v2/SECRETKEY?token=QQQ");
    }

    #[test]
    fn debug_of_whole_config_hides_secrets() {
        let config = Config {
            database: DatabaseConfig {
                url: DatabaseUrl::new("postgres://app:hunter2@db/chainmux"),
                max_connections: 10,
            },
            gateway: GatewayConfig::default(),
            chains: vec![ChainConfig {
                name: "main".into(),
                kind: ChainKind::Evm,
                chain_id: 1,
                start_block: 0,
                batch_size: 100,
                fetch_concurrency: 8,
                poll_interval_ms: 1000,
                use_block_receipts: true,
                rpc: RpcConfig::default(),
                upstreams: vec![UpstreamConfig {
                    name: "a".into(),
                    url: UpstreamUrl::new("https://x.example/SECRETKEY"),
                }],
            }],
        };
        let text = format!("{config:?} {config:#?}");
        assert!(!text.contains("hunter2") && !text.contains("SECRETKEY"), "{text}");
        assert!(text.contains("db/chainmux") && text.contains("x.example"), "{text}");
    }

    #[test]
    fn durations_and_listen_addr() {
        let rpc = RpcConfig::default();
        assert_eq!(rpc.request_timeout(), Duration::from_secs(10));
        assert_eq!(rpc.backoff_min(), Duration::from_millis(50));
        assert_eq!(rpc.backoff_max(), Duration::from_secs(2));
        assert_eq!(rpc.probe_interval(), Duration::from_secs(2));
        let gateway = GatewayConfig::default();
        assert_eq!(gateway.drain_delay(), Duration::from_secs(1));
        assert_eq!(gateway.listen_addr(), Ok(SocketAddr::from(([127, 0, 0, 1], 8080))));
        assert_eq!(ChainKind::Evm.to_string(), "evm");
    }
}
