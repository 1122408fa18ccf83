//! Real anvil: spawning, deploying the test contracts, and the transfer mix.

use alloy::primitives::{Address, B256, U256, keccak256};
use chainmux_testkit::contracts::{self, TRANSFER_BATCH_TOPIC, TRANSFER_SINGLE_TOPIC, TRANSFER_TOPIC};
use chainmux_testkit::{Anvil, Eth, populate_transfers};
use serde_json::{Value, json};

fn topic_of(address: Address) -> String {
    B256::left_padding_from(address.as_slice()).to_string()
}

fn word(value: U256) -> String {
    B256::from(value).to_string()
}

fn topics(log: &Value) -> Vec<String> {
    log["topics"]
        .as_array()
        .expect("topics array")
        .iter()
        .map(|t| t.as_str().expect("topic").to_owned())
        .collect()
}

#[test]
fn event_topics_match_their_signatures() {
    assert_eq!(keccak256("Transfer(address,address,uint256)"), TRANSFER_TOPIC);
    assert_eq!(keccak256("TransferSingle(address,address,address,uint256,uint256)"), TRANSFER_SINGLE_TOPIC);
    assert_eq!(keccak256("TransferBatch(address,address,address,uint256[],uint256[])"), TRANSFER_BATCH_TOPIC);
}

#[tokio::test]
async fn deploy_mint_and_transfer_demo_token() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    assert_eq!(eth.chain_id().await, 31337);
    let accounts = eth.accounts().await;
    assert!(accounts.len() >= 3, "anvil has dev accounts: {accounts:?}");
    let (a, b) = (accounts[0], accounts[1]);

    let token = eth.deploy(a, contracts::DEMO_TOKEN).await;
    let code = eth.request("eth_getCode", json!([token.to_string(), "latest"])).await;
    assert!(code.as_str().is_some_and(|c| c.len() > 2), "no code at {token}: {code}");

    let before = eth.block_number().await;
    eth.send(a, Some(token), contracts::erc20_mint(a, U256::from(100u64)), U256::ZERO).await;
    let hash = eth.send(a, Some(token), contracts::erc20_transfer(b, U256::from(40u64)), U256::ZERO).await;
    assert_eq!(eth.block_number().await, before + 2, "automine: one block per transaction");

    let receipt = eth.wait_receipt(hash).await;
    assert_eq!(receipt["status"], "0x1");
    let logs = receipt["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 1, "one Transfer log: {receipt}");
    let log = &logs[0];
    assert_eq!(log["address"].as_str().map(str::to_lowercase), Some(token.to_string().to_lowercase()));
    assert_eq!(topics(log), [TRANSFER_TOPIC.to_string(), topic_of(a), topic_of(b)]);
    assert_eq!(log["data"], word(U256::from(40u64)));

    // The transfer moved balances; transferring more than the balance is refused at estimation.
    let balance =
        eth.request("eth_call", json!([{"to": token.to_string(), "input": balance_of(b)}, "latest"])).await;
    assert_eq!(balance, word(U256::from(40u64)));
    let err = eth
        .try_request(
            "eth_estimateGas",
            json!([{"from": b.to_string(), "to": token.to_string(),
                    "input": contracts::erc20_transfer(a, U256::from(41u64)).to_string()}]),
        )
        .await
        .expect_err("transfer beyond the balance reverts");
    assert!(err.to_string().contains("insufficient balance"), "revert reason: {err}");
}

fn balance_of(owner: Address) -> String {
    // balanceOf(address) selector 0x70a08231.
    format!("0x70a08231{}", &topic_of(owner)[2..])
}

#[tokio::test]
async fn populate_transfers_builds_the_documented_mix() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let rounds = 3;
    let mix = populate_transfers(&eth, rounds).await;

    assert_eq!(mix.transactions, 3 + 8 * rounds + 1);
    assert_eq!(mix.last_block - mix.first_block + 1, mix.transactions as u64, "one block per tx: {mix:?}");
    assert_eq!(eth.block_number().await, mix.last_block);

    let logs = eth.logs(mix.first_block, mix.last_block).await;
    let count = |topic0: B256, emitter: Address, n_topics: usize| {
        logs.iter()
            .filter(|log| {
                let t = topics(log);
                t.first() == Some(&topic0.to_string())
                    && t.len() == n_topics
                    && log["address"].as_str().map(str::to_lowercase)
                        == Some(emitter.to_string().to_lowercase())
            })
            .count()
    };
    assert_eq!(count(TRANSFER_TOPIC, mix.token, 3), 2 * rounds, "ERC-20 Transfer logs");
    assert_eq!(count(TRANSFER_TOPIC, mix.nft, 4), 2 * rounds, "ERC-721 Transfer logs");
    assert_eq!(count(TRANSFER_SINGLE_TOPIC, mix.multi, 4), 2 * rounds, "TransferSingle logs");
    assert_eq!(count(TRANSFER_BATCH_TOPIC, mix.multi, 4), rounds, "TransferBatch logs");
    assert_eq!(logs.len(), 7 * rounds, "no other logs");

    // The reverted transaction is in the chain with status 0 and no logs.
    let receipt = eth.wait_receipt(mix.reverted).await;
    assert_eq!(receipt["status"], "0x0");
    assert_eq!(receipt["logs"], json!([]));

    // Native transfers: one per round, value > 0, no input.
    let mut native = 0;
    let mut failed = 0;
    for number in mix.first_block..=mix.last_block {
        let block = eth.block(number, true).await;
        let txs = block["transactions"].as_array().expect("full transactions");
        assert_eq!(txs.len(), 1, "block {number}");
        if txs[0]["input"] == "0x" && txs[0]["value"] != "0x0" {
            native += 1;
        }
        let receipts = eth.block_receipts(number).await;
        assert_eq!(receipts.len(), 1);
        failed += usize::from(receipts[0]["status"] == "0x0");
    }
    assert_eq!(native, rounds);
    assert_eq!(failed, 1);
}

#[tokio::test]
async fn spray_fits_ten_thousand_transfers_in_one_transaction() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let from = eth.accounts().await[0];
    let token = eth.deploy(from, contracts::DEMO_TOKEN).await;
    let data = contracts::erc20_spray(U256::from(10_000u64), U256::from(7u64));
    let (hash, status) = eth.send_unchecked(from, Some(token), data, U256::ZERO, Some(30_000_000)).await;
    assert_eq!(status, 1);
    let receipt = eth.wait_receipt(hash).await;
    let logs = receipt["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 10_000);
    let gas_used =
        u64::from_str_radix(receipt["gasUsed"].as_str().expect("gasUsed").trim_start_matches("0x"), 16)
            .expect("hex");
    assert!(gas_used < 30_000_000, "gas used {gas_used}");

    // to_i / amount_i follow keccak256(abi.encode(seed, i)).
    let h = keccak256([B256::from(U256::from(7u64)).0, B256::from(U256::from(3u64)).0].concat());
    let to = Address::from_slice(&h[12..]);
    let amount = (U256::from_be_bytes(h.0) >> 160) + U256::from(1u64);
    assert_eq!(topics(&logs[3]), [TRANSFER_TOPIC.to_string(), topic_of(token), topic_of(to)]);
    assert_eq!(logs[3]["data"], word(amount));
}

#[tokio::test]
async fn spawn_with_args_kill_and_restart_on_the_same_port() {
    let mut anvil = Anvil::spawn_with(&["--chain-id", "5"]).await;
    let eth = Eth::new(&anvil.url);
    assert_eq!(eth.chain_id().await, 5);
    eth.set_automine(false).await;
    let from = eth.accounts().await[0];
    let hash = eth.submit(from, Some(from), Default::default(), U256::from(1u64), None).await;
    assert!(eth.receipt(hash).await.is_none(), "pending while automine is off");
    eth.mine(3).await;
    assert_eq!(eth.block_number().await, 3);
    assert!(eth.receipt(hash).await.is_some());

    let port = anvil.port;
    anvil.kill();
    anvil.kill(); // idempotent
    let restarted = Anvil::spawn_on_port(port, &[]).await;
    assert_eq!(restarted.url, anvil.url);
    assert_eq!(Eth::new(&restarted.url).block_number().await, 0, "a fresh chain");
}

#[tokio::test]
#[should_panic(expected = "exited at start-up")]
async fn bad_arguments_panic_with_anvil_output() {
    let _anvil = Anvil::spawn_with(&["--no-such-flag"]).await;
}
