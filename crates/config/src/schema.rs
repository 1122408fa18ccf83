//! The configuration types, their defaults and typed accessors.
//!
//! A few keys exist for one chain family only (`chain_id`, `use_block_receipts`, `fetch`, `logs_address_chunk`,
//! `logs_topic_only_above` and `[[chains.contracts]]` on EVM; `genesis_hash`, `commitment` and
//! `[[chains.programs]]` on Solana) and a few defaults differ per family. Serde cannot see `kind`
//! while filling a field's default, so family-only keys are `Option`s (present or not, checked against `kind` by
//! validation) and [`fill_kind_defaults`] writes the per-family defaults into the TOML before deserialization.

use std::fmt;
use std::net::{AddrParseError, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::contracts::ContractConfig;
use crate::redact::{redact_database_url, redact_url};

const DEFAULT_MAX_CONNECTIONS: u32 = 10;
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
const DEFAULT_MAX_BATCH_SIZE: usize = 100;
/// Plenty for a dApp (a few `newHeads`/`logs` feeds), few enough that one socket cannot pin much hub work.
const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 100;
const DEFAULT_MAX_PAGE_SIZE: usize = 1000;
const DEFAULT_DRAIN_DELAY_MS: u64 = 1000;
/// Long enough for a just-sent transaction's block to be indexed on a chain with slow blocks, short enough that a
/// client waiting on a stalled index gets its 503 before typical HTTP client timeouts.
const DEFAULT_MIN_BLOCK_WAIT_MS: u64 = 10_000;
/// Each live feed holds a connection and wakes on every indexed batch; a thousand is cheap, many more wants a
/// dedicated fan-out.
const DEFAULT_MAX_SSE_STREAMS: usize = 1000;
/// A WebSocket holds a connection, a writer task and a queue of up to 1,024 messages; ten thousand fit in memory.
const DEFAULT_MAX_WS_CONNECTIONS: usize = 10_000;
/// Anonymous clients (per IP) get a modest budget; JSON-RPC clients (wallets, libraries polling) make more calls
/// per page view than REST readers, hence the larger RPC budget. Keys get more than anonymous clients.
const DEFAULT_ANONYMOUS_RPS: u32 = 50;
const DEFAULT_ANONYMOUS_BURST: u32 = 100;
const DEFAULT_ANONYMOUS_RPC_RPS: u32 = 100;
const DEFAULT_ANONYMOUS_RPC_BURST: u32 = 200;
const DEFAULT_KEY_RPS: u32 = 100;
const DEFAULT_KEY_BURST: u32 = 200;
const DEFAULT_KEY_RPC_RPS: u32 = 200;
const DEFAULT_KEY_RPC_BURST: u32 = 400;
/// A few hundred full blocks or tens of thousands of small answers, in a modest share of a gateway's memory.
const DEFAULT_RPC_CACHE_MAX_ENTRIES: usize = 10_000;
const DEFAULT_RPC_CACHE_MAX_BYTES: usize = 64 << 20;
/// About a block on fast chains: enough to absorb a burst of identical `latest` reads, short enough that a reorg
/// the indexer has not seen yet is not served for long.
const DEFAULT_RPC_CACHE_UNFINALIZED_TTL_MS: u64 = 2000;
const DEFAULT_START_BLOCK: u64 = 0;
const DEFAULT_BATCH_SIZE: u64 = 100;
const DEFAULT_FETCH_CONCURRENCY: usize = 8;
const DEFAULT_POLL_INTERVAL_MS: u64 = 1000;
const DEFAULT_USE_BLOCK_RECEIPTS: bool = true;
/// Providers commonly cap an `eth_getLogs` address filter somewhere between a few hundred and a few thousand
/// addresses; 500 stays under the usual caps while keeping the number of requests small.
const DEFAULT_LOGS_ADDRESS_CHUNK: usize = 500;
/// Beyond a few chunks of addresses, one topic-filtered request per range (filtered locally) costs fewer calls
/// than many address-filtered ones.
const DEFAULT_LOGS_TOPIC_ONLY_ABOVE: usize = 2000;
/// Solana fetches one `getBlock` per slot, so a batch of slots costs as many calls as a batch of EVM blocks does
/// with receipts; a smaller batch keeps each write (and the work lost to a failed batch) short.
const DEFAULT_SOLANA_BATCH_SIZE: u64 = 50;
/// About one slot time: a new confirmed slot every ~400 ms.
const DEFAULT_SOLANA_POLL_INTERVAL_MS: u64 = 400;
const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_MAX_ATTEMPTS: u32 = 4;
const DEFAULT_BACKOFF_MIN_MS: u64 = 50;
const DEFAULT_BACKOFF_MAX_MS: u64 = 2000;
const DEFAULT_PROBE_INTERVAL_MS: u64 = 2000;
const DEFAULT_DEADLINE_MS: u64 = 30_000;
const DEFAULT_MAX_LAG_BLOCKS: u64 = 10;
const DEFAULT_HEDGE: bool = true;
const DEFAULT_HEDGE_QUANTILE: f64 = 0.9;
const DEFAULT_HEDGE_DELAY_MIN_MS: u64 = 20;
const DEFAULT_HEDGE_DELAY_MAX_MS: u64 = 2000;
const DEFAULT_MAX_HEDGES: u32 = 1;
const DEFAULT_BREAKER_FAILURES: u32 = 5;
const DEFAULT_BREAKER_WINDOW_MS: u64 = 30_000;
const DEFAULT_BREAKER_COOLDOWN_MS: u64 = 10_000;
const DEFAULT_BREAKER_SUCCESSES: u32 = 2;
const DEFAULT_RATE_LIMIT_COOLDOWN_MS: u64 = 1000;
const DEFAULT_HYSTERESIS: f64 = 0.2;
const DEFAULT_LEADER_POLL_MS: u64 = 1000;
const DEFAULT_MAX_LIVE_CONNECTIONS_PER_CLIENT: usize = 100;
const DEFAULT_REDIS_TIMEOUT_MS: u64 = 50;
const DEFAULT_PROBE_SHARE: f64 = 0.02;

/// The whole chainmux configuration file.
///
/// `Serialize` writes URLs in redacted form (see [`DatabaseUrl`], [`UpstreamUrl`]), so
/// serializing a `Config` is always safe to show to humans.
// Not `Eq`: [`RpcConfig`] holds floats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// `[telemetry]`: trace export. Optional.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// `[cluster]`: how replicas share the indexing of chains. Optional; all keys have defaults.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// `[redis]`: state shared by gateway replicas (rate limits, response cache). Optional; without a URL every
    /// replica keeps its own.
    #[serde(default)]
    pub redis: RedisConfig,
}

/// `[cluster]` section. Any number of replicas may run the indexer: each chain is written by the one replica holding
/// its PostgreSQL advisory lock, and the others take over when it goes away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This replica's name in `/v1/status` and in the leadership records. Default: the host name and process id
    /// (`HOSTNAME` in a Kubernetes pod is the pod name). 1–64 characters of letters, digits, `.`, `_`, `-`, `:`.
    pub replica_id: Option<String>,
    /// How often a replica that does not lead a chain tries to take its lock, and how often the leader checks
    /// that its lock session is alive. A chain is taken over within about this long after its leader's
    /// database session ends. Default 1000, range 50..=60000.
    pub leader_poll_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { replica_id: None, leader_poll_ms: DEFAULT_LEADER_POLL_MS }
    }
}

impl ClusterConfig {
    /// [`Self::leader_poll_ms`] as a duration.
    pub fn leader_poll(&self) -> Duration {
        Duration::from_millis(self.leader_poll_ms)
    }
}

/// `[redis]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL, usually `"${REDIS_URL}"`. Unset: every replica keeps its own limits and
    /// cache. Its password never reaches logs or `check-config`.
    pub url: Option<DatabaseUrl>,
    /// Keep per-key and per-IP rate limits in Redis, so N replicas together allow one quota, not N. Default true
    /// (when `url` is set).
    pub rate_limits: bool,
    /// Share JSON-RPC answers about finalized blocks through Redis, besides each replica's own cache. Default
    /// false.
    pub rpc_cache: bool,
    /// Longest a request waits for Redis before it falls back to the replica's own state. Default 50, range
    /// 1..=5000.
    pub timeout_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: None, rate_limits: true, rpc_cache: false, timeout_ms: DEFAULT_REDIS_TIMEOUT_MS }
    }
}

impl RedisConfig {
    /// [`Self::timeout_ms`] as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// `[telemetry]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/HTTP collector base URL (e.g. `http://127.0.0.1:4318`; spans go to `/v1/traces`). Only used by a
    /// binary built with the `otlp` feature. Collector credentials go in `OTEL_EXPORTER_OTLP_HEADERS`, not here.
    pub otlp_endpoint: Option<String>,
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
    /// Most `eth_subscribe` subscriptions open at once on one WebSocket of `/rpc/{chain}`. Default 100, range
    /// 1..=10000.
    pub max_subscriptions_per_connection: usize,
    /// Maximum `?limit=` of REST list endpoints. Default 1000, range 1..=10000.
    pub max_page_size: usize,
    /// After SIGTERM, `/ready` answers 503 for this long before the listener closes, so
    /// load balancers stop routing to us first. Default 1000.
    pub drain_delay_ms: u64,
    /// Longest a REST request with `min_block=N` waits for the index to reach block `N` before it answers 503
    /// `not_indexed_yet`. Default 10000; at most 60000.
    pub min_block_wait_ms: u64,
    /// Most live feeds (`/v1/chains/{chain}/…/stream`, Server-Sent Events) open at once; more get 503. Default 1000,
    /// range 1..=100000.
    pub max_sse_streams: usize,
    /// Most WebSocket connections (`GET /rpc/{chain}`) open at once; more upgrades get 503. Default 10000, range
    /// 1..=1000000.
    pub max_ws_connections: usize,
    /// Most WebSockets and live feeds together that one client (an API key, or an IP sending no key) keeps open;
    /// more get 429. Default 100, range 1..=100000.
    pub max_live_connections_per_client: usize,
    /// Refuse requests without an API key (401); `/health`, `/ready` and `/metrics` stay open. Default false.
    pub require_api_key: bool,
    /// Requests per second of each client IP sending no key, on every route but `/rpc`; 0 = no limit. Default 50.
    pub anonymous_rps: u32,
    /// Burst of [`Self::anonymous_rps`]. Default 100, at least 1.
    pub anonymous_burst: u32,
    /// Like [`Self::anonymous_rps`] for `/rpc/{chain}`, a separate budget. Default 100; 0 = no limit.
    pub anonymous_rpc_rps: u32,
    /// Burst of [`Self::anonymous_rpc_rps`]. Default 200, at least 1.
    pub anonymous_rpc_burst: u32,
    /// REST requests per second of a key created without `--rps`; 0 = no limit. Default 100.
    pub default_key_rps: u32,
    /// Burst of a key created without `--burst` (and without `--rps`). Default 200, at least 1.
    pub default_key_burst: u32,
    /// `/rpc` requests per second of a key created without `--rpc-rps`; 0 = no limit. Default 200.
    pub default_key_rpc_rps: u32,
    /// `/rpc` burst of a key created without `--rpc-burst` (and without `--rpc-rps`). Default 400, at least 1.
    pub default_key_rpc_burst: u32,
    /// Origins browsers may call the gateway from: `["*"]` for any, or exact origins such as
    /// `"https://app.example"`. Default empty: no CORS headers.
    pub cors_allowed_origins: Vec<String>,
    /// Take the client IP for anonymous limits from the last `X-Forwarded-For` entry (the one the reverse proxy
    /// appended) instead of the connection's peer. Only enable behind a proxy that sets it. Default false.
    pub trust_forwarded_for: bool,
    /// Most answers the JSON-RPC response cache keeps; 0 disables it. Default 10000, at most 10000000.
    pub rpc_cache_max_entries: usize,
    /// Most bytes (keys and answers) the JSON-RPC response cache keeps. Default 67108864 (64 MiB), range
    /// 0..=68719476736 (64 GiB).
    pub rpc_cache_max_bytes: usize,
    /// How long an answer about a block above the finalized head is kept (it is also evicted when the indexer
    /// reverts that block); 0 keeps none. Default 2000, at most 3600000.
    pub rpc_cache_unfinalized_ttl_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch_size: DEFAULT_MAX_BATCH_SIZE,
            max_subscriptions_per_connection: DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
            max_page_size: DEFAULT_MAX_PAGE_SIZE,
            drain_delay_ms: DEFAULT_DRAIN_DELAY_MS,
            min_block_wait_ms: DEFAULT_MIN_BLOCK_WAIT_MS,
            max_sse_streams: DEFAULT_MAX_SSE_STREAMS,
            max_ws_connections: DEFAULT_MAX_WS_CONNECTIONS,
            max_live_connections_per_client: DEFAULT_MAX_LIVE_CONNECTIONS_PER_CLIENT,
            require_api_key: false,
            anonymous_rps: DEFAULT_ANONYMOUS_RPS,
            anonymous_burst: DEFAULT_ANONYMOUS_BURST,
            anonymous_rpc_rps: DEFAULT_ANONYMOUS_RPC_RPS,
            anonymous_rpc_burst: DEFAULT_ANONYMOUS_RPC_BURST,
            default_key_rps: DEFAULT_KEY_RPS,
            default_key_burst: DEFAULT_KEY_BURST,
            default_key_rpc_rps: DEFAULT_KEY_RPC_RPS,
            default_key_rpc_burst: DEFAULT_KEY_RPC_BURST,
            cors_allowed_origins: Vec::new(),
            trust_forwarded_for: false,
            rpc_cache_max_entries: DEFAULT_RPC_CACHE_MAX_ENTRIES,
            rpc_cache_max_bytes: DEFAULT_RPC_CACHE_MAX_BYTES,
            rpc_cache_unfinalized_ttl_ms: DEFAULT_RPC_CACHE_UNFINALIZED_TTL_MS,
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

    /// [`Self::rpc_cache_unfinalized_ttl_ms`] as a duration.
    pub fn rpc_cache_unfinalized_ttl(&self) -> Duration {
        Duration::from_millis(self.rpc_cache_unfinalized_ttl_ms)
    }

    /// [`Self::min_block_wait_ms`] as a duration.
    pub fn min_block_wait(&self) -> Duration {
        Duration::from_millis(self.min_block_wait_ms)
    }
}

/// The family of a chain, which selects the adapter; one vocabulary with the rest of chainmux.
pub use chainmux_core::ChainKind;

/// `chains[].fetch`: what the adapter fetches for each batch of blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchMode {
    /// Blocks with transactions and receipts: transactions, logs, native and token transfers.
    #[default]
    Full,
    /// Block headers and logs from `eth_getLogs` over ranges: logs and token transfers only.
    Logs,
}

/// `chains[].commitment` (Solana only): the commitment level whose head the indexer follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Commitment {
    /// Voted on by a supermajority of the cluster: about a second behind the tip, and rolled back only in
    /// rare forks, which the indexer then handles like an EVM reorg.
    #[default]
    Confirmed,
    /// Rooted: never rolled back, but some 30 slots (~13 s) behind `confirmed`.
    Finalized,
}

impl Commitment {
    /// The name used in configs and in Solana JSON-RPC `commitment` parameters, e.g. `"confirmed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Finalized => "finalized",
        }
    }
}

impl fmt::Display for Commitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[chains]]` entry.
///
/// Keys of one chain family are `Option`s so that validation can reject them on the other family; the
/// accessors ([`Self::commitment`], [`Self::use_block_receipts`], [`Self::fetch`]) give their effective values.
/// Counts of blocks (`start_block`, `batch_size`, `max_reorg_depth`, `finality_confirmations`,
/// `rpc.max_lag_blocks`) are counts of slots on Solana, skipped slots included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Unique chain name, `^[a-z0-9][a-z0-9_-]{0,63}$`. Required.
    pub name: String,
    /// Chain family: `"evm"` or `"solana"`. Required.
    pub kind: ChainKind,
    /// EVM: the chain id every upstream must report (`eth_chainId`). Required on EVM chains; rejected on Solana
    /// chains, which are identified by [`Self::genesis_hash`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// Solana: the cluster's genesis hash (base58). When set, every upstream's `getGenesisHash` must equal it at
    /// start-up; when unset, the upstreams must agree with each other. Rejected on EVM chains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<Base58Id>,
    /// Solana: the commitment level the indexer follows. Default `"confirmed"` (filled in by [`load`](crate::load),
    /// so `Some` on every loaded Solana chain); rejected on EVM chains. Read it with [`Self::commitment`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<Commitment>,
    /// First block (slot on Solana) to index. Default 0.
    #[serde(default = "default_start_block")]
    pub start_block: u64,
    /// Blocks (slots) per indexer batch. Default 100 on EVM, 50 on Solana; range 1..=10000.
    #[serde(default = "default_batch_size")]
    pub batch_size: u64,
    /// Concurrent block fetches. Default 8, range 1..=256.
    #[serde(default = "default_fetch_concurrency")]
    pub fetch_concurrency: usize,
    /// Head polling interval in milliseconds. Default 1000 on EVM, 400 (one slot) on Solana; at least 10.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// EVM: fetch receipts with `eth_getBlockReceipts` (else `eth_getLogs`). Default true (filled in by
    /// [`load`](crate::load)); rejected on Solana chains. Read it with [`Self::use_block_receipts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_block_receipts: Option<bool>,
    /// EVM: what is fetched: `"full"` blocks with transactions and receipts, or `"logs"`: headers and
    /// `eth_getLogs` over block ranges (no transactions, so no native transfers). Default `"full"` (filled in by
    /// [`load`](crate::load)); rejected on Solana chains. Read it with [`Self::fetch`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchMode>,
    /// EVM: most addresses in one `eth_getLogs` address filter when contract history is fetched with
    /// `eth_getLogs`; more addresses are split into several requests. Default 500 (filled in by
    /// [`load`](crate::load)), range 1..=10000; rejected on Solana chains. Read it with
    /// [`Self::logs_address_chunk`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_address_chunk: Option<usize>,
    /// EVM: above this many addresses (e.g. a factory's children), contract history is fetched by event topic
    /// only, without an address filter, and the logs are filtered locally. Default 2000 (filled in by
    /// [`load`](crate::load)), at least 1; rejected on Solana chains. Read it with
    /// [`Self::logs_topic_only_above`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs_topic_only_above: Option<usize>,
    /// Deepest reorg (in blocks, slots on Solana) rolled back automatically; a deeper one stops the chain's
    /// indexer. Default 128.
    #[serde(default = "default_max_reorg_depth")]
    pub max_reorg_depth: u64,
    /// Blocks (slots) this deep below the head count as finalized, whatever the upstreams' `finalized` tag (or
    /// commitment) says. Unset: the tag where upstreams have it, else the chain's usual depth (64 for unknown chains).
    #[serde(default)]
    pub finality_confirmations: Option<u64>,
    /// `GET /v1/chains/{chain}/health` answers 503 when the indexer is more than this many blocks (slots) behind
    /// the chain head. Default 10 on EVM, 150 (about a minute) on Solana. Read it with
    /// [`Self::health_max_lag_blocks`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_max_lag_blocks: Option<u64>,
    /// ... or when the chain head has been ahead of the indexed head for longer than this many seconds (an
    /// indexer that stopped, whatever the block count). Default 60, at least 1.
    #[serde(default = "default_health_max_lag_seconds")]
    pub health_max_lag_seconds: u64,
    /// `[chains.rpc]`: upstream client tuning, and the defaults of every upstream's
    /// `[chains.upstreams.rpc]` overrides. Optional.
    #[serde(default)]
    pub rpc: RpcConfig,
    /// `[[chains.upstreams]]`: RPC endpoints. At least one is required.
    // Defaulted so an absent list is reported by validation along with other problems.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// `[[chains.programs]]` (Solana): programs whose instructions and log messages are indexed. Optional;
    /// rejected on EVM chains. Transfers are indexed whether or not their programs are listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<ProgramConfig>,
    /// `[[chains.contracts]]` (EVM): contracts whose events are decoded with their ABI. Optional; rejected on
    /// Solana chains. [`load`](crate::load) reads their ABI files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contracts: Vec<ContractConfig>,
    /// `[chains.methods]`: which JSON-RPC methods the gateway's `/rpc/{chain}` forwards. Optional.
    #[serde(default, skip_serializing_if = "MethodsConfig::is_default")]
    pub methods: MethodsConfig,
}

impl ChainConfig {
    /// [`Self::poll_interval_ms`] as a duration.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// The effective `commitment` of a Solana chain: the configured one, else `confirmed`. Meaningless on EVM.
    pub fn commitment(&self) -> Commitment {
        self.commitment.unwrap_or_default()
    }

    /// The effective `use_block_receipts` of an EVM chain: the configured value, else true. Meaningless on Solana.
    pub fn use_block_receipts(&self) -> bool {
        self.use_block_receipts.unwrap_or(DEFAULT_USE_BLOCK_RECEIPTS)
    }

    /// The effective `fetch` mode of an EVM chain: the configured one, else `full`. Meaningless on Solana.
    pub fn fetch(&self) -> FetchMode {
        self.fetch.unwrap_or_default()
    }

    /// The effective `logs_address_chunk` of an EVM chain: the configured value, else 500. Meaningless on
    /// Solana.
    pub fn logs_address_chunk(&self) -> usize {
        self.logs_address_chunk.unwrap_or(DEFAULT_LOGS_ADDRESS_CHUNK)
    }

    /// The effective `logs_topic_only_above` of an EVM chain: the configured value, else 2000. Meaningless on
    /// Solana.
    pub fn logs_topic_only_above(&self) -> usize {
        self.logs_topic_only_above.unwrap_or(DEFAULT_LOGS_TOPIC_ONLY_ABOVE)
    }

    /// The effective `health_max_lag_blocks`: the configured value, else 10 on EVM and 150 on Solana.
    pub fn health_max_lag_blocks(&self) -> u64 {
        self.health_max_lag_blocks.unwrap_or(match self.kind {
            ChainKind::Evm => 10,
            ChainKind::Solana => 150,
        })
    }

    /// The contract entry with the given name, if configured.
    pub fn contract(&self, name: &str) -> Option<&ContractConfig> {
        self.contracts.iter().find(|c| c.name == name)
    }

    /// The program ids of [`Self::programs`], in configured order.
    pub fn program_ids(&self) -> Vec<[u8; 32]> {
        self.programs.iter().map(|p| p.id.to_bytes()).collect()
    }

    /// The effective per-upstream policy: the upstream's overrides
    /// ([`UpstreamConfig::rpc`]) on top of the chain's [`RpcConfig`]. `upstream` is
    /// normally one of [`Self::upstreams`]; nothing here depends on that.
    pub fn upstream_policy(&self, upstream: &UpstreamConfig) -> UpstreamPolicy {
        let chain = &self.rpc;
        let own = &upstream.rpc;
        let ms = Duration::from_millis;
        let rate_limit_rps = own.rate_limit_rps.or(chain.rate_limit_rps);
        UpstreamPolicy {
            request_timeout: ms(own.request_timeout_ms.unwrap_or(chain.request_timeout_ms)),
            max_lag_blocks: own.max_lag_blocks.unwrap_or(chain.max_lag_blocks),
            hedge_delay: own.hedge_delay_ms.or(chain.hedge_delay_ms).map(ms),
            hedge_quantile: own.hedge_quantile.unwrap_or(chain.hedge_quantile),
            hedge_delay_min: ms(own.hedge_delay_min_ms.unwrap_or(chain.hedge_delay_min_ms)),
            hedge_delay_max: ms(own.hedge_delay_max_ms.unwrap_or(chain.hedge_delay_max_ms)),
            breaker_failures: own.breaker_failures.unwrap_or(chain.breaker_failures),
            breaker_window: ms(own.breaker_window_ms.unwrap_or(chain.breaker_window_ms)),
            breaker_cooldown: ms(own.breaker_cooldown_ms.unwrap_or(chain.breaker_cooldown_ms)),
            breaker_successes: own.breaker_successes.unwrap_or(chain.breaker_successes),
            rate_limit_rps,
            // Unset burst means "same as rps"; resolved here so callers need no rule.
            rate_limit_burst: rate_limit_rps
                .map(|rps| own.rate_limit_burst.or(chain.rate_limit_burst).unwrap_or(rps)),
            rate_limit_cooldown: ms(own.rate_limit_cooldown_ms.unwrap_or(chain.rate_limit_cooldown_ms)),
        }
    }
}

/// `[chains.methods]`: the JSON-RPC methods the gateway forwards on a chain. Each entry is a pattern: an exact
/// method name (letters, digits, `_`) or a prefix ending in `*` (`debug_*`; a lone `*` matches everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodsConfig {
    /// When non-empty, only matching methods are forwarded. Default empty (every method not denied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Methods never forwarded, whatever `allow` says. Left out: the family's default, on EVM
    /// `["admin_*", "debug_*", "personal_*", "miner_*", "engine_*"]`, on Solana none; `deny = []` denies nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
}

impl MethodsConfig {
    /// Whether no key is set (the section may be left out).
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

/// One `[[chains.programs]]` entry of a Solana chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    /// Name unique within the chain, same rule as chain names, e.g. `"spl-token"`. Required. Used in logs and to
    /// address the entry in environment overrides.
    pub name: String,
    /// The program id (base58 public key). Required; unique within the chain.
    pub id: Base58Id,
}

/// Keys of [`RpcConfig`] that configure a chain's pool as a whole, so that
/// [`UpstreamRpcOverrides`] does not have them. Every other key is overridable.
pub(crate) const CALL_LEVEL_RPC_KEYS: &[&str] = &[
    "max_attempts",
    "backoff_min_ms",
    "backoff_max_ms",
    "probe_interval_ms",
    "deadline_ms",
    "hedge",
    "max_hedges",
    "hysteresis",
    "probe_share",
];

/// `[chains.rpc]` section: how the upstream pool of a chain behaves.
///
/// Call-level keys (`deadline_ms`, `max_attempts`, `backoff_*`, `probe_interval_ms`,
/// `hedge`, `max_hedges`, `hysteresis`, `probe_share`) apply to the chain's pool as a
/// whole. The others are defaults for each upstream, which its
/// `[chains.upstreams.rpc]` table ([`UpstreamRpcOverrides`]) may override; use
/// [`ChainConfig::upstream_policy`] for an upstream's effective values.
///
/// Float keys accept TOML integers too (`hysteresis = 0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcConfig {
    /// Per-request timeout in milliseconds: one attempt on one upstream. Default 10000,
    /// at least 1, at most `deadline_ms`. Overridable per upstream.
    pub request_timeout_ms: u64,
    /// Attempts per request, including the first. Default 4, range 1..=20.
    pub max_attempts: u32,
    /// Smallest retry backoff in milliseconds. Default 50.
    pub backoff_min_ms: u64,
    /// Largest retry backoff in milliseconds; at least `backoff_min_ms`. Default 2000.
    pub backoff_max_ms: u64,
    /// Health probe interval in milliseconds. Default 2000, at least 50.
    pub probe_interval_ms: u64,
    /// Budget of one whole call across all retries and hedges, in milliseconds.
    /// Default 30000, at least `request_timeout_ms` (of every upstream).
    pub deadline_ms: u64,
    /// An upstream whose head is more than this many blocks (slots on Solana) behind the best
    /// upstream head is excluded ("lagging N blocks"). Default 10. Overridable per upstream.
    pub max_lag_blocks: u64,
    /// Hedge idempotent reads: send a copy to another upstream when the first is slow.
    /// Default true.
    pub hedge: bool,
    /// Fixed hedge delay in milliseconds, at least 1. Unset (the default): the delay is the
    /// primary upstream's `hedge_quantile` latency, clamped to
    /// `hedge_delay_min_ms..=hedge_delay_max_ms`. Overridable per upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge_delay_ms: Option<u64>,
    /// Latency quantile of the primary upstream after which a hedge is sent. Default 0.9,
    /// range 0.5..=0.999. Overridable per upstream.
    #[serde(deserialize_with = "float")]
    pub hedge_quantile: f64,
    /// Lower bound of the quantile-based hedge delay in milliseconds. Default 20, at
    /// least 1. Overridable per upstream.
    pub hedge_delay_min_ms: u64,
    /// Upper bound of the quantile-based hedge delay in milliseconds. Default 2000, at
    /// least `hedge_delay_min_ms`. Overridable per upstream.
    pub hedge_delay_max_ms: u64,
    /// Extra concurrent copies of one request. Default 1, range 0..=4 (0 disables hedging
    /// like `hedge = false`).
    pub max_hedges: u32,
    /// Failures within `breaker_window_ms` that open an upstream's circuit. Default 5, at
    /// least 1. Overridable per upstream.
    pub breaker_failures: u32,
    /// Window in which `breaker_failures` are counted, in milliseconds. Default 30000, at
    /// least 1. Overridable per upstream.
    pub breaker_window_ms: u64,
    /// Time after which an open circuit turns half-open, in milliseconds. Default 10000,
    /// at least 1. Overridable per upstream.
    pub breaker_cooldown_ms: u64,
    /// Successes in half-open state that close the circuit again. Default 2, at least 1.
    /// Overridable per upstream.
    pub breaker_successes: u32,
    /// Requests per second allowed to each upstream, at least 1. Unset (the default):
    /// unlimited. Overridable per upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_rps: Option<u32>,
    /// Burst size of the rate limit, at least 1; requires an effective `rate_limit_rps`.
    /// Unset (the default): same as `rate_limit_rps`. Overridable per upstream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst: Option<u32>,
    /// How long an upstream is avoided after an HTTP 429 without `Retry-After`, in
    /// milliseconds. Default 1000, at least 1. Overridable per upstream.
    pub rate_limit_cooldown_ms: u64,
    /// A challenger must score this fraction better than the current primary upstream to
    /// replace it. Default 0.2, range 0.0..=1.0.
    #[serde(deserialize_with = "float")]
    pub hysteresis: f64,
    /// Share of reads sent first to an upstream in half-open state so it can come back.
    /// Default 0.02, range 0.0..=0.5.
    #[serde(deserialize_with = "float")]
    pub probe_share: f64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_min_ms: DEFAULT_BACKOFF_MIN_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            probe_interval_ms: DEFAULT_PROBE_INTERVAL_MS,
            deadline_ms: DEFAULT_DEADLINE_MS,
            max_lag_blocks: DEFAULT_MAX_LAG_BLOCKS,
            hedge: DEFAULT_HEDGE,
            hedge_delay_ms: None,
            hedge_quantile: DEFAULT_HEDGE_QUANTILE,
            hedge_delay_min_ms: DEFAULT_HEDGE_DELAY_MIN_MS,
            hedge_delay_max_ms: DEFAULT_HEDGE_DELAY_MAX_MS,
            max_hedges: DEFAULT_MAX_HEDGES,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_window_ms: DEFAULT_BREAKER_WINDOW_MS,
            breaker_cooldown_ms: DEFAULT_BREAKER_COOLDOWN_MS,
            breaker_successes: DEFAULT_BREAKER_SUCCESSES,
            rate_limit_rps: None,
            rate_limit_burst: None,
            rate_limit_cooldown_ms: DEFAULT_RATE_LIMIT_COOLDOWN_MS,
            hysteresis: DEFAULT_HYSTERESIS,
            probe_share: DEFAULT_PROBE_SHARE,
        }
    }
}

impl RpcConfig {
    /// [`Self::request_timeout_ms`] as a duration. The chain's default; an upstream's
    /// effective timeout is [`UpstreamPolicy::request_timeout`].
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

    /// [`Self::deadline_ms`] as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// One `[[chains.upstreams]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name unique within the chain, same rule as chain names. Required.
    pub name: String,
    /// `http`/`https` endpoint URL. Required.
    pub url: UpstreamUrl,
    /// `[chains.upstreams.rpc]`: this upstream's overrides of the chain's `[chains.rpc]`
    /// defaults. Optional.
    #[serde(default, skip_serializing_if = "UpstreamRpcOverrides::is_empty")]
    pub rpc: UpstreamRpcOverrides,
}

/// `[chains.upstreams.rpc]` table: per-upstream overrides of the chain's [`RpcConfig`].
///
/// Every key is optional; an unset key inherits the chain's value, and each set key
/// follows the same rule as in `[chains.rpc]`. Only per-upstream keys exist here:
/// call-level keys such as `deadline_ms` or `max_attempts` are unknown fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamRpcOverrides {
    /// Overrides [`RpcConfig::request_timeout_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// Overrides [`RpcConfig::max_lag_blocks`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_lag_blocks: Option<u64>,
    /// Overrides [`RpcConfig::hedge_delay_ms`] (a fixed delay; an upstream cannot unset
    /// the chain's fixed delay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge_delay_ms: Option<u64>,
    /// Overrides [`RpcConfig::hedge_quantile`].
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "optional_float")]
    pub hedge_quantile: Option<f64>,
    /// Overrides [`RpcConfig::hedge_delay_min_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge_delay_min_ms: Option<u64>,
    /// Overrides [`RpcConfig::hedge_delay_max_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hedge_delay_max_ms: Option<u64>,
    /// Overrides [`RpcConfig::breaker_failures`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_failures: Option<u32>,
    /// Overrides [`RpcConfig::breaker_window_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_window_ms: Option<u64>,
    /// Overrides [`RpcConfig::breaker_cooldown_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_cooldown_ms: Option<u64>,
    /// Overrides [`RpcConfig::breaker_successes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker_successes: Option<u32>,
    /// Overrides [`RpcConfig::rate_limit_rps`] (an upstream cannot unset the chain's limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_rps: Option<u32>,
    /// Overrides [`RpcConfig::rate_limit_burst`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst: Option<u32>,
    /// Overrides [`RpcConfig::rate_limit_cooldown_ms`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_cooldown_ms: Option<u64>,
}

impl UpstreamRpcOverrides {
    /// Whether no key is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// An upstream's effective settings: its [`UpstreamRpcOverrides`] on top of the chain's
/// [`RpcConfig`], resolved to plain values. Built by [`ChainConfig::upstream_policy`].
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamPolicy {
    /// Timeout of one attempt on this upstream.
    pub request_timeout: Duration,
    /// Excluded when its head is more than this many blocks behind the best upstream head.
    pub max_lag_blocks: u64,
    /// Fixed hedge delay, when configured; `None` means the quantile-based delay below.
    pub hedge_delay: Option<Duration>,
    /// Latency quantile after which a hedge is sent (0.5..=0.999).
    pub hedge_quantile: f64,
    /// Lower bound of the quantile-based hedge delay.
    pub hedge_delay_min: Duration,
    /// Upper bound of the quantile-based hedge delay (>= `hedge_delay_min`).
    pub hedge_delay_max: Duration,
    /// Failures within `breaker_window` that open the circuit (>= 1).
    pub breaker_failures: u32,
    /// Window in which failures are counted.
    pub breaker_window: Duration,
    /// Open → half-open after this long.
    pub breaker_cooldown: Duration,
    /// Successes in half-open state that close the circuit (>= 1).
    pub breaker_successes: u32,
    /// Requests per second; `None` means unlimited.
    pub rate_limit_rps: Option<u32>,
    /// Burst size: the configured one, else `rate_limit_rps`. `None` exactly when
    /// `rate_limit_rps` is `None`.
    pub rate_limit_burst: Option<u32>,
    /// How long the upstream is avoided after a 429 without `Retry-After`.
    pub rate_limit_cooldown: Duration,
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

/// A 32-byte Solana identifier written in base58: a public key (program id) or a hash (genesis hash).
///
/// Parsed when the config is read, so a malformed value is a type error at its key. `Display` and `Serialize`
/// give the base58 form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Base58Id([u8; 32]);

impl Base58Id {
    /// Wraps raw bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The raw 32 bytes, by value.
    pub fn to_bytes(self) -> [u8; 32] {
        self.0
    }
}

impl From<[u8; 32]> for Base58Id {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl From<Base58Id> for [u8; 32] {
    fn from(id: Base58Id) -> Self {
        id.0
    }
}

/// Why a string is not a [`Base58Id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base58IdError {
    /// Not base58 (bitcoin alphabet), e.g. it contains `0`, `O`, `I` or `l`.
    #[error("invalid base58: {0}")]
    Base58(String),
    /// Valid base58 of the wrong length.
    #[error("base58 decodes to {0} bytes, expected 32")]
    Length(usize),
}

impl FromStr for Base58Id {
    type Err = Base58IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = bs58::decode(text).into_vec().map_err(|err| Base58IdError::Base58(err.to_string()))?;
        let len = bytes.len();
        bytes.try_into().map(Self).map_err(|_| Base58IdError::Length(len))
    }
}

impl fmt::Display for Base58Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for Base58Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Base58Id").field(&self.to_string()).finish()
    }
}

impl Serialize for Base58Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Base58Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(Base58IdVisitor)
    }
}

struct Base58IdVisitor;

impl Visitor<'_> for Base58IdVisitor {
    type Value = Base58Id;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base58 string of 32 bytes")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Base58Id, E> {
        text.parse().map_err(|err| E::custom(format!("{err} in {text:?}")))
    }
}

/// A 20-byte EVM address written as `0x` and 40 hex digits, in either case (mixed-case EIP-55 checksums are
/// accepted as written, not verified).
///
/// Parsed when the config is read, so a malformed value is a type error at its key. `Display` and `Serialize`
/// give the lowercase `0x` form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EvmAddress([u8; 20]);

impl EvmAddress {
    /// Wraps raw bytes.
    pub const fn new(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The raw 20 bytes, by value.
    pub fn to_bytes(self) -> [u8; 20] {
        self.0
    }
}

impl From<[u8; 20]> for EvmAddress {
    fn from(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }
}

impl From<EvmAddress> for [u8; 20] {
    fn from(address: EvmAddress) -> Self {
        address.0
    }
}

/// Why a string is not an [`EvmAddress`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvmAddressError {
    /// The text does not start with `0x`.
    #[error("an address must start with 0x")]
    Prefix,
    /// `0x` is followed by the wrong number of characters.
    #[error("an address has 40 hex digits after 0x, got {0}")]
    Length(usize),
    /// A character after `0x` is not a hex digit.
    #[error("invalid hex digit {0:?}")]
    Digit(char),
}

impl FromStr for EvmAddress {
    type Err = EvmAddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.strip_prefix("0x").ok_or(EvmAddressError::Prefix)?;
        if let Some(bad) = digits.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(EvmAddressError::Digit(bad));
        }
        if digits.len() != 40 {
            return Err(EvmAddressError::Length(digits.len()));
        }
        let mut bytes = [0u8; 20];
        for (byte, pair) in bytes.iter_mut().zip(digits.as_bytes().chunks_exact(2)) {
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Self(bytes))
    }
}

/// The value of an ASCII hex digit; the caller has checked that it is one.
fn hex_value(digit: u8) -> u8 {
    char::from(digit).to_digit(16).and_then(|value| u8::try_from(value).ok()).unwrap_or(0)
}

impl fmt::Display for EvmAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for EvmAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EvmAddress").field(&self.to_string()).finish()
    }
}

impl Serialize for EvmAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EvmAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(EvmAddressVisitor)
    }
}

struct EvmAddressVisitor;

impl Visitor<'_> for EvmAddressVisitor {
    type Value = EvmAddress;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address string (0x and 40 hex digits)")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<EvmAddress, E> {
        text.parse().map_err(|err| E::custom(format!("{err} in {text:?}")))
    }
}

/// Writes the defaults that depend on a chain's `kind` into each `[[chains]]` table that lacks the key: on
/// Solana `batch_size`, `poll_interval_ms` and `commitment`, on EVM `use_block_receipts`, `fetch`,
/// `logs_address_chunk` and `logs_topic_only_above`. Runs on
/// the TOML after overrides and interpolation, so an override or a `${VAR}` counts as set, and the resolved
/// config (and [`Config::redacted`]) shows the effective values. Tables without a valid `kind` are left for
/// deserialization to report.
pub(crate) fn fill_kind_defaults(root: &mut toml::Table) {
    let Some(toml::Value::Array(chains)) = root.get_mut("chains") else { return };
    for chain in chains.iter_mut().filter_map(toml::Value::as_table_mut) {
        let kind = chain.get("kind").and_then(toml::Value::as_str);
        let defaults: Vec<(&str, toml::Value)> = if kind == Some(ChainKind::Solana.as_str()) {
            vec![
                ("batch_size", int_value(DEFAULT_SOLANA_BATCH_SIZE)),
                ("poll_interval_ms", int_value(DEFAULT_SOLANA_POLL_INTERVAL_MS)),
                ("commitment", Commitment::default().as_str().into()),
            ]
        } else if kind == Some(ChainKind::Evm.as_str()) {
            vec![
                ("use_block_receipts", DEFAULT_USE_BLOCK_RECEIPTS.into()),
                ("fetch", "full".into()),
                ("logs_address_chunk", int_value(DEFAULT_LOGS_ADDRESS_CHUNK as u64)),
                ("logs_topic_only_above", int_value(DEFAULT_LOGS_TOPIC_ONLY_ABOVE as u64)),
            ]
        } else {
            continue;
        };
        for (key, value) in defaults {
            chain.entry(key).or_insert(value);
        }
    }
}

/// A small constant as a TOML integer (TOML integers are `i64`).
fn int_value(value: u64) -> toml::Value {
    toml::Value::Integer(i64::try_from(value).unwrap_or(i64::MAX))
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
fn default_max_reorg_depth() -> u64 {
    128
}
fn default_health_max_lag_seconds() -> u64 {
    60
}

/// A float that may be written as a TOML integer (`hysteresis = 0`). The explicit
/// `deserialize_any` makes that independent of how the deserializer treats
/// `deserialize_f64`; any number converts, anything else is a type error.
fn float<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    deserializer.deserialize_any(FloatVisitor)
}

/// [`float`] for an optional key.
fn optional_float<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    float(deserializer).map(Some)
}

struct FloatVisitor;

impl Visitor<'_> for FloatVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<f64, E> {
        Ok(value)
    }

    // Exact for every integer up to 2^53, far beyond any meaningful value of these keys.

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<f64, E> {
        Ok(value as f64)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<f64, E> {
        Ok(value as f64)
    }
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
            telemetry: TelemetryConfig::default(),
            cluster: ClusterConfig::default(),
            redis: RedisConfig::default(),
            chains: vec![ChainConfig {
                name: "main".into(),
                kind: ChainKind::Evm,
                chain_id: Some(1),
                genesis_hash: None,
                commitment: None,
                start_block: 0,
                batch_size: 100,
                fetch_concurrency: 8,
                poll_interval_ms: 1000,
                use_block_receipts: Some(true),
                fetch: Some(FetchMode::Full),
                logs_address_chunk: Some(500),
                logs_topic_only_above: Some(2000),
                max_reorg_depth: 128,
                finality_confirmations: None,
                health_max_lag_blocks: None,
                health_max_lag_seconds: 60,
                rpc: RpcConfig::default(),
                upstreams: vec![UpstreamConfig {
                    name: "a".into(),
                    url: UpstreamUrl::new("https://x.example/SECRETKEY"),
                    rpc: UpstreamRpcOverrides::default(),
                }],
                programs: Vec::new(),
                contracts: Vec::new(),
                methods: MethodsConfig::default(),
            }],
        };
        let text = format!("{config:?} {config:#?}");
        assert!(!text.contains("hunter2") && !text.contains("SECRETKEY"), "{text}");
        assert!(text.contains("db/chainmux") && text.contains("x.example"), "{text}");
    }

    #[test]
    fn base58_ids_round_trip_and_reject_bad_input() {
        let system: Base58Id = "11111111111111111111111111111111".parse().expect("system program id");
        assert_eq!(system.to_bytes(), [0; 32]);
        let mut bytes = [0u8; 32];
        bytes[31] = 1;
        // Leading zero bytes are leading `1`s; the last byte 1 is the digit `2`.
        assert_eq!(Base58Id::new(bytes).to_string(), format!("{}2", "1".repeat(31)));
        let genesis = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d";
        let id: Base58Id = genesis.parse().expect("mainnet genesis hash");
        assert_eq!(id.to_string(), genesis);
        assert_eq!(format!("{id:?}"), format!("Base58Id(\"{genesis}\")"));
        assert_eq!(Base58Id::from(id.to_bytes()), id);
        assert_eq!("".parse::<Base58Id>(), Err(Base58IdError::Length(0)));
        assert_eq!("1".repeat(33).parse::<Base58Id>(), Err(Base58IdError::Length(33)));
        let err = "Il0O".parse::<Base58Id>().expect_err("not base58");
        assert!(matches!(&err, Base58IdError::Base58(m) if m.contains("'I'")), "{err:?}");
    }

    #[test]
    fn kind_defaults_fill_only_missing_keys_of_known_kinds() {
        let mut table: toml::Table = r#"
            [[chains]]
            kind = "solana"
            batch_size = 7
            [[chains]]
            kind = "evm"
            fetch = "logs"
            [[chains]]
            kind = "cosmos"
        "#
        .parse()
        .expect("TOML");
        fill_kind_defaults(&mut table);
        let chains = table["chains"].as_array().expect("array");
        let solana = chains[0].as_table().expect("table");
        assert_eq!(solana["batch_size"].as_integer(), Some(7));
        assert_eq!(solana["poll_interval_ms"].as_integer(), Some(400));
        assert_eq!(solana["commitment"].as_str(), Some("confirmed"));
        assert_eq!(solana.len(), 4, "{solana:?}");
        let evm = chains[1].as_table().expect("table");
        assert_eq!(evm["fetch"].as_str(), Some("logs"));
        assert_eq!(evm["use_block_receipts"].as_bool(), Some(true));
        assert_eq!(evm["logs_address_chunk"].as_integer(), Some(500));
        assert_eq!(evm["logs_topic_only_above"].as_integer(), Some(2000));
        assert_eq!(evm.len(), 5, "{evm:?}");
        assert_eq!(chains[2].as_table().expect("table").len(), 1);
    }

    #[test]
    fn durations_and_listen_addr() {
        let rpc = RpcConfig::default();
        assert_eq!(rpc.request_timeout(), Duration::from_secs(10));
        assert_eq!(rpc.backoff_min(), Duration::from_millis(50));
        assert_eq!(rpc.backoff_max(), Duration::from_secs(2));
        assert_eq!(rpc.probe_interval(), Duration::from_secs(2));
        assert_eq!(rpc.deadline(), Duration::from_secs(30));
        let gateway = GatewayConfig::default();
        assert_eq!(gateway.drain_delay(), Duration::from_secs(1));
        assert_eq!(gateway.listen_addr(), Ok(SocketAddr::from(([127, 0, 0, 1], 8080))));
        assert_eq!(ChainKind::Evm.to_string(), "evm");
        assert_eq!(Commitment::default(), Commitment::Confirmed);
        assert_eq!(Commitment::Finalized.to_string(), "finalized");
    }
}
