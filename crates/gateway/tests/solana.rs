//! The gateway's REST API on a Solana chain, without a socket: the router over a real store holding a synthetic
//! Solana chain (see `common::solana`) next to an empty EVM chain. Ids are base58 both ways, field names are
//! Solana's, finality is confirmed or finalized, `address` finds the transfers of the token accounts a wallet owns.

// The EVM fixture in `common` is for tests/api.rs.
#[allow(dead_code)]
mod common;

use axum::http::StatusCode;
use serde_json::{Value, json};

use common::solana::*;
use common::transfer_keys;

fn items(page: &Value) -> Vec<Value> {
    assert_eq!(page["next_cursor"], Value::Null, "{page}");
    assert_eq!(page["indexed_head"], sol_indexed_head(), "{page}");
    page["items"].as_array().expect("items").clone()
}

fn s(text: &str) -> String {
    text.to_owned()
}

#[tokio::test]
async fn chains_show_solana_heads_per_commitment() {
    let fx = SolanaFixture::new().await;
    let body = fx.get_ok("/v1/chains").await;
    let chains = body["chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 2, "{body}");
    assert_eq!(
        chains[1],
        json!({
            "name": SOL,
            "kind": "solana",
            "chain_id": 0,
            "head": 305,
            "safe": null,
            "finalized": 301,
            "heads": { "confirmed": 305, "finalized": 301 },
            "indexed_head": { "number": 305, "hash": b58(slot_hash(305)) },
            "lag": 0,
            "upstreams": [],
        })
    );
    // EVM chains keep their shape: no per-commitment heads.
    let evm = &chains[0];
    assert_eq!(evm["name"], EVM, "{body}");
    assert_eq!(evm["kind"], "evm", "{body}");
    assert_eq!(evm.get("heads"), None, "{body}");
    assert_eq!((&evm["head"], &evm["indexed_head"]), (&Value::Null, &Value::Null), "{body}");
}

#[tokio::test]
async fn solana_blocks_by_slot_and_hash() {
    let fx = SolanaFixture::new().await;
    let slot301 = json!({
        "chain": SOL,
        "slot": 301,
        "hash": b58(slot_hash(301)),
        "parent_slot": 300,
        "parent_hash": b58(slot_hash(300)),
        "height": 281,
        "timestamp": 1_750_000_301u64,
        "tx_count": 2,
        "finality": "finalized",
    });
    assert_eq!(fx.get_ok(&format!("/v1/chains/{SOL}/blocks/301")).await, slot301);
    assert_eq!(fx.get_ok(&format!("/v1/chains/{SOL}/blocks/{}", b58(slot_hash(301)))).await, slot301);

    // The first block has no parent; 303's parent is 301 (302 was skipped) and it has no block time.
    let slot300 = fx.get_ok(&format!("/v1/chains/{SOL}/blocks/300")).await;
    assert_eq!((&slot300["parent_slot"], &slot300["parent_hash"]), (&Value::Null, &Value::Null), "{slot300}");
    assert_eq!((&slot300["height"], &slot300["timestamp"]), (&json!(280), &json!(1_750_000_300u64)));
    assert_eq!(
        fx.get_ok(&format!("/v1/chains/{SOL}/blocks/303")).await,
        json!({
            "chain": SOL,
            "slot": 303,
            "hash": b58(slot_hash(303)),
            "parent_slot": 301,
            "parent_hash": b58(slot_hash(301)),
            "height": 282,
            "timestamp": null,
            "tx_count": 2,
            "finality": "confirmed",
        })
    );

    for (slot, finality, txs) in [
        (300, "finalized", 2),
        (301, "finalized", 2),
        (303, "confirmed", 2),
        (304, "confirmed", 2),
        (305, "confirmed", 0),
    ] {
        let by_slot = fx.get_ok(&format!("/v1/chains/{SOL}/blocks/{slot}")).await;
        assert_eq!((&by_slot["finality"], &by_slot["tx_count"]), (&json!(finality), &json!(txs)), "{slot}");
        let by_hash = fx.get_ok(&format!("/v1/chains/{SOL}/blocks/{}", b58(slot_hash(slot)))).await;
        assert_eq!(by_hash, by_slot, "slot {slot}");
    }

    for missing in [s("302"), s("306"), b58(slot_hash(302))] {
        let (status, body) = fx.get(&format!("/v1/chains/{SOL}/blocks/{missing}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
        assert_eq!(body["error"]["message"], format!("block {missing} is not indexed"));
    }

    let hex_hash = format!("0x{}", alloy::hex::encode(slot_hash(301)));
    let short = b58(&slot_hash(301)[..31]);
    let signature = b58(signature(301, 0));
    for bad in [hex_hash.as_str(), "abc", "-1", "0OIl", &short, &signature, "99999999999999999999999"] {
        let (status, body) = fx.get(&format!("/v1/chains/{SOL}/blocks/{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "id", "{bad}: {body}");
    }
}

#[tokio::test]
async fn solana_transactions_by_signature() {
    let fx = SolanaFixture::new().await;
    let failed = fx.get_ok(&format!("/v1/chains/{SOL}/transactions/{}", b58(signature(301, 1)))).await;
    assert_eq!(
        failed,
        json!({
            "chain": SOL,
            "signature": b58(signature(301, 1)),
            "slot": 301,
            "block_hash": b58(slot_hash(301)),
            "index": 1,
            "fee_payer": addr(BOB),
            "fee": "5000",
            "success": false,
            "error": { "InstructionError": [0, { "Custom": 1 }] },
            "compute_units": 1200,
            "finality": "finalized",
        })
    );
    let ok = fx.get_ok(&format!("/v1/chains/{SOL}/transactions/{}", b58(signature(303, 0)))).await;
    assert_eq!(
        ok,
        json!({
            "chain": SOL,
            "signature": b58(signature(303, 0)),
            "slot": 303,
            "block_hash": b58(slot_hash(303)),
            "index": 0,
            "fee_payer": addr(BOB),
            "fee": "5000",
            "success": true,
            "error": null,
            "compute_units": 6000,
            "finality": "confirmed",
        })
    );
    let paid = fx.get_ok(&format!("/v1/chains/{SOL}/transactions/{}", b58(signature(301, 0)))).await;
    assert_eq!((&paid["fee"], &paid["fee_payer"]), (&json!("7500"), &json!(addr(ALICE))));

    let unknown = b58(signature(305, 0));
    let (status, body) = fx.get(&format!("/v1/chains/{SOL}/transactions/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["message"], format!("transaction {unknown} is not indexed"));

    let hex_signature = format!("0x{}", alloy::hex::encode(signature(301, 1)));
    for bad in [hex_signature, addr(ALICE), s("0OIl"), b58([1u8; 65])] {
        let (status, body) = fx.get(&format!("/v1/chains/{SOL}/transactions/{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["field"], "signature", "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("base58") && message.contains("64 bytes"), "{bad}: {body}");
    }
}

#[tokio::test]
async fn solana_transfers_render_and_match_owners() {
    let fx = SolanaFixture::new().await;
    let all = items(&fx.get_ok(&format!("/v1/chains/{SOL}/transfers")).await);
    assert_eq!(all, expected_sol_transfers(&fx.blocks, |_| true));
    assert_eq!(
        transfer_keys(&all),
        vec![
            (300, 0, 0, s("sol")),
            (300, 1, 0, s("spl")),
            (301, 0, 1, s("spl")),
            (303, 0, 0, s("spl")),
            (303, 0, 1, s("sol")),
            (303, 1, 0, s("spl")),
            (304, 0, 0, s("spl")),
            (304, 1, 0, s("sol")),
        ]
    );
    // Spelled out: the mint (from the all-zero address, to a token account with its owner) and a SOL transfer.
    assert_eq!(
        all[1],
        json!({
            "chain": SOL,
            "block_number": 300,
            "block_hash": b58(slot_hash(300)),
            "tx_hash": b58(signature(300, 1)),
            "log_index": 1,
            "batch_index": 0,
            "standard": "spl",
            "token": addr(MINT),
            "from": SYSTEM,
            "to": addr(ALICE_ATA),
            "amount": "1000000000",
            "token_id": null,
            "from_owner": null,
            "to_owner": addr(ALICE),
            "decimals": 6,
            "finality": "finalized",
        })
    );
    assert_eq!(
        all[7],
        json!({
            "chain": SOL,
            "block_number": 304,
            "block_hash": b58(slot_hash(304)),
            "tx_hash": b58(signature(304, 1)),
            "log_index": 1,
            "batch_index": 0,
            "standard": "sol",
            "token": null,
            "from": addr(CAROL),
            "to": addr(ALICE),
            "amount": "18446744073709551615",
            "token_id": null,
            "from_owner": null,
            "to_owner": null,
            "decimals": null,
            "finality": "confirmed",
        })
    );

    // A wallet finds its SOL transfers and the SPL transfers of every token account it owns (once each, also
    // between two accounts of its own); a token account finds its own.
    let cases = [
        (
            format!("address={}", addr(ALICE)),
            vec![
                (300, 0, 0, s("sol")),
                (300, 1, 0, s("spl")),
                (301, 0, 1, s("spl")),
                (304, 0, 0, s("spl")),
                (304, 1, 0, s("sol")),
            ],
        ),
        (
            format!("address={}", addr(BOB)),
            vec![(300, 0, 0, s("sol")), (301, 0, 1, s("spl")), (303, 0, 0, s("spl")), (303, 0, 1, s("sol"))],
        ),
        (
            format!("address={}", addr(ALICE_ATA)),
            vec![(300, 1, 0, s("spl")), (301, 0, 1, s("spl")), (304, 0, 0, s("spl"))],
        ),
        // Mints and burns.
        (format!("address={SYSTEM}"), vec![(300, 1, 0, s("spl")), (303, 1, 0, s("spl"))]),
        (
            format!("token={}", addr(MINT)),
            vec![
                (300, 1, 0, s("spl")),
                (301, 0, 1, s("spl")),
                (303, 0, 0, s("spl")),
                (303, 1, 0, s("spl")),
                (304, 0, 0, s("spl")),
            ],
        ),
        (
            format!("token={}&address={}", addr(MINT), addr(CAROL)),
            vec![(303, 0, 0, s("spl")), (303, 1, 0, s("spl"))],
        ),
        (format!("address={}&from_block=301&to_block=303", addr(ALICE)), vec![(301, 0, 1, s("spl"))]),
        (format!("address={}", addr("nobody")), vec![]),
    ];
    for (query, expected) in cases {
        let found = items(&fx.get_ok(&format!("/v1/chains/{SOL}/transfers?{query}")).await);
        assert_eq!(transfer_keys(&found), expected, "{query}");
    }
    let alice = key(ALICE);
    let matches_alice = |t: &chainmux_core::Transfer| {
        t.from == alice
            || t.to == alice
            || t.from_owner.as_ref() == Some(&alice)
            || t.to_owner.as_ref() == Some(&alice)
    };
    let by_alice = expected_sol_transfers(&fx.blocks, matches_alice);
    assert_eq!(
        items(&fx.get_ok(&format!("/v1/chains/{SOL}/transfers?address={}", addr(ALICE))).await),
        by_alice
    );

    // Keyset pagination over everything and under the owner filter.
    for limit in [1, 2, 3, 7, 8, 9] {
        let pages = fx.all_pages(&format!("/v1/chains/{SOL}/transfers"), limit).await;
        assert_eq!(pages.len(), all.len().div_ceil(limit).max(1), "limit {limit}");
        assert_eq!(pages.concat(), all, "limit {limit}");
    }
    let pages = fx.all_pages(&format!("/v1/chains/{SOL}/transfers?address={}", addr(ALICE)), 2).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
    assert_eq!(pages.concat(), by_alice);
}

#[tokio::test]
async fn solana_instructions_filters_and_pagination() {
    let fx = SolanaFixture::new().await;
    let all = items(&fx.get_ok(&format!("/v1/chains/{SOL}/instructions")).await);
    assert_eq!(all, expected_instructions(&fx.blocks, |_| true));
    assert_eq!(
        instruction_keys(&all),
        vec![
            (300, 1, 0),
            (301, 0, 0),
            (301, 0, 1),
            (301, 1, 0),
            (303, 0, 0),
            (303, 1, 0),
            (304, 0, 0),
            (304, 0, 1)
        ]
    );
    // Spelled out: the token transfer invoked by APP (inner, stack height 2), and an instruction with nothing.
    assert_eq!(
        all[2],
        json!({
            "chain": SOL,
            "slot": 301,
            "block_hash": b58(slot_hash(301)),
            "signature": b58(signature(301, 0)),
            "tx_index": 0,
            "position": 1,
            "outer_index": 0,
            "inner_index": 0,
            "stack_height": 2,
            "program": TOKEN_PROGRAM,
            "accounts": [addr(ALICE_ATA), addr(BOB_ATA), addr(ALICE)],
            "data": b58([3, 0x80, 0xb2, 0xe6, 0x0e, 0, 0, 0, 0]),
            "logs": ["Program log: Instruction: Transfer"],
            "tx_success": true,
            "finality": "finalized",
        })
    );
    assert_eq!(
        all[7],
        json!({
            "chain": SOL,
            "slot": 304,
            "block_hash": b58(slot_hash(304)),
            "signature": b58(signature(304, 0)),
            "tx_index": 0,
            "position": 1,
            "outer_index": 1,
            "inner_index": null,
            "stack_height": 1,
            "program": APP,
            "accounts": [],
            "data": "",
            "logs": [],
            "tx_success": true,
            "finality": "confirmed",
        })
    );
    // Base58 of the fixed program ids is spelled out, not computed.
    assert_eq!(all[1]["program"], APP);
    assert_eq!(all[1]["data"], b58([0xde, 0xad, 0xbe, 0xef]));
    assert_eq!(all[1]["accounts"][3], TOKEN_PROGRAM);

    let cases = [
        (format!("program={APP}"), vec![(301, 0, 0), (301, 1, 0), (304, 0, 1)]),
        (
            format!("program={TOKEN_PROGRAM}"),
            vec![(300, 1, 0), (301, 0, 1), (303, 0, 0), (303, 1, 0), (304, 0, 0)],
        ),
        (format!("tx_hash={}", b58(signature(301, 0))), vec![(301, 0, 0), (301, 0, 1)]),
        (format!("program={TOKEN_PROGRAM}&tx_hash={}", b58(signature(301, 0))), vec![(301, 0, 1)]),
        (s("from_block=302&to_block=303"), vec![(303, 0, 0), (303, 1, 0)]),
        (format!("program={SYSTEM}"), vec![]),
    ];
    for (query, expected) in cases {
        let found = items(&fx.get_ok(&format!("/v1/chains/{SOL}/instructions?{query}")).await);
        assert_eq!(instruction_keys(&found), expected, "{query}");
    }
    let app = key(APP);
    let by_app = items(&fx.get_ok(&format!("/v1/chains/{SOL}/instructions?program={APP}")).await);
    assert_eq!(by_app, expected_instructions(&fx.blocks, |i| i.program == app));

    for limit in [1, 2, 3, 7, 8, 9] {
        let pages = fx.all_pages(&format!("/v1/chains/{SOL}/instructions"), limit).await;
        assert_eq!(pages.len(), all.len().div_ceil(limit), "limit {limit}");
        assert_eq!(pages.concat(), all, "limit {limit}");
    }
    // The cursor of a page's last row continues right after it.
    let page = fx.get_ok(&format!("/v1/chains/{SOL}/instructions?limit=3")).await;
    let next = page["next_cursor"].as_str().expect("cursor").to_owned();
    let rest = fx.get_ok(&format!("/v1/chains/{SOL}/instructions?cursor={next}")).await;
    assert_eq!(items(&rest), all[3..].to_vec());
}

#[tokio::test]
async fn solana_rows_are_confirmed_or_finalized() {
    let fx = SolanaFixture::new().await;
    let transfers = items(&fx.get_ok(&format!("/v1/chains/{SOL}/transfers")).await);
    let instructions = items(&fx.get_ok(&format!("/v1/chains/{SOL}/instructions")).await);
    let mut words = Vec::new();
    for item in transfers.iter().chain(&instructions) {
        let slot =
            item.get("block_number").or_else(|| item.get("slot")).and_then(Value::as_u64).expect("slot");
        assert_eq!(item["finality"], sol_finality(slot), "{item}");
        words.push(item["finality"].as_str().expect("finality").to_owned());
    }
    words.sort();
    words.dedup();
    assert_eq!(words, ["confirmed", "finalized"]);
}

#[tokio::test]
async fn solana_bad_parameters_name_the_field() {
    let fx = SolanaFixture::new().await;
    let alice = addr(ALICE);
    let signature = b58(signature(301, 0));
    let hex20 = format!("0x{}", "ab".repeat(20));
    let hex64 = format!("0x{}", "ab".repeat(64));
    let cases = [
        (format!("transfers?address={hex20}"), "address"),
        (format!("transfers?address={alice}0"), "address"),
        (format!("transfers?address={signature}"), "address"),
        (format!("transfers?address={}", &alice[..alice.len() - 2]), "address"),
        (s("transfers?token=abc"), "token"),
        (format!("transfers?token=O{}", &alice[1..]), "token"),
        (format!("transfers?owner={alice}"), "owner"),
        (s("instructions?program=0OIl"), "program"),
        (format!("instructions?program={signature}"), "program"),
        (format!("instructions?program={}", "1".repeat(5000)), "program"),
        (format!("instructions?tx_hash={alice}"), "tx_hash"),
        (format!("instructions?tx_hash={hex64}"), "tx_hash"),
        (s("instructions?cursor=garbage"), "cursor"),
        (s("instructions?cursor=300.1"), "cursor"),
        (s("instructions?from_block=5&to_block=1"), "to_block"),
        (s("instructions?limit=0"), "limit"),
        (format!("instructions?address={alice}"), "address"),
        (s("instructions?program=a&program=b"), "program"),
    ];
    for (path, field) in cases {
        let uri = format!("/v1/chains/{SOL}/{path}");
        let (status, body) = fx.get(&uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{uri}: {body}");
        assert_eq!(body["error"]["field"], field, "{uri}: {body}");
    }
    let (_, body) = fx.get(&format!("/v1/chains/{SOL}/transfers?address={hex20}")).await;
    assert_eq!(body["error"]["message"], "must be a base58 address (32 bytes)", "{body}");

    // The EVM chain next to it still takes hex, not base58.
    let (status, body) = fx.get(&format!("/v1/chains/{EVM}/transfers?address={alice}")).await;
    assert_eq!((status, &body["error"]["field"]), (StatusCode::BAD_REQUEST, &json!("address")), "{body}");
    let page = fx.get_ok(&format!("/v1/chains/{EVM}/transfers?address={hex20}")).await;
    assert_eq!(
        page,
        json!({ "items": [], "next_cursor": null, "indexed_head": null, "finalized_head": null })
    );
}

#[tokio::test]
async fn logs_and_instructions_exist_for_their_chain_family_only() {
    let fx = SolanaFixture::new().await;
    let (status, body) = fx.get(&format!("/v1/chains/{EVM}/instructions")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Solana chains only") && message.contains("/logs"), "{body}");

    let (status, body) = fx.get(&format!("/v1/chains/{SOL}/logs")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("EVM chains only") && message.contains("/instructions"), "{body}");

    let (status, body) = fx.get("/v1/chains/nope/instructions").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["message"], "unknown chain \"nope\"");
    // Unknown parameters are refused before anything else, as on every route.
    let (status, body) = fx.get(&format!("/v1/chains/{EVM}/instructions?programs=x")).await;
    assert_eq!((status, &body["error"]["field"]), (StatusCode::BAD_REQUEST, &json!("programs")), "{body}");
}
