//! Failover, retries and health of the upstream pool against a real anvil (the healthy upstream) and the
//! fault-injecting fake upstream in `common` (the failure modes anvil cannot produce on demand).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainmux_rpc::{IdentityCheck, Pool, PoolConfig, RpcError, UpstreamConfig, UpstreamPolicy};
use chainmux_testkit::{Anvil, Eth, contracts, free_port};
use common::{
    FakeUpstream, Mode, block_number_probe, params, parse_quantity, signed_transfer, status, wait_until,
    within,
};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// anvil's default chain id, as `eth_chainId` reports it.
const ANVIL_CHAIN_ID: &str = "\"0x7a69\"";
const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);
/// Upper bound for waits on the monitor; a passing test needs a few probe intervals.
const MONITOR_WAIT: Duration = Duration::from_secs(10);

/// Hedging off: these tests count requests per upstream exactly (hedging has its own tests).
fn config() -> PoolConfig {
    PoolConfig {
        max_attempts: 4,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        probe_interval: Duration::from_millis(100),
        hedge: false,
        ..PoolConfig::default()
    }
}

fn policy() -> UpstreamPolicy {
    UpstreamPolicy { request_timeout: REQUEST_TIMEOUT, ..UpstreamPolicy::default() }
}

/// A pool over `(name, url)` upstreams, in that order, without identity check.
fn pool_with(upstreams: &[(&str, &str)], config: PoolConfig) -> Pool {
    let upstreams = upstreams
        .iter()
        .map(|(name, url)| UpstreamConfig {
            name: (*name).to_owned(),
            url: url.parse().expect("upstream URL"),
            policy: policy(),
        })
        .collect();
    Pool::new("test", upstreams, config)
}

/// [`pool_with`] the test config, verified (without identity check, verification only marks upstreams usable).
async fn ready_pool(upstreams: &[(&str, &str)]) -> Pool {
    let pool = pool_with(upstreams, config());
    pool.verify_all().await;
    pool
}

/// `eth_chainId` must equal `expected`, as the EVM adapter checks it (built here: rpc stays chain-agnostic).
fn chain_id_check(expected: u64) -> IdentityCheck {
    IdentityCheck {
        method: "eth_chainId".into(),
        params: params(json!([])),
        verify: Box::new(move |answer| match parse_quantity(answer) {
            Some(id) if id == expected => Ok(()),
            Some(id) => Err(format!("wrong chain id: expected {expected}, upstream reports {id}")),
            None => Err(format!("unparseable eth_chainId answer {}", answer.get())),
        }),
    }
}

async fn chain_id(pool: &Pool) -> Result<Box<RawValue>, RpcError> {
    pool.call("eth_chainId", &params(json!([]))).await
}

/// A URL on which nothing listens: connections are refused.
fn refused_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

#[tokio::test]
async fn refused_primary_fails_over_to_secondary() {
    let anvil = Anvil::spawn().await;
    let pool = ready_pool(&[("primary", &refused_url()), ("secondary", &anvil.url)]).await;

    let answer = chain_id(&pool).await.expect("call fails over to the secondary");
    assert_eq!(answer.get(), ANVIL_CHAIN_ID);

    let primary = status(&pool, "primary");
    assert_eq!(primary.state, "down", "{primary:?}");
    let reason = primary.reason.expect("a down upstream has a reason");
    assert!(reason.contains("connection failed"), "reason: {reason}");
    assert!(!reason.contains("127.0.0.1"), "reasons must not leak upstream URLs: {reason}");
    assert_eq!(primary.failures, 1);
    let secondary = status(&pool, "secondary");
    assert_eq!(secondary.state, "healthy", "{secondary:?}");
    assert_eq!(secondary.reason, None);
}

#[tokio::test]
async fn hanging_primary_fails_over_after_the_request_timeout() {
    let anvil = Anvil::spawn().await;
    let fake = FakeUpstream::start(Mode::Hang).await;
    let pool = ready_pool(&[("primary", &fake.url), ("secondary", &anvil.url)]).await;

    let started = Instant::now();
    let answer = within(Duration::from_secs(10), "call", chain_id(&pool)).await.expect("fails over");
    let elapsed = started.elapsed();
    assert_eq!(answer.get(), ANVIL_CHAIN_ID);
    assert!(elapsed >= REQUEST_TIMEOUT, "the primary was given its timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "failover took {elapsed:?}");
    assert_eq!(fake.requests(), 1, "the hanging primary was tried once");

    let primary = status(&pool, "primary");
    assert_eq!(primary.state, "down");
    assert!(primary.reason.as_deref().is_some_and(|r| r.contains("timed out")), "{primary:?}");
    assert_eq!(status(&pool, "secondary").state, "healthy");
}

/// The primary fails with `mode`: the call succeeds via anvil, the primary is down with a reason containing
/// `reason` and gets no traffic while a healthy upstream exists; once it recovers and a monitor probe saw it,
/// traffic returns to it.
async fn fails_over_then_recovers(mode: Mode, reason: &str) {
    let anvil = Anvil::spawn().await;
    let fake = FakeUpstream::start(mode).await;
    let pool = pool_with(&[("primary", &fake.url), ("secondary", &anvil.url)], config())
        .with_head_probe(block_number_probe());
    pool.verify_all().await;
    let pool = Arc::new(pool);

    let answer = chain_id(&pool).await.expect("call fails over to the secondary");
    assert_eq!(answer.get(), ANVIL_CHAIN_ID);
    assert_eq!(fake.received("eth_chainId"), 1);
    let primary = status(&pool, "primary");
    assert_eq!(primary.state, "down", "{primary:?}");
    assert!(
        primary.reason.as_deref().is_some_and(|r| r.contains(reason)),
        "expected {reason:?}: {primary:?}"
    );
    assert_eq!(status(&pool, "secondary").state, "healthy");

    // While the primary is down and the secondary healthy, calls go to the secondary first.
    for _ in 0..3 {
        chain_id(&pool).await.expect("served by the secondary");
    }
    assert_eq!(fake.received("eth_chainId"), 1, "a down upstream is not preferred over a healthy one");

    fake.set_mode(Mode::Proxy(anvil.url.clone()));
    let cancel = CancellationToken::new();
    let monitor = pool.spawn_monitor(cancel.clone());
    wait_until("the monitor sees the primary healthy", MONITOR_WAIT, || {
        let primary = status(&pool, "primary");
        primary.state == "healthy" && primary.head.is_some()
    })
    .await;
    cancel.cancel();
    monitor.await.expect("monitor task ends on cancel");
    assert!(fake.received("eth_blockNumber") >= 1, "recovered through the head probe");
    assert_eq!(pool.best_head(), Some(0), "fresh anvil is at block 0");

    let before = fake.received("eth_chainId");
    for _ in 0..3 {
        let answer = chain_id(&pool).await.expect("call after recovery");
        assert_eq!(answer.get(), ANVIL_CHAIN_ID);
    }
    assert_eq!(fake.received("eth_chainId"), before + 3, "traffic returned to the recovered primary");
}

#[tokio::test]
async fn primary_http_500_fails_over_and_recovers() {
    fails_over_then_recovers(Mode::Status(500), "HTTP 500").await;
}

#[tokio::test]
async fn primary_garbage_body_fails_over_and_recovers() {
    fails_over_then_recovers(Mode::Garbage, "invalid response").await;
}

#[tokio::test]
async fn primary_internal_json_rpc_error_fails_over_and_recovers() {
    fails_over_then_recovers(Mode::InternalError, "JSON-RPC error -32603").await;
}

#[tokio::test]
async fn rate_limited_primary_fails_over_to_secondary() {
    let anvil = Anvil::spawn().await;
    let fake = FakeUpstream::start(Mode::Status429 { retry_after_secs: 1 }).await;
    let pool = ready_pool(&[("primary", &fake.url), ("secondary", &anvil.url)]).await;

    let started = Instant::now();
    let answer = chain_id(&pool).await.expect("call fails over to the secondary");
    assert_eq!(answer.get(), ANVIL_CHAIN_ID);
    // Retry-After concerns the upstream that sent it: moving on to another one does not wait.
    assert!(started.elapsed() < Duration::from_millis(900), "took {:?}", started.elapsed());
    assert_eq!(fake.requests(), 1);
    // A 429 benches the upstream for its Retry-After, with that reason.
    let primary = status(&pool, "primary");
    assert_eq!(primary.state, "excluded");
    assert!(primary.reason.as_deref().is_some_and(|r| r.contains("rate limited")), "{primary:?}");
}

#[tokio::test]
async fn lone_rate_limited_upstream_yields_a_rate_limit_error_after_retry_after() {
    let fake = FakeUpstream::start(Mode::Status429 { retry_after_secs: 1 }).await;
    // backoff_max admits the upstream's 1 s Retry-After.
    let config = PoolConfig { max_attempts: 2, backoff_max: Duration::from_secs(2), ..config() };
    let pool = pool_with(&[("only", &fake.url)], config);
    pool.verify_all().await;

    let started = Instant::now();
    let err =
        within(Duration::from_secs(10), "call", chain_id(&pool)).await.expect_err("only a 429 upstream");
    let elapsed = started.elapsed();
    assert!(
        matches!(err, RpcError::Http { status: 429, retry_after: Some(after), .. } if after == Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(err.is_rate_limit(), "{err:?}");
    assert!(err.is_retryable(), "a rate limit passes: {err:?}");
    assert_eq!(err.backoff_hint(), Some(Duration::from_secs(1)));
    assert_eq!(err.to_client_error().code, -32005);
    assert_eq!(fake.requests(), 2, "both attempts were made");
    assert!(elapsed >= Duration::from_secs(1), "the second attempt waited for Retry-After: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[tokio::test]
async fn retry_after_beyond_backoff_max_ends_the_call_instead_of_sleeping() {
    let fake = FakeUpstream::start(Mode::Status429 { retry_after_secs: 30 }).await;
    let pool = ready_pool(&[("only", &fake.url)]).await;

    let started = Instant::now();
    let err =
        within(Duration::from_secs(10), "call", chain_id(&pool)).await.expect_err("only a 429 upstream");
    assert!(err.is_rate_limit(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(fake.requests(), 1, "not re-sent before the upstream's Retry-After");
}

#[tokio::test]
async fn invalid_params_are_not_retried() {
    let anvil = Anvil::spawn().await;
    let fake = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready_pool(&[("primary", &fake.url), ("secondary", &anvil.url)]).await;

    let err = pool
        .call("eth_getBalance", &params(json!(["0xnotanaddress", "latest"])))
        .await
        .expect_err("invalid params");
    match &err {
        RpcError::JsonRpc { upstream, error } => {
            assert_eq!(upstream, "primary");
            assert_eq!(error.code, -32602, "{error:?}");
        }
        other => panic!("expected the upstream's JSON-RPC error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(err.to_client_error().code, -32602, "the client gets the upstream's own error");
    assert_eq!(fake.received("eth_getBalance"), 1, "sent once");
    assert_eq!(status(&pool, "secondary").requests, 0, "not retried on the secondary");
    assert_eq!(status(&pool, "primary").state, "healthy", "a caller error proves the upstream answers");
}

#[tokio::test]
async fn reverting_eth_call_is_not_retried() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let accounts = eth.accounts().await;
    let nft = eth.deploy(accounts[0], contracts::TEST_NFT).await;
    let fake = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready_pool(&[("primary", &fake.url), ("secondary", &anvil.url)]).await;

    // Token 7 was never minted: nobody may transfer it.
    let data = contracts::nft_transfer(accounts[2], "7".parse().expect("token id"));
    let call = json!({"from": accounts[1].to_string(), "to": nft.to_string(), "data": data.to_string()});
    let err = pool.call("eth_call", &params(json!([call, "latest"]))).await.expect_err("the call reverts");
    match &err {
        RpcError::JsonRpc { error, .. } => {
            assert!(error.message.contains("revert"), "{error:?}");
        }
        other => panic!("expected the revert as a JSON-RPC error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(fake.received("eth_call"), 1, "sent once");
    assert_eq!(status(&pool, "secondary").requests, 0, "not retried on the secondary");
    assert_eq!(status(&pool, "primary").state, "healthy");
}

#[tokio::test]
async fn signed_write_is_retried_after_a_timeout_and_lands_once() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let raw_tx = signed_transfer(&eth).await;
    let primary = FakeUpstream::start(Mode::Slow(Duration::from_secs(2), anvil.url.clone())).await;
    let secondary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready_pool(&[("primary", &primary.url), ("secondary", &secondary.url)]).await;

    // Re-sending the same signed bytes cannot create a second transaction, so a timeout is retried elsewhere.
    let hash = pool.call("eth_sendRawTransaction", &params(json!([raw_tx]))).await.expect("the retry lands");
    assert_eq!(primary.received("eth_sendRawTransaction"), 1);
    assert_eq!(secondary.received("eth_sendRawTransaction"), 1);
    let hash: String = serde_json::from_str(hash.get()).expect("a transaction hash");
    let receipt = eth.wait_receipt(hash.parse().expect("a 32-byte hash")).await;
    assert_eq!(receipt["status"], "0x1", "mined: {receipt}");
    // The slow primary delivers its copy later; the chain still has the transaction exactly once.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let block: u64 =
        u64::from_str_radix(receipt["blockNumber"].as_str().expect("number").trim_start_matches("0x"), 16)
            .expect("hex");
    let head = eth.block_number().await;
    let mut copies = 0;
    for number in block..=head {
        let txs = eth.block(number, false).await["transactions"].as_array().cloned().unwrap_or_default();
        copies += txs.iter().filter(|t| t.as_str() == Some(hash.as_str())).count();
    }
    assert_eq!(copies, 1, "the transaction is on chain once");
}

#[tokio::test]
async fn node_signed_write_is_not_resent_after_a_timeout() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let accounts = eth.accounts().await;
    let primary = FakeUpstream::start(Mode::Slow(Duration::from_secs(2), anvil.url.clone())).await;
    let secondary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready_pool(&[("primary", &primary.url), ("secondary", &secondary.url)]).await;

    let tx = json!([{ "from": accounts[0], "to": accounts[1], "value": "0x1" }]);
    let started = Instant::now();
    let err = pool.call("eth_sendTransaction", &params(tx)).await.expect_err("primary too slow");
    assert!(matches!(&err, RpcError::Timeout { upstream, .. } if upstream == "primary"), "{err:?}");
    assert!(!err.was_not_delivered(), "a timed-out write may have been executed");
    assert!(started.elapsed() < Duration::from_secs(1), "one attempt only: {:?}", started.elapsed());
    assert_eq!(primary.received("eth_sendTransaction"), 1);
    assert_eq!(secondary.received("eth_sendTransaction"), 0, "the node-signed write was not re-sent");

    // The secondary is usable: a read with the same failure does fail over to it.
    let answer = chain_id(&pool).await.expect("a read fails over");
    assert_eq!(answer.get(), ANVIL_CHAIN_ID);
    assert_eq!(secondary.received("eth_chainId"), 1);
}

#[tokio::test]
async fn write_is_sent_to_the_next_upstream_after_a_connection_refusal() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let raw_tx = signed_transfer(&eth).await;
    let secondary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready_pool(&[("primary", &refused_url()), ("secondary", &secondary.url)]).await;

    let hash = pool
        .call("eth_sendRawTransaction", &params(json!([raw_tx])))
        .await
        .expect("the write reaches the secondary");
    assert_eq!(secondary.received("eth_sendRawTransaction"), 1, "sent exactly once");
    assert_eq!(status(&pool, "primary").state, "down");

    // anvil may answer before automine included the transaction: poll for the receipt.
    let hash: String = serde_json::from_str(hash.get()).expect("a transaction hash");
    let receipt = eth.wait_receipt(hash.parse().expect("a 32-byte hash")).await;
    assert_eq!(receipt["status"], "0x1", "mined: {receipt}");
}

#[tokio::test]
async fn identity_check_excludes_an_upstream_on_the_wrong_chain() {
    let (wrong, right) = tokio::join!(Anvil::spawn_with(&["--chain-id", "5"]), Anvil::spawn());
    let pool = pool_with(&[("goerli", &wrong.url), ("local", &right.url)], config())
        .with_identity_check(chain_id_check(31337))
        .with_head_probe(block_number_probe());
    pool.verify_all().await;

    let excluded = status(&pool, "goerli");
    assert_eq!(excluded.state, "excluded", "{excluded:?}");
    let reason = excluded.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("wrong chain id"), "reason: {reason}");
    assert!(reason.contains("reports 5"), "reason: {reason}");
    assert_eq!(excluded.requests, 1, "only the identity check");
    assert_eq!(status(&pool, "local").state, "healthy");

    for _ in 0..20 {
        let answer = chain_id(&pool).await.expect("served by the right chain");
        assert_eq!(answer.get(), ANVIL_CHAIN_ID);
    }
    assert_eq!(status(&pool, "goerli").requests, 1, "no call reached the excluded upstream");

    // The monitor re-checks identity but does not let the wrong chain in.
    let pool = Arc::new(pool);
    let cancel = CancellationToken::new();
    let monitor = pool.spawn_monitor(cancel.clone());
    wait_until("the monitor re-checked the excluded upstream", MONITOR_WAIT, || {
        status(&pool, "goerli").requests >= 3
    })
    .await;
    cancel.cancel();
    monitor.await.expect("monitor task ends on cancel");
    assert_eq!(status(&pool, "goerli").state, "excluded");
    assert!(status(&pool, "local").head.is_some(), "the verified upstream was probed");
    for _ in 0..5 {
        assert_eq!(chain_id(&pool).await.expect("call").get(), ANVIL_CHAIN_ID);
    }
}

#[tokio::test]
async fn all_upstreams_down_fails_fast_and_recovers_when_one_returns() {
    let mut anvil = Anvil::spawn().await;
    let port = anvil.port;
    let fake = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready_pool(&[("node", &anvil.url), ("hanging", &fake.url)]).await;
    chain_id(&pool).await.expect("healthy at first");

    anvil.kill();
    fake.set_mode(Mode::Hang);
    let started = Instant::now();
    let err = within(Duration::from_secs(10), "call", chain_id(&pool)).await.expect_err("everything is down");
    let elapsed = started.elapsed();
    // 4 attempts alternate refused / hanging: 2 timeouts of 300 ms, 2 backoffs of at most ~100 ms.
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    assert!(elapsed >= 2 * REQUEST_TIMEOUT, "both hanging attempts ran into the timeout: {elapsed:?}");
    assert!(
        matches!(&err, RpcError::Timeout { upstream, .. } if upstream == "hanging"),
        "last error: {err:?}"
    );
    assert!(err.is_retryable(), "an outage is transient for the caller: {err:?}");
    assert_eq!(fake.received("eth_chainId"), 2, "2 of the 4 attempts (the healthy call went to the node)");
    for s in pool.statuses() {
        assert_eq!(s.state, "down", "{s:?}");
    }

    // The node comes back on the same URL: calls succeed again without a monitor (down upstreams are still tried).
    let _anvil = Anvil::spawn_on_port(port, &[]).await;
    let answer = within(Duration::from_secs(10), "call", chain_id(&pool)).await.expect("node is back");
    assert_eq!(answer.get(), ANVIL_CHAIN_ID);
    assert_eq!(status(&pool, "node").state, "healthy");
}

#[tokio::test]
async fn all_upstreams_excluded_is_no_upstream_at_once_until_one_passes_the_check() {
    let anvil = Anvil::spawn().await;
    let fake = FakeUpstream::start(Mode::Answer(json!("0x5"))).await;
    let pool = pool_with(&[("wrong", &fake.url)], config()).with_identity_check(chain_id_check(31337));
    pool.verify_all().await;
    assert_eq!(status(&pool, "wrong").state, "excluded");
    let checks = fake.requests();

    let started = Instant::now();
    let err = chain_id(&pool).await.expect_err("nothing is eligible");
    assert!(started.elapsed() < Duration::from_millis(100), "took {:?}", started.elapsed());
    assert!(
        matches!(&err, RpcError::NoUpstream { reason, .. } if reason.contains("wrong chain id")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.to_client_error().code, -32603);
    assert_eq!(fake.requests(), checks, "NoUpstream sends nothing");

    // The upstream now serves the right chain: the monitor's identity check admits it.
    fake.set_mode(Mode::Proxy(anvil.url.clone()));
    let pool = Arc::new(pool);
    let cancel = CancellationToken::new();
    let monitor = pool.spawn_monitor(cancel.clone());
    wait_until("the monitor admits the upstream", MONITOR_WAIT, || status(&pool, "wrong").state == "healthy")
        .await;
    cancel.cancel();
    monitor.await.expect("monitor task ends on cancel");
    let answer = chain_id(&pool).await.expect("admitted upstream serves calls");
    assert_eq!(answer.get(), ANVIL_CHAIN_ID);
}

#[tokio::test]
async fn unverified_upstreams_get_no_traffic_until_the_monitor_verifies_them() {
    let anvil = Anvil::spawn().await;
    let fake = FakeUpstream::start(Mode::Status(503)).await;
    let pool = pool_with(&[("flaky", &fake.url)], config()).with_identity_check(chain_id_check(31337));

    let err = chain_id(&pool).await.expect_err("nothing is verified before verify_all");
    assert!(
        matches!(&err, RpcError::NoUpstream { reason, .. } if reason.contains("not verified yet")),
        "{err:?}"
    );
    assert_eq!(fake.requests(), 0);

    // The identity check itself fails: the upstream is down and stays unverified.
    pool.verify_all().await;
    let flaky = status(&pool, "flaky");
    assert_eq!(flaky.state, "down", "{flaky:?}");
    assert!(flaky.reason.as_deref().is_some_and(|r| r.contains("HTTP 503")), "{flaky:?}");
    fake.set_mode(Mode::Proxy(anvil.url.clone()));
    let err = chain_id(&pool).await.expect_err("a down, unverified upstream is not routed to");
    assert!(matches!(&err, RpcError::NoUpstream { reason, .. } if reason.contains("HTTP 503")), "{err:?}");
    assert_eq!(fake.requests(), 1, "only the identity check reached it");

    let pool = Arc::new(pool);
    let cancel = CancellationToken::new();
    let monitor = pool.spawn_monitor(cancel.clone());
    wait_until("the monitor verifies the upstream", MONITOR_WAIT, || {
        status(&pool, "flaky").state == "healthy"
    })
    .await;
    cancel.cancel();
    monitor.await.expect("monitor task ends on cancel");
    assert_eq!(chain_id(&pool).await.expect("verified upstream serves calls").get(), ANVIL_CHAIN_ID);
}

#[tokio::test]
async fn null_and_empty_results_are_successes() {
    let anvil = Anvil::spawn().await;
    let fake = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready_pool(&[("primary", &fake.url), ("secondary", &anvil.url)]).await;

    let unknown = format!("0x{}", "11".repeat(32));
    let tx = pool
        .call("eth_getTransactionByHash", &params(json!([unknown])))
        .await
        .expect("an unknown transaction is a null result, not an error");
    assert_eq!(tx.get(), "null");

    let filter = json!({"fromBlock": "0x0", "toBlock": "0x0"});
    let logs = pool.call("eth_getLogs", &params(json!([filter]))).await.expect("no logs is an empty result");
    assert_eq!(logs.get(), "[]");

    // The same from a provider answering them directly.
    fake.set_mode(Mode::Answer(Value::Null));
    let answer = pool.call("eth_getBlockByNumber", &params(json!(["0x99", false]))).await.expect("null");
    assert_eq!(answer.get(), "null");
    fake.set_mode(Mode::Answer(json!([])));
    let answer = pool.call("eth_getLogs", &params(json!([filter]))).await.expect("empty");
    assert_eq!(answer.get(), "[]");

    assert_eq!(fake.requests(), 4, "all served by the primary, no failover");
    let primary = status(&pool, "primary");
    assert_eq!(primary.state, "healthy", "{primary:?}");
    assert_eq!((primary.requests, primary.failures), (4, 0));
    assert_eq!(status(&pool, "secondary").requests, 0);
}
