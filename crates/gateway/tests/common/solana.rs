//! Fixture of the gateway's Solana tests: a fresh database holding a small synthetic Solana chain next to an empty
//! EVM chain, and the router over both (no upstreams: the REST API reads the store only).
//!
//! The Solana chain (`solana-test`) is slots 300..=305 with slot 302 skipped, written in two batches (300..=303,
//! 304..=305). Transfer keys are (slot, tx index, position); instructions are listed for TOKEN and APP only.
//!
//! | slot | tx | what                                                                                         |
//! |------|----|----------------------------------------------------------------------------------------------|
//! | 300  | 0  | ALICE pays; p0 System: 1.5 SOL ALICE→BOB                                                     |
//! | 300  | 1  | CAROL pays; p0 TOKEN mintTo 1000 (6 decimals) to ALICE_ATA (owner ALICE)                    |
//! | 301  | 0  | ALICE pays; p0 APP, p1 TOKEN transfer (CPI, inner 0) 250 ALICE_ATA→BOB_ATA                  |
//! | 301  | 1  | BOB pays, fails with a custom error; p0 APP                                                  |
//! | 303  | 0  | BOB pays; p0 TOKEN transferChecked 100 BOB_ATA→CAROL_ATA, p1 System: 42 lamports BOB→CAROL   |
//! | 303  | 1  | CAROL pays; p0 TOKEN burn 0.000001 from CAROL_ATA                                            |
//! | 304  | 0  | ALICE pays; p0 TOKEN transfer 5 ALICE_ATA→ALICE_ATA2 (both ALICE's), p1 APP with nothing     |
//! | 304  | 1  | CAROL pays; p0 System: 2^64-1 lamports CAROL→ALICE                                           |
//! | 305  | -  | empty                                                                                        |
//!
//! Slot 300 is the chain's first block (no parent), 303 has no block time. Heads: confirmed 305, finalized 301.

use std::sync::Arc;

use alloy::primitives::{B256, Bytes, U256, keccak256};
use axum::Router;
use chainmux_core::{
    BlockPtr, ChainKind, ChainSpec, Heads, Instruction, NormalizedBlock, Transaction, Transfer,
    TransferStandard,
};
use chainmux_gateway::{AppState, ChainHandle, router};
use chainmux_rpc::{Pool, PoolConfig};
use chainmux_store::Store;
use chainmux_testkit::TestDb;
use serde_json::{Value, json};

use super::{StatusCode, config};

pub(crate) const SOL: &str = "solana-test";
/// An EVM chain with nothing stored, served next to the Solana one.
pub(crate) const EVM: &str = "evm-empty";

pub(crate) const LAST_SLOT: u64 = 305;
pub(crate) const SOL_HEADS: Heads = Heads { latest: 305, safe: None, finalized: Some(301) };

/// The System program, and the all-zero address mints come from and burns go to.
pub(crate) const SYSTEM: &str = "11111111111111111111111111111111";
/// The SPL Token program: its real id, so base58 rendering is checked against a known spelling.
pub(crate) const TOKEN_PROGRAM: &str = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_PROGRAM_HEX: &str = "06ddf6e1d765a193d9cbe146ceeb79ac1cb485ed5f5b37913a8cf5857eff00a9";
/// An application program: 32 bytes of 0xff, whose base58 is spelled out here.
pub(crate) const APP: &str = "JEKNVnkbo3jma5nREBBJCDoXFVeKkD56V3xKrvRmWxFG";

pub(crate) const ALICE: &str = "alice";
pub(crate) const BOB: &str = "bob";
pub(crate) const CAROL: &str = "carol";
pub(crate) const ALICE_ATA: &str = "alice token account";
pub(crate) const ALICE_ATA2: &str = "alice second token account";
pub(crate) const BOB_ATA: &str = "bob token account";
pub(crate) const CAROL_ATA: &str = "carol token account";
pub(crate) const MINT: &str = "mint";

pub(crate) const FAILED_ERROR: &str = r#"{"InstructionError":[0,{"Custom":1}]}"#;

/// A 32-byte address named by `label`; [`SYSTEM`], [`TOKEN_PROGRAM`] and [`APP`] are their fixed addresses.
pub(crate) fn key(label: &str) -> Bytes {
    match label {
        SYSTEM => Bytes::from(vec![0u8; 32]),
        TOKEN_PROGRAM => TOKEN_PROGRAM_HEX.parse().expect("hex"),
        APP => Bytes::from(vec![0xffu8; 32]),
        _ => keccak256(format!("solana gateway test key {label}")).to_vec().into(),
    }
}

/// Base58, as the API renders Solana ids.
pub(crate) fn b58(bytes: impl AsRef<[u8]>) -> String {
    bs58::encode(bytes).into_string()
}

/// The base58 address named by `label`.
pub(crate) fn addr(label: &str) -> String {
    b58(key(label))
}

pub(crate) fn slot_hash(slot: u64) -> B256 {
    keccak256(format!("solana gateway test slot {slot}"))
}

fn slot_ptr(slot: u64) -> BlockPtr {
    BlockPtr::new(slot, slot_hash(slot))
}

/// The 64-byte first signature of transaction `index` of `slot`.
pub(crate) fn signature(slot: u64, index: u32) -> Bytes {
    let mut bytes = keccak256(format!("solana gateway test signature {slot}.{index}")).to_vec();
    bytes
        .extend_from_slice(keccak256(format!("solana gateway test signature {slot}.{index} (2)")).as_slice());
    bytes.into()
}

/// Builds one slot's block; transactions get increasing indexes, and within a transaction every instruction
/// (listed or not) takes the next execution position.
pub(crate) struct SolanaBlockBuilder {
    slot: u64,
    parent: Option<u64>,
    height: u64,
    timestamp: u64,
    transactions: Vec<Transaction>,
    transfers: Vec<Transfer>,
    instructions: Vec<Instruction>,
    positions: Vec<u32>,
}

impl SolanaBlockBuilder {
    pub(crate) fn new(slot: u64, parent: Option<u64>, height: u64) -> Self {
        Self {
            slot,
            parent,
            height,
            timestamp: 1_750_000_000 + slot,
            transactions: Vec::new(),
            transfers: Vec::new(),
            instructions: Vec::new(),
            positions: Vec::new(),
        }
    }

    /// A transaction paid by `fee_payer`; fails with `error` when given. Returns its index.
    pub(crate) fn tx(&mut self, fee_payer: &str, fee: u128, compute_units: u64, error: Option<&str>) -> u32 {
        let index = u32::try_from(self.transactions.len()).expect("index");
        self.transactions.push(Transaction {
            hash: signature(self.slot, index),
            index,
            from: key(fee_payer),
            to: None,
            value: U256::ZERO,
            nonce: 0,
            gas_limit: 0,
            gas_price: None,
            gas_used: Some(compute_units),
            status: Some(error.is_none()),
            contract_address: None,
            input: Bytes::new(),
            fee: Some(fee),
            error: error.map(str::to_owned),
        });
        self.positions.push(0);
        index
    }

    /// The next execution position in transaction `tx`.
    fn position(&mut self, tx: u32) -> u32 {
        let next = &mut self.positions[tx as usize];
        *next += 1;
        *next - 1
    }

    /// An instruction of a listed program, at the next position of `tx`; returns the position.
    pub(crate) fn instruction(
        &mut self,
        tx: u32,
        (outer_index, inner_index): (u32, Option<u32>),
        program: &str,
        accounts: &[&str],
        data: &[u8],
        logs: &[&str],
    ) -> u32 {
        let position = self.position(tx);
        self.instructions.push(Instruction {
            tx_hash: signature(self.slot, tx),
            tx_index: tx,
            position,
            outer_index,
            inner_index,
            stack_height: inner_index.map_or(1, |_| 2),
            program: key(program),
            accounts: accounts.iter().map(|a| key(a)).collect(),
            data: Bytes::copy_from_slice(data),
            logs: logs.iter().map(|l| (*l).to_owned()).collect(),
        });
        position
    }

    /// A System transfer, at the next position of `tx` (System is not a listed program: no instruction row).
    pub(crate) fn sol(&mut self, tx: u32, from: &str, to: &str, lamports: u64) {
        let position = self.position(tx);
        self.transfers.push(Transfer {
            tx_hash: signature(self.slot, tx),
            log_index: tx,
            batch_index: position,
            standard: TransferStandard::Sol,
            token: None,
            from: key(from),
            to: key(to),
            amount: U256::from(lamports),
            token_id: None,
            from_owner: None,
            to_owner: None,
            decimals: None,
        });
    }

    /// An SPL transfer of [`MINT`] made by the TOKEN instruction at `position`; owners `None` for the zero address.
    pub(crate) fn spl(
        &mut self,
        tx: u32,
        position: u32,
        (from, from_owner): (&str, Option<&str>),
        (to, to_owner): (&str, Option<&str>),
        amount: u64,
    ) {
        self.transfers.push(Transfer {
            tx_hash: signature(self.slot, tx),
            log_index: tx,
            batch_index: position,
            standard: TransferStandard::Spl,
            token: Some(key(MINT)),
            from: key(from),
            to: key(to),
            amount: U256::from(amount),
            token_id: None,
            from_owner: from_owner.map(key),
            to_owner: to_owner.map(key),
            decimals: Some(6),
        });
    }

    pub(crate) fn build(self) -> NormalizedBlock {
        NormalizedBlock {
            ptr: slot_ptr(self.slot),
            parent: self.parent.map(slot_ptr),
            timestamp: self.timestamp,
            height: Some(self.height),
            transactions: self.transactions,
            logs: Vec::new(),
            transfers: self.transfers,
            instructions: self.instructions,
            events: Vec::new(),
            created_contracts: Vec::new(),
        }
    }
}

/// The synthetic chain described in the module docs.
pub(crate) fn solana_blocks() -> Vec<NormalizedBlock> {
    let mut s300 = SolanaBlockBuilder::new(300, None, 280);
    let t = s300.tx(ALICE, 5000, 150, None);
    s300.sol(t, ALICE, BOB, 1_500_000_000);
    let t = s300.tx(CAROL, 5000, 4_500, None);
    let mut mint_to = vec![7u8];
    mint_to.extend_from_slice(&1_000_000_000u64.to_le_bytes());
    let p = s300.instruction(
        t,
        (0, None),
        TOKEN_PROGRAM,
        &[MINT, ALICE_ATA, CAROL],
        &mint_to,
        &["Program log: Instruction: MintTo"],
    );
    s300.spl(t, p, (SYSTEM, None), (ALICE_ATA, Some(ALICE)), 1_000_000_000);

    let mut s301 = SolanaBlockBuilder::new(301, Some(300), 281);
    let t = s301.tx(ALICE, 7_500, 30_000, None);
    s301.instruction(
        t,
        (0, None),
        APP,
        &[ALICE, ALICE_ATA, BOB_ATA, TOKEN_PROGRAM],
        &[0xde, 0xad, 0xbe, 0xef],
        &["Program log: Instruction: Pay", "Program data: AQID"],
    );
    let p = s301.instruction(
        t,
        (0, Some(0)),
        TOKEN_PROGRAM,
        &[ALICE_ATA, BOB_ATA, ALICE],
        &[3, 0x80, 0xb2, 0xe6, 0x0e, 0, 0, 0, 0],
        &["Program log: Instruction: Transfer"],
    );
    s301.spl(t, p, (ALICE_ATA, Some(ALICE)), (BOB_ATA, Some(BOB)), 250_000_000);
    let t = s301.tx(BOB, 5000, 1_200, Some(FAILED_ERROR));
    s301.instruction(
        t,
        (0, None),
        APP,
        &[BOB],
        &[1],
        &["Program log: insufficient funds", "Program failed: custom program error: 0x1"],
    );

    let mut s303 = SolanaBlockBuilder::new(303, Some(301), 282);
    s303.timestamp = 0;
    let t = s303.tx(BOB, 5000, 6_000, None);
    let p = s303.instruction(
        t,
        (0, None),
        TOKEN_PROGRAM,
        &[BOB_ATA, MINT, CAROL_ATA, BOB],
        &[12, 0, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, 6],
        &["Program log: Instruction: TransferChecked"],
    );
    s303.spl(t, p, (BOB_ATA, Some(BOB)), (CAROL_ATA, Some(CAROL)), 100_000_000);
    s303.sol(t, BOB, CAROL, 42);
    let t = s303.tx(CAROL, 5000, 4_000, None);
    let p = s303.instruction(
        t,
        (0, None),
        TOKEN_PROGRAM,
        &[CAROL_ATA, MINT, CAROL],
        &[8, 1, 0, 0, 0, 0, 0, 0, 0],
        &["Program log: Instruction: Burn"],
    );
    s303.spl(t, p, (CAROL_ATA, Some(CAROL)), (SYSTEM, None), 1);

    let mut s304 = SolanaBlockBuilder::new(304, Some(303), 283);
    let t = s304.tx(ALICE, 5000, 5_000, None);
    let p = s304.instruction(
        t,
        (0, None),
        TOKEN_PROGRAM,
        &[ALICE_ATA, ALICE_ATA2, ALICE],
        &[3, 5, 0, 0, 0, 0, 0, 0, 0],
        &[],
    );
    s304.spl(t, p, (ALICE_ATA, Some(ALICE)), (ALICE_ATA2, Some(ALICE)), 5);
    s304.instruction(t, (1, None), APP, &[], &[], &[]);
    let t = s304.tx(CAROL, 5000, 150, None);
    s304.sol(t, CAROL, ALICE, u64::MAX);

    let s305 = SolanaBlockBuilder::new(305, Some(304), 284);

    [s300, s301, s303, s304, s305].into_iter().map(SolanaBlockBuilder::build).collect()
}

/// Finality of a slot under [`SOL_HEADS`], spelled out independently of the code under test.
pub(crate) fn sol_finality(slot: u64) -> &'static str {
    if slot <= 301 { "finalized" } else { "confirmed" }
}

pub(crate) struct SolanaFixture {
    pub(crate) app: Router,
    pub(crate) blocks: Vec<NormalizedBlock>,
    _db: TestDb,
}

impl SolanaFixture {
    /// Fresh database with the Solana chain and [`SOL_HEADS`], the EVM chain registered with nothing stored, and
    /// the router over both with the common [`config`].
    pub(crate) async fn new() -> Self {
        let db = TestDb::create().await;
        let store = Store::connect(&db.url, 5).await.expect("connect to the test database");
        store.migrate().await.expect("migrate");
        let solana = ChainSpec { name: SOL.into(), kind: ChainKind::Solana, chain_id: 0 };
        let evm = ChainSpec { name: EVM.into(), kind: ChainKind::Evm, chain_id: 31337 };
        store.register_chain(&solana).await.expect("register the Solana chain");
        store.register_chain(&evm).await.expect("register the EVM chain");

        let blocks = solana_blocks();
        let (first, second) = blocks.split_at(3);
        store.write_batch(SOL, None, first).await.expect("write slots 300..=303");
        let stats = store.write_batch(SOL, Some(slot_ptr(303)), second).await.expect("write slots 304..=305");
        assert_eq!((stats.blocks, stats.instructions), (2, 2));
        store.set_heads(SOL, &SOL_HEADS).await.expect("set heads");

        let handle = |spec: ChainSpec| {
            let pool = Arc::new(Pool::new(spec.name.clone(), Vec::new(), PoolConfig::default()));
            ChainHandle { spec, pool }
        };
        let state = AppState::new(store, vec![handle(solana), handle(evm)], config());
        Self { app: router(state), blocks, _db: db }
    }

    pub(crate) async fn get(&self, uri: &str) -> (StatusCode, Value) {
        super::get(&self.app, uri).await
    }

    pub(crate) async fn get_ok(&self, uri: &str) -> Value {
        super::get_ok(&self.app, uri).await
    }

    /// Every page of `uri`, checking that each reports the Solana chain's indexed head.
    pub(crate) async fn all_pages(&self, uri: &str, limit: usize) -> Vec<Vec<Value>> {
        super::all_pages(&self.app, uri, limit, &sol_indexed_head()).await
    }
}

/// `indexed_head` of the Solana chain's pages: the last written slot, its hash in base58.
pub(crate) fn sol_indexed_head() -> Value {
    json!({ "number": LAST_SLOT, "hash": b58(slot_hash(LAST_SLOT)) })
}

/// The API rendering of a stored Solana transfer, from the fixture data.
pub(crate) fn sol_transfer_json(block: &NormalizedBlock, t: &Transfer) -> Value {
    json!({
        "chain": SOL,
        "block_number": block.ptr.number,
        "block_hash": b58(block.ptr.hash),
        "tx_hash": b58(&t.tx_hash),
        "log_index": t.log_index,
        "batch_index": t.batch_index,
        "standard": t.standard.as_str(),
        "token": t.token.as_ref().map(b58),
        "from": b58(&t.from),
        "to": b58(&t.to),
        "amount": t.amount.to_string(),
        "token_id": null,
        "from_owner": t.from_owner.as_ref().map(b58),
        "to_owner": t.to_owner.as_ref().map(b58),
        "decimals": t.decimals,
        "finality": sol_finality(block.ptr.number),
    })
}

/// The API rendering of a stored instruction, from the fixture data.
pub(crate) fn instruction_json(block: &NormalizedBlock, i: &Instruction) -> Value {
    json!({
        "chain": SOL,
        "slot": block.ptr.number,
        "block_hash": b58(block.ptr.hash),
        "signature": b58(&i.tx_hash),
        "tx_index": i.tx_index,
        "position": i.position,
        "outer_index": i.outer_index,
        "inner_index": i.inner_index,
        "stack_height": i.stack_height,
        "program": b58(&i.program),
        "accounts": i.accounts.iter().map(b58).collect::<Vec<_>>(),
        "data": b58(&i.data),
        "logs": i.logs,
        "tx_success": block.transactions.iter().find(|t| t.index == i.tx_index).and_then(|t| t.status),
        "finality": sol_finality(block.ptr.number),
    })
}

/// The fixture's transfers matching `keep`, in keyset order (slot, tx index, position, standard).
pub(crate) fn expected_sol_transfers(
    blocks: &[NormalizedBlock],
    keep: impl Fn(&Transfer) -> bool,
) -> Vec<Value> {
    super::expected_transfers_rendered(blocks, keep, sol_transfer_json)
}

/// The fixture's instructions matching `keep`, in keyset order (slot, tx index, position).
pub(crate) fn expected_instructions(
    blocks: &[NormalizedBlock],
    keep: impl Fn(&Instruction) -> bool,
) -> Vec<Value> {
    let mut rows: Vec<(&NormalizedBlock, &Instruction)> =
        blocks.iter().flat_map(|b| b.instructions.iter().filter(|i| keep(i)).map(move |i| (b, i))).collect();
    rows.sort_by_key(|(b, i)| (b.ptr.number, i.tx_index, i.position));
    rows.into_iter().map(|(b, i)| instruction_json(b, i)).collect()
}

/// `(slot, tx index, position)` of rendered instructions.
pub(crate) fn instruction_keys(items: &[Value]) -> Vec<(u64, u64, u64)> {
    items
        .iter()
        .map(|i| {
            let n = |k: &str| i[k].as_u64().unwrap_or_else(|| panic!("{k} of {i}"));
            (n("slot"), n("tx_index"), n("position"))
        })
        .collect()
}
