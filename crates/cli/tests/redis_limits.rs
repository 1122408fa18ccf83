//! Rate limits shared by gateway replicas through Redis, with real processes: two `chainmux run --no-indexer`
//! replicas on one PostgreSQL and one `redis-server`. A key limited to N requests a second gets about N across
//! both, not 2N; with Redis killed every request is still answered, each replica limiting on its own; with Redis
//! back the replicas share the budget again. With `redis.rpc_cache`, a finalized answer one replica fetched is
//! served by the other without an upstream call.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chainmux_testkit::{Anvil, Eth, RedisServer, TestDb, free_port};
use common::{Chainmux, Config, chainmux_command, http, metric_value, rpc_request, temp_dir, wait_synced};
use serde_json::{Value, json};

/// The key's REST limit: requests a second, and its burst.
const RPS: u64 = 5;
const BURST: u64 = 5;
/// How long each phase hammers the replicas.
const HAMMER: Duration = Duration::from_secs(4);
/// Concurrent clients per replica; each sends far more than the limit.
const CLIENTS_PER_REPLICA: usize = 3;
const WAIT: Duration = Duration::from_secs(20);

/// Answers of a hammering phase, by status.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
}

/// Sends `GET /v1/chains` with `key` to every replica from [`CLIENTS_PER_REPLICA`] clients each, back to back,
/// for [`HAMMER`]; returns each replica's tally.
async fn hammer(replicas: &[&Chainmux], key: &str) -> Vec<Arc<Tally>> {
    let deadline = Instant::now() + HAMMER;
    let tallies: Vec<Arc<Tally>> = replicas.iter().map(|_| Arc::default()).collect();
    let mut clients = Vec::new();
    for (replica, tally) in replicas.iter().zip(&tallies) {
        for _ in 0..CLIENTS_PER_REPLICA {
            let (url, key, tally, client) =
                (replica.url("/v1/chains"), key.to_owned(), tally.clone(), http());
            clients.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let counter = match client.get(&url).header("x-api-key", &key).send().await {
                        Ok(response) if response.status() == 200 => &tally.ok,
                        Ok(response) if response.status() == 429 => {
                            assert!(
                                response.headers().contains_key("retry-after"),
                                "429 without Retry-After"
                            );
                            &tally.limited
                        }
                        _ => &tally.other,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    // Still hundreds of requests a second per client, without starving the replicas of CPU.
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }));
        }
    }
    for client in clients {
        client.await.expect("client task");
    }
    tallies
}

fn sum(tallies: &[Arc<Tally>], pick: impl Fn(&Tally) -> &AtomicU64) -> u64 {
    tallies.iter().map(|t| pick(t).load(Ordering::Relaxed)).sum()
}

/// `chainmux keys create --rps RPS --burst BURST`: the printed key.
fn create_key(config: &Config) -> String {
    let path = temp_dir("redis-keys").join("chainmux.toml");
    std::fs::write(&path, config.toml(&format!("127.0.0.1:{}", free_port()))).expect("write config");
    let output = chainmux_command()
        .args([
            "keys",
            "create",
            "--name",
            "shared",
            "--rps",
            &RPS.to_string(),
            "--burst",
            &BURST.to_string(),
        ])
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run chainmux keys create");
    assert!(output.status.success(), "keys create: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Waits until `/v1/status` of `replica` reports `shared_state` = `redis`/`rate_limits` as given.
async fn wait_shared_state(replica: &mut Chainmux, redis: &str, rate_limits: &str) {
    let url = replica.url("/v1/status");
    let want = (redis.to_owned(), rate_limits.to_owned());
    replica
        .wait_for(&format!("shared_state {want:?}"), WAIT, || {
            let url = url.clone();
            let want = want.clone();
            async move {
                let (_, text) = common::get(&url).await.ok()?;
                let body: Value = serde_json::from_str(&text).ok()?;
                let shared = &body["shared_state"];
                let got = (shared["redis"].as_str()?.to_owned(), shared["rate_limits"].as_str()?.to_owned());
                (got == want).then_some(())
            }
        })
        .await;
}

/// Sends one inline command to the Redis server on `port`; its raw reply (RESP).
fn redis_command(port: u16, command: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    stream.set_read_timeout(Some(Duration::from_secs(2))).expect("read timeout");
    stream.write_all(format!("{command}\r\n").as_bytes()).expect("send to redis");
    let mut reply = [0; 4096];
    let read = stream.read(&mut reply).expect("reply from redis");
    String::from_utf8_lossy(&reply[..read]).into_owned()
}

async fn scrape(replica: &Chainmux) -> String {
    let (status, text) = common::get(&replica.url("/metrics")).await.expect("GET /metrics");
    assert_eq!(status, 200);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_key_budget_through_redis_and_fall_back_when_it_dies() {
    let anvil = Anvil::spawn().await;
    let db = TestDb::create().await;
    let mut redis = RedisServer::spawn().await;

    let mut config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    config.run_args.push("--no-indexer");
    // Anonymous calls (`/v1/status`, the key's first lookup) are not what is measured here.
    config.gateway_key("anonymous_rps", 0);
    config.env.push(("CHAINMUX_REDIS__URL".to_owned(), redis.url.clone()));
    config.env.push(("CHAINMUX_REDIS__TIMEOUT_MS".to_owned(), "100".to_owned()));
    common::migrate(&config);
    let key = create_key(&config);
    let mut a = Chainmux::start(&config).await;
    let mut b = Chainmux::start(&config).await;
    wait_shared_state(&mut a, "connected", "redis").await;
    wait_shared_state(&mut b, "connected", "redis").await;

    // --- Shared: one budget across both replicas. ------------------------------------------------------------
    let started = Instant::now();
    let tallies = hammer(&[&a, &b], &key).await;
    let seconds = started.elapsed().as_secs_f64();
    let ok = sum(&tallies, |t| &t.ok);
    let limited = sum(&tallies, |t| &t.limited);
    assert_eq!(sum(&tallies, |t| &t.other), 0, "every request got 200 or 429");
    // GCRA admits the burst, then one request every 1/RPS s: N·t + burst, give or take one interval's rounding.
    let quota = BURST as f64 + RPS as f64 * seconds;
    eprintln!("shared: {ok} admitted, {limited} refused in {seconds:.2} s (quota {quota:.1})");
    assert!(
        (ok as f64) >= quota - RPS as f64 && (ok as f64) <= quota + 2.0,
        "shared: {ok} admitted in {seconds:.2} s, expected about {quota:.0} (not 2×); {limited} refused"
    );
    assert!(limited > 10 * ok, "the clients sent far more than the limit: {ok} ok, {limited} limited");
    for (name, tally) in ["a", "b"].iter().zip(&tallies) {
        assert!(tally.ok.load(Ordering::Relaxed) > 0, "replica {name} admitted requests too");
    }
    for replica in [&a, &b] {
        let text = scrape(replica).await;
        assert_eq!(metric_value(&text, "chainmux_redis_up", &[]), Some(1.0));
        assert!(metric_value(&text, "chainmux_rate_limit_checks_total", &[("backend", "redis")]) > Some(0.0));
    }

    // --- Redis killed: every request is still answered, each replica limiting on its own. --------------------
    redis.kill();
    wait_shared_state(&mut a, "unreachable", "local").await;
    wait_shared_state(&mut b, "unreachable", "local").await;
    let started = Instant::now();
    let tallies = hammer(&[&a, &b], &key).await;
    let seconds = started.elapsed().as_secs_f64();
    let ok = sum(&tallies, |t| &t.ok);
    assert_eq!(sum(&tallies, |t| &t.other), 0, "no request fails because Redis is down");
    let quota = BURST as f64 + RPS as f64 * seconds;
    eprintln!("local: {ok} admitted in {seconds:.2} s (quota per replica {quota:.1})");
    for (name, tally) in ["a", "b"].iter().zip(&tallies) {
        let ok = tally.ok.load(Ordering::Relaxed) as f64;
        assert!(
            ok >= quota - RPS as f64 && ok <= quota + 2.0,
            "replica {name} alone: {ok} admitted in {seconds:.2} s, expected about {quota:.0}"
        );
    }
    assert!(ok as f64 > quota * 1.5, "local limits are per replica: {ok} in total");
    for replica in [&a, &b] {
        let text = scrape(replica).await;
        assert_eq!(metric_value(&text, "chainmux_redis_up", &[]), Some(0.0));
        assert!(metric_value(&text, "chainmux_redis_errors_total", &[]) > Some(0.0));
        assert!(metric_value(&text, "chainmux_rate_limit_checks_total", &[("backend", "local")]) > Some(0.0));
    }
    let log = a.log();
    assert!(log.contains("redis unreachable"), "the fallback is logged:\n{log}");

    // --- Redis back (empty, same address): the replicas share the budget again. ------------------------------
    let _redis = RedisServer::spawn_on_port(redis.port).await;
    wait_shared_state(&mut a, "connected", "redis").await;
    wait_shared_state(&mut b, "connected", "redis").await;
    let tallies = hammer(&[&a, &b], &key).await;
    let ok = sum(&tallies, |t| &t.ok) as f64;
    assert!(ok <= BURST as f64 + RPS as f64 * (HAMMER.as_secs_f64() + 0.5) + 2.0, "shared again: {ok}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finalized_answer_fetched_by_one_replica_is_served_by_the_other() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let db = TestDb::create().await;
    let redis = RedisServer::spawn().await;

    // An indexer stores the heads, from which the gateway replicas learn what is finalized.
    let mut indexer = Config::new(&db.url, &[("anvil", &anvil.url)]);
    indexer.chain_key("finality_confirmations", 3);
    indexer.run_args.push("--no-gateway");
    common::migrate(&indexer);
    let _indexer = Chainmux::spawn(&indexer);
    let mut config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    config.run_args.push("--no-indexer");
    config.gateway_key("anonymous_rpc_rps", 0);
    config.env.push(("CHAINMUX_REDIS__URL".to_owned(), redis.url.clone()));
    config.env.push(("CHAINMUX_REDIS__RPC_CACHE".to_owned(), "true".to_owned()));
    let mut a = Chainmux::start(&config).await;
    let mut b = Chainmux::start(&config).await;
    eth.request("anvil_mine", json!([10])).await;
    wait_synced(&mut a, &eth).await;
    for replica in [&mut a, &mut b] {
        let url = replica.url("/metrics");
        replica
            .wait_for("block 1 finalized and redis connected", WAIT, || {
                let url = url.clone();
                async move {
                    let (_, text) = common::get(&url).await.ok()?;
                    let floor =
                        metric_value(&text, "chainmux_rpc_cache_finalized_block", &[("chain", "local")])?;
                    let up = metric_value(&text, "chainmux_redis_up", &[])?;
                    (floor >= 1.0 && up == 1.0).then_some(())
                }
            })
            .await;
    }
    let status = b.get_json("/v1/status").await;
    assert_eq!(status["shared_state"]["rpc_cache"], "redis", "{status}");

    let request = rpc_request(1, "eth_getBlockByNumber", json!(["0x1", false]));
    let (headers, first) = a.rpc_with_headers(&request).await;
    assert_eq!(headers["x-chainmux-cache"], "miss");
    // The write is in the background, so b is asked only once it is in Redis (else b would fetch and cache the
    // answer itself, and the test would prove nothing).
    let deadline = Instant::now() + WAIT;
    while !redis_command(redis.port, "KEYS chainmux:rpc:*").starts_with("*1\r\n") {
        assert!(Instant::now() < deadline, "a never shared its answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (headers, answer) = b.rpc_with_headers(&request).await;
    assert_eq!(
        (&headers["x-chainmux-cache"], &headers["x-chainmux-upstream"]),
        (&"hit".parse().expect("header"), &"cache".parse().expect("header"))
    );
    assert_eq!(answer, first);
    let text = scrape(&b).await;
    let shared_hits = [("chain", "local"), ("result", "shared_hit")];
    assert_eq!(metric_value(&text, "chainmux_rpc_cache_total", &shared_hits), Some(1.0));
}
