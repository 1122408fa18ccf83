//! End-to-end tests of the `chainmux` binary: real anvil nodes, a real PostgreSQL server, the binary run as a child
//! process with a config file, and its results checked against what the nodes themselves report.
//!
//! Expected values are derived here, from the nodes' raw JSON, without any chainmux code: events are decoded by
//! hand, so a decoding bug in the indexer cannot hide behind the same bug in the test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chainmux_testkit::contracts::{TRANSFER_BATCH_TOPIC, TRANSFER_SINGLE_TOPIC, TRANSFER_TOPIC};
use chainmux_testkit::{Anvil, Eth, TestDb, TransferMix, free_port, populate_transfers};
use common::{
    Chainmux, Config, chainmux_command, collect_pages, connect, cursor, dump, get, hex_to_decimal, lower,
    quantity, rpc_request, temp_dir, topic_address, words,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------------------------
// Rows as the tests compare them: hex is `0x`-prefixed lowercase, 256-bit numbers are decimal strings.

/// A `transfers` row; fields in primary-key order first, so the derived order is the table's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TransferRow {
    block_number: i64,
    log_index: i32,
    batch_index: i32,
    standard: String,
    block_hash: String,
    tx_hash: String,
    token: Option<String>,
    from: String,
    to: String,
    amount: String,
    token_id: Option<String>,
}

/// A `logs` row, primary key first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LogRow {
    block_number: i64,
    log_index: i32,
    block_hash: String,
    tx_hash: String,
    tx_index: i32,
    address: String,
    topics: Vec<String>,
    data: String,
}

/// A `transactions` row, primary key first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TransactionRow {
    block_number: i64,
    tx_index: i32,
    block_hash: String,
    hash: String,
    from: String,
    to: Option<String>,
    value: String,
    nonce: String,
    gas_limit: String,
    gas_price: Option<String>,
    gas_used: Option<String>,
    status: Option<bool>,
    contract_address: Option<String>,
    input: String,
}

/// A `blocks` row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct BlockRow {
    number: i64,
    hash: String,
    parent_hash: String,
    timestamp: i64,
    tx_count: i32,
    log_count: i32,
}

fn as_i64(value: &Value) -> i64 {
    value.as_i64().unwrap_or_else(|| panic!("expected an integer, got {value}"))
}

fn as_i32(value: &Value) -> i32 {
    i32::try_from(as_i64(value)).unwrap_or_else(|_| panic!("expected a 32-bit integer, got {value}"))
}

fn opt_lower(value: &Value) -> Option<String> {
    (!value.is_null()).then(|| lower(value))
}

fn opt_string(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => panic!("expected a string or null, got {other}"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// What anvil says.

/// Every block of an anvil chain with its receipts, read over plain JSON-RPC.
struct AnvilChain {
    /// Full blocks (transaction objects), by number from 0.
    blocks: Vec<Value>,
    /// Receipts of each block.
    receipts: Vec<Vec<Value>>,
    /// `eth_getLogs` over the whole chain.
    logs: Vec<Value>,
}

impl AnvilChain {
    async fn read(eth: &Eth, head: u64) -> AnvilChain {
        let mut blocks = Vec::new();
        let mut receipts = Vec::new();
        for number in 0..=head {
            let block = eth.block(number, true).await;
            assert_eq!(quantity(&block["number"]), number, "anvil block {number}: {block}");
            let has_txs = block["transactions"].as_array().is_some_and(|t| !t.is_empty());
            receipts.push(if has_txs { eth.block_receipts(number).await } else { Vec::new() });
            blocks.push(block);
        }
        let logs = eth.logs(0, head).await;
        AnvilChain { blocks, receipts, logs }
    }

    fn receipt(&self, number: usize, tx_hash: &Value) -> &Value {
        self.receipts[number]
            .iter()
            .find(|r| r["transactionHash"] == *tx_hash)
            .unwrap_or_else(|| panic!("anvil has no receipt for {tx_hash} in block {number}"))
    }

    fn block_rows(&self) -> Vec<BlockRow> {
        self.blocks
            .iter()
            .zip(&self.receipts)
            .map(|(block, receipts)| BlockRow {
                number: quantity(&block["number"]) as i64,
                hash: lower(&block["hash"]),
                parent_hash: lower(&block["parentHash"]),
                timestamp: quantity(&block["timestamp"]) as i64,
                tx_count: block["transactions"].as_array().map_or(0, Vec::len) as i32,
                log_count: receipts.iter().map(|r| r["logs"].as_array().map_or(0, Vec::len)).sum::<usize>()
                    as i32,
            })
            .collect()
    }

    fn transaction_rows(&self) -> Vec<TransactionRow> {
        let mut rows = Vec::new();
        for (number, block) in self.blocks.iter().enumerate() {
            for tx in block["transactions"].as_array().into_iter().flatten() {
                let receipt = self.receipt(number, &tx["hash"]);
                rows.push(TransactionRow {
                    block_number: number as i64,
                    tx_index: quantity(&tx["transactionIndex"]) as i32,
                    block_hash: lower(&block["hash"]),
                    hash: lower(&tx["hash"]),
                    from: lower(&tx["from"]),
                    to: opt_lower(&tx["to"]),
                    value: hex_to_decimal(&lower(&tx["value"])),
                    nonce: hex_to_decimal(&lower(&tx["nonce"])),
                    gas_limit: hex_to_decimal(&lower(&tx["gas"])),
                    gas_price: Some(hex_to_decimal(&lower(&receipt["effectiveGasPrice"]))),
                    gas_used: Some(hex_to_decimal(&lower(&receipt["gasUsed"]))),
                    status: Some(quantity(&receipt["status"]) == 1),
                    contract_address: opt_lower(&receipt["contractAddress"]),
                    input: lower(&tx["input"]),
                });
            }
        }
        rows
    }

    fn log_rows(&self) -> Vec<LogRow> {
        let mut rows: Vec<LogRow> = self
            .logs
            .iter()
            .map(|log| LogRow {
                block_number: quantity(&log["blockNumber"]) as i64,
                log_index: quantity(&log["logIndex"]) as i32,
                block_hash: lower(&log["blockHash"]),
                tx_hash: lower(&log["transactionHash"]),
                tx_index: quantity(&log["transactionIndex"]) as i32,
                address: lower(&log["address"]),
                topics: log["topics"].as_array().into_iter().flatten().map(lower).collect(),
                data: lower(&log["data"]),
            })
            .collect();
        rows.sort();
        rows
    }

    /// The transfers the chain implies: decoded token events plus native value moves of successful transactions.
    fn transfer_rows(&self) -> Vec<TransferRow> {
        let mut rows: Vec<TransferRow> = self.log_rows().iter().flat_map(transfers_of_log).collect();
        for (number, block) in self.blocks.iter().enumerate() {
            for tx in block["transactions"].as_array().into_iter().flatten() {
                let value = hex_to_decimal(&lower(&tx["value"]));
                let receipt = self.receipt(number, &tx["hash"]);
                if value == "0" || quantity(&receipt["status"]) != 1 {
                    continue;
                }
                let to = opt_lower(&tx["to"]).or_else(|| opt_lower(&receipt["contractAddress"]));
                rows.push(TransferRow {
                    block_number: number as i64,
                    log_index: quantity(&tx["transactionIndex"]) as i32,
                    batch_index: 0,
                    standard: "native".into(),
                    block_hash: lower(&block["hash"]),
                    tx_hash: lower(&tx["hash"]),
                    token: None,
                    from: lower(&tx["from"]),
                    to: to.unwrap_or_else(|| panic!("native transfer without recipient: {tx}")),
                    amount: value,
                    token_id: None,
                });
            }
        }
        rows.sort();
        rows
    }
}

/// ERC-20 / ERC-721 `Transfer`, ERC-1155 `TransferSingle` / `TransferBatch`, decoded from the raw log.
fn transfers_of_log(log: &LogRow) -> Vec<TransferRow> {
    let row = |standard: &str, from: &str, to: &str, amount: String, token_id: Option<String>, batch: i32| {
        TransferRow {
            block_number: log.block_number,
            log_index: log.log_index,
            batch_index: batch,
            standard: standard.to_owned(),
            block_hash: log.block_hash.clone(),
            tx_hash: log.tx_hash.clone(),
            token: Some(log.address.clone()),
            from: topic_address(from),
            to: topic_address(to),
            amount,
            token_id,
        }
    };
    let Some(signature) = log.topics.first() else { return Vec::new() };
    let data = words(&log.data);
    let t = &log.topics;
    if *signature == TRANSFER_TOPIC.to_string() {
        match (t.len(), data.len()) {
            (3, 1) => vec![row("erc20", &t[1], &t[2], hex_to_decimal(data[0]), None, 0)],
            (4, 0) => vec![row("erc721", &t[1], &t[2], "1".into(), Some(hex_to_decimal(&t[3])), 0)],
            _ => Vec::new(),
        }
    } else if *signature == TRANSFER_SINGLE_TOPIC.to_string() && t.len() == 4 && data.len() == 2 {
        vec![row("erc1155", &t[2], &t[3], hex_to_decimal(data[1]), Some(hex_to_decimal(data[0])), 0)]
    } else if *signature == TRANSFER_BATCH_TOPIC.to_string() && t.len() == 4 {
        // (uint256[] ids, uint256[] values): two offsets (in bytes), then each array as length + elements.
        let array = |offset_word: &str| -> Vec<&str> {
            let start = hex_to_decimal(offset_word).parse::<usize>().expect("small offset") / 32;
            let len = hex_to_decimal(data[start]).parse::<usize>().expect("small length");
            data[start + 1..start + 1 + len].to_vec()
        };
        let (ids, values) = (array(data[0]), array(data[1]));
        assert_eq!(ids.len(), values.len(), "TransferBatch with mismatched arrays: {log:?}");
        ids.iter()
            .zip(&values)
            .enumerate()
            .map(|(i, (id, value))| {
                row("erc1155", &t[2], &t[3], hex_to_decimal(value), Some(hex_to_decimal(id)), i as i32)
            })
            .collect()
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// What chainmux stored and serves.

async fn db_transfers(pool: &sqlx::PgPool, sql: &'static str, bind: Option<&str>) -> Vec<TransferRow> {
    type Row =
        (i64, i32, i32, String, String, String, Option<String>, String, String, String, Option<String>);
    let mut query = sqlx::query_as::<_, Row>(sql);
    if let Some(bind) = bind {
        query = query.bind(bind.to_owned());
    }
    let rows = query.fetch_all(pool).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
    rows.into_iter()
        .map(|r| TransferRow {
            block_number: r.0,
            log_index: r.1,
            batch_index: r.2,
            standard: r.3,
            block_hash: r.4,
            tx_hash: r.5,
            token: r.6,
            from: r.7,
            to: r.8,
            amount: r.9,
            token_id: r.10,
        })
        .collect()
}

const TRANSFERS_SQL: &str = "SELECT block_number, log_index, batch_index, standard, \
     '0x' || encode(block_hash, 'hex'), '0x' || encode(tx_hash, 'hex'), '0x' || encode(token, 'hex'), \
     '0x' || encode(from_address, 'hex'), '0x' || encode(to_address, 'hex'), amount::text, token_id::text \
     FROM transfers WHERE chain = 'local' ORDER BY block_number, log_index, batch_index, standard";

const TRANSFERS_OF_ADDRESS_SQL: &str = "SELECT block_number, log_index, batch_index, standard, \
     '0x' || encode(block_hash, 'hex'), '0x' || encode(tx_hash, 'hex'), '0x' || encode(token, 'hex'), \
     '0x' || encode(from_address, 'hex'), '0x' || encode(to_address, 'hex'), amount::text, token_id::text \
     FROM transfers WHERE chain = 'local' \
     AND ('0x' || encode(from_address, 'hex') = $1 OR '0x' || encode(to_address, 'hex') = $1) \
     ORDER BY block_number, log_index, batch_index, standard";

async fn db_logs(pool: &sqlx::PgPool) -> Vec<LogRow> {
    type Row = (
        i64,
        i32,
        String,
        String,
        i32,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
    );
    let sql = "SELECT block_number, log_index, '0x' || encode(block_hash, 'hex'), '0x' || encode(tx_hash, 'hex'), \
         tx_index, '0x' || encode(address, 'hex'), '0x' || encode(topic0, 'hex'), '0x' || encode(topic1, 'hex'), \
         '0x' || encode(topic2, 'hex'), '0x' || encode(topic3, 'hex'), '0x' || encode(data, 'hex') \
         FROM logs WHERE chain = 'local' ORDER BY block_number, log_index";
    let rows =
        sqlx::query_as::<_, Row>(sql).fetch_all(pool).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
    rows.into_iter()
        .map(|r| LogRow {
            block_number: r.0,
            log_index: r.1,
            block_hash: r.2,
            tx_hash: r.3,
            tx_index: r.4,
            address: r.5,
            topics: [r.6, r.7, r.8, r.9].into_iter().flatten().collect(),
            data: r.10,
        })
        .collect()
}

async fn db_transactions(pool: &sqlx::PgPool) -> Vec<TransactionRow> {
    type Row = (
        i64,
        i32,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<bool>,
        Option<String>,
        String,
    );
    let sql = "SELECT block_number, tx_index, '0x' || encode(block_hash, 'hex'), '0x' || encode(hash, 'hex'), \
         '0x' || encode(from_address, 'hex'), '0x' || encode(to_address, 'hex'), value::text, nonce::text, \
         gas_limit::text, gas_price::text, gas_used::text, status, '0x' || encode(contract_address, 'hex'), \
         '0x' || encode(input, 'hex') FROM transactions WHERE chain = 'local' ORDER BY block_number, tx_index";
    let rows =
        sqlx::query_as::<_, Row>(sql).fetch_all(pool).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
    rows.into_iter()
        .map(|r| TransactionRow {
            block_number: r.0,
            tx_index: r.1,
            block_hash: r.2,
            hash: r.3,
            from: r.4,
            to: r.5,
            value: r.6,
            nonce: r.7,
            gas_limit: r.8,
            gas_price: r.9,
            gas_used: r.10,
            status: r.11,
            contract_address: r.12,
            input: r.13,
        })
        .collect()
}

async fn db_blocks(pool: &sqlx::PgPool) -> Vec<BlockRow> {
    let sql = "SELECT number, '0x' || encode(hash, 'hex'), '0x' || encode(parent_hash, 'hex'), timestamp, \
         tx_count, log_count FROM blocks WHERE chain = 'local' ORDER BY number";
    let rows = sqlx::query_as::<_, (i64, String, String, i64, i32, i32)>(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
    rows.into_iter()
        .map(|r| BlockRow {
            number: r.0,
            hash: r.1,
            parent_hash: r.2,
            timestamp: r.3,
            tx_count: r.4,
            log_count: r.5,
        })
        .collect()
}

fn transfer_from_api(item: &Value) -> TransferRow {
    TransferRow {
        block_number: as_i64(&item["block_number"]),
        log_index: as_i32(&item["log_index"]),
        batch_index: as_i32(&item["batch_index"]),
        standard: opt_string(&item["standard"]).unwrap_or_default(),
        block_hash: lower(&item["block_hash"]),
        tx_hash: lower(&item["tx_hash"]),
        token: opt_lower(&item["token"]),
        from: lower(&item["from"]),
        to: lower(&item["to"]),
        amount: opt_string(&item["amount"]).unwrap_or_default(),
        token_id: opt_string(&item["token_id"]),
    }
}

fn log_from_api(item: &Value) -> LogRow {
    LogRow {
        block_number: as_i64(&item["block_number"]),
        log_index: as_i32(&item["log_index"]),
        block_hash: lower(&item["block_hash"]),
        tx_hash: lower(&item["tx_hash"]),
        tx_index: as_i32(&item["transaction_index"]),
        address: lower(&item["address"]),
        topics: item["topics"].as_array().into_iter().flatten().map(lower).collect(),
        data: lower(&item["data"]),
    }
}

/// Asserts two row lists are equal; on failure names the first missing and extra rows instead of dumping both
/// lists.
fn assert_same_rows<T: std::fmt::Debug + Ord + Clone>(what: &str, expected: &[T], actual: &[T]) {
    if expected == actual {
        return;
    }
    let count = |rows: &[T]| {
        let mut counts = BTreeMap::new();
        for row in rows {
            *counts.entry(row.clone()).or_insert(0usize) += 1;
        }
        counts
    };
    let (want, got) = (count(expected), count(actual));
    let missing: Vec<_> = want.iter().filter(|(row, n)| got.get(*row) < Some(*n)).map(|(r, _)| r).collect();
    let extra: Vec<_> = got.iter().filter(|(row, n)| want.get(*row) < Some(*n)).map(|(r, _)| r).collect();
    panic!(
        "{what}: {} expected rows, {} actual; {} missing (or too few), {} extra (or repeated); \
         first missing: {:#?}\nfirst extra: {:#?}\n(same multiset, different order: {})",
        expected.len(),
        actual.len(),
        missing.len(),
        extra.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.iter().take(3).collect::<Vec<_>>(),
        missing.is_empty() && extra.is_empty(),
    );
}

/// Status of the transaction as stored, and the number of its stored logs.
async fn stored_outcome(pool: &sqlx::PgPool, tx_hash: &str) -> (Option<bool>, i64) {
    let status = sqlx::query_scalar::<_, Option<bool>>(
        "SELECT status FROM transactions WHERE chain = 'local' AND '0x' || encode(hash, 'hex') = $1",
    )
    .bind(tx_hash)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|err| panic!("transaction {tx_hash} is not stored: {err}"));
    let logs = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM logs WHERE chain = 'local' AND '0x' || encode(tx_hash, 'hex') = $1",
    )
    .bind(tx_hash)
    .fetch_one(pool)
    .await
    .unwrap_or_else(|err| panic!("counting logs of {tx_hash}: {err}"));
    (status, logs)
}

/// Hash of the transaction `populate_transfers` made revert, as the tests spell hashes.
fn hash_of(mix: &TransferMix) -> String {
    mix.reverted.to_string().to_ascii_lowercase()
}

/// `eth_sendTransaction` of a raw transaction object (automine is on); returns the hash of the transaction, which
/// must have been included with status 0.
async fn send_raw(eth: &Eth, tx: Value) -> String {
    let hash = eth.request("eth_sendTransaction", json!([tx])).await;
    let started = Instant::now();
    let receipt = loop {
        let receipt = eth.request("eth_getTransactionReceipt", json!([hash])).await;
        if !receipt.is_null() {
            break receipt;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no receipt for {hash}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(receipt["status"], "0x0", "expected a reverted transaction: {receipt}");
    lower(&hash)
}

// ---------------------------------------------------------------------------------------------------------------

/// Backfill (half the transfers exist before start) and head following (half arrive while it runs) index every
/// block, transaction, log and transfer exactly as anvil reports them; the REST API pages through the same rows.
#[tokio::test]
async fn indexes_every_transfer_and_log_exactly() {
    const ROUNDS: usize = 20;
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let db = TestDb::create().await;
    let pool = connect(&db.url).await;

    let before = populate_transfers(&eth, ROUNDS).await;
    let mut config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    config.batch_size = 25;
    let mut chainmux = Chainmux::start(&config).await;
    let during = populate_transfers(&eth, ROUNDS).await;
    // A value-carrying transaction that reverts (the token has no payable entry point): no native transfer.
    let sender = eth.accounts().await[1].to_string().to_ascii_lowercase();
    let reverted_value = send_raw(
        &eth,
        json!({"from": sender, "to": during.token.to_string(), "value": "0xde0b6b3a7640000", "gas": "0x30d40"}),
    )
    .await;
    let head = eth.block_number().await;
    assert!(head >= during.last_block && during.first_block > before.last_block);
    let view = chainmux.wait_indexed(head).await;

    let chain = AnvilChain::read(&eth, head).await;
    let head_hash = lower(&chain.blocks[head as usize]["hash"]);
    assert_eq!(view["indexed_head"], json!({"number": head, "hash": head_hash}), "{view}");

    // blocks: every height 0..=head, with anvil's hashes, parents, timestamps and counts.
    let blocks = db_blocks(&pool).await;
    assert_eq!(blocks.len() as u64, head + 1, "one row per block 0..={head}");
    assert_same_rows("blocks", &chain.block_rows(), &blocks);

    // transactions: all of them, with outcomes from the receipts.
    let transactions = db_transactions(&pool).await;
    assert_eq!(transactions.len(), before.transactions + during.transactions + 1, "every transaction sent");
    assert_same_rows("transactions", &chain.transaction_rows(), &transactions);

    // logs: exactly eth_getLogs over the whole chain.
    let logs = db_logs(&pool).await;
    let expected_logs = chain.log_rows();
    assert_eq!(expected_logs.len(), 2 * ROUNDS * 7, "anvil has 7 logs per round");
    assert_same_rows("logs", &expected_logs, &logs);

    // transfers: exactly what the logs and the native value moves imply.
    let expected = chain.transfer_rows();
    let per_standard =
        |rows: &[TransferRow], standard: &str| rows.iter().filter(|r| r.standard == standard).count();
    let rounds = 2 * ROUNDS;
    assert_eq!(
        ["erc20", "erc721", "erc1155", "native"].map(|s| per_standard(&expected, s)),
        [2 * rounds, 2 * rounds, 5 * rounds, rounds],
        "the test's own decoding finds the documented mix"
    );
    let transfers = db_transfers(&pool, TRANSFERS_SQL, None).await;
    assert_same_rows("transfers", &expected, &transfers);

    // The reverted transactions are stored as failed, without logs or transfers.
    for hash in [hash_of(&before), hash_of(&during), reverted_value] {
        assert_eq!(stored_outcome(&pool, &hash).await, (Some(false), 0), "reverted transaction {hash}");
        assert!(!transfers.iter().any(|t| t.tx_hash == hash), "a transfer of reverted {hash}");
        let api = chainmux.get_json(&format!("/v1/chains/local/transactions/{hash}")).await;
        assert_eq!((api["hash"].as_str(), &api["status"]), (Some(hash.as_str()), &json!(0)), "{api}");
    }
    let api_head = chainmux.get_json(&format!("/v1/chains/local/blocks/{head}")).await;
    assert_eq!(api_head["hash"], json!(head_hash), "{api_head}");

    // REST: every transfer exactly once over pages of 7 (ERC-1155 batches straddle page boundaries), in key order.
    let (items, pages) = collect_pages(&chainmux, "/v1/chains/local/transfers", 7).await;
    let served: Vec<TransferRow> = items.iter().map(transfer_from_api).collect();
    assert_eq!(pages, transfers.len().div_ceil(7), "pages of 7 for {} transfers", transfers.len());
    assert_eq!(served.iter().collect::<BTreeSet<_>>().len(), served.len(), "a transfer was served twice");
    let mut sorted = served.clone();
    sorted.sort();
    assert_same_rows("transfers over REST", &transfers, &sorted);
    assert_eq!(served, sorted, "REST pages are not in key order");

    // REST with an address filter: the rows with that address on either side.
    let account = eth.accounts().await[3].to_string().to_ascii_lowercase();
    let (items, _) =
        collect_pages(&chainmux, &format!("/v1/chains/local/transfers?address={account}"), 7).await;
    let served: Vec<TransferRow> = items.iter().map(transfer_from_api).collect();
    let stored = db_transfers(&pool, TRANSFERS_OF_ADDRESS_SQL, Some(&account)).await;
    let count = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM transfers WHERE chain = 'local' \
         AND (encode(from_address, 'hex') = $1 OR encode(to_address, 'hex') = $1)",
    )
    .bind(account.trim_start_matches("0x"))
    .fetch_one(&pool)
    .await
    .expect("count transfers of an account");
    assert!(count > 10, "account {account} has transfers: {count}");
    assert_eq!(served.len() as i64, count, "transfers of {account}");
    assert!(served.iter().all(|t| t.from == account || t.to == account), "filter leaks other accounts");
    assert_same_rows("transfers of an account over REST", &stored, &served);
    let expected_of_account: Vec<_> =
        expected.iter().filter(|t| t.from == account || t.to == account).cloned().collect();
    assert_same_rows("transfers of an account (derived)", &expected_of_account, &served);

    // REST logs: every log exactly once.
    let (items, _) = collect_pages(&chainmux, "/v1/chains/local/logs", 13).await;
    let served: Vec<LogRow> = items.iter().map(log_from_api).collect();
    assert_same_rows("logs over REST", &expected_logs, &served);
}

/// A SIGKILL mid-backfill leaves a consistent prefix (nothing past the cursor); the restarted process resumes
/// after the cursor and ends with tables identical, row for row, to an uninterrupted run's.
#[tokio::test]
async fn resumes_after_sigkill_with_identical_tables() {
    const ROUNDS: usize = 15;
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let first = populate_transfers(&eth, ROUNDS).await;
    eth.mine(1500).await;
    let second = populate_transfers(&eth, ROUNDS).await;
    let head = eth.block_number().await;
    assert!(second.last_block == head && first.last_block < 1500);

    let db_a = TestDb::create().await;
    let pool_a = connect(&db_a.url).await;
    let mut config = Config::new(&db_a.url, &[("anvil", &anvil.url)]);
    config.batch_size = 10;

    // Run 1: killed once the first half of the transfers is committed, in the middle of the empty blocks.
    let mut run = Chainmux::spawn(&config);
    let started = Instant::now();
    let killed_at = loop {
        if let Some(status) = run.exited() {
            panic!("chainmux exited ({status}) before it could be killed:\n{}", run.log());
        }
        if let Some(indexed) = cursor(&pool_a, "local").await.filter(|n| *n >= first.last_block as i64) {
            run.kill();
            break indexed;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no batch committed within 30 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    drop(run);
    let resumed_from = cursor(&pool_a, "local").await.expect("a cursor after the kill");
    eprintln!(
        "SIGKILL at cursor {killed_at} (then {resumed_from}) of head {head}, {:?} after start",
        started.elapsed()
    );
    assert!(resumed_from >= killed_at);
    assert!(
        resumed_from < head as i64 - 100,
        "backfill finished (cursor {resumed_from}, head {head}) before the kill; the test needs a longer chain"
    );
    // Batches commit atomically with the cursor: no row of any table lies past it.
    for (table, beyond) in [
        ("blocks", "SELECT count(*) FROM blocks WHERE number > $1"),
        ("transactions", "SELECT count(*) FROM transactions WHERE block_number > $1"),
        ("logs", "SELECT count(*) FROM logs WHERE block_number > $1"),
        ("transfers", "SELECT count(*) FROM transfers WHERE block_number > $1"),
    ] {
        let rows: i64 = sqlx::query_scalar(beyond).bind(resumed_from).fetch_one(&pool_a).await.expect(beyond);
        assert_eq!(rows, 0, "{table}: rows past the cursor {resumed_from} after SIGKILL");
    }
    let blocks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM blocks").fetch_one(&pool_a).await.expect("count blocks");
    assert_eq!(blocks, resumed_from + 1, "blocks 0..=cursor are all written");

    // Run 2 on the same database, and an uninterrupted run on database B with another batch size, concurrently.
    let db_b = TestDb::create().await;
    let pool_b = connect(&db_b.url).await;
    let mut config_b = Config::new(&db_b.url, &[("anvil", &anvil.url)]);
    config_b.batch_size = 100;
    let mut resumed = Chainmux::start(&config).await;
    let mut fresh = Chainmux::start(&config_b).await;
    let starting = resumed.wait_for_log("indexer starting", Duration::from_secs(20)).await;
    let resume_at = format!("next={}", resumed_from + 1);
    assert!(
        starting.contains(&resume_at),
        "the restart does not resume after the cursor ({resume_at}): {starting}"
    );
    resumed.wait_indexed(head).await;
    fresh.wait_indexed(head).await;
    drop((resumed, fresh));

    let (a, b) = (dump(&pool_a).await, dump(&pool_b).await);
    assert_eq!(a["blocks"].len() as u64, head + 1);
    assert_eq!(a["transfers"].len(), 2 * ROUNDS * 10, "10 transfers per round");
    for (table, rows_a) in &a {
        let rows_b = &b[table];
        if let Some(i) = (0..rows_a.len().max(rows_b.len())).find(|&i| rows_a.get(i) != rows_b.get(i)) {
            panic!(
                "{table} differs at row {i} ({} rows after the kill, {} uninterrupted):\n  killed: {:?}\n  fresh:  {:?}",
                rows_a.len(),
                rows_b.len(),
                rows_a.get(i),
                rows_b.get(i)
            );
        }
    }
}

/// The first upstream refuses connections: it is reported down with a reason, and indexing and the JSON-RPC proxy
/// run on the second.
#[tokio::test]
async fn dead_first_upstream_fails_over() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    populate_transfers(&eth, 3).await;
    let head = eth.block_number().await;
    let db = TestDb::create().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let config = Config::new(&db.url, &[("dead", &dead), ("anvil", &anvil.url)]);
    let mut chainmux = Chainmux::start(&config).await;
    let view = chainmux.wait_indexed(head).await;
    assert_eq!(view["indexed_head"]["hash"], eth.block(head, false).await["hash"], "{view}");

    let upstreams = view["upstreams"].as_array().expect("upstreams");
    assert_eq!(upstreams.len(), 2, "{view}");
    assert_eq!((&upstreams[0]["name"], &upstreams[0]["state"]), (&json!("dead"), &json!("down")), "{view}");
    assert!(upstreams[0]["reason"].as_str().is_some_and(|r| !r.is_empty()), "down without a reason: {view}");
    assert!(!upstreams[0]["reason"].as_str().unwrap_or_default().contains(&dead), "reason leaks the URL");
    assert_eq!(
        (&upstreams[1]["name"], &upstreams[1]["state"]),
        (&json!("anvil"), &json!("healthy")),
        "{view}"
    );
    assert_eq!(view["head"], json!(head), "{view}");

    // Single requests.
    for id in 1..=5 {
        let answer = chainmux.rpc(&rpc_request(id, "eth_blockNumber", json!([]))).await;
        assert_eq!(answer, json!({"jsonrpc": "2.0", "id": id, "result": format!("0x{head:x}")}));
    }
    // A batch, answered in order, each as anvil answers it.
    let calls = [
        ("eth_blockNumber", json!([])),
        ("eth_chainId", json!([])),
        ("eth_getBlockByNumber", json!(["0x1", false])),
        ("eth_getBalance", json!([eth.accounts().await[0].to_string(), "latest"])),
        ("eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": format!("0x{head:x}")}])),
    ];
    let batch: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, (method, params))| rpc_request(i as u64 + 10, method, params.clone()))
        .collect();
    let answers = chainmux.rpc(&Value::Array(batch)).await;
    let answers = answers.as_array().unwrap_or_else(|| panic!("batch answer is not an array: {answers}"));
    assert_eq!(answers.len(), calls.len());
    for (i, ((method, params), answer)) in calls.iter().zip(answers).enumerate() {
        let direct = eth.request(method, params.clone()).await;
        assert_eq!(answer["id"], json!(i as u64 + 10), "{answer}");
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        assert_eq!(answer["result"], direct, "{method}: proxied answer differs from anvil's");
    }

    // `chainmux status` renders the same picture.
    let output = chainmux_command()
        .args(["status", "--url", &chainmux.base])
        .output()
        .unwrap_or_else(|err| panic!("cannot run chainmux status: {err}"));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "chainmux status failed: {}", String::from_utf8_lossy(&output.stderr));
    let line_of =
        |name: &str| table.lines().find(|l| l.split_whitespace().next() == Some(name)).map(str::to_owned);
    assert!(line_of("local").is_some_and(|l| l.contains(&head.to_string())), "status table:\n{table}");
    assert!(line_of("dead").is_some_and(|l| l.contains("down")), "status table:\n{table}");
    assert!(line_of("anvil").is_some_and(|l| l.contains("healthy")), "status table:\n{table}");

    // Still down after the probes ran a few more times; the healthy one did the work.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let view = chainmux.chain_view().await;
    assert_eq!(view["upstreams"][0]["state"], "down", "{view}");
    assert_eq!(view["upstreams"][1]["state"], "healthy", "{view}");
    assert_eq!(
        view["upstreams"][0]["requests"], view["upstreams"][0]["failures"],
        "the dead one never answered"
    );
}

/// An upstream of another chain (listed first) is excluded with a reason naming both chain ids; indexing and every
/// proxied call use the right one only.
#[tokio::test]
async fn wrong_chain_id_upstream_is_excluded() {
    let wrong = Anvil::spawn_with(&["--chain-id", "5"]).await;
    let right = Anvil::spawn().await;
    let (wrong_eth, eth) = (Eth::new(&wrong.url), Eth::new(&right.url));
    assert_eq!(wrong_eth.chain_id().await, 5);
    // Different heights and contents, so data from the wrong node could not pass for the right one's.
    wrong_eth.mine(300).await;
    populate_transfers(&eth, 3).await;
    let head = eth.block_number().await;
    assert!(head < 300);

    let db = TestDb::create().await;
    let pool = connect(&db.url).await;
    let config = Config::new(&db.url, &[("wrong", &wrong.url), ("right", &right.url)]);
    let mut chainmux = Chainmux::start(&config).await;
    let view = chainmux.wait_indexed(head).await;

    let upstreams = view["upstreams"].as_array().expect("upstreams");
    assert_eq!(
        (&upstreams[0]["name"], &upstreams[0]["state"]),
        (&json!("wrong"), &json!("excluded")),
        "{view}"
    );
    let reason = upstreams[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("chain id") && reason.contains("31337") && reason.contains('5'),
        "reason should name the chain ids: {reason:?}"
    );
    assert_eq!(
        (&upstreams[1]["name"], &upstreams[1]["state"]),
        (&json!("right"), &json!("healthy")),
        "{view}"
    );
    assert_eq!(view["head"], json!(head), "head from the right node only: {view}");

    // Indexed from the right node: every block hash is the right node's.
    let blocks = db_blocks(&pool).await;
    assert_eq!(blocks.len() as u64, head + 1);
    for block in &blocks {
        let expected = eth.block(block.number as u64, false).await;
        assert_eq!(block.hash, lower(&expected["hash"]), "block {}", block.number);
    }
    // A little later it is still indexed at the right head, not at the wrong node's higher one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(chainmux.chain_view().await["indexed_head"]["number"], json!(head));

    for id in 0..50 {
        let answer = chainmux.rpc(&rpc_request(id, "eth_chainId", json!([]))).await;
        assert_eq!(answer["result"], "0x7a69", "call {id}: {answer}");
    }
    let batch: Vec<Value> = (0..20).map(|id| rpc_request(id, "eth_chainId", json!([]))).collect();
    let answers = chainmux.rpc(&Value::Array(batch)).await;
    let answers = answers.as_array().unwrap_or_else(|| panic!("not an array: {answers}"));
    assert_eq!(answers.len(), 20);
    assert!(answers.iter().all(|a| a["result"] == "0x7a69"), "{answers:?}");
    let number = chainmux.rpc(&rpc_request(1, "eth_blockNumber", json!([]))).await;
    assert_eq!(number["result"], format!("0x{head:x}"));
    let view = chainmux.chain_view().await;
    assert_eq!(view["upstreams"][0]["state"], "excluded", "{view}");
}

/// SIGTERM: `/ready` turns 503 at once while the gateway keeps serving for `drain_delay_ms`, then the process
/// exits 0.
#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    const DRAIN: Duration = Duration::from_millis(1500);
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    eth.mine(5).await;
    let db = TestDb::create().await;
    let mut config = Config::new(&db.url, &[("anvil", &anvil.url)]);
    config.drain_delay_ms = DRAIN.as_millis() as u64;
    let mut chainmux = Chainmux::start(&config).await;
    let ready = chainmux.url("/ready");
    let health = chainmux.url("/health");
    chainmux
        .wait_for("/ready 200", Duration::from_secs(10), || {
            let ready = ready.clone();
            async move { matches!(get(&ready).await, Ok((200, _))).then_some(()) }
        })
        .await;
    chainmux.wait_indexed(5).await;

    let signalled = Instant::now();
    chainmux.terminate();
    // `/ready` answers 503 soon after the signal, and stays 503 (or stops answering) from then on.
    let mut draining_seen = None;
    let mut healthy_while_draining = false;
    loop {
        let exited = chainmux.exited();
        match get(&ready).await {
            Ok((503, body)) => {
                let body: Value = serde_json::from_str(&body).expect("503 body is JSON");
                assert_eq!(body["error"]["code"], "unavailable", "{body}");
                draining_seen.get_or_insert(signalled.elapsed());
                // Liveness is not readiness: the gateway still serves while draining (checked well inside the
                // window, since the listener closes when it ends).
                if signalled.elapsed() + Duration::from_millis(300) < DRAIN {
                    assert_eq!(get(&health).await.map(|r| r.0).ok(), Some(200), "/health while draining");
                    healthy_while_draining = true;
                }
            }
            Ok((200, _)) => {
                assert!(draining_seen.is_none(), "/ready went back to 200 after answering 503");
                assert!(signalled.elapsed() < Duration::from_secs(1), "/ready still 200 long after SIGTERM");
            }
            Ok((status, body)) => panic!("/ready answered {status}: {body}"),
            Err(_) => break,
        }
        if exited.is_some() || signalled.elapsed() > DRAIN + Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let draining_seen = draining_seen.expect("/ready never answered 503 after SIGTERM");
    assert!(draining_seen < Duration::from_secs(1), "503 only after {draining_seen:?}");
    assert!(healthy_while_draining, "/health was not checked during the drain window");

    let status = chainmux.wait_exit(Duration::from_secs(6)).await;
    let exited_after = signalled.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running {exited_after:?} after SIGTERM"));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
    assert!(exited_after >= DRAIN, "exited after {exited_after:?}, before the {DRAIN:?} drain window ended");
    let log = chainmux.log();
    assert!(log.contains("shutdown requested; draining") && log.contains("stopped"), "log:\n{log}");
}

/// `check-config` prints the resolved config without secrets, and reports every problem of an invalid one with
/// the file and the key paths.
#[test]
fn check_config_reports_errors_and_redacts() {
    let dir = temp_dir("check-config");
    let check = |path: &std::path::Path, env: &[(&str, &str)]| {
        let mut command = chainmux_command();
        command.arg("check-config").arg("--config").arg(path);
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().unwrap_or_else(|err| panic!("cannot run chainmux check-config: {err}"));
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status, text(&output.stdout), text(&output.stderr))
    };

    let valid = dir.join("valid.toml");
    std::fs::write(
        &valid,
        r#"
[database]
url = "postgres://app:hunter2@db.internal:5432/chainmux"

[[chains]]
name = "mainnet"
kind = "evm"
chain_id = 1

[[chains.upstreams]]
name = "provider"
url = "https://provider.example/v2/SECRETKEY"

[[chains.upstreams]]
name = "own-node"
url = "${E2E_NODE_URL:-http://user:hunter2@node.internal:8545/}"
"#,
    )
    .expect("write valid config");
    let (status, stdout, stderr) = check(&valid, &[("CHAINMUX_CHAINS__MAINNET__BATCH_SIZE", "77")]);
    assert!(status.success(), "check-config of a valid file failed ({status}):\n{stderr}");
    for secret in ["SECRETKEY", "hunter2"] {
        assert!(!stdout.contains(secret), "stdout leaks {secret}:\n{stdout}");
        assert!(!stderr.contains(secret), "stderr leaks {secret}:\n{stderr}");
    }
    for shown in [
        "postgres://app:***@db.internal:5432/chainmux",
        "https://provider.example/***",
        "http://user:***@node.internal:8545/",
        "name = \"mainnet\"",
        "batch_size = 77",
    ] {
        assert!(stdout.contains(shown), "stdout lacks {shown:?}:\n{stdout}");
    }

    let invalid = dir.join("invalid.toml");
    std::fs::write(
        &invalid,
        r#"
[database]
url = "postgres://app:hunter2@db.internal:5432/chainmux"

[[chains]]
name = "local"
kind = "evm"
chain_id = 31337

[[chains.upstreams]]
name = "anvil"
url = "not a url"

[[chains]]
name = "local"
kind = "evm"
chain_id = 31337

[[chains.upstreams]]
name = "anvil"
url = "http://127.0.0.1:8545"
"#,
    )
    .expect("write invalid config");
    let (status, stdout, stderr) = check(&invalid, &[]);
    assert!(!status.success(), "check-config accepted an invalid file:\n{stdout}");
    let file = invalid.display().to_string();
    for needed in [file.as_str(), "chains[1].name", "chains[0].upstreams[0].url"] {
        assert!(stderr.contains(needed), "stderr lacks {needed:?}:\n{stderr}");
    }
    assert!(!stderr.contains("hunter2") && !stdout.contains("hunter2"), "error output leaks the password");
    assert!(stdout.is_empty(), "nothing is printed for an invalid file:\n{stdout}");

    let _ = std::fs::remove_dir_all(&dir);
}
