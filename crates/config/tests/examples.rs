//! The example configs shipped in `config/` must stay valid as the schema evolves.

use std::collections::BTreeMap;
use std::path::PathBuf;

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

    let err =
        chainmux_config::load_with_env(&text, &origin, &BTreeMap::new()).expect_err("secrets are required");
    let message = err.to_string();
    assert!(message.contains("DATABASE_URL") && message.contains("ALCHEMY_KEY"), "{message}");
}
