//! The pool's resilience features, each proven against a real anvil and the fault-injecting fake upstream in
//! `common`: hedged reads, the per-call deadline, circuit breakers, `governor` rate budgets, 429 cooldowns, lag
//! exclusion and head answers, height hints, primary selection with hysteresis, and signed-write retries with
//! duplicate detection.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainmux_rpc::{
    BreakerConfig, CallTrace, HedgeDelay, Pool, PoolConfig, RateLimit, RequestHints, RpcError,
    UpstreamConfig, UpstreamPolicy,
};
use chainmux_testkit::{Anvil, Eth};
use common::{
    FakeUpstream, Mode, block_number_probe, params, parse_quantity, signed_transfer, status, wait_until,
    within,
};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// anvil's default chain id, as `eth_chainId` reports it.
const ANVIL_CHAIN_ID: &str = "\"0x7a69\"";
/// Upper bound for waits on the monitor; a passing test needs a few probe intervals.
const MONITOR_WAIT: Duration = Duration::from_secs(8);

fn no_params() -> Box<RawValue> {
    params(json!([]))
}

fn quantity(n: u64) -> String {
    format!("{n:#x}")
}

/// Height hint as the EVM adapter gives it: the block an `eth_getBlockByNumber` asks for.
fn requested_block(method: &str, params: &RawValue) -> Option<u64> {
    if method != "eth_getBlockByNumber" {
        return None;
    }
    let params: Vec<Value> = serde_json::from_str(params.get()).ok()?;
    let number = params.first()?.as_str()?;
    u64::from_str_radix(number.strip_prefix("0x")?, 16).ok()
}

/// Duplicate-write answer as the EVM adapter gives it: the keccak-256 of the signed bytes, the transaction hash.
fn raw_transaction_hash(method: &str, params: &RawValue) -> Option<Box<RawValue>> {
    if method != "eth_sendRawTransaction" {
        return None;
    }
    let [raw]: [String; 1] = serde_json::from_str(params.get()).ok()?;
    let bytes = alloy::primitives::hex::decode(raw).ok()?;
    serde_json::value::to_raw_value(&alloy::primitives::keccak256(bytes).to_string()).ok()
}

/// Fast-failing defaults: no hedging (tests that count requests exactly turn it on only where they mean to),
/// short backoff, frequent probes.
fn config() -> PoolConfig {
    PoolConfig {
        deadline: Duration::from_secs(5),
        max_attempts: 4,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        probe_interval: Duration::from_millis(50),
        hedge: false,
        ..PoolConfig::default()
    }
}

fn policy() -> UpstreamPolicy {
    UpstreamPolicy { request_timeout: Duration::from_secs(2), ..UpstreamPolicy::default() }
}

fn upstream(name: &str, url: &str, policy: UpstreamPolicy) -> UpstreamConfig {
    UpstreamConfig { name: name.to_owned(), url: url.parse().expect("upstream URL"), policy }
}

/// A verified pool (no identity check: verification only marks upstreams usable) with the head probe.
async fn ready(upstreams: Vec<UpstreamConfig>, config: PoolConfig) -> Arc<Pool> {
    ready_with(upstreams, config, RequestHints::default()).await
}

async fn ready_with(upstreams: Vec<UpstreamConfig>, config: PoolConfig, hints: RequestHints) -> Arc<Pool> {
    let pool = Pool::new("test", upstreams, config).with_head_probe(block_number_probe()).with_hints(hints);
    pool.verify_all().await;
    Arc::new(pool)
}

/// The name of the upstream currently marked primary, if any.
fn primary_name(pool: &Pool) -> Option<String> {
    pool.statuses().into_iter().find(|s| s.primary).map(|s| s.name)
}

async fn chain_id(pool: &Pool) -> (Result<Box<RawValue>, RpcError>, CallTrace) {
    pool.call_traced("eth_chainId", &no_params()).await
}

/// `eth_chainId` through the pool must succeed; returns the upstream that answered.
async fn chain_id_ok(pool: &Pool) -> String {
    let (result, trace) = chain_id(pool).await;
    let answer = result.unwrap_or_else(|err| panic!("eth_chainId failed: {err} ({trace:?})"));
    assert_eq!(answer.get(), ANVIL_CHAIN_ID);
    trace.upstream.expect("a successful call names its upstream")
}

/// The pool's background monitor, cancelled when stopped or dropped.
struct Monitor {
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Monitor {
    fn start(pool: &Arc<Pool>) -> Monitor {
        let cancel = CancellationToken::new();
        let task = pool.spawn_monitor(cancel.clone());
        Monitor { cancel, task: Some(task) }
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            within(Duration::from_secs(5), "monitor shutdown", task)
                .await
                .expect("monitor task ends on cancel");
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// How often the transaction `hash` is included in the chain (every block from genesis to head).
async fn copies_on_chain(eth: &Eth, hash: &str) -> usize {
    let head = eth.block_number().await;
    let mut copies = 0;
    for number in 0..=head {
        let txs = eth.block(number, false).await["transactions"].as_array().cloned().unwrap_or_default();
        copies += txs.iter().filter(|t| t.as_str() == Some(hash)).count();
    }
    copies
}

fn hedge_after(delay: Duration) -> HedgeDelay {
    HedgeDelay {
        fixed: Some(delay),
        quantile: 0.9,
        min: Duration::from_millis(10),
        max: Duration::from_secs(2),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Hedging
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn slow_primary_read_is_hedged_to_the_secondary_after_the_fixed_delay() {
    let anvil = Anvil::spawn().await;
    let primary = FakeUpstream::start(Mode::Slow(Duration::from_millis(800), anvil.url.clone())).await;
    let secondary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let primary_policy = UpstreamPolicy { hedge_delay: hedge_after(Duration::from_millis(50)), ..policy() };
    let upstreams = || {
        vec![
            upstream("primary", &primary.url, primary_policy.clone()),
            upstream("secondary", &secondary.url, policy()),
        ]
    };

    let hedging = ready(upstreams(), PoolConfig { hedge: true, max_hedges: 1, ..config() }).await;
    let started = Instant::now();
    let (result, trace) = chain_id(&hedging).await;
    let elapsed = started.elapsed();
    assert_eq!(result.expect("the hedge answers").get(), ANVIL_CHAIN_ID);
    assert_eq!(trace.upstream.as_deref(), Some("secondary"), "{trace:?}");
    assert_eq!((trace.attempts, trace.hedges), (2, 1), "{trace:?}");
    assert!(elapsed >= Duration::from_millis(50), "the hedge waited for its delay: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(400), "answered by the hedge, not the slow primary: {elapsed:?}");
    assert_eq!(primary.received("eth_chainId"), 1, "the read went to the primary first");
    assert_eq!(secondary.received("eth_chainId"), 1, "one hedge copy");
    assert!(status(&hedging, "primary").primary, "the slow primary is still the configured primary");

    // The same read without hedging waits for the slow primary.
    let plain = ready(upstreams(), PoolConfig { hedge: false, ..config() }).await;
    let started = Instant::now();
    let (result, trace) = chain_id(&plain).await;
    let elapsed = started.elapsed();
    assert_eq!(result.expect("the primary answers").get(), ANVIL_CHAIN_ID);
    assert_eq!(trace.upstream.as_deref(), Some("primary"), "{trace:?}");
    assert_eq!((trace.attempts, trace.hedges), (1, 0), "{trace:?}");
    assert!(elapsed >= Duration::from_millis(800), "no hedge: the primary's delay is paid: {elapsed:?}");
    assert_eq!(primary.received("eth_chainId"), 2);
    assert_eq!(secondary.received("eth_chainId"), 1, "nothing was hedged");
}

#[tokio::test]
async fn signed_writes_are_never_hedged() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let raw_tx = signed_transfer(&eth).await;
    let primary = FakeUpstream::start(Mode::Slow(Duration::from_millis(800), anvil.url.clone())).await;
    let secondary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let primary_policy = UpstreamPolicy { hedge_delay: hedge_after(Duration::from_millis(50)), ..policy() };
    let upstreams = || {
        vec![
            upstream("primary", &primary.url, primary_policy.clone()),
            upstream("secondary", &secondary.url, policy()),
        ]
    };
    let config = PoolConfig { hedge: true, max_hedges: 1, ..config() };

    // Control: this configuration does hedge a read (on a pool of its own, so the write below starts from the
    // same fresh state).
    let reads = ready(upstreams(), config.clone()).await;
    let (result, trace) = chain_id(&reads).await;
    result.expect("hedged read");
    assert_eq!((trace.upstream.as_deref(), trace.hedges), (Some("secondary"), 1), "{trace:?}");

    let pool = ready(upstreams(), config).await;
    let started = Instant::now();
    let (result, trace) = pool.call_traced("eth_sendRawTransaction", &params(json!([raw_tx]))).await;
    let elapsed = started.elapsed();
    let hash = result.expect("the slow primary accepts the write within its timeout");
    assert_eq!(trace.upstream.as_deref(), Some("primary"), "{trace:?}");
    assert_eq!((trace.attempts, trace.hedges), (1, 0), "{trace:?}");
    assert!(elapsed >= Duration::from_millis(800), "waited for the primary: {elapsed:?}");
    assert_eq!(primary.received("eth_sendRawTransaction"), 1);
    assert_eq!(secondary.received("eth_sendRawTransaction"), 0, "a write is never hedged");
    let hash: String = serde_json::from_str(hash.get()).expect("a transaction hash");
    let receipt = eth.wait_receipt(hash.parse().expect("a 32-byte hash")).await;
    assert_eq!(receipt["status"], "0x1", "mined: {receipt}");
}

#[tokio::test]
async fn hedge_delay_follows_the_primarys_latency_quantile() {
    let anvil = Anvil::spawn().await;
    let primary = FakeUpstream::start(Mode::Slow(Duration::from_millis(800), anvil.url.clone())).await;
    let secondary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let quantile = HedgeDelay {
        fixed: None,
        quantile: 0.9,
        min: Duration::from_millis(10),
        max: Duration::from_secs(2),
    };
    let upstreams = || {
        vec![
            upstream("primary", &primary.url, UpstreamPolicy { hedge_delay: quantile.clone(), ..policy() }),
            upstream("secondary", &secondary.url, policy()),
        ]
    };
    let config = PoolConfig { hedge: true, max_hedges: 1, ..config() };

    // Control: without latency samples the delay is the maximum (2 s), so the slow primary answers, unhedged.
    let fresh = ready(upstreams(), config.clone()).await;
    let started = Instant::now();
    let (result, trace) = chain_id(&fresh).await;
    result.expect("the primary answers");
    assert_eq!((trace.upstream.as_deref(), trace.hedges), (Some("primary"), 0), "{trace:?}");
    assert!(started.elapsed() >= Duration::from_millis(800), "{:?}", started.elapsed());

    // 20 fast answers: the primary's p90 falls to a few ms, so the hedge delay becomes its minimum (10 ms).
    let pool = ready(upstreams(), config).await;
    primary.set_mode(Mode::Proxy(anvil.url.clone()));
    let before = primary.received("eth_chainId");
    for _ in 0..20 {
        chain_id_ok(&pool).await;
    }
    assert_eq!(primary.received("eth_chainId"), before + 20, "the warm-up went to the primary");
    let p90 = status(&pool, "primary").latency_p90_ms.expect("the primary has a latency window");
    assert!(p90 < 100.0, "fast answers: p90 {p90} ms");

    primary.set_mode(Mode::Slow(Duration::from_millis(800), anvil.url.clone()));
    let started = Instant::now();
    let (result, trace) = chain_id(&pool).await;
    let elapsed = started.elapsed();
    assert_eq!(result.expect("the hedge answers").get(), ANVIL_CHAIN_ID);
    assert_eq!(trace.upstream.as_deref(), Some("secondary"), "{trace:?}");
    assert_eq!((trace.attempts, trace.hedges), (2, 1), "{trace:?}");
    assert!(elapsed >= Duration::from_millis(10), "not before the minimum delay: {elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(500),
        "hedged after about the p90, not the 2 s maximum: {elapsed:?}"
    );
    assert_eq!(primary.received("eth_chainId"), before + 21, "the slow read went to the primary first");
}

// ---------------------------------------------------------------------------------------------------------------
// Deadline
// ---------------------------------------------------------------------------------------------------------------

fn is_deadline_error(err: &RpcError) -> bool {
    match err {
        RpcError::DeadlineExceeded { .. } => true,
        RpcError::NoUpstream { reason, .. } => reason.contains("deadline"),
        _ => false,
    }
}

#[tokio::test]
async fn deadline_ends_a_call_to_hanging_upstreams_long_before_their_timeout() {
    let a = FakeUpstream::start(Mode::Hang).await;
    let b = FakeUpstream::start(Mode::Hang).await;
    let slow_timeout = UpstreamPolicy { request_timeout: Duration::from_secs(10), ..policy() };
    let deadline = Duration::from_millis(500);
    let hedging = PoolConfig { deadline, hedge: true, max_hedges: 1, ..config() };
    let pool = ready(
        vec![upstream("a", &a.url, slow_timeout.clone()), upstream("b", &b.url, slow_timeout)],
        hedging,
    )
    .await;

    for round in 0..3 {
        let started = Instant::now();
        let (result, _) = within(Duration::from_secs(5), "call", chain_id(&pool)).await;
        let elapsed = started.elapsed();
        let err = result.expect_err("nothing answers");
        assert!(is_deadline_error(&err), "round {round}: expected the deadline error, got {err:?}");
        assert!(err.is_retryable(), "{err:?}");
        assert!(elapsed >= deadline, "round {round}: gave up before the deadline: {elapsed:?}");
        assert!(elapsed < Duration::from_millis(1200), "round {round}: outlived the deadline: {elapsed:?}");
    }
    assert!(a.requests() + b.requests() >= 3, "every call reached an upstream");

    // A lone hanging upstream: its attempt's timeout is cut to the deadline and fires in the same instant; the
    // call still ends as the deadline, every time, not as that upstream's timeout.
    let deadline = Duration::from_millis(100);
    let slow_timeout = UpstreamPolicy { request_timeout: Duration::from_secs(10), ..policy() };
    let lone = ready(vec![upstream("a", &a.url, slow_timeout)], PoolConfig { deadline, ..config() }).await;
    for round in 0..10 {
        let started = Instant::now();
        let (result, trace) = within(Duration::from_secs(5), "call", chain_id(&lone)).await;
        let elapsed = started.elapsed();
        let err = result.expect_err("nothing answers");
        assert!(
            is_deadline_error(&err),
            "lone round {round}: expected the deadline error, got {err:?} ({trace:?})"
        );
        assert!(
            elapsed >= deadline && elapsed < Duration::from_millis(400),
            "lone round {round}: {elapsed:?}"
        );
        assert_eq!(trace.attempts, 1, "no zero-budget attempt after the deadline: {trace:?}");
    }
}

#[tokio::test]
async fn retries_and_backoff_never_outlive_the_deadline() {
    let failing = FakeUpstream::start(Mode::Status(500)).await;
    let hanging = FakeUpstream::start(Mode::Hang).await;
    // The breaker must not end the call early: this is about the deadline.
    let patient = UpstreamPolicy {
        request_timeout: Duration::from_secs(10),
        breaker: BreakerConfig {
            failures: 1000,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(10),
            successes: 2,
        },
        ..policy()
    };
    let deadline = Duration::from_millis(800);
    let config = PoolConfig {
        deadline,
        max_attempts: 10,
        backoff_min: Duration::from_millis(200),
        backoff_max: Duration::from_secs(2),
        ..config()
    };

    // One upstream answering 500: attempts separated by growing backoff, cut off by the deadline.
    let pool = ready(vec![upstream("failing", &failing.url, patient.clone())], config.clone()).await;
    for round in 0..3 {
        let before = failing.requests();
        let started = Instant::now();
        let (result, trace) = within(Duration::from_secs(5), "call", chain_id(&pool)).await;
        let elapsed = started.elapsed();
        let err = result.expect_err("the only upstream fails");
        // The next backoff would pass the deadline: the call ends early, with the upstream's own error.
        assert!(matches!(err, RpcError::Http { status: 500, .. }), "round {round}: {err:?}");
        assert!(elapsed < deadline + Duration::from_millis(200), "round {round}: {elapsed:?} ({trace:?})");
        let sent = failing.requests() - before;
        assert!(sent >= 2, "round {round}: retried after a backoff: {sent} requests");
        assert!(sent < 10, "round {round}: backoff separated the attempts: {sent} requests");
        assert_eq!(sent, trace.attempts as usize, "{trace:?}");
    }

    // A failing and a hanging upstream: the hanging attempt is cut at the deadline too.
    let pool = ready(
        vec![upstream("failing", &failing.url, patient.clone()), upstream("hanging", &hanging.url, patient)],
        config,
    )
    .await;
    for round in 0..3 {
        let started = Instant::now();
        let (result, trace) = within(Duration::from_secs(5), "call", chain_id(&pool)).await;
        let elapsed = started.elapsed();
        let err = result.expect_err("nothing answers");
        assert!(matches!(err, RpcError::DeadlineExceeded { .. }), "round {round}: {err:?} ({trace:?})");
        assert!(elapsed >= deadline, "round {round}: {elapsed:?} ({trace:?})");
        assert!(elapsed < deadline + Duration::from_millis(200), "round {round}: {elapsed:?} ({trace:?})");
    }
    assert!(hanging.requests() >= 1, "the hanging upstream was tried");
}

// ---------------------------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn circuit_opens_after_failures_and_closes_again_through_half_open() {
    let anvil = Anvil::spawn().await;
    let primary = FakeUpstream::start(Mode::Status(500)).await;
    // The secondary fails too at first, so that every call tries the primary (a merely failing upstream is
    // otherwise ranked behind healthy ones); its own breaker is out of reach.
    let secondary = FakeUpstream::start(Mode::Status(503)).await;
    let breaker = BreakerConfig {
        failures: 3,
        window: Duration::from_secs(10),
        cooldown: Duration::from_millis(300),
        successes: 2,
    };
    let lenient = BreakerConfig { failures: 1000, ..breaker.clone() };
    let pool = ready(
        vec![
            upstream("primary", &primary.url, UpstreamPolicy { breaker, ..policy() }),
            upstream("secondary", &secondary.url, UpstreamPolicy { breaker: lenient, ..policy() }),
        ],
        PoolConfig { max_attempts: 2, probe_interval: Duration::from_millis(50), ..config() },
    )
    .await;

    for call in 1..=3 {
        let (result, trace) = chain_id(&pool).await;
        result.expect_err("both upstreams fail");
        assert_eq!(trace.attempts, 2, "call {call}: {trace:?}");
        assert_eq!(primary.received("eth_chainId"), call, "call {call} tried the primary first");
        let s = status(&pool, "primary");
        if call < 3 {
            assert_eq!((s.state, s.breaker), ("down", "closed"), "call {call}: {s:?}");
        } else {
            assert_eq!((s.state, s.breaker), ("excluded", "open"), "call {call}: {s:?}");
            assert_eq!(s.reason.as_deref(), Some("circuit open"), "{s:?}");
        }
    }
    let opened = Instant::now();

    // The open circuit keeps calls away from the primary.
    secondary.set_mode(Mode::Proxy(anvil.url.clone()));
    for _ in 0..5 {
        assert_eq!(chain_id_ok(&pool).await, "secondary");
    }
    assert_eq!(primary.received("eth_chainId"), 3, "no call reached the primary while its circuit is open");
    let s = status(&pool, "primary");
    assert_eq!((s.state, s.breaker), ("excluded", "open"), "{s:?}");

    // The primary recovers; after the cooldown the monitor's probes move it half-open, then closed.
    primary.set_mode(Mode::Proxy(anvil.url.clone()));
    let monitor = Monitor::start(&pool);
    let mut seen: Vec<&'static str> = vec!["open"];
    let mut half_open_after = None;
    loop {
        let s = status(&pool, "primary");
        if seen.last() != Some(&s.breaker) {
            seen.push(s.breaker);
            if s.breaker == "half_open" {
                half_open_after = Some(opened.elapsed());
            }
        }
        if s.breaker == "closed" && s.state == "healthy" {
            break;
        }
        assert!(opened.elapsed() < MONITOR_WAIT, "no recovery; breaker states seen: {seen:?}, now {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen, ["open", "half_open", "closed"], "breaker sequence");
    let half_open_after = half_open_after.expect("half-open was seen");
    assert!(half_open_after >= Duration::from_millis(280), "not before the cooldown: {half_open_after:?}");
    assert!(primary.received("eth_blockNumber") >= 2, "closed by probe successes");
    assert_eq!(primary.received("eth_chainId"), 3, "recovered by probes, not by calls");

    // Closed and healthy: traffic returns to the configured primary once its error rate decayed into the
    // hysteresis band.
    let started = Instant::now();
    while chain_id_ok(&pool).await != "primary" {
        assert!(started.elapsed() < MONITOR_WAIT, "no traffic returned: {:?}", pool.statuses());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    monitor.stop().await;
    assert!(status(&pool, "primary").primary);
}

// ---------------------------------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------------------------------

fn limited(per_second: u32, burst: u32) -> UpstreamPolicy {
    UpstreamPolicy { rate_limit: Some(RateLimit { per_second, burst }), ..policy() }
}

#[tokio::test]
async fn lone_rate_limited_upstream_makes_calls_wait_for_budget() {
    let anvil = Anvil::spawn().await;
    let fake = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready(vec![upstream("limited", &fake.url, limited(5, 5))], config()).await;

    let started = Instant::now();
    for call in 0..15 {
        let (result, trace) = chain_id(&pool).await;
        assert_eq!(result.unwrap_or_else(|err| panic!("call {call}: {err}")).get(), ANVIL_CHAIN_ID);
        assert_eq!(trace.attempts, 1, "waiting for budget is not an attempt: {trace:?}");
    }
    let elapsed = started.elapsed();
    // A burst of 5, then 10 calls at 5 per second: 2 s.
    assert!(elapsed >= Duration::from_millis(1800), "the pool waited for budget: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "but not longer than needed: {elapsed:?}");
    assert_eq!(fake.received("eth_chainId"), 15, "every call sent exactly once");
    assert_eq!(status(&pool, "limited").state, "healthy", "a local budget is no health problem");
}

#[tokio::test]
async fn rate_limited_upstream_is_skipped_while_another_has_budget() {
    let anvil = Anvil::spawn().await;
    let limited_fake = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let unlimited_fake = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready(
        vec![
            upstream("limited", &limited_fake.url, limited(5, 5)),
            upstream("unlimited", &unlimited_fake.url, policy()),
        ],
        config(),
    )
    .await;

    let started = Instant::now();
    for _ in 0..15 {
        chain_id_ok(&pool).await;
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(500), "no waiting while an upstream has budget: {elapsed:?}");
    let (on_limited, on_unlimited) =
        (limited_fake.received("eth_chainId"), unlimited_fake.received("eth_chainId"));
    assert!(
        (5..=6).contains(&on_limited),
        "the limited upstream got its burst (+1 refill at most): {on_limited}"
    );
    assert_eq!(on_limited + on_unlimited, 15, "every call sent once");
}

#[tokio::test]
async fn http_429_benches_an_upstream_for_its_retry_after() {
    let anvil = Anvil::spawn().await;
    let primary = FakeUpstream::start(Mode::Status429 { retry_after_secs: 1 }).await;
    let secondary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready(
        vec![upstream("primary", &primary.url, policy()), upstream("secondary", &secondary.url, policy())],
        config(),
    )
    .await;

    let started = Instant::now();
    assert_eq!(chain_id_ok(&pool).await, "secondary", "failed over after the 429");
    assert_eq!(primary.received("eth_chainId"), 1);
    let s = status(&pool, "primary");
    assert_eq!(s.state, "excluded", "{s:?}");
    assert_eq!(s.reason.as_deref(), Some("rate limited for 1s"), "{s:?}");
    assert_eq!(s.breaker, "closed", "a 429 is no breaker failure: {s:?}");

    for _ in 0..5 {
        assert_eq!(chain_id_ok(&pool).await, "secondary");
    }
    assert_eq!(primary.received("eth_chainId"), 1, "nothing sent during the Retry-After");

    wait_until("the cooldown ends", Duration::from_secs(3), || status(&pool, "primary").state != "excluded")
        .await;
    let cooled = started.elapsed();
    assert!(cooled >= Duration::from_secs(1), "benched for the whole Retry-After: {cooled:?}");
    assert!(cooled < Duration::from_millis(1600), "and not much longer: {cooled:?}");
    assert_eq!(status(&pool, "primary").state, "down", "routable again, behind the healthy secondary");
    assert_eq!(primary.received("eth_chainId"), 1);

    // The provider lifts its limit; once probes saw it answer (and its throttle rate decayed into the
    // hysteresis band), it is the primary again.
    primary.set_mode(Mode::Proxy(anvil.url.clone()));
    let monitor = Monitor::start(&pool);
    let started = Instant::now();
    while chain_id_ok(&pool).await != "primary" {
        assert!(started.elapsed() < MONITOR_WAIT, "no traffic returned: {:?}", pool.statuses());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    monitor.stop().await;
    let s = status(&pool, "primary");
    assert!(s.primary && s.state == "healthy", "{s:?}");
    for _ in 0..3 {
        assert_eq!(chain_id_ok(&pool).await, "primary", "traffic stays with the recovered primary");
    }
    assert_eq!(primary.received("eth_chainId"), 5);
}

// ---------------------------------------------------------------------------------------------------------------
// Heads: lag exclusion, head answers, height hints
// ---------------------------------------------------------------------------------------------------------------

/// Runs the monitor until both upstreams reported the expected heads.
async fn probe_heads(pool: &Arc<Pool>, expected: &[(&str, u64)]) {
    let monitor = Monitor::start(pool);
    wait_until("the monitor probed every head", MONITOR_WAIT, || {
        expected.iter().all(|(name, head)| status(pool, name).head == Some(*head))
    })
    .await;
    monitor.stop().await;
}

#[tokio::test]
async fn lagging_upstream_is_excluded_and_head_answers_never_go_backwards() {
    const HEAD: u64 = 30;
    const BEHIND: u64 = 20;
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    eth.mine(HEAD).await;
    assert_eq!(eth.block_number().await, HEAD);
    let lagging = FakeUpstream::start(Mode::Lagging { url: anvil.url.clone(), behind: BEHIND }).await;
    let current = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let lag_limit = |max_lag_blocks| UpstreamPolicy { max_lag_blocks, ..policy() };

    // 20 blocks behind with a limit of 10: excluded, and head answers come from the current upstream.
    let strict = ready(
        vec![
            upstream("lagging", &lagging.url, lag_limit(10)),
            upstream("current", &current.url, lag_limit(10)),
        ],
        config(),
    )
    .await;
    probe_heads(&strict, &[("lagging", HEAD - BEHIND), ("current", HEAD)]).await;
    let s = status(&strict, "lagging");
    assert_eq!(s.state, "excluded", "{s:?}");
    assert_eq!(s.reason.as_deref(), Some("lagging 20 blocks"), "{s:?}");
    assert_eq!(s.lag, Some(BEHIND));
    assert_eq!(strict.best_head(), Some(HEAD));
    let probes = lagging.received("eth_blockNumber");
    for _ in 0..20 {
        let answer = strict.call("eth_blockNumber", &no_params()).await.expect("head");
        assert_eq!(parse_quantity(&answer), Some(HEAD), "the real head, never the lagged one");
    }
    assert_eq!(lagging.received("eth_blockNumber"), probes, "no call reached the excluded upstream");

    // Tolerated lag (limit 50), and the operator's order kept despite the score (large hysteresis): the lagging
    // upstream is primary and answers, yet the pool answers the best healthy head.
    let tolerant = ready_with(
        vec![
            upstream("lagging", &lagging.url, lag_limit(50)),
            upstream("current", &current.url, lag_limit(50)),
        ],
        PoolConfig { hysteresis: 100.0, ..config() },
        RequestHints { min_height: Some(requested_block), ..RequestHints::default() },
    )
    .await;
    probe_heads(&tolerant, &[("lagging", HEAD - BEHIND), ("current", HEAD)]).await;
    let s = status(&tolerant, "lagging");
    assert_eq!((s.state, s.lag), ("healthy", Some(BEHIND)), "{s:?}");
    let probes = lagging.received("eth_blockNumber");
    for _ in 0..20 {
        let (result, trace) = tolerant.call_traced("eth_blockNumber", &no_params()).await;
        assert_eq!(trace.upstream.as_deref(), Some("lagging"), "{trace:?}");
        assert_eq!(parse_quantity(&result.expect("head")), Some(HEAD), "lifted to the best healthy head");
    }
    assert_eq!(lagging.received("eth_blockNumber"), probes + 20, "the lagging upstream answered every call");
    assert!(status(&tolerant, "lagging").primary, "{:?}", tolerant.statuses());

    // Height hint: a block the lagging primary does not have yet is asked from the current upstream.
    let wanted = HEAD - 5;
    let (result, trace) =
        tolerant.call_traced("eth_getBlockByNumber", &params(json!([quantity(wanted), false]))).await;
    let block: Value = serde_json::from_str(result.expect("block").get()).expect("block JSON");
    assert_eq!(block["number"], quantity(wanted), "{block}");
    assert_eq!(trace.upstream.as_deref(), Some("current"), "{trace:?}");
    assert_eq!(lagging.received("eth_getBlockByNumber"), 0, "not sent to the upstream behind it");
    assert_eq!(current.received("eth_getBlockByNumber"), 1);
    // Control: a block it has goes to the primary as usual.
    let (result, trace) =
        tolerant.call_traced("eth_getBlockByNumber", &params(json!([quantity(5), false]))).await;
    result.expect("block");
    assert_eq!(trace.upstream.as_deref(), Some("lagging"), "{trace:?}");
    assert_eq!(lagging.received("eth_getBlockByNumber"), 1);
}

// ---------------------------------------------------------------------------------------------------------------
// Primary selection
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn primary_moves_away_from_a_slow_upstream_and_traffic_returns_after_recovery() {
    let anvil = Anvil::spawn().await;
    let first = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let second = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let pool = ready(
        vec![upstream("first", &first.url, policy()), upstream("second", &second.url, policy())],
        PoolConfig { probe_interval: Duration::from_millis(30), ..config() },
    )
    .await;

    // Equal upstreams: the configured order decides.
    for _ in 0..5 {
        assert_eq!(chain_id_ok(&pool).await, "first");
    }
    assert_eq!(primary_name(&pool).as_deref(), Some("first"));
    assert_eq!((first.received("eth_chainId"), second.received("eth_chainId")), (5, 0));

    // The first slows down: its p90 rises, its score falls beyond the hysteresis, the second takes over.
    first.set_mode(Mode::Slow(Duration::from_millis(200), anvil.url.clone()));
    let mut slow_calls = 0;
    while primary_name(&pool).as_deref() != Some("second") {
        assert!(
            slow_calls < 10,
            "still {:?} after {slow_calls} slow calls: {:?}",
            primary_name(&pool),
            pool.statuses()
        );
        chain_id_ok(&pool).await;
        slow_calls += 1;
    }
    let on_first = first.received("eth_chainId");
    for _ in 0..5 {
        assert_eq!(chain_id_ok(&pool).await, "second");
    }
    assert_eq!(first.received("eth_chainId"), on_first, "no traffic to the slow upstream");
    let (slow, fast) = (status(&pool, "first"), status(&pool, "second"));
    assert!(!slow.primary && fast.primary);
    assert!(slow.score * 1.2 < fast.score, "beyond the hysteresis: {slow:?} vs {fast:?}");

    // Recovered: fast probe answers bring its p90 down, and traffic returns to the operator's first choice.
    first.set_mode(Mode::Proxy(anvil.url.clone()));
    let monitor = Monitor::start(&pool);
    let started = Instant::now();
    while primary_name(&pool).as_deref() != Some("first") {
        assert!(started.elapsed() < MONITOR_WAIT, "traffic did not return: {:?}", pool.statuses());
        chain_id_ok(&pool).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    monitor.stop().await;
    let on_first = first.received("eth_chainId");
    let on_second = second.received("eth_chainId");
    for _ in 0..5 {
        assert_eq!(chain_id_ok(&pool).await, "first");
    }
    assert_eq!(first.received("eth_chainId"), on_first + 5, "traffic returned to the recovered upstream");
    assert_eq!(second.received("eth_chainId"), on_second);
}

#[tokio::test]
async fn primary_does_not_flap_between_similar_upstreams() {
    let anvil = Anvil::spawn().await;
    // The second is ~5% faster: not enough to take over from the operator's first choice. Delays of ~100 ms keep
    // scheduling noise on a loaded 2-core CI machine small next to them.
    let first = FakeUpstream::start(Mode::Slow(Duration::from_millis(105), anvil.url.clone())).await;
    let second = FakeUpstream::start(Mode::Slow(Duration::from_millis(100), anvil.url.clone())).await;
    let pool = ready(
        vec![upstream("first", &first.url, policy()), upstream("second", &second.url, policy())],
        PoolConfig { probe_interval: Duration::from_millis(30), ..config() },
    )
    .await;
    // Both build a latency window from probes while the calls run.
    let monitor = Monitor::start(&pool);
    wait_until("both have latency samples", MONITOR_WAIT, || {
        pool.statuses().iter().all(|s| s.latency_p90_ms.is_some())
    })
    .await;

    let mut primaries: Vec<String> = Vec::new();
    for _ in 0..50 {
        chain_id_ok(&pool).await;
        let primary = primary_name(&pool).expect("a primary after a call");
        if primaries.last() != Some(&primary) {
            primaries.push(primary);
        }
    }
    monitor.stop().await;
    assert_eq!(primaries, ["first"], "primary changes over 50 calls: {:?}", pool.statuses());
    assert_eq!((first.received("eth_chainId"), second.received("eth_chainId")), (50, 0));
    let (a, b) = (status(&pool, "first"), status(&pool, "second"));
    assert!(a.latency_p90_ms.is_some() && b.latency_p90_ms.is_some(), "{a:?} {b:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Signed writes
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn signed_write_timing_out_on_the_primary_lands_once_via_the_secondary() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let raw_tx = signed_transfer(&eth).await;
    let primary = FakeUpstream::start(Mode::Slow(Duration::from_millis(600), anvil.url.clone())).await;
    let secondary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let short = UpstreamPolicy { request_timeout: Duration::from_millis(300), ..policy() };
    let pool = ready_with(
        vec![upstream("primary", &primary.url, short), upstream("secondary", &secondary.url, policy())],
        config(),
        RequestHints { duplicate_write: Some(raw_transaction_hash), ..RequestHints::default() },
    )
    .await;

    let started = Instant::now();
    let (result, trace) = pool.call_traced("eth_sendRawTransaction", &params(json!([raw_tx.clone()]))).await;
    let elapsed = started.elapsed();
    let hash = result.expect("the retry lands");
    assert_eq!(trace.upstream.as_deref(), Some("secondary"), "{trace:?}");
    assert_eq!((trace.attempts, trace.hedges), (2, 0), "{trace:?}");
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(600), "{elapsed:?}");
    assert_eq!(primary.received("eth_sendRawTransaction"), 1);
    assert_eq!(secondary.received("eth_sendRawTransaction"), 1);
    let expected = raw_transaction_hash("eth_sendRawTransaction", &params(json!([raw_tx]))).expect("hash");
    assert_eq!(hash.get(), expected.get(), "the node's hash is the keccak of the signed bytes");

    let hash: String = serde_json::from_str(hash.get()).expect("a transaction hash");
    let receipt = eth.wait_receipt(hash.parse().expect("a 32-byte hash")).await;
    assert_eq!(receipt["status"], "0x1", "mined: {receipt}");
    // Let the slow primary's late copy arrive (it forwards after 600 ms): still one transaction.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(copies_on_chain(&eth, &hash).await, 1, "the transaction is on chain once");
}

#[tokio::test]
async fn duplicate_rejection_of_a_retried_signed_write_is_answered_with_its_hash() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    // The primary passes the write on at once but answers too late: the transaction lands, the pool times out and
    // retries on the secondary, whose node rejects the duplicate ("nonce too low" once mined).
    let primary = FakeUpstream::start(Mode::Late(Duration::from_millis(600), anvil.url.clone())).await;
    let secondary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let upstreams = || {
        let short = UpstreamPolicy { request_timeout: Duration::from_millis(300), ..policy() };
        vec![upstream("primary", &primary.url, short), upstream("secondary", &secondary.url, policy())]
    };

    // Without the adapter's hint the pool cannot name the transaction: the duplicate rejection is the answer.
    let unhinted = ready(upstreams(), config()).await;
    let raw_tx = signed_transfer(&eth).await;
    let (result, trace) =
        unhinted.call_traced("eth_sendRawTransaction", &params(json!([raw_tx.clone()]))).await;
    match result {
        Err(RpcError::JsonRpc { upstream, error }) => {
            assert_eq!(upstream, "secondary");
            let message = error.message.to_ascii_lowercase();
            assert!(message.contains("nonce too low") || message.contains("already"), "{error:?}");
        }
        other => panic!("expected the secondary's duplicate rejection, got {other:?} ({trace:?})"),
    }
    assert_eq!(trace.attempts, 2, "{trace:?}");
    let hash = raw_transaction_hash("eth_sendRawTransaction", &params(json!([raw_tx]))).expect("hash");
    let hash: String = serde_json::from_str(hash.get()).expect("hash string");
    eth.wait_receipt(hash.parse().expect("a 32-byte hash")).await;

    // With it, the same situation is a success answered with the transaction hash.
    let hinted = ready_with(
        upstreams(),
        config(),
        RequestHints { duplicate_write: Some(raw_transaction_hash), ..RequestHints::default() },
    )
    .await;
    let raw_tx = signed_transfer(&eth).await;
    let (sent_primary, sent_secondary) =
        (primary.received("eth_sendRawTransaction"), secondary.received("eth_sendRawTransaction"));
    let (result, trace) =
        hinted.call_traced("eth_sendRawTransaction", &params(json!([raw_tx.clone()]))).await;
    let answer = result.unwrap_or_else(|err| panic!("a duplicate on retry is a success: {err} ({trace:?})"));
    let expected = raw_transaction_hash("eth_sendRawTransaction", &params(json!([raw_tx]))).expect("hash");
    assert_eq!(answer.get(), expected.get(), "answered with the transaction hash");
    assert_eq!(trace.upstream.as_deref(), Some("secondary"), "{trace:?}");
    assert_eq!((trace.attempts, trace.hedges), (2, 0), "{trace:?}");
    assert_eq!(primary.received("eth_sendRawTransaction"), sent_primary + 1);
    assert_eq!(secondary.received("eth_sendRawTransaction"), sent_secondary + 1);

    let hash: String = serde_json::from_str(answer.get()).expect("a transaction hash");
    let receipt = eth.wait_receipt(hash.parse().expect("a 32-byte hash")).await;
    assert_eq!(receipt["status"], "0x1", "mined by the first send: {receipt}");
    assert_eq!(copies_on_chain(&eth, &hash).await, 1, "the transaction is on chain once");
}

// ---------------------------------------------------------------------------------------------------------------
// Availability
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn with_a_healthy_upstream_no_idempotent_read_fails() {
    let anvil = Anvil::spawn().await;
    // Only the reads under test fail; the monitor's head probes keep succeeding, so the primary keeps coming
    // back (healthy, circuit closed again) and keeps being tried: every fault is hit repeatedly, not once.
    let primary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let secondary = FakeUpstream::start(Mode::Proxy(anvil.url.clone())).await;
    let primary_policy = UpstreamPolicy {
        request_timeout: Duration::from_millis(300),
        hedge_delay: hedge_after(Duration::from_millis(50)),
        breaker: BreakerConfig {
            failures: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_millis(200),
            successes: 2,
        },
        ..policy()
    };
    let deadline = Duration::from_secs(2);
    let pool = ready(
        vec![
            upstream("primary", &primary.url, primary_policy),
            upstream("secondary", &secondary.url, policy()),
        ],
        PoolConfig {
            deadline,
            hedge: true,
            max_hedges: 1,
            probe_interval: Duration::from_millis(25),
            ..config()
        },
    )
    .await;
    let monitor = Monitor::start(&pool);

    let faults = [
        ("hang", Mode::Hang),
        ("http 500", Mode::Status(500)),
        ("garbage", Mode::Garbage),
        ("429", Mode::Status429 { retry_after_secs: 1 }),
        ("proxy", Mode::Proxy(anvil.url.clone())),
    ];
    let mut errors = Vec::new();
    let mut slowest = Duration::ZERO;
    for (name, mode) in faults {
        // Each fault starts with the primary back in first place (its probes answer fast again), so every
        // fault meets real traffic; that traffic returns to a recovered primary is part of what is shown.
        primary.set_mode(Mode::Proxy(anvil.url.clone()));
        let recovered_by = Instant::now() + Duration::from_secs(15);
        loop {
            let (result, _) = chain_id(&pool).await;
            result.expect("reads succeed while the primary recovers");
            if status(&pool, "primary").primary {
                break;
            }
            assert!(
                Instant::now() < recovered_by,
                "the recovered primary never came first: {:?}",
                pool.statuses()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        primary.set_mode(Mode::Only {
            method: "eth_chainId".into(),
            mode: Box::new(mode),
            url: anvil.url.clone(),
        });
        let before = primary.received("eth_chainId");
        for call in 0..20 {
            let started = Instant::now();
            let (result, trace) = chain_id(&pool).await;
            let elapsed = started.elapsed();
            slowest = slowest.max(elapsed);
            match result {
                Ok(answer) => assert_eq!(answer.get(), ANVIL_CHAIN_ID),
                Err(err) => errors.push(format!("{name} #{call}: {err} ({trace:?})")),
            }
            assert!(elapsed < deadline, "{name} #{call}: {elapsed:?} ({trace:?})");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let hits = primary.received("eth_chainId") - before;
        if name != "proxy" {
            assert!(hits >= 1, "{name}: the fault was never hit");
        }
        if name == "hang" {
            // Hedging answers from the secondary, but the hanging primary's unanswered waits count as slow
            // samples: it loses its place instead of being asked first forever.
            assert!(hits < 20, "{name}: a hanging primary kept getting every read ({hits})");
        }
    }
    monitor.stop().await;
    assert!(errors.is_empty(), "{} of 100 reads failed: {errors:#?}", errors.len());
    assert!(slowest < Duration::from_secs(1), "slowest read {slowest:?}");
}
