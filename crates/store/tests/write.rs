//! `Store::write_batch` against a real PostgreSQL: every column of every table reads back exactly as written
//! (NULLs, empty bytea, numerics up to 2^256 − 1, `bytea[]`/`text[]` arrays empty or long, batches larger than one
//! `COPY` message), for EVM- and Solana-shaped blocks; a replayed batch is refused by the cursor fence without
//! touching anything, a row that is already stored or repeated fails the whole batch, a write cancelled at any
//! point leaves all or nothing and a usable pool, and a revert removes every table's rows above the ancestor.

use std::time::Duration;

use alloy::primitives::keccak256;
use chainmux_core::{
    B256, BlockPtr, Bytes, ChainKind, ChainSpec, Instruction, Log, NormalizedBlock, Transaction, Transfer,
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
        height: None,
        transactions: Vec::new(),
        logs: Vec::new(),
        transfers: Vec::new(),
        instructions: Vec::new(),
        events: Vec::new(),
        created_contracts: Vec::new(),
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
        fee: None,
        error: None,
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
        from_owner: None,
        to_owner: None,
        decimals: None,
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
    store_of(ChainKind::Evm, max_connections).await
}

async fn store_of(kind: ChainKind, max_connections: u32) -> (TestDb, Store) {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, max_connections).await.expect("connect to the test database");
    store.migrate().await.expect("migrate");
    let chain_id = if kind == ChainKind::Evm { 31337 } else { 0 };
    let spec = ChainSpec { name: CHAIN.into(), kind, chain_id };
    store.register_chain(&spec).await.expect("register chain");
    (db, store)
}

fn stats_of(blocks: &[NormalizedBlock]) -> WriteStats {
    WriteStats {
        blocks: blocks.len() as u64,
        transactions: blocks.iter().map(|b| b.transactions.len() as u64).sum(),
        logs: blocks.iter().map(|b| b.logs.len() as u64).sum(),
        transfers: blocks.iter().map(|b| b.transfers.len() as u64).sum(),
        instructions: blocks.iter().map(|b| b.instructions.len() as u64).sum(),
        events: blocks.iter().map(|b| b.events.len() as u64).sum(),
        contracts: blocks.iter().map(|b| b.created_contracts.len() as u64).sum(),
    }
}

/// A `blocks` row.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct BlockRow {
    chain: String,
    number: i64,
    hash: Vec<u8>,
    parent_hash: Vec<u8>,
    parent_number: Option<i64>,
    height: Option<i64>,
    timestamp: i64,
    tx_count: i32,
    log_count: i32,
}
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
    fee: Option<String>,
    error: Option<String>,
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
/// A `transfers` row; numerics as their decimal text.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct TransferRow {
    chain: String,
    block_number: i64,
    block_hash: Vec<u8>,
    log_index: i32,
    batch_index: i32,
    standard: String,
    tx_hash: Vec<u8>,
    token: Option<Vec<u8>>,
    from_address: Vec<u8>,
    to_address: Vec<u8>,
    amount: String,
    token_id: Option<String>,
    from_owner: Option<Vec<u8>>,
    to_owner: Option<Vec<u8>>,
    decimals: Option<i16>,
}
/// An `instructions` row.
#[derive(Debug, PartialEq, sqlx::FromRow)]
struct InstructionRow {
    chain: String,
    block_number: i64,
    block_hash: Vec<u8>,
    tx_index: i32,
    position: i32,
    tx_hash: Vec<u8>,
    outer_index: i32,
    inner_index: Option<i32>,
    stack_height: i32,
    program: Vec<u8>,
    accounts: Vec<Vec<u8>>,
    data: Vec<u8>,
    logs: Vec<String>,
}

struct Expected {
    blocks: Vec<BlockRow>,
    transactions: Vec<TxRow>,
    logs: Vec<LogTuple>,
    transfers: Vec<TransferRow>,
    instructions: Vec<InstructionRow>,
}

/// The rows `blocks` must produce, in primary-key order, spelled out independently of the store's encoding.
fn expected_rows(blocks: &[NormalizedBlock]) -> Expected {
    let (mut bs, mut txs, mut logs, mut transfers) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut instructions = Vec::new();
    for b in blocks {
        let (number, hash) = (b.ptr.number as i64, b.ptr.hash.to_vec());
        bs.push(BlockRow {
            chain: CHAIN.to_owned(),
            number,
            hash: hash.clone(),
            parent_hash: b.parent.map_or(vec![0; 32], |p| p.hash.to_vec()),
            parent_number: b.parent.map(|p| p.number as i64),
            height: b.height.map(|h| h as i64),
            timestamp: b.timestamp as i64,
            tx_count: b.transactions.len() as i32,
            log_count: b.logs.len() as i32,
        });
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
                fee: t.fee.map(|f| f.to_string()),
                error: t.error.clone(),
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
            transfers.push(TransferRow {
                chain: CHAIN.to_owned(),
                block_number: number,
                block_hash: hash.clone(),
                log_index: t.log_index as i32,
                batch_index: t.batch_index as i32,
                standard: t.standard.as_str().to_owned(),
                tx_hash: t.tx_hash.to_vec(),
                token: t.token.as_ref().map(|a| a.to_vec()),
                from_address: t.from.to_vec(),
                to_address: t.to.to_vec(),
                amount: t.amount.to_string(),
                token_id: t.token_id.map(|id| id.to_string()),
                from_owner: t.from_owner.as_ref().map(|a| a.to_vec()),
                to_owner: t.to_owner.as_ref().map(|a| a.to_vec()),
                decimals: t.decimals.map(i16::from),
            });
        }
        for i in &b.instructions {
            instructions.push(InstructionRow {
                chain: CHAIN.to_owned(),
                block_number: number,
                block_hash: hash.clone(),
                tx_index: i.tx_index as i32,
                position: i.position as i32,
                tx_hash: i.tx_hash.to_vec(),
                outer_index: i.outer_index as i32,
                inner_index: i.inner_index.map(|n| n as i32),
                stack_height: i.stack_height as i32,
                program: i.program.to_vec(),
                accounts: i.accounts.iter().map(|a| a.to_vec()).collect(),
                data: i.data.to_vec(),
                // PostgreSQL text cannot hold NUL: the store keeps U+FFFD in its place.
                logs: i.logs.iter().map(|l| l.replace('\0', "\u{fffd}")).collect(),
            });
        }
    }
    txs.sort_by_key(|t| (t.block_number, t.tx_index));
    logs.sort_by_key(|l| (l.1, l.3));
    transfers.sort_by(|a, b| {
        (a.block_number, a.log_index, a.batch_index, &a.standard).cmp(&(
            b.block_number,
            b.log_index,
            b.batch_index,
            &b.standard,
        ))
    });
    instructions.sort_by_key(|i| (i.block_number, i.tx_index, i.position));
    Expected { blocks: bs, transactions: txs, logs, transfers, instructions }
}

fn assert_rows<T: PartialEq + std::fmt::Debug>(table: &str, actual: &[T], expected: &[T]) {
    assert_eq!(actual.len(), expected.len(), "{table}: row count");
    for (i, (actual, expected)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(actual, expected, "{table}: row {i}");
    }
}

async fn assert_stored(store: &Store, blocks: &[NormalizedBlock]) {
    let Expected { blocks, transactions: txs, logs, transfers, instructions } = expected_rows(blocks);
    let pool = store.pool();
    let actual: Vec<BlockRow> = sqlx::query_as(
        "SELECT chain, number, hash, parent_hash, parent_number, height, timestamp, tx_count, log_count \
         FROM blocks ORDER BY chain, number",
    )
    .fetch_all(pool)
    .await
    .expect("read blocks");
    assert_rows("blocks", &actual, &blocks);
    let actual: Vec<TxRow> = sqlx::query_as(
        "SELECT chain, block_number, block_hash, tx_index, hash, from_address, to_address, value::text AS value, \
         nonce::text AS nonce, gas_limit::text AS gas_limit, gas_price::text AS gas_price, \
         gas_used::text AS gas_used, status, contract_address, input, fee::text AS fee, error \
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
    let actual: Vec<TransferRow> = sqlx::query_as(
        "SELECT chain, block_number, block_hash, log_index, batch_index, standard, tx_hash, token, from_address, \
         to_address, amount::text AS amount, token_id::text AS token_id, from_owner, to_owner, decimals \
         FROM transfers ORDER BY chain, block_number, log_index, batch_index, standard COLLATE \"C\"",
    )
    .fetch_all(pool)
    .await
    .expect("read transfers");
    assert_rows("transfers", &actual, &transfers);
    let actual: Vec<InstructionRow> = sqlx::query_as(
        "SELECT chain, block_number, block_hash, tx_index, position, tx_hash, outer_index, inner_index, \
         stack_height, program, accounts, data, logs FROM instructions \
         ORDER BY chain, block_number, tx_index, position",
    )
    .fetch_all(pool)
    .await
    .expect("read instructions");
    assert_rows("instructions", &actual, &instructions);
}

/// Everything stored, as one comparable value: each table's rows as text (the cursor with its `updated_at`).
async fn snapshot(store: &Store) -> Vec<(i64, Option<String>)> {
    let mut out = Vec::new();
    for table in ["cursors", "blocks", "transactions", "logs", "transfers", "instructions"] {
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
            // The violated index is the partition's (`logs_default_pkey`, …) since migration 0006.
            assert!(reason.contains(&format!("\"{table}_default_pkey\"")), "{reason}");
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
    let nothing = vec![0; 6];
    let all = vec![1, full.blocks, full.transactions, full.logs, full.transfers, 0];

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

// Solana-shaped blocks: slots with a skipped one, fees and errors, SOL and SPL transfers with owners and decimals,
// instructions with empty and long account and log arrays.

fn slot_hash(slot: u64) -> B256 {
    keccak256(format!("store test slot {slot}"))
}

fn slot_ptr(slot: u64) -> BlockPtr {
    BlockPtr::new(slot, slot_hash(slot))
}

/// A 64-byte transaction signature.
fn signature(slot: u64, index: u32) -> Bytes {
    let mut bytes = keccak256(format!("store test signature {slot}.{index}")).to_vec();
    bytes.extend_from_slice(keccak256(format!("store test signature {slot}.{index} second half")).as_slice());
    bytes.into()
}

/// A 32-byte Solana address.
fn key(n: u64) -> Bytes {
    keccak256(format!("store test key {n}")).to_vec().into()
}

fn zero_key() -> Bytes {
    Bytes::from(vec![0u8; 32])
}

const MINT: u64 = 50;
const PROGRAM: u64 = 90;

fn slot_block(slot: u64, parent: u64, height: u64) -> NormalizedBlock {
    NormalizedBlock {
        ptr: slot_ptr(slot),
        parent: Some(slot_ptr(parent)),
        timestamp: 1_750_000_000 + slot / 3,
        height: Some(height),
        transactions: Vec::new(),
        logs: Vec::new(),
        transfers: Vec::new(),
        instructions: Vec::new(),
        events: Vec::new(),
        created_contracts: Vec::new(),
    }
}

fn sol_transaction(slot: u64, index: u32, fee: u128, error: Option<&str>) -> Transaction {
    Transaction {
        hash: signature(slot, index),
        index,
        from: key(u64::from(index) + 1),
        to: None,
        value: U256::ZERO,
        nonce: 0,
        gas_limit: 0,
        gas_price: None,
        gas_used: Some(150 * (u64::from(index) + 1)),
        status: Some(error.is_none()),
        contract_address: None,
        input: Bytes::new(),
        fee: Some(fee),
        error: error.map(str::to_owned),
    }
}

#[allow(clippy::too_many_arguments)]
fn spl(
    slot: u64,
    tx: u32,
    position: u32,
    (from, to): (Bytes, Bytes),
    (from_owner, to_owner): (Option<Bytes>, Option<Bytes>),
    amount: u64,
    decimals: u8,
) -> Transfer {
    Transfer {
        tx_hash: signature(slot, tx),
        log_index: tx,
        batch_index: position,
        standard: TransferStandard::Spl,
        token: Some(key(MINT)),
        from,
        to,
        amount: U256::from(amount),
        token_id: None,
        from_owner,
        to_owner,
        decimals: Some(decimals),
    }
}

fn sol(slot: u64, tx: u32, position: u32, from: Bytes, to: Bytes, lamports: u64) -> Transfer {
    Transfer {
        tx_hash: signature(slot, tx),
        log_index: tx,
        batch_index: position,
        standard: TransferStandard::Sol,
        token: None,
        from,
        to,
        amount: U256::from(lamports),
        token_id: None,
        from_owner: None,
        to_owner: None,
        decimals: None,
    }
}

fn instruction(slot: u64, tx: u32, position: u32, inner: Option<u32>, program: Bytes) -> Instruction {
    Instruction {
        tx_hash: signature(slot, tx),
        tx_index: tx,
        position,
        outer_index: 0,
        inner_index: inner,
        stack_height: inner.map_or(1, |i| i + 2),
        program,
        accounts: Vec::new(),
        data: Bytes::new(),
        logs: Vec::new(),
    }
}

/// Slots 300, 301 and 303 (302 skipped): transfers and instructions of every shape in 300, an empty 301, many rows
/// in 303.
fn solana_first_batch() -> Vec<NormalizedBlock> {
    let (alice, bob) = (key(1), key(2));
    let (alice_ata, bob_ata, alice_ata2) = (key(11), key(12), key(13));

    let mut s300 = slot_block(300, 299, 1000);
    let mut failed = sol_transaction(300, 1, u128::MAX, Some(r#"{"InstructionError":[0,{"Custom":1}]}"#));
    failed.gas_used = None;
    s300.transactions = vec![sol_transaction(300, 0, 5000, None), failed];
    s300.transfers = vec![
        sol(300, 0, 0, alice.clone(), bob.clone(), u64::MAX),
        spl(
            300,
            0,
            2,
            (alice_ata.clone(), bob_ata.clone()),
            (Some(alice.clone()), Some(bob.clone())),
            250_000,
            6,
        ),
        spl(300, 0, 3, (zero_key(), alice_ata.clone()), (None, Some(alice.clone())), 1, 0),
        spl(300, 0, 4, (bob_ata.clone(), zero_key()), (Some(bob.clone()), None), u64::MAX, u8::MAX),
        // Between two token accounts of one wallet: matches that wallet on both sides.
        spl(300, 0, 5, (alice_ata.clone(), alice_ata2), (Some(alice.clone()), Some(alice.clone())), 7, 6),
    ];
    let mut outer = instruction(300, 0, 0, None, key(PROGRAM));
    outer.accounts = vec![alice.clone(), alice_ata, bob_ata, key(91)];
    outer.data = Bytes::from(vec![1, 2, 3]);
    outer.logs = vec!["Program log: Instruction: Pay".into(), "ünïcødé ✓ \u{1F600}".into()];
    // Inner, with nothing: empty arrays, empty data.
    let empty = instruction(300, 0, 1, Some(0), key(91));
    let mut deep = instruction(300, 0, 2, Some(1), key(92));
    deep.accounts = (0..40).map(|n| key(1000 + n)).collect();
    deep.data = Bytes::from((0..1000u32).map(|n| n as u8).collect::<Vec<_>>());
    // What the text form of arrays would have to escape, and a NUL, which text cannot hold at all.
    deep.logs = vec![
        "a\0b".into(),
        String::new(),
        r#"{"quoted": "\\"}"#.into(),
        "comma, {brace} \"quote\" back\\slash NULL".into(),
    ];
    let mut in_failed = instruction(300, 1, 0, None, key(PROGRAM));
    in_failed.accounts = vec![bob];
    in_failed.data = Bytes::from(vec![0xff]);
    in_failed.logs = vec!["Program failed: custom program error: 0x1".into()];
    s300.instructions = vec![outer, empty, deep, in_failed];

    let mut s301 = slot_block(301, 300, 1001);
    s301.timestamp = 0;

    let mut s303 = slot_block(303, 301, 1002);
    let mut rng = Lcg(303);
    for tx in 0..100u32 {
        s303.transactions.push(sol_transaction(303, tx, u128::from(rng.next()), None));
        s303.transfers.push(sol(303, tx, 0, key(rng.next() % 20), key(rng.next() % 20), rng.next()));
        for position in 0..30u32 {
            let inner = (position > 0).then(|| position - 1);
            let mut i = instruction(303, tx, position, inner, key(PROGRAM + rng.next() % 3));
            i.accounts = (0..rng.next() % 20).map(|_| key(rng.next() % 100)).collect();
            i.data = Bytes::from(vec![position as u8; (rng.next() % 64) as usize]);
            i.logs = (0..rng.next() % 5).map(|n| format!("Program log: {tx}.{position}.{n}")).collect();
            s303.instructions.push(i);
        }
    }
    vec![s300, s301, s303]
}

/// Slots 304 and 305, continuing [`solana_first_batch`].
fn solana_second_batch() -> Vec<NormalizedBlock> {
    let mut s304 = slot_block(304, 303, 1003);
    s304.transactions = vec![sol_transaction(304, 0, 5000, None)];
    s304.transfers = vec![sol(304, 0, 0, key(2), key(1), 42)];
    let mut i = instruction(304, 0, 0, None, key(PROGRAM));
    i.accounts = vec![key(2)];
    s304.instructions = vec![i];
    let s305 = slot_block(305, 304, 1004);
    vec![s304, s305]
}

#[tokio::test]
async fn solana_rows_read_back_exactly() {
    let (_db, store) = store_of(ChainKind::Solana, 5).await;
    let first = solana_first_batch();
    let second = solana_second_batch();

    let stats = store.write_batch(CHAIN, None, &first).await.expect("write slots 300..=303");
    assert_eq!(stats, stats_of(&first));
    assert_eq!((stats.transfers, stats.instructions), (105, 3004));
    assert_eq!(stats.rows(), 3 + 102 + 105 + 3004);
    let stats = store.write_batch(CHAIN, Some(slot_ptr(303)), &second).await.expect("write slots 304..=305");
    assert_eq!(stats, stats_of(&second));
    let all: Vec<NormalizedBlock> = first.into_iter().chain(second).collect();
    assert_stored(&store, &all).await;

    // The arrays are real arrays: one dimension from 1, or empty (not NULL, not a one-element array).
    let shape = |position: i32| {
        sqlx::query_as::<_, (Option<i32>, Option<i32>, Option<i32>, bool, Option<String>)>(
            "SELECT array_ndims(accounts), array_lower(accounts, 1), array_upper(accounts, 1), \
             logs = '{}'::text[], logs[1] FROM instructions WHERE block_number = 300 AND tx_index = 0 \
             AND position = $1",
        )
        .bind(position)
        .fetch_one(store.pool())
    };
    assert_eq!(shape(1).await.expect("empty arrays"), (None, None, None, true, None));
    assert_eq!(
        shape(2).await.expect("long arrays"),
        (Some(1), Some(1), Some(40), false, Some("a\u{fffd}b".into()))
    );
    let last_account: Vec<u8> = sqlx::query_scalar(
        "SELECT accounts[40] FROM instructions WHERE block_number = 300 AND tx_index = 0 AND position = 2",
    )
    .fetch_one(store.pool())
    .await
    .expect("element 40");
    assert_eq!(last_account, key(1039).to_vec());
    let (fees, decimals): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM transactions WHERE fee = $1::numeric), \
         (SELECT count(*) FROM transfers WHERE decimals = 255)",
    )
    .bind(u128::MAX.to_string())
    .fetch_one(store.pool())
    .await
    .expect("numeric and smallint");
    assert_eq!((fees, decimals), (1, 1));
}

/// `(block, log_index, batch_index, standard)` of the fixture's transfers that `keep` selects, in keyset order.
fn transfer_keys_of(
    blocks: &[NormalizedBlock],
    keep: impl Fn(&Transfer) -> bool,
) -> Vec<(i64, i32, i32, String)> {
    let mut keys: Vec<_> = blocks
        .iter()
        .flat_map(|b| {
            b.transfers.iter().filter(|t| keep(t)).map(|t| {
                (
                    b.ptr.number as i64,
                    t.log_index as i32,
                    t.batch_index as i32,
                    t.standard.as_str().to_owned(),
                )
            })
        })
        .collect();
    keys.sort();
    keys
}

/// `(block, tx_index, position)` of an instruction.
type InstructionKeyTuple = (i64, i32, i32);

fn row_keys(rows: &[chainmux_store::TransferRow]) -> Vec<(i64, i32, i32, String)> {
    rows.iter().map(|r| (r.block_number, r.log_index, r.batch_index, r.standard.clone())).collect()
}

#[tokio::test]
async fn solana_reads_match_owners_and_page_instructions() {
    use chainmux_store::{InstructionFilter, TransferFilter};

    let (_db, store) = store_of(ChainKind::Solana, 5).await;
    let mut all = solana_first_batch();
    store.write_batch(CHAIN, None, &all).await.expect("write slots 300..=303");
    let second = solana_second_batch();
    store.write_batch(CHAIN, Some(slot_ptr(303)), &second).await.expect("write slots 304..=305");
    all.extend(second);

    let block = store.block_by_number(CHAIN, 303).await.expect("read").expect("slot 303");
    assert_eq!(
        (block.parent_number, block.height, block.parent_hash),
        (Some(301), Some(1002), slot_hash(301).to_vec())
    );
    assert!(store.block_by_number(CHAIN, 302).await.expect("read").is_none(), "skipped");
    let failed = store.transaction(CHAIN, &signature(300, 1)).await.expect("read").expect("tx");
    assert_eq!(failed.fee, Some(u128::MAX.to_string()));
    assert_eq!(failed.error.as_deref(), Some(r#"{"InstructionError":[0,{"Custom":1}]}"#));
    assert_eq!((failed.status, failed.gas_used), (Some(false), None));

    // A wallet matches its own transfers and those of the token accounts it owns, each once.
    let alice = key(1);
    let expected = transfer_keys_of(&all, |t| {
        t.from == alice
            || t.to == alice
            || t.from_owner.as_ref() == Some(&alice)
            || t.to_owner.as_ref() == Some(&alice)
    });
    let s = |x: &str| x.to_owned();
    assert_eq!(
        expected.iter().filter(|k| k.0 == 300).cloned().collect::<Vec<_>>(),
        vec![(300, 0, 0, s("sol")), (300, 0, 2, s("spl")), (300, 0, 3, s("spl")), (300, 0, 5, s("spl"))]
    );
    let filter = TransferFilter { address: Some(alice.to_vec()), limit: 1000, ..Default::default() };
    let page = store.transfers(CHAIN, &filter).await.expect("transfers of alice");
    assert_eq!(row_keys(&page.items), expected);
    assert!(!page.has_more);
    let spl = &page.items[1];
    assert_eq!(
        (&spl.from_owner, &spl.to_owner, spl.decimals),
        (&Some(key(1).to_vec()), &Some(key(2).to_vec()), Some(6))
    );
    // Page by page, under every other filter too.
    for limit in [1, 2, 3] {
        let mut filter = TransferFilter {
            address: Some(alice.to_vec()),
            token: Some(key(MINT).to_vec()),
            limit,
            ..Default::default()
        };
        filter.to_block = Some(303);
        let mut seen = Vec::new();
        loop {
            let page = store.transfers(CHAIN, &filter).await.expect("page");
            assert!(page.items.len() <= limit as usize);
            seen.extend(row_keys(&page.items));
            match page.items.last() {
                Some(last) if page.has_more => filter.after = Some(last.key()),
                _ => break,
            }
        }
        assert_eq!(
            seen,
            vec![(300, 0, 2, s("spl")), (300, 0, 3, s("spl")), (300, 0, 5, s("spl"))],
            "limit {limit}"
        );
    }
    // A token account matches as itself (slot 303's random SOL transfers may use its address too).
    let filter = TransferFilter {
        address: Some(key(12).to_vec()),
        to_block: Some(300),
        limit: 10,
        ..Default::default()
    };
    let page = store.transfers(CHAIN, &filter).await.expect("transfers of bob's token account");
    assert_eq!(row_keys(&page.items), vec![(300, 0, 2, s("spl")), (300, 0, 4, s("spl"))]);

    // Instructions: by program, by transaction, by block range, page by page.
    let instruction_keys = |blocks: &[NormalizedBlock], keep: &dyn Fn(u64, &Instruction) -> bool| {
        blocks
            .iter()
            .flat_map(|b| {
                b.instructions
                    .iter()
                    .filter(|i| keep(b.ptr.number, i))
                    .map(|i| (b.ptr.number as i64, i.tx_index as i32, i.position as i32))
            })
            .collect::<Vec<_>>()
    };
    let cases: Vec<(InstructionFilter, Vec<InstructionKeyTuple>)> = vec![
        (
            InstructionFilter { program: Some(key(PROGRAM).to_vec()), ..Default::default() },
            instruction_keys(&all, &|_, i| i.program == key(PROGRAM)),
        ),
        (
            InstructionFilter { tx_hash: Some(signature(300, 0).to_vec()), ..Default::default() },
            vec![(300, 0, 0), (300, 0, 1), (300, 0, 2)],
        ),
        (
            InstructionFilter { from_block: Some(301), to_block: Some(303), ..Default::default() },
            instruction_keys(&all, &|n, _| (301..=303).contains(&n)),
        ),
        (
            InstructionFilter {
                program: Some(key(PROGRAM + 1).to_vec()),
                tx_hash: Some(signature(303, 7).to_vec()),
                ..Default::default()
            },
            instruction_keys(&all, &|n, i| n == 303 && i.tx_index == 7 && i.program == key(PROGRAM + 1)),
        ),
    ];
    for (filter, expected) in cases {
        assert!(!expected.is_empty(), "{filter:?}");
        for limit in [1, 7, 1000, 5000] {
            let mut filter = InstructionFilter { limit, ..filter.clone() };
            let mut seen = Vec::new();
            loop {
                let page = store.instructions(CHAIN, &filter).await.expect("instructions");
                assert!(page.items.len() <= limit as usize);
                seen.extend(page.items.iter().map(|r| (r.block_number, r.tx_index, r.position)));
                match page.items.last() {
                    Some(last) if page.has_more => filter.after = Some(last.key()),
                    _ => break,
                }
                assert!(seen.len() <= expected.len(), "{filter:?}: pagination does not end");
            }
            assert_eq!(seen, expected, "{filter:?}");
        }
    }
    let filter =
        InstructionFilter { tx_hash: Some(signature(300, 0).to_vec()), limit: 10, ..Default::default() };
    let rows = store.instructions(CHAIN, &filter).await.expect("instructions of 300.0").items;
    let deep = &rows[2];
    assert_eq!((deep.outer_index, deep.inner_index, deep.stack_height), (0, Some(1), 3));
    assert_eq!(deep.accounts.len(), 40);
    assert_eq!(deep.logs[0], "a\u{fffd}b");
    assert_eq!((rows[1].accounts.len(), rows[1].logs.len(), rows[1].data.len()), (0, 0, 0));
    assert_eq!(rows[0].logs, ["Program log: Instruction: Pay", "ünïcødé ✓ \u{1F600}"]);
}

#[tokio::test]
async fn solana_revert_removes_instructions_and_walks_back_over_skipped_slots() {
    let (_db, store) = store_of(ChainKind::Solana, 5).await;
    assert_eq!(store.block_at_or_below(CHAIN, 400).await.expect("empty store"), None);
    let first = solana_first_batch();
    store.write_batch(CHAIN, None, &first).await.expect("write slots 300..=303");
    store
        .write_batch(CHAIN, Some(slot_ptr(303)), &solana_second_batch())
        .await
        .expect("write slots 304..=305");

    for (number, expected) in [
        (299, None),
        (300, Some(300)),
        (301, Some(301)),
        (302, Some(301)),
        (303, Some(303)),
        (305, Some(305)),
        (10_000, Some(305)),
        (u64::MAX, Some(305)),
    ] {
        let found = store.block_at_or_below(CHAIN, number).await.expect("block at or below");
        assert_eq!(found, expected.map(slot_ptr), "at or below {number}");
    }
    // Another chain's blocks are not this chain's.
    assert_eq!(store.block_at_or_below("other", 400).await.expect("other chain"), None);

    // A skipped slot is no ancestor.
    match store.revert_to(CHAIN, slot_ptr(305), slot_ptr(302)).await {
        Err(StoreError::Discontinuous { reason, .. }) => assert!(reason.contains("302"), "{reason}"),
        other => panic!("revert to a skipped slot: {other:?}"),
    }
    let removed = store.revert_to(CHAIN, slot_ptr(305), slot_ptr(301)).await.expect("revert to 301");
    assert_eq!(removed, 3, "slots 303, 304, 305");
    assert_eq!(cursor(&store).await, Some(slot_ptr(301)));
    assert_stored(&store, &first[..2]).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM instructions WHERE block_number > 301")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(count, 0);
    assert_eq!(store.block_at_or_below(CHAIN, 305).await.expect("after revert"), Some(slot_ptr(301)));

    // The other branch: slot 302 this time, with the same instruction keys as the removed 303.
    let mut s302 = solana_first_batch().pop().expect("slot 303");
    s302.ptr = BlockPtr::new(302, keccak256("store test slot 302 on the other fork"));
    s302.height = Some(1002);
    let stats =
        store.write_batch(CHAIN, Some(slot_ptr(301)), std::slice::from_ref(&s302)).await.expect("fork");
    assert_eq!(stats.instructions, 3000);
    assert_stored(&store, &[first[0].clone(), first[1].clone(), s302]).await;
}

#[tokio::test]
async fn solana_replay_and_duplicate_instruction_fail_the_batch() {
    let (_db, store) = store_of(ChainKind::Solana, 1).await;
    let first = solana_first_batch();
    store.write_batch(CHAIN, None, &first).await.expect("write slots 300..=303");
    let before = snapshot(&store).await;

    match store.write_batch(CHAIN, None, &first).await {
        Err(StoreError::CursorMoved { expected: None, actual, .. }) => {
            assert_eq!(actual, Some(slot_ptr(303)))
        }
        other => panic!("replay of 300..=303: expected CursorMoved, got {other:?}"),
    }
    // Two instructions at one position of one transaction: the last table written fails the whole batch.
    let mut twice = solana_second_batch();
    let mut again = twice[0].instructions[0].clone();
    again.program = key(PROGRAM + 5);
    twice[0].instructions.push(again);
    assert_duplicate(store.write_batch(CHAIN, Some(slot_ptr(303)), &twice).await, "instructions");
    assert_eq!(snapshot(&store).await, before, "a failed batch leaves nothing behind");

    let second = solana_second_batch();
    store.write_batch(CHAIN, Some(slot_ptr(303)), &second).await.expect("write slots 304..=305");
    assert_stored(&store, &first.into_iter().chain(second).collect::<Vec<_>>()).await;
}
