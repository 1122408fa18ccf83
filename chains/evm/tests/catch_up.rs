//! A factory entry's history catch-up stores every child even when an `eth_getLogs` call of a window fails and the
//! window is fetched again: the first pass of a window registers its children in the catch-up decoder before their
//! logs are fetched, so a retry must start over from the stored children, or the children would no longer be
//! reported as created, never reach the `contracts` table, and so never reach the live decoder either.

use std::sync::Arc;
use std::time::Duration;

use alloy::json_abi::JsonAbi;
use alloy::primitives::U256;
use chainmux_core::{ChainKind, ChainSpec};
use chainmux_evm::catch_up::{CatchUpOptions, prepare};
use chainmux_evm::{ContractSource, EvmNetwork, EvmOptions, SourceTarget};
use chainmux_rpc::{PoolConfig, UpstreamConfig};
use chainmux_store::{EventFilter, Store};
use chainmux_testkit::contracts::{CHILD_ABI, CHILD_FACTORY, CHILD_FACTORY_ABI, factory_create};
use chainmux_testkit::{Anvil, Eth, Fault, FaultProxy, TestDb};
use tokio_util::sync::CancellationToken;

const CHAIN: &str = "review";

fn spec() -> ChainSpec {
    ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: 31337 }
}

/// A network whose pool tries each call once, so a failed call reaches the catch-up.
async fn network(url: &str) -> EvmNetwork {
    let upstream =
        UpstreamConfig { name: "only".into(), url: url.parse().expect("url"), policy: Default::default() };
    let config = PoolConfig { max_attempts: 1, hedge: false, ..PoolConfig::default() };
    let pool = Arc::new(EvmNetwork::pool(&spec(), vec![upstream], config));
    pool.verify_all().await;
    EvmNetwork::new(spec(), pool, EvmOptions::default())
}

/// Deploys a factory that creates 3 children in one block (each pinging in its constructor and after); returns
/// the anvil, the factory entry and the head.
async fn chain_with_children() -> (Anvil, Arc<ContractSource>, u64) {
    let anvil = Anvil::spawn().await;
    let eth = Eth::new(&anvil.url);
    let from = eth.accounts().await[0];
    let factory = eth.deploy(from, CHILD_FACTORY).await;
    eth.send(from, Some(factory), factory_create(U256::from(3), true, true), U256::ZERO).await;
    let head = eth.block_number().await;

    let child_abi: JsonAbi = serde_json::from_str(CHILD_ABI).expect("Child ABI");
    let factory_abi: JsonAbi = serde_json::from_str(CHILD_FACTORY_ABI).expect("ChildFactory ABI");
    let created = factory_abi.event("ChildCreated").expect("ChildCreated")[0].clone();
    let source = ContractSource::new(
        "children".into(),
        child_abi.events().cloned().collect(),
        SourceTarget::Factory { address: factory, event: created, parameter: "child".into() },
        0,
    )
    .expect("valid entry")
    .with_abi(&child_abi);
    (anvil, Arc::new(source), head)
}

async fn store() -> (TestDb, Store) {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    (db, store)
}

/// Catches the entry up over the whole chain (nothing indexed yet, the indexer starting above the head) and
/// returns (stored children, known children of the decoder handed to the indexer, stored events).
async fn catch_up(url: &str, source: Arc<ContractSource>, head: u64) -> (usize, usize, usize) {
    let (_db, store) = store().await;
    let network = network(url).await;
    let options = CatchUpOptions { window: 10_000, ..CatchUpOptions::default() };
    let decoder = prepare(&network, &store, vec![source], head + 1, options, &CancellationToken::new())
        .await
        .expect("catch-up");
    let stored = store.factory_children(CHAIN).await.expect("children").len();
    let events = store
        .events(CHAIN, &EventFilter { limit: 1_000, ..EventFilter::default() })
        .await
        .expect("events")
        .items
        .len();
    (stored, decoder.children("children"), events)
}

#[tokio::test]
async fn control_catch_up_without_faults_stores_every_child() {
    let (anvil, source, head) = chain_with_children().await;
    let (stored, known, events) = catch_up(&anvil.url, source, head).await;
    assert_eq!((stored, known, events), (3, 3, 6));
}

#[tokio::test]
async fn catch_up_retrying_a_window_still_stores_every_child() {
    let (anvil, source, head) = chain_with_children().await;
    let proxy = Arc::new(FaultProxy::start(&anvil.url).await);
    // The window's first eth_getLogs (the factory's creations) succeeds, its second (the children's logs) fails
    // once; every later call succeeds.
    proxy
        .set(Fault::EveryNth {
            n: 2,
            method: "eth_getLogs".into(),
            code: -32603,
            message: "internal error".into(),
        })
        .await;
    let healer = tokio::spawn({
        let proxy = Arc::clone(&proxy);
        async move {
            while proxy.received("eth_getLogs") < 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            proxy.set(Fault::None).await;
        }
    });
    let (stored, known, events) = catch_up(&proxy.url, source, head).await;
    healer.await.expect("healer");
    assert!(proxy.received("eth_getLogs") >= 3, "the window was fetched again after the failure");
    assert_eq!(events, 6, "the children's events are decoded on the retry");
    assert_eq!(
        (stored, known),
        (3, 3),
        "every child created in the window is stored and known to the live decoder"
    );
}
