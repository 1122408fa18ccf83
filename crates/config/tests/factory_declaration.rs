//! A factory event written as a full declaration must agree with the factory's ABI (the entry's, or `factory.abi`)
//! when that ABI has the event: with other `indexed` flags the decoder would expect another topic count and no real
//! announcement would ever match, so the config is refused at `factory.event`.

use alloy::json_abi::JsonAbi;
use chainmux_config::{ContractConfig, EvmAddress, FactoryConfig};

/// `ChildFactory`'s ABI: `ChildCreated(address indexed child, uint256 indexed id)`.
const FACTORY_ABI: &str = r#"[
  {"type":"event","name":"ChildCreated","anonymous":false,"inputs":[
    {"name":"child","type":"address","indexed":true},
    {"name":"id","type":"uint256","indexed":true}]}
]"#;

/// The children's ABI.
const CHILD_ABI: &str = r#"[
  {"type":"event","name":"Ping","anonymous":false,"inputs":[
    {"name":"sender","type":"address","indexed":true},
    {"name":"id","type":"uint256","indexed":true},
    {"name":"value","type":"uint256","indexed":false}]}
]"#;

#[test]
fn a_declaration_contradicting_the_factory_abi_is_a_config_error() {
    let child_abi: JsonAbi = serde_json::from_str(CHILD_ABI).expect("child ABI");
    let factory_abi: JsonAbi = serde_json::from_str(FACTORY_ABI).expect("factory ABI");
    let mut contract = ContractConfig::new("children", "unused.json");
    contract.factory = Some(FactoryConfig {
        address: EvmAddress::new([0x55; 20]),
        // Named inputs, but neither marked indexed: 1 topic, where every real log has 3.
        event: "ChildCreated(address child, uint256 id)".into(),
        parameter: "child".into(),
        abi: Some("unused-too.json".into()),
    });
    let resolved = contract.resolve_with(child_abi, Some(factory_abi));
    let keys: Vec<String> = resolved.err().unwrap_or_default().into_iter().map(|p| p.key).collect();
    assert_eq!(
        keys,
        ["factory.event"],
        "the declaration's indexed flags contradict the factory ABI's ChildCreated: every announcement would be \
         skipped silently"
    );
}
