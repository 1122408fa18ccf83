//! `/openapi.json` matches what the gateway serves: the router built from a real store (fresh PostgreSQL database
//! holding the synthetic EVM chain of `common`, one decoded-event entry on it, and the Solana chain of
//! `common::solana`) and a real anvil upstream, driven with `oneshot`.
//!
//! - the documented paths are the router's paths (`route_paths`), and each path's documented methods are exactly
//!   those it answers (any other answers 405);
//! - every documented JSON answer of every GET route, called with data, validates against its documented schema
//!   (a small validator for the subset of JSON Schema the document uses; objects are closed, so an undocumented
//!   field fails), including error answers and the documented headers;
//! - every documented query parameter is accepted, and every other name is refused as unknown.

#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chainmux_core::{BlockPtr, ChainKind, ChainSpec, DecodedEvent};
use chainmux_gateway::{AppState, ChainHandle, GatewayConfig, route_paths, router};
use chainmux_rpc::{PoolConfig, UpstreamConfig};
use chainmux_store::Store;
use chainmux_testkit::contracts::TRANSFER_TOPIC;
use chainmux_testkit::{Anvil, TestDb};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use common::solana::{self, SOL, SOL_HEADS};
use common::{ALICE, BOB, CHAIN, CHAIN_ID, HEADS, TOKEN, chain_blocks, config, hex0x, ptr, tx_hash};

/// The EVM chain, with transfers, logs and one decoded event, and the Solana chain, with instructions.
struct Fixture {
    app: Router,
    _anvil: Anvil,
    _db: TestDb,
}

impl Fixture {
    async fn new() -> Self {
        chainmux_testkit::install_crypto_provider();
        let (db, anvil) = tokio::join!(TestDb::create(), Anvil::spawn());
        let store = Store::connect(&db.url, 5).await.expect("connect to the test database");
        store.migrate().await.expect("migrate");
        let evm = ChainSpec { name: CHAIN.into(), kind: ChainKind::Evm, chain_id: CHAIN_ID };
        let sol = ChainSpec { name: SOL.into(), kind: ChainKind::Solana, chain_id: 0 };
        store.register_chain(&evm).await.expect("register the EVM chain");
        store.register_chain(&sol).await.expect("register the Solana chain");

        // One `[[chains.contracts]]` entry decoding block 10's first ERC-20 Transfer.
        let transfer = json!({
            "name": "Transfer",
            "signature": "Transfer(address,address,uint256)",
            "anonymous": false,
            "params": [
                { "name": "from", "type": "address", "indexed": true },
                { "name": "to", "type": "address", "indexed": true },
                { "name": "value", "type": "uint256", "indexed": false },
            ],
        });
        sqlx::query(
            "INSERT INTO contract_sources (chain, name, fingerprint, kind, start_block, live_from, caught_up_to, \
             events, updated_at) VALUES ($1, 'token', 'fingerprint', 'addresses', 0, 10, 9, $2::jsonb, now())",
        )
        .bind(CHAIN)
        .bind(json!([transfer]).to_string())
        .execute(store.pool())
        .await
        .expect("insert the contract entry");
        // Two addresses and two events, so that pages of one item have a next cursor.
        for address in [TOKEN, common::TOKEN2] {
            sqlx::query("INSERT INTO contracts (chain, name, address) VALUES ($1, 'token', $2)")
                .bind(CHAIN)
                .bind(alloy::hex::decode(address).expect("hex"))
                .execute(store.pool())
                .await
                .expect("insert an address of the entry");
        }

        let mut blocks = chain_blocks();
        for log in blocks[0].logs.clone() {
            blocks[0].events.push(DecodedEvent {
                tx_hash: log.tx_hash.clone(),
                tx_index: log.tx_index,
                log_index: log.log_index,
                address: log.address.clone(),
                contract: "token".into(),
                name: "Transfer".into(),
                signature: "Transfer(address,address,uint256)".into(),
                args: json!({ "from": ALICE, "to": BOB, "value": "1000" }).to_string(),
            });
        }
        let (first, second) = blocks.split_at(3);
        store.write_batch(CHAIN, None, first).await.expect("write blocks 10..=12");
        store.write_batch(CHAIN, Some(ptr(12)), second).await.expect("write blocks 13..=16");
        store.set_heads(CHAIN, &HEADS).await.expect("set heads");

        let slots = solana::solana_blocks();
        let (first, second) = slots.split_at(3);
        store.write_batch(SOL, None, first).await.expect("write slots 300..=303");
        let at = BlockPtr::new(303, solana::slot_hash(303));
        store.write_batch(SOL, Some(at), second).await.expect("write slots 304..=305");
        store.set_heads(SOL, &SOL_HEADS).await.expect("set the Solana heads");

        let upstream = UpstreamConfig {
            name: "anvil".into(),
            url: anvil.url.parse().expect("anvil url"),
            policy: Default::default(),
        };
        let pool = Arc::new(chainmux_evm::EvmNetwork::pool(&evm, vec![upstream], PoolConfig::default()));
        pool.verify_all().await;
        let sol_pool = Arc::new(chainmux_rpc::Pool::new(SOL, Vec::new(), PoolConfig::default()));
        let chains = vec![ChainHandle { spec: evm, pool }, ChainHandle { spec: sol, pool: sol_pool }];
        // A short `min_block` wait: the test reads its 503 once.
        let config = GatewayConfig { min_block_wait: Duration::from_millis(100), ..config() };
        let app = router(AppState::new(store, chains, config));
        Self { app, _anvil: anvil, _db: db }
    }

    /// Sends a request; the body is read unless it is a live feed (which never ends).
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.app.clone().oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let content_type =
            headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = if content_type.starts_with("text/event-stream") {
            Vec::new()
        } else {
            response.into_body().collect().await.expect("read the body").to_bytes().to_vec()
        };
        Answer { status, headers, content_type, body }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).expect("request")).await
    }

    /// The data of the first `event` message of live feed `uri`.
    async fn first_message(&self, uri: &str, event: &str) -> Value {
        let request = Request::get(uri).body(Body::empty()).expect("request");
        let response = self.app.clone().oneshot(request).await.expect("the router is infallible");
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let mut body = response.into_body();
        let mut text = String::new();
        // Only a guard against a hang: the feed sends the stored items at once.
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let frame = body.frame().await.expect("the feed ends").expect("a frame");
                if let Ok(data) = frame.into_data() {
                    text.push_str(std::str::from_utf8(&data).expect("UTF-8"));
                }
                for message in text.split("\n\n") {
                    let lines: Vec<&str> = message.lines().collect();
                    if lines.contains(&format!("event: {event}").as_str())
                        && let Some(data) = lines.iter().find_map(|l| l.strip_prefix("data: "))
                    {
                        return serde_json::from_str::<Value>(data).expect("JSON data");
                    }
                }
            }
        });
        read.await.unwrap_or_else(|_| panic!("{uri}: no {event} message"))
    }

    async fn document(&self) -> Value {
        let answer = self.get("/openapi.json").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.content_type, "application/json");
        answer.json("/openapi.json")
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self, what: &str) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!("{what}: body is not JSON ({err}): {}", String::from_utf8_lossy(&self.body))
        })
    }
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `path` with its parameters filled in with values that exist on the EVM chain.
fn concrete(path: &str) -> String {
    path.replace("{chain}", CHAIN).replace("{id}", "10").replace("{hash}", &hex0x(tx_hash(10, 0)))
}

/// The operations of the document: (path, method) → operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: unexpected key {method}");
            out.insert((path.clone(), method.clone()), operation.clone());
        }
    }
    out
}

#[tokio::test]
async fn documented_routes_are_the_served_routes() {
    let fx = Fixture::new().await;
    let doc = fx.document().await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);

    let served: BTreeSet<String> = route_paths().into_iter().map(str::to_owned).collect();
    let documented: BTreeSet<String> = doc["paths"].as_object().expect("paths").keys().cloned().collect();
    assert_eq!(documented, served, "documented paths vs the router's");

    let operations = operations(&doc);
    let mut ids = BTreeSet::new();
    for path in &served {
        for method in METHODS {
            let request = Request::builder()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"))
                .uri(concrete(path))
                .body(Body::empty())
                .expect("request");
            let answer = fx.send(request).await;
            let operation = operations.get(&(path.clone(), method.to_owned()));
            match operation {
                None => assert_eq!(
                    answer.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served ({}) but not documented",
                    answer.status
                ),
                Some(operation) => {
                    assert_ne!(
                        answer.status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path} is documented"
                    );
                    if answer.status == StatusCode::NOT_FOUND {
                        let body = answer.json(path);
                        assert_ne!(body["error"]["message"], "no such route", "{method} {path}: fallback");
                    }
                    let id = operation["operationId"].as_str().expect("operationId").to_owned();
                    assert!(ids.insert(id.clone()), "operationId {id} twice");
                }
            }
        }
    }
    // An undocumented path answers the fallback's 404.
    let answer = fx.get("/v1/chains/local/nothing").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json("fallback")["error"]["message"], "no such route");
}

/// Validates `value` against `schema` (resolving `$ref`s in `doc`); errors name the JSON path.
fn validate(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        errors.push(format!("{at}: schema is not an object: {schema}"));
        return;
    };
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.strip_prefix("#/components/schemas/").expect("a local schema reference");
        let target = &doc["components"]["schemas"][name];
        assert!(target.is_object(), "{at}: dangling reference {reference}");
        return validate(doc, target, value, at, errors);
    }
    for keyword in schema.keys() {
        let known = [
            "type",
            "properties",
            "required",
            "items",
            "oneOf",
            "anyOf",
            "allOf",
            "minimum",
            "enum",
            "description",
            "format",
            "title",
            "examples",
            "example",
            "default",
            "additionalProperties",
        ];
        assert!(known.contains(&keyword.as_str()), "{at}: the validator does not know `{keyword}`");
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            other => panic!("{at}: type {other}"),
        };
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            other => panic!("{at}: unknown type {other}"),
        });
        if !fits {
            errors.push(format!("{at}: {value} is not of type {types:?}"));
            return;
        }
    }
    if let (Some(minimum), Some(number)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
        && number < minimum
    {
        errors.push(format!("{at}: {number} is below the minimum {minimum}"));
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    for (keyword, exactly_one) in [("oneOf", true), ("anyOf", false)] {
        if let Some(choices) = schema.get(keyword).and_then(Value::as_array) {
            let matching = choices
                .iter()
                .filter(|choice| {
                    let mut inner = Vec::new();
                    validate(doc, choice, value, at, &mut inner);
                    inner.is_empty()
                })
                .count();
            if matching == 0 || (exactly_one && matching > 1) {
                errors.push(format!("{at}: {value} matches {matching} of the {keyword} choices"));
            }
        }
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            validate(doc, part, value, at, errors);
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            validate(doc, items, item, &format!("{at}[{i}]"), errors);
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = name.as_str().expect("required name");
            if !object.contains_key(name) {
                errors.push(format!("{at}: required field {name} is missing"));
            }
        }
        // Closed objects: a field the document does not name fails, unless it allows any.
        let open = schema.get("additionalProperties").is_some_and(|a| a != &Value::Bool(false));
        if let Some(properties) = properties {
            for (name, field) in object {
                match properties.get(name) {
                    Some(field_schema) => validate(doc, field_schema, field, &format!("{at}.{name}"), errors),
                    None if open => {}
                    None => errors.push(format!("{at}: undocumented field {name}")),
                }
            }
        }
    }
}

/// Checks `answer` against the documented response of `operation` for its status: content type, headers and
/// (JSON) body. Returns the body.
fn check_answer(doc: &Value, operation: &Value, uri: &str, answer: &Answer) -> Value {
    let status = answer.status.as_u16().to_string();
    let response = &operation["responses"][&status];
    assert!(
        response.is_object(),
        "{uri}: status {status} is not documented: {}",
        String::from_utf8_lossy(&answer.body)
    );
    let content = response["content"].as_object().expect("documented content");
    let (media, media_schema) =
        content.iter().find(|(media, _)| answer.content_type.starts_with(media.as_str())).unwrap_or_else(
            || panic!("{uri}: content type {} is not documented for {status}", answer.content_type),
        );
    for name in response["headers"].as_object().into_iter().flatten().map(|(name, _)| name) {
        let value =
            answer.headers.get(name.as_str()).unwrap_or_else(|| panic!("{uri}: header {name} missing"));
        assert!(value.to_str().is_ok_and(|v| v.parse::<u64>().is_ok()), "{uri}: {name}: {value:?}");
    }
    if media != "application/json" {
        return Value::Null;
    }
    let body = answer.json(uri);
    let mut errors = Vec::new();
    validate(doc, &media_schema["schema"], &body, "$", &mut errors);
    assert!(
        errors.is_empty(),
        "{uri} ({status}) does not match its schema:\n{}\n{body:#}",
        errors.join("\n")
    );
    body
}

#[tokio::test]
async fn answers_validate_against_the_documented_schemas() {
    let fx = Fixture::new().await;
    let doc = fx.document().await;
    let sol_tx = solana::b58(solana::signature(301, 1));
    let evm_hash = hex0x(common::block_hash(12));
    // Each documented JSON GET route, called where it has data; on both chain families where it serves both.
    let calls: BTreeMap<&str, Vec<String>> = BTreeMap::from([
        ("/health", vec!["/health".to_owned()]),
        ("/ready", vec!["/ready".to_owned()]),
        ("/v1/chains", vec!["/v1/chains".to_owned()]),
        ("/v1/status", vec!["/v1/status".to_owned()]),
        ("/v1/chains/{chain}/health", vec!["/v1/chains/local/health".to_owned()]),
        (
            "/v1/chains/{chain}/blocks/{id}",
            vec![
                "/v1/chains/local/blocks/10".to_owned(),
                format!("/v1/chains/local/blocks/{evm_hash}"),
                "/v1/chains/solana-test/blocks/300".to_owned(),
                "/v1/chains/solana-test/blocks/303".to_owned(),
            ],
        ),
        (
            "/v1/chains/{chain}/transactions/{hash}",
            vec![
                format!("/v1/chains/local/transactions/{}", hex0x(tx_hash(10, 0))),
                format!("/v1/chains/local/transactions/{}", hex0x(tx_hash(13, 2))),
                format!("/v1/chains/solana-test/transactions/{sol_tx}"),
                format!("/v1/chains/solana-test/transactions/{}", solana::b58(solana::signature(300, 0))),
            ],
        ),
        (
            "/v1/chains/{chain}/transfers",
            vec![
                "/v1/chains/local/transfers?limit=1000".to_owned(),
                "/v1/chains/solana-test/transfers".to_owned(),
            ],
        ),
        ("/v1/chains/{chain}/logs", vec!["/v1/chains/local/logs?limit=2".to_owned()]),
        ("/v1/chains/{chain}/instructions", vec!["/v1/chains/solana-test/instructions".to_owned()]),
        ("/v1/chains/{chain}/events", vec!["/v1/chains/local/events".to_owned()]),
        ("/v1/chains/{chain}/contracts", vec!["/v1/chains/local/contracts".to_owned()]),
    ]);
    let operations = operations(&doc);
    let json_gets: BTreeSet<&str> = operations
        .iter()
        .filter(|((_, method), op)| {
            method == "get" && op["responses"]["200"]["content"]["application/json"].is_object()
        })
        .map(|((path, _), _)| path.as_str())
        .filter(|path| *path != "/openapi.json")
        .collect();
    assert_eq!(json_gets, calls.keys().copied().collect(), "every documented JSON GET route is called");

    for (path, uris) in &calls {
        let operation = &operations[&((*path).to_owned(), "get".to_owned())];
        for uri in uris {
            let answer = fx.get(uri).await;
            assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&answer.body));
            let body = check_answer(&doc, operation, uri, &answer);
            // With data: a page that validated has items, so their schema was exercised too.
            if let Some(items) = body.get("items") {
                assert!(items.as_array().is_some_and(|i| !i.is_empty()), "{uri}: no items to validate");
            }
        }
    }
    // Solana's error JSON and the contract entries' progress took part.
    let failed = fx.get(&format!("/v1/chains/solana-test/transactions/{sol_tx}")).await.json("tx");
    assert!(failed["error"].is_object(), "{failed}");
    let contracts = fx.get("/v1/chains/local/contracts").await.json("contracts");
    assert_eq!(contracts["sources"][0]["progress"]["status"], "live", "{contracts}");

    // Error answers have the documented error shape: (documented path, request, status).
    const TRANSFERS: &str = "/v1/chains/{chain}/transfers";
    let errors = [
        (TRANSFERS, "/v1/chains/local/transfers?bogus=1", StatusCode::BAD_REQUEST),
        (TRANSFERS, "/v1/chains/nowhere/transfers", StatusCode::NOT_FOUND),
        ("/v1/chains/{chain}/blocks/{id}", "/v1/chains/local/blocks/999", StatusCode::NOT_FOUND),
        ("/v1/chains/{chain}/instructions", "/v1/chains/local/instructions", StatusCode::NOT_FOUND),
        (TRANSFERS, "/v1/chains/local/transfers?min_block=1000000", StatusCode::SERVICE_UNAVAILABLE),
        (TRANSFERS, "/v1/chains/local/transfers?key=cmx_not_a_key", StatusCode::FORBIDDEN),
    ];
    for (path, uri, status) in errors {
        let answer = fx.get(uri).await;
        assert_eq!(answer.status, status, "{uri}");
        let body = check_answer(&doc, &operations[&(path.to_owned(), "get".to_owned())], uri, &answer);
        assert!(body["error"]["code"].is_string(), "{uri}: {body}");
    }

    // The live feeds are event streams, whose items are shaped as in the list routes.
    for (uri, event, item) in [
        ("/v1/chains/local/transfers/stream?from_block=10", "transfer", "TransferItem"),
        ("/v1/chains/local/events/stream?from_block=10", "event", "EventItem"),
    ] {
        let path = uri.split('?').next().expect("path").replace("/local/", "/{chain}/");
        let answer = fx.get(uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        check_answer(&doc, &operations[&(path, "get".to_owned())], uri, &answer);
        let message = fx.first_message(uri, event).await;
        let keys: BTreeSet<&str> = message.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["item", "block", "finality"]), "{uri}: {message}");
        let mut errors = Vec::new();
        let schema = json!({ "$ref": format!("#/components/schemas/{item}") });
        validate(&doc, &schema, &message["item"], "$.item", &mut errors);
        validate(
            &doc,
            &json!({ "$ref": "#/components/schemas/HeadPtr" }),
            &message["block"],
            "$.block",
            &mut errors,
        );
        assert!(errors.is_empty(), "{uri}: {}\n{message}", errors.join("\n"));
    }
    // So is the document itself, and the metrics are text.
    check_answer(
        &doc,
        &operations[&("/metrics".to_owned(), "get".to_owned())],
        "/metrics",
        &fx.get("/metrics").await,
    );
}

/// A value `name` accepts on `path` (EVM chain, except the Solana-only `/instructions`).
fn sample(name: &str, path: &str) -> String {
    match name {
        "address" if path.contains("/events") || path.contains("/logs") => TOKEN.to_owned(),
        "address" => ALICE.to_owned(),
        "token" => TOKEN.to_owned(),
        "from_block" | "min_block" => if path.contains("instructions") { "300" } else { "10" }.to_owned(),
        "to_block" => if path.contains("instructions") { "305" } else { "16" }.to_owned(),
        "limit" => "1".to_owned(),
        "topic0" => hex0x(TRANSFER_TOPIC),
        "topic1" | "topic2" | "topic3" => hex0x(common::address_topic(ALICE)),
        "contract" | "name" if path.contains("/contracts") => "token".to_owned(),
        "contract" => "token".to_owned(),
        "name" => "Transfer".to_owned(),
        "program" => solana::TOKEN_PROGRAM.to_owned(),
        "tx_hash" => solana::b58(solana::signature(301, 0)),
        other => panic!("no sample value for parameter {other} of {path}"),
    }
}

#[tokio::test]
async fn documented_query_parameters_are_accepted_and_others_refused() {
    let fx = Fixture::new().await;
    let doc = fx.document().await;
    let operations = operations(&doc);
    let query_names = |op: &Value| -> BTreeSet<String> {
        op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let everywhere: BTreeSet<String> = operations.values().flat_map(query_names).collect();
    let unknown = |answer: &Answer, name: &str| {
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        answer.status == StatusCode::BAD_REQUEST
            && body["error"]["field"] == name
            && body["error"]["message"].as_str().is_some_and(|m| m.starts_with("unknown parameter"))
    };

    let mut checked = 0;
    for ((path, method), operation) in &operations {
        if method != "get" {
            continue;
        }
        let base = if path.contains("/instructions") { path.replace("{chain}", SOL) } else { concrete(path) };
        let names = query_names(operation);
        for name in &names {
            let uri = match name.as_str() {
                "arg.<param>" => format!("{base}?name=Transfer&arg.value=1000"),
                // A real cursor: the one a first page of one item hands out.
                "cursor" => {
                    let first = fx.get(&format!("{base}?limit=1")).await.json(&base);
                    let cursor = first["next_cursor"].as_str().unwrap_or_else(|| panic!("{base}: {first}"));
                    format!("{base}?limit=1&cursor={cursor}")
                }
                // A resume token is checked for form: any error may name the parameter, but not as unknown.
                "last_event_id" => {
                    let answer = fx.get(&format!("{base}?last_event_id=0")).await;
                    assert!(!unknown(&answer, name), "{base}: documented {name} is refused as unknown");
                    checked += 1;
                    continue;
                }
                _ => format!("{base}?{name}={}", sample(name, path)),
            };
            let answer = fx.get(&uri).await;
            assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&answer.body));
            checked += 1;
        }
        // The probes, `/v1/chains` and the WebSocket take no query parameters and do not read the query at all.
        if names.is_empty() {
            let chain_probe = path == "/v1/chains/{chain}/health";
            assert!(
                !path.starts_with("/v1/chains/") || chain_probe,
                "{path}: a chain route without min_block"
            );
            continue;
        }
        // Every other name, the ones documented on other routes included, is refused as unknown.
        for name in everywhere.difference(&names).map(String::as_str).chain(["bogus", "fromBlock"]) {
            let name = if name == "arg.<param>" { "arg.value" } else { name };
            let answer = fx.get(&format!("{base}?{name}=1")).await;
            assert!(unknown(&answer, name), "{base}: undocumented {name} is not refused ({})", answer.status);
        }
    }
    assert!(checked >= 30, "only {checked} documented parameters checked");
}

#[tokio::test]
async fn api_keys_are_read_where_the_document_says() {
    let fx = Fixture::new().await;
    let doc = fx.document().await;
    let schemes = &doc["components"]["securitySchemes"];
    let mut ways: Vec<(String, String)> = Vec::new();
    for scheme in schemes.as_object().expect("security schemes").values() {
        match scheme["type"].as_str() {
            Some("apiKey") => ways.push((
                scheme["in"].as_str().expect("in").to_owned(),
                scheme["name"].as_str().expect("name").to_owned(),
            )),
            Some("http") => {
                assert_eq!(scheme["scheme"], "bearer", "{scheme}");
                ways.push(("header".into(), "authorization".into()));
            }
            other => panic!("unexpected security scheme {other:?}"),
        }
    }
    ways.sort();
    assert_eq!(
        ways,
        [("header", "authorization"), ("header", "x-api-key"), ("query", "key")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    // A malformed key sent each documented way is read as a key (403), not ignored (200) nor refused as an unknown
    // parameter (400).
    for (place, name) in ways {
        let request = Request::get(if place == "query" {
            format!("/v1/chains/local/transfers?{name}=cmx_nope")
        } else {
            "/v1/chains/local/transfers".to_owned()
        });
        let request = match (place.as_str(), name.as_str()) {
            ("header", "authorization") => request.header(header::AUTHORIZATION, "Bearer cmx_nope"),
            ("header", name) => request.header(name, "cmx_nope"),
            _ => request,
        };
        let answer = fx.send(request.body(Body::empty()).expect("request")).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{place} {name}");
    }
    // The probes and the document itself need no key: they are documented so.
    for path in ["/health", "/ready", "/metrics", "/openapi.json"] {
        assert_eq!(doc["paths"][path]["get"]["security"], json!([{}]), "{path}");
    }
}

#[tokio::test]
async fn the_validator_refuses_what_the_document_does_not_say() {
    let fx = Fixture::new().await;
    let doc = fx.document().await;
    let operations = operations(&doc);
    let operation = &operations[&("/v1/chains/{chain}/transfers".to_owned(), "get".to_owned())];
    let schema = &operation["responses"]["200"]["content"]["application/json"]["schema"];
    let page = fx.get("/v1/chains/local/transfers").await.json("transfers");
    let errors_of = |value: &Value| {
        let mut errors = Vec::new();
        validate(&doc, schema, value, "$", &mut errors);
        errors
    };
    assert_eq!(errors_of(&page), Vec::<String>::new());
    type Breaks = fn(&mut Value);
    let broken: [(&str, Breaks); 5] = [
        ("an undocumented field", |p| p["items"][0]["extra"] = json!(1)),
        ("a missing required field", |p| drop(p["items"][0].as_object_mut().map(|o| o.remove("finality")))),
        ("a wrong type", |p| p["items"][0]["block_number"] = json!("10")),
        ("null where not nullable", |p| p["items"][0]["tx_hash"] = Value::Null),
        ("a wrong item type", |p| p["indexed_head"]["number"] = json!(-1)),
    ];
    for (what, breaks) in broken {
        let mut value = page.clone();
        breaks(&mut value);
        assert!(!errors_of(&value).is_empty(), "{what} passes validation");
    }
    // Nullable fields take null.
    let mut value = page.clone();
    value["items"][0]["token"] = Value::Null;
    value["next_cursor"] = Value::Null;
    assert_eq!(errors_of(&value), Vec::<String>::new());
}
