//! The example configs shipped in `config/` must stay valid as the schema evolves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chainmux_config::UpstreamPolicy;

fn example(name: &str) -> (String, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    (text, format!("config/{name}"))
}

#[test]
fn local_example_is_valid_with_an_empty_environment() {
    let (text, origin) = example("local.toml");
    let config =
        chainmux_config::load_with_env(&text, &origin, &BTreeMap::new()).expect("config/local.toml is valid");
    assert_eq!(config.chains.len(), 1);
    assert_eq!(config.chains[0].name, "local");
    assert_eq!(config.chains[0].chain_id, 31337);
    assert_eq!(config.gateway.listen, "127.0.0.1:8080");
    assert_eq!(config.chains[0].max_reorg_depth, 128, "default");
    assert_eq!(config.chains[0].finality_confirmations, None, "default: the chain's finalized tag");
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
