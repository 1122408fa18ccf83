//! Value movements decoded from System program and SPL Token / Token-2022 instructions.
//!
//! Solana has no transfer events: SOL and tokens move through instructions of these three programs, so transfers
//! are read from the instructions themselves. Both forms a node can send are decoded here: the raw instruction
//! (`json` encoding, or a `jsonParsed` instruction the node could not parse) and the node's own decoding
//! (`jsonParsed`), and both give the same [`Movement`] for the same instruction.

use serde_json::Value;

use super::{Pubkey, decode_array};

/// The System program: `11111111111111111111111111111111`, the all-zero address.
pub(super) const SYSTEM_PROGRAM: Pubkey = [0; 32];
/// SPL Token.
pub(super) const TOKEN_PROGRAM: Pubkey =
    bs58::decode("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA".as_bytes()).into_array_const_unwrap();
/// SPL Token-2022: the same instruction layout for the instructions decoded here.
pub(super) const TOKEN_2022_PROGRAM: Pubkey =
    bs58::decode("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb".as_bytes()).into_array_const_unwrap();

// System program instructions are a u32 LE discriminant followed by bincode fields.
const SYSTEM_CREATE_ACCOUNT: u32 = 0;
const SYSTEM_TRANSFER: u32 = 2;
const SYSTEM_CREATE_ACCOUNT_WITH_SEED: u32 = 3;
const SYSTEM_TRANSFER_WITH_SEED: u32 = 11;

// SPL Token instructions are a one-byte tag followed by packed fields.
const TOKEN_TRANSFER: u8 = 3;
const TOKEN_MINT_TO: u8 = 7;
const TOKEN_BURN: u8 = 8;
const TOKEN_TRANSFER_CHECKED: u8 = 12;
const TOKEN_MINT_TO_CHECKED: u8 = 14;
const TOKEN_BURN_CHECKED: u8 = 15;

/// What one instruction moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Movement {
    /// Lamports between two accounts (System program).
    Lamports { from: Pubkey, to: Pubkey, lamports: u64 },
    /// Tokens between token accounts. `from` is `None` for a mint, `to` for a burn; `mint` and `decimals` are
    /// whatever the instruction itself names (the unchecked variants name less).
    Tokens {
        from: Option<Pubkey>,
        to: Option<Pubkey>,
        mint: Option<Pubkey>,
        amount: u64,
        decimals: Option<u8>,
    },
}

/// Whether instructions of `program` can move value, i.e. are worth decoding at all.
pub(super) fn moves_value(program: &Pubkey) -> bool {
    *program == SYSTEM_PROGRAM || is_token_program(program)
}

pub(super) fn is_token_program(program: &Pubkey) -> bool {
    *program == TOKEN_PROGRAM || *program == TOKEN_2022_PROGRAM
}

/// Decodes a raw instruction: its resolved accounts and its data bytes. `Ok(None)` for instructions that move
/// nothing (or that this module does not know); `Err` for data too short for the instruction its tag names.
pub(super) fn decode_raw(
    program: &Pubkey,
    accounts: &[Pubkey],
    data: &[u8],
) -> Result<Option<Movement>, String> {
    if *program == SYSTEM_PROGRAM {
        system(accounts, data)
    } else if is_token_program(program) {
        token(accounts, data)
    } else {
        Ok(None)
    }
}

fn system(accounts: &[Pubkey], data: &[u8]) -> Result<Option<Movement>, String> {
    let tag = u32::from_le_bytes(field(data, 0)?);
    let (from, to, lamports) = match tag {
        // CreateAccount { lamports, space, owner }: [funding, new]. Transfer { lamports }: [from, to].
        SYSTEM_CREATE_ACCOUNT | SYSTEM_TRANSFER => {
            (account(accounts, 0)?, account(accounts, 1)?, u64_at(data, 4)?)
        }
        // CreateAccountWithSeed { base, seed: String, lamports, space, owner }: [funding, new, base?].
        SYSTEM_CREATE_ACCOUNT_WITH_SEED => {
            let seed_len = u64_at(data, 36)?;
            let lamports_at = usize::try_from(seed_len)
                .ok()
                .and_then(|len| len.checked_add(44))
                .ok_or_else(|| format!("CreateAccountWithSeed seed length {seed_len} is out of range"))?;
            (account(accounts, 0)?, account(accounts, 1)?, u64_at(data, lamports_at)?)
        }
        // TransferWithSeed { lamports, from_seed, from_owner }: [from, base, to].
        SYSTEM_TRANSFER_WITH_SEED => (account(accounts, 0)?, account(accounts, 2)?, u64_at(data, 4)?),
        _ => return Ok(None),
    };
    Ok(Some(Movement::Lamports { from, to, lamports }))
}

fn token(accounts: &[Pubkey], data: &[u8]) -> Result<Option<Movement>, String> {
    let Some(&tag) = data.first() else { return Err("empty SPL Token instruction data".into()) };
    let acc = |i| account(accounts, i);
    let checked_decimals = || field::<1>(data, 9).map(|[d]| Some(d));
    let movement = match tag {
        // Transfer { amount }: [source, destination, authority].
        TOKEN_TRANSFER => Movement::Tokens {
            from: Some(acc(0)?),
            to: Some(acc(1)?),
            mint: None,
            amount: u64_at(data, 1)?,
            decimals: None,
        },
        // TransferChecked { amount, decimals }: [source, mint, destination, authority].
        TOKEN_TRANSFER_CHECKED => Movement::Tokens {
            from: Some(acc(0)?),
            to: Some(acc(2)?),
            mint: Some(acc(1)?),
            amount: u64_at(data, 1)?,
            decimals: checked_decimals()?,
        },
        // MintTo(Checked): [mint, account, authority].
        TOKEN_MINT_TO | TOKEN_MINT_TO_CHECKED => Movement::Tokens {
            from: None,
            to: Some(acc(1)?),
            mint: Some(acc(0)?),
            amount: u64_at(data, 1)?,
            decimals: if tag == TOKEN_MINT_TO_CHECKED { checked_decimals()? } else { None },
        },
        // Burn(Checked): [account, mint, authority].
        TOKEN_BURN | TOKEN_BURN_CHECKED => Movement::Tokens {
            from: Some(acc(0)?),
            to: None,
            mint: Some(acc(1)?),
            amount: u64_at(data, 1)?,
            decimals: if tag == TOKEN_BURN_CHECKED { checked_decimals()? } else { None },
        },
        _ => return Ok(None),
    };
    Ok(Some(movement))
}

fn account(accounts: &[Pubkey], index: usize) -> Result<Pubkey, String> {
    accounts
        .get(index)
        .copied()
        .ok_or_else(|| format!("instruction has {} accounts, needs at least {}", accounts.len(), index + 1))
}

fn field<const N: usize>(data: &[u8], at: usize) -> Result<[u8; N], String> {
    at.checked_add(N)
        .and_then(|end| data.get(at..end))
        .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
        .ok_or_else(|| {
            format!("instruction data is {} bytes, too short for {N} bytes at offset {at}", data.len())
        })
}

fn u64_at(data: &[u8], at: usize) -> Result<u64, String> {
    field(data, at).map(u64::from_le_bytes)
}

/// Decodes a `jsonParsed` instruction of the System or SPL Token programs from its `parsed` object
/// (`{"type": ..., "info": {...}}`).
pub(super) fn decode_parsed(program: &Pubkey, parsed: &Value) -> Result<Option<Movement>, String> {
    if !moves_value(program) {
        return Ok(None);
    }
    let kind = parsed.get("type").and_then(Value::as_str).ok_or("parsed instruction without a type")?;
    let info = parsed.get("info").ok_or_else(|| format!("parsed {kind} instruction without info"))?;
    let key = |name: &str| parsed_pubkey(info, kind, name);
    if *program == SYSTEM_PROGRAM {
        let to = match kind {
            "transfer" | "transferWithSeed" => "destination",
            "createAccount" | "createAccountWithSeed" => "newAccount",
            _ => return Ok(None),
        };
        let lamports = parsed_u64(info.get("lamports"), kind, "lamports")?;
        return Ok(Some(Movement::Lamports { from: key("source")?, to: key(to)?, lamports }));
    }
    let amount = || parsed_u64(info.get("amount"), kind, "amount");
    let checked = || -> Result<(u64, Option<u8>), String> {
        let token_amount = info.get("tokenAmount");
        let amount = parsed_u64(token_amount.and_then(|t| t.get("amount")), kind, "tokenAmount.amount")?;
        let decimals = token_amount
            .and_then(|t| t.get("decimals"))
            .and_then(Value::as_u64)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or_else(|| format!("parsed {kind} instruction without a valid tokenAmount.decimals"))?;
        Ok((amount, Some(decimals)))
    };
    let movement = match kind {
        "transfer" => Movement::Tokens {
            from: Some(key("source")?),
            to: Some(key("destination")?),
            mint: None,
            amount: amount()?,
            decimals: None,
        },
        "transferChecked" => {
            let (amount, decimals) = checked()?;
            Movement::Tokens {
                from: Some(key("source")?),
                to: Some(key("destination")?),
                mint: Some(key("mint")?),
                amount,
                decimals,
            }
        }
        "mintTo" | "mintToChecked" => {
            let (amount, decimals) = if kind == "mintTo" { (amount()?, None) } else { checked()? };
            Movement::Tokens {
                from: None,
                to: Some(key("account")?),
                mint: Some(key("mint")?),
                amount,
                decimals,
            }
        }
        "burn" | "burnChecked" => {
            let (amount, decimals) = if kind == "burn" { (amount()?, None) } else { checked()? };
            Movement::Tokens {
                from: Some(key("account")?),
                to: None,
                mint: Some(key("mint")?),
                amount,
                decimals,
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(movement))
}

fn parsed_pubkey(info: &Value, kind: &str, name: &str) -> Result<Pubkey, String> {
    info.get(name)
        .and_then(Value::as_str)
        .and_then(decode_array)
        .ok_or_else(|| format!("parsed {kind} instruction without a valid {name} address"))
}

/// Amounts arrive as decimal strings (token amounts, which exceed JSON's safe integers) or numbers (lamports).
fn parsed_u64(value: Option<&Value>, kind: &str, name: &str) -> Result<u64, String> {
    match value {
        Some(Value::String(text)) => text.parse().ok(),
        Some(Value::Number(number)) => number.as_u64(),
        _ => None,
    }
    .ok_or_else(|| format!("parsed {kind} instruction without a valid {name}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const A: Pubkey = [1; 32];
    const B: Pubkey = [2; 32];
    const C: Pubkey = [3; 32];
    const D: Pubkey = [4; 32];

    fn b58(key: &Pubkey) -> String {
        bs58::encode(key).into_string()
    }

    fn system_data(tag: u32, rest: &[u8]) -> Vec<u8> {
        let mut data = tag.to_le_bytes().to_vec();
        data.extend_from_slice(rest);
        data
    }

    fn token_data(tag: u8, amount: u64, decimals: Option<u8>) -> Vec<u8> {
        let mut data = vec![tag];
        data.extend_from_slice(&amount.to_le_bytes());
        data.extend(decimals);
        data
    }

    #[test]
    fn program_ids_decode_to_their_known_bytes() {
        assert_eq!(b58(&SYSTEM_PROGRAM), "11111111111111111111111111111111");
        assert_eq!(b58(&TOKEN_PROGRAM), "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA");
        assert_eq!(b58(&TOKEN_2022_PROGRAM), "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
    }

    #[test]
    fn system_create_account_with_seed_reads_lamports_after_the_seed() {
        // base, seed "abc" (u64 length prefix), lamports, space, owner.
        let mut rest = C.to_vec();
        rest.extend_from_slice(&3u64.to_le_bytes());
        rest.extend_from_slice(b"abc");
        rest.extend_from_slice(&1_234_567u64.to_le_bytes());
        rest.extend_from_slice(&165u64.to_le_bytes());
        rest.extend_from_slice(&TOKEN_PROGRAM);
        let data = system_data(SYSTEM_CREATE_ACCOUNT_WITH_SEED, &rest);
        let got = decode_raw(&SYSTEM_PROGRAM, &[A, B, C], &data).expect("decodes");
        assert_eq!(got, Some(Movement::Lamports { from: A, to: B, lamports: 1_234_567 }));
        // The same instruction cut inside its lamports is malformed, not "no transfer".
        assert!(decode_raw(&SYSTEM_PROGRAM, &[A, B, C], &data[..50]).is_err());
    }

    #[test]
    fn system_transfer_with_seed_pays_the_third_account() {
        let mut rest = 42u64.to_le_bytes().to_vec();
        rest.extend_from_slice(&1u64.to_le_bytes());
        rest.extend_from_slice(b"s");
        rest.extend_from_slice(&D);
        let data = system_data(SYSTEM_TRANSFER_WITH_SEED, &rest);
        let got = decode_raw(&SYSTEM_PROGRAM, &[A, C, B], &data).expect("decodes");
        assert_eq!(got, Some(Movement::Lamports { from: A, to: B, lamports: 42 }));
    }

    #[test]
    fn system_create_account_and_unknown_instructions() {
        let mut rest = 7u64.to_le_bytes().to_vec();
        rest.extend_from_slice(&0u64.to_le_bytes());
        rest.extend_from_slice(&TOKEN_PROGRAM);
        let data = system_data(SYSTEM_CREATE_ACCOUNT, &rest);
        assert_eq!(
            decode_raw(&SYSTEM_PROGRAM, &[A, B], &data).expect("decodes"),
            Some(Movement::Lamports { from: A, to: B, lamports: 7 })
        );
        // Allocate (8) moves nothing; a three-byte instruction has no tag at all.
        assert_eq!(decode_raw(&SYSTEM_PROGRAM, &[A], &system_data(8, &[0; 8])).expect("decodes"), None);
        assert!(decode_raw(&SYSTEM_PROGRAM, &[A, B], &[2, 0, 0]).is_err());
        // A transfer naming one account cannot say where the lamports went.
        assert!(decode_raw(&SYSTEM_PROGRAM, &[A], &system_data(SYSTEM_TRANSFER, &[1; 8])).is_err());
    }

    #[test]
    fn token_mint_and_burn_variants() {
        let mint_to = token_data(TOKEN_MINT_TO_CHECKED, 500, Some(6));
        assert_eq!(
            decode_raw(&TOKEN_2022_PROGRAM, &[C, B, A], &mint_to).expect("decodes"),
            Some(Movement::Tokens { from: None, to: Some(B), mint: Some(C), amount: 500, decimals: Some(6) })
        );
        let burn = token_data(TOKEN_BURN, 9, None);
        assert_eq!(
            decode_raw(&TOKEN_PROGRAM, &[B, C, A], &burn).expect("decodes"),
            Some(Movement::Tokens { from: Some(B), to: None, mint: Some(C), amount: 9, decimals: None })
        );
        let burn_checked = token_data(TOKEN_BURN_CHECKED, 9, Some(2));
        assert_eq!(
            decode_raw(&TOKEN_PROGRAM, &[B, C, A], &burn_checked).expect("decodes"),
            Some(Movement::Tokens { from: Some(B), to: None, mint: Some(C), amount: 9, decimals: Some(2) })
        );
        // Checked variants without their decimals byte are short.
        assert!(decode_raw(&TOKEN_PROGRAM, &[B, C, A], &burn_checked[..9]).is_err());
        // CloseAccount (9) and InitializeAccount (1) are not transfers.
        assert_eq!(decode_raw(&TOKEN_PROGRAM, &[B, C, A], &[9]).expect("decodes"), None);
        assert_eq!(decode_raw(&TOKEN_PROGRAM, &[B, C, A, D], &[1]).expect("decodes"), None);
        // Other programs are never decoded.
        assert_eq!(decode_raw(&D, &[A, B], &token_data(TOKEN_TRANSFER, 1, None)).expect("decodes"), None);
    }

    #[test]
    fn parsed_forms_match_raw_forms() {
        let raw = decode_raw(&TOKEN_PROGRAM, &[C, B, A], &token_data(TOKEN_MINT_TO_CHECKED, 77, Some(9)));
        let parsed = decode_parsed(
            &TOKEN_PROGRAM,
            &json!({"type": "mintToChecked", "info": {"mint": b58(&C), "account": b58(&B), "mintAuthority": b58(&A),
                "tokenAmount": {"amount": "77", "decimals": 9, "uiAmount": 7.7e-8, "uiAmountString": "0.000000077"}}}),
        );
        assert_eq!(raw.expect("raw decodes"), parsed.expect("parsed decodes"));

        let raw = decode_raw(&TOKEN_PROGRAM, &[A, C, D], &token_data(TOKEN_BURN, 5, None));
        let parsed = decode_parsed(
            &TOKEN_PROGRAM,
            &json!({"type": "burn", "info": {"account": b58(&A), "mint": b58(&C), "authority": b58(&D), "amount": "5"}}),
        );
        assert_eq!(raw.expect("raw decodes"), parsed.expect("parsed decodes"));

        let parsed = decode_parsed(
            &SYSTEM_PROGRAM,
            &json!({"type": "createAccountWithSeed", "info": {"source": b58(&A), "newAccount": b58(&B),
                "base": b58(&C), "seed": "abc", "lamports": 1_234_567, "space": 165, "owner": b58(&D)}}),
        );
        assert_eq!(
            parsed.expect("decodes"),
            Some(Movement::Lamports { from: A, to: B, lamports: 1_234_567 })
        );

        // Unknown types are not transfers; known types with missing fields are malformed.
        let close = json!({"type": "closeAccount", "info": {"account": b58(&A)}});
        assert_eq!(decode_parsed(&TOKEN_PROGRAM, &close).expect("decodes"), None);
        let broken = json!({"type": "transfer", "info": {"source": b58(&A), "amount": "5"}});
        assert!(decode_parsed(&TOKEN_PROGRAM, &broken).is_err());
    }
}
