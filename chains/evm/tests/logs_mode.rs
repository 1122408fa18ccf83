//! Logs mode against a real anvil: headers plus adaptive `eth_getLogs` ranges give the same logs and token
//! transfers as full mode, through an upstream that limits `eth_getLogs` ranges and through one that does not.

use std::sync::Arc;

use chainmux_core::{ChainKind, ChainSpec, Network, NormalizedBlock, TransferStandard};
use chainmux_evm::{EvmNetwork, EvmOptions, FetchMode};
use chainmux_rpc::{PoolConfig, UpstreamConfig};
use chainmux_testkit::{Anvil, Eth, Fault, FaultProxy, populate_transfers};

fn spec() -> ChainSpec {
    ChainSpec { name: "logs".into(), kind: ChainKind::Evm, chain_id: 31337 }
}

/// An adapter in `mode` over a pool whose only upstream is `url`.
async fn network(url: &str, mode: FetchMode) -> EvmNetwork {
    let upstream =
        UpstreamConfig { name: "only".into(), url: url.parse().expect("url"), policy: Default::default() };
    let pool = Arc::new(EvmNetwork::pool(&spec(), vec![upstream], PoolConfig::default()));
    pool.verify_all().await;
    EvmNetwork::new(spec(), pool, EvmOptions::default()).with_fetch_mode(mode)
}

/// Logs mode gives full mode's blocks without transactions and native transfers.
fn assert_same_as_full(logs_mode: &[NormalizedBlock], full: &[NormalizedBlock]) {
    assert_eq!(logs_mode.len(), full.len());
    for (got, want) in logs_mode.iter().zip(full) {
        let number = want.ptr.number;
        assert_eq!(
            (got.ptr, got.parent, got.timestamp),
            (want.ptr, want.parent, want.timestamp),
            "block {number}"
        );
        assert!(got.transactions.is_empty(), "block {number}: no transactions in logs mode");
        assert_eq!(got.logs, want.logs, "block {number}");
        let tokens: Vec<_> =
            want.transfers.iter().filter(|t| t.standard != TransferStandard::Native).cloned().collect();
        assert_eq!(got.transfers, tokens, "block {number}");
    }
}

fn count(blocks: &[NormalizedBlock], standard: TransferStandard) -> usize {
    blocks.iter().flat_map(|b| &b.transfers).filter(|t| t.standard == standard).count()
}

#[tokio::test]
async fn logs_mode_through_a_range_limited_upstream_equals_full_mode() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    populate_transfers(&eth, 6).await;
    let head = eth.block_number().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    proxy.set(Fault::LogsRangeLimit(5)).await;
    let full = network(&anvil.url, FetchMode::Full).await;
    let logs = network(&proxy.url, FetchMode::Logs).await;
    assert_eq!(logs.logs_range_size(), None);

    let expected = full.fetch(0..=head).await.expect("full mode");
    proxy.reset_counts();
    let fetched = logs.fetch(0..=head).await.expect("logs mode: no call failed the fetch");
    assert_same_as_full(&fetched, &expected);
    for standard in [TransferStandard::Erc20, TransferStandard::Erc721, TransferStandard::Erc1155] {
        assert!(count(&fetched, standard) > 0, "{standard:?} transfers in the chain");
    }
    assert_eq!(count(&fetched, TransferStandard::Native), 0);
    assert!(count(&expected, TransferStandard::Native) > 0, "full mode has the native transfers");

    // One call over the whole range, refused, then pieces of at most 5 blocks, none refused: any refused piece
    // would have been asked again, smaller, beyond this count.
    let blocks = head + 1;
    assert_eq!(proxy.received("eth_getLogs"), 1 + blocks.div_ceil(5));
    assert_eq!(logs.logs_range_size(), Some(5));
    assert_eq!(proxy.received("eth_getBlockByNumber"), blocks, "one header per block");
    assert_eq!(proxy.received("eth_getBlockReceipts"), 0);

    // The next batch starts with the learned size: no refusal.
    proxy.reset_counts();
    let again = logs.fetch(3..=head).await.expect("second batch");
    assert_same_as_full(&again, &expected[3..]);
    assert_eq!(proxy.received("eth_getLogs"), (head - 2).div_ceil(5));
}

#[tokio::test]
async fn an_upstream_without_a_limit_is_asked_for_whole_ranges() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    populate_transfers(&eth, 12).await;
    let head = eth.block_number().await;
    assert!(head >= 100, "head {head}");
    let proxy = FaultProxy::start(&anvil.url).await;
    let logs = network(&proxy.url, FetchMode::Logs).await;

    proxy.reset_counts();
    let fetched = logs.fetch(1..=100).await.expect("logs mode");
    assert_eq!(fetched.len(), 100);
    assert_eq!(fetched.iter().map(|b| b.logs.len()).sum::<usize>(), eth.logs(1, 100).await.len());
    assert!(
        proxy.received("eth_getLogs") <= 2,
        "{} eth_getLogs calls for 100 blocks",
        proxy.received("eth_getLogs")
    );
    assert_eq!(proxy.received("eth_getBlockByNumber"), 100);
    assert_eq!(logs.logs_range_size(), None, "nothing was refused");
}

#[tokio::test]
async fn a_block_refused_on_its_own_gets_its_logs_from_its_receipts() {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    populate_transfers(&eth, 2).await;
    let head = eth.block_number().await;
    let proxy = FaultProxy::start(&anvil.url).await;
    // Every eth_getLogs is refused, even over one block.
    proxy.set(Fault::LogsRangeLimit(0)).await;
    let full = network(&anvil.url, FetchMode::Full).await;
    let logs = network(&proxy.url, FetchMode::Logs).await;

    let expected = full.fetch(1..=head).await.expect("full mode");
    proxy.reset_counts();
    let fetched = logs.fetch(1..=head).await.expect("logs mode");
    assert_same_as_full(&fetched, &expected);
    assert_eq!(proxy.received("eth_getBlockReceipts"), head, "one block at a time, from its receipts");
}
