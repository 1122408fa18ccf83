//! Leadership per chain against a real PostgreSQL: one lock holder per chain, a takeover once the holder's lock
//! session ends (terminated by the server) or is released, and the fence: a store of an ended term writes nothing —
//! no batch, no rollback, no contract entry — while its successor's writes go through. The terms record who wrote
//! which blocks.

use alloy::primitives::keccak256;
use chainmux_core::{BlockPtr, ChainKind, ChainSpec, NormalizedBlock};
use chainmux_store::{ContractSourceDef, LeaderElection, Store, StoreError, leader_application_name};
use chainmux_testkit::TestDb;

const CHAIN: &str = "leader-test";

/// A `leader_terms` row: epoch, holder, first and last block written, batches.
type TermRow = (i64, String, Option<i64>, Option<i64>, i64);

fn ptr(number: u64) -> BlockPtr {
    BlockPtr::new(number, keccak256(format!("leader test block {number}")))
}

fn blocks(numbers: std::ops::RangeInclusive<u64>) -> Vec<NormalizedBlock> {
    numbers
        .map(|n| {
            let mut block = NormalizedBlock::logs_only(ptr(n), Vec::new());
            block.parent = n.checked_sub(1).map(ptr);
            block
        })
        .collect()
}

async fn store() -> (TestDb, Store) {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4).await.expect("connect to the test database");
    store.migrate().await.expect("migrate");
    let spec = ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: 31337 };
    store.register_chain(&spec).await.expect("register chain");
    (db, store)
}

fn assert_fenced<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Fenced { chain, .. }) => assert_eq!(chain, CHAIN),
        other => panic!("{what}: expected Fenced, got {other:?}"),
    }
}

#[tokio::test]
async fn one_leader_at_a_time_and_an_ended_term_writes_nothing() {
    let (_db, store) = store().await;
    let mut a = LeaderElection::new(&store, CHAIN, "replica-a");
    let mut b = LeaderElection::new(&store, CHAIN, "replica-b");
    let mut term_a = a.try_acquire().await.expect("a contends").expect("a leads the free chain");
    assert!(b.try_acquire().await.expect("b contends").is_none(), "b must not lead while a does");
    let leaders = store.leaders().await.expect("leaders");
    assert_eq!(leaders.len(), 1);
    assert_eq!((leaders[0].holder.as_deref(), leaders[0].epoch), (Some("replica-a"), term_a.epoch()));

    let store_a = store.fenced(term_a.epoch());
    store_a.write_batch(CHAIN, None, &blocks(0..=9)).await.expect("the leader writes");
    term_a.check().await.expect("a's session is alive");

    // The server ends a's lock session (a partition, a DBA): b takes over with the next epoch.
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(leader_application_name(CHAIN, "replica-a"))
    .fetch_all(store.pool())
    .await
    .expect("terminate a's lock session");
    assert_eq!(terminated, vec![true]);
    let term_b = loop {
        // The server releases the lock once the terminated backend has exited.
        if let Some(term) = b.try_acquire().await.expect("b contends") {
            break term;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(term_b.epoch(), term_a.epoch() + 1);
    assert!(term_a.check().await.is_err(), "a's proof of life fails once its session is gone");

    // a's store, still in a's hands, is fenced out of every kind of write; nothing of it lands.
    let cursor = store.cursor(CHAIN).await.expect("cursor");
    assert_eq!(cursor, Some(ptr(9)));
    assert_fenced(store_a.write_batch(CHAIN, cursor, &blocks(10..=14)).await, "batch of the ended term");
    assert_fenced(store_a.revert_to(CHAIN, ptr(9), ptr(5)).await, "rollback of the ended term");
    let def = ContractSourceDef {
        name: "token".into(),
        fingerprint: "f".into(),
        addresses: vec![vec![1u8; 20].into()],
        factory: None,
        start_block: 0,
        events_json: "[]".into(),
    };
    assert_fenced(
        store_a.sync_contract_sources(CHAIN, &[def], 10).await,
        "contract entries of the ended term",
    );
    assert_eq!(store.cursor(CHAIN).await.expect("cursor"), Some(ptr(9)), "nothing moved the cursor");

    let store_b = store.fenced(term_b.epoch());
    store_b.write_batch(CHAIN, cursor, &blocks(10..=14)).await.expect("the new leader writes");
    let terms: Vec<TermRow> = sqlx::query_as(
        "SELECT epoch, holder, first_block, last_block, batches FROM leader_terms WHERE chain = $1 ORDER BY epoch",
    )
    .bind(CHAIN)
    .fetch_all(store.pool())
    .await
    .expect("terms");
    assert_eq!(
        terms,
        vec![
            (term_a.epoch(), "replica-a".to_owned(), Some(0), Some(9), 1),
            (term_b.epoch(), "replica-b".to_owned(), Some(10), Some(14), 1),
        ]
    );

    // Releasing hands over at once: a (reconnecting) takes the chain on its next try.
    term_b.release().await.expect("b releases");
    let term = a.try_acquire().await.expect("a contends again").expect("a leads after b released");
    assert_eq!(term.epoch(), 3);
    assert_fenced(store_b.write_batch(CHAIN, Some(ptr(14)), &blocks(15..=15)).await, "batch after release");
}

#[tokio::test]
async fn chains_have_their_own_locks() {
    let (_db, store) = store().await;
    let other = ChainSpec { name: "other-chain".into(), kind: ChainKind::Evm, chain_id: 1 };
    store.register_chain(&other).await.expect("register the other chain");
    let mut a = LeaderElection::new(&store, CHAIN, "replica-a");
    let mut b = LeaderElection::new(&store, "other-chain", "replica-b");
    let _first = a.try_acquire().await.expect("contend").expect("a leads its chain");
    let _second = b.try_acquire().await.expect("contend").expect("b leads the other chain at the same time");
}
