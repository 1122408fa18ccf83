//! The example configs shipped in `config/` must stay valid as the schema evolves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chainmux_config::{ChainKind, Commitment, UpstreamPolicy};

/// The example's text and its real path as origin, so ABI files it names resolve as they do for `chainmux run`.
fn example(name: &str) -> (String, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    (text, path.display().to_string())
}

#[test]
fn local_example_is_valid_with_an_empty_environment() {
    let (text, origin) = example("local.toml");
    let config =
        chainmux_config::load_with_env(&text, &origin, &BTreeMap::new()).expect("config/local.toml is valid");
    assert_eq!(config.chains.len(), 1);
    assert_eq!(config.chains[0].name, "local");
    assert_eq!(config.chains[0].chain_id, Some(31337));
    assert_eq!(config.gateway.listen, "127.0.0.1:8080");
    assert_eq!(config.chains[0].max_reorg_depth, 128, "default");
    assert_eq!(config.chains[0].finality_confirmations, None, "default: the chain's finalized tag");
    let names: Vec<&str> = config.chains[0].contracts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["demo-token", "children"]);
    let token_events: Vec<String> =
        config.chains[0].contracts[0].selected_events().iter().map(|e| e.signature()).collect();
    assert!(token_events.contains(&"Transfer(address,address,uint256)".to_owned()), "{token_events:?}");
    let factory = config.chains[0].contracts[1].factory_event().expect("factory event");
    assert_eq!(factory.signature(), "ChildCreated(address,uint256)");
}

#[test]
fn reorg_and_finality_keys_parse_and_override() {
    let (text, origin) = example("local.toml");
    let env: BTreeMap<String, String> = [
        ("CHAINMUX_CHAINS__LOCAL__MAX_REORG_DEPTH", "12"),
        ("CHAINMUX_CHAINS__LOCAL__FINALITY_CONFIRMATIONS", "3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = chainmux_config::load_with_env(&text, &origin, &env).expect("valid");
    assert_eq!(config.chains[0].max_reorg_depth, 12);
    assert_eq!(config.chains[0].finality_confirmations, Some(3));
}

#[test]
fn production_example_is_valid_and_needs_its_secrets() {
    let (text, origin) = example("production.example.toml");
    let env: BTreeMap<String, String> = [
        ("DATABASE_URL", "postgres://chainmux:pw@db:5432/chainmux"),
        ("ALCHEMY_KEY", "alchemy-secret"),
        ("INFURA_KEY", "infura-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = chainmux_config::load_with_env(&text, &origin, &env).expect("production example is valid");
    let redacted = config.redacted();
    assert!(
        !redacted.contains("alchemy-secret")
            && !redacted.contains("infura-secret")
            && !redacted.contains(":pw@")
    );

    // The redacted form is itself a valid config with the same pool settings.
    let reparsed = chainmux_config::load_with_env(&redacted, &origin, &BTreeMap::new())
        .expect("redacted production example is valid");
    for (chain, again) in config.chains.iter().zip(&reparsed.chains) {
        assert_eq!(chain.rpc, again.rpc);
        for (upstream, up_again) in chain.upstreams.iter().zip(&again.upstreams) {
            assert_eq!(chain.upstream_policy(upstream), again.upstream_policy(up_again));
        }
    }

    let err =
        chainmux_config::load_with_env(&text, &origin, &BTreeMap::new()).expect_err("secrets are required");
    let message = err.to_string();
    assert!(message.contains("DATABASE_URL") && message.contains("ALCHEMY_KEY"), "{message}");
}

#[test]
fn production_example_upstream_policies() {
    let (text, origin) = example("production.example.toml");
    let env: BTreeMap<String, String> =
        [("DATABASE_URL", "postgres://db/chainmux"), ("ALCHEMY_KEY", "a"), ("INFURA_KEY", "i")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let config = chainmux_config::load_with_env(&text, &origin, &env).expect("production example is valid");
    let ms = Duration::from_millis;
    let policy = |chain: &str, upstream: &str| {
        let chain = config.chain(chain).expect("chain");
        let upstream = chain.upstreams.iter().find(|u| u.name == upstream).expect("upstream");
        chain.upstream_policy(upstream)
    };

    let ethereum = config.chain("ethereum").expect("ethereum");
    assert_eq!(ethereum.rpc.deadline(), Duration::from_secs(20));
    // What every ethereum upstream gets from [chains.rpc] (and the built-in defaults).
    let ethereum_default = UpstreamPolicy {
        request_timeout: ms(8000),
        max_lag_blocks: 5,
        hedge_delay: None,
        hedge_quantile: 0.95,
        hedge_delay_min: ms(50),
        hedge_delay_max: ms(2000),
        breaker_failures: 5,
        breaker_window: ms(30_000),
        breaker_cooldown: ms(15_000),
        breaker_successes: 2,
        rate_limit_rps: None,
        rate_limit_burst: None,
        rate_limit_cooldown: ms(1000),
    };
    assert_eq!(policy("ethereum", "infura"), ethereum_default);
    assert_eq!(policy("ethereum", "own-node"), ethereum_default);
    // The paid provider is rate limited; everything else is inherited.
    assert_eq!(
        policy("ethereum", "alchemy"),
        UpstreamPolicy {
            rate_limit_rps: Some(25),
            rate_limit_burst: Some(50),
            rate_limit_cooldown: ms(2000),
            ..ethereum_default
        }
    );

    // base has no [chains.rpc]: built-in defaults, except for the public endpoint's overrides.
    let base = config.chain("base").expect("base");
    assert_eq!(base.rpc.deadline(), Duration::from_secs(30));
    let base_default = UpstreamPolicy {
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
    };
    assert_eq!(policy("base", "alchemy"), base_default);
    assert_eq!(
        policy("base", "public"),
        UpstreamPolicy { request_timeout: ms(15_000), breaker_failures: 3, ..base_default }
    );
}

/// The environment every example needs: the secrets of the production example, and the Solana URLs of its
/// commented-out chain.
fn example_env() -> BTreeMap<String, String> {
    [
        ("DATABASE_URL", "postgres://db/chainmux"),
        ("ALCHEMY_KEY", "a"),
        ("INFURA_KEY", "i"),
        ("SOLANA_PRIMARY_URL", "https://solana-a.example.com/?api-key=KEY1"),
        ("SOLANA_SECONDARY_URL", "https://solana-b.example.com/KEY2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[test]
fn every_example_file_is_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("config/ is readable")
        .map(|entry| entry.expect("directory entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in names {
        let (text, origin) = example(&name);
        let config = chainmux_config::load_with_env(&text, &origin, &example_env())
            .unwrap_or_else(|err| panic!("{origin} is invalid:\n{err}"));
        // check-config's output is a valid config too.
        chainmux_config::load_with_env(&config.redacted(), &origin, &BTreeMap::new())
            .unwrap_or_else(|err| panic!("redacted {origin} is invalid:\n{err}"));
    }
}

#[test]
fn solana_local_example_is_valid_with_an_empty_environment() {
    let (text, origin) = example("solana-local.toml");
    let config = chainmux_config::load_with_env(&text, &origin, &BTreeMap::new())
        .expect("config/solana-local.toml is valid");
    assert_eq!(config.chains.len(), 1);
    let chain = &config.chains[0];
    assert_eq!((chain.name.as_str(), chain.kind), ("solana-local", ChainKind::Solana));
    assert_eq!(chain.upstreams[0].url.expose_secret(), "http://127.0.0.1:8899");
    assert_eq!(chain.commitment(), Commitment::Confirmed);
    assert_eq!((chain.chain_id, chain.genesis_hash), (None, None));
    assert_eq!((chain.batch_size, chain.poll_interval_ms), (50, 400), "Solana defaults");
    assert_eq!(chain.programs.len(), 1);
    assert_eq!(chain.programs[0].name, "spl-token");
    assert_eq!(chain.programs[0].id.to_string(), "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
    assert_eq!(chain.programs[0].id.as_bytes()[..4], [0x06, 0xdd, 0xf6, 0xe1]);

    let env: BTreeMap<String, String> = [("CHAINMUX_CHAINS__SOLANA_LOCAL__COMMITMENT", "finalized")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let config = chainmux_config::load_with_env(&text, &origin, &env).expect("valid");
    assert_eq!(config.chains[0].commitment(), Commitment::Finalized);
}

/// The production example with its commented-out Solana chain uncommented: every line from the block's
/// `# [[chains]]` on loses one leading `# ` (or a lone `#`), so the block's own comments stay comments.
fn production_with_solana() -> (String, String) {
    let (text, origin) = example("production.example.toml");
    let start = text.find("# [[chains]]\n# name = \"solana\"").expect("commented Solana block");
    let block: Vec<&str> = text[start..]
        .lines()
        .map(|line| line.strip_prefix("# ").or_else(|| line.strip_prefix('#')).unwrap_or(line))
        .collect();
    (format!("{}{}\n", &text[..start], block.join("\n")), origin)
}

#[test]
fn production_example_solana_block_is_valid_when_uncommented() {
    let (text, origin) = production_with_solana();
    let config = chainmux_config::load_with_env(&text, &origin, &example_env()).expect("valid with Solana");
    let names: Vec<&str> = config.chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ethereum", "base", "solana"]);
    let solana = config.chain("solana").expect("solana");
    assert_eq!(solana.kind, ChainKind::Solana);
    assert_eq!(
        solana.genesis_hash.map(|g| g.to_string()).as_deref(),
        Some("5eykt4UsFv8P8NJdTREpY1vzqKqZKvdpKuc147dw2N9d")
    );
    assert_eq!(solana.commitment(), Commitment::Confirmed);
    assert_eq!(solana.rpc.max_lag_blocks, 50);
    let upstreams: Vec<&str> = solana.upstreams.iter().map(|u| u.url.expose_secret()).collect();
    assert_eq!(
        upstreams,
        ["https://solana-a.example.com/?api-key=KEY1", "https://solana-b.example.com/KEY2"]
    );
    let programs: Vec<&str> = solana.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(programs, ["token-2022", "memo"]);
    assert_eq!(solana.upstream_policy(&solana.upstreams[0]).rate_limit_burst, Some(100));

    let redacted = config.redacted();
    assert!(!redacted.contains("KEY1") && !redacted.contains("KEY2"), "{redacted}");

    // Its URLs come from the environment only.
    let mut env = example_env();
    env.remove("SOLANA_PRIMARY_URL");
    let err = chainmux_config::load_with_env(&text, &origin, &env).expect_err("URL required");
    assert!(err.to_string().contains("SOLANA_PRIMARY_URL"), "{err}");
}
