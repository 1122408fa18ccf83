//! The gateway's JSON-RPC path (`POST /rpc/{chain}` → upstream pool → anvil) against anvil directly, and
//! failover under load.
//!
//! `cargo bench -p chainmux --bench rpc_proxy -- [--rate N] [--seconds N] [--concurrency N]
//!  [--failover-rate N] [--phase-seconds N]`
//!
//! 1. Latency of `eth_blockNumber` at a fixed rate (open loop, default 500 req/s for 10 s), direct and through the
//!    gateway: p50/p90/p99/max, measured from each request's scheduled send time, so a stall delays the
//!    requests behind it in the figures too (no coordinated omission).
//! 2. Maximum throughput (closed loop, default 32 concurrent clients for 10 s), direct and through the gateway.
//! 3. Failover: one anvil behind two upstreams, primary = `FaultProxy` → anvil, secondary = anvil, short timeouts
//!    (see [`PoolProfile::Failover`]); at a steady rate (default 200 req/s), phases of `--phase-seconds` (default
//!    5, or `--seconds` when smaller): healthy, primary refused, primary hung, primary restored. Per phase:
//!    requests, errors (HTTP or JSON-RPC), error rate, latency, and how the pool sees the primary at the end.
//!
//! The rpc crate's configuration is built in one place, [`build_pool`].
//!
//! Everything runs in this process and on 127.0.0.1 except anvil and PostgreSQL (the gateway needs a store);
//! every run is bounded in requests and time. Needs anvil and Postgres (see `scripts/ensure-tools.sh`).

mod support;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chainmux_core::{ChainKind, ChainSpec, U256};
use chainmux_evm::EvmNetwork;
use chainmux_gateway::{AppState, ChainHandle, GatewayConfig};
use chainmux_rpc::{BreakerConfig, Pool, PoolConfig, UpstreamConfig, UpstreamPolicy, UpstreamStatus};
use chainmux_store::Store;
use chainmux_testkit::{Anvil, Fault, FaultProxy, TestDb};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const CHAIN: &str = "bench";
const CHAIN_ID: u64 = 31337;
const BODY: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#;
/// Client-side limit for one request: a run never waits longer than this for its last answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most requests in flight in an open-loop run (sockets stay bounded when the target falls behind; requests
/// waiting for a slot still count their wait, as latency is measured from the scheduled send time).
const MAX_IN_FLIGHT: usize = 1024;
/// Sequential requests to each target before measuring (connections, caches).
const WARM_UP: usize = 300;
const GOAL_P50_OVERHEAD_MS: f64 = 0.2;
const GOAL_THROUGHPUT_RATIO: f64 = 0.8;

struct Args {
    rate: u64,
    seconds: u64,
    concurrency: usize,
    failover_rate: u64,
    phase_seconds: u64,
}

fn parse_args() -> Args {
    let flags = support::Flags::from_env();
    let seconds = flags.positive("--seconds", 10);
    Args {
        rate: flags.positive("--rate", 500),
        seconds,
        concurrency: flags.positive("--concurrency", 32) as usize,
        failover_rate: flags.positive("--failover-rate", 200),
        phase_seconds: flags.positive("--phase-seconds", seconds.min(5)),
    }
}

/// How the bench's pools are tuned.
#[derive(Clone, Copy)]
enum PoolProfile {
    /// The defaults, as `chainmux run` without `rpc` settings.
    Default,
    /// Short timeouts for the failover phases: 500 ms per attempt, 2 s per call; probes every 250 ms and a 2 s
    /// circuit-breaker cool-down, so that a restored upstream is back within seconds.
    Failover,
}

/// Builds the upstream pool of the bench chain. The only place this bench constructs the rpc crate's
/// `UpstreamConfig`, `UpstreamPolicy` and `PoolConfig`: adapt it here when their fields change.
fn build_pool(spec: &ChainSpec, upstreams: &[(&str, &str)], profile: PoolProfile) -> Pool {
    let (policy, config) = match profile {
        PoolProfile::Default => (UpstreamPolicy::default(), PoolConfig::default()),
        PoolProfile::Failover => {
            let defaults = UpstreamPolicy::default();
            let policy = UpstreamPolicy {
                request_timeout: Duration::from_millis(500),
                breaker: BreakerConfig { cooldown: Duration::from_secs(2), ..defaults.breaker.clone() },
                ..defaults
            };
            let config = PoolConfig {
                deadline: Duration::from_secs(2),
                probe_interval: Duration::from_millis(250),
                ..PoolConfig::default()
            };
            (policy, config)
        }
    };
    let upstreams = upstreams
        .iter()
        .map(|(name, url)| UpstreamConfig {
            name: (*name).to_owned(),
            url: url.parse().expect("upstream URL"),
            policy: policy.clone(),
        })
        .collect();
    EvmNetwork::pool(spec, upstreams, config)
}

/// The gateway served in-process on 127.0.0.1, with its pool's monitor running as under `chainmux run`.
struct Gateway {
    /// `http://127.0.0.1:<port>/rpc/bench`.
    rpc_url: String,
    pool: Arc<Pool>,
    stop: CancellationToken,
}

impl Gateway {
    async fn start(store: Store, spec: &ChainSpec, pool: Pool) -> Gateway {
        let pool = Arc::new(pool);
        pool.verify_all().await;
        let stop = CancellationToken::new();
        pool.spawn_monitor(stop.clone());
        let state = AppState::new(
            store,
            vec![ChainHandle { spec: spec.clone(), pool: Arc::clone(&pool) }],
            GatewayConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind gateway");
        let addr = listener.local_addr().expect("gateway address");
        let server = axum::serve(listener, chainmux_gateway::router(state))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        tokio::spawn(server.into_future());
        Gateway { rpc_url: format!("http://{addr}/rpc/{CHAIN}"), pool, stop }
    }

    /// The named upstream as the pool sees it.
    fn upstream(&self, name: &str) -> Option<UpstreamStatus> {
        self.pool.statuses().into_iter().find(|s| s.name == name)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Clone, Copy)]
struct Sample {
    /// From the scheduled send time to the answer.
    latency: Duration,
    /// From the scheduled send time to the actual send: the load generator's own delay (timer resolution,
    /// scheduling), included in `latency`.
    lag: Duration,
    ok: bool,
}

/// One `eth_blockNumber`; ok when HTTP 200 with a JSON-RPC `result` and no `error`.
async fn send(client: &reqwest::Client, url: &str) -> bool {
    send_body(client, url, BODY.into()).await
}

/// One request with `body`; ok when HTTP 200 with a JSON-RPC `result` and no `error`.
async fn send_body(client: &reqwest::Client, url: &str, body: Arc<str>) -> bool {
    let body = body.to_string();
    let Ok(response) = client.post(url).header("content-type", "application/json").body(body).send().await
    else {
        return false;
    };
    if response.status() != 200 {
        return false;
    }
    let Ok(bytes) = response.bytes().await else { return false };
    serde_json::from_slice::<Value>(&bytes)
        .is_ok_and(|answer| answer.get("error").is_none() && answer.get("result").is_some())
}

/// Open loop: `rate` requests per second for `seconds`, each sent at its scheduled time whatever the state of
/// the others (up to [`MAX_IN_FLIGHT`]), latency measured from the scheduled time.
///
/// The schedule is kept by a plain thread sleeping until each send time (tokio's timer has a 1 ms resolution,
/// which would add up to 1 ms of generator delay to every figure); it hands each request to the runtime as a
/// task. A late thread sends at once with the original schedule, so delays show in the latencies.
async fn paced(client: &reqwest::Client, url: &str, rate: u64, seconds: u64) -> Vec<Sample> {
    let total = rate * seconds;
    let period_nanos = 1_000_000_000 / rate.max(1);
    let runtime = tokio::runtime::Handle::current();
    let (tasks, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (client, url) = (client.clone(), url.to_owned());
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let pacer = std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(1);
        for i in 0..total {
            let scheduled = start + Duration::from_nanos(period_nanos * i);
            if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (client, url, slots) = (client.clone(), url.clone(), Arc::clone(&slots));
            let task = runtime.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let lag = scheduled.elapsed();
                let ok = send(&client, &url).await;
                Sample { latency: scheduled.elapsed(), lag, ok }
            });
            if tasks.send(task).is_err() {
                break;
            }
        }
    });
    let mut samples = Vec::with_capacity(total as usize);
    while let Some(task) = started.recv().await {
        samples.push(task.await.expect("request task"));
    }
    pacer.join().expect("pacer thread");
    samples
}

/// Closed loop: `concurrency` clients, each sending its next request when the previous one is answered, for
/// `seconds`. Returns (answered ok, errors, elapsed).
async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    concurrency: usize,
    seconds: u64,
) -> (u64, u64, f64) {
    closed_loop_with(client, url, BODY.into(), concurrency, seconds).await
}

/// [`closed_loop`] with another request body.
async fn closed_loop_with(
    client: &reqwest::Client,
    url: &str,
    body: Arc<str>,
    concurrency: usize,
    seconds: u64,
) -> (u64, u64, f64) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, body) = (client.clone(), url.to_owned(), Arc::clone(&body));
        workers.spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            while Instant::now() < deadline {
                if send_body(&client, &url, Arc::clone(&body)).await {
                    ok += 1;
                } else {
                    errors += 1;
                }
            }
            (ok, errors)
        });
    }
    let (mut ok, mut errors) = (0, 0);
    while let Some(counts) = workers.join_next().await {
        let (o, e) = counts.expect("worker task");
        ok += o;
        errors += e;
    }
    (ok, errors, started.elapsed().as_secs_f64())
}

async fn warm_up(client: &reqwest::Client, url: &str) {
    for _ in 0..WARM_UP {
        assert!(send(client, url).await, "warm-up request to {url} failed");
    }
}

/// Latency figures of one run, in µs.
struct Summary {
    requests: usize,
    errors: usize,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    /// Median load-generator lag, µs.
    lag_p50: u64,
}

impl Summary {
    fn of(samples: &[Sample]) -> Summary {
        let mut micros: Vec<u64> = samples.iter().map(|s| s.latency.as_micros() as u64).collect();
        micros.sort_unstable();
        let mut lags: Vec<u64> = samples.iter().map(|s| s.lag.as_micros() as u64).collect();
        lags.sort_unstable();
        Summary {
            requests: samples.len(),
            errors: samples.iter().filter(|s| !s.ok).count(),
            p50: percentile(&micros, 50.0),
            p90: percentile(&micros, 90.0),
            p99: percentile(&micros, 99.0),
            max: micros.last().copied().unwrap_or(0),
            lag_p50: percentile(&lags, 50.0),
        }
    }

    fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.errors as f64 * 100.0 / self.requests as f64 }
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("HTTP client")
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "NOT met" }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    chainmux_testkit::install_crypto_provider();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let anvil = Anvil::spawn().await;
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4).await.expect("database");
    store.migrate().await.expect("migrations");
    let spec = ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: CHAIN_ID };
    let client = client();

    let gateway = Gateway::start(
        store.clone(),
        &spec,
        build_pool(&spec, &[("anvil", &anvil.url)], PoolProfile::Default),
    )
    .await;
    let upstream = gateway.upstream("anvil").map(|s| s.state);
    assert_eq!(upstream, Some("healthy"), "the upstream passed its chain-id check");
    warm_up(&client, &anvil.url).await;
    warm_up(&client, &gateway.rpc_url).await;

    // Baseline: a minimal in-process HTTP proxy (axum + reqwest, parses the body to count calls), to tell the
    // cost of one more HTTP hop on this machine from the cost of the gateway's own work.
    let baseline = FaultProxy::start(&anvil.url).await;
    warm_up(&client, &baseline.url).await;
    let targets = [
        ("direct", anvil.url.as_str()),
        ("proxy", baseline.url.as_str()),
        ("gateway", gateway.rpc_url.as_str()),
    ];

    println!(
        "rpc_proxy: eth_blockNumber; anvil, PostgreSQL, gateway and load generator on one machine ({cpus} CPUs)"
    );
    println!("  direct = anvil; proxy = minimal in-process HTTP proxy to anvil (baseline for one more hop);");
    println!("  gateway = POST /rpc/{CHAIN} → pool → anvil");
    println!();
    println!(
        "latency at {} req/s for {} s (open loop, from scheduled send time), µs:",
        args.rate, args.seconds
    );
    println!(
        "  {:<10} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "", "requests", "errors", "p50", "p90", "p99", "max", "gen lag¹"
    );
    let mut latency = Vec::new();
    for (name, url) in targets {
        let summary = Summary::of(&paced(&client, url, args.rate, args.seconds).await);
        println!(
            "  {name:<10} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>10}",
            summary.requests,
            summary.errors,
            summary.p50,
            summary.p90,
            summary.p99,
            summary.max,
            summary.lag_p50
        );
        latency.push(summary);
    }
    let (direct, proxy, via_gateway) = (&latency[0], &latency[1], &latency[2]);
    let added = |a: &Summary, b: &Summary| (a.p50 as i64 - b.p50 as i64, a.p99 as i64 - b.p99 as i64);
    let (added_p50, added_p99) = added(via_gateway, direct);
    let (hop_p50, hop_p99) = added(proxy, direct);
    println!("  added by the gateway (gateway − direct): p50 {added_p50:+} µs, p99 {added_p99:+} µs");
    println!("  added by a minimal proxy (proxy − direct): p50 {hop_p50:+} µs, p99 {hop_p99:+} µs");
    println!("  ¹ median delay of the load generator itself (scheduled → sent), included above");
    println!();

    println!("throughput, {} concurrent clients for {} s (closed loop):", args.concurrency, args.seconds);
    let mut throughput = Vec::new();
    for (name, url) in targets {
        let (ok, errors, elapsed) = closed_loop(&client, url, args.concurrency, args.seconds).await;
        let rate = ok as f64 / elapsed;
        let share =
            throughput.first().map(|direct: &f64| format!("  {:>5.1}% of direct", rate * 100.0 / direct));
        println!(
            "  {name:<10} {rate:>9.0} req/s  ({ok} ok, {errors} errors in {elapsed:.1} s){}",
            share.unwrap_or_default()
        );
        throughput.push(rate);
    }
    let ratio = if throughput[0] > 0.0 { throughput[2] / throughput[0] } else { 0.0 };
    println!("  gateway / direct: {:.1}%", ratio * 100.0);
    println!();

    // The same with a request that makes the node work (an `eth_call` executing 200 log emissions), as real
    // upstream calls do: the share of the machine the extra hop takes shrinks accordingly.
    let eth = chainmux_testkit::Eth::new(&anvil.url);
    let from = eth.accounts().await[0];
    let token = eth.deploy(from, chainmux_testkit::contracts::DEMO_TOKEN).await;
    let call = chainmux_testkit::contracts::erc20_spray(U256::from(200), U256::from(7));
    let heavy: Arc<str> = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "eth_call",
        "params": [{ "to": token, "data": call, "gas": "0x1c9c380" }, "latest"],
    })
    .to_string()
    .into();
    println!(
        "throughput of a node-bound call (eth_call running 200 log emissions), {} clients:",
        args.concurrency
    );
    let mut heavy_rates = Vec::new();
    for (name, url) in targets {
        let (ok, errors, elapsed) =
            closed_loop_with(&client, url, Arc::clone(&heavy), args.concurrency, args.seconds).await;
        let rate = ok as f64 / elapsed;
        let share =
            heavy_rates.first().map(|direct: &f64| format!("  {:>5.1}% of direct", rate * 100.0 / direct));
        println!(
            "  {name:<10} {rate:>9.0} req/s  ({ok} ok, {errors} errors in {elapsed:.1} s){}",
            share.unwrap_or_default()
        );
        heavy_rates.push(rate);
    }
    let heavy_ratio = if heavy_rates[0] > 0.0 { heavy_rates[2] / heavy_rates[0] } else { 0.0 };
    println!("  gateway / direct: {:.1}%", heavy_ratio * 100.0);
    println!();
    drop(baseline);

    let overhead_ms = added_p50 as f64 / 1000.0;
    println!(
        "goal: p50 overhead < {GOAL_P50_OVERHEAD_MS} ms; gateway ≥ {:.0}% of direct throughput",
        GOAL_THROUGHPUT_RATIO * 100.0
    );
    println!("  p50 overhead     {overhead_ms:>7.3} ms  {}", met(overhead_ms < GOAL_P50_OVERHEAD_MS));
    println!(
        "  gateway / direct {:>7.1} %   {}  (eth_blockNumber)",
        ratio * 100.0,
        met(ratio >= GOAL_THROUGHPUT_RATIO)
    );
    println!(
        "  gateway / direct {:>7.1} %   {}  (node-bound eth_call)",
        heavy_ratio * 100.0,
        met(heavy_ratio >= GOAL_THROUGHPUT_RATIO)
    );
    println!();
    drop(gateway);

    failover(&args, &client, &anvil, store, &spec).await;
    drop(db);
}

/// Phase 3: one anvil behind two upstreams, the primary through a `FaultProxy`.
async fn failover(args: &Args, client: &reqwest::Client, anvil: &Anvil, store: Store, spec: &ChainSpec) {
    let proxy = FaultProxy::start(&anvil.url).await;
    let pool = build_pool(spec, &[("primary", &proxy.url), ("secondary", &anvil.url)], PoolProfile::Failover);
    let gateway = Gateway::start(store, spec, pool).await;
    warm_up(client, &gateway.rpc_url).await;

    println!(
        "failover at {} req/s, {} s per phase (primary = FaultProxy → anvil, secondary = the same anvil; \
         500 ms per attempt, 2 s per call, probes every 250 ms):",
        args.failover_rate, args.phase_seconds
    );
    println!(
        "  {:<17} {:>8} {:>6} {:>7} {:>8} {:>8} {:>8} {:>9}  primary at the end",
        "phase", "requests", "errors", "error %", "p50 µs", "p99 µs", "max µs", "primary ←",
    );
    let phases = [
        ("healthy", Fault::None),
        ("primary refused", Fault::Refuse),
        ("primary hung", Fault::Hang),
        ("primary restored", Fault::None),
    ];
    let mut notes = Vec::new();
    for (name, fault) in phases {
        if fault == Fault::Hang {
            // Untimed: after `refused` the pool routes around the primary; bring it back first, so that the hang
            // hits the upstream the pool sends traffic to.
            proxy.set(Fault::None).await;
            let waited = wait_routed_first(client, &gateway, "primary").await;
            notes.push(format!(
                "before `{name}` the primary was restored (untimed) until the pool routed to it first again: {:.1} s",
                waited.as_secs_f64()
            ));
        }
        proxy.set(fault).await;
        proxy.reset_counts();
        let summary =
            Summary::of(&paced(client, &gateway.rpc_url, args.failover_rate, args.phase_seconds).await);
        println!(
            "  {name:<17} {:>8} {:>6} {:>6.2}% {:>8} {:>8} {:>8} {:>9}  {}",
            summary.requests,
            summary.errors,
            summary.error_rate(),
            summary.p50,
            summary.p99,
            summary.max,
            proxy.requests(),
            describe(gateway.upstream("primary")),
        );
    }
    println!(
        "  primary ←: HTTP requests the primary received in the phase (gateway traffic, hedges and probes)"
    );
    for note in notes {
        println!("  {note}");
    }
}

fn describe(status: Option<UpstreamStatus>) -> String {
    let Some(status) = status else { return "?".into() };
    let mut text = format!("{}, breaker {}", status.state, status.breaker);
    if status.primary {
        text.push_str(", routed first");
    }
    if let Some(reason) = status.reason {
        text.push_str(&format!(" ({reason})"));
    }
    text
}

/// Sends light traffic through the gateway (the pool re-ranks on calls) until it routes to `upstream` first with
/// a closed circuit, at most 60 s. Returns the time it took.
async fn wait_routed_first(client: &reqwest::Client, gateway: &Gateway, upstream: &str) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        send(client, &gateway.rpc_url).await;
        if gateway
            .upstream(upstream)
            .is_some_and(|s| s.primary && s.state == "healthy" && s.breaker == "closed")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}
