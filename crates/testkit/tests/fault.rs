//! `FaultProxy` in front of a real anvil: every fault, batches, counts, and the port across `Refuse`.

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use chainmux_testkit::{Anvil, Eth, Fault, FaultProxy, contracts, free_port};
use serde_json::{Value, json};

/// A keep-alive client like the pool's, with a short timeout.
fn client(timeout: Duration) -> reqwest::Client {
    chainmux_testkit::install_crypto_provider();
    reqwest::Client::builder().no_proxy().timeout(timeout).build().expect("HTTP client")
}

/// A client that opens a new connection for every request.
fn fresh_client() -> reqwest::Client {
    chainmux_testkit::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<reqwest::Response, reqwest::Error> {
    client.post(url).header("content-type", "application/json").body(body.to_string()).send().await
}

/// POSTs `body` and returns the JSON answer, panicking on transport errors, non-200 or non-JSON.
async fn rpc(url: &str, body: Value) -> Value {
    let response = post(&client(Duration::from_secs(10)), url, &body).await.expect("request");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

fn call(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn hex(n: u64) -> String {
    format!("0x{n:x}")
}

#[tokio::test]
async fn none_is_a_transparent_proxy_and_counts_requests_and_calls() {
    let anvil = Anvil::spawn().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    assert_eq!(proxy.url, format!("http://127.0.0.1:{}", proxy.port));
    assert_eq!(proxy.fault(), Fault::None);

    let eth = Eth::new(&proxy.url);
    assert_eq!(eth.chain_id().await, 31337);
    Eth::new(&anvil.url).mine(3).await;
    assert_eq!(eth.block_number().await, 3);
    // The target's JSON-RPC errors pass through unchanged.
    let error = eth.try_request("eth_noSuchMethod", json!([])).await.expect_err("unknown method");
    assert_eq!(error["code"], -32601, "{error}");

    let answers =
        rpc(&proxy.url, json!([call(7, "eth_chainId", json!([])), call(8, "eth_blockNumber", json!([]))]))
            .await;
    assert_eq!(
        answers,
        json!([
            {"jsonrpc": "2.0", "id": 7, "result": "0x7a69"},
            {"jsonrpc": "2.0", "id": 8, "result": "0x3"},
        ])
    );

    // 3 single requests and 1 batch of 2 calls.
    assert_eq!(proxy.requests(), 4);
    assert_eq!(proxy.received("eth_chainId"), 2);
    assert_eq!(proxy.received("eth_blockNumber"), 2);
    assert_eq!(proxy.received("eth_noSuchMethod"), 1);
    assert_eq!(proxy.received("eth_getBalance"), 0);

    // Not JSON: counted under "?", answered by the target.
    let response = post(&client(Duration::from_secs(10)), &proxy.url, &json!("x")).await.expect("request");
    assert!(response.status().is_success() || response.status().is_client_error());
    assert_eq!(proxy.received("?"), 1);

    proxy.reset_counts();
    assert_eq!(proxy.requests(), 0);
    assert_eq!(proxy.received("eth_chainId"), 0);
    assert_eq!(eth.chain_id().await, 31337);
    assert_eq!((proxy.requests(), proxy.received("eth_chainId")), (1, 1));
}

#[tokio::test]
async fn refuse_closes_the_port_and_clearing_it_listens_again_on_the_same_port() {
    let anvil = Anvil::spawn().await;
    let port = free_port();
    let proxy = FaultProxy::start_on_port(&anvil.url, port).await;
    assert_eq!(proxy.port, port);
    let body = call(1, "eth_chainId", json!([]));

    // A keep-alive connection is open before the fault.
    let keep_alive = client(Duration::from_secs(5));
    assert!(post(&keep_alive, &proxy.url, &body).await.expect("healthy").status().is_success());
    proxy.reset_counts();

    proxy.set(Fault::Refuse).await;
    let err = post(&fresh_client(), &proxy.url, &body).await.expect_err("refused");
    assert!(err.is_connect(), "a new connection is refused: {err:?}");
    // The connection opened before is closed too: no answer through it.
    assert!(post(&keep_alive, &proxy.url, &body).await.is_err(), "kept-alive connection still answered");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "port still listening");
    assert_eq!(proxy.requests(), 0, "nothing is received while refusing");

    // Setting Refuse twice is harmless.
    proxy.set(Fault::Refuse).await;

    proxy.set(Fault::None).await;
    assert_eq!(proxy.port, port);
    assert_eq!(Eth::new(&proxy.url).chain_id().await, 31337);
    assert!(post(&keep_alive, &proxy.url, &body).await.expect("reconnects").status().is_success());
    assert_eq!(proxy.requests(), 2);

    // Refuse → another fault also reopens the port, with that fault.
    proxy.set(Fault::Refuse).await;
    proxy.set(Fault::ChainId(5)).await;
    assert_eq!(Eth::new(&proxy.url).chain_id().await, 5);
}

#[tokio::test]
async fn hang_never_answers_until_the_client_gives_up() {
    let anvil = Anvil::spawn().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    proxy.set(Fault::Hang).await;

    let started = Instant::now();
    let err = post(&client(Duration::from_millis(300)), &proxy.url, &call(1, "eth_blockNumber", json!([])))
        .await
        .expect_err("no answer");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(proxy.requests(), 1, "a hung request is received");
    assert_eq!(proxy.received("eth_blockNumber"), 1);

    proxy.set(Fault::None).await;
    assert_eq!(Eth::new(&proxy.url).chain_id().await, 31337);

    // A request left hanging when the proxy switches to Refuse loses its connection.
    proxy.set(Fault::Hang).await;
    let hanging = tokio::spawn({
        let url = proxy.url.clone();
        async move { post(&client(Duration::from_secs(30)), &url, &call(2, "eth_chainId", json!([]))).await }
    });
    while proxy.received("eth_chainId") < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    proxy.set(Fault::Refuse).await;
    let result = hanging.await.expect("task");
    assert!(result.is_err(), "a hung request got an answer: {result:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the hung connection was not closed");
}

#[tokio::test]
async fn delay_answers_late_with_the_target_answer() {
    let anvil = Anvil::spawn().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    proxy.set(Fault::Delay(Duration::from_millis(400))).await;
    let started = Instant::now();
    let answer = rpc(&proxy.url, call(3, "eth_chainId", json!([]))).await;
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    assert_eq!(answer["result"], "0x7a69");
    assert_eq!(answer["id"], 3);
}

#[tokio::test]
async fn status_answers_the_http_error_with_retry_after() {
    let anvil = Anvil::spawn().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    let http = client(Duration::from_secs(5));
    let body = call(1, "eth_blockNumber", json!([]));

    proxy.set(Fault::Status { code: 429, retry_after: Some(7) }).await;
    let response = post(&http, &proxy.url, &body).await.expect("answer");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));

    proxy.set(Fault::Status { code: 500, retry_after: None }).await;
    let response = post(&http, &proxy.url, &body).await.expect("answer");
    assert_eq!(response.status(), 500);
    assert!(response.headers().get("retry-after").is_none());

    // Whole-request: a batch gets one HTTP error.
    proxy.set(Fault::Status { code: 503, retry_after: None }).await;
    let response = post(&http, &proxy.url, &json!([body.clone(), body.clone()])).await.expect("answer");
    assert_eq!(response.status(), 503);

    assert_eq!(proxy.requests(), 3);
    assert_eq!(proxy.received("eth_blockNumber"), 4);
}

#[tokio::test]
async fn garbage_is_a_200_that_is_not_json() {
    let anvil = Anvil::spawn().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    proxy.set(Fault::Garbage).await;
    let response = post(&client(Duration::from_secs(5)), &proxy.url, &call(1, "eth_chainId", json!([])))
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "garbage parsed as JSON: {text}");
}

#[tokio::test]
async fn rpc_error_answers_every_call_with_the_error_object() {
    let anvil = Anvil::spawn().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    proxy.set(Fault::RpcError { code: -32603, message: "internal error".into() }).await;

    let error = Eth::new(&proxy.url).try_request("eth_chainId", json!([])).await.expect_err("error");
    assert_eq!(error, json!({"code": -32603, "message": "internal error"}));

    let answers =
        rpc(&proxy.url, json!([call(1, "eth_chainId", json!([])), call(2, "eth_blockNumber", json!([]))]))
            .await;
    assert_eq!(
        answers,
        json!([
            {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "internal error"}},
            {"jsonrpc": "2.0", "id": 2, "error": {"code": -32603, "message": "internal error"}},
        ])
    );
    assert_eq!(proxy.received("eth_chainId"), 2);
}

#[tokio::test]
async fn chain_id_reports_another_chain_and_proxies_everything_else() {
    let anvil = Anvil::spawn().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    proxy.set(Fault::ChainId(5)).await;

    let eth = Eth::new(&proxy.url);
    assert_eq!(eth.request("eth_chainId", json!([])).await, "0x5");
    Eth::new(&anvil.url).mine(2).await;
    assert_eq!(eth.block_number().await, 2);

    let answers = rpc(
        &proxy.url,
        json!([call(10, "eth_blockNumber", json!([])), call(11, "eth_chainId", json!([])), "not a call"]),
    )
    .await;
    assert_eq!(answers[0], json!({"jsonrpc": "2.0", "id": 10, "result": "0x2"}));
    assert_eq!(answers[1], json!({"jsonrpc": "2.0", "id": 11, "result": "0x5"}));
    assert_eq!(answers[2]["error"]["code"], -32600, "{answers}");

    proxy.set(Fault::None).await;
    assert_eq!(eth.chain_id().await, 31337);
}

#[tokio::test]
async fn lag_hides_the_blocks_above_target_minus_n() {
    let anvil = Anvil::spawn().await;
    let direct = Eth::new(&anvil.url);
    direct.mine(20).await;
    let proxy = FaultProxy::start(&anvil.url).await;
    proxy.set(Fault::Lag(5)).await;
    let eth = Eth::new(&proxy.url);

    assert_eq!(eth.block_number().await, 15);
    assert!(eth.block(18, false).await.is_null());
    assert!(eth.block(16, true).await.is_null());
    assert_eq!(eth.block(15, false).await["number"], "0xf");
    assert_eq!(eth.block(3, false).await, direct.block(3, false).await);
    let latest = eth.request("eth_getBlockByNumber", json!(["latest", false])).await;
    assert_eq!(latest["number"], "0xf");
    let hash_18 = direct.block(18, false).await["hash"].clone();
    assert!(eth.request("eth_getBlockByHash", json!([hash_18, false])).await.is_null());
    let hash_10 = direct.block(10, false).await["hash"].clone();
    assert_eq!(eth.request("eth_getBlockByHash", json!([hash_10, false])).await["number"], "0xa");

    assert!(eth.request("eth_getBlockReceipts", json!([hex(18)])).await.is_null());
    assert_eq!(eth.request("eth_getBlockReceipts", json!([hex(15)])).await, json!([]));

    // The chain moves on: the lag follows the target's head.
    direct.mine(2).await;
    assert_eq!(eth.block_number().await, 17);

    // Batches: each call on its own, ids kept.
    let answers = rpc(
        &proxy.url,
        json!([
            call(1, "eth_blockNumber", json!([])),
            call(2, "eth_getBlockByNumber", json!([hex(20), false])),
            call(3, "eth_chainId", json!([])),
            call(4, "eth_getBlockByNumber", json!([hex(17), false])),
        ]),
    )
    .await;
    assert_eq!(answers[0], json!({"jsonrpc": "2.0", "id": 1, "result": "0x11"}));
    assert_eq!(answers[1], json!({"jsonrpc": "2.0", "id": 2, "result": null}));
    assert_eq!(answers[2], json!({"jsonrpc": "2.0", "id": 3, "result": "0x7a69"}));
    assert_eq!((answers[3]["id"].clone(), answers[3]["result"]["number"].clone()), (json!(4), json!("0x11")));

    proxy.set(Fault::None).await;
    assert_eq!(eth.block_number().await, 22);
}

#[tokio::test]
async fn lag_limits_logs_to_the_lagging_head() {
    let anvil = Anvil::spawn().await;
    let direct = Eth::new(&anvil.url);
    let from = direct.accounts().await[0];
    let token = direct.deploy(from, contracts::DEMO_TOKEN).await;
    // One block with one Transfer log each.
    for i in 0..10u64 {
        direct.send(from, Some(token), contracts::erc20_mint(from, U256::from(i + 1)), U256::ZERO).await;
    }
    let head = direct.block_number().await;
    let all = direct.logs(0, head).await;
    assert_eq!(all.len(), 10);

    let proxy = FaultProxy::start(&anvil.url).await;
    proxy.set(Fault::Lag(4)).await;
    let eth = Eth::new(&proxy.url);
    let visible = head - 4;
    let block_of = |log: &Value| {
        u64::from_str_radix(log["blockNumber"].as_str().expect("number").trim_start_matches("0x"), 16)
            .expect("hex")
    };
    let expected: Vec<Value> = all.iter().filter(|log| block_of(log) <= visible).cloned().collect();
    assert_eq!(expected.len(), 6);

    assert_eq!(eth.logs(0, head).await, expected);
    let latest = eth.request("eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": "latest"}])).await;
    assert_eq!(latest, json!(expected));
    let default_range = eth.request("eth_getLogs", json!([{}])).await;
    assert_eq!(default_range, json!(expected[5..]), "no range: the lagging head's block");
    assert_eq!(eth.logs(visible + 1, head).await, Vec::<Value>::new(), "range entirely above");
    let hidden_hash = direct.block(head, false).await["hash"].clone();
    assert_eq!(eth.request("eth_getLogs", json!([{"blockHash": hidden_hash}])).await, json!([]));
    let visible_hash = direct.block(visible, false).await["hash"].clone();
    assert_eq!(eth.request("eth_getLogs", json!([{"blockHash": visible_hash}])).await, json!(expected[5..]));
    assert!(eth.request("eth_getBlockReceipts", json!([hidden_hash])).await.is_null());
    assert_eq!(
        eth.request("eth_getBlockReceipts", json!([visible_hash])).await.as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn logs_range_limit_refuses_wide_eth_get_logs_and_proxies_the_rest() {
    let anvil = Anvil::spawn().await;
    let direct = Eth::new(&anvil.url);
    let from = direct.accounts().await[0];
    let token = direct.deploy(from, contracts::DEMO_TOKEN).await;
    // One block with one Transfer log each.
    for i in 0..6u64 {
        direct.send(from, Some(token), contracts::erc20_mint(from, U256::from(i + 1)), U256::ZERO).await;
    }
    let head = direct.block_number().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    proxy.set(Fault::LogsRangeLimit(3)).await;
    assert_eq!(proxy.fault(), Fault::LogsRangeLimit(3));
    let eth = Eth::new(&proxy.url);
    let range = |from: u64, to: u64| json!([{"fromBlock": hex(from), "toBlock": hex(to)}]);
    let refused = json!({"code": -32005, "message": "query exceeds max block range 3"});

    // Up to 3 blocks: the target's answer.
    let three = eth.logs(head - 2, head).await;
    assert_eq!(three.len(), 3);
    assert_eq!(three, direct.logs(head - 2, head).await);
    assert_eq!(eth.logs(head, head).await.len(), 1);
    // 4 blocks: refused.
    assert_eq!(eth.try_request("eth_getLogs", range(head - 3, head)).await, Err(refused.clone()));
    // Tags: `latest` and a missing bound are the head, `earliest` is block 0.
    let tagged = |filter: Value| eth.try_request("eth_getLogs", json!([filter]));
    assert_eq!(tagged(json!({"fromBlock": "earliest", "toBlock": "latest"})).await, Err(refused.clone()));
    assert_eq!(tagged(json!({"fromBlock": hex(head - 4)})).await, Err(refused.clone()));
    assert_eq!(
        tagged(json!({"fromBlock": hex(head - 1)})).await.map(|logs| logs.as_array().map(Vec::len)),
        Ok(Some(2))
    );
    // By block hash: proxied.
    let hash = direct.block(head, false).await["hash"].clone();
    assert_eq!(
        tagged(json!({"blockHash": hash})).await.map(|logs| logs.as_array().map(Vec::len)),
        Ok(Some(1))
    );

    // Batches: each call on its own, other methods proxied.
    let answers = rpc(
        &proxy.url,
        json!([
            call(1, "eth_getLogs", range(0, head)),
            call(2, "eth_blockNumber", json!([])),
            call(3, "eth_getLogs", range(head - 1, head)),
        ]),
    )
    .await;
    assert_eq!(answers[0], json!({"jsonrpc": "2.0", "id": 1, "error": refused}));
    assert_eq!(answers[1], json!({"jsonrpc": "2.0", "id": 2, "result": hex(head)}));
    assert_eq!(answers[2]["result"].as_array().map(Vec::len), Some(2), "{answers}");
    assert_eq!(proxy.received("eth_getLogs"), 9);

    proxy.set(Fault::None).await;
    assert_eq!(eth.logs(0, head).await, direct.logs(0, head).await);
}

#[tokio::test]
async fn dropping_the_proxy_stops_it() {
    let anvil = Anvil::spawn().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    let (url, port) = (proxy.url.clone(), proxy.port);
    assert_eq!(Eth::new(&url).chain_id().await, 31337);
    drop(proxy);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(), "still listening after drop");
}
