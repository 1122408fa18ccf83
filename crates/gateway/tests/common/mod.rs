//! Fixture of the gateway API tests: a fresh database holding a small synthetic EVM chain, heads that make its rows
//! finalized, safe or pending, a real anvil behind the chain's upstream pool, and the router, driven with
//! `tower::ServiceExt::oneshot` (no socket).
//!
//! The chain (`local`, id 31337) is blocks 10..=16, written in two batches (10..=12, 13..=16):
//!
//! | block | transactions                                   | logs                                  | transfers                          |
//! |-------|------------------------------------------------|---------------------------------------|------------------------------------|
//! | 10    | 0: ALICE→TOKEN call, 1: ALICE→CAROL 1 ETH      | 0,1: ERC-20 Transfer (TOKEN)          | erc20 0, erc20 1, native 1         |
//! | 11    | 0,1: ALICE→NFT, 2: CAROL→NFT reverted          | 0: mint #7 to ALICE, 1: #7 ALICE→BOB  | erc721 0, erc721 1                 |
//! | 12    | 0: ALICE→MULTI, 1: BOB→MULTI                   | 0: TransferBatch (3), 1: TransferSingle | erc1155 0.0, 0.1, 0.2, 1.0       |
//! | 13    | 0: CAROL→TOKEN, 1: BOB→ALICE 2^130+1 wei, 2: creation of TOKEN2 | 0: ERC-20 Transfer of 2^200+12345 | erc20 0, native 1 |
//! | 14    | 0: ALICE→MULTI, 1: ALICE→TOKEN2                | 0: TransferBatch (2, one of 2^256-1), 1: ERC-20 Transfer (TOKEN2) | erc1155 0.0, 0.1, erc20 1 |
//! | 15    | 0: BOB→TOKEN2, 1: CAROL→BOB 3 wei              | 0: Approval, 1: anonymous (no topics) | native 1                           |
//! | 16    | none                                           | none                                  | none                               |
//!
//! Heads: latest 16, safe 13, finalized 11.
//!
//! The Solana fixture, with its own chain, is in [`solana`]; the HTTP helpers ([`get`], [`all_pages`], ...) serve
//! both.

// Used by tests/solana.rs; every test binary compiles it.
#[allow(dead_code)]
pub(crate) mod solana;

use std::sync::Arc;

use alloy::hex;
use alloy::primitives::{B256, Bytes, U256, keccak256};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chainmux_core::{
    BlockPtr, ChainKind, ChainSpec, Heads, Log, NormalizedBlock, Transaction, Transfer, TransferStandard,
};
use chainmux_gateway::{AppState, ChainHandle, GatewayConfig, router};
use chainmux_rpc::{PoolConfig, UpstreamConfig};
use chainmux_store::Store;
use chainmux_testkit::contracts::{TRANSFER_BATCH_TOPIC, TRANSFER_SINGLE_TOPIC, TRANSFER_TOPIC};
use chainmux_testkit::{Anvil, TestDb};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub(crate) const CHAIN: &str = "local";
pub(crate) const CHAIN_ID: u64 = 31337;

pub(crate) const ALICE: &str = "0xa1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
pub(crate) const BOB: &str = "0xb0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";
pub(crate) const CAROL: &str = "0xc4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4c4";
/// ERC-20 token.
pub(crate) const TOKEN: &str = "0x7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e";
/// ERC-721 token.
pub(crate) const NFT: &str = "0xafafafafafafafafafafafafafafafafafafafaf";
/// ERC-1155 token.
pub(crate) const MULTI: &str = "0x5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
/// Second ERC-20 token, created in block 13.
pub(crate) const TOKEN2: &str = "0x2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d";
pub(crate) const ZERO: &str = "0x0000000000000000000000000000000000000000";

pub(crate) const LAST_BLOCK: u64 = 16;
pub(crate) const HEADS: Heads = Heads { latest: 16, safe: Some(13), finalized: Some(11) };

/// `keccak256("Approval(address,address,uint256)")`.
pub(crate) const APPROVAL_TOPIC: &str = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925";

/// Limits used by every test: small enough to hit from a test.
pub(crate) fn config() -> GatewayConfig {
    GatewayConfig {
        max_body_bytes: 1024,
        max_batch_size: 5,
        max_page_size: 1000,
        default_page_size: 100,
        ..GatewayConfig::default()
    }
}

pub(crate) fn block_hash(number: u64) -> B256 {
    keccak256(format!("chainmux gateway test block {number}"))
}

pub(crate) fn tx_hash(block: u64, index: u32) -> B256 {
    keccak256(format!("chainmux gateway test transaction {block}.{index}"))
}

pub(crate) fn ptr(number: u64) -> BlockPtr {
    BlockPtr::new(number, block_hash(number))
}

/// Lowercase `0x` hex, as the API renders bytes.
pub(crate) fn hex0x(bytes: impl AsRef<[u8]>) -> String {
    hex::encode_prefixed(bytes)
}

/// `0x` followed by upper-case hex digits.
pub(crate) fn upper0x(bytes: impl AsRef<[u8]>) -> String {
    format!("0x{}", hex::encode_upper(bytes))
}

fn bytes(text: &str) -> Bytes {
    text.parse().unwrap_or_else(|err| panic!("bad hex {text}: {err}"))
}

/// An address as a log topic (left-padded to 32 bytes).
pub(crate) fn address_topic(address: &str) -> B256 {
    B256::left_padding_from(&bytes(address))
}

pub(crate) fn word(value: U256) -> B256 {
    B256::from(value.to_be_bytes::<32>())
}

pub(crate) fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18u64))
}

/// `2^130 + 1`: the native value of block 13's transaction 1.
pub(crate) fn big_native() -> U256 {
    (U256::from(1u64) << 130) + U256::from(1u64)
}

/// `2^200 + 12345`: the ERC-20 amount of block 13's log 0.
pub(crate) fn big_erc20() -> U256 {
    (U256::from(1u64) << 200) + U256::from(12345u64)
}

/// ABI encoding of `(uint256[], uint256[])`, the data of a `TransferBatch` log.
fn two_arrays(ids: &[u64], amounts: &[U256]) -> Bytes {
    let word_of = |n: usize| word(U256::from(n));
    let mut out = Vec::new();
    out.extend_from_slice(word_of(64).as_slice());
    out.extend_from_slice(word_of(64 + 32 * (1 + ids.len())).as_slice());
    out.extend_from_slice(word_of(ids.len()).as_slice());
    for id in ids {
        out.extend_from_slice(word(U256::from(*id)).as_slice());
    }
    out.extend_from_slice(word_of(amounts.len()).as_slice());
    for amount in amounts {
        out.extend_from_slice(word(*amount).as_slice());
    }
    out.into()
}

/// Builds one block; transactions get increasing indexes, logs increasing block-wide log indexes.
struct BlockBuilder {
    number: u64,
    transactions: Vec<Transaction>,
    logs: Vec<Log>,
    transfers: Vec<Transfer>,
}

impl BlockBuilder {
    fn new(number: u64) -> Self {
        Self { number, transactions: Vec::new(), logs: Vec::new(), transfers: Vec::new() }
    }

    /// A successful transaction; returns its index. A non-zero value to an account also records the native
    /// transfer (keyed by the transaction index, as the EVM adapter does).
    fn tx(&mut self, from: &str, to: Option<&str>, value: U256, input: &str) -> u32 {
        let index = u32::try_from(self.transactions.len()).expect("index");
        self.transactions.push(Transaction {
            hash: tx_hash(self.number, index).to_vec().into(),
            index,
            from: bytes(from),
            to: to.map(bytes),
            value,
            nonce: self.number * 10 + u64::from(index),
            gas_limit: 100_000,
            gas_price: Some(1_000_000_000),
            gas_used: Some(if input == "0x" { 21_000 } else { 51_234 }),
            status: Some(true),
            contract_address: None,
            input: bytes(input),
            fee: None,
            error: None,
        });
        if let Some(to) = to
            && !value.is_zero()
        {
            self.transfers.push(Transfer {
                tx_hash: tx_hash(self.number, index).to_vec().into(),
                log_index: index,
                batch_index: 0,
                standard: TransferStandard::Native,
                token: None,
                from: bytes(from),
                to: bytes(to),
                amount: value,
                token_id: None,
                from_owner: None,
                to_owner: None,
                decimals: None,
            });
        }
        index
    }

    /// A log of transaction `tx`; returns its block-wide index.
    fn log(&mut self, tx: u32, address: &str, topics: Vec<B256>, data: Bytes) -> u32 {
        let log_index = u32::try_from(self.logs.len()).expect("index");
        self.logs.push(Log {
            tx_hash: tx_hash(self.number, tx).to_vec().into(),
            tx_index: tx,
            log_index,
            address: bytes(address),
            topics,
            data,
        });
        log_index
    }

    #[allow(clippy::too_many_arguments)]
    fn transfer(
        &mut self,
        tx: u32,
        log_index: u32,
        batch_index: u32,
        standard: TransferStandard,
        token: &str,
        (from, to): (&str, &str),
        amount: U256,
        token_id: Option<u64>,
    ) {
        self.transfers.push(Transfer {
            tx_hash: tx_hash(self.number, tx).to_vec().into(),
            log_index,
            batch_index,
            standard,
            token: Some(bytes(token)),
            from: bytes(from),
            to: bytes(to),
            amount,
            token_id: token_id.map(U256::from),
            from_owner: None,
            to_owner: None,
            decimals: None,
        });
    }

    fn erc20(&mut self, tx: u32, token: &str, from: &str, to: &str, amount: U256) {
        let topics = vec![TRANSFER_TOPIC, address_topic(from), address_topic(to)];
        let log = self.log(tx, token, topics, word(amount).to_vec().into());
        self.transfer(tx, log, 0, TransferStandard::Erc20, token, (from, to), amount, None);
    }

    fn erc721(&mut self, tx: u32, token: &str, from: &str, to: &str, id: u64) {
        let topics = vec![TRANSFER_TOPIC, address_topic(from), address_topic(to), word(U256::from(id))];
        let log = self.log(tx, token, topics, Bytes::new());
        self.transfer(tx, log, 0, TransferStandard::Erc721, token, (from, to), U256::from(1u64), Some(id));
    }

    fn erc1155_single(
        &mut self,
        tx: u32,
        token: &str,
        (operator, from, to): (&str, &str, &str),
        id: u64,
        amount: u64,
    ) {
        let topics =
            vec![TRANSFER_SINGLE_TOPIC, address_topic(operator), address_topic(from), address_topic(to)];
        let mut data = word(U256::from(id)).to_vec();
        data.extend_from_slice(word(U256::from(amount)).as_slice());
        let log = self.log(tx, token, topics, data.into());
        self.transfer(tx, log, 0, TransferStandard::Erc1155, token, (from, to), U256::from(amount), Some(id));
    }

    fn erc1155_batch(
        &mut self,
        tx: u32,
        token: &str,
        (operator, from, to): (&str, &str, &str),
        ids: &[u64],
        amounts: &[U256],
    ) {
        let topics =
            vec![TRANSFER_BATCH_TOPIC, address_topic(operator), address_topic(from), address_topic(to)];
        let log = self.log(tx, token, topics, two_arrays(ids, amounts));
        for (i, (id, amount)) in ids.iter().zip(amounts).enumerate() {
            let batch_index = u32::try_from(i).expect("index");
            self.transfer(
                tx,
                log,
                batch_index,
                TransferStandard::Erc1155,
                token,
                (from, to),
                *amount,
                Some(*id),
            );
        }
    }

    fn build(self) -> NormalizedBlock {
        NormalizedBlock {
            ptr: ptr(self.number),
            parent: Some(ptr(self.number - 1)),
            timestamp: 1_700_000_000 + 12 * self.number,
            height: None,
            transactions: self.transactions,
            logs: self.logs,
            transfers: self.transfers,
            instructions: Vec::new(),
            events: Vec::new(),
            created_contracts: Vec::new(),
        }
    }
}

/// The synthetic chain described in the module docs.
pub(crate) fn chain_blocks() -> Vec<NormalizedBlock> {
    let transfer_call = "0xa9059cbb";

    let mut b10 = BlockBuilder::new(10);
    let t = b10.tx(ALICE, Some(TOKEN), U256::ZERO, transfer_call);
    b10.erc20(t, TOKEN, ALICE, BOB, ether(5));
    b10.erc20(t, TOKEN, BOB, CAROL, ether(2));
    b10.tx(ALICE, Some(CAROL), ether(1), "0x");

    let mut b11 = BlockBuilder::new(11);
    let t = b11.tx(ALICE, Some(NFT), U256::ZERO, "0x40c10f19");
    b11.erc721(t, NFT, ZERO, ALICE, 7);
    let t = b11.tx(ALICE, Some(NFT), U256::ZERO, transfer_call);
    b11.erc721(t, NFT, ALICE, BOB, 7);
    // Transfer of a token CAROL does not own: included, reverted, no logs.
    let t = b11.tx(CAROL, Some(NFT), U256::ZERO, transfer_call);
    let reverted = &mut b11.transactions[t as usize];
    reverted.status = Some(false);
    reverted.gas_used = Some(30_000);

    let mut b12 = BlockBuilder::new(12);
    let t = b12.tx(ALICE, Some(MULTI), U256::ZERO, "0xb48ab8b6");
    let amounts = [10u64, 20, 30].map(U256::from);
    b12.erc1155_batch(t, MULTI, (ALICE, ZERO, BOB), &[1, 2, 3], &amounts);
    let t = b12.tx(BOB, Some(MULTI), U256::ZERO, "0xf242432a");
    b12.erc1155_single(t, MULTI, (BOB, BOB, CAROL), 2, 5);

    let mut b13 = BlockBuilder::new(13);
    let t = b13.tx(CAROL, Some(TOKEN), U256::ZERO, transfer_call);
    b13.erc20(t, TOKEN, CAROL, ALICE, big_erc20());
    b13.tx(BOB, Some(ALICE), big_native(), "0x");
    let t = b13.tx(ALICE, None, U256::ZERO, "0x6080604052");
    b13.transactions[t as usize].contract_address = Some(bytes(TOKEN2));

    let mut b14 = BlockBuilder::new(14);
    let t = b14.tx(ALICE, Some(MULTI), U256::ZERO, "0x2eb2c2d6");
    b14.erc1155_batch(t, MULTI, (ALICE, ALICE, CAROL), &[4, 5], &[U256::from(1u64), U256::MAX]);
    let t = b14.tx(ALICE, Some(TOKEN2), U256::ZERO, transfer_call);
    b14.erc20(t, TOKEN2, ALICE, BOB, U256::from(1u64));

    let mut b15 = BlockBuilder::new(15);
    let t = b15.tx(BOB, Some(TOKEN2), U256::ZERO, "0x095ea7b3");
    let approval: B256 = APPROVAL_TOPIC.parse().expect("topic");
    b15.log(
        t,
        TOKEN2,
        vec![approval, address_topic(BOB), address_topic(CAROL)],
        word(U256::from(100u64)).to_vec().into(),
    );
    b15.log(t, TOKEN2, Vec::new(), bytes("0xdeadbeef"));
    b15.tx(CAROL, Some(BOB), U256::from(3u64), "0x");

    let b16 = BlockBuilder::new(16);

    [b10, b11, b12, b13, b14, b15, b16].into_iter().map(BlockBuilder::build).collect()
}

/// Finality of a block under [`HEADS`], spelled out independently of the code under test.
pub(crate) fn finality(number: u64) -> &'static str {
    match number {
        ..=11 => "finalized",
        12..=13 => "safe",
        _ => "pending",
    }
}

pub(crate) struct Fixture {
    pub(crate) app: Router,
    pub(crate) state: AppState,
    pub(crate) anvil: Anvil,
    pub(crate) blocks: Vec<NormalizedBlock>,
    _db: TestDb,
}

impl Fixture {
    /// Fresh database with the synthetic chain and [`HEADS`], a fresh anvil as the only upstream (verified), and
    /// the router with [`config`].
    pub(crate) async fn new() -> Self {
        chainmux_testkit::install_crypto_provider();
        let (db, anvil) = tokio::join!(TestDb::create(), Anvil::spawn());
        let store = Store::connect(&db.url, 5).await.expect("connect to the test database");
        store.migrate().await.expect("migrate");
        let spec = ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: CHAIN_ID };
        store.register_chain(&spec).await.expect("register chain");

        let blocks = chain_blocks();
        let (first, second) = blocks.split_at(3);
        store.write_batch(CHAIN, None, first).await.expect("write blocks 10..=12");
        let stats = store.write_batch(CHAIN, Some(ptr(12)), second).await.expect("write blocks 13..=16");
        assert_eq!(stats.blocks, 4);
        store.set_heads(CHAIN, &HEADS).await.expect("set heads");

        let upstream = UpstreamConfig {
            name: "anvil".into(),
            url: anvil.url.parse().expect("anvil url"),
            policy: Default::default(),
        };
        let pool = Arc::new(chainmux_evm::EvmNetwork::pool(&spec, vec![upstream], PoolConfig::default()));
        pool.verify_all().await;

        let state = AppState::new(store, vec![ChainHandle { spec, pool }], config());
        let app = router(state.clone());
        Self { app, state, anvil, blocks, _db: db }
    }

    pub(crate) async fn send(&self, request: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
        send(&self.app, request).await
    }

    /// `GET uri`, answer parsed as JSON.
    pub(crate) async fn get(&self, uri: &str) -> (StatusCode, Value) {
        get(&self.app, uri).await
    }

    /// `GET uri` that must answer 200; returns the JSON body.
    pub(crate) async fn get_ok(&self, uri: &str) -> Value {
        get_ok(&self.app, uri).await
    }

    /// `POST /rpc/{chain}` with a raw body; `None` when the answer has no body (204).
    pub(crate) async fn rpc(&self, chain: &str, body: impl Into<String>) -> (StatusCode, Option<Value>) {
        let request = Request::post(format!("/rpc/{chain}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.into()))
            .expect("request");
        let (status, content_type, body) = self.send(request).await;
        if body.is_empty() {
            return (status, None);
        }
        assert_eq!(content_type.as_deref(), Some("application/json"));
        (status, Some(parse(&body, "rpc")))
    }

    /// Every page of `uri` (which has no `cursor`), following `next_cursor`; checks the page invariants.
    pub(crate) async fn all_pages(&self, uri: &str, limit: usize) -> Vec<Vec<Value>> {
        all_pages(&self.app, uri, limit, &indexed_head()).await
    }
}

/// Sends `request` to the router; returns the status, content type and body.
pub(crate) async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
    let response = app.clone().oneshot(request).await.expect("the router is infallible");
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.into_body().collect().await.expect("read the response body").to_bytes();
    (status, content_type, body.to_vec())
}

/// `GET uri`, answer parsed as JSON.
pub(crate) async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let request = Request::get(uri).body(Body::empty()).expect("request");
    let (status, content_type, body) = send(app, request).await;
    let json = parse(&body, uri);
    assert_eq!(content_type.as_deref(), Some("application/json"), "{uri}: {json}");
    (status, json)
}

/// `GET uri` that must answer 200; returns the JSON body.
pub(crate) async fn get_ok(app: &Router, uri: &str) -> Value {
    let (status, json) = get(app, uri).await;
    assert_eq!(status, StatusCode::OK, "{uri}: {json}");
    json
}

/// Every page of `uri` (which has no `cursor`), following `next_cursor`; checks the page invariants, among them
/// that each page reports `head` as the indexed head.
pub(crate) async fn all_pages(app: &Router, uri: &str, limit: usize, head: &Value) -> Vec<Vec<Value>> {
    let separator = if uri.contains('?') { '&' } else { '?' };
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_uri = match &cursor {
            None => format!("{uri}{separator}limit={limit}"),
            Some(cursor) => format!("{uri}{separator}limit={limit}&cursor={cursor}"),
        };
        let page = get_ok(app, &page_uri).await;
        assert_eq!(page["indexed_head"], *head, "{page_uri}");
        let items = page["items"].as_array().expect("items").clone();
        assert!(items.len() <= limit, "{page_uri}: {} items", items.len());
        pages.push(items.clone());
        match &page["next_cursor"] {
            Value::Null => return pages,
            Value::String(next) => {
                assert_eq!(items.len(), limit, "{page_uri}: a page with a next cursor is full");
                cursor = Some(next.clone());
            }
            other => panic!("{page_uri}: next_cursor {other}"),
        }
        assert!(pages.len() <= 100, "{uri}: pagination does not end");
    }
}

/// `indexed_head` of every page: the last written block.
pub(crate) fn indexed_head() -> Value {
    json!({ "number": LAST_BLOCK, "hash": hex0x(block_hash(LAST_BLOCK)) })
}

pub(crate) fn parse(body: &[u8], what: &str) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|err| panic!("{what}: body is not JSON ({err}): {}", String::from_utf8_lossy(body)))
}

/// The API rendering of a stored transfer, from the fixture data.
pub(crate) fn transfer_json(block: &NormalizedBlock, t: &Transfer) -> Value {
    json!({
        "chain": CHAIN,
        "block_number": block.ptr.number,
        "block_hash": hex0x(block.ptr.hash),
        "tx_hash": hex0x(&t.tx_hash),
        "log_index": t.log_index,
        "batch_index": t.batch_index,
        "standard": t.standard.as_str(),
        "token": t.token.as_ref().map(hex0x),
        "from": hex0x(&t.from),
        "to": hex0x(&t.to),
        "amount": t.amount.to_string(),
        "token_id": t.token_id.map(|id| id.to_string()),
        "from_owner": null,
        "to_owner": null,
        "decimals": null,
        "finality": finality(block.ptr.number),
    })
}

/// The API rendering of a stored log, from the fixture data.
pub(crate) fn log_json(block: &NormalizedBlock, log: &Log) -> Value {
    json!({
        "chain": CHAIN,
        "block_number": block.ptr.number,
        "block_hash": hex0x(block.ptr.hash),
        "tx_hash": hex0x(&log.tx_hash),
        "transaction_index": log.tx_index,
        "log_index": log.log_index,
        "address": hex0x(&log.address),
        "topics": log.topics.iter().map(hex0x).collect::<Vec<_>>(),
        "data": hex0x(&log.data),
        "finality": finality(block.ptr.number),
    })
}

/// The fixture's transfers matching `keep`, in keyset order (block, log index, batch index, standard).
pub(crate) fn expected_transfers(blocks: &[NormalizedBlock], keep: impl Fn(&Transfer) -> bool) -> Vec<Value> {
    expected_transfers_rendered(blocks, keep, transfer_json)
}

/// [`expected_transfers`] with the chain's own rendering of an item.
pub(crate) fn expected_transfers_rendered(
    blocks: &[NormalizedBlock],
    keep: impl Fn(&Transfer) -> bool,
    render: fn(&NormalizedBlock, &Transfer) -> Value,
) -> Vec<Value> {
    let mut rows: Vec<(u64, &NormalizedBlock, &Transfer)> = blocks
        .iter()
        .flat_map(|b| b.transfers.iter().filter(|t| keep(t)).map(move |t| (b.ptr.number, b, t)))
        .collect();
    rows.sort_by_key(|(number, _, t)| (*number, t.log_index, t.batch_index, t.standard.as_str()));
    rows.into_iter().map(|(_, b, t)| render(b, t)).collect()
}

/// The fixture's logs matching `keep`, in (block, log index) order.
pub(crate) fn expected_logs(blocks: &[NormalizedBlock], keep: impl Fn(&Log) -> bool) -> Vec<Value> {
    blocks.iter().flat_map(|b| b.logs.iter().filter(|l| keep(l)).map(move |l| log_json(b, l))).collect()
}

/// `(block_number, log_index, batch_index, standard)` of rendered transfers, for readable assertions.
pub(crate) fn transfer_keys(items: &[Value]) -> Vec<(u64, u64, u64, String)> {
    items
        .iter()
        .map(|t| {
            let n = |k: &str| t[k].as_u64().unwrap_or_else(|| panic!("{k} of {t}"));
            (
                n("block_number"),
                n("log_index"),
                n("batch_index"),
                t["standard"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// `(block_number, log_index)` of rendered logs.
pub(crate) fn log_keys(items: &[Value]) -> Vec<(u64, u64)> {
    items
        .iter()
        .map(|l| {
            let n = |k: &str| l[k].as_u64().unwrap_or_else(|| panic!("{k} of {l}"));
            (n("block_number"), n("log_index"))
        })
        .collect()
}
