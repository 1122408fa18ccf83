//! Decoding rules on hand-built logs: events encoded with `alloy::sol!`, decoded through the dynamic ABI.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use alloy::dyn_abi::DynSolValue;
use alloy::json_abi::{Event, JsonAbi};
use alloy::primitives::{Address, B256, Bytes, FixedBytes, I256, LogData, U256, address, keccak256};
use alloy::sol_types::{SolEvent, SolValue};
use chainmux_core::{BlockDecoder, BlockPtr, CreatedContract, Log, NormalizedBlock};
use metrics::{Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::{Value, json};

use super::{ContractSource, EventDecoder, SourceTarget};

mod abi {
    alloy::sol! {
        struct Inner { uint64 id; address who; }
        struct Outer { string label; Inner[] inners; }

        event Scalars(
            uint8 small, uint256 big, int8 tiny, int256 huge, int64 negative, address who, bool flag,
            bytes1 one, bytes32 full, bytes blob, string text
        );
        event Nested(uint256 indexed id, Outer outer, Inner[2] pair, uint256[] values, string[] names);
        event Hashed(string indexed text, bytes indexed blob, Inner indexed inner);
        event Overloaded(uint256 value);
        event Overloaded(address who, string note);
        event AnonNumber(uint256 value) anonymous;
        event AnonText(string text) anonymous;
        event AnonIndexed(address indexed who, uint256 value) anonymous;
        event Unselected(uint256 value);
        event Flags(bool flag, uint8 small, address who);
        event Created(address indexed child, uint256 id);
        event Ping(uint256 value);
    }

    pub(super) mod erc20 {
        alloy::sol! {
            event Transfer(address indexed from, address indexed to, uint256 value);
        }
    }

    pub(super) mod erc721 {
        alloy::sol! {
            event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);
        }
    }
}

use abi::{
    AnonIndexed, AnonNumber, AnonText, Created, Flags, Hashed, Inner, Nested, Outer, Overloaded_0,
    Overloaded_1, Ping, Scalars, Unselected,
};

const SCALARS: &str = "event Scalars(uint8 small, uint256 big, int8 tiny, int256 huge, int64 negative, \
                       address who, bool flag, bytes1 one, bytes32 full, bytes blob, string text)";
/// `{"name":"id","type":"uint64"},{"name":"who","type":"address"}`: the components of `Inner`.
macro_rules! inner_components {
    () => {
        r#"[{"name":"id","type":"uint64"},{"name":"who","type":"address"}]"#
    };
}
// The human-readable parser has no names for tuple components: these are JSON ABI items.
const NESTED: &str = concat!(
    r#"{"type":"event","name":"Nested","anonymous":false,"inputs":["#,
    r#"{"name":"id","type":"uint256","indexed":true},"#,
    r#"{"name":"outer","type":"tuple","indexed":false,"components":[{"name":"label","type":"string"},"#,
    r#"{"name":"inners","type":"tuple[]","components":"#,
    inner_components!(),
    r#"}]},{"name":"pair","type":"tuple[2]","indexed":false,"components":"#,
    inner_components!(),
    r#"},{"name":"values","type":"uint256[]","indexed":false},"#,
    r#"{"name":"names","type":"string[]","indexed":false}]}"#
);
const HASHED: &str = concat!(
    r#"{"type":"event","name":"Hashed","anonymous":false,"inputs":["#,
    r#"{"name":"text","type":"string","indexed":true},{"name":"blob","type":"bytes","indexed":true},"#,
    r#"{"name":"inner","type":"tuple","indexed":true,"components":"#,
    inner_components!(),
    r#"}]}"#
);
const OVERLOADED_0: &str = "event Overloaded(uint256 value)";
const OVERLOADED_1: &str = "event Overloaded(address who, string note)";
const ANON_NUMBER: &str = "event AnonNumber(uint256 value) anonymous";
const ANON_TEXT: &str = "event AnonText(string text) anonymous";
const ANON_INDEXED: &str = "event AnonIndexed(address indexed who, uint256 value) anonymous";
const UNSELECTED: &str = "event Unselected(uint256 value)";
const FLAGS: &str = "event Flags(bool flag, uint8 small, address who)";
const CREATED: &str = "event Created(address indexed child, uint256 id)";
const PING: &str = "event Ping(uint256 value)";
const ERC20_TRANSFER: &str = "event Transfer(address indexed from, address indexed to, uint256 value)";
const ERC721_TRANSFER: &str =
    "event Transfer(address indexed from, address indexed to, uint256 indexed tokenId)";

const TOKEN: Address = address!("0x00000000000000000000000000000000000000aa");
const OTHER: Address = address!("0x00000000000000000000000000000000000000bb");
const FACTORY: Address = address!("0x00000000000000000000000000000000000000fa");
const ALICE: Address = address!("0xA11CE0000000000000000000000000000000ABCD");
const BOB: Address = address!("0xB0B0000000000000000000000000000000000123");

/// An event from its human-readable signature or its JSON ABI item.
fn event(text: &str) -> Event {
    if text.starts_with('{') {
        serde_json::from_str(text).unwrap_or_else(|err| panic!("{text}: {err}"))
    } else {
        Event::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"))
    }
}

fn events(texts: &[&str]) -> Vec<Event> {
    texts.iter().map(|text| event(text)).collect()
}

fn source(name: &str, texts: &[&str], addresses: &[Address], start_block: u64) -> ContractSource {
    ContractSource::new(name.into(), events(texts), SourceTarget::Addresses(addresses.to_vec()), start_block)
        .expect("valid source")
}

fn factory_source(name: &str, texts: &[&str], start_block: u64) -> ContractSource {
    let target = SourceTarget::Factory { address: FACTORY, event: event(CREATED), parameter: "child".into() };
    ContractSource::new(name.into(), events(texts), target, start_block).expect("valid factory source")
}

fn decoder(sources: Vec<ContractSource>) -> EventDecoder {
    EventDecoder::new("test", sources.into_iter().map(Arc::new).collect())
}

fn log(address: Address, log_index: u32, data: LogData) -> Log {
    Log {
        tx_hash: Bytes::copy_from_slice(B256::with_last_byte(log_index as u8 + 1).as_slice()),
        tx_index: log_index / 2,
        log_index,
        address: Bytes::copy_from_slice(address.as_slice()),
        topics: data.topics().to_vec(),
        data: data.data,
    }
}

fn raw_log(address: Address, log_index: u32, topics: Vec<B256>, data: Vec<u8>) -> Log {
    log(address, log_index, LogData::new_unchecked(topics, data.into()))
}

fn block(number: u64, logs: Vec<Log>) -> NormalizedBlock {
    NormalizedBlock::logs_only(BlockPtr::new(number, B256::with_last_byte(number as u8)), logs)
}

fn args(event: &chainmux_core::DecodedEvent) -> Value {
    serde_json::from_str(&event.args).unwrap_or_else(|err| panic!("args {} are not JSON: {err}", event.args))
}

fn hex(bytes: &[u8]) -> String {
    alloy::hex::encode_prefixed(bytes)
}

/// Decodes `blocks` with a recorder capturing the counters: `(blocks, counters)`.
fn decode(decoder: &mut EventDecoder, mut blocks: Vec<NormalizedBlock>) -> (Vec<NormalizedBlock>, Counters) {
    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || decoder.decode(&mut blocks));
    let counters = recorder.counters.lock().expect("counters").clone();
    (blocks, counters)
}

type Counters = BTreeMap<String, u64>;

fn failures(counters: &Counters, contract: &str, reason: &str) -> u64 {
    let key =
        format!("chainmux_events_decode_failures_total{{chain=test,contract={contract},reason={reason}}}");
    counters.get(&key).copied().unwrap_or(0)
}

fn decoded(counters: &Counters, contract: &str) -> u64 {
    let key = format!("chainmux_events_decoded_total{{chain=test,contract={contract}}}");
    counters.get(&key).copied().unwrap_or(0)
}

#[test]
fn scalar_values_follow_the_json_rules() {
    let scalars = Scalars {
        small: u8::MAX,
        big: U256::MAX,
        tiny: i8::MIN,
        huge: I256::MIN,
        negative: -42,
        who: ALICE,
        flag: true,
        one: FixedBytes([0xab]),
        full: B256::repeat_byte(0xcd),
        blob: Bytes::from(vec![0x00, 0xff, 0x10]),
        text: "quote \" backslash \\ newline \n tab \t bell \u{7} ünïcødé ✓".into(),
    };
    let mut decoder = decoder(vec![source("zoo", &[SCALARS], &[TOKEN], 0)]);
    let (blocks, counters) =
        decode(&mut decoder, vec![block(1, vec![log(TOKEN, 0, scalars.encode_log_data())])]);
    let [row] = blocks[0].events.as_slice() else { panic!("one row: {:?}", blocks[0].events) };
    assert_eq!(row.name, "Scalars");
    assert_eq!(
        row.signature,
        "Scalars(uint8,uint256,int8,int256,int64,address,bool,bytes1,bytes32,bytes,string)"
    );
    assert_eq!(row.contract, "zoo");
    assert_eq!(row.address.as_ref(), TOKEN.as_slice());
    assert_eq!(row.log_index, 0);
    assert_eq!(
        args(row),
        json!({
            "small": "255",
            "big": U256::MAX.to_string(),
            "tiny": "-128",
            "huge": "-57896044618658097711785492504343953926634992332820282019728792003956564819968",
            "negative": "-42",
            "who": "0xa11ce0000000000000000000000000000000abcd",
            "flag": true,
            "one": "0xab",
            "full": format!("0x{}", "cd".repeat(32)),
            "blob": "0x00ff10",
            "text": scalars.text,
        })
    );
    assert_eq!(decoded(&counters, "zoo"), 1);
}

#[test]
fn tuples_arrays_and_indexed_reference_types() {
    let inner = |id: u64, who: Address| Inner { id, who };
    let nested = Nested {
        id: U256::from(7),
        outer: Outer { label: "outer".into(), inners: vec![inner(1, ALICE), inner(2, BOB)] },
        pair: [inner(3, BOB), inner(u64::MAX, Address::ZERO)],
        values: vec![U256::ZERO, U256::from(10).pow(U256::from(30))],
        names: vec!["a".into(), String::new()],
    };
    // sol! takes the hashes of indexed reference types (the EVM computes them; the anvil test checks that).
    let inner_preimage =
        [U256::from(9).to_be_bytes::<32>().as_slice(), ALICE.into_word().as_slice()].concat();
    let hashed = Hashed {
        text: keccak256("indexed text"),
        blob: keccak256([1u8, 2, 3]),
        inner: keccak256(&inner_preimage),
    };
    let mut decoder = decoder(vec![source("zoo", &[NESTED, HASHED], &[TOKEN], 0)]);
    let logs = vec![log(TOKEN, 0, nested.encode_log_data()), log(TOKEN, 1, hashed.encode_log_data())];
    let (blocks, _) = decode(&mut decoder, vec![block(1, logs)]);
    let [nested_row, hashed_row] = blocks[0].events.as_slice() else { panic!("two rows") };
    assert_eq!(
        nested_row.signature,
        "Nested(uint256,(string,(uint64,address)[]),(uint64,address)[2],uint256[],string[])"
    );
    let alice = "0xa11ce0000000000000000000000000000000abcd";
    let bob = "0xb0b0000000000000000000000000000000000123";
    assert_eq!(
        args(nested_row),
        json!({
            "id": "7",
            "outer": {"label": "outer", "inners": [{"id": "1", "who": alice}, {"id": "2", "who": bob}]},
            "pair": [{"id": "3", "who": bob}, {"id": u64::MAX.to_string(), "who": hex(Address::ZERO.as_slice())}],
            "values": ["0", "1000000000000000000000000000000"],
            "names": ["a", ""],
        })
    );
    // Indexed reference types are in the log only as their hash, which is their value in args.
    assert_eq!(hashed_row.signature, "Hashed(string,bytes,(uint64,address))");
    assert_eq!(
        args(hashed_row),
        json!({
            "text": hex(keccak256("indexed text").as_slice()),
            "blob": hex(keccak256([1u8, 2, 3]).as_slice()),
            "inner": hex(keccak256(&inner_preimage).as_slice()),
        })
    );
}

#[test]
fn position_keys_never_collide_with_literal_names() {
    use super::source::keys;
    assert_eq!(keys(["1", ""].into_iter()), ["1", "_1"]);
    assert_eq!(keys(["", "0", "_1", ""].into_iter()), ["0", "1", "_1", "3"]);
    assert_eq!(keys(["a", "a", "1"].into_iter()), ["a", "1", "2"]);
}

#[test]
fn unnamed_and_repeated_names_are_keyed_by_position() {
    let unnamed = event(
        r#"{"type":"event","name":"Positional","anonymous":false,"inputs":[
            {"name":"","type":"uint256","indexed":false},
            {"name":"","type":"address","indexed":true},
            {"name":"pair","type":"tuple","indexed":false,"components":[
                {"name":"","type":"uint8"},{"name":"flag","type":"bool"}]},
            {"name":"pair","type":"string","indexed":false}]}"#,
    );
    let (topics, data) = {
        let body = DynSolValue::Tuple(vec![
            DynSolValue::Uint(U256::from(5), 256),
            DynSolValue::Tuple(vec![DynSolValue::Uint(U256::from(6), 8), DynSolValue::Bool(false)]),
            DynSolValue::String("s".into()),
        ]);
        (vec![unnamed.selector(), BOB.into_word()], body.abi_encode_params())
    };
    let source = ContractSource::new("p".into(), vec![unnamed], SourceTarget::Addresses(vec![TOKEN]), 0)
        .expect("valid");
    let params: Value = serde_json::from_str(&source.events_json()).expect("events json");
    assert_eq!(
        params[0]["params"],
        json!([
            {"name": "0", "type": "uint256", "indexed": false},
            {"name": "1", "type": "address", "indexed": true},
            {"name": "pair", "type": "(uint8,bool)", "indexed": false, "components": [
                {"name": "0", "type": "uint8", "indexed": false},
                {"name": "flag", "type": "bool", "indexed": false},
            ]},
            {"name": "3", "type": "string", "indexed": false},
        ])
    );
    let mut decoder = decoder(vec![source]);
    let (blocks, _) = decode(&mut decoder, vec![block(1, vec![raw_log(TOKEN, 0, topics, data)])]);
    assert_eq!(
        args(&blocks[0].events[0]),
        json!({"0": "5", "1": "0xb0b0000000000000000000000000000000000123", "pair": {"0": "6", "flag": false}, "3": "s"})
    );
}

#[test]
fn function_values_are_hex() {
    let callback = event("event Callback(function cb, bytes4 selector)");
    let mut function = [0u8; 24];
    function[..20].copy_from_slice(ALICE.as_slice());
    function[20..].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    let body = DynSolValue::Tuple(vec![
        DynSolValue::Function(function.into()),
        DynSolValue::FixedBytes(B256::right_padding_from(&[1, 2, 3, 4]), 4),
    ]);
    let logs = vec![raw_log(TOKEN, 0, vec![callback.selector()], body.abi_encode_params())];
    let source = ContractSource::new("f".into(), vec![callback], SourceTarget::Addresses(vec![TOKEN]), 0)
        .expect("valid");
    let mut decoder = decoder(vec![source]);
    let (blocks, _) = decode(&mut decoder, vec![block(1, logs)]);
    assert_eq!(args(&blocks[0].events[0]), json!({"cb": hex(&function), "selector": "0x01020304"}));
}

#[test]
fn overloads_decode_with_their_own_signature() {
    let mut decoder = decoder(vec![source("o", &[OVERLOADED_0, OVERLOADED_1], &[TOKEN], 0)]);
    let logs = vec![
        log(TOKEN, 0, Overloaded_0 { value: U256::from(3) }.encode_log_data()),
        log(TOKEN, 1, Overloaded_1 { who: ALICE, note: "hi".into() }.encode_log_data()),
    ];
    let (blocks, _) = decode(&mut decoder, vec![block(1, logs)]);
    let rows: Vec<(&str, &str, Value)> =
        blocks[0].events.iter().map(|e| (e.name.as_str(), e.signature.as_str(), args(e))).collect();
    assert_eq!(
        rows,
        vec![
            ("Overloaded", "Overloaded(uint256)", json!({"value": "3"})),
            (
                "Overloaded",
                "Overloaded(address,string)",
                json!({"who": "0xa11ce0000000000000000000000000000000abcd", "note": "hi"})
            ),
        ]
    );
}

#[test]
fn anonymous_events_match_by_topic_count_and_strict_decoding() {
    let mut decoder = decoder(vec![source("a", &[ANON_NUMBER, ANON_TEXT, ANON_INDEXED], &[TOKEN], 0)]);
    let logs = vec![
        log(TOKEN, 0, AnonNumber { value: U256::from(11) }.encode_log_data()),
        // Also 0 topics: AnonNumber is tried first and must fail (three words of data), not decode garbage.
        log(TOKEN, 1, AnonText { text: "anonymous".into() }.encode_log_data()),
        log(TOKEN, 2, AnonIndexed { who: BOB, value: U256::from(12) }.encode_log_data()),
    ];
    assert!(logs.iter().take(2).all(|log| log.topics.is_empty()));
    let (blocks, counters) = decode(&mut decoder, vec![block(1, logs)]);
    let rows: Vec<(&str, Value)> = blocks[0].events.iter().map(|e| (e.name.as_str(), args(e))).collect();
    assert_eq!(
        rows,
        vec![
            ("AnonNumber", json!({"value": "11"})),
            ("AnonText", json!({"text": "anonymous"})),
            ("AnonIndexed", json!({"who": "0xb0b0000000000000000000000000000000000123", "value": "12"})),
        ]
    );
    assert_eq!(failures(&counters, "a", "malformed") + failures(&counters, "a", "unknown_event"), 0);
    assert_eq!(decoded(&counters, "a"), 3);
}

#[test]
fn erc20_and_erc721_transfers_share_a_selector() {
    let erc20 = abi::erc20::Transfer { from: ALICE, to: BOB, value: U256::from(100) };
    let erc721 = abi::erc721::Transfer { from: BOB, to: ALICE, tokenId: U256::from(42) };
    let logs = || vec![log(TOKEN, 0, erc20.encode_log_data()), log(TOKEN, 1, erc721.encode_log_data())];

    // Both selected: each log decodes as the event with its topic count.
    let mut both = decoder(vec![source("both", &[ERC20_TRANSFER, ERC721_TRANSFER], &[TOKEN], 0)]);
    let (blocks, _) = decode(&mut both, vec![block(1, logs())]);
    let rows: Vec<Value> = blocks[0].events.iter().map(args).collect();
    assert_eq!(
        rows,
        vec![
            json!({"from": hex(ALICE.as_slice()), "to": hex(BOB.as_slice()), "value": "100"}),
            json!({"from": hex(BOB.as_slice()), "to": hex(ALICE.as_slice()), "tokenId": "42"}),
        ]
    );
    assert!(blocks[0].events.iter().all(|e| e.signature == "Transfer(address,address,uint256)"));

    // Only ERC-20 selected, ERC-721 in the ABI: the 4-topic log is an unselected event, skipped silently.
    let abi = JsonAbi::parse([ERC20_TRANSFER, ERC721_TRANSFER]).expect("abi");
    let erc20_only = source("erc20", &[ERC20_TRANSFER], &[TOKEN], 0).with_abi(&abi);
    let mut decoder = decoder(vec![erc20_only]);
    let (blocks, counters) = decode(&mut decoder, vec![block(1, logs())]);
    assert_eq!(blocks[0].events.len(), 1);
    assert_eq!(args(&blocks[0].events[0])["value"], "100");
    assert_eq!(failures(&counters, "erc20", "malformed") + failures(&counters, "erc20", "unknown_event"), 0);

    // Without the ABI's other events known, the same log is a malformed ERC-20 Transfer.
    let mut decoder = decoder_without_abi();
    let (blocks, counters) = decode(&mut decoder, vec![block(1, logs())]);
    assert_eq!(blocks[0].events.len(), 1);
    assert_eq!(failures(&counters, "erc20", "malformed"), 1);
}

fn decoder_without_abi() -> EventDecoder {
    decoder(vec![source("erc20", &[ERC20_TRANSFER], &[TOKEN], 0)])
}

#[test]
fn unknown_and_unselected_events_are_not_fatal() {
    let abi = JsonAbi::parse([PING, UNSELECTED]).expect("abi");
    let mut decoder = decoder(vec![source("c", &[PING], &[TOKEN], 0).with_abi(&abi)]);
    let unknown = raw_log(TOKEN, 1, vec![keccak256("Mystery(uint256)")], U256::from(1).abi_encode());
    let logs = vec![
        log(TOKEN, 0, Ping { value: U256::from(1) }.encode_log_data()),
        unknown.clone(),
        log(TOKEN, 2, Unselected { value: U256::from(2) }.encode_log_data()),
        raw_log(TOKEN, 3, Vec::new(), Vec::new()),
        // Another address: not watched, not a failure.
        raw_log(OTHER, 4, vec![keccak256("Mystery(uint256)")], Vec::new()),
        log(TOKEN, 5, Ping { value: U256::from(5) }.encode_log_data()),
    ];
    let (blocks, counters) = decode(&mut decoder, vec![block(1, logs), block(2, vec![unknown])]);
    let values: Vec<Value> = blocks[0].events.iter().map(|e| args(e)["value"].clone()).collect();
    assert_eq!(values, vec![json!("1"), json!("5")]);
    assert!(blocks[1].events.is_empty());
    assert_eq!(failures(&counters, "c", "unknown_event"), 3, "Mystery twice and the topic-less log");
    assert_eq!(failures(&counters, "c", "malformed"), 0);
    assert_eq!(decoded(&counters, "c"), 2);
}

#[test]
fn malformed_logs_fail_strict_decoding() {
    let selector = Flags::SIGNATURE_HASH;
    let good = Flags { flag: true, small: 200, who: ALICE }.encode_data();
    let word = |i: usize| good[i * 32..(i + 1) * 32].to_vec();
    let with_word = |i: usize, value: [u8; 32]| {
        let mut data = good.clone();
        data[i * 32..(i + 1) * 32].copy_from_slice(&value);
        data
    };
    let mut dirty_address = word(2);
    dirty_address[0] = 1;
    let cases: Vec<(&str, Vec<B256>, Vec<u8>)> = vec![
        ("short data", vec![selector], good[..64].to_vec()),
        ("trailing data", vec![selector], [good.clone(), vec![0; 32]].concat()),
        ("bool that is 2", vec![selector], with_word(0, U256::from(2).to_be_bytes())),
        ("uint8 that is 256", vec![selector], with_word(1, U256::from(256).to_be_bytes())),
        ("address with dirty high bytes", vec![selector], [word(0), word(1), dirty_address].concat()),
        ("extra topic", vec![selector, B256::ZERO], good.clone()),
    ];
    let mut decoder = decoder(vec![source("f", &[FLAGS], &[TOKEN], 0)]);
    for (what, topics, data) in cases {
        let (blocks, counters) =
            decode(&mut decoder, vec![block(1, vec![raw_log(TOKEN, 0, topics.clone(), data.clone())])]);
        assert!(blocks[0].events.is_empty(), "{what}: decoded {:?}", blocks[0].events);
        assert_eq!(failures(&counters, "f", "malformed"), 1, "{what}");
    }
    let (blocks, counters) =
        decode(&mut decoder, vec![block(1, vec![raw_log(TOKEN, 0, vec![selector], good)])]);
    assert_eq!(
        args(&blocks[0].events[0]),
        json!({"flag": true, "small": "200", "who": hex(ALICE.as_slice())})
    );
    assert_eq!(failures(&counters, "f", "malformed"), 0);

    // Dirty values in topics and in bytesN / intN padding fail too.
    let indexed = event("event Tight(int8 indexed tiny, address indexed who, bytes2 code)");
    let data = |code: [u8; 32]| code.to_vec();
    let mut code = [0u8; 32];
    code[..2].copy_from_slice(&[0xbe, 0xef]);
    let mut dirty_code = code;
    dirty_code[5] = 1;
    let minus_one = B256::from(I256::MINUS_ONE.to_be_bytes::<32>());
    let plus_255 = B256::from(U256::from(255).to_be_bytes::<32>());
    let mut dirty_who = ALICE.into_word();
    dirty_who[3] = 9;
    let source =
        ContractSource::new("t".into(), vec![indexed.clone()], SourceTarget::Addresses(vec![TOKEN]), 0)
            .expect("ok");
    let mut decoder = self::decoder(vec![source]);
    let sel = indexed.selector();
    let cases = vec![
        ("bytes2 padding", vec![sel, minus_one, ALICE.into_word()], data(dirty_code), false),
        ("int8 not sign-extended", vec![sel, plus_255, ALICE.into_word()], data(code), false),
        ("address topic with dirty bytes", vec![sel, minus_one, dirty_who], data(code), false),
        ("canonical", vec![sel, minus_one, ALICE.into_word()], data(code), true),
    ];
    for (what, topics, data, ok) in cases {
        let (blocks, counters) = decode(&mut decoder, vec![block(1, vec![raw_log(TOKEN, 0, topics, data)])]);
        assert_eq!(blocks[0].events.len(), usize::from(ok), "{what}");
        assert_eq!(failures(&counters, "t", "malformed"), u64::from(!ok), "{what}");
        if ok {
            assert_eq!(
                args(&blocks[0].events[0]),
                json!({"tiny": "-1", "who": hex(ALICE.as_slice()), "code": "0xbeef"})
            );
        }
    }
}

#[test]
fn start_block_applies_to_addresses() {
    let mut decoder =
        decoder(vec![source("late", &[PING], &[TOKEN], 5), source("early", &[PING], &[TOKEN], 0)]);
    let ping = |i: u32| log(TOKEN, i, Ping { value: U256::from(i) }.encode_log_data());
    let (blocks, counters) =
        decode(&mut decoder, vec![block(4, vec![ping(0)]), block(5, vec![ping(0), ping(1)])]);
    let contracts = |b: &NormalizedBlock| -> Vec<(u32, String)> {
        b.events.iter().map(|e| (e.log_index, e.contract.clone())).collect()
    };
    assert_eq!(contracts(&blocks[0]), vec![(0, "early".to_owned())]);
    // By log index, then by source order.
    assert_eq!(
        contracts(&blocks[1]),
        vec![(0, "late".into()), (0, "early".into()), (1, "late".into()), (1, "early".into())]
    );
    assert_eq!((decoded(&counters, "late"), decoded(&counters, "early")), (2, 3));
}

fn created(child: Address, id: u64) -> LogData {
    Created { child, id: U256::from(id) }.encode_log_data()
}

fn ping(address: Address, log_index: u32, value: u64) -> Log {
    log(address, log_index, Ping { value: U256::from(value) }.encode_log_data())
}

#[test]
fn factory_children_from_their_creation_block_constructor_events_included() {
    let child = address!("0x00000000000000000000000000000000000c0001");
    let mut decoder = decoder(vec![factory_source("pools", &[PING], 0)]);
    let blocks = vec![
        // Before its creation: ignored, not a failure.
        block(9, vec![ping(child, 0, 90)]),
        // The constructor's event comes before the factory's announcement in the same block.
        block(10, vec![ping(child, 0, 100), log(FACTORY, 1, created(child, 1)), ping(child, 2, 101)]),
        // Announced again: known, not created again.
        block(11, vec![log(FACTORY, 0, created(child, 1)), ping(child, 1, 110)]),
    ];
    let (blocks, counters) = decode(&mut decoder, blocks);
    let values =
        |b: &NormalizedBlock| -> Vec<Value> { b.events.iter().map(|e| args(e)["value"].clone()).collect() };
    assert_eq!(values(&blocks[0]), Vec::<Value>::new());
    assert_eq!(values(&blocks[1]), vec![json!("100"), json!("101")]);
    assert_eq!(values(&blocks[2]), vec![json!("110")]);
    assert_eq!(
        blocks[1].created_contracts,
        vec![CreatedContract {
            contract: "pools".into(),
            address: Bytes::copy_from_slice(child.as_slice()),
            factory: Bytes::copy_from_slice(FACTORY.as_slice()),
            tx_hash: blocks[1].logs[1].tx_hash.clone(),
            log_index: 1,
        }]
    );
    assert!(blocks[2].created_contracts.is_empty());
    assert_eq!(decoder.child_addresses("pools"), vec![(child, 10)]);
    assert_eq!(decoder.children("pools"), 1);
    assert_eq!(failures(&counters, "pools", "malformed") + failures(&counters, "pools", "unknown_event"), 0);
    // The factory's own logs are not decoded as the entry's events.
    assert!(blocks.iter().flat_map(|b| &b.events).all(|e| e.address.as_ref() == child.as_slice()));
}

#[test]
fn revert_forgets_children_created_above() {
    let (a, b) = (
        address!("0x00000000000000000000000000000000000c000a"),
        address!("0x00000000000000000000000000000000000c000b"),
    );
    let mut decoder = decoder(vec![factory_source("pools", &[PING], 0)]);
    decoder.add_child("pools", a, 3);
    decoder.add_child("pools", a, 3);
    decoder.add_child("unknown", b, 3);
    assert_eq!(decoder.children("pools"), 1);
    let (_, _) = decode(&mut decoder, vec![block(10, vec![log(FACTORY, 0, created(b, 2))])]);
    assert_eq!(decoder.child_addresses("pools"), vec![(a, 3), (b, 10)]);

    decoder.revert(9);
    assert_eq!(decoder.child_addresses("pools"), vec![(a, 3)]);
    let (blocks, _) = decode(&mut decoder, vec![block(10, vec![ping(a, 0, 1), ping(b, 1, 2)])]);
    assert_eq!(blocks[0].events.len(), 1, "b's logs are no longer decoded: {:?}", blocks[0].events);
    assert!(blocks[0].created_contracts.is_empty());

    // The replacement block creates b again: reported again.
    let (blocks, _) =
        decode(&mut decoder, vec![block(10, vec![log(FACTORY, 0, created(b, 2)), ping(b, 1, 2)])]);
    assert_eq!(blocks[0].created_contracts.len(), 1);
    assert_eq!(blocks[0].events.len(), 1);
}

#[test]
fn factory_start_block_and_bad_announcements() {
    let child = address!("0x00000000000000000000000000000000000c0001");
    let late = address!("0x00000000000000000000000000000000000c0002");
    let mut decoder = decoder(vec![factory_source("pools", &[PING], 5)]);
    let mut bad = created(late, 1);
    bad.data = Bytes::from(vec![1u8; 3]);
    let blocks = vec![
        // Below start_block: the announcement is not followed.
        block(2, vec![log(FACTORY, 0, created(child, 1)), ping(child, 1, 1)]),
        block(6, vec![log(FACTORY, 0, bad), ping(late, 1, 2)]),
    ];
    let (blocks, counters) = decode(&mut decoder, blocks);
    assert!(blocks.iter().all(|b| b.events.is_empty() && b.created_contracts.is_empty()));
    assert_eq!(decoder.children("pools"), 0);
    assert_eq!(failures(&counters, "pools", "malformed"), 1);

    // A child created below start_block (loaded from the store) is decoded from start_block on.
    decoder.add_child("pools", child, 2);
    let (blocks, _) =
        decode(&mut decoder, vec![block(4, vec![ping(child, 0, 4)]), block(5, vec![ping(child, 0, 5)])]);
    assert_eq!((blocks[0].events.len(), blocks[1].events.len()), (0, 1));
}

#[test]
fn a_factory_event_with_other_indexed_flags_is_reported_not_skipped() {
    // Declared with `id` not indexed (2 topics) while this factory indexes it too (3 topics): same selector.
    let child = address!("0x00000000000000000000000000000000000c0003");
    let mut decoder = decoder(vec![factory_source("pools", &[PING], 0)]);
    let announced = LogData::new_unchecked(
        vec![Created::SIGNATURE_HASH, child.into_word(), B256::from(U256::from(9))],
        Bytes::new(),
    );
    let (blocks, counters) = decode(&mut decoder, vec![block(3, vec![log(FACTORY, 0, announced)])]);
    assert!(blocks[0].created_contracts.is_empty());
    assert_eq!(failures(&counters, "pools", "malformed"), 1, "counted, so an operator sees the mismatch");
}

#[test]
fn source_metadata() {
    let abi_order = source(
        "zoo",
        &[OVERLOADED_0, ANON_NUMBER, ERC20_TRANSFER, ERC721_TRANSFER],
        &[OTHER, TOKEN, OTHER],
        7,
    );
    assert_eq!(abi_order.target(), &SourceTarget::Addresses(vec![TOKEN, OTHER]));
    assert_eq!(abi_order.topic0s(), vec![Overloaded_0::SIGNATURE_HASH, abi::erc20::Transfer::SIGNATURE_HASH]);
    assert!(abi_order.has_anonymous_events());
    assert_eq!(abi_order.factory_topic0(), None);
    assert_eq!(abi_order.start_block(), 7);
    assert_eq!(abi_order.name(), "zoo");

    // The fingerprint ignores address order and repeats but not what decides the rows.
    let fingerprint = abi_order.fingerprint();
    assert_eq!(fingerprint.len(), 64);
    let same =
        source("renamed", &[OVERLOADED_0, ANON_NUMBER, ERC20_TRANSFER, ERC721_TRANSFER], &[TOKEN, OTHER], 7);
    assert_eq!(same.fingerprint(), fingerprint);
    let variants = [
        source("zoo", &[OVERLOADED_0, ANON_NUMBER, ERC20_TRANSFER], &[TOKEN, OTHER], 7),
        source("zoo", &[OVERLOADED_0, ANON_NUMBER, ERC20_TRANSFER, ERC721_TRANSFER], &[TOKEN], 7),
        source("zoo", &[OVERLOADED_0, ANON_NUMBER, ERC20_TRANSFER, ERC721_TRANSFER], &[TOKEN, OTHER], 8),
        source(
            "zoo",
            &["event Overloaded(uint256 renamed)", ANON_NUMBER, ERC20_TRANSFER, ERC721_TRANSFER],
            &[TOKEN, OTHER],
            7,
        ),
        source(
            "zoo",
            &["event Overloaded(uint256 indexed value)", ANON_NUMBER, ERC20_TRANSFER, ERC721_TRANSFER],
            &[TOKEN, OTHER],
            7,
        ),
        source(
            "zoo",
            &[OVERLOADED_0, "event AnonNumber(uint256 value)", ERC20_TRANSFER, ERC721_TRANSFER],
            &[TOKEN, OTHER],
            7,
        ),
    ];
    for (i, variant) in variants.iter().enumerate() {
        assert_ne!(variant.fingerprint(), fingerprint, "variant {i}");
    }
    let factory = factory_source("pools", &[PING], 0);
    assert_eq!(factory.factory_topic0(), Some(Created::SIGNATURE_HASH));
    let other_parameter = ContractSource::new(
        "pools".into(),
        events(&[PING]),
        SourceTarget::Factory {
            address: FACTORY,
            event: event("event Created(address indexed child, uint256 id, address other)"),
            parameter: "other".into(),
        },
        0,
    )
    .expect("valid");
    assert_ne!(other_parameter.fingerprint(), factory.fingerprint());

    // `uint` is canonicalised: signature and selector are those of `uint256`.
    let alias = source("alias", &["event Overloaded(uint value)"], &[TOKEN], 0);
    assert_eq!(alias.topic0s(), vec![Overloaded_0::SIGNATURE_HASH]);
    assert_eq!(alias.fingerprint(), source("alias", &[OVERLOADED_0], &[TOKEN], 0).fingerprint());
    // A start block inherited from the chain stays out of it: editing the chain's start re-indexes nothing.
    let inherited = |start| source("token", &[OVERLOADED_0], &[TOKEN], start).with_inherited_start_block();
    assert_eq!(inherited(0).fingerprint(), inherited(100).fingerprint());
    assert_ne!(inherited(0).fingerprint(), source("token", &[OVERLOADED_0], &[TOKEN], 0).fingerprint());
}

#[test]
fn events_json_describes_the_args() {
    let source = source("zoo", &[NESTED, ANON_INDEXED], &[TOKEN], 0);
    let described: Value = serde_json::from_str(&source.events_json()).expect("json");
    let inner = json!([
        {"name": "id", "type": "uint64", "indexed": false},
        {"name": "who", "type": "address", "indexed": false},
    ]);
    assert_eq!(
        described,
        json!([
            {
                "name": "Nested",
                "signature": "Nested(uint256,(string,(uint64,address)[]),(uint64,address)[2],uint256[],string[])",
                "anonymous": false,
                "params": [
                    {"name": "id", "type": "uint256", "indexed": true},
                    {"name": "outer", "type": "(string,(uint64,address)[])", "indexed": false, "components": [
                        {"name": "label", "type": "string", "indexed": false},
                        {"name": "inners", "type": "(uint64,address)[]", "indexed": false, "components": inner},
                    ]},
                    {"name": "pair", "type": "(uint64,address)[2]", "indexed": false, "components": inner},
                    {"name": "values", "type": "uint256[]", "indexed": false},
                    {"name": "names", "type": "string[]", "indexed": false},
                ],
            },
            {
                "name": "AnonIndexed",
                "signature": "AnonIndexed(address,uint256)",
                "anonymous": true,
                "params": [
                    {"name": "who", "type": "address", "indexed": true},
                    {"name": "value", "type": "uint256", "indexed": false},
                ],
            },
        ])
    );
}

#[test]
fn invalid_sources_are_errors() {
    let target = SourceTarget::Addresses(vec![TOKEN]);
    assert!(ContractSource::new("x".into(), Vec::new(), target.clone(), 0).is_err());
    assert!(
        ContractSource::new("x".into(), events(&[PING]), SourceTarget::Addresses(Vec::new()), 0).is_err()
    );
    let factory = |parameter: &str| SourceTarget::Factory {
        address: FACTORY,
        event: event("event Created(address indexed child, uint256 id)"),
        parameter: parameter.into(),
    };
    let err =
        ContractSource::new("x".into(), events(&[PING]), factory("id"), 0).expect_err("uint256 parameter");
    assert!(err.contains("`id`") && err.contains("not an `address`"), "{err}");
    let err =
        ContractSource::new("x".into(), events(&[PING]), factory("nope"), 0).expect_err("missing parameter");
    assert!(err.contains("`nope`"), "{err}");
    let too_many = event("event Many(uint8 indexed a, uint8 indexed b, uint8 indexed c, uint8 indexed d)");
    let err = ContractSource::new("x".into(), vec![too_many], target, 0).expect_err("five topics");
    assert!(err.contains("Many(uint8,uint8,uint8,uint8)"), "{err}");
}

/// A metrics recorder keeping counters as `name{label=value,...}` (labels sorted) → total.
#[derive(Default)]
struct TestRecorder {
    counters: Arc<Mutex<Counters>>,
}

struct TestCounter {
    key: String,
    counters: Arc<Mutex<Counters>>,
}

impl CounterFn for TestCounter {
    fn increment(&self, value: u64) {
        *self.counters.lock().expect("counters").entry(self.key.clone()).or_default() += value;
    }

    fn absolute(&self, value: u64) {
        self.counters.lock().expect("counters").insert(self.key.clone(), value);
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        labels.sort();
        let key = format!("{}{{{}}}", key.name(), labels.join(","));
        Counter::from_arc(Arc::new(TestCounter { key, counters: Arc::clone(&self.counters) }))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}
