//! Chain builders: fill an anvil chain with a known mix of transfers.

use alloy::primitives::{Address, B256, Bytes, U256};

use crate::contracts;
use crate::eth::{Eth, hex_u64};

/// What [`populate_transfers`] built.
#[derive(Debug, Clone)]
pub struct TransferMix {
    /// `DemoToken` (ERC-20).
    pub token: Address,
    /// `TestNft` (ERC-721-like).
    pub nft: Address,
    /// `TestMulti` (ERC-1155-like).
    pub multi: Address,
    /// Block of the first transaction sent (the `DemoToken` deployment).
    pub first_block: u64,
    /// Block of the last transaction sent.
    pub last_block: u64,
    /// Transactions sent, including the 3 deployments and the reverted one: `3 + 8 * rounds + 1`.
    pub transactions: usize,
    /// The one transaction that was included with status 0 (a `TestNft.transfer` of a token the
    /// sender does not own); it has no logs.
    pub reverted: B256,
}

/// Deploys `DemoToken`, `TestNft` and `TestMulti`, then sends `rounds` rounds of transfers
/// from rotating dev accounts (`a` = account `r`, `b` = `r + 1`, `c` = `r + 2`, modulo the count):
///
/// 1. `DemoToken.mint(a, 1000e18)` and `DemoToken.transfer(b, (r + 1) * 1e18)` from `a`:
///    two ERC-20 `Transfer` logs (3 topics);
/// 2. `TestNft.mint(a, r + 1)` and `TestNft.transfer(b, r + 1)` from `a`: two ERC-721 `Transfer` logs (4 topics);
/// 3. `TestMulti.mint(a, 100 + r, 10)`: one `TransferSingle`;
/// 4. `TestMulti.mintBatch(b, [3r + 1, 3r + 2, 3r + 3], [1, 2, 3])`: one `TransferBatch`;
/// 5. `TestMulti.safeTransferFrom(a, c, 100 + r, 4)`: one `TransferSingle`;
/// 6. a native transfer of `(r + 1) * 0.001` ETH from `a` to `c`: no logs.
///
/// One reverted transaction (status 0, no logs) is included in the middle round (right after
/// the deployments when `rounds == 0`). Each transaction gets its own block when automine is on.
/// Per round that is 4 `Transfer`, 2 `TransferSingle` and 1 `TransferBatch` logs.
pub async fn populate_transfers(eth: &Eth, rounds: usize) -> TransferMix {
    let accounts = eth.accounts().await;
    assert!(!accounts.is_empty(), "populate_transfers: the node has no unlocked accounts");
    let deployer = accounts[0];

    let mut sent = Sent::default();
    let token = sent.deploy(eth, deployer, contracts::DEMO_TOKEN).await;
    let nft = sent.deploy(eth, deployer, contracts::TEST_NFT).await;
    let multi = sent.deploy(eth, deployer, contracts::TEST_MULTI).await;

    let ether = U256::from(10u64).pow(U256::from(18u64));
    let mut reverted = None;
    if rounds == 0 {
        reverted = Some(sent.revert(eth, deployer, nft).await);
    }
    for r in 0..rounds {
        let a = accounts[r % accounts.len()];
        let b = accounts[(r + 1) % accounts.len()];
        let c = accounts[(r + 2) % accounts.len()];
        let n = U256::from(r as u64);
        let one = U256::from(1u64);

        sent.call(eth, a, token, contracts::erc20_mint(a, U256::from(1000u64) * ether)).await;
        sent.call(eth, a, token, contracts::erc20_transfer(b, (n + one) * ether)).await;

        let token_id = n + one;
        sent.call(eth, a, nft, contracts::nft_mint(a, token_id)).await;
        sent.call(eth, a, nft, contracts::nft_transfer(b, token_id)).await;
        if r == rounds / 2 {
            reverted = Some(sent.revert(eth, a, nft).await);
        }

        let id = U256::from(100u64) + n;
        sent.call(eth, a, multi, contracts::multi_mint(a, id, U256::from(10u64))).await;
        let base = n * U256::from(3u64);
        let ids = (1..=3u64).map(|i| base + U256::from(i)).collect();
        let amounts = (1..=3u64).map(U256::from).collect();
        sent.call(eth, a, multi, contracts::multi_mint_batch(b, ids, amounts)).await;
        sent.call(eth, a, multi, contracts::multi_transfer(a, c, id, U256::from(4u64))).await;

        let value = (n + one) * U256::from(1_000_000_000_000_000u64);
        sent.tx(eth, a, Some(c), Bytes::new(), value).await;
    }

    TransferMix {
        token,
        nft,
        multi,
        first_block: sent.first_block.unwrap_or_default(),
        last_block: sent.last_block,
        transactions: sent.count,
        reverted: reverted.unwrap_or_default(),
    }
}

#[derive(Default)]
struct Sent {
    first_block: Option<u64>,
    last_block: u64,
    count: usize,
}

impl Sent {
    fn record(&mut self, receipt: &serde_json::Value) {
        let block = hex_u64(&receipt["blockNumber"]);
        self.first_block.get_or_insert(block);
        self.last_block = self.last_block.max(block);
        self.count += 1;
    }

    async fn deploy(&mut self, eth: &Eth, from: Address, bytecode: &str) -> Address {
        let (address, receipt) = eth.deploy_with_receipt(from, bytecode).await;
        self.record(&receipt);
        address
    }

    async fn tx(&mut self, eth: &Eth, from: Address, to: Option<Address>, data: Bytes, value: U256) -> B256 {
        let hash = eth.send(from, to, data, value).await;
        let receipt = eth.wait_receipt(hash).await;
        self.record(&receipt);
        hash
    }

    async fn call(&mut self, eth: &Eth, from: Address, to: Address, data: Bytes) -> B256 {
        self.tx(eth, from, Some(to), data, U256::ZERO).await
    }

    /// A `TestNft.transfer` of a token nobody owns, with an explicit gas limit so it is
    /// included (status 0) instead of failing gas estimation.
    async fn revert(&mut self, eth: &Eth, from: Address, nft: Address) -> B256 {
        let data = contracts::nft_transfer(from, U256::MAX);
        let (hash, status) = eth.send_unchecked(from, Some(nft), data, U256::ZERO, Some(200_000)).await;
        assert_eq!(status, 0, "populate_transfers: the transfer of a missing NFT did not revert");
        let receipt = eth.wait_receipt(hash).await;
        self.record(&receipt);
        hash
    }
}
