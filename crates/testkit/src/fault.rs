//! [`FaultProxy`]: an in-process, fault-injecting JSON-RPC proxy, for failure modes a real node cannot produce
//! on demand.
//!
//! It sits between the code under test and a real node (usually an [`Anvil`](crate::Anvil)): with
//! [`Fault::None`] it is a transparent HTTP proxy to the target; [`FaultProxy::set`] switches it at runtime to
//! refuse connections, hang, answer late, answer with an HTTP error status, a non-JSON body or a JSON-RPC error,
//! lag behind the target's head, or report another chain id. It counts what it receives, so a test can tell
//! which upstream a call reached and how often.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::eth::plain_http_client;

/// How long binding the proxy's port is retried (a port just released can take a moment to be free again).
const BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for one request to the target.
const TARGET_TIMEOUT: Duration = Duration::from_secs(120);
/// How long switching to [`Fault::Refuse`] waits for the open connections to be closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a [`FaultProxy`] treats the requests it receives from now on.
///
/// HTTP-level faults ([`Refuse`](Fault::Refuse), [`Hang`](Fault::Hang), [`Delay`](Fault::Delay),
/// [`Status`](Fault::Status), [`Garbage`](Fault::Garbage)) apply to a whole HTTP request, batch or not.
/// JSON-RPC-level faults ([`RpcError`](Fault::RpcError), [`Lag`](Fault::Lag), [`ChainId`](Fault::ChainId),
/// [`LogsRangeLimit`](Fault::LogsRangeLimit)) apply to each element of a batch on its own; the elements they do not
/// answer themselves are forwarded to the target (as one batch) and the answers put back in request order with the
/// caller's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Transparent proxy to the target: status, `content-type` and body are passed through.
    None,
    /// Not listening: new connections are refused and open ones are closed. Switching to any other fault
    /// listens again on the same port.
    Refuse,
    /// Accepts the request and never answers (until the proxy is dropped or switched to `Refuse`).
    Hang,
    /// Waits this long, then proxies like [`Fault::None`].
    Delay(Duration),
    /// This HTTP status with a short text body, and a `Retry-After: <seconds>` header when given
    /// (e.g. `500`, or `429` with `Some(1)`).
    Status { code: u16, retry_after: Option<u64> },
    /// HTTP 200 with an HTML body (what some load balancers send when the node behind them is gone).
    Garbage,
    /// This JSON-RPC error object as the answer to every request (e.g. `-32603` internal error).
    RpcError { code: i64, message: String },
    /// A node this many blocks behind the target: with `visible` = target head − N,
    /// - `eth_blockNumber` answers `visible`;
    /// - `eth_getBlockByNumber` answers `null` above `visible`; `latest`/`pending` are the block at `visible`,
    ///   and so are `safe`/`finalized` when the target's are above it;
    /// - `eth_getBlockReceipts` answers `null` for blocks above `visible` (by number, hash, `safe` or
    ///   `finalized`; an empty block given by hash is not recognised); `latest`/`pending` mean `visible`;
    /// - `eth_getBlockByHash` answers `null` for blocks above `visible`;
    /// - `eth_getLogs` answers only logs up to `visible` (`[]` when `fromBlock` is above it), `latest`/`pending`
    ///   mean `visible`.
    ///
    /// Everything else is proxied unchanged. The target's head is read once per HTTP request.
    Lag(u64),
    /// `eth_chainId` answers this id; everything else is proxied.
    ChainId(u64),
    /// A provider that limits `eth_getLogs` to ranges of at most this many blocks: a call whose
    /// `fromBlock..=toBlock` spans more (`latest`, `pending` or a missing bound meaning the target's head,
    /// `earliest` block 0) answers `{"code": -32005, "message": "query exceeds max block range N"}`. Calls by
    /// `blockHash` or with other tags, and all other methods, are proxied. `LogsRangeLimit(0)` refuses every
    /// `eth_getLogs` by range, even over one block.
    LogsRangeLimit(u64),
    /// This JSON-RPC error object as the answer to every call of `method` (e.g. Solana's `getBlock` answering
    /// `-32004` "Block not available for slot" on a node that cannot serve it); other methods are proxied.
    RpcErrorFor { method: String, code: i64, message: String },
    /// This JSON-RPC error object as the answer to every `n`-th call of `method` (counted from when this fault
    /// was set); the other calls are proxied.
    EveryNth { n: u64, method: String, code: i64, message: String },
    /// A Solana node stuck at this slot: `getSlot` (any commitment) answers it, `getBlock` answers `null` above
    /// it and `getBlocks` lists nothing above it. Everything else is proxied.
    StuckSlot(u64),
}

/// A running fault-injecting proxy on `127.0.0.1` in front of one target URL. Dropping it stops the server and
/// closes its connections.
///
/// ```no_run
/// # async fn demo() {
/// use chainmux_testkit::{Anvil, Fault, FaultProxy};
/// let anvil = Anvil::spawn().await;
/// let proxy = FaultProxy::start(&anvil.url).await;
/// proxy.set(Fault::Status { code: 429, retry_after: Some(1) }).await;
/// // ... point the code under test at proxy.url ...
/// proxy.set(Fault::None).await;
/// assert!(proxy.received("eth_blockNumber") > 0);
/// # }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The port, kept across [`Fault::Refuse`].
    pub port: u16,
    shared: Arc<Shared>,
    /// `None` while refusing.
    server: Mutex<Option<Server>>,
    /// Serialises [`FaultProxy::set`], so that concurrent calls cannot both stop or bind the listener.
    switching: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Shared {
    target: String,
    fault: Mutex<Fault>,
    http: reqwest::Client,
    /// HTTP requests received.
    requests: AtomicU64,
    /// JSON-RPC calls received per method (batch elements each), `?` when a body or element has no method.
    methods: Mutex<HashMap<String, u64>>,
    /// Cancelled when the current listener stops: closes its connections and ends their pending requests.
    epoch: Mutex<CancellationToken>,
    /// Calls counted by [`Fault::EveryNth`] since it was set.
    nth_calls: AtomicU64,
}

#[derive(Debug)]
struct Server {
    task: tokio::task::JoinHandle<()>,
    kill: CancellationToken,
    /// Connections accepted and not yet closed.
    open: Arc<AtomicU64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FaultProxy {
    /// Proxies to `target_url` (e.g. an anvil's URL) from a free port, with [`Fault::None`].
    pub async fn start(target_url: &str) -> FaultProxy {
        Self::start_on_port(target_url, 0).await
    }

    /// Like [`FaultProxy::start`] on a given port (0: any free port).
    ///
    /// # Panics
    /// When the port cannot be bound within a few seconds.
    pub async fn start_on_port(target_url: &str, port: u16) -> FaultProxy {
        let http = plain_http_client()
            .tcp_nodelay(true)
            .timeout(TARGET_TIMEOUT)
            .build()
            .unwrap_or_else(|err| panic!("fault proxy: cannot build HTTP client: {err}"));
        let shared = Arc::new(Shared {
            target: target_url.to_owned(),
            fault: Mutex::new(Fault::None),
            http,
            requests: AtomicU64::new(0),
            methods: Mutex::default(),
            epoch: Mutex::new(CancellationToken::new()),
            nth_calls: AtomicU64::new(0),
        });
        let listener = bind(port).await;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        let server = Server::spawn(&shared, listener);
        FaultProxy {
            url: format!("http://127.0.0.1:{port}"),
            port,
            shared,
            server: Mutex::new(Some(server)),
            switching: tokio::sync::Mutex::new(()),
        }
    }

    /// Applies `fault` to requests arriving from now on (requests already waiting keep their fault).
    ///
    /// Switching to [`Fault::Refuse`] returns once the port is closed (open connections are being closed);
    /// switching away from it returns once the port listens again.
    ///
    /// # Panics
    /// When leaving `Refuse` and the port cannot be bound again within a few seconds.
    pub async fn set(&self, fault: Fault) {
        let _switching = self.switching.lock().await;
        let refuse = fault == Fault::Refuse;
        *lock(&self.shared.fault) = fault;
        self.shared.nth_calls.store(0, Ordering::Relaxed);
        let running = lock(&self.server).is_some();
        if refuse && running {
            let server = lock(&self.server).take();
            if let Some(server) = server {
                server.stop().await;
            }
        } else if !refuse && !running {
            let listener = bind(self.port).await;
            let server = Server::spawn(&self.shared, listener);
            *lock(&self.server) = Some(server);
        }
    }

    /// The fault currently applied.
    pub fn fault(&self) -> Fault {
        lock(&self.shared.fault).clone()
    }

    /// HTTP requests received since the start or the last [`FaultProxy::reset_counts`], whatever the fault (a
    /// batch is one request; while refusing, nothing is received).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// JSON-RPC calls of `method` received (each element of a batch counts), whatever the fault.
    pub fn received(&self, method: &str) -> u64 {
        lock(&self.shared.methods).get(method).copied().unwrap_or(0)
    }

    /// Sets [`FaultProxy::requests`] and every [`FaultProxy::received`] back to 0.
    pub fn reset_counts(&self) {
        // Under the methods lock, so that a concurrent request is counted in both or in neither.
        let mut methods = lock(&self.shared.methods);
        self.shared.requests.store(0, Ordering::Relaxed);
        methods.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(server) = lock(&self.server).take() {
            server.kill.cancel();
            server.task.abort();
        }
        lock(&self.shared.epoch).cancel();
    }
}

/// Binds `127.0.0.1:port`, retrying for [`BIND_TIMEOUT`].
async fn bind(port: u16) -> TcpListener {
    let deadline = Instant::now() + BIND_TIMEOUT;
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(err) if Instant::now() >= deadline => {
                panic!("fault proxy: cannot bind 127.0.0.1:{port}: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

impl Server {
    fn spawn(shared: &Arc<Shared>, listener: TcpListener) -> Server {
        let kill = CancellationToken::new();
        *lock(&shared.epoch) = kill.clone();
        let app =
            Router::new().fallback(handle).layer(DefaultBodyLimit::disable()).with_state(Arc::clone(shared));
        let open = Arc::new(AtomicU64::new(0));
        let listener = KillableListener { inner: listener, kill: kill.clone(), open: Arc::clone(&open) };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { task, kill, open }
    }

    /// Closes the listener and every connection it accepted; returns once they are closed.
    async fn stop(self) {
        self.kill.cancel();
        self.task.abort();
        // The serve future, which owns the listener, has been dropped once the aborted task is joined.
        let _ = self.task.await;
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        while self.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// A TCP listener whose connections all fail as soon as `kill` is cancelled, so that switching to
/// [`Fault::Refuse`] also cuts the keep-alive connections clients already hold.
struct KillableListener {
    inner: TcpListener,
    kill: CancellationToken,
    open: Arc<AtomicU64>,
}

impl axum::serve::Listener for KillableListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let killed = Box::pin(self.kill.clone().cancelled_owned());
                    self.open.fetch_add(1, Ordering::SeqCst);
                    let open = Arc::clone(&self.open);
                    return (KillableStream { inner: stream, killed, open }, addr);
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

struct KillableStream {
    inner: TcpStream,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The listener's count of open connections, decremented when this one closes (drops).
    open: Arc<AtomicU64>,
}

impl Drop for KillableStream {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl KillableStream {
    /// An error once killed; otherwise registers the task to be woken when it is.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.killed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(io::ErrorKind::ConnectionReset, "fault proxy: refusing")),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

async fn handle(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let kill = lock(&shared.epoch).clone();
    let fault = lock(&shared.fault).clone();
    // Never answered: the response is dropped with the connection, which is being closed.
    let cut = || StatusCode::SERVICE_UNAVAILABLE.into_response();
    if fault == Fault::Refuse {
        // Arrived on a connection opened before the switch to Refuse, which is being closed: not received.
        kill.cancelled().await;
        return cut();
    }
    let request: Option<Value> = serde_json::from_slice(&body).ok();
    shared.count(request.as_ref());
    tokio::select! {
        response = answer(&shared, fault, body, request) => response,
        () = kill.cancelled() => cut(),
    }
}

async fn answer(shared: &Shared, fault: Fault, body: Bytes, request: Option<Value>) -> Response {
    match fault {
        Fault::None => shared.forward(body).await,
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            shared.forward(body).await
        }
        Fault::Refuse | Fault::Hang => std::future::pending().await,
        Fault::Status { code, retry_after } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (status, format!("fault proxy: HTTP {code}")).into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        Fault::Garbage => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Fault::RpcError { .. }
        | Fault::Lag(_)
        | Fault::ChainId(_)
        | Fault::LogsRangeLimit(_)
        | Fault::RpcErrorFor { .. }
        | Fault::EveryNth { .. }
        | Fault::StuckSlot(_) => {
            match request {
                Some(request) => per_call(shared, &fault, request).await,
                // Not JSON: let the target give its parse error.
                None => shared.forward(body).await,
            }
        }
    }
}

impl Shared {
    fn count(&self, request: Option<&Value>) {
        let mut methods = lock(&self.methods);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut add = |call: Option<&Value>| {
            let method = call.and_then(|c| c.get("method")).and_then(Value::as_str).unwrap_or("?");
            match methods.get_mut(method) {
                Some(count) => *count += 1,
                None => {
                    methods.insert(method.to_owned(), 1);
                }
            }
        };
        match request {
            Some(Value::Array(calls)) => calls.iter().for_each(|c| add(Some(c))),
            call => add(call),
        }
    }

    /// POSTs `body` to the target; `Err` is a 502 response for the caller when the target cannot be reached.
    async fn post(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> Result<(StatusCode, Option<HeaderValue>, Bytes), Response> {
        let unreachable = |err: reqwest::Error| {
            (StatusCode::BAD_GATEWAY, format!("fault proxy: target: {}", err.without_url()))
        };
        let response = self
            .http
            .post(&self.target)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| unreachable(err).into_response())?;
        // reqwest and axum share the `http` crate: status and headers pass through as they are.
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = response.bytes().await.map_err(|err| unreachable(err).into_response())?;
        Ok((status, content_type, bytes))
    }

    /// The target's answer to `body`, passed through.
    async fn forward(&self, body: Bytes) -> Response {
        match self.post(body).await {
            Ok((status, content_type, bytes)) => pass_through(status, content_type, bytes),
            Err(response) => response,
        }
    }

    /// The target's JSON answer to `body`; `Err` passes a non-2xx or non-JSON answer (or a 502) through.
    async fn call_json(&self, body: &Value) -> Result<Value, Response> {
        let (status, content_type, bytes) = self.post(body.to_string()).await?;
        match serde_json::from_slice(&bytes) {
            Ok(value) if status.is_success() => Ok(value),
            _ => Err(pass_through(status, content_type, bytes)),
        }
    }

    /// The target's `result` for one call, `null` when it has none.
    async fn call_result(&self, method: &str, params: Value) -> Result<Value, Response> {
        let mut reply =
            self.call_json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})).await?;
        Ok(reply.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }

    async fn target_head(&self) -> Result<u64, Response> {
        let head = self.call_result("eth_blockNumber", json!([])).await?;
        quantity_of(&head).ok_or_else(|| {
            (StatusCode::BAD_GATEWAY, format!("fault proxy: target eth_blockNumber answered {head}"))
                .into_response()
        })
    }
}

fn pass_through(status: StatusCode, content_type: Option<HeaderValue>, bytes: Bytes) -> Response {
    let mut response = (status, bytes).into_response();
    match content_type {
        Some(content_type) => response.headers_mut().insert(header::CONTENT_TYPE, content_type),
        None => response.headers_mut().remove(header::CONTENT_TYPE),
    };
    response
}

fn json_response(body: &Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error_object(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn quantity(n: u64) -> Value {
    Value::String(format!("0x{n:x}"))
}

fn quantity_of(value: &Value) -> Option<u64> {
    value.as_str()?.strip_prefix("0x").and_then(|hex| u64::from_str_radix(hex, 16).ok())
}

/// What to do with one call under a JSON-RPC-level fault.
enum Plan {
    /// Answer with this `result` without asking the target.
    Result(Value),
    /// Answer with this error without asking the target.
    Error(i64, String),
    /// Ask the target (with these params instead of the caller's, when given), then apply the [`Post`] step.
    Forward(Option<Value>, Post),
}

/// A correction applied to the target's `result` under [`Fault::Lag`].
#[derive(Clone, Copy)]
enum Post {
    None,
    /// A block object: `null` when its number is above this height.
    BlockAtMost(u64),
    /// A `safe`/`finalized` block: the block at `visible` when its number is above it.
    ClampBlock {
        visible: u64,
        full: bool,
    },
    /// Block receipts: `null` when their block is above this height.
    ReceiptsAtMost(u64),
    /// Logs: only those at or below this height.
    LogsAtMost(u64),
    /// A list of Solana slots: only those at or below this one.
    SlotsAtMost(u64),
}

/// Answers a single or batch request call by call, asking the target (in one request) for the calls the fault
/// does not answer itself.
async fn per_call(shared: &Shared, fault: &Fault, request: Value) -> Response {
    let (calls, batch) = match request {
        Value::Array(calls) if !calls.is_empty() => (calls, true),
        // An empty batch or a scalar: the target's error.
        other @ (Value::Array(_) | Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)) => {
            return shared.forward(Bytes::from(other.to_string())).await;
        }
        single => (vec![single], false),
    };
    // The head the calls see: the target's, N blocks back under `Lag`.
    let visible = match fault {
        Fault::Lag(n) => match shared.target_head().await {
            Ok(head) => Some(head.saturating_sub(*n)),
            Err(response) => return response,
        },
        Fault::LogsRangeLimit(_) if calls.iter().any(logs_range_needs_head) => {
            match shared.target_head().await {
                Ok(head) => Some(head),
                Err(response) => return response,
            }
        }
        _ => None,
    };

    let mut answers: Vec<Option<Value>> = vec![None; calls.len()];
    // (index, caller's id or None for a notification, Post); the request sent carries `id: index`.
    let mut forwarded: Vec<(usize, Option<Value>, Post)> = Vec::new();
    let mut to_send: Vec<Value> = Vec::new();
    let mut notification = vec![false; calls.len()];
    for (index, call) in calls.into_iter().enumerate() {
        let Value::Object(mut call) = call else {
            answers[index] = Some(error_object(Value::Null, -32600, "Invalid Request"));
            continue;
        };
        let id = call.get("id").cloned();
        notification[index] = id.is_none();
        let method = call.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
        let params = call.get("params").cloned().unwrap_or_else(|| json!([]));
        let nth = match fault {
            Fault::EveryNth { method: counted, .. } if *counted == method => {
                Some(shared.nth_calls.fetch_add(1, Ordering::Relaxed) + 1)
            }
            _ => None,
        };
        match plan(fault, visible, &method, params, nth) {
            Plan::Result(result) => {
                answers[index] = Some(json!({"jsonrpc": "2.0", "id": id, "result": result}));
            }
            Plan::Error(code, message) => {
                answers[index] = Some(error_object(id.unwrap_or(Value::Null), code, &message));
            }
            Plan::Forward(params, post) => {
                if let Some(params) = params {
                    call.insert("params".into(), params);
                }
                call.insert("id".into(), json!(index));
                to_send.push(Value::Object(call));
                forwarded.push((index, id, post));
            }
        }
    }

    if !to_send.is_empty() {
        let body = if batch { Value::Array(to_send) } else { to_send.remove(0) };
        let reply = match shared.call_json(&body).await {
            Ok(reply) => reply,
            Err(response) => return response,
        };
        let mut by_index: HashMap<u64, Value> = match reply {
            Value::Array(replies) => {
                replies.into_iter().filter_map(|r| Some((r.get("id")?.as_u64()?, r))).collect()
            }
            single => single.get("id").and_then(Value::as_u64).map(|id| (id, single)).into_iter().collect(),
        };
        for (index, id, post) in forwarded {
            let mut reply = by_index.remove(&(index as u64)).unwrap_or_else(|| {
                error_object(Value::Null, -32603, "fault proxy: the target did not answer this call")
            });
            if let Some(result) = reply.get_mut("result")
                && let Err(response) = apply(shared, post, result).await
            {
                return response;
            }
            reply["id"] = id.unwrap_or(Value::Null);
            answers[index] = Some(reply);
        }
    }

    let mut answers = answers
        .into_iter()
        .zip(notification)
        .filter_map(|(answer, notification)| answer.filter(|_| !notification));
    if batch {
        let answers: Vec<Value> = answers.collect();
        if answers.is_empty() {
            StatusCode::NO_CONTENT.into_response()
        } else {
            json_response(&Value::Array(answers))
        }
    } else {
        match answers.next() {
            Some(answer) => json_response(&answer),
            None => StatusCode::NO_CONTENT.into_response(),
        }
    }
}

fn plan(fault: &Fault, visible: Option<u64>, method: &str, params: Value, nth: Option<u64>) -> Plan {
    match (fault, visible) {
        (Fault::RpcError { code, message }, _) => Plan::Error(*code, message.clone()),
        (Fault::RpcErrorFor { method: failing, code, message }, _) if failing == method => {
            Plan::Error(*code, message.clone())
        }
        (Fault::EveryNth { n, code, message, .. }, _) if nth.is_some_and(|k| k % (*n).max(1) == 0) => {
            Plan::Error(*code, message.clone())
        }
        (Fault::StuckSlot(slot), _) => plan_stuck_slot(*slot, method, params),
        (Fault::ChainId(id), _) if method == "eth_chainId" => Plan::Result(quantity(*id)),
        (Fault::Lag(_), Some(visible)) => plan_lag(visible, method, params),
        (Fault::LogsRangeLimit(max), head) if method == "eth_getLogs" => plan_logs_limit(*max, head, &params),
        _ => Plan::Forward(None, Post::None),
    }
}

/// [`Fault::StuckSlot`]: the node's view ends at `slot`.
fn plan_stuck_slot(slot: u64, method: &str, params: Value) -> Plan {
    let first = params.get(0).and_then(Value::as_u64);
    match method {
        "getSlot" => Plan::Result(json!(slot)),
        "getBlock" if first.is_some_and(|asked| asked > slot) => Plan::Result(Value::Null),
        "getBlocks" => Plan::Forward(None, Post::SlotsAtMost(slot)),
        _ => Plan::Forward(None, Post::None),
    }
}

/// The `fromBlock..=toBlock` of an `eth_getLogs` filter, `latest`/`pending`/missing bounds meaning `head`;
/// `None` for a filter by block hash or with another tag.
fn logs_span(params: &Value, head: Option<u64>) -> Option<(u64, u64)> {
    let filter = params.get(0).filter(|filter| filter.get("blockHash").is_none())?;
    let height = |key: &str| match block_ref(filter.get(key)) {
        BlockRef::Number(n) => Some(n),
        BlockRef::Earliest => Some(0),
        BlockRef::Latest | BlockRef::Missing => head,
        BlockRef::Other => None,
    };
    Some((height("fromBlock")?, height("toBlock")?))
}

/// Whether an `eth_getLogs` call's range depends on the head.
fn logs_range_needs_head(call: &Value) -> bool {
    let filter = call.get("params").and_then(|params| params.get(0));
    call.get("method").and_then(Value::as_str) == Some("eth_getLogs")
        && filter.is_some_and(|filter| {
            filter.get("blockHash").is_none()
                && ["fromBlock", "toBlock"]
                    .iter()
                    .any(|key| matches!(block_ref(filter.get(*key)), BlockRef::Latest | BlockRef::Missing))
        })
}

fn plan_logs_limit(max: u64, head: Option<u64>, params: &Value) -> Plan {
    match logs_span(params, head) {
        Some((from, to)) if to >= from && to - from >= max => {
            Plan::Error(-32005, format!("query exceeds max block range {max}"))
        }
        _ => Plan::Forward(None, Post::None),
    }
}

/// A block parameter.
enum BlockRef {
    Missing,
    Number(u64),
    Earliest,
    /// `latest` or `pending`.
    Latest,
    /// `safe`, `finalized`, a hash, an EIP-1898 object with a hash, anything else.
    Other,
}

fn block_ref(value: Option<&Value>) -> BlockRef {
    let Some(value) = value else { return BlockRef::Missing };
    let value = value.get("blockNumber").unwrap_or(value);
    match value.as_str() {
        Some("latest" | "pending") => BlockRef::Latest,
        Some("earliest") => BlockRef::Earliest,
        _ => quantity_of(value).map_or(BlockRef::Other, BlockRef::Number),
    }
}

/// Replaces the first parameter.
fn with_first(mut params: Value, value: Value) -> Option<Value> {
    let first = params.as_array_mut()?.first_mut()?;
    *first = value;
    Some(params)
}

fn plan_lag(visible: u64, method: &str, mut params: Value) -> Plan {
    let first = || block_ref(params.get(0));
    match method {
        "eth_blockNumber" => Plan::Result(quantity(visible)),
        "eth_getBlockByNumber" => {
            let full = params.get(1).and_then(Value::as_bool).unwrap_or(false);
            match first() {
                BlockRef::Number(n) if n > visible => Plan::Result(Value::Null),
                BlockRef::Latest => Plan::Forward(with_first(params, quantity(visible)), Post::None),
                BlockRef::Other => Plan::Forward(None, Post::ClampBlock { visible, full }),
                BlockRef::Number(_) | BlockRef::Earliest | BlockRef::Missing => {
                    Plan::Forward(None, Post::None)
                }
            }
        }
        "eth_getBlockByHash" => Plan::Forward(None, Post::BlockAtMost(visible)),
        "eth_getBlockReceipts" => match first() {
            BlockRef::Number(n) if n > visible => Plan::Result(Value::Null),
            BlockRef::Latest => Plan::Forward(with_first(params, quantity(visible)), Post::None),
            BlockRef::Other => Plan::Forward(None, Post::ReceiptsAtMost(visible)),
            BlockRef::Number(_) | BlockRef::Earliest | BlockRef::Missing => Plan::Forward(None, Post::None),
        },
        "eth_getLogs" => {
            let Some(filter) = params.get_mut(0).and_then(Value::as_object_mut) else {
                return Plan::Forward(None, Post::None);
            };
            if !filter.contains_key("blockHash") {
                let height = |r: BlockRef| match r {
                    BlockRef::Number(n) => Some(n),
                    BlockRef::Earliest => Some(0),
                    BlockRef::Latest | BlockRef::Missing => Some(visible),
                    BlockRef::Other => None,
                };
                let from = height(block_ref(filter.get("fromBlock")));
                let to = height(block_ref(filter.get("toBlock")));
                if from.is_some_and(|from| from > visible) {
                    return Plan::Result(json!([]));
                }
                if let Some(from) = from {
                    filter.insert("fromBlock".into(), quantity(from));
                }
                if let Some(to) = to {
                    filter.insert("toBlock".into(), quantity(to.min(visible)));
                }
            }
            Plan::Forward(Some(params), Post::LogsAtMost(visible))
        }
        _ => Plan::Forward(None, Post::None),
    }
}

async fn apply(shared: &Shared, post: Post, result: &mut Value) -> Result<(), Response> {
    let number = |value: &Value, key: &str| value.get(key).and_then(quantity_of);
    match post {
        Post::None => {}
        Post::BlockAtMost(visible) => {
            if number(result, "number").is_some_and(|n| n > visible) {
                *result = Value::Null;
            }
        }
        Post::ClampBlock { visible, full } => {
            if number(result, "number").is_some_and(|n| n > visible) {
                *result =
                    shared.call_result("eth_getBlockByNumber", json!([quantity(visible), full])).await?;
            }
        }
        Post::ReceiptsAtMost(visible) => {
            let block = result.get(0).and_then(|receipt| number(receipt, "blockNumber"));
            if block.is_some_and(|n| n > visible) {
                *result = Value::Null;
            }
        }
        Post::LogsAtMost(visible) => {
            if let Some(logs) = result.as_array_mut() {
                logs.retain(|log| number(log, "blockNumber").is_none_or(|n| n <= visible));
            }
        }
        Post::SlotsAtMost(slot) => {
            if let Some(slots) = result.as_array_mut() {
                slots.retain(|s| s.as_u64().is_none_or(|s| s <= slot));
            }
        }
    }
    Ok(())
}
