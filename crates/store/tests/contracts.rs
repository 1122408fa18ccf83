//! Decoded events, factory children and contract entries against a real PostgreSQL: events and children commit
//! with their batch and go with it in a revert; entries are synced (added, changed, removed) without touching the
//! others' rows; catch-up windows commit with their progress and refuse to go outside the pending range; stored
//! logs come back grouped by block and filtered by topic.

use alloy::primitives::keccak256;
use chainmux_core::{
    B256, BlockPtr, Bytes, ChainKind, ChainSpec, CreatedContract, DecodedEvent, Log, NormalizedBlock,
};
use chainmux_store::{ContractSourceDef, FactoryDef, Store, StoreError};
use chainmux_testkit::TestDb;

const CHAIN: &str = "events-test";

fn ptr(number: u64) -> BlockPtr {
    BlockPtr::new(number, keccak256(format!("events test block {number}")))
}

fn address(n: u8) -> Bytes {
    Bytes::from(vec![n; 20])
}

fn tx_hash(block: u64) -> Bytes {
    keccak256(format!("events test tx {block}")).to_vec().into()
}

fn topic(n: u64) -> B256 {
    keccak256(n.to_be_bytes())
}

fn block(number: u64) -> NormalizedBlock {
    let mut block = NormalizedBlock::logs_only(ptr(number), Vec::new());
    block.parent = number.checked_sub(1).map(ptr);
    block
}

fn event(contract: &str, log_index: u32, from: u8, value: u64) -> DecodedEvent {
    DecodedEvent {
        tx_hash: tx_hash(u64::from(log_index)),
        tx_index: 0,
        log_index,
        address: address(from),
        contract: contract.into(),
        name: "Ping".into(),
        signature: "Ping(uint256)".into(),
        args: format!(r#"{{"value":"{value}","note":"quote \" and \u00e9"}}"#),
    }
}

fn created(contract: &str, child: u8, log_index: u32) -> CreatedContract {
    CreatedContract {
        contract: contract.into(),
        address: address(child),
        factory: address(0xfa),
        tx_hash: tx_hash(7),
        log_index,
    }
}

fn static_def(name: &str, fingerprint: &str, start_block: u64) -> ContractSourceDef {
    ContractSourceDef {
        name: name.into(),
        fingerprint: fingerprint.into(),
        addresses: vec![address(1), address(2)],
        factory: None,
        start_block,
        events_json: r#"[{"name":"Ping","signature":"Ping(uint256)","anonymous":false,"params":[]}]"#.into(),
    }
}

fn factory_def(name: &str) -> ContractSourceDef {
    ContractSourceDef {
        name: name.into(),
        fingerprint: "f1".into(),
        addresses: Vec::new(),
        factory: Some(FactoryDef {
            address: address(0xfa),
            event: "Created(address)".into(),
            parameter: "child".into(),
        }),
        start_block: 0,
        events_json: "[]".into(),
    }
}

async fn store() -> (TestDb, Store) {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4).await.expect("connect to the test database");
    store.migrate().await.expect("migrate");
    store
        .register_chain(&ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: 31337 })
        .await
        .expect("register chain");
    (db, store)
}

/// `(block_number, log_index, contract, args ->> 'value')` of every stored event, in key order.
async fn events(store: &Store) -> Vec<(i64, i32, String, String)> {
    sqlx::query_as(
        "SELECT block_number, log_index, contract, args ->> 'value' FROM events WHERE chain = $1 \
         ORDER BY block_number, log_index, contract",
    )
    .bind(CHAIN)
    .fetch_all(store.pool())
    .await
    .expect("events")
}

/// `(name, address, block_number)` of every stored contract.
async fn contracts(store: &Store) -> Vec<(String, Vec<u8>, Option<i64>)> {
    sqlx::query_as(
        "SELECT name, address, block_number FROM contracts WHERE chain = $1 ORDER BY name, address",
    )
    .bind(CHAIN)
    .fetch_all(store.pool())
    .await
    .expect("contracts")
}

#[tokio::test]
async fn events_and_children_commit_with_their_block_and_go_with_it() {
    let (_db, store) = store().await;
    store.sync_contract_sources(CHAIN, &[factory_def("kids")], 0).await.expect("sync");
    let mut blocks: Vec<NormalizedBlock> = (0..4).map(block).collect();
    // Block 1 creates child 0x11; the child's own event at a lower log index than its creation.
    blocks[1].created_contracts.push(created("kids", 0x11, 3));
    blocks[1].events.push(event("kids", 1, 0x11, 10));
    blocks[1].events.push(event("other", 1, 0x11, 11));
    blocks[3].created_contracts.push(created("kids", 0x12, 0));
    blocks[3].events.push(event("kids", 2, 0x12, 12));
    let stats = store.write_batch(CHAIN, None, &blocks).await.expect("write");
    assert_eq!((stats.events, stats.contracts), (3, 2));

    let args: serde_json::Value = sqlx::query_scalar("SELECT args FROM events WHERE chain = $1 LIMIT 1")
        .bind(CHAIN)
        .fetch_one(store.pool())
        .await
        .expect("args");
    assert_eq!(args["note"], "quote \" and \u{e9}", "jsonb keeps the escaped text");
    assert_eq!(
        events(&store).await,
        vec![
            (1, 1, "kids".into(), "10".into()),
            (1, 1, "other".into(), "11".into()),
            (3, 2, "kids".into(), "12".into())
        ]
    );
    let children = store.factory_children(CHAIN).await.expect("children");
    assert_eq!(children, vec![("kids".into(), address(0x11), 1), ("kids".into(), address(0x12), 3)]);

    // A reorg back to block 2 drops block 3's child and event, keeps block 1's.
    store.revert_to(CHAIN, ptr(3), ptr(2)).await.expect("revert");
    assert_eq!(events(&store).await.len(), 2);
    assert_eq!(
        store.factory_children(CHAIN).await.expect("children"),
        vec![("kids".into(), address(0x11), 1)]
    );

    // A child announced again later keeps its first creation instead of failing the batch.
    let mut again = block(3);
    again.created_contracts.push(created("kids", 0x11, 0));
    let stats = store.write_batch(CHAIN, Some(ptr(2)), &[again]).await.expect("write again");
    assert_eq!(stats.contracts, 0);
    assert_eq!(
        store.factory_children(CHAIN).await.expect("children"),
        vec![("kids".into(), address(0x11), 1)]
    );
}

#[tokio::test]
async fn entries_sync_without_touching_each_other() {
    let (_db, store) = store().await;
    let a = static_def("a", "fa", 0);
    let sync = store.sync_contract_sources(CHAIN, std::slice::from_ref(&a), 0).await.expect("first sync");
    assert_eq!(sync.added, vec!["a".to_owned()]);
    assert_eq!(sync.states[0].pending(), None, "nothing below the first block to catch up on");

    let mut blocks: Vec<NormalizedBlock> = (0..10).map(block).collect();
    blocks[4].events.push(event("a", 0, 1, 4));
    store.write_batch(CHAIN, None, &blocks).await.expect("write");
    let a_row: (String,) = sqlx::query_as("SELECT xmin::text FROM events WHERE chain = $1")
        .bind(CHAIN)
        .fetch_one(store.pool())
        .await
        .expect("xmin");

    // Entry b added while the chain is at block 9: it catches up on 3..=9 by itself.
    let b = static_def("b", "fb", 3);
    let sync = store.sync_contract_sources(CHAIN, &[a.clone(), b.clone()], 10).await.expect("add b");
    assert_eq!(sync.added, vec!["b".to_owned()]);
    assert!(sync.changed.is_empty() && sync.removed.is_empty());
    assert_eq!(sync.states[0].pending(), None);
    assert_eq!(sync.states[1].pending(), Some(3..=9));

    let mut window = vec![block(5)];
    window[0].events.push(event("b", 0, 2, 5));
    store.write_catch_up(CHAIN, "b", &window, 6).await.expect("catch-up window");
    let sync = store.sync_contract_sources(CHAIN, &[a.clone(), b.clone()], 10).await.expect("resync");
    assert_eq!(sync.states[1].pending(), Some(7..=9), "progress survives a restart");
    // Outside the pending range: refused, nothing written.
    let err = store.write_catch_up(CHAIN, "b", &[], 10).await.expect_err("at live_from");
    assert!(matches!(err, StoreError::Discontinuous { .. }), "{err}");
    let err = store.write_catch_up(CHAIN, "b", &[], 6).await.expect_err("backwards");
    assert!(matches!(err, StoreError::Discontinuous { .. }), "{err}");
    store.write_catch_up(CHAIN, "b", &[], 9).await.expect("last window");
    let sync = store.sync_contract_sources(CHAIN, &[a.clone(), b.clone()], 10).await.expect("resync");
    assert_eq!(sync.states[1].pending(), None);

    let a_after: (String,) =
        sqlx::query_as("SELECT xmin::text FROM events WHERE chain = $1 AND contract = 'a'")
            .bind(CHAIN)
            .fetch_one(store.pool())
            .await
            .expect("xmin");
    assert_eq!(a_row, a_after, "entry a's row was not rewritten");

    // b's definition changes: its rows go, it starts over; a keeps everything.
    let b2 = static_def("b", "fb2", 3);
    let sync = store.sync_contract_sources(CHAIN, &[a.clone(), b2], 10).await.expect("change b");
    assert_eq!(sync.changed, vec!["b".to_owned()]);
    assert_eq!(sync.states[1].pending(), Some(3..=9));
    assert_eq!(events(&store).await, vec![(4, 0, "a".into(), "4".into())]);

    // b removed from the config: its rows and addresses go.
    let sync = store.sync_contract_sources(CHAIN, &[a], 10).await.expect("remove b");
    assert_eq!(sync.removed, vec![("b".to_owned(), 0)]);
    let names: Vec<String> = contracts(&store).await.into_iter().map(|(name, ..)| name).collect();
    assert_eq!(names, vec!["a".to_owned(), "a".to_owned()], "static addresses of a only");
}

#[tokio::test]
async fn stored_logs_come_back_by_block_and_topic() {
    let (_db, store) = store().await;
    let mut blocks: Vec<NormalizedBlock> = (0..5).map(block).collect();
    for (number, block) in blocks.iter_mut().enumerate() {
        for index in 0..3u32 {
            block.logs.push(Log {
                tx_hash: tx_hash(number as u64),
                tx_index: index,
                log_index: index,
                address: address(index as u8),
                topics: vec![topic(u64::from(index)), topic(99)],
                data: Bytes::from(vec![index as u8; 3]),
            });
        }
    }
    store.write_batch(CHAIN, None, &blocks).await.expect("write");
    let all = store.stored_logs(CHAIN, 1..=3, None).await.expect("all");
    assert_eq!(all.iter().map(|b| b.ptr).collect::<Vec<_>>(), vec![ptr(1), ptr(2), ptr(3)]);
    assert_eq!(all[0].logs, blocks[1].logs);
    let some = store.stored_logs(CHAIN, 0..=4, Some(&[topic(2), topic(7)])).await.expect("by topic");
    assert_eq!(some.len(), 5);
    assert!(some.iter().all(|b| b.logs.len() == 1 && b.logs[0].log_index == 2));
    assert_eq!(store.first_block(CHAIN).await.expect("first"), Some(0));
}
