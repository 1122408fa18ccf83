//! Latency of `GET /v1/chains/{chain}/transfers?address=` on a large `transfers` table under concurrent load,
//! served by the real `chainmux` binary (gateway role only) from a real PostgreSQL.
//!
//! `cargo bench -p chainmux --bench rest_transfers -- [--rows N] [--addresses N] [--skew S] [--clients N]
//!     [--seconds N] [--limit N] [--paginate PERCENT] [--rate N]`
//!
//! Fills a fresh database with `--rows` transfers (default 1,000,000; binary `COPY`, not timed) whose senders and
//! recipients are drawn from `--addresses` addresses with a Zipf-like skew (`--skew`, default 1.1: a few hot
//! addresses with tens of thousands of rows, most with a handful), starts `chainmux run --no-indexer` on it with
//! the anonymous rate limit off, then drives `--clients` concurrent keep-alive HTTP clients for `--seconds`: each
//! request asks for one address (half drawn uniformly from all addresses, half by the same skew, so hot
//! addresses get their share), and `--paginate` percent of them follow the answer's `next_cursor` to the next
//! page (timed as a request of its own). By default each client sends its next request as soon as the previous
//! one is answered (closed loop: the latency then grows with the queue of `--clients` requests once the machine is
//! saturated); with `--rate N` the clients together send N requests/s on a fixed schedule (open loop), and each
//! latency counts from the request's scheduled time, so a stalled server is not hidden by clients that waited for
//! it. Only the answers that need it are parsed, to keep the load generator's CPU off the measurement. Prints req/s and p50/p95/p99/max latency, then checks a sample of
//! answers (first pages and cursor pages, hot and cold addresses) against the rows it generated. Needs anvil
//! (only for the chain config's upstream; the gateway never calls it here) and Postgres (see
//! `scripts/ensure-tools.sh`).
//!
//! The goal (issue 7) is p99 < 10 ms at 1M rows. The load generator shares the machine with the gateway and the
//! database, so on a small machine it competes with them for CPU: the figures are an upper bound.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chainmux_store::Store;
use chainmux_testkit::{Anvil, TestDb};
use serde_json::Value;
use sqlx::{Connection, PgConnection};

const CHAIN: &str = "bench";
/// Rows a `COPY` statement carries (one transaction each).
const COPY_CHUNK: usize = 100_000;
/// Transfers per block of the generated chain.
const PER_BLOCK: u64 = 8;
/// Distinct tokens.
const TOKENS: u32 = 64;

struct Args {
    rows: u64,
    addresses: u32,
    skew: f64,
    clients: usize,
    seconds: u64,
    limit: usize,
    paginate: u32,
    /// Requests per second of all clients together on a fixed schedule; 0 = closed loop.
    rate: f64,
}

fn parse_args() -> Args {
    let flags = support::Flags::from_env();
    let args = Args {
        rows: flags.number("--rows", 1_000_000),
        addresses: flags.number("--addresses", 200_000),
        skew: flags.number("--skew", 1.1),
        clients: flags.number("--clients", 16),
        seconds: flags.number("--seconds", 15),
        limit: flags.number("--limit", 100),
        paginate: flags.number("--paginate", 10),
        rate: flags.number("--rate", 0.0),
    };
    assert!(args.addresses >= 2 && args.rows > 0 && args.clients > 0 && args.limit > 0, "bad arguments");
    args
}

/// SplitMix64: a small deterministic generator (no dependency; the data only needs to look random).
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf-like ranks: rank `r` (0-based) has weight `1 / (r + 1)^skew`.
struct Skewed {
    cdf: Vec<f64>,
}

impl Skewed {
    fn new(n: u32, skew: f64) -> Skewed {
        let mut total = 0.0;
        let mut cdf = Vec::with_capacity(n as usize);
        for rank in 0..n {
            total += 1.0 / f64::from(rank + 1).powf(skew);
            cdf.push(total);
        }
        cdf.iter_mut().for_each(|c| *c /= total);
        Skewed { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> u32 {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u32
    }
}

/// The 20-byte address of rank `index`: a fixed prefix byte so ranks never collide with other data, the index
/// scrambled so hot addresses are not adjacent in the index.
fn address(index: u32) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[0] = 0xad;
    let scrambled = Rng(u64::from(index) ^ 0x5eed).next();
    out[4..12].copy_from_slice(&scrambled.to_be_bytes());
    out[16..20].copy_from_slice(&index.to_be_bytes());
    out
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * bytes.len());
    s.push_str("0x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn hash32(tag: u8, a: u64, b: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[0] = tag;
    out[8..16].copy_from_slice(&Rng(a ^ (u64::from(tag) << 56)).next().to_be_bytes());
    out[16..24].copy_from_slice(&a.to_be_bytes());
    out[24..32].copy_from_slice(&b.to_be_bytes());
    out
}

/// One generated transfer, as the checks need it (everything else derives from these).
#[derive(Clone, Copy)]
struct Generated {
    block: u64,
    log_index: u32,
    from: u32,
    to: u32,
    token: u32,
    amount: u64,
}

fn generate(args: &Args) -> Vec<Generated> {
    let skewed = Skewed::new(args.addresses, args.skew);
    let mut rng = Rng(42);
    (0..args.rows)
        .map(|i| {
            let from = skewed.sample(&mut rng);
            let mut to = skewed.sample(&mut rng);
            if to == from {
                to = (to + 1) % args.addresses;
            }
            Generated {
                block: 1 + i / PER_BLOCK,
                log_index: (i % PER_BLOCK) as u32,
                from,
                to,
                token: rng.below(u64::from(TOKENS)) as u32,
                amount: 1 + rng.below(1_000_000_000),
            }
        })
        .collect()
}

/// PostgreSQL binary `COPY` data of `transfers` rows.
fn copy_data(rows: &[Generated]) -> Vec<u8> {
    let mut buf = b"PGCOPY\n\xff\r\n\0".to_vec();
    buf.extend_from_slice(&[0; 8]);
    let field = |buf: &mut Vec<u8>, value: &[u8]| {
        buf.extend_from_slice(&(value.len() as i32).to_be_bytes());
        buf.extend_from_slice(value);
    };
    for row in rows {
        buf.extend_from_slice(&11i16.to_be_bytes());
        field(&mut buf, CHAIN.as_bytes());
        field(&mut buf, &(row.block as i64).to_be_bytes());
        field(&mut buf, &hash32(1, row.block, 0));
        field(&mut buf, &(row.log_index as i32).to_be_bytes());
        field(&mut buf, &0i32.to_be_bytes());
        field(&mut buf, b"erc20");
        field(&mut buf, &hash32(2, row.block, u64::from(row.log_index)));
        let mut token = [0u8; 20];
        token[0] = 0x70;
        token[16..20].copy_from_slice(&row.token.to_be_bytes());
        field(&mut buf, &token);
        field(&mut buf, &address(row.from));
        field(&mut buf, &address(row.to));
        field(&mut buf, &numeric(row.amount));
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    buf
}

/// A non-negative integer in PostgreSQL's binary `numeric` format (base-10000 digits).
fn numeric(value: u64) -> Vec<u8> {
    let mut digits = Vec::new();
    let mut rest = value;
    while rest > 0 {
        digits.push((rest % 10_000) as i16);
        rest /= 10_000;
    }
    digits.reverse();
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    out.extend_from_slice(&(digits.len() as i16).to_be_bytes());
    out.extend_from_slice(&(digits.len().saturating_sub(1) as i16).to_be_bytes());
    out.extend_from_slice(&[0; 4]); // sign +, scale 0
    digits.iter().for_each(|d| out.extend_from_slice(&d.to_be_bytes()));
    out
}

async fn load(url: &str, rows: &[Generated]) {
    let mut conn = PgConnection::connect(url).await.expect("database");
    for chunk in rows.chunks(COPY_CHUNK) {
        let data = copy_data(chunk);
        let mut copy = conn
            .copy_in_raw(
                "COPY transfers (chain, block_number, block_hash, log_index, batch_index, standard, tx_hash, \
                 token, from_address, to_address, amount) FROM STDIN (FORMAT binary)",
            )
            .await
            .expect("COPY");
        for part in data.chunks(1 << 20) {
            copy.send(part).await.expect("COPY data");
        }
        copy.finish().await.expect("COPY");
    }
    sqlx::query("VACUUM ANALYZE transfers").execute(&mut conn).await.expect("VACUUM ANALYZE");
    let _ = conn.close().await;
}

/// `chainmux run --no-indexer` serving the bench's database.
async fn start_gateway(database_url: &str, anvil_url: &str) -> support::ChainmuxProcess {
    let config = |port| {
        format!(
            "[database]\nurl = {database_url:?}\nmax_connections = 16\n\n\
             [gateway]\nlisten = \"127.0.0.1:{port}\"\nanonymous_rps = 0\nanonymous_rpc_rps = 0\n\n\
             [[chains]]\nname = {CHAIN:?}\nkind = \"evm\"\nchain_id = 31337\n\n\
             [[chains.upstreams]]\nname = \"anvil\"\nurl = {anvil_url:?}\n"
        )
    };
    support::ChainmuxProcess::start("rest", &["--no-indexer"], config, Duration::from_secs(30)).await
}

fn http(connections: usize) -> reqwest::Client {
    chainmux_testkit::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// `GET url`, which must answer 200: the body (unparsed) and when it was complete.
async fn get_body(client: &reqwest::Client, url: &str) -> (impl AsRef<[u8]>, Instant) {
    let response = client.get(url).send().await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let status = response.status();
    let body = response.bytes().await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let done = Instant::now();
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    (body, done)
}

/// `GET url`: the parsed page.
async fn get_page(client: &reqwest::Client, url: &str) -> Value {
    let (body, _) = get_body(client, url).await;
    serde_json::from_slice(body.as_ref()).unwrap_or_else(|err| panic!("GET {url}: {err}"))
}

/// The `next_cursor` of a page, found without parsing the whole body.
fn next_cursor(body: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"next_cursor\":\"";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    Some(String::from_utf8_lossy(&body[start..start + len]).into_owned())
}

/// One load client: requests until `deadline`, back to back or, with `interval`, on a fixed schedule; returns
/// each request's latency in microseconds (from its scheduled time when there is a schedule) and how many were
/// cursor pages.
async fn client_loop(
    client: reqwest::Client,
    base: String,
    skewed: Arc<Skewed>,
    args: Arc<Args>,
    seed: u64,
    deadline: Instant,
    interval: Option<Duration>,
) -> (Vec<u32>, u64) {
    let mut rng = Rng(seed);
    let mut latencies = Vec::new();
    let mut cursor_pages = 0;
    // Spread the clients' schedules over one interval.
    let mut next = Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(rng.unit()));
    while next < deadline {
        if interval.is_some() {
            tokio::time::sleep_until(next.into()).await;
        }
        let scheduled = if interval.is_some() { next } else { Instant::now() };
        let index = if rng.below(2) == 0 {
            rng.below(u64::from(args.addresses)) as u32
        } else {
            skewed.sample(&mut rng)
        };
        let url = format!(
            "{base}/v1/chains/{CHAIN}/transfers?address={}&limit={}",
            hex(&address(index)),
            args.limit
        );
        let (body, done) = get_body(&client, &url).await;
        latencies.push(done.duration_since(scheduled).as_micros() as u32);
        if rng.below(100) < u64::from(args.paginate)
            && let Some(cursor) = next_cursor(body.as_ref())
        {
            let started = Instant::now();
            let (_, done) = get_body(&client, &format!("{url}&cursor={cursor}")).await;
            latencies.push(done.duration_since(started).as_micros() as u32);
            cursor_pages += 1;
        }
        next = match interval {
            Some(interval) => next + interval,
            None => Instant::now(),
        };
    }
    (latencies, cursor_pages)
}

/// The first `pages` pages of `index`'s transfers as the generated rows say: `(block_number, log_index)` keys.
fn expected_pages(rows: &[Generated], index: u32, limit: usize, pages: usize) -> Vec<(u64, u32)> {
    rows.iter()
        .filter(|r| r.from == index || r.to == index)
        .map(|r| (r.block, r.log_index))
        .take(limit * pages)
        .collect()
}

/// Follows `pages` pages of `index`'s transfers through the gateway and compares them with the generated rows
/// (keys, both addresses and the amount); returns the number of rows compared.
async fn check_address(
    client: &reqwest::Client,
    base: &str,
    rows: &[Generated],
    index: u32,
    limit: usize,
) -> usize {
    const PAGES: usize = 2;
    let expected = expected_pages(rows, index, limit, PAGES);
    let url = format!("{base}/v1/chains/{CHAIN}/transfers?address={}&limit={limit}", hex(&address(index)));
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..PAGES {
        let page_url = match &cursor {
            Some(cursor) => format!("{url}&cursor={cursor}"),
            None => url.clone(),
        };
        let page = get_page(client, &page_url).await;
        let items = page["items"].as_array().unwrap_or_else(|| panic!("{page_url}: no items: {page}"));
        got.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(got.len(), expected.len(), "address #{index}: item count");
    let mine = hex(&address(index));
    for (item, (block, log_index)) in got.iter().zip(&expected) {
        let row = rows[((block - 1) * PER_BLOCK + u64::from(*log_index)) as usize];
        assert_eq!(item["block_number"].as_u64(), Some(*block), "address #{index}: {item}");
        assert_eq!(item["log_index"].as_u64(), Some(u64::from(*log_index)), "address #{index}: {item}");
        assert_eq!(item["from"].as_str(), Some(hex(&address(row.from)).as_str()), "address #{index}: {item}");
        assert_eq!(item["to"].as_str(), Some(hex(&address(row.to)).as_str()), "address #{index}: {item}");
        assert!(item["from"] == mine.as_str() || item["to"] == mine.as_str(), "address #{index}: {item}");
        assert_eq!(
            item["amount"].as_str(),
            Some(row.amount.to_string().as_str()),
            "address #{index}: {item}"
        );
    }
    got.len()
}

/// The gateway's own request-duration histogram for the transfers route: cumulative counts by bucket bound
/// (seconds), summed over the other labels.
async fn server_histogram(client: &reqwest::Client, base: &str) -> Vec<(f64, f64)> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("GET /metrics body");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("chainmux_http_request_duration_seconds_bucket{") else {
            continue;
        };
        if !rest.contains("route=\"/v1/chains/{chain}/transfers\"") {
            continue;
        }
        let Some((labels, value)) = rest.rsplit_once(' ') else { continue };
        let Some(le) = labels.split("le=\"").nth(1).and_then(|v| v.split('"').next()) else { continue };
        let (Ok(le), Ok(value)) = (le.parse::<f64>(), value.parse::<f64>()) else { continue };
        match buckets.iter_mut().find(|(bound, _)| *bound == le) {
            Some(bucket) => bucket.1 += value,
            None => buckets.push((le, value)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let started = Instant::now();
    let rows = generate(&args);
    let db = TestDb::create().await;
    Store::connect(&db.url, 1).await.expect("database").migrate().await.expect("migrations");
    load(&db.url, &rows).await;
    let per_address = {
        let mut counts = vec![0u32; args.addresses as usize];
        for row in &rows {
            counts[row.from as usize] += 1;
            counts[row.to as usize] += 1;
        }
        counts
    };
    let touched = per_address.iter().filter(|&&c| c > 0).count();
    let mut sorted_counts = per_address.clone();
    sorted_counts.sort_unstable();
    eprintln!(
        "loaded {} transfers over {touched} addresses in {:.1}s (rows per address: top {}, p99 {}, median {})",
        rows.len(),
        started.elapsed().as_secs_f64(),
        sorted_counts[sorted_counts.len() - 1],
        sorted_counts[sorted_counts.len() * 99 / 100],
        sorted_counts[sorted_counts.len() / 2],
    );

    let anvil = Anvil::spawn().await;
    let gateway = start_gateway(&db.url, &anvil.url).await;
    let skewed = Arc::new(Skewed::new(args.addresses, args.skew));

    // Warm-up (not measured): the database's caches and the gateway's connection pool.
    let warm = Instant::now() + Duration::from_secs(2);
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let client = http(1);
        tasks.push(tokio::spawn(client_loop(
            client,
            gateway.base.clone(),
            skewed.clone(),
            args.clone(),
            1000 + i as u64,
            warm,
            None,
        )));
    }
    for task in tasks {
        task.await.expect("warm-up client");
    }

    let metrics_client = http(1);
    let server_before = server_histogram(&metrics_client, &gateway.base).await;
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(args.clients as f64 / args.rate));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.clients {
        let client = http(1);
        tasks.push(tokio::spawn(client_loop(
            client,
            gateway.base.clone(),
            skewed.clone(),
            args.clone(),
            i as u64,
            deadline,
            interval,
        )));
    }
    let mut latencies = Vec::new();
    let mut cursor_pages = 0;
    for task in tasks {
        let (mine, pages) = task.await.expect("load client");
        latencies.extend(mine);
        cursor_pages += pages;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let server_after = server_histogram(&metrics_client, &gateway.base).await;

    // Correctness on a sample: the hottest addresses, some drawn by the skew, some uniformly, first and cursor
    // pages, against the generated rows.
    let client = http(1);
    let mut rng = Rng(7);
    let mut sample: Vec<u32> = (0..5).collect();
    sample.extend((0..15).map(|_| skewed.sample(&mut rng)));
    sample.extend((0..30).map(|_| rng.below(u64::from(args.addresses)) as u32));
    let sample: Vec<u32> = sample.into_iter().collect::<HashSet<_>>().into_iter().collect();
    let mut compared = 0;
    for &index in &sample {
        compared += check_address(&client, &gateway.base, &rows, index, args.limit).await;
    }

    let load =
        if args.rate > 0.0 { format!("open loop at {} req/s", args.rate) } else { "closed loop".to_owned() };
    println!(
        "rest transfers?address=: {} rows, {} addresses (skew {}), {} clients, {load}, {}s, limit {}, {}% follow \
         a cursor",
        rows.len(),
        touched,
        args.skew,
        args.clients,
        args.seconds,
        args.limit,
        args.paginate
    );
    println!("  requests    {:>10} ({cursor_pages} cursor pages)", latencies.len());
    println!("  req/s       {:>10.0}", latencies.len() as f64 / elapsed);
    for (label, p) in [("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("max", 100.0)] {
        println!("  {label:<11} {:>10.2} ms", percentile(&latencies, p));
    }
    // Time inside the gateway (routing, database, rendering), without the client side and the wait for a CPU
    // before the request is read: the difference to the figures above is queueing on this machine.
    let served = |bound: f64| {
        let count = |h: &[(f64, f64)]| h.iter().find(|(b, _)| *b == bound).map_or(0.0, |(_, c)| *c);
        count(&server_after) - count(&server_before)
    };
    let total = served(f64::INFINITY);
    if total > 0.0 {
        let shares: Vec<String> = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05]
            .iter()
            .map(|&bound| format!("≤{} ms {:.1}%", bound * 1000.0, 100.0 * served(bound) / total))
            .collect();
        println!("  in the gateway (its own histogram): {}", shares.join(", "));
    }
    let p99 = percentile(&latencies, 99.0);
    println!("  goal p99 < 10 ms: {}", if p99 < 10.0 { "met" } else { "MISSED" });
    println!(
        "  correctness: {} addresses, {compared} items (first and cursor pages) match the generated rows",
        sample.len()
    );
    drop(gateway);
    drop(anvil);
    drop(db);
}
