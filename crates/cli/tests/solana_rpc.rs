//! End-to-end tests of the JSON-RPC proxy on a Solana chain: the `chainmux` binary (gateway only, no indexer, so
//! every call an upstream sees is one the test made or a pool probe) in front of a real local Solana node
//! (surfpool, see `crates/testkit/solana-node`) behind [`FaultProxy`]s that count the calls reaching the node.
//!
//! What is checked: answers about finalized data (`getBlock` and `getTransaction` at `finalized` commitment,
//! `getGenesisHash`) are served from the response cache after the first one, byte for byte; the same questions at
//! `confirmed`, account state and anything not finalized yet always reach the node; batches mix both; and a
//! `sendTransaction` is never hedged to a second upstream, however slow the first.

mod common;

use std::time::{Duration, Instant};

use chainmux_testkit::solana::{SolanaNode, run_traffic};
use chainmux_testkit::{Fault, FaultProxy, TestDb};
use common::{Chainmux, Config, http, metric_value, node_rpc, rpc_request};
use serde_json::{Value, json};

/// surfpool finalizes 31 slots (of 250 ms) behind `confirmed`; leave room on a loaded machine.
const FINALIZE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an airdrop may take to show in the balance.
const BALANCE_TIMEOUT: Duration = Duration::from_secs(20);
const CHAIN: &str = "solana-local";

/// `chainmux run --no-indexer` (see [`Chainmux`]), with the calls these tests make.
struct Gateway {
    base: String,
    _process: Chainmux,
}

impl Gateway {
    async fn start(config: &Config) -> Gateway {
        let mut config = config.clone();
        config.run_args.push("--no-indexer");
        let process = Chainmux::start(&config).await;
        Gateway { base: process.base.clone(), _process: process }
    }

    /// `POST /rpc/solana-local` with `body`; the answer must be 200 with JSON.
    async fn rpc(&self, body: &Value) -> Answer {
        let url = format!("{}/rpc/{CHAIN}", self.base);
        let started = Instant::now();
        let response = http()
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url} {body}: {err}"));
        let status = response.status().as_u16();
        let header =
            |name: &str| response.headers().get(name).map(|v| v.to_str().expect("ASCII header").to_owned());
        let (cache, upstream) = (header("x-chainmux-cache"), header("x-chainmux-upstream"));
        let (attempts, hedges) = (header("x-chainmux-attempts"), header("x-chainmux-hedges"));
        let text = response.text().await.unwrap_or_else(|err| panic!("POST {url}: reading the body: {err}"));
        assert_eq!(status, 200, "POST {url} {body}: {text}");
        let json = serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"));
        Answer { cache, upstream, attempts, hedges, text, json, elapsed: started.elapsed() }
    }

    /// A single call; its answer must be a result, not an error.
    async fn call(&self, method: &str, params: Value) -> Answer {
        let answer = self.rpc(&rpc_request(1, method, params)).await;
        assert!(answer.json.get("error").is_none(), "{method}: {}", answer.text);
        answer
    }

    /// The sum of `chainmux_rpc_cache_total` series of this chain with `result` (0 when there is none yet).
    async fn cache_count(&self, result: &str) -> f64 {
        let url = format!("{}/metrics", self.base);
        let (status, text) = common::get(&url).await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
        assert_eq!(status, 200, "{text}");
        metric_value(&text, "chainmux_rpc_cache_total", &[("chain", CHAIN), ("result", result)])
            .unwrap_or(0.0)
    }

    /// This chain's upstream named `name` in `/v1/chains`.
    async fn upstream(&self, name: &str) -> Value {
        let chains = common::json_get(&format!("{}/v1/chains", self.base)).await;
        let chain = chains["chains"].as_array().and_then(|c| c.iter().find(|c| c["name"] == CHAIN)).cloned();
        let upstreams = chain.as_ref().and_then(|c| c["upstreams"].as_array()).cloned().unwrap_or_default();
        upstreams
            .into_iter()
            .find(|u| u["name"] == name)
            .unwrap_or_else(|| panic!("no upstream {name}: {chains}"))
    }
}

/// One HTTP answer of `/rpc`.
#[derive(Debug)]
struct Answer {
    /// `x-chainmux-cache`.
    cache: Option<String>,
    upstream: Option<String>,
    attempts: Option<String>,
    hedges: Option<String>,
    text: String,
    json: Value,
    elapsed: Duration,
}

impl Answer {
    fn cache(&self) -> &str {
        self.cache.as_deref().unwrap_or("(none)")
    }
}

async fn slot_at(url: &str, commitment: &str) -> u64 {
    let slot = node_rpc(url, "getSlot", json!([{"commitment": commitment}])).await;
    slot.as_u64().unwrap_or_else(|| panic!("getSlot {commitment}: {slot}"))
}

/// Waits until the node's finalized slot reaches `slot`.
async fn wait_finalized(url: &str, slot: u64) {
    let started = Instant::now();
    loop {
        let finalized = slot_at(url, "finalized").await;
        if finalized >= slot {
            return;
        }
        assert!(
            started.elapsed() < FINALIZE_TIMEOUT,
            "slot {slot} not finalized in time (finalized: {finalized})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Calls of `method` that reached the node through `proxy` while `f` ran.
async fn reaching<T>(proxy: &FaultProxy, method: &str, f: impl AsyncFnOnce() -> T) -> (T, u64) {
    let before = proxy.received(method);
    let value = f().await;
    (value, proxy.received(method) - before)
}

fn block_config(commitment: &str) -> Value {
    json!({
        "encoding": "json",
        "maxSupportedTransactionVersion": 0,
        "transactionDetails": "full",
        "rewards": false,
        "commitment": commitment,
    })
}

fn tx_config(commitment: &str) -> Value {
    json!({"encoding": "json", "maxSupportedTransactionVersion": 0, "commitment": commitment})
}

/// Asserts that `answer` came from the cache: `hit`, no upstream asked.
fn assert_hit(answer: &Answer, what: &str) {
    assert_eq!(answer.cache(), "hit", "{what}: {answer:?}");
    assert_eq!(answer.upstream.as_deref(), Some("cache"), "{what}: {answer:?}");
    assert_eq!(answer.attempts.as_deref(), Some("0"), "{what}: {answer:?}");
}

/// Asserts that `answer` came from the upstream `surfnet`, with the cache `miss` or `bypass`.
fn assert_upstream(answer: &Answer, cache: &str, what: &str) {
    assert_eq!(answer.cache(), cache, "{what}: {answer:?}");
    assert_eq!(answer.upstream.as_deref(), Some("surfnet"), "{what}: {answer:?}");
}

/// Finalized blocks, transactions and the genesis hash are cached; the same questions at `confirmed` and
/// transactions not finalized yet are not; a batch mixing cached and uncached calls answers both, in order, and
/// only the uncached ones reach the node; the hit and miss metrics count what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalized_answers_are_served_from_the_cache() {
    let node = SolanaNode::start().await.expect("the local Solana node starts");
    let proxy = FaultProxy::start(node.url()).await;
    let db = TestDb::create().await;
    let config = Config::solana(&db.url, &[("surfnet", proxy.url.as_str())]);
    let gateway = Gateway::start(&config).await;
    // Sent straight to the node, after the gateway is up: the last transaction is then only just confirmed, far
    // from finalized.
    let manifest = run_traffic(node.url(), 11).await.expect("the traffic scenario runs");
    let (mut hits, mut misses) = (0.0, 0.0);

    // Not finalized yet: `null` at `finalized`, looked up (a miss) and not kept. (surfpool answers `getTransaction`
    // at `finalized` before the slot is finalized, unlike a real node, so this is shown with `getBlock`, which
    // honours the commitment, and with a signature the node does not know.)
    let last = manifest.transactions.last().expect("transactions");
    let slot = last.slot;
    let block_params = json!([slot, block_config("finalized")]);
    let unknown_tx = json!([bs58::encode([9u8; 64]).into_string(), tx_config("finalized")]);
    let finalized_before = slot_at(node.url(), "finalized").await;
    let ((blocks, txs), reached) = reaching(&proxy, "getBlock", async || {
        let blocks = [
            gateway.call("getBlock", block_params.clone()).await,
            gateway.call("getBlock", block_params.clone()).await,
        ];
        let txs = [
            gateway.call("getTransaction", unknown_tx.clone()).await,
            gateway.call("getTransaction", unknown_tx.clone()).await,
        ];
        (blocks, txs)
    })
    .await;
    let finalized_after = slot_at(node.url(), "finalized").await;
    assert!(finalized_after < slot, "finalized ({finalized_before}..{finalized_after}) too soon to test");
    for answer in blocks.iter().chain(&txs) {
        assert_eq!(answer.json["result"], Value::Null, "not finalized yet: {}", answer.text);
        assert_upstream(answer, "miss", "before finalization");
    }
    assert_eq!(reached, 2, "a null getBlock was cached");
    assert_eq!(proxy.received("getTransaction"), 2, "a null getTransaction was cached");
    misses += 4.0;

    // Once finalized: the first call asks the node, the second is served from the cache, byte for byte.
    wait_finalized(node.url(), slot).await;
    let tx_params = json!([last.signature, tx_config("finalized")]);
    let (answers, reached) = reaching(&proxy, "getTransaction", async || {
        let first = gateway.call("getTransaction", tx_params.clone()).await;
        let second = gateway.call("getTransaction", tx_params.clone()).await;
        [first, second]
    })
    .await;
    assert_upstream(&answers[0], "miss", "getTransaction, finalized, first");
    assert_hit(&answers[1], "getTransaction, finalized, second");
    assert_eq!(answers[1].text, answers[0].text);
    assert_eq!(reached, 1, "the node saw the cached getTransaction again");
    let direct = node_rpc(node.url(), "getTransaction", tx_params.clone()).await;
    assert_eq!(answers[1].json["result"], direct, "the cached transaction differs from the node's");
    assert_eq!(direct["slot"], last.slot, "{direct}");
    misses += 1.0;
    hits += 1.0;

    // getBlock of the same slot, now finalized: one call reaches the node. The config's keys in another order are
    // the same question.
    let reordered: Value = serde_json::from_str(&format!(
        r#"[{slot}, {{"commitment": "finalized", "rewards": false, "transactionDetails": "full",
             "maxSupportedTransactionVersion": 0, "encoding": "json"}}]"#
    ))
    .expect("JSON");
    let (answers, reached) = reaching(&proxy, "getBlock", async || {
        let first = gateway.call("getBlock", block_params.clone()).await;
        let second = gateway.call("getBlock", block_params.clone()).await;
        let third = gateway.call("getBlock", reordered.clone()).await;
        [first, second, third]
    })
    .await;
    assert_upstream(&answers[0], "miss", "getBlock, finalized, first");
    assert_hit(&answers[1], "getBlock, finalized, second");
    assert_hit(&answers[2], "getBlock, finalized, keys reordered");
    assert_eq!(answers[1].text, answers[0].text);
    assert_eq!(answers[2].text, answers[0].text);
    assert_eq!(reached, 1, "the node saw the cached getBlock again");
    let block = answers[0].json["result"].clone();
    let signatures: Vec<&str> = block["transactions"]
        .as_array()
        .map(|txs| txs.iter().filter_map(|tx| tx["transaction"]["signatures"][0].as_str()).collect())
        .unwrap_or_default();
    assert!(signatures.contains(&last.signature.as_str()), "slot {slot} without its transaction: {block}");
    assert_eq!(block, node_rpc(node.url(), "getBlock", block_params.clone()).await);
    misses += 1.0;
    hits += 2.0;

    // The same block at `confirmed`: every call reaches the node, the cache is bypassed, the answer is right.
    let confirmed_params = json!([slot, block_config("confirmed")]);
    let (answers, reached) = reaching(&proxy, "getBlock", async || {
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(gateway.call("getBlock", confirmed_params.clone()).await);
        }
        answers
    })
    .await;
    for answer in &answers {
        assert_upstream(answer, "bypass", "getBlock, confirmed");
        assert_eq!(answer.json["result"], block, "getBlock at confirmed");
    }
    assert_eq!(reached, 3, "a getBlock at confirmed commitment was served from the cache");

    // The genesis hash never changes.
    let (answers, reached) = reaching(&proxy, "getGenesisHash", async || {
        [gateway.call("getGenesisHash", json!([])).await, gateway.call("getGenesisHash", json!([])).await]
    })
    .await;
    assert_upstream(&answers[0], "miss", "getGenesisHash, first");
    assert_hit(&answers[1], "getGenesisHash, second");
    assert_eq!(answers[1].json["result"], manifest.genesis_hash.as_str());
    assert_eq!(reached, 1);
    misses += 1.0;
    hits += 1.0;

    // A batch: cached and uncached calls answered in request order with their ids; only the uncached reach the
    // node, and a cacheable one seen for the first time is kept for later.
    let first_tx = &manifest.transactions[0];
    let first_tx_params = json!([first_tx.signature, tx_config("finalized")]);
    let payer = manifest.wallet("payer").expect("payer wallet");
    let batch = json!([
        rpc_request(1, "getBlock", block_params.clone()),
        {"jsonrpc": "2.0", "id": "two", "method": "getBalance", "params": [payer, {"commitment": "finalized"}]},
        rpc_request(3, "getTransaction", tx_params.clone()),
        rpc_request(4, "getBlock", confirmed_params.clone()),
        rpc_request(5, "getTransaction", first_tx_params.clone()),
        rpc_request(6, "getGenesisHash", json!([])),
    ]);
    let methods = ["getBlock", "getBalance", "getTransaction", "getGenesisHash"];
    let before: Vec<u64> = methods.iter().map(|m| proxy.received(m)).collect();
    let answer = gateway.rpc(&batch).await;
    let reached: Vec<u64> = methods.iter().zip(&before).map(|(m, b)| proxy.received(m) - b).collect();
    let answers = answer.json.as_array().unwrap_or_else(|| panic!("not a batch answer: {}", answer.text));
    let ids: Vec<&Value> = answers.iter().map(|a| &a["id"]).collect();
    assert_eq!(
        ids,
        [&json!(1), &json!("two"), &json!(3), &json!(4), &json!(5), &json!(6)],
        "{}",
        answer.text
    );
    assert!(answers.iter().all(|a| a.get("error").is_none()), "{}", answer.text);
    assert_eq!(answers[0]["result"], block);
    assert!(answers[1]["result"]["value"].as_u64().is_some_and(|lamports| lamports > 0), "{}", answers[1]);
    assert_eq!(answers[2]["result"], direct);
    assert_eq!(answers[3]["result"], block);
    assert_eq!(answers[4]["result"]["slot"], first_tx.slot, "{}", answers[4]);
    assert_eq!(answers[5]["result"], manifest.genesis_hash.as_str());
    // getBlock: only the confirmed one; getBalance: always; getTransaction: only the first-seen one.
    assert_eq!(reached, [1, 1, 1, 0], "calls of {methods:?} that reached the node");
    hits += 3.0;
    misses += 1.0;
    let again = gateway.call("getTransaction", first_tx_params).await;
    assert_hit(&again, "a transaction first seen in a batch");
    assert_eq!(again.json["result"], answers[4]["result"]);
    hits += 1.0;

    // Cache metrics: one hit or miss per cacheable call, none for bypassed ones.
    assert_eq!(gateway.cache_count("hit").await, hits, "chainmux_rpc_cache_total hits");
    assert_eq!(gateway.cache_count("miss").await, misses, "chainmux_rpc_cache_total misses");
}

/// Account state is never cached, even when asked at `finalized`: a balance read before and after an airdrop (sent
/// through the gateway too) reaches the node every time and shows the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_state_is_never_cached() {
    let node = SolanaNode::start().await.expect("the local Solana node starts");
    let proxy = FaultProxy::start(node.url()).await;
    let db = TestDb::create().await;
    let config = Config::solana(&db.url, &[("surfnet", proxy.url.as_str())]);
    let gateway = Gateway::start(&config).await;
    let wallet = bs58::encode([42u8; 32]).into_string();
    let params = json!([wallet, {"commitment": "finalized"}]);
    let lamports = |answer: &Answer| {
        answer.json["result"]["value"].as_u64().unwrap_or_else(|| panic!("getBalance: {}", answer.text))
    };

    let balances_before = proxy.received("getBalance");
    let mut calls = 0;
    for _ in 0..2 {
        let before = gateway.call("getBalance", params.clone()).await;
        calls += 1;
        assert_upstream(&before, "bypass", "getBalance");
        assert_eq!(lamports(&before), 0, "a fresh wallet");
    }

    let amount: u64 = 2_000_000_000;
    let airdrop = gateway.call("requestAirdrop", json!([wallet, amount])).await;
    assert_upstream(&airdrop, "bypass", "requestAirdrop");
    assert!(airdrop.json["result"].is_string(), "{}", airdrop.text);

    let started = Instant::now();
    loop {
        let after = gateway.call("getBalance", params.clone()).await;
        calls += 1;
        assert_upstream(&after, "bypass", "getBalance");
        if lamports(&after) == amount {
            break;
        }
        assert_eq!(lamports(&after), 0, "{}", after.text);
        assert!(started.elapsed() < BALANCE_TIMEOUT, "the airdrop never showed in the balance");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        proxy.received("getBalance") - balances_before,
        calls,
        "a getBalance was answered from the cache"
    );
    assert_eq!(gateway.cache_count("hit").await + gateway.cache_count("miss").await, 0.0);
}

/// `sendTransaction` is never hedged: with a primary that answers only after a delay far longer than the hedge
/// delay, a read is hedged to the second upstream, but a (deliberately invalid) transaction goes to the primary
/// alone and its answer is awaited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_transaction_is_never_hedged() {
    const DELAY: Duration = Duration::from_millis(1500);
    let node = SolanaNode::start().await.expect("the local Solana node starts");
    let slow = FaultProxy::start(node.url()).await;
    let fast = FaultProxy::start(node.url()).await;
    let db = TestDb::create().await;
    let mut config = Config::solana(&db.url, &[("slow", slow.url.as_str()), ("fast", fast.url.as_str())]);
    // Hedge after 100 ms. Keep `slow` the primary once it turns slow: probes only at start-up (each probe of the
    // slow upstream would be a slow sample) and the widest hysteresis.
    config.rpc_key("hedge_delay_ms", 100).rpc_key("probe_interval_ms", 600_000).rpc_key("hysteresis", 1.0);
    let gateway = Gateway::start(&config).await;

    // Routing starts with the configured order.
    gateway.call("getHealth", json!([])).await;
    let view = gateway.upstream("slow").await;
    assert!(view["state"] == "healthy" && view["primary"] == true, "slow is not the healthy primary: {view}");
    assert_eq!(gateway.upstream("fast").await["state"], "healthy");

    slow.reset_counts();
    fast.reset_counts();
    slow.set(Fault::Delay(DELAY)).await;

    // The control: a read is hedged to `fast`, which answers first.
    let wallet = bs58::encode([7u8; 32]).into_string();
    let read = gateway.call("getBalance", json!([wallet])).await;
    assert_eq!(read.hedges.as_deref(), Some("1"), "the read was not hedged: {read:?}");
    assert_eq!(read.upstream.as_deref(), Some("fast"), "{read:?}");
    assert!(read.elapsed < DELAY, "the read waited for the slow upstream: {read:?}");
    assert_eq!((slow.received("getBalance"), fast.received("getBalance")), (1, 1));

    // The write: only the slow primary gets it, and its own answer (the node's rejection) comes back.
    let garbage = json!(["!!! not a transaction !!!", {"encoding": "base64"}]);
    let write = gateway.rpc(&rpc_request(2, "sendTransaction", garbage)).await;
    assert_eq!(write.json["error"]["code"], -32602, "the node's rejection: {}", write.text);
    assert_eq!(write.attempts.as_deref(), Some("1"), "{write:?}");
    assert_eq!(write.hedges, None, "x-chainmux-hedges on a write: {write:?}");
    assert_eq!(write.cache(), "bypass", "{write:?}");
    assert!(write.elapsed >= DELAY, "answered before the slow upstream could: {write:?}");
    // A hedge would have left 100 ms after the send, long before the answer; give a late one time to show anyway.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(slow.received("sendTransaction"), 1, "the primary did not get the transaction once");
    assert_eq!(
        fast.received("sendTransaction"),
        0,
        "the transaction was hedged or retried to the other upstream"
    );
}

/// Clients asking for blocks of skipped slots (explorers do, all the time) get the node's answer, and the node
/// keeps its health: "skipped" / "not available" says nothing about it, so no breaker opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_slot_answers_do_not_open_breakers() {
    let node = SolanaNode::start().await.expect("the local Solana node starts");
    let proxy = FaultProxy::start(node.url()).await;
    proxy
        .set(Fault::RpcErrorFor {
            method: "getBlock".into(),
            code: -32007,
            message: "Slot 5 was skipped, or missing due to ledger jump to recent snapshot".into(),
        })
        .await;
    let db = TestDb::create().await;
    let mut config = Config::solana(&db.url, &[("surfnet", proxy.url.as_str())]);
    config.rpc_key("breaker_failures", 3);
    let gateway = Gateway::start(&config).await;
    for id in 0..10 {
        let answer = gateway.rpc(&rpc_request(id, "getBlock", json!([5, {"commitment": "finalized"}]))).await;
        assert_eq!(answer.json["error"]["code"], -32007, "{}", answer.text);
    }
    let view = gateway.upstream("surfnet").await;
    assert_eq!(view["state"], "healthy", "{view}");
    assert_eq!(view["breaker"], "closed", "{view}");
    // Reads still work.
    gateway.call("getSlot", json!([{"commitment": "confirmed"}])).await;
}
