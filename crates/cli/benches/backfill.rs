//! Backfill throughput of chainmux into PostgreSQL, against a real anvil chain full of ERC-20 transfers.
//!
//! `cargo bench -p chainmux --bench backfill -- [--transfers N] [--per-tx N] [--txs-per-block N] [--batch-size N]
//!     [--concurrency N] [--fetch full|logs] [--decode]`
//!
//! Builds the chain first (not timed), then runs the same pipeline as `chainmux run` (pool → EVM adapter →
//! indexer → store) from block 0 to the head into a fresh database, and prints blocks/s, logs/s, transfers/s and
//! rows/s. Needs anvil and Postgres (see `scripts/ensure-tools.sh`).
//!
//! With `--decode`, the DemoToken is also a `[[chains.contracts]]` entry (its ABI, every event, the deployed
//! address): the indexer decodes each batch's logs into `events` rows before writing it, and the run prints
//! events/s too and checks that `events` holds exactly one row per `Transfer` log. The fetch reference then also
//! times decoding alone, and the plain `COPY` reference includes the `events` rows (decoded before the clock).
//!
//! Two references in the same run show where the time goes: fetch + normalize alone (no database), and a plain
//! binary `COPY` of the same rows into the same indexed tables of another fresh database (one transaction per
//! batch, no cursor, rows encoded before the clock starts): the least the database needs for them. The reference
//! runs after the backfill (the peak memory shown is the backfill's), on a fresh database after a `CHECKPOINT`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chainmux_config::ContractConfig;
use chainmux_core::{BlockDecoder, ChainKind, ChainSpec, Network, NormalizedBlock, U256};
use chainmux_evm::{ContractSource, EventDecoder, EvmNetwork, EvmOptions, FetchMode, SourceTarget};
use chainmux_indexer::{Indexer, IndexerConfig};
use chainmux_rpc::{PoolConfig, UpstreamConfig};
use chainmux_store::Store;
use chainmux_testkit::{Anvil, Eth, TestDb, contracts};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

struct Args {
    transfers: u64,
    per_tx: u64,
    txs_per_block: u64,
    batch_size: u64,
    concurrency: usize,
    fetch: FetchMode,
    /// Decode the DemoToken's events into `events` as a contract entry.
    decode: bool,
}

fn parse_args() -> Args {
    let flags = support::Flags::from_env();
    Args {
        transfers: flags.number("--transfers", 200_000),
        per_tx: flags.number("--per-tx", 250),
        txs_per_block: flags.number("--txs-per-block", 2),
        batch_size: flags.number("--batch-size", 100),
        concurrency: flags.number("--concurrency", 16),
        fetch: match flags.text("--fetch") {
            None | Some("full") => FetchMode::Full,
            Some("logs") => FetchMode::Logs,
            Some(other) => panic!("--fetch needs full or logs, got {other:?}"),
        },
        decode: flags.switch("--decode"),
    }
}

/// Peak resident memory of this process (the indexer runs in it), from /proc.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `0..=head` in batches of `size` blocks, as the indexer writes them.
fn ranges(head: u64, size: u64) -> impl Iterator<Item = std::ops::RangeInclusive<u64>> {
    (0..=head).step_by(size as usize).map(move |from| from..=head.min(from + size - 1))
}

/// Flushes dirty buffers so a timed phase does not pay for the previous one's writes (best effort: needs the
/// superuser or `pg_checkpoint`).
async fn checkpoint(url: &str) {
    if let Ok(mut conn) = PgConnection::connect(url).await {
        let _ = sqlx::query("CHECKPOINT").execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// Rows in PostgreSQL's binary `COPY` format, encoded here independently of the store (numerics from their
/// decimal text), for the plain `COPY` reference.
struct CopyData(Vec<u8>);

impl CopyData {
    fn new() -> Self {
        let mut buf = b"PGCOPY\n\xff\r\n\0".to_vec();
        buf.extend_from_slice(&[0; 8]);
        Self(buf)
    }

    fn row(&mut self, fields: i16) {
        self.0.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, value: &[u8]) {
        self.0.extend_from_slice(&(value.len() as i32).to_be_bytes());
        self.0.extend_from_slice(value);
    }

    fn opt(&mut self, value: Option<&[u8]>) {
        match value {
            Some(value) => self.field(value),
            None => self.0.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    /// A `jsonb` value: version 1, then the JSON text.
    fn jsonb(&mut self, json: &str) {
        self.0.extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
        self.0.push(1);
        self.0.extend_from_slice(json.as_bytes());
    }

    fn numeric(&mut self, value: U256) {
        let text = value.to_string();
        let digits: Vec<i16> = if value.is_zero() {
            Vec::new()
        } else {
            let padded = format!("{text:0>width$}", width = text.len().div_ceil(4) * 4);
            padded
                .as_bytes()
                .chunks(4)
                .map(|c| c.iter().fold(0, |n, d| n * 10 + i16::from(d - b'0')))
                .collect()
        };
        let mut field = Vec::with_capacity(8 + 2 * digits.len());
        field.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        field.extend_from_slice(&(digits.len().saturating_sub(1) as i16).to_be_bytes());
        field.extend_from_slice(&[0; 4]); // sign +, scale 0
        digits.iter().for_each(|d| field.extend_from_slice(&d.to_be_bytes()));
        self.field(&field);
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0
    }
}

/// The `COPY` statements and data of one batch, table by table (`events` only when the blocks were decoded).
fn encode_batch(chain: &str, blocks: &[NormalizedBlock]) -> Vec<(&'static str, Vec<u8>)> {
    let (mut b, mut t, mut l, mut x) = (CopyData::new(), CopyData::new(), CopyData::new(), CopyData::new());
    let mut e = CopyData::new();
    let chain = chain.as_bytes();
    for block in blocks {
        let number = (block.ptr.number as i64).to_be_bytes();
        let hash = block.ptr.hash.as_slice();
        b.row(7);
        b.field(chain);
        b.field(&number);
        b.field(hash);
        b.field(block.parent_hash().as_slice());
        b.field(&(block.timestamp as i64).to_be_bytes());
        b.field(&(block.transactions.len() as i32).to_be_bytes());
        b.field(&(block.logs.len() as i32).to_be_bytes());
        for tx in &block.transactions {
            t.row(15);
            t.field(chain);
            t.field(&number);
            t.field(hash);
            t.field(&(tx.index as i32).to_be_bytes());
            t.field(&tx.hash);
            t.field(&tx.from);
            t.opt(tx.to.as_ref().map(|a| &a[..]));
            t.numeric(tx.value);
            t.numeric(U256::from(tx.nonce));
            t.numeric(U256::from(tx.gas_limit));
            match tx.gas_price {
                Some(price) => t.numeric(U256::from(price)),
                None => t.opt(None),
            }
            match tx.gas_used {
                Some(used) => t.numeric(U256::from(used)),
                None => t.opt(None),
            }
            t.opt(tx.status.map(|s| [u8::from(s)]).as_ref().map(|s| &s[..]));
            t.opt(tx.contract_address.as_ref().map(|a| &a[..]));
            t.field(&tx.input);
        }
        for log in &block.logs {
            l.row(12);
            l.field(chain);
            l.field(&number);
            l.field(hash);
            l.field(&(log.log_index as i32).to_be_bytes());
            l.field(&log.tx_hash);
            l.field(&(log.tx_index as i32).to_be_bytes());
            l.field(&log.address);
            for i in 0..4 {
                l.opt(log.topics.get(i).map(|t| t.as_slice()));
            }
            l.field(&log.data);
        }
        for tr in &block.transfers {
            x.row(12);
            x.field(chain);
            x.field(&number);
            x.field(hash);
            x.field(&(tr.log_index as i32).to_be_bytes());
            x.field(&(tr.batch_index as i32).to_be_bytes());
            x.field(tr.standard.as_str().as_bytes());
            x.field(&tr.tx_hash);
            x.opt(tr.token.as_ref().map(|a| &a[..]));
            x.field(&tr.from);
            x.field(&tr.to);
            x.numeric(tr.amount);
            match tr.token_id {
                Some(id) => x.numeric(id),
                None => x.opt(None),
            }
        }
        for event in &block.events {
            e.row(11);
            e.field(chain);
            e.field(&number);
            e.field(hash);
            e.field(&(event.log_index as i32).to_be_bytes());
            e.field(event.contract.as_bytes());
            e.field(&event.tx_hash);
            e.field(&(event.tx_index as i32).to_be_bytes());
            e.field(&event.address);
            e.field(event.name.as_bytes());
            e.field(event.signature.as_bytes());
            e.jsonb(&event.args);
        }
    }
    let mut statements = vec![
        (
            "COPY blocks (chain, number, hash, parent_hash, timestamp, tx_count, log_count) FROM STDIN (FORMAT binary)",
            b.finish(),
        ),
        (
            "COPY transactions (chain, block_number, block_hash, tx_index, hash, from_address, to_address, value, \
             nonce, gas_limit, gas_price, gas_used, status, contract_address, input) FROM STDIN (FORMAT binary)",
            t.finish(),
        ),
        (
            "COPY logs (chain, block_number, block_hash, log_index, tx_hash, tx_index, address, topic0, topic1, \
             topic2, topic3, data) FROM STDIN (FORMAT binary)",
            l.finish(),
        ),
        (
            "COPY transfers (chain, block_number, block_hash, log_index, batch_index, standard, tx_hash, token, \
             from_address, to_address, amount, token_id) FROM STDIN (FORMAT binary)",
            x.finish(),
        ),
    ];
    if blocks.iter().any(|block| !block.events.is_empty()) {
        statements.push((
            "COPY events (chain, block_number, block_hash, log_index, contract, tx_hash, tx_index, address, name, \
             signature, args) FROM STDIN (FORMAT binary)",
            e.finish(),
        ));
    }
    statements
}

/// The plain `COPY` reference: `batches` (already encoded) into a fresh, migrated database, one transaction per
/// batch. Returns the seconds taken and the rows inserted.
async fn plain_copy(batches: &[Vec<(&'static str, Vec<u8>)>]) -> (f64, u64) {
    let db = TestDb::create().await;
    Store::connect(&db.url, 1).await.expect("database").migrate().await.expect("migrations");
    let mut conn = PgConnection::connect(&db.url).await.expect("database");
    checkpoint(&db.url).await;
    let started = Instant::now();
    let mut rows = 0;
    for batch in batches {
        let mut tx = conn.begin().await.expect("begin");
        for (statement, data) in batch {
            let mut copy = tx.copy_in_raw(statement).await.expect("COPY");
            for chunk in data.chunks(256 * 1024) {
                copy.send(chunk).await.expect("COPY data");
            }
            rows += copy.finish().await.expect("COPY");
        }
        tx.commit().await.expect("commit");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = conn.close().await;
    (elapsed, rows)
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

    // With --decode: the DemoToken as a contract entry, resolved as `chainmux run` resolves a configured one (its
    // ABI parsed into alloy's `JsonAbi`, the type `resolve_with` takes; every event selected), at the deployed
    // address.
    let sources: Vec<Arc<ContractSource>> = if args.decode {
        let mut entry = ContractConfig::new("DemoToken", "DemoToken.abi");
        let abi = serde_json::from_str(contracts::DEMO_TOKEN_ABI).expect("DemoToken ABI is JSON");
        entry.resolve_with(abi, None).expect("DemoToken ABI resolves");
        let source = ContractSource::new(
            entry.name.clone(),
            entry.selected_events(),
            SourceTarget::Addresses(vec![token]),
            0,
        )
        .expect("DemoToken contract source");
        vec![Arc::new(source.with_abi(entry.abi_json()))]
    } else {
        Vec::new()
    };

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
    let network: Arc<dyn Network> =
        Arc::new(EvmNetwork::new(spec.clone(), pool, options).with_fetch_mode(args.fetch));
    let config = IndexerConfig {
        batch_size: args.batch_size,
        poll_interval: Duration::from_millis(50),
        ..IndexerConfig::default()
    };

    // Baseline: the same fetches and normalization without the database, to show where the time goes.
    // With --decode, decoding is timed on its own here, outside the fetch time.
    let mut baseline_decoder = EventDecoder::new(&spec.name, sources.clone());
    let (mut decode_elapsed, mut decoded_events) = (0.0, 0usize);
    let started = Instant::now();
    let mut fetched_logs = 0usize;
    for range in ranges(head, args.batch_size) {
        let mut blocks = network.fetch(range).await.expect("fetch");
        fetched_logs += blocks.iter().map(|b| b.logs.len()).sum::<usize>();
        if args.decode {
            let decoding = Instant::now();
            baseline_decoder.decode(&mut blocks);
            decode_elapsed += decoding.elapsed().as_secs_f64();
            decoded_events += blocks.iter().map(|b| b.events.len()).sum::<usize>();
        }
    }
    let fetch_elapsed = started.elapsed().as_secs_f64() - decode_elapsed;

    checkpoint(&db.url).await;
    let cancel = CancellationToken::new();
    let mut indexer = Indexer::new(network.clone(), store.clone(), config);
    if args.decode {
        indexer = indexer.with_decoder(Box::new(EventDecoder::new(&spec.name, sources.clone())));
    }
    let indexer = tokio::spawn(indexer.run(cancel.clone()));
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
    let peak_rss = peak_rss_mib();

    let count = |table: &'static str| {
        let store = store.clone();
        async move {
            let sql = match table {
                "blocks" => "SELECT count(*) FROM blocks",
                "transactions" => "SELECT count(*) FROM transactions",
                "logs" => "SELECT count(*) FROM logs",
                "events" => "SELECT count(*) FROM events",
                _ => "SELECT count(*) FROM transfers",
            };
            sqlx::query_scalar::<_, i64>(sql).fetch_one(store.pool()).await.expect("count") as f64
        }
    };
    let (blocks, transactions, logs, transfers) =
        (count("blocks").await, count("transactions").await, count("logs").await, count("transfers").await);
    assert_eq!(transfers as u64, args.transfers, "every sprayed transfer indexed");
    let events = count("events").await;
    if args.decode {
        // One `events` row per Transfer log of the token, each for such a log, and nothing else.
        let transfer_logs: i64 =
            sqlx::query_scalar("SELECT count(*) FROM logs WHERE address = $1 AND topic0 = $2")
                .bind(token.as_slice())
                .bind(contracts::TRANSFER_TOPIC.as_slice())
                .fetch_one(store.pool())
                .await
                .expect("count");
        assert_eq!(
            transfer_logs as u64, args.transfers,
            "every sprayed transfer is a Transfer log of the token"
        );
        assert_eq!(events, transfer_logs as f64, "one events row per Transfer log");
        let matching: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events e JOIN logs l \
             ON l.chain = e.chain AND l.block_number = e.block_number AND l.log_index = e.log_index \
             WHERE e.contract = 'DemoToken' AND e.name = 'Transfer' \
             AND e.signature = 'Transfer(address,address,uint256)' AND l.address = $1 AND l.topic0 = $2",
        )
        .bind(token.as_slice())
        .bind(contracts::TRANSFER_TOPIC.as_slice())
        .fetch_one(store.pool())
        .await
        .expect("count");
        assert_eq!(matching, transfer_logs, "every events row is the DemoToken Transfer of its log");
        assert_eq!(decoded_events as f64, events, "the decode-only baseline decoded the same events");
    } else {
        assert_eq!(events, 0.0, "no events without --decode");
    }
    let rows = blocks + transactions + logs + transfers + events;
    drop(store);
    drop(db);

    // Reference: a plain COPY of the same rows into the same tables, without the pipeline. The rows come from one
    // more (untimed) fetch and are encoded before the clock starts.
    let mut encoded = Vec::new();
    let mut encode_elapsed = 0.0;
    let mut reference_decoder = EventDecoder::new(&spec.name, sources.clone());
    for range in ranges(head, args.batch_size) {
        let mut blocks = network.fetch(range).await.expect("fetch");
        if args.decode {
            reference_decoder.decode(&mut blocks);
        }
        let started = Instant::now();
        encoded.push(encode_batch(&spec.name, &blocks));
        encode_elapsed += started.elapsed().as_secs_f64();
    }
    let (copy_elapsed, copy_rows) = plain_copy(&encoded).await;
    assert_eq!(copy_rows as f64, rows, "the plain COPY wrote the same rows");

    let decoded = if args.decode { format!(", {events:.0} events") } else { String::new() };
    println!(
        "backfill: {blocks:.0} blocks, {logs:.0} logs, {transfers:.0} transfers{decoded}, {rows:.0} rows in \
         {elapsed:.2}s"
    );
    println!("  blocks/s    {:>10.0}", blocks / elapsed);
    println!("  logs/s      {:>10.0}", logs / elapsed);
    println!("  transfers/s {:>10.0}", transfers / elapsed);
    if args.decode {
        println!("  events/s    {:>10.0}", events / elapsed);
    }
    println!("  rows/s      {:>10.0}", rows / elapsed);
    println!(
        "  fetch + normalize only (no database): {:.2}s, {:.0} logs/s",
        fetch_elapsed,
        fetched_logs as f64 / fetch_elapsed
    );
    if args.decode {
        println!(
            "  decode only (no database, same blocks): {:.2}s, {:.0} events/s",
            decode_elapsed,
            decoded_events as f64 / decode_elapsed
        );
    }
    println!(
        "  plain COPY of the same rows (fresh database, one transaction per {} blocks, no cursor): {:.2}s, \
         {:.0} rows/s (+ {:.2}s encoding, untimed)",
        args.batch_size,
        copy_elapsed,
        copy_rows as f64 / copy_elapsed,
        encode_elapsed
    );
    println!("  end-to-end / plain COPY: {:.2}x", elapsed / copy_elapsed);
    if let Some(rss) = peak_rss {
        println!("  peak RSS    {rss:>10.1} MiB (bench process: indexer + chain builder)");
    }
}
