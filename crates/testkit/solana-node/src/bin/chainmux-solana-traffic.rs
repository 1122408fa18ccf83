//! `chainmux-solana-traffic --url http://127.0.0.1:PORT [--seed N]`
//!
//! Sends a fixed scenario of Solana transactions to a local node (normally
//! `chainmux-solana-node`) and prints one JSON "manifest" describing what was sent, so
//! that integration tests can index the node and compare every row with the intent:
//! SOL transfers (one and two per transaction), SPL Token and Token-2022 mints, associated
//! token accounts, mintTo / transfer / transferChecked / burn, one failed transaction that
//! lands on chain, and inner (CPI) transfers made by the associated-token-account program.
//!
//! Every keypair is derived from `--seed` (default 1), so addresses are the same on every
//! run with the same seed; signatures differ because blockhashes do. Each step is sent on
//! its own and waited for at `confirmed` (getSignatureStatuses) before the next one.
//! All addresses, signatures and hashes are base58. Diagnostics go to stderr; the only
//! stdout output is the manifest. Exits non-zero on the first step that does not go as
//! planned (a failure that was not meant, or a success that was meant to fail).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};
use solana_commitment_config::CommitmentConfig;
use solana_hash::Hash;
use solana_instruction::Instruction;
use solana_keypair::Keypair;
use solana_program_pack::Pack;
use solana_pubkey::Pubkey;
use solana_rpc_client::rpc_client::RpcClient;
use solana_rpc_client_api::config::RpcSendTransactionConfig;
use solana_rpc_client_api::request::RpcRequest;
use solana_signature::Signature;
use solana_signer::Signer;
use solana_transaction::Transaction;
use spl_associated_token_account_interface::address::get_associated_token_address_with_program_id;
use spl_associated_token_account_interface::instruction::{create_associated_token_account, recover_nested};
use spl_token_2022_interface::instruction as token_ix;

const USAGE: &str = "usage: chainmux-solana-traffic --url http://127.0.0.1:PORT [--seed N]";
const LAMPORTS_PER_SOL: u64 = 1_000_000_000;
const AIRDROP: u64 = 100 * LAMPORTS_PER_SOL;
/// How long one transaction may take to reach `confirmed` (slots are 250 ms on surfpool).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);
/// Space of a Token-2022 account with the ImmutableOwner extension, as the ATA program
/// creates it: 165 (base) + 1 (account type) + 4 (TLV header of an empty extension).
const TOKEN_2022_ATA_LEN: usize = 170;
/// What is put on the Token-2022 ATA address of B before it is created, so that the ATA
/// program tops it up with an inner System `transfer` instead of `createAccount`.
const PREFUND: u64 = 1_000_000;

fn main() -> ExitCode {
    match run() {
        Ok(manifest) => match serde_json::to_string_pretty(&manifest) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("chainmux-solana-traffic: serializing the manifest: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("chainmux-solana-traffic: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------
// Manifest (stdout). Field names are the contract with crates/testkit/src/solana.rs.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct Manifest {
    seed: u64,
    genesis_hash: String,
    /// Slot of the first and of the last transaction of the scenario.
    first_slot: u64,
    last_slot: u64,
    /// Wallets by role: `payer`, `a`, `b`, and `faucet` (the airdrop's sender).
    wallets: Vec<Wallet>,
    mints: Vec<MintInfo>,
    token_accounts: Vec<TokenAccountInfo>,
    transactions: Vec<TxRecord>,
}

#[derive(Debug, Serialize)]
struct Wallet {
    role: String,
    address: String,
}

#[derive(Debug, Serialize)]
struct MintInfo {
    label: String,
    mint: String,
    program: String,
    decimals: u8,
    mint_authority: String,
}

#[derive(Debug, Serialize)]
struct TokenAccountInfo {
    address: String,
    mint: String,
    owner: String,
    program: String,
}

#[derive(Debug, Serialize)]
struct TxRecord {
    /// What the step does, for humans and failure messages.
    label: String,
    signature: String,
    slot: u64,
    success: bool,
    fee_payer: String,
    /// Lamports, as the node's getTransaction reports it.
    fee: u64,
    /// `meta.err` of a failed transaction, as JSON; null on success.
    error: Value,
    /// Transfers made by the transaction's top-level instructions, in instruction order.
    /// For a failed transaction: what it tried (nothing moved).
    transfers: Vec<TransferRecord>,
    /// Transfers the scenario knows its top-level instructions make through CPI.
    inner_transfers: Vec<TransferRecord>,
}

#[derive(Debug, Clone, Serialize)]
struct TransferRecord {
    /// "sol" or "spl".
    standard: &'static str,
    /// The program executing the transfer (System, Token or Token-2022).
    program: String,
    /// The mint; null for SOL.
    token: Option<String>,
    /// SOL: wallets. SPL: token accounts; the all-zero address for mintTo's source and
    /// burn's destination.
    from: String,
    to: String,
    /// SPL: owners of `from` / `to` (null on the all-zero side). SOL: null.
    from_owner: Option<String>,
    to_owner: Option<String>,
    /// Lamports or raw token units, as a decimal string.
    amount: String,
    /// SPL: the mint's decimals. SOL: null.
    decimals: Option<u8>,
}

// ---------------------------------------------------------------------------------------
// Scenario
// ---------------------------------------------------------------------------------------

/// The all-zero address: mints come from it, burns go to it (chainmux's convention).
fn zero() -> Pubkey {
    Pubkey::new_from_array([0; 32])
}

fn b58(key: &Pubkey) -> String {
    key.to_string()
}

/// A keypair that depends only on the seed and the role name: any 32 bytes are a valid
/// ed25519 secret key, so the seed and role are laid out into one.
fn derive_keypair(seed: u64, role: &str) -> Keypair {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&seed.to_le_bytes());
    let tag = b"chainmux";
    secret[8..16].copy_from_slice(tag);
    for (slot, byte) in secret[16..].iter_mut().zip(role.bytes()) {
        *slot = byte;
    }
    Keypair::new_from_array(secret)
}

fn sol(from: &Pubkey, to: &Pubkey, lamports: u64) -> TransferRecord {
    TransferRecord {
        standard: "sol",
        program: b58(&solana_system_interface::program::id()),
        token: None,
        from: b58(from),
        to: b58(to),
        from_owner: None,
        to_owner: None,
        amount: lamports.to_string(),
        decimals: None,
    }
}

/// One token mint the scenario works with, and the helpers that describe its transfers.
struct Token {
    label: &'static str,
    program: Pubkey,
    mint: Keypair,
    decimals: u8,
}

impl Token {
    fn mint(&self) -> Pubkey {
        self.mint.pubkey()
    }

    fn ata(&self, owner: &Pubkey) -> Pubkey {
        get_associated_token_address_with_program_id(owner, &self.mint(), &self.program)
    }

    fn spl(
        &self,
        from: (&Pubkey, Option<&Pubkey>),
        to: (&Pubkey, Option<&Pubkey>),
        amount: u64,
    ) -> TransferRecord {
        TransferRecord {
            standard: "spl",
            program: b58(&self.program),
            token: Some(b58(&self.mint())),
            from: b58(from.0),
            to: b58(to.0),
            from_owner: from.1.map(b58),
            to_owner: to.1.map(b58),
            amount: amount.to_string(),
            decimals: Some(self.decimals),
        }
    }

    fn info(&self, authority: &Pubkey) -> MintInfo {
        MintInfo {
            label: self.label.to_string(),
            mint: b58(&self.mint()),
            program: b58(&self.program),
            decimals: self.decimals,
            mint_authority: b58(authority),
        }
    }

    fn account_info(&self, address: &Pubkey, owner: &Pubkey) -> TokenAccountInfo {
        TokenAccountInfo {
            address: b58(address),
            mint: b58(&self.mint()),
            owner: b58(owner),
            program: b58(&self.program),
        }
    }
}

/// One step of the scenario before it is sent.
struct Step<'a> {
    label: String,
    instructions: Vec<Instruction>,
    fee_payer: &'a Keypair,
    /// Other signers besides the fee payer.
    signers: Vec<&'a Keypair>,
    expect_success: bool,
    transfers: Vec<TransferRecord>,
    inner_transfers: Vec<TransferRecord>,
}

impl<'a> Step<'a> {
    fn new(label: impl Into<String>, fee_payer: &'a Keypair) -> Self {
        Step {
            label: label.into(),
            instructions: Vec::new(),
            fee_payer,
            signers: Vec::new(),
            expect_success: true,
            transfers: Vec::new(),
            inner_transfers: Vec::new(),
        }
    }

    fn ix(mut self, ix: Instruction) -> Self {
        self.instructions.push(ix);
        self
    }

    fn signer(mut self, signer: &'a Keypair) -> Self {
        self.signers.push(signer);
        self
    }

    fn transfer(mut self, t: TransferRecord) -> Self {
        self.transfers.push(t);
        self
    }

    fn inner(mut self, t: TransferRecord) -> Self {
        self.inner_transfers.push(t);
        self
    }

    fn failing(mut self) -> Self {
        self.expect_success = false;
        self
    }
}

fn run() -> Result<Manifest> {
    let (url, seed) = parse_args()?;
    let client = RpcClient::new_with_commitment(url.clone(), CommitmentConfig::confirmed());
    let genesis_hash = client.get_genesis_hash().with_context(|| format!("getGenesisHash on {url}"))?;

    let payer = derive_keypair(seed, "payer");
    let a = derive_keypair(seed, "a");
    let b = derive_keypair(seed, "b");
    let (pk_payer, pk_a, pk_b) = (payer.pubkey(), a.pubkey(), b.pubkey());
    let classic = Token {
        label: "spl-token",
        program: spl_token_interface::id(),
        mint: derive_keypair(seed, "mint-token"),
        decimals: 6,
    };
    let t22 = Token {
        label: "token-2022",
        program: spl_token_2022_interface::id(),
        mint: derive_keypair(seed, "mint-token-2022"),
        decimals: 9,
    };

    let mut records = Vec::new();

    // 1. Airdrop: a System transfer from surfpool's faucet, which signs and pays for it.
    let airdrop_sig = client.request_airdrop(&pk_payer, AIRDROP).context("requestAirdrop")?;
    let (slot, err) = wait_confirmed(&client, &airdrop_sig)?;
    if err.is_some() {
        bail!("the airdrop failed: {err:?}");
    }
    let (fee, faucet, _) = tx_meta(&client, &airdrop_sig)?;
    let faucet_key: Pubkey = faucet.parse().map_err(|e| anyhow!("faucet address {faucet:?}: {e:?}"))?;
    records.push(TxRecord {
        label: "airdrop to payer".into(),
        signature: airdrop_sig.to_string(),
        slot,
        success: true,
        fee_payer: faucet.clone(),
        fee,
        error: Value::Null,
        transfers: vec![sol(&faucet_key, &pk_payer, AIRDROP)],
        inner_transfers: Vec::new(),
    });

    // 2. Plain SOL transfers: one per transaction, then two in one transaction.
    let mut steps = vec![
        Step::new("sol payer->a", &payer)
            .ix(solana_system_interface::instruction::transfer(&pk_payer, &pk_a, LAMPORTS_PER_SOL))
            .transfer(sol(&pk_payer, &pk_a, LAMPORTS_PER_SOL)),
        Step::new("sol payer->b", &payer)
            .ix(solana_system_interface::instruction::transfer(&pk_payer, &pk_b, LAMPORTS_PER_SOL / 2))
            .transfer(sol(&pk_payer, &pk_b, LAMPORTS_PER_SOL / 2)),
        Step::new("two sol transfers payer->a, payer->b", &payer)
            .ix(solana_system_interface::instruction::transfer(&pk_payer, &pk_a, LAMPORTS_PER_SOL / 4))
            .ix(solana_system_interface::instruction::transfer(&pk_payer, &pk_b, LAMPORTS_PER_SOL / 8))
            .transfer(sol(&pk_payer, &pk_a, LAMPORTS_PER_SOL / 4))
            .transfer(sol(&pk_payer, &pk_b, LAMPORTS_PER_SOL / 8)),
    ];
    for step in steps.drain(..) {
        records.push(send_step(&client, step)?);
    }

    let mint_rent = client
        .get_minimum_balance_for_rent_exemption(spl_token_interface::state::Mint::LEN)
        .context("getMinimumBalanceForRentExemption (mint)")?;
    let ata_2022_rent = client
        .get_minimum_balance_for_rent_exemption(TOKEN_2022_ATA_LEN)
        .context("getMinimumBalanceForRentExemption (Token-2022 account)")?;

    let mut mints = Vec::new();
    let mut token_accounts = Vec::new();
    for token in [&classic, &t22] {
        let unit = 10u64.pow(u32::from(token.decimals));
        let mint = token.mint();
        let (ata_a, ata_b) = (token.ata(&pk_a), token.ata(&pk_b));
        let name = token.label;
        mints.push(token.info(&pk_payer));
        token_accounts.push(token.account_info(&ata_a, &pk_a));
        token_accounts.push(token.account_info(&ata_b, &pk_b));
        let mut steps = Vec::new();

        // Mint: createAccount (its lamports are rent, not listed as a transfer) + initializeMint2.
        steps.push(
            Step::new(format!("{name}: create mint"), &payer)
                .signer(&token.mint)
                .ix(solana_system_interface::instruction::create_account(
                    &pk_payer,
                    &mint,
                    mint_rent,
                    spl_token_interface::state::Mint::LEN as u64,
                    &token.program,
                ))
                .ix(token_ix::initialize_mint2(&token.program, &mint, &pk_payer, None, token.decimals)?),
        );
        // ATA for A: the ATA program creates it through CPI into System (createAccount) and
        // the token program (initializeAccount3, plus getAccountDataSize etc. on Token-2022).
        steps.push(Step::new(format!("{name}: create ata a"), &payer).ix(create_associated_token_account(
            &pk_payer,
            &pk_a,
            &mint,
            &token.program,
        )));
        if token.program == spl_token_2022_interface::id() {
            // Prefunding the ATA address makes the ATA program top it up with an inner System
            // `transfer` (then allocate + assign) instead of `createAccount`: an inner SOL transfer.
            steps.push(
                Step::new(format!("{name}: prefund ata b address"), &payer)
                    .ix(solana_system_interface::instruction::transfer(&pk_payer, &ata_b, PREFUND))
                    .transfer(sol(&pk_payer, &ata_b, PREFUND)),
            );
            steps.push(
                Step::new(format!("{name}: create prefunded ata b"), &payer)
                    .ix(create_associated_token_account(&pk_payer, &pk_b, &mint, &token.program))
                    .inner(sol(&pk_payer, &ata_b, ata_2022_rent.saturating_sub(PREFUND))),
            );
        } else {
            steps.push(
                Step::new(format!("{name}: create ata b"), &payer).ix(create_associated_token_account(
                    &pk_payer,
                    &pk_b,
                    &mint,
                    &token.program,
                )),
            );
        }
        let minted = 1000 * unit;
        let sent = 250 * unit;
        let sent_checked = 125 * unit;
        let burnt = 50 * unit;
        steps.push(
            Step::new(format!("{name}: mintTo a"), &payer)
                .ix(token_ix::mint_to(&token.program, &mint, &ata_a, &pk_payer, &[], minted)?)
                .transfer(token.spl((&zero(), None), (&ata_a, Some(&pk_a)), minted)),
        );
        steps.push(
            Step::new(format!("{name}: transfer a->b"), &payer)
                .signer(&a)
                .ix(spl_transfer(token, &ata_a, &ata_b, &pk_a, sent)?)
                .transfer(token.spl((&ata_a, Some(&pk_a)), (&ata_b, Some(&pk_b)), sent)),
        );
        // A pays this one: not every transaction has the same fee payer.
        steps.push(
            Step::new(format!("{name}: transferChecked a->b (a pays)"), &a)
                .ix(token_ix::transfer_checked(
                    &token.program,
                    &ata_a,
                    &mint,
                    &ata_b,
                    &pk_a,
                    &[],
                    sent_checked,
                    token.decimals,
                )?)
                .transfer(token.spl((&ata_a, Some(&pk_a)), (&ata_b, Some(&pk_b)), sent_checked)),
        );
        steps.push(
            Step::new(format!("{name}: burn from b"), &payer)
                .signer(&b)
                .ix(token_ix::burn(&token.program, &ata_b, &mint, &pk_b, &[], burnt)?)
                .transfer(token.spl((&ata_b, Some(&pk_b)), (&zero(), None), burnt)),
        );

        if token.program == spl_token_interface::id() {
            // A failed transaction that still lands (sent without preflight): A moves more
            // than it holds; the fee is charged, no tokens move.
            let too_much = minted * 10;
            steps.push(
                Step::new(format!("{name}: failing transfer a->b (insufficient funds)"), &payer)
                    .signer(&a)
                    .ix(spl_transfer(token, &ata_a, &ata_b, &pk_a, too_much)?)
                    .transfer(token.spl((&ata_a, Some(&pk_a)), (&ata_b, Some(&pk_b)), too_much))
                    .failing(),
            );

            // A CPI token transfer without a custom program: the ATA program's RecoverNested
            // moves tokens out of a "nested" ATA (an ATA owned by A's ATA) back to A's ATA
            // with an inner transferChecked, then closes the nested account (rent to A).
            let nested = token.ata(&ata_a);
            let moved = 10 * unit;
            token_accounts.push(token.account_info(&nested, &ata_a));
            steps.push(
                Step::new(format!("{name}: create nested ata (owned by a's ata)"), &payer)
                    .ix(create_associated_token_account(&pk_payer, &ata_a, &mint, &token.program)),
            );
            steps.push(
                Step::new(format!("{name}: transfer a->nested ata"), &payer)
                    .signer(&a)
                    .ix(spl_transfer(token, &ata_a, &nested, &pk_a, moved)?)
                    .transfer(token.spl((&ata_a, Some(&pk_a)), (&nested, Some(&ata_a)), moved)),
            );
            steps.push(
                Step::new(format!("{name}: recoverNested (inner transferChecked nested->a)"), &payer)
                    .signer(&a)
                    .ix(recover_nested(&pk_a, &mint, &mint, &token.program))
                    .inner(token.spl((&nested, Some(&ata_a)), (&ata_a, Some(&pk_a)), moved)),
            );
        }

        for step in steps {
            records.push(send_step(&client, step)?);
        }
    }

    let first_slot = records.iter().map(|r| r.slot).min().unwrap_or_default();
    let last_slot = records.iter().map(|r| r.slot).max().unwrap_or_default();
    Ok(Manifest {
        seed,
        genesis_hash: genesis_hash.to_string(),
        first_slot,
        last_slot,
        wallets: [("payer", b58(&pk_payer)), ("a", b58(&pk_a)), ("b", b58(&pk_b)), ("faucet", faucet)]
            .into_iter()
            .map(|(role, address)| Wallet { role: role.to_string(), address })
            .collect(),
        mints,
        token_accounts,
        transactions: records,
    })
}

/// The unchecked `Transfer` of either token program. Token-2022's builder is deprecated in favour
/// of `transferChecked`, but the program still executes it for mints without a transfer fee and
/// real chains carry it, so the indexer must decode it: it is sent on purpose.
#[allow(deprecated)]
fn spl_transfer(
    token: &Token,
    from: &Pubkey,
    to: &Pubkey,
    authority: &Pubkey,
    amount: u64,
) -> Result<Instruction> {
    Ok(token_ix::transfer(&token.program, from, to, authority, &[], amount)?)
}

/// Sends of one step when the node does not know the blockhash it handed out.
const BLOCKHASH_ATTEMPTS: u32 = 30;

fn send_step(client: &RpcClient, step: Step<'_>) -> Result<TxRecord> {
    let Step { label, instructions, fee_payer, signers, expect_success, transfers, inner_transfers } = step;
    let mut all_signers: Vec<&Keypair> = vec![fee_payer];
    all_signers.extend(signers);
    // Preflight off only where the transaction is meant to fail: it must land with its error.
    let config =
        RpcSendTransactionConfig { skip_preflight: !expect_success, ..RpcSendTransactionConfig::default() };
    // On a loaded machine the node sometimes rejects the blockhash it has just handed out ("Blockhash not found"):
    // the transaction did not land, so it is signed again with a fresh one, as wallets do.
    let mut attempt = 0;
    let signature = loop {
        attempt += 1;
        let blockhash: Hash =
            client.get_latest_blockhash().with_context(|| format!("{label}: getLatestBlockhash"))?;
        let tx = Transaction::new_signed_with_payer(
            &instructions,
            Some(&fee_payer.pubkey()),
            &all_signers,
            blockhash,
        );
        match client.send_transaction_with_config(&tx, config) {
            Ok(signature) => break signature,
            Err(err) if attempt < BLOCKHASH_ATTEMPTS && err.to_string().contains("Blockhash not found") => {
                eprintln!("chainmux-solana-traffic: {label}: blockhash not found; signing again");
                // Give the node a few slots (250 ms each) to register a newer blockhash.
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            Err(err) => return Err(err).with_context(|| format!("{label}: sendTransaction")),
        }
    };
    let (slot, err) = wait_confirmed(client, &signature).with_context(|| format!("{label}: {signature}"))?;
    let success = err.is_none();
    if success != expect_success {
        bail!(
            "{label}: {signature} {} but was meant to {}: {err:?}",
            outcome(success),
            outcome(expect_success)
        );
    }
    let (fee, payer, error) =
        tx_meta(client, &signature).with_context(|| format!("{label}: getTransaction"))?;
    if payer != b58(&fee_payer.pubkey()) {
        bail!("{label}: getTransaction names fee payer {payer}, expected {}", fee_payer.pubkey());
    }
    eprintln!("chainmux-solana-traffic: slot {slot} {signature} {} {label}", outcome(success));
    Ok(TxRecord {
        label,
        signature: signature.to_string(),
        slot,
        success,
        fee_payer: payer,
        fee,
        error,
        transfers,
        inner_transfers,
    })
}

fn outcome(success: bool) -> &'static str {
    if success { "succeeded" } else { "failed" }
}

/// Polls getSignatureStatuses until the transaction is `confirmed` (or `finalized`).
/// Returns its slot and its error, if it failed.
fn wait_confirmed(client: &RpcClient, signature: &Signature) -> Result<(u64, Option<String>)> {
    let deadline = Instant::now() + CONFIRM_TIMEOUT;
    loop {
        let statuses = client.get_signature_statuses(&[*signature]).context("getSignatureStatuses")?;
        if let Some(Some(status)) = statuses.value.first()
            && status.satisfies_commitment(CommitmentConfig::confirmed())
        {
            return Ok((status.slot, status.err.as_ref().map(|e| e.to_string())));
        }
        if Instant::now() >= deadline {
            bail!("not confirmed within {CONFIRM_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Fee, fee payer and `meta.err` of a confirmed transaction, from getTransaction.
fn tx_meta(client: &RpcClient, signature: &Signature) -> Result<(u64, String, Value)> {
    let params = json!([
        signature.to_string(),
        {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0}
    ]);
    let tx: Value = client.send(RpcRequest::GetTransaction, params)?;
    if tx.is_null() {
        bail!("getTransaction returned null for {signature}");
    }
    let fee = tx["meta"]["fee"].as_u64().ok_or_else(|| anyhow!("no meta.fee in {tx}"))?;
    let payer = tx["transaction"]["message"]["accountKeys"][0]
        .as_str()
        .ok_or_else(|| anyhow!("no accountKeys[0] in {tx}"))?
        .to_string();
    Ok((fee, payer, tx["meta"]["err"].clone()))
}

fn parse_args() -> Result<(String, u64)> {
    let mut url = None;
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--url" => url = Some(args.next().ok_or_else(|| anyhow!("--url needs a value\n{USAGE}"))?),
            "--seed" => {
                let value = args.next().ok_or_else(|| anyhow!("--seed needs a value\n{USAGE}"))?;
                seed = value.parse().map_err(|_| anyhow!("--seed: not a u64: {value:?}"))?;
            }
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    let url = url.ok_or_else(|| anyhow!("--url is required\n{USAGE}"))?;
    Ok((url, seed))
}
