//! The local Solana node and its traffic generator: the manifest must describe what is on chain.
//!
//! Needs `scripts/ensure-solana-node.sh` to have built the binaries (CI does); fails, not
//! skips, when they are missing.

use std::collections::HashMap;

use chainmux_testkit::Eth;
use chainmux_testkit::solana::{SolanaNode, TrafficManifest, TrafficTx, run_traffic};
use serde_json::{Value, json};

const ZERO: &str = "11111111111111111111111111111111";
const SYSTEM: &str = "11111111111111111111111111111111";
const TOKEN: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_2022: &str = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";

async fn get_transaction(rpc: &Eth, signature: &str) -> Value {
    rpc.request(
        "getTransaction",
        json!([signature, {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}]),
    )
    .await
}

fn account_keys(tx: &Value) -> Vec<String> {
    tx["transaction"]["message"]["accountKeys"]
        .as_array()
        .expect("accountKeys")
        .iter()
        .map(|k| k.as_str().expect("base58 key").to_owned())
        .collect()
}

/// Token-account address -> raw amount, from `preTokenBalances`/`postTokenBalances`.
fn token_balances(tx: &Value, field: &str) -> HashMap<String, i128> {
    let keys = account_keys(tx);
    tx["meta"][field]
        .as_array()
        .map(|balances| {
            balances
                .iter()
                .map(|b| {
                    let index = b["accountIndex"].as_u64().expect("accountIndex") as usize;
                    let amount =
                        b["uiTokenAmount"]["amount"].as_str().expect("amount").parse().expect("number");
                    (keys[index].clone(), amount)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Net token movement per token account that the manifest claims (top-level + inner).
fn claimed_token_deltas(tx: &TrafficTx) -> HashMap<String, i128> {
    let mut deltas = HashMap::new();
    for t in tx.transfers.iter().chain(&tx.inner_transfers).filter(|t| t.standard == "spl") {
        let amount = t.amount_u128().expect("amount") as i128;
        if t.from != ZERO {
            *deltas.entry(t.from.clone()).or_default() -= amount;
        }
        if t.to != ZERO {
            *deltas.entry(t.to.clone()).or_default() += amount;
        }
    }
    deltas.retain(|_, d| *d != 0);
    deltas
}

fn lamport_deltas(tx: &Value) -> HashMap<String, i128> {
    let keys = account_keys(tx);
    let pre = tx["meta"]["preBalances"].as_array().expect("preBalances");
    let post = tx["meta"]["postBalances"].as_array().expect("postBalances");
    keys.into_iter()
        .zip(pre.iter().zip(post))
        .map(|(k, (a, b))| (k, b.as_i64().expect("lamports") as i128 - a.as_i64().expect("lamports") as i128))
        .filter(|(_, d)| *d != 0)
        .collect()
}

fn post_lamports(tx: &Value) -> HashMap<String, u64> {
    let post = tx["meta"]["postBalances"].as_array().expect("postBalances");
    account_keys(tx).into_iter().zip(post).map(|(k, v)| (k, v.as_u64().expect("lamports"))).collect()
}

fn check_manifest_shape(m: &TrafficManifest) {
    assert_eq!(m.seed, 7);
    assert!(m.first_slot > 0 && m.first_slot <= m.last_slot, "slots {}..{}", m.first_slot, m.last_slot);
    for role in ["payer", "a", "b", "faucet"] {
        let address = m.wallet(role).unwrap_or_else(|| panic!("wallet {role}"));
        assert_eq!(bs58_len(address), 32, "{role} {address}");
    }
    let labels: Vec<_> = m.mints.iter().map(|x| (x.label.as_str(), x.program.as_str(), x.decimals)).collect();
    assert_eq!(labels, [("spl-token", TOKEN, 6), ("token-2022", TOKEN_2022, 9)]);
    // A and B on both mints, plus the nested account for the CPI transfer.
    assert_eq!(m.token_accounts.len(), 5, "{:?}", m.token_accounts);
    let failed: Vec<_> = m.transactions.iter().filter(|t| !t.success).collect();
    assert_eq!(failed.len(), 1, "exactly one failed transaction: {failed:?}");
    assert!(failed[0].error.is_object(), "the failed tx has an error: {:?}", failed[0].error);
    let mut previous_slot = 0;
    for tx in &m.transactions {
        assert_eq!(bs58_len(&tx.signature), 64, "{}", tx.label);
        assert!((m.first_slot..=m.last_slot).contains(&tx.slot), "{}: slot {}", tx.label, tx.slot);
        assert!(tx.slot >= previous_slot, "{}: sent one after another, slots never go back", tx.label);
        previous_slot = tx.slot;
        assert!(tx.fee > 0 || tx.label.starts_with("airdrop"), "{}: fee {}", tx.label, tx.fee);
        assert_eq!(tx.success, tx.error.is_null(), "{}", tx.label);
    }
    // Top-level transfers of every kind: SOL (with two in one tx), mintTo, transfer,
    // transferChecked, burn for both token programs.
    let all: Vec<_> = m.transactions.iter().flat_map(|t| &t.transfers).collect();
    assert!(all.iter().filter(|t| t.standard == "sol" && t.program == SYSTEM).count() >= 6);
    assert!(m.transactions.iter().any(|t| t.transfers.len() == 2));
    for program in [TOKEN, TOKEN_2022] {
        let spl: Vec<_> = all.iter().filter(|t| t.program == program).collect();
        assert!(spl.iter().any(|t| t.from == ZERO && t.from_owner.is_none()), "{program}: a mint");
        assert!(spl.iter().any(|t| t.to == ZERO && t.to_owner.is_none()), "{program}: a burn");
        assert!(spl.iter().all(|t| t.token.is_some() && t.decimals.is_some()), "{program}: {spl:?}");
    }
    let inner: Vec<_> = m.transactions.iter().flat_map(|t| &t.inner_transfers).collect();
    assert!(inner.iter().any(|t| t.standard == "spl"), "an inner (CPI) token transfer");
    assert!(inner.iter().any(|t| t.standard == "sol"), "an inner SOL transfer");
    // Not every transaction is paid by the same wallet.
    assert!(m.transactions.iter().any(|t| Some(t.fee_payer.as_str()) == m.wallet("a")));
}

fn bs58_len(s: &str) -> usize {
    bs58::decode(s).into_vec().map(|v| v.len()).unwrap_or(0)
}

#[tokio::test]
async fn traffic_manifest_matches_the_chain() {
    let node = SolanaNode::start().await.expect("start the node");
    let rpc = Eth::new(node.url());
    assert_eq!(rpc.request("getHealth", json!([])).await, json!("ok"));

    let manifest = match run_traffic(node.url(), 7).await {
        Ok(m) => m,
        Err(err) => panic!("{err:#}\nnode stderr:\n{}", node.stderr()),
    };
    check_manifest_shape(&manifest);
    assert_eq!(rpc.request("getGenesisHash", json!([])).await, json!(manifest.genesis_hash));

    for tx in &manifest.transactions {
        let label = &tx.label;
        let got = get_transaction(&rpc, &tx.signature).await;
        assert!(!got.is_null(), "{label}: getTransaction {} is null", tx.signature);
        assert_eq!(got["slot"].as_u64(), Some(tx.slot), "{label}");
        assert_eq!(got["meta"]["err"].is_null(), tx.success, "{label}: {}", got["meta"]["err"]);
        assert_eq!(got["meta"]["fee"].as_u64(), Some(tx.fee), "{label}");
        assert_eq!(account_keys(&got)[0], tx.fee_payer, "{label}");

        // Token balances move exactly as the manifest's SPL transfers say (nothing on failure).
        let pre = token_balances(&got, "preTokenBalances");
        let post = token_balances(&got, "postTokenBalances");
        let mut actual: HashMap<String, i128> = post
            .iter()
            .map(|(k, v)| (k.clone(), v - pre.get(k).copied().unwrap_or(0)))
            .chain(pre.iter().filter(|(k, _)| !post.contains_key(*k)).map(|(k, v)| (k.clone(), -v)))
            .collect();
        actual.retain(|_, d| *d != 0);
        let mut expected = if tx.success { claimed_token_deltas(tx) } else { HashMap::new() };
        // surfpool quirk (see the solana-node README): a token account closed by the
        // transaction is missing from preTokenBalances, so its outflow is invisible there.
        // Such an account must really be closed (0 lamports after).
        let lamports_after = post_lamports(&got);
        expected.retain(|account, _| {
            let listed = pre.contains_key(account) || post.contains_key(account);
            listed || lamports_after.get(account) != Some(&0)
        });
        assert_eq!(actual, expected, "{label}: token balance deltas");

        // Where SOL transfers are all a transaction does, lamports move exactly as claimed.
        let only_sol = tx.transfers.iter().all(|t| t.standard == "sol") && tx.inner_transfers.is_empty();
        if tx.success && only_sol && !tx.transfers.is_empty() {
            let mut expected: HashMap<String, i128> = HashMap::new();
            *expected.entry(tx.fee_payer.clone()).or_default() -= tx.fee as i128;
            for t in &tx.transfers {
                let amount = t.amount_u128().expect("amount") as i128;
                *expected.entry(t.from.clone()).or_default() -= amount;
                *expected.entry(t.to.clone()).or_default() += amount;
            }
            expected.retain(|_, d| *d != 0);
            assert_eq!(lamport_deltas(&got), expected, "{label}: lamport deltas");
        }
        // The inner SOL transfer tops a prefunded account up: its balance rises by that much.
        for t in tx.inner_transfers.iter().filter(|t| t.standard == "sol") {
            let amount = t.amount_u128().expect("amount") as i128;
            assert!(amount > 0, "{label}");
            assert_eq!(
                lamport_deltas(&got).get(&t.to),
                Some(&amount),
                "{label}: inner SOL transfer to {}",
                t.to
            );
        }
    }
    node.stop().await;
}
