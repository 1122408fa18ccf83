//! Live feeds (issue 7): `GET /v1/chains/{chain}/transfers/stream` and `/events/stream`, Server-Sent Events served
//! by the real `chainmux` binary following an anvil chain, read here with a plain HTTP client and a small SSE
//! parser.
//!
//! What a feed delivers is checked against the list endpoints with the same filters (the store's truth) after the
//! fact: a client that applies every message (items appended, `revert` dropping what lies above its `to`) ends up
//! with exactly the list's items, none twice, none missing, across disconnects and reorgs. Each read ends on a
//! sentinel item sent last, never on a timeout.

mod common;

use std::time::{Duration, Instant};

use std::str::FromStr;

use chainmux_core::{Bytes, U256};
use chainmux_testkit::{Anvil, Eth, TestDb, contracts, populate_transfers};
use common::{Chainmux, Config, ContractEntry, anvil_head, lower, temp_dir, wait_synced};
use serde_json::{Value, json};

/// Longest wait for one message of a feed; a feed that stays silent longer is a failure.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// One SSE message.
#[derive(Debug, Clone)]
struct Msg {
    event: String,
    id: Option<String>,
    data: Value,
}

/// An open feed.
struct Feed {
    url: String,
    response: reqwest::Response,
    buffer: String,
}

impl Feed {
    /// `GET url` (with `Last-Event-ID` when given), which must answer 200 with an event stream.
    async fn open(url: &str, last_event_id: Option<&str>) -> Feed {
        chainmux_testkit::install_crypto_provider();
        // No overall timeout: the response is read for as long as the test wants.
        let client = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
        let mut request = client.get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            panic!("GET {url}: {status} {body}");
        }
        assert!(content_type.starts_with("text/event-stream"), "GET {url}: content type {content_type}");
        Feed { url: url.to_owned(), response, buffer: String::new() }
    }

    /// The next message (comments skipped).
    async fn next(&mut self) -> Msg {
        let started = Instant::now();
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "" => {} // a comment (keep-alive)
                        "event" => event = value.to_owned(),
                        "id" => id = Some(value.to_owned()),
                        "data" => data.push_str(value),
                        other => panic!("{}: unexpected SSE field {other:?} in {block:?}", self.url),
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data)
                    .unwrap_or_else(|err| panic!("{}: data is not JSON ({err}): {data}", self.url));
                return Msg { event, id, data };
            }
            let left = MESSAGE_TIMEOUT.checked_sub(started.elapsed()).unwrap_or_default();
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("{}: no message within {MESSAGE_TIMEOUT:?}", self.url))
                .unwrap_or_else(|err| panic!("{}: {err}", self.url))
                .unwrap_or_else(|| panic!("{}: the stream ended", self.url));
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8 stream"));
        }
    }

    /// Reads until the server ends the stream (keep-alive comments do not count as progress).
    async fn ended(&mut self) {
        let started = Instant::now();
        loop {
            let left = MESSAGE_TIMEOUT.checked_sub(started.elapsed()).unwrap_or_default();
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("{}: still open after {MESSAGE_TIMEOUT:?}", self.url));
            match chunk {
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(err) => panic!("{}: {err}", self.url),
            }
        }
    }

    /// Messages up to and including the first item for which `last` holds.
    async fn until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Msg> {
        let mut messages = Vec::new();
        loop {
            let message = self.next().await;
            let done = matches!(message.event.as_str(), "transfer" | "event") && last(&message.data["item"]);
            messages.push(message);
            if done {
                return messages;
            }
        }
    }
}

/// A client's copy of a feed: items in order, with what `revert` messages removed.
#[derive(Debug, Default)]
struct Replica {
    items: Vec<Value>,
    reverts: Vec<Value>,
}

impl Replica {
    fn apply(&mut self, messages: &[Msg]) {
        for message in messages {
            match message.event.as_str() {
                "transfer" | "event" => {
                    let item = &message.data["item"];
                    // Each message carries the item's block and finality, as the item itself states them.
                    assert_eq!(
                        message.data["block"],
                        json!({"number": item["block_number"], "hash": item["block_hash"]}),
                        "{message:?}"
                    );
                    assert_eq!(message.data["finality"], item["finality"], "{message:?}");
                    assert!(
                        ["pending", "safe", "finalized"].contains(&item["finality"].as_str().unwrap_or("")),
                        "{message:?}"
                    );
                    let id =
                        message.id.as_deref().unwrap_or_else(|| panic!("an item without id: {message:?}"));
                    let hash = item["block_hash"].as_str().unwrap_or_default();
                    assert!(
                        id.starts_with(&format!("{}.{hash}.", item["block_number"])),
                        "id {id} of {item}"
                    );
                    self.items.push(item.clone());
                }
                "revert" => {
                    // `to: null`: the fork is unknown, every item goes.
                    let to = message.data["to"]["number"].as_u64();
                    assert!(to.is_some() || message.data["to"].is_null(), "{message:?}");
                    self.items.retain(|i| i["block_number"].as_u64().zip(to).is_some_and(|(n, to)| n <= to));
                    self.reverts.push(message.data.clone());
                }
                "ready" => {}
                other => panic!("unexpected message {other}: {message:?}"),
            }
        }
    }

    /// `field` (`amount`, or an event argument) of every item.
    fn amounts(&self, field: &str) -> Vec<String> {
        self.items.iter().map(|i| amount(i, field)).collect()
    }
}

fn amount(item: &Value, field: &str) -> String {
    let value = if field == "amount" { &item["amount"] } else { &item["args"][field] };
    value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())
}

/// The last id among `messages`.
fn last_id(messages: &[Msg]) -> String {
    messages.iter().rev().find_map(|m| m.id.clone()).expect("a message with an id")
}

/// `item` without its `finality`, which moves as the chain grows.
fn settled(item: &Value) -> Value {
    let mut item = item.clone();
    if let Some(object) = item.as_object_mut() {
        object.remove("finality");
    }
    item
}

/// Every item of `path` (a list endpoint with its filters), page by page.
async fn listed(chainmux: &Chainmux, path: &str) -> Vec<Value> {
    let (items, _) = common::collect_pages(chainmux, path, 100).await;
    items
}

fn assert_same(feed: &[Value], list: &[Value], what: &str) {
    let feed: Vec<Value> = feed.iter().map(settled).collect();
    let list: Vec<Value> = list.iter().map(settled).collect();
    assert_eq!(feed, list, "{what}: the feed's items are not the list endpoint's");
}

fn parse<T: FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Display,
{
    text.parse().unwrap_or_else(|err| panic!("cannot parse {text:?}: {err}"))
}

/// anvil with a `DemoToken` whose account 0 holds plenty, and a `chainmux` following it.
struct World {
    _anvil: Anvil,
    _db: TestDb,
    eth: Eth,
    /// anvil's dev accounts, checksummed (mixed case).
    accounts: Vec<String>,
    /// The `DemoToken`, checksummed.
    token: String,
    chainmux: Chainmux,
    /// The config `chainmux` runs with.
    config: Config,
}

impl World {
    async fn new(configure: impl FnOnce(&mut Config, &str)) -> World {
        let anvil = Anvil::spawn().await;
        let eth = Eth::new(&anvil.url);
        let mix = populate_transfers(&eth, 1).await;
        let accounts = eth.accounts().await.iter().map(ToString::to_string).collect();
        let token = mix.token.to_string();
        let db = TestDb::create().await;
        let mut config = Config::new(&db.url, &[("anvil", &anvil.url)]);
        configure(&mut config, &token);
        let mut chainmux = Chainmux::start(&config).await;
        wait_synced(&mut chainmux, &eth).await;
        World { _anvil: anvil, _db: db, eth, accounts, token, chainmux, config }
    }

    fn account(&self, i: usize) -> String {
        self.accounts[i].to_ascii_lowercase()
    }

    fn token(&self) -> String {
        self.token.to_ascii_lowercase()
    }

    /// `DemoToken.transfer(to, amount)` from account 0, in a block of its own.
    async fn erc20(&self, to: usize, amount: u64) {
        let data = contracts::erc20_transfer(parse(&self.accounts[to]), U256::from(amount));
        self.eth.send(parse(&self.accounts[0]), Some(parse(&self.token)), data, U256::ZERO).await;
    }

    /// A native transfer of `wei` from account 1.
    async fn native(&self, to: usize, wei: u64) {
        let (from, to) = (parse(&self.accounts[1]), parse(&self.accounts[to]));
        self.eth.send(from, Some(to), Bytes::new(), U256::from(wei)).await;
    }

    /// The `anvil_reorg` transaction object of `DemoToken.transfer(to, amount)` from account 0.
    fn erc20_tx(&self, to: usize, amount: u64) -> Value {
        let data = contracts::erc20_transfer(parse(&self.accounts[to]), U256::from(amount));
        json!({"from": self.account(0), "to": self.token(), "input": data.to_string(), "gas": "0x30d40"})
    }
}

/// Transfers made after connecting arrive, filtered by `address` and `token`, each once, with their block and
/// finality; after a disconnect, `Last-Event-ID` (header, then `?last_event_id=`) resumes with exactly the missed
/// transfers.
#[tokio::test]
async fn transfers_live_filtered_and_resumed() {
    let mut world = World::new(|_, _| {}).await;
    let head = wait_synced(&mut world.chainmux, &world.eth).await;
    let (target, token) = (world.account(5), world.token());
    let filters = format!("address={target}&token={token}");
    let url = world.chainmux.url(&format!("/v1/chains/local/transfers/stream?{filters}"));
    let list = format!("/v1/chains/local/transfers?{filters}&from_block={}", head + 1);

    let mut feed = Feed::open(&url, None).await;
    let ready = feed.next().await;
    assert_eq!(ready.event, "ready", "{ready:?}");
    assert_eq!(ready.data["indexed_head"]["number"], json!(head), "{ready:?}");
    // Only the transfers to or from the target in the token match: not another recipient, not native value.
    world.erc20(5, 101).await;
    world.erc20(6, 102).await;
    world.native(5, 7).await;
    world.erc20(5, 103).await;
    let messages = feed.until(|item| item["amount"] == "103").await;
    let mut replica = Replica::default();
    replica.apply(&messages);
    assert_eq!(replica.amounts("amount"), ["101", "103"], "{messages:#?}");
    for item in &replica.items {
        assert_eq!(lower(&item["to"]), target);
        assert_eq!(lower(&item["token"]), token);
        // The block is anvil's.
        let number = item["block_number"].as_u64().expect("block number");
        let block = world.eth.block(number, false).await;
        assert_eq!(item["block_hash"], json!(lower(&block["hash"])), "{item}");
    }
    wait_synced(&mut world.chainmux, &world.eth).await;
    assert_same(&replica.items, &listed(&world.chainmux, &list).await, "live");
    let resume = last_id(&messages);
    drop(feed);

    // Missed while disconnected: 104, 105 and 107.
    world.erc20(5, 104).await;
    world.erc20(5, 105).await;
    world.erc20(6, 106).await;
    world.erc20(5, 107).await;
    wait_synced(&mut world.chainmux, &world.eth).await;
    let mut feed = Feed::open(&url, Some(&resume)).await;
    let messages = feed.until(|item| item["amount"] == "107").await;
    replica.apply(&messages);
    assert_eq!(replica.amounts("amount"), ["101", "103", "104", "105", "107"], "{messages:#?}");
    // The feed goes on live after the missed ones.
    world.erc20(5, 108).await;
    let more = feed.until(|item| item["amount"] == "108").await;
    replica.apply(&more);
    let resume = last_id(&more);
    drop(feed);

    // A client without `EventSource` passes the id as a parameter.
    world.erc20(5, 109).await;
    let mut feed = Feed::open(&format!("{url}&last_event_id={resume}"), None).await;
    let messages = feed.until(|item| item["amount"] == "109").await;
    replica.apply(&messages);
    assert_eq!(replica.amounts("amount"), ["101", "103", "104", "105", "107", "108", "109"]);
    wait_synced(&mut world.chainmux, &world.eth).await;
    assert_same(&replica.items, &listed(&world.chainmux, &list).await, "resumed");
    assert!(replica.reverts.is_empty(), "{:?}", replica.reverts);

    let connections =
        world.chainmux.metric("chainmux_sse_connections", &[("feed", "transfers")]).await.unwrap_or_default();
    assert!(connections >= 1.0, "chainmux_sse_connections{{feed=transfers}} = {connections}");
}

/// A reorg replacing the blocks of two delivered transfers: a `revert` to the common ancestor (a block still on
/// anvil's chain) arrives, then the new branch's transfers, and the client's copy equals the list endpoint.
#[tokio::test]
async fn transfers_reorg() {
    let mut world = World::new(|_, _| {}).await;
    let head = wait_synced(&mut world.chainmux, &world.eth).await;
    let filters = format!("token={}", world.token());
    let url = world.chainmux.url(&format!("/v1/chains/local/transfers/stream?{filters}"));
    let list = format!("/v1/chains/local/transfers?{filters}&from_block={}", head + 1);

    let mut feed = Feed::open(&url, None).await;
    world.erc20(5, 201).await;
    world.erc20(6, 202).await;
    world.erc20(7, 203).await;
    let mut replica = Replica::default();
    let before = feed.until(|item| item["amount"] == "203").await;
    replica.apply(&before);
    assert_eq!(replica.amounts("amount"), ["201", "202", "203"]);
    // What a client that disconnects now holds, and the id it will resume with.
    let (stale_items, stale_id) = (replica.items.clone(), last_id(&before));
    let (top, old_top_hash) = anvil_head(&world.eth).await;
    wait_synced(&mut world.chainmux, &world.eth).await;

    // Replace the blocks of 202 and 203; a new block on top makes the indexer notice.
    let txs = json!([[world.erc20_tx(8, 211), 0], [world.erc20_tx(9, 212), 1]]);
    world.eth.request("anvil_reorg", json!([2, txs])).await;
    assert_eq!(anvil_head(&world.eth).await.0, top, "anvil_reorg changed the height");
    world.erc20(5, 213).await;

    let messages = feed.until(|item| item["amount"] == "213").await;
    replica.apply(&messages);
    assert!(!replica.reverts.is_empty(), "no revert: {messages:#?}");
    let revert = &replica.reverts[0];
    let to = revert["to"]["number"].as_u64().expect("to");
    assert!(to <= top - 2, "revert to {to}: above the fork below block {}", top - 1);
    let canonical = world.eth.block(to, false).await;
    assert_eq!(
        revert["to"]["hash"],
        json!(lower(&canonical["hash"])),
        "revert to a block anvil does not have"
    );
    assert_eq!(revert["from"], json!({"number": top, "hash": old_top_hash}), "{revert}");
    assert_eq!(replica.amounts("amount"), ["201", "211", "212", "213"], "{messages:#?}");
    wait_synced(&mut world.chainmux, &world.eth).await;
    assert_same(&replica.items, &listed(&world.chainmux, &list).await, "after the reorg");

    // A client gone during the reorg resumes with the id of 203, whose block is no longer canonical: a `revert`
    // comes first (to a block still on anvil's chain, or null), then whatever its copy lacks.
    let mut feed = Feed::open(&url, Some(&stale_id)).await;
    let messages = feed.until(|item| item["amount"] == "213").await;
    assert_eq!(messages[0].event, "revert", "{messages:#?}");
    assert_eq!(messages[0].data["from"], json!({"number": top, "hash": old_top_hash}), "{messages:#?}");
    eprintln!("resuming with a reorged-away id: {}", messages[0].data);
    let to = messages[0].data["to"]["number"].as_u64();
    if let Some(to) = to {
        assert!(to <= top - 2, "revert to {to}: above the fork below block {}", top - 1);
        let canonical = world.eth.block(to, false).await;
        assert_eq!(messages[0].data["to"]["hash"], json!(lower(&canonical["hash"])));
    }
    let mut resumed = Replica { items: stale_items, reverts: Vec::new() };
    resumed.apply(&messages);
    // Items above `to` were re-sent, also those below the first connection's start.
    let from = to.map_or(0, |to| (to + 1).min(head + 1));
    let list = format!("/v1/chains/local/transfers?{filters}&from_block={from}");
    assert_same(&resumed.items, &listed(&world.chainmux, &list).await, "resumed across the reorg");
}

/// `/events/stream` with `name=` and `arg.to=` on a configured contract; bad parameters are refused with 400
/// naming the field before any stream starts; streams beyond `gateway.max_sse_streams` get 503.
#[tokio::test]
async fn events_filtered_and_bad_params() {
    let dir = temp_dir("sse-abi");
    let abi = dir.join("DemoToken.abi");
    std::fs::write(&abi, contracts::DEMO_TOKEN_ABI).expect("write DemoToken.abi");
    let mut world = World::new(|config, token| {
        config.contracts = vec![ContractEntry::addresses("token", &abi, &[token])];
        config.gateway_key("max_sse_streams", 1);
    })
    .await;
    let head = wait_synced(&mut world.chainmux, &world.eth).await;
    let target = world.account(5);
    // Mixed case: arguments are compared as addresses, not as text.
    let filters = format!("name=Transfer&arg.to={}", world.accounts[5]);
    let url = world.chainmux.url(&format!("/v1/chains/local/events/stream?{filters}"));
    let list = format!("/v1/chains/local/events?{filters}&from_block={}", head + 1);

    let mut feed = Feed::open(&url, None).await;
    world.erc20(5, 301).await;
    world.erc20(6, 302).await;
    world.erc20(5, 303).await;
    let messages = feed.until(|item| item["args"]["value"] == "303").await;
    let mut replica = Replica::default();
    replica.apply(&messages);
    assert_eq!(replica.amounts("value"), ["301", "303"], "{messages:#?}");
    for item in &replica.items {
        assert_eq!(item["name"], "Transfer");
        assert_eq!(item["contract"], "token");
        assert_eq!(lower(&item["args"]["to"]), target, "{item}");
    }
    wait_synced(&mut world.chainmux, &world.eth).await;
    assert_same(&replica.items, &listed(&world.chainmux, &list).await, "events");

    // One feed is open: the limit is 1.
    let (status, body) = common::get(&url).await.expect("second feed");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many live feeds"), "{body}");
    drop(feed);

    let base = world.chainmux.url("/v1/chains/local");
    let token = world.token();
    let good = format!("{head}.0x{}", "ab".repeat(32));
    let cases = [
        (format!("{base}/transfers/stream?address=0x1234"), "address", None),
        (format!("{base}/transfers/stream?token={token}&fromBlock=1"), "fromBlock", None),
        (format!("{base}/transfers/stream?from_block=9&to_block=3"), "to_block", None),
        (format!("{base}/transfers/stream?limit=0"), "limit", None),
        (format!("{base}/transfers/stream?last_event_id=12.0x12"), "last_event_id", None),
        (format!("{base}/transfers/stream"), "Last-Event-ID", Some("garbage")),
        (format!("{base}/events/stream?last_event_id={good}.x.token"), "last_event_id", None),
        (format!("{base}/events/stream?name=Pong"), "name", None),
        (format!("{base}/events/stream?arg.to=0x12"), "arg.to", None),
    ];
    let client = common::http();
    for (url, field, header) in cases {
        let mut request = client.get(&url);
        if let Some(id) = header {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|err| panic!("GET {url}: {err}: {text}"));
        assert_eq!(status, 400, "GET {url}: {body}");
        assert_eq!(body["error"]["field"], field, "GET {url}: {body}");
    }
    let (status, body) =
        common::get(&world.chainmux.url("/v1/chains/nope/transfers/stream")).await.expect("get");
    assert_eq!(status, 404, "{body}");
}

/// A gateway without an indexer (`--no-indexer`, on the indexer's database) gets no indexer events: its feed polls
/// the indexed head, and starts at `from_block`. On SIGTERM the feed ends, so the process can stop.
#[tokio::test]
async fn gateway_only_feed_polls_the_index() {
    let mut world = World::new(|_, _| {}).await;
    let mut config = world.config.clone();
    config.run_args.push("--no-indexer");
    let mut gateway = Chainmux::start(&config).await;
    let head = wait_synced(&mut world.chainmux, &world.eth).await;
    let filters = format!("token={}&from_block={}", world.token(), head + 1);
    let url = gateway.url(&format!("/v1/chains/local/transfers/stream?{filters}"));

    let mut feed = Feed::open(&url, None).await;
    world.erc20(5, 401).await;
    world.erc20(6, 402).await;
    let messages = feed.until(|item| item["amount"] == "402").await;
    let mut replica = Replica::default();
    replica.apply(&messages);
    assert_eq!(replica.amounts("amount"), ["401", "402"], "{messages:#?}");
    wait_synced(&mut world.chainmux, &world.eth).await;
    let list = listed(&gateway, &format!("/v1/chains/local/transfers?{filters}")).await;
    assert_same(&replica.items, &list, "gateway only");

    gateway.terminate();
    feed.ended().await;
    let status = gateway.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "chainmux did not stop with a feed open: {status:?}");
}
