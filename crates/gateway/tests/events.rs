//! `/events` and `/contracts` end to end: the router over a real store (fresh PostgreSQL database) holding decoded
//! events and factory children written through `Store::write_batch`, and `[[chains.contracts]]` entries stored with
//! SQL in every progress state. Expected answers are built from the fixture data, never from the code under test.
//!
//! Entries (chain `local`, blocks 10..=30; heads: latest 30, safe 25, finalized 20):
//!
//! | entry   | addresses             | events                                                        | progress            |
//! |---------|-----------------------|---------------------------------------------------------------|---------------------|
//! | token   | TOKEN                 | Transfer (1–3 per block), Approval (every 5th block)          | live, caught up     |
//! | mirror  | TOKEN                 | Transfer: the same logs as `token`, rows of its own           | live, caught up     |
//! | kitchen | KITCHEN               | Delta, Tagged, Batch, Moved(address), Moved(uint256,uint256), anonymous Anon | live (starts at live_from) |
//! | pools   | factory FACTORY: POOL1 (block 12), POOL2 (22), POOL3 (28) | Swap                             | live                |
//! | late    | LATE                  | Ping (no rows)                                                | catching up, none   |
//! | partial | PARTIAL               | Ping (no rows)                                                | catching up to 15   |
//! | fresh   | FRESH                 | Ping (no rows)                                                | live (starts above live_from) |

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use alloy::primitives::{U256, keccak256};
use axum::Router;
use axum::http::StatusCode;
use chainmux_core::{ChainKind, ChainSpec, CreatedContract, DecodedEvent, Heads, NormalizedBlock};
use chainmux_gateway::{AppState, ChainHandle, router};
use chainmux_rpc::{Pool, PoolConfig};
use chainmux_store::Store;
use chainmux_testkit::TestDb;
use serde_json::{Value, json};

use common::{ALICE, BOB, CAROL, CHAIN, CHAIN_ID, TOKEN, block_hash, config, hex0x, ptr, tx_hash, upper0x};

const SOL: &str = "sol";
const KITCHEN: &str = "0x6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";
const FACTORY: &str = "0xfafafafafafafafafafafafafafafafafafafafa";
const POOL1: &str = "0x9191919191919191919191919191919191919191";
const POOL2: &str = "0x9292929292929292929292929292929292929292";
const POOL3: &str = "0x9393939393939393939393939393939393939393";
const LATE: &str = "0x1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a";
const PARTIAL: &str = "0x2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b";
const FRESH: &str = "0x3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c";

const FIRST: u64 = 10;
const LAST: u64 = 30;
const HEADS: Heads = Heads { latest: 30, safe: Some(25), finalized: Some(20) };

const TRANSFER: &str = "Transfer(address,address,uint256)";
const APPROVAL: &str = "Approval(address,address,uint256)";
const MOVED_ADDRESS: &str = "Moved(address)";
const MOVED_UINT: &str = "Moved(uint256,uint256)";

/// Finality under [`HEADS`], spelled out independently of the code under test.
fn finality(number: u64) -> &'static str {
    match number {
        ..=20 => "finalized",
        21..=25 => "safe",
        _ => "pending",
    }
}

/// The 32-byte tag of the `Tagged` event.
fn tag() -> [u8; 32] {
    [0xab; 32]
}

/// The uint `to` of one `Moved(uint256,uint256)`: BOB's address as a number, so a 40-digit hex filter value fits
/// both overloads.
fn bob_as_uint() -> String {
    U256::from_str_radix(&BOB[2..], 16).expect("hex").to_string()
}

/// One decoded event of the fixture.
#[derive(Debug, Clone)]
struct Ev {
    block: u64,
    log_index: u32,
    tx_index: u32,
    contract: &'static str,
    address: &'static str,
    name: &'static str,
    signature: &'static str,
    args: Value,
}

impl Ev {
    /// The API rendering, from the fixture data.
    fn json(&self) -> Value {
        json!({
            "chain": CHAIN,
            "block_number": self.block,
            "block_hash": hex0x(block_hash(self.block)),
            "tx_hash": hex0x(tx_hash(self.block, self.tx_index)),
            "tx_index": self.tx_index,
            "log_index": self.log_index,
            "address": self.address,
            "contract": self.contract,
            "name": self.name,
            "signature": self.signature,
            "args": self.args,
            "finality": finality(self.block),
        })
    }

    fn arg(&self, name: &str) -> &Value {
        &self.args[name]
    }
}

/// A factory child of the fixture: (address, creation block, log index of the factory event).
const CHILDREN: [(&str, u64, u32); 3] = [(POOL1, 12, 0), (POOL2, 22, 0), (POOL3, 28, 0)];

/// Every decoded event of the fixture, in no particular order.
fn fixture_events() -> Vec<Ev> {
    let people = [ALICE, BOB, CAROL];
    let mut events = Vec::new();
    let mut next_log = [0u32; (LAST + 1) as usize];
    let mut log = |block: u64| {
        let index = next_log[block as usize];
        next_log[block as usize] += 1;
        index
    };
    // The factory events announcing the children come first in their blocks.
    for (_, block, _) in CHILDREN {
        assert_eq!(log(block), 0);
    }
    for block in FIRST..=LAST {
        let i = block as usize;
        for t in 0..(block % 3 + 1) {
            let log_index = log(block);
            let t = t as usize;
            let args = json!({
                "from": people[(i + t) % 3],
                "to": people[(2 * i + t + 1) % 3],
                "value": (block * 100 + t as u64).to_string(),
            });
            // Two entries decode the same log: same block and log index, a row each.
            for contract in ["token", "mirror"] {
                events.push(Ev {
                    block,
                    log_index,
                    tx_index: log_index,
                    contract,
                    address: TOKEN,
                    name: "Transfer",
                    signature: TRANSFER,
                    args: args.clone(),
                });
            }
        }
        if block % 5 == 0 {
            let log_index = log(block);
            events.push(Ev {
                block,
                log_index,
                tx_index: log_index,
                contract: "token",
                address: TOKEN,
                name: "Approval",
                signature: APPROVAL,
                args: json!({ "owner": ALICE, "spender": BOB, "value": "1000" }),
            });
        }
    }
    let kitchen = |block: u64, log_index: u32, name: &'static str, signature: &'static str, args: Value| Ev {
        block,
        log_index,
        tx_index: 0,
        contract: "kitchen",
        address: KITCHEN,
        name,
        signature,
        args,
    };
    let delta = "Delta(int256,bool,uint8)";
    events.push(kitchen(11, log(11), "Delta", delta, json!({ "delta": "-5", "flag": true, "small": "7" })));
    events.push(kitchen(12, log(12), "Delta", delta, json!({ "delta": "5", "flag": false, "small": "200" })));
    events.push(kitchen(
        13,
        log(13),
        "Tagged",
        "Tagged(bytes32,string,string,bytes)",
        json!({
            "tag": hex0x(tag()),
            "label": hex0x(keccak256("hello")),
            "note": "hello",
            "data": "0xdeadbeef",
        }),
    ));
    events.push(kitchen(
        14,
        log(14),
        "Batch",
        "Batch(uint256[],(uint256,address))",
        json!({ "ids": ["1", "2"], "pair": { "amount": "7", "owner": ALICE } }),
    ));
    events.push(kitchen(15, log(15), "Moved", MOVED_ADDRESS, json!({ "to": BOB })));
    events.push(kitchen(15, log(15), "Moved", MOVED_ADDRESS, json!({ "to": CAROL })));
    events.push(kitchen(15, log(15), "Moved", MOVED_UINT, json!({ "to": "1000", "amount": "3" })));
    events.push(kitchen(16, log(16), "Moved", MOVED_UINT, json!({ "to": bob_as_uint(), "amount": "4" })));
    events.push(kitchen(16, log(16), "Anon", "Anon(uint256,address)", json!({ "0": "5", "1": CAROL })));
    let swaps = [
        (12, POOL1, ALICE, "-100", "250"),
        (14, POOL1, BOB, "300", "0"),
        (22, POOL1, ALICE, "-1", "1"),
        (22, POOL2, BOB, "-100", "9"),
        (23, POOL2, ALICE, "42", "42"),
        (28, POOL3, BOB, "-7", "7"),
    ];
    for (block, pool, sender, amount0, amount1) in swaps {
        let log_index = log(block);
        events.push(Ev {
            block,
            log_index,
            tx_index: log_index,
            contract: "pools",
            address: pool,
            name: "Swap",
            signature: "Swap(address,int256,uint256)",
            args: json!({ "sender": sender, "amount0": amount0, "amount1": amount1 }),
        });
    }
    events
}

fn bytes(text: &str) -> alloy::primitives::Bytes {
    text.parse().unwrap_or_else(|err| panic!("bad hex {text}: {err}"))
}

/// Blocks 10..=30 carrying the fixture's events and factory children (nothing else).
fn fixture_blocks(events: &[Ev]) -> Vec<NormalizedBlock> {
    (FIRST..=LAST)
        .map(|number| {
            let mut block = NormalizedBlock::logs_only(ptr(number), Vec::new());
            block.parent = Some(ptr(number - 1));
            block.timestamp = 1_700_000_000 + 12 * number;
            block.events = events
                .iter()
                .filter(|e| e.block == number)
                .map(|e| DecodedEvent {
                    tx_hash: tx_hash(number, e.tx_index).to_vec().into(),
                    tx_index: e.tx_index,
                    log_index: e.log_index,
                    address: bytes(e.address),
                    contract: e.contract.to_owned(),
                    name: e.name.to_owned(),
                    signature: e.signature.to_owned(),
                    args: e.args.to_string(),
                })
                .collect();
            block.created_contracts = CHILDREN
                .iter()
                .filter(|(_, block, _)| *block == number)
                .map(|(address, _, log_index)| CreatedContract {
                    contract: "pools".into(),
                    address: bytes(address),
                    factory: bytes(FACTORY),
                    tx_hash: tx_hash(number, *log_index).to_vec().into(),
                    log_index: *log_index,
                })
                .collect();
            block
        })
        .collect()
}

/// `{name, signature, anonymous, params}` as `contract_sources.events` holds an event.
fn spec(name: &str, anonymous: bool, params: &[(&str, &str, bool)]) -> Value {
    let types: Vec<&str> = params.iter().map(|(_, ty, _)| *ty).collect();
    json!({
        "name": name,
        "signature": format!("{name}({})", types.join(",")),
        "anonymous": anonymous,
        "params": params
            .iter()
            .map(|(name, ty, indexed)| json!({ "name": name, "type": ty, "indexed": indexed }))
            .collect::<Vec<_>>(),
    })
}

fn transfer_spec() -> Value {
    spec(
        "Transfer",
        false,
        &[("from", "address", true), ("to", "address", true), ("value", "uint256", false)],
    )
}

fn ping_spec() -> Value {
    spec("Ping", false, &[("n", "uint256", false)])
}

/// One stored `[[chains.contracts]]` entry.
struct Source {
    name: &'static str,
    addresses: &'static [&'static str],
    factory: Option<(&'static str, &'static str, &'static str)>,
    start_block: i64,
    live_from: i64,
    caught_up_to: Option<i64>,
    events: Vec<Value>,
}

fn sources() -> Vec<Source> {
    let batch = json!({
        "name": "Batch",
        "signature": "Batch(uint256[],(uint256,address))",
        "anonymous": false,
        "params": [
            { "name": "ids", "type": "uint256[]", "indexed": false },
            { "name": "pair", "type": "(uint256,address)", "indexed": false, "components": [
                { "name": "amount", "type": "uint256", "indexed": false },
                { "name": "owner", "type": "address", "indexed": false },
            ] },
        ],
    });
    vec![
        Source {
            name: "token",
            addresses: &[TOKEN],
            factory: None,
            start_block: 0,
            live_from: 10,
            caught_up_to: Some(9),
            events: vec![
                transfer_spec(),
                spec(
                    "Approval",
                    false,
                    &[("owner", "address", true), ("spender", "address", true), ("value", "uint256", false)],
                ),
            ],
        },
        Source {
            name: "mirror",
            addresses: &[TOKEN],
            factory: None,
            start_block: 0,
            live_from: 10,
            caught_up_to: Some(9),
            events: vec![transfer_spec()],
        },
        Source {
            name: "kitchen",
            addresses: &[KITCHEN],
            factory: None,
            start_block: 10,
            live_from: 10,
            caught_up_to: None,
            events: vec![
                spec(
                    "Delta",
                    false,
                    &[("delta", "int256", false), ("flag", "bool", false), ("small", "uint8", false)],
                ),
                spec(
                    "Tagged",
                    false,
                    &[
                        ("tag", "bytes32", true),
                        ("label", "string", true),
                        ("note", "string", false),
                        ("data", "bytes", false),
                    ],
                ),
                batch,
                spec("Moved", false, &[("to", "address", true)]),
                spec("Moved", false, &[("to", "uint256", false), ("amount", "uint256", false)]),
                spec("Anon", true, &[("", "uint256", false), ("", "address", false)]),
            ],
        },
        Source {
            name: "pools",
            addresses: &[],
            factory: Some((FACTORY, "PoolCreated(address)", "pool")),
            start_block: 10,
            live_from: 10,
            caught_up_to: None,
            events: vec![spec(
                "Swap",
                false,
                &[("sender", "address", true), ("amount0", "int256", false), ("amount1", "uint256", false)],
            )],
        },
        Source {
            name: "late",
            addresses: &[LATE],
            factory: None,
            start_block: 0,
            live_from: 25,
            caught_up_to: None,
            events: vec![ping_spec()],
        },
        Source {
            name: "partial",
            addresses: &[PARTIAL],
            factory: None,
            start_block: 5,
            live_from: 25,
            caught_up_to: Some(15),
            events: vec![ping_spec()],
        },
        Source {
            name: "fresh",
            addresses: &[FRESH],
            factory: None,
            start_block: 40,
            live_from: 31,
            caught_up_to: None,
            events: vec![ping_spec()],
        },
    ]
}

struct EventsFixture {
    app: Router,
    events: Vec<Ev>,
    _db: TestDb,
}

impl EventsFixture {
    /// Fresh database: the entries of [`sources`] (stored with SQL, every column), the fixture's blocks written in
    /// two batches, [`HEADS`]; and an empty Solana chain next to it.
    async fn new() -> Self {
        let db = TestDb::create().await;
        let store = Store::connect(&db.url, 5).await.expect("connect to the test database");
        store.migrate().await.expect("migrate");
        let evm = ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: CHAIN_ID };
        let solana = ChainSpec { name: SOL.into(), kind: ChainKind::Solana, chain_id: 0 };
        store.register_chain(&evm).await.expect("register the EVM chain");
        store.register_chain(&solana).await.expect("register the Solana chain");

        for source in sources() {
            let events = Value::Array(source.events.clone()).to_string();
            sqlx::query(
                "INSERT INTO contract_sources (chain, name, fingerprint, kind, factory, factory_event, \
                 factory_parameter, start_block, live_from, caught_up_to, events, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, now())",
            )
            .bind(CHAIN)
            .bind(source.name)
            .bind(format!("fingerprint of {}", source.name))
            .bind(if source.factory.is_some() { "factory" } else { "addresses" })
            .bind(source.factory.map(|(address, _, _)| bytes(address).to_vec()))
            .bind(source.factory.map(|(_, event, _)| event))
            .bind(source.factory.map(|(_, _, parameter)| parameter))
            .bind(source.start_block)
            .bind(source.live_from)
            .bind(source.caught_up_to)
            .bind(events)
            .execute(store.pool())
            .await
            .expect("insert contract source");
            for address in source.addresses {
                sqlx::query("INSERT INTO contracts (chain, name, address) VALUES ($1, $2, $3)")
                    .bind(CHAIN)
                    .bind(source.name)
                    .bind(bytes(address).to_vec())
                    .execute(store.pool())
                    .await
                    .expect("insert configured address");
            }
        }

        let events = fixture_events();
        let blocks = fixture_blocks(&events);
        let (first, second) = blocks.split_at(11);
        let stats = store.write_batch(CHAIN, None, first).await.expect("write blocks 10..=20");
        let more = store.write_batch(CHAIN, Some(ptr(20)), second).await.expect("write blocks 21..=30");
        assert_eq!(stats.events + more.events, events.len() as u64);
        assert_eq!(stats.contracts + more.contracts, CHILDREN.len() as u64);
        store.set_heads(CHAIN, &HEADS).await.expect("set heads");

        let handle = |spec: ChainSpec| {
            let pool = Arc::new(Pool::new(spec.name.clone(), Vec::new(), PoolConfig::default()));
            ChainHandle { spec, pool }
        };
        let state = AppState::new(store, vec![handle(evm), handle(solana)], config());
        Self { app: router(state), events, _db: db }
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        common::get(&self.app, uri).await
    }

    async fn get_ok(&self, uri: &str) -> Value {
        common::get_ok(&self.app, uri).await
    }

    /// Every item of `uri` (without `limit` or `cursor`), page by page of `limit`.
    async fn all(&self, uri: &str, limit: usize) -> Vec<Value> {
        common::all_pages(&self.app, uri, limit, &indexed_head()).await.concat()
    }

    /// The single page of `uri`, which must hold everything.
    async fn items(&self, uri: &str) -> Vec<Value> {
        let page = self.get_ok(uri).await;
        assert_eq!(page["next_cursor"], Value::Null, "{uri}: {page}");
        assert_eq!(page["indexed_head"], indexed_head(), "{uri}: {page}");
        page["items"].as_array().expect("items").clone()
    }

    /// The fixture's events matching `keep`, rendered, in (block, log index, entry) order.
    fn expected(&self, keep: impl Fn(&Ev) -> bool) -> Vec<Value> {
        let mut kept: Vec<&Ev> = self.events.iter().filter(|e| keep(e)).collect();
        kept.sort_by_key(|e| (e.block, e.log_index, e.contract));
        kept.into_iter().map(Ev::json).collect()
    }

    /// `uri` answers 400 naming `field`; returns the message.
    async fn bad(&self, uri: &str, field: &str) -> String {
        let (status, body) = self.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{uri}: {body}");
        assert_eq!(body["error"]["field"], field, "{uri}: {body}");
        body["error"]["message"].as_str().expect("message").to_owned()
    }
}

fn indexed_head() -> Value {
    json!({ "number": LAST, "hash": hex0x(block_hash(LAST)) })
}

const EVENTS: &str = "/v1/chains/local/events";

#[tokio::test]
async fn events_paginate_every_row_once_in_order() {
    let fx = EventsFixture::new().await;
    let everything = fx.expected(|_| true);
    assert!(everything.len() > 60, "{} events", everything.len());
    for limit in [2, 7, 1000] {
        assert_eq!(fx.all(EVENTS, limit).await, everything, "limit {limit}");
    }
    // The keys are unique, and a log decoded by two entries is two rows, ordered by entry.
    let keys: BTreeSet<(u64, u64, String)> = everything
        .iter()
        .map(|e| {
            let n = |k: &str| e[k].as_u64().expect(k);
            (n("block_number"), n("log_index"), e["contract"].as_str().expect("contract").to_owned())
        })
        .collect();
    assert_eq!(keys.len(), everything.len());
    let first_two: Vec<&Value> = everything.iter().take(2).map(|e| &e["contract"]).collect();
    assert_eq!(first_two, [&json!("mirror"), &json!("token")]);
    assert_eq!(everything[0]["log_index"], everything[1]["log_index"]);

    // Default page size (100) with a next cursor that continues it.
    let page = fx.get_ok(EVENTS).await;
    let first = page["items"].as_array().expect("items");
    assert_eq!(first.len(), everything.len().min(100), "{page}");
    assert_eq!(first[..], everything[..first.len()]);
}

#[tokio::test]
async fn events_by_contract_name_signature_address_and_blocks() {
    let fx = EventsFixture::new().await;
    for contract in ["token", "mirror", "kitchen", "pools"] {
        let expected = fx.expected(|e| e.contract == contract);
        assert!(!expected.is_empty(), "{contract}");
        assert_eq!(fx.all(&format!("{EVENTS}?contract={contract}"), 5).await, expected, "{contract}");
    }
    // Configured entries without rows: an empty page, not an error.
    assert_eq!(fx.items(&format!("{EVENTS}?contract=late")).await, Vec::<Value>::new());

    let transfers = fx.expected(|e| e.name == "Transfer");
    assert_eq!(fx.all(&format!("{EVENTS}?name=Transfer"), 10).await, transfers);
    let token_transfers = fx.expected(|e| e.name == "Transfer" && e.contract == "token");
    assert_eq!(fx.all(&format!("{EVENTS}?contract=token&name=Transfer"), 10).await, token_transfers);
    assert_eq!(fx.items(&format!("{EVENTS}?name=Approval")).await, fx.expected(|e| e.name == "Approval"));

    // A name selects every overload, a signature one of them.
    let moved = fx.expected(|e| e.name == "Moved");
    assert_eq!(moved.len(), 4);
    assert_eq!(fx.items(&format!("{EVENTS}?name=Moved")).await, moved);
    for signature in [MOVED_ADDRESS, MOVED_UINT] {
        let expected = fx.expected(|e| e.signature == signature);
        assert_eq!(expected.len(), 2, "{signature}");
        assert_eq!(fx.items(&format!("{EVENTS}?name={signature}")).await, expected, "{signature}");
        // Spaces after the commas, as people write them, ask for the same event.
        let spaced = signature.replace(',', ",%20");
        assert_eq!(fx.items(&format!("{EVENTS}?name={spaced}")).await, expected, "{spaced}");
    }
    assert_eq!(
        fx.items(&format!("{EVENTS}?contract=token&name={APPROVAL}")).await,
        fx.expected(|e| e.signature == APPROVAL)
    );

    // The emitting address, in either case: one factory child's events.
    let pool1 = fx.expected(|e| e.address == POOL1);
    assert_eq!(pool1.len(), 3);
    for address in [POOL1.to_owned(), upper0x(bytes(POOL1))] {
        assert_eq!(fx.items(&format!("{EVENTS}?address={address}")).await, pool1, "{address}");
    }
    assert_eq!(
        fx.items(&format!("{EVENTS}?address={TOKEN}&contract=mirror")).await.len(),
        fx.expected(|e| e.contract == "mirror").len()
    );

    // Block range, inclusive at both ends; numbers in decimal or hex.
    let range = fx.expected(|e| e.contract == "token" && (12..=14).contains(&e.block));
    assert!(range.len() >= 6, "{range:?}");
    assert_eq!(fx.items(&format!("{EVENTS}?contract=token&from_block=12&to_block=14")).await, range);
    assert_eq!(fx.items(&format!("{EVENTS}?contract=token&from_block=0xc&to_block=0xe")).await, range);
    assert_eq!(
        fx.all(&format!("{EVENTS}?from_block=25"), 4).await,
        fx.expected(|e| e.block >= 25),
        "finality of safe and pending rows"
    );
    assert_eq!(fx.items(&format!("{EVENTS}?from_block=31")).await, Vec::<Value>::new());
}

#[tokio::test]
async fn arg_filters_compare_values_in_their_abi_types() {
    let fx = EventsFixture::new().await;

    // Addresses in any case.
    let to_alice = fx.expected(|e| e.contract == "token" && e.arg("to") == ALICE);
    assert!(to_alice.len() >= 5, "{to_alice:?}");
    for alice in [ALICE.to_owned(), upper0x(bytes(ALICE))] {
        assert_eq!(fx.all(&format!("{EVENTS}?contract=token&arg.to={alice}"), 3).await, to_alice, "{alice}");
    }

    // Integers by value: decimal, hex, leading zeros; a Transfer and the Approvals carry 1000.
    let thousand = fx.expected(|e| e.contract == "token" && e.arg("value") == "1000");
    assert!(thousand.iter().any(|e| e["name"] == "Transfer"), "{thousand:?}");
    assert!(thousand.iter().filter(|e| e["name"] == "Approval").count() >= 4, "{thousand:?}");
    for value in ["1000", "0x3e8", "0X3E8", "01000", "0x0003E8"] {
        assert_eq!(
            fx.items(&format!("{EVENTS}?contract=token&arg.value={value}")).await,
            thousand,
            "{value}"
        );
    }
    let transfer_1000 = fx.expected(|e| e.name == "Transfer" && e.arg("value") == "1000");
    assert_eq!(transfer_1000.len(), 2, "token and mirror");
    assert_eq!(fx.items(&format!("{EVENTS}?name=Transfer&arg.value=1000")).await, transfer_1000);

    // Signed integers, negative in decimal or hex; booleans; small integer widths.
    let minus_five = fx.expected(|e| e.arg("delta") == "-5");
    assert_eq!(minus_five.len(), 1);
    for value in ["-5", "-0x5", "-005"] {
        assert_eq!(
            fx.items(&format!("{EVENTS}?contract=kitchen&arg.delta={value}")).await,
            minus_five,
            "{value}"
        );
    }
    assert_eq!(fx.items(&format!("{EVENTS}?arg.delta=5")).await, fx.expected(|e| e.arg("delta") == "5"));
    for flag in [true, false] {
        let expected = fx.expected(|e| e.arg("flag") == flag);
        assert_eq!(expected.len(), 1, "{flag}");
        assert_eq!(fx.items(&format!("{EVENTS}?arg.flag={flag}")).await, expected, "{flag}");
    }
    assert_eq!(fx.items(&format!("{EVENTS}?arg.small=0xc8")).await, fx.expected(|e| e.arg("small") == "200"));
    let negative_swaps = fx.expected(|e| e.arg("amount0") == "-100");
    assert_eq!(negative_swaps.len(), 2);
    assert_eq!(fx.items(&format!("{EVENTS}?contract=pools&arg.amount0=-100")).await, negative_swaps);

    // bytes32 and bytes by value, either case; an indexed string by its hash; a string as is.
    let tagged = fx.expected(|e| e.name == "Tagged");
    assert_eq!(tagged.len(), 1);
    assert_eq!(fx.items(&format!("{EVENTS}?arg.tag={}", upper0x(tag()))).await, tagged);
    assert_eq!(fx.items(&format!("{EVENTS}?arg.label={}", upper0x(keccak256("hello")))).await, tagged);
    assert_eq!(fx.items(&format!("{EVENTS}?arg.note=hello")).await, tagged);
    assert_eq!(fx.items(&format!("{EVENTS}?arg.data=0xDEADBEEF")).await, tagged);
    assert_eq!(fx.items(&format!("{EVENTS}?arg.note=Hello")).await, Vec::<Value>::new());
    assert_eq!(
        fx.items(&format!("{EVENTS}?arg.tag=0x{}", "ab".repeat(31) + "ac")).await,
        Vec::<Value>::new()
    );

    // Two arguments are ANDed.
    let alice_to_bob = fx.expected(|e| e.contract == "token" && e.arg("from") == ALICE && e.arg("to") == BOB);
    let from_alice = fx.expected(|e| e.contract == "token" && e.arg("from") == ALICE);
    assert!(!alice_to_bob.is_empty() && alice_to_bob.len() < from_alice.len());
    let upper_bob = upper0x(bytes(BOB));
    assert_eq!(
        fx.all(&format!("{EVENTS}?contract=token&arg.from={ALICE}&arg.to={upper_bob}"), 2).await,
        alice_to_bob
    );
    let alice_to_herself =
        fx.expected(|e| e.contract == "token" && e.arg("from") == ALICE && e.arg("to") == ALICE);
    assert!(!alice_to_herself.is_empty() && alice_to_herself != alice_to_bob);
    assert_eq!(
        fx.items(&format!("{EVENTS}?contract=token&arg.to={ALICE}&arg.from={ALICE}")).await,
        alice_to_herself
    );

    // A parameter with several types: the value is compared in each type it fits. BOB's address is also the uint
    // `to` of one Moved(uint256,uint256); 1000 fits only the uint.
    let bob_moves =
        fx.expected(|e| e.name == "Moved" && (e.arg("to") == BOB || *e.arg("to") == bob_as_uint()));
    assert_eq!(bob_moves.len(), 2);
    assert_eq!(fx.items(&format!("{EVENTS}?name=Moved&arg.to={upper_bob}")).await, bob_moves);
    let moved_1000 = fx.expected(|e| e.name == "Moved" && e.arg("to") == "1000");
    assert_eq!(moved_1000.len(), 1);
    assert_eq!(fx.items(&format!("{EVENTS}?name=Moved&arg.to=1000")).await, moved_1000);
    // Over every entry, `to` is also Transfer's: the address matches those too.
    let to_bob_anywhere = fx.expected(|e| e.arg("to") == BOB || *e.arg("to") == bob_as_uint());
    assert!(to_bob_anywhere.len() > bob_moves.len());
    assert_eq!(fx.all(&format!("{EVENTS}?arg.to={BOB}"), 9).await, to_bob_anywhere);
    // Restricted to one overload by its signature, BOB is only an address.
    assert_eq!(
        fx.items(&format!("{EVENTS}?name={MOVED_ADDRESS}&arg.to={BOB}")).await,
        fx.expected(|e| e.signature == MOVED_ADDRESS && e.arg("to") == BOB)
    );

    // Unnamed parameters by position (an anonymous event).
    let anon = fx.expected(|e| e.name == "Anon");
    assert_eq!(fx.items(&format!("{EVENTS}?contract=kitchen&arg.0=5")).await, anon);
    assert_eq!(fx.items(&format!("{EVENTS}?arg.1={}", upper0x(bytes(CAROL)))).await, anon);

    // Argument filters with the other filters.
    assert_eq!(
        fx.items(&format!("{EVENTS}?contract=pools&address={POOL2}&arg.sender={ALICE}")).await,
        fx.expected(|e| e.address == POOL2 && e.arg("sender") == ALICE)
    );
    assert_eq!(
        fx.all(&format!("{EVENTS}?contract=mirror&arg.from={CAROL}&from_block=15&to_block=24"), 2).await,
        fx.expected(|e| e.contract == "mirror" && e.arg("from") == CAROL && (15..=24).contains(&e.block))
    );
}

#[tokio::test]
async fn bad_event_queries_name_the_field() {
    let fx = EventsFixture::new().await;

    let message = fx.bad(&format!("{EVENTS}?contract=token&arg.value=abc"), "arg.value").await;
    assert!(message.contains("uint256"), "{message}");
    fx.bad(&format!("{EVENTS}?contract=token&arg.value=-1"), "arg.value").await;
    fx.bad(&format!("{EVENTS}?contract=token&arg.value=0x1{}", "0".repeat(64)), "arg.value").await;
    let message = fx.bad(&format!("{EVENTS}?contract=token&arg.to=0x1234"), "arg.to").await;
    assert!(message.contains("address"), "{message}");
    let message = fx.bad(&format!("{EVENTS}?arg.small=256"), "arg.small").await;
    assert!(message.contains("uint8"), "{message}");
    let message = fx.bad(&format!("{EVENTS}?arg.delta=1.5"), "arg.delta").await;
    assert!(message.contains("int256"), "{message}");
    fx.bad(&format!("{EVENTS}?arg.flag=1"), "arg.flag").await;
    fx.bad(&format!("{EVENTS}?arg.tag=0xabcd"), "arg.tag").await;
    let message = fx.bad(&format!("{EVENTS}?arg.label=hello"), "arg.label").await;
    assert!(message.contains("hash"), "{message}");
    fx.bad(&format!("{EVENTS}?arg.data=0xabc"), "arg.data").await;
    // 1000 fits neither overload of Moved(address): restricted to it, it is an error.
    let message = fx.bad(&format!("{EVENTS}?name={MOVED_ADDRESS}&arg.to=1000"), "arg.to").await;
    assert!(message.contains("address"), "{message}");

    // Unknown parameters: not in the selected events at all, or only in events not selected.
    let message = fx.bad(&format!("{EVENTS}?arg.nope=1"), "arg.nope").await;
    assert!(message.contains("nope"), "{message}");
    fx.bad(&format!("{EVENTS}?contract=token&arg.delta=1"), "arg.delta").await;
    fx.bad(&format!("{EVENTS}?name=Approval&arg.to={ALICE}"), "arg.to").await;
    let message = fx.bad(&format!("{EVENTS}?contract=kitchen&arg.ids=1"), "arg.ids").await;
    assert!(message.contains("not filterable"), "{message}");
    fx.bad(&format!("{EVENTS}?arg.pair=1"), "arg.pair").await;
    fx.bad(&format!("{EVENTS}?arg.=1"), "arg.").await;
    fx.bad(&format!("{EVENTS}?arg.to={ALICE}&arg.to={BOB}"), "arg.to").await;

    let message = fx.bad(&format!("{EVENTS}?contract=nope"), "contract").await;
    assert!(message.contains("token") && message.contains("pools"), "{message}");
    let message = fx.bad(&format!("{EVENTS}?name=Nope"), "name").await;
    assert!(message.contains("Transfer"), "{message}");
    fx.bad(&format!("{EVENTS}?contract=kitchen&name=Transfer"), "name").await;
    fx.bad(&format!("{EVENTS}?name=Transfer(uint256)"), "name").await;

    for limit in ["0", "1001", "x", "-1"] {
        fx.bad(&format!("{EVENTS}?limit={limit}"), "limit").await;
    }
    for cursor in ["garbage", "12.3", "12.x.token", "12.3."] {
        fx.bad(&format!("{EVENTS}?cursor={cursor}"), "cursor").await;
    }
    fx.bad(&format!("{EVENTS}?address=0x1234"), "address").await;
    fx.bad(&format!("{EVENTS}?from_block=14&to_block=12"), "to_block").await;
    fx.bad(&format!("{EVENTS}?from_block=latest"), "from_block").await;
    fx.bad(&format!("{EVENTS}?fromBlock=1"), "fromBlock").await;
    fx.bad(&format!("{EVENTS}?contract=token&contract=mirror"), "contract").await;

    let (status, body) = fx.get("/v1/chains/nope/events").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for path in ["events", "contracts"] {
        let (status, body) = fx.get(&format!("/v1/chains/{SOL}/{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("EVM")), "{body}");
    }
}

/// The progress of an entry, spelled out: `indexed_to` is the catch-up's progress until it is done, then the
/// chain's indexed head (30).
fn progress(
    status: &str,
    start_block: i64,
    live_from: i64,
    caught_up_to: Option<i64>,
    indexed_to: Option<i64>,
) -> Value {
    json!({
        "status": status,
        "start_block": start_block,
        "live_from": live_from,
        "caught_up_to": caught_up_to,
        "indexed_to": indexed_to,
    })
}

fn expected_progress(name: &str) -> Value {
    match name {
        "token" | "mirror" => progress("live", 0, 10, Some(9), Some(30)),
        "kitchen" | "pools" => progress("live", 10, 10, None, Some(30)),
        "late" => progress("catching_up", 0, 25, None, None),
        "partial" => progress("catching_up", 5, 25, Some(15), Some(15)),
        "fresh" => progress("live", 40, 31, None, Some(30)),
        other => panic!("no entry {other}"),
    }
}

fn static_contract(name: &str, address: &str) -> Value {
    json!({
        "name": name,
        "address": address,
        "kind": "addresses",
        "factory": null,
        "created_block": null,
        "created_block_hash": null,
        "created_tx_hash": null,
        "created_log_index": null,
        "finality": "finalized",
        "progress": expected_progress(name),
    })
}

fn child(address: &str, block: u64, log_index: u32) -> Value {
    json!({
        "name": "pools",
        "address": address,
        "kind": "factory",
        "factory": FACTORY,
        "created_block": block,
        "created_block_hash": hex0x(block_hash(block)),
        "created_tx_hash": hex0x(tx_hash(block, log_index)),
        "created_log_index": log_index,
        "finality": finality(block),
        "progress": expected_progress("pools"),
    })
}

fn expected_sources() -> Vec<Value> {
    let mut sources: Vec<Value> = sources()
        .into_iter()
        .map(|s| {
            json!({
                "name": s.name,
                "kind": if s.factory.is_some() { "factory" } else { "addresses" },
                "factory": s.factory.map(|(address, _, _)| address),
                "factory_event": s.factory.map(|(_, event, _)| event),
                "factory_parameter": s.factory.map(|(_, _, parameter)| parameter),
                "start_block": s.start_block,
                "children": if s.factory.is_some() { CHILDREN.len() } else { 0 },
                "events": s.events.iter().map(|e| e["signature"].clone()).collect::<Vec<_>>(),
                "progress": expected_progress(s.name),
            })
        })
        .collect();
    sources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    sources
}

const CONTRACTS: &str = "/v1/chains/local/contracts";

#[tokio::test]
async fn contracts_list_configured_addresses_and_factory_children_with_progress() {
    let fx = EventsFixture::new().await;
    // By entry name, then creation block (configured addresses first), then address.
    let expected = vec![
        static_contract("fresh", FRESH),
        static_contract("kitchen", KITCHEN),
        static_contract("late", LATE),
        static_contract("mirror", TOKEN),
        static_contract("partial", PARTIAL),
        child(POOL1, 12, 0),
        child(POOL2, 22, 0),
        child(POOL3, 28, 0),
        static_contract("token", TOKEN),
    ];
    for limit in [1, 2, 4, 100] {
        assert_eq!(fx.all(CONTRACTS, limit).await, expected, "limit {limit}");
    }
    let page = fx.get_ok(&format!("{CONTRACTS}?limit=2")).await;
    assert_eq!(page["sources"], json!(expected_sources()), "{page}");
    let later = fx
        .get_ok(&format!("{CONTRACTS}?limit=2&cursor={}", page["next_cursor"].as_str().expect("next")))
        .await;
    assert_eq!(later["sources"], page["sources"], "every page lists every entry");
    assert_eq!(later["items"], json!(expected[2..4]), "{later}");

    // One entry: its children, and only its source.
    let pools = fx.get_ok(&format!("{CONTRACTS}?name=pools")).await;
    assert_eq!(pools["items"], json!(expected[5..8]), "{pools}");
    assert_eq!(pools["next_cursor"], Value::Null);
    assert_eq!(pools["indexed_head"], indexed_head());
    let pools_source: Vec<Value> = expected_sources().into_iter().filter(|s| s["name"] == "pools").collect();
    assert_eq!(pools["sources"], json!(pools_source), "{pools}");
    assert_eq!(pools["sources"][0]["children"], 3);
    // Paginating inside one factory's children.
    assert_eq!(
        common::all_pages(&fx.app, &format!("{CONTRACTS}?name=pools"), 1, &indexed_head()).await.concat(),
        expected[5..8].to_vec()
    );

    let message = fx.bad(&format!("{CONTRACTS}?name=nope"), "name").await;
    assert!(message.contains("kitchen"), "{message}");
    for cursor in
        ["x", "12.0x12.pools", "s.0xzz.pools", "12", "-1.0x9191919191919191919191919191919191919191.pools"]
    {
        fx.bad(&format!("{CONTRACTS}?cursor={cursor}"), "cursor").await;
    }
    fx.bad(&format!("{CONTRACTS}?limit=0"), "limit").await;
    fx.bad(&format!("{CONTRACTS}?contract=pools"), "contract").await;
}

#[tokio::test]
async fn a_chain_without_entries_answers_empty_lists() {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 2).await.expect("connect");
    store.migrate().await.expect("migrate");
    let spec = ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: CHAIN_ID };
    store.register_chain(&spec).await.expect("register");
    let pool = Arc::new(Pool::new(spec.name.clone(), Vec::new(), PoolConfig::default()));
    let app = router(AppState::new(store, vec![ChainHandle { spec, pool }], config()));

    let events = common::get_ok(&app, EVENTS).await;
    assert_eq!(
        events,
        json!({ "items": [], "next_cursor": null, "indexed_head": null, "finalized_head": null })
    );
    let contracts = common::get_ok(&app, CONTRACTS).await;
    assert_eq!(
        contracts,
        json!({ "items": [], "next_cursor": null, "indexed_head": null, "finalized_head": null, "sources": [] })
    );
    let (status, body) = common::get(&app, &format!("{EVENTS}?contract=token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "contract");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("none is configured")), "{body}");
    let (status, body) = common::get(&app, &format!("{EVENTS}?arg.to={ALICE}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "arg.to");
}
