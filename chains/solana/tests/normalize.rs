//! Normalization of recorded Solana mainnet answers (`tests/fixtures`, described in its README).
//!
//! The broad checks need no hand-written expectations: every token account's balance change must be exactly what
//! the decoded transfers say, lamport changes likewise where only the System, Vote and ComputeBudget programs ran,
//! every log line must land in exactly one instruction, and the two encodings of one block must normalize alike.
//! Values read by hand from the JSON pin down the rest (mints, owners, amounts, positions, fees, errors).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use chainmux_core::{
    B256, BlockPtr, Bytes, Instruction, NetworkError, NormalizedBlock, Transfer, TransferStandard, U256,
};
use chainmux_solana::normalize::{ProgramFilter, normalize_block};
use serde_json::{Value, json};
use solana_transaction_status_client_types::UiConfirmedBlock;

const FIXTURES: [&str; 11] = [
    "block-100000000.json",
    "block-100000000-jsonParsed.json",
    "block-195545750-jsonParsed.json",
    "block-241043141-jsonParsed.json",
    "block-79662905.json",
    "tx-3Mhp6cAf.json",
    "tx-4eYvYYnF.json",
    "tx-4nRGgV9t.json",
    "tx-5AB4XLG2.json",
    "tx-5GqfwKpp.json",
    "tx-hSCrDMhM-jsonParsed.json",
];

const SYSTEM: &str = "11111111111111111111111111111111";
const VOTE: &str = "Vote111111111111111111111111111111111111111";
const COMPUTE_BUDGET: &str = "ComputeBudget111111111111111111111111111111";
const TOKEN: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const RAYDIUM: &str = "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8";
const SERUM: &str = "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin";
const WSOL: &str = "So11111111111111111111111111111111111111112";
const USDC: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
/// `getTransaction` answers carry no block hashes; wrapped into a block they get this (all-zero) one.
const PLACEHOLDER_HASH: &str = "11111111111111111111111111111111";

fn b58(text: &str) -> Bytes {
    Bytes::from(bs58::decode(text).into_vec().expect("valid base58"))
}

fn b58_string(bytes: &[u8]) -> String {
    bs58::encode(bytes).into_string()
}

fn hash(text: &str) -> B256 {
    B256::from_slice(&b58(text))
}

/// A fixture as a `getBlock` result, with its slot. `getTransaction` answers become one-transaction blocks.
fn block_json(name: &str) -> (u64, Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut value: Value = serde_json::from_str(&text).expect("fixture is JSON");
    // block-79662905.json keeps its JSON-RPC envelope.
    if let Some(result) = value.get("result") {
        value = result.clone();
    }
    if let Some(rest) = name.strip_prefix("block-") {
        let slot = rest.split(['-', '.']).next().and_then(|s| s.parse().ok()).expect("slot in the file name");
        return (slot, value);
    }
    let slot = value["slot"].as_u64().expect("getTransaction answer has a slot");
    let mut tx = json!({"transaction": value["transaction"], "meta": value["meta"]});
    if let Some(version) = value.get("version") {
        tx["version"] = version.clone();
    }
    let block = json!({
        "blockhash": PLACEHOLDER_HASH,
        "previousBlockhash": PLACEHOLDER_HASH,
        "parentSlot": slot - 1,
        "blockTime": value["blockTime"],
        "blockHeight": null,
        "transactions": [tx],
    });
    (slot, block)
}

fn normalize_value(
    slot: u64,
    value: &Value,
    programs: &ProgramFilter,
) -> Result<NormalizedBlock, NetworkError> {
    let block: UiConfirmedBlock =
        serde_json::from_value(value.clone()).expect("fixture is a UiConfirmedBlock");
    normalize_block(slot, &block, programs)
}

fn normalize(name: &str, programs: &ProgramFilter) -> NormalizedBlock {
    let (slot, value) = block_json(name);
    normalize_value(slot, &value, programs).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn filter(ids: &[&str]) -> ProgramFilter {
    ProgramFilter::from_base58(ids).expect("valid program ids")
}

/// A transaction as the raw JSON says it is, read independently of the crate under test.
#[derive(Debug)]
struct TxView {
    signature: Bytes,
    keys: Vec<String>,
    failed: bool,
    fee: u64,
    pre_lamports: Vec<u64>,
    post_lamports: Vec<u64>,
    /// Token account -> (mint, amount).
    pre_tokens: BTreeMap<String, (String, u128)>,
    post_tokens: BTreeMap<String, (String, u128)>,
    /// Program of every instruction, top-level then its inner ones (execution order).
    steps: Vec<String>,
    logs: Vec<String>,
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().map(|v| v.as_str().expect("string").to_owned()).collect()
}

fn views(block: &Value) -> Vec<TxView> {
    let transactions = block["transactions"].as_array().expect("transactions");
    transactions
        .iter()
        .map(|tx| {
            let message = &tx["transaction"]["message"];
            let meta = &tx["meta"];
            let mut keys: Vec<String> = message["accountKeys"]
                .as_array()
                .expect("accountKeys")
                .iter()
                .map(|k| k.as_str().or_else(|| k["pubkey"].as_str()).expect("key").to_owned())
                .collect();
            // `json` lists lookup-table addresses in the metadata; `jsonParsed` has them in accountKeys already.
            keys.extend(strings(&meta["loadedAddresses"]["writable"]));
            keys.extend(strings(&meta["loadedAddresses"]["readonly"]));
            let program = |ix: &Value| match ix["programId"].as_str() {
                Some(id) => id.to_owned(),
                None => keys[usize::try_from(ix["programIdIndex"].as_u64().expect("index")).expect("usize")]
                    .clone(),
            };
            let inner = meta["innerInstructions"].as_array().cloned().unwrap_or_default();
            let mut steps = Vec::new();
            for (i, ix) in message["instructions"].as_array().expect("instructions").iter().enumerate() {
                steps.push(program(ix));
                for list in inner.iter().filter(|l| l["index"].as_u64() == Some(i as u64)) {
                    steps.extend(list["instructions"].as_array().expect("inner").iter().map(program));
                }
            }
            let tokens = |field: &str| -> BTreeMap<String, (String, u128)> {
                meta[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        let index =
                            usize::try_from(b["accountIndex"].as_u64().expect("index")).expect("usize");
                        let amount =
                            b["uiTokenAmount"]["amount"].as_str().expect("amount").parse().expect("u128");
                        (keys[index].clone(), (b["mint"].as_str().expect("mint").to_owned(), amount))
                    })
                    .collect()
            };
            let lamports = |field: &str| -> Vec<u64> {
                meta[field].as_array().expect("balances").iter().map(|v| v.as_u64().expect("u64")).collect()
            };
            TxView {
                signature: b58(tx["transaction"]["signatures"][0].as_str().expect("signature")),
                failed: !meta["err"].is_null(),
                fee: meta["fee"].as_u64().expect("fee"),
                pre_lamports: lamports("preBalances"),
                post_lamports: lamports("postBalances"),
                pre_tokens: tokens("preTokenBalances"),
                post_tokens: tokens("postTokenBalances"),
                logs: strings(&meta["logMessages"]),
                steps,
                keys,
            }
        })
        .collect()
}

fn amount(transfer: &Transfer) -> i128 {
    i128::try_from(u128::try_from(transfer.amount).expect("amount fits u128")).expect("amount fits i128")
}

#[test]
fn every_fixture_file_is_covered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let files: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|entry| entry.expect("entry").file_name().into_string().expect("utf-8 name"))
        .filter(|name| name.ends_with(".json"))
        .collect();
    assert_eq!(files, FIXTURES.iter().map(|f| (*f).to_owned()).collect());
}

#[test]
fn token_balance_deltas_add_up() {
    let (mut accounts_checked, mut transfers_checked, mut failed_checked) = (0, 0, 0);
    for name in FIXTURES {
        let (slot, value) = block_json(name);
        let block = normalize_value(slot, &value, &ProgramFilter::default()).expect(name);
        let views = views(&value);
        assert_eq!(block.transactions.len(), views.len(), "{name}");
        for (view, tx) in views.iter().zip(&block.transactions) {
            assert_eq!(tx.hash, view.signature, "{name}");
            let transfers: Vec<&Transfer> =
                block.transfers.iter().filter(|t| t.tx_hash == view.signature).collect();
            assert!(transfers.iter().all(|t| t.log_index == tx.index), "{name}: log_index is the tx index");
            if view.failed {
                assert!(transfers.is_empty(), "{name}: a failed transaction moved nothing");
                let amounts = |m: &BTreeMap<String, (String, u128)>| {
                    m.iter().map(|(a, (_, x))| (a.clone(), *x)).collect::<Vec<_>>()
                };
                assert_eq!(amounts(&view.pre_tokens), amounts(&view.post_tokens), "{name}");
                failed_checked += 1;
                continue;
            }
            let mut net: HashMap<String, i128> = HashMap::new();
            for transfer in transfers.iter().filter(|t| t.standard == TransferStandard::Spl) {
                let (from, to) = (b58_string(&transfer.from), b58_string(&transfer.to));
                // The all-zero address (printed like the System program) stands for mints and burns.
                if from != SYSTEM {
                    *net.entry(from.clone()).or_default() -= amount(transfer);
                }
                if to != SYSTEM {
                    *net.entry(to.clone()).or_default() += amount(transfer);
                }
                for side in [&from, &to] {
                    if let Some((mint, _)) = view.post_tokens.get(side).or_else(|| view.pre_tokens.get(side))
                    {
                        assert_eq!(transfer.token, Some(b58(mint)), "{name}: mint of {side}");
                    }
                }
                transfers_checked += 1;
            }
            let accounts: BTreeSet<&String> = view.pre_tokens.keys().chain(view.post_tokens.keys()).collect();
            for account in accounts {
                let balance = |m: &BTreeMap<String, (String, u128)>| {
                    m.get(account).map_or(0, |(_, x)| i128::try_from(*x).expect("fits"))
                };
                let moved = net.get(account).copied().unwrap_or(0);
                assert_eq!(
                    balance(&view.pre_tokens) + moved,
                    balance(&view.post_tokens),
                    "{name}: token account {account}"
                );
                accounts_checked += 1;
            }
        }
    }
    // Counted by hand from the fixtures: 32 token accounts in successful transactions (block 100000000 twice, once
    // per encoding), 14 SPL transfers, 6 failed transactions (one of them with token balances).
    assert_eq!((accounts_checked, transfers_checked, failed_checked), (32, 14, 6));
}

#[test]
fn lamport_deltas_add_up_where_only_system_vote_and_compute_budget_ran() {
    let mut checked = 0;
    for name in FIXTURES {
        let (slot, value) = block_json(name);
        let block = normalize_value(slot, &value, &ProgramFilter::default()).expect(name);
        for view in views(&value) {
            if !view.steps.iter().all(|p| [SYSTEM, VOTE, COMPUTE_BUDGET].contains(&p.as_str())) {
                continue;
            }
            check_lamports(name, &block, &view, &view.keys);
            checked += 1;
        }
    }
    // The vote transactions: 6 in block 100000000 (in both encodings) and 2 in block 79662905.
    assert_eq!(checked, 14);
}

/// For each of `accounts`: post - pre lamports == SOL transfers in - out - (fee, for the fee payer).
fn check_lamports(name: &str, block: &NormalizedBlock, view: &TxView, accounts: &[String]) {
    for account in accounts {
        let index = view.keys.iter().position(|k| k == account).expect("account of the transaction");
        let delta = i128::from(view.post_lamports[index]) - i128::from(view.pre_lamports[index]);
        let mut expected = if index == 0 { -i128::from(view.fee) } else { 0 };
        for t in block
            .transfers
            .iter()
            .filter(|t| t.tx_hash == view.signature && t.standard == TransferStandard::Sol)
        {
            if b58_string(&t.from) == *account {
                expected -= amount(t);
            }
            if b58_string(&t.to) == *account {
                expected += amount(t);
            }
        }
        assert_eq!(delta, expected, "{name}: lamports of {account}");
    }
}

#[test]
fn lamport_deltas_of_accounts_only_moved_by_the_system_program() {
    // Accounts checked by hand to be touched only by System transfers / account creations (and the fee): fee
    // payers of the Hyperlane transactions, new accounts, and payment recipients.
    let cases: [(&str, &[&str]); 4] = [
        (
            "tx-4nRGgV9t.json",
            &[
                "FGyh1FfooV7AtVrYjFGmjMxbELC8RMxNp4xY5WY4L4md",
                "6eG8PheL41qLFFUtPjSYMtsp4aoAQsMgcsYwkGCB8kwT",
                "9yMwrDqHsbmmvYPS9h4MLPbe2biEykcL51W7qJSDL5hF",
                "JAvHW21tYXE9dtdG83DReqU2b4LUexFuCbtJT5tF8X6M",
            ],
        ),
        (
            "tx-4eYvYYnF.json",
            &[
                "7Lkn7RFaGRY2QSPTNEXrExDYToj8SYwWEPanztPHTUj4",
                "9qg84RiHnQmi8Qk7ZYWRs7VTtkRB42sB4UFdhLNZ15qD",
                "HkS7U5adrqR4PZfn6DUEtHzwHxF8hZzmrEkJE8UuqFmz",
            ],
        ),
        (
            "tx-hSCrDMhM-jsonParsed.json",
            &[
                "EPvHL5ZBdqFqx7E3LJEjkApzbhHXaXjgsPs6X2PGqC4v",
                "6Aa9FgfMZ1Yn2vsNzfzDsjCUE1ZGwrkzpP5GLg11ME37",
                "91kzpmP5hotEwM8F4YnZkDJbjMQwmW73hRttFGJm33Gj",
                "JAvHW21tYXE9dtdG83DReqU2b4LUexFuCbtJT5tF8X6M",
            ],
        ),
        (
            "tx-3Mhp6cAf.json",
            &[
                "rFqFJ9g7TGBD8Ed7TPDnvGKZ5pWLPDyxLcvcH2eRCtt",
                "DaoSrx3wBdRM8oATwYwfD8BTkHwBibVVv2SLR8LMDnLP",
                "7NsngNMtXJNdHgeK4znQDZ5xVzT2nkGoGRGhMWApejCV",
            ],
        ),
    ];
    for (name, accounts) in cases {
        let (slot, value) = block_json(name);
        let block = normalize_value(slot, &value, &ProgramFilter::default()).expect(name);
        let accounts: Vec<String> = accounts.iter().map(|a| (*a).to_owned()).collect();
        check_lamports(name, &block, &views(&value)[0], &accounts);
    }
}

#[test]
fn json_and_json_parsed_encodings_normalize_alike() {
    let programs = filter(&[SERUM, "FsJ3A3u2vn5cTVofAjvy6y5kwABJAqYWpe4975bi2epH"]);
    let json = normalize("block-100000000.json", &programs);
    let parsed = normalize("block-100000000-jsonParsed.json", &programs);
    assert_eq!(json, parsed);
    // Not equal by being empty: two Serum and two FsJ3A3 instructions, an SPL and a SOL transfer.
    assert_eq!(json.instructions.len(), 4);
    assert!(json.instructions.iter().all(|i| !i.data.is_empty() && !i.logs.is_empty()));
    assert_eq!(json.transfers.len(), 2);
    // Without a filter nothing is kept.
    assert!(normalize("block-100000000.json", &ProgramFilter::default()).instructions.is_empty());
}

#[test]
fn block_headers() {
    let cases = [
        (
            "block-100000000.json",
            "GdY1gj7F8vq1nCy4dgCZK42WV19bkfQ4cp2e9evK18ry",
            99_999_999,
            "7KpgQJdgXdPhzj69gCnyvyBiw9s6DZ5gmfNrhQr3XW1t",
            Some(89_586_871),
            1_633_504_705,
            10,
        ),
        (
            "block-195545750-jsonParsed.json",
            "E7ksVVZ9kFjjxrKVtuMXXhM4fVczSDiiFtMkcgFh9jcd",
            195_545_749,
            "DXFTuumL1TAV85kE8WxvzqsSmbWrPK3ZDMSdqysEGeiS",
            Some(178_337_950),
            1_684_858_018,
            1,
        ),
        (
            "block-241043141-jsonParsed.json",
            "7UVhKXDoFXfQWHRRMNaXiEXiQsabDvU7oz4TRLHFuzd8",
            241_043_140,
            "8KrXYfWrGMBJg6owJ5U5X1c6rxh3iVxbybvSK5hbTZtA",
            Some(221_989_387),
            1_704_919_455,
            1,
        ),
        (
            "block-79662905.json",
            "5wLhsKAH9SCPbRZc4qWf3GBiod9CD8sCEZfMiU25qW8",
            79_662_904,
            "CjJ97j84mUq3o67CEqzEkTifXpHLBCD8GvmfBYLz4Zdg",
            Some(66_130_135),
            1_622_632_900,
            2,
        ),
    ];
    for (name, blockhash, parent_slot, parent_hash, height, time, txs) in cases {
        let block = normalize(name, &ProgramFilter::default());
        let slot: u64 = name[6..].split(['-', '.']).next().and_then(|s| s.parse().ok()).expect("slot");
        assert_eq!(block.ptr, BlockPtr::new(slot, hash(blockhash)), "{name}");
        assert_eq!(block.parent, Some(BlockPtr::new(parent_slot, hash(parent_hash))), "{name}");
        assert_eq!((block.height, block.timestamp, block.transactions.len()), (height, time, txs), "{name}");
        assert!(block.logs.is_empty(), "{name}: no EVM logs on Solana");
    }
    // A block that is its own parent is the genesis block; a parent above the block is nonsense.
    let (_, mut value) = block_json("block-79662905.json");
    value["parentSlot"] = json!(79_662_905);
    assert_eq!(normalize_value(79_662_905, &value, &ProgramFilter::default()).expect("genesis").parent, None);
    value["parentSlot"] = json!(79_662_906);
    assert!(matches!(
        normalize_value(79_662_905, &value, &ProgramFilter::default()),
        Err(NetworkError::Malformed(_))
    ));
}

#[test]
fn transaction_rows() {
    let block = normalize("block-100000000.json", &ProgramFilter::default());
    let vote = &block.transactions[0];
    assert_eq!(vote.hash.len(), 64);
    assert_eq!(
        vote.hash,
        b58("2xRnwfAMxAvv5z2eiWC1YCR6bdcPj7ebPRTKFiFZuBHvWNc8QjM33W4Ev71T8C18g3yARJcHtMzC3VWTdASDybkU")
    );
    assert_eq!(vote.from, b58("7PwCuKPmGF3ZqWHgn8zXPtsWJ7Ud2q1DFggRkzctwJnJ"));
    assert_eq!(
        (vote.to.as_ref(), vote.value, vote.nonce, vote.gas_limit, vote.gas_price),
        (None, U256::ZERO, 0, 0, None)
    );
    assert_eq!(
        (vote.status, vote.fee, vote.error.as_deref(), vote.gas_used),
        (Some(true), Some(5000), None, None)
    );
    assert!(vote.input.is_empty() && vote.contract_address.is_none());
    let failed = &block.transactions[8];
    assert_eq!(
        failed.hash,
        b58("xjUw3f94FvbbGkhkokevTUn6aY4bHPcbnkF7ybe3MnM6a9DEEbkrURT5DP4JtnFJtpE7nLeX4qF27inBxXxnqi6")
    );
    assert_eq!(failed.index, 8);
    assert_eq!(failed.status, Some(false));
    assert_eq!(failed.error.as_deref(), Some(r#"{"InstructionError":[0,{"Custom":0}]}"#));

    let block = normalize("block-241043141-jsonParsed.json", &ProgramFilter::default());
    let tx = &block.transactions[0];
    assert_eq!(tx.from, b58("5yKF9m4HwZPA1cibk7JGEVtAGBL2Jx8PxcuB5EbHXRKq"));
    assert_eq!((tx.status, tx.fee, tx.gas_used), (Some(false), Some(5000), Some(52_577)));
    assert_eq!(tx.error.as_deref(), Some(r#"{"InstructionError":[3,"ProgramFailedToComplete"]}"#));

    let tx = &normalize("tx-4nRGgV9t.json", &ProgramFilter::default()).transactions[0];
    assert_eq!(
        tx.hash,
        b58("4nRGgV9tqCuiKUXeBzWdvdk6YC9BsGWUZurAVQLMX1NwNPpysbZNwXu97Sw4aM9REwaRmWS7gaiSKXbwtmw6oLRi")
    );
    assert_eq!(tx.from, b58("FGyh1FfooV7AtVrYjFGmjMxbELC8RMxNp4xY5WY4L4md"));
    assert_eq!(
        (tx.status, tx.fee, tx.gas_used, tx.error.as_deref()),
        (Some(true), Some(3_564_950), Some(171_834), None)
    );

    let tx = &normalize("block-195545750-jsonParsed.json", &ProgramFilter::default()).transactions[0];
    assert_eq!(tx.from, b58("DxCsN4jatqeTW2pj6fR55TrNqoCcoo8UNAy8xosheeVf"));
    assert_eq!((tx.fee, tx.gas_used), (Some(16_200), Some(106_028)));
}

#[allow(clippy::too_many_arguments)]
fn spl(
    tx: &str,
    log_index: u32,
    batch_index: u32,
    mint: &str,
    (from, from_owner): (&str, Option<&str>),
    (to, to_owner): (&str, Option<&str>),
    amount: u64,
    decimals: u8,
) -> Transfer {
    Transfer {
        tx_hash: b58(tx),
        log_index,
        batch_index,
        standard: TransferStandard::Spl,
        token: Some(b58(mint)),
        from: b58(from),
        to: b58(to),
        amount: U256::from(amount),
        token_id: None,
        from_owner: from_owner.map(b58),
        to_owner: to_owner.map(b58),
        decimals: Some(decimals),
    }
}

fn sol(tx: &str, log_index: u32, batch_index: u32, from: &str, to: &str, lamports: u64) -> Transfer {
    Transfer {
        tx_hash: b58(tx),
        log_index,
        batch_index,
        standard: TransferStandard::Sol,
        token: None,
        from: b58(from),
        to: b58(to),
        amount: U256::from(lamports),
        token_id: None,
        from_owner: None,
        to_owner: None,
        decimals: None,
    }
}

#[test]
fn transfers_read_by_hand() {
    let tx6 = "s28hELYcWfbRFKScS4Ysdh8CSyhFoCM3SkxU1VS6GZcWNVxHjYyBA81QQ4WNTMMnkmk68AWLB9ZsyzxAL6Tb1fc";
    let tx7 = "uhHy7XE5bWFR1JpC1kYYqHpUMhBoQTkjBUCM7M4KcVAUwrxM1bx8Dpx95zVQT35XbrDJad7XJiqspaaYQS2jiHa";
    let self_payer = "7ivguYMpnUBMboByJbKc7z31fJMg2pXYQ4nNPziWLchZ";
    let block_100m = vec![
        // Serum (position 0) runs an inner SPL Transfer (position 1); 2021 balances have no owners.
        spl(
            tx6,
            6,
            1,
            "z3dn17yLaGMKffVogeFHQ9zWVcXgqgf3PQnDsNs2g6M",
            ("AMD3D21NmYeeohviSpyc1TmfHU1Zz4KoHbEsMYBSasu2", None),
            ("AhQLbtvmca4VUZBCpjEeSWwrNBTE6ZskjrFSTUqWJwDp", None),
            1_242_000_000,
            6,
        ),
        // A System transfer from the fee payer to itself, after a Serum instruction.
        sol(tx7, 7, 1, self_payer, self_payer, 6977),
    ];
    assert_eq!(normalize("block-100000000.json", &ProgramFilter::default()).transfers, block_100m);

    let usdc_tx = "4nRGgV9tqCuiKUXeBzWdvdk6YC9BsGWUZurAVQLMX1NwNPpysbZNwXu97Sw4aM9REwaRmWS7gaiSKXbwtmw6oLRi";
    let payer = "FGyh1FfooV7AtVrYjFGmjMxbELC8RMxNp4xY5WY4L4md";
    let escrow = "CcquFeCYNZM48kLPyG3HWxdwgigmyxPBi6iHwve9Myhj";
    let expected = vec![
        // Inner TransferChecked of 2,206.478600 USDC; the warp route's escrow owns itself.
        spl(
            usdc_tx,
            0,
            3,
            USDC,
            ("FDDbaNtod9pt7pmR8qtmRZJtEj9NViDA7J6cazqUjXQj", Some(payer)),
            (escrow, Some(escrow)),
            2_206_478_600,
            6,
        ),
        // Position 5 is a zero-lamport protocol fee: skipped. Then two account creations and the IGP payment.
        sol(usdc_tx, 0, 6, payer, "6eG8PheL41qLFFUtPjSYMtsp4aoAQsMgcsYwkGCB8kwT", 2_241_120),
        sol(usdc_tx, 0, 8, payer, "JAvHW21tYXE9dtdG83DReqU2b4LUexFuCbtJT5tF8X6M", 2_158_134),
        sol(usdc_tx, 0, 9, payer, "9yMwrDqHsbmmvYPS9h4MLPbe2biEykcL51W7qJSDL5hF", 1_872_240),
    ];
    assert_eq!(normalize("tx-4nRGgV9t.json", &ProgramFilter::default()).transfers, expected);

    let parsed_tx = "hSCrDMhMPdaM7aAoDNeNtnxjXboAV7YpaKpCHkQSKxGgC3xajujQ3haFW9RALTj8EBZ3MGjCnuS1euraT7Cn2Zs";
    let payer = "EPvHL5ZBdqFqx7E3LJEjkApzbhHXaXjgsPs6X2PGqC4v";
    let source = ("87kyYrMhibcYYXsXjgEL656LBUHcX9n1zkMK5b18BWFt", Some(payer));
    let expected = vec![
        spl(parsed_tx, 0, 3, USDC, source, (escrow, Some(escrow)), 138_551_462, 6),
        sol(parsed_tx, 0, 6, payer, "6Aa9FgfMZ1Yn2vsNzfzDsjCUE1ZGwrkzpP5GLg11ME37", 2_241_120),
        sol(parsed_tx, 0, 8, payer, "JAvHW21tYXE9dtdG83DReqU2b4LUexFuCbtJT5tF8X6M", 3_107_338),
        sol(parsed_tx, 0, 9, payer, "91kzpmP5hotEwM8F4YnZkDJbjMQwmW73hRttFGJm33Gj", 1_872_240),
        // The separate top-level transferChecked, last instruction.
        spl(
            parsed_tx,
            0,
            10,
            USDC,
            source,
            (
                "HUx7b76hg8mRGNBfgLzf3sVm9RfYU6AwChGcrbz62s2F",
                Some("6KFjWcLbGE6cRafEfzRAQJNpncTCYGoty8rPZnqAQ4uu"),
            ),
            696_238,
            6,
        ),
    ];
    assert_eq!(normalize("tx-hSCrDMhM-jsonParsed.json", &ProgramFilter::default()).transfers, expected);

    let nft_tx = "3Mhp6cAfmzmztNKPFR1nJJYuhH1FNnKfDpCN5VM6YJnHsqkMCxqCx7VrBwvXPKRXVVS5MLX5mPaWgjPQXM8kHNM4";
    let escrow = "6XTHgWk94MwbeKzpbsJDu3baa6evDFsRi8JJcSS9zEHR";
    let buyer = "GhZFamsmV19g8JzPXjNW9sTjjY3oDw9U4EkMdUvMLH4L";
    let new_account = "GDZzNq3B69BdUAHEijjY5QZW2VKoHKYmPZFJi64uTWbK";
    let expected = vec![
        sol(nft_tx, 0, 2, escrow, "DaoSrx3wBdRM8oATwYwfD8BTkHwBibVVv2SLR8LMDnLP", 53_750_000),
        sol(nft_tx, 0, 3, escrow, "7NsngNMtXJNdHgeK4znQDZ5xVzT2nkGoGRGhMWApejCV", 53_750_000),
        sol(nft_tx, 0, 4, escrow, "rFqFJ9g7TGBD8Ed7TPDnvGKZ5pWLPDyxLcvcH2eRCtt", 43_000_000),
        sol(nft_tx, 0, 5, escrow, buyer, 1_999_500_000),
        sol(nft_tx, 0, 7, buyer, new_account, 2_039_280),
        // The seller's token account is closed in the same transaction: its owner comes from the pre balances.
        spl(
            nft_tx,
            0,
            9,
            "FkfMaBkeqt3GAQLoKJrMbQKWpynL51o3JgEbK1jHJ6Qg",
            (
                "G5DGY3gV99i1834uCSrhUiVNEzhSEyHfARXd3tWXqrzE",
                Some("1BWutmTvYPwDtmw9abTkS4Ssr8no61spGAvW1X6NDix"),
            ),
            (new_account, Some("C4Pxqsppptwq766W3nmfuWxvENQ9xmVwVkdYHqzUGKo9")),
            1,
            0,
        ),
    ];
    assert_eq!(normalize("tx-3Mhp6cAf.json", &ProgramFilter::default()).transfers, expected);

    let bid_tx = "5AB4XLG2CNX3ShWHoLseaZva26ygsPpKxUNHKLq9ijQsQPVJovg2yjQ5n25y2BjXbZE7Qid1K3sxB3MNaB2BkjAX";
    let temporary = "3ejUMZigjDD2kKMT4HZkEa6mgZWX1gAmjqcioTJQosBg";
    let expected = vec![
        sol(bid_tx, 0, 0, "hoakwpFB8UoLnPpLC56gsjpY7XbVwaCuRQRMQzN5TVh", temporary, 2_039_280),
        // The temporary account is created and closed in the transaction, so no balance names its mint: it
        // comes from the source account.
        spl(
            bid_tx,
            0,
            3,
            WSOL,
            ("C9KnqWGq6wEApwAuGV4Be8oMGuxCpmgi5p4FcVN8QdGa", None),
            (temporary, None),
            6_000_000_000,
            9,
        ),
    ];
    assert_eq!(normalize("tx-5AB4XLG2.json", &ProgramFilter::default()).transfers, expected);

    let drift_tx = "4eYvYYnFNQaK81PWtsLou97YeC3rA5F9dxMjJm3YDanERBvGJNoBs1UGB5MCFJD9iu7CPnwnrne2rH7cSkmz52TQ";
    let payer = "7Lkn7RFaGRY2QSPTNEXrExDYToj8SYwWEPanztPHTUj4";
    let expected = vec![
        spl(
            drift_tx,
            0,
            1,
            "DriFtupJYLTosbwoN8koMbEYSx54aFAVLddWsbksjwg7",
            ("Gbc7Jzu5ypetWFg3KTxzsqW7zFYa8DnFLb5cybvrfwMg", Some(payer)),
            (
                "BCxGd4pXacnTSL4jk4EsRsdTxnqkdEFihkmVN7J4FCf1",
                Some("HsXVcve7bEt9GvVLLmu6bgxooFz43UJKBGFgpGmSiYvn"),
            ),
            150,
            6,
        ),
        sol(drift_tx, 0, 6, payer, "9qg84RiHnQmi8Qk7ZYWRs7VTtkRB42sB4UFdhLNZ15qD", 4_691_040),
        sol(drift_tx, 0, 10, payer, "HkS7U5adrqR4PZfn6DUEtHzwHxF8hZzmrEkJE8UuqFmz", 2_463_840),
    ];
    assert_eq!(normalize("tx-4eYvYYnF.json", &ProgramFilter::default()).transfers, expected);

    let swap_tx = "4H6uGfHviqT87Au64fv9t7AQHYd75SZPa7NMsX2fZixdcwZgpPB11b4cQq65JVM4EzppLmNPt2d8cGeFY9ys1dBH";
    let user = "DxCsN4jatqeTW2pj6fR55TrNqoCcoo8UNAy8xosheeVf";
    let pool = "13ztuDnY8HvZCkBK7XwRv5jT5fd9KS7bgdXp1mL1Gd3H";
    let new_wsol = "8t6JV7jwgwyvezcsvZf4CZCDCUf1xD9QKFo9sDx8qjaK";
    let expected = vec![
        sol(swap_tx, 0, 2, user, new_wsol, 2_039_280),
        spl(
            swap_tx,
            0,
            8,
            "Fishy64jCaa3ooqXw7BHtKvYD8BTkSyAPh6RNE3xZpcN",
            ("DBVq4zJqEiWyU12rgW5pQhczZ3gokcYt7vuw7DwAHPEM", Some(user)),
            ("DpYtvzAh5xf26YNiuAaZPqeHKbWi6PeBG5eEiwpe84BR", Some(pool)),
            50_000_000,
            6,
        ),
        spl(
            swap_tx,
            0,
            9,
            WSOL,
            ("6kxCwpuJbDbYqYqw3958ZXCZiwkRQEubsFN6jCsPUSMN", Some(pool)),
            (new_wsol, None),
            129_112_223,
            9,
        ),
    ];
    assert_eq!(normalize("block-195545750-jsonParsed.json", &ProgramFilter::default()).transfers, expected);

    let swaps = "5GqfwKpphZvYhKWzhjo7V9R5WwLw1kZUGA4K4WdN9Qo1xFMe3b9mHWfzmuHSifkrHHobpRg2nV6VyiZcyWGFnssX";
    let srm = "SRMuApVNdxXokk5GT7XD5cUUgXMBCoAz2LHeuAoKWRt";
    let ray = "4k3Dyjzvzp8eMZWUXbBCjEvwSkkk59S5iCNLY3QrkX6R";
    let account = |a| (a, None);
    let expected = vec![
        spl(
            swaps,
            0,
            2,
            srm,
            account("6ZgYWaCFxKM6uYYyTBEmja8BADZVetHX9NZpgaDfrWxj"),
            account("BCNYwsnz3yXvi4mY5e9w2RmZvwUW3pefzYQ4tsoNdDhp"),
            90_871_408,
            6,
        ),
        spl(
            swaps,
            0,
            3,
            WSOL,
            account("7BXPSUXeBVqJGyxW3yvkNxnJjYHuC8mnhyFCDp2abAs6"),
            account("GAFTufuxZcXvGfkEcjTL7L9Qk6RY9gMK4sE6ZK4xx9n7"),
            10_771_935_087,
            9,
        ),
        spl(
            swaps,
            0,
            6,
            WSOL,
            account("GAFTufuxZcXvGfkEcjTL7L9Qk6RY9gMK4sE6ZK4xx9n7"),
            account("3mEFzHsJyu2Cpjrz6zPmTzP7uoLFj9SbbecGVzzkL1mJ"),
            10_766_894_605,
            9,
        ),
        spl(
            swaps,
            0,
            7,
            ray,
            account("Em6rHi68trYgBFyJ5261A2nhwuQWfLcirgzZZYoRcrkX"),
            account("CdVYGCsquTQKSUkz4hgJFsHy3cDhpckWA2F9An54jfZz"),
            108_404_808,
            6,
        ),
    ];
    assert_eq!(normalize("tx-5GqfwKpp.json", &ProgramFilter::default()).transfers, expected);

    // Failed transactions move nothing; vote transactions move nothing.
    assert!(normalize("block-241043141-jsonParsed.json", &ProgramFilter::default()).transfers.is_empty());
    assert!(normalize("block-79662905.json", &ProgramFilter::default()).transfers.is_empty());
}

fn raydium_log(swap: usize) -> Vec<String> {
    let lines: &[&str] = if swap == 0 {
        &[
            "Program log: process_swap: amount_in:90871408, minimum_amount_out:10766894605",
            "Program log: process_swap: total_pc_without_take_pnl:23038554969131, total_coin_without_take_pnl:193775137478",
            "Program log: process_swap: swap_amount_out:10798932419, amount_out_without_fee:10771935087",
            "Program log: process_swap cancel buy order_id:2195162544771435853127, order_price:118, order_slot:0, swap_price:118",
            "Program log: process_swap: coin to pc, out_coin:90871408, out_pc:10771935087",
            "Program 675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8 consumed 67958 of 200000 compute units",
        ]
    } else {
        &[
            "Program log: process_swap: amount_in:10766894605, minimum_amount_out:108357817",
            "Program log: process_swap: total_pc_without_take_pnl:579559304152712, total_coin_without_take_pnl:5849936256489",
            "Program log: process_swap: swap_amount_out:108676500, amount_out_without_fee:108404808",
            "Program log: process_swap cancel sell order_id:1881567895518375451658, order_price:102, order_slot:15, swap_price:99",
            "Program log: process_swap: pc to coin, out_pc:10766894605, out_out:108404808",
            "Program 675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8 consumed 72096 of 200000 compute units",
        ]
    };
    lines.iter().map(|l| (*l).to_owned()).collect()
}

#[test]
fn instructions_of_filtered_programs_with_inner_instructions_and_logs() {
    let (_, value) = block_json("tx-5GqfwKpp.json");
    let view = &views(&value)[0];
    let block = normalize("tx-5GqfwKpp.json", &filter(&[RAYDIUM]));
    let tx_hash = view.signature.clone();
    let outer = &value["transactions"][0]["transaction"]["message"]["instructions"];
    let accounts = |ix: &Value| -> Vec<Bytes> {
        ix["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|i| b58(&view.keys[usize::try_from(i.as_u64().expect("index")).expect("usize")]))
            .collect()
    };
    let expected: Vec<Instruction> = [(0, 0), (1, 4)]
        .into_iter()
        .map(|(outer_index, position)| Instruction {
            tx_hash: tx_hash.clone(),
            tx_index: 0,
            position,
            outer_index,
            inner_index: None,
            stack_height: 1,
            program: b58(RAYDIUM),
            accounts: accounts(&outer[outer_index as usize]),
            data: b58(outer[outer_index as usize]["data"].as_str().expect("data")),
            logs: raydium_log(outer_index as usize),
        })
        .collect();
    assert_eq!(block.instructions, expected);
    // 18 accounts, resolved: the token program first and the fee payer last.
    assert_eq!(expected[0].accounts.len(), 18);
    assert_eq!(expected[0].accounts[0], b58(TOKEN));
    assert_eq!(expected[0].accounts[17], b58("7AECg1KFC1k8oMAhWZQrLo67hQEWMd8KwMDf6LTaWnZe"));

    // The invoked programs: Serum then two token transfers under each swap. No stackHeight in this 2021 answer;
    // the log's invoke depth gives it.
    let block = normalize("tx-5GqfwKpp.json", &filter(&[SERUM, TOKEN]));
    let rows: Vec<(u32, u32, Option<u32>, u32, Bytes)> = block
        .instructions
        .iter()
        .map(|i| (i.position, i.outer_index, i.inner_index, i.stack_height, i.program.clone()))
        .collect();
    let (serum, token) = (b58(SERUM), b58(TOKEN));
    assert_eq!(
        rows,
        vec![
            (1, 0, Some(0), 2, serum.clone()),
            (2, 0, Some(1), 2, token.clone()),
            (3, 0, Some(2), 2, token.clone()),
            (5, 1, Some(0), 2, serum),
            (6, 1, Some(1), 2, token.clone()),
            (7, 1, Some(2), 2, token),
        ]
    );
    let logs: Vec<&[String]> = block.instructions.iter().map(|i| i.logs.as_slice()).collect();
    assert_eq!(
        logs[0],
        ["Program 9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin consumed 5810 of 153058 compute units"]
    );
    assert_eq!(
        logs[1],
        [
            "Program log: Instruction: Transfer",
            "Program TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA consumed 3402 of 143327 compute units"
        ]
    );
    assert_eq!(
        logs[5],
        [
            "Program log: Instruction: Transfer",
            "Program TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA consumed 3402 of 132829 compute units"
        ]
    );
    // The inner token transfer's data is the raw instruction: tag 3, amount 90871408.
    let mut data = vec![3u8];
    data.extend_from_slice(&90_871_408u64.to_le_bytes());
    assert_eq!(block.instructions[1].data, Bytes::from(data));
}

#[test]
fn every_log_line_belongs_to_exactly_one_instruction() {
    let mut txs = 0;
    for name in FIXTURES {
        let (slot, value) = block_json(name);
        let views = views(&value);
        let programs: BTreeSet<&str> =
            views.iter().flat_map(|v| v.steps.iter().map(String::as_str)).collect();
        let block =
            normalize_value(slot, &value, &filter(&programs.into_iter().collect::<Vec<_>>())).expect(name);
        for (index, view) in views.iter().enumerate() {
            let rows: Vec<&Instruction> =
                block.instructions.iter().filter(|i| i.tx_hash == view.signature).collect();
            let programs: Vec<String> = rows.iter().map(|r| b58_string(&r.program)).collect();
            assert_eq!(programs, view.steps, "{name} #{index}: every instruction kept, in execution order");
            assert!(rows.iter().zip(0..).all(|(r, p)| r.position == p && r.tx_index == index as u32));
            // Frame lines (invoke / success / failed) belong to no instruction; every other line to one.
            let depths: Vec<u32> = view
                .logs
                .iter()
                .filter_map(|l| {
                    l.split_once(" invoke [").and_then(|(_, d)| d.trim_end_matches(']').parse().ok())
                })
                .collect();
            let ends =
                view.logs.iter().filter(|l| l.ends_with(" success") || l.contains(" failed: ")).count();
            let attributed: usize = rows.iter().map(|r| r.logs.len()).sum();
            assert_eq!(attributed, view.logs.len() - depths.len() - ends, "{name} #{index}");
            // Stack heights agree with the log's invoke depths.
            let heights: Vec<u32> = rows.iter().take(depths.len()).map(|r| r.stack_height).collect();
            assert_eq!(heights, depths, "{name} #{index}");
            txs += 1;
        }
    }
    assert_eq!(txs, 30);
    // In the failed transaction the last instruction never ran: 8 frames for 9 instructions.
    let block = normalize(
        "block-241043141-jsonParsed.json",
        &filter(&["GqCHpDuPPsyyMxtaQgYxyLLLWv1kZFyy2DD5z1cMNouR", TOKEN]),
    );
    let last = block.instructions.last().expect("rows");
    assert_eq!((last.position, last.outer_index, last.logs.len()), (8, 4, 0));
    let failing = block.instructions.iter().find(|i| i.outer_index == 3).expect("failing instruction");
    assert_eq!(
        failing.logs,
        ["Program GqCHpDuPPsyyMxtaQgYxyLLLWv1kZFyy2DD5z1cMNouR consumed 24177 of 971600 compute units"]
    );
}

#[test]
fn declared_stack_heights_are_kept() {
    // 2025 answer with stackHeight: System instructions invoked by the Mailbox run at depth 3.
    let block = normalize("tx-4eYvYYnF.json", &filter(&[SYSTEM]));
    let rows: Vec<(u32, Option<u32>, u32)> =
        block.instructions.iter().map(|i| (i.position, i.inner_index, i.stack_height)).collect();
    assert_eq!(rows, vec![(5, Some(1), 3), (6, Some(2), 3), (9, Some(1), 3), (10, Some(2), 3)]);
    assert!(
        block.instructions.iter().all(|i| i.logs.is_empty()),
        "the System program logs nothing of its own"
    );
    // jsonParsed without stackHeight: the Whirlpool's token transfers ran at depth 3 (from the log).
    let block = normalize("block-195545750-jsonParsed.json", &filter(&[TOKEN]));
    let rows: Vec<(u32, u32)> = block.instructions.iter().map(|i| (i.position, i.stack_height)).collect();
    assert_eq!(rows, vec![(1, 2), (3, 2), (4, 2), (8, 3), (9, 3), (10, 1)]);
    // Parsed instructions have no raw form in jsonParsed.
    assert!(block.instructions.iter().all(|i| i.data.is_empty() && i.accounts.is_empty()));
}

fn with_logs(edit: impl FnOnce(&mut Vec<Value>)) -> (u64, Value) {
    let (slot, mut value) = block_json("tx-5GqfwKpp.json");
    let logs = value["transactions"][0]["meta"]["logMessages"].as_array_mut().expect("logs");
    edit(logs);
    (slot, value)
}

#[test]
fn truncated_logs_attribute_only_what_was_recorded() {
    // The recorded log cut inside the second token transfer of the first swap, as the runtime does at its limit.
    let (slot, value) = with_logs(|logs| {
        logs.truncate(15);
        logs.push(json!("Log truncated"));
    });
    let block = normalize_value(slot, &value, &filter(&[RAYDIUM, TOKEN])).expect("normalizes");
    let logs: Vec<(u32, Vec<String>)> =
        block.instructions.iter().map(|i| (i.position, i.logs.clone())).collect();
    let mut first_swap = raydium_log(0);
    first_swap.pop(); // its "consumed" line came after the cut
    assert_eq!(
        logs,
        vec![
            (0, first_swap),
            (
                2,
                vec![
                    "Program log: Instruction: Transfer".to_owned(),
                    "Program TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA consumed 3402 of 143327 compute units"
                        .to_owned()
                ]
            ),
            (3, vec!["Program log: Instruction: Transfer".to_owned()]),
            (4, Vec::new()),
            (6, Vec::new()),
            (7, Vec::new()),
        ]
    );
}

#[test]
fn logs_that_do_not_line_up_are_not_attributed() {
    // Drop the first Serum invocation's frame: the log now has one frame fewer than the transaction has
    // instructions, in a successful transaction, so no position can be trusted.
    let (slot, value) = with_logs(|logs| {
        logs.drain(5..8);
    });
    let block = normalize_value(slot, &value, &filter(&[RAYDIUM, TOKEN])).expect("normalizes");
    assert_eq!(block.instructions.len(), 6);
    assert!(block.instructions.iter().all(|i| i.logs.is_empty()));
    // Without log depths, an inner instruction without stackHeight is reported at depth 2.
    assert!(block.instructions.iter().all(|i| i.stack_height == if i.inner_index.is_none() { 1 } else { 2 }));
    // Transfers do not depend on logs.
    assert_eq!(block.transfers, normalize("tx-5GqfwKpp.json", &ProgramFilter::default()).transfers);
}

fn malformed(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let (slot, mut value) = block_json(name);
    edit(&mut value);
    match normalize_value(slot, &value, &ProgramFilter::default()) {
        Err(NetworkError::Malformed(message)) => message,
        other => panic!("{name}: expected Malformed, got {other:?}"),
    }
}

#[test]
fn malformed_data_names_slot_and_signature() {
    let tx6 = "s28hELYcWfbRFKScS4Ysdh8CSyhFoCM3SkxU1VS6GZcWNVxHjYyBA81QQ4WNTMMnkmk68AWLB9ZsyzxAL6Tb1fc";
    // '0' is not in the base58 alphabet.
    let message = malformed("block-100000000.json", |v| {
        v["transactions"][6]["meta"]["innerInstructions"][0]["instructions"][0]["data"] =
            json!("3awLk33zPqE0");
    });
    assert!(
        message.contains("slot 100000000") && message.contains(tx6) && message.contains("base58"),
        "{message}"
    );
    let message = malformed("block-100000000.json", |v| {
        v["transactions"][6]["meta"]["innerInstructions"][0]["instructions"][0]["accounts"] =
            json!([7, 14, 0]);
    });
    assert!(message.contains(tx6) && message.contains("account index 14 out of range"), "{message}");
    let message = malformed("block-100000000.json", |v| {
        v["transactions"][6]["transaction"]["message"]["instructions"][0]["programIdIndex"] = json!(99);
    });
    assert!(message.contains(tx6) && message.contains("99"), "{message}");
    // A System transfer cut short in a successful transaction.
    let message = malformed("block-100000000.json", |v| {
        v["transactions"][7]["transaction"]["message"]["instructions"][1]["data"] =
            json!(bs58::encode([2u8, 0, 0, 0, 1]).into_string());
    });
    assert!(message.contains("uhHy7XE5bWFR") && message.contains("too short"), "{message}");
    // The same in jsonParsed: a parsed token transfer without its destination.
    let message = malformed("block-100000000-jsonParsed.json", |v| {
        let info =
            &mut v["transactions"][6]["meta"]["innerInstructions"][0]["instructions"][0]["parsed"]["info"];
        info.as_object_mut().expect("info").remove("destination");
    });
    assert!(message.contains(tx6) && message.contains("destination"), "{message}");
    let message = malformed("block-100000000.json", |v| v["blockhash"] = json!("not-base58"));
    assert!(message.contains("slot 100000000") && message.contains("blockhash"), "{message}");
}

#[test]
fn unknown_instructions_of_known_programs_are_not_transfers() {
    let (slot, mut value) = block_json("block-100000000.json");
    // Turn the inner SPL Transfer into a CloseAccount (tag 9): valid, moves no tokens.
    value["transactions"][6]["meta"]["innerInstructions"][0]["instructions"][0]["data"] =
        json!(bs58::encode([9u8]).into_string());
    let block = normalize_value(slot, &value, &ProgramFilter::default()).expect("normalizes");
    assert_eq!(block.transfers.len(), 1);
    assert_eq!(block.transfers[0].standard, TransferStandard::Sol);
}

#[test]
fn program_filter_parses_base58_ids() {
    let programs = filter(&[RAYDIUM]);
    assert!(!programs.is_empty());
    assert!(programs.contains(&<[u8; 32]>::try_from(b58(RAYDIUM).as_ref()).expect("32 bytes")));
    assert!(ProgramFilter::from_base58(["not a program"]).is_err());
    // 31 bytes is not an address.
    assert!(ProgramFilter::from_base58([bs58::encode([1u8; 31]).into_string()]).is_err());
    assert!(ProgramFilter::default().is_empty());
}

#[test]
fn owners_come_from_post_balances_first() {
    // As if the sender's token account had changed hands in the transaction (SetAuthority): the owner after the
    // transaction is the one recorded; the pre owner only stands in for closed accounts (see tx-3Mhp6cAf).
    let (slot, mut value) = block_json("tx-4nRGgV9t.json");
    let new_owner = "BvZpTuYLAR77mPhH4GtvwEWUTs53GQqkgBNuXpCePVNk";
    value["transactions"][0]["meta"]["postTokenBalances"][1]["owner"] = json!(new_owner);
    let block = normalize_value(slot, &value, &ProgramFilter::default()).expect("normalizes");
    assert_eq!(block.transfers[0].from_owner, Some(b58(new_owner)));
    assert_eq!(block.transfers[0].to_owner, Some(b58("CcquFeCYNZM48kLPyG3HWxdwgigmyxPBi6iHwve9Myhj")));
}
