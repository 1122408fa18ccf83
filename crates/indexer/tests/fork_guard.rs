//! The indexer never writes a block whose parent is not the indexed block: when the chain forks below the indexed
//! head, the loop stops with `ForkDetected` and the store keeps exactly what it had. Real anvil, real PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use chainmux_core::{ChainKind, ChainSpec, Network, U256};
use chainmux_evm::{EvmNetwork, EvmOptions};
use chainmux_indexer::{Indexer, IndexerConfig, IndexerError};
use chainmux_rpc::{PoolConfig, UpstreamConfig};
use chainmux_store::Store;
use chainmux_testkit::{Anvil, Eth, TestDb};
use serde_json::json;
use tokio_util::sync::CancellationToken;

async fn wait_for_cursor(store: &Store, at_least: u64) -> chainmux_core::BlockPtr {
    for _ in 0..300 {
        if let Some(cursor) = store.cursor("fork").await.expect("cursor")
            && cursor.number >= at_least
        {
            return cursor;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("indexer did not reach block {at_least}");
}

#[tokio::test]
async fn fork_below_the_indexed_head_stops_the_loop_without_writing() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let accounts = eth.accounts().await;
    for _ in 0..5 {
        eth.send(accounts[0], Some(accounts[1]), Default::default(), U256::from(1000)).await;
    }
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4).await.expect("database");
    store.migrate().await.expect("migrations");

    let spec = ChainSpec { name: "fork".into(), kind: ChainKind::Evm, chain_id: 31337 };
    let upstream = UpstreamConfig {
        name: "anvil".into(),
        url: anvil.url.parse().expect("url"),
        policy: Default::default(),
    };
    let pool = Arc::new(EvmNetwork::pool(&spec, vec![upstream], PoolConfig::default()));
    pool.verify_all().await;
    let network: Arc<dyn Network> = Arc::new(EvmNetwork::new(spec, pool, EvmOptions::default()));
    let config = IndexerConfig {
        batch_size: 2,
        poll_interval: Duration::from_millis(50),
        retry_min: Duration::from_millis(10),
        retry_max: Duration::from_millis(50),
        ..IndexerConfig::default()
    };
    let cancel = CancellationToken::new();
    let run = tokio::spawn(Indexer::new(network, store.clone(), config).run(cancel.clone()));

    let indexed = wait_for_cursor(&store, 5).await;
    assert_eq!(indexed.number, 5);

    // Replace block 5 by a different one, then extend the new fork past the indexed head.
    eth.request("anvil_rollback", json!([1])).await;
    eth.send(accounts[2], Some(accounts[3]), Default::default(), U256::from(7)).await;
    eth.send(accounts[2], Some(accounts[3]), Default::default(), U256::from(8)).await;
    let new_five = eth.block(5, false).await["hash"].as_str().expect("hash").to_owned();
    assert_ne!(new_five, indexed.hash.to_string(), "anvil replaced block 5");

    let outcome =
        tokio::time::timeout(Duration::from_secs(20), run).await.expect("loop stops").expect("task");
    match outcome {
        Err(IndexerError::ForkDetected { number, cursor, .. }) => {
            assert_eq!(number, 6);
            assert_eq!(cursor, indexed);
        }
        other => panic!("expected ForkDetected, got {other:?}"),
    }
    assert_eq!(store.cursor("fork").await.expect("cursor"), Some(indexed), "cursor did not move");
    let max_block: Option<i64> = sqlx::query_scalar("SELECT max(number) FROM blocks WHERE chain = 'fork'")
        .fetch_one(store.pool())
        .await
        .expect("max");
    assert_eq!(max_block, Some(5), "nothing of the new fork was written");
}
