//! The operator assets in `deploy/` checked against the real binary: `chainmux run` indexes anvil on a real
//! Postgres while the test drives every subsystem (REST, `/rpc` with a cache hit, an auth failure, a rate-limit
//! rejection, an SSE feed, a WebSocket subscription, a reorg); then `/metrics` is scraped and
//!
//! - the Grafana dashboard parses, uses the `DS_PROMETHEUS` data-source variable and the `chain` variable, has the
//!   four rows, and every `chainmux_*` series its queries name is in the scrape;
//! - the Prometheus rules parse, each has `for`, a severity and `summary`/`description`/`runbook` annotations,
//!   every series their expressions name is in the scrape, and `deploy/prometheus.yml` loads them;
//! - a series missing from the scrape is accepted only from [`ON_EVENT`], each a literal in the binary's source;
//! - the README's Metrics section lists every metric family of the scrape, and nothing the source does not emit;
//! - `promtool` accepts the rules and passes their unit tests (`deploy/prometheus/alerts.test.yml`: each alert
//!   fires on series made for it and stays quiet on the others).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chainmux_testkit::{Anvil, Eth, TestDb, populate_transfers};
use common::{Chainmux, Config, http, metric_value, rpc_request, wait_synced};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);
/// Confirmations before a block counts as final: small, so the RPC cache keeps block 1, and larger than the reorg.
const CONFIRMATIONS: u64 = 4;
const REORG_DEPTH: u64 = 2;

/// Series the dashboard or the alerts use that this test's run does not produce, because each is only emitted
/// when its event happens. Each must still be a string literal in the non-test source.
const ON_EVENT: &[(&str, &str)] = &[
    (
        "chainmux_upstream_retries_total",
        "only when an upstream attempt is retried, which a healthy anvil never needs",
    ),
    (
        "chainmux_upstream_hedges_total",
        "only when a hedge is sent, i.e. the primary is slower than its hedge delay",
    ),
    ("chainmux_upstream_breaker_transitions_total", "only when a circuit breaker opens or closes"),
    ("chainmux_upstream_state_changes_total", "only when an upstream turns down, excluded or healthy again"),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// Every `chainmux_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("chainmux_") {
        let tail = &rest[start..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        // The bare prefix (as in "names start with `chainmux_`") names no metric.
        if end > "chainmux_".len() {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The sample names of a Prometheus text exposition (histograms give `_bucket`, `_sum` and `_count`).
fn scraped_series(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

/// The metric families of a scrape, from its `# TYPE name type` lines.
fn scraped_families(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The family a series belongs to: the name without a histogram suffix.
fn family(series: &str) -> &str {
    ["_bucket", "_sum", "_count"].iter().find_map(|s| series.strip_suffix(s)).unwrap_or(series)
}

/// The `.rs` sources of the binary's crates (tests excluded: a name only a test mentions is not emitted).
fn source_text() -> String {
    fn walk(dir: &Path, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "tests" | "benches" | "target") {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut text = String::new();
    for dir in ["crates", "chains"] {
        walk(&repo_root().join(dir), &mut text);
    }
    assert!(text.contains("metrics::counter!"), "the source walk found no metrics; wrong root?");
    text
}

/// The names the source passes to `counter!`, `gauge!` and `histogram!` as a literal first argument.
fn declared_metrics(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for macro_call in ["counter!(", "gauge!(", "histogram!("] {
        for (at, _) in source.match_indices(macro_call) {
            let rest = source[at + macro_call.len()..].trim_start();
            if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split_once('"')).map(|(n, _)| n) {
                names.insert(name.to_owned());
            }
        }
    }
    assert!(names.len() > 30, "suspiciously few declared metrics: {names:?}");
    names
}

/// Names used by `what` that the scrape lacks and [`ON_EVENT`] does not excuse.
fn missing(what: &str, used: &BTreeSet<String>, series: &BTreeSet<String>, source: &str) -> Vec<String> {
    let mut missing = Vec::new();
    for name in used {
        if series.contains(name) {
            continue;
        }
        let excused = ON_EVENT.iter().any(|(event, _)| *event == family(name));
        let declared = source.contains(&format!("\"{}\"", family(name)));
        if !(excused && declared) {
            missing.push(format!(
                "{what}: {name} is not in the scrape{}",
                if excused { " and not a literal in the source" } else { "" }
            ));
        }
    }
    missing
}

fn check_dashboard(dashboard: &Value) -> BTreeSet<String> {
    let variables = dashboard["templating"]["list"].as_array().expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("the dashboard has no {name} variable"))
    };
    assert_eq!(variable("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(variable("DS_PROMETHEUS")["query"], "prometheus");
    let chain = variable("chain");
    assert_eq!((&chain["type"], &chain["includeAll"]), (&json!("query"), &json!(true)), "{chain}");
    assert!(chain["definition"].as_str().is_some_and(|d| d.contains("chainmux_")), "{chain}");

    let panels = dashboard["panels"].as_array().expect("panels");
    let rows: Vec<&str> =
        panels.iter().filter(|p| p["type"] == "row").filter_map(|p| p["title"].as_str()).collect();
    assert_eq!(rows, ["Chain overview", "Upstreams", "Indexer", "Gateway"]);
    let mut names = metric_names(chain["definition"].as_str().unwrap_or_default());
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("panel id")), "duplicate panel id: {panel}");
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().expect("panel title");
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty());
        for target in targets.unwrap_or_else(|| panic!("{title}: no queries")) {
            assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title}: a query without expr"));
            let used = metric_names(expr);
            assert!(!used.is_empty(), "{title}: {expr} names no chainmux metric");
            names.extend(used);
        }
    }
    names
}

fn check_alerts(rules: &Value) -> BTreeSet<String> {
    let groups = rules["groups"].as_array().expect("groups");
    let mut names = BTreeSet::new();
    let mut alerts = BTreeSet::new();
    for rule in groups.iter().flat_map(|g| g["rules"].as_array().expect("rules")) {
        let alert = rule["alert"].as_str().unwrap_or_else(|| panic!("a rule without alert: {rule:?}"));
        assert!(alerts.insert(alert.to_owned()), "{alert} twice");
        assert!(rule["for"].as_str().is_some_and(|f| f.ends_with('m')), "{alert}: for");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(["critical", "warning", "info"].contains(&severity), "{alert}: severity {severity:?}");
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].as_str().is_some_and(|s| s.len() > 20), "{alert}: {key}");
        }
        let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_default();
        for part in ["Meaning:", "Check:", "Act:"] {
            assert!(runbook.contains(part), "{alert}: the runbook has no {part:?} part: {runbook}");
        }
        let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("{alert}: no expr"));
        let used = metric_names(expr);
        assert!(!used.is_empty(), "{alert}: {expr} names no chainmux metric");
        names.extend(used);
    }
    // The alerts issue 8 asks for.
    for alert in [
        "ChainmuxChainLagging",
        "ChainmuxNoHealthyUpstream",
        "ChainmuxDeepReorg",
        "ChainmuxIndexerStalled",
        "ChainmuxUpstreamErrorRateHigh",
        "ChainmuxGatewayErrorRateHigh",
        "ChainmuxUpstreamRateLimited",
        "ChainmuxDbWriteLatencyHigh",
    ] {
        assert!(alerts.contains(alert), "no {alert} rule");
    }
    names
}

/// The metrics of the README's `## Metrics` table: the first cell of its rows (the section's prose also names
/// crates, e.g. `chainmux_rpc=debug`).
fn readme_metrics() -> BTreeSet<String> {
    let readme = read("README.md");
    let start = readme.find("\n## Metrics\n").expect("README has a ## Metrics section");
    let section = &readme[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let names: BTreeSet<String> = section[..end]
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .filter(|name| name.starts_with("chainmux_"))
        .collect();
    assert!(names.len() > 30, "the Metrics table has only {names:?}");
    names
}

/// Drives every subsystem of a real `chainmux run`, then returns its `/metrics` text.
async fn scrape_after_traffic() -> String {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    populate_transfers(&eth, 1).await;
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    config.chain_key("finality_confirmations", CONFIRMATIONS);
    // A small RPC budget, so the test can exhaust it; the REST budget stays large for the polling helpers.
    config.gateway_key("anonymous_rpc_rps", 1).gateway_key("anonymous_rpc_burst", 20);
    common::migrate(&config);
    let mut chainmux = Chainmux::start(&config).await;
    eth.request("anvil_mine", json!([CONFIRMATIONS + 2])).await;
    let head = wait_synced(&mut chainmux, &eth).await;
    let metrics_url = chainmux.url("/metrics");
    chainmux
        .wait_for("the RPC cache's finalized floor", WAIT, || async {
            let (_, text) = common::get(&metrics_url).await.ok()?;
            let floor = metric_value(&text, "chainmux_rpc_cache_finalized_block", &[("chain", "local")])?;
            (floor >= 1.0).then_some(())
        })
        .await;

    // REST, and an auth failure (a malformed key).
    let block = chainmux.get_json("/v1/chains/local/blocks/1").await;
    assert_eq!(block["number"], json!(1), "{block}");
    let refused = http().get(chainmux.url("/v1/chains")).header("x-api-key", "not-a-key").send().await;
    assert_eq!(refused.expect("GET /v1/chains").status().as_u16(), 403);

    // /rpc: a finalized block twice, the second from the cache.
    let request = rpc_request(1, "eth_getBlockByNumber", json!(["0x1", false]));
    let (_, first) = chainmux.rpc_with_headers(&request).await;
    let (headers, again) = chainmux.rpc_with_headers(&request).await;
    assert_eq!(headers.get("x-chainmux-cache").and_then(|v| v.to_str().ok()), Some("hit"), "{again}");
    assert_eq!(first, again);

    // An SSE feed: its `ready` message.
    let feed_url = chainmux.url("/v1/chains/local/transfers/stream");
    let mut feed = http().get(&feed_url).send().await.unwrap_or_else(|err| panic!("GET {feed_url}: {err}"));
    assert_eq!(feed.status().as_u16(), 200);
    let mut received = String::new();
    while !received.contains("event: ready") {
        let chunk = tokio::time::timeout(WAIT, feed.chunk()).await.expect("no SSE message in time");
        let chunk = chunk.expect("reading the feed").expect("the feed ended before its ready message");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }

    // A WebSocket `newHeads` subscription and one notification.
    let ws_url = format!("ws://127.0.0.1:{}/rpc/local", chainmux.port);
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str()).await.expect("WebSocket upgrade");
    let subscribe = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]});
    ws.send(Message::text(subscribe.to_string())).await.expect("send eth_subscribe");
    let mut mined = false;
    loop {
        let message = tokio::time::timeout(WAIT, ws.next()).await.expect("no WebSocket message in time");
        let Some(Ok(Message::Text(text))) = message else {
            panic!("the WebSocket ended before a notification: {message:?}");
        };
        let value: Value = serde_json::from_str(text.as_str()).expect("JSON message");
        assert!(value.get("error").is_none(), "{value}");
        if value["method"] == "eth_subscription" {
            break;
        }
        // The subscription is live once answered: only a block mined after that is sure to be notified.
        assert!(value["result"].is_string() && !mined, "unexpected message: {value}");
        eth.request("anvil_mine", json!([1])).await;
        mined = true;
    }
    drop(ws);
    drop(feed);

    // A reorg: anvil replaces its last blocks, then grows past them so the indexer sees the new branch.
    eth.request("anvil_reorg", json!([REORG_DEPTH, []])).await;
    eth.request("anvil_mine", json!([1])).await;
    chainmux
        .wait_for("a reorg in /metrics", WAIT, || async {
            let (_, text) = common::get(&metrics_url).await.ok()?;
            (metric_value(&text, "chainmux_indexer_reorgs_total", &[("chain", "local")])? >= 1.0)
                .then_some(())
        })
        .await;
    assert!(wait_synced(&mut chainmux, &eth).await > head);

    // Exhaust the RPC budget (burst 20, 1/s): a 429 comes within a few dozen calls.
    let mut statuses = Vec::new();
    for id in 0..40 {
        let response = http()
            .post(chainmux.url("/rpc/local"))
            .header("content-type", "application/json")
            .body(rpc_request(id, "eth_chainId", json!([])).to_string())
            .send()
            .await
            .expect("POST /rpc/local");
        statuses.push(response.status().as_u16());
        if statuses.last() == Some(&429) {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "no rate-limit rejection: {statuses:?}");

    let (status, scrape) = common::get(&metrics_url).await.expect("GET /metrics");
    assert_eq!(status, 200);
    scrape
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_metrics_the_binary_exports() {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/chainmux-dashboard.json"))
        .unwrap_or_else(|err| panic!("the dashboard is not JSON: {err}"));
    let dashboard_metrics = check_dashboard(&dashboard);
    let rules: Value = serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.yml"))
        .unwrap_or_else(|err| panic!("alerts.yml is not YAML: {err}"));
    let alert_metrics = check_alerts(&rules);
    let prometheus: Value = serde_yaml_ng::from_str(&read("deploy/prometheus.yml"))
        .unwrap_or_else(|err| panic!("prometheus.yml is not YAML: {err}"));
    let rule_files = prometheus["rule_files"].as_array().expect("prometheus.yml has rule_files");
    for file in rule_files {
        let file = file.as_str().expect("a rule file path");
        assert!(repo_root().join("deploy").join(file).is_file(), "rule file {file} (relative to deploy/)");
    }
    assert!(rule_files.contains(&json!("prometheus/alerts.yml")), "{rule_files:?}");

    let scrape = scrape_after_traffic().await;
    let series = scraped_series(&scrape);
    let source = source_text();
    let mut problems = missing("dashboard", &dashboard_metrics, &series, &source);
    problems.extend(missing("alerts.yml", &alert_metrics, &series, &source));
    for (name, why) in ON_EVENT {
        if !source.contains(&format!("\"{name}\"")) {
            problems.push(format!("ON_EVENT lists {name} ({why}), which the source never emits"));
        }
    }

    // The README documents every family of the scrape, and only what the source emits.
    let documented = readme_metrics();
    let families = scraped_families(&scrape);
    assert!(families.len() > 30, "suspiciously few metric families: {families:?}");
    for name in families.difference(&documented) {
        problems.push(format!("README's Metrics table lacks {name}, which /metrics exports"));
    }
    for name in &documented {
        if !source.contains(&format!("\"{name}\"")) {
            problems.push(format!("README's Metrics table lists {name}, which the source never emits"));
        }
    }
    // Also the metrics this run did not trigger: every name a `metrics::` macro is called with.
    for name in declared_metrics(&source).difference(&documented) {
        problems.push(format!("README's Metrics table lacks {name}, which the source emits"));
    }
    assert!(problems.is_empty(), "{}\n\nscrape:\n{scrape}", problems.join("\n"));
}

/// `promtool` (installed by `scripts/ensure-tools.sh`) checks the rules and runs their unit tests: every alert
/// fires on series made to trigger it, and not on their near misses.
#[test]
fn alert_rules_pass_promtool() {
    let dir = repo_root().join("deploy/prometheus");
    let rules: Value = serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.yml")).expect("alerts.yml");
    let tests: Value =
        serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.test.yml")).expect("alerts.test.yml");
    // Every alert has a test group of its own name, so a new alert cannot go untested.
    let alerts: BTreeSet<&str> = rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .filter_map(|rule| rule["alert"].as_str())
        .collect();
    let tested: BTreeSet<&str> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["alert_rule_test"].as_array().into_iter().flatten())
        .filter(|case| case["exp_alerts"].as_array().is_some_and(|alerts| !alerts.is_empty()))
        .filter_map(|case| case["alertname"].as_str())
        .collect();
    assert!(!alerts.is_empty(), "no alerts in alerts.yml");
    assert_eq!(alerts, tested, "alerts without a firing test case in alerts.test.yml");
    for args in [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]] {
        let output =
            std::process::Command::new("promtool").args(args).current_dir(&dir).output().unwrap_or_else(
                |err| panic!("cannot run promtool (scripts/ensure-tools.sh installs it): {err}"),
            );
        assert!(
            output.status.success(),
            "promtool {}: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
