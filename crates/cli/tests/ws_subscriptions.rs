//! WebSocket JSON-RPC on `/rpc/{chain}` end to end: the real `chainmux` binary indexing anvil, a real WebSocket
//! client (tokio-tungstenite), and anvil itself as the reference for every value.
//!
//! What is checked: `newHeads` delivers each new block once, its header equal to anvil's block minus the
//! non-header fields, fetched once per block however many connections listen; `logs` with address and topic
//! filters (OR arrays, `null` wildcards) delivers exactly anvil's matching logs, once; across an `anvil_reorg` the
//! dropped logs come again with `removed: true` (newest first), then the new branch's logs, every log once;
//! `eth_unsubscribe` stops notifications; the per-connection limit answers a JSON-RPC error; plain calls and
//! batches answer exactly as `POST /rpc/local`; a replica that does not index the chain delivers the same
//! notifications, reorgs included, relayed from what the indexing replica commits; an upstream dying does not drop
//! a subscription.

mod common;

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use chainmux_core::U256;
use chainmux_testkit::{Anvil, Eth, Fault, FaultProxy, TestDb, contracts};
use common::{Chainmux, Config, anvil_head, chainmux_command, lower, quantity, temp_dir, wait_synced};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest wait for one message; only reached when the test is failing.
const RECV_TIMEOUT: Duration = Duration::from_secs(30);
/// `keccak256("Transfer(address,address,uint256)")`.
const TRANSFER: &str = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";
/// Fields of a block that geth's `newHeads` leaves out of the header.
const NOT_HEADER: [&str; 5] = ["transactions", "uncles", "withdrawals", "size", "totalDifficulty"];

/// A WebSocket JSON-RPC client that keeps notifications arriving while it waits for an answer.
struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    notifications: VecDeque<Value>,
}

impl Ws {
    async fn connect(chainmux: &Chainmux) -> Ws {
        Ws::try_connect(chainmux, "", None).await.unwrap_or_else(|err| panic!("connecting: {err}"))
    }

    /// Connects to `/rpc/{chain}{query}`, with an `x-api-key` header when given.
    async fn try_connect(
        chainmux: &Chainmux,
        query: &str,
        api_key: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("ws://127.0.0.1:{}/rpc/{}{query}", chainmux.port, chainmux.chain);
        let mut request = url.as_str().into_client_request().unwrap_or_else(|err| panic!("{url}: {err}"));
        if let Some(key) = api_key {
            request.headers_mut().insert("x-api-key", key.parse().expect("header value"));
        }
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Ws { stream, next_id: 1, notifications: VecDeque::new() })
    }

    async fn send(&mut self, message: &Value) {
        self.stream
            .send(Message::text(message.to_string()))
            .await
            .unwrap_or_else(|err| panic!("send: {err}"));
    }

    /// The next text message, parsed; `None` when the server closed the connection.
    async fn recv(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(RECV_TIMEOUT, self.stream.next())
                .await
                .unwrap_or_else(|_| panic!("no message within {RECV_TIMEOUT:?}"));
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Some(
                        serde_json::from_str(text.as_str())
                            .unwrap_or_else(|err| panic!("not JSON ({err}): {text}")),
                    );
                }
                Some(Ok(Message::Close(_))) | None => return None,
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("websocket: {err}"),
            }
        }
    }

    /// Sends `message` and returns the first non-notification message (its answer); notifications arriving
    /// meanwhile are kept for [`Ws::notification`].
    async fn exchange(&mut self, message: &Value) -> Value {
        self.send(message).await;
        loop {
            let received = self.recv().await.expect("connection closed while waiting for an answer");
            if received["method"] == "eth_subscription" {
                self.notifications.push_back(received);
            } else {
                return received;
            }
        }
    }

    /// One request's whole answer object.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let answer =
            self.exchange(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        assert_eq!(answer["id"], json!(id), "{method}: answer to another request: {answer}");
        answer
    }

    /// `eth_subscribe(params)`: the subscription id.
    async fn subscribe(&mut self, params: Value) -> String {
        let answer = self.call("eth_subscribe", params.clone()).await;
        let id = answer["result"]
            .as_str()
            .unwrap_or_else(|| panic!("eth_subscribe {params}: {answer}"))
            .to_owned();
        let digits = id.strip_prefix("0x").unwrap_or_else(|| panic!("subscription id {id} is not 0x hex"));
        assert!(!digits.is_empty() && digits.chars().all(|c| c.is_ascii_hexdigit()), "subscription id {id}");
        id
    }

    /// The next notification, checked to have geth's shape: `(subscription id, result)`.
    async fn notification(&mut self) -> (String, Value) {
        let message = match self.notifications.pop_front() {
            Some(message) => message,
            None => self.recv().await.expect("connection closed while waiting for a notification"),
        };
        assert_eq!(message["jsonrpc"], "2.0", "{message}");
        assert_eq!(message["method"], "eth_subscription", "not a notification: {message}");
        assert!(message.get("id").is_none(), "a notification has no id: {message}");
        let params = message["params"].as_object().unwrap_or_else(|| panic!("no params: {message}"));
        assert_eq!(params.len(), 2, "params are subscription and result: {message}");
        let id = params["subscription"].as_str().unwrap_or_else(|| panic!("no subscription: {message}"));
        (id.to_owned(), params["result"].clone())
    }

    /// Notifications until subscription `heads` reports block `number`; returns them all, that head included.
    async fn until_head(&mut self, heads: &str, number: u64) -> Vec<(String, Value)> {
        let mut received = Vec::new();
        loop {
            let (id, result) = self.notification().await;
            let done = id == heads && quantity(&result["number"]) == number;
            received.push((id, result));
            if done {
                return received;
            }
        }
    }
}

/// `block` as geth's `newHeads` sends it.
fn header_of(mut block: Value) -> Value {
    let fields = block.as_object_mut().expect("block object");
    for field in NOT_HEADER {
        fields.remove(field);
    }
    block
}

/// An address as a 32-byte topic.
fn topic(address: &str) -> String {
    format!("0x{}{}", "0".repeat(24), address.trim_start_matches("0x").to_ascii_lowercase())
}

/// anvil's logs of `from..=to` matching `filter` (an `eth_getLogs` filter without the range).
async fn anvil_logs(eth: &Eth, from: u64, to: u64, filter: Value) -> Vec<Value> {
    let mut filter = filter;
    filter["fromBlock"] = json!(format!("{from:#x}"));
    filter["toBlock"] = json!(format!("{to:#x}"));
    let logs = eth.request("eth_getLogs", json!([filter])).await;
    logs.as_array().cloned().unwrap_or_else(|| panic!("eth_getLogs: {logs}"))
}

/// The results of subscription `id` among `received`, in order.
fn results_of(received: &[(String, Value)], id: &str) -> Vec<Value> {
    received.iter().filter(|(s, _)| s == id).map(|(_, r)| r.clone()).collect()
}

fn with_removed(mut log: Value, removed: bool) -> Value {
    log["removed"] = json!(removed);
    log
}

/// `mint(to, amount)` on `token` from account `from`, mined in its own block. (A macro: this crate does not
/// name alloy's `Address`.)
macro_rules! mint {
    ($eth:expr, $from:expr, $token:expr, $to:expr, $amount:expr) => {
        $eth.send($from, Some($token), contracts::erc20_mint($to, U256::from($amount)), U256::ZERO).await
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_heads_and_filtered_logs_arrive_once_each() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    // Counts the header fetches reaching anvil; no hedging, so each is one call.
    let proxy = FaultProxy::start(&anvil.url).await;
    let accounts = eth.accounts().await;
    let token_a = eth.deploy(accounts[0], contracts::DEMO_TOKEN).await;
    let token_b = eth.deploy(accounts[0], contracts::DEMO_TOKEN).await;
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("primary", &proxy.url)]);
    config.rpc_key("hedge", "false");
    let mut chainmux = Chainmux::start(&config).await;
    let start = wait_synced(&mut chainmux, &eth).await;

    let mut ws = Ws::connect(&chainmux).await;
    let heads = ws.subscribe(json!(["newHeads"])).await;
    let by_address = ws.subscribe(json!(["logs", {"address": token_a.to_string()}])).await;
    let (to_1, to_2) = (accounts[1].to_string(), accounts[2].to_string());
    let by_topics = ws
        .subscribe(json!(["logs", {
            "address": [token_a.to_string(), token_b.to_string()],
            "topics": [TRANSFER, null, [topic(&to_1), topic(&to_2)]],
        }]))
        .await;
    let everything = ws.subscribe(json!(["logs"])).await;
    // A second connection listening for heads: headers are still fetched once per block.
    let mut other = Ws::connect(&chainmux).await;
    let other_heads = other.subscribe(json!(["newHeads"])).await;
    proxy.reset_counts();

    for round in 0..3u64 {
        mint!(eth, accounts[0], token_a, accounts[1], 10 + round);
        mint!(eth, accounts[0], token_b, accounts[2], 20 + round);
        mint!(eth, accounts[0], token_a, accounts[3], 30 + round);
        mint!(eth, accounts[0], token_b, accounts[3], 40 + round);
    }
    // An empty block last: once its head arrives, every notification of the blocks before it has.
    eth.mine(1).await;
    let (head, _) = anvil_head(&eth).await;
    let received = ws.until_head(&heads, head).await;

    // newHeads: each new block once, in order, equal to anvil's header.
    let got_heads = results_of(&received, &heads);
    assert_eq!(got_heads.len() as u64, head - start, "one head per new block");
    for (i, header) in got_heads.iter().enumerate() {
        let number = start + 1 + i as u64;
        assert_eq!(*header, header_of(eth.block(number, false).await), "newHeads of block {number}");
    }
    let other_received = other.until_head(&other_heads, head).await;
    assert_eq!(results_of(&other_received, &other_heads), got_heads, "both connections see the same heads");
    assert_eq!(
        proxy.received("eth_getBlockByHash"),
        head - start,
        "one header fetch per block, not per subscriber"
    );

    // logs: exactly anvil's matching logs, once each, in chain order.
    let expected_a = anvil_logs(&eth, start + 1, head, json!({"address": token_a.to_string()})).await;
    assert_eq!(expected_a.len(), 6);
    assert_eq!(results_of(&received, &by_address), expected_a);
    let both = json!({"address": [token_a.to_string(), token_b.to_string()]});
    let expected_topics: Vec<Value> = anvil_logs(&eth, start + 1, head, both)
        .await
        .into_iter()
        .filter(|log| {
            let topics = log["topics"].as_array().expect("topics");
            topics.len() >= 3
                && topics[0] == TRANSFER
                && [topic(&to_1), topic(&to_2)].contains(&lower(&topics[2]))
        })
        .collect();
    assert_eq!(expected_topics.len(), 6, "token A to account 1 and token B to account 2, 3 rounds");
    assert_eq!(results_of(&received, &by_topics), expected_topics);
    let expected_all = anvil_logs(&eth, start + 1, head, json!({})).await;
    assert_eq!(expected_all.len(), 12);
    assert_eq!(results_of(&received, &everything), expected_all);
    assert!(received.iter().all(|(id, _)| [&heads, &by_address, &by_topics, &everything].contains(&id)));

    let gauge = chainmux.metric("chainmux_ws_subscriptions", &[("chain", "local"), ("kind", "logs")]).await;
    assert_eq!(gauge, Some(3.0));
    assert_eq!(chainmux.metric("chainmux_ws_connections", &[("chain", "local")]).await, Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_resends_dropped_logs_as_removed_then_the_new_branch() {
    reorg_scenario(Serving::Indexer).await;
}

/// The same through a replica that does not index the chain: it relays the indexing replica's commits from the
/// store (`NOTIFY` + the store's blocks and logs), rollbacks included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_does_not_index_relays_heads_logs_and_reorgs() {
    reorg_scenario(Serving::OtherReplica).await;
}

/// Which process the WebSocket client of [`reorg_scenario`] talks to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Serving {
    /// The process that indexes the chain.
    Indexer,
    /// A second, gateway-only process on the same database.
    OtherReplica,
}

async fn reorg_scenario(serving: Serving) {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let accounts = eth.accounts().await;
    let token = eth.deploy(accounts[0], contracts::DEMO_TOKEN).await;
    let db = TestDb::create().await;
    let config = Config::new(&db.url, &[("primary", &anvil.url)]);
    let mut chainmux = Chainmux::start(&config).await;
    let start = wait_synced(&mut chainmux, &eth).await;
    let relay = match serving {
        Serving::Indexer => None,
        Serving::OtherReplica => {
            let mut gateway_only = config.clone();
            gateway_only.run_args.push("--no-indexer");
            Some(Chainmux::start(&gateway_only).await)
        }
    };

    let mut ws = Ws::connect(relay.as_ref().unwrap_or(&chainmux)).await;
    let heads = ws.subscribe(json!(["newHeads"])).await;
    let logs = ws.subscribe(json!(["logs", {"address": token.to_string()}])).await;
    for i in 0..4u64 {
        mint!(eth, accounts[0], token, accounts[1 + i as usize], 100 + i);
    }
    // An empty block last: once its head arrives, every notification of the blocks before it has.
    eth.mine(1).await;
    let (before, _) = anvil_head(&eth).await;
    let first_phase = ws.until_head(&heads, before).await;
    let old_logs = anvil_logs(&eth, start + 1, before, json!({})).await;
    assert_eq!(results_of(&first_phase, &logs), old_logs);
    wait_synced(&mut chainmux, &eth).await;

    // Replace the last 3 blocks (the empty one and 2 of the 4 mints) with a branch holding 2 different mints,
    // then extend it with an empty block.
    let depth = 3;
    let data = |to: usize, amount: u64| {
        json!({"from": accounts[0].to_string(), "to": token.to_string(), "gas": "0x30d40",
               "data": contracts::erc20_mint(accounts[to], U256::from(amount)).to_string()})
    };
    eth.request("anvil_reorg", json!([depth, [[data(5, 7), 0], [data(6, 8), 2]]])).await;
    eth.mine(1).await;
    let (after, _) = anvil_head(&eth).await;
    wait_synced(&mut chainmux, &eth).await;
    let second_phase = ws.until_head(&heads, after).await;

    let first_replaced = before - depth + 1;
    let dropped: Vec<Value> = old_logs
        .iter()
        .filter(|log| quantity(&log["blockNumber"]) >= first_replaced)
        .rev()
        .map(|log| with_removed(log.clone(), true))
        .collect();
    assert_eq!(dropped.len(), 2);
    let new_branch = anvil_logs(&eth, first_replaced, after, json!({})).await;
    assert_eq!(new_branch.len(), 2, "the new branch's two mints");
    let expected: Vec<Value> = dropped.into_iter().chain(new_branch).collect();
    assert_eq!(results_of(&second_phase, &logs), expected, "removed logs newest first, then the new branch");

    // Every log once: no (block hash, log index, removed) twice over the whole subscription.
    let all: Vec<Value> =
        results_of(&first_phase, &logs).into_iter().chain(results_of(&second_phase, &logs)).collect();
    let distinct: BTreeSet<String> =
        all.iter().map(|l| format!("{} {} {}", l["blockHash"], l["logIndex"], l["removed"])).collect();
    assert_eq!(distinct.len(), all.len(), "a log was sent twice: {all:#?}");
    // The heads after the reorg are the new branch's blocks, as anvil has them.
    let new_heads = results_of(&second_phase, &heads);
    let numbers: Vec<u64> = new_heads.iter().map(|h| quantity(&h["number"])).collect();
    assert_eq!(numbers, (first_replaced..=after).collect::<Vec<_>>(), "newHeads continues on the new branch");
    for header in &new_heads {
        assert_eq!(*header, header_of(eth.block(quantity(&header["number"]), false).await));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_limits_and_plain_calls() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("primary", &anvil.url)]);
    config.gateway_key("max_subscriptions_per_connection", 2);
    let mut chainmux = Chainmux::start(&config).await;
    wait_synced(&mut chainmux, &eth).await;

    let mut ws = Ws::connect(&chainmux).await;
    let first = ws.subscribe(json!(["newHeads"])).await;
    let second = ws.subscribe(json!(["newHeads"])).await;
    assert_ne!(first, second);
    let refused = ws.call("eth_subscribe", json!(["logs", {}])).await;
    assert_eq!(refused["error"]["code"], -32005, "{refused}");
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains("limit 2")), "{refused}");
    let unknown = ws.call("eth_subscribe", json!(["newPendingTransactions"])).await;
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    let bad_filter = ws.call("eth_subscribe", json!(["logs", {"address": "0x12"}])).await;
    assert_eq!(bad_filter["error"]["code"], -32602, "{bad_filter}");
    assert!(bad_filter["error"]["message"].as_str().is_some_and(|m| m.contains("address")), "{bad_filter}");

    assert_eq!(ws.call("eth_unsubscribe", json!([first])).await["result"], json!(true));
    let again = ws.call("eth_unsubscribe", json!([first])).await;
    assert!(again["error"]["message"].as_str().is_some_and(|m| m.contains("not found")), "{again}");
    // Two blocks: the second one's head proves every notification of the first has arrived.
    eth.mine(1).await;
    let (one, _) = anvil_head(&eth).await;
    eth.mine(1).await;
    let received = ws.until_head(&second, one + 1).await;
    assert!(
        received.iter().all(|(id, _)| *id == second),
        "a notification after eth_unsubscribe: {received:?}"
    );
    assert_eq!(received.len(), 2);
    // The freed slot can be used again.
    ws.subscribe(json!(["logs"])).await;

    // Plain calls and batches answer as over HTTP.
    for (method, params) in [("eth_chainId", json!([])), ("eth_getBlockByNumber", json!(["0x1", false]))] {
        let request = json!({"jsonrpc": "2.0", "id": 42, "method": method, "params": params});
        assert_eq!(ws.exchange(&request).await, chainmux.rpc(&request).await, "{method}");
    }
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": ["0x1", true]},
        {"jsonrpc": "2.0", "id": "two", "method": "debug_traceBlockByNumber", "params": ["0x1"]},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": [eth.accounts().await[0].to_string(), "0x1"]},
        {"id": 4},
    ]);
    let over_ws = ws.exchange(&batch).await;
    assert_eq!(over_ws, chainmux.rpc(&batch).await);
    assert_eq!(over_ws[1]["error"]["code"], -32601, "debug_* is denied by default: {over_ws}");
    assert_eq!(ws.exchange(&json!([])).await, chainmux.rpc(&json!([])).await, "empty batch");
    let not_an_object = ws.exchange(&json!("eth_chainId")).await;
    assert_eq!(not_an_object["error"]["code"], -32600, "{not_an_object}");

    // A gateway that does not index the chain relays what the indexing replica commits.
    let mut gateway_only = config.clone();
    gateway_only.run_args.push("--no-indexer");
    let gateway = Chainmux::start(&gateway_only).await;
    let mut ws = Ws::connect(&gateway).await;
    let heads = ws.subscribe(json!(["newHeads"])).await;
    eth.mine(1).await;
    let (head, hash) = anvil_head(&eth).await;
    let relayed = ws.until_head(&heads, head).await;
    assert_eq!(results_of(&relayed, &heads).last().map(|h| lower(&h["hash"])), Some(hash));
    assert_eq!(ws.call("eth_chainId", json!([])).await["result"], "0x7a69", "plain calls still work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_dying_does_not_drop_subscriptions() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let accounts = eth.accounts().await;
    let token = eth.deploy(accounts[0], contracts::DEMO_TOKEN).await;
    let (first, second) = (FaultProxy::start(&anvil.url).await, FaultProxy::start(&anvil.url).await);
    let db = TestDb::create().await;
    let config = Config::new(&db.url, &[("first", &first.url), ("second", &second.url)]);
    let mut chainmux = Chainmux::start(&config).await;
    wait_synced(&mut chainmux, &eth).await;

    let mut ws = Ws::connect(&chainmux).await;
    let heads = ws.subscribe(json!(["newHeads"])).await;
    let logs = ws.subscribe(json!(["logs", {"topics": [TRANSFER]}])).await;
    mint!(eth, accounts[0], token, accounts[1], 1);
    eth.mine(1).await;
    let (head, _) = anvil_head(&eth).await;
    let received = ws.until_head(&heads, head).await;
    assert_eq!(results_of(&received, &logs).len(), 1);

    // Kill each upstream in turn (refusing connections, as a dead node's port does).
    for (dead, alive) in [(&first, &second), (&second, &first)] {
        dead.set(Fault::Refuse).await;
        alive.set(Fault::None).await;
        let from = head_number(&eth).await + 1;
        mint!(eth, accounts[0], token, accounts[2], 2);
        mint!(eth, accounts[0], token, accounts[3], 3);
        eth.mine(1).await;
        let (head, _) = anvil_head(&eth).await;
        let received = ws.until_head(&heads, head).await;
        let got_heads = results_of(&received, &heads);
        assert_eq!(got_heads.len() as u64, head - from + 1);
        for header in &got_heads {
            assert_eq!(*header, header_of(eth.block(quantity(&header["number"]), false).await));
        }
        let expected = anvil_logs(&eth, from, head, json!({"topics": [TRANSFER]})).await;
        assert_eq!(results_of(&received, &logs), expected);
    }
}

async fn head_number(eth: &Eth) -> u64 {
    anvil_head(eth).await.0
}

/// The HTTP status a refused WebSocket handshake got.
fn refused_status(result: Result<Ws, tokio_tungstenite::tungstenite::Error>) -> u16 {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(err) => panic!("expected an HTTP refusal, got {err}"),
        Ok(_) => panic!("the handshake was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_the_upgrade() {
    let anvil = Anvil::spawn().await;
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("primary", &anvil.url)]);
    config.gateway_key("require_api_key", true);
    let chainmux = Chainmux::start(&config).await;
    let key = create_key(&config, "ws");

    assert_eq!(refused_status(Ws::try_connect(&chainmux, "", None).await), 401, "no key");
    let wrong = format!("cmx_{}", "0".repeat(64));
    assert_eq!(
        refused_status(Ws::try_connect(&chainmux, &format!("?key={wrong}"), None).await),
        403,
        "unknown key"
    );
    for (query, header) in [(format!("?key={key}"), None), (String::new(), Some(key.as_str()))] {
        let mut ws = Ws::try_connect(&chainmux, &query, header).await.expect("a valid key is let in");
        ws.subscribe(json!(["newHeads"])).await;
        assert_eq!(ws.call("eth_chainId", json!([])).await["result"], "0x7a69");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_spends_the_rpc_budget() {
    let anvil = Anvil::spawn().await;
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("primary", &anvil.url)]);
    config.run_args.push("--no-indexer");
    // Three requests at once, then one a second: the upgrade and two messages pass.
    config.gateway_key("anonymous_rpc_rps", 1).gateway_key("anonymous_rpc_burst", 3);
    let chainmux = Chainmux::start(&config).await;
    let mut ws = Ws::connect(&chainmux).await;
    for _ in 0..2 {
        assert_eq!(ws.call("eth_chainId", json!([])).await["result"], "0x7a69");
    }
    // Eight more as fast as they can go: they cannot all fit in one refill a second.
    let mut refused = Vec::new();
    for _ in 0..8 {
        let answer = ws.call("eth_chainId", json!([])).await;
        if answer.get("error").is_some() {
            refused.push(answer);
        }
    }
    assert!(!refused.is_empty(), "no message was charged");
    for answer in &refused {
        assert_eq!(answer["error"]["code"], -32005, "{answer}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| m.contains("retry in")), "{answer}");
    }
    // A batch costs one call per element; refused, it is still answered as a batch, each element with its id.
    let call = |id: u64| json!({"jsonrpc": "2.0", "id": id, "method": "eth_chainId", "params": []});
    let batch = ws.exchange(&json!([call(100), call(101)])).await;
    let answers = batch.as_array().unwrap_or_else(|| panic!("a batch gets an array: {batch}"));
    assert_eq!(answers.iter().map(|a| a["id"].clone()).collect::<Vec<_>>(), [json!(100), json!(101)]);
    assert!(
        answers.iter().any(|a| a["error"]["code"] == -32005),
        "an emptied 1/s budget has no room for two calls: {batch}"
    );
    // A refusal does not close the connection: the next message is still answered, with its own id.
    let answer = ws.call("eth_chainId", json!([])).await;
    assert!(answer["result"] == "0x7a69" || answer["error"]["code"] == -32005, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_alone() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let accounts = eth.accounts().await;
    let token = eth.deploy(accounts[0], contracts::DEMO_TOKEN).await;
    let db = TestDb::create().await;
    let mut chainmux = Chainmux::start(&Config::new(&db.url, &[("primary", &anvil.url)])).await;
    wait_synced(&mut chainmux, &eth).await;

    // This client subscribes to every log and then reads nothing.
    let mut stalled = Ws::connect(&chainmux).await;
    stalled.subscribe(json!(["logs"])).await;
    // This one keeps reading heads.
    let mut reader = Ws::connect(&chainmux).await;
    let heads = reader.subscribe(json!(["newHeads"])).await;

    // Tens of megabytes of notifications: more than the socket buffers and the server's queue together hold.
    const PER_TX: u64 = 4000;
    const TXS: u64 = 10;
    for seed in 0..TXS {
        let data = contracts::erc20_spray(U256::from(PER_TX), U256::from(seed));
        eth.send(accounts[0], Some(token), data, U256::ZERO).await;
        let (head, _) = anvil_head(&eth).await;
        reader.until_head(&heads, head).await;
    }
    let labels = [("chain", "local"), ("reason", "slow_client")];
    let deadline = Instant::now() + Duration::from_secs(60);
    while chainmux.metric("chainmux_ws_closed_total", &labels).await.is_none() {
        assert!(Instant::now() < deadline, "the stalled client was never dropped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // What had reached the stalled client's socket is readable, then the connection ends, short of every log.
    let mut logs = 0u64;
    loop {
        match tokio::time::timeout(RECV_TIMEOUT, stalled.stream.next()).await.expect("the connection ends") {
            Some(Ok(Message::Text(_))) => logs += 1,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert!(logs < PER_TX * TXS, "the stalled client got all {logs} logs");
    assert_eq!(chainmux.metric("chainmux_ws_closed_total", &labels).await, Some(1.0));
    // The other connection is unaffected.
    eth.mine(1).await;
    let (head, _) = anvil_head(&eth).await;
    reader.until_head(&heads, head).await;
}

/// On SIGTERM open sockets are closed with "try again later" (1013), so graceful shutdown does not wait on them
/// and clients reconnect to another replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sockets_with_try_again_later() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let db = TestDb::create().await;
    let config = Config::new(&db.url, &[("primary", &anvil.url)]);
    let mut chainmux = Chainmux::start(&config).await;
    wait_synced(&mut chainmux, &eth).await;

    let mut ws = Ws::connect(&chainmux).await;
    ws.subscribe(json!(["newHeads"])).await;
    chainmux.terminate();
    let code = loop {
        let message = tokio::time::timeout(RECV_TIMEOUT, ws.stream.next())
            .await
            .unwrap_or_else(|_| panic!("socket still open {RECV_TIMEOUT:?} after SIGTERM"));
        match message {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(1013), "close code");
    let status = chainmux.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "chainmux did not stop with a socket open: {status:?}");
}

/// Upgrades beyond `gateway.max_ws_connections` are refused with 503; a closed connection frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused() {
    let anvil = Anvil::spawn().await;
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("primary", &anvil.url)]);
    config.run_args.push("--no-indexer");
    config.gateway_key("max_ws_connections", 1);
    let chainmux = Chainmux::start(&config).await;
    let mut first = Ws::connect(&chainmux).await;
    assert_eq!(first.call("eth_chainId", json!([])).await["result"], "0x7a69");
    assert_eq!(refused_status(Ws::try_connect(&chainmux, "", None).await), 503);
    first.stream.close(None).await.unwrap_or_else(|err| panic!("closing: {err}"));
    drop(first);
    let mut second = connect_once_freed(&chainmux, 503).await;
    assert_eq!(second.call("eth_chainId", json!([])).await["result"], "0x7a69");
}

/// One client (an IP without a key, or a key) keeps at most `gateway.max_live_connections_per_client` WebSockets
/// and SSE feeds open together: one more gets 429, another client is unaffected, and closing one frees its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_live_slot() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("primary", &anvil.url)]);
    config.gateway_key("max_live_connections_per_client", 2);
    let mut chainmux = Chainmux::start(&config).await;
    wait_synced(&mut chainmux, &eth).await;
    let key = create_key(&config, "other-client");

    // This IP's two: a WebSocket and an SSE feed.
    let mut socket = Ws::connect(&chainmux).await;
    assert_eq!(socket.call("eth_chainId", json!([])).await["result"], "0x7a69");
    let feed = common::http()
        .get(chainmux.url("/v1/chains/local/transfers/stream"))
        .send()
        .await
        .expect("open a live feed");
    assert_eq!(feed.status(), 200);
    assert_eq!(refused_status(Ws::try_connect(&chainmux, "", None).await), 429, "a third of the same IP");
    let (status, body) = common::get(&chainmux.url("/v1/chains/local/transfers/stream")).await.expect("feed");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("too_many_connections"), "{body}");
    let mut keyed =
        Ws::try_connect(&chainmux, "", Some(&key)).await.expect("a keyed client is another client");
    assert_eq!(keyed.call("eth_chainId", json!([])).await["result"], "0x7a69");
    assert_eq!(
        chainmux.metric("chainmux_live_connections_refused_total", &[("scope", "ip")]).await,
        Some(2.0)
    );

    // Closing the feed frees its slot.
    drop(feed);
    let mut again = connect_once_freed(&chainmux, 429).await;
    assert_eq!(again.call("eth_chainId", json!([])).await["result"], "0x7a69");
}

/// A key created with `chainmux keys create --name NAME` against `config`'s database (the running process has
/// migrated it).
fn create_key(config: &Config, name: &str) -> String {
    let config_path = temp_dir("ws-keys").join("chainmux.toml");
    std::fs::write(&config_path, config.toml("127.0.0.1:9")).expect("write config");
    let output = chainmux_command()
        .args(["keys", "create", "--name", name, "--config"])
        .arg(&config_path)
        .output()
        .expect("run chainmux keys");
    assert!(output.status.success(), "keys create: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Connects once a closed connection's slot is free: the server frees it when it has seen the close, until then
/// upgrades are refused with `refused`.
async fn connect_once_freed(chainmux: &Chainmux, refused: u16) -> Ws {
    let started = Instant::now();
    loop {
        match Ws::try_connect(chainmux, "", None).await {
            Ok(ws) => return ws,
            Err(err) => {
                assert_eq!(refused_status(Err(err)), refused);
                assert!(started.elapsed() < RECV_TIMEOUT, "the closed connection's slot was never freed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
