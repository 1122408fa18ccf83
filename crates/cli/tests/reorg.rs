//! Reorgs seen from outside: the real `chainmux` binary follows an anvil chain whose recent blocks are replaced
//! (`anvil_reorg`), cut off (`anvil_rollback`) or hidden by a lagging upstream, and its database is checked
//! afterwards, table by table, against a fresh index of the canonical chain made by a second `chainmux` on an empty
//! database, and against anvil's own blocks, transactions and logs.
//!
//! What chainmux does inside is not looked at. Two instruments watch from the outside:
//! - `/metrics` (`chainmux_indexer_reorgs_total`, `chainmux_indexer_reorg_depth`) and the log;
//! - triggers this file installs in the database under test (after `chainmux migrate`, before `chainmux run`),
//!   which record every deleted row, every row really changed by an update, every truncation and every backward
//!   move of the cursor into `reorg_test_audit`, in the same transaction as the change (so a rolled-back or
//!   killed transaction records nothing).
//!
//! Every replacing block carries transfers (ERC-20 `transfer` on the `DemoToken` of `populate_transfers`, native
//! value transfers), checked to have succeeded, so the rows at a replaced height really differ. anvil only
//! replaces blocks: its height is unchanged after `anvil_reorg`, so each reorg is followed by a new block, which
//! is what a following indexer notices.
//!
//! Randomised tests print their seed; `REORG_SEED=<seed>` replays one.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chainmux_core::U256;
use chainmux_testkit::{Anvil, Eth, Fault, FaultProxy, TestDb, contracts, populate_transfers};
use common::{
    Chainmux, Config, POLL, anvil_head, connect, dump, get, lower, quantity, rpc_request, text_rows,
    wait_synced,
};
use serde_json::{Value, json};

/// How long chainmux may take to reach anvil's head (number and hash) after a change of the chain.
/// Gas given to every transaction the tests send, so anvil never has to estimate it.
const GAS: &str = "0x30d40";

// ---------------------------------------------------------------------------------------------------------------
// Randomness without a dependency.

/// xorshift64*: reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn from_env(test: &str) -> Rng {
        let seed =
            std::env::var("REORG_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
                SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            });
        eprintln!("{test}: REORG_SEED={seed}");
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `low..=high`.
    fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.next().is_multiple_of(one_in)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Transfers to put into blocks.

/// Builds transaction objects (as `eth_sendTransaction` and `anvil_reorg` take them) of transfers between anvil's
/// dev accounts; every amount is unique, so no two transactions are alike.
struct Traffic {
    eth: Eth,
    /// Dev accounts, `0x` lowercase.
    accounts: Vec<String>,
    /// The `DemoToken` (ERC-20) of `populate_transfers`; accounts 0..3 hold plenty of it.
    token: String,
    sent: u64,
}

impl Traffic {
    async fn new(eth: &Eth, token: String) -> Traffic {
        let accounts: Vec<String> =
            eth.accounts().await.iter().map(|a| a.to_string().to_ascii_lowercase()).collect();
        assert!(accounts.len() >= 4, "anvil has {} dev accounts", accounts.len());
        Traffic { eth: eth.clone(), accounts, token: token.to_ascii_lowercase(), sent: 0 }
    }

    fn unique(&mut self) -> u64 {
        self.sent += 1;
        self.sent
    }

    /// `DemoToken.transfer` from one of the accounts funded by `populate_transfers(…, 3)` (accounts 0..3).
    fn erc20(&mut self, from: usize, to: usize) -> Value {
        let amount = 1_000 + self.unique();
        let to = &self.accounts[to % self.accounts.len()];
        let data = contracts::erc20_transfer(
            to.parse().unwrap_or_else(|err| panic!("{to}: {err}")),
            U256::from(amount),
        );
        json!({"from": self.accounts[from % 3], "to": self.token, "input": data.to_string(), "gas": GAS})
    }

    /// A native transfer of a few wei.
    fn native(&mut self, from: usize, to: usize) -> Value {
        let value = self.unique();
        let n = self.accounts.len();
        let (from, to) = (from % n, if to % n == from % n { (to + 1) % n } else { to % n });
        json!({
            "from": self.accounts[from],
            "to": self.accounts[to],
            "value": format!("0x{value:x}"),
            "gas": GAS,
        })
    }

    /// A transfer of either kind.
    fn random(&mut self, rng: &mut Rng) -> Value {
        let (from, to) = (rng.range(0, 9) as usize, rng.range(0, 9) as usize);
        if rng.chance(2) { self.erc20(from, to) } else { self.native(from, to) }
    }

    /// `(tx, block offset)` pairs for an `anvil_reorg` of `depth`: at least one transfer in the first replacing
    /// block (so it differs from the block it replaces, and so does every later one), 0–2 in the others.
    fn random_reorg_txs(&mut self, rng: &mut Rng, depth: u64) -> Vec<(Value, u64)> {
        let mut txs = Vec::new();
        for offset in 0..depth {
            let count = if offset == 0 { rng.range(1, 2) } else { rng.range(0, 2) };
            for _ in 0..count {
                txs.push((self.random(rng), offset));
            }
        }
        txs
    }

    /// An ERC-20 transfer in every replacing block and a native one in every other.
    fn reorg_txs(&mut self, depth: u64) -> Vec<(Value, u64)> {
        let mut txs = Vec::new();
        for offset in 0..depth {
            let i = offset as usize;
            txs.push((self.erc20(i, i + 5), offset));
            if offset % 2 == 0 {
                txs.push((self.native(i + 3, i + 7), offset));
            }
        }
        txs
    }

    /// Sends `tx` (automine: one new block) and waits for its successful receipt; returns the block number.
    async fn send(&self, tx: Value) -> u64 {
        quantity(&self.eth.send_object(tx).await["blockNumber"])
    }

    /// Mines `blocks` new blocks, each with one transfer.
    async fn grow(&mut self, rng: &mut Rng, blocks: u64) {
        for _ in 0..blocks {
            let tx = self.random(rng);
            self.send(tx).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// anvil.

async fn block_hash(eth: &Eth, number: u64) -> String {
    let block = eth.block(number, false).await;
    assert!(!block.is_null(), "anvil has no block {number}");
    lower(&block["hash"])
}

/// One `anvil_reorg`: the blocks it replaced.
#[derive(Debug, Clone)]
struct Replaced {
    depth: u64,
    /// `(number, old hash)` of every replaced block, ascending.
    old: Vec<(u64, String)>,
    /// `(number, new hash)` at the same heights.
    new: Vec<(u64, String)>,
}

/// `anvil_reorg(depth, txs)`, checked: same height afterwards, every replaced block has a new hash and holds
/// exactly the transactions given for its offset, all successful.
async fn reorg(eth: &Eth, depth: u64, txs: Vec<(Value, u64)>) -> Replaced {
    let (head, _) = anvil_head(eth).await;
    assert!(depth >= 1 && depth < head, "reorg of depth {depth} at head {head}");
    let first = head - depth + 1;
    let mut old = Vec::new();
    for number in first..=head {
        old.push((number, block_hash(eth, number).await));
    }
    let mut per_offset = vec![0usize; depth as usize];
    for (_, offset) in &txs {
        per_offset[*offset as usize] += 1;
    }
    let params: Vec<Value> = txs.into_iter().map(|(tx, offset)| json!([tx, offset])).collect();
    eth.request("anvil_reorg", json!([depth, params])).await;

    assert_eq!(anvil_head(eth).await.0, head, "anvil_reorg changed the height");
    let mut new = Vec::new();
    for (i, number) in (first..=head).enumerate() {
        let block = eth.block(number, false).await;
        let hash = lower(&block["hash"]);
        assert_ne!(hash, old[i].1, "anvil_reorg left block {number} as it was");
        let txs = block["transactions"].as_array().map_or(0, Vec::len);
        assert_eq!(txs, per_offset[i], "block {number} (offset {i}) of the new branch: {block}");
        if txs > 0 {
            for receipt in eth.block_receipts(number).await {
                assert_eq!(receipt["status"], "0x1", "a transfer of the new branch failed: {receipt}");
            }
        }
        new.push((number, hash));
    }
    eprintln!("anvil_reorg depth {depth}: blocks {first}..={head} replaced");
    Replaced { depth, old, new }
}

/// `anvil_rollback(depth)`: returns the `(number, hash)` of the removed blocks.
async fn rollback(eth: &Eth, depth: u64) -> Vec<(u64, String)> {
    let (head, _) = anvil_head(eth).await;
    let mut removed = Vec::new();
    for number in head - depth + 1..=head {
        removed.push((number, block_hash(eth, number).await));
    }
    eth.request("anvil_rollback", json!([depth])).await;
    assert_eq!(anvil_head(eth).await.0, head - depth, "anvil_rollback({depth}) from {head}");
    removed
}

// ---------------------------------------------------------------------------------------------------------------
// The database under test.

/// Triggers recording, transactionally, every change a following indexer makes other than appending: deleted
/// rows, rows whose content changed, truncations, and backward moves or deletions of the cursor.
const AUDIT_SQL: &str = r#"
CREATE TABLE reorg_test_audit (
    id     bigserial PRIMARY KEY,
    tbl    text NOT NULL,
    op     text NOT NULL,
    number bigint,
    hash   text,
    detail text
);

-- On a partitioned table the trigger runs on the partition: the table is its partition tree's root.
CREATE FUNCTION reorg_test_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := to_jsonb(OLD);
    tbl text := coalesce((SELECT relname FROM pg_class WHERE oid = pg_partition_root(TG_RELID)), TG_TABLE_NAME);
    h text := CASE WHEN tbl = 'blocks' THEN r->>'hash' ELSE r->>'block_hash' END;
BEGIN
    INSERT INTO reorg_test_audit (tbl, op, number, hash, detail) VALUES (
        tbl,
        coalesce(TG_ARGV[0], lower(TG_OP)),
        coalesce(r->>'block_number', r->>'number')::bigint,
        '0x' || substr(h, 3),
        CASE WHEN TG_OP = 'UPDATE' THEN r::text || ' -> ' || to_jsonb(NEW)::text END);
    RETURN NULL;
END $$;

CREATE FUNCTION reorg_test_audit_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO reorg_test_audit (tbl, op) VALUES (TG_TABLE_NAME, 'truncate');
    RETURN NULL;
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['blocks', 'transactions', 'logs', 'transfers'] LOOP
        EXECUTE format('CREATE TRIGGER reorg_test_delete AFTER DELETE ON %I
                        FOR EACH ROW EXECUTE FUNCTION reorg_test_audit_row()', t);
        EXECUTE format('CREATE TRIGGER reorg_test_update AFTER UPDATE ON %I
                        FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION reorg_test_audit_row()', t);
        EXECUTE format('CREATE TRIGGER reorg_test_truncate AFTER TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION reorg_test_audit_truncate()', t);
    END LOOP;
END $$;

CREATE TRIGGER reorg_test_cursor_back AFTER UPDATE ON cursors
    FOR EACH ROW WHEN (NEW.block_number < OLD.block_number) EXECUTE FUNCTION reorg_test_audit_row('cursor back');
CREATE TRIGGER reorg_test_cursor_delete AFTER DELETE ON cursors
    FOR EACH ROW EXECUTE FUNCTION reorg_test_audit_row();
CREATE TRIGGER reorg_test_cursor_truncate AFTER TRUNCATE ON cursors
    FOR EACH STATEMENT EXECUTE FUNCTION reorg_test_audit_truncate();
"#;

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Change {
    table: String,
    op: String,
    number: Option<i64>,
    hash: Option<String>,
    detail: Option<String>,
}

async fn changes(pool: &sqlx::PgPool) -> Vec<Change> {
    let rows = sqlx::query_as::<_, (String, String, Option<i64>, Option<String>, Option<String>)>(
        "SELECT tbl, op, number, hash, detail FROM reorg_test_audit ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_else(|err| panic!("reading reorg_test_audit: {err}"));
    rows.into_iter()
        .map(|(table, op, number, hash, detail)| Change { table, op, number, hash, detail })
        .collect()
}

/// `(number, hash)` of every deleted `blocks` row.
fn deleted_blocks(changes: &[Change]) -> BTreeSet<(u64, String)> {
    changes
        .iter()
        .filter(|c| c.table == "blocks" && c.op == "delete")
        .map(|c| (c.number.unwrap_or(-1) as u64, c.hash.clone().unwrap_or_default()))
        .collect()
}

/// Panics unless nothing but appends happened.
fn assert_append_only(changes: &[Change], when: &str) {
    assert!(
        changes.is_empty(),
        "{when}: {} rows deleted or changed, or the cursor moved back; first: {:#?}",
        changes.len(),
        changes.iter().take(5).collect::<Vec<_>>()
    );
}

/// Panics unless every change is the deletion of a row of a block in `replaced` (`(number, hash)` of blocks that
/// anvil replaced at some point) or a backward move of the cursor: a block that is still canonical was never
/// touched, no row was updated in place or truncated.
fn assert_only_replaced_deleted(changes: &[Change], replaced: &BTreeSet<(u64, String)>) {
    for change in changes {
        match change.op.as_str() {
            "cursor back" => {}
            "delete" if change.table != "cursors" => {
                let block = (change.number.unwrap_or(-1) as u64, change.hash.clone().unwrap_or_default());
                assert!(
                    replaced.contains(&block),
                    "a row of block {} {} was deleted, but that block was never replaced: {change:?}",
                    block.0,
                    block.1
                );
            }
            _ => panic!("unexpected change: {change:?}"),
        }
    }
}

/// A fresh database with chainmux's schema and the audit triggers, and the config of a chainmux on it.
struct Subject {
    _db: TestDb,
    pool: sqlx::PgPool,
    config: Config,
}

impl Subject {
    async fn new(upstreams: &[(&str, &str)]) -> Subject {
        let db = TestDb::create().await;
        let config = Config::new(&db.url, upstreams);
        common::migrate(&config);
        let pool = connect(&db.url).await;
        sqlx::raw_sql(AUDIT_SQL)
            .execute(&pool)
            .await
            .unwrap_or_else(|err| panic!("installing the audit: {err}"));
        Subject { _db: db, pool, config }
    }

    async fn changes(&self) -> Vec<Change> {
        changes(&self.pool).await
    }

    /// The cursor: number and `0x` hash.
    async fn cursor(&self) -> Option<(i64, String)> {
        sqlx::query_as::<_, (i64, String)>(
            "SELECT block_number, '0x' || encode(block_hash, 'hex') FROM cursors WHERE chain = 'local'",
        )
        .fetch_optional(&self.pool)
        .await
        .unwrap_or_else(|err| panic!("reading the cursor: {err}"))
    }
}

type Tables = BTreeMap<&'static str, Vec<String>>;

/// Panics, naming the rows only one side has, unless every table is equal.
fn assert_same_tables(what: &str, actual: &Tables, expected: &Tables) {
    let mut problems = Vec::new();
    for (table, want) in expected {
        let got = &actual[table];
        if got == want {
            continue;
        }
        let (got_set, want_set): (BTreeSet<_>, BTreeSet<_>) = (got.iter().collect(), want.iter().collect());
        let extra: Vec<_> = got_set.difference(&want_set).take(3).collect();
        let missing: Vec<_> = want_set.difference(&got_set).take(3).collect();
        problems.push(format!(
            "{table}: {} rows, expected {}; {} extra, {} missing\n  first extra:   {extra:?}\n  first missing: {missing:?}",
            got.len(),
            want.len(),
            got_set.difference(&want_set).count(),
            want_set.difference(&got_set).count(),
        ));
    }
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

/// The stored data is one consistent chain: blocks `0..=cursor` with nothing above, each block's parent is the
/// stored block below, every transaction, log and transfer belongs to the stored block at its height, and the
/// blocks' counts match their rows. Returns the cursor's height.
async fn assert_consistent(subject: &Subject, when: &str) -> i64 {
    let pool = &subject.pool;
    let (cursor, cursor_hash) = subject.cursor().await.unwrap_or_else(|| panic!("{when}: no cursor"));
    let scalar = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|err| panic!("{sql}: {err}"))
    };
    let blocks = scalar("SELECT count(*) FROM blocks WHERE chain = 'local'").await;
    let top = scalar("SELECT coalesce(max(number), -1) FROM blocks WHERE chain = 'local'").await;
    assert_eq!((blocks, top), (cursor + 1, cursor), "{when}: blocks 0..={cursor} and nothing else");
    let top_hash = text_rows(
        pool,
        "SELECT '0x' || encode(hash, 'hex') FROM blocks WHERE chain = 'local' ORDER BY number DESC LIMIT 1",
    )
    .await;
    assert_eq!(top_hash, vec![cursor_hash.clone()], "{when}: the cursor is not the top block");
    let checks: [(&str, &'static str); 7] = [
        (
            "blocks whose parent is not the stored block below",
            "SELECT count(*) FROM blocks b JOIN blocks p ON p.chain = b.chain AND p.number = b.number - 1 \
             WHERE b.chain = 'local' AND b.parent_hash <> p.hash",
        ),
        (
            "transactions not of the stored block at their height",
            "SELECT count(*) FROM transactions t LEFT JOIN blocks b ON b.chain = t.chain AND b.number = t.block_number \
             WHERE t.chain = 'local' AND b.hash IS DISTINCT FROM t.block_hash",
        ),
        (
            "logs not of the stored block at their height",
            "SELECT count(*) FROM logs t LEFT JOIN blocks b ON b.chain = t.chain AND b.number = t.block_number \
             WHERE t.chain = 'local' AND b.hash IS DISTINCT FROM t.block_hash",
        ),
        (
            "transfers not of the stored block at their height",
            "SELECT count(*) FROM transfers t LEFT JOIN blocks b ON b.chain = t.chain AND b.number = t.block_number \
             WHERE t.chain = 'local' AND b.hash IS DISTINCT FROM t.block_hash",
        ),
        (
            "blocks whose tx_count differs from their stored transactions",
            "SELECT count(*) FROM blocks b WHERE b.chain = 'local' AND b.tx_count <> \
             (SELECT count(*) FROM transactions t WHERE t.chain = b.chain AND t.block_number = b.number)",
        ),
        (
            "blocks whose log_count differs from their stored logs",
            "SELECT count(*) FROM blocks b WHERE b.chain = 'local' AND b.log_count <> \
             (SELECT count(*) FROM logs l WHERE l.chain = b.chain AND l.block_number = b.number)",
        ),
        (
            "transfers without their transaction",
            "SELECT count(*) FROM transfers t WHERE t.chain = 'local' AND NOT EXISTS \
             (SELECT 1 FROM transactions x WHERE x.chain = t.chain AND x.block_number = t.block_number \
              AND x.hash = t.tx_hash)",
        ),
    ];
    for (what, sql) in checks {
        assert_eq!(scalar(sql).await, 0, "{when}: {what}");
    }
    cursor
}

/// Blocks (hash, parent), transactions (position, hash) and logs (position, block, transaction) of the stored
/// chain are exactly anvil's canonical ones up to `head`.
async fn assert_matches_anvil(pool: &sqlx::PgPool, eth: &Eth, head: u64) {
    let mut blocks = Vec::new();
    let mut transactions = Vec::new();
    for number in 0..=head {
        let block = eth.block(number, true).await;
        blocks.push(format!("{number} {} {}", lower(&block["hash"]), lower(&block["parentHash"])));
        for tx in block["transactions"].as_array().into_iter().flatten() {
            transactions.push(format!(
                "{number} {} {}",
                quantity(&tx["transactionIndex"]),
                lower(&tx["hash"])
            ));
        }
    }
    let mut logs: Vec<String> = eth
        .logs(0, head)
        .await
        .iter()
        .map(|log| {
            format!(
                "{} {} {} {}",
                quantity(&log["blockNumber"]),
                quantity(&log["logIndex"]),
                lower(&log["blockHash"]),
                lower(&log["transactionHash"])
            )
        })
        .collect();
    logs.sort_by_key(|line| {
        let mut parts = line.split(' ').map(|p| p.parse::<u64>().unwrap_or(0));
        (parts.next(), parts.next())
    });
    let stored_blocks = text_rows(
        pool,
        "SELECT number || ' 0x' || encode(hash, 'hex') || ' 0x' || encode(parent_hash, 'hex') \
         FROM blocks WHERE chain = 'local' ORDER BY number",
    )
    .await;
    let stored_transactions = text_rows(
        pool,
        "SELECT block_number || ' ' || tx_index || ' 0x' || encode(hash, 'hex') \
         FROM transactions WHERE chain = 'local' ORDER BY block_number, tx_index",
    )
    .await;
    let stored_logs = text_rows(
        pool,
        "SELECT block_number || ' ' || log_index || ' 0x' || encode(block_hash, 'hex') || ' 0x' || \
         encode(tx_hash, 'hex') FROM logs WHERE chain = 'local' ORDER BY block_number, log_index",
    )
    .await;
    for (what, stored, canonical) in [
        ("blocks", stored_blocks, blocks),
        ("transactions", stored_transactions, transactions),
        ("logs", stored_logs, logs),
    ] {
        if stored != canonical {
            let (s, c): (BTreeSet<_>, BTreeSet<_>) = (stored.iter().collect(), canonical.iter().collect());
            panic!(
                "{what} differ from anvil's canonical chain: {} stored, {} canonical\n  stored only:    {:?}\n  \
                 canonical only: {:?}",
                stored.len(),
                canonical.len(),
                s.difference(&c).take(3).collect::<Vec<_>>(),
                c.difference(&s).take(3).collect::<Vec<_>>()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The process.

/// `chainmux_indexer_reorgs_total` of chain `local` (0 when absent).
async fn reorgs_total(chainmux: &Chainmux) -> f64 {
    chainmux.metric("chainmux_indexer_reorgs_total", &[("chain", "local")]).await.unwrap_or(0.0)
}

/// `(count, sum)` of the histogram `chainmux_indexer_reorg_depth` of chain `local`, which must have buckets.
async fn reorg_depths(chainmux: &Chainmux) -> (f64, f64) {
    let labels = [("chain", "local")];
    let count = chainmux.metric("chainmux_indexer_reorg_depth_count", &labels).await;
    let sum = chainmux.metric("chainmux_indexer_reorg_depth_sum", &labels).await;
    let buckets = chainmux.metric("chainmux_indexer_reorg_depth_bucket", &labels).await;
    let (Some(count), Some(sum)) = (count, sum) else {
        panic!("/metrics has no chainmux_indexer_reorg_depth_count/_sum for chain local");
    };
    assert!(
        buckets.is_some(),
        "chainmux_indexer_reorg_depth has no buckets (a summary instead of a histogram?)"
    );
    (count, sum)
}

/// Lines of the log about a handled reorg (the word, outside the config key `max_reorg_depth`).
fn reorg_log_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.to_ascii_lowercase().replace("max_reorg_depth", "").contains("reorg")).collect()
}

/// Indexes anvil's chain as it is now with a second chainmux on a fresh database, and checks that `subject`'s
/// tables (whose chainmux must be synced to the head already) equal the fresh index row for row, and that both
/// equal anvil's own blocks, transactions and logs.
async fn assert_same_as_fresh_index(subject: &Subject, anvil_url: &str, eth: &Eth) {
    let (head, hash) = anvil_head(eth).await;
    let db = TestDb::create().await;
    let pool = connect(&db.url).await;
    let mut fresh = Chainmux::start(&Config::new(&db.url, &[("anvil", anvil_url)])).await;
    wait_synced(&mut fresh, eth).await;
    drop(fresh);
    assert_eq!(anvil_head(eth).await, (head, hash), "the chain changed during the fresh index");

    let (ours, expected) = (dump(&subject.pool).await, dump(&pool).await);
    assert_eq!(expected["blocks"].len() as u64, head + 1, "the fresh index has every block");
    assert!(!expected["transfers"].is_empty(), "the chain has transfers");
    assert_same_tables(
        "the tables after reorgs differ from a fresh index of the canonical chain",
        &ours,
        &expected,
    );
    assert_matches_anvil(&subject.pool, eth, head).await;
    assert_matches_anvil(&pool, eth, head).await;
    assert_consistent(subject, "after the fresh-index comparison").await;
    eprintln!(
        "tables equal a fresh index at head {head}: {} blocks, {} transactions, {} logs, {} transfers",
        ours["blocks"].len(),
        ours["transactions"].len(),
        ours["logs"].len(),
        ours["transfers"].len()
    );
}

/// anvil with `populate_transfers(…, 3)`: the three test contracts, transfers of every kind, ~28 blocks.
async fn chain_with_transfers(args: &[&str]) -> (Anvil, Eth, Traffic) {
    let anvil = Anvil::spawn_with(args).await;
    let eth = Eth::new(&anvil.url);
    let mix = populate_transfers(&eth, 3).await;
    let traffic = Traffic::new(&eth, mix.token.to_string()).await;
    (anvil, eth, traffic)
}

// ---------------------------------------------------------------------------------------------------------------

/// Reorgs of depth 1, 3 and 10 while chainmux follows the head: each is rolled back to the common ancestor and the
/// new branch indexed; the API serves the new blocks; the tables equal a fresh index of the final chain; only rows
/// of replaced blocks were ever deleted; reorgs and depths show in `/metrics` and in the log.
#[tokio::test]
async fn reorg_depth_1_3_10_while_following() {
    let (anvil, eth, mut traffic) = chain_with_transfers(&[]).await;
    let subject = Subject::new(&[("anvil", &anvil.url)]).await;
    let mut chainmux = Chainmux::start(&subject.config).await;
    wait_synced(&mut chainmux, &eth).await;
    assert_append_only(&subject.changes().await, "before any reorg");

    let mut replaced_blocks = BTreeSet::new();
    for depth in [1, 3, 10] {
        let txs = traffic.reorg_txs(depth);
        let replaced = reorg(&eth, depth, txs).await;
        replaced_blocks.extend(replaced.old.iter().cloned());
        // The new branch grows by a block: the following indexer sees a parent it does not have.
        let tx = traffic.native(1, 2);
        traffic.send(tx).await;
        wait_synced(&mut chainmux, &eth).await;
        assert_consistent(&subject, &format!("after the reorg of depth {depth}")).await;

        for (number, hash) in &replaced.new {
            let block = chainmux.get_json(&format!("/v1/chains/local/blocks/{number}")).await;
            assert_eq!(
                block["hash"],
                json!(hash),
                "block {number} after the reorg of depth {depth}: {block}"
            );
        }
        for (number, old) in &replaced.old {
            let (status, body) = get(&chainmux.url(&format!("/v1/chains/local/blocks/{old}")))
                .await
                .expect("GET block by hash");
            assert_eq!(status, 404, "the replaced block {number} {old} is still served: {body}");
        }
        // Exactly the replaced blocks were deleted, so far.
        let changes = subject.changes().await;
        assert_eq!(
            deleted_blocks(&changes),
            replaced_blocks,
            "deleted blocks after the reorg of depth {depth} (expected: exactly the replaced ones)"
        );
        assert_only_replaced_deleted(&changes, &replaced_blocks);
        assert_eq!(replaced.depth, depth);
    }

    let reorgs = reorgs_total(&chainmux).await;
    let (count, sum) = reorg_depths(&chainmux).await;
    assert!(reorgs >= 3.0, "chainmux_indexer_reorgs_total is {reorgs} after 3 reorgs");
    assert!(
        count >= 3.0 && sum >= 14.0,
        "chainmux_indexer_reorg_depth: count {count}, sum {sum} (1 + 3 + 10)"
    );
    let log = chainmux.log();
    let lines = reorg_log_lines(&log);
    assert!(lines.len() >= 3, "{} log lines about a reorg after 3 reorgs: {lines:#?}", lines.len());
    eprintln!("reorgs_total {reorgs}, depth count {count} sum {sum}; e.g. {:?}", lines.first());

    assert_same_as_fresh_index(&subject, &anvil.url, &eth).await;
}

/// Ten random reorgs (depth 1–8, random transfers in the replacing blocks, 1–3 new blocks after each, sometimes
/// while chainmux is still catching up with the previous one): the final tables equal a fresh index, and no
/// block that stayed canonical was ever deleted.
#[tokio::test]
async fn many_random_reorgs() {
    const ROUNDS: usize = 10;
    let mut rng = Rng::from_env("many_random_reorgs");
    let (anvil, eth, mut traffic) = chain_with_transfers(&[]).await;
    traffic.grow(&mut rng, 5).await;
    let subject = Subject::new(&[("anvil", &anvil.url)]).await;
    let mut chainmux = Chainmux::start(&subject.config).await;
    wait_synced(&mut chainmux, &eth).await;

    let mut replaced_blocks = BTreeSet::new();
    // Whether chainmux was synced before each round's reorg.
    let mut synced = Vec::new();
    for round in 0..ROUNDS {
        // Mostly from a synced index (a rollback is certain), sometimes in the middle of catching up.
        synced.push(round == 0 || !rng.chance(3));
        if synced[round] {
            wait_synced(&mut chainmux, &eth).await;
        }
        let depth = rng.range(1, 8);
        let txs = traffic.random_reorg_txs(&mut rng, depth);
        let replaced = reorg(&eth, depth, txs).await;
        replaced_blocks.extend(replaced.old.iter().cloned());
        let grow = rng.range(1, 3);
        traffic.grow(&mut rng, grow).await;
        eprintln!("round {round}: depth {depth}, then {grow} new blocks");
    }
    wait_synced(&mut chainmux, &eth).await;

    // A reorg of the synced head that was also handled before the next reorg (the next round waited for the
    // new head, or it was the last) is one rollback for sure; the others may merge with the next one.
    let certain = (0..ROUNDS).filter(|&r| synced[r] && synced.get(r + 1).is_none_or(|next| *next)).count();
    let reorgs = reorgs_total(&chainmux).await;
    assert!(
        reorgs >= certain as f64,
        "chainmux_indexer_reorgs_total is {reorgs}; at least {certain} reorgs replaced the indexed head"
    );
    let changes = subject.changes().await;
    assert_only_replaced_deleted(&changes, &replaced_blocks);
    assert!(!deleted_blocks(&changes).is_empty(), "no block was ever deleted");
    assert_same_as_fresh_index(&subject, &anvil.url, &eth).await;
}

/// A chain cut below the indexed head (`anvil_rollback`) is not rolled back while it is shorter: nothing is deleted,
/// the cursor stays, no reorg is counted. Once it grows past the indexed height on another branch, the mismatch is
/// found, rolled back and the new branch indexed; the tables equal a fresh index.
#[tokio::test]
async fn rollback_then_regrow() {
    const CUT: u64 = 5;
    let mut rng = Rng::from_env("rollback_then_regrow");
    let (anvil, eth, mut traffic) = chain_with_transfers(&[]).await;
    let subject = Subject::new(&[("anvil", &anvil.url)]).await;
    let mut chainmux = Chainmux::start(&subject.config).await;
    let indexed = wait_synced(&mut chainmux, &eth).await;
    let cursor = subject.cursor().await;
    let before = dump(&subject.pool).await;

    let removed = rollback(&eth, CUT).await;
    // Many polls and probes while the chain is shorter than the index.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert!(chainmux.exited().is_none(), "chainmux exited while the chain was shorter");
        assert_eq!(subject.cursor().await, cursor, "the cursor moved while the chain was shorter");
        assert_append_only(&subject.changes().await, "while the chain is shorter than the index");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_same_tables("tables while the chain is shorter", &dump(&subject.pool).await, &before);
    assert_eq!(reorgs_total(&chainmux).await, 0.0, "a reorg was counted while the chain was only shorter");
    let view = chainmux.chain_view().await;
    assert_eq!(view["indexed_head"]["number"], json!(indexed), "{view}");

    // A new branch from the cut, 8 blocks with transfers: 3 above the indexed height.
    traffic.grow(&mut rng, CUT + 3).await;
    let head = wait_synced(&mut chainmux, &eth).await;
    assert_eq!(head, indexed + 3);
    for (number, old) in &removed {
        assert_ne!(&block_hash(&eth, *number).await, old, "block {number} of the new branch is the old one");
    }

    let changes = subject.changes().await;
    let removed: BTreeSet<_> = removed.into_iter().collect();
    assert_eq!(deleted_blocks(&changes), removed, "deleted blocks: exactly the ones the rollback removed");
    assert_only_replaced_deleted(&changes, &removed);
    let reorgs = reorgs_total(&chainmux).await;
    let (count, sum) = reorg_depths(&chainmux).await;
    assert!(reorgs >= 1.0, "chainmux_indexer_reorgs_total is {reorgs}");
    assert!(count >= 1.0 && sum >= CUT as f64, "chainmux_indexer_reorg_depth: count {count}, sum {sum}");
    assert_same_as_fresh_index(&subject, &anvil.url, &eth).await;
}

/// A lagging upstream listed first (20 blocks behind, at times caught up, then behind again) while new blocks
/// arrive: its shorter chain is never taken for a reorg — nothing deleted, the cursor never moves back, no reorg
/// counted — and the index follows the real head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_upstream_is_not_a_reorg() {
    let mut rng = Rng::from_env("lagging_upstream_is_not_a_reorg");
    let (anvil, eth, mut traffic) = chain_with_transfers(&[]).await;
    eth.mine(20).await;
    let lagging = FaultProxy::start(&anvil.url).await;
    lagging.set(Fault::Lag(20)).await;
    let subject = Subject::new(&[("lagging", &lagging.url), ("anvil", &anvil.url)]).await;
    let mut chainmux = Chainmux::start(&subject.config).await;
    wait_synced(&mut chainmux, &eth).await;

    // Follow the head for a while: the proxy lags 20 blocks, catches up, lags again.
    let phases = [Fault::Lag(20), Fault::None, Fault::Lag(20), Fault::None, Fault::Lag(20)];
    let mut last_cursor = subject.cursor().await.map(|c| c.0);
    for fault in phases {
        lagging.set(fault.clone()).await;
        let phase = Instant::now();
        while phase.elapsed() < Duration::from_millis(1200) {
            traffic.grow(&mut rng, 1).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let cursor = subject.cursor().await.map(|c| c.0);
            assert!(
                cursor >= last_cursor,
                "the cursor moved back from {last_cursor:?} to {cursor:?} ({fault:?})"
            );
            last_cursor = cursor;
            assert_append_only(
                &subject.changes().await,
                &format!("while the first upstream is at {fault:?}"),
            );
        }
        assert_eq!(reorgs_total(&chainmux).await, 0.0, "a reorg was counted with the upstream at {fault:?}");
    }
    let head = wait_synced(&mut chainmux, &eth).await;
    assert!(lagging.received("eth_blockNumber") > 0, "the lagging upstream was never asked");
    assert_append_only(&subject.changes().await, "at the end");
    assert_eq!(reorgs_total(&chainmux).await, 0.0);
    let count = chainmux.metric("chainmux_indexer_reorg_depth_count", &[("chain", "local")]).await;
    assert!(count.is_none_or(|c| c == 0.0), "chainmux_indexer_reorg_depth_count is {count:?}");
    let lines = reorg_log_lines(&chainmux.log()).into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert!(lines.is_empty(), "the log speaks of a reorg: {lines:#?}");
    eprintln!("followed to {head} with a lagging first upstream");
    assert_same_as_fresh_index(&subject, &anvil.url, &eth).await;
}

/// SIGKILL at a random moment shortly after a reorg of depth 10 appears (before, during or after the rollback),
/// four times: the database is always one consistent chain (the old branch, or the common ancestor's prefix, with
/// or without some of the new branch, never a mix), the restart resumes, and the final tables equal a fresh index.
#[tokio::test]
async fn crash_during_reorg_rollback_is_consistent() {
    const ROUNDS: usize = 4;
    const DEPTH: u64 = 10;
    let mut rng = Rng::from_env("crash_during_reorg_rollback_is_consistent");
    let (anvil, eth, mut traffic) = chain_with_transfers(&[]).await;
    let subject = Subject::new(&[("anvil", &anvil.url)]).await;
    let mut replaced_blocks = BTreeSet::new();
    let mut chainmux = Chainmux::start(&subject.config).await;
    for round in 0..ROUNDS {
        let head = wait_synced(&mut chainmux, &eth).await;
        let rollbacks = |changes: Vec<Change>| changes.iter().filter(|c| c.op == "cursor back").count();
        let rollbacks_before = rollbacks(subject.changes().await);
        let txs = traffic.random_reorg_txs(&mut rng, DEPTH);
        let replaced = reorg(&eth, DEPTH, txs).await;
        replaced_blocks.extend(replaced.old.iter().cloned());
        let tx = traffic.native(round, round + 4);
        traffic.send(tx).await;
        let delay = Duration::from_millis(rng.range(0, 300));
        tokio::time::sleep(delay).await;
        chainmux.kill();
        drop(chainmux);

        let cursor = assert_consistent(&subject, &format!("after SIGKILL {delay:?} after the reorg")).await;
        let rolled_back = rollbacks(subject.changes().await) > rollbacks_before;
        eprintln!(
            "round {round}: SIGKILL {delay:?} after the new block {}: cursor {cursor} ({}; ancestor {})",
            head + 1,
            if rolled_back { "rolled back before the kill" } else { "not rolled back yet" },
            head - DEPTH
        );
        chainmux = Chainmux::start(&subject.config).await;
    }
    wait_synced(&mut chainmux, &eth).await;
    assert_only_replaced_deleted(&subject.changes().await, &replaced_blocks);
    assert_same_as_fresh_index(&subject, &anvil.url, &eth).await;
}

/// Stops-the-chain checks shared by the two tests below, after `replaced` (a reorg that must not be followed) and
/// a new block: the log has an ERROR line about the reorg containing one of `must_mention`, the process keeps
/// serving, and the database is as before — nothing rolled back, nothing of the new branch written, the replaced
/// heights still hold the old blocks — also after more blocks arrive.
async fn assert_chain_stops(
    chainmux: &mut Chainmux,
    subject: &Subject,
    eth: &Eth,
    traffic: &mut Traffic,
    replaced: &Replaced,
    must_mention: &[&str],
) {
    let before_head = replaced.old.last().map(|b| b.0).unwrap_or_default();
    let started = Instant::now();
    let line = loop {
        let log = chainmux.log();
        let found = log.lines().find(|l| {
            let lower = l.to_ascii_lowercase();
            l.contains("ERROR") && lower.contains("reorg") && must_mention.iter().any(|m| lower.contains(m))
        });
        if let Some(line) = found {
            break line.to_owned();
        }
        assert!(chainmux.exited().is_none(), "chainmux exited after the reorg");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no ERROR line about the reorg mentioning one of {must_mention:?} within 30 s"
        );
        tokio::time::sleep(POLL).await;
    };
    eprintln!("error logged: {line}");

    // More blocks arrive; the chain's indexer stays stopped and writes nothing.
    let mut rng = Rng(7);
    traffic.grow(&mut rng, 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(chainmux.exited().is_none(), "chainmux exited after the reorg");
    assert_append_only(&subject.changes().await, "after a reorg the chain must not follow");
    let cursor = assert_consistent(subject, "after a reorg the chain must not follow").await;
    assert_eq!(cursor as u64, before_head, "the cursor moved");
    for (number, old) in &replaced.old {
        let block = chainmux.get_json(&format!("/v1/chains/local/blocks/{number}")).await;
        assert_eq!(block["hash"], json!(old), "block {number} is not the old one any more: {block}");
    }
    let (status, body) = get(&chainmux.url("/health")).await.expect("GET /health");
    assert_eq!(status, 200, "/health: {body}");
    let view = chainmux.chain_view().await;
    assert_eq!(view["indexed_head"]["number"], json!(before_head), "{view}");
    let answer = chainmux.rpc(&rpc_request(1, "eth_blockNumber", json!([]))).await;
    assert_eq!(quantity(&answer["result"]), anvil_head(eth).await.0, "the JSON-RPC proxy: {answer}");
}

/// `max_reorg_depth = 3` and a reorg of depth 6: the chain's indexer stops with an error naming the depth limit,
/// writes nothing (no partial rollback, no row of the new branch), and the process keeps serving.
#[tokio::test]
async fn reorg_deeper_than_the_limit_stops_the_chain() {
    let (anvil, eth, mut traffic) = chain_with_transfers(&[]).await;
    let mut subject = Subject::new(&[("anvil", &anvil.url)]).await;
    subject.config.max_reorg_depth = Some(3);
    let mut chainmux = Chainmux::start(&subject.config).await;
    wait_synced(&mut chainmux, &eth).await;
    let before = dump(&subject.pool).await;

    let txs = traffic.reorg_txs(6);
    let replaced = reorg(&eth, 6, txs).await;
    let tx = traffic.native(1, 2);
    traffic.send(tx).await;
    assert_chain_stops(&mut chainmux, &subject, &eth, &mut traffic, &replaced, &["depth", "limit"]).await;
    assert_same_tables("tables after a too deep reorg", &dump(&subject.pool).await, &before);
    assert_eq!(reorgs_total(&chainmux).await, 0.0, "a too deep reorg was counted as handled");
}

/// A reorg whose common ancestor is below the chain's finalized head (anvil with one slot per epoch finalizes
/// head − 2) is not rolled back, however shallow compared with `max_reorg_depth`: the chain stops, loudly, and
/// nothing is written.
#[tokio::test]
async fn reorg_below_finalized_stops_the_chain() {
    let (anvil, eth, mut traffic) = chain_with_transfers(&["--slots-in-an-epoch", "1"]).await;
    let subject = Subject::new(&[("anvil", &anvil.url)]).await;
    let mut chainmux = Chainmux::start(&subject.config).await;
    let head = wait_synced(&mut chainmux, &eth).await;
    let finalized =
        quantity(&eth.request("eth_getBlockByNumber", json!(["finalized", false])).await["number"]);
    assert_eq!(finalized, head - 2, "anvil --slots-in-an-epoch 1 finalizes head - 2");
    // chainmux knows the finalized head before the reorg happens.
    let started = Instant::now();
    loop {
        let view = chainmux.chain_view().await;
        if view["finalized"] == json!(finalized) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "chainmux does not report finalized {finalized}: {view}"
        );
        tokio::time::sleep(POLL).await;
    }
    let before = dump(&subject.pool).await;

    let txs = traffic.reorg_txs(5);
    let replaced = reorg(&eth, 5, txs).await;
    let tx = traffic.native(1, 2);
    traffic.send(tx).await;
    assert_chain_stops(&mut chainmux, &subject, &eth, &mut traffic, &replaced, &["finaliz"]).await;
    assert_same_tables("tables after a reorg below the finalized head", &dump(&subject.pool).await, &before);
}
