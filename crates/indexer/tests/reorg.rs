//! Reorg handling of the indexer against a real anvil and PostgreSQL: a fork below the indexed head is rolled back
//! to the common ancestor and re-indexed, a merely shorter chain is waited out, and a reorg deeper than the limit
//! stops the loop without writing anything of the new branch.

use std::sync::Arc;
use std::time::Duration;

use chainmux_core::{B256, BlockPtr, ChainEvent, ChainKind, ChainSpec, Network, U256};
use chainmux_evm::{EvmNetwork, EvmOptions};
use chainmux_indexer::{Indexer, IndexerConfig, IndexerError};
use chainmux_rpc::{PoolConfig, UpstreamConfig};
use chainmux_store::Store;
use chainmux_testkit::{Anvil, Eth, TestDb};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CHAIN: &str = "reorg";

struct Setup {
    anvil: Anvil,
    eth: Eth,
    store: Store,
    _db: TestDb,
    cancel: CancellationToken,
    run: JoinHandle<Result<(), IndexerError>>,
    events: broadcast::Receiver<ChainEvent>,
}

impl Setup {
    /// anvil with `blocks` value transfers (one block each), indexed to its head.
    async fn start(blocks: usize, max_reorg_depth: u64) -> Setup {
        Self::start_with(blocks, IndexerConfig { max_reorg_depth, ..IndexerConfig::default() }).await
    }

    async fn start_with(blocks: usize, config: IndexerConfig) -> Setup {
        let anvil = Anvil::spawn().await;
        let eth = Eth::new(&anvil.url);
        let accounts = eth.accounts().await;
        for i in 0..blocks {
            eth.send(accounts[0], Some(accounts[1]), Default::default(), U256::from(1000 + i)).await;
        }
        let db = TestDb::create().await;
        let store = Store::connect(&db.url, 4).await.expect("database");
        store.migrate().await.expect("migrations");
        let spec = ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: 31337 };
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
            ..config
        };
        let indexer = Indexer::new(network, store.clone(), config);
        let events = indexer.subscribe();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(indexer.run(cancel.clone()));
        let setup = Setup { anvil, eth, store, _db: db, cancel, run, events };
        setup.wait_for(|cursor| cursor.is_some_and(|c| c.number >= blocks as u64)).await;
        setup
    }

    async fn cursor(&self) -> Option<BlockPtr> {
        self.store.cursor(CHAIN).await.expect("cursor")
    }

    async fn wait_for(&self, mut done: impl FnMut(Option<BlockPtr>) -> bool) -> Option<BlockPtr> {
        for _ in 0..400 {
            let cursor = self.cursor().await;
            if done(cursor) {
                return cursor;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("condition not reached; cursor {:?}", self.cursor().await);
    }

    async fn anvil_hash(&self, number: u64) -> B256 {
        self.eth.block(number, false).await["hash"].as_str().expect("hash").parse().expect("B256")
    }

    /// Every stored block hash equals anvil's, 0..=head, and the cursor is anvil's head.
    async fn assert_matches_anvil(&self) {
        let head = self.eth.block_number().await;
        let cursor = self.wait_for(|c| c.is_some_and(|c| c.number >= head)).await.expect("cursor");
        assert_eq!(cursor, BlockPtr::new(head, self.anvil_hash(head).await));
        for number in 0..=head {
            assert_eq!(
                self.store.block_hash(CHAIN, number).await.expect("stored"),
                Some(self.anvil_hash(number).await)
            );
        }
        let stray: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM transactions t WHERE chain = $1 AND NOT EXISTS \
             (SELECT 1 FROM blocks b WHERE b.chain = t.chain AND b.number = t.block_number AND b.hash = t.block_hash)",
        )
        .bind(CHAIN)
        .fetch_one(self.store.pool())
        .await
        .expect("count");
        assert_eq!(stray, 0, "rows of the abandoned branch were deleted");
    }
}

#[tokio::test]
async fn fork_below_the_head_is_rolled_back_and_reindexed() {
    let mut setup = Setup::start(5, 128).await;
    let old = setup.cursor().await.expect("cursor");
    let accounts = setup.eth.accounts().await;

    // Replace block 5 by a different one and extend the new branch past the indexed head.
    setup.eth.request("anvil_rollback", json!([1])).await;
    setup.eth.send(accounts[2], Some(accounts[3]), Default::default(), U256::from(7)).await;
    setup.eth.send(accounts[2], Some(accounts[3]), Default::default(), U256::from(8)).await;
    assert_ne!(setup.anvil_hash(5).await, old.hash, "anvil replaced block 5");

    setup.assert_matches_anvil().await;
    let revert = loop {
        match tokio::time::timeout(Duration::from_secs(5), setup.events.recv())
            .await
            .expect("an event")
            .expect("event")
        {
            ChainEvent::Revert { to, from } => break (to, from),
            ChainEvent::Apply(_) => continue,
        }
    };
    assert_eq!(revert.1, old, "reverted from the old head");
    assert_eq!(revert.0.number, 4, "to the common ancestor");
    let values: Vec<String> =
        sqlx::query_scalar("SELECT value::text FROM transactions WHERE chain = $1 AND block_number = 5")
            .bind(CHAIN)
            .fetch_all(setup.store.pool())
            .await
            .expect("rows");
    assert_eq!(values, vec!["7".to_owned()], "block 5 holds the new branch's transaction only");
    setup.cancel.cancel();
    setup.run.await.expect("task").expect("indexer ends cleanly");
    drop(setup.anvil);
}

#[tokio::test]
async fn shorter_chain_is_waited_out_until_it_grows_back() {
    let setup = Setup::start(6, 128).await;
    let indexed = setup.cursor().await.expect("cursor");
    setup.eth.request("anvil_rollback", json!([3])).await;
    // The chain is shorter than the index: that may be a lagging node, so nothing is rolled back yet.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(setup.cursor().await, Some(indexed), "nothing rolled back while the chain is shorter");

    let accounts = setup.eth.accounts().await;
    for i in 0..5 {
        setup.eth.send(accounts[4], Some(accounts[5]), Default::default(), U256::from(50 + i)).await;
    }
    setup.assert_matches_anvil().await;
    setup.cancel.cancel();
    setup.run.await.expect("task").expect("indexer ends cleanly");
}

#[tokio::test]
async fn reorg_deeper_than_the_limit_stops_the_loop_without_writing() {
    let mut setup = Setup::start(5, 1).await;
    let indexed = setup.cursor().await.expect("cursor");
    let accounts = setup.eth.accounts().await;
    setup.eth.request("anvil_rollback", json!([2])).await;
    for i in 0..3 {
        setup.eth.send(accounts[2], Some(accounts[3]), Default::default(), U256::from(70 + i)).await;
    }
    let run = std::mem::replace(&mut setup.run, tokio::spawn(async { Ok(()) }));
    let outcome =
        tokio::time::timeout(Duration::from_secs(20), run).await.expect("loop stops").expect("task");
    match outcome {
        Err(IndexerError::ReorgTooDeep { cursor, limit, .. }) => {
            assert_eq!(cursor, indexed);
            assert_eq!(limit, 1);
        }
        other => panic!("expected ReorgTooDeep, got {other:?}"),
    }
    assert_eq!(setup.store.cursor(CHAIN).await.expect("cursor"), Some(indexed), "cursor did not move");
    for number in 4..=5 {
        let stored = setup.store.block_hash(CHAIN, number).await.expect("stored");
        assert_ne!(
            stored,
            Some(setup.anvil_hash(number).await),
            "nothing of the new branch was written at {number}"
        );
    }
    let max_block: Option<i64> = sqlx::query_scalar("SELECT max(number) FROM blocks WHERE chain = $1")
        .bind(CHAIN)
        .fetch_one(setup.store.pool())
        .await
        .expect("max");
    assert_eq!(max_block, Some(5));
    // The stop is recorded for every gateway replica's status view.
    let error = setup.store.chain_state(CHAIN).await.expect("state").and_then(|s| s.indexer_error);
    let message = error.map(|e| e.message).unwrap_or_default();
    assert!(message.starts_with("stopped: ") && message.contains("max_reorg_depth"), "{message:?}");
}

#[tokio::test]
async fn reorg_below_finality_stops_the_loop_and_finality_is_recorded() {
    let config = IndexerConfig { finality_confirmations: Some(2), ..IndexerConfig::default() };
    let mut setup = Setup::start_with(6, config).await;
    let indexed = setup.cursor().await.expect("cursor");
    // Heads as recorded for readers: finalized two blocks below the head.
    let heads = setup.store.chain_state(CHAIN).await.expect("state").and_then(|s| s.heads).expect("heads");
    assert_eq!(heads.finalized, Some(heads.latest - 2), "{heads:?}");
    assert!(heads.safe >= heads.finalized, "{heads:?}");

    // Replace blocks 3..=6 (below the finalized head 4) and grow past the index.
    setup.eth.request("anvil_rollback", json!([4])).await;
    let accounts = setup.eth.accounts().await;
    for i in 0..5 {
        setup.eth.send(accounts[6], Some(accounts[7]), Default::default(), U256::from(90 + i)).await;
    }
    let run = std::mem::replace(&mut setup.run, tokio::spawn(async { Ok(()) }));
    let outcome =
        tokio::time::timeout(Duration::from_secs(20), run).await.expect("loop stops").expect("task");
    assert!(matches!(outcome, Err(IndexerError::ReorgBelowFinality { ancestor: 2, .. })), "{outcome:?}");
    assert_eq!(setup.store.cursor(CHAIN).await.expect("cursor"), Some(indexed), "nothing rolled back");
}
