//! Fault-injecting fake upstream, in-process, for failure modes anvil cannot produce.
//!
//! An axum server on `127.0.0.1:0` whose behaviour is switched at runtime with [`FakeUpstream::set_mode`]: it
//! forwards to a real anvil, or fails in a chosen way (an HTTP error status, rate limiting, a non-JSON body, a
//! JSON-RPC internal error, no answer at all, a late answer), acts like a node behind the real one, or fails for one
//! method only. Whatever the mode, it records the method of every request it receives, so a test can tell which
//! upstream a call reached and how often.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chainmux_rpc::{HeadProbe, Pool, UpstreamStatus};
use chainmux_testkit::Eth;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// How the fake answers the next requests.
#[derive(Debug, Clone)]
#[allow(dead_code, reason = "each test binary uses a subset of the modes")]
pub(crate) enum Mode {
    /// Forwards the body to this URL (a real anvil) and returns its answer.
    Proxy(String),
    /// This HTTP status with a short text body.
    Status(u16),
    /// HTTP 429 with a `Retry-After` header.
    Status429 { retry_after_secs: u64 },
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// A JSON-RPC error object `-32603 internal error`.
    InternalError,
    /// Accepts the request and never answers.
    Hang,
    /// Waits, then forwards to this URL like [`Mode::Proxy`].
    Slow(Duration, String),
    /// A JSON-RPC success with this fixed `result`.
    Answer(Value),
    /// Forwards to this URL at once, then holds the answer back for this long: the request takes effect upstream
    /// (a transaction lands) while the caller may time out first.
    Late(Duration, String),
    /// A node `behind` blocks behind the one at `url`: `eth_blockNumber` answers the target's head minus `behind`,
    /// everything else is forwarded like [`Mode::Proxy`].
    Lagging { url: String, behind: u64 },
    /// `mode` for requests of `method` only; every other method is forwarded to `url` like [`Mode::Proxy`].
    Only { method: String, mode: Box<Mode>, url: String },
}

#[derive(Debug)]
struct Shared {
    mode: Mutex<Mode>,
    /// `method` of every request received, in arrival order (`?` when the body had none).
    methods: Mutex<Vec<String>>,
    http: reqwest::Client,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running fake upstream; the server stops when this is dropped.
#[derive(Debug)]
pub(crate) struct FakeUpstream {
    /// `http://127.0.0.1:<port>`.
    pub(crate) url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    pub(crate) async fn start(mode: Mode) -> FakeUpstream {
        // reqwest is built without a crypto provider; only plain http is used, but the builder wants one.
        chainmux_testkit::install_crypto_provider();
        let http = reqwest::Client::builder().no_proxy().build().expect("fake upstream: HTTP client");
        let shared = Arc::new(Shared { mode: Mutex::new(mode), methods: Mutex::default(), http });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake upstream: bind");
        let addr = listener.local_addr().expect("fake upstream: local address");
        let app = Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeUpstream { url: format!("http://{addr}"), shared, server }
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Requests received so far, any method, any mode.
    pub(crate) fn requests(&self) -> usize {
        lock(&self.shared.methods).len()
    }

    /// Requests received so far for `method`.
    pub(crate) fn received(&self, method: &str) -> usize {
        lock(&self.shared.methods).iter().filter(|m| *m == method).count()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let method = request.get("method").and_then(Value::as_str).unwrap_or("?").to_owned();
    lock(&shared.methods).push(method.clone());
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let configured = lock(&shared.mode).clone();
    let mode = match configured {
        Mode::Only { method: only, mode, .. } if only == method => *mode,
        Mode::Only { url, .. } => Mode::Proxy(url),
        other => other,
    };
    match mode {
        Mode::Proxy(url) => proxy(&shared.http, &url, body).await,
        Mode::Slow(delay, url) => {
            tokio::time::sleep(delay).await;
            proxy(&shared.http, &url, body).await
        }
        Mode::Status(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, "fake upstream failure").into_response()
        }
        Mode::Status429 { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            "rate limited",
        )
            .into_response(),
        Mode::Garbage => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response(),
        Mode::InternalError => json_response(
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": "internal error"}}),
        ),
        Mode::Hang => std::future::pending().await,
        Mode::Answer(result) => json_response(json!({"jsonrpc": "2.0", "id": id, "result": result})),
        Mode::Late(delay, url) => {
            let answer = proxy(&shared.http, &url, body).await;
            tokio::time::sleep(delay).await;
            answer
        }
        Mode::Lagging { url, behind } if method == "eth_blockNumber" => {
            lagging_head(&shared.http, &url, body, behind, id).await
        }
        Mode::Lagging { url, .. } => proxy(&shared.http, &url, body).await,
        // Resolved above: `Only` never nests.
        Mode::Only { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, "fake upstream: nested Only").into_response()
        }
    }
}

/// The target's `eth_blockNumber`, `behind` blocks lower (not below 0).
async fn lagging_head(http: &reqwest::Client, url: &str, body: Bytes, behind: u64, id: Value) -> Response {
    let sent = http.post(url).header(header::CONTENT_TYPE, "application/json").body(body).send().await;
    let answer = match sent {
        Ok(response) => {
            response.bytes().await.ok().and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        }
        Err(_) => None,
    };
    let head = answer
        .as_ref()
        .and_then(|answer| answer.get("result"))
        .and_then(Value::as_str)
        .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok());
    match head {
        Some(head) => json_response(
            json!({"jsonrpc": "2.0", "id": id, "result": format!("{:#x}", head.saturating_sub(behind))}),
        ),
        None => (StatusCode::BAD_GATEWAY, "fake upstream: no head from the proxy target").into_response(),
    }
}

fn json_response(body: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn proxy(http: &reqwest::Client, url: &str, body: Bytes) -> Response {
    let sent = http.post(url).header(header::CONTENT_TYPE, "application/json").body(body).send().await;
    let answer = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            response.bytes().await.map(|bytes| (status, bytes))
        }
        Err(err) => Err(err),
    };
    match answer {
        Ok((status, bytes)) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            [(header::CONTENT_TYPE, "application/json")],
            bytes,
        )
            .into_response(),
        Err(_) => (StatusCode::BAD_GATEWAY, "fake upstream: proxy target unreachable").into_response(),
    }
}

// Helpers shared by the pool's test files.

/// A raw transaction (1 wei between dev accounts) signed by anvil, hex with `0x`.
pub(crate) async fn signed_transfer(eth: &Eth) -> String {
    let accounts = eth.accounts().await;
    let tx = json!({
        "from": accounts[0].to_string(),
        "to": accounts[1].to_string(),
        "value": "0x1",
        "gas": "0x5208",
    });
    let raw = eth.request("eth_signTransaction", json!([tx])).await;
    raw.as_str().expect("eth_signTransaction returns hex").to_owned()
}

pub(crate) fn block_number_probe() -> HeadProbe {
    HeadProbe {
        method: "eth_blockNumber".into(),
        params: params(json!([])),
        parse: parse_quantity,
        encode: |n| params(json!(format!("{n:#x}"))),
    }
}

pub(crate) fn params(value: Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(&value).expect("params serialize")
}

pub(crate) fn parse_quantity(raw: &RawValue) -> Option<u64> {
    let text: String = serde_json::from_str(raw.get()).ok()?;
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

pub(crate) fn status(pool: &Pool, name: &str) -> UpstreamStatus {
    pool.statuses()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no upstream {name} in {:?}", pool.statuses()))
}

/// Polls `condition` every 10 ms; panics with `what` after `limit`.
pub(crate) async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fails the test instead of hanging it when `future` outlives `limit`.
pub(crate) async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future).await.unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}
