//! The ABI decoder against what solc actually emits: `EventZoo` on a real anvil logs events with every kind of
//! parameter, and every decoded `args` must equal what the test sent, computed here from the sent values
//! (indexed reference types as the keccak256 hash the EVM logs).

use std::sync::Arc;

use alloy::json_abi::JsonAbi;
use alloy::primitives::aliases::{I24, U24};
use alloy::primitives::{Address, B256, Bytes, FixedBytes, I256, U256, keccak256};
use alloy::rpc::types::Log as RpcLog;
use alloy::sol_types::SolCall;
use chainmux_core::{BlockDecoder, BlockPtr, DecodedEvent, Log, NormalizedBlock};
use chainmux_evm::{ContractSource, EventDecoder, SourceTarget};
use chainmux_testkit::contracts::{EVENT_ZOO, EVENT_ZOO_ABI};
use chainmux_testkit::{Anvil, Eth};
use serde_json::{Value, json};

mod zoo {
    alloy::sol! {
        struct Inner { uint64 id; address who; }
        struct Outer { string label; Inner[] inners; bytes32 tag; }

        interface IEventZoo {
            function emitUnsigned(uint8 a, uint16 b, uint24 c, uint32 d, uint64 e, uint128 f, uint256 g) external;
            function emitSigned(int8 a, int16 b, int24 c, int32 d, int64 e, int128 f, int256 g) external;
            function emitBasics(
                address who, uint256 amount, bool flag, bytes data, bytes1 b1, bytes32 b32, string text
            ) external;
            function emitArrays(
                uint256[] values, address[3] trio, string[] names, bytes4[2] codes, int16[][] grid
            ) external;
            function emitNested(uint256 id, Outer outer, Inner[2] pair) external;
            function emitIndexedDynamic(string text, bytes data, Inner inner) external;
            function emitIndexedArray(uint256[] list, string note) external;
            function emitAnonymous(uint256 value, string note) external;
            function emitOverloaded(uint256 value, address who, string note) external;
            function emitPositional(uint256 a, address b, string c) external;
        }
    }
}

use zoo::IEventZoo::{
    emitAnonymousCall, emitArraysCall, emitBasicsCall, emitIndexedArrayCall, emitIndexedDynamicCall,
    emitNestedCall, emitOverloadedCall, emitPositionalCall, emitSignedCall, emitUnsignedCall,
};
use zoo::{Inner, Outer};

/// One event the test expects, in emission order.
#[derive(Debug, PartialEq)]
struct Expected {
    tx: B256,
    name: String,
    signature: String,
    args: Value,
}

/// Sends the calls and remembers what each should log.
struct Zoo {
    eth: Eth,
    from: Address,
    address: Address,
    expected: Vec<Expected>,
}

impl Zoo {
    /// Calls `EventZoo` with `call`, expecting it to log `events` (name, signature, args) in order.
    async fn call(&mut self, call: impl SolCall, events: Vec<(&str, &str, Value)>) {
        let tx =
            self.eth.send(self.from, Some(self.address), Bytes::from(call.abi_encode()), U256::ZERO).await;
        for (name, signature, args) in events {
            self.expected.push(Expected { tx, name: name.into(), signature: signature.into(), args });
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    alloy::hex::encode_prefixed(bytes)
}

fn inner_json(inner: &Inner) -> Value {
    json!({"id": inner.id.to_string(), "who": hex(inner.who.as_slice())})
}

/// The words a struct or array of static values is hashed over when indexed: each member's 32-byte encoding.
fn words(values: &[B256]) -> Vec<u8> {
    values.iter().flat_map(|word| word.0).collect()
}

/// Log-only blocks from `eth_getLogs` results, ascending, logs in log-index order.
fn blocks(logs: Vec<Value>) -> Vec<NormalizedBlock> {
    let mut blocks: Vec<NormalizedBlock> = Vec::new();
    for value in logs {
        let log: RpcLog = serde_json::from_value(value).expect("eth_getLogs entry");
        let ptr = BlockPtr::new(log.block_number.expect("mined"), log.block_hash.expect("mined"));
        let normalized = Log {
            tx_hash: Bytes::copy_from_slice(log.transaction_hash.expect("mined").as_slice()),
            tx_index: u32::try_from(log.transaction_index.expect("mined")).expect("tx index"),
            log_index: u32::try_from(log.log_index.expect("mined")).expect("log index"),
            address: Bytes::copy_from_slice(log.address().as_slice()),
            topics: log.topics().to_vec(),
            data: log.data().data.clone(),
        };
        match blocks.last_mut() {
            Some(block) if block.ptr == ptr => block.logs.push(normalized),
            _ => blocks.push(NormalizedBlock::logs_only(ptr, vec![normalized])),
        }
    }
    for pair in blocks.windows(2) {
        assert!(pair[0].ptr.number < pair[1].ptr.number, "eth_getLogs returns logs in block order");
    }
    blocks
}

fn as_expected(event: &DecodedEvent) -> Expected {
    Expected {
        tx: B256::from_slice(&event.tx_hash),
        name: event.name.clone(),
        signature: event.signature.clone(),
        args: serde_json::from_str(&event.args).unwrap_or_else(|err| panic!("{}: {err}", event.args)),
    }
}

#[tokio::test]
async fn every_event_zoo_argument_decodes_to_what_was_sent() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let from = eth.accounts().await[0];
    let address = eth.deploy(from, EVENT_ZOO).await;
    let mut zoo = Zoo { eth: eth.clone(), from, address, expected: Vec::new() };

    // Unsigned integers: maxima, then zeros, then arbitrary values.
    let unsigned_sig = "Unsigned(uint8,uint16,uint24,uint32,uint64,uint128,uint256)";
    zoo.call(
        emitUnsignedCall {
            a: u8::MAX,
            b: u16::MAX,
            c: U24::MAX,
            d: u32::MAX,
            e: u64::MAX,
            f: u128::MAX,
            g: U256::MAX,
        },
        vec![(
            "Unsigned",
            unsigned_sig,
            json!({
                "u8": "255",
                "u16": "65535",
                "u24": "16777215",
                "u32": "4294967295",
                "u64": "18446744073709551615",
                "u128": "340282366920938463463374607431768211455",
                "u256": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
            }),
        )],
    )
    .await;
    zoo.call(
        emitUnsignedCall { a: 0, b: 0, c: U24::ZERO, d: 0, e: 0, f: 0, g: U256::ZERO },
        vec![(
            "Unsigned",
            unsigned_sig,
            json!({"u8": "0", "u16": "0", "u24": "0", "u32": "0", "u64": "0", "u128": "0", "u256": "0"}),
        )],
    )
    .await;
    let big = U256::from(10).pow(U256::from(70)) + U256::from(12_345);
    zoo.call(
        emitUnsignedCall {
            a: 7,
            b: 1_000,
            c: U24::from(70_000),
            d: 123_456_789,
            e: 1 << 40,
            f: 1 << 100,
            g: big,
        },
        vec![(
            "Unsigned",
            unsigned_sig,
            json!({
                "u8": "7", "u16": "1000", "u24": "70000", "u32": "123456789",
                "u64": (1u64 << 40).to_string(), "u128": (1u128 << 100).to_string(), "u256": big.to_string(),
            }),
        )],
    )
    .await;

    // Signed integers: minima, maxima, -1.
    let signed_sig = "Signed(int8,int16,int24,int32,int64,int128,int256)";
    zoo.call(
        emitSignedCall {
            a: i8::MIN,
            b: i16::MIN,
            c: I24::MIN,
            d: i32::MIN,
            e: i64::MIN,
            f: i128::MIN,
            g: I256::MIN,
        },
        vec![(
            "Signed",
            signed_sig,
            json!({
                "i8": "-128",
                "i16": "-32768",
                "i24": "-8388608",
                "i32": "-2147483648",
                "i64": "-9223372036854775808",
                "i128": "-170141183460469231731687303715884105728",
                "i256": "-57896044618658097711785492504343953926634992332820282019728792003956564819968",
            }),
        )],
    )
    .await;
    zoo.call(
        emitSignedCall {
            a: i8::MAX,
            b: i16::MAX,
            c: I24::MAX,
            d: i32::MAX,
            e: i64::MAX,
            f: i128::MAX,
            g: I256::MAX,
        },
        vec![(
            "Signed",
            signed_sig,
            json!({
                "i8": "127",
                "i16": "32767",
                "i24": "8388607",
                "i32": "2147483647",
                "i64": "9223372036854775807",
                "i128": "170141183460469231731687303715884105727",
                "i256": "57896044618658097711785492504343953926634992332820282019728792003956564819967",
            }),
        )],
    )
    .await;
    let minus_one = I256::MINUS_ONE;
    zoo.call(
        emitSignedCall { a: -1, b: -2, c: I24::try_from(-3).expect("int24"), d: -4, e: -5, f: -6, g: minus_one },
        vec![(
            "Signed",
            signed_sig,
            json!({"i8": "-1", "i16": "-2", "i24": "-3", "i32": "-4", "i64": "-5", "i128": "-6", "i256": "-1"}),
        )],
    )
    .await;

    // Address, bool, bytes, bytesN, string; indexed value types are themselves.
    let who: Address = "0x00000000000000000000000000000000DeaDBeef".parse().expect("address");
    let data = Bytes::from((0u8..=70).collect::<Vec<u8>>());
    let b32 = B256::from(keccak256("b32"));
    let text = "héllo \"quoted\" \\ \n\t\u{1} ✓ 𝄞".to_owned();
    let basics_sig = "Basics(address,uint256,bool,bytes,bytes1,bytes32,string)";
    zoo.call(
        emitBasicsCall {
            who,
            amount: U256::from(1_000_000),
            flag: true,
            data: data.clone(),
            b1: FixedBytes([0x7f]),
            b32,
            text: text.clone(),
        },
        vec![(
            "Basics",
            basics_sig,
            json!({
                "who": "0x00000000000000000000000000000000deadbeef",
                "amount": "1000000",
                "flag": true,
                "data": hex(&data),
                "b1": "0x7f",
                "b32": hex(b32.as_slice()),
                "text": text,
            }),
        )],
    )
    .await;
    zoo.call(
        emitBasicsCall {
            who: Address::ZERO,
            amount: U256::ZERO,
            flag: false,
            data: Bytes::new(),
            b1: FixedBytes([0]),
            b32: B256::ZERO,
            text: String::new(),
        },
        vec![(
            "Basics",
            basics_sig,
            json!({
                "who": hex(Address::ZERO.as_slice()),
                "amount": "0",
                "flag": false,
                "data": "0x",
                "b1": "0x00",
                "b32": hex(B256::ZERO.as_slice()),
                "text": "",
            }),
        )],
    )
    .await;

    // Dynamic, fixed and nested arrays.
    let trio = [who, from, Address::ZERO];
    let values = vec![U256::from(1), U256::MAX, U256::ZERO];
    let names = vec!["one".to_owned(), String::new(), "three".to_owned()];
    let codes = [FixedBytes([0xde, 0xad, 0xbe, 0xef]), FixedBytes([0, 0, 0, 1])];
    let grid: Vec<Vec<i16>> = vec![vec![-1, 2], vec![], vec![i16::MIN]];
    zoo.call(
        emitArraysCall { values: values.clone(), trio, names: names.clone(), codes, grid: grid.clone() },
        vec![(
            "Arrays",
            "Arrays(uint256[],address[3],string[],bytes4[2],int16[][])",
            json!({
                "values": values.iter().map(U256::to_string).collect::<Vec<_>>(),
                "trio": trio.iter().map(|a| hex(a.as_slice())).collect::<Vec<_>>(),
                "names": names,
                "codes": ["0xdeadbeef", "0x00000001"],
                "grid": [["-1", "2"], [], ["-32768"]],
            }),
        )],
    )
    .await;
    zoo.call(
        emitArraysCall { values: Vec::new(), trio, names: Vec::new(), codes, grid: Vec::new() },
        vec![(
            "Arrays",
            "Arrays(uint256[],address[3],string[],bytes4[2],int16[][])",
            json!({
                "values": [],
                "trio": trio.iter().map(|a| hex(a.as_slice())).collect::<Vec<_>>(),
                "names": [],
                "codes": ["0xdeadbeef", "0x00000001"],
                "grid": [],
            }),
        )],
    )
    .await;

    // A struct holding a struct array, and a fixed array of structs.
    let inners = vec![Inner { id: 1, who }, Inner { id: u64::MAX, who: from }];
    let outer = Outer { label: "outer label".into(), inners: inners.clone(), tag: keccak256("tag") };
    let pair = [Inner { id: 0, who: Address::ZERO }, Inner { id: 42, who }];
    zoo.call(
        emitNestedCall { id: U256::from(99), outer: outer.clone(), pair: pair.clone() },
        vec![(
            "Nested",
            "Nested(uint256,(string,(uint64,address)[],bytes32),(uint64,address)[2])",
            json!({
                "id": "99",
                "outer": {
                    "label": "outer label",
                    "inners": inners.iter().map(inner_json).collect::<Vec<_>>(),
                    "tag": hex(outer.tag.as_slice()),
                },
                "pair": pair.iter().map(inner_json).collect::<Vec<_>>(),
            }),
        )],
    )
    .await;

    // Indexed reference types: the EVM logs keccak256 of their in-place encoding.
    let indexed_text = "indexed text, longer than thirty-two bytes to span words".to_owned();
    let indexed_data = Bytes::from(vec![0xab; 33]);
    let inner = Inner { id: 7, who };
    zoo.call(
        emitIndexedDynamicCall {
            text: indexed_text.clone(),
            data: indexed_data.clone(),
            inner: inner.clone(),
        },
        vec![(
            "IndexedDynamic",
            "IndexedDynamic(string,bytes,(uint64,address))",
            json!({
                "text": hex(keccak256(indexed_text.as_bytes()).as_slice()),
                "data": hex(keccak256(&indexed_data).as_slice()),
                "inner": hex(keccak256(words(&[U256::from(7).into(), who.into_word()])).as_slice()),
            }),
        )],
    )
    .await;
    let list = vec![U256::from(3), U256::from(4), U256::MAX];
    let list_words: Vec<B256> = list.iter().map(|v| B256::from(*v)).collect();
    zoo.call(
        emitIndexedArrayCall { list: list.clone(), note: "array hash".into() },
        vec![(
            "IndexedArray",
            "IndexedArray(uint256[],string)",
            json!({"list": hex(keccak256(words(&list_words)).as_slice()), "note": "array hash"}),
        )],
    )
    .await;

    // Anonymous, overloaded and unnamed parameters.
    zoo.call(
        emitAnonymousCall { value: U256::from(5), note: "no topic0".into() },
        vec![(
            "Anonymous",
            "Anonymous(address,uint256,string)",
            json!({"from": hex(from.as_slice()), "value": "5", "note": "no topic0"}),
        )],
    )
    .await;
    zoo.call(
        emitOverloadedCall { value: U256::from(8), who, note: "second".into() },
        vec![
            ("Overloaded", "Overloaded(uint256)", json!({"value": "8"})),
            (
                "Overloaded",
                "Overloaded(address,string)",
                json!({"who": hex(who.as_slice()), "note": "second"}),
            ),
        ],
    )
    .await;
    zoo.call(
        emitPositionalCall { a: U256::from(10), b: who, c: "unnamed".into() },
        vec![(
            "Positional",
            "Positional(uint256,address,string)",
            json!({"0": "10", "1": hex(who.as_slice()), "2": "unnamed"}),
        )],
    )
    .await;

    let head = eth.block_number().await;
    let logs = eth.logs(0, head).await;
    assert_eq!(logs.len(), zoo.expected.len(), "one log per expected event");
    let mut blocks = blocks(logs);

    let abi = serde_json::from_str::<JsonAbi>(EVENT_ZOO_ABI).expect("EventZoo ABI");
    let all = ContractSource::new(
        "zoo".into(),
        abi.events().cloned().collect(),
        SourceTarget::Addresses(vec![address]),
        0,
    )
    .expect("every EventZoo event compiles")
    .with_abi(&abi);
    // A second entry on the same address selecting one overload: decodes independently, skips the rest.
    let overload = abi
        .events()
        .find(|event| event.signature() == "Overloaded(uint256)")
        .cloned()
        .expect("Overloaded(uint256) in the ABI");
    let one = ContractSource::new("one".into(), vec![overload], SourceTarget::Addresses(vec![address]), 0)
        .expect("valid")
        .with_abi(&abi);
    let mut decoder = EventDecoder::new("zoo", vec![Arc::new(all), Arc::new(one)]);
    decoder.decode(&mut blocks);

    let rows: Vec<&DecodedEvent> = blocks.iter().flat_map(|block| &block.events).collect();
    let zoo_rows: Vec<Expected> =
        rows.iter().filter(|e| e.contract == "zoo").map(|e| as_expected(e)).collect();
    assert_eq!(zoo_rows.len(), zoo.expected.len());
    for (got, want) in zoo_rows.iter().zip(&zoo.expected) {
        assert_eq!(got, want);
    }
    for block in &blocks {
        for event in &block.events {
            let log = block.logs.iter().find(|log| log.log_index == event.log_index).expect("row of a log");
            assert_eq!((&event.tx_hash, event.tx_index), (&log.tx_hash, log.tx_index));
            assert_eq!(event.address.as_ref(), address.as_slice());
        }
    }
    let one_rows: Vec<Expected> =
        rows.iter().filter(|e| e.contract == "one").map(|e| as_expected(e)).collect();
    let want: Vec<&Expected> = zoo.expected.iter().filter(|e| e.signature == "Overloaded(uint256)").collect();
    assert_eq!(one_rows.iter().collect::<Vec<_>>(), want);
}
