//! Operator health views against a real `chainmux run`: one anvil behind two fault proxies (`primary` and
//! `secondary`), killed and restored one after the other. `/v1/status`, the `chainmux_upstream_*` gauges,
//! `/v1/chains/local/health` and `chainmux status` must all tell the same story, including the indexer's error
//! while every upstream is down. And a flood of health probes costs a bounded number of store reads.

mod common;

use std::time::Duration;

use chainmux_testkit::Fault;
use common::{Chainmux, ProxiedPair, chainmux_command, get, wait_synced};
use serde_json::Value;

const PROBE_INTERVAL_MS: u64 = 100;
/// Long enough that a killed upstream's open circuit is seen as `excluded` for a while, short enough to recover.
const BREAKER_COOLDOWN_MS: u64 = 1500;
/// How long a state change may take to show up (a few probe intervals, with margin for a loaded machine).
const VIEW_WAIT: Duration = Duration::from_secs(15);

/// `GET {base}/v1/chains/local/health`: status code and body.
async fn chain_health(base: &str) -> (u16, Value) {
    let url = format!("{base}/v1/chains/local/health");
    let (status, body) = get(&url).await.unwrap_or_else(|err| panic!("GET {url}: {err}"));
    let body =
        serde_json::from_str(&body).unwrap_or_else(|err| panic!("GET {url}: not JSON ({err}): {body}"));
    (status, body)
}

fn chain(status: &Value) -> &Value {
    status["chains"]
        .as_array()
        .and_then(|chains| chains.iter().find(|c| c["name"] == "local"))
        .unwrap_or_else(|| panic!("/v1/status has no chain local: {status}"))
}

fn upstream<'a>(status: &'a Value, name: &str) -> &'a Value {
    chain(status)["upstreams"]
        .as_array()
        .and_then(|upstreams| upstreams.iter().find(|u| u["name"] == name))
        .unwrap_or_else(|| panic!("/v1/status has no upstream {name}: {status}"))
}

fn has_incident(status: &Value, kind: &str, upstream: &str) -> bool {
    status["incidents"]
        .as_array()
        .is_some_and(|all| all.iter().any(|i| i["kind"] == kind && i["upstream"] == upstream))
}

#[tokio::test]
async fn killed_upstreams_show_in_status_metrics_incidents_and_chain_health() {
    let ProxiedPair { anvil: _anvil, db, eth, primary, secondary, mut config } =
        ProxiedPair::start(PROBE_INTERVAL_MS, BREAKER_COOLDOWN_MS).await;
    config.chain_key("health_max_lag_blocks", 5).chain_key("health_max_lag_seconds", 30);
    let mut chainmux = Chainmux::start(&config).await;
    let head = wait_synced(&mut chainmux, &eth).await;
    // The polling closures below read through this, not through `chainmux` (which `wait_for` borrows).
    let base = chainmux.base.clone();
    let base = base.as_str();

    // All well: both upstreams healthy, the chain healthy, no incident.
    let status = status_of(base).await;
    assert_eq!(chain(&status)["indexed_head"], head, "{status}");
    assert_eq!(chain(&status)["kind"], "evm", "{status}");
    let (code, health) = chain_health(base).await;
    assert_eq!((code, &health["status"]), (200, &Value::from("ok")), "{health}");
    assert_eq!(health["max_lag_blocks"], 5, "{health}");
    assert_eq!(health["max_lag_seconds"], 30.0, "{health}");

    // The primary dies: within a few probes it is excluded with its reason, the gauges say so, an incident is
    // listed, and the chain stays healthy on the secondary.
    primary.set(Fault::Refuse).await;
    let status = chainmux
        .wait_for("the primary excluded in /v1/status, with an incident", VIEW_WAIT, || async {
            let status = status_of(base).await;
            (upstream(&status, "primary")["state"] == "excluded"
                && has_incident(&status, "upstream_excluded", "primary"))
            .then_some(status)
        })
        .await;
    let dead = upstream(&status, "primary");
    assert_eq!(dead["reason"], "circuit open", "{status}");
    assert_eq!(dead["breaker"], "open", "{status}");
    assert_eq!(upstream(&status, "secondary")["state"], "healthy", "{status}");
    let labels = [("chain", "local"), ("upstream", "primary")];
    chainmux
        .wait_for("chainmux_upstream_up of the primary at 0", VIEW_WAIT, || async {
            (metric(base, "chainmux_upstream_up", &labels).await == Some(0.0)).then_some(())
        })
        .await;
    let secondary_up = [("chain", "local"), ("upstream", "secondary")];
    assert_eq!(metric(base, "chainmux_upstream_up", &secondary_up).await, Some(1.0));
    let changes = [("chain", "local"), ("upstream", "primary"), ("to", "excluded")];
    assert!(metric(base, "chainmux_upstream_state_changes_total", &changes).await >= Some(1.0));
    // The probe's answer is reused for a moment, so it may say 2 a little longer.
    let (code, health) = chainmux
        .wait_for("chain health with one healthy upstream", VIEW_WAIT, || async {
            let (code, health) = chain_health(base).await;
            (health["healthy_upstreams"] == 1).then_some((code, health))
        })
        .await;
    assert_eq!(code, 200, "one healthy upstream is enough: {health}");
    // The indexer keeps following the chain on the secondary.
    eth.mine(2).await;
    wait_synced(&mut chainmux, &eth).await;

    // `chainmux status` shows the chain, both upstreams and the incident, without colour (not a terminal).
    let output = chainmux_command()
        .args(["status", "--url", base])
        .output()
        .unwrap_or_else(|err| panic!("cannot run chainmux status: {err}"));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "chainmux status failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(!table.contains('\x1b'), "colour codes on a pipe:\n{table}");
    let first_word = |name: &str| table.lines().find(|l| l.split_whitespace().next() == Some(name));
    assert!(first_word("local").is_some_and(|l| l.contains("ok")), "status output:\n{table}");
    assert!(first_word("secondary").is_some_and(|l| l.contains("healthy")), "status output:\n{table}");
    assert!(
        first_word("primary").is_some_and(|l| l.contains("excluded") || l.contains("down")),
        "status output:\n{table}"
    );
    assert!(
        table.lines().any(|l| l.contains("upstream_excluded") && l.contains("primary")),
        "status output lacks the incident:\n{table}"
    );

    // The secondary dies too: the indexer is stalled, the chain unhealthy, and it says why.
    secondary.set(Fault::Refuse).await;
    let health = chainmux
        .wait_for("chain health 503 with both upstreams down", VIEW_WAIT, || async {
            let (code, health) = chain_health(base).await;
            (code == 503).then_some(health)
        })
        .await;
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert_eq!(health["healthy_upstreams"], 0, "{health}");
    let reasons = health["reasons"].to_string();
    assert!(reasons.contains("no healthy upstream"), "{health}");
    // The indexer's failing requests are an incident, and the chain shows the error, from the database (where a
    // replica that does not index the chain would read it too); upstream URLs never appear in it.
    let status = chainmux
        .wait_for("an indexer error in /v1/status", VIEW_WAIT, || async {
            let status = status_of(base).await;
            (has_kind(&status, "indexer_error") && !chain(&status)["indexer_error"].is_null())
                .then_some(status)
        })
        .await;
    let error = &chain(&status)["indexer_error"];
    let message = error["message"].as_str().unwrap_or_default();
    assert!(["heads: ", "fetch: "].iter().any(|stage| message.starts_with(stage)), "{status}");
    assert!(error["since"].as_u64().is_some_and(|since| since > 0), "{status}");
    let incident = status.to_string();
    for url in [&primary.url, &secondary.url] {
        assert!(!incident.contains(url.as_str()), "an upstream URL in /v1/status: {status}");
    }
    let stored: Option<String> = sqlx::query_scalar("SELECT indexer_error FROM chains WHERE name = 'local'")
        .fetch_one(&db_pool(&db.url).await)
        .await
        .expect("read chains");
    assert_eq!(stored.as_deref(), Some(message), "the error comes from the database");
    let output = chainmux_command()
        .args(["status", "--url", base])
        .output()
        .unwrap_or_else(|err| panic!("cannot run chainmux status: {err}"));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.lines().any(|l| l.trim_start().starts_with("indexer error")), "status output:\n{table}");
    eth.mine(3).await;
    // Still 503 while they stay down: the new blocks cannot be indexed.
    assert_eq!(chain_health(base).await.0, 503);

    // Both come back: the indexer catches up and the chain is healthy again; the recoveries are incidents.
    primary.set(Fault::None).await;
    secondary.set(Fault::None).await;
    let head = wait_synced(&mut chainmux, &eth).await;
    let health = chainmux
        .wait_for("chain health 200 after recovery", VIEW_WAIT, || async {
            let (code, health) = chain_health(base).await;
            (code == 200).then_some(health)
        })
        .await;
    assert_eq!(health["reasons"], serde_json::json!([]), "{health}");
    let status = chainmux
        .wait_for("both upstreams restored and the indexer recovered in /v1/status", VIEW_WAIT, || async {
            let status = status_of(base).await;
            (has_incident(&status, "upstream_restored", "primary")
                && has_incident(&status, "upstream_restored", "secondary")
                && has_kind(&status, "indexer_recovered")
                && chain(&status)["indexer_error"].is_null())
            .then_some(status)
        })
        .await;
    assert!(chain(&status)["indexed_head"].as_u64() >= Some(head), "{status}");
    assert!(chain(&status)["blocks_per_second"].as_f64().is_some(), "{status}");
    // Newest first.
    let times: Vec<u64> =
        status["incidents"].as_array().into_iter().flatten().filter_map(|i| i["at"].as_u64()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "incidents out of order: {times:?}");
}

fn has_kind(status: &Value, kind: &str) -> bool {
    status["incidents"].as_array().is_some_and(|all| all.iter().any(|i| i["kind"] == kind))
}

async fn db_pool(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .expect("connect to the test database")
}

/// Chain-state reads of the gateway waiting for a lock on `chains`, in the test database.
async fn waiting_state_reads(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND query LIKE '%FROM chains c%'",
    )
    .fetch_one(pool)
    .await
    .expect("read pg_stat_activity")
}

/// `/v1/chains/{chain}/health` is open: however many probes arrive, one computation at a time reads the store
/// and its answer serves the probes for a moment. With the `chains` table locked, every read of the chain's
/// state waits in Postgres, where it can be counted: a flood of concurrent probes must leave only a few waiting
/// (the probe's own and the background trackers'), not one per probe.
#[tokio::test]
async fn a_flood_of_health_probes_costs_a_bounded_number_of_store_reads() {
    const PROBERS: usize = 24;
    let ProxiedPair { anvil: _anvil, db, eth, primary: _primary, secondary: _secondary, mut config } =
        ProxiedPair::start(PROBE_INTERVAL_MS, BREAKER_COOLDOWN_MS).await;
    // Enough connections that every prober could hold one: the bound must come from the gateway, not the pool.
    config.env.push(("CHAINMUX_DATABASE__MAX_CONNECTIONS".to_owned(), "40".to_owned()));
    let mut chainmux = Chainmux::start(&config).await;
    let head = wait_synced(&mut chainmux, &eth).await;
    let base = chainmux.base.clone();

    chainmux
        .wait_for("chain health 200", VIEW_WAIT, || async {
            (chain_health(&base).await.0 == 200).then_some(())
        })
        .await;
    // Concurrent probes get whole answers whose code agrees with their body.
    let probes: Vec<(u16, Value)> =
        futures_util::future::join_all((0..PROBERS).map(|_| chain_health(&base))).await;
    for (code, health) in &probes {
        assert_eq!(health["chain"], "local", "{health}");
        let expected = if health["status"] == "ok" { 200 } else { 503 };
        assert_eq!(*code, expected, "{health}");
    }
    assert_eq!(chain(&status_of(&base).await)["indexed_head"], head);

    // Lock `chains`; after the reuse period, flood the probe.
    let pool = db_pool(&db.url).await;
    let mut lock = pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE chains IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.expect("lock chains");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let flood = tokio::spawn({
        // One client: its kept-alive connections carry the flood, as a load balancer's would.
        let client = common::http();
        let url = format!("{base}/v1/chains/local/health");
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
            futures_util::future::join_all((0..PROBERS).map(|_| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let mut answered = Vec::new();
                    while tokio::time::Instant::now() < deadline {
                        let response = client.get(&url).send().await;
                        let response = response.unwrap_or_else(|err| panic!("GET {url}: {err}"));
                        answered.push(response.status().as_u16());
                    }
                    answered
                }
            }))
            .await
        }
    });
    let observer = db_pool(&db.url).await;
    let mut most_waiting = 0;
    while !flood.is_finished() {
        most_waiting = most_waiting.max(waiting_state_reads(&observer).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lock.rollback().await.expect("unlock chains");
    let answered = flood.await.expect("probers");
    // Healthy from a reused answer, or 503 once the store did not answer in time; never an error of another kind.
    for codes in &answered {
        assert!(!codes.is_empty() && codes.iter().all(|c| [200, 503].contains(c)), "{answered:?}");
    }
    // One probe computation, the status tracker and the cache's finality tracker; a timed-out read of each may
    // still wait in Postgres next to its successor.
    assert!(most_waiting <= 6, "{most_waiting} chain-state reads waited at once for {PROBERS} probers");

    // With the table free again, the probe soon answers healthy again.
    chainmux
        .wait_for("chain health 200 after the lock", VIEW_WAIT, || async {
            (chain_health(&base).await.0 == 200).then_some(())
        })
        .await;
}

/// `GET {base}/v1/status`.
async fn status_of(base: &str) -> Value {
    common::json_get(&format!("{base}/v1/status")).await
}

/// The sum of the `/metrics` series `name` with `labels`.
async fn metric(base: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (_, text) = get(&format!("{base}/metrics")).await.ok()?;
    common::metric_value(&text, name, labels)
}
