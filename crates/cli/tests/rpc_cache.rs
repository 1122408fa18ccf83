//! End-to-end tests of the JSON-RPC proxy's finality-aware response cache on an EVM chain, with real anvil and the
//! real `chainmux` binary.
//!
//! - Finality: an indexer process (`--no-gateway`, straight to anvil, `finality_confirmations = 3`) stores the heads;
//!   a gateway process (`--no-indexer`, same database) reads them, in front of anvil behind a [`FaultProxy`] that
//!   counts the calls reaching the node. Answers about finalized blocks (by number, by the `finalized` tag, by
//!   hash, state at a finalized number) reach anvil once and are then hits; an answer about an unfinalized block
//!   is not kept (unfinalized TTL 0); `latest` follows the head; errors, `null`, `pending` and pending
//!   transactions always reach anvil.
//! - Reorgs: one process indexing and serving (so the gateway gets the indexer's `Revert` events), unfinalized
//!   answers kept for 10 minutes; after `anvil_reorg`, none of them (a block above the fork, a receipt of a
//!   reorged-out transaction, a balance at `latest`) is served again: each answer equals anvil's.

mod common;

use std::time::Duration;

use chainmux_core::U256;
use chainmux_testkit::{Anvil, Eth, FaultProxy, TestDb};
use common::{Chainmux, Config, quantity, rpc_request, wait_synced};
use serde_json::{Value, json};

const CHAIN: &str = "local";
const CONFIRMATIONS: u64 = 3;
const WAIT: Duration = Duration::from_secs(60);

/// One `/rpc/local` answer.
#[derive(Debug)]
struct Answer {
    /// `x-chainmux-cache`.
    cache: String,
    /// `x-chainmux-upstream`.
    upstream: String,
    json: Value,
}

impl Answer {
    fn result(&self) -> &Value {
        assert!(self.json.get("error").is_none(), "unexpected error: {}", self.json);
        &self.json["result"]
    }
}

async fn call(chainmux: &Chainmux, method: &str, params: Value) -> Answer {
    let (headers, json) = chainmux.rpc_with_headers(&rpc_request(7, method, params)).await;
    let header =
        |name: &str| headers.get(name).map(|v| v.to_str().expect("ASCII").to_owned()).unwrap_or_default();
    let (cache, upstream) = (header("x-chainmux-cache"), header("x-chainmux-upstream"));
    assert_eq!(json["id"], 7, "the id is the request's, also on a hit: {json}");
    Answer { cache, upstream, json }
}

fn hex(number: u64) -> String {
    format!("{number:#x}")
}

/// An indexer process straight to anvil and a gateway process in front of anvil behind a counting proxy.
struct Split {
    anvil: Anvil,
    eth: Eth,
    proxy: FaultProxy,
    gateway: Chainmux,
    _indexer: Chainmux,
    _db: TestDb,
}

impl Split {
    async fn start() -> Split {
        let anvil = Anvil::spawn().await;
        let eth = Eth::new(&anvil.url);
        let proxy = FaultProxy::start(&anvil.url).await;
        let db = TestDb::create().await;

        let mut indexer = Config::new(&db.url, &[("anvil", &anvil.url)]);
        indexer.chain_key("finality_confirmations", CONFIRMATIONS);
        indexer.run_args.push("--no-gateway");
        common::migrate(&indexer);
        let indexer = Chainmux::spawn(&indexer);

        let mut gateway = Config::new(&db.url, &[("primary", &proxy.url)]);
        gateway.run_args.push("--no-indexer");
        // One upstream, no hedges: every call the proxy counts is one the gateway made for the test.
        gateway.rpc_key("hedge", "false");
        gateway.gateway_key("anonymous_rpc_rps", 0).gateway_key("rpc_cache_unfinalized_ttl_ms", 0);
        let gateway = Chainmux::start(&gateway).await;
        Split { anvil, eth, proxy, gateway, _indexer: indexer, _db: db }
    }

    /// Waits until the gateway's finalized floor (`chainmux_rpc_cache_finalized_block`) is at least `number`.
    async fn wait_finalized(&mut self, number: u64) {
        let labels = [("chain", CHAIN)];
        let url = self.gateway.url("/metrics");
        self.gateway
            .wait_for(&format!("finalized floor {number}"), WAIT, || async {
                let (_, text) = common::get(&url).await.ok()?;
                let floor = common::metric_value(&text, "chainmux_rpc_cache_finalized_block", &labels)?;
                (floor >= number as f64).then_some(())
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finalized_answers_come_from_the_cache_and_latest_follows_the_head() {
    let mut split = Split::start().await;
    let accounts = split.eth.accounts().await;
    let (from, to) = (accounts[0], accounts[1]);
    let tx = split.eth.send(from, Some(to), Default::default(), U256::from(1_000_000_000u64)).await;
    let tx = tx.to_string();
    split.eth.request("anvil_mine", json!([10])).await;
    let head = wait_synced(&mut split.gateway, &split.eth).await;
    let floor = head - CONFIRMATIONS;
    split.wait_finalized(floor).await;
    let gateway = &split.gateway;
    split.proxy.reset_counts();

    // A finalized block with its transactions: asked upstream once, then served from the cache, byte for byte.
    let direct = split.eth.request("eth_getBlockByNumber", json!(["0x1", true])).await;
    let first = call(gateway, "eth_getBlockByNumber", json!(["0x1", true])).await;
    assert_eq!((first.cache.as_str(), first.result()), ("miss", &direct));
    assert_eq!(first.result()["transactions"][0]["hash"], tx.as_str());
    for _ in 0..3 {
        let again = call(gateway, "eth_getBlockByNumber", json!(["0x1", true])).await;
        assert_eq!((again.cache.as_str(), again.upstream.as_str()), ("hit", "cache"));
        assert_eq!(again.json, first.json);
    }
    assert_eq!(split.proxy.received("eth_getBlockByNumber"), 1, "one upstream call for four answers");

    // The `finalized` tag names the node's own finalized block: forwarded as it is, never cached.
    for _ in 0..2 {
        let tagged = call(gateway, "eth_getBlockByNumber", json!(["finalized", true])).await;
        let direct = split.eth.request("eth_getBlockByNumber", json!(["finalized", true])).await;
        assert_eq!((tagged.cache.as_str(), tagged.result()), ("bypass", &direct));
    }
    assert_eq!(split.proxy.received("eth_getBlockByNumber"), 3);
    // A finalized number is cached like the first one.
    let by_number = call(gateway, "eth_getBlockByNumber", json!([hex(floor), true])).await;
    let again = call(gateway, "eth_getBlockByNumber", json!([hex(floor), true])).await;
    assert_eq!((by_number.cache.as_str(), again.cache.as_str()), ("miss", "hit"));
    assert_eq!(again.json, by_number.json);
    assert_eq!(split.proxy.received("eth_getBlockByNumber"), 4);

    // By hash, state at a finalized number, the chain id: one upstream call each.
    let cases = [
        ("eth_getTransactionReceipt", json!([tx])),
        ("eth_getTransactionByHash", json!([tx])),
        ("eth_getBlockByHash", json!([first.result()["hash"], false])),
        ("eth_getBalance", json!([to.to_string(), "0x1"])),
        ("eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": hex(floor)}])),
        ("eth_chainId", json!([])),
    ];
    for (method, params) in cases {
        let direct = split.eth.request(method, params.clone()).await;
        assert!(!direct.is_null(), "{method}");
        let miss = call(gateway, method, params.clone()).await;
        assert_eq!((miss.cache.as_str(), miss.result()), ("miss", &direct), "{method}");
        let hit = call(gateway, method, params).await;
        assert_eq!((hit.cache.as_str(), &hit.json), ("hit", &miss.json), "{method}");
        assert_eq!(split.proxy.received(method), 1, "{method}");
    }

    // Above the floor and with a zero unfinalized TTL: asked upstream every time.
    split.proxy.reset_counts();
    for _ in 0..2 {
        let answer = call(gateway, "eth_getBlockByNumber", json!([hex(head), false])).await;
        assert_eq!(answer.cache, "miss");
        assert_eq!(quantity(&answer.result()["number"]), head);
    }
    assert_eq!(split.proxy.received("eth_getBlockByNumber"), 2);

    // `latest` is the head, resolved to its number: a new block is never answered with the old one.
    let latest = call(gateway, "eth_getBlockByNumber", json!(["latest", false])).await;
    assert_eq!(quantity(&latest.result()["number"]), head);
    split.eth.request("evm_mine", json!([])).await;
    let url = gateway.url(&format!("/rpc/{CHAIN}"));
    split
        .gateway
        .wait_for("the gateway's head to move", WAIT, || async {
            let answer = common::rpc_answer(&url, "eth_blockNumber", json!([])).await;
            (quantity(&answer["result"]) > head).then_some(())
        })
        .await;
    let latest = call(&split.gateway, "eth_getBlockByNumber", json!(["latest", false])).await;
    let direct = split.eth.request("eth_getBlockByNumber", json!(["latest", false])).await;
    assert_eq!(latest.result(), &direct);
    assert_eq!(quantity(&direct["number"]), head + 1);
    drop(split.anvil);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_null_and_pending_are_never_cached() {
    let mut split = Split::start().await;
    let accounts = split.eth.accounts().await;
    split.eth.request("anvil_mine", json!([6])).await;
    let head = wait_synced(&mut split.gateway, &split.eth).await;
    split.wait_finalized(head - CONFIRMATIONS).await;
    let gateway = &split.gateway;
    split.proxy.reset_counts();

    let unknown = format!("0x{}", "ab".repeat(32));
    let cases = [
        // Pending state: bypassed.
        ("eth_getBlockByNumber", json!(["pending", false]), "bypass"),
        ("eth_getBalance", json!([accounts[0].to_string(), "pending"]), "bypass"),
        // `null`: no such transaction (yet).
        ("eth_getTransactionReceipt", json!([unknown]), "miss"),
        // An error at a finalized block: a malformed address.
        ("eth_getBalance", json!(["0x12", "0x1"]), "miss"),
    ];
    for (method, params, cache) in cases {
        split.proxy.reset_counts();
        let first = call(gateway, method, params.clone()).await;
        let second = call(gateway, method, params.clone()).await;
        assert_eq!((first.cache.as_str(), second.cache.as_str()), (cache, cache), "{method} {params}");
        // (A pending block is rebuilt for each call, its timestamp may differ.)
        if cache != "bypass" {
            assert_eq!(first.json, second.json, "{method} {params}");
        }
        assert_eq!(split.proxy.received(method), 2, "{method} {params}: both reached anvil");
    }
    assert!(call(gateway, "eth_getBalance", json!(["0x12", "0x1"])).await.json["error"].is_object());

    // A pending transaction (automine off) says `blockNumber: null`: not kept, so once mined it is seen mined.
    split.eth.request("evm_setAutomine", json!([false])).await;
    let tx = split.eth.submit(accounts[0], Some(accounts[1]), Default::default(), U256::from(1u64), None);
    let tx = tx.await.to_string();
    split.proxy.reset_counts();
    for _ in 0..2 {
        let pending = call(gateway, "eth_getTransactionByHash", json!([tx])).await;
        assert_eq!(pending.cache, "miss");
        assert!(pending.result()["blockNumber"].is_null(), "{}", pending.json);
    }
    assert_eq!(split.proxy.received("eth_getTransactionByHash"), 2);
    split.eth.request("evm_mine", json!([])).await;
    let mined = call(gateway, "eth_getTransactionByHash", json!([tx])).await;
    assert_eq!(quantity(&mined.result()["blockNumber"]), head + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reorg_evicts_every_unfinalized_answer_above_the_fork() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    // Deep enough that the reorged blocks are unfinalized; they would be kept for 10 minutes but for the reorg.
    config.chain_key("finality_confirmations", 10);
    config.gateway_key("anonymous_rpc_rps", 0).gateway_key("rpc_cache_unfinalized_ttl_ms", 600_000);
    let mut chainmux = Chainmux::start(&config).await;

    let accounts = eth.accounts().await;
    let (from, to) = (accounts[0], accounts[1]);
    eth.request("anvil_mine", json!([20])).await;
    let tx = eth.send(from, Some(to), Default::default(), U256::from(1_000_000_000u64)).await.to_string();
    eth.request("anvil_mine", json!([2])).await;
    let head = wait_synced(&mut chainmux, &eth).await;
    let block = head - 2;
    let receipt = eth.request("eth_getTransactionReceipt", json!([tx])).await;
    assert_eq!(quantity(&receipt["blockNumber"]), block);

    // Cached, unfinalized: each answered twice, the second time from the cache.
    let questions = [
        ("eth_getBlockByNumber", json!([hex(block), false])),
        ("eth_getTransactionReceipt", json!([tx])),
        ("eth_getBalance", json!([to.to_string(), "latest"])),
        ("eth_getBlockByNumber", json!(["latest", false])),
    ];
    let mut before = Vec::new();
    for (method, params) in &questions {
        let first = call(&chainmux, method, params.clone()).await;
        assert_eq!(first.cache, "miss", "{method} {params}");
        let second = call(&chainmux, method, params.clone()).await;
        assert_eq!((second.cache.as_str(), &second.json), ("hit", &first.json), "{method} {params}");
        before.push(first.result().clone());
    }
    assert_eq!(quantity(&before[3]["number"]), head, "latest is keyed by the head's number");

    // Replace the last three blocks (the transaction's included) with empty ones, then extend the new branch.
    eth.request("anvil_reorg", json!([3, []])).await;
    eth.request("evm_mine", json!([])).await;
    wait_synced(&mut chainmux, &eth).await;
    let metrics = chainmux.url("/metrics");
    let evicted = chainmux
        .wait_for("the reorg eviction", WAIT, || async {
            let (_, text) = common::get(&metrics).await.ok()?;
            let count =
                common::metric_value(&text, "chainmux_rpc_cache_evictions_total", &[("reason", "reorg")])?;
            (count >= 4.0).then_some(count)
        })
        .await;
    assert_eq!(evicted, 4.0, "every answer about a block above the fork, no other");

    for ((method, params), old) in questions.iter().zip(&before) {
        let direct = eth.request(method, params.clone()).await;
        let answer = call(&chainmux, method, params.clone()).await;
        assert_eq!((answer.cache.as_str(), answer.result()), ("miss", &direct), "{method} {params}");
        assert_ne!(answer.result(), old, "{method} {params}: the stale answer");
    }
    drop(anvil);
}
