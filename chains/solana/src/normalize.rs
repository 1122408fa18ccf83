//! Normalization of Solana blocks: a `getBlock` answer (full transaction details, `json` or `jsonParsed` encoding)
//! becomes the chain-independent [`NormalizedBlock`].
//!
//! Solana has no receipts or event logs: what a transaction did is in its instructions (top-level and the inner
//! ones they invoked) and its status metadata. So transfers are decoded from System and SPL Token instructions,
//! with token-account owners, mints and decimals taken from the transaction's token balances, and the instructions
//! of the programs an operator asked for are kept with the log lines each of them emitted. Both encodings a node
//! can send are accepted and give the same block, so an upstream that answers `jsonParsed` (or a recorded
//! response) is not a different chain. The one difference `jsonParsed` cannot avoid: for instructions the node
//! decoded itself (System, SPL Token, Vote, ...) it no longer sends the raw data and accounts, so such an
//! instruction kept by the [`ProgramFilter`] has empty `data` and `accounts` in that encoding.

mod instructions;
mod logs;

use std::collections::{HashMap, HashSet};

use chainmux_core::{
    B256, BlockPtr, Bytes, Instruction, NetworkError, NormalizedBlock, Transaction, Transfer,
    TransferStandard, U256,
};
use serde_json::Value;
use solana_transaction_status_client_types::option_serializer::OptionSerializer;
use solana_transaction_status_client_types::{
    EncodedTransaction, EncodedTransactionWithStatusMeta, UiCompiledInstruction, UiConfirmedBlock,
    UiInstruction, UiMessage, UiParsedInstruction, UiTransactionStatusMeta,
};

use self::instructions::Movement;
use self::logs::Expected;

/// A Solana address (public key, program id): 32 raw bytes.
pub type Pubkey = [u8; 32];

/// Where mints come from and burns go to in [`Transfer`] rows, as on EVM.
const ZERO_ADDRESS: Pubkey = [0; 32];

/// The programs whose instructions are kept as [`Instruction`] rows (the chain's `[[chains.programs]]`).
/// The default, empty filter keeps none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramFilter {
    ids: HashSet<Pubkey>,
}

impl ProgramFilter {
    pub fn new(ids: impl IntoIterator<Item = Pubkey>) -> Self {
        Self { ids: ids.into_iter().collect() }
    }

    /// A filter from base58 program ids, as configs and explorers write them.
    pub fn from_base58<S: AsRef<str>>(ids: impl IntoIterator<Item = S>) -> Result<Self, InvalidProgramId> {
        ids.into_iter()
            .map(|id| decode_array(id.as_ref()).ok_or_else(|| InvalidProgramId(id.as_ref().to_owned())))
            .collect()
    }

    pub fn contains(&self, program: &Pubkey) -> bool {
        self.ids.contains(program)
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl FromIterator<Pubkey> for ProgramFilter {
    fn from_iter<I: IntoIterator<Item = Pubkey>>(ids: I) -> Self {
        Self::new(ids)
    }
}

/// A program id that is not a base58-encoded 32-byte address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidProgramId(pub String);

impl std::fmt::Display for InvalidProgramId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a base58 32-byte program id", self.0)
    }
}

impl std::error::Error for InvalidProgramId {}

/// Decodes base58 text that must be exactly `N` bytes (addresses, hashes, signatures).
pub(crate) fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    match bs58::decode(text).onto(&mut out) {
        Ok(len) if len == N => Some(out),
        _ => None,
    }
}

fn key_bytes(key: &Pubkey) -> Bytes {
    Bytes::copy_from_slice(key)
}

fn option<T>(value: &OptionSerializer<T>) -> Option<&T> {
    match value {
        OptionSerializer::Some(value) => Some(value),
        OptionSerializer::None | OptionSerializer::Skip => None,
    }
}

fn index_u32(index: usize, what: &str) -> Result<u32, String> {
    u32::try_from(index).map_err(|_| format!("{what} {index} does not fit in u32"))
}

/// Normalizes the block at `slot`, fetched with `getBlock` (`transactionDetails: "full"`,
/// `maxSupportedTransactionVersion: 0`, encoding `json` or `jsonParsed`). Instructions are kept for the programs in
/// `programs`. Data that does not decode (bad base58, an account index out of range, instruction data too short
/// for what it claims to be) is [`NetworkError::Malformed`], naming the slot and the transaction's signature.
pub fn normalize_block(
    slot: u64,
    block: &UiConfirmedBlock,
    programs: &ProgramFilter,
) -> Result<NormalizedBlock, NetworkError> {
    let block_error = |what: String| NetworkError::Malformed(format!("slot {slot}: {what}"));
    let hash = |text: &str, what: &str| {
        decode_array::<32>(text).map(B256::from).ok_or_else(|| block_error(format!("bad {what} {text:?}")))
    };
    let ptr = BlockPtr::new(slot, hash(&block.blockhash, "blockhash")?);
    let parent = match block.parent_slot {
        // Only the genesis block is its own parent.
        parent if parent == slot => None,
        parent if parent < slot => {
            Some(BlockPtr::new(parent, hash(&block.previous_blockhash, "previousBlockhash")?))
        }
        parent => return Err(block_error(format!("parent slot {parent} is above the block"))),
    };
    let timestamp = match block.block_time {
        None => 0,
        Some(time) => u64::try_from(time).map_err(|_| block_error(format!("negative blockTime {time}")))?,
    };
    let transactions = block.transactions.as_deref().ok_or_else(|| {
        block_error("no transactions in the answer (not fetched with transactionDetails \"full\")".to_owned())
    })?;
    let mut out = NormalizedBlock {
        ptr,
        parent,
        timestamp,
        height: block.block_height,
        transactions: Vec::with_capacity(transactions.len()),
        logs: Vec::new(),
        transfers: Vec::new(),
        instructions: Vec::new(),
        events: Vec::new(),
        created_contracts: Vec::new(),
    };
    for (index, tx) in transactions.iter().enumerate() {
        let index = index_u32(index, "transaction index").map_err(block_error)?;
        normalize_transaction(index, tx, programs, &mut out).map_err(|what| {
            let label = match &tx.transaction {
                EncodedTransaction::Json(ui) => ui.signatures.first().cloned(),
                _ => None,
            };
            let label = label.unwrap_or_else(|| format!("#{index}"));
            NetworkError::Malformed(format!("slot {slot}, transaction {label}: {what}"))
        })?;
    }
    Ok(out)
}

/// One instruction of a transaction, top-level or inner, with its program and accounts resolved.
#[derive(Debug)]
struct Step<'a> {
    outer: u32,
    inner: Option<u32>,
    /// The inner instruction's `stackHeight`, where the node reported one (recent nodes do).
    declared_height: Option<u32>,
    program: Pubkey,
    body: Body<'a>,
}

#[derive(Debug)]
enum Body<'a> {
    /// Accounts and base58 data, as `json` sends every instruction and `jsonParsed` the ones it cannot parse.
    Raw { accounts: Vec<Pubkey>, data: &'a str },
    /// The node's own decoding (`jsonParsed`): the `parsed` value, without raw data or account list.
    Parsed(&'a Value),
}

fn resolve(keys: &[Pubkey], index: u8) -> Result<Pubkey, String> {
    keys.get(usize::from(index))
        .copied()
        .ok_or_else(|| format!("account index {index} out of range ({} account keys)", keys.len()))
}

fn decode_key(text: &str) -> Result<Pubkey, String> {
    decode_array(text).ok_or_else(|| format!("bad address {text:?}"))
}

fn compiled_step<'a>(
    ix: &'a UiCompiledInstruction,
    keys: &[Pubkey],
    outer: u32,
    inner: Option<u32>,
) -> Result<Step<'a>, String> {
    let accounts = ix.accounts.iter().map(|&i| resolve(keys, i)).collect::<Result<_, _>>()?;
    Ok(Step {
        outer,
        inner,
        declared_height: ix.stack_height,
        program: resolve(keys, ix.program_id_index)?,
        body: Body::Raw { accounts, data: &ix.data },
    })
}

fn step<'a>(
    ix: &'a UiInstruction,
    keys: &[Pubkey],
    outer: u32,
    inner: Option<u32>,
) -> Result<Step<'a>, String> {
    match ix {
        UiInstruction::Compiled(ix) => compiled_step(ix, keys, outer, inner),
        UiInstruction::Parsed(UiParsedInstruction::Parsed(ix)) => Ok(Step {
            outer,
            inner,
            declared_height: ix.stack_height,
            program: decode_key(&ix.program_id)?,
            body: Body::Parsed(&ix.parsed),
        }),
        UiInstruction::Parsed(UiParsedInstruction::PartiallyDecoded(ix)) => Ok(Step {
            outer,
            inner,
            declared_height: ix.stack_height,
            program: decode_key(&ix.program_id)?,
            body: Body::Raw {
                accounts: ix.accounts.iter().map(|a| decode_key(a)).collect::<Result<_, _>>()?,
                data: &ix.data,
            },
        }),
    }
}

/// The transaction's account keys, in the order instruction indexes refer to: the message's static keys, then
/// the addresses loaded from lookup tables, writable before read-only. `jsonParsed` lists them all already.
fn account_keys(message: &UiMessage, meta: Option<&UiTransactionStatusMeta>) -> Result<Vec<Pubkey>, String> {
    match message {
        UiMessage::Raw(raw) => {
            let loaded = meta.and_then(|m| option(&m.loaded_addresses));
            let writable = loaded.map(|l| l.writable.as_slice()).unwrap_or_default();
            let readonly = loaded.map(|l| l.readonly.as_slice()).unwrap_or_default();
            raw.account_keys.iter().chain(writable).chain(readonly).map(|k| decode_key(k)).collect()
        }
        UiMessage::Parsed(parsed) => parsed.account_keys.iter().map(|k| decode_key(&k.pubkey)).collect(),
    }
}

/// The transaction's instructions in execution order: top-level instruction `i`, then the inner instructions
/// recorded for `i`, and so on.
fn flatten<'a>(
    message: &'a UiMessage,
    meta: Option<&'a UiTransactionStatusMeta>,
    keys: &[Pubkey],
) -> Result<Vec<Step<'a>>, String> {
    let outer: Vec<Step<'a>> = match message {
        UiMessage::Raw(raw) => raw
            .instructions
            .iter()
            .enumerate()
            .map(|(i, ix)| compiled_step(ix, keys, index_u32(i, "instruction")?, None))
            .collect::<Result<_, _>>()?,
        UiMessage::Parsed(parsed) => parsed
            .instructions
            .iter()
            .enumerate()
            .map(|(i, ix)| step(ix, keys, index_u32(i, "instruction")?, None))
            .collect::<Result<_, _>>()?,
    };
    let mut inner: Vec<Vec<&'a UiInstruction>> = vec![Vec::new(); outer.len()];
    for list in meta.and_then(|m| option(&m.inner_instructions)).map(Vec::as_slice).unwrap_or_default() {
        let slot = inner
            .get_mut(usize::from(list.index))
            .ok_or_else(|| format!("inner instructions for instruction {} of {}", list.index, outer.len()))?;
        slot.extend(&list.instructions);
    }
    let mut steps = Vec::with_capacity(outer.len() + inner.iter().map(Vec::len).sum::<usize>());
    for (outer_step, inner) in outer.into_iter().zip(inner) {
        let outer_index = outer_step.outer;
        steps.push(outer_step);
        for (j, ix) in inner.into_iter().enumerate() {
            steps.push(step(ix, keys, outer_index, Some(index_u32(j, "inner instruction")?))?);
        }
    }
    Ok(steps)
}

fn decode_data(data: &str) -> Result<Vec<u8>, String> {
    bs58::decode(data).into_vec().map_err(|e| format!("bad base58 instruction data: {e}"))
}

/// What the transaction's token balances say about one token account.
#[derive(Debug, Clone, Copy)]
struct TokenAccount {
    mint: Pubkey,
    owner: Option<Pubkey>,
    decimals: u8,
}

/// Token accounts from `pre`/`postTokenBalances`, the post-transaction view winning (it is the current owner),
/// the pre one kept for accounts the transaction closed.
fn token_accounts(
    meta: &UiTransactionStatusMeta,
    keys: &[Pubkey],
) -> Result<HashMap<Pubkey, TokenAccount>, String> {
    let mut accounts = HashMap::new();
    let pre = option(&meta.pre_token_balances).map(Vec::as_slice).unwrap_or_default();
    let post = option(&meta.post_token_balances).map(Vec::as_slice).unwrap_or_default();
    for balance in pre.iter().chain(post) {
        let address = resolve(keys, balance.account_index)?;
        let owner = option(&balance.owner).map(|o| decode_key(o)).transpose()?;
        let entry = TokenAccount {
            mint: decode_key(&balance.mint)?,
            owner,
            decimals: balance.ui_token_amount.decimals,
        };
        accounts
            .entry(address)
            .and_modify(|known: &mut TokenAccount| {
                *known = TokenAccount { owner: entry.owner.or(known.owner), ..entry };
            })
            .or_insert(entry);
    }
    Ok(accounts)
}

fn normalize_transaction(
    index: u32,
    tx: &EncodedTransactionWithStatusMeta,
    programs: &ProgramFilter,
    out: &mut NormalizedBlock,
) -> Result<(), String> {
    let EncodedTransaction::Json(ui) = &tx.transaction else {
        return Err("not in json or jsonParsed encoding".to_owned());
    };
    let signature = ui.signatures.first().ok_or("no signatures")?;
    let hash = Bytes::copy_from_slice(
        &decode_array::<64>(signature).ok_or_else(|| format!("bad signature {signature:?}"))?,
    );
    let meta = tx.meta.as_ref();
    let keys = account_keys(&ui.message, meta)?;
    let fee_payer = keys.first().ok_or("no account keys")?;
    let steps = flatten(&ui.message, meta, &keys)?;
    let error = match meta.and_then(|m| m.err.as_ref()) {
        Some(err) => Some(serde_json::to_string(err).map_err(|e| format!("unprintable err: {e}"))?),
        None => None,
    };
    out.transactions.push(Transaction {
        hash: hash.clone(),
        index,
        from: key_bytes(fee_payer),
        to: None,
        value: U256::ZERO,
        nonce: 0,
        gas_limit: 0,
        gas_price: None,
        gas_used: meta.and_then(|m| option(&m.compute_units_consumed)).copied(),
        status: meta.map(|m| m.err.is_none()),
        contract_address: None,
        input: Bytes::new(),
        fee: meta.map(|m| u128::from(m.fee)),
        error,
    });

    if steps.iter().any(|s| programs.contains(&s.program)) {
        let failed = meta.is_some_and(|m| m.err.is_some());
        let messages = meta.and_then(|m| option(&m.log_messages)).map(Vec::as_slice).unwrap_or_default();
        let expected: Vec<Expected> = steps
            .iter()
            .map(|s| Expected { program: s.program, outer: s.inner.is_none(), height: s.declared_height })
            .collect();
        let attribution = logs::attribute(messages, &expected, failed);
        for (position, step) in steps.iter().enumerate() {
            if !programs.contains(&step.program) {
                continue;
            }
            let (accounts, data) = match &step.body {
                Body::Raw { accounts, data } => {
                    (accounts.iter().map(key_bytes).collect(), Bytes::from(decode_data(data)?))
                }
                Body::Parsed(_) => (Vec::new(), Bytes::new()),
            };
            let (depth, logs) = attribution.get(position).unzip();
            let stack_height = match step.inner {
                None => 1,
                // Old nodes did not report stack heights; the log's invoke depth, where attributed, is the same
                // number. Without either, a CPI is at least at depth 2.
                Some(_) => step.declared_height.or(depth).unwrap_or(2),
            };
            out.instructions.push(Instruction {
                tx_hash: hash.clone(),
                tx_index: index,
                position: index_u32(position, "instruction position")?,
                outer_index: step.outer,
                inner_index: step.inner,
                stack_height,
                program: key_bytes(&step.program),
                accounts,
                data,
                logs: logs.unwrap_or_default(),
            });
        }
    }

    // A failed transaction's instructions were rolled back; without metadata its outcome is unknown.
    let Some(meta) = meta.filter(|m| m.err.is_none()) else { return Ok(()) };
    let token_accounts = if steps.iter().any(|s| instructions::is_token_program(&s.program)) {
        token_accounts(meta, &keys)?
    } else {
        HashMap::new()
    };
    for (position, step) in steps.iter().enumerate() {
        if !instructions::moves_value(&step.program) {
            continue;
        }
        let movement = match &step.body {
            Body::Raw { accounts, data } => {
                instructions::decode_raw(&step.program, accounts, &decode_data(data)?)
            }
            Body::Parsed(parsed) => instructions::decode_parsed(&step.program, parsed),
        }
        .map_err(|e| format!("instruction {position}: {e}"))?;
        let transfer = |standard, token, from: Pubkey, to: Pubkey, amount: u64| Transfer {
            tx_hash: hash.clone(),
            log_index: index,
            batch_index: 0,
            standard,
            token,
            from: key_bytes(&from),
            to: key_bytes(&to),
            amount: U256::from(amount),
            token_id: None,
            from_owner: None,
            to_owner: None,
            decimals: None,
        };
        let batch_index = index_u32(position, "instruction position")?;
        match movement {
            None | Some(Movement::Lamports { lamports: 0, .. }) => {}
            Some(Movement::Lamports { from, to, lamports }) => out
                .transfers
                .push(Transfer { batch_index, ..transfer(TransferStandard::Sol, None, from, to, lamports) }),
            Some(Movement::Tokens { from, to, mint, amount, decimals }) => {
                let from_account = from.and_then(|a| token_accounts.get(&a));
                let to_account = to.and_then(|a| token_accounts.get(&a));
                let known = from_account.or(to_account);
                let token = mint.or(known.map(|a| a.mint));
                out.transfers.push(Transfer {
                    batch_index,
                    from_owner: from_account.and_then(|a| a.owner).as_ref().map(key_bytes),
                    to_owner: to_account.and_then(|a| a.owner).as_ref().map(key_bytes),
                    decimals: decimals.or(known.map(|a| a.decimals)),
                    ..transfer(
                        TransferStandard::Spl,
                        token.as_ref().map(key_bytes),
                        from.unwrap_or(ZERO_ADDRESS),
                        to.unwrap_or(ZERO_ADDRESS),
                        amount,
                    )
                });
            }
        }
    }
    Ok(())
}
