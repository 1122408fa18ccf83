//! `[[chains.contracts]]` and the EVM `eth_getLogs` keys: ABI files next to a config file in a temp directory,
//! loaded through the public API.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy::json_abi::{Event, JsonAbi};

use super::*;

/// An ERC-20 subset: one function and two events.
const TOKEN_ABI: &str = r#"[
  {"type": "function", "name": "transfer", "stateMutability": "nonpayable",
   "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
   "outputs": [{"name": "", "type": "bool"}]},
  {"type": "event", "name": "Transfer", "anonymous": false, "inputs": [
    {"name": "from", "type": "address", "indexed": true},
    {"name": "to", "type": "address", "indexed": true},
    {"name": "value", "type": "uint256", "indexed": false}]},
  {"type": "event", "name": "Approval", "anonymous": false, "inputs": [
    {"name": "owner", "type": "address", "indexed": true},
    {"name": "spender", "type": "address", "indexed": true},
    {"name": "value", "type": "uint256", "indexed": false}]}
]"#;

/// Two overloads of `Deposit`, an event without inputs and an anonymous one.
const VAULT_ABI: &str = r#"[
  {"type": "event", "name": "Deposit", "anonymous": false, "inputs": [
    {"name": "user", "type": "address", "indexed": true},
    {"name": "amount", "type": "uint256", "indexed": false}]},
  {"type": "event", "name": "Deposit", "anonymous": false, "inputs": [
    {"name": "user", "type": "address", "indexed": true},
    {"name": "amount", "type": "uint256", "indexed": false},
    {"name": "ref", "type": "bytes32", "indexed": false}]},
  {"type": "event", "name": "Paused", "anonymous": false, "inputs": []},
  {"type": "event", "name": "Note", "anonymous": true, "inputs": [
    {"name": "x", "type": "uint256", "indexed": false}]}
]"#;

/// A factory announcing pools, with an overloaded `Created` event.
const FACTORY_ABI: &str = r#"[
  {"type": "event", "name": "PoolCreated", "anonymous": false, "inputs": [
    {"name": "token0", "type": "address", "indexed": true},
    {"name": "token1", "type": "address", "indexed": true},
    {"name": "fee", "type": "uint24", "indexed": true},
    {"name": "pool", "type": "address", "indexed": false}]},
  {"type": "event", "name": "Created", "anonymous": false, "inputs": [
    {"name": "child", "type": "address", "indexed": false}]},
  {"type": "event", "name": "Created", "anonymous": false, "inputs": [
    {"name": "child", "type": "address", "indexed": false},
    {"name": "salt", "type": "uint256", "indexed": false}]}
]"#;

/// keccak256("Transfer(address,address,uint256)"), the well-known ERC-20 topic.
const TRANSFER_TOPIC: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// A Hardhat artefact: the ABI under `"abi"` among other keys.
fn hardhat_artefact(abi: &str) -> String {
    format!(
        r#"{{"_format": "hh-sol-artifact-1", "contractName": "Token", "sourceName": "contracts/Token.sol",
            "abi": {abi}, "bytecode": "0x6080", "deployedBytecode": "0x6080", "linkReferences": {{}}}}"#
    )
}

/// A Foundry artefact: bytecode objects and metadata next to `"abi"`.
fn foundry_artefact(abi: &str) -> String {
    format!(
        r#"{{"abi": {abi}, "bytecode": {{"object": "0x6080", "sourceMap": "", "linkReferences": {{}}}},
            "methodIdentifiers": {{"transfer(address,uint256)": "a9059cbb"}}, "id": 3}}"#
    )
}

/// A temp directory holding a config file and its ABI files; removed on drop.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chainmux-config-contracts-{}-{n}", std::process::id()));
        // Left over from a killed run with a reused pid.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self { dir }
    }

    /// A fixture with `abi/Token.json`, `abi/Vault.json` and `abi/Factory.json`.
    fn with_abis() -> Self {
        let fixture = Self::new();
        fixture.write("abi/Token.json", TOKEN_ABI);
        fixture.write("abi/Vault.json", VAULT_ABI);
        fixture.write("abi/Factory.json", FACTORY_ABI);
        fixture
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.dir.join(relative);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("create dir");
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("chainmux.toml")
    }

    fn origin(&self) -> String {
        self.config_path().display().to_string()
    }

    /// `MINIMAL` plus `contracts` (TOML of `[[chains.contracts]]` tables), written and loaded with `load`.
    fn load(&self, contracts: &str) -> Result<Config> {
        let path = self.write("chainmux.toml", &format!("{MINIMAL}\n{contracts}"));
        load(&path)
    }

    fn load_ok(&self, contracts: &str) -> Config {
        self.load(contracts).unwrap_or_else(|err| panic!("expected a valid config, got:\n{err}"))
    }

    fn load_err(&self, contracts: &str) -> ConfigError {
        match self.load(contracts) {
            Ok(config) => panic!("expected an error, got {config:#?}"),
            Err(err) => err,
        }
    }

    /// Loads `MINIMAL` plus `contracts` and returns its problems as `(key, message)`, checking that each is
    /// rendered on its own line as `<file>: <key>: <message>`.
    fn problems(&self, contracts: &str) -> Vec<(String, String)> {
        let err = self.load_err(contracts);
        let ConfigError::Invalid { file, problems } = &err else { panic!("expected Invalid, got {err:?}") };
        assert_eq!(file, &self.origin());
        let rendered = err.to_string();
        for p in problems {
            let line = format!("{}: {}: {}", self.origin(), p.key, p.message);
            assert!(rendered.lines().any(|l| l == line), "{line:?} not in:\n{rendered}");
        }
        problems.iter().map(|p| (p.key.clone(), p.message.clone())).collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The problems of an [`ConfigError::Invalid`].
fn all_problems(err: &ConfigError) -> &[Problem] {
    match err {
        ConfigError::Invalid { problems, .. } => problems,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn signatures(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::signature).collect()
}

fn bytes20(byte: u8) -> [u8; 20] {
    [byte; 20]
}

#[test]
fn static_entries_resolve_their_abi_files() {
    let fixture = Fixture::with_abis();
    let config = fixture.load_ok(
        r#"
[[chains.contracts]]
name = "token"
abi = "abi/Token.json"
address = "0xAAaaAAaaAAaaAAaaAAaaAAaaAAaaAAaaAAaaAAaa"

[[chains.contracts]]
name = "stables"
abi = "abi/Token.json"
address = ["0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222"]
events = ["Transfer"]
start_block = 5
"#,
    );
    let chain = &config.chains[0];
    assert_eq!(chain.contracts.len(), 2);

    let token = chain.contract("token").expect("token");
    assert!(token.is_resolved());
    assert_eq!(token.address, Some(AddressList::One(EvmAddress::new(bytes20(0xaa)))));
    assert_eq!(token.addresses(), vec![bytes20(0xaa)]);
    assert_eq!(token.factory_event(), None);
    // Every event of the ABI, in JsonAbi's order (by name); the function is not an event.
    assert_eq!(
        signatures(&token.selected_events()),
        ["Approval(address,address,uint256)", "Transfer(address,address,uint256)"]
    );
    let abi = token.abi_json();
    assert_eq!(abi.functions().map(|f| f.signature()).collect::<Vec<_>>(), ["transfer(address,uint256)"]);
    let transfer = &abi.event("Transfer").expect("Transfer")[0];
    assert_eq!(transfer.selector().to_string(), TRANSFER_TOPIC);
    let indexed: Vec<(&str, bool)> = transfer.inputs.iter().map(|i| (i.name.as_str(), i.indexed)).collect();
    assert_eq!(indexed, [("from", true), ("to", true), ("value", false)]);
    // Unset start_block: the chain's.
    assert_eq!(token.start_block, None);
    assert_eq!(token.start_block_or(7), 7);

    let stables = chain.contract("stables").expect("stables");
    assert_eq!(stables.addresses(), vec![bytes20(0x11), bytes20(0x22)]);
    assert_eq!(signatures(&stables.selected_events()), ["Transfer(address,address,uint256)"]);
    assert_eq!(stables.start_block_or(7), 5);
    // The whole ABI stays available for decoding.
    assert_eq!(stables.abi_json().events().count(), 2);
}

#[test]
fn events_are_selected_by_name_and_by_signature() {
    let fixture = Fixture::with_abis();
    let selected = |events: &str| {
        let config = fixture.load_ok(&format!(
            "[[chains.contracts]]\nname = \"vault\"\nabi = \"abi/Vault.json\"\n\
             address = \"0x3333333333333333333333333333333333333333\"\nevents = {events}\n"
        ));
        signatures(&config.chains[0].contracts[0].selected_events())
    };
    let deposit = "Deposit(address,uint256)";
    let deposit_ref = "Deposit(address,uint256,bytes32)";
    // A name selects every overload; a signature exactly one.
    assert_eq!(selected(r#"["Deposit"]"#), [deposit, deposit_ref]);
    assert_eq!(selected(r#"["Deposit(address,uint256,bytes32)"]"#), [deposit_ref]);
    assert_eq!(selected(r#"["Deposit(address,uint256)", "Paused"]"#), [deposit, "Paused()"]);
    // Written with spaces and the `uint` alias, a signature still finds its event.
    assert_eq!(selected(r#"["Deposit(address, uint)"]"#), [deposit]);
    // Overlapping entries select each event once, in ABI order.
    assert_eq!(
        selected(r#"["Paused", "Deposit", "Deposit(address,uint256)"]"#),
        [deposit, deposit_ref, "Paused()"]
    );
    // Anonymous events are selectable like the others.
    assert_eq!(selected(r#"["Note"]"#), ["Note(uint256)"]);
    let config = fixture.load_ok(
        "[[chains.contracts]]\nname = \"vault\"\nabi = \"abi/Vault.json\"\n\
         address = \"0x3333333333333333333333333333333333333333\"\nevents = [\"Note\"]\n",
    );
    assert!(config.chains[0].contracts[0].selected_events()[0].anonymous);
}

#[test]
fn factory_entries_resolve_their_event() {
    let fixture = Fixture::with_abis();
    let config = fixture.load_ok(
        r#"
[[chains.contracts]]
name = "declared"
abi = "abi/Token.json"
factory = { address = "0x4444444444444444444444444444444444444444", event = "event ChildCreated(address indexed child, uint256 salt)", parameter = "child" }

[[chains.contracts]]
name = "by-name"
abi = "abi/Vault.json"
events = ["Deposit"]
start_block = 100
factory = { address = "0x5555555555555555555555555555555555555555", event = "PoolCreated", parameter = "pool", abi = "abi/Factory.json" }

[[chains.contracts]]
name = "by-signature"
abi = "abi/Token.json"
[chains.contracts.factory]
address = "0x6666666666666666666666666666666666666666"
event = "Created(address,uint256)"
parameter = "child"
abi = "abi/Factory.json"
"#,
    );
    let chain = &config.chains[0];

    let declared = chain.contract("declared").expect("declared");
    let factory = declared.factory.as_ref().expect("factory");
    assert_eq!(factory.address.to_bytes(), bytes20(0x44));
    assert_eq!(factory.abi, None);
    assert!(declared.addresses().is_empty());
    let event = declared.factory_event().expect("factory event");
    assert_eq!(event.full_signature(), "event ChildCreated(address indexed child, uint256 salt)");
    assert!(!event.anonymous);
    // The entry's own ABI describes the children.
    assert_eq!(declared.selected_events().len(), 2);

    let by_name = chain.contract("by-name").expect("by-name");
    let event = by_name.factory_event().expect("factory event");
    assert_eq!(
        event.full_signature(),
        "event PoolCreated(address indexed token0, address indexed token1, uint24 indexed fee, address pool)"
    );
    assert_eq!(
        signatures(&by_name.selected_events()),
        ["Deposit(address,uint256)", "Deposit(address,uint256,bytes32)"]
    );
    assert_eq!(by_name.start_block_or(0), 100);
    // The children's ABI, not the factory's.
    assert!(by_name.abi_json().event("PoolCreated").is_none());

    // A bare signature takes the input names from the factory ABI's event of that signature.
    let by_signature = chain.contract("by-signature").expect("by-signature");
    let event = by_signature.factory_event().expect("factory event");
    assert_eq!(event.full_signature(), "event Created(address child, uint256 salt)");
}

#[test]
fn artefact_objects_are_read_for_their_abi() {
    let fixture = Fixture::new();
    fixture.write("out/Token.sol/Token.json", &foundry_artefact(TOKEN_ABI));
    fixture.write("artifacts/Token.json", &hardhat_artefact(TOKEN_ABI));
    let config = fixture.load_ok(
        r#"
[[chains.contracts]]
name = "foundry"
abi = "out/Token.sol/Token.json"
address = "0x1111111111111111111111111111111111111111"

[[chains.contracts]]
name = "hardhat"
abi = "artifacts/Token.json"
address = "0x2222222222222222222222222222222222222222"
"#,
    );
    let want: JsonAbi = serde_json::from_str(TOKEN_ABI).expect("plain ABI");
    for contract in &config.chains[0].contracts {
        assert_eq!(contract.abi_json(), &want, "{}", contract.name);
        assert_eq!(contract.selected_events().len(), 2, "{}", contract.name);
    }
}

#[test]
fn abi_paths_are_relative_to_the_config_file() {
    let fixture = Fixture::with_abis();
    // The test's working directory is the crate, not the fixture: only the config's directory finds the file.
    assert!(!Path::new("abi/Token.json").exists());
    let contracts = "[[chains.contracts]]\nname = \"token\"\nabi = \"abi/Token.json\"\n\
                     address = \"0x1111111111111111111111111111111111111111\"\n";
    let text = format!("{MINIMAL}\n{contracts}");
    let config = load_with_env(&text, &fixture.origin(), &BTreeMap::new()).expect("relative to origin");
    assert!(config.chains[0].contracts[0].is_resolved());
    // Without a directory in the origin, the path is relative to the working directory.
    let err =
        load_with_env(&text, "chainmux.toml", &BTreeMap::new()).expect_err("not in the working directory");
    assert!(
        err.to_string().starts_with("chainmux.toml: chains[0].contracts[0].abi: cannot read ABI file "),
        "{err}"
    );
    // An absolute path is used as is.
    let absolute = fixture.dir.join("abi/Token.json").display().to_string();
    let text = text.replace("\"abi/Token.json\"", &format!("{absolute:?}"));
    load_with_env(&text, "elsewhere/chainmux.toml", &BTreeMap::new()).expect("absolute path");
}

/// A contract entry with `address` and `extra` lines.
fn entry(name: &str, abi: &str, extra: &str) -> String {
    format!(
        "[[chains.contracts]]\nname = \"{name}\"\nabi = \"{abi}\"\n\
         address = \"0x1111111111111111111111111111111111111111\"\n{extra}\n"
    )
}

/// A factory entry over `abi/Token.json` with the given factory table body.
fn factory_entry(factory: &str) -> String {
    format!(
        "[[chains.contracts]]\nname = \"pools\"\nabi = \"abi/Token.json\"\n[chains.contracts.factory]\n\
         address = \"0x4444444444444444444444444444444444444444\"\n{factory}\n"
    )
}

#[test]
fn each_contract_problem_is_reported_at_its_key() {
    let fixture = Fixture::with_abis();
    fixture.write("abi/NotJson.json", "not json at all");
    fixture.write("abi/Broken.json", r#"[{"type": "evnt", "name": "X", "inputs": []}]"#);
    fixture.write(
        "abi/Undecodable.json",
        r#"[{"type": "event", "name": "X", "anonymous": false, "inputs": [{"name": "a", "type": "uint7x", "indexed": false}]}]"#,
    );
    fixture.write("abi/NoAbiKey.json", r#"{"contractName": "Token", "bytecode": "0x00"}"#);
    fixture.write(
        "abi/Functions.json",
        r#"[{"type": "function", "name": "f", "inputs": [], "outputs": [], "stateMutability": "view"}]"#,
    );
    fixture.write("abi/Empty.json", "[]");

    let c = "chains[0].contracts[0]";
    let cases: Vec<(String, String, &str)> = vec![
        (entry("Token", "abi/Token.json", ""), format!("{c}.name"), "invalid contract name \"Token\""),
        (
            format!("{}{}", entry("token", "abi/Token.json", ""), entry("token", "abi/Token.json", "")),
            "chains[0].contracts[1].name".into(),
            "duplicate contract name \"token\" (already used by chains[0].contracts[0].name)",
        ),
        (
            entry("token", "abi/Missing.json", ""),
            format!("{c}.abi"),
            "cannot read ABI file \"abi/Missing.json\": No such file or directory",
        ),
        (entry("token", "abi", ""), format!("{c}.abi"), "cannot read ABI file \"abi\": Is a directory"),
        (
            entry("token", "abi/NotJson.json", ""),
            format!("{c}.abi"),
            "\"abi/NotJson.json\" is not a JSON ABI: expected a JSON array of ABI items, or an artefact object",
        ),
        (
            entry("token", "abi/Broken.json", ""),
            format!("{c}.abi"),
            "\"abi/Broken.json\" is not a JSON ABI: unknown variant `evnt`",
        ),
        (
            entry("token", "abi/Undecodable.json", ""),
            format!("{c}.abi"),
            "event X(uint7x a) cannot be decoded: ",
        ),
        (entry("token", "abi/NoAbiKey.json", ""), format!("{c}.abi"), "the object has no \"abi\" key"),
        (entry("token", "abi/Functions.json", ""), format!("{c}.abi"), "the ABI has no events"),
        (entry("token", "abi/Empty.json", ""), format!("{c}.abi"), "the ABI has no events"),
        (
            entry("token", "abi/Empty.json", "events = [\"Transfer\"]"),
            format!("{c}.events[0]"),
            "no event \"Transfer\" in the ABI (it has none)",
        ),
        (
            entry("token", "abi/Token.json", "events = [\"Transfer\", \"Foo\"]"),
            format!("{c}.events[1]"),
            "no event \"Foo\" in the ABI (it has: Approval, Transfer)",
        ),
        (
            entry("token", "abi/Token.json", "events = [\"Transfer(address,uint256)\"]"),
            format!("{c}.events[0]"),
            "no event \"Transfer(address,uint256)\" in the ABI (it has: Approval(address,address,uint256), \
             Transfer(address,address,uint256))",
        ),
        (
            entry("token", "abi/Token.json", "events = [\"transfer\"]"),
            format!("{c}.events[0]"),
            "no event \"transfer\" in the ABI",
        ),
        (
            entry("token", "abi/Token.json", "events = []"),
            format!("{c}.events"),
            "lists no event; leave the key out to index every event of the ABI",
        ),
        (
            entry("token", "abi/Token.json", "").replace("address = \"0x1111111111111111111111111111111111111111\"\n", ""),
            format!("{c}.address"),
            "set address or factory: one of them is required",
        ),
        (
            entry(
                "token",
                "abi/Token.json",
                "factory = { address = \"0x4444444444444444444444444444444444444444\", event = \"Transfer\", parameter = \"to\" }",
            ),
            format!("{c}.address"),
            "set address or factory, not both",
        ),
        (
            entry("token", "abi/Token.json", "").replace(
                "address = \"0x1111111111111111111111111111111111111111\"",
                "address = []",
            ),
            format!("{c}.address"),
            "lists no address; give at least one",
        ),
        (
            entry("token", "abi/Token.json", "").replace(
                "address = \"0x1111111111111111111111111111111111111111\"",
                "address = [\"0xabcdefabcdefabcdefabcdefabcdefabcdefabcd\", \"0x1111111111111111111111111111111111111111\", \
                 \"0xABCDEFabcdefABCDEFabcdefABCDEFabcdefABCD\"]",
            ),
            format!("{c}.address[2]"),
            "duplicate address 0xabcdefabcdefabcdefabcdefabcdefabcdefabcd (already listed at chains[0].contracts[0].address[0])",
        ),
        (
            factory_entry("event = \"ChildCreated(address child\"\nparameter = \"child\""),
            format!("{c}.factory.event"),
            "cannot parse the event declaration \"ChildCreated(address child\": expected `)` at character 27",
        ),
        (
            factory_entry("event = \"PoolCreated\"\nparameter = \"pool\""),
            format!("{c}.factory.event"),
            "no event \"PoolCreated\" in the ABI (it has: Approval, Transfer)",
        ),
        (
            factory_entry("event = \"ChildCreated\"\nparameter = \"child\"\nabi = \"abi/Factory.json\""),
            format!("{c}.factory.event"),
            "no event \"ChildCreated\" in the factory ABI (it has: Created, PoolCreated)",
        ),
        (
            factory_entry("event = \"Created\"\nparameter = \"child\"\nabi = \"abi/Factory.json\""),
            format!("{c}.factory.event"),
            "\"Created\" is overloaded in the factory ABI (event Created(address child); \
             event Created(address child, uint256 salt)); write the declaration of the one you mean",
        ),
        (
            factory_entry("event = \"PoolCreated\"\nparameter = \"child\"\nabi = \"abi/Factory.json\""),
            format!("{c}.factory.parameter"),
            "PoolCreated has no input \"child\" (its inputs: token0, token1, fee, pool)",
        ),
        (
            factory_entry("event = \"PoolCreated\"\nparameter = \"fee\"\nabi = \"abi/Factory.json\""),
            format!("{c}.factory.parameter"),
            "\"fee\" is a uint24 input of PoolCreated; it must be an address",
        ),
        (
            factory_entry("event = \"ChildCreated(address indexed child, uint256 salt)\"\nparameter = \"salt\""),
            format!("{c}.factory.parameter"),
            "\"salt\" is a uint256 input of ChildCreated; it must be an address",
        ),
        (
            // A bare signature no ABI knows: its inputs have no names to find the parameter by.
            factory_entry("event = \"ChildCreated(address,uint256)\"\nparameter = \"child\""),
            format!("{c}.factory.parameter"),
            "ChildCreated has no input \"child\" (its inputs: unnamed address #0, unnamed uint256 #1)",
        ),
        (
            factory_entry("event = \"PoolCreated\"\nparameter = \"pool\"\nabi = \"abi/Nope.json\""),
            format!("{c}.factory.abi"),
            "cannot read ABI file \"abi/Nope.json\": No such file or directory",
        ),
    ];
    for (contracts, key, message) in &cases {
        let problems = fixture.problems(contracts);
        assert!(
            problems.iter().any(|(k, m)| k == key && m.contains(message)),
            "no problem at {key} containing {message:?} in {problems:#?}"
        );
        assert_eq!(problems.len(), 1, "{key}: {problems:#?}");
    }
}

#[test]
fn malformed_addresses_are_type_errors_at_their_keys() {
    let fixture = Fixture::with_abis();
    let with_address = |value: &str| {
        entry("token", "abi/Token.json", "").replace(
            "address = \"0x1111111111111111111111111111111111111111\"",
            &format!("address = {value}"),
        )
    };
    let cases = [
        (
            with_address("\"0x111111111111111111111111111111111111111g\""),
            "chains[0].contracts[0].address",
            "invalid hex digit 'g' in \"0x111111111111111111111111111111111111111g\"",
        ),
        (
            with_address("[\"0x1111111111111111111111111111111111111111\", \"0x123\"]"),
            "chains[0].contracts[0].address[1]",
            "an address has 40 hex digits after 0x, got 3 in \"0x123\"",
        ),
        (
            with_address("\"1111111111111111111111111111111111111111\""),
            "chains[0].contracts[0].address",
            "an address must start with 0x",
        ),
        (
            with_address("5"),
            "chains[0].contracts[0].address",
            "expected an address string or a list of address strings",
        ),
        (
            factory_entry("address = \"0x44\"\nevent = \"X(address a)\"\nparameter = \"a\"").replacen(
                "address = \"0x4444444444444444444444444444444444444444\"\n",
                "",
                1,
            ),
            "chains[0].contracts[0].factory.address",
            "an address has 40 hex digits after 0x, got 2",
        ),
        (factory_entry("parameter = \"a\""), "chains[0].contracts[0].factory", "missing field `event`"),
        (
            entry("token", "abi/Token.json", "adress = \"0x1111111111111111111111111111111111111111\""),
            "chains[0].contracts[0].adress",
            "unknown field `adress`",
        ),
        (
            factory_entry("event = \"X(address a)\"\nparameter = \"a\"\nindexed = true"),
            "chains[0].contracts[0].factory.indexed",
            "unknown field `indexed`",
        ),
        (
            entry("token", "abi/Token.json", "start_block = -1"),
            "chains[0].contracts[0].start_block",
            "invalid value",
        ),
    ];
    for (contracts, key, message) in cases {
        match fixture.load_err(&contracts) {
            ConfigError::Type { key: got, message: got_message, .. } => {
                assert_eq!(got, key, "{got_message}");
                assert!(got_message.contains(message), "{key}: {got_message}");
            }
            other => panic!("{key}: expected a type error, got {other}"),
        }
    }
}

#[test]
fn contract_problems_are_reported_with_the_others() {
    let fixture = Fixture::with_abis();
    let contracts = format!(
        "{}{}{}",
        entry("token", "abi/Token.json", "events = [\"Transfer\", \"Mint\"]"),
        entry("token", "abi/Missing.json", ""),
        factory_entry("event = \"PoolCreated\"\nparameter = \"fee\"\nabi = \"abi/Factory.json\""),
    );
    let text =
        format!("{MINIMAL}\n{contracts}").replace("chain_id = 31337\n", "chain_id = 31337\nbatch_size = 0\n");
    let path = fixture.write("chainmux.toml", &text);
    let err = load(&path).expect_err("invalid");
    let keys: Vec<&str> = all_problems(&err).iter().map(|p| p.key.as_str()).collect();
    // The file-free rules first, in document order, then what the ABI files tell.
    assert_eq!(
        keys,
        [
            "chains[0].batch_size",
            "chains[0].contracts[1].name",
            "chains[0].contracts[0].events[1]",
            "chains[0].contracts[1].abi",
            "chains[0].contracts[2].factory.parameter",
        ]
    );
}

#[test]
fn contracts_are_an_evm_key() {
    let fixture = Fixture::with_abis();
    let text = format!("{SOLANA_MINIMAL}\n{}", entry("token", "abi/Missing.json", "")).replace(
        "kind = \"solana\"\n",
        "kind = \"solana\"\nlogs_address_chunk = 10\nlogs_topic_only_above = 10\n",
    );
    let path = fixture.write("chainmux.toml", &text);
    let err = load(&path).expect_err("EVM keys on a Solana chain");
    let problems: Vec<(String, String)> =
        all_problems(&err).iter().map(|p| (p.key.clone(), p.message.clone())).collect();
    let only_evm = "only evm chains have this key; remove it or set kind = \"evm\"";
    // The entry's ABI is not read (nor reported missing): the key itself is the problem.
    assert_eq!(
        problems,
        [
            ("chains[0].logs_address_chunk".to_owned(), only_evm.to_owned()),
            ("chains[0].logs_topic_only_above".to_owned(), only_evm.to_owned()),
            ("chains[0].contracts".to_owned(), only_evm.to_owned()),
        ]
    );
}

#[test]
fn logs_keys_default_and_parse() {
    let config = load_ok(MINIMAL, &BTreeMap::new());
    let chain = &config.chains[0];
    // Filled in on EVM chains, so the resolved config shows them.
    assert_eq!((chain.logs_address_chunk, chain.logs_topic_only_above), (Some(500), Some(2000)));
    assert_eq!((chain.logs_address_chunk(), chain.logs_topic_only_above()), (500, 2000));
    assert!(chain.contracts.is_empty());
    let text = config.redacted();
    assert!(text.contains("logs_address_chunk = 500\nlogs_topic_only_above = 2000\n"), "{text}");

    let config = load_ok(
        &minimal_with_chain_keys("logs_address_chunk = 10000\nlogs_topic_only_above = 1"),
        &BTreeMap::new(),
    );
    assert_eq!(
        (config.chains[0].logs_address_chunk(), config.chains[0].logs_topic_only_above()),
        (10_000, 1)
    );
    let config = load_ok(MINIMAL, &env(&[("CHAINMUX_CHAINS__LOCAL__LOGS_ADDRESS_CHUNK", "1")]));
    assert_eq!(config.chains[0].logs_address_chunk(), 1);

    // Not on Solana chains; a hand-built chain without them gets the defaults.
    let config = load_ok(SOLANA_MINIMAL, &BTreeMap::new());
    assert_eq!((config.chains[0].logs_address_chunk, config.chains[0].logs_topic_only_above), (None, None));
    let mut bare = load_ok(MINIMAL, &BTreeMap::new()).chains.remove(0);
    (bare.logs_address_chunk, bare.logs_topic_only_above) = (None, None);
    assert_eq!((bare.logs_address_chunk(), bare.logs_topic_only_above()), (500, 2000));
}

#[test]
fn env_overrides_address_contract_entries_by_name() {
    let fixture = Fixture::with_abis();
    let contracts = format!(
        "{}{}",
        entry("my-token", "abi/Token.json", "start_block = 5"),
        factory_entry("event = \"PoolCreated\"\nparameter = \"pool\"\nabi = \"abi/Factory.json\""),
    );
    let text = format!("{MINIMAL}\n{contracts}");
    let config = load_with_env(
        &text,
        &fixture.origin(),
        &env(&[
            ("CHAINMUX_CHAINS__LOCAL__CONTRACTS__MY_TOKEN__START_BLOCK", "1234"),
            ("CHAINMUX_CHAINS__LOCAL__CONTRACTS__POOLS__START_BLOCK", "99"),
            (
                "CHAINMUX_CHAINS__LOCAL__CONTRACTS__1__FACTORY__ADDRESS",
                "0x7777777777777777777777777777777777777777",
            ),
            (
                "CHAINMUX_CHAINS__LOCAL__CONTRACTS__MY_TOKEN__ADDRESS",
                "0x8888888888888888888888888888888888888888",
            ),
        ]),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    let chain = &config.chains[0];
    assert_eq!(chain.contracts[0].start_block, Some(1234));
    assert_eq!(chain.contracts[0].addresses(), vec![bytes20(0x88)]);
    assert_eq!(chain.contracts[1].start_block_or(chain.start_block), 99);
    assert_eq!(chain.contracts[1].factory.as_ref().map(|f| f.address.to_bytes()), Some(bytes20(0x77)));

    // A bad address from an override is blamed on the variable.
    let var = "CHAINMUX_CHAINS__LOCAL__CONTRACTS__MY_TOKEN__ADDRESS";
    let err = load_with_env(&text, &fixture.origin(), &env(&[(var, "0x12")])).expect_err("bad address");
    assert!(
        matches!(&err, ConfigError::Type { key, set_by: Some(v), .. } if key == "chains[0].contracts[0].address" && v == var),
        "{err:?}"
    );
    // `contracts` is addressed like `upstreams`: a chain without any has no element to set.
    let err = load_with_env(
        MINIMAL,
        &fixture.origin(),
        &env(&[("CHAINMUX_CHAINS__LOCAL__CONTRACTS__X__START_BLOCK", "1")]),
    )
    .expect_err("no contracts");
    assert!(err.to_string().contains("chains[0].contracts has no elements"), "{err}");
}

#[test]
fn redacted_config_keeps_contract_entries_as_written() {
    let fixture = Fixture::with_abis();
    let config = fixture.load_ok(&format!(
        "{}{}",
        entry("token", "abi/Token.json", "events = [\"Transfer\"]\nstart_block = 3").replace(
            "address = \"0x1111111111111111111111111111111111111111\"",
            "address = [\"0xAAaaAAaaAAaaAAaaAAaaAAaaAAaaAAaaAAaaAAaa\", \"0x1111111111111111111111111111111111111111\"]",
        ),
        factory_entry("event = \"PoolCreated\"\nparameter = \"pool\"\nabi = \"abi/Factory.json\""),
    ));
    let text = config.redacted();
    for shown in [
        "[[chains.contracts]]",
        "abi = \"abi/Token.json\"",
        "address = [\"0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"0x1111111111111111111111111111111111111111\"]",
        "events = [\"Transfer\"]",
        "start_block = 3",
        "[chains.contracts.factory]",
        "address = \"0x4444444444444444444444444444444444444444\"",
        "abi = \"abi/Factory.json\"",
    ] {
        assert!(text.contains(shown), "{shown:?} not in:\n{text}");
    }
    // No ABI contents in the output.
    assert!(!text.contains("spender"), "{text}");
    // check-config's output, next to the same ABI files, loads into the same entries.
    let reparsed =
        load_with_env(&text, &fixture.origin(), &BTreeMap::new()).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(reparsed.chains[0].contracts, config.chains[0].contracts);
    assert_eq!(reparsed.redacted(), text);
    // Debug output summarizes the ABI rather than dumping it.
    let debug = format!("{:?}", config.chains[0].contracts[0]);
    assert!(
        debug.contains("events: [\"Transfer(address,address,uint256)\"]") && !debug.contains("spender"),
        "{debug}"
    );
}

#[test]
fn entries_built_in_code_resolve_without_files() {
    let abi: JsonAbi = serde_json::from_str(VAULT_ABI).expect("ABI");
    let factory_abi: JsonAbi = serde_json::from_str(FACTORY_ABI).expect("ABI");
    let mut contract = ContractConfig::new("vaults", "unused.json");
    assert!(!contract.is_resolved());
    contract.factory = Some(FactoryConfig {
        address: EvmAddress::new(bytes20(0x55)),
        event: "PoolCreated".into(),
        parameter: "pool".into(),
        abi: Some("unused-too.json".into()),
    });
    contract.events = Some(vec!["Paused".into()]);
    contract.resolve_with(abi.clone(), Some(factory_abi.clone())).expect("resolves");
    assert_eq!(contract.abi_json(), &abi);
    assert_eq!(signatures(&contract.selected_events()), ["Paused()"]);
    assert_eq!(contract.factory_event().map(|e| e.name.as_str()), Some("PoolCreated"));

    // Problems are keyed relative to the entry, and a failed resolution clears the previous one.
    contract.events = Some(vec!["Nope".into()]);
    let problems = contract.resolve_with(abi.clone(), None).expect_err("unknown event, no PoolCreated");
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["events[0]", "factory.event"]);
    assert!(!contract.is_resolved());

    // A config built in code validates without reading any file.
    let mut config = load_ok(MINIMAL, &BTreeMap::new());
    let mut token = ContractConfig::new("token", "does/not/exist.json");
    token.address = Some(AddressList::One(EvmAddress::new(bytes20(1))));
    config.chains[0].contracts.push(token);
    assert_eq!(config.problems(), []);
}

#[test]
#[should_panic(expected = "contract entry \"token\" has no resolved ABI")]
fn abi_accessors_panic_on_unresolved_entries() {
    let mut token = ContractConfig::new("token", "abi/Token.json");
    token.address = Some(AddressList::One(EvmAddress::new(bytes20(1))));
    // Fine without the ABI.
    assert_eq!(token.addresses(), vec![bytes20(1)]);
    assert_eq!(token.factory_event(), None);
    let _ = token.selected_events();
}

#[test]
fn evm_addresses_parse_and_print() {
    let address: EvmAddress = "0xAbCdEf0123456789aBcDeF0123456789ABCDEF01".parse().expect("mixed case");
    assert_eq!(
        address.to_bytes(),
        [
            0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67, 0x89,
            0xab, 0xcd, 0xef, 0x01
        ]
    );
    assert_eq!(address.to_string(), "0xabcdef0123456789abcdef0123456789abcdef01");
    assert_eq!(format!("{address:?}"), "EvmAddress(\"0xabcdef0123456789abcdef0123456789abcdef01\")");
    assert_eq!(EvmAddress::from(address.to_bytes()), address);
    assert_eq!("0x".parse::<EvmAddress>(), Err(EvmAddressError::Length(0)));
    assert_eq!(format!("0x{}", "0".repeat(41)).parse::<EvmAddress>(), Err(EvmAddressError::Length(41)));
    assert_eq!(format!("0X{}", "0".repeat(40)).parse::<EvmAddress>(), Err(EvmAddressError::Prefix));
    assert_eq!(format!("0x{}é", "0".repeat(39)).parse::<EvmAddress>(), Err(EvmAddressError::Digit('é')));
    assert_eq!(AddressList::Many(vec![address, address]).as_slice().len(), 2);
}
