//! OTLP export (cargo feature `otlp`: `cargo test -p chainmux --features otlp --test otlp`): the real binary with
//! `[telemetry] otlp_endpoint` pointing at a minimal OTLP/HTTP receiver sends the spans of a request, the HTTP
//! span with its request id and the upstream attempt span under it.
#![cfg(feature = "otlp")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use chainmux_testkit::{Anvil, TestDb};
use common::{Chainmux, Config, POLL, http, rpc_request};
use serde_json::json;

type Received = Arc<Mutex<Vec<Bytes>>>;

/// A collector's `/v1/traces`, keeping each export request's protobuf body. Protobuf stores strings verbatim, so a
/// request id or span name shows up as its bytes.
async fn collector() -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(|State(received): State<Received>, body: Bytes| async move {
                received.lock().unwrap_or_else(|p| p.into_inner()).push(body);
            }),
        )
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the collector");
    let url = format!("http://{}", listener.local_addr().expect("collector address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn spans_of_a_request_reach_the_otlp_collector_with_its_request_id() {
    let anvil = Anvil::spawn().await;
    let db = TestDb::create().await;
    let (endpoint, received) = collector().await;
    let mut config = Config::new(&db.url, &[("node", &anvil.url)]);
    config.run_args = vec!["--no-indexer"];
    for (key, value) in [
        ("CHAINMUX_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        ("CHAINMUX_LOG", "info,sqlx=warn,chainmux_rpc=debug"),
        // Export every 100 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ] {
        config.env.push((key.to_owned(), value.to_owned()));
    }
    let chainmux = Chainmux::start(&config).await;

    let request_id = "otlp-test-7f3a";
    let response = http()
        .post(chainmux.url("/rpc/local"))
        .header("content-type", "application/json")
        .header("x-request-id", request_id)
        .body(
            rpc_request(1, "eth_getBalance", json!(["0x00000000000000000000000000000000000000b1", "latest"]))
                .to_string(),
        )
        .send()
        .await
        .expect("POST /rpc/local");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-request-id"], request_id);

    let started = Instant::now();
    loop {
        let exported = received.lock().unwrap_or_else(|p| p.into_inner()).concat();
        if contains(&exported, request_id) && contains(&exported, "upstream_attempt") {
            assert!(contains(&exported, "eth_getBalance"), "the attempt's method is exported");
            assert!(contains(&exported, "chainmux"), "the service name is exported");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no span with request id {request_id} exported; log:\n{}",
            chainmux.log()
        );
        tokio::time::sleep(POLL).await;
    }
}
