//! Consistency for UIs against a real PostgreSQL: every chain route says how far the index is (headers, and the body
//! of pages), and `min_block=N` waits — bounded — until the index has reached `N`, so a client can read its own write.

// The shared fixture's constants and helpers; this file uses a few.
#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chainmux_core::{ChainKind, ChainSpec, Heads, NormalizedBlock};
use chainmux_gateway::{AppState, ChainHandle, GatewayConfig, router};
use chainmux_rpc::{Pool, PoolConfig};
use chainmux_store::Store;
use chainmux_testkit::TestDb;
use serde_json::Value;

use common::{CHAIN, CHAIN_ID, config, ptr};

const WAIT: Duration = Duration::from_millis(1500);

fn block(number: u64) -> NormalizedBlock {
    let mut block = NormalizedBlock::logs_only(ptr(number), Vec::new());
    block.parent = Some(ptr(number - 1));
    block
}

/// A store holding blocks 10..=12 with finalized head 11, and the router over it.
async fn setup() -> (TestDb, Store, Router) {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    let spec = ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: CHAIN_ID };
    store.register_chain(&spec).await.expect("register");
    let mut first = NormalizedBlock::logs_only(ptr(10), Vec::new());
    first.parent = Some(ptr(9));
    store.write_batch(CHAIN, None, &[first, block(11), block(12)]).await.expect("write 10..=12");
    store.set_heads(CHAIN, &Heads { latest: 12, safe: Some(11), finalized: Some(11) }).await.expect("heads");
    let pool = Arc::new(Pool::new(spec.name.clone(), Vec::new(), PoolConfig::default()));
    let config = GatewayConfig { min_block_wait: WAIT, ..config() };
    let app = router(AppState::new(store.clone(), vec![ChainHandle { spec, pool }], config));
    (db, store, app)
}

/// Status, the two index headers and the body.
async fn get(app: &Router, uri: &str) -> (StatusCode, Option<String>, Option<String>, Value, Option<String>) {
    let request = Request::get(uri).body(Body::empty()).expect("request");
    let response = tower::ServiceExt::oneshot(app.clone(), request).await.expect("response");
    let header = |name: &str| response.headers().get(name).map(|v| v.to_str().expect("ascii").to_owned());
    let (indexed, finalized) = (header("x-chainmux-indexed-head"), header("x-chainmux-finalized-head"));
    let retry_after = header(header::RETRY_AFTER.as_str());
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
    (status, indexed, finalized, serde_json::from_slice(&body).expect("JSON"), retry_after)
}

#[tokio::test]
async fn every_chain_route_says_how_far_the_index_is() {
    let (_db, _store, app) = setup().await;
    let (status, indexed, finalized, body, _) = get(&app, "/v1/chains/local/transfers").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((indexed.as_deref(), finalized.as_deref()), (Some("12"), Some("11")));
    assert_eq!(body["indexed_head"]["number"], 12);
    assert_eq!(body["finalized_head"], 11);
    for uri in ["/v1/chains/local/blocks/11", "/v1/chains/local/logs", "/v1/chains/local/events"] {
        let (status, indexed, finalized, body, _) = get(&app, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert_eq!((indexed.as_deref(), finalized.as_deref()), (Some("12"), Some("11")), "{uri}");
    }
}

#[tokio::test]
async fn min_block_waits_for_the_index_then_answers() {
    let (_db, store, app) = setup().await;
    // Already indexed: no wait.
    let started = Instant::now();
    let (status, ..) = get(&app, "/v1/chains/local/transfers?min_block=12").await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() < WAIT / 2, "answered at once");

    // Block 14 arrives while the request waits.
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.write_batch(CHAIN, Some(ptr(12)), &[block(13), block(14)]).await.expect("write 13..=14");
    });
    let started = Instant::now();
    let (status, indexed, _, body, _) = get(&app, "/v1/chains/local/blocks/14?min_block=0xe").await;
    writer.await.expect("writer");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["number"], 14, "the block written during the wait: {body}");
    assert_eq!(indexed.as_deref(), Some("14"));
    assert!(started.elapsed() >= Duration::from_millis(250), "it waited for the write");
}

#[tokio::test]
async fn min_block_not_reached_is_a_503_with_retry_after() {
    let (_db, _store, app) = setup().await;
    let started = Instant::now();
    let (status, _, _, body, retry_after) = get(&app, "/v1/chains/local/transfers?min_block=100").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(started.elapsed() >= WAIT, "waited the configured time");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(body["error"]["code"], "not_indexed_yet");
    assert_eq!(body["error"]["field"], "min_block");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("indexed head is 12")), "{body}");

    let (status, _, _, body, _) = get(&app, "/v1/chains/local/transfers?min_block=soon").await;
    assert_eq!((status, &body["error"]["field"]), (StatusCode::BAD_REQUEST, &Value::from("min_block")));
}
