//! Demo traffic for a local anvil: deploys the demo ERC-20, an ERC-721 and an ERC-1155 contract and a factory of
//! small `Child` contracts, then keeps sending transfers of every kind from anvil's unlocked dev accounts, and
//! now and then has the factory create a child and the children ping, until interrupted.
//!
//! On a fresh anvil the contracts land at fixed addresses (the deployer's first four nonces), which
//! `config/local.toml` names under `[[chains.contracts]]`.
//!
//! `demo-traffic [--rpc URL] [--interval-ms N]` (defaults: http://127.0.0.1:8545, 500)

use std::time::Duration;

use alloy::primitives::{Bytes, U256};
use chainmux_testkit::{Eth, contracts};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut rpc = "http://127.0.0.1:8545".to_owned();
    let mut interval_ms = 500u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--rpc", Some(url)) => rpc = url,
            ("--interval-ms", Some(ms)) => interval_ms = ms.parse().unwrap_or(interval_ms),
            _ => {
                eprintln!("usage: demo-traffic [--rpc URL] [--interval-ms N]");
                std::process::exit(2);
            }
        }
    }
    let eth = Eth::new(&rpc);
    let accounts = eth.accounts().await;
    let owner = accounts[0];
    let token = eth.deploy(owner, contracts::DEMO_TOKEN).await;
    let nft = eth.deploy(owner, contracts::TEST_NFT).await;
    let multi = eth.deploy(owner, contracts::TEST_MULTI).await;
    let factory = eth.deploy(owner, contracts::CHILD_FACTORY).await;
    let ether = U256::from(10).pow(U256::from(18));
    for account in &accounts {
        eth.send(
            owner,
            Some(token),
            contracts::erc20_mint(*account, ether * U256::from(1_000_000)),
            U256::ZERO,
        )
        .await;
    }
    println!(
        "demo-traffic: DEMO token {token}, NFT {nft}, multi-token {multi}, child factory {factory}; sending \
         transfers every {interval_ms} ms"
    );
    let mut children: u64 = 0;

    let mut round: u64 = 0;
    loop {
        let from = accounts[(round as usize) % accounts.len()];
        let to = accounts[(round as usize + 1) % accounts.len()];
        let amount = ether * U256::from(1 + round % 50);
        eth.submit(from, Some(token), contracts::erc20_transfer(to, amount), U256::ZERO, None).await;
        if round.is_multiple_of(3) {
            eth.submit(from, Some(to), Bytes::new(), U256::from(round + 1) * ether / U256::from(100), None)
                .await;
        }
        if round.is_multiple_of(5) {
            eth.submit(owner, Some(nft), contracts::nft_mint(to, U256::from(round)), U256::ZERO, None).await;
        }
        if round.is_multiple_of(7) {
            let ids = vec![U256::from(1), U256::from(2), U256::from(3)];
            let amounts = vec![U256::from(10), U256::from(20), U256::from(round + 1)];
            eth.submit(owner, Some(multi), contracts::multi_mint_batch(to, ids, amounts), U256::ZERO, None)
                .await;
        }
        if round.is_multiple_of(11) {
            let data = contracts::factory_create(U256::from(1), round.is_multiple_of(2), true);
            eth.submit(owner, Some(factory), data, U256::ZERO, None).await;
            children += 1;
        } else if round.is_multiple_of(4) && children > 0 {
            // The 50 newest children, so a long demo does not grow the transaction without bound.
            let from = U256::from(children.saturating_sub(50));
            let data = contracts::factory_ping_range(from, U256::from(children), U256::from(round));
            eth.submit(owner, Some(factory), data, U256::ZERO, None).await;
        }
        round += 1;
        if round.is_multiple_of(20) {
            println!("demo-traffic: {round} rounds sent, head {}", eth.block_number().await);
        }
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
    }
}
