//! `Store::partition_chain` against a real PostgreSQL: a chain's rows move out of the DEFAULT partitions of
//! migration 0006 into partitions of their own (by block range when asked), where `tableoid` says they are; reads,
//! batch writes and reverts through the `Store` API give the same results as before; a re-run is idempotent,
//! creates the ranges now due and empties the chain's DEFAULT sub-partition, into which writes beyond the ranges
//! land without error; chain names with characters outside identifiers work.

use alloy::primitives::keccak256;
use chainmux_core::{
    B256, BlockPtr, Bytes, ChainKind, ChainSpec, DecodedEvent, Heads, Log, NormalizedBlock, Transaction,
    Transfer, TransferStandard, U256,
};
use chainmux_store::{
    EventFilter, LogFilter, PartitionBounds, RANGES_AHEAD, Store, StoreError, TransferFilter, partition_name,
};
use chainmux_testkit::TestDb;

/// Range-partitioned in the test; its name is no identifier.
const BIG: &str = "my-chain.v2";
/// Stays in the DEFAULT partitions, then gets one partition per table.
const SMALL: &str = "alpha";
const TABLES: [&str; 6] = ["blocks", "transactions", "logs", "transfers", "instructions", "events"];
const RANGE: u64 = 10;

fn hash(chain: &str, number: u64) -> B256 {
    keccak256(format!("partition test {chain} block {number}"))
}

fn ptr(chain: &str, number: u64) -> BlockPtr {
    BlockPtr::new(number, hash(chain, number))
}

fn bytes(seed: &str) -> Bytes {
    keccak256(seed).to_vec().into()
}

fn address(n: u64) -> Bytes {
    let mut out = [0u8; 20];
    out[12..].copy_from_slice(&n.to_be_bytes());
    out.to_vec().into()
}

/// A block with a transaction, two logs, two transfers and an event.
fn block(chain: &str, number: u64) -> NormalizedBlock {
    let tx_hash = bytes(&format!("{chain} tx {number}"));
    let logs = (0..2u32)
        .map(|i| Log {
            tx_hash: tx_hash.clone(),
            tx_index: 0,
            log_index: i,
            address: address(u64::from(i) + 10),
            topics: vec![keccak256(format!("topic {i}"))],
            data: Bytes::from(vec![i as u8; 32]),
        })
        .collect();
    let transfers = [TransferStandard::Native, TransferStandard::Erc20]
        .into_iter()
        .map(|standard| Transfer {
            tx_hash: tx_hash.clone(),
            log_index: 0,
            batch_index: 0,
            standard,
            token: (standard != TransferStandard::Native).then(|| address(77)),
            from: address(number % 3),
            to: address(100 + number % 5),
            amount: U256::from(number * 1_000 + 1),
            token_id: None,
            from_owner: None,
            to_owner: None,
            decimals: None,
        })
        .collect();
    NormalizedBlock {
        ptr: ptr(chain, number),
        parent: number.checked_sub(1).map(|n| ptr(chain, n)),
        timestamp: 1_700_000_000 + number,
        height: None,
        transactions: vec![Transaction {
            hash: tx_hash.clone(),
            index: 0,
            from: address(1),
            to: Some(address(2)),
            value: U256::from(number),
            nonce: number,
            gas_limit: 21_000,
            gas_price: Some(1),
            gas_used: Some(21_000),
            status: Some(true),
            contract_address: None,
            input: Bytes::new(),
            fee: None,
            error: None,
        }],
        logs,
        transfers,
        instructions: Vec::new(),
        events: vec![DecodedEvent {
            tx_hash,
            tx_index: 0,
            log_index: 1,
            address: address(11),
            contract: "token".into(),
            name: "Ping".into(),
            signature: "Ping(uint256)".into(),
            args: format!(r#"{{"id": "{number}"}}"#),
        }],
        created_contracts: Vec::new(),
    }
}

/// Writes blocks `from..=to` of `chain` in batches of 7, continuing the cursor.
async fn write(store: &Store, chain: &str, from: u64, to: u64) {
    let mut cursor = store.cursor(chain).await.expect("cursor");
    let numbers: Vec<u64> = (from..=to).collect();
    for batch in numbers.chunks(7) {
        let blocks: Vec<NormalizedBlock> = batch.iter().map(|&n| block(chain, n)).collect();
        store
            .write_batch(chain, cursor, &blocks)
            .await
            .unwrap_or_else(|err| panic!("write {chain} {batch:?}: {err}"));
        cursor = Some(ptr(chain, *batch.last().expect("non-empty chunk")));
    }
}

async fn set_head(store: &Store, chain: &str, latest: u64) {
    store.set_heads(chain, &Heads { latest, safe: None, finalized: None }).await.expect("set heads");
}

/// What the API reads of `chain`, as comparable text.
async fn reads(store: &Store, chain: &str) -> String {
    let transfers = store.transfers(chain, &TransferFilter { limit: 1000, ..Default::default() }).await;
    let by_address = store
        .transfers(
            chain,
            &TransferFilter { address: Some(address(101).to_vec()), limit: 1000, ..Default::default() },
        )
        .await;
    let logs = store.logs(chain, &LogFilter { limit: 1000, ..Default::default() }).await;
    let ranged_logs = store
        .logs(chain, &LogFilter { from_block: Some(8), to_block: Some(21), limit: 3, ..Default::default() })
        .await;
    let events = store.events(chain, &EventFilter { limit: 1000, ..Default::default() }).await;
    let block = store.block_by_number(chain, 13).await;
    let by_hash = store.block_by_hash(chain, hash(chain, 17).as_slice()).await;
    let tx = store.transaction(chain, &bytes(&format!("{chain} tx 5"))).await;
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{block:?}\n{by_hash:?}\n{tx:?}",
        transfers.map(|p| (p.items, p.has_more)),
        by_address.map(|p| (p.items, p.has_more)),
        logs.map(|p| (p.items, p.has_more)),
        ranged_logs.map(|p| (p.items, p.has_more)),
        events.map(|p| (p.items, p.has_more)),
    )
}

/// Per table, the partitions holding `chain`'s rows in blocks `from..=to`.
async fn holders(store: &Store, chain: &str, from: i64, to: i64) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for table in TABLES {
        let key = if table == "blocks" { "number" } else { "block_number" };
        let sql = format!(
            "SELECT DISTINCT tableoid::regclass::text FROM {table} WHERE chain = $1 AND {key} BETWEEN $2 AND $3 \
             ORDER BY 1"
        );
        let names: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(chain)
            .bind(from)
            .bind(to)
            .fetch_all(store.pool())
            .await
            .expect("tableoid");
        out.push((table.to_owned(), names));
    }
    out
}

/// `holders` as it must be: every table with rows there (instructions has none) in `partition(table)` alone.
fn expect_in(partition: impl Fn(&str) -> String) -> Vec<(String, Vec<String>)> {
    TABLES
        .iter()
        .map(|table| {
            let names = if *table == "instructions" { Vec::new() } else { vec![partition(table)] };
            (table.to_string(), names)
        })
        .collect()
}

async fn rows_in(store: &Store, relation: &str) -> i64 {
    // Names from `partition_name`: lowercase letters, digits and `_` only.
    let sql = format!("SELECT count(*) FROM \"{relation}\"");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(store.pool()).await.expect("count")
}

#[tokio::test]
async fn chains_move_into_their_own_partitions_and_ranges_follow_the_head() {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4).await.expect("connect to the test database");
    store.migrate().await.expect("migrate");
    for (i, name) in [BIG, SMALL].into_iter().enumerate() {
        let spec = ChainSpec { name: name.into(), kind: ChainKind::Evm, chain_id: 100 + i as u64 };
        store.register_chain(&spec).await.expect("register chain");
    }
    write(&store, BIG, 0, 24).await;
    write(&store, SMALL, 0, 24).await;
    set_head(&store, BIG, 30).await;
    let big_before = reads(&store, BIG).await;
    let small_before = reads(&store, SMALL).await;
    assert!(big_before.contains("Ping"), "the fixture reads events: {big_before}");
    assert_eq!(holders(&store, BIG, 0, 24).await, expect_in(|t| format!("{t}_default")));

    // First run: ranges of 10 from the lowest row to RANGES_AHEAD past the head (30).
    let report = store.partition_chain(BIG, Some(RANGE)).await.expect("partition");
    assert_eq!(report.block_range, Some(RANGE));
    let last_range = 30 / RANGE + RANGES_AHEAD;
    for table in TABLES {
        let base = partition_name(table, BIG);
        let created: Vec<_> = report.changes.iter().filter(|c| c.table == table).collect();
        assert_eq!(created.len() as u64, 1 + (last_range + 1) + 1, "{table}: {created:?}");
        assert_eq!(created[0].partition, base);
        assert_eq!(created[0].bounds, PartitionBounds::Chain);
        let moved = if table == "instructions" {
            0
        } else if table == "logs" || table == "transfers" {
            50
        } else {
            25
        };
        assert_eq!(created[0].rows_moved, Some(moved), "{table}");
        assert_eq!(created[1].bounds, PartitionBounds::Range { from: 0, to: RANGE });
        assert_eq!(created.last().map(|c| &c.bounds), Some(&PartitionBounds::Default));
    }
    for (from, to) in [(0, 9), (10, 19), (20, 24)] {
        assert_eq!(
            holders(&store, BIG, from, to).await,
            expect_in(|t| format!("{}_{from}", partition_name(t, BIG))),
            "blocks {from}..={to}"
        );
    }
    assert_eq!(holders(&store, SMALL, 0, 24).await, expect_in(|t| format!("{t}_default")));
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {table}_default WHERE chain = $1");
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(BIG)
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(left, 0, "{table}_default still holds rows of {BIG}");
    }
    assert_eq!(reads(&store, BIG).await, big_before, "reads of the partitioned chain changed");
    assert_eq!(reads(&store, SMALL).await, small_before, "reads of the other chain changed");

    // Idempotent: nothing is due.
    let again = store.partition_chain(BIG, None).await.expect("second run");
    assert_eq!(again.changes, Vec::new());
    assert_eq!(again.block_range, Some(RANGE));

    // Writes, duplicate detection and reverts through the partitions.
    write(&store, BIG, 25, 29).await;
    assert_eq!(holders(&store, BIG, 25, 29).await, expect_in(|t| format!("{}_20", partition_name(t, BIG))));
    let replay = store.write_batch(BIG, Some(ptr(BIG, 29)), &[block(BIG, 29)]).await;
    assert!(matches!(replay, Err(StoreError::Discontinuous { .. })), "{replay:?}");
    let removed = store.revert_to(BIG, ptr(BIG, 29), ptr(BIG, 24)).await.expect("revert");
    assert_eq!(removed, 5);
    assert_eq!(reads(&store, BIG).await, big_before, "reads after writing and reverting blocks 25..=29");

    // Beyond the created ranges (they end at 80): the chain's DEFAULT sub-partition takes the rows.
    let end = (last_range + 1) * RANGE;
    write(&store, BIG, 25, end + 6).await;
    let default = format!("{}_default", partition_name("transfers", BIG));
    assert_eq!(rows_in(&store, &default).await, 14);
    assert_eq!(
        holders(&store, BIG, end as i64, end as i64 + 6).await,
        expect_in(|t| format!("{}_default", partition_name(t, BIG)))
    );

    // The next run (cron) creates ranges up to the new head and moves those rows out of the DEFAULT.
    set_head(&store, BIG, end + 15).await;
    let report = store.partition_chain(BIG, Some(RANGE)).await.expect("third run");
    let new_ranges = (end + 15) / RANGE + RANGES_AHEAD - last_range;
    for table in TABLES {
        let created: Vec<_> = report.changes.iter().filter(|c| c.table == table).collect();
        assert_eq!(created.len() as u64, new_ranges, "{table}: {created:?}");
        assert_eq!(created[0].bounds, PartitionBounds::Range { from: end, to: end + RANGE });
        let moved = match table {
            "instructions" => 0,
            "logs" | "transfers" => 14,
            _ => 7,
        };
        assert_eq!(created[0].rows_moved, Some(moved), "{table}");
    }
    assert_eq!(rows_in(&store, &default).await, 0);
    assert_eq!(
        holders(&store, BIG, end as i64, end as i64 + 6).await,
        expect_in(|t| format!("{}_{end}", partition_name(t, BIG)))
    );
    assert_eq!(store.partition_chain(BIG, Some(RANGE)).await.expect("fourth run").changes, Vec::new());
    let refused = store.partition_chain(BIG, Some(RANGE * 2)).await;
    assert!(matches!(refused, Err(StoreError::Partition { .. })), "{refused:?}");

    // The other chain, one partition per table.
    let report = store.partition_chain(SMALL, None).await.expect("partition the other chain");
    assert_eq!(report.changes.len(), TABLES.len(), "{:?}", report.changes);
    assert_eq!(holders(&store, SMALL, 0, 24).await, expect_in(|t| partition_name(t, SMALL)));
    assert_eq!(reads(&store, SMALL).await, small_before);
    assert_eq!(store.partition_chain(SMALL, None).await.expect("again").changes, Vec::new());
    let refused = store.partition_chain(SMALL, Some(RANGE)).await;
    assert!(matches!(refused, Err(StoreError::Partition { .. })), "{refused:?}");
    write(&store, SMALL, 25, 30).await;
    let removed = store.revert_to(SMALL, ptr(SMALL, 30), ptr(SMALL, 24)).await.expect("revert");
    assert_eq!(removed, 6);
    assert_eq!(reads(&store, SMALL).await, small_before);

    let listed = store.partitions().await.expect("list partitions");
    for table in TABLES {
        let names: Vec<&str> =
            listed.iter().filter(|p| p.table == table).map(|p| p.partition.as_str()).collect();
        let big = partition_name(table, BIG);
        assert!(names.contains(&format!("{table}_default").as_str()), "{names:?}");
        assert!(names.contains(&partition_name(table, SMALL).as_str()), "{names:?}");
        assert!(names.contains(&big.as_str()), "{names:?}");
        assert!(names.contains(&format!("{big}_{end}").as_str()), "{names:?}");
        assert!(names.contains(&format!("{big}_default").as_str()), "{names:?}");
    }
}

#[tokio::test]
async fn a_chain_without_rows_gets_its_ranges_once_it_has_a_head() {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 2).await.expect("connect to the test database");
    store.migrate().await.expect("migrate");
    let spec = ChainSpec { name: BIG.into(), kind: ChainKind::Evm, chain_id: 1 };
    store.register_chain(&spec).await.expect("register chain");

    // Nothing known yet: the chain partition and its DEFAULT only.
    let report = store.partition_chain(BIG, Some(RANGE)).await.expect("partition");
    let bounds: Vec<_> =
        report.changes.iter().filter(|c| c.table == "logs").map(|c| c.bounds.clone()).collect();
    assert_eq!(bounds, [PartitionBounds::Chain, PartitionBounds::Default]);
    write(&store, BIG, 0, 12).await;
    assert_eq!(
        holders(&store, BIG, 0, 12).await,
        expect_in(|t| format!("{}_default", partition_name(t, BIG)))
    );

    set_head(&store, BIG, 12).await;
    let report = store.partition_chain(BIG, None).await.expect("second run");
    let ranges = 12 / RANGE + RANGES_AHEAD + 1;
    assert_eq!(report.changes.len() as u64, ranges * TABLES.len() as u64, "{:?}", report.changes);
    assert_eq!(holders(&store, BIG, 0, 9).await, expect_in(|t| format!("{}_0", partition_name(t, BIG))));
    assert_eq!(holders(&store, BIG, 10, 12).await, expect_in(|t| format!("{}_10", partition_name(t, BIG))));
    let refused = store.partition_chain(BIG, Some(0)).await;
    assert!(matches!(refused, Err(StoreError::Partition { .. })), "{refused:?}");
}

/// Each chain-data table's rows as text, in key order, hashed: equal before and after migration 0006.
async fn snapshot(store: &Store) -> Vec<(i64, Option<String>)> {
    let mut out = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t");
        out.push(sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(store.pool()).await.expect("snapshot"));
    }
    out
}

#[tokio::test]
async fn a_populated_database_migrates_in_place() {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 2).await.expect("connect to the test database");
    sqlx::migrate!("../../migrations").run_to(5, store.pool()).await.expect("migrations before partitioning");
    for (i, name) in [BIG, SMALL].into_iter().enumerate() {
        let spec = ChainSpec { name: name.into(), kind: ChainKind::Evm, chain_id: 100 + i as u64 };
        store.register_chain(&spec).await.expect("register chain");
        write(&store, name, 0, 24).await;
    }
    let before = snapshot(&store).await;
    assert_eq!(before[0].0, 50, "blocks written before the migration");

    store.migrate().await.expect("migrate a populated database");
    let kinds: Vec<(String, String)> = sqlx::query_as(
        "SELECT relname::text, relkind::text FROM pg_class WHERE relname = ANY($1) ORDER BY relname",
    )
    .bind(TABLES.iter().flat_map(|t| [t.to_string(), format!("{t}_default")]).collect::<Vec<_>>())
    .fetch_all(store.pool())
    .await
    .expect("relkinds");
    assert_eq!(kinds.len(), 2 * TABLES.len(), "{kinds:?}");
    for (name, kind) in &kinds {
        assert_eq!(kind, if name.ends_with("_default") { "r" } else { "p" }, "{name}");
    }
    // No index was built twice: the default partitions' indexes are the old ones, adopted by the parents'.
    let unattached: Vec<String> = sqlx::query_scalar(
        "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_class t ON t.oid = x.indrelid \
         WHERE t.relname LIKE '%\\_default' AND NOT i.relispartition",
    )
    .fetch_all(store.pool())
    .await
    .expect("indexes");
    assert_eq!(unattached, Vec::<String>::new());
    assert_eq!(snapshot(&store).await, before, "rows changed by the migration");
    assert_eq!(holders(&store, BIG, 0, 24).await, expect_in(|t| format!("{t}_default")));

    let big_before = reads(&store, BIG).await;
    write(&store, BIG, 25, 30).await;
    store.revert_to(BIG, ptr(BIG, 30), ptr(BIG, 24)).await.expect("revert");
    store.partition_chain(BIG, Some(RANGE)).await.expect("partition after migrating");
    assert_eq!(holders(&store, BIG, 10, 19).await, expect_in(|t| format!("{}_10", partition_name(t, BIG))));
    assert_eq!(reads(&store, BIG).await, big_before);
    assert_eq!(snapshot(&store).await, before, "rows changed by partitioning");
}
