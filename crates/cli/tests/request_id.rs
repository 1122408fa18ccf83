//! Request ids and spans through the real binary with JSON logs: every HTTP response carries an `x-request-id`
//! (the caller's when valid, else a generated one), and the upstream attempt logs of that request carry the same
//! id in their span list, with the attempt's own span (upstream, method, attempt number, kind). The indexer's
//! batch lines carry their batch span (chain, range, rows).

mod common;

use std::time::{Duration, Instant};

use chainmux_testkit::{Anvil, Eth, TestDb};
use common::{Chainmux, Config, POLL, http, rpc_request};
use serde_json::{Value, json};

const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `eth_getBalance` of `address` (a fresh address per call, so no cache answers it) with `request_id` as
/// the `x-request-id` header when given; returns the response's `x-request-id`.
async fn balance(chainmux: &Chainmux, address: &str, request_id: Option<&str>) -> String {
    let url = chainmux.url(&format!("/rpc/{}", chainmux.chain));
    let mut request = http()
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(rpc_request(1, "eth_getBalance", json!([address, "latest"])).to_string());
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let response = request.send().await.unwrap_or_else(|err| panic!("POST {url}: {err}"));
    assert_eq!(response.status().as_u16(), 200);
    let id = response
        .headers()
        .get("x-request-id")
        .unwrap_or_else(|| panic!("no x-request-id in {:?}", response.headers()))
        .to_str()
        .expect("ASCII request id")
        .to_owned();
    let text = response.text().await.expect("answer body");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"));
    assert_eq!(body["result"], "0x0", "{body}");
    id
}

/// The JSON log lines (non-JSON lines are skipped).
fn log_lines(chainmux: &Chainmux) -> Vec<Value> {
    chainmux.log().lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

/// The span named `name` in the line's span list.
fn span<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["spans"].as_array()?.iter().find(|s| s["name"] == name)
}

/// The "upstream attempt done" lines whose HTTP span has `request_id`, waiting until there is one (the line is
/// written before the response, but the log is read through the file system).
async fn attempt_lines(chainmux: &mut Chainmux, request_id: &str) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let lines: Vec<Value> = log_lines(chainmux)
            .into_iter()
            .filter(|l| {
                message(l) == "upstream attempt done"
                    && span(l, "http").is_some_and(|s| s["request_id"] == request_id)
            })
            .collect();
        if !lines.is_empty() {
            return lines;
        }
        assert!(
            started.elapsed() < LOG_TIMEOUT,
            "no upstream attempt log of request {request_id}:\n{}",
            chainmux.log()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Checks the attempt's own span: this request's upstream, method, first attempt.
fn assert_first_attempt(line: &Value) {
    let attempt =
        span(line, "upstream_attempt").unwrap_or_else(|| panic!("no upstream_attempt span: {line}"));
    assert_eq!(attempt["upstream"], "node", "{line}");
    assert_eq!(attempt["method"], "eth_getBalance", "{line}");
    assert_eq!(attempt["kind"], "first", "{line}");
    assert!(attempt["attempt"] == 1 || attempt["attempt"] == "1", "{line}");
    assert_eq!(attempt["chain"], "local", "{line}");
    assert_eq!(line["fields"]["ok"], true, "{line}");
    let http = span(line, "http").expect("http span");
    assert_eq!(http["route"], "/rpc/{chain}", "{line}");
    assert_eq!(http["method"], "POST", "{line}");
}

#[tokio::test]
async fn request_ids_reach_the_response_and_every_upstream_attempt_log() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    eth.mine(5).await;
    let head = eth.block_number().await;
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("node", &anvil.url)]);
    config.run_args = vec!["--log-format", "json"];
    config.env.push((
        "CHAINMUX_LOG".to_owned(),
        "info,sqlx=warn,chainmux_rpc=debug,chainmux_indexer=debug".to_owned(),
    ));
    let mut chainmux = Chainmux::start(&config).await;

    // A valid incoming id is kept and returned.
    let given = "test-req-42";
    assert_eq!(balance(&chainmux, "0x00000000000000000000000000000000000000a1", Some(given)).await, given);
    let lines = attempt_lines(&mut chainmux, given).await;
    assert_eq!(lines.len(), 1, "one attempt for one call to a healthy node: {lines:?}");
    assert_first_attempt(&lines[0]);

    // Without one, an id is generated: 16 lowercase hex digits, in the logs as well.
    let generated = balance(&chainmux, "0x00000000000000000000000000000000000000a2", None).await;
    assert_eq!(generated.len(), 16, "{generated}");
    assert!(generated.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{generated}");
    assert_first_attempt(&attempt_lines(&mut chainmux, &generated).await[0]);

    // An id that is not a plain token (spaces, too long) is replaced, never logged.
    let replaced = balance(&chainmux, "0x00000000000000000000000000000000000000a3", Some("two words")).await;
    assert_ne!(replaced, "two words");
    assert_eq!(replaced.len(), 16, "{replaced}");
    assert_first_attempt(&attempt_lines(&mut chainmux, &replaced).await[0]);
    let long = "x".repeat(65);
    let replaced_long = balance(&chainmux, "0x00000000000000000000000000000000000000a4", Some(&long)).await;
    assert_eq!(replaced_long.len(), 16, "{replaced_long}");
    assert_ne!(replaced, generated);
    assert!(!chainmux.log().contains("two words"));

    // The indexer's batches: a span with chain, range and rows around the "batch written" line.
    chainmux.wait_indexed(head).await;
    let written: Vec<Value> =
        log_lines(&chainmux).into_iter().filter(|l| message(l) == "batch written").collect();
    assert!(!written.is_empty(), "no batch written line");
    let mut covered = Vec::new();
    for line in &written {
        let batch = span(line, "batch").unwrap_or_else(|| panic!("no batch span: {line}"));
        assert_eq!(batch["chain"], "local", "{line}");
        let number = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        let (from, to) = (number(&batch["from"]).expect("from"), number(&batch["to"]).expect("to"));
        assert_eq!((Some(from), Some(to)), (number(&line["fields"]["from"]), number(&line["fields"]["to"])));
        assert_eq!(
            number(&batch["rows"]),
            number(&line["fields"]["rows"]),
            "rows recorded on the span: {line}"
        );
        assert!(number(&batch["rows"]).is_some_and(|rows| rows > 0), "{line}");
        covered.push((from, to));
    }
    covered.sort_unstable();
    assert_eq!(covered.first().map(|r| r.0), Some(0), "batches start at block 0: {covered:?}");
    assert!(covered.last().is_some_and(|r| r.1 >= head), "batches reach the head {head}: {covered:?}");
}
