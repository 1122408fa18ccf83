//! End-to-end tests of a Solana chain: a real local Solana JSON-RPC node (surfpool, see `crates/testkit/solana-node`),
//! a known scenario of SOL, SPL Token and Token-2022 transfers sent to it with the Solana SDK, the `chainmux` binary
//! indexing it into a real PostgreSQL server, and every row compared with what was sent and with what the node
//! itself reports.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chainmux_testkit::solana::{SolanaNode, TrafficManifest, TrafficTransfer, run_traffic};
use chainmux_testkit::{Fault, FaultProxy, TestDb};
use common::{Chainmux, Config, collect_pages, connect, node_rpc};
use serde_json::{Value, json};
use sqlx::Row;

const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_2022_PROGRAM: &str = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";

fn b58(bytes: &[u8]) -> String {
    bs58::encode(bytes).into_string()
}

/// A `transfers` row as the test compares it with the manifest: base58 text, amounts as decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Moved {
    standard: String,
    token: Option<String>,
    from: String,
    to: String,
    from_owner: Option<String>,
    to_owner: Option<String>,
    amount: String,
    decimals: Option<u8>,
}

impl From<&TrafficTransfer> for Moved {
    fn from(t: &TrafficTransfer) -> Self {
        Moved {
            standard: t.standard.clone(),
            token: t.token.clone(),
            from: t.from.clone(),
            to: t.to.clone(),
            from_owner: t.from_owner.clone(),
            to_owner: t.to_owner.clone(),
            amount: t.amount.clone(),
            decimals: t.decimals,
        }
    }
}

/// Every stored transfer, by transaction signature.
async fn transfers_by_tx(pool: &sqlx::PgPool, chain: &str) -> BTreeMap<String, Vec<Moved>> {
    let rows = sqlx::query(
        "SELECT tx_hash, standard, token, from_address, to_address, from_owner, to_owner, amount::text AS amount, \
         decimals FROM transfers WHERE chain = $1 ORDER BY block_number, log_index, batch_index",
    )
    .bind(chain)
    .fetch_all(pool)
    .await
    .expect("transfers");
    let mut by_tx: BTreeMap<String, Vec<Moved>> = BTreeMap::new();
    for row in rows {
        let opt = |name: &str| row.get::<Option<Vec<u8>>, _>(name).map(|b| b58(&b));
        let moved = Moved {
            standard: row.get("standard"),
            token: opt("token"),
            from: b58(&row.get::<Vec<u8>, _>("from_address")),
            to: b58(&row.get::<Vec<u8>, _>("to_address")),
            from_owner: opt("from_owner"),
            to_owner: opt("to_owner"),
            amount: row.get("amount"),
            decimals: row.get::<Option<i16>, _>("decimals").map(|d| u8::try_from(d).expect("decimals")),
        };
        by_tx.entry(b58(&row.get::<Vec<u8>, _>("tx_hash"))).or_default().push(moved);
    }
    by_tx
}

/// The token accounts in a transaction's `preTokenBalances` and `postTokenBalances`, as the node reports them.
async fn token_balance_accounts(url: &str, signature: &str) -> BTreeSet<String> {
    let config = json!({"encoding": "json", "maxSupportedTransactionVersion": 0, "commitment": "confirmed"});
    let tx = node_rpc(url, "getTransaction", json!([signature, config])).await;
    let keys: Vec<String> =
        serde_json::from_value(tx["transaction"]["message"]["accountKeys"].clone()).expect("accountKeys");
    ["preTokenBalances", "postTokenBalances"]
        .iter()
        .flat_map(|list| tx["meta"][list].as_array().cloned().unwrap_or_default())
        .filter_map(|balance| balance["accountIndex"].as_u64().and_then(|i| keys.get(i as usize).cloned()))
        .collect()
}

/// Checks the stored transfers against the manifest: every transfer a successful transaction made is stored
/// exactly once with the same fields, a failed transaction has none, and the only extras are the lamports
/// `createAccount` moved into the accounts the scenario created (the manifest lists System `transfer`s only).
/// Returns how many manifest transfers were matched.
async fn check_transfers(
    node_url: &str,
    manifest: &TrafficManifest,
    stored: &BTreeMap<String, Vec<Moved>>,
) -> usize {
    let created: BTreeSet<&str> = manifest
        .mints
        .iter()
        .map(|m| m.mint.as_str())
        .chain(manifest.token_accounts.iter().map(|a| a.address.as_str()))
        .collect();
    let mut checked = 0;
    for tx in &manifest.transactions {
        let mut got: Vec<Moved> = stored.get(&tx.signature).cloned().unwrap_or_default();
        let mut want: Vec<Moved> = if tx.success {
            tx.transfers.iter().chain(&tx.inner_transfers).map(Moved::from).collect()
        } else {
            Vec::new()
        };
        // Owners come from the transaction's token balances. The test node leaves a token account closed in the
        // same transaction out of them (a real node lists it in `preTokenBalances`), so its owner is unknown.
        let listed = token_balance_accounts(node_url, &tx.signature).await;
        for moved in want.iter_mut().filter(|m| m.standard == "spl") {
            if !listed.contains(&moved.from) {
                moved.from_owner = None;
            }
            if !listed.contains(&moved.to) {
                moved.to_owner = None;
            }
        }
        for expected in &want {
            let found = got.iter().position(|g| g == expected).unwrap_or_else(|| {
                panic!("{} ({}): {expected:?} not stored; stored: {got:?}", tx.label, tx.signature)
            });
            got.remove(found);
        }
        for extra in &got {
            assert!(
                extra.standard == "sol" && created.contains(extra.to.as_str()) && tx.success,
                "{} ({}): unexpected transfer {extra:?}",
                tx.label,
                tx.signature
            );
        }
        checked += want.len();
    }
    let sent: BTreeSet<&str> = manifest.transactions.iter().map(|t| t.signature.as_str()).collect();
    let unknown: Vec<&String> = stored.keys().filter(|s| !sent.contains(s.as_str())).collect();
    assert!(unknown.is_empty(), "transfers of transactions the scenario did not send: {unknown:?}");
    checked
}

async fn scenario() -> (SolanaNode, TrafficManifest) {
    let node = SolanaNode::start().await.expect("the local Solana node starts");
    let manifest = run_traffic(node.url(), 7).await.expect("the traffic scenario runs");
    (node, manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solana_traffic_is_indexed_exactly() {
    let (node, manifest) = scenario().await;
    let db = TestDb::create().await;
    let mut config = Config::solana(&db.url, &[("surfnet", node.url())]);
    config.programs = vec![("token".into(), TOKEN_PROGRAM.into())];
    let mut chainmux = Chainmux::start(&config).await;
    chainmux.wait_indexed(manifest.last_slot).await;
    let pool = connect(&db.url).await;

    // Transactions: every one the scenario sent, with its outcome and fee.
    for tx in &manifest.transactions {
        let signature = bs58::decode(&tx.signature).into_vec().expect("signature");
        let row = sqlx::query(
            "SELECT block_number, status, fee::text AS fee, from_address, error FROM transactions \
             WHERE chain = $1 AND hash = $2",
        )
        .bind(&config.chain)
        .bind(&signature)
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|err| panic!("transaction {} ({}): {err}", tx.label, tx.signature));
        assert_eq!(row.get::<i64, _>("block_number"), i64::try_from(tx.slot).expect("slot"), "{}", tx.label);
        assert_eq!(row.get::<Option<bool>, _>("status"), Some(tx.success), "{}", tx.label);
        assert_eq!(row.get::<Option<String>, _>("fee"), Some(tx.fee.to_string()), "{}", tx.label);
        assert_eq!(b58(&row.get::<Vec<u8>, _>("from_address")), tx.fee_payer, "{}", tx.label);
        assert_eq!(row.get::<Option<String>, _>("error").is_some(), !tx.success, "{}", tx.label);
    }

    // Transfers: exactly what each transaction moved, top-level and inner; nothing for a failed one.
    let stored = transfers_by_tx(&pool, &config.chain).await;
    let checked = check_transfers(node.url(), &manifest, &stored).await;
    assert!(checked >= 10, "the scenario moved too little to prove anything: {checked} transfers");

    // Blocks: every slot the node has a block for is stored, with its parent slot; nothing else.
    let first = manifest.first_slot;
    let last = manifest.last_slot;
    let produced: Vec<u64> = serde_json::from_value(
        node_rpc(node.url(), "getBlocks", json!([first, last, {"commitment": "confirmed"}])).await,
    )
    .expect("getBlocks");
    let rows = sqlx::query(
        "SELECT number, parent_number, height FROM blocks WHERE chain = $1 AND number BETWEEN $2 AND $3 \
         ORDER BY number",
    )
    .bind(&config.chain)
    .bind(i64::try_from(first).expect("slot"))
    .bind(i64::try_from(last).expect("slot"))
    .fetch_all(&pool)
    .await
    .expect("blocks");
    let stored_slots: Vec<u64> =
        rows.iter().map(|r| u64::try_from(r.get::<i64, _>("number")).expect("slot")).collect();
    let produced: Vec<u64> = produced.into_iter().filter(|s| (first..=last).contains(s)).collect();
    assert_eq!(stored_slots, produced, "stored slots differ from the node's getBlocks");
    for row in &rows {
        let number: i64 = row.get("number");
        assert!(row.get::<Option<i64>, _>("parent_number").is_some_and(|p| p < number), "slot {number}");
        assert!(row.get::<Option<i64>, _>("height").is_some(), "slot {number} has no block height");
    }

    // Instructions of the listed program (SPL Token), none of Token-2022 (not listed).
    let programs: Vec<String> =
        sqlx::query_scalar::<_, Vec<u8>>("SELECT DISTINCT program FROM instructions WHERE chain = $1")
            .bind(&config.chain)
            .fetch_all(&pool)
            .await
            .expect("instructions")
            .iter()
            .map(|p| b58(p))
            .collect();
    assert_eq!(programs, vec![TOKEN_PROGRAM.to_owned()]);
    let token_txs = manifest
        .transactions
        .iter()
        .filter(|tx| tx.transfers.iter().chain(&tx.inner_transfers).any(|t| t.program == TOKEN_PROGRAM))
        .count();
    let instruction_txs: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT tx_hash) FROM instructions WHERE chain = $1 AND stack_height >= 1",
    )
    .bind(&config.chain)
    .fetch_one(&pool)
    .await
    .expect("instructions");
    assert!(
        usize::try_from(instruction_txs).expect("count") >= token_txs,
        "{instruction_txs} transactions with SPL Token instructions, expected at least {token_txs}"
    );
    let _ = TOKEN_2022_PROGRAM;

    // The API: base58 throughout, and a wallet's transfers include those of its token accounts.
    let owner_of_token_accounts: BTreeSet<&str> =
        manifest.token_accounts.iter().map(|a| a.owner.as_str()).collect();
    let wallet = *owner_of_token_accounts.iter().next().expect("a token account owner");
    let (items, _) =
        collect_pages(&chainmux, &format!("/v1/chains/{}/transfers?address={wallet}", config.chain), 5).await;
    let spl_by_owner: Vec<&Value> = items
        .iter()
        .filter(|i| i["standard"] == "spl" && (i["from_owner"] == wallet || i["to_owner"] == wallet))
        .collect();
    let expected_by_owner = manifest
        .transactions
        .iter()
        .filter(|tx| tx.success)
        .flat_map(|tx| tx.transfers.iter().chain(&tx.inner_transfers))
        .filter(|t| {
            t.standard == "spl"
                && (t.from_owner.as_deref() == Some(wallet) || t.to_owner.as_deref() == Some(wallet))
        })
        .count();
    assert!(expected_by_owner > 0, "the scenario gives {wallet} no SPL transfers");
    assert_eq!(spl_by_owner.len(), expected_by_owner, "SPL transfers found by owner {wallet}: {items:?}");
    for item in &items {
        assert!(matches!(item["finality"].as_str(), Some("confirmed" | "finalized")), "{item}");
        let tx_hash = item["tx_hash"].as_str().expect("tx_hash");
        assert_eq!(bs58::decode(tx_hash).into_vec().expect("base58 signature").len(), 64, "{item}");
    }
    // Instructions say whether their transaction succeeded: the failed SPL transfer's are kept, marked failed.
    let failed =
        manifest.transactions.iter().find(|t| !t.success).expect("the scenario has a failed transaction");
    let failed_items = chainmux
        .get_json(&format!("/v1/chains/{}/instructions?tx_hash={}", config.chain, failed.signature))
        .await;
    let failed_items = failed_items["items"].as_array().expect("items");
    assert!(!failed_items.is_empty(), "no instructions of {} ({})", failed.label, failed.signature);
    assert!(failed_items.iter().all(|i| i["tx_success"] == false), "{failed_items:?}");
    let good = manifest
        .transactions
        .iter()
        .find(|t| t.success && t.transfers.iter().any(|x| x.program == TOKEN_PROGRAM));
    let good = good.expect("a successful SPL Token transaction");
    let good_items = chainmux
        .get_json(&format!("/v1/chains/{}/instructions?tx_hash={}", config.chain, good.signature))
        .await;
    let good_items = good_items["items"].as_array().expect("items");
    assert!(!good_items.is_empty() && good_items.iter().all(|i| i["tx_success"] == true), "{good_items:?}");

    let tx = &manifest.transactions[0];
    let view = chainmux.get_json(&format!("/v1/chains/{}/transactions/{}", config.chain, tx.signature)).await;
    assert_eq!(view["signature"], tx.signature.as_str(), "{view}");
    assert_eq!(view["fee_payer"], tx.fee_payer.as_str(), "{view}");

    // `/v1/chains` shows heads per commitment.
    let chain = chainmux.chain_view().await;
    let heads = &chain["heads"];
    let confirmed = heads["confirmed"].as_u64().unwrap_or_else(|| panic!("no confirmed head: {chain}"));
    let finalized = heads["finalized"].as_u64().unwrap_or_else(|| panic!("no finalized head: {chain}"));
    assert!(finalized <= confirmed, "{chain}");
    drop(node);
}

/// One upstream cannot serve blocks (every `getBlock` answers -32004 "not available"): the other one serves them,
/// and no slot is recorded as skipped because of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_one_upstream_cannot_serve_is_not_skipped() {
    let (node, manifest) = scenario().await;
    let unavailable = FaultProxy::start(node.url()).await;
    unavailable
        .set(Fault::RpcErrorFor {
            method: "getBlock".into(),
            code: -32004,
            message: "Block not available for slot".into(),
        })
        .await;
    let db = TestDb::create().await;
    let config =
        Config::solana(&db.url, &[("unavailable", unavailable.url.as_str()), ("surfnet", node.url())]);
    let mut chainmux = Chainmux::start(&config).await;
    chainmux.wait_indexed(manifest.last_slot).await;
    let pool = connect(&db.url).await;
    let produced: Vec<u64> = serde_json::from_value(
        node_rpc(
            node.url(),
            "getBlocks",
            json!([manifest.first_slot, manifest.last_slot, {"commitment": "confirmed"}]),
        )
        .await,
    )
    .expect("getBlocks");
    let stored: Vec<i64> = sqlx::query_scalar(
        "SELECT number FROM blocks WHERE chain = $1 AND number BETWEEN $2 AND $3 ORDER BY number",
    )
    .bind(&config.chain)
    .bind(i64::try_from(manifest.first_slot).expect("slot"))
    .bind(i64::try_from(manifest.last_slot).expect("slot"))
    .fetch_all(&pool)
    .await
    .expect("blocks");
    let produced: Vec<i64> = produced
        .into_iter()
        .filter(|s| (manifest.first_slot..=manifest.last_slot).contains(s))
        .map(|s| i64::try_from(s).expect("slot"))
        .collect();
    assert_eq!(stored, produced, "a slot went missing although one upstream could serve it");
    let stored_txs: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions WHERE chain = $1")
        .bind(&config.chain)
        .fetch_one(&pool)
        .await
        .expect("transactions");
    assert!(usize::try_from(stored_txs).expect("count") >= manifest.transactions.len());
}

/// An upstream stuck at an old slot is excluded for lag and the index follows the live one; `getBlock` errors
/// in the middle of ranges (every third call fails) only slow the indexer down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_upstream_and_flaky_get_block() {
    let (node, manifest) = scenario().await;
    let stuck = FaultProxy::start(node.url()).await;
    stuck.set(Fault::StuckSlot(manifest.first_slot.saturating_sub(5))).await;
    let flaky = FaultProxy::start(node.url()).await;
    flaky
        .set(Fault::EveryNth {
            n: 3,
            method: "getBlock".into(),
            code: -32603,
            message: "internal error".into(),
        })
        .await;
    let db = TestDb::create().await;
    let mut config = Config::solana(
        &db.url,
        &[("stuck", stuck.url.as_str()), ("flaky", flaky.url.as_str()), ("surfnet", node.url())],
    );
    config.rpc_key("max_lag_blocks", 10);
    // Keep the flaky upstream in rotation (its breaker would otherwise take it out after a few errors), so its
    // failures keep hitting the indexer's fetches.
    config.rpc_key("breaker_failures", 1000);
    let mut chainmux = Chainmux::start(&config).await;
    chainmux.wait_indexed(manifest.last_slot).await;
    let chain = chainmux.chain_view().await;
    let upstreams = chain["upstreams"].as_array().expect("upstreams");
    let stuck_view = upstreams.iter().find(|u| u["name"] == "stuck").expect("stuck upstream");
    assert_eq!(stuck_view["state"], "excluded", "{chain}");
    assert!(stuck_view["reason"].as_str().is_some_and(|r| r.contains("lagging")), "{chain}");
    let pool = connect(&db.url).await;
    let stored = transfers_by_tx(&pool, &config.chain).await;
    check_transfers(node.url(), &manifest, &stored).await;
}

/// Upstreams must serve the configured cluster: one answering another genesis hash is excluded with the reason, and
/// the chain is indexed from the one that matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_of_another_cluster_is_excluded() {
    let (node, manifest) = scenario().await;
    let other = SolanaNode::start().await.expect("a second Solana node starts");
    let genesis = node_rpc(node.url(), "getGenesisHash", json!([])).await;
    let genesis = genesis.as_str().expect("genesis hash").to_owned();
    assert_eq!(genesis, manifest.genesis_hash);
    let db = TestDb::create().await;
    let mut config = Config::solana(&db.url, &[("other", other.url()), ("surfnet", node.url())]);
    config.genesis_hash = Some(genesis.clone());
    let mut chainmux = Chainmux::start(&config).await;
    chainmux.wait_indexed(manifest.last_slot).await;
    let chain = chainmux.chain_view().await;
    let upstreams = chain["upstreams"].as_array().expect("upstreams");
    let other_view = upstreams.iter().find(|u| u["name"] == "other").expect("other upstream");
    assert_eq!(other_view["state"], "excluded", "{chain}");
    let reason = other_view["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("wrong genesis hash") && reason.contains(&genesis), "{chain}");
    let surfnet = upstreams.iter().find(|u| u["name"] == "surfnet").expect("surfnet upstream");
    assert_eq!(surfnet["state"], "healthy", "{chain}");
}

/// SIGKILL in the middle of the backfill, then a restart: the index resumes from its cursor and every row is
/// stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_indexer_resumes_exactly_once() {
    let (node, manifest) = scenario().await;
    let db = TestDb::create().await;
    let mut config = Config::solana(&db.url, &[("surfnet", node.url())]);
    config.batch_size = 3;
    let mut first = Chainmux::start(&config).await;
    let midway = manifest.first_slot + (manifest.last_slot - manifest.first_slot) / 2;
    first.wait_indexed(midway).await;
    first.kill();
    let pool = connect(&db.url).await;
    let cursor_after_kill = common::cursor(&pool, &config.chain).await.expect("a cursor");
    assert!(
        cursor_after_kill < i64::try_from(manifest.last_slot).expect("slot"),
        "killed too late to prove anything"
    );

    let mut second = Chainmux::start(&config).await;
    second.wait_indexed(manifest.last_slot).await;
    let stored = transfers_by_tx(&pool, &config.chain).await;
    check_transfers(node.url(), &manifest, &stored).await;
    let duplicates: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT hash FROM transactions WHERE chain = $1 GROUP BY hash HAVING count(*) > 1) d",
    )
    .bind(&config.chain)
    .fetch_one(&pool)
    .await
    .expect("duplicates");
    assert_eq!(duplicates, 0, "a transaction was stored twice");
}

/// A node whose `getHealth` says it is behind is excluded with its own words, and traffic goes elsewhere; once it
/// reports healthy again it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_node_is_excluded_until_it_recovers() {
    let (node, manifest) = scenario().await;
    let behind = FaultProxy::start(node.url()).await;
    behind
        .set(Fault::RpcErrorFor {
            method: "getHealth".into(),
            code: -32005,
            message: "Node is behind by 42 slots".into(),
        })
        .await;
    let db = TestDb::create().await;
    let config = Config::solana(&db.url, &[("behind", behind.url.as_str()), ("surfnet", node.url())]);
    let mut chainmux = Chainmux::start(&config).await;
    let upstream_view = |base: String| async move {
        let chains = common::json_get(&format!("{base}/v1/chains")).await;
        let chain = chains["chains"].as_array()?.iter().find(|c| c["name"] == "solana-local")?.clone();
        chain["upstreams"].as_array()?.iter().find(|u| u["name"] == "behind").cloned()
    };
    let base = chainmux.base.clone();
    let view = chainmux
        .wait_for("the behind upstream excluded", common::INDEX_TIMEOUT, || {
            let view = upstream_view(base.clone());
            async move { view.await.filter(|u| u["state"] == "excluded") }
        })
        .await;
    assert_eq!(view["reason"], "unhealthy: Node is behind by 42 slots", "{view}");

    // Excluded, it gets no blocks to fetch although it is first in the configured order.
    let asked = behind.received("getBlock");
    chainmux.wait_indexed(manifest.last_slot + 20).await;
    assert_eq!(behind.received("getBlock"), asked, "an excluded upstream was asked for blocks");

    behind.set(Fault::None).await;
    chainmux
        .wait_for("the behind upstream back", common::INDEX_TIMEOUT, || {
            let view = upstream_view(base.clone());
            async move { view.await.filter(|u| u["state"] == "healthy").map(|_| ()) }
        })
        .await;
}
