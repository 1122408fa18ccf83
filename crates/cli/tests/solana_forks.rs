//! End-to-end tests of skipped slots and forks on a Solana chain. The local node (surfpool) never skips a slot and
//! never forks, so the testkit's [`FaultProxy`] stands between it and the `chainmux` binary and rewrites what it
//! serves: [`Fault::SolanaView`] leaves slots out as a real cluster's skipped slots (re-linking the blocks around
//! them) and re-hashes the chain from a slot on, so that switching views while chainmux follows the chain is a
//! fork; [`Fault::HideSlot`] is a node that lacks a slot without pretending it was skipped. Every test starts its
//! own node and sends the known traffic scenario to it, so the blocks involved carry real transactions, transfers
//! and instructions, which are checked in the real PostgreSQL database.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chainmux_testkit::solana::{SolanaNode, TrafficManifest, run_traffic};
use chainmux_testkit::{Fault, FaultProxy, TestDb};
use common::{Chainmux, Config, connect, node_rpc};
use serde_json::json;
use sqlx::Row;

const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_2022_PROGRAM: &str = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
/// The local node's `finalized` slot trails `confirmed` by this much (see the node's README): a fork must start
/// above it, or chainmux rightly refuses to roll finalized blocks back.
const FINALITY_LAG: u64 = 31;
/// How long a test waits for chainmux to get somewhere.
const WAIT: Duration = Duration::from_secs(30);

fn b58(bytes: &[u8]) -> String {
    bs58::encode(bytes).into_string()
}

fn slot_i64(slot: u64) -> i64 {
    i64::try_from(slot).expect("slot fits in i64")
}

async fn confirmed_slot(url: &str) -> u64 {
    let slot = node_rpc(url, "getSlot", json!([{"commitment": "confirmed"}])).await;
    slot.as_u64().unwrap_or_else(|| panic!("getSlot answered {slot}"))
}

async fn finalized_slot(url: &str) -> u64 {
    let slot = node_rpc(url, "getSlot", json!([{"commitment": "finalized"}])).await;
    slot.as_u64().unwrap_or_else(|| panic!("getSlot answered {slot}"))
}

/// The slots `url` lists in `first..=last` at `confirmed`.
async fn listed_slots(url: &str, first: u64, last: u64) -> Vec<u64> {
    let slots = node_rpc(url, "getBlocks", json!([first, last, {"commitment": "confirmed"}])).await;
    let slots: Vec<u64> = serde_json::from_value(slots).expect("getBlocks answers slots");
    slots.into_iter().filter(|s| (first..=last).contains(s)).collect()
}

/// The `blockhash` `url` serves for `slot` at `confirmed`.
async fn served_hash(url: &str, slot: u64) -> String {
    let config = json!({
        "encoding": "json",
        "transactionDetails": "none",
        "rewards": false,
        "maxSupportedTransactionVersion": 0,
        "commitment": "confirmed",
    });
    let block = node_rpc(url, "getBlock", json!([slot, config])).await;
    block["blockhash"].as_str().unwrap_or_else(|| panic!("slot {slot}: no blockhash in {block}")).to_owned()
}

/// A stored block: `(number, base58 hash, parent_number, base58 parent_hash)`.
type StoredBlock = (u64, String, Option<u64>, String);

/// Every stored block of `chain`, by number.
async fn stored_blocks(pool: &sqlx::PgPool, chain: &str) -> Vec<StoredBlock> {
    sqlx::query(
        "SELECT number, hash, parent_number, parent_hash FROM blocks WHERE chain = $1 ORDER BY number",
    )
    .bind(chain)
    .fetch_all(pool)
    .await
    .expect("blocks")
    .iter()
    .map(|row| {
        let number = u64::try_from(row.get::<i64, _>("number")).expect("slot");
        let parent = row.get::<Option<i64>, _>("parent_number").map(|p| u64::try_from(p).expect("slot"));
        (number, b58(&row.get::<Vec<u8>, _>("hash")), parent, b58(&row.get::<Vec<u8>, _>("parent_hash")))
    })
    .collect()
}

/// Rows of `table` (`transactions`, `transfers` or `instructions`) of `chain` in block `slot`.
async fn rows_at(pool: &sqlx::PgPool, table: &str, chain: &str, slot: u64) -> i64 {
    let sql = match table {
        "transactions" => "SELECT count(*) FROM transactions WHERE chain = $1 AND block_number = $2",
        "transfers" => "SELECT count(*) FROM transfers WHERE chain = $1 AND block_number = $2",
        "instructions" => "SELECT count(*) FROM instructions WHERE chain = $1 AND block_number = $2",
        other => panic!("no such table {other}"),
    };
    sqlx::query_scalar(sql)
        .bind(chain)
        .bind(slot_i64(slot))
        .fetch_one(pool)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

/// The block (number, base58 block hash) each stored transaction with signature `signature` is in.
async fn stored_tx(pool: &sqlx::PgPool, chain: &str, signature: &str) -> Vec<(u64, String)> {
    let hash = bs58::decode(signature).into_vec().expect("base58 signature");
    sqlx::query("SELECT block_number, block_hash FROM transactions WHERE chain = $1 AND hash = $2")
        .bind(chain)
        .bind(hash)
        .fetch_all(pool)
        .await
        .expect("transactions")
        .iter()
        .map(|row| {
            let number = u64::try_from(row.get::<i64, _>("block_number")).expect("slot");
            (number, b58(&row.get::<Vec<u8>, _>("block_hash")))
        })
        .collect()
}

/// Lines chainmux logged at level ERROR.
fn error_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|line| line.split_whitespace().nth(1) == Some("ERROR")).collect()
}

/// A slot in the middle of the scenario that holds a successful transaction which moved something, with at least
/// `margin` slots of the scenario on either side.
fn busy_slot(manifest: &TrafficManifest, margin: u64) -> u64 {
    let candidates: Vec<u64> = manifest
        .transactions
        .iter()
        .filter(|tx| tx.success && !tx.transfers.is_empty())
        .map(|tx| tx.slot)
        .filter(|slot| *slot >= manifest.first_slot + margin && *slot + margin <= manifest.last_slot)
        .collect();
    assert!(
        !candidates.is_empty(),
        "no transaction with transfers {margin} slots inside the scenario: {manifest:?}"
    );
    candidates[candidates.len() / 2]
}

fn solana_config(db: &TestDb, upstreams: &[(&str, &str)]) -> Config {
    let mut config = Config::solana(&db.url, upstreams);
    config.programs =
        vec![("token".into(), TOKEN_PROGRAM.into()), ("token-2022".into(), TOKEN_2022_PROGRAM.into())];
    config
}

/// Waits until the stored cursor of `chain` satisfies `check`; returns it.
async fn wait_cursor(
    chainmux: &mut Chainmux,
    pool: &sqlx::PgPool,
    what: &str,
    check: impl Fn(u64) -> bool,
) -> u64 {
    let chain = chainmux.chain.clone();
    chainmux
        .wait_for(what, WAIT, || {
            let pool = pool.clone();
            let chain = chain.clone();
            let check = &check;
            async move {
                let cursor = common::cursor(&pool, &chain).await?;
                let cursor = u64::try_from(cursor).expect("slot");
                check(cursor).then_some(cursor)
            }
        })
        .await
}

/// Skipped slots — one holding a scenario transaction, and a run of two — are left out of the index with nothing
/// else: every other block is stored, each linked to the block before it, and no error is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_slots_are_left_out_and_linked_over() {
    let node = SolanaNode::start().await.expect("the local Solana node starts");
    let manifest = run_traffic(node.url(), 11).await.expect("the traffic scenario runs");
    let busy = busy_slot(&manifest, 4);
    let skipped = BTreeSet::from([busy, busy + 2, busy + 3]);
    let proxy = FaultProxy::start(node.url()).await;
    proxy.set(Fault::SolanaView { branch: 0, from_slot: u64::MAX, skipped: skipped.clone() }).await;

    let db = TestDb::create().await;
    let config = solana_config(&db, &[("skipping", proxy.url.as_str())]);
    let mut chainmux = Chainmux::start(&config).await;
    chainmux.wait_indexed(manifest.last_slot).await;
    let pool = connect(&db.url).await;

    let (first, last) = (manifest.first_slot, manifest.last_slot);
    let produced = listed_slots(node.url(), first, last).await;
    assert!(skipped.iter().all(|s| produced.contains(s)), "the node has no block at some of {skipped:?}");
    let expected: Vec<u64> = produced.into_iter().filter(|s| !skipped.contains(s)).collect();
    let blocks = stored_blocks(&pool, &config.chain).await;
    let stored: Vec<u64> = blocks.iter().map(|b| b.0).filter(|s| (first..=last).contains(s)).collect();
    assert_eq!(stored, expected, "stored slots are not the node's blocks without {skipped:?}");
    for pair in blocks.windows(2) {
        let (before, block) = (&pair[0], &pair[1]);
        assert_eq!(block.2, Some(before.0), "slot {}: parent slot is not the previous stored block", block.0);
        assert_eq!(block.3, before.1, "slot {}: parent hash is not the previous stored block's", block.0);
    }

    let mut absent = 0;
    for tx in &manifest.transactions {
        let found = stored_tx(&pool, &config.chain, &tx.signature).await;
        if skipped.contains(&tx.slot) {
            assert!(
                found.is_empty(),
                "{} ({}) of skipped slot {} is stored: {found:?}",
                tx.label,
                tx.signature,
                tx.slot
            );
            absent += 1;
        } else {
            assert_eq!(found.len(), 1, "{} ({}) at slot {}: {found:?}", tx.label, tx.signature, tx.slot);
            assert_eq!(found[0].0, tx.slot, "{}", tx.label);
        }
    }
    assert!(absent >= 1, "no scenario transaction was in a skipped slot");
    for slot in &skipped {
        for table in ["transactions", "transfers", "instructions"] {
            assert_eq!(
                rows_at(&pool, table, &config.chain, *slot).await,
                0,
                "{table} rows at skipped slot {slot}"
            );
        }
    }
    let log = chainmux.log();
    assert!(error_lines(&log).is_empty(), "ERROR lines: {:#?}", error_lines(&log));
}

/// A node that lacks a slot (getBlocks leaves it out, but the next block still names it as its parent) does not make
/// the slot skipped: with another upstream that has it, it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_slot_is_stored_from_the_upstream_that_has_it() {
    let node = SolanaNode::start().await.expect("the local Solana node starts");
    let manifest = run_traffic(node.url(), 12).await.expect("the traffic scenario runs");
    let hidden = busy_slot(&manifest, 1);
    let lacking = FaultProxy::start(node.url()).await;
    lacking.set(Fault::HideSlot(hidden)).await;

    let db = TestDb::create().await;
    let config = solana_config(&db, &[("lacking", lacking.url.as_str()), ("surfnet", node.url())]);
    let mut chainmux = Chainmux::start(&config).await;
    chainmux.wait_indexed(manifest.last_slot).await;
    let pool = connect(&db.url).await;

    let (first, last) = (manifest.first_slot, manifest.last_slot);
    let produced = listed_slots(node.url(), first, last).await;
    let stored: Vec<u64> = stored_blocks(&pool, &config.chain)
        .await
        .iter()
        .map(|b| b.0)
        .filter(|s| (first..=last).contains(s))
        .collect();
    assert!(stored.contains(&hidden), "slot {hidden}, which one upstream lacks, is not stored");
    assert_eq!(stored, produced, "stored slots differ from the node's getBlocks");
    for tx in manifest.transactions.iter().filter(|tx| tx.slot == hidden) {
        let found = stored_tx(&pool, &config.chain, &tx.signature).await;
        assert_eq!(found.len(), 1, "{} ({}) of slot {hidden}: {found:?}", tx.label, tx.signature);
    }
}

/// With a single upstream lacking a slot, chainmux cannot prove the slot skipped: the index stops below it (saying
/// why) while the chain moves on, and goes on through the slot once the node serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_waits_at_a_slot_no_upstream_serves() {
    let node = SolanaNode::start().await.expect("the local Solana node starts");
    let manifest = run_traffic(node.url(), 13).await.expect("the traffic scenario runs");
    let hidden = busy_slot(&manifest, 1);
    let lacking = FaultProxy::start(node.url()).await;
    lacking.set(Fault::HideSlot(hidden)).await;

    let db = TestDb::create().await;
    let config = solana_config(&db, &[("lacking", lacking.url.as_str())]);
    let mut chainmux = Chainmux::start(&config).await;
    let pool = connect(&db.url).await;
    // The index reaches the batch holding the hidden slot and says why it cannot go on; then it stays below the
    // slot while the chain moves on.
    let says_why = |line: &str| {
        line.contains("WARN")
            && line.contains("unlisted parent slot")
            && line.contains(&format!("slot={hidden}"))
    };
    let started = Instant::now();
    let why = loop {
        if let Some(line) = chainmux.log().lines().find(|l| says_why(l)) {
            break line.to_owned();
        }
        assert!(
            started.elapsed() < WAIT,
            "no warning about slot {hidden} within {WAIT:?}:\n{}",
            chainmux.log()
        );
        tokio::time::sleep(common::POLL).await;
    };
    let chain_then = confirmed_slot(node.url()).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let cursor = common::cursor(&pool, &config.chain).await;
        assert!(
            cursor.is_none_or(|c| c < slot_i64(hidden)),
            "the index went past slot {hidden}, which no upstream serves: {cursor:?}; the log said: {why}"
        );
        tokio::time::sleep(common::POLL).await;
    }
    let chain_now = confirmed_slot(node.url()).await;
    assert!(chain_now >= chain_then + 8, "the chain did not move on: {chain_then} -> {chain_now}");
    let stored = stored_blocks(&pool, &config.chain).await;
    assert!(stored.iter().all(|b| b.0 < hidden), "blocks at or above {hidden} stored while it is missing");

    lacking.set(Fault::None).await;
    chainmux.wait_indexed(manifest.last_slot).await;
    let (first, last) = (manifest.first_slot, manifest.last_slot);
    let produced = listed_slots(node.url(), first, last).await;
    let stored: Vec<u64> = stored_blocks(&pool, &config.chain)
        .await
        .iter()
        .map(|b| b.0)
        .filter(|s| (first..=last).contains(s))
        .collect();
    assert_eq!(stored, produced, "stored slots differ from the node's getBlocks");
    for tx in &manifest.transactions {
        let found = stored_tx(&pool, &config.chain, &tx.signature).await;
        assert_eq!(found.len(), 1, "{} ({}) at slot {}: {found:?}", tx.label, tx.signature, tx.slot);
    }
}

/// A node, its traffic and chainmux indexing it through a proxy, with the index's cursor held exactly at a slot
/// holding scenario transactions, near enough to the tip that blocks a few slots below it are not finalized.
struct AtBusySlot {
    node: SolanaNode,
    manifest: TrafficManifest,
    proxy: FaultProxy,
    _db: TestDb,
    config: Config,
    chainmux: Chainmux,
    pool: sqlx::PgPool,
    /// The cursor: the slot of the scenario's last transaction that moved something.
    cursor: u64,
}

/// Indexes the node's chain to its head through a [`Fault::SolanaView`] on branch 0 (the chain as it is), then
/// holds the proxy's view at the head ([`Fault::StuckSlot`]) while the traffic runs, and lets the index go on to
/// exactly the slot of the last transaction that moved something. Holding the view is what makes the cursor a known
/// slot when the test switches branches; releasing it right after the traffic keeps that slot above finality.
async fn indexed_to_a_busy_slot(seed: u64) -> AtBusySlot {
    let node = SolanaNode::start().await.expect("the local Solana node starts");
    let proxy = FaultProxy::start(node.url()).await;
    proxy.set(Fault::SolanaView { branch: 0, from_slot: u64::MAX, skipped: BTreeSet::new() }).await;
    let db = TestDb::create().await;
    let config = solana_config(&db, &[("view", proxy.url.as_str())]);
    let mut chainmux = Chainmux::start(&config).await;
    let pool = connect(&db.url).await;
    let head = confirmed_slot(node.url()).await;
    chainmux.wait_indexed(head).await;

    let held = confirmed_slot(node.url()).await;
    proxy.set(Fault::StuckSlot(held)).await;
    let manifest = run_traffic(node.url(), seed).await.expect("the traffic scenario runs");
    let cursor = manifest
        .transactions
        .iter()
        .filter(|tx| tx.success && !tx.transfers.is_empty())
        .map(|tx| tx.slot)
        .max()
        .expect("the scenario moved something");
    assert!(cursor > held, "the traffic ran in slots the index had already passed ({cursor} <= {held})");
    proxy.set(Fault::StuckSlot(cursor)).await;
    wait_cursor(&mut chainmux, &pool, "the cursor at the busy slot", |c| c == cursor).await;
    AtBusySlot { node, manifest, proxy, _db: db, config, chainmux, pool, cursor }
}

/// Fails unless blocks from `fork_from` on are above the node's finalized slot, which a fork test needs.
async fn assert_not_final(node: &SolanaNode, fork_from: u64) {
    let finalized = finalized_slot(node.url()).await;
    assert!(
        finalized + 2 < fork_from,
        "too slow: the node finalized slot {finalized}, the fork from {fork_from} would roll back finalized blocks \
         (finalized trails confirmed by {FINALITY_LAG})"
    );
}

/// The `reorg: rolled back` line chainmux logged, waiting for it.
async fn rolled_back_line(chainmux: &mut Chainmux) -> String {
    chainmux.wait_for_log("reorg: rolled back", WAIT).await
}

/// Checks that every stored block from `from` on has the hash the proxy now serves for its slot, which is the
/// node's own hash re-hashed on `branch` (so not the node's), and that blocks below `from` kept the node's hash.
async fn assert_branch_hashes(at: &AtBusySlot, branch: u64, from: u64) {
    let blocks = stored_blocks(&at.pool, &at.config.chain).await;
    let mut rehashed = 0;
    for (number, hash, _, _) in blocks.iter().filter(|b| b.0 + 3 >= from) {
        let original = served_hash(at.node.url(), *number).await;
        if *number >= from {
            assert_eq!(
                *hash,
                served_hash(&at.proxy.url, *number).await,
                "slot {number}: not the served hash"
            );
            assert_eq!(
                *hash,
                Fault::branch_hash(&original, branch),
                "slot {number}: not branch {branch}'s hash"
            );
            assert_ne!(*hash, original, "slot {number} still has the old branch's hash");
            rehashed += 1;
        } else {
            assert_eq!(*hash, original, "slot {number}, below the fork, changed hash");
        }
    }
    assert!(rehashed >= 10, "only {rehashed} blocks of branch {branch} stored");
    for pair in blocks.windows(2) {
        let (before, block) = (&pair[0], &pair[1]);
        assert_eq!(block.2, Some(before.0), "slot {}: parent slot is not the previous stored block", block.0);
        assert_eq!(block.3, before.1, "slot {}: parent hash is not the previous stored block's", block.0);
    }
}

/// A fork that orphans the indexed head: on the new branch the blocks from five slots below the cursor have other
/// hashes and the cursor's own slot is skipped. chainmux rolls back to the common ancestor, removes every row of
/// the orphaned blocks and indexes the new branch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_that_skips_the_indexed_head_is_rolled_back() {
    let mut at = indexed_to_a_busy_slot(21).await;
    let (chain, c) = (at.config.chain.clone(), at.cursor);
    for table in ["transactions", "transfers", "instructions"] {
        assert!(rows_at(&at.pool, table, &chain, c).await > 0, "no {table} at slot {c} to orphan");
    }
    let orphaned: Vec<&str> =
        at.manifest.transactions.iter().filter(|tx| tx.slot == c).map(|tx| tx.signature.as_str()).collect();
    let replayed: Vec<&str> = at
        .manifest
        .transactions
        .iter()
        .filter(|tx| (c - 5..c).contains(&tx.slot))
        .map(|tx| tx.signature.as_str())
        .collect();
    assert!(!replayed.is_empty(), "no scenario transaction in the 5 slots below {c}");

    assert_not_final(&at.node, c - 5).await;
    at.proxy.set(Fault::SolanaView { branch: 1, from_slot: c - 5, skipped: BTreeSet::from([c]) }).await;
    at.chainmux.wait_indexed(c + 11).await;

    let line = rolled_back_line(&mut at.chainmux).await;
    assert!(line.contains(&format!("from={c} ")) && line.contains(&format!("to={} ", c - 6)), "{line}");
    let reorgs = at.chainmux.metric("chainmux_indexer_reorgs_total", &[("chain", chain.as_str())]).await;
    assert!(reorgs.is_some_and(|n| n >= 1.0), "chainmux_indexer_reorgs_total is {reorgs:?}");
    assert_branch_hashes(&at, 1, c - 5).await;
    let stored = stored_blocks(&at.pool, &chain).await;
    assert!(stored.iter().all(|b| b.0 != c), "slot {c}, skipped on the new branch, is still stored");
    for table in ["transactions", "transfers", "instructions"] {
        assert_eq!(rows_at(&at.pool, table, &chain, c).await, 0, "{table} rows of orphaned slot {c}");
    }
    for signature in orphaned {
        let found = stored_tx(&at.pool, &chain, signature).await;
        assert!(found.is_empty(), "{signature} of orphaned slot {c} is stored: {found:?}");
    }
    // The transactions of the re-hashed blocks below the cursor are stored once, in their new blocks.
    for signature in replayed {
        let found = stored_tx(&at.pool, &chain, signature).await;
        assert_eq!(found.len(), 1, "{signature}: {found:?}");
        let (slot, hash) = &found[0];
        assert_eq!(
            *hash,
            served_hash(&at.proxy.url, *slot).await,
            "{signature} is not in slot {slot}'s new block"
        );
    }
    let log = at.chainmux.log();
    assert!(error_lines(&log).is_empty(), "ERROR lines: {:#?}", error_lines(&log));
}

/// A fork that only changes the hashes of the last few blocks (no slot skipped): chainmux rolls back to the block
/// below them and indexes them again, with the same transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_that_changes_hashes_is_rolled_back() {
    let mut at = indexed_to_a_busy_slot(22).await;
    let (chain, c) = (at.config.chain.clone(), at.cursor);

    assert_not_final(&at.node, c - 3).await;
    at.proxy.set(Fault::SolanaView { branch: 2, from_slot: c - 3, skipped: BTreeSet::new() }).await;
    at.chainmux.wait_indexed(c + 11).await;

    let line = rolled_back_line(&mut at.chainmux).await;
    assert!(line.contains(&format!("from={c} ")) && line.contains(&format!("to={} ", c - 4)), "{line}");
    let reorgs = at.chainmux.metric("chainmux_indexer_reorgs_total", &[("chain", chain.as_str())]).await;
    assert!(reorgs.is_some_and(|n| n >= 1.0), "chainmux_indexer_reorgs_total is {reorgs:?}");
    assert_branch_hashes(&at, 2, c - 3).await;
    for tx in &at.manifest.transactions {
        let found = stored_tx(&at.pool, &chain, &tx.signature).await;
        assert_eq!(found.len(), 1, "{} ({}): {found:?}", tx.label, tx.signature);
        let (slot, hash) = &found[0];
        assert_eq!(*slot, tx.slot, "{}", tx.label);
        if *slot >= c - 3 {
            assert_eq!(
                *hash,
                served_hash(&at.proxy.url, *slot).await,
                "{} is not in its new block",
                tx.label
            );
        }
    }
    let log = at.chainmux.log();
    assert!(error_lines(&log).is_empty(), "ERROR lines: {:#?}", error_lines(&log));
}
