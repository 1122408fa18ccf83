//! Backfill throughput of chainmux into PostgreSQL, against a real anvil chain full of ERC-20 transfers.
//!
//! `cargo bench -p chainmux --bench backfill -- [--transfers N] [--per-tx N] [--txs-per-block N] [--batch-size N]`
//!
//! Builds the chain first (not timed), then runs the same pipeline as `chainmux run` (pool → EVM adapter →
//! indexer → store) from block 0 to the head into a fresh database, and prints blocks/s, logs/s, transfers/s and
//! rows/s. Needs anvil and Postgres (see `scripts/ensure-tools.sh`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainmux_core::{ChainKind, ChainSpec, Network, U256};
use chainmux_evm::{EvmNetwork, EvmOptions};
use chainmux_indexer::{Indexer, IndexerConfig};
use chainmux_rpc::{PoolConfig, UpstreamConfig};
use chainmux_store::Store;
use chainmux_testkit::{Anvil, Eth, TestDb, contracts};
use tokio_util::sync::CancellationToken;

struct Args {
    transfers: u64,
    per_tx: u64,
    txs_per_block: u64,
    batch_size: u64,
    concurrency: usize,
}

fn parse_args() -> Args {
    let mut args =
        Args { transfers: 200_000, per_tx: 250, txs_per_block: 2, batch_size: 100, concurrency: 16 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--transfers" => args.transfers = value(),
            "--per-tx" => args.per_tx = value(),
            "--txs-per-block" => args.txs_per_block = value(),
            "--batch-size" => args.batch_size = value(),
            "--concurrency" => args.concurrency = value() as usize,
            // cargo bench passes --bench; other harness flags are ignored too.
            _ => {}
        }
    }
    args
}

/// Peak resident memory of this process (the indexer runs in it), from /proc.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    chainmux_testkit::install_crypto_provider();
    let anvil = Anvil::spawn_with(&["--gas-limit", "1000000000", "--no-request-size-limit"]).await;
    let eth = Eth::new(&anvil.url);
    let from = eth.accounts().await[0];

    eprintln!(
        "building chain: {} transfers, {} per tx, {} txs per block",
        args.transfers, args.per_tx, args.txs_per_block
    );
    let started = Instant::now();
    let token = eth.deploy(from, contracts::DEMO_TOKEN).await;
    eth.set_automine(false).await;
    let txs = args.transfers.div_ceil(args.per_tx);
    let mut pending = Vec::new();
    for i in 0..txs {
        let count = args.per_tx.min(args.transfers - i * args.per_tx);
        let call = contracts::erc20_spray(U256::from(count), U256::from(i));
        pending.push(eth.submit(from, Some(token), call, U256::ZERO, Some(count * 2_500 + 100_000)).await);
        if pending.len() as u64 == args.txs_per_block || i + 1 == txs {
            eth.mine(1).await;
            pending.clear();
        }
    }
    let head = eth.block_number().await;
    eprintln!("chain built in {:.1}s: head {head}", started.elapsed().as_secs_f64());

    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 10).await.expect("database");
    store.migrate().await.expect("migrations");
    let spec = ChainSpec { name: "bench".into(), kind: ChainKind::Evm, chain_id: 31337 };
    let upstream = UpstreamConfig {
        name: "anvil".into(),
        url: anvil.url.parse().expect("anvil url"),
        policy: Default::default(),
    };
    let pool = Arc::new(EvmNetwork::pool(&spec, vec![upstream], PoolConfig::default()));
    pool.verify_all().await;
    let options = EvmOptions { fetch_concurrency: args.concurrency, use_block_receipts: true };
    let network: Arc<dyn Network> = Arc::new(EvmNetwork::new(spec.clone(), pool, options));
    let config = IndexerConfig {
        batch_size: args.batch_size,
        poll_interval: Duration::from_millis(50),
        ..IndexerConfig::default()
    };

    // Baseline: the same fetches and normalization without the database, to show where the time goes.
    let started = Instant::now();
    let mut fetched_logs = 0usize;
    let mut from_block = 0;
    while from_block <= head {
        let to_block = head.min(from_block + args.batch_size - 1);
        let blocks = network.fetch(from_block..=to_block).await.expect("fetch");
        fetched_logs += blocks.iter().map(|b| b.logs.len()).sum::<usize>();
        from_block = to_block + 1;
    }
    let fetch_elapsed = started.elapsed().as_secs_f64();

    let cancel = CancellationToken::new();
    let indexer = tokio::spawn(Indexer::new(network, store.clone(), config).run(cancel.clone()));
    let started = Instant::now();
    loop {
        if store.cursor("bench").await.expect("cursor").is_some_and(|c| c.number >= head) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    cancel.cancel();
    indexer.await.expect("indexer task").expect("indexer");

    let count = |table: &'static str| {
        let store = store.clone();
        async move {
            let sql = match table {
                "blocks" => "SELECT count(*) FROM blocks",
                "transactions" => "SELECT count(*) FROM transactions",
                "logs" => "SELECT count(*) FROM logs",
                _ => "SELECT count(*) FROM transfers",
            };
            sqlx::query_scalar::<_, i64>(sql).fetch_one(store.pool()).await.expect("count") as f64
        }
    };
    let (blocks, transactions, logs, transfers) =
        (count("blocks").await, count("transactions").await, count("logs").await, count("transfers").await);
    assert_eq!(transfers as u64, args.transfers, "every sprayed transfer indexed");
    let rows = blocks + transactions + logs + transfers;
    println!(
        "backfill: {blocks:.0} blocks, {logs:.0} logs, {transfers:.0} transfers, {rows:.0} rows in {elapsed:.2}s"
    );
    println!("  blocks/s    {:>10.0}", blocks / elapsed);
    println!("  logs/s      {:>10.0}", logs / elapsed);
    println!("  transfers/s {:>10.0}", transfers / elapsed);
    println!("  rows/s      {:>10.0}", rows / elapsed);
    println!(
        "  fetch + normalize only (no database): {:.2}s, {:.0} logs/s",
        fetch_elapsed,
        fetched_logs as f64 / fetch_elapsed
    );
    if let Some(rss) = peak_rss_mib() {
        println!("  peak RSS    {rss:>10.1} MiB (bench process: indexer + chain builder)");
    }
}
