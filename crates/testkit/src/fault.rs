//! [`FaultProxy`]: an in-process, fault-injecting JSON-RPC proxy, for failure modes a real node cannot produce
//! on demand.
//!
//! It sits between the code under test and a real node (usually an [`Anvil`](crate::Anvil)): with
//! [`Fault::None`] it is a transparent HTTP proxy to the target; [`FaultProxy::set`] switches it at runtime to
//! refuse connections, hang, answer late, answer with an HTTP error status, a non-JSON body or a JSON-RPC error,
//! lag behind the target's head, or report another chain id. In front of a Solana node it can also serve a
//! fabricated view of the node's chain — skipped slots and forks, which a single local node never produces — or
//! a node that lacks one slot. It counts what it receives, so a test can tell which upstream a call reached and
//! how often.

use std::collections::{BTreeSet, HashMap};
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
    /// A fabricated view of the target Solana node's chain, for skipped slots and forks:
    /// - `getBlocks` and `getBlocksWithLimit` leave the `skipped` slots out (`getBlocksWithLimit` still lists up
    ///   to its limit of the others);
    /// - `getBlock` of a `skipped` slot answers `-32007` "Slot {s} was skipped, or missing due to ledger jump to
    ///   recent snapshot", as a real node does for a skipped slot;
    /// - every other `getBlock` result is re-linked: `parentSlot` becomes the nearest lower block that is not
    ///   skipped (found by following the target's own parent slots), and `previousBlockhash` that block's
    ///   `blockhash` as this view serves it (asked of the target with `transactionDetails: "none"` at the call's
    ///   commitment; left as served when the target has no such block). With `branch` other than 0, `blockhash`
    ///   (and `previousBlockhash` where the parent is re-hashed too) of every slot from `from_slot` on is
    ///   replaced by [`Fault::branch_hash`]: another valid 32-byte hash, the same for the same block and branch.
    ///   `blockHeight` and the transactions stay as served.
    ///
    /// Everything else is proxied. `SolanaView { branch: 0, from_slot: u64::MAX, skipped }` is the node's chain
    /// with some slots skipped; switching `branch` or `skipped` while a client follows the chain is a fork whose
    /// common ancestor is the last block below both `from_slot` and the newly skipped slots. Note that a target
    /// whose `previousBlockhash` does not match its parent's `blockhash` (the local surfpool node) serves
    /// consistent links through this view.
    SolanaView { branch: u64, from_slot: u64, skipped: BTreeSet<u64> },
    /// A Solana node that cannot serve this one slot but does not lie about the chain: `getBlocks` and
    /// `getBlocksWithLimit` leave it out and `getBlock` of it answers `-32007` (as [`Fault::SolanaView`] does for
    /// a skipped slot), while the next block's `parentSlot` still names it. Everything else is proxied.
    HideSlot(u64),
}

impl Fault {
    /// The `blockhash` [`Fault::SolanaView`] serves on `branch` for a block the target serves with `served`
    /// (base58): the 32 bytes with the first 8 XORed with `branch` (little-endian), base58 again. `branch` 0, or a
    /// text that is not 32 bytes of base58, gives `served` back unchanged.
    pub fn branch_hash(served: &str, branch: u64) -> String {
        match base58_decode_32(served) {
            Some(mut bytes) if branch != 0 => {
                for (byte, mask) in bytes.iter_mut().zip(branch.to_le_bytes()) {
                    *byte ^= mask;
                }
                base58_encode(&bytes)
            }
            _ => served.to_owned(),
        }
    }
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
        | Fault::StuckSlot(_)
        | Fault::SolanaView { .. }
        | Fault::HideSlot(_) => {
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

/// A correction applied to the target's `result` under [`Fault::Lag`] and the Solana faults.
#[derive(Clone)]
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
    /// A list of Solana slots: without the ones a [`SlotView`] leaves out, at most `limit` of them when given.
    OmitSlots {
        limit: Option<usize>,
    },
    /// The Solana block at `slot` (asked at `commitment`), re-linked and re-hashed as a [`SlotView`] serves it.
    ViewBlock {
        slot: u64,
        commitment: Option<Value>,
    },
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
                && let Err(response) = apply(shared, fault, post, result).await
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
        (Fault::SolanaView { .. } | Fault::HideSlot(_), _) => match SlotView::of(fault) {
            Some(view) => plan_slot_view(&view, method, params),
            None => Plan::Forward(None, Post::None),
        },
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

/// What [`Fault::SolanaView`] or [`Fault::HideSlot`] changes in the chain the target serves.
struct SlotView {
    /// Slots left out of `getBlocks`, whose `getBlock` answers `-32007`.
    missing: BTreeSet<u64>,
    /// `SolanaView`: blocks are re-linked over missing slots, and re-hashed on `branch` from `from_slot` on.
    /// `HideSlot`: `None`, blocks are served as they are.
    relink: Option<(u64, u64)>,
}

impl SlotView {
    fn of(fault: &Fault) -> Option<SlotView> {
        match fault {
            Fault::SolanaView { branch, from_slot, skipped } => {
                Some(SlotView { missing: skipped.clone(), relink: Some((*branch, *from_slot)) })
            }
            Fault::HideSlot(slot) => Some(SlotView { missing: BTreeSet::from([*slot]), relink: None }),
            _ => None,
        }
    }

    /// The `blockhash` this view serves at `slot` for a block the target serves with `served`.
    fn hash(&self, slot: u64, served: &str) -> String {
        match self.relink {
            Some((branch, from_slot)) if slot >= from_slot => Fault::branch_hash(served, branch),
            _ => served.to_owned(),
        }
    }
}

/// The error a Solana node answers `getBlock` with for a skipped slot.
fn skipped_slot_error(slot: u64) -> Plan {
    Plan::Error(-32007, format!("Slot {slot} was skipped, or missing due to ledger jump to recent snapshot"))
}

fn plan_slot_view(view: &SlotView, method: &str, params: Value) -> Plan {
    let first = params.get(0).and_then(Value::as_u64);
    match method {
        "getBlocks" => Plan::Forward(None, Post::OmitSlots { limit: None }),
        "getBlocksWithLimit" => {
            let limit = params.get(1).and_then(Value::as_u64);
            match (first, limit) {
                // Ask for as many more as could be left out, so that the answer still fills the limit.
                (Some(start), Some(limit)) => {
                    let extra = view.missing.range(start..).count() as u64;
                    let mut params = params;
                    if let Some(asked) = params.get_mut(1) {
                        *asked = json!(limit.saturating_add(extra));
                    }
                    let limit = usize::try_from(limit).ok();
                    Plan::Forward(Some(params), Post::OmitSlots { limit })
                }
                _ => Plan::Forward(None, Post::OmitSlots { limit: None }),
            }
        }
        "getBlock" => match first {
            Some(slot) if view.missing.contains(&slot) => skipped_slot_error(slot),
            Some(slot) if view.relink.is_some() => {
                let commitment = params.get(1).and_then(|config| config.get("commitment")).cloned();
                Plan::Forward(None, Post::ViewBlock { slot, commitment })
            }
            _ => Plan::Forward(None, Post::None),
        },
        _ => Plan::Forward(None, Post::None),
    }
}

/// [`Post::ViewBlock`]: re-links the block at `slot` over the view's missing slots and re-hashes it.
async fn view_block(
    shared: &Shared,
    view: &SlotView,
    slot: u64,
    commitment: Option<Value>,
    block: &mut Value,
) -> Result<(), Response> {
    let Some(block) = block.as_object_mut() else { return Ok(()) };
    if let Some(hash) = block.get("blockhash").and_then(Value::as_str) {
        let hash = view.hash(slot, hash);
        block.insert("blockhash".into(), Value::String(hash));
    }
    let Some(mut parent) = block.get("parentSlot").and_then(Value::as_u64) else { return Ok(()) };
    let mut config = json!({
        "encoding": "json",
        "transactionDetails": "none",
        "rewards": false,
        "maxSupportedTransactionVersion": 0,
    });
    if let Some(commitment) = commitment {
        config["commitment"] = commitment;
    }
    // Follow the target's parent links down to a block this view serves: the nearest lower one not left out.
    let parent_hash = loop {
        let served = shared.call_result("getBlock", json!([parent, config])).await?;
        let served_parent = served.get("parentSlot").and_then(Value::as_u64);
        match (served.get("blockhash").and_then(Value::as_str), served_parent) {
            (Some(hash), _) if !view.missing.contains(&parent) => break Some(view.hash(parent, hash)),
            (Some(_), Some(next)) if next < parent => parent = next,
            // The target has no such block (below its first one, or not produced at this commitment).
            _ => break None,
        }
    };
    block.insert("parentSlot".into(), json!(parent));
    if let Some(hash) = parent_hash {
        block.insert("previousBlockhash".into(), Value::String(hash));
    }
    Ok(())
}

/// Exactly 32 bytes of base58 (Solana hashes and addresses); `None` for anything else.
fn base58_decode_32(text: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    matches!(bs58::decode(text).onto(&mut bytes), Ok(32)).then_some(bytes)
}

fn base58_encode(bytes: &[u8]) -> String {
    bs58::encode(bytes).into_string()
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

async fn apply(shared: &Shared, fault: &Fault, post: Post, result: &mut Value) -> Result<(), Response> {
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
        Post::OmitSlots { limit } => {
            if let (Some(view), Some(slots)) = (SlotView::of(fault), result.as_array_mut()) {
                slots.retain(|s| s.as_u64().is_none_or(|s| !view.missing.contains(&s)));
                if let Some(limit) = limit {
                    slots.truncate(limit);
                }
            }
        }
        Post::ViewBlock { slot, commitment } => {
            if let Some(view) = SlotView::of(fault) {
                view_block(shared, &view, slot, commitment, result).await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The Solana views against a small fake Solana node whose chain is known exactly: blocks at slots 10..=20,
    //! each naming slot − 1 as its parent, with a `previousBlockhash` that links nothing (as surfpool's may not).

    use super::*;

    const FIRST: u64 = 10;
    const LAST: u64 = 20;

    /// The fake node's hash of the block at `slot`.
    fn hash(slot: u64) -> String {
        base58_encode(&[u8::try_from(slot).expect("small slot"); 32])
    }

    fn fake_answer(call: &Value) -> Value {
        let id = call["id"].clone();
        let params = &call["params"];
        let produced = |from: u64, to: u64| (from.max(FIRST)..=to.min(LAST)).collect::<Vec<u64>>();
        let result = match call["method"].as_str() {
            Some("getBlocks") => {
                json!(produced(params[0].as_u64().expect("start"), params[1].as_u64().unwrap_or(LAST)))
            }
            Some("getBlocksWithLimit") => {
                let start = params[0].as_u64().expect("start");
                let limit = params[1].as_u64().expect("limit");
                json!(produced(start, LAST).into_iter().take(limit as usize).collect::<Vec<_>>())
            }
            Some("getBlock") => {
                let slot = params[0].as_u64().expect("slot");
                if !(FIRST..=LAST).contains(&slot) {
                    return error_object(
                        id,
                        -32602,
                        &format!("Requested {slot} is before the first local slot"),
                    );
                }
                json!({
                    "blockhash": hash(slot),
                    "previousBlockhash": "broken",
                    "parentSlot": slot - 1,
                    "blockHeight": slot,
                })
            }
            Some("getSlot") => json!(LAST),
            _ => return error_object(id, -32601, "Method not found"),
        };
        json!({"jsonrpc": "2.0", "id": id, "result": result})
    }

    async fn fake_node(body: Bytes) -> Response {
        let request: Value = serde_json::from_slice(&body).expect("JSON request");
        let answer = match request {
            Value::Array(calls) => Value::Array(calls.iter().map(fake_answer).collect()),
            call => fake_answer(&call),
        };
        json_response(&answer)
    }

    async fn start_fake_node() -> (String, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = Router::new().fallback(fake_node);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (url, task)
    }

    async fn rpc(url: &str, body: Value) -> Value {
        crate::install_crypto_provider();
        let client = plain_http_client().build().expect("HTTP client");
        let response = client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
    }

    fn call(id: u64, method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    }

    async fn result(url: &str, method: &str, params: Value) -> Value {
        let answer = rpc(url, call(7, method, params)).await;
        assert_eq!(answer["id"], 7, "{answer}");
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    fn block_config() -> Value {
        json!({"encoding": "json", "transactionDetails": "full", "commitment": "confirmed"})
    }

    async fn block(url: &str, slot: u64) -> Value {
        result(url, "getBlock", json!([slot, block_config()])).await
    }

    #[test]
    fn base58_of_exactly_32_bytes() {
        let surfpool = "SURFNETxSAFEHASHxxxxxxxxxxxxxxxxxxxxxxxxx28";
        let decoded = base58_decode_32(surfpool).expect("a surfpool hash is 32 bytes");
        assert_eq!(base58_encode(&decoded), surfpool);
        assert_eq!(base58_decode_32(&base58_encode(&[7u8; 31])), None);
        assert_eq!(base58_decode_32(&base58_encode(&[7u8; 33])), None);
        assert_eq!(base58_decode_32("0OIl"), None);
        assert_eq!(base58_decode_32(""), None);
    }

    #[test]
    fn branch_hashes_differ_per_branch_and_stay_32_bytes() {
        let served = hash(15);
        assert_eq!(Fault::branch_hash(&served, 0), served);
        let one = Fault::branch_hash(&served, 1);
        let two = Fault::branch_hash(&served, 2);
        assert!(one != served && two != served && one != two);
        assert_eq!(Fault::branch_hash(&served, 1), one, "not deterministic");
        let mut expected = [15u8; 32];
        expected[0] ^= 2;
        assert_eq!(base58_decode_32(&two), Some(expected));
        assert_eq!(Fault::branch_hash("not-a-hash", 1), "not-a-hash");
    }

    #[tokio::test]
    async fn solana_view_skips_slots_and_relinks_the_blocks_around_them() {
        let (node, _server) = start_fake_node().await;
        let proxy = FaultProxy::start(&node).await;
        let url = proxy.url.clone();
        proxy
            .set(Fault::SolanaView { branch: 0, from_slot: u64::MAX, skipped: BTreeSet::from([13, 14, 18]) })
            .await;

        let slots = result(&url, "getBlocks", json!([11, 19, {"commitment": "confirmed"}])).await;
        assert_eq!(slots, json!([11, 12, 15, 16, 17, 19]));
        let slots = result(&url, "getBlocksWithLimit", json!([12, 4, {"commitment": "confirmed"}])).await;
        assert_eq!(slots, json!([12, 15, 16, 17]), "the limit counts only the slots served");

        let skipped = rpc(&url, call(3, "getBlock", json!([14, block_config()]))).await;
        assert_eq!(skipped["id"], 3);
        assert_eq!(skipped["error"]["code"], -32007, "{skipped}");
        assert_eq!(
            skipped["error"]["message"],
            "Slot 14 was skipped, or missing due to ledger jump to recent snapshot"
        );

        // Over the skipped run: the parent is the block below it, with that block's hash.
        let after = block(&url, 15).await;
        assert_eq!(after["parentSlot"], 12, "{after}");
        assert_eq!(after["previousBlockhash"], hash(12).as_str(), "{after}");
        assert_eq!(after["blockhash"], hash(15).as_str(), "branch 0 keeps the hashes");
        assert_eq!(after["blockHeight"], 15);
        // Elsewhere the links are the target's parent slots, with consistent hashes.
        let plain = block(&url, 12).await;
        assert_eq!(
            (plain["parentSlot"].as_u64(), plain["previousBlockhash"].as_str()),
            (Some(11), Some(&*hash(11)))
        );
        // The target's first block: its parent cannot be asked for, so the link stays as served.
        let first = block(&url, FIRST).await;
        assert_eq!(
            (first["parentSlot"].as_u64(), first["previousBlockhash"].as_str()),
            (Some(9), Some("broken"))
        );

        // In a batch, each call gets its own answer and id.
        let batch = rpc(
            &url,
            json!([
                call(1, "getBlock", json!([18, block_config()])),
                call(2, "getBlock", json!([19, block_config()])),
                call(5, "getSlot", json!([]))
            ]),
        )
        .await;
        assert_eq!(batch[0]["id"], 1);
        assert_eq!(batch[0]["error"]["code"], -32007, "{batch}");
        assert_eq!(batch[1]["id"], 2);
        assert_eq!(batch[1]["result"]["parentSlot"], 17, "{batch}");
        assert_eq!(batch[1]["result"]["previousBlockhash"], hash(17).as_str());
        assert_eq!(batch[2]["result"], LAST);
    }

    #[tokio::test]
    async fn solana_view_branch_rehashes_from_its_first_slot() {
        let (node, _server) = start_fake_node().await;
        let proxy = FaultProxy::start(&node).await;
        let url = proxy.url.clone();
        proxy.set(Fault::SolanaView { branch: 3, from_slot: 16, skipped: BTreeSet::from([17]) }).await;

        let below = block(&url, 15).await;
        assert_eq!(below["blockhash"], hash(15).as_str(), "below from_slot nothing changes");
        let first = block(&url, 16).await;
        let rehashed = Fault::branch_hash(&hash(16), 3);
        assert_ne!(rehashed, hash(16));
        assert_eq!(first["blockhash"], rehashed.as_str());
        assert_eq!(first["previousBlockhash"], hash(15).as_str(), "the common ancestor keeps its hash");
        let next = block(&url, 18).await;
        assert_eq!(next["parentSlot"], 16);
        assert_eq!(next["previousBlockhash"], rehashed.as_str());
        assert_eq!(next["blockhash"], Fault::branch_hash(&hash(18), 3).as_str());

        // Switching back to branch 0 serves the original chain again.
        proxy.set(Fault::SolanaView { branch: 0, from_slot: 16, skipped: BTreeSet::new() }).await;
        let back = block(&url, 18).await;
        assert_eq!((back["blockhash"].as_str(), back["parentSlot"].as_u64()), (Some(&*hash(18)), Some(17)));
    }

    #[tokio::test]
    async fn hide_slot_leaves_the_slot_out_but_not_the_links() {
        let (node, _server) = start_fake_node().await;
        let proxy = FaultProxy::start(&node).await;
        let url = proxy.url.clone();
        proxy.set(Fault::HideSlot(14)).await;

        let slots = result(&url, "getBlocks", json!([12, 16])).await;
        assert_eq!(slots, json!([12, 13, 15, 16]));
        let slots = result(&url, "getBlocksWithLimit", json!([13, 2])).await;
        assert_eq!(slots, json!([13, 15]));
        let hidden = rpc(&url, call(1, "getBlock", json!([14, block_config()]))).await;
        assert_eq!(hidden["error"]["code"], -32007, "{hidden}");
        let next = block(&url, 15).await;
        assert_eq!(next["parentSlot"], 14, "the next block still names the hidden slot");
        assert_eq!(next["previousBlockhash"], "broken", "nothing is rewritten");
        assert_eq!(next["blockhash"], hash(15).as_str());

        proxy.set(Fault::None).await;
        assert_eq!(block(&url, 14).await["blockhash"], hash(14).as_str());
    }
}
