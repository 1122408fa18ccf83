//! End-to-end tests of the loading pipeline through the public API.

use std::time::Duration;

use super::*;

const FILE: &str = "config/local.toml";

const FULL: &str = r#"
[database]
url = "${DATABASE_URL}"
max_connections = 20

[gateway]
listen = "0.0.0.0:9090"
max_body_bytes = 2048
max_batch_size = 50
max_page_size = 500
drain_delay_ms = 250

[[chains]]
name = "local"
kind = "evm"
chain_id = 31337
start_block = 12
batch_size = 200
fetch_concurrency = 4
poll_interval_ms = 500
use_block_receipts = false

[chains.rpc]
request_timeout_ms = 3000
max_attempts = 2
backoff_min_ms = 10
backoff_max_ms = 100
probe_interval_ms = 60

[[chains.upstreams]]
name = "anvil-a"
url = "http://127.0.0.1:8545"

[[chains.upstreams]]
name = "provider"
url = "https://eth-mainnet.example.com/v2/${PROVIDER_KEY}"

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
            max_page_size: 500,
            drain_delay_ms: 250,
        }
    );
    assert_eq!(config.gateway.drain_delay(), Duration::from_millis(250));
    assert_eq!(config.chains.len(), 2);

    let local = config.chain("local").expect("local chain");
    assert_eq!(local.kind, ChainKind::Evm);
    assert_eq!(local.chain_id, 31337);
    assert_eq!(local.start_block, 12);
    assert_eq!(local.batch_size, 200);
    assert_eq!(local.fetch_concurrency, 4);
    assert_eq!(local.poll_interval(), Duration::from_millis(500));
    assert!(!local.use_block_receipts);
    assert_eq!(
        local.rpc,
        RpcConfig {
            request_timeout_ms: 3000,
            max_attempts: 2,
            backoff_min_ms: 10,
            backoff_max_ms: 100,
            probe_interval_ms: 60
        }
    );
    assert_eq!(local.upstreams.len(), 2);
    assert_eq!(local.upstreams[0].name, "anvil-a");
    assert_eq!(local.upstreams[0].url.expose_secret(), "http://127.0.0.1:8545");
    assert_eq!(local.upstreams[1].url.expose_secret(), "https://eth-mainnet.example.com/v2/SECRETKEY123");

    // Every optional chain key takes its documented default.
    let minimal = config.chain("minimal").expect("minimal chain");
    assert_eq!(minimal.chain_id, 1);
    assert_eq!(minimal.start_block, 0);
    assert_eq!(minimal.batch_size, 100);
    assert_eq!(minimal.fetch_concurrency, 8);
    assert_eq!(minimal.poll_interval_ms, 1000);
    assert!(minimal.use_block_receipts);
    assert_eq!(minimal.rpc.request_timeout_ms, 10_000);
    assert_eq!(minimal.rpc.max_attempts, 4);
    assert_eq!(minimal.rpc.backoff_min_ms, 50);
    assert_eq!(minimal.rpc.backoff_max_ms, 2000);
    assert_eq!(minimal.rpc.probe_interval_ms, 2000);
    assert!(config.chain("absent").is_none());
}

#[test]
fn omitted_sections_take_defaults() {
    let config = load_ok(MINIMAL, &BTreeMap::new());
    assert_eq!(config.database.max_connections, 10);
    assert_eq!(config.gateway.listen, "127.0.0.1:8080");
    assert_eq!(config.gateway.max_body_bytes, 1_048_576);
    assert_eq!(config.gateway.max_batch_size, 100);
    assert_eq!(config.gateway.max_page_size, 1000);
    assert_eq!(config.gateway.drain_delay_ms, 1000);
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
        ("gateway.max_page_size", "between 1 and 10000", "10001"),
        ("chains[0].name", "invalid chain name \"Local\"", "Local"),
        ("chains[0].batch_size", "between 1 and 10000", "0"),
        ("chains[0].fetch_concurrency", "between 1 and 256", "257"),
        ("chains[0].poll_interval_ms", "at least 10, got 9", "9"),
        ("chains[0].rpc.request_timeout_ms", "at least 1, got 0", "0"),
        ("chains[0].rpc.max_attempts", "between 1 and 20, got 21", "21"),
        ("chains[0].rpc.probe_interval_ms", "at least 50", "49"),
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
        (MINIMAL.replace("\"evm\"", "\"solana\""), "chains[0].kind", "unknown variant `solana`"),
        (MINIMAL.replace("[[chains]]", "[chains]"), "chains", "expected a sequence"),
        (
            minimal_with_chain_keys("[chains.rpc]\nmax_attempts = 1.5"),
            "chains[0].rpc.max_attempts",
            "expected u32",
        ),
    ];
    for (text, key, message) in cases {
        let err = load_err(&text, &BTreeMap::new());
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
    let err = load_err(&MINIMAL.replace("chain_id = 31337", ""), &BTreeMap::new());
    assert_eq!(err.to_string(), "config/local.toml: chains[0]: missing field `chain_id`");
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
    assert!(!config.chains[1].use_block_receipts);
    assert_eq!(config.chains[1].rpc.max_attempts, 9);
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
    let text = MINIMAL.replace("chain_id = 31337", "");
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
    assert_eq!(reparsed.chains[1].start_block, config.chains[1].start_block);
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
