//! End-to-end tests of the loading pipeline through the public API.

use std::time::Duration;

use super::*;

mod contracts;

const FILE: &str = "config/local.toml";

const FULL: &str = r#"
[database]
url = "${DATABASE_URL}"
max_connections = 20

[gateway]
listen = "0.0.0.0:9090"
max_body_bytes = 2048
max_batch_size = 50
max_subscriptions_per_connection = 7
max_page_size = 500
drain_delay_ms = 250
min_block_wait_ms = 2500
require_api_key = true
anonymous_rps = 0
anonymous_burst = 1
anonymous_rpc_rps = 7
anonymous_rpc_burst = 8
default_key_rps = 9
default_key_burst = 10
default_key_rpc_rps = 11
default_key_rpc_burst = 12
cors_allowed_origins = ["https://app.example", "http://localhost:3000"]
trust_forwarded_for = true
rpc_cache_max_entries = 13
rpc_cache_max_bytes = 14
rpc_cache_unfinalized_ttl_ms = 0

[[chains]]
name = "local"
kind = "evm"
chain_id = 31337
start_block = 12
batch_size = 200
fetch_concurrency = 4
poll_interval_ms = 500
use_block_receipts = false
fetch = "logs"

[chains.rpc]
request_timeout_ms = 3000
max_attempts = 2
backoff_min_ms = 10
backoff_max_ms = 100
probe_interval_ms = 60
deadline_ms = 9000
max_lag_blocks = 3
hedge = false
hedge_delay_ms = 150
hedge_quantile = 0.95
hedge_delay_min_ms = 5
hedge_delay_max_ms = 500
max_hedges = 2
breaker_failures = 7
breaker_window_ms = 60000
breaker_cooldown_ms = 5000
breaker_successes = 3
rate_limit_rps = 100
rate_limit_burst = 150
rate_limit_cooldown_ms = 2500
hysteresis = 0
probe_share = 0.1

[[chains.upstreams]]
name = "anvil-a"
url = "http://127.0.0.1:8545"

[[chains.upstreams]]
name = "provider"
url = "https://eth-mainnet.example.com/v2/${PROVIDER_KEY}"

[chains.upstreams.rpc]
request_timeout_ms = 6000
max_lag_blocks = 0
hedge_quantile = 0.5
hedge_delay_min_ms = 50
breaker_failures = 2
rate_limit_rps = 25
rate_limit_cooldown_ms = 4000

[[chains]]
name = "minimal"
kind = "evm"
chain_id = 1

[[chains.upstreams]]
name = "only"
url = "https://rpc.example.org"
"#;

/// A valid config with every optional key left out, for tests that add one thing.
const MINIMAL: &str = r#"
[database]
url = "postgres://app:pw@localhost/chainmux"

[[chains]]
name = "local"
kind = "evm"
chain_id = 31337

[[chains.upstreams]]
name = "anvil-a"
url = "http://127.0.0.1:8545"
"#;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn full_env() -> BTreeMap<String, String> {
    env(&[
        ("DATABASE_URL", "postgres://app:hunter2@db.internal:5432/chainmux?sslmode=require"),
        ("PROVIDER_KEY", "SECRETKEY123"),
    ])
}

fn load_ok(text: &str, env: &BTreeMap<String, String>) -> Config {
    match load_with_env(text, FILE, env) {
        Ok(config) => config,
        Err(err) => panic!("expected a valid config, got:\n{err}"),
    }
}

fn load_err(text: &str, env: &BTreeMap<String, String>) -> ConfigError {
    match load_with_env(text, FILE, env) {
        Ok(config) => panic!("expected an error, got {config:#?}"),
        Err(err) => err,
    }
}

/// `MINIMAL` with `extra` appended to the `[[chains]]` entry's scalar keys.
fn minimal_with_chain_keys(extra: &str) -> String {
    MINIMAL.replace("chain_id = 31337\n", &format!("chain_id = 31337\n{extra}\n"))
}

fn problems(err: &ConfigError) -> &[Problem] {
    match err {
        ConfigError::Invalid { file, problems } => {
            assert_eq!(file, FILE);
            problems
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn assert_problem(err: &ConfigError, key: &str, message_part: &str) {
    let found = problems(err).iter().any(|p| p.key == key && p.message.contains(message_part));
    assert!(found, "no problem at {key} containing {message_part:?} in:\n{err}");
    // The rendered error names the file and the key on the same line.
    let line = format!("{FILE}: {key}: ");
    assert!(err.to_string().lines().any(|l| l.starts_with(&line) && l.contains(message_part)), "{err}");
}

#[test]
fn full_example_parses_with_values_and_defaults() {
    let config = load_ok(FULL, &full_env());

    assert_eq!(
        config.database.url.expose_secret(),
        "postgres://app:hunter2@db.internal:5432/chainmux?sslmode=require"
    );
    assert_eq!(config.database.max_connections, 20);
    assert_eq!(
        config.gateway,
        GatewayConfig {
            listen: "0.0.0.0:9090".into(),
            max_body_bytes: 2048,
            max_batch_size: 50,
            max_subscriptions_per_connection: 7,
            max_page_size: 500,
            drain_delay_ms: 250,
            min_block_wait_ms: 2500,
            max_sse_streams: 1000,
            max_ws_connections: 10_000,
            max_live_connections_per_client: 100,
            require_api_key: true,
            anonymous_rps: 0,
            anonymous_burst: 1,
            anonymous_rpc_rps: 7,
            anonymous_rpc_burst: 8,
            default_key_rps: 9,
            default_key_burst: 10,
            default_key_rpc_rps: 11,
            default_key_rpc_burst: 12,
            cors_allowed_origins: vec!["https://app.example".into(), "http://localhost:3000".into()],
            trust_forwarded_for: true,
            rpc_cache_max_entries: 13,
            rpc_cache_max_bytes: 14,
            rpc_cache_unfinalized_ttl_ms: 0,
        }
    );
    assert_eq!(config.gateway.drain_delay(), Duration::from_millis(250));
    assert_eq!(config.chains.len(), 2);

    let local = config.chain("local").expect("local chain");
    assert_eq!(local.kind, ChainKind::Evm);
    assert_eq!(local.chain_id, Some(31337));
    assert_eq!(local.start_block, 12);
    assert_eq!(local.batch_size, 200);
    assert_eq!(local.fetch_concurrency, 4);
    assert_eq!(local.poll_interval(), Duration::from_millis(500));
    assert_eq!(local.use_block_receipts, Some(false));
    assert!(!local.use_block_receipts());
    assert_eq!(local.fetch, Some(FetchMode::Logs));
    assert_eq!(local.fetch(), FetchMode::Logs);
    assert_eq!(
        local.rpc,
        RpcConfig {
            request_timeout_ms: 3000,
            max_attempts: 2,
            backoff_min_ms: 10,
            backoff_max_ms: 100,
            probe_interval_ms: 60,
            deadline_ms: 9000,
            max_lag_blocks: 3,
            hedge: false,
            hedge_delay_ms: Some(150),
            hedge_quantile: 0.95,
            hedge_delay_min_ms: 5,
            hedge_delay_max_ms: 500,
            max_hedges: 2,
            breaker_failures: 7,
            breaker_window_ms: 60_000,
            breaker_cooldown_ms: 5000,
            breaker_successes: 3,
            rate_limit_rps: Some(100),
            rate_limit_burst: Some(150),
            rate_limit_cooldown_ms: 2500,
            // Written as the TOML integer 0.
            hysteresis: 0.0,
            probe_share: 0.1,
        }
    );
    assert_eq!(local.rpc.deadline(), Duration::from_secs(9));
    assert_eq!(local.upstreams.len(), 2);
    assert_eq!(local.upstreams[0].name, "anvil-a");
    assert_eq!(local.upstreams[0].url.expose_secret(), "http://127.0.0.1:8545");
    assert_eq!(local.upstreams[1].url.expose_secret(), "https://eth-mainnet.example.com/v2/SECRETKEY123");

    // An upstream without [chains.upstreams.rpc] gets the chain's values.
    let ms = Duration::from_millis;
    let chain_policy = UpstreamPolicy {
        request_timeout: ms(3000),
        max_lag_blocks: 3,
        hedge_delay: Some(ms(150)),
        hedge_quantile: 0.95,
        hedge_delay_min: ms(5),
        hedge_delay_max: ms(500),
        breaker_failures: 7,
        breaker_window: ms(60_000),
        breaker_cooldown: ms(5000),
        breaker_successes: 3,
        rate_limit_rps: Some(100),
        rate_limit_burst: Some(150),
        rate_limit_cooldown: ms(2500),
    };
    assert!(local.upstreams[0].rpc.is_empty());
    assert_eq!(local.upstream_policy(&local.upstreams[0]), chain_policy);
    // Overrides win; the keys the upstream leaves out (hedge delays, breaker window,
    // cooldown and successes, burst) are inherited.
    assert_eq!(
        local.upstreams[1].rpc,
        UpstreamRpcOverrides {
            request_timeout_ms: Some(6000),
            max_lag_blocks: Some(0),
            hedge_quantile: Some(0.5),
            hedge_delay_min_ms: Some(50),
            breaker_failures: Some(2),
            rate_limit_rps: Some(25),
            rate_limit_cooldown_ms: Some(4000),
            ..UpstreamRpcOverrides::default()
        }
    );
    assert_eq!(
        local.upstream_policy(&local.upstreams[1]),
        UpstreamPolicy {
            request_timeout: ms(6000),
            max_lag_blocks: 0,
            hedge_quantile: 0.5,
            hedge_delay_min: ms(50),
            breaker_failures: 2,
            rate_limit_rps: Some(25),
            rate_limit_cooldown: ms(4000),
            ..chain_policy
        }
    );

    // Every optional chain key takes its documented default.
    let minimal = config.chain("minimal").expect("minimal chain");
    assert_eq!(minimal.chain_id, Some(1));
    assert_eq!(minimal.start_block, 0);
    assert_eq!(minimal.batch_size, 100);
    assert_eq!(minimal.fetch_concurrency, 8);
    assert_eq!(minimal.poll_interval_ms, 1000);
    // The EVM-only keys are filled in, so the resolved config shows them.
    assert_eq!(minimal.use_block_receipts, Some(true));
    assert_eq!(minimal.fetch, Some(FetchMode::Full));
    // No Solana key appears on an EVM chain.
    assert_eq!((minimal.genesis_hash, minimal.commitment), (None, None));
    assert!(minimal.programs.is_empty());
    assert_eq!(minimal.rpc.request_timeout_ms, 10_000);
    assert_eq!(minimal.rpc.max_attempts, 4);
    assert_eq!(minimal.rpc.backoff_min_ms, 50);
    assert_eq!(minimal.rpc.backoff_max_ms, 2000);
    assert_eq!(minimal.rpc.probe_interval_ms, 2000);
    assert_eq!(minimal.rpc, RpcConfig::default());
    assert!(config.chain("absent").is_none());
}

#[test]
fn resilience_defaults() {
    let config = load_ok(MINIMAL, &BTreeMap::new());
    let chain = &config.chains[0];
    let rpc = &chain.rpc;
    assert_eq!(rpc.deadline_ms, 30_000);
    assert_eq!(rpc.deadline(), Duration::from_secs(30));
    assert_eq!(rpc.max_lag_blocks, 10);
    assert!(rpc.hedge);
    assert_eq!(rpc.hedge_delay_ms, None);
    assert_eq!(rpc.hedge_quantile, 0.9);
    assert_eq!((rpc.hedge_delay_min_ms, rpc.hedge_delay_max_ms), (20, 2000));
    assert_eq!(rpc.max_hedges, 1);
    assert_eq!((rpc.breaker_failures, rpc.breaker_window_ms), (5, 30_000));
    assert_eq!((rpc.breaker_cooldown_ms, rpc.breaker_successes), (10_000, 2));
    assert_eq!((rpc.rate_limit_rps, rpc.rate_limit_burst), (None, None));
    assert_eq!(rpc.rate_limit_cooldown_ms, 1000);
    assert_eq!(rpc.hysteresis, 0.2);
    assert_eq!(rpc.probe_share, 0.02);

    assert_eq!(chain.upstreams[0].rpc, UpstreamRpcOverrides::default());
    let ms = Duration::from_millis;
    assert_eq!(
        chain.upstream_policy(&chain.upstreams[0]),
        UpstreamPolicy {
            request_timeout: ms(10_000),
            max_lag_blocks: 10,
            hedge_delay: None,
            hedge_quantile: 0.9,
            hedge_delay_min: ms(20),
            hedge_delay_max: ms(2000),
            breaker_failures: 5,
            breaker_window: ms(30_000),
            breaker_cooldown: ms(10_000),
            breaker_successes: 2,
            rate_limit_rps: None,
            rate_limit_burst: None,
            rate_limit_cooldown: ms(1000),
        }
    );
}

/// `MINIMAL` with a `[chains.rpc]` table holding `chain` and the upstream's
/// `[chains.upstreams.rpc]` holding `upstream`.
fn minimal_with_rpc(chain: &str, upstream: &str) -> String {
    format!("{MINIMAL}\n[chains.upstreams.rpc]\n{upstream}\n")
        .replace("[[chains.upstreams]]", &format!("[chains.rpc]\n{chain}\n\n[[chains.upstreams]]"))
}

#[test]
fn per_upstream_values_override_and_inherit() {
    let ms = Duration::from_millis;
    let text = minimal_with_rpc(
        "request_timeout_ms = 2000\nhedge_delay_ms = 100\nbreaker_successes = 4",
        "request_timeout_ms = 7000\nhedge_delay_ms = 300",
    );
    let config = load_ok(&text, &BTreeMap::new());
    let chain = &config.chains[0];
    let policy = chain.upstream_policy(&chain.upstreams[0]);
    assert_eq!(policy.request_timeout, ms(7000));
    assert_eq!(policy.hedge_delay, Some(ms(300)));
    assert_eq!(policy.breaker_successes, 4);
    assert_eq!(policy.breaker_failures, 5);
    // The chain's own accessors keep the chain's values.
    assert_eq!(chain.rpc.request_timeout(), ms(2000));
    assert_eq!(chain.rpc.hedge_delay_ms, Some(100));
}

#[test]
fn rate_limit_burst_defaults_to_rps() {
    let policy = |chain: &str, upstream: &str| {
        let config = load_ok(&minimal_with_rpc(chain, upstream), &BTreeMap::new());
        let policy = config.chains[0].upstream_policy(&config.chains[0].upstreams[0]);
        (policy.rate_limit_rps, policy.rate_limit_burst)
    };
    assert_eq!(policy("", ""), (None, None));
    assert_eq!(policy("rate_limit_rps = 10", ""), (Some(10), Some(10)));
    assert_eq!(policy("", "rate_limit_rps = 10"), (Some(10), Some(10)));
    assert_eq!(policy("rate_limit_rps = 10", "rate_limit_burst = 30"), (Some(10), Some(30)));
    assert_eq!(
        policy("rate_limit_rps = 10\nrate_limit_burst = 30", "rate_limit_rps = 5"),
        (Some(5), Some(30))
    );
    // A chain-wide burst is fine when every upstream sets its own rate.
    assert_eq!(policy("rate_limit_burst = 40", "rate_limit_rps = 5"), (Some(5), Some(40)));
}

#[test]
fn float_keys_accept_integers_and_reject_other_types() {
    let config = load_ok(&minimal_with_rpc("hysteresis = 1\nprobe_share = 0", ""), &BTreeMap::new());
    assert_eq!((config.chains[0].rpc.hysteresis, config.chains[0].rpc.probe_share), (1.0, 0.0));
    let config = load_ok(
        MINIMAL,
        &env(&[
            ("CHAINMUX_CHAINS__LOCAL__RPC__HYSTERESIS", "0"),
            ("CHAINMUX_CHAINS__LOCAL__RPC__HEDGE_QUANTILE", "0.75"),
            ("CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_A__RPC__HEDGE_QUANTILE", "0.99"),
        ]),
    );
    assert_eq!(config.chains[0].rpc.hysteresis, 0.0);
    assert_eq!(config.chains[0].rpc.hedge_quantile, 0.75);
    assert_eq!(config.chains[0].upstreams[0].rpc.hedge_quantile, Some(0.99));

    // An integer quantile is read as a number, and then fails the range rule.
    let err = load_err(&minimal_with_rpc("hedge_quantile = 1", "hedge_quantile = 1"), &BTreeMap::new());
    assert_problem(&err, "chains[0].rpc.hedge_quantile", "between 0.5 and 0.999, got 1");
    assert_problem(&err, "chains[0].upstreams[0].rpc.hedge_quantile", "between 0.5 and 0.999, got 1");
    // TOML's nan is in no range.
    let err = load_err(&minimal_with_rpc("probe_share = nan", ""), &BTreeMap::new());
    assert_problem(&err, "chains[0].rpc.probe_share", "got NaN");

    for (text, key) in [
        (minimal_with_rpc("hysteresis = \"high\"", ""), "chains[0].rpc.hysteresis"),
        (minimal_with_rpc("", "hedge_quantile = true"), "chains[0].upstreams[0].rpc.hedge_quantile"),
    ] {
        let err = load_err(&text, &BTreeMap::new());
        assert!(matches!(&err, ConfigError::Type { key: k, .. } if k == key), "{key}: {err:?}");
        assert!(err.to_string().contains("expected a number"), "{err}");
    }
}

#[test]
fn omitted_sections_take_defaults() {
    let config = load_ok(MINIMAL, &BTreeMap::new());
    assert_eq!(config.database.max_connections, 10);
    assert_eq!(config.gateway.listen, "127.0.0.1:8080");
    assert_eq!(config.gateway.max_body_bytes, 1_048_576);
    assert_eq!(config.gateway.max_batch_size, 100);
    assert_eq!(config.gateway.max_subscriptions_per_connection, 100);
    assert_eq!(config.gateway.max_page_size, 1000);
    assert_eq!(config.gateway.drain_delay_ms, 1000);
    assert_eq!(config.gateway.min_block_wait(), Duration::from_secs(10));
    assert!(!config.gateway.require_api_key);
    assert_eq!((config.gateway.anonymous_rps, config.gateway.anonymous_burst), (50, 100));
    assert_eq!((config.gateway.anonymous_rpc_rps, config.gateway.anonymous_rpc_burst), (100, 200));
    assert_eq!((config.gateway.default_key_rps, config.gateway.default_key_burst), (100, 200));
    assert_eq!((config.gateway.default_key_rpc_rps, config.gateway.default_key_rpc_burst), (200, 400));
    assert!(config.gateway.cors_allowed_origins.is_empty());
    assert!(!config.gateway.trust_forwarded_for);
    assert_eq!(config.gateway.rpc_cache_max_entries, 10_000);
    assert_eq!(config.gateway.rpc_cache_max_bytes, 64 << 20);
    assert_eq!(config.gateway.rpc_cache_unfinalized_ttl(), Duration::from_secs(2));
    assert_eq!(config.chains[0].rpc, RpcConfig::default());
}

#[test]
fn partial_rpc_section_keeps_other_defaults() {
    let text =
        MINIMAL.replace("[[chains.upstreams]]", "[chains.rpc]\nmax_attempts = 7\n\n[[chains.upstreams]]");
    let config = load_ok(&text, &BTreeMap::new());
    assert_eq!(config.chains[0].rpc.max_attempts, 7);
    assert_eq!(config.chains[0].rpc.backoff_max_ms, 2000);
}

#[test]
fn each_validation_rule_is_reported_at_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("database.url", "must start with postgres:// or postgresql://", "mysql://x/y"),
        ("database.url", "invalid URL", "postgres://h:99999999/db"),
        ("database.max_connections", "between 1 and 1000, got 0", "0"),
        ("database.max_connections", "between 1 and 1000, got 1001", "1001"),
        ("gateway.listen", "invalid socket address", "localhost"),
        ("gateway.max_body_bytes", "between 1 and 67108864", "67108865"),
        ("gateway.max_batch_size", "between 1 and 10000", "0"),
        ("gateway.max_subscriptions_per_connection", "between 1 and 10000, got 0", "0"),
        ("gateway.max_page_size", "between 1 and 10000", "10001"),
        ("gateway.min_block_wait_ms", "between 0 and 60000, got 60001", "60001"),
        ("gateway.anonymous_rps", "between 0 and 1000000, got 1000001", "1000001"),
        ("gateway.anonymous_burst", "between 1 and 1000000, got 0", "0"),
        ("gateway.anonymous_rpc_rps", "between 0 and 1000000", "1000001"),
        ("gateway.anonymous_rpc_burst", "between 1 and 1000000, got 0", "0"),
        ("gateway.default_key_rps", "between 0 and 1000000", "1000001"),
        ("gateway.default_key_burst", "between 1 and 1000000, got 0", "0"),
        ("gateway.default_key_rpc_rps", "between 0 and 1000000", "1000001"),
        ("gateway.default_key_rpc_burst", "between 1 and 1000000, got 0", "0"),
        ("gateway.rpc_cache_max_entries", "between 0 and 10000000, got 10000001", "10000001"),
        ("gateway.rpc_cache_max_bytes", "between 0 and 68719476736, got 68719476737", "68719476737"),
        ("gateway.rpc_cache_unfinalized_ttl_ms", "between 0 and 3600000, got 3600001", "3600001"),
        ("gateway.max_live_connections_per_client", "between 1 and 100000, got 0", "0"),
        ("cluster.replica_id", "must be 1-64 characters", "pod/1"),
        ("cluster.leader_poll_ms", "between 50 and 60000, got 49", "49"),
        ("redis.url", "must start with redis:// or rediss://", "http://cache:6379"),
        ("redis.timeout_ms", "between 1 and 5000, got 0", "0"),
        ("chains[0].name", "invalid chain name \"Local\"", "Local"),
        ("chains[0].batch_size", "between 1 and 10000", "0"),
        ("chains[0].fetch_concurrency", "between 1 and 256", "257"),
        ("chains[0].poll_interval_ms", "at least 10, got 9", "9"),
        ("chains[0].logs_address_chunk", "between 1 and 10000, got 0", "0"),
        ("chains[0].logs_address_chunk", "between 1 and 10000, got 10001", "10001"),
        ("chains[0].logs_topic_only_above", "at least 1, got 0", "0"),
        ("chains[0].rpc.request_timeout_ms", "at least 1, got 0", "0"),
        ("chains[0].rpc.max_attempts", "between 1 and 20, got 21", "21"),
        ("chains[0].rpc.probe_interval_ms", "at least 50", "49"),
        ("chains[0].rpc.deadline_ms", "must be >= request_timeout_ms (9999 < 10000)", "9999"),
        ("chains[0].rpc.hedge_delay_ms", "at least 1, got 0", "0"),
        ("chains[0].rpc.hedge_quantile", "between 0.5 and 0.999, got 0.4", "0.4"),
        ("chains[0].rpc.hedge_quantile", "between 0.5 and 0.999, got 1", "1"),
        ("chains[0].rpc.hedge_delay_min_ms", "at least 1, got 0", "0"),
        ("chains[0].rpc.hedge_delay_max_ms", "must be >= hedge_delay_min_ms (19 < 20)", "19"),
        ("chains[0].rpc.max_hedges", "between 0 and 4, got 5", "5"),
        ("chains[0].rpc.breaker_failures", "at least 1, got 0", "0"),
        ("chains[0].rpc.breaker_window_ms", "at least 1, got 0", "0"),
        ("chains[0].rpc.breaker_cooldown_ms", "at least 1, got 0", "0"),
        ("chains[0].rpc.breaker_successes", "at least 1, got 0", "0"),
        ("chains[0].rpc.rate_limit_rps", "at least 1, got 0", "0"),
        ("chains[0].rpc.rate_limit_burst", "set without rate_limit_rps, which upstream \"anvil-a\"", "9"),
        ("chains[0].rpc.rate_limit_cooldown_ms", "at least 1, got 0", "0"),
        ("chains[0].rpc.hysteresis", "between 0 and 1, got 1.5", "1.5"),
        ("chains[0].rpc.hysteresis", "between 0 and 1, got -0.1", "-0.1"),
        ("chains[0].rpc.probe_share", "between 0 and 0.5, got 0.6", "0.6"),
        // Per-upstream overrides, in an [chains.upstreams.rpc] table the override creates.
        ("chains[0].upstreams[0].rpc.request_timeout_ms", "at least 1, got 0", "0"),
        (
            "chains[0].upstreams[0].rpc.request_timeout_ms",
            "must be <= deadline_ms of chains[0].rpc (30001 > 30000)",
            "30001",
        ),
        ("chains[0].upstreams[0].rpc.hedge_delay_ms", "at least 1, got 0", "0"),
        ("chains[0].upstreams[0].rpc.hedge_quantile", "between 0.5 and 0.999, got 0.9999", "0.9999"),
        ("chains[0].upstreams[0].rpc.hedge_delay_min_ms", "at least 1, got 0", "0"),
        (
            "chains[0].upstreams[0].rpc.hedge_delay_min_ms",
            "must be <= hedge_delay_max_ms of chains[0].rpc (2001 > 2000)",
            "2001",
        ),
        (
            "chains[0].upstreams[0].rpc.hedge_delay_max_ms",
            "must be >= hedge_delay_min_ms of chains[0].rpc (19 < 20)",
            "19",
        ),
        ("chains[0].upstreams[0].rpc.breaker_failures", "at least 1, got 0", "0"),
        ("chains[0].upstreams[0].rpc.breaker_window_ms", "at least 1, got 0", "0"),
        ("chains[0].upstreams[0].rpc.breaker_cooldown_ms", "at least 1, got 0", "0"),
        ("chains[0].upstreams[0].rpc.breaker_successes", "at least 1, got 0", "0"),
        ("chains[0].upstreams[0].rpc.rate_limit_rps", "at least 1, got 0", "0"),
        (
            "chains[0].upstreams[0].rpc.rate_limit_burst",
            "set without rate_limit_rps (neither here nor in chains[0].rpc)",
            "9",
        ),
        ("chains[0].upstreams[0].rpc.rate_limit_cooldown_ms", "at least 1, got 0", "0"),
        ("chains[0].upstreams[0].name", "invalid upstream name \"-a\"", "-a"),
        ("chains[0].upstreams[0].url", "relative URL without a base", "127.0.0.1:8545"),
        ("chains[0].upstreams[0].url", "scheme must be http or https", "ws://127.0.0.1:8545"),
    ];
    for &(key, message, value) in cases {
        // Override the one key with the bad value; everything else stays valid.
        let var = override_var(key);
        let err = load_err(MINIMAL, &env(&[(&var, value)]));
        assert_problem(&err, key, message);
        assert_eq!(problems(&err).len(), 1, "{key}: {err}");
    }
}

#[test]
fn cors_origins_are_checked_one_by_one() {
    let with = |origins: &str| {
        MINIMAL.replace("[[chains]]", &format!("[gateway]\ncors_allowed_origins = {origins}\n[[chains]]"))
    };
    let config = load_ok(&with(r#"["*"]"#), &BTreeMap::new());
    assert_eq!(config.gateway.cors_allowed_origins, vec!["*".to_owned()]);
    load_ok(&with(r#"["https://app.example", "http://127.0.0.1:5173"]"#), &BTreeMap::new());

    let err = load_err(
        &with(
            r#"["https://ok.example", "app.example", "https://App.example/", "ftp://x.example", "https://ok.example", "*"]"#,
        ),
        &BTreeMap::new(),
    );
    let key = |i: usize| format!("gateway.cors_allowed_origins[{i}]");
    assert_problem(&err, &key(1), "invalid origin \"app.example\"");
    assert_problem(&err, &key(2), "write it as \"https://app.example\"");
    assert_problem(&err, &key(3), "invalid origin \"ftp://x.example\"");
    assert_problem(&err, &key(4), "duplicate origin \"https://ok.example\" (already listed at index 0)");
    assert_problem(&err, &key(5), "must be the only entry");
    assert_eq!(problems(&err).len(), 5, "{err}");
}

/// The env override addressing `key`, e.g. `chains[0].rpc.x` -> `CHAINMUX_CHAINS__0__RPC__X`.
fn override_var(key: &str) -> String {
    let path = key.replace("].", ".").replace(['[', '.'], "__").to_ascii_uppercase();
    format!("CHAINMUX_{path}")
}

#[test]
fn backoff_max_below_min_is_reported() {
    let text = MINIMAL.replace(
        "[[chains.upstreams]]",
        "[chains.rpc]\nbackoff_min_ms = 500\nbackoff_max_ms = 100\n[[chains.upstreams]]",
    );
    let err = load_err(&text, &BTreeMap::new());
    assert_problem(&err, "chains[0].rpc.backoff_max_ms", "must be >= backoff_min_ms");
}

#[test]
fn zero_and_unbounded_values_are_valid_where_meaningful() {
    let text = minimal_with_rpc(
        "max_lag_blocks = 0\nmax_hedges = 0\nhysteresis = 0.0\nprobe_share = 0.5\nhedge_quantile = 0.999",
        "max_lag_blocks = 1000000\nhedge_quantile = 0.5\nrate_limit_rps = 1\nrate_limit_burst = 1",
    );
    load_ok(&text, &BTreeMap::new());
    // request_timeout_ms may equal deadline_ms, and hedge_delay_max_ms hedge_delay_min_ms.
    let text = minimal_with_rpc(
        "deadline_ms = 5000\nrequest_timeout_ms = 5000\nhedge_delay_min_ms = 100\nhedge_delay_max_ms = 100",
        "hedge_delay_min_ms = 100",
    );
    load_ok(&text, &BTreeMap::new());
}

#[test]
fn cross_field_rules_use_effective_values() {
    let check = |chain: &str, upstream: &str, want: &[(&str, &str)]| {
        let err = load_err(&minimal_with_rpc(chain, upstream), &BTreeMap::new());
        for (key, message) in want {
            assert_problem(&err, key, message);
        }
        assert_eq!(problems(&err).len(), want.len(), "{err}");
    };
    let up = "chains[0].upstreams[0].rpc";
    // Overriding both sides: reported at the upper one, with both values the upstream's.
    check(
        "",
        "hedge_delay_min_ms = 100\nhedge_delay_max_ms = 50",
        &[(&format!("{up}.hedge_delay_max_ms"), "must be >= hedge_delay_min_ms (50 < 100)")],
    );
    // The chain's upper bound was lowered; the upstream's own lower bound no longer fits.
    check(
        "hedge_delay_max_ms = 40",
        "hedge_delay_min_ms = 41",
        &[(&format!("{up}.hedge_delay_min_ms"), "must be <= hedge_delay_max_ms of chains[0].rpc (41 > 40)")],
    );
    check(
        "deadline_ms = 5000\nrequest_timeout_ms = 1000",
        "request_timeout_ms = 6000",
        &[(&format!("{up}.request_timeout_ms"), "must be <= deadline_ms of chains[0].rpc (6000 > 5000)")],
    );
    // A bad chain-level pair that the upstream inherits is reported once, at the chain.
    check(
        "hedge_delay_min_ms = 100\nhedge_delay_max_ms = 50",
        "",
        &[("chains[0].rpc.hedge_delay_max_ms", "must be >= hedge_delay_min_ms (50 < 100)")],
    );
    check(
        "deadline_ms = 1000",
        "",
        &[("chains[0].rpc.deadline_ms", "must be >= request_timeout_ms (1000 < 10000)")],
    );
    // An upstream's override does not excuse the chain's own values, nor the reverse.
    check(
        "deadline_ms = 1000\nrequest_timeout_ms = 500",
        "request_timeout_ms = 2000",
        &[(&format!("{up}.request_timeout_ms"), "must be <= deadline_ms of chains[0].rpc (2000 > 1000)")],
    );
    check(
        "deadline_ms = 1000",
        "request_timeout_ms = 500",
        &[("chains[0].rpc.deadline_ms", "must be >= request_timeout_ms (1000 < 10000)")],
    );
    // A burst with no rate anywhere, set on the upstream.
    check(
        "",
        "rate_limit_burst = 5",
        &[(
            &format!("{up}.rate_limit_burst"),
            "set without rate_limit_rps (neither here nor in chains[0].rpc)",
        )],
    );

    // A chain-wide burst names the upstreams that would get it without a rate.
    let text = format!(
        "{}\n[[chains.upstreams]]\nname = \"b\"\nurl = \"http://b\"\n[chains.upstreams.rpc]\nrate_limit_rps = 5\n\
         [[chains.upstreams]]\nname = \"c\"\nurl = \"http://c\"\n",
        minimal_with_rpc("rate_limit_burst = 20", "max_lag_blocks = 1"),
    );
    let err = load_err(&text, &BTreeMap::new());
    assert_problem(
        &err,
        "chains[0].rpc.rate_limit_burst",
        "set without rate_limit_rps, which upstreams \"anvil-a\", \"c\" do not set either",
    );
    assert_eq!(problems(&err).len(), 1, "{err}");
}

#[test]
fn missing_chains_and_upstreams_are_reported() {
    let err = load_err("[database]\nurl = \"postgres://localhost/db\"\n", &BTreeMap::new());
    assert_problem(&err, "chains", "at least one chain is required");

    let text = "[database]\nurl = \"postgres://localhost/db\"\n[[chains]]\nname = \"a\"\nkind = \"evm\"\nchain_id = 1\n";
    let err = load_err(text, &BTreeMap::new());
    assert_problem(&err, "chains[0].upstreams", "at least one upstream is required");
}

#[test]
fn duplicate_names_are_reported() {
    let text = format!(
        "{MINIMAL}\n[[chains]]\nname = \"local\"\nkind = \"evm\"\nchain_id = 2\n\
         [[chains.upstreams]]\nname = \"x\"\nurl = \"http://a\"\n\
         [[chains.upstreams]]\nname = \"x\"\nurl = \"http://b\"\n\
         [[chains]]\nname = \"main_net\"\nkind = \"evm\"\nchain_id = 3\n\
         [[chains.upstreams]]\nname = \"x\"\nurl = \"http://a\"\n\
         [[chains]]\nname = \"main-net\"\nkind = \"evm\"\nchain_id = 4\n\
         [[chains.upstreams]]\nname = \"x\"\nurl = \"http://a\"\n"
    );
    let err = load_err(&text, &BTreeMap::new());
    assert_problem(&err, "chains[1].name", "duplicate chain name \"local\"");
    assert_problem(&err, "chains[1].upstreams[1].name", "duplicate upstream name \"x\"");
    // `-` and `_` are the same to env overrides, so they must not distinguish names.
    assert_problem(&err, "chains[3].name", "duplicate chain name \"main-net\"");
    // Upstream names only need to be unique within their chain.
    assert_eq!(problems(&err).len(), 3, "{err}");
}

#[test]
fn all_problems_are_reported_together() {
    let text = r#"
[database]
url = "mysql://root:hunter2@db/x"
max_connections = 0

[gateway]
listen = "nope"

[[chains]]
name = "local"
kind = "evm"
chain_id = 1
[chains.rpc]
backoff_min_ms = 10
backoff_max_ms = 5
[[chains.upstreams]]
name = "a"
url = "ftp://example.com/SECRETKEY"

[[chains]]
name = "local"
kind = "evm"
chain_id = 2
"#;
    let err = load_err(text, &BTreeMap::new());
    let keys: Vec<&str> = problems(&err).iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "database.url",
            "database.max_connections",
            "gateway.listen",
            "chains[0].rpc.backoff_max_ms",
            "chains[0].upstreams[0].url",
            "chains[1].name",
            "chains[1].upstreams",
        ]
    );
    let rendered = err.to_string();
    assert_eq!(rendered.lines().count(), keys.len(), "{rendered}");
    assert!(rendered.lines().all(|l| l.starts_with("config/local.toml: ")), "{rendered}");
    assert!(
        rendered.contains("config/local.toml: chains[1].name: duplicate chain name \"local\""),
        "{rendered}"
    );
    // Validation messages never echo URLs.
    assert!(!rendered.contains("hunter2") && !rendered.contains("SECRETKEY"), "{rendered}");
}

#[test]
fn validate_is_usable_on_hand_built_configs() {
    let mut config = load_ok(MINIMAL, &BTreeMap::new());
    assert!(config.problems().is_empty());
    assert!(config.validate("testkit").is_ok());
    config.chains[0].upstreams.clear();
    let err = config.validate("testkit").expect_err("no upstreams");
    assert_eq!(err.to_string(), "testkit: chains[0].upstreams: at least one upstream is required");
}

#[test]
fn unknown_keys_are_named_by_path() {
    let cases = [
        (format!("log_level = \"debug\"\n{MINIMAL}"), "log_level", "unknown field `log_level`"),
        (MINIMAL.replace("[database]", "[database]\npool = 5"), "database.pool", "unknown field `pool`"),
        (minimal_with_chain_keys("start = 5"), "chains[0].start", "unknown field `start`"),
        (
            MINIMAL.replace("url = \"http://", "weight = 2\nurl = \"http://"),
            "chains[0].upstreams[0].weight",
            "unknown field `weight`",
        ),
        (
            MINIMAL.replace("[[chains]]", "[gateway]\nport = 1\n[[chains]]"),
            "gateway.port",
            "unknown field `port`",
        ),
        (minimal_with_rpc("weight = 2", ""), "chains[0].rpc.weight", "unknown field `weight`"),
        (minimal_with_rpc("", "weight = 2"), "chains[0].upstreams[0].rpc.weight", "unknown field `weight`"),
    ];
    for (text, key, message) in cases {
        match load_err(&text, &BTreeMap::new()) {
            ConfigError::Type { file, key: got, message: got_message, set_by } => {
                assert_eq!((file.as_str(), got.as_str()), (FILE, key));
                assert!(got_message.contains(message), "{got_message}");
                assert_eq!(set_by, None);
            }
            other => panic!("{key}: expected Type, got {other}"),
        }
    }
}

#[test]
fn call_level_keys_are_unknown_per_upstream() {
    // Every [chains.rpc] key is either accepted per upstream or an unknown field there.
    let mut keys: Vec<String> =
        toml::Table::try_from(RpcConfig::default()).expect("table").keys().cloned().collect();
    // Unset by default, so not serialized; all three are per-upstream keys.
    keys.extend(["hedge_delay_ms", "rate_limit_rps", "rate_limit_burst"].map(String::from));
    let mut call_level = Vec::new();
    for key in &keys {
        let value = match key.as_str() {
            "hedge" => "true",
            "hedge_quantile" | "hysteresis" | "probe_share" => "0.5",
            "rate_limit_burst" => "1\nrate_limit_rps = 1",
            _ => "1000",
        };
        let text = minimal_with_rpc("", &format!("{key} = {value}"));
        match load_with_env(&text, FILE, &BTreeMap::new()) {
            Ok(_) => {}
            Err(ConfigError::Type { key: path, message, .. }) => {
                assert_eq!(path, format!("chains[0].upstreams[0].rpc.{key}"));
                assert!(message.starts_with(&format!("unknown field `{key}`")), "{message}");
                assert!(
                    message.ends_with(&format!("; {key} applies to the whole chain: set it in [chains.rpc]")),
                    "{message}"
                );
                call_level.push(key.clone());
            }
            Err(other) => panic!("{key}: {other}"),
        }
    }
    call_level.sort();
    let mut want = schema::CALL_LEVEL_RPC_KEYS.to_vec();
    want.sort_unstable();
    assert_eq!(call_level, want);
    assert_eq!(keys.len(), 22, "{keys:?}");

    // The full rendered message, as an operator sees it.
    let err = load_err(&minimal_with_rpc("", "deadline_ms = 5000"), &BTreeMap::new());
    let rendered = err.to_string();
    assert!(
        rendered.starts_with(
            "config/local.toml: chains[0].upstreams[0].rpc.deadline_ms: unknown field `deadline_ms`, expected one of"
        ),
        "{rendered}"
    );
    // The same mistake through an override is blamed on the variable.
    let var = "CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_A__RPC__MAX_ATTEMPTS";
    let err = load_err(MINIMAL, &env(&[(var, "2")]));
    assert!(
        matches!(&err, ConfigError::Type { key, set_by: Some(v), .. }
            if key == "chains[0].upstreams[0].rpc.max_attempts" && v == var),
        "{err:?}"
    );
    // Outside an upstream's table there is no hint.
    assert_eq!(with_hint("chains[0].rpc.deadline_ms", "unknown field `x`"), "unknown field `x`");
    assert_eq!(with_hint("chains[0].upstreams[0].rpc.deadline_ms", "other"), "other");
}

#[test]
fn wrong_types_are_named_by_path() {
    let cases = [
        (
            MINIMAL.replace("\"http://127.0.0.1:8545\"", "8545"),
            "chains[0].upstreams[0].url",
            "expected a string",
        ),
        (MINIMAL.replace("31337", "\"31337\""), "chains[0].chain_id", "expected u64"),
        (MINIMAL.replace("31337", "-1"), "chains[0].chain_id", "invalid value"),
        (
            minimal_with_chain_keys("use_block_receipts = \"yes\""),
            "chains[0].use_block_receipts",
            "expected a boolean",
        ),
        (MINIMAL.replace("\"evm\"", "\"cosmos\""), "chains[0].kind", "unknown variant `cosmos`"),
        (minimal_with_chain_keys("fetch = \"receipts\""), "chains[0].fetch", "unknown variant `receipts`"),
        (MINIMAL.replace("[[chains]]", "[chains]"), "chains", "expected a sequence"),
        (
            minimal_with_chain_keys("[chains.rpc]\nmax_attempts = 1.5"),
            "chains[0].rpc.max_attempts",
            "expected u32",
        ),
        (minimal_with_rpc("hedge = 1", ""), "chains[0].rpc.hedge", "expected a boolean"),
        (
            minimal_with_rpc("", "rate_limit_rps = 2.5"),
            "chains[0].upstreams[0].rpc.rate_limit_rps",
            "expected u32",
        ),
        (
            minimal_with_rpc("", "max_lag_blocks = -1"),
            "chains[0].upstreams[0].rpc.max_lag_blocks",
            "invalid value",
        ),
        (
            MINIMAL.replace("url = \"http", "rpc = 5\nurl = \"http"),
            "chains[0].upstreams[0].rpc",
            "expected struct",
        ),
    ];
    assert_type_errors(&cases);
}

/// Each `(config text, key, message)` fails to load with a type error at that key, rendered as
/// `<file>: <key>: …<message>…`.
fn assert_type_errors(cases: &[(String, &str, &str)]) {
    for (text, key, message) in cases {
        let err = load_err(text, &BTreeMap::new());
        assert!(matches!(&err, ConfigError::Type { key: k, .. } if k == key), "{key}: {err:?}");
        let rendered = err.to_string();
        assert!(rendered.starts_with(&format!("{FILE}: {key}: ")), "{rendered}");
        assert!(rendered.contains(message), "{rendered}");
    }
}

#[test]
fn missing_required_keys_are_named() {
    let err = load_err("[gateway]\nlisten = \"127.0.0.1:1\"\n", &BTreeMap::new());
    assert_eq!(err.to_string(), "config/local.toml: missing field `database`");
    let err = load_err(&MINIMAL.replace("kind = \"evm\"", ""), &BTreeMap::new());
    assert_eq!(err.to_string(), "config/local.toml: chains[0]: missing field `kind`");
    // chain_id is required on EVM chains only, so validation reports it, along with any other problem.
    let err = load_err(&MINIMAL.replace("chain_id = 31337", "batch_size = 0"), &BTreeMap::new());
    assert_eq!(
        err.to_string(),
        "config/local.toml: chains[0].chain_id: required on evm chains\n\
         config/local.toml: chains[0].batch_size: must be between 1 and 10000, got 0"
    );
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let text = "[database]\nurl = \"postgres://x\"\nmax_connections = = 3\n";
    let err = load_err(text, &BTreeMap::new());
    let ConfigError::Syntax { file, line, column, .. } = &err else { panic!("expected Syntax, got {err}") };
    assert_eq!((file.as_str(), *line), (FILE, 3));
    assert!(*column > 1, "{column}");
    assert!(err.to_string().starts_with("config/local.toml: invalid TOML at line 3, column "), "{err}");
}

#[test]
fn interpolation_expands_defaults_and_escapes() {
    let text = MINIMAL
        .replace(
            "postgres://app:pw@localhost/chainmux",
            "postgres://${DB_USER}:${DB_PASS}@${DB_HOST:-localhost}/db",
        )
        .replace("name = \"anvil-a\"", "name = \"${UPSTREAM_NAME:-anvil-a}\"")
        .replace("http://127.0.0.1:8545", "http://127.0.0.1:8545/$${literal}");
    let config = load_ok(&text, &env(&[("DB_USER", "app"), ("DB_PASS", "s3cret")]));
    assert_eq!(config.database.url.expose_secret(), "postgres://app:s3cret@localhost/db");
    assert_eq!(config.chains[0].upstreams[0].name, "anvil-a");
    assert_eq!(config.chains[0].upstreams[0].url.expose_secret(), "http://127.0.0.1:8545/${literal}");

    let config =
        load_ok(&text, &env(&[("DB_USER", "u"), ("DB_PASS", ""), ("DB_HOST", "db"), ("UPSTREAM_NAME", "b")]));
    assert_eq!(config.database.url.expose_secret(), "postgres://u:@db/db");
    assert_eq!(config.chains[0].upstreams[0].name, "b");
}

#[test]
fn interpolation_of_unset_variables_names_key_and_variable() {
    let err = load_err(FULL, &env(&[("DATABASE_URL", "postgres://x/y")]));
    match &err {
        ConfigError::Interpolation { file, problems } => {
            assert_eq!(file, FILE);
            assert_eq!(
                problems,
                &[Problem {
                    key: "chains[0].upstreams[1].url".into(),
                    message: "environment variable PROVIDER_KEY is not set".into()
                }]
            );
        }
        other => panic!("expected Interpolation, got {other}"),
    }
    assert_eq!(
        err.to_string(),
        "config/local.toml: chains[0].upstreams[1].url: environment variable PROVIDER_KEY is not set"
    );

    // Every unset variable is reported, not just the first.
    let err = load_err(FULL, &BTreeMap::new());
    let rendered = err.to_string();
    assert!(
        rendered.contains("config/local.toml: database.url: environment variable DATABASE_URL is not set")
    );
    assert!(rendered.contains("PROVIDER_KEY"), "{rendered}");
}

#[test]
fn env_overrides_top_level_sections() {
    let config = load_ok(
        MINIMAL,
        &env(&[
            ("CHAINMUX_DATABASE__URL", "postgresql://other/db"),
            ("CHAINMUX_DATABASE__MAX_CONNECTIONS", "42"),
            ("CHAINMUX_GATEWAY__LISTEN", "0.0.0.0:9000"),
            ("CHAINMUX_GATEWAY__DRAIN_DELAY_MS", "0"),
            // The CLI's own variables and other tools' variables are not config keys.
            ("CHAINMUX_LOG", "debug"),
            ("CHAINMUX_LOG_FORMAT", "json"),
            ("CHAINMUX_CONFIG", "config/local.toml"),
            ("CHAINMUX_TOOLS_DIR", "/opt/tools"),
            ("PATH", "/usr/bin"),
        ]),
    );
    assert_eq!(config.database.url.expose_secret(), "postgresql://other/db");
    assert_eq!(config.database.max_connections, 42);
    // The [gateway] section does not exist in MINIMAL; the override creates it.
    assert_eq!(config.gateway.listen, "0.0.0.0:9000");
    assert_eq!(config.gateway.drain_delay_ms, 0);
    assert_eq!(config.gateway.max_page_size, 1000);
}

#[test]
fn env_overrides_address_chains_and_upstreams() {
    let config = load_ok(
        FULL,
        &env(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("PROVIDER_KEY", "K"),
            ("CHAINMUX_CHAINS__LOCAL__START_BLOCK", "5"),
            ("CHAINMUX_CHAINS__1__USE_BLOCK_RECEIPTS", "false"),
            ("CHAINMUX_CHAINS__MINIMAL__FETCH", "logs"),
            ("CHAINMUX_CHAINS__minimal__rpc__max_attempts", "9"),
            ("CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_A__URL", "http://10.0.0.1:8545"),
            ("CHAINMUX_CHAINS__LOCAL__UPSTREAMS__1__URL", "https://other.example/${PROVIDER_KEY}"),
        ]),
    );
    let local = &config.chains[0];
    assert_eq!(local.start_block, 5);
    assert_eq!(local.upstreams[0].url.expose_secret(), "http://10.0.0.1:8545");
    // Overrides are applied before interpolation, so they may use ${VAR} too.
    assert_eq!(local.upstreams[1].url.expose_secret(), "https://other.example/K");
    assert_eq!(config.chains[1].use_block_receipts, Some(false));
    assert_eq!(config.chains[1].fetch, Some(FetchMode::Logs));
    assert_eq!(config.chains[1].rpc.max_attempts, 9);
}

#[test]
fn env_overrides_reach_per_upstream_rpc_tables() {
    // MINIMAL has no [chains.rpc] and no [chains.upstreams.rpc]; the overrides create them.
    let config = load_ok(
        MINIMAL,
        &env(&[
            ("CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_A__RPC__RATE_LIMIT_RPS", "25"),
            ("CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_A__RPC__HEDGE_DELAY_MS", "75"),
            ("CHAINMUX_CHAINS__LOCAL__RPC__BREAKER_FAILURES", "9"),
        ]),
    );
    let chain = &config.chains[0];
    assert_eq!(chain.upstreams[0].rpc.rate_limit_rps, Some(25));
    let policy = chain.upstream_policy(&chain.upstreams[0]);
    assert_eq!((policy.rate_limit_rps, policy.rate_limit_burst), (Some(25), Some(25)));
    assert_eq!(policy.hedge_delay, Some(Duration::from_millis(75)));
    assert_eq!(policy.breaker_failures, 9);

    // In an existing table, an override replaces one key and keeps the others.
    let config = load_ok(
        FULL,
        &env(&[
            ("DATABASE_URL", "postgres://x/y"),
            ("PROVIDER_KEY", "K"),
            ("CHAINMUX_CHAINS__LOCAL__UPSTREAMS__PROVIDER__RPC__RATE_LIMIT_RPS", "30"),
            ("CHAINMUX_CHAINS__LOCAL__UPSTREAMS__0__RPC__MAX_LAG_BLOCKS", "4"),
        ]),
    );
    let local = &config.chains[0];
    assert_eq!(local.upstreams[1].rpc.rate_limit_rps, Some(30));
    assert_eq!(local.upstreams[1].rpc.request_timeout_ms, Some(6000));
    assert_eq!(local.upstream_policy(&local.upstreams[0]).max_lag_blocks, 4);

    // A bad value set through such an override names the variable and the key.
    let var = "CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_A__RPC__BREAKER_SUCCESSES";
    let err = load_err(MINIMAL, &env(&[(var, "0")]));
    assert_problem(&err, "chains[0].upstreams[0].rpc.breaker_successes", "at least 1, got 0");
    let err = load_err(MINIMAL, &env(&[(var, "many")]));
    assert!(
        err.to_string().ends_with(&format!("expected u32 (value set by environment variable {var})")),
        "{err}"
    );
}

#[test]
fn env_override_of_missing_element_names_the_variable() {
    for var in ["CHAINMUX_CHAINS__MAINNET__START_BLOCK", "CHAINMUX_CHAINS__1__START_BLOCK"] {
        let err = load_err(MINIMAL, &env(&[(var, "5")]));
        assert!(matches!(&err, ConfigError::Override { var: v, .. } if v == var), "{err:?}");
        let rendered = err.to_string();
        assert!(
            rendered.starts_with(&format!("config/local.toml: environment variable {var}: ")),
            "{rendered}"
        );
        assert!(rendered.contains("chains has no element"), "{rendered}");
    }
    let err = load_err(MINIMAL, &env(&[("CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_B__URL", "http://x")]));
    assert!(err.to_string().contains("chains[0].upstreams has no element named \"anvil_b\""), "{err}");
}

#[test]
fn type_errors_from_overrides_name_the_variable() {
    let err = load_err(MINIMAL, &env(&[("CHAINMUX_CHAINS__LOCAL__START_BLOCK", "soon")]));
    assert_eq!(
        err.to_string(),
        "config/local.toml: chains[0].start_block: invalid type: string \"soon\", expected u64 \
         (value set by environment variable CHAINMUX_CHAINS__LOCAL__START_BLOCK)"
    );
    let err = load_err(MINIMAL, &env(&[("CHAINMUX_GATEWAY__PORT", "1")]));
    assert!(
        matches!(&err, ConfigError::Type { key, set_by: Some(var), .. }
            if key == "gateway.port" && var == "CHAINMUX_GATEWAY__PORT"),
        "{err:?}"
    );
    // An error about the enclosing table is not blamed on an override inside it.
    let text = MINIMAL.replace("kind = \"evm\"", "");
    let err = load_err(&text, &env(&[("CHAINMUX_CHAINS__0__START_BLOCK", "1")]));
    assert!(matches!(&err, ConfigError::Type { key, set_by: None, .. } if key == "chains[0]"), "{err:?}");
}

#[test]
fn redacted_hides_secrets_and_reparses() {
    let config = load_ok(FULL, &full_env());
    let text = config.redacted();

    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("SECRETKEY123"), "{text}");
    assert!(!text.contains("/v2"), "{text}");
    assert!(text.contains("postgres://app:***@db.internal:5432/chainmux?sslmode=require"), "{text}");
    assert!(text.contains("https://eth-mainnet.example.com/***"), "{text}");
    assert!(text.contains("http://127.0.0.1:8545/"), "{text}");
    // Resolved values, defaults included, are shown.
    assert!(text.contains("listen = \"0.0.0.0:9090\""), "{text}");
    assert!(text.contains("probe_interval_ms = 2000"), "{text}");

    let table: toml::Table = text.parse().expect("redacted output is TOML");
    assert_eq!(table["chains"][1]["name"].as_str(), Some("minimal"));
    // It is even a valid config, equal to the original apart from the masked URLs.
    let reparsed = load_ok(&text, &BTreeMap::new());
    assert_eq!(reparsed.gateway, config.gateway);
    assert_eq!(reparsed.chains[0].rpc, config.chains[0].rpc);
    assert_eq!(reparsed.chains[0].upstreams[1].rpc, config.chains[0].upstreams[1].rpc);
    assert_eq!(reparsed.chains[1].start_block, config.chains[1].start_block);
    // Per-upstream tables appear only where something is overridden, and unset optional
    // keys are left out rather than invented.
    assert_eq!(text.matches("[chains.upstreams.rpc]").count(), 1, "{text}");
    assert!(text.contains("rate_limit_rps = 25") && text.contains("hysteresis = 0.0"), "{text}");
    assert_eq!(text.matches("hedge_delay_ms").count(), 1, "{text}");
    assert_eq!(reparsed.redacted(), text);
}

#[test]
fn load_reads_files_and_names_them_in_errors() {
    let dir = std::env::temp_dir().join(format!("chainmux-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");

    let good = dir.join("good.toml");
    std::fs::write(&good, MINIMAL).expect("write temp file");
    let config = load(&good).expect("valid file loads");
    assert_eq!(config.chains[0].name, "local");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, MINIMAL.replace("evm", "EVM")).expect("write temp file");
    let err = load(&bad).expect_err("bad kind");
    assert!(err.to_string().starts_with(&format!("{}: chains[0].kind: ", bad.display())), "{err}");

    let missing = dir.join("missing.toml");
    let err = load(&missing).expect_err("missing file");
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!("{}: cannot read config file: ", missing.display())),
        "{err}"
    );

    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

#[test]
fn line_column_counts_characters() {
    assert_eq!(line_column("abc", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
    assert_eq!(line_column("é\né", 5), (2, 2));
    // Offsets inside a character or past the end do not panic.
    assert_eq!(line_column("é", 1), (1, 1));
    assert_eq!(line_column("ab", 10), (1, 3));
}

#[test]
fn prefix_paths() {
    assert!(is_prefix_path("chains[0].start_block", "chains[0].start_block"));
    assert!(is_prefix_path("chains", "chains[0].name"));
    assert!(is_prefix_path("gateway", "gateway.port"));
    assert!(!is_prefix_path("gateway.port", "gateway"));
    assert!(!is_prefix_path("chains[0].start", "chains[0].start_block"));
    assert!(!is_prefix_path("gateway.port", ""));
    assert!(!is_prefix_path("", "gateway"));
}

// ---- Solana chains ----

/// A Solana chain with every Solana key set, next to an EVM chain with its defaults.
const SOLANA: &str = r#"
[database]
url = "postgres://app:pw@localhost/chainmux"

[[chains]]
name = "solana-local"
kind = "solana"
genesis_hash = "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"
commitment = "finalized"
start_block = 1000
batch_size = 20
fetch_concurrency = 4
poll_interval_ms = 200
max_reorg_depth = 64
finality_confirmations = 32

[chains.rpc]
max_lag_blocks = 150

[[chains.upstreams]]
name = "node"
url = "http://127.0.0.1:8899"

[[chains.programs]]
name = "spl-token"
id = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"

[[chains.programs]]
name = "token-2022"
id = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
"#;

/// A Solana chain with only the required keys.
const SOLANA_MINIMAL: &str = r#"
[database]
url = "postgres://app:pw@localhost/chainmux"

[[chains]]
name = "sol"
kind = "solana"

[[chains.upstreams]]
name = "node"
url = "http://127.0.0.1:8899"
"#;

/// The SPL Token program id's bytes, as the Solana SDK declares them.
const SPL_TOKEN_BYTES: [u8; 32] = [
    0x06, 0xdd, 0xf6, 0xe1, 0xd7, 0x65, 0xa1, 0x93, 0xd9, 0xcb, 0xe1, 0x46, 0xce, 0xeb, 0x79, 0xac, 0x1c,
    0xb4, 0x85, 0xed, 0x5f, 0x5b, 0x37, 0x91, 0x3a, 0x8c, 0xf5, 0x85, 0x7e, 0xff, 0x00, 0xa9,
];

/// `SOLANA_MINIMAL` with `extra` appended to the `[[chains]]` entry's scalar keys.
fn solana_with_chain_keys(extra: &str) -> String {
    SOLANA_MINIMAL.replace("kind = \"solana\"\n", &format!("kind = \"solana\"\n{extra}\n"))
}

#[test]
fn solana_chain_parses_with_all_keys() {
    let config = load_ok(SOLANA, &BTreeMap::new());
    let chain = config.chain("solana-local").expect("solana chain");
    assert_eq!(chain.kind, ChainKind::Solana);
    assert_eq!(chain.chain_id, None);
    let genesis = chain.genesis_hash.expect("genesis hash");
    assert_eq!(genesis.to_string(), "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d");
    assert_eq!(&genesis.as_bytes()[..4], &[0x45, 0x29, 0x69, 0x98]);
    assert_eq!(chain.commitment, Some(Commitment::Finalized));
    assert_eq!(chain.commitment(), Commitment::Finalized);
    assert_eq!(chain.start_block, 1000);
    assert_eq!(chain.batch_size, 20);
    assert_eq!(chain.fetch_concurrency, 4);
    assert_eq!(chain.poll_interval(), Duration::from_millis(200));
    assert_eq!(chain.max_reorg_depth, 64);
    assert_eq!(chain.finality_confirmations, Some(32));
    assert_eq!(chain.rpc.max_lag_blocks, 150);
    // The EVM-only keys are not filled in on a Solana chain.
    assert_eq!((chain.use_block_receipts, chain.fetch), (None, None));

    let names: Vec<&str> = chain.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["spl-token", "token-2022"]);
    assert_eq!(chain.programs[0].id.to_bytes(), SPL_TOKEN_BYTES);
    // Token-2022 shares the first four bytes of its id with SPL Token, and nothing after.
    assert_eq!(chain.programs[1].id.as_bytes()[..4], SPL_TOKEN_BYTES[..4]);
    assert_ne!(chain.programs[1].id.as_bytes()[4..], SPL_TOKEN_BYTES[4..]);
    assert_eq!(chain.program_ids(), vec![SPL_TOKEN_BYTES, chain.programs[1].id.to_bytes()]);
    assert_eq!(chain.programs[1].id.to_string(), "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
}

#[test]
fn solana_defaults_differ_from_evm_defaults() {
    // One file with both families: each gets its own defaults.
    let text = format!("{SOLANA_MINIMAL}\n{}", &MINIMAL[MINIMAL.find("[[chains]]").expect("chains")..]);
    let config = load_ok(&text, &BTreeMap::new());
    let sol = config.chain("sol").expect("sol");
    assert_eq!(sol.batch_size, 50);
    assert_eq!(sol.poll_interval_ms, 400);
    assert_eq!(sol.commitment, Some(Commitment::Confirmed));
    assert_eq!((sol.chain_id, sol.genesis_hash), (None, None));
    assert!(sol.programs.is_empty());
    assert_eq!((sol.use_block_receipts, sol.fetch), (None, None));
    // The defaults that do not depend on the family.
    assert_eq!((sol.start_block, sol.fetch_concurrency, sol.max_reorg_depth), (0, 8, 128));
    assert_eq!(sol.rpc, RpcConfig::default());

    let evm = config.chain("local").expect("local");
    assert_eq!((evm.batch_size, evm.poll_interval_ms), (100, 1000));
    assert_eq!((evm.use_block_receipts, evm.fetch), (Some(true), Some(FetchMode::Full)));
    assert_eq!(evm.commitment, None);

    // A hand-built chain without the filled-in keys still has effective values.
    let mut bare = sol.clone();
    bare.commitment = None;
    assert_eq!(bare.commitment(), Commitment::Confirmed);
    let mut bare = evm.clone();
    (bare.use_block_receipts, bare.fetch) = (None, None);
    assert!(bare.use_block_receipts());
    assert_eq!(bare.fetch(), FetchMode::Full);
}

#[test]
fn solana_rule_violations_are_reported_at_their_keys() {
    let evm_with = |extra: &str| minimal_with_chain_keys(extra);
    let program = |name: &str, id: &str| format!("\n[[chains.programs]]\nname = \"{name}\"\nid = \"{id}\"\n");
    let token = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
    let system = "11111111111111111111111111111111";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            solana_with_chain_keys("chain_id = 101"),
            "chains[0].chain_id",
            "not used on solana chains: Solana chains are identified by genesis_hash",
        ),
        (
            solana_with_chain_keys("use_block_receipts = false"),
            "chains[0].use_block_receipts",
            "only evm chains",
        ),
        (solana_with_chain_keys("fetch = \"logs\""), "chains[0].fetch", "only evm chains have this key"),
        (evm_with(&format!("genesis_hash = \"{system}\"")), "chains[0].genesis_hash", "only solana chains"),
        (evm_with("commitment = \"confirmed\""), "chains[0].commitment", "only solana chains have this key"),
        (format!("{MINIMAL}{}", program("spl-token", token)), "chains[0].programs", "only solana chains"),
        (MINIMAL.replace("chain_id = 31337\n", ""), "chains[0].chain_id", "required on evm chains"),
        (
            format!("{SOLANA_MINIMAL}{}{}", program("token", token), program("token", system)),
            "chains[0].programs[1].name",
            "duplicate program name \"token\" (already used by chains[0].programs[0].name)",
        ),
        (
            format!("{SOLANA_MINIMAL}{}", program("Token", token)),
            "chains[0].programs[0].name",
            "invalid program name \"Token\"",
        ),
        (
            format!("{SOLANA_MINIMAL}{}{}", program("a", token), program("b", token)),
            "chains[0].programs[1].id",
            "duplicate program id TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA (already listed at chains[0].programs[0])",
        ),
    ];
    for (text, key, message) in &cases {
        let err = load_err(text, &BTreeMap::new());
        assert_problem(&err, key, message);
        assert_eq!(problems(&err).len(), 1, "{key}: {err}");
    }

    // All at once, in document order.
    let text = format!(
        "{}{}",
        solana_with_chain_keys("chain_id = 1\nbatch_size = 0\nuse_block_receipts = true\nfetch = \"full\""),
        program("x", token)
    ) + &program("x", token);
    let err = load_err(&text, &BTreeMap::new());
    let keys: Vec<&str> = problems(&err).iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "chains[0].chain_id",
            "chains[0].use_block_receipts",
            "chains[0].fetch",
            "chains[0].batch_size",
            "chains[0].programs[1].name",
            "chains[0].programs[1].id",
        ]
    );
}

#[test]
fn malformed_solana_values_are_type_errors_at_their_keys() {
    let program = |id: &str| format!("{SOLANA_MINIMAL}\n[[chains.programs]]\nname = \"p\"\nid = {id}\n");
    let cases = [
        (
            // `0` is not in the base58 alphabet.
            solana_with_chain_keys("genesis_hash = \"0eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d\""),
            "chains[0].genesis_hash",
            "invalid base58: provided string contained invalid character '0' at byte 0",
        ),
        (
            solana_with_chain_keys("genesis_hash = \"1111111111111111111111111111111\""),
            "chains[0].genesis_hash",
            "base58 decodes to 31 bytes, expected 32",
        ),
        (
            solana_with_chain_keys("genesis_hash = 5"),
            "chains[0].genesis_hash",
            "expected a base58 string of 32 bytes",
        ),
        (
            program("\"TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DAA\""),
            "chains[0].programs[0].id",
            "base58 decodes to 33 bytes, expected 32 in \"TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DAA\"",
        ),
        (program("\"\""), "chains[0].programs[0].id", "base58 decodes to 0 bytes, expected 32"),
        (
            solana_with_chain_keys("commitment = \"processed\""),
            "chains[0].commitment",
            "unknown variant `processed`",
        ),
        (
            format!("{SOLANA_MINIMAL}\n[[chains.programs]]\nname = \"p\"\n"),
            "chains[0].programs[0]",
            "missing field `id`",
        ),
        (
            format!(
                "{SOLANA_MINIMAL}\n[[chains.programs]]\nname = \"p\"\nid = \"{}\"\nlogs = true\n",
                "1".repeat(32)
            ),
            "chains[0].programs[0].logs",
            "unknown field `logs`",
        ),
    ];
    assert_type_errors(&cases);
}

#[test]
fn env_overrides_reach_solana_keys() {
    let token = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
    let text =
        format!("{SOLANA_MINIMAL}\n[[chains.programs]]\nname = \"spl-token\"\nid = \"{}\"\n", "1".repeat(32));
    let config = load_ok(
        &text,
        &env(&[
            ("CHAINMUX_CHAINS__0__COMMITMENT", "finalized"),
            ("CHAINMUX_CHAINS__SOL__GENESIS_HASH", "5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d"),
            ("CHAINMUX_CHAINS__SOL__PROGRAMS__SPL_TOKEN__ID", token),
            // An override beats the Solana default.
            ("CHAINMUX_CHAINS__SOL__BATCH_SIZE", "10"),
        ]),
    );
    let chain = &config.chains[0];
    assert_eq!(chain.commitment(), Commitment::Finalized);
    assert_eq!(
        chain.genesis_hash.map(|g| g.to_string()).as_deref(),
        Some("5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d")
    );
    assert_eq!(chain.programs[0].id.to_bytes(), SPL_TOKEN_BYTES);
    assert_eq!((chain.batch_size, chain.poll_interval_ms), (10, 400));

    // A bad value is blamed on the variable, and a key of the other family named at its key.
    let var = "CHAINMUX_CHAINS__0__COMMITMENT";
    let err = load_err(SOLANA_MINIMAL, &env(&[(var, "processed")]));
    assert!(
        matches!(&err, ConfigError::Type { key, set_by: Some(v), .. } if key == "chains[0].commitment" && v == var),
        "{err:?}"
    );
    let err = load_err(MINIMAL, &env(&[("CHAINMUX_CHAINS__LOCAL__COMMITMENT", "finalized")]));
    assert_problem(&err, "chains[0].commitment", "only solana chains have this key");
    // `programs` is addressed like `upstreams`: a chain without any has no element to set.
    let err = load_err(SOLANA_MINIMAL, &env(&[("CHAINMUX_CHAINS__SOL__PROGRAMS__X__ID", token)]));
    assert!(err.to_string().contains("chains[0].programs has no elements"), "{err}");
}

#[test]
fn redacted_solana_chain_shows_resolved_keys_and_reparses() {
    let config = load_ok(
        &SOLANA.replace("commitment = \"finalized\"\n", "").replace("batch_size = 20\n", ""),
        &BTreeMap::new(),
    );
    let text = config.redacted();
    assert!(text.contains("kind = \"solana\""), "{text}");
    assert!(text.contains("genesis_hash = \"5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d\""), "{text}");
    assert!(text.contains("commitment = \"confirmed\"") && text.contains("batch_size = 50"), "{text}");
    assert!(text.contains("[[chains.programs]]") && text.contains(SPL_TOKEN_ID_TEXT), "{text}");
    for absent in ["chain_id", "use_block_receipts", "fetch ="] {
        assert!(!text.contains(absent), "{absent} in {text}");
    }
    let reparsed = load_ok(&text, &BTreeMap::new());
    let (a, b) = (&config.chains[0], &reparsed.chains[0]);
    assert_eq!((a.genesis_hash, a.commitment, a.batch_size), (b.genesis_hash, b.commitment, b.batch_size));
    assert_eq!(a.programs, b.programs);
    assert_eq!(reparsed.redacted(), text);
}

const SPL_TOKEN_ID_TEXT: &str = "id = \"TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA\"";

#[test]
fn method_lists_parse_and_default_to_unset() {
    let config = load_ok(MINIMAL, &env(&[]));
    assert_eq!(config.chains[0].methods, MethodsConfig::default());
    assert!(config.chains[0].methods.deny.is_none(), "left out: the family's default applies");

    let text = format!("{MINIMAL}\n[chains.methods]\nallow = [\"eth_*\", \"net_version\"]\ndeny = []\n");
    let config = load_ok(&text, &env(&[]));
    let methods = &config.chains[0].methods;
    assert_eq!(methods.allow, ["eth_*", "net_version"]);
    assert_eq!(methods.deny.as_deref(), Some(&[][..]), "an explicit empty list is kept apart from none");
    // The resolved config shows the lists and reads back the same.
    let reparsed = load_ok(&config.redacted(), &env(&[]));
    assert_eq!(&reparsed.chains[0].methods, methods);

    let solana = format!("{SOLANA_MINIMAL}\n[chains.methods]\ndeny = [\"requestAirdrop\", \"*\"]\n");
    let config = load_ok(&solana, &env(&[]));
    assert_eq!(config.chains[0].methods.deny, Some(vec!["requestAirdrop".to_owned(), "*".to_owned()]));
}

#[test]
fn method_patterns_are_checked_at_their_keys() {
    let text = format!(
        "{MINIMAL}\n[chains.methods]\nallow = [\"eth_*\", \"\"]\ndeny = [\"debug_*\", \"trace *\", \"*_x\", \"a**\"]\n"
    );
    let err = load_err(&text, &env(&[]));
    assert_problem(&err, "chains[0].methods.allow[1]", "empty method pattern");
    assert_problem(&err, "chains[0].methods.deny[1]", "invalid character ' ' in method pattern \"trace *\"");
    assert_problem(&err, "chains[0].methods.deny[2]", "* may only end a method pattern");
    assert_problem(&err, "chains[0].methods.deny[3]", "* may only end a method pattern");
    assert_eq!(problems(&err).len(), 4, "{err}");

    let unknown = format!("{MINIMAL}\n[chains.methods]\nblock = [\"x\"]\n");
    let err = load_err(&unknown, &env(&[]));
    assert!(err.to_string().contains("chains[0].methods") && err.to_string().contains("block"), "{err}");
    let wrong_type = format!("{MINIMAL}\n[chains.methods]\ndeny = \"debug_*\"\n");
    let err = load_err(&wrong_type, &env(&[]));
    assert!(err.to_string().contains("chains[0].methods.deny"), "{err}");
}

#[test]
fn health_thresholds_default_per_family_and_are_checked() {
    let text = format!("{SOLANA_MINIMAL}\n{}", &MINIMAL[MINIMAL.find("[[chains]]").expect("chains")..]);
    let config = load_ok(&text, &BTreeMap::new());
    let (sol, evm) = (config.chain("sol").expect("sol"), config.chain("local").expect("local"));
    assert_eq!((evm.health_max_lag_blocks(), evm.health_max_lag_seconds), (10, 60));
    assert_eq!((sol.health_max_lag_blocks(), sol.health_max_lag_seconds), (150, 60));

    let config = load_ok(
        &minimal_with_chain_keys("health_max_lag_blocks = 0\nhealth_max_lag_seconds = 5"),
        &BTreeMap::new(),
    );
    let chain = config.chain("local").expect("local");
    assert_eq!((chain.health_max_lag_blocks(), chain.health_max_lag_seconds), (0, 5));

    let err = load_err(&minimal_with_chain_keys("health_max_lag_seconds = 0"), &BTreeMap::new());
    assert_problem(&err, "chains[0].health_max_lag_seconds", "must be at least 1, got 0");
}
