//! Fault scenarios of the upstream pool, seen from outside: the real `chainmux` binary in front of two upstreams of
//! one anvil node, `primary` (configured first) behind a [`FaultProxy`] and `secondary` (anvil itself, or a second
//! proxy when it must fail too). While a fault is active, every scenario reads through `POST /rpc/local` (a loop
//! of idempotent reads whose answers are compared with anvil's own) and mines new blocks that the indexer must
//! pick up, then checks what `/v1/chains` and `/metrics` say about the upstreams.
//!
//! Invariant of every scenario with at least one working upstream: no read fails (no JSON-RPC error, no HTTP
//! error) and none takes longer than `deadline_ms`.

mod common;

use std::time::{Duration, Instant};

use chainmux_testkit::{Anvil, Eth, Fault, FaultProxy, TestDb, populate_transfers};
use common::{Chainmux, Config, POLL, get, http, quantity, rpc_request};
use serde_json::{Value, json};

/// One attempt on one upstream.
const REQUEST_TIMEOUT_MS: u64 = 500;
/// One whole call, retries, hedges and backoff included.
const DEADLINE_MS: u64 = 3000;
const DEADLINE: Duration = Duration::from_millis(DEADLINE_MS);
const PROBE_INTERVAL_MS: u64 = 100;
const BREAKER_COOLDOWN_MS: u64 = 500;
const MAX_LAG_BLOCKS: u64 = 10;
/// Bound of a read while the primary hangs or answers late: the hedge (or, at worst, the attempt timeout) moves
/// it to the secondary, far below the deadline.
const SLOW_PRIMARY_READ_BOUND: Duration = Duration::from_millis(REQUEST_TIMEOUT_MS + 500);
/// What callers may wait beyond `deadline_ms` for the error when every upstream is down (HTTP and scheduling).
const ERROR_MARGIN: Duration = Duration::from_millis(1000);
/// How long a view condition (state, reason, primary) may take to show up.
const VIEW_WAIT: Duration = Duration::from_secs(10);
/// How long a recovered primary may take to become the primary again: its error rate has to decay first.
const RECOVERY_WAIT: Duration = Duration::from_secs(20);
/// How long the indexer may take to reach a new head while a fault is active.
const INDEX_WAIT: Duration = Duration::from_secs(20);
/// anvil's chain id, 31337, as `eth_chainId` answers it.
const CHAIN_ID: &str = "0x7a69";

fn hex(n: u64) -> String {
    format!("0x{n:x}")
}

/// Answers of anvil itself at the head the scenario started with; reads at fixed heights must match them exactly.
struct Expected {
    head: u64,
    /// `eth_getBlockByNumber(n, false)` for `0..=head`.
    blocks: Vec<Value>,
    accounts: Vec<String>,
    /// `eth_getBalance(account, head)` per account.
    balances: Vec<Value>,
    /// `eth_getLogs` over `0..=head`.
    logs: Vec<Value>,
}

impl Expected {
    async fn read(eth: &Eth) -> Expected {
        let head = eth.block_number().await;
        let mut blocks = Vec::new();
        for number in 0..=head {
            blocks.push(eth.block(number, false).await);
        }
        let accounts: Vec<String> =
            eth.accounts().await.iter().take(4).map(|a| a.to_string().to_ascii_lowercase()).collect();
        let mut balances = Vec::new();
        for account in &accounts {
            balances.push(eth.request("eth_getBalance", json!([account, hex(head)])).await);
        }
        let logs = eth.logs(0, head).await;
        assert!(logs.len() > 10, "the chain has logs: {}", logs.len());
        Expected { head, blocks, accounts, balances, logs }
    }

    fn logs_from(&self, from: u64) -> Value {
        Value::Array(self.logs.iter().filter(|log| quantity(&log["blockNumber"]) >= from).cloned().collect())
    }
}

/// Latencies of the reads of one scenario.
#[derive(Debug, Default)]
struct Reads {
    count: usize,
    slowest: Duration,
    slowest_call: String,
}

impl Reads {
    fn record(&mut self, elapsed: Duration, call: impl FnOnce() -> String) {
        self.count += 1;
        if elapsed > self.slowest {
            self.slowest = elapsed;
            self.slowest_call = call();
        }
    }
}

/// One scenario's world. Fields drop in order: chainmux is killed before its upstreams and database go away.
struct Scenario {
    chainmux: Chainmux,
    primary: FaultProxy,
    /// Set when the secondary is a proxy too.
    secondary: Option<FaultProxy>,
    eth: Eth,
    expected: Expected,
    client: reqwest::Client,
    next_id: u64,
    _db: TestDb,
    _anvil: Anvil,
}

impl Scenario {
    /// anvil with transfers and a few empty blocks (head ≥ 40, so a 20-block lag is real), the primary proxy with
    /// `primary_fault` from the start, chainmux with short timeouts, indexed up to anvil's head.
    async fn start(
        primary_fault: Fault,
        proxied_secondary: bool,
        tweak: impl FnOnce(&mut Config),
    ) -> Scenario {
        let anvil = Anvil::spawn().await;
        let eth = Eth::new(&anvil.url);
        populate_transfers(&eth, 2).await;
        eth.mine(30).await;
        let expected = Expected::read(&eth).await;
        assert!(expected.head >= 40, "head {}", expected.head);

        let primary = FaultProxy::start(&anvil.url).await;
        primary.set(primary_fault).await;
        let secondary = if proxied_secondary { Some(FaultProxy::start(&anvil.url).await) } else { None };
        let secondary_url = secondary.as_ref().map_or(anvil.url.clone(), |proxy| proxy.url.clone());

        let db = TestDb::create().await;
        let mut config = Config::new(&db.url, &[("primary", &primary.url), ("secondary", &secondary_url)]);
        config.request_timeout_ms = REQUEST_TIMEOUT_MS;
        config.probe_interval_ms = PROBE_INTERVAL_MS;
        config
            .rpc_key("deadline_ms", DEADLINE_MS)
            .rpc_key("breaker_cooldown_ms", BREAKER_COOLDOWN_MS)
            .rpc_key("max_lag_blocks", MAX_LAG_BLOCKS)
            .rpc_key("backoff_min_ms", 10)
            .rpc_key("backoff_max_ms", 100);
        // These tests are about where reads go: answers from the response cache would never reach an upstream.
        config.gateway_key("rpc_cache_max_entries", 0);
        tweak(&mut config);
        let mut chainmux = Chainmux::start(&config).await;
        chainmux.wait_indexed_within(expected.head, INDEX_WAIT).await;
        Scenario {
            chainmux,
            primary,
            secondary,
            eth,
            expected,
            client: http(),
            next_id: 1,
            _db: db,
            _anvil: anvil,
        }
    }

    fn secondary(&self) -> &FaultProxy {
        self.secondary.as_ref().unwrap_or_else(|| panic!("this scenario's secondary is not a proxy"))
    }

    /// `POST /rpc/local` with one request; the HTTP answer must be 200 with a JSON-RPC response carrying our id.
    /// Returns the response and how long it took.
    async fn call(&mut self, method: &str, params: Value) -> (Value, Duration) {
        let id = self.next_id;
        self.next_id += 1;
        let body = rpc_request(id, method, params);
        let url = self.chainmux.url("/rpc/local");
        let started = Instant::now();
        let response = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {url} {body}: {err}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|err| panic!("POST {url} {body}: {err}"));
        let elapsed = started.elapsed();
        assert_eq!(status, 200, "POST {url} {body}: HTTP {status}: {text}");
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("POST {url} {body}: not JSON ({err}): {text}"));
        assert_eq!(answer["id"], json!(id), "{body} answered with another id: {answer}");
        (answer, elapsed)
    }

    /// An idempotent read that must succeed within the deadline; returns its result.
    async fn read(&mut self, method: &str, params: Value, reads: &mut Reads) -> Value {
        let (mut answer, elapsed) = self.call(method, params.clone()).await;
        assert!(
            answer.get("error").is_none() && answer.get("result").is_some(),
            "read {method}({params}) failed after {elapsed:?}: {answer}"
        );
        assert!(
            elapsed < DEADLINE,
            "read {method}({params}) took {elapsed:?}, more than the {DEADLINE:?} deadline"
        );
        reads.record(elapsed, || format!("{method}({params})"));
        answer["result"].take()
    }

    /// Rounds of idempotent reads, each compared with anvil's answer: the head (between anvil's head before and
    /// after the call), the chain id, a block, a balance and a range of logs at fixed heights.
    async fn read_rounds(&mut self, rounds: std::ops::Range<u64>, reads: &mut Reads) {
        let head = self.expected.head;
        for round in rounds {
            let before = self.eth.block_number().await;
            let number = quantity(&self.read("eth_blockNumber", json!([]), reads).await);
            let after = self.eth.block_number().await;
            assert!(
                before <= number && number <= after,
                "eth_blockNumber {number}, anvil's head {before}..{after}"
            );

            assert_eq!(self.read("eth_chainId", json!([]), reads).await, CHAIN_ID);

            let n = (round * 7) % (head + 1);
            let block = self.read("eth_getBlockByNumber", json!([hex(n), false]), reads).await;
            assert_eq!(block, self.expected.blocks[n as usize], "block {n} differs from anvil's");

            let index = round as usize % self.expected.accounts.len();
            let account = self.expected.accounts[index].clone();
            let balance = self.read("eth_getBalance", json!([account, hex(head)]), reads).await;
            assert_eq!(balance, self.expected.balances[index], "balance of {account} at {head}");

            let from = (round * 3) % (head + 1);
            let filter = json!({"fromBlock": hex(from), "toBlock": hex(head)});
            let logs = self.read("eth_getLogs", json!([filter]), reads).await;
            assert_eq!(logs, self.expected.logs_from(from), "logs {from}..={head} differ from anvil's");
        }
    }

    /// Mines `blocks` new blocks on anvil and waits until chainmux has indexed the new head, with anvil's hash.
    async fn mine_and_index(&mut self, blocks: u64) -> u64 {
        self.eth.mine(blocks).await;
        let head = self.eth.block_number().await;
        let view = self.chainmux.wait_indexed_within(head, INDEX_WAIT).await;
        let hash = &self.eth.block(head, false).await["hash"];
        assert_eq!(&view["indexed_head"]["hash"], hash, "indexed head {head}: {view}");
        head
    }

    /// Waits until `primary` is the healthy primary: the state every temporary fault starts from.
    async fn wait_primary_first(&self) {
        self.wait_view("the primary upstream to be the healthy primary", VIEW_WAIT, |view| {
            healthy_primary(view, "primary").then_some(())
        })
        .await;
    }

    /// Keeps reading, round after round from `*round` on, until `/v1/chains` satisfies `check` (looked at after
    /// every round); panics after `timeout`.
    async fn read_until<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        reads: &mut Reads,
        round: &mut u64,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            self.read_rounds(*round..*round + 1, reads).await;
            *round += 1;
            let view = self.chainmux.chain_view().await;
            if let Some(value) = check(&view) {
                return value;
            }
            assert!(
                started.elapsed() < timeout,
                "timed out after {timeout:?} of reads waiting for {what}; last view: {view}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `/v1/chains` until `check` accepts this chain's entry; panics with the last entry after `timeout`.
    async fn wait_view<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let started = Instant::now();
        loop {
            let view = self.chainmux.chain_view().await;
            if let Some(value) = check(&view) {
                return value;
            }
            assert!(
                started.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}; last view: {view}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Sum of the samples of `name` whose labels include all of `labels` (0 when there is none).
    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let url = self.chainmux.url("/metrics");
        let (status, text) = get(&url).await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
        assert_eq!(status, 200, "GET {url}: {text}");
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                let matches =
                    metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
                matches.then(|| value.parse::<f64>().ok()).flatten()
            })
            .sum()
    }

    /// `chainmux_upstream_requests_total` of the primary with this outcome.
    async fn primary_outcomes(&self, outcome: &str) -> f64 {
        self.metric(
            "chainmux_upstream_requests_total",
            &[("chain", "local"), ("upstream", "primary"), ("outcome", outcome)],
        )
        .await
    }
}

/// The entry of upstream `name` in a chain's view.
fn upstream<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["upstreams"]
        .as_array()
        .and_then(|all| all.iter().find(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("no upstream {name} in {view}"))
}

/// The reason of an upstream that is `down` or `excluded`; `None` while it is healthy (or has no reason).
fn unhealthy_reason(view: &Value, name: &str) -> Option<String> {
    let entry = upstream(view, name);
    matches!(entry["state"].as_str(), Some("down" | "excluded"))
        .then(|| entry["reason"].as_str().filter(|r| !r.is_empty()).map(str::to_owned))
        .flatten()
}

/// Whether `name` is healthy and the primary.
fn healthy_primary(view: &Value, name: &str) -> bool {
    let entry = upstream(view, name);
    entry["state"] == "healthy" && entry["primary"] == true
}

/// Reasons are shown to anyone who can read `/v1/chains`: they name upstreams, never their URLs.
fn assert_no_url(reason: &str, proxy: &FaultProxy) {
    assert!(
        !reason.contains("127.0.0.1") && !reason.contains(&proxy.port.to_string()),
        "reason leaks the upstream URL: {reason:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------------

/// Whether the primary's circuit is open or half-open, i.e. it opened.
fn circuit_not_closed(view: &Value) -> bool {
    upstream(view, "primary")["breaker"] != "closed"
}

/// `chainmux_upstream_breaker_transitions_total` of the primary to `to` (`open`, `closed`).
async fn primary_transitions(s: &Scenario, to: &str) -> f64 {
    s.metric(
        "chainmux_upstream_breaker_transitions_total",
        &[("chain", "local"), ("upstream", "primary"), ("to", to)],
    )
    .await
}

/// Scenario 1: the primary refuses connections: reads and indexing fail over to the secondary at once, before and
/// after the primary's circuit opens; the primary shows as down or excluded with a reason, the secondary as the
/// healthy primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_primary_fails_over() {
    let mut s = Scenario::start(Fault::None, false, |_| {}).await;
    s.wait_primary_first().await;
    s.primary.set(Fault::Refuse).await;
    let mut reads = Reads::default();
    s.read_rounds(0..4, &mut reads).await;
    s.mine_and_index(5).await;
    let mut round = 4;
    s.read_until("the primary's circuit to open", VIEW_WAIT, &mut reads, &mut round, |view| {
        circuit_not_closed(view).then_some(())
    })
    .await;
    s.mine_and_index(5).await;
    s.read_rounds(round..round + 4, &mut reads).await;

    let reason = s
        .wait_view("primary down with a reason, secondary the healthy primary", VIEW_WAIT, |view| {
            let reason = unhealthy_reason(view, "primary")?;
            healthy_primary(view, "secondary").then_some(reason)
        })
        .await;
    assert!(reason.contains("connection failed") || reason.contains("circuit open"), "reason {reason:?}");
    assert_no_url(&reason, &s.primary);
    assert!(s.primary_outcomes("connect_error").await > 0.0, "no connection error recorded for the primary");
    assert!(primary_transitions(&s, "open").await >= 1.0, "the metrics miss the primary's circuit opening");
    eprintln!(
        "refusing primary: {} reads, slowest {:?} ({}); reason {reason:?}",
        reads.count, reads.slowest, reads.slowest_call
    );
}

/// Scenarios 2 and 3: a primary that accepts requests and does not answer (in time): reads still succeed, each within
/// the hedge delay or at worst the attempt timeout, far below the deadline, before and after the primary's circuit
/// opens (half-open trials included); reads were hedged to the secondary, the primary's attempts timed out, and it
/// shows as down or excluded with a reason.
async fn slow_primary(fault: Fault, tweak: impl FnOnce(&mut Config)) {
    let mut s = Scenario::start(Fault::None, false, tweak).await;
    let hedges = [("chain", "local"), ("upstream", "secondary")];
    let hedges_before = s.metric("chainmux_upstream_hedges_total", &hedges).await;
    s.wait_primary_first().await;
    s.primary.reset_counts();
    s.primary.set(fault.clone()).await;
    let mut reads = Reads::default();
    s.read_rounds(0..6, &mut reads).await;
    s.mine_and_index(5).await;
    let mut round = 6;
    s.read_until("the primary's circuit to open", VIEW_WAIT, &mut reads, &mut round, |view| {
        circuit_not_closed(view).then_some(())
    })
    .await;
    s.mine_and_index(5).await;
    s.read_rounds(round..round + 4, &mut reads).await;

    assert!(
        reads.slowest < SLOW_PRIMARY_READ_BOUND,
        "{fault:?}: slowest read {} took {:?} (bound {SLOW_PRIMARY_READ_BOUND:?})",
        reads.slowest_call,
        reads.slowest
    );
    assert!(
        s.primary.requests() > 0,
        "{fault:?}: the primary was never asked, so the fault was not exercised"
    );
    let hedged = s.metric("chainmux_upstream_hedges_total", &hedges).await - hedges_before;
    assert!(hedged >= 1.0, "{fault:?}: no read was hedged to the secondary");
    assert!(
        s.primary_outcomes("timeout").await > 0.0,
        "{fault:?}: no timed-out attempt recorded for the primary"
    );
    let reason = s
        .wait_view("primary down with a reason, secondary the healthy primary", VIEW_WAIT, |view| {
            let reason = unhealthy_reason(view, "primary")?;
            healthy_primary(view, "secondary").then_some(reason)
        })
        .await;
    assert!(reason.contains("timed out") || reason.contains("circuit open"), "{fault:?}: reason {reason:?}");
    assert_no_url(&reason, &s.primary);
    eprintln!(
        "{fault:?}: {} reads, slowest {:?} ({}), {hedged} hedges; reason {reason:?}",
        reads.count, reads.slowest, reads.slowest_call
    );
}

/// Scenario 2: the primary hangs; hedge delays come from its latency quantile (the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_primary_is_hedged_and_timed_out() {
    slow_primary(Fault::Hang, |_| {}).await;
}

/// Scenario 3: the primary answers only after 5 s; its hedge delay is fixed by a per-upstream override.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_answering_after_5s_is_hedged_and_timed_out() {
    slow_primary(Fault::Delay(Duration::from_secs(5)), |config| {
        config.upstream_rpc.push(("primary".into(), "hedge_delay_ms".into(), "100".into()));
    })
    .await;
}

/// A temporary fault of the primary and what it must look like from outside.
struct Temporary {
    fault: Fault,
    /// `outcome` label of the primary's failed requests.
    outcome: &'static str,
    /// Text the primary's reason shows at some point during the fault.
    reason: &'static str,
    /// Whether the fault opens the primary's circuit (429s are throttling, not failures).
    opens_circuit: bool,
}

/// Scenario 4: for each fault in turn: while the primary fails with it, reads and indexing run on the secondary; the
/// primary's failures are recorded under the fault's outcome label, it shows as down or excluded with a matching
/// reason and is not the primary, and its circuit opens (429: it is rate limited instead). Once it recovers, its
/// circuit closes, it becomes healthy and the primary again within seconds, and new `/rpc` reads reach it.
async fn primary_recovers(faults: &[Temporary]) {
    let mut s = Scenario::start(Fault::None, false, |_| {}).await;
    let mut reads = Reads::default();
    let mut round = 0;
    for temporary in faults {
        let Temporary { fault, outcome, reason: fragment, opens_circuit } = temporary;
        let outcomes_before = s.primary_outcomes(outcome).await;
        let (opened_before, closed_before) =
            (primary_transitions(&s, "open").await, primary_transitions(&s, "closed").await);
        s.wait_primary_first().await;
        s.primary.reset_counts();
        s.primary.set(fault.clone()).await;
        s.read_rounds(round..round + 4, &mut reads).await;
        round += 4;
        s.mine_and_index(3).await;
        let (mut reason, mut opened) = (None, !opens_circuit);
        s.read_until(
            "a matching reason (and an opened circuit)",
            VIEW_WAIT,
            &mut reads,
            &mut round,
            |view| {
                assert!(
                    !upstream(view, "primary")["primary"].as_bool().unwrap_or(true),
                    "{fault:?}: still the primary: {view}"
                );
                if let Some(r) = unhealthy_reason(view, "primary").filter(|r| r.contains(fragment)) {
                    reason = Some(r);
                }
                opened |= circuit_not_closed(view);
                (reason.is_some() && opened).then_some(())
            },
        )
        .await;
        let reason = reason.unwrap_or_default();
        assert_no_url(&reason, &s.primary);
        assert!(s.primary.requests() > 0, "{fault:?}: the primary was never asked");
        let failures = s.primary_outcomes(outcome).await - outcomes_before;
        assert!(failures >= 1.0, "{fault:?}: no primary request with outcome {outcome}");
        if *opens_circuit {
            assert!(
                primary_transitions(&s, "open").await > opened_before,
                "{fault:?}: the metrics miss the circuit opening"
            );
        }

        s.primary.set(Fault::None).await;
        let recovering = Instant::now();
        s.read_until(
            "the recovered primary healthy and primary again",
            RECOVERY_WAIT,
            &mut reads,
            &mut round,
            |view| {
                (healthy_primary(view, "primary") && upstream(view, "secondary")["primary"] == false)
                    .then_some(())
            },
        )
        .await;
        let recovered_in = recovering.elapsed();
        if *opens_circuit {
            assert!(
                primary_transitions(&s, "closed").await > closed_before,
                "{fault:?}: the metrics miss the circuit closing"
            );
        }
        s.primary.reset_counts();
        s.read_rounds(round..round + 10, &mut reads).await;
        round += 10;
        let balances = s.primary.received("eth_getBalance");
        assert!(
            balances >= 8,
            "{fault:?}: after recovery only {balances} of 10 eth_getBalance reads reached the primary"
        );
        s.mine_and_index(3).await;
        eprintln!(
            "{fault:?}: outcome {outcome} x{failures}, reason {reason:?}, primary again after {recovered_in:?}"
        );
    }
    eprintln!("{} reads, slowest {:?} ({})", reads.count, reads.slowest, reads.slowest_call);
}

/// Scenario 4 with HTTP 500, then HTTP 429 with `Retry-After: 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_recovers_from_http_500_and_429() {
    primary_recovers(&[
        Temporary {
            fault: Fault::Status { code: 500, retry_after: None },
            outcome: "http_error",
            reason: "HTTP 500",
            opens_circuit: true,
        },
        Temporary {
            fault: Fault::Status { code: 429, retry_after: Some(1) },
            outcome: "rate_limited",
            reason: "rate limited for",
            opens_circuit: false,
        },
    ])
    .await;
}

/// Scenario 4 with an HTML body under HTTP 200, then JSON-RPC `-32603 internal error` answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_recovers_from_garbage_and_internal_errors() {
    primary_recovers(&[
        Temporary {
            fault: Fault::Garbage,
            outcome: "invalid_response",
            reason: "invalid response",
            opens_circuit: true,
        },
        Temporary {
            fault: Fault::RpcError { code: -32603, message: "internal error".into() },
            outcome: "rpc_server_error",
            reason: "JSON-RPC error -32603",
            opens_circuit: true,
        },
    ])
    .await;
}

/// Scenario 5: the primary lags 20 blocks behind (more than `max_lag_blocks`): it is excluded as `lagging N blocks`
/// (N ≥ 20) and gets nothing but head probes; `eth_blockNumber` through `/rpc` is always anvil's real head and never
/// goes backwards while blocks arrive, the block at that head is never null, and indexing keeps up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_primary_is_excluded_and_never_answers_the_head() {
    let mut s = Scenario::start(Fault::Lag(20), false, |_| {}).await;
    let lagging = |view: &Value| {
        let reason = unhealthy_reason(view, "primary")?;
        let blocks: u64 = reason.strip_prefix("lagging ")?.strip_suffix(" blocks")?.parse().ok()?;
        (upstream(view, "primary")["state"] == "excluded"
            && blocks >= 20
            && healthy_primary(view, "secondary"))
        .then_some(blocks)
    };
    let lag = s.wait_view("primary excluded as lagging ≥ 20 blocks", VIEW_WAIT, lagging).await;
    s.primary.reset_counts();

    let mut reads = Reads::default();
    let mut last = 0;
    for call in 0..50 {
        if call % 5 == 4 {
            s.eth.mine(1).await;
        }
        let before = s.eth.block_number().await;
        let number = quantity(&s.read("eth_blockNumber", json!([]), &mut reads).await);
        let after = s.eth.block_number().await;
        assert!(
            before <= number && number <= after,
            "call {call}: eth_blockNumber answered {number}, anvil's head was {before}..{after}"
        );
        assert!(number >= last, "call {call}: the head went backwards from {last} to {number}");
        last = number;
        let block = s.read("eth_getBlockByNumber", json!([hex(number), false]), &mut reads).await;
        assert!(!block.is_null(), "call {call}: block {number} (the head) is null");
        assert_eq!(block["hash"], s.eth.block(number, false).await["hash"], "call {call}: block {number}");
    }
    s.read_rounds(0..6, &mut reads).await;
    let head = s.mine_and_index(5).await;
    assert!(head >= s.expected.head + 15);
    s.wait_view("primary still excluded as lagging ≥ 20 blocks", VIEW_WAIT, lagging).await;
    assert_eq!(
        s.primary.requests(),
        s.primary.received("eth_blockNumber"),
        "the excluded primary got more than head probes (eth_chainId {}, eth_getBlockByNumber {}, eth_getBalance {})",
        s.primary.received("eth_chainId"),
        s.primary.received("eth_getBlockByNumber"),
        s.primary.received("eth_getBalance"),
    );
    assert!(s.primary.received("eth_blockNumber") > 0, "the excluded primary is no longer probed");
    let lag_gauge =
        s.metric("chainmux_upstream_head_lag", &[("chain", "local"), ("upstream", "primary")]).await;
    assert!(lag_gauge >= 20.0, "chainmux_upstream_head_lag of the primary is {lag_gauge}");
    eprintln!(
        "lagging primary: lag {lag}, {} reads, slowest {:?} ({})",
        reads.count, reads.slowest, reads.slowest_call
    );
}

/// Scenario 6: the primary serves another chain (id 5) from the start: it is excluded with a reason naming both ids,
/// re-checked by the probes, and never asked anything but `eth_chainId`; reads and indexing use the secondary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_chain_primary_is_excluded_and_never_used() {
    let mut s = Scenario::start(Fault::ChainId(5), false, |_| {}).await;
    let reason = s
        .wait_view("primary excluded for its chain id", VIEW_WAIT, |view| {
            let reason = unhealthy_reason(view, "primary")?;
            (upstream(view, "primary")["state"] == "excluded" && healthy_primary(view, "secondary"))
                .then_some(reason)
        })
        .await;
    assert!(
        reason.contains("chain id") && reason.contains("31337") && reason.replace("31337", "").contains('5'),
        "reason should name both chain ids: {reason:?}"
    );
    let checks = s.primary.received("eth_chainId");
    let mut reads = Reads::default();
    s.read_rounds(0..10, &mut reads).await;
    s.mine_and_index(5).await;
    s.read_rounds(10..12, &mut reads).await;
    assert_eq!(
        s.primary.requests(),
        s.primary.received("eth_chainId"),
        "the wrong-chain primary was used for more than identity checks (eth_blockNumber {}, eth_getBalance {})",
        s.primary.received("eth_blockNumber"),
        s.primary.received("eth_getBalance"),
    );
    assert!(s.primary.received("eth_chainId") > checks, "the excluded primary is not re-checked");
    let view = s.chainmux.chain_view().await;
    assert_eq!(upstream(&view, "primary")["state"], "excluded", "{view}");
    eprintln!("wrong chain: reason {reason:?}, {} reads, slowest {:?}", reads.count, reads.slowest);
}

/// Scenario 7: every upstream hangs, later every upstream refuses connections. Each time, `/rpc` callers get a
/// JSON-RPC error (-32603 with a message) within the deadline, both upstreams show as down or excluded with reasons,
/// and blocks mined meanwhile are not indexed; when one upstream comes back (the secondary after the hang, the
/// primary after the refusals), `/rpc` works again within seconds and the indexer catches up with the blocks mined
/// during the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_upstreams_down_fail_fast_then_recover() {
    let mut s = Scenario::start(Fault::None, true, |_| {}).await;
    outage(&mut s, Fault::Hang, "secondary").await;
    outage(&mut s, Fault::Refuse, "primary").await;
}

/// Puts both upstreams under `fault`, checks the errors callers get and the view, then restores `restore` and
/// checks that reads and indexing work again.
async fn outage(s: &mut Scenario, fault: Fault, restore: &str) {
    s.primary.set(fault.clone()).await;
    s.secondary().set(fault.clone()).await;
    let indexed = s.chainmux.chain_view().await["indexed_head"]["number"].clone();
    s.eth.mine(5).await;
    let head = s.eth.block_number().await;

    let account = s.expected.accounts[0].clone();
    let calls = [
        ("eth_blockNumber", json!([])),
        ("eth_getBalance", json!([account, "latest"])),
        ("eth_getBlockByNumber", json!([hex(head), false])),
        ("eth_chainId", json!([])),
        ("eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": hex(head)}])),
        ("eth_blockNumber", json!([])),
    ];
    let mut slowest = Duration::ZERO;
    for (method, params) in calls {
        let (answer, elapsed) = s.call(method, params.clone()).await;
        assert!(
            answer.get("result").is_none(),
            "{fault:?}: {method}: a result with every upstream down: {answer}"
        );
        assert_eq!(answer["error"]["code"], json!(-32603), "{fault:?}: {method}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{fault:?}: {method}: error without a message: {answer}");
        assert!(
            elapsed < DEADLINE + ERROR_MARGIN,
            "{fault:?}: {method}: the error took {elapsed:?} (deadline {DEADLINE:?}): {answer}"
        );
        slowest = slowest.max(elapsed);
    }
    let reasons = s
        .wait_view("both upstreams down or excluded with reasons", VIEW_WAIT, |view| {
            Some((unhealthy_reason(view, "primary")?, unhealthy_reason(view, "secondary")?))
        })
        .await;
    assert_no_url(&reasons.0, &s.primary);
    assert_no_url(&reasons.1, s.secondary());
    let view = s.chainmux.chain_view().await;
    assert_eq!(view["indexed_head"]["number"], indexed, "{fault:?}: indexed without an upstream: {view}");

    let restored = if restore == "primary" { &s.primary } else { s.secondary() };
    restored.set(Fault::None).await;
    let restored_at = Instant::now();
    loop {
        let (answer, _) = s.call("eth_blockNumber", json!([])).await;
        if answer["result"] == hex(head) {
            break;
        }
        assert!(
            restored_at.elapsed() < Duration::from_secs(10),
            "{fault:?}: /rpc does not work 10 s after the {restore} came back: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back_after = restored_at.elapsed();
    let mut reads = Reads::default();
    s.read_rounds(0..8, &mut reads).await;
    let view = s.chainmux.wait_indexed_within(head, Duration::from_secs(30)).await;
    assert_eq!(view["indexed_head"]["hash"], s.eth.block(head, false).await["hash"], "{view}");
    s.mine_and_index(3).await;
    let other = if restore == "primary" { "secondary" } else { "primary" };
    let view = s
        .wait_view("the restored upstream healthy and primary", VIEW_WAIT, |view| {
            healthy_primary(view, restore).then(|| view.clone())
        })
        .await;
    assert!(unhealthy_reason(&view, other).is_some(), "{fault:?}: the {other} looks fine: {view}");
    eprintln!(
        "{fault:?}, all down: errors within {slowest:?}, reasons {reasons:?}; /rpc back {back_after:?} after the \
         {restore} came back; {} reads, slowest {:?}",
        reads.count, reads.slowest
    );
}
