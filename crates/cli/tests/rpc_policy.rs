//! End-to-end tests of the JSON-RPC proxy's method policy and in-flight coalescing: the `chainmux` binary (gateway
//! only, no indexer, so every call the upstream sees is one the test made or a pool probe) in front of anvil behind
//! a [`FaultProxy`] that counts the calls reaching the node, with a delay so concurrent calls overlap.
//!
//! What is checked: identical concurrent reads reach anvil once and every caller gets the answer with its own id;
//! different params and writes are never merged; `debug_*` is denied by default without reaching anvil and allowed
//! with `deny = []`; an `allow` list denies the rest; a batch answers allowed and denied elements each on its own.

mod common;

use std::time::Duration;

use chainmux_testkit::{Anvil, Eth, Fault, FaultProxy, TestDb};
use common::{Chainmux, Config, http, rpc_request};
use serde_json::{Value, json};
use tokio::task::JoinSet;

/// How long the proxy holds every request: long enough for 20 concurrent requests to arrive at the gateway while
/// the first one's upstream call is still in flight.
const DELAY: Duration = Duration::from_millis(1500);
const CONCURRENT: u64 = 20;

/// One `/rpc/local` answer: its `x-chainmux-coalesced` header and its JSON body.
#[derive(Debug)]
struct Answer {
    coalesced: bool,
    json: Value,
}

/// A gateway (`--no-indexer`) in front of anvil behind a [`FaultProxy`].
struct Setup {
    _anvil: Anvil,
    eth: Eth,
    proxy: FaultProxy,
    chainmux: Chainmux,
    _db: TestDb,
}

impl Setup {
    /// `methods`: the `[chains.methods]` inline table, e.g. `{ deny = [] }`; `None` leaves it out.
    async fn start(methods: Option<&str>) -> Setup {
        let anvil = Anvil::spawn().await;
        let eth = Eth::new(&anvil.url);
        let proxy = FaultProxy::start(&anvil.url).await;
        let db = TestDb::create().await;
        let mut config = Config::new(&db.url, &[("primary", &proxy.url)]);
        config.run_args.push("--no-indexer");
        config.request_timeout_ms = 10_000;
        // One upstream: no hedge may add a second call of its own.
        config.rpc_key("hedge", "false").rpc_key("deadline_ms", 20_000);
        // Coalescing on its own: the response cache would answer repeated reads without an upstream call.
        config.gateway_key("rpc_cache_max_entries", 0);
        if let Some(methods) = methods {
            config.chain_key("methods", methods);
        }
        let chainmux = Chainmux::start(&config).await;
        Setup { _anvil: anvil, eth, proxy, chainmux, _db: db }
    }

    /// `POST /rpc/local` with the raw text `body`; the answer must be 200 with JSON.
    async fn post(&self, body: String) -> Answer {
        post(&self.chainmux.url("/rpc/local"), body).await
    }

    /// Every `(id, body)` posted at once; the answers in the same order.
    async fn concurrently(&self, bodies: Vec<String>) -> Vec<Answer> {
        let url = self.chainmux.url("/rpc/local");
        let mut set = JoinSet::new();
        for (i, body) in bodies.into_iter().enumerate() {
            let url = url.clone();
            set.spawn(async move { (i, post(&url, body).await) });
        }
        let mut answers: Vec<(usize, Answer)> = set.join_all().await;
        answers.sort_by_key(|(i, _)| *i);
        answers.into_iter().map(|(_, answer)| answer).collect()
    }

    async fn metric(&self, name: &str) -> f64 {
        self.chainmux.metric(name, &[("chain", "local")]).await.unwrap_or(0.0)
    }

    /// A funded account of anvil's, lowercase `0x` hex.
    async fn account(&self, index: usize) -> String {
        self.eth.accounts().await[index].to_string().to_ascii_lowercase()
    }
}

async fn post(url: &str, body: String) -> Answer {
    let response = http()
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap_or_else(|err| panic!("POST {url} {body}: {err}"));
    let status = response.status().as_u16();
    let coalesced = match response.headers().get("x-chainmux-coalesced") {
        None => false,
        Some(value) => {
            assert_eq!(value, "true", "x-chainmux-coalesced is true or absent");
            true
        }
    };
    let text = response.text().await.unwrap_or_else(|err| panic!("POST {url}: reading the body: {err}"));
    assert_eq!(status, 200, "POST {url} {body}: {text}");
    let json = serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"));
    Answer { coalesced, json }
}

fn denied(method: &str) -> String {
    format!("method {method} is not allowed on chain local")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_concurrent_reads_share_one_upstream_call() {
    let setup = Setup::start(None).await;
    let account = setup.account(1).await;
    let expected = setup.eth.request("eth_getBalance", json!([account, "latest"])).await;
    assert!(expected.as_str().is_some_and(|b| b != "0x0"), "a funded account: {expected}");

    setup.proxy.set(Fault::Delay(DELAY)).await;
    setup.proxy.reset_counts();
    let coalesced_before = setup.metric("chainmux_rpc_coalesced_total").await;
    // The same question in different spellings (spacing, id types): the params are compared as parsed JSON.
    let bodies: Vec<String> = (1..=CONCURRENT)
        .map(|i| {
            let id = if i % 2 == 0 { json!(i) } else { json!(format!("req-{i}")) };
            let padding = " ".repeat(i as usize % 4);
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"eth_getBalance","params":[{padding}"{account}",{padding}"latest"]}}"#
            )
        })
        .collect();
    let answers = setup.concurrently(bodies).await;

    assert_eq!(setup.proxy.received("eth_getBalance"), 1, "one upstream call for {CONCURRENT} requests");
    for (i, answer) in (1..=CONCURRENT).zip(&answers) {
        let id = if i % 2 == 0 { json!(i) } else { json!(format!("req-{i}")) };
        assert_eq!(answer.json, json!({"jsonrpc": "2.0", "id": id, "result": expected}), "request {i}");
    }
    let followers = answers.iter().filter(|a| a.coalesced).count() as u64;
    assert_eq!(followers, CONCURRENT - 1, "every request but the one that made the call joined it");
    let coalesced = setup.metric("chainmux_rpc_coalesced_total").await - coalesced_before;
    assert_eq!(coalesced, (CONCURRENT - 1) as f64);

    // Once that call is over, the same question is asked again.
    setup.proxy.set(Fault::None).await;
    let again = setup.post(rpc_request(99, "eth_getBalance", json!([account, "latest"])).to_string()).await;
    assert_eq!(again.json["result"], expected);
    assert!(!again.coalesced);
    assert_eq!(setup.proxy.received("eth_getBalance"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn different_params_and_writes_are_never_merged() {
    let setup = Setup::start(None).await;
    let accounts: Vec<String> =
        setup.eth.accounts().await.iter().map(|a| a.to_string().to_ascii_lowercase()).collect();
    assert!(accounts.len() >= 5, "{accounts:?}");
    // A signed transaction anvil accepts, sent several times at once.
    let tx = json!({"from": accounts[0], "to": accounts[1], "value": "0x1", "gas": "0x5208",
                    "gasPrice": "0x77359400", "nonce": "0x0", "chainId": "0x7a69"});
    let raw = setup.eth.request("eth_signTransaction", json!([tx])).await;
    let raw = raw.as_str().unwrap_or_else(|| panic!("eth_signTransaction: {raw}")).to_owned();
    // `latest` is resolved to the head's number before coalescing: keep it apart from block 0.
    setup.eth.request("evm_mine", json!([])).await;
    let head = setup.post(rpc_request(0, "eth_blockNumber", json!([])).to_string()).await;
    assert_eq!(head.json["result"], "0x1", "the gateway sees the new head");

    setup.proxy.set(Fault::Delay(DELAY)).await;
    setup.proxy.reset_counts();
    let mut bodies: Vec<String> = accounts
        .iter()
        .take(5)
        .enumerate()
        .map(|(i, a)| rpc_request(i as u64, "eth_getBalance", json!([a, "latest"])).to_string())
        .collect();
    // The same account at another block is another question.
    bodies.push(rpc_request(5, "eth_getBalance", json!([accounts[0], "0x0"])).to_string());
    for id in 6..9 {
        bodies.push(rpc_request(id, "eth_sendRawTransaction", json!([raw])).to_string());
    }
    // Pending state is never shared either.
    for id in 9..12 {
        bodies.push(rpc_request(id, "eth_getTransactionCount", json!([accounts[2], "pending"])).to_string());
    }
    let answers = setup.concurrently(bodies).await;

    assert_eq!(setup.proxy.received("eth_getBalance"), 6);
    assert_eq!(setup.proxy.received("eth_sendRawTransaction"), 3, "every write reaches the upstream");
    assert_eq!(setup.proxy.received("eth_getTransactionCount"), 3);
    for (id, answer) in answers.iter().enumerate() {
        assert!(!answer.coalesced, "request {id} was merged: {}", answer.json);
        assert_eq!(answer.json["id"], json!(id), "{}", answer.json);
    }
    for answer in &answers[..6] {
        assert!(answer.json["result"].is_string(), "{}", answer.json);
    }
    // At least one send was accepted; the transaction is mined with its hash.
    let hashes: Vec<&str> = answers[6..9].iter().filter_map(|a| a.json["result"].as_str()).collect();
    assert!(!hashes.is_empty(), "{:?}", answers[6..9].iter().map(|a| &a.json).collect::<Vec<_>>());
    setup.proxy.set(Fault::None).await;
    let receipt = setup.eth.request("eth_getTransactionReceipt", json!([hashes[0]])).await;
    assert_eq!(receipt["status"], "0x1", "{receipt}");
    assert_eq!(setup.metric("chainmux_rpc_coalesced_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_methods_are_denied_by_default_and_batches_answer_each_element() {
    let setup = Setup::start(None).await;
    let accounts = setup.eth.accounts().await;
    let hash = setup
        .eth
        .send(accounts[0], Some(accounts[1]), Default::default(), 1u64.try_into().expect("U256"))
        .await;
    setup.proxy.reset_counts();

    let single =
        setup.post(rpc_request(7, "debug_traceTransaction", json!([hash.to_string()])).to_string()).await;
    assert_eq!(
        single.json,
        json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32601, "message": denied("debug_traceTransaction")}})
    );
    // Another spelling of a denied namespace does not get around the list.
    let shouted =
        setup.post(rpc_request(8, "DEBUG_traceTransaction", json!([hash.to_string()])).to_string()).await;
    assert_eq!(shouted.json["error"]["code"], -32601, "{}", shouted.json);

    let batch = json!([
        rpc_request(1, "eth_chainId", json!([])),
        rpc_request(2, "debug_traceTransaction", json!([hash.to_string()])),
        {"jsonrpc": "2.0", "id": "three", "method": "net_version", "params": []},
        {"jsonrpc": "2.0", "id": "four", "method": "admin_peers", "params": []},
        {"jsonrpc": "2.0", "method": "personal_listAccounts", "params": []},
        rpc_request(5, "eth_getTransactionByHash", json!([hash.to_string()])),
    ]);
    let answer = setup.post(batch.to_string()).await;
    let answers = answer.json.as_array().unwrap_or_else(|| panic!("a batch answer: {}", answer.json));
    assert_eq!(answers.len(), 5, "the notification gets no answer: {}", answer.json);
    assert_eq!(answers[0], json!({"jsonrpc": "2.0", "id": 1, "result": "0x7a69"}));
    assert_eq!(
        answers[1],
        json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -32601, "message": denied("debug_traceTransaction")}})
    );
    assert_eq!(answers[2], json!({"jsonrpc": "2.0", "id": "three", "result": "31337"}));
    assert_eq!(
        answers[3],
        json!({"jsonrpc": "2.0", "id": "four", "error": {"code": -32601, "message": denied("admin_peers")}})
    );
    assert_eq!(answers[4]["id"], 5);
    assert_eq!(answers[4]["result"]["hash"], hash.to_string(), "{}", answers[4]);

    for method in ["debug_traceTransaction", "DEBUG_traceTransaction", "admin_peers", "personal_listAccounts"]
    {
        assert_eq!(setup.proxy.received(method), 0, "{method} reached the upstream");
    }
    assert_eq!(setup.proxy.received("eth_chainId"), 1);
    assert_eq!(setup.proxy.received("net_version"), 1);
    assert_eq!(setup.metric("chainmux_rpc_denied_total").await, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_deny_list_allows_debug_methods() {
    let setup = Setup::start(Some("{ deny = [] }")).await;
    let accounts = setup.eth.accounts().await;
    let hash = setup
        .eth
        .send(accounts[0], Some(accounts[1]), Default::default(), 1u64.try_into().expect("U256"))
        .await;
    let direct = setup.eth.request("debug_traceTransaction", json!([hash.to_string()])).await;
    setup.proxy.reset_counts();

    let answer =
        setup.post(rpc_request(3, "debug_traceTransaction", json!([hash.to_string()])).to_string()).await;
    assert_eq!(answer.json, json!({"jsonrpc": "2.0", "id": 3, "result": direct}));
    assert_eq!(setup.proxy.received("debug_traceTransaction"), 1);
    assert_eq!(setup.metric("chainmux_rpc_denied_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_denies_every_other_method() {
    let setup = Setup::start(Some(r#"{ allow = ["eth_*"] }"#)).await;
    setup.proxy.reset_counts();
    let answer = setup.post(rpc_request(1, "net_version", json!([])).to_string()).await;
    assert_eq!(
        answer.json,
        json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": denied("net_version")}})
    );
    let answer = setup.post(rpc_request(2, "eth_chainId", json!([])).to_string()).await;
    assert_eq!(answer.json, json!({"jsonrpc": "2.0", "id": 2, "result": "0x7a69"}));
    // The default deny list still applies next to an allow list.
    let answer = setup.post(rpc_request(3, "debug_traceTransaction", json!(["0x00"])).to_string()).await;
    assert_eq!(answer.json["error"]["code"], -32601, "{}", answer.json);
    assert_eq!(setup.proxy.received("net_version"), 0);
    assert_eq!(setup.proxy.received("debug_traceTransaction"), 0);
    assert_eq!(setup.metric("chainmux_rpc_denied_total").await, 2.0);
}
