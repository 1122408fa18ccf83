//! `Store::write_batch` against a real PostgreSQL: every column of every table reads back exactly as written
//! (NULLs, empty bytea, numerics up to 2^256 − 1, batches larger than one `COPY` message), a replayed batch is
//! refused by the cursor fence without touching anything, a row that is already stored or repeated fails the whole
//! batch, and a write cancelled at any point leaves all or nothing and a usable pool.

use std::time::Duration;

use alloy::primitives::keccak256;
use chainmux_core::{
    B256, BlockPtr, Bytes, ChainKind, ChainSpec, Log, NormalizedBlock, Transaction, Transfer,
    TransferStandard, U256,
};
use chainmux_store::{Store, StoreError, WriteStats};
use chainmux_testkit::TestDb;

const CHAIN: &str = "store-test";

fn block_hash(number: u64) -> B256 {
    keccak256(format!("store test block {number}"))
}

fn ptr(number: u64) -> BlockPtr {
    BlockPtr::new(number, block_hash(number))
}

fn tx_hash(block: u64, index: u32) -> Bytes {
    keccak256(format!("store test tx {block}.{index}")).to_vec().into()
}

fn address(n: u64) -> Bytes {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    bytes[12..].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    bytes.to_vec().into()
}

fn topic(n: u64) -> B256 {
    keccak256(n.to_be_bytes())
}

fn block(number: u64, parent: Option<u64>) -> NormalizedBlock {
    NormalizedBlock {
        ptr: ptr(number),
        parent: parent.map(ptr),
        timestamp: 1_700_000_000 + number * 12,
        transactions: Vec::new(),
        logs: Vec::new(),
        transfers: Vec::new(),
    }
}

fn transaction(block: u64, index: u32) -> Transaction {
    Transaction {
        hash: tx_hash(block, index),
        index,
        from: address(u64::from(index) + 1),
        to: Some(address(u64::from(index) + 1000)),
        value: U256::from(index),
        nonce: u64::from(index),
        gas_limit: 21_000,
        gas_price: Some(1_000_000_000),
        gas_used: Some(21_000),
        status: Some(true),
        contract_address: None,
        input: Bytes::from(vec![0xa9, 0x05, 0x9c, 0xbb]),
    }
}

fn transfer(block: u64, log_index: u32, batch_index: u32, standard: TransferStandard) -> Transfer {
    Transfer {
        tx_hash: tx_hash(block, 0),
        log_index,
        batch_index,
        standard,
        token: (standard != TransferStandard::Native).then(|| address(77)),
        from: address(1),
        to: address(2),
        amount: U256::from(1u64),
        token_id: None,
    }
}

/// Values that exercise the numeric encoding: zero, digit-group boundaries, trailing zero groups, every width.
fn big_values() -> Vec<U256> {
    let ten = U256::from(10u64);
    vec![
        U256::ZERO,
        U256::from(1u64),
        U256::from(9_999u64),
        U256::from(10_000u64),
        ten.pow(U256::from(8u64)),
        ten.pow(U256::from(16u64)) - U256::from(1u64),
        ten.pow(U256::from(16u64)),
        U256::from(u64::MAX),
        U256::from(u64::MAX) + U256::from(1u64),
        U256::from(u128::MAX),
        ten.pow(U256::from(38u64)),
        (U256::from(1u64) << 200) + U256::from(12_345u64),
        ten.pow(U256::from(76u64)),
        ten.pow(U256::from(77u64)),
        U256::MAX - U256::from(1u64),
        U256::MAX,
    ]
}

/// A small deterministic generator, so the many-rows block is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 ^ (self.0 >> 29)
    }

    fn u256(&mut self) -> U256 {
        let value = U256::from_limbs([self.next(), self.next(), self.next(), self.next()]);
        value >> (self.next() % 256) as usize
    }
}

/// Blocks 100..=102: every kind of row, NULLs and extremes in 100, an empty block 101, many rows in 102.
fn first_batch() -> Vec<NormalizedBlock> {
    let mut b100 = block(100, None);
    let mut full = transaction(100, 0);
    full.value = U256::MAX;
    full.nonce = u64::MAX;
    full.gas_limit = u64::MAX;
    full.gas_price = Some(u128::MAX);
    full.gas_used = Some(u64::MAX);
    let mut creation = transaction(100, 1);
    creation.to = None;
    creation.value = U256::ZERO;
    creation.nonce = 0;
    creation.gas_limit = 0;
    creation.gas_price = None;
    creation.gas_used = None;
    creation.status = None;
    creation.contract_address = Some(address(4242));
    creation.input = Bytes::new();
    let mut reverted = transaction(100, 2);
    reverted.status = Some(false);
    reverted.value = U256::from(10u64).pow(U256::from(8u64));
    reverted.gas_price = Some(10_000_000_000_000_000);
    reverted.gas_used = Some(0);
    b100.transactions = vec![full, creation, reverted];
    for (i, topics) in [4usize, 0, 1, 3, 2].into_iter().enumerate() {
        let i = i as u32;
        b100.logs.push(Log {
            tx_hash: tx_hash(100, i % 3),
            tx_index: i % 3,
            log_index: i,
            address: address(u64::from(i) + 500),
            topics: (0..topics as u64).map(|t| topic(u64::from(i) * 10 + t)).collect(),
            data: if i == 1 { Bytes::new() } else { Bytes::from(vec![i as u8; 32 * i as usize + 1]) },
        });
    }
    let mut native = transfer(100, 0, 0, TransferStandard::Native);
    native.amount = U256::MAX;
    let mut erc20 = transfer(100, 0, 0, TransferStandard::Erc20);
    erc20.amount = U256::ZERO;
    let mut erc721 = transfer(100, 3, 0, TransferStandard::Erc721);
    erc721.token_id = Some(U256::MAX);
    b100.transfers = vec![native, erc20, erc721];
    for (batch_index, value) in big_values().into_iter().enumerate() {
        let mut erc1155 = transfer(100, 4, batch_index as u32, TransferStandard::Erc1155);
        erc1155.amount = value;
        erc1155.token_id = Some(U256::MAX - value);
        b100.transfers.push(erc1155);
    }

    let b101 = block(101, Some(100));

    let mut b102 = block(102, Some(101));
    let mut rng = Lcg(102);
    for index in 0..300 {
        let mut t = transaction(102, index);
        t.value = rng.u256();
        t.nonce = rng.next();
        t.gas_limit = rng.next() >> (rng.next() % 64);
        t.gas_price = (index % 3 != 0).then(|| u128::from(rng.next()) << (rng.next() % 64));
        t.gas_used = (index % 5 != 0).then(|| rng.next() % 30_000_000);
        t.status = [Some(true), Some(false), None][index as usize % 3];
        t.input = Bytes::from(vec![index as u8; (rng.next() % 300) as usize]);
        b102.transactions.push(t);
    }
    for log_index in 0..4000u32 {
        let tx_index = log_index % 300;
        b102.logs.push(Log {
            tx_hash: tx_hash(102, tx_index),
            tx_index,
            log_index,
            address: address(rng.next() % 50),
            topics: (0..rng.next() % 5).map(|_| topic(rng.next())).collect(),
            data: Bytes::from(vec![log_index as u8; (rng.next() % 200) as usize]),
        });
        let standard = TransferStandard::ALL[(rng.next() % 4) as usize];
        let mut t = transfer(102, log_index, 0, standard);
        t.tx_hash = tx_hash(102, tx_index);
        t.amount = rng.u256();
        t.token_id =
            matches!(standard, TransferStandard::Erc721 | TransferStandard::Erc1155).then(|| rng.u256());
        t.from = address(rng.next() % 50);
        t.to = address(rng.next() % 50);
        b102.transfers.push(t);
    }
    vec![b100, b101, b102]
}

/// Blocks 103..=104, continuing [`first_batch`].
fn second_batch() -> Vec<NormalizedBlock> {
    let mut b103 = block(103, Some(102));
    b103.transactions = vec![transaction(103, 0), transaction(103, 1)];
    b103.logs.push(Log {
        tx_hash: tx_hash(103, 1),
        tx_index: 1,
        log_index: 0,
        address: address(9),
        topics: vec![topic(1), topic(2)],
        data: Bytes::from(vec![1, 2, 3]),
    });
    b103.transfers =
        vec![transfer(103, 0, 0, TransferStandard::Erc20), transfer(103, 1, 0, TransferStandard::Native)];
    let mut b104 = block(104, Some(103));
    b104.transactions = vec![transaction(104, 0)];
    vec![b103, b104]
}

async fn store(max_connections: u32) -> (TestDb, Store) {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, max_connections).await.expect("connect to the test database");
    store.migrate().await.expect("migrate");
    let spec = ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: 31337 };
    store.register_chain(&spec).await.expect("register chain");
    (db, store)
}

fn stats_of(blocks: &[NormalizedBlock]) -> WriteStats {
    WriteStats {
        blocks: blocks.len() as u64,
        transactions: blocks.iter().map(|b| b.transactions.len() as u64).sum(),
        logs: blocks.iter().map(|b| b.logs.len() as u64).sum(),
        transfers: blocks.iter().map(|b| b.transfers.len() as u64).sum(),
    }
}

type BlockTuple = (String, i64, Vec<u8>, Vec<u8>, i64, i32, i32);
/// A `transactions` row; numerics as their decimal text.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct TxRow {
    chain: String,
    block_number: i64,
    block_hash: Vec<u8>,
    tx_index: i32,
    hash: Vec<u8>,
    from_address: Vec<u8>,
    to_address: Option<Vec<u8>>,
    value: String,
    nonce: String,
    gas_limit: String,
    gas_price: Option<String>,
    gas_used: Option<String>,
    status: Option<bool>,
    contract_address: Option<Vec<u8>>,
    input: Vec<u8>,
}
type LogTuple = (
    String,
    i64,
    Vec<u8>,
    i32,
    Vec<u8>,
    i32,
    Vec<u8>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<u8>,
);
type TransferTuple = (
    String,
    i64,
    Vec<u8>,
    i32,
    i32,
    String,
    Vec<u8>,
    Option<Vec<u8>>,
    Vec<u8>,
    Vec<u8>,
    String,
    Option<String>,
);

/// The rows `blocks` must produce, in primary-key order, spelled out independently of the store's encoding.
fn expected_rows(
    blocks: &[NormalizedBlock],
) -> (Vec<BlockTuple>, Vec<TxRow>, Vec<LogTuple>, Vec<TransferTuple>) {
    let (mut bs, mut txs, mut logs, mut transfers) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for b in blocks {
        let (number, hash) = (b.ptr.number as i64, b.ptr.hash.to_vec());
        bs.push((
            CHAIN.to_owned(),
            number,
            hash.clone(),
            b.parent.map_or(vec![0; 32], |p| p.hash.to_vec()),
            b.timestamp as i64,
            b.transactions.len() as i32,
            b.logs.len() as i32,
        ));
        for t in &b.transactions {
            txs.push(TxRow {
                chain: CHAIN.to_owned(),
                block_number: number,
                block_hash: hash.clone(),
                tx_index: t.index as i32,
                hash: t.hash.to_vec(),
                from_address: t.from.to_vec(),
                to_address: t.to.as_ref().map(|a| a.to_vec()),
                value: t.value.to_string(),
                nonce: t.nonce.to_string(),
                gas_limit: t.gas_limit.to_string(),
                gas_price: t.gas_price.map(|p| p.to_string()),
                gas_used: t.gas_used.map(|g| g.to_string()),
                status: t.status,
                contract_address: t.contract_address.as_ref().map(|a| a.to_vec()),
                input: t.input.to_vec(),
            });
        }
        for l in &b.logs {
            let topic = |i: usize| l.topics.get(i).map(|t| t.to_vec());
            logs.push((
                CHAIN.to_owned(),
                number,
                hash.clone(),
                l.log_index as i32,
                l.tx_hash.to_vec(),
                l.tx_index as i32,
                l.address.to_vec(),
                topic(0),
                topic(1),
                topic(2),
                topic(3),
                l.data.to_vec(),
            ));
        }
        for t in &b.transfers {
            transfers.push((
                CHAIN.to_owned(),
                number,
                hash.clone(),
                t.log_index as i32,
                t.batch_index as i32,
                t.standard.as_str().to_owned(),
                t.tx_hash.to_vec(),
                t.token.as_ref().map(|a| a.to_vec()),
                t.from.to_vec(),
                t.to.to_vec(),
                t.amount.to_string(),
                t.token_id.map(|id| id.to_string()),
            ));
        }
    }
    txs.sort_by_key(|t| (t.block_number, t.tx_index));
    logs.sort_by_key(|l| (l.1, l.3));
    transfers.sort_by(|a, b| (a.1, a.3, a.4, &a.5).cmp(&(b.1, b.3, b.4, &b.5)));
    (bs, txs, logs, transfers)
}

fn assert_rows<T: PartialEq + std::fmt::Debug>(table: &str, actual: &[T], expected: &[T]) {
    assert_eq!(actual.len(), expected.len(), "{table}: row count");
    for (i, (actual, expected)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(actual, expected, "{table}: row {i}");
    }
}

async fn assert_stored(store: &Store, blocks: &[NormalizedBlock]) {
    let (blocks, txs, logs, transfers) = expected_rows(blocks);
    let pool = store.pool();
    let actual: Vec<BlockTuple> = sqlx::query_as(
        "SELECT chain, number, hash, parent_hash, timestamp, tx_count, log_count FROM blocks ORDER BY chain, number",
    )
    .fetch_all(pool)
    .await
    .expect("read blocks");
    assert_rows("blocks", &actual, &blocks);
    let actual: Vec<TxRow> = sqlx::query_as(
        "SELECT chain, block_number, block_hash, tx_index, hash, from_address, to_address, value::text AS value, \
         nonce::text AS nonce, gas_limit::text AS gas_limit, gas_price::text AS gas_price, \
         gas_used::text AS gas_used, status, contract_address, input \
         FROM transactions ORDER BY chain, block_number, tx_index",
    )
    .fetch_all(pool)
    .await
    .expect("read transactions");
    assert_rows("transactions", &actual, &txs);
    let actual: Vec<LogTuple> = sqlx::query_as(
        "SELECT chain, block_number, block_hash, log_index, tx_hash, tx_index, address, topic0, topic1, topic2, \
         topic3, data FROM logs ORDER BY chain, block_number, log_index",
    )
    .fetch_all(pool)
    .await
    .expect("read logs");
    assert_rows("logs", &actual, &logs);
    let actual: Vec<TransferTuple> = sqlx::query_as(
        "SELECT chain, block_number, block_hash, log_index, batch_index, standard, tx_hash, token, from_address, \
         to_address, amount::text, token_id::text FROM transfers \
         ORDER BY chain, block_number, log_index, batch_index, standard COLLATE \"C\"",
    )
    .fetch_all(pool)
    .await
    .expect("read transfers");
    assert_rows("transfers", &actual, &transfers);
}

/// Everything stored, as one comparable value: each table's rows as text (the cursor with its `updated_at`).
async fn snapshot(store: &Store) -> Vec<(i64, Option<String>)> {
    let mut out = Vec::new();
    for table in ["cursors", "blocks", "transactions", "logs", "transfers"] {
        let sql = format!("SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t");
        out.push(sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(store.pool()).await.expect("snapshot"));
    }
    out
}

async fn cursor(store: &Store) -> Option<BlockPtr> {
    store.cursor(CHAIN).await.expect("read cursor")
}

#[tokio::test]
async fn every_column_reads_back_exactly() {
    let (_db, store) = store(5).await;
    let first = first_batch();
    let second = second_batch();

    let stats = store.write_batch(CHAIN, None, &first).await.expect("write blocks 100..=102");
    assert_eq!(stats, stats_of(&first));
    assert_eq!((stats.logs, stats.transfers), (4005, 4019), "the many-rows block is there");
    let stats = store.write_batch(CHAIN, Some(ptr(102)), &second).await.expect("write blocks 103..=104");
    assert_eq!(stats, stats_of(&second));
    assert_eq!(cursor(&store).await, Some(ptr(104)));

    let all: Vec<NormalizedBlock> = first.into_iter().chain(second).collect();
    assert_stored(&store, &all).await;

    // The numerics are numbers, not only the right text: compare and add them in SQL.
    let (at_max, sum): (i64, String) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE amount = $1::numeric), \
         (sum(amount) FILTER (WHERE block_number = 100 AND standard = 'erc1155'))::text FROM transfers",
    )
    .bind(U256::MAX.to_string())
    .fetch_one(store.pool())
    .await
    .expect("numeric comparison and sum");
    assert!(at_max >= 2, "the native and the erc1155 transfer of 2^256-1");
    let values: Vec<String> = big_values().iter().map(U256::to_string).collect();
    let expected_sum: String = sqlx::query_scalar("SELECT sum(v::numeric)::text FROM unnest($1::text[]) v")
        .bind(&values)
        .fetch_one(store.pool())
        .await
        .expect("sum of the decimal texts");
    assert_eq!(sum, expected_sum);
}

#[tokio::test]
async fn a_replayed_batch_is_refused_and_changes_nothing() {
    let (_db, store) = store(5).await;
    let first = first_batch();
    let second = second_batch();
    store.write_batch(CHAIN, None, &first).await.expect("write blocks 100..=102");
    store.write_batch(CHAIN, Some(ptr(102)), &second).await.expect("write blocks 103..=104");
    let before = snapshot(&store).await;

    match store.write_batch(CHAIN, Some(ptr(102)), &second).await {
        Err(StoreError::CursorMoved { chain, expected, actual }) => {
            assert_eq!(chain, CHAIN);
            assert_eq!(expected, Some(ptr(102)));
            assert_eq!(actual, Some(ptr(104)));
        }
        other => panic!("replay of 103..=104: expected CursorMoved, got {other:?}"),
    }
    match store.write_batch(CHAIN, None, &first).await {
        Err(StoreError::CursorMoved { expected: None, actual, .. }) => assert_eq!(actual, Some(ptr(104))),
        other => panic!("replay of 100..=102: expected CursorMoved, got {other:?}"),
    }
    assert_eq!(snapshot(&store).await, before, "nothing changed, not even the cursor's updated_at");
    assert_stored(&store, &first.into_iter().chain(second).collect::<Vec<_>>()).await;
}

fn assert_duplicate(result: Result<WriteStats, StoreError>, table: &str) {
    match result {
        Err(StoreError::Discontinuous { chain, reason }) => {
            assert_eq!(chain, CHAIN);
            assert!(reason.starts_with(&format!("table {table}: a row of blocks ")), "{reason}");
            assert!(reason.contains(&format!("\"{table}_pkey\"")), "{reason}");
            assert!(reason.contains("already exists"), "{reason}");
        }
        other => panic!("expected a duplicate in {table}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_duplicate_row_fails_the_whole_batch() {
    // One connection: each failed batch must leave it usable for the next.
    let (_db, store) = store(1).await;
    let first = first_batch();
    store.write_batch(CHAIN, None, &first).await.expect("write blocks 100..=102");
    let before = snapshot(&store).await;

    // A batch that holds a row twice, in the first and in the last table written.
    let mut twice = second_batch();
    let log = twice[0].logs[0].clone();
    twice[0].logs.push(log);
    assert_duplicate(store.write_batch(CHAIN, Some(ptr(102)), &twice).await, "logs");
    let mut twice = second_batch();
    let transfer = twice[0].transfers[1].clone();
    twice[0].transfers.push(transfer);
    assert_duplicate(store.write_batch(CHAIN, Some(ptr(102)), &twice).await, "transfers");
    assert_eq!(snapshot(&store).await, before, "a failed batch leaves nothing behind");

    // Rows above the cursor (which the fence rules out, so the store is inconsistent): not overwritten, not skipped.
    sqlx::query("UPDATE cursors SET block_number = 101, block_hash = $1 WHERE chain = $2")
        .bind(block_hash(101).as_slice())
        .bind(CHAIN)
        .execute(store.pool())
        .await
        .expect("move the cursor back by hand");
    let before = snapshot(&store).await;
    assert_duplicate(store.write_batch(CHAIN, Some(ptr(101)), &first[2..]).await, "blocks");
    assert_eq!(snapshot(&store).await, before);
    assert_eq!(cursor(&store).await, Some(ptr(101)));

    // A value that does not fit its column fails before anything is sent.
    sqlx::query("UPDATE cursors SET block_number = 102, block_hash = $1 WHERE chain = $2")
        .bind(block_hash(102).as_slice())
        .bind(CHAIN)
        .execute(store.pool())
        .await
        .expect("restore the cursor");
    let mut too_big = second_batch();
    too_big[0].logs[0].log_index = u32::MAX;
    match store.write_batch(CHAIN, Some(ptr(102)), &too_big).await {
        Err(StoreError::OutOfRange("log_index")) => {}
        other => panic!("expected OutOfRange(log_index), got {other:?}"),
    }

    // The connection is still good, and the right batch goes in whole.
    let second = second_batch();
    let stats = store.write_batch(CHAIN, Some(ptr(102)), &second).await.expect("write blocks 103..=104");
    assert_eq!(stats, stats_of(&second));
    assert_eq!(cursor(&store).await, Some(ptr(104)));
    assert_stored(&store, &first.into_iter().chain(second).collect::<Vec<_>>()).await;
}

#[tokio::test]
async fn a_write_cancelled_at_any_point_is_all_or_nothing() {
    // One connection: a write dropped mid-COPY must not leave it unusable or out of step for the next one.
    let (_db, store) = store(1).await;
    let first = first_batch();
    let full = stats_of(&first);
    let counts = |snapshot: Vec<(i64, Option<String>)>| {
        snapshot.into_iter().map(|(n, _)| n as u64).collect::<Vec<_>>()
    };
    let nothing = vec![0; 5];
    let all = vec![1, full.blocks, full.transactions, full.logs, full.transfers];

    // Cancel the write after ever longer delays until one completes: each cancellation lands at another point
    // (begin, cursor, one of the COPYs, commit).
    let mut delay = Duration::from_micros(100);
    let mut cancelled = 0;
    loop {
        match tokio::time::timeout(delay, store.write_batch(CHAIN, None, &first)).await {
            Ok(Ok(stats)) => {
                assert_eq!(stats, full);
                break;
            }
            // An earlier attempt was cancelled after its COMMIT had been sent: it committed, whole.
            Ok(Err(StoreError::CursorMoved { actual, .. })) => {
                assert_eq!(actual, Some(ptr(102)));
                break;
            }
            Ok(Err(err)) => panic!("write after {cancelled} cancellations: {err}"),
            Err(_) => {
                cancelled += 1;
                let stored = counts(snapshot(&store).await);
                assert!(stored == nothing || stored == all, "after a cancellation at {delay:?}: {stored:?}");
            }
        }
        delay = delay * 3 / 2;
    }
    assert!(cancelled >= 5, "only {cancelled} cancellations");
    assert_stored(&store, &first).await;

    let second = second_batch();
    store.write_batch(CHAIN, Some(ptr(102)), &second).await.expect("write blocks 103..=104");
    assert_stored(&store, &first.into_iter().chain(second).collect::<Vec<_>>()).await;
}
