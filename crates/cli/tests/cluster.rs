//! Several replicas of the real `chainmux` binary on one database: leadership per chain through PostgreSQL
//! advisory locks, takeover when the leader dies or loses its database session, and a rolling restart behind a load
//! balancer under steady load.
//!
//! What is checked: exactly one replica writes a chain at a time (the leadership terms' written ranges never
//! overlap), a SIGKILLed leader is replaced within the configured window and the final tables equal an
//! uninterrupted run's row for row; a leader whose lock session is terminated stops writing and another replica
//! takes over; restarting both replicas one after the other behind a load balancer that follows `/ready` fails no
//! request.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chainmux_testkit::{Anvil, Eth, TestDb, populate_transfers};
use common::{Chainmux, Config, connect, cursor, dump, http};
use serde_json::json;
use tokio::sync::RwLock;

/// `cluster.leader_poll_ms` of every replica here.
const LEADER_POLL_MS: u64 = 200;
/// Longest a takeover may take: a few polls (the lock is free as soon as the server sees the session end).
const TAKEOVER_WINDOW: Duration = Duration::from_secs(5);

fn replica(config: &Config, name: &str) -> Config {
    let mut config = config.clone();
    config.env.push(("CHAINMUX_CLUSTER__REPLICA_ID".into(), name.into()));
    config.env.push(("CHAINMUX_CLUSTER__LEADER_POLL_MS".into(), LEADER_POLL_MS.to_string()));
    config
}

/// The recorded leader of chain `local`: holder and epoch.
async fn leader(pool: &sqlx::PgPool) -> Option<(String, i64)> {
    sqlx::query_as::<_, (Option<String>, i64)>(
        "SELECT holder, epoch FROM chain_leaders WHERE chain = 'local'",
    )
    .fetch_optional(pool)
    .await
    .expect("reading chain_leaders")
    .and_then(|(holder, epoch)| Some((holder?, epoch)))
}

/// Waits for a leader other than `not` (any, when `None`) with an epoch above `after`.
async fn wait_leader(pool: &sqlx::PgPool, not: Option<&str>, after: i64, within: Duration) -> (String, i64) {
    let started = Instant::now();
    loop {
        if let Some((holder, epoch)) = leader(pool).await
            && epoch > after
            && Some(holder.as_str()) != not
        {
            return (holder, epoch);
        }
        assert!(
            started.elapsed() < within,
            "no new leader (other than {not:?}, epoch > {after}) within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Leadership terms of chain `local` that wrote something: (epoch, holder, first block, last block), by epoch.
async fn writing_terms(pool: &sqlx::PgPool) -> Vec<(i64, String, i64, i64)> {
    sqlx::query_as(
        "SELECT epoch, holder, first_block, last_block FROM leader_terms \
         WHERE chain = 'local' AND batches > 0 ORDER BY epoch",
    )
    .fetch_all(pool)
    .await
    .expect("reading leader_terms")
}

/// Every term wrote blocks above everything the terms before it wrote: no block by two leaders, none twice.
fn assert_terms_disjoint(terms: &[(i64, String, i64, i64)]) {
    for pair in terms.windows(2) {
        let ((epoch_a, holder_a, _, last_a), (epoch_b, holder_b, first_b, _)) = (&pair[0], &pair[1]);
        assert!(
            first_b > last_a,
            "term {epoch_b} ({holder_b}) wrote from block {first_b}, not above term {epoch_a} ({holder_a})'s last \
             block {last_a}: {terms:?}"
        );
    }
}

async fn wait_cursor(pool: &sqlx::PgPool, head: u64, within: Duration) {
    let started = Instant::now();
    while cursor(pool, "local").await != Some(head as i64) {
        assert!(
            started.elapsed() < within,
            "cursor {:?} did not reach {head} within {within:?}",
            cursor(pool, "local").await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_the_tables_equal_an_uninterrupted_run() {
    const ROUNDS: usize = 10;
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    populate_transfers(&eth, ROUNDS).await;
    eth.mine(1500).await;
    populate_transfers(&eth, ROUNDS).await;
    let head = eth.block_number().await;

    let db = TestDb::create().await;
    let pool = connect(&db.url).await;
    let mut config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    config.batch_size = 10;
    let mut replicas: Vec<(String, Chainmux)> = Vec::new();
    for name in ["r1", "r2", "r3"] {
        replicas.push((name.to_owned(), Chainmux::start(&replica(&config, name)).await));
    }

    // Kill the leader mid-backfill.
    let (first_leader, first_epoch) = wait_leader(&pool, None, 0, Duration::from_secs(30)).await;
    let started = Instant::now();
    while cursor(&pool, "local").await.is_none_or(|c| c < 300) {
        assert!(started.elapsed() < Duration::from_secs(60), "the leader indexed nothing within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at = replicas.iter().position(|(name, _)| *name == first_leader).expect("the leader is one of ours");
    let (_, mut killed) = replicas.remove(at);
    killed.kill();
    let killed_at = Instant::now();
    let killed_cursor = cursor(&pool, "local").await.expect("a cursor");
    assert!(
        killed_cursor < head as i64 - 100,
        "backfill finished before the kill; the test needs a longer chain"
    );

    let (next_leader, next_epoch) =
        wait_leader(&pool, Some(&first_leader), first_epoch, TAKEOVER_WINDOW).await;
    eprintln!(
        "leader {first_leader} killed at cursor {killed_cursor}; {next_leader} took over (epoch {next_epoch}) after \
         {:?}",
        killed_at.elapsed()
    );
    wait_cursor(&pool, head, Duration::from_secs(120)).await;
    let status = common::json_get(&replicas[0].1.url("/v1/status")).await;
    let chain = status["chains"].as_array().and_then(|c| c.iter().find(|c| c["name"] == "local")).cloned();
    assert_eq!(
        chain.as_ref().map(|c| c["leader"]["replica"].clone()),
        Some(json!(next_leader)),
        "/v1/status names the leader: {status}"
    );

    // An uninterrupted single run on another database, for comparison.
    let reference_db = TestDb::create().await;
    let reference_pool = connect(&reference_db.url).await;
    let mut reference_config = Config::new(&reference_db.url, &[("anvil", &anvil.url)]);
    reference_config.batch_size = 100;
    let mut reference = Chainmux::start(&reference_config).await;
    reference.wait_indexed(head).await;
    drop(reference);
    drop(replicas);

    let terms = writing_terms(&pool).await;
    assert!(terms.len() >= 2, "the killed leader and its successor both wrote: {terms:?}");
    assert_terms_disjoint(&terms);
    let (a, b) = (dump(&pool).await, dump(&reference_pool).await);
    assert_eq!(a["blocks"].len() as u64, head + 1);
    for (table, rows) in &a {
        assert!(
            rows == &b[table],
            "{table} differs from the uninterrupted run ({} vs {} rows)",
            rows.len(),
            b[table].len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lock_session_is_terminated_stops_writing_and_another_takes_over() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    eth.mine(20).await;
    let db = TestDb::create().await;
    let pool = connect(&db.url).await;
    let config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    let mut a = Chainmux::start(&replica(&config, "ra")).await;
    let mut b = Chainmux::start(&replica(&config, "rb")).await;
    let (old, old_epoch) = wait_leader(&pool, None, 0, Duration::from_secs(30)).await;
    wait_cursor(&pool, eth.block_number().await, Duration::from_secs(30)).await;

    // Cut the leader's lock session, as a network partition or a DBA would.
    let application = chainmux_store::leader_application_name("local", &old);
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(&application)
    .fetch_all(&pool)
    .await
    .expect("terminating the lock session");
    assert_eq!(terminated, vec![true], "exactly one lock session named {application:?}");
    let (new, _) = wait_leader(&pool, Some(&old), old_epoch, TAKEOVER_WINDOW).await;

    // The new leader indexes what comes next; the old one wrote nothing after it lost its session.
    let old_term_end: Option<i64> =
        sqlx::query_scalar("SELECT last_block FROM leader_terms WHERE chain = 'local' AND epoch = $1")
            .bind(old_epoch)
            .fetch_one(&pool)
            .await
            .expect("the old term");
    eth.mine(30).await;
    wait_cursor(&pool, eth.block_number().await, Duration::from_secs(30)).await;
    let terms = writing_terms(&pool).await;
    assert_terms_disjoint(&terms);
    let old_term = terms.iter().find(|t| t.0 == old_epoch).map(|t| t.3);
    assert_eq!(old_term, old_term_end, "the old leader wrote after losing its lock session: {terms:?}");
    assert!(terms.iter().any(|t| t.1 == new), "the new leader {new} wrote the new blocks: {terms:?}");
    let old_process = if old == "ra" { &mut a } else { &mut b };
    assert!(old_process.exited().is_none(), "the old leader keeps running, as a follower");
    old_process.wait_for_log("lost the chain's lock", Duration::from_secs(5)).await;
}

/// A load balancer in front of the replicas: sends each request to the next backend whose `/ready` answered 200 at
/// the last check (every 50 ms), on a fresh connection, as a Kubernetes Service or an L7 proxy following readiness.
#[derive(Clone)]
struct Balancer {
    backends: Arc<RwLock<Vec<(String, bool)>>>,
    next: Arc<AtomicU64>,
    client: reqwest::Client,
}

impl Balancer {
    async fn start(backends: Vec<String>) -> (Balancer, String, tokio::task::JoinHandle<()>) {
        let balancer = Balancer {
            backends: Arc::new(RwLock::new(backends.into_iter().map(|b| (b, false)).collect())),
            next: Arc::new(AtomicU64::new(0)),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
        };
        let checker = balancer.clone();
        let health = tokio::spawn(async move {
            loop {
                let current: Vec<String> =
                    checker.backends.read().await.iter().map(|(b, _)| b.clone()).collect();
                let mut states = Vec::new();
                for backend in current {
                    let ready = matches!(
                        checker.client.get(format!("{backend}/ready")).timeout(Duration::from_millis(200)).send().await,
                        Ok(response) if response.status() == 200
                    );
                    states.push((backend, ready));
                }
                // Only the readiness: the list may have changed meanwhile (a replaced backend).
                for entry in checker.backends.write().await.iter_mut() {
                    if let Some((_, ready)) = states.iter().find(|(backend, _)| *backend == entry.0) {
                        entry.1 = *ready;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the balancer");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let router = axum::Router::new().fallback(forward).with_state(balancer.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (balancer, url, health)
    }

    async fn replace(&self, old: &str, new: &str) {
        for entry in self.backends.write().await.iter_mut() {
            if entry.0 == old {
                *entry = (new.to_owned(), false);
            }
        }
    }

    async fn ready(&self, backend: &str) -> bool {
        self.backends.read().await.iter().any(|(b, ready)| b == backend && *ready)
    }
}

async fn forward(
    State(balancer): State<Balancer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ready: Vec<String> =
        balancer.backends.read().await.iter().filter(|(_, ready)| *ready).map(|(b, _)| b.clone()).collect();
    if ready.is_empty() {
        return (StatusCode::SERVICE_UNAVAILABLE, "no ready backend").into_response();
    }
    let backend = &ready[(balancer.next.fetch_add(1, Ordering::Relaxed) as usize) % ready.len()];
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = balancer.client.request(method, format!("{backend}{path}")).body(body);
    if let Some(content_type) = headers.get("content-type") {
        request = request.header("content-type", content_type);
    }
    match request.send().await {
        Ok(response) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = response.bytes().await.unwrap_or_default();
            (status, [("x-backend", backend.clone())], body).into_response()
        }
        Err(err) => (StatusCode::BAD_GATEWAY, format!("{backend}: {err}")).into_response(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_behind_a_load_balancer_fails_no_request() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    eth.mine(10).await;
    let db = TestDb::create().await;
    let pool = connect(&db.url).await;
    let mut config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    // Longer than the balancer's readiness checks, so it stops routing to a draining replica before it closes.
    config.drain_delay_ms = 500;
    // All load comes from one address (the balancer's); the anonymous per-IP limits would refuse most of it.
    config.gateway_key("anonymous_rps", 0).gateway_key("anonymous_rpc_rps", 0);
    let configs = [replica(&config, "ra"), replica(&config, "rb")];
    let mut replicas = vec![Chainmux::start(&configs[0]).await, Chainmux::start(&configs[1]).await];
    wait_cursor(&pool, eth.block_number().await, Duration::from_secs(30)).await;
    let (balancer, url, _health) = Balancer::start(replicas.iter().map(|r| r.base.clone()).collect()).await;
    for replica in &replicas {
        wait_ready(&balancer, &replica.base).await;
    }

    // Steady load: four clients, REST and JSON-RPC, through the balancer.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let served = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for client in 0..4u64 {
        let (stop, failures, served, url) = (stop.clone(), failures.clone(), served.clone(), url.clone());
        clients.push(tokio::spawn(async move {
            let http = http();
            let mut n = client;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let request = if n % 2 == 0 {
                    http.get(format!("{url}/v1/chains/local/blocks/1"))
                } else {
                    http.post(format!("{url}/rpc/local"))
                        .header("content-type", "application/json")
                        .body(json!({"jsonrpc": "2.0", "id": n, "method": "eth_blockNumber"}).to_string())
                };
                match request.send().await {
                    Ok(response) if response.status() == 200 => {
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(response) => {
                        let status = response.status();
                        let body = response.text().await.unwrap_or_default();
                        failures.lock().expect("failures").push(format!("{status}: {body}"));
                    }
                    Err(err) => failures.lock().expect("failures").push(err.to_string()),
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, config) in configs.iter().enumerate() {
        let before = served.load(Ordering::Relaxed);
        replicas[i].terminate();
        let status = replicas[i].wait_exit(Duration::from_secs(20)).await;
        assert!(status.is_some_and(|s| s.success()), "replica {i} did not exit cleanly: {status:?}");
        let restarted = Chainmux::start(config).await;
        balancer.replace(&replicas[i].base, &restarted.base).await;
        wait_ready(&balancer, &restarted.base).await;
        replicas[i] = restarted;
        assert!(served.load(Ordering::Relaxed) > before, "requests were served while replica {i} restarted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a load client");
    }
    let failures = failures.lock().expect("failures").clone();
    let served = served.load(Ordering::Relaxed);
    eprintln!("rolling restart: {served} requests served, {} failed", failures.len());
    assert!(served > 100, "too little load to prove anything: {served} requests");
    assert!(
        failures.is_empty(),
        "{} requests failed during the rolling restart: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    // Leadership moved with the restarts, and indexing goes on.
    eth.mine(5).await;
    wait_cursor(&pool, eth.block_number().await, Duration::from_secs(30)).await;
    assert_terms_disjoint(&writing_terms(&pool).await);
}

async fn wait_ready(balancer: &Balancer, backend: &str) {
    let started = Instant::now();
    while !balancer.ready(backend).await {
        assert!(started.elapsed() < Duration::from_secs(20), "{backend} never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gateway-only replica can serve from a read-only database (as a streaming replica is): it checks the schema
/// instead of migrating. An indexer refuses such a database, and so does a gateway when the schema lacks a migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_replica_serves_from_a_read_only_database() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    eth.mine(5).await;
    let db = TestDb::create().await;
    let pool = connect(&db.url).await;
    let config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    let writer = Chainmux::start(&config).await;
    wait_cursor(&pool, eth.block_number().await, Duration::from_secs(30)).await;
    drop(writer);
    let name: String =
        sqlx::query_scalar("SELECT current_database()").fetch_one(&pool).await.expect("db name");
    // Through the server's admin database: sessions of this one opened while it is read-only stay read-only. The
    // name is the test database's own (`current_database()`), quoted.
    let admin = connect(&chainmux_testkit::admin_url()).await;
    let read_only = |on: bool| format!("ALTER DATABASE \"{name}\" SET default_transaction_read_only = {on}");
    sqlx::query(sqlx::AssertSqlSafe(read_only(true)))
        .execute(&admin)
        .await
        .expect("making the database read-only");

    let mut gateway_only = config.clone();
    gateway_only.run_args.push("--no-indexer");
    let gateway = Chainmux::start(&gateway_only).await;
    let (status, body) = common::get(&gateway.url("/v1/chains/local/blocks/1")).await.expect("GET block 1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(common::get(&gateway.url("/ready")).await.expect("GET /ready").0, 200);
    assert!(gateway.log().contains("serving only, without migrating"), "{}", gateway.log());
    drop(gateway);

    let mut indexer = Chainmux::spawn(&config);
    let status = indexer.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| !s.success()), "an indexer started on a read-only database");
    assert!(indexer.log().contains("the database is read-only"), "{}", indexer.log());

    // The primary has not applied the newest migration: the replica says so instead of serving a wrong schema.
    sqlx::query(sqlx::AssertSqlSafe(read_only(false)))
        .execute(&admin)
        .await
        .expect("making the database writable");
    let writable = connect(&db.url).await;
    let newest: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&writable)
        .await
        .expect("the newest migration");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(newest)
        .execute(&writable)
        .await
        .expect("forgetting the newest migration");
    writable.close().await;
    sqlx::query(sqlx::AssertSqlSafe(read_only(true)))
        .execute(&admin)
        .await
        .expect("making the database read-only");
    let mut behind = Chainmux::spawn(&gateway_only);
    let status = behind.wait_exit(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| !s.success()), "a gateway started on a schema missing a migration");
    assert!(behind.log().contains(&format!("lacks migrations [{newest}]")), "{}", behind.log());
    sqlx::query(sqlx::AssertSqlSafe(read_only(false)))
        .execute(&admin)
        .await
        .expect("making the database writable");
}
