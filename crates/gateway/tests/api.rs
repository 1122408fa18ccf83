//! The gateway's HTTP API end to end, without a socket: the router built from a real store (fresh PostgreSQL
//! database holding a synthetic chain, see `common`) and a real anvil upstream, driven with `oneshot`.

mod common;

use alloy::primitives::U256;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chainmux_testkit::Eth;
use chainmux_testkit::contracts;
use serde_json::{Value, json};
use tower::ServiceExt;

use common::*;

#[tokio::test]
async fn health_and_readiness_then_draining() {
    let fx = Fixture::new().await;
    assert_eq!(fx.get("/health").await, (StatusCode::OK, json!({ "status": "ok" })));
    assert_eq!(fx.get("/ready").await, (StatusCode::OK, json!({ "status": "ready" })));

    fx.state.start_draining();
    assert_eq!(
        fx.get("/ready").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": { "code": "unavailable", "message": "draining: shutting down" } })
        )
    );
    // Liveness is not readiness: the process is still alive while draining.
    assert_eq!(fx.get("/health").await, (StatusCode::OK, json!({ "status": "ok" })));
}

#[tokio::test]
async fn chains_report_indexed_head_heads_and_upstreams() {
    let fx = Fixture::new().await;
    let body = fx.get_ok("/v1/chains").await;
    let chains = body["chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1, "{body}");
    let chain = &chains[0];
    assert_eq!(chain["name"], "local");
    assert_eq!(chain["kind"], "evm");
    assert_eq!(chain["chain_id"], 31337);
    assert_eq!(chain["indexed_head"], json!({ "number": 16, "hash": hex0x(block_hash(16)) }));
    // No head probe has run, so the head is the one the indexer stored.
    assert_eq!(chain["head"], 16);
    assert_eq!(chain["safe"], 13);
    assert_eq!(chain["finalized"], 11);
    assert_eq!(chain["lag"], 0);

    let upstreams = chain["upstreams"].as_array().expect("upstreams");
    assert_eq!(upstreams.len(), 1, "{body}");
    let anvil = &upstreams[0];
    assert_eq!(anvil["name"], "anvil");
    assert_eq!(anvil["state"], "healthy", "{anvil}");
    assert_eq!(anvil["reason"], Value::Null);
    // The identity check (eth_chainId) was its only request.
    assert_eq!(anvil["requests"], 1, "{anvil}");
    assert_eq!(anvil["failures"], 0, "{anvil}");
    assert!(anvil["latency_p50_ms"].is_f64(), "{anvil}");
    assert_eq!(anvil["breaker"], "closed", "{anvil}");
    let score = anvil["score"].as_f64().expect("score");
    assert!(score > 0.0 && score <= 1.0, "{anvil}");
    // The URL (which may carry an API key) is never shown.
    assert!(!body.to_string().contains(&fx.anvil.url), "{body}");
}

#[tokio::test]
async fn blocks_by_number_and_hash_with_finality() {
    let fx = Fixture::new().await;

    let block12 = json!({
        "chain": "local",
        "number": 12,
        "hash": hex0x(block_hash(12)),
        "parent_hash": hex0x(block_hash(11)),
        "timestamp": 1_700_000_144u64,
        "transaction_count": 2,
        "log_count": 2,
        "finality": "safe",
    });
    assert_eq!(fx.get_ok("/v1/chains/local/blocks/12").await, block12);
    assert_eq!(fx.get_ok(&format!("/v1/chains/local/blocks/{}", hex0x(block_hash(12)))).await, block12);
    // Upper-case hex digits are the same hash.
    let upper = upper0x(block_hash(12));
    assert_ne!(upper, hex0x(block_hash(12)));
    assert_eq!(fx.get_ok(&format!("/v1/chains/local/blocks/{upper}")).await, block12);
    let upper_prefix = format!("0X{}", &upper[2..]);
    assert_eq!(fx.get_ok(&format!("/v1/chains/local/blocks/{upper_prefix}")).await, block12);

    // The empty head block.
    assert_eq!(
        fx.get_ok("/v1/chains/local/blocks/16").await,
        json!({
            "chain": "local",
            "number": 16,
            "hash": hex0x(block_hash(16)),
            "parent_hash": hex0x(block_hash(15)),
            "timestamp": 1_700_000_192u64,
            "transaction_count": 0,
            "log_count": 0,
            "finality": "pending",
        })
    );

    // Heads are latest 16, safe 13, finalized 11.
    let expected = [
        (10, "finalized", 2, 2),
        (11, "finalized", 3, 2),
        (12, "safe", 2, 2),
        (13, "safe", 3, 1),
        (14, "pending", 2, 2),
        (15, "pending", 2, 2),
        (16, "pending", 0, 0),
    ];
    for (number, finality, txs, logs) in expected {
        let by_number = fx.get_ok(&format!("/v1/chains/local/blocks/{number}")).await;
        assert_eq!(by_number["finality"], finality, "block {number}");
        assert_eq!(by_number["transaction_count"], txs, "block {number}");
        assert_eq!(by_number["log_count"], logs, "block {number}");
        assert_eq!(by_number["hash"], hex0x(block_hash(number)), "block {number}");
        let by_hash = fx.get_ok(&format!("/v1/chains/local/blocks/{}", hex0x(block_hash(number)))).await;
        assert_eq!(by_hash, by_number);
    }

    for missing in ["17".to_owned(), "9".to_owned(), hex0x(block_hash(17))] {
        let (status, body) = fx.get(&format!("/v1/chains/local/blocks/{missing}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{missing}: {body}");
        assert_eq!(body["error"]["message"], format!("block {missing} is not indexed"));
        assert_eq!(body["error"].get("field"), None, "{body}");
    }

    let short_hash = &hex0x(block_hash(12))[..65];
    for bad in ["abc", "0x12", "-1", "12a", "0xzz", short_hash] {
        let (status, body) = fx.get(&format!("/v1/chains/local/blocks/{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}: {body}");
        assert_eq!(body["error"]["field"], "id", "{bad}: {body}");
    }

    let (status, body) = fx.get("/v1/chains/nope/blocks/12").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn transactions_by_hash() {
    let fx = Fixture::new().await;

    // Native transfer of 2^130 + 1 wei (above u128) in block 13.
    let native = json!({
        "chain": "local",
        "block_number": 13,
        "block_hash": hex0x(block_hash(13)),
        "hash": hex0x(tx_hash(13, 1)),
        "transaction_index": 1,
        "from": BOB,
        "to": ALICE,
        "value": "1361129467683753853853498429727072845825",
        "nonce": "131",
        "gas": "100000",
        "gas_price": "1000000000",
        "gas_used": "21000",
        "status": 1,
        "contract_address": null,
        "input": "0x",
        "finality": "safe",
    });
    let uri = format!("/v1/chains/local/transactions/{}", hex0x(tx_hash(13, 1)));
    assert_eq!(fx.get_ok(&uri).await, native);
    let uri = format!("/v1/chains/local/transactions/{}", upper0x(tx_hash(13, 1)));
    assert_eq!(fx.get_ok(&uri).await, native);

    // The reverted transaction.
    let reverted = fx.get_ok(&format!("/v1/chains/local/transactions/{}", hex0x(tx_hash(11, 2)))).await;
    assert_eq!(
        reverted,
        json!({
            "chain": "local",
            "block_number": 11,
            "block_hash": hex0x(block_hash(11)),
            "hash": hex0x(tx_hash(11, 2)),
            "transaction_index": 2,
            "from": CAROL,
            "to": NFT,
            "value": "0",
            "nonce": "112",
            "gas": "100000",
            "gas_price": "1000000000",
            "gas_used": "30000",
            "status": 0,
            "contract_address": null,
            "input": "0xa9059cbb",
            "finality": "finalized",
        })
    );

    // A contract creation: no `to`, the created address instead.
    let creation = fx.get_ok(&format!("/v1/chains/local/transactions/{}", hex0x(tx_hash(13, 2)))).await;
    assert_eq!(creation["to"], Value::Null, "{creation}");
    assert_eq!(creation["contract_address"], TOKEN2, "{creation}");
    assert_eq!(creation["input"], "0x6080604052", "{creation}");
    assert_eq!(creation["status"], 1, "{creation}");

    // Pending block.
    let pending = fx.get_ok(&format!("/v1/chains/local/transactions/{}", hex0x(tx_hash(15, 1)))).await;
    assert_eq!(pending["value"], "3", "{pending}");
    assert_eq!(pending["finality"], "pending", "{pending}");

    let unknown = hex0x(tx_hash(16, 0));
    let (status, body) = fx.get(&format!("/v1/chains/local/transactions/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        body,
        json!({ "error": { "code": "not_found", "message": format!("transaction {unknown} is not indexed") } })
    );

    for bad in ["0x1234", "xyz", &hex0x(tx_hash(13, 1))[2..], &format!("{}00", hex0x(tx_hash(13, 1)))] {
        let (status, body) = fx.get(&format!("/v1/chains/local/transactions/{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{bad}: {body}");
        assert_eq!(body["error"]["field"], "hash", "{bad}: {body}");
    }

    let (status, body) = fx.get(&format!("/v1/chains/nope/transactions/{}", hex0x(tx_hash(13, 1)))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn transfers_render_every_standard_exactly() {
    let fx = Fixture::new().await;
    let page = fx.get_ok("/v1/chains/local/transfers").await;
    assert_eq!(page["indexed_head"], indexed_head());
    assert_eq!(page["next_cursor"], Value::Null, "all 15 rows fit the default page of 100");
    let items = page["items"].as_array().expect("items");
    assert_eq!(*items, expected_transfers(&fx.blocks, |_| true));
    let s = |x: &str| x.to_owned();
    assert_eq!(
        transfer_keys(items),
        vec![
            (10, 0, 0, s("erc20")),
            (10, 1, 0, s("erc20")),
            (10, 1, 0, s("native")),
            (11, 0, 0, s("erc721")),
            (11, 1, 0, s("erc721")),
            (12, 0, 0, s("erc1155")),
            (12, 0, 1, s("erc1155")),
            (12, 0, 2, s("erc1155")),
            (12, 1, 0, s("erc1155")),
            (13, 0, 0, s("erc20")),
            (13, 1, 0, s("native")),
            (14, 0, 0, s("erc1155")),
            (14, 0, 1, s("erc1155")),
            (14, 1, 0, s("erc20")),
            (15, 1, 0, s("native")),
        ]
    );

    // Spelled out: the second element of an ERC-1155 batch, amount 2^256 - 1.
    assert_eq!(
        items[12],
        json!({
            "chain": "local",
            "block_number": 14,
            "block_hash": hex0x(block_hash(14)),
            "tx_hash": hex0x(tx_hash(14, 0)),
            "log_index": 0,
            "batch_index": 1,
            "standard": "erc1155",
            "token": MULTI,
            "from": ALICE,
            "to": CAROL,
            "amount": "115792089237316195423570985008687907853269984665640564039457584007913129639935",
            "token_id": "5",
            "from_owner": null,
            "to_owner": null,
            "decimals": null,
            "finality": "pending",
        })
    );
    // ERC-20 of 2^200 + 12345.
    assert_eq!(items[9]["amount"], "1606938044258990275541962092341162602522202993782792835313721");
    assert_eq!(items[9]["token_id"], Value::Null);
    assert_eq!(items[9]["token"], TOKEN);
    assert_eq!(items[9]["finality"], "safe");
    // Native: no token, no token id, keyed by the transaction index.
    assert_eq!(
        items[10],
        json!({
            "chain": "local",
            "block_number": 13,
            "block_hash": hex0x(block_hash(13)),
            "tx_hash": hex0x(tx_hash(13, 1)),
            "log_index": 1,
            "batch_index": 0,
            "standard": "native",
            "token": null,
            "from": BOB,
            "to": ALICE,
            "amount": "1361129467683753853853498429727072845825",
            "token_id": null,
            "from_owner": null,
            "to_owner": null,
            "decimals": null,
            "finality": "safe",
        })
    );
    // ERC-721 mint: from the zero address, amount 1, token id 7.
    assert_eq!(
        (&items[3]["from"], &items[3]["to"], &items[3]["amount"], &items[3]["token_id"], &items[3]["token"]),
        (&json!(ZERO), &json!(ALICE), &json!("1"), &json!("7"), &json!(NFT))
    );
    assert_eq!(items[3]["finality"], "finalized");
    // ERC-1155 batch from block 12: ids 1, 2, 3 with amounts 10, 20, 30.
    let batch: Vec<(&Value, &Value)> = items[5..8].iter().map(|t| (&t["token_id"], &t["amount"])).collect();
    assert_eq!(
        batch,
        vec![(&json!("1"), &json!("10")), (&json!("2"), &json!("20")), (&json!("3"), &json!("30"))]
    );
}

#[tokio::test]
async fn transfers_filters() {
    let fx = Fixture::new().await;
    let s = |x: &str| x.to_owned();
    let items = |page: Value| {
        assert_eq!(page["next_cursor"], Value::Null, "{page}");
        assert_eq!(page["indexed_head"], indexed_head(), "{page}");
        page["items"].as_array().expect("items").clone()
    };
    let bytes = |hex: &str| -> alloy::primitives::Bytes { hex.parse().expect("hex") };

    // `address` matches either side.
    let alice = items(fx.get_ok(&format!("/v1/chains/local/transfers?address={ALICE}")).await);
    assert_eq!(
        transfer_keys(&alice),
        vec![
            (10, 0, 0, s("erc20")),
            (10, 1, 0, s("native")),
            (11, 0, 0, s("erc721")),
            (11, 1, 0, s("erc721")),
            (13, 0, 0, s("erc20")),
            (13, 1, 0, s("native")),
            (14, 0, 0, s("erc1155")),
            (14, 0, 1, s("erc1155")),
            (14, 1, 0, s("erc20")),
        ]
    );
    let a = bytes(ALICE);
    assert_eq!(alice, expected_transfers(&fx.blocks, |t| t.from == a || t.to == a));
    // Upper-case hex is the same address.
    let upper = format!("0x{}", ALICE[2..].to_ascii_uppercase());
    assert_eq!(items(fx.get_ok(&format!("/v1/chains/local/transfers?address={upper}")).await), alice);

    let token = items(fx.get_ok(&format!("/v1/chains/local/transfers?token={TOKEN}")).await);
    assert_eq!(
        transfer_keys(&token),
        vec![(10, 0, 0, s("erc20")), (10, 1, 0, s("erc20")), (13, 0, 0, s("erc20"))]
    );
    let t = bytes(TOKEN);
    assert_eq!(token, expected_transfers(&fx.blocks, |x| x.token.as_ref() == Some(&t)));

    let range = items(fx.get_ok("/v1/chains/local/transfers?from_block=12&to_block=13").await);
    assert_eq!(
        transfer_keys(&range),
        vec![
            (12, 0, 0, s("erc1155")),
            (12, 0, 1, s("erc1155")),
            (12, 0, 2, s("erc1155")),
            (12, 1, 0, s("erc1155")),
            (13, 0, 0, s("erc20")),
            (13, 1, 0, s("native")),
        ]
    );
    // Bounds alone, and as `0x` quantities.
    let from = items(fx.get_ok("/v1/chains/local/transfers?from_block=0xe").await);
    assert_eq!(
        transfer_keys(&from),
        vec![
            (14, 0, 0, s("erc1155")),
            (14, 0, 1, s("erc1155")),
            (14, 1, 0, s("erc20")),
            (15, 1, 0, s("native"))
        ]
    );
    let to = items(fx.get_ok("/v1/chains/local/transfers?to_block=10").await);
    assert_eq!(
        transfer_keys(&to),
        vec![(10, 0, 0, s("erc20")), (10, 1, 0, s("erc20")), (10, 1, 0, s("native"))]
    );
    let one = items(fx.get_ok("/v1/chains/local/transfers?from_block=11&to_block=11").await);
    assert_eq!(transfer_keys(&one), vec![(11, 0, 0, s("erc721")), (11, 1, 0, s("erc721"))]);

    // Filters combine.
    let combined = items(
        fx.get_ok(&format!("/v1/chains/local/transfers?token={MULTI}&address={CAROL}&from_block=13")).await,
    );
    assert_eq!(transfer_keys(&combined), vec![(14, 0, 0, s("erc1155")), (14, 0, 1, s("erc1155"))]);
    let bob_token2 =
        items(fx.get_ok(&format!("/v1/chains/local/transfers?address={BOB}&token={TOKEN2}")).await);
    assert_eq!(transfer_keys(&bob_token2), vec![(14, 1, 0, s("erc20"))]);
    assert_eq!(bob_token2[0]["amount"], "1");

    // Nothing matches: an empty last page.
    let none = items(
        fx.get_ok("/v1/chains/local/transfers?address=0x00000000000000000000000000000000000000ff").await,
    );
    assert_eq!(none, Vec::<Value>::new());
    let none = items(fx.get_ok("/v1/chains/local/transfers?from_block=16").await);
    assert_eq!(none, Vec::<Value>::new());
}

#[tokio::test]
async fn transfers_keyset_pagination_visits_every_row_once_in_order() {
    let fx = Fixture::new().await;
    let all = expected_transfers(&fx.blocks, |_| true);
    assert_eq!(all.len(), 15);
    for limit in [1, 2, 3, 4, 7, 14, 15, 16] {
        let pages = fx.all_pages("/v1/chains/local/transfers", limit).await;
        assert_eq!(pages.len(), all.len().div_ceil(limit), "limit {limit}");
        assert_eq!(pages.concat(), all, "limit {limit}");
    }

    // limit=3: page boundaries fall inside an ERC-1155 batch (after 12.0.0) and the cursor is exact.
    let pages = fx.all_pages("/v1/chains/local/transfers", 3).await;
    let page_keys: Vec<_> = pages.iter().map(|p| transfer_keys(p)).collect();
    assert_eq!(page_keys[1].last(), Some(&(12, 0, 0, "erc1155".to_owned())));
    assert_eq!(page_keys[2].first(), Some(&(12, 0, 1, "erc1155".to_owned())));
    // limit=2: a boundary between two rows that differ only in their standard (erc20 and native at 10.1.0).
    let pages = fx.all_pages("/v1/chains/local/transfers", 2).await;
    assert_eq!(transfer_keys(&pages[0]).last(), Some(&(10, 1, 0, "erc20".to_owned())));
    assert_eq!(transfer_keys(&pages[1]).first(), Some(&(10, 1, 0, "native".to_owned())));

    // Pagination under a filter.
    let alice: alloy::primitives::Bytes = ALICE.parse().expect("hex");
    let filtered = expected_transfers(&fx.blocks, |t| t.from == alice || t.to == alice);
    assert_eq!(filtered.len(), 9);
    let pages = fx.all_pages(&format!("/v1/chains/local/transfers?address={ALICE}&from_block=10"), 2).await;
    assert_eq!(pages.len(), 5);
    assert_eq!(pages.concat(), filtered);

    // The first page of limit=3 gives the cursor of its last row.
    let page = fx.get_ok("/v1/chains/local/transfers?limit=3").await;
    let next = page["next_cursor"].as_str().expect("cursor").to_owned();
    let rest = fx.get_ok(&format!("/v1/chains/local/transfers?limit=100&cursor={next}")).await;
    assert_eq!(*rest["items"].as_array().expect("items"), all[3..].to_vec());
    assert_eq!(rest["next_cursor"], Value::Null);
}

#[tokio::test]
async fn logs_filters_and_pagination() {
    let fx = Fixture::new().await;
    let items = |page: Value| {
        assert_eq!(page["next_cursor"], Value::Null, "{page}");
        assert_eq!(page["indexed_head"], indexed_head(), "{page}");
        page["items"].as_array().expect("items").clone()
    };

    let all = expected_logs(&fx.blocks, |_| true);
    assert_eq!(all.len(), 11);
    let everything = items(fx.get_ok("/v1/chains/local/logs").await);
    assert_eq!(everything, all);
    assert_eq!(
        log_keys(&everything),
        vec![
            (10, 0),
            (10, 1),
            (11, 0),
            (11, 1),
            (12, 0),
            (12, 1),
            (13, 0),
            (14, 0),
            (14, 1),
            (15, 0),
            (15, 1)
        ]
    );
    // Spelled out: the ERC-721 transfer (4 topics) and the anonymous log (none).
    assert_eq!(
        everything[3],
        json!({
            "chain": "local",
            "block_number": 11,
            "block_hash": hex0x(block_hash(11)),
            "tx_hash": hex0x(tx_hash(11, 1)),
            "transaction_index": 1,
            "log_index": 1,
            "address": NFT,
            "topics": [
                "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
                "0x000000000000000000000000a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
                "0x000000000000000000000000b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0",
                "0x0000000000000000000000000000000000000000000000000000000000000007",
            ],
            "data": "0x",
            "finality": "finalized",
        })
    );
    assert_eq!(
        everything[10],
        json!({
            "chain": "local",
            "block_number": 15,
            "block_hash": hex0x(block_hash(15)),
            "tx_hash": hex0x(tx_hash(15, 0)),
            "transaction_index": 0,
            "log_index": 1,
            "address": TOKEN2,
            "topics": [],
            "data": "0xdeadbeef",
            "finality": "pending",
        })
    );

    let by_address = items(fx.get_ok(&format!("/v1/chains/local/logs?address={TOKEN2}")).await);
    assert_eq!(log_keys(&by_address), vec![(14, 1), (15, 0), (15, 1)]);
    assert_eq!(by_address, expected_logs(&fx.blocks, |l| hex0x(&l.address) == TOKEN2));

    let transfer_topic = hex0x(contracts::TRANSFER_TOPIC);
    let topic0 = items(fx.get_ok(&format!("/v1/chains/local/logs?topic0={transfer_topic}")).await);
    assert_eq!(log_keys(&topic0), vec![(10, 0), (10, 1), (11, 0), (11, 1), (13, 0), (14, 1)]);
    let batch_topic = upper0x(contracts::TRANSFER_BATCH_TOPIC);
    let topic0 = items(fx.get_ok(&format!("/v1/chains/local/logs?topic0={batch_topic}")).await);
    assert_eq!(log_keys(&topic0), vec![(12, 0), (14, 0)]);
    assert_eq!(
        topic0,
        expected_logs(&fx.blocks, |l| l.topics.first() == Some(&contracts::TRANSFER_BATCH_TOPIC))
    );

    let alice = hex0x(address_topic(ALICE));
    let topic1 = items(fx.get_ok(&format!("/v1/chains/local/logs?topic1={alice}")).await);
    // ERC-20/721 `from` = ALICE, and ERC-1155 operator = ALICE.
    assert_eq!(log_keys(&topic1), vec![(10, 0), (11, 1), (12, 0), (14, 0), (14, 1)]);
    assert_eq!(topic1, expected_logs(&fx.blocks, |l| l.topics.get(1) == Some(&address_topic(ALICE))));

    let carol = hex0x(address_topic(CAROL));
    let topic2 = items(fx.get_ok(&format!("/v1/chains/local/logs?topic2={carol}")).await);
    assert_eq!(log_keys(&topic2), vec![(10, 1), (15, 0)]);

    let token7 = hex0x(word(U256::from(7u64)));
    let topic3 = items(fx.get_ok(&format!("/v1/chains/local/logs?topic3={token7}")).await);
    assert_eq!(log_keys(&topic3), vec![(11, 0), (11, 1)]);
    let topic3 = items(fx.get_ok(&format!("/v1/chains/local/logs?topic3={carol}")).await);
    assert_eq!(log_keys(&topic3), vec![(12, 1), (14, 0)]);

    // Combined, with a block range.
    let uri = format!(
        "/v1/chains/local/logs?address={MULTI}&topic0={batch_topic}&topic1={alice}&from_block=13&to_block=14"
    );
    assert_eq!(log_keys(&items(fx.get_ok(&uri).await)), vec![(14, 0)]);
    let range = items(fx.get_ok("/v1/chains/local/logs?from_block=11&to_block=12").await);
    assert_eq!(log_keys(&range), vec![(11, 0), (11, 1), (12, 0), (12, 1)]);
    let none = items(fx.get_ok(&format!("/v1/chains/local/logs?address={TOKEN}&topic0={batch_topic}")).await);
    assert_eq!(none, Vec::<Value>::new());

    // Keyset pagination over all pages.
    for limit in [1, 2, 3, 10, 11, 12] {
        let pages = fx.all_pages("/v1/chains/local/logs", limit).await;
        assert_eq!(pages.len(), all.len().div_ceil(limit), "limit {limit}");
        assert_eq!(pages.concat(), all, "limit {limit}");
    }
    let pages = fx.all_pages(&format!("/v1/chains/local/logs?topic0={transfer_topic}"), 4).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 2]);
    assert_eq!(log_keys(&pages.concat()), vec![(10, 0), (10, 1), (11, 0), (11, 1), (13, 0), (14, 1)]);
}

#[tokio::test]
async fn bad_query_parameters_are_rejected_naming_the_field() {
    let fx = Fixture::new().await;
    let cases = [
        ("/v1/chains/local/transfers?fromBlock=10", "fromBlock"),
        ("/v1/chains/local/transfers?limit=2&limit=3", "limit"),
        ("/v1/chains/local/transfers?address=0xab&address=0xcd", "address"),
        ("/v1/chains/local/transfers?limit=0", "limit"),
        ("/v1/chains/local/transfers?limit=100000", "limit"),
        ("/v1/chains/local/transfers?limit=1001", "limit"),
        ("/v1/chains/local/transfers?limit=abc", "limit"),
        ("/v1/chains/local/transfers?limit=", "limit"),
        ("/v1/chains/local/transfers?from_block=-1", "from_block"),
        ("/v1/chains/local/transfers?to_block=latest", "to_block"),
        ("/v1/chains/local/transfers?from_block=10&to_block=5", "to_block"),
        ("/v1/chains/local/transfers?address=0x123", "address"),
        ("/v1/chains/local/transfers?address=a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1", "address"),
        ("/v1/chains/local/transfers?token=0x7e7e", "token"),
        ("/v1/chains/local/transfers?cursor=garbage", "cursor"),
        ("/v1/chains/local/transfers?cursor=10.1.0.erc777", "cursor"),
        ("/v1/chains/local/transfers?topic0=0x00", "topic0"),
        ("/v1/chains/local/logs?fromBlock=10", "fromBlock"),
        ("/v1/chains/local/logs?topic1=0x1234", "topic1"),
        ("/v1/chains/local/logs?topic4=0x1234", "topic4"),
        ("/v1/chains/local/logs?limit=0", "limit"),
        ("/v1/chains/local/logs?from_block=10&to_block=5", "to_block"),
        ("/v1/chains/local/logs?cursor=garbage", "cursor"),
        ("/v1/chains/local/logs?cursor=10.1.0.erc20", "cursor"),
        ("/v1/chains/local/logs?token=0x7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e7e", "token"),
    ];
    for (uri, field) in cases {
        let (status, body) = fx.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{uri}: {body}");
        assert_eq!(body["error"]["field"], field, "{uri}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{uri}: {body}");
    }
    // The accepted limits are inclusive.
    assert_eq!(fx.get("/v1/chains/local/transfers?limit=1000").await.0, StatusCode::OK);
    assert_eq!(fx.get("/v1/chains/local/logs?limit=1").await.0, StatusCode::OK);

    for uri in ["/v1/chains/nope/transfers", "/v1/chains/nope/logs", "/v1/chains/nope/blocks/1", "/v2/chains"]
    {
        let (status, body) = fx.get(uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{uri}: {body}");
    }
    let (_, body) = fx.get("/v1/chains/nope/transfers").await;
    assert_eq!(body["error"]["message"], "unknown chain \"nope\"");
}

#[tokio::test]
async fn rpc_single_requests_echo_their_id() {
    let fx = Fixture::new().await;
    let (status, body) =
        fx.rpc("local", r#"{"jsonrpc":"2.0","id":42,"method":"eth_chainId","params":[]}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Some(json!({ "jsonrpc": "2.0", "id": 42, "result": "0x7a69" })));

    let (status, body) = fx.rpc("local", r#"{"jsonrpc":"2.0","id":"req-7","method":"eth_chainId"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Some(json!({ "jsonrpc": "2.0", "id": "req-7", "result": "0x7a69" })));

    // The answer says which upstream served it and how many attempts it took (`eth_chainId` is a cache hit by
    // now, so a method that is never cached).
    let request = Request::post("/rpc/local")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#))
        .expect("request");
    let response = fx.app.clone().oneshot(request).await.expect("the router is infallible");
    assert_eq!(response.headers().get("x-chainmux-upstream").and_then(|v| v.to_str().ok()), Some("anvil"));
    assert_eq!(response.headers().get("x-chainmux-attempts").and_then(|v| v.to_str().ok()), Some("1"));
    assert!(response.headers().get("x-chainmux-hedges").is_none());

    // `null` is an id too (answered), unlike an absent id (a notification: no answer at all).
    let (status, body) = fx.rpc("local", r#"{"jsonrpc":"2.0","id":null,"method":"eth_chainId"}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Some(json!({ "jsonrpc": "2.0", "id": null, "result": "0x7a69" })));
    let (status, body) = fx.rpc("local", r#"{"jsonrpc":"2.0","method":"eth_chainId","params":[]}"#).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, None));
    // `"params": null` means no params, as geth takes it.
    let (status, body) =
        fx.rpc("local", r#"{"jsonrpc":"2.0","id":3,"method":"eth_chainId","params":null}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Some(json!({ "jsonrpc": "2.0", "id": 3, "result": "0x7a69" })));

    // The upstream's own error for bad params, with the caller's id.
    let (status, body) = fx
        .rpc("local", r#"{"jsonrpc":"2.0","id":3,"method":"eth_getBalance","params":["0x123","latest"]}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    let body = body.expect("answer");
    assert_eq!(body["id"], 3, "{body}");
    assert_eq!(body["error"]["code"], -32602, "{body}");
    assert_eq!(body.get("result"), None, "{body}");

    let (status, body) = fx.rpc("nope", r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body.expect("body")["error"]["code"], "not_found");
}

#[tokio::test]
async fn rpc_batches_are_answered_in_order_and_fail_per_element() {
    let fx = Fixture::new().await;
    let batch = json!([
        { "jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": [] },
        { "jsonrpc": "2.0", "id": "two", "method": "eth_getBalance", "params": ["0x123", "latest"] },
        { "jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": [ALICE, "latest"] },
    ]);
    let (status, body) = fx.rpc("local", batch.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let body = body.expect("answer");
    let answers = body.as_array().expect("a batch answer is an array");
    assert_eq!(answers.len(), 3, "{body}");
    assert_eq!(answers[0], json!({ "jsonrpc": "2.0", "id": 1, "result": "0x7a69" }));
    assert_eq!(answers[1]["id"], "two", "{body}");
    assert_eq!(answers[1]["error"]["code"], -32602, "{body}");
    assert_eq!(answers[1].get("result"), None, "{body}");
    assert_eq!(answers[2], json!({ "jsonrpc": "2.0", "id": 3, "result": "0x0" }));

    // Invalid elements get their own error; notifications get no answer; the rest is answered.
    let batch = json!([
        1,
        { "jsonrpc": "2.0", "id": 2, "params": [] },
        { "jsonrpc": "2.0", "method": "eth_chainId" },
        { "jsonrpc": "1.0", "id": 4, "method": "eth_chainId" },
        { "jsonrpc": "2.0", "id": 5, "method": "eth_chainId" },
    ]);
    let (status, body) = fx.rpc("local", batch.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let body = body.expect("answer");
    let answers = body.as_array().expect("array");
    assert_eq!(answers.len(), 4, "{body}");
    assert_eq!(answers[0]["id"], Value::Null, "{body}");
    assert_eq!(answers[0]["error"]["code"], -32600, "{body}");
    assert_eq!(answers[1]["id"], 2, "{body}");
    assert_eq!(answers[1]["error"]["code"], -32600, "{body}");
    assert_eq!(answers[2]["id"], 4, "{body}");
    assert_eq!(answers[2]["error"]["code"], -32600, "{body}");
    assert_eq!(answers[3], json!({ "jsonrpc": "2.0", "id": 5, "result": "0x7a69" }));

    // Only notifications: nothing to answer.
    let batch = json!([{ "jsonrpc": "2.0", "method": "eth_chainId" }]);
    assert_eq!(fx.rpc("local", batch.to_string()).await, (StatusCode::NO_CONTENT, None));

    // max_batch_size is 5.
    let request = |id: usize| json!({ "jsonrpc": "2.0", "id": id, "method": "eth_chainId" });
    let five: Vec<Value> = (0..5).map(request).collect();
    let (status, body) = fx.rpc("local", Value::Array(five).to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let body = body.expect("answer");
    let answers = body.as_array().expect("array");
    assert!(answers.iter().all(|a| a["result"] == "0x7a69"), "{body}");
    let ids: Vec<Value> = answers.iter().map(|a| a["id"].clone()).collect();
    assert_eq!(ids, (0..5).map(|i| json!(i)).collect::<Vec<_>>());
    let six: Vec<Value> = (0..6).map(request).collect();
    let (status, body) = fx.rpc("local", Value::Array(six).to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let body = body.expect("answer");
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["id"], Value::Null, "{body}");
    assert_eq!(body["error"]["code"], -32600, "{body}");
}

#[tokio::test]
async fn rpc_protocol_errors() {
    let fx = Fixture::new().await;
    let error_of = |body: Option<Value>| {
        let body = body.expect("answer");
        assert_eq!(body["jsonrpc"], "2.0", "{body}");
        assert_eq!(body.get("result"), None, "{body}");
        (body["id"].clone(), body["error"]["code"].clone())
    };

    let (status, body) = fx.rpc("local", "{bad json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        Some(json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32700, "message": "Parse error" } }))
    );

    let (status, body) = fx.rpc("local", "[]").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(error_of(body), (Value::Null, json!(-32600)));

    let (_, body) = fx.rpc("local", r#"{"jsonrpc":"2.0","id":9}"#).await;
    assert_eq!(error_of(body), (json!(9), json!(-32600)));
    let (_, body) = fx.rpc("local", r#"{"jsonrpc":"2.0","id":9,"method":7}"#).await;
    assert_eq!(error_of(body), (json!(9), json!(-32600)));
    let (_, body) = fx.rpc("local", r#"{"id":9,"method":"eth_chainId"}"#).await;
    assert_eq!(error_of(body), (json!(9), json!(-32600)));
    let (_, body) = fx.rpc("local", r#"{"jsonrpc":"2.0","id":{"a":1},"method":"eth_chainId"}"#).await;
    assert_eq!(error_of(body), (Value::Null, json!(-32600)));
    let (_, body) = fx.rpc("local", r#""eth_chainId""#).await;
    assert_eq!(error_of(body), (Value::Null, json!(-32600)));
    let (_, body) = fx.rpc("local", r#"{"jsonrpc":"2.0","id":9,"method":"eth_chainId","params":"x"}"#).await;
    assert_eq!(error_of(body), (json!(9), json!(-32602)));
}

#[tokio::test]
async fn rpc_body_limit() {
    let fx = Fixture::new().await;
    // Padded to an exact size: an unknown member is ignored by the proxy.
    let sized = |len: usize| {
        let head = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","pad":""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
    };
    assert_eq!(sized(1024).len(), 1024);

    let (status, body) = fx.rpc("local", sized(1024)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Some(json!({ "jsonrpc": "2.0", "id": 1, "result": "0x7a69" })));

    let (status, body) = fx.rpc("local", sized(1025)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body,
        Some(
            json!({ "error": { "code": "payload_too_large", "message": "request body exceeds 1024 bytes" } })
        )
    );
    let (status, body) = fx.rpc("local", sized(64 * 1024)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body.expect("body")["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn rpc_revert_is_passed_through_from_the_upstream() {
    let fx = Fixture::new().await;
    let eth = Eth::new(&fx.anvil.url);
    let from = eth.accounts().await[0];
    let nft = eth.deploy(from, contracts::TEST_NFT).await;
    // Transfer of a token nobody owns.
    let data = contracts::nft_transfer(from, U256::from(424_242u64));
    let call = json!({ "from": from.to_string(), "to": nft.to_string(), "data": data.to_string() });
    let params = json!([call, "latest"]);
    let direct = eth.try_request("eth_call", params.clone()).await.expect_err("the call reverts");

    let request = json!({ "jsonrpc": "2.0", "id": "call-1", "method": "eth_call", "params": params });
    let (status, body) = fx.rpc("local", request.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let body = body.expect("answer");
    assert_eq!(body["id"], "call-1", "{body}");
    assert_eq!(body.get("result"), None, "{body}");
    let error = &body["error"];
    let code = error["code"].as_i64().expect("code");
    assert!(code == 3 || code == -32000, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("revert")), "{body}");
    // Exactly what anvil answers itself, data included.
    assert_eq!(*error, direct);

    // A reverting call is the caller's fault: it is not retried and the upstream stays healthy.
    let chains = fx.get_ok("/v1/chains").await;
    let anvil = &chains["chains"][0]["upstreams"][0];
    assert_eq!(anvil["state"], "healthy", "{anvil}");
    assert_eq!(anvil["requests"], 2, "identity check + one eth_call: {anvil}");
}

#[tokio::test]
async fn metrics_are_labelled_by_matched_route() {
    let fx = Fixture::new().await;
    let counter = |text: &str, prefix: &str| -> f64 {
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let transfers_ok =
        r#"chainmux_http_requests_total{route="/v1/chains/{chain}/transfers",method="GET",status="200"}"#;

    let before = fx.send(Request::get("/metrics").body(Body::empty()).expect("req")).await;
    let before = String::from_utf8(before.2).expect("utf-8");
    fx.get_ok("/v1/chains/local/transfers?limit=2").await;
    fx.get_ok(&format!("/v1/chains/local/transfers?address={ALICE}")).await;
    fx.get_ok("/v1/chains/local/transfers").await;
    let (status, _) = fx.rpc("local", r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber"}"#).await;
    assert_eq!(status, StatusCode::OK);

    let (status, content_type, body) =
        fx.send(Request::get("/metrics").body(Body::empty()).expect("req")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4"));
    let text = String::from_utf8(body).expect("utf-8");
    assert!(text.contains(transfers_ok), "{text}");
    // Other tests in this binary may run concurrently: at least our three requests were counted.
    assert!(counter(&text, transfers_ok) - counter(&before, transfers_ok) >= 3.0, "{text}");
    // Labelled by the matched route, never by the raw path.
    assert!(!text.contains("/v1/chains/local/"), "{text}");
    assert!(
        text.lines().any(|l| l
            .starts_with(r#"chainmux_http_requests_total{route="/rpc/{chain}",method="POST",status="200"}"#)),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("chainmux_upstream_requests_total{")
            && l.contains(r#"chain="local""#)
            && l.contains(r#"upstream="anvil""#)
            && l.contains(r#"outcome="success""#)),
        "{text}"
    );
    assert!(text.contains("chainmux_http_request_duration_seconds_bucket"), "{text}");
}
