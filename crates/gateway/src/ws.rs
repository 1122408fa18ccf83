//! JSON-RPC over a WebSocket on `GET /rpc/{chain}`: `eth_subscribe` (`newHeads`, `logs`) and `eth_unsubscribe`
//! served from the chain's [`Hub`], every other request answered exactly as `POST /rpc/{chain}` answers it (the
//! same `routes::answer_message`: batch limits, method policy, cache, coalescing).
//!
//! Notifications have geth's shape, `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":
//! "0x…","result":…}}`. Limits: at most `max_subscriptions_per_connection` subscriptions, messages of at most
//! `max_body_bytes`, [`SEND_QUEUE`] messages waiting for the client (a client that leaves it full for
//! [`SLOW_CLIENT`] is dropped), and
//! [`CALLS_IN_FLIGHT`] plain calls at once (beyond it the socket is not read until one is answered).
//!
//! The API-key middleware sees the upgrade request like any other `/rpc` request: a connection is authenticated
//! once, when it opens (a key revoked later keeps its open connections), and charged to the `/rpc` budget then
//! and for every message after (a batch is one message, as over HTTP). A message beyond the budget is answered
//! with a `-32005` error naming the wait; the connection stays open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use chainmux_core::ChainKind;
use futures_util::SinkExt;
use futures_util::stream::{SplitSink, StreamExt};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::auth::RpcCharge;
use crate::routes::{self, Forwarded, Reply, RpcResponse};
use crate::subscriptions::{HeadsListener, Hub, HubEvent, LogFilter};
use crate::{AppState, ChainHandle};

/// Messages queued for a client. A block can bring more notifications than this; they wait for room.
const SEND_QUEUE: usize = 1024;
/// How long the queue may stay full before the client counts as too slow to follow the chain and is dropped.
const SLOW_CLIENT: Duration = Duration::from_secs(10);
/// Plain calls of one connection answered at once.
const CALLS_IN_FLIGHT: usize = 32;
/// How long a closing connection's queued messages (the close frame last) may take to reach the client.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// JSON-RPC code of geth's "subscription not found" and of our own server-side refusals.
const SERVER_ERROR: i64 = -32000;
/// JSON-RPC code of a refused request for lack of capacity ("limit exceeded", EIP-1474).
const LIMIT_EXCEEDED: i64 = -32005;

/// `GET /rpc/{chain}`: upgrades to a WebSocket speaking JSON-RPC (see the module docs).
#[utoipa::path(get, path = "/rpc/{chain}", tag = "rpc", operation_id = "rpc_websocket",
    summary = "JSON-RPC over a WebSocket, with `eth_subscribe` (`newHeads`, `logs`) and `eth_unsubscribe`.",
    params(crate::params::ChainPath),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol."),
        (status = 400, description = "Not a WebSocket upgrade request.")
    ))]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Path(chain): Path<String>,
    charge: Option<Extension<RpcCharge>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let handle = match state.chain(&chain) {
        Ok(handle) => handle.clone(),
        Err(err) => return err.into_response(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    if state.is_draining() {
        return crate::AppError::Unavailable("draining: shutting down".into()).into_response();
    }
    // Both held for the connection's life.
    let client_slot = match crate::live_slots::take(&state, charge.as_ref().map(|Extension(c)| c)) {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let Ok(slot) = state.inner.ws_slots.clone().try_acquire_owned() else {
        let max = state.config().max_ws_connections;
        let message = format!("too many WebSocket connections open (at most {max}); retry later");
        return crate::AppError::Unavailable(message).into_response();
    };
    let max = state.config().max_body_bytes;
    // In the upgrade request's span: the connection's logs (and its upstream calls) carry its request id.
    let span = tracing::Span::current();
    upgrade.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| {
        async move {
            serve(state, handle, charge.map(|Extension(charge)| charge), socket).await;
            drop((slot, client_slot));
        }
        .instrument(span)
    })
}

/// Why the server ends a connection.
#[derive(Debug)]
enum Close {
    /// The client's socket failed, or the client is gone.
    Gone,
    /// The client sent a close frame.
    ByClient,
    /// The client did not read fast enough: its queue is full, so not even a close frame fits.
    TooSlow,
    /// Told to the client in a close frame.
    Frame(&'static str),
}

/// Close code "try again later" (RFC 6455 registry): the client should reconnect and subscribe again.
const TRY_AGAIN_LATER: u16 = 1013;

async fn serve(state: AppState, handle: ChainHandle, charge: Option<RpcCharge>, socket: WebSocket) {
    let chain = handle.spec.name.clone();
    let connections = metrics::gauge!("chainmux_ws_connections", "chain" => chain.clone());
    connections.increment(1.0);
    let (sink, mut incoming) = socket.split();
    let (out, queue) = mpsc::channel(SEND_QUEUE);
    let mut writer = tokio::spawn(write(sink, queue));
    let mut connection = Connection {
        state: state.clone(),
        chain: chain.clone(),
        kind: handle.spec.kind,
        charge,
        out: out.clone(),
        subscriptions: BTreeMap::new(),
        hub: None,
        events: None,
    };
    let mut calls = JoinSet::new();
    // Open sockets would keep graceful shutdown waiting: on drain, clients are told to reconnect (elsewhere).
    let mut drained = state.drained();
    let close = loop {
        tokio::select! {
            // The `Ref` wait_for returns is not `Send`: dropped inside.
            _ = async { drained.wait_for(|&drained| drained).await.is_ok() } => {
                break Close::Frame("the server is shutting down; reconnect");
            }
            message = incoming.next(), if calls.len() < CALLS_IN_FLIGHT => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(bytes))) => match Utf8Bytes::try_from(bytes) {
                        Ok(text) => text,
                        Err(_) => break Close::Frame("binary messages must be UTF-8 JSON"),
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) => break Close::ByClient,
                    None => break Close::Gone,
                    Some(Err(err)) => {
                        tracing::debug!(%err, "websocket read failed");
                        break Close::Gone;
                    }
                };
                if let Err(close) = connection.on_message(&handle, text.as_str(), &mut calls).await {
                    break close;
                }
            }
            event = next_event(&mut connection.events) => {
                if let Err(close) = connection.on_hub_event(event).await {
                    break close;
                }
            }
            Some(_) = calls.join_next() => {}
        }
    };
    calls.abort_all();
    match close {
        Close::TooSlow => {
            metrics::counter!("chainmux_ws_closed_total", "chain" => chain.clone(), "reason" => "slow_client")
                .increment(1);
            writer.abort();
        }
        Close::Gone => writer.abort(),
        Close::ByClient | Close::Frame(_) => {
            if let Close::Frame(reason) = close {
                metrics::counter!("chainmux_ws_closed_total", "chain" => chain.clone(), "reason" => "server")
                    .increment(1);
                let frame = CloseFrame { code: TRY_AGAIN_LATER, reason: Utf8Bytes::from_static(reason) };
                let _ = out.try_send(Message::Close(Some(frame)));
            }
            // The writer ends once every sender is gone, after sending what is queued and closing the socket
            // (which also completes a close the client started).
            drop(out);
            drop(connection);
            if tokio::time::timeout(CLOSE_GRACE, &mut writer).await.is_err() {
                writer.abort();
            }
        }
    }
    connections.decrement(1.0);
}

/// Sends queued messages, flushing whenever the queue runs dry; ends after a close frame.
async fn write(mut sink: SplitSink<WebSocket, Message>, mut queue: mpsc::Receiver<Message>) {
    while let Some(message) = queue.recv().await {
        let closing = matches!(message, Message::Close(_));
        if sink.feed(message).await.is_err() {
            return;
        }
        if (closing || queue.is_empty()) && sink.flush().await.is_err() {
            return;
        }
        if closing {
            return;
        }
    }
    let _ = sink.close().await;
}

/// The next hub event; never, while the connection has no subscription.
async fn next_event(
    events: &mut Option<broadcast::Receiver<Arc<HubEvent>>>,
) -> Result<Arc<HubEvent>, broadcast::error::RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// One open subscription.
#[derive(Debug)]
struct Subscription {
    kind: Kind,
    /// Lowest block sent to it that may still be removed: removed blocks below it were never sent to it.
    since: Option<u64>,
    /// Keeps `chainmux_ws_subscriptions` right however the subscription ends.
    _gauge: GaugeGuard,
}

#[derive(Debug)]
enum Kind {
    Heads(#[allow(dead_code)] HeadsListener),
    Logs(LogFilter),
}

impl Kind {
    fn label(&self) -> &'static str {
        match self {
            Self::Heads(_) => "newHeads",
            Self::Logs(_) => "logs",
        }
    }
}

/// Increments a gauge now and decrements it when dropped.
#[derive(Debug)]
struct GaugeGuard(metrics::Gauge);

impl GaugeGuard {
    fn new(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

struct Connection {
    state: AppState,
    chain: String,
    kind: ChainKind,
    /// The budget the upgrade request was charged to; `None` where the middleware did not run (tests' routers).
    charge: Option<RpcCharge>,
    out: mpsc::Sender<Message>,
    /// By id.
    subscriptions: BTreeMap<String, Subscription>,
    hub: Option<Arc<Hub>>,
    /// The hub's events, while there is a subscription.
    events: Option<broadcast::Receiver<Arc<HubEvent>>>,
}

/// Whether a request object is one the connection answers itself.
fn is_subscription_method(request: &Value) -> bool {
    matches!(request.get("method").and_then(Value::as_str), Some("eth_subscribe" | "eth_unsubscribe"))
}

/// A JSON-RPC error, as `(code, message)`.
type RpcFailure = (i64, String);

impl Connection {
    /// Answers one client message. Subscription requests (alone or in a batch) are answered before the next hub
    /// event is looked at, so a subscription's id always reaches the client before its first notification; other
    /// messages are answered concurrently.
    async fn on_message(
        &mut self,
        handle: &ChainHandle,
        text: &str,
        calls: &mut JoinSet<()>,
    ) -> Result<(), Close> {
        let request: Option<Value> = serde_json::from_str(text).ok();
        // Each call of a batch counts, as over HTTP; so does a message that is not even JSON.
        let cost = match &request {
            Some(Value::Array(items)) => u32::try_from(items.len()).unwrap_or(u32::MAX).max(1),
            _ => 1,
        };
        if let Some(charge) = &self.charge
            && let Err(wait) = charge.charge_rpc_n(&self.state, cost).await
        {
            let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
            let refusal = |id: Value| {
                RpcResponse::error(id, LIMIT_EXCEEDED, format!("rate limit exceeded; retry in {seconds} s"))
            };
            let id_of = |request: &Value| request.get("id").cloned().unwrap_or(Value::Null);
            // A batch is answered as a batch: one refusal per call, with its id.
            return match &request {
                Some(Value::Array(items)) if !items.is_empty() => {
                    let answers: Vec<_> = items.iter().map(|item| refusal(id_of(item))).collect();
                    match serde_json::to_string(&answers) {
                        Ok(text) => self.send(text).await,
                        Err(_) => Ok(()),
                    }
                }
                other => self.send_answer(&refusal(other.as_ref().map_or(Value::Null, id_of))).await,
            };
        }
        let Some(request) = request else {
            return self.send_answer(&RpcResponse::error(Value::Null, -32700, "Parse error")).await;
        };
        let touches_subscriptions = match &request {
            Value::Array(items) => items.iter().any(is_subscription_method),
            single => is_subscription_method(single),
        };
        if touches_subscriptions {
            let state = self.state.clone();
            let reply = routes::answer_message(&state, handle, request, &mut |item| self.local(item)).await;
            return match reply_text(reply) {
                Some(text) => self.send(text).await,
                None => Ok(()),
            };
        }
        let (state, handle, out) = (self.state.clone(), handle.clone(), self.out.clone());
        calls.spawn(
            async move {
                let reply = routes::answer_message(&state, &handle, request, &mut |_| None).await;
                if let Some(text) = reply_text(reply) {
                    // A client gone meanwhile needs no answer.
                    let _ = out.send(Message::Text(text.into())).await;
                }
            }
            .in_current_span(),
        );
        Ok(())
    }

    /// Answers `eth_subscribe` and `eth_unsubscribe`; leaves every other request to the pool.
    fn local(&mut self, item: &Value) -> Option<Forwarded> {
        if !is_subscription_method(item) {
            return None;
        }
        let request = match routes::validate(item.clone()) {
            Ok(request) => request,
            Err(answer) => return Some(Forwarded::local(Some(answer))),
        };
        let outcome = if !self.state.method_policy(&self.chain).is_none_or(|p| p.allows(&request.method)) {
            metrics::counter!("chainmux_rpc_denied_total", "chain" => self.chain.clone()).increment(1);
            let message = format!("method {} is not allowed on chain {}", request.method, self.chain);
            Err((routes::METHOD_NOT_ALLOWED, message))
        } else if request.method == "eth_subscribe" {
            self.subscribe(&request.params).map(Value::String)
        } else {
            self.unsubscribe(&request.params).map(Value::Bool)
        };
        let answer = match outcome {
            Ok(result) => match serde_json::value::to_raw_value(&result) {
                Ok(raw) => RpcResponse::result(request.id, raw),
                Err(_) => RpcResponse::error(request.id, -32603, "internal error"),
            },
            Err((code, message)) => RpcResponse::error(request.id, code, message),
        };
        Some(Forwarded::local((!request.is_notification).then_some(answer)))
    }

    fn subscribe(&mut self, params: &Value) -> Result<String, RpcFailure> {
        let invalid = |message: &str| (-32602, format!("Invalid params: {message}"));
        let Value::Array(params) = params else {
            return Err(invalid("expected an array [name, filter?]"));
        };
        let Some(Value::String(name)) = params.first() else {
            return Err(invalid("expected a subscription name first"));
        };
        let kind = match name.as_str() {
            "newHeads" | "logs" if self.kind != ChainKind::Evm => {
                return Err((SERVER_ERROR, format!("chain {} serves no eth subscriptions", self.chain)));
            }
            "newHeads" if params.len() > 1 => return Err(invalid("too many arguments, want at most 1")),
            "logs" if params.len() > 2 => return Err(invalid("too many arguments, want at most 2")),
            "newHeads" | "logs" => name.as_str(),
            other => {
                let message = format!("no {other:?} subscription in eth namespace (served: newHeads, logs)");
                return Err((routes::METHOD_NOT_ALLOWED, message));
            }
        };
        let filter = match kind {
            "logs" => Some(LogFilter::parse(params.get(1)).map_err(|message| (-32602, message))?),
            _ => None,
        };
        let limit = self.state.config().max_subscriptions_per_connection;
        if self.subscriptions.len() >= limit {
            let message = format!("too many subscriptions on this connection (limit {limit})");
            return Err((LIMIT_EXCEEDED, message));
        }
        let hub = match &self.hub {
            Some(hub) => hub.clone(),
            None => {
                let Some(hub) = self.state.subscription_hub(&self.chain) else {
                    let message = format!(
                        "chain {} has no event source in this process: it is not indexed here",
                        self.chain
                    );
                    return Err((SERVER_ERROR, message));
                };
                self.hub = Some(hub.clone());
                hub
            }
        };
        if self.events.is_none() {
            self.events = Some(hub.subscribe());
        }
        let kind = match filter {
            Some(filter) => Kind::Logs(filter),
            None => Kind::Heads(hub.listen_heads()),
        };
        let gauge = metrics::gauge!("chainmux_ws_subscriptions", "chain" => self.chain.clone(), "kind" => kind.label());
        let id = subscription_id().map_err(|_| (-32603, "internal error: no randomness".to_owned()))?;
        let subscription = Subscription { kind, since: None, _gauge: GaugeGuard::new(gauge) };
        self.subscriptions.insert(id.clone(), subscription);
        Ok(id)
    }

    fn unsubscribe(&mut self, params: &Value) -> Result<bool, RpcFailure> {
        let Some(Value::String(id)) = params.as_array().and_then(|p| p.first()) else {
            return Err((-32602, "Invalid params: expected [subscription id]".to_owned()));
        };
        if self.subscriptions.remove(id).is_none() {
            return Err((SERVER_ERROR, "subscription not found".to_owned()));
        }
        if self.subscriptions.is_empty() {
            // Nothing to follow: an idle receiver would only lag.
            self.events = None;
        }
        Ok(true)
    }

    async fn on_hub_event(
        &mut self,
        event: Result<Arc<HubEvent>, broadcast::error::RecvError>,
    ) -> Result<(), Close> {
        let event = match event {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::info!(missed, chain = %self.chain, "websocket subscriber fell behind; closing");
                return Err(Close::Frame("subscriber fell behind the chain; reconnect and subscribe again"));
            }
            Err(broadcast::error::RecvError::Closed) => {
                return Err(Close::Frame("chain event source closed"));
            }
        };
        match &*event {
            HubEvent::Block(block) => {
                let mut notes = Vec::new();
                for (id, subscription) in &mut self.subscriptions {
                    subscription.since =
                        Some(subscription.since.map_or(block.ptr.number, |s| s.min(block.ptr.number)));
                    match &subscription.kind {
                        Kind::Heads(_) => notes.push((id.clone(), "newHeads", block.header())),
                        Kind::Logs(filter) => notes.extend(
                            block
                                .logs
                                .iter()
                                .filter(|l| filter.matches(l))
                                .map(|l| (id.clone(), "logs", l.render(false))),
                        ),
                    }
                }
                self.notify(notes).await
            }
            HubEvent::Removed(blocks) => {
                let mut notes = Vec::new();
                for (id, subscription) in &mut self.subscriptions {
                    let (Kind::Logs(filter), Some(since)) = (&subscription.kind, subscription.since) else {
                        continue;
                    };
                    // Newest first, as geth sends them; blocks below `since` were never sent to this one.
                    for block in blocks.iter().filter(|b| b.ptr.number >= since) {
                        notes.extend(
                            block
                                .logs
                                .iter()
                                .rev()
                                .filter(|l| filter.matches(l))
                                .map(|l| (id.clone(), "logs", l.render(true))),
                        );
                    }
                }
                self.notify(notes).await
            }
            HubEvent::Lagged => {
                Err(Close::Frame("the chain's feed fell behind; reconnect and subscribe again"))
            }
            HubEvent::Closed => Err(Close::Frame("chain event source closed")),
        }
    }

    /// Queues `(subscription id, kind, result)` notifications in order.
    async fn notify(&self, notes: Vec<(String, &'static str, Value)>) -> Result<(), Close> {
        for (id, kind, result) in notes {
            // Written by hand to keep geth's field order; `id` is our own hex, `result` serialized JSON.
            let text = format!(
                r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"{id}","result":{result}}}}}"#
            );
            metrics::counter!("chainmux_ws_notifications_total", "chain" => self.chain.clone(), "kind" => kind)
                .increment(1);
            self.send(text).await?;
        }
        Ok(())
    }

    async fn send_answer(&self, answer: &RpcResponse) -> Result<(), Close> {
        match serde_json::to_string(answer) {
            Ok(text) => self.send(text).await,
            Err(_) => Ok(()),
        }
    }

    /// Queues `text`, waiting up to [`SLOW_CLIENT`] for room.
    async fn send(&self, text: String) -> Result<(), Close> {
        let message = match self.out.try_send(Message::Text(text.into())) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Close::Gone),
            Err(mpsc::error::TrySendError::Full(message)) => message,
        };
        match tokio::time::timeout(SLOW_CLIENT, self.out.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Close::Gone),
            Err(_) => Err(Close::TooSlow),
        }
    }
}

/// The text answering a message, if it gets one (notifications and all-notification batches do not).
fn reply_text(reply: Reply) -> Option<String> {
    let text = match reply {
        Reply::Single(forwarded) => serde_json::to_string(&forwarded.answer?),
        Reply::Batch(answers) if answers.is_empty() => return None,
        Reply::Batch(answers) => serde_json::to_string(&answers),
        Reply::Refused(answer) => serde_json::to_string(&answer),
    };
    text.map_err(|err| tracing::error!(%err, "cannot encode JSON-RPC response")).ok()
}

/// A fresh subscription id: 16 random bytes as a hex quantity, as geth makes them.
fn subscription_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    let digits = alloy::hex::encode(bytes);
    let trimmed = digits.trim_start_matches('0');
    Ok(format!("0x{}", if trimmed.is_empty() { "0" } else { trimmed }))
}
