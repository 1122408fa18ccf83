//! ABI-decoded contract events and factory children, end to end (issue 6): the real `chainmux` binary indexes an
//! anvil chain on which a `ChildFactory` deploys `Child` contracts that emit `Ping`, with `[[chains.contracts]]`
//! entries in its config; the `events` and `contracts` tables and the `/events` and `/contracts` API are checked
//! against the chain.
//!
//! Expected values come from anvil's own `eth_getLogs`, decoded here by hand (topics and data words, no ABI
//! library), and are cross-checked against what the test sent: a decoding bug in chainmux cannot hide behind the
//! same bug in the test.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use chainmux_core::{Bytes, U256};
use chainmux_testkit::contracts::{self, CHILD_CREATED_TOPIC, PING_TOPIC};
use chainmux_testkit::{Anvil, Eth, Fault, FaultProxy, TestDb};
use common::{
    Chainmux, Config, ContractEntry, ContractSource, SYNC_TIMEOUT, collect_pages, connect, cursor, get,
    hex_to_decimal, lower, quantity, temp_dir, topic_address, wait_synced, words,
};
use serde_json::{Value, json};

/// The factory event as a config names it.
const CHILD_CREATED: &str = "ChildCreated(address indexed child, uint256 indexed id)";
/// Canonical signatures, as chainmux stores them.
const PING_SIGNATURE: &str = "Ping(address,uint256,uint256)";
const CHILD_CREATED_SIGNATURE: &str = "ChildCreated(address,uint256)";
/// How long chainmux may take to reach anvil's head and to finish an entry's catch-up.
/// Gas of the transactions given to `anvil_reorg` (which does not estimate).
const REORG_GAS: &str = "0x7a1200";

fn parse<T: FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Display,
{
    text.parse().unwrap_or_else(|err| panic!("cannot parse {text:?}: {err}"))
}

fn u256(n: u64) -> U256 {
    U256::from(n)
}

// ---------------------------------------------------------------------------------------------------------------
// Rows as the tests compare them: hex is `0x`-prefixed lowercase, integers of the ABI are decimal strings.

/// An `events` row (or an `/events` item); position first, so the derived order is the API's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct EventRow {
    block_number: u64,
    log_index: u64,
    contract: String,
    block_hash: String,
    tx_hash: String,
    tx_index: u64,
    address: String,
    name: String,
    signature: String,
    /// `(parameter, JSON text of the value)`, sorted by parameter.
    args: Vec<(String, String)>,
}

impl EventRow {
    /// The argument `name`, which must be a JSON string.
    fn arg(&self, name: &str) -> String {
        self.args
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| serde_json::from_str::<String>(v).ok())
            .unwrap_or_else(|| panic!("{self:?} has no string argument {name}"))
    }
}

/// A JSON object's members sorted by key.
fn sorted_args(args: &Value) -> Vec<(String, String)> {
    let object = args.as_object().unwrap_or_else(|| panic!("args is not an object: {args}"));
    let mut pairs: Vec<(String, String)> = object.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// A factory child as `contracts` holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ChildRow {
    address: String,
    factory: Option<String>,
    block_number: Option<u64>,
    block_hash: Option<String>,
    tx_hash: Option<String>,
    log_index: Option<u64>,
}

// ---------------------------------------------------------------------------------------------------------------
// What anvil says, decoded by hand.

/// Every log of anvil's chain up to its head.
async fn chain_logs(eth: &Eth) -> Vec<Value> {
    let head = eth.block_number().await;
    eth.logs(0, head).await
}

fn topic(log: &Value, i: usize) -> String {
    lower(&log["topics"][i])
}

fn is_event(log: &Value, topic0: &str) -> bool {
    log["topics"].as_array().and_then(|t| t.first()).is_some_and(|t| lower(t) == topic0)
}

/// A `Ping` or `ChildCreated` log decoded by hand into the row entry `contract` makes of it.
fn decode(log: &Value, contract: &str) -> EventRow {
    let (name, signature, args) = if is_event(log, &PING_TOPIC.to_string()) {
        let data = lower(&log["data"]);
        let value = words(&data);
        assert_eq!(value.len(), 1, "Ping carries one data word: {log}");
        let args = json!({
            "sender": topic_address(&topic(log, 1)),
            "id": hex_to_decimal(&topic(log, 2)),
            "value": hex_to_decimal(value[0]),
        });
        ("Ping", PING_SIGNATURE, args)
    } else if is_event(log, &CHILD_CREATED_TOPIC.to_string()) {
        let args = json!({"child": topic_address(&topic(log, 1)), "id": hex_to_decimal(&topic(log, 2))});
        ("ChildCreated", CHILD_CREATED_SIGNATURE, args)
    } else {
        panic!("not a Ping or ChildCreated log: {log}");
    };
    EventRow {
        block_number: quantity(&log["blockNumber"]),
        log_index: quantity(&log["logIndex"]),
        contract: contract.to_owned(),
        block_hash: lower(&log["blockHash"]),
        tx_hash: lower(&log["transactionHash"]),
        tx_index: quantity(&log["transactionIndex"]),
        address: lower(&log["address"]),
        name: name.to_owned(),
        signature: signature.to_owned(),
        args: sorted_args(&args),
    }
}

/// The children announced by `factory`'s `ChildCreated` logs, sorted by address.
fn factory_children(logs: &[Value], factory: &str) -> Vec<ChildRow> {
    let mut children: Vec<ChildRow> = logs
        .iter()
        .filter(|log| lower(&log["address"]) == factory && is_event(log, &CHILD_CREATED_TOPIC.to_string()))
        .map(|log| ChildRow {
            address: topic_address(&topic(log, 1)),
            factory: Some(factory.to_owned()),
            block_number: Some(quantity(&log["blockNumber"])),
            block_hash: Some(lower(&log["blockHash"])),
            tx_hash: Some(lower(&log["transactionHash"])),
            log_index: Some(quantity(&log["logIndex"])),
        })
        .collect();
    children.sort();
    children
}

/// The rows entry `contract` (the `Child` ABI on `children`) must have: every `Ping` a child emitted from the block
/// that created it on, in chain order.
fn expected_pings(logs: &[Value], children: &[ChildRow], contract: &str) -> Vec<EventRow> {
    let created: BTreeMap<&str, u64> =
        children.iter().map(|c| (c.address.as_str(), c.block_number.unwrap_or(0))).collect();
    let mut rows: Vec<EventRow> = logs
        .iter()
        .filter(|log| is_event(log, &PING_TOPIC.to_string()))
        .filter(|log| {
            created.get(lower(&log["address"]).as_str()).is_some_and(|b| quantity(&log["blockNumber"]) >= *b)
        })
        .map(|log| decode(log, contract))
        .collect();
    rows.sort();
    rows
}

/// The `ChildCreated` rows of an entry `contract` watching `factory` with the `ChildFactory` ABI, in chain order.
fn expected_created(logs: &[Value], factory: &str, contract: &str) -> Vec<EventRow> {
    let mut rows: Vec<EventRow> = logs
        .iter()
        .filter(|log| lower(&log["address"]) == factory && is_event(log, &CHILD_CREATED_TOPIC.to_string()))
        .map(|log| decode(log, contract))
        .collect();
    rows.sort();
    rows
}

// ---------------------------------------------------------------------------------------------------------------
// What the database and the API say.

/// The `events` rows of entry `contract`, in chain order.
async fn db_events(pool: &sqlx::PgPool, contract: &str) -> Vec<EventRow> {
    type Row = (i64, i32, String, String, String, i32, String, String, String, String);
    let rows = sqlx::query_as::<_, Row>(
        "SELECT block_number, log_index, contract, '0x' || encode(block_hash, 'hex'), \
         '0x' || encode(tx_hash, 'hex'), tx_index, '0x' || encode(address, 'hex'), name, signature, args::text \
         FROM events WHERE chain = 'local' AND contract = $1 ORDER BY block_number, log_index",
    )
    .bind(contract)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|err| panic!("reading events of {contract}: {err}"));
    rows.into_iter()
        .map(|(block, log_index, contract, block_hash, tx_hash, tx_index, address, name, signature, args)| {
            let args: Value =
                serde_json::from_str(&args).unwrap_or_else(|err| panic!("args is not JSON ({err}): {args}"));
            EventRow {
                block_number: block as u64,
                log_index: log_index as u64,
                contract,
                block_hash,
                tx_hash,
                tx_index: tx_index as u64,
                address,
                name,
                signature,
                args: sorted_args(&args),
            }
        })
        .collect()
}

/// The `contracts` rows of entry `name`, sorted by address.
async fn db_contracts(pool: &sqlx::PgPool, name: &str) -> Vec<ChildRow> {
    type Row = (String, Option<String>, Option<i64>, Option<String>, Option<String>, Option<i32>);
    let rows = sqlx::query_as::<_, Row>(
        "SELECT '0x' || encode(address, 'hex'), '0x' || encode(factory, 'hex'), block_number, \
         '0x' || encode(block_hash, 'hex'), '0x' || encode(tx_hash, 'hex'), log_index \
         FROM contracts WHERE chain = 'local' AND name = $1 ORDER BY address",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|err| panic!("reading contracts of {name}: {err}"));
    let mut rows: Vec<ChildRow> = rows
        .into_iter()
        .map(|(address, factory, block, block_hash, tx_hash, log_index)| ChildRow {
            address,
            factory,
            block_number: block.map(|b| b as u64),
            block_hash,
            tx_hash,
            log_index: log_index.map(|i| i as u64),
        })
        .collect();
    rows.sort();
    rows
}

/// `(block_number, log_index, xmin)` of entry `contract`'s `events` rows: a rewritten row gets another `xmin`.
async fn event_versions(pool: &sqlx::PgPool, contract: &str) -> Vec<(i64, i32, String)> {
    sqlx::query_as::<_, (i64, i32, String)>(
        "SELECT block_number, log_index, xmin::text FROM events WHERE chain = 'local' AND contract = $1 \
         ORDER BY block_number, log_index",
    )
    .bind(contract)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|err| panic!("reading xmin of {contract}'s events: {err}"))
}

/// `(address, xmin)` of entry `name`'s `contracts` rows.
async fn contract_versions(pool: &sqlx::PgPool, name: &str) -> Vec<(String, String)> {
    sqlx::query_as::<_, (String, String)>(
        "SELECT '0x' || encode(address, 'hex'), xmin::text FROM contracts WHERE chain = 'local' AND name = $1 \
         ORDER BY address",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|err| panic!("reading xmin of {name}'s contracts: {err}"))
}

/// An `/events` item as a row; checks the fields a row does not have.
fn api_event(item: &Value) -> EventRow {
    assert_eq!(item["chain"], "local", "{item}");
    assert!(item["finality"].is_string(), "an item without finality: {item}");
    let number = |key: &str| item[key].as_u64().unwrap_or_else(|| panic!("{key} is not a number: {item}"));
    let text =
        |key: &str| item[key].as_str().unwrap_or_else(|| panic!("{key} is not a string: {item}")).to_owned();
    EventRow {
        block_number: number("block_number"),
        log_index: number("log_index"),
        contract: text("contract"),
        block_hash: text("block_hash"),
        tx_hash: text("tx_hash"),
        tx_index: number("tx_index"),
        address: text("address"),
        name: text("name"),
        signature: text("signature"),
        args: sorted_args(&item["args"]),
    }
}

/// Every item of `/v1/chains/local/events?{query}`, `limit` a page, as rows; checks that the pages are in chain
/// order.
async fn api_events(chainmux: &Chainmux, query: &str, limit: usize) -> (Vec<EventRow>, usize) {
    let (items, pages) = collect_pages(chainmux, &format!("/v1/chains/local/events?{query}"), limit).await;
    let rows: Vec<EventRow> = items.iter().map(api_event).collect();
    let positions: Vec<(u64, u64)> = rows.iter().map(|r| (r.block_number, r.log_index)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] <= w[1]),
        "/events?{query} is not in chain order: {positions:?}"
    );
    (rows, pages)
}

/// The entry `name` of the `sources` of `/v1/chains/local/contracts`.
async fn source(chainmux: &Chainmux, name: &str) -> Value {
    let body = chainmux.get_json("/v1/chains/local/contracts?limit=1").await;
    body["sources"]
        .as_array()
        .and_then(|sources| sources.iter().find(|s| s["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("/contracts has no source {name}: {body}"))
}

/// Waits until entry `name` has caught up (`progress.status` of its source is `live`); returns the source.
async fn wait_live(chainmux: &mut Chainmux, name: &str) -> Value {
    let url = chainmux.url("/v1/chains/local/contracts?limit=1");
    let name = name.to_owned();
    chainmux
        .wait_for(&format!("entry {name} to be live"), SYNC_TIMEOUT, || {
            let (url, name) = (url.clone(), name.clone());
            async move {
                let (status, body) = get(&url).await.ok()?;
                let body: Value = serde_json::from_str(&body).ok().filter(|_| status == 200)?;
                let source = body["sources"].as_array()?.iter().find(|s| s["name"] == name.as_str())?.clone();
                (source["progress"]["status"] == "live").then_some(source)
            }
        })
        .await
}

/// Waits until chainmux follows anvil's head and every entry of `config` is live.
async fn wait_all(chainmux: &mut Chainmux, eth: &Eth, config: &Config) -> u64 {
    for entry in &config.contracts {
        wait_live(chainmux, &entry.name).await;
    }
    wait_synced(chainmux, eth).await
}

/// Panics, showing the first differences, unless `actual == expected`.
fn assert_rows<T: std::fmt::Debug + PartialEq>(what: &str, actual: &[T], expected: &[T]) {
    if actual == expected {
        return;
    }
    let extra: Vec<&T> = actual.iter().filter(|row| !expected.contains(row)).take(3).collect();
    let missing: Vec<&T> = expected.iter().filter(|row| !actual.contains(row)).take(3).collect();
    panic!(
        "{what}: {} rows, expected {}\n  first unexpected: {extra:#?}\n  first missing: {missing:#?}",
        actual.len(),
        expected.len()
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The chain under test.

/// `(block, emitting child, sender, id, value)` of one `Ping`.
type SentPing = (u64, String, String, String, String);

/// anvil with a `ChildFactory`, the ABI files, and what the test sent.
struct World {
    eth: Eth,
    /// Dev accounts, EIP-55 checksummed (mixed case).
    accounts: Vec<String>,
    /// The `ChildFactory`, `0x` lowercase.
    factory: String,
    /// The same, EIP-55 checksummed.
    factory_checksummed: String,
    /// Where the ABI files are.
    dir: PathBuf,
    child_abi: PathBuf,
    factory_abi: PathBuf,
    /// `(address, creation block)` of every child, by id.
    children: Vec<(String, u64)>,
    /// Every `Ping` sent, in order.
    pings: Vec<SentPing>,
    anvil: Anvil,
}

impl World {
    async fn new() -> World {
        let anvil = Anvil::spawn().await;
        let eth = Eth::new(&anvil.url);
        let accounts: Vec<String> = eth.accounts().await.iter().map(ToString::to_string).collect();
        assert!(accounts.len() >= 4, "anvil has {} dev accounts", accounts.len());
        let factory = eth.deploy(parse(&accounts[0]), contracts::CHILD_FACTORY).await;
        let dir = temp_dir("events-abi");
        let child_abi = dir.join("Child.abi");
        let factory_abi = dir.join("ChildFactory.abi");
        std::fs::write(&child_abi, contracts::CHILD_ABI).expect("write Child.abi");
        std::fs::write(&factory_abi, contracts::CHILD_FACTORY_ABI).expect("write ChildFactory.abi");
        World {
            eth,
            accounts,
            factory: factory.to_string().to_ascii_lowercase(),
            factory_checksummed: factory.to_string(),
            dir,
            child_abi,
            factory_abi,
            children: Vec::new(),
            pings: Vec::new(),
            anvil,
        }
    }

    /// Account `i`, `0x` lowercase.
    fn account(&self, i: usize) -> String {
        self.accounts[i].to_ascii_lowercase()
    }

    /// The address of child `id`, derived from the factory's nonce (not read from the chain).
    fn child(&self, id: usize) -> String {
        contracts::factory_child_address(parse(&self.factory), id as u64).to_string().to_ascii_lowercase()
    }

    /// A config with chain `local` on `upstream` (fast polling).
    fn config(&self, db_url: &str, upstream: &str) -> Config {
        Config::new(db_url, &[("anvil", upstream)])
    }

    /// Entry `children`: the `Child` ABI on the factory's children.
    fn children_entry(&self) -> ContractEntry {
        ContractEntry::factory("children", &self.child_abi, &self.factory, CHILD_CREATED, "child")
    }

    /// Entry `factory`: the `ChildFactory` ABI on the factory itself.
    fn factory_entry(&self) -> ContractEntry {
        ContractEntry::addresses("factory", &self.factory_abi, &[&self.factory])
    }

    /// A transaction object from account `from` to `to`.
    fn tx(&self, from: usize, to: &str, input: &Bytes) -> Value {
        json!({"from": self.account(from), "to": to, "input": input.to_string()})
    }

    /// Sends `tx` (automine: one block) and waits for its successful receipt; returns the block number.
    async fn send(&self, tx: Value) -> u64 {
        quantity(&self.eth.send_object(tx).await["blockNumber"])
    }

    /// Records what `create(count, ping_in_constructor, ping_after)` mined in `block` did.
    fn record_create(&mut self, block: u64, count: usize, ping_in_constructor: bool, ping_after: bool) {
        for _ in 0..count {
            let id = self.children.len();
            let child = self.child(id);
            self.children.push((child.clone(), block));
            if ping_in_constructor {
                self.pings.push((block, child.clone(), self.factory.clone(), id.to_string(), "0".into()));
            }
            if ping_after {
                self.pings.push((block, child, self.factory.clone(), id.to_string(), "1".into()));
            }
        }
    }

    /// `ChildFactory.create(count, ping_in_constructor, ping_after)` from account 0; returns its block.
    async fn create(&mut self, count: usize, ping_in_constructor: bool, ping_after: bool) -> u64 {
        let input = contracts::factory_create(u256(count as u64), ping_in_constructor, ping_after);
        let block = self.send(self.tx(0, &self.factory, &input)).await;
        self.record_create(block, count, ping_in_constructor, ping_after);
        block
    }

    /// Records what `pingRange(from, to, value)` mined in `block` did.
    fn record_ping_range(&mut self, block: u64, from: usize, to: usize, value: u64) {
        for id in from..to {
            self.pings.push((block, self.child(id), self.factory.clone(), id.to_string(), value.to_string()));
        }
    }

    /// `ChildFactory.pingRange(from, to, value)` from account 0; returns its block.
    async fn ping_range(&mut self, from: usize, to: usize, value: u64) -> u64 {
        let input = contracts::factory_ping_range(u256(from as u64), u256(to as u64), u256(value));
        let block = self.send(self.tx(0, &self.factory, &input)).await;
        self.record_ping_range(block, from, to, value);
        block
    }

    /// `Child.ping(value)` on child `id`, sent by account `from`; returns its block.
    async fn ping(&mut self, from: usize, id: usize, value: u64) -> u64 {
        let child = self.child(id);
        let block = self.send(self.tx(from, &child, &contracts::child_ping(u256(value)))).await;
        self.pings.push((block, child, self.account(from), id.to_string(), value.to_string()));
        block
    }

    /// What the chain says entry `children` must hold: its children and its `Ping` rows. Also checks that the
    /// chain agrees with what the test sent (so the expectation is the test's, confirmed by anvil).
    async fn expected_children(&self) -> (Vec<ChildRow>, Vec<EventRow>) {
        let logs = chain_logs(&self.eth).await;
        let children = factory_children(&logs, &self.factory);
        let pings = expected_pings(&logs, &children, "children");
        let mut sent_children: Vec<(String, u64)> = self.children.clone();
        sent_children.sort();
        let chain_children: Vec<(String, u64)> =
            children.iter().map(|c| (c.address.clone(), c.block_number.unwrap_or(0))).collect();
        assert_rows("children on the chain vs. sent", &chain_children, &sent_children);
        let mut sent_pings = self.pings.clone();
        sent_pings.sort();
        assert_rows("pings on the chain vs. sent", &ping_multiset(&pings), &sent_pings);
        (children, pings)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `Ping` rows as a sorted multiset of [`SentPing`].
fn ping_multiset(rows: &[EventRow]) -> Vec<SentPing> {
    let mut pings: Vec<SentPing> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.name, "Ping", "{r:?}");
            (r.block_number, r.address.clone(), r.arg("sender"), r.arg("id"), r.arg("value"))
        })
        .collect();
    pings.sort();
    pings
}

// ---------------------------------------------------------------------------------------------------------------

/// A factory deploys 1,000 children in 20 transactions (some pinging in their constructor, before the factory's
/// `ChildCreated` in the same block, some right after), and pings ranges of them later. chainmux (small batches,
/// behind a slow proxy) is SIGKILLed half-way: what it wrote is exactly the chain up to its cursor, children and
/// events together. After a restart every child is in `contracts` with its creation block, every `Ping` is an
/// `events` row exactly once, and `/events` and `/contracts` agree.
#[tokio::test]
async fn factory_thousand_children() {
    const CREATES: usize = 20;
    const PER_CREATE: usize = 50;
    let mut world = World::new().await;
    for k in 0..CREATES {
        world.create(PER_CREATE, k % 2 == 0, k % 3 != 1).await;
        // The children just created ping in the next block; every fifth round all children so far ping too.
        world.ping_range(k * PER_CREATE, (k + 1) * PER_CREATE, 100 + k as u64).await;
        if k % 5 == 4 {
            world.ping_range(0, (k + 1) * PER_CREATE, 1000 + k as u64).await;
        }
    }
    let (children, pings) = world.expected_children().await;
    assert_eq!(children.len(), CREATES * PER_CREATE);
    let head = world.eth.block_number().await;
    eprintln!("{} children, {} pings, head {head}", children.len(), pings.len());

    let db = TestDb::create().await;
    let pool = connect(&db.url).await;
    let proxy = FaultProxy::start(&world.anvil.url).await;
    proxy.set(Fault::Delay(Duration::from_millis(250))).await;
    let mut config = world.config(&db.url, &proxy.url);
    config.batch_size = 5;
    let mut entry = world.children_entry();
    entry.events = Some(vec!["Ping".into()]);
    config.contracts = vec![entry];

    // SIGKILL once half of the creations are indexed.
    let halfway = world.children[CREATES * PER_CREATE / 2].1;
    let mut chainmux = Chainmux::start(&config).await;
    let wait_pool = pool.clone();
    chainmux
        .wait_for(&format!("the cursor at {halfway}"), SYNC_TIMEOUT, || {
            let pool = wait_pool.clone();
            async move { cursor(&pool, "local").await.filter(|c| *c as u64 >= halfway) }
        })
        .await;
    chainmux.kill();
    drop(chainmux);
    let at_kill = cursor(&pool, "local").await.expect("a cursor") as u64;
    eprintln!("SIGKILL at cursor {at_kill} of {head}");
    assert!(at_kill < head, "everything was indexed before the SIGKILL: not a mid-way kill");
    let below = |c: &ChildRow| c.block_number.is_some_and(|b| b <= at_kill);
    let partial_children: Vec<ChildRow> = children.iter().filter(|c| below(c)).cloned().collect();
    let partial_pings: Vec<EventRow> = pings.iter().filter(|p| p.block_number <= at_kill).cloned().collect();
    assert!(partial_children.len() < children.len() && !partial_children.is_empty());
    assert_rows("children at the SIGKILL", &db_contracts(&pool, "children").await, &partial_children);
    assert_rows("events at the SIGKILL", &db_events(&pool, "children").await, &partial_pings);

    proxy.set(Fault::None).await;
    let mut chainmux = Chainmux::start(&config).await;
    assert_eq!(wait_all(&mut chainmux, &world.eth, &config).await, head);

    let stored_children = db_contracts(&pool, "children").await;
    assert_eq!(stored_children.len(), CREATES * PER_CREATE);
    assert_rows("children after the restart", &stored_children, &children);
    let stored = db_events(&pool, "children").await;
    assert_rows("events after the restart", &stored, &pings);
    let mut sent = world.pings.clone();
    sent.sort();
    assert_eq!(ping_multiset(&stored), sent, "every Ping sent is stored exactly once");
    let constructor_pings = stored
        .iter()
        .filter(|p| {
            let id: usize = parse(&p.arg("id"));
            p.arg("value") == "0" && world.children[id].1 == p.block_number
        })
        .count();
    assert_eq!(constructor_pings, CREATES.div_ceil(2) * PER_CREATE, "pings from constructors");

    let (api, pages) = api_events(&chainmux, "contract=children&name=Ping", 200).await;
    assert!(pages >= pings.len() / 200, "{pages} pages of 200 for {} events", pings.len());
    assert_rows("/events?contract=children&name=Ping", &api, &pings);

    let (items, _) = collect_pages(&chainmux, "/v1/chains/local/contracts?name=children", 200).await;
    let mut listed: Vec<(String, u64)> = items
        .iter()
        .map(|item| {
            assert_eq!(item["name"], "children", "{item}");
            assert_eq!(lower(&item["factory"]), world.factory, "{item}");
            assert_eq!(item["kind"], "factory", "{item}");
            let block = item["created_block"].as_u64().unwrap_or_else(|| panic!("no created_block: {item}"));
            (lower(&item["address"]), block)
        })
        .collect();
    listed.sort();
    let mut expected: Vec<(String, u64)> = world.children.clone();
    expected.sort();
    assert_rows("/contracts?name=children", &listed, &expected);
    let children_source = source(&chainmux, "children").await;
    assert_eq!(children_source["kind"], "factory", "{children_source}");
    assert_eq!(children_source["children"], json!(CREATES * PER_CREATE), "{children_source}");
    assert_eq!(children_source["progress"]["status"], "live", "{children_source}");
}

/// `/events` filters, each followed page by page (3 items a page): by name, by contract, by emitting address, by
/// an argument compared in its ABI type (`uint256` in decimal and hex, `address` in mixed case), by block range,
/// and several at once. Every page is in chain order and the rows are exactly the expected ones.
#[tokio::test]
async fn filters() {
    let mut world = World::new().await;
    world.create(3, true, false).await;
    world.ping(1, 0, 5).await;
    world.ping(2, 1, 6).await;
    world.ping(1, 1, 7).await;
    world.create(2, false, true).await;
    world.ping(1, 2, 8).await;
    world.ping(3, 1, 9).await;
    world.ping_range(0, 5, 10).await;
    world.ping(1, 1, 11).await;

    let db = TestDb::create().await;
    let mut config = world.config(&db.url, &world.anvil.url);
    config.contracts = vec![world.children_entry(), world.factory_entry()];
    let mut chainmux = Chainmux::start(&config).await;
    wait_all(&mut chainmux, &world.eth, &config).await;

    let (_, pings) = world.expected_children().await;
    let logs = chain_logs(&world.eth).await;
    let created = expected_created(&logs, &world.factory, "factory");
    assert_eq!(created.len(), 5);
    let mut all: Vec<EventRow> = pings.iter().chain(&created).cloned().collect();
    all.sort();

    let sender = world.accounts[1].clone();
    assert!(
        sender.chars().any(|c| c.is_ascii_uppercase()) && sender.chars().any(|c| c.is_ascii_lowercase()),
        "{sender} is not mixed case"
    );
    let child1 = world.child(1);
    let child1_mixed: String = contracts::factory_child_address(parse(&world.factory), 1).to_string();
    let id_is = |r: &EventRow, id: &str| r.arg("id") == id;
    let from_sender = |r: &EventRow| r.name == "Ping" && r.arg("sender") == world.account(1);
    let (first_block, last_block) = (world.pings[3].0, world.pings[8].0);

    let cases: Vec<(String, Vec<EventRow>)> = vec![
        ("name=Ping".into(), pings.clone()),
        ("name=ChildCreated".into(), created.clone()),
        ("contract=factory".into(), created.clone()),
        ("contract=children&name=Ping".into(), pings.clone()),
        ("arg.id=1".into(), all.iter().filter(|r| id_is(r, "1")).cloned().collect()),
        ("arg.id=0x1".into(), all.iter().filter(|r| id_is(r, "1")).cloned().collect()),
        ("name=Ping&arg.id=0x01".into(), pings.iter().filter(|r| id_is(r, "1")).cloned().collect()),
        (format!("arg.sender={sender}"), all.iter().filter(|r| from_sender(r)).cloned().collect()),
        (
            format!("name=Ping&arg.sender={sender}&arg.id=1"),
            pings.iter().filter(|r| from_sender(r) && id_is(r, "1")).cloned().collect(),
        ),
        (format!("arg.child={child1_mixed}"), created.iter().filter(|r| id_is(r, "1")).cloned().collect()),
        (format!("address={child1_mixed}"), pings.iter().filter(|r| r.address == child1).cloned().collect()),
        (
            format!("name=Ping&from_block={first_block}&to_block={last_block}"),
            pings.iter().filter(|r| (first_block..=last_block).contains(&r.block_number)).cloned().collect(),
        ),
        (
            format!("name={PING_SIGNATURE}&arg.value=10"),
            pings.iter().filter(|r| r.arg("value") == "10").cloned().collect(),
        ),
        ("arg.id=999".into(), Vec::new()),
    ];
    for (query, expected) in &cases {
        let (rows, pages) = api_events(&chainmux, query, 3).await;
        assert_rows(&format!("/events?{query}"), &rows, expected);
        assert!(
            pages >= expected.len().div_ceil(3),
            "/events?{query}: {pages} pages of 3 for {}",
            expected.len()
        );
        eprintln!("/events?{query}: {} rows in {pages} pages", rows.len());
    }
    // The cases are not vacuous.
    assert!(cases[4].1.len() > 3 && cases[7].1.len() > 3 && cases[8].1.len() >= 2, "{cases:#?}");

    // A name no entry decodes, or a value that is not of the parameter's type, is a client error naming the
    // parameter, not an empty answer.
    for (query, field) in
        [("name=Pong", "name"), ("arg.id=ten", "arg.id"), ("arg.sender=0x1234", "arg.sender")]
    {
        let url = chainmux.url(&format!("/v1/chains/local/events?{query}"));
        let (status, body) = get(&url).await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
        assert_eq!(status, 400, "GET {url}: {body}");
        assert!(body.contains(field), "GET {url} does not name {field}: {body}");
    }
}

/// A reorg drops the blocks that created three children and pinged two others: those children disappear from
/// `contracts` with all their events, the pings vanish, and the child the new branch creates at the same height
/// (same address, other block) shows up with the new branch's block and events only.
#[tokio::test]
async fn reorg_removes_children_and_events() {
    let mut world = World::new().await;
    world.create(2, false, false).await;
    world.ping_range(0, 2, 77).await;
    world.create(3, false, true).await;

    let db = TestDb::create().await;
    let pool = connect(&db.url).await;
    let mut config = world.config(&db.url, &world.anvil.url);
    config.contracts = vec![world.children_entry()];
    let mut chainmux = Chainmux::start(&config).await;
    wait_all(&mut chainmux, &world.eth, &config).await;
    let (children, pings) = world.expected_children().await;
    assert_eq!(children.len(), 5);
    assert_rows("children before the reorg", &db_contracts(&pool, "children").await, &children);
    assert_rows("events before the reorg", &db_events(&pool, "children").await, &pings);
    let old_hashes: Vec<String> = children.iter().filter_map(|c| c.block_hash.clone()).collect();

    // Replace the last two blocks: one child (id 2, nonce 3: the old child 2's address) pinging in its
    // constructor, then pings of children 0..3.
    let create = contracts::factory_create(u256(1), true, false);
    let ping_range = contracts::factory_ping_range(u256(0), u256(3), u256(88));
    let mut create_tx = world.tx(0, &world.factory, &create);
    create_tx["gas"] = json!(REORG_GAS);
    let mut ping_tx = world.tx(0, &world.factory, &ping_range);
    ping_tx["gas"] = json!(REORG_GAS);
    let head = world.eth.block_number().await;
    world.eth.request("anvil_reorg", json!([2, [[create_tx, 0], [ping_tx, 1]]])).await;
    assert_eq!(world.eth.block_number().await, head, "anvil_reorg changed the height");
    for number in head - 1..=head {
        for receipt in world.eth.block_receipts(number).await {
            assert_eq!(receipt["status"], "0x1", "a transaction of the new branch failed: {receipt}");
        }
    }
    // The test's record of the new branch.
    world.children.truncate(2);
    world.pings.retain(|p| p.0 < head - 1);
    world.record_create(head - 1, 1, true, false);
    world.record_ping_range(head, 0, 3, 88);
    // A new block on top, so a following indexer notices the replaced ones.
    world.ping(1, 2, 99).await;

    wait_synced(&mut chainmux, &world.eth).await;
    let reorgs = chainmux.metric("chainmux_indexer_reorgs_total", &[("chain", "local")]).await;
    assert!(
        reorgs.is_some_and(|r| r >= 1.0),
        "no reorg was handled: chainmux_indexer_reorgs_total {reorgs:?}"
    );
    let (children, pings) = world.expected_children().await;
    assert_eq!(children.len(), 3);
    let stored_children = db_contracts(&pool, "children").await;
    assert_rows("children after the reorg", &stored_children, &children);
    for gone in [world.child(3), world.child(4)] {
        assert!(
            !stored_children.iter().any(|c| c.address == gone),
            "child {gone} of a dropped block is stored"
        );
    }
    let child2 = stored_children.iter().find(|c| c.address == world.child(2)).expect("child 2 is stored");
    assert!(
        child2.block_hash.as_ref().is_some_and(|h| !old_hashes.contains(h)),
        "child 2 is still the old branch's: {child2:?}"
    );
    let stored = db_events(&pool, "children").await;
    assert_rows("events after the reorg", &stored, &pings);
    assert!(
        !stored.iter().any(|e| e.arg("value") == "77" || e.arg("value") == "1"),
        "events of the dropped blocks are stored"
    );
    let (api, _) = api_events(&chainmux, "contract=children", 4).await;
    assert_rows("/events after the reorg", &api, &pings);
}

/// An entry added to the config of an indexed chain: after a restart it catches up from the stored logs while the
/// indexer takes the new blocks. The old entry's rows are not rewritten (same `xmin`), and no block indexed before
/// is fetched again (receipts are asked for the new blocks only, and no `eth_getLogs` at all).
#[tokio::test]
async fn added_later() {
    let mut world = World::new().await;
    for round in 0..3 {
        world.create(5, round != 1, round != 0).await;
    }
    world.ping_range(0, 15, 3).await;
    world.eth.mine(30).await;

    let db = TestDb::create().await;
    let pool = connect(&db.url).await;
    let proxy = FaultProxy::start(&world.anvil.url).await;
    let mut config = world.config(&db.url, &proxy.url);
    config.contracts = vec![world.children_entry()];
    let mut chainmux = Chainmux::start(&config).await;
    let old_head = wait_all(&mut chainmux, &world.eth, &config).await;
    chainmux.kill();
    drop(chainmux);
    let events_before = event_versions(&pool, "children").await;
    let contracts_before = contract_versions(&pool, "children").await;
    assert_eq!(contracts_before.len(), 15);
    assert!(!events_before.is_empty());

    // Two new blocks while stopped, then entry `factory` (the factory's own ChildCreated, address as a one-element
    // list in mixed case) from block 0.
    world.create(2, true, false).await;
    world.ping_range(0, 17, 4).await;
    let head = world.eth.block_number().await;
    let new_blocks = head - old_head;
    assert_eq!(new_blocks, 2);
    assert_ne!(world.factory_checksummed, world.factory, "the factory's address is not mixed case");
    let mut added = world.factory_entry();
    added.source = ContractSource::Addresses(vec![world.factory_checksummed.clone()]);
    added.events = Some(vec!["ChildCreated".into()]);
    added.start_block = Some(0);
    config.contracts.push(added);
    config.poll_interval_ms = 1000;
    proxy.reset_counts();
    let started = Instant::now();
    let mut chainmux = Chainmux::start(&config).await;
    assert_eq!(wait_all(&mut chainmux, &world.eth, &config).await, head);
    let elapsed = started.elapsed();

    let logs = chain_logs(&world.eth).await;
    let created = expected_created(&logs, &world.factory, "factory");
    assert_eq!(created.len(), 17);
    assert_rows("the added entry's events", &db_events(&pool, "factory").await, &created);
    let (children, pings) = world.expected_children().await;
    assert_rows("children", &db_contracts(&pool, "children").await, &children);
    assert_rows("the first entry's events", &db_events(&pool, "children").await, &pings);

    let events_after = event_versions(&pool, "children").await;
    let contracts_after = contract_versions(&pool, "children").await;
    assert_eq!(
        events_after[..events_before.len()],
        events_before[..],
        "the first entry's events (block, log index, xmin) were rewritten"
    );
    assert!(events_after[events_before.len()..].iter().all(|(block, _, _)| *block as u64 > old_head));
    for row in &contracts_before {
        assert!(contracts_after.contains(row), "child {row:?} was rewritten: {contracts_after:?}");
    }

    let receipts = proxy.received("eth_getBlockReceipts");
    let blocks = proxy.received("eth_getBlockByNumber");
    let get_logs = proxy.received("eth_getLogs");
    // Head polls ask for the safe and finalized blocks each: at most two a poll interval, and a few more around
    // the start (cursor check, first heads).
    let polls = elapsed.as_secs() + 3;
    eprintln!(
        "after the restart: {receipts} eth_getBlockReceipts, {blocks} eth_getBlockByNumber, {get_logs} \
         eth_getLogs in {elapsed:?}"
    );
    assert_eq!(receipts, new_blocks, "receipts were fetched again for blocks indexed before");
    assert_eq!(get_logs, 0, "logs were fetched again although every block since 0 is stored");
    assert!(
        blocks <= new_blocks + 2 * polls + 4 && blocks < old_head,
        "{blocks} eth_getBlockByNumber for {new_blocks} new blocks in {elapsed:?}: old blocks fetched again?"
    );
}

/// History below the chain's first indexed block: the chain starts above the factory's creations, the entry at
/// block 0, so the children and their pings below come from filtered `eth_getLogs` — by topic alone with
/// addresses filtered locally (above `logs_topic_only_above`), or by address in chunks of `logs_address_chunk`.
/// Both give exactly the chain's children and events, also those of blocks the indexer takes afterwards.
#[tokio::test]
async fn history_below_chain_start() {
    let mut world = World::new().await;
    world.create(50, true, false).await;
    world.create(50, false, true).await;
    world.create(50, true, true).await;
    world.ping_range(0, 150, 5).await;
    world.eth.mine(3).await;
    let chain_start = world.eth.block_number().await - 1;
    world.ping_range(0, 150, 6).await;
    world.create(10, true, true).await;
    let (children, pings) = world.expected_children().await;
    assert!(children.iter().filter(|c| c.block_number < Some(chain_start)).count() == 150);
    assert!(
        pings.iter().any(|p| p.block_number < chain_start)
            && pings.iter().any(|p| p.block_number > chain_start)
    );

    let mut get_logs = Vec::new();
    for (mode, keys) in [
        ("topic-only", [("logs_topic_only_above", 100), ("logs_address_chunk", 500)]),
        ("address chunks", [("logs_topic_only_above", 100_000), ("logs_address_chunk", 16)]),
    ] {
        let db = TestDb::create().await;
        let pool = connect(&db.url).await;
        let proxy = FaultProxy::start(&world.anvil.url).await;
        let mut config = world.config(&db.url, &proxy.url);
        config.start_block = chain_start;
        for (key, value) in keys {
            config.chain_key(key, value);
        }
        let mut entry = world.children_entry();
        entry.start_block = Some(0);
        config.contracts = vec![entry];
        let mut chainmux = Chainmux::start(&config).await;
        wait_all(&mut chainmux, &world.eth, &config).await;
        assert_rows(&format!("children ({mode})"), &db_contracts(&pool, "children").await, &children);
        assert_rows(&format!("events ({mode})"), &db_events(&pool, "children").await, &pings);
        let lowest: Option<i64> = sqlx::query_scalar("SELECT min(number) FROM blocks WHERE chain = 'local'")
            .fetch_one(&pool)
            .await
            .expect("lowest block");
        assert_eq!(lowest, Some(chain_start as i64), "blocks below the chain's start were indexed ({mode})");
        let calls = proxy.received("eth_getLogs");
        eprintln!("{mode}: {calls} eth_getLogs");
        get_logs.push(calls);
    }
    // 150 children below the start in chunks of 16 take at least 10 calls; topic-only needs fewer.
    assert!(get_logs[1] >= 10, "address chunks of 16: only {} eth_getLogs", get_logs[1]);
    assert!(get_logs[0] < get_logs[1], "topic-only fetching made {get_logs:?} eth_getLogs calls");
}

/// `check-config` rejects a bad ABI file (not JSON, or missing), an event the ABI lacks and a factory parameter
/// that is not an address input, naming the key of each; the same config with those fixed (relative ABI paths)
/// passes.
#[test]
fn config_errors_name_the_key() {
    let dir = temp_dir("events-config");
    std::fs::write(dir.join("Child.abi"), contracts::CHILD_ABI).expect("write Child.abi");
    std::fs::write(dir.join("ChildFactory.abi"), contracts::CHILD_FACTORY_ABI)
        .expect("write ChildFactory.abi");
    std::fs::write(dir.join("broken.abi"), "{ not json").expect("write broken.abi");
    let factory = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
    let config = |entries: Vec<ContractEntry>| {
        let mut config =
            Config::new("postgres://postgres@127.0.0.1:1/unused", &[("anvil", "http://127.0.0.1:1")]);
        config.contracts = entries;
        config
    };
    let children = |abi: &str| {
        let mut entry = ContractEntry::factory("children", Path::new(abi), factory, CHILD_CREATED, "child");
        entry.events = Some(vec!["Ping".into()]);
        entry
    };
    let own = |events: &[&str]| {
        let mut entry = ContractEntry::addresses("factory", Path::new("ChildFactory.abi"), &[factory]);
        // No events: the key is left out (every event of the ABI).
        entry.events = (!events.is_empty()).then(|| events.iter().map(|e| (*e).to_owned()).collect());
        entry
    };

    let (status, stdout, stderr) = common::check_config(&dir, &config(vec![children("Child.abi"), own(&[])]));
    assert!(status.success(), "a valid config was rejected ({status}):\n{stdout}\n{stderr}");
    let (status, _, stderr) =
        common::check_config(&dir, &config(vec![children("Child.abi"), own(&["ChildCreated"])]));
    assert!(status.success(), "a valid config was rejected ({status}):\n{stderr}");

    let mut wrong_parameter = children("Child.abi");
    wrong_parameter.source = ContractSource::Factory {
        address: factory.into(),
        event: CHILD_CREATED.into(),
        parameter: "id".into(),
    };
    let missing = dir.join("missing.abi");
    let cases: Vec<(&str, Vec<ContractEntry>, &str)> = vec![
        ("ABI file that is not JSON", vec![children("broken.abi")], "chains[0].contracts[0].abi"),
        ("missing ABI file", vec![children(&missing.display().to_string())], "chains[0].contracts[0].abi"),
        (
            "event the ABI lacks",
            vec![children("Child.abi"), own(&["ChildCreated", "Pong"])],
            "chains[0].contracts[1].events[1]",
        ),
        ("non-address factory parameter", vec![wrong_parameter], "chains[0].contracts[0].factory.parameter"),
    ];
    for (what, entries, key) in cases {
        let (status, stdout, stderr) = common::check_config(&dir, &config(entries));
        assert!(!status.success(), "{what}: check-config accepted it:\n{stdout}");
        assert!(stderr.contains(key), "{what}: stderr does not name {key}:\n{stderr}");
        eprintln!("{what}: {}", stderr.trim());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
