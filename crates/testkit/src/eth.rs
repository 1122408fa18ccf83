//! A minimal raw JSON-RPC client for talking to anvil in tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256};
use serde_json::{Value, json};

/// How long [`Eth::send`] and friends wait for a receipt before panicking.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Raw JSON-RPC client. Every method panics on transport errors (these are tests);
/// [`Eth::try_request`] hands JSON-RPC errors back instead.
#[derive(Debug, Clone)]
pub struct Eth {
    pub url: String,
    client: reqwest::Client,
    next_id: Arc<AtomicU64>,
}

impl Eth {
    pub fn new(url: &str) -> Eth {
        let client = plain_http_client()
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap_or_else(|err| panic!("cannot build HTTP client: {err}"));
        Eth { url: url.to_owned(), client, next_id: Arc::new(AtomicU64::new(1)) }
    }

    /// Calls `method`; panics with the error object on a JSON-RPC error.
    pub async fn request(&self, method: &str, params: Value) -> Value {
        match self.try_request(method, params.clone()).await {
            Ok(result) => result,
            Err(error) => panic!("{method}({params}) on {} failed: {error}", self.url),
        }
    }

    /// Calls `method`; `Err` holds the JSON-RPC error object.
    pub async fn try_request(&self, method: &str, params: Value) -> Result<Value, Value> {
        match self.raw(method, &params).await {
            Ok(result) => result,
            Err(err) => panic!("{method} on {}: {err}", self.url),
        }
    }

    async fn raw(&self, method: &str, params: &Value) -> Result<Result<Value, Value>, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let mut value: Value =
            serde_json::from_str(&text).map_err(|e| format!("HTTP {status}, not JSON ({e}): {text}"))?;
        if let Some(error) = value.get_mut("error").filter(|e| !e.is_null()) {
            return Ok(Err(error.take()));
        }
        match value.get_mut("result") {
            Some(result) => Ok(Ok(result.take())),
            None => Err(format!("HTTP {status}, no result: {text}")),
        }
    }

    /// True when the node answers `eth_chainId` (connection errors are `false`).
    pub(crate) async fn ping_chain_id(&self) -> bool {
        matches!(self.raw("eth_chainId", &json!([])).await, Ok(Ok(_)))
    }

    /// `eth_chainId`.
    pub async fn chain_id(&self) -> u64 {
        hex_u64(&self.request("eth_chainId", json!([])).await)
    }

    /// `eth_accounts`: anvil's unlocked dev accounts.
    pub async fn accounts(&self) -> Vec<Address> {
        let accounts = self.request("eth_accounts", json!([])).await;
        accounts
            .as_array()
            .unwrap_or_else(|| panic!("eth_accounts: not an array: {accounts}"))
            .iter()
            .map(parse_address)
            .collect()
    }

    /// `eth_blockNumber`.
    pub async fn block_number(&self) -> u64 {
        hex_u64(&self.request("eth_blockNumber", json!([])).await)
    }

    /// `eth_sendTransaction` from an unlocked account, waits for the receipt and panics
    /// unless its status is 1. Returns the transaction hash.
    pub async fn send(&self, from: Address, to: Option<Address>, data: Bytes, value: U256) -> B256 {
        let hash = self.submit(from, to, data, value, None).await;
        let receipt = self.wait_receipt(hash).await;
        assert_eq!(receipt_status(&receipt), 1, "transaction {hash} failed: {receipt}");
        hash
    }

    /// `eth_sendTransaction` of a ready-made transaction object, waits for the receipt and panics unless its
    /// status is 1. Returns the receipt.
    pub async fn send_object(&self, tx: Value) -> Value {
        let answer = self.request("eth_sendTransaction", json!([tx])).await;
        let hash: B256 = answer
            .as_str()
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("eth_sendTransaction {tx}: {answer}"));
        let receipt = self.wait_receipt(hash).await;
        assert_eq!(receipt_status(&receipt), 1, "transaction {tx} failed: {receipt}");
        receipt
    }

    /// Like [`Eth::send`] but does not check the status; returns `(hash, status)`.
    ///
    /// Give an explicit `gas` for a transaction that will revert: without one anvil
    /// estimates gas, and estimation of a reverting call fails instead of including it.
    pub async fn send_unchecked(
        &self,
        from: Address,
        to: Option<Address>,
        data: Bytes,
        value: U256,
        gas: Option<u64>,
    ) -> (B256, u64) {
        let hash = self.submit(from, to, data, value, gas).await;
        let receipt = self.wait_receipt(hash).await;
        (hash, receipt_status(&receipt))
    }

    /// `eth_sendTransaction` without waiting for inclusion (e.g. with automine off).
    pub async fn submit(
        &self,
        from: Address,
        to: Option<Address>,
        data: Bytes,
        value: U256,
        gas: Option<u64>,
    ) -> B256 {
        let mut tx = json!({
            "from": from.to_string(),
            "input": data.to_string(),
            "value": format!("0x{value:x}"),
        });
        if let Some(to) = to {
            tx["to"] = json!(to.to_string());
        }
        if let Some(gas) = gas {
            tx["gas"] = json!(format!("0x{gas:x}"));
        }
        parse_b256(&self.request("eth_sendTransaction", json!([tx])).await)
    }

    /// Deploys `bytecode_hex` (creation code, with or without `0x`) and returns the contract address.
    pub async fn deploy(&self, from: Address, bytecode_hex: &str) -> Address {
        self.deploy_with_receipt(from, bytecode_hex).await.0
    }

    /// Like [`Eth::deploy`], also returning the creation receipt.
    pub async fn deploy_with_receipt(&self, from: Address, bytecode_hex: &str) -> (Address, Value) {
        let code = bytecode_hex.trim();
        let code = code.strip_prefix("0x").unwrap_or(code);
        let data: Bytes =
            code.parse().unwrap_or_else(|err| panic!("deploy: bytecode is not hex ({err}): {code:.40}…"));
        let hash = self.send(from, None, data, U256::ZERO).await;
        let receipt = self.wait_receipt(hash).await;
        (parse_address(&receipt["contractAddress"]), receipt)
    }

    /// `eth_getTransactionReceipt`; `None` while pending.
    pub async fn receipt(&self, hash: B256) -> Option<Value> {
        Some(self.request("eth_getTransactionReceipt", json!([hash.to_string()])).await)
            .filter(|r| !r.is_null())
    }

    /// Polls for the receipt of `hash`; panics after two minutes.
    pub async fn wait_receipt(&self, hash: B256) -> Value {
        let started = Instant::now();
        loop {
            if let Some(receipt) = self.receipt(hash).await {
                return receipt;
            }
            assert!(started.elapsed() < RECEIPT_TIMEOUT, "no receipt for {hash} after {RECEIPT_TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `anvil_mine`: mines `blocks` blocks now.
    pub async fn mine(&self, blocks: u64) {
        self.request("anvil_mine", json!([format!("0x{blocks:x}")])).await;
    }

    /// `evm_setAutomine`.
    pub async fn set_automine(&self, on: bool) {
        self.request("evm_setAutomine", json!([on])).await;
    }

    /// `eth_getLogs` over `from_block..=to_block`, all addresses.
    pub async fn logs(&self, from_block: u64, to_block: u64) -> Vec<Value> {
        let filter = json!({"fromBlock": format!("0x{from_block:x}"), "toBlock": format!("0x{to_block:x}")});
        into_array(self.request("eth_getLogs", json!([filter])).await, "eth_getLogs")
    }

    /// `eth_getBlockReceipts` for block `number`.
    pub async fn block_receipts(&self, number: u64) -> Vec<Value> {
        into_array(
            self.request("eth_getBlockReceipts", json!([format!("0x{number:x}")])).await,
            "eth_getBlockReceipts",
        )
    }

    /// `eth_getBlockByNumber`; `full` includes transaction objects. `null` if there is no such block.
    pub async fn block(&self, number: u64, full: bool) -> Value {
        self.request("eth_getBlockByNumber", json!([format!("0x{number:x}"), full])).await
    }
}

/// A `reqwest` client builder for plain `http://` on 127.0.0.1: no proxy, and its own rustls
/// provider (reqwest is built without a default one), so that no process-wide state is touched.
pub(crate) fn plain_http_client() -> reqwest::ClientBuilder {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth())
        .unwrap_or_else(|err| panic!("rustls config: {err}"));
    reqwest::Client::builder().tls_backend_preconfigured(tls).no_proxy()
}

fn into_array(value: Value, what: &str) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("{what}: expected an array, got {other}"),
    }
}

fn receipt_status(receipt: &Value) -> u64 {
    hex_u64(&receipt["status"])
}

/// Parses a `0x` quantity.
pub(crate) fn hex_u64(value: &Value) -> u64 {
    value
        .as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .unwrap_or_else(|| panic!("expected a hex quantity, got {value}"))
}

fn parse_address(value: &Value) -> Address {
    value.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("expected an address, got {value}"))
}

fn parse_b256(value: &Value) -> B256 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("expected a 32-byte hash, got {value}"))
}
