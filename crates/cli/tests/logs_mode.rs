//! `fetch = "logs"` through the real binary, against an upstream that refuses `eth_getLogs` ranges over 5 blocks
//! (a `FaultProxy` in front of anvil): the backfill adapts its ranges and completes, and the logs and token
//! transfers it stores are exactly anvil's.

mod common;

use std::collections::BTreeSet;

use chainmux_testkit::{Anvil, Eth, Fault, FaultProxy, TestDb, populate_transfers};
use common::{Chainmux, Config, connect, lower, quantity, text_rows};

#[tokio::test]
async fn logs_mode_backfill_adapts_to_a_range_limited_upstream() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    populate_transfers(&eth, 6).await;
    eth.mine(40).await;
    let head = eth.block_number().await;

    let limited = FaultProxy::start(&anvil.url).await;
    limited.set(Fault::LogsRangeLimit(5)).await;
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("limited", &limited.url)]);
    config.fetch = Some("logs");
    config.batch_size = 50;
    let mut chainmux = Chainmux::start(&config).await;
    chainmux.wait_indexed(head).await;

    let expected: BTreeSet<String> = eth
        .logs(0, head)
        .await
        .iter()
        .map(|log| {
            let topics: Vec<String> = log["topics"].as_array().into_iter().flatten().map(lower).collect();
            format!(
                "{}|{}|{}|{}|{}",
                quantity(&log["blockNumber"]),
                quantity(&log["logIndex"]),
                lower(&log["address"]),
                topics.join(","),
                lower(&log["data"])
            )
        })
        .collect();
    let pool = connect(&db.url).await;
    let stored: BTreeSet<String> = text_rows(
        &pool,
        "SELECT block_number || '|' || log_index || '|0x' || encode(address, 'hex') || '|' || \
         concat_ws(',', '0x' || encode(topic0, 'hex'), '0x' || encode(topic1, 'hex'), '0x' || encode(topic2, 'hex'), \
         '0x' || encode(topic3, 'hex')) || '|0x' || encode(data, 'hex') FROM logs ORDER BY 1",
    )
    .await
    .into_iter()
    .collect();
    assert!(!expected.is_empty());
    assert_eq!(stored, expected, "stored logs equal anvil's eth_getLogs");

    let transactions = text_rows(&pool, "SELECT count(*)::text FROM transactions").await;
    assert_eq!(transactions, vec!["0".to_owned()], "logs mode stores no transactions");
    let standards = text_rows(&pool, "SELECT DISTINCT standard FROM transfers ORDER BY 1").await;
    assert_eq!(standards, vec!["erc1155", "erc20", "erc721"], "token transfers only, no native ones");
    let blocks = text_rows(&pool, "SELECT count(*)::text FROM blocks").await;
    assert_eq!(blocks, vec![(head + 1).to_string()], "every header stored");

    // The upstream refused wide ranges, and the backfill kept going with narrower ones.
    assert!(limited.received("eth_getLogs") > head / 5, "{} calls", limited.received("eth_getLogs"));
}
