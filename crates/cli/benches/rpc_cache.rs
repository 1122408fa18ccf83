//! Cache-hit throughput and latency of the gateway's JSON-RPC proxy (`POST /rpc/{chain}`) against anvil answering
//! the same call directly, in one run.
//!
//! `cargo bench -p chainmux --bench rpc_cache -- [--seconds N] [--concurrency N] [--txs N]`
//!
//! Starts anvil and the real `chainmux` binary (built by `cargo bench` with the bench profile, indexer and gateway
//! in one process, `finality_confirmations = 2`, anonymous `/rpc` limits off), mines one block with `--txs`
//! (default 100) transfers and a few more on top, and waits until the gateway counts that block as finalized.
//! Then, per call, a closed loop of `--concurrency` clients (default 32) for `--seconds` (default 5) against
//! anvil, then against the gateway (after one warm-up call that fills the cache):
//! - `eth_getBlockByNumber` of the finalized block with full transactions;
//! - `eth_getBalance` of an account at the finalized block;
//! - `eth_chainId`.
//!
//! Printed per call and target: requests answered, errors, req/s, p50 and p99 latency (µs, from send to full
//! body), and the gateway/anvil throughput ratio (goal ≥ 5×). The gateway's answers are checked to equal anvil's,
//! and its cache counters must show no miss during the measured runs. The load generator runs in this process on
//! the same machine, so figures are bounded by its CPU share as well. Needs anvil and Postgres (see
//! `scripts/ensure-tools.sh`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainmux_core::U256;
use chainmux_testkit::{Anvil, Eth, TestDb};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const CHAIN: &str = "bench";
const CONFIRMATIONS: u64 = 2;
const GOAL_RATIO: f64 = 5.0;
/// Sequential calls to each target before measuring (connections).
const WARM_UP: usize = 200;
const START_TIMEOUT: Duration = Duration::from_secs(60);

struct Args {
    seconds: u64,
    concurrency: usize,
    txs: u64,
}

fn parse_args() -> Args {
    let flags = support::Flags::from_env();
    Args {
        seconds: flags.positive("--seconds", 5),
        concurrency: flags.positive("--concurrency", 32) as usize,
        txs: flags.positive("--txs", 100),
    }
}

/// `chainmux run` (indexer and gateway) on the bench chain.
async fn start_chainmux(database_url: &str, anvil_url: &str) -> support::ChainmuxProcess {
    let config = |port| {
        format!(
            "[database]\nurl = {db}\n\n\
             [gateway]\nlisten = \"127.0.0.1:{port}\"\nanonymous_rpc_rps = 0\n\n\
             [[chains]]\nname = \"{CHAIN}\"\nkind = \"evm\"\nchain_id = 31337\npoll_interval_ms = 100\n\
             finality_confirmations = {CONFIRMATIONS}\n\n\
             [[chains.upstreams]]\nname = \"anvil\"\nurl = {anvil}\n",
            db = Value::String(database_url.to_owned()),
            anvil = Value::String(anvil_url.to_owned()),
        )
    };
    support::ChainmuxProcess::start("rpc-cache", &[], config, START_TIMEOUT).await
}

/// The sum of the `/metrics` samples of `name` whose line contains `label`.
async fn metric(client: &reqwest::Client, base: &str, name: &str, label: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with(name) && line.contains(label))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// One call; its `result`, or `None` on any failure.
async fn call(client: &reqwest::Client, url: &str, body: &Arc<str>) -> Option<Value> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    let bytes = response.bytes().await.ok()?;
    let mut answer: Value = serde_json::from_slice(&bytes).ok()?;
    if answer.get("error").is_some() {
        return None;
    }
    answer.get_mut("result").map(Value::take)
}

/// Closed loop: `concurrency` clients, each sending its next call when the previous one is answered, for
/// `seconds`. Every answer is parsed (as any client would) but not compared, to keep the generator cheap.
struct Run {
    ok: u64,
    errors: u64,
    rate: f64,
    p50: u64,
    p99: u64,
}

async fn closed_loop(
    client: &reqwest::Client,
    url: &str,
    body: &Arc<str>,
    concurrency: usize,
    seconds: u64,
) -> Run {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, body) = (client.clone(), url.to_owned(), Arc::clone(body));
        workers.spawn(async move {
            let mut micros = Vec::with_capacity(65_536);
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match call(&client, &url, &body).await {
                    Some(_) => micros.push(sent.elapsed().as_micros() as u64),
                    None => errors += 1,
                }
            }
            (micros, errors)
        });
    }
    let (mut micros, mut errors) = (Vec::new(), 0);
    while let Some(worker) = workers.join_next().await {
        let (m, e) = worker.expect("worker task");
        micros.extend(m);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    micros.sort_unstable();
    let ok = micros.len() as u64;
    Run {
        ok,
        errors,
        rate: ok as f64 / elapsed,
        p50: percentile(&micros, 50.0),
        p99: percentile(&micros, 99.0),
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

fn print_run(target: &str, run: &Run) {
    println!(
        "  {target:<8} {:>9} ok {:>5} errors {:>10.0} req/s   p50 {:>6} µs   p99 {:>6} µs",
        run.ok, run.errors, run.rate, run.p50, run.p99
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = parse_args();
    chainmux_testkit::install_crypto_provider();
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let db = TestDb::create().await;

    // One block with `txs` transfers, and enough on top of it for it to be final.
    let accounts = eth.accounts().await;
    eth.request("evm_setAutomine", json!([false])).await;
    for i in 0..args.txs {
        let to = accounts[1 + (i as usize % (accounts.len() - 1))];
        eth.submit(accounts[0], Some(to), Default::default(), U256::from(1_000 + i), Some(21_000)).await;
    }
    eth.request("evm_mine", json!([])).await;
    eth.request("evm_setAutomine", json!([true])).await;
    let block = eth.block_number().await;
    let mined = eth.block(block, false).await;
    let count = mined["transactions"].as_array().map_or(0, Vec::len);
    assert_eq!(count as u64, args.txs, "all transfers in block {block}");
    eth.request("anvil_mine", json!([CONFIRMATIONS + 3])).await;

    let chainmux = start_chainmux(&db.url, &anvil.url).await;
    let client = client();
    let label = format!("chain=\"{CHAIN}\"");
    let started = Instant::now();
    while metric(&client, &chainmux.base, "chainmux_rpc_cache_finalized_block", &label).await < block as f64 {
        assert!(started.elapsed() < START_TIMEOUT, "block {block} never became final in the gateway");
        // Any `/rpc` call starts the chain's finality tracker if the router did not.
        let _ = call(
            &client,
            &format!("{}/rpc/{CHAIN}", chainmux.base),
            &Arc::from(body("eth_chainId", json!([]))),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let gateway_url = format!("{}/rpc/{CHAIN}", chainmux.base);
    let number = format!("{block:#x}");
    let calls = [
        (
            format!("eth_getBlockByNumber({number}, full) [{} txs]", args.txs),
            body("eth_getBlockByNumber", json!([number, true])),
        ),
        (
            format!("eth_getBalance(account, {number})"),
            body("eth_getBalance", json!([accounts[1].to_string(), number])),
        ),
        ("eth_chainId".to_owned(), body("eth_chainId", json!([]))),
    ];
    println!(
        "rpc_cache: {} concurrent clients, {} s per run, anvil at {}, gateway (release binary) at {}",
        args.concurrency, args.seconds, anvil.url, chainmux.base
    );
    let mut below_goal = 0;
    for (name, body) in calls {
        let body: Arc<str> = Arc::from(body);
        // The first gateway call fills the cache; its answer must be anvil's.
        let direct = call(&client, &anvil.url, &body).await.expect("anvil answers");
        let proxied = call(&client, &gateway_url, &body).await.expect("the gateway answers");
        assert_eq!(proxied, direct, "{name}: the gateway's answer differs from anvil's");
        for url in [&anvil.url, &gateway_url] {
            for _ in 0..WARM_UP {
                call(&client, url, &body).await.expect("warm-up call");
            }
        }
        let misses_before =
            metric(&client, &chainmux.base, "chainmux_rpc_cache_total", "result=\"miss\"").await;
        let anvil_run = closed_loop(&client, &anvil.url, &body, args.concurrency, args.seconds).await;
        let gateway_run = closed_loop(&client, &gateway_url, &body, args.concurrency, args.seconds).await;
        let misses = metric(&client, &chainmux.base, "chainmux_rpc_cache_total", "result=\"miss\"").await
            - misses_before;
        let ratio = gateway_run.rate / anvil_run.rate.max(1e-9);
        println!("{name}:");
        print_run("anvil", &anvil_run);
        print_run("gateway", &gateway_run);
        println!(
            "  ratio    {ratio:.1}× anvil's throughput (goal ≥ {GOAL_RATIO}×), p99 {:.2}× anvil's; cache misses during the run: {misses}",
            gateway_run.p99 as f64 / anvil_run.p99.max(1) as f64
        );
        assert_eq!(misses, 0.0, "{name}: every measured gateway call must be a cache hit");
        if ratio < GOAL_RATIO {
            below_goal += 1;
        }
    }
    if below_goal > 0 {
        println!("{below_goal} call(s) below the {GOAL_RATIO}× goal on this machine");
    }
    drop(chainmux);
    drop(anvil);
}

fn body(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string()
}
