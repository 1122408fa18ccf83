//! The pool: scoring and selection, failover, retries, hedging, deadlines, rate limits, health observation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, debug_span, error, info, info_span, warn};
use url::Url;

use crate::error::{JsonRpcError, RpcError};
use crate::policy::{PoolConfig, UpstreamPolicy};
use crate::upstream::{Eligibility, Transition, Upstream, UpstreamStatus, UpstreamTransition, Verdict};

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub url: Url,
    pub policy: UpstreamPolicy,
}

/// Judges an identity answer: `Err(reason)` excludes the upstream with that reason.
pub type IdentityVerifier = Box<dyn Fn(&RawValue) -> Result<(), String> + Send + Sync>;

/// How the adapter proves an upstream serves the configured chain (e.g. `eth_chainId` equals the config's).
pub struct IdentityCheck {
    pub method: String,
    pub params: Box<RawValue>,
    pub verify: IdentityVerifier,
}

impl std::fmt::Debug for IdentityCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCheck").field("method", &self.method).finish_non_exhaustive()
    }
}

/// How the adapter asks an upstream for its head height. Calls of `method` through the pool are answered with
/// at least the best head known from healthy upstreams, so the head a client sees never goes backwards because
/// one upstream lags.
#[derive(Debug)]
pub struct HeadProbe {
    pub method: String,
    pub params: Box<RawValue>,
    pub parse: fn(&RawValue) -> Option<u64>,
    pub encode: fn(u64) -> Box<RawValue>,
}

/// A node's own health endpoint (Solana's `getHealth`): asked on every probe; a JSON-RPC error answer excludes
/// the upstream (with the node's message as the reason) until a later probe succeeds.
#[derive(Debug)]
pub struct HealthCheck {
    pub method: String,
    pub params: Box<RawValue>,
}

/// Reads a request's method and params.
pub type RequestInspector<T> = fn(&str, &RawValue) -> Option<T>;

/// Chain-specific knowledge the pool uses without knowing the chain.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestHints {
    /// Lowest head an upstream needs to answer this request (e.g. the block number it asks for): upstreams known
    /// to be behind are not asked.
    pub min_height: Option<RequestInspector<u64>>,
    /// The answer to a signed write whose duplicate an upstream rejected on a retry ("already known", "nonce too
    /// low"): the transaction id, which is fixed by the signed payload.
    pub duplicate_write: Option<RequestInspector<Box<RawValue>>>,
}

/// How a method may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A signed transaction: re-sending the same bytes cannot create a second transaction, so it may be retried
    /// (never hedged); a duplicate rejection on a retry means the first send arrived.
    Signed,
    /// The node signs and picks the nonce: a second send is a second transaction. Re-sent only when the previous
    /// attempt provably never reached its upstream.
    NodeSigned,
}

pub fn write_kind(method: &str) -> Option<WriteKind> {
    match method {
        "eth_sendRawTransaction" | "sendTransaction" => Some(WriteKind::Signed),
        "eth_sendTransaction" => Some(WriteKind::NodeSigned),
        _ => None,
    }
}

/// Methods that change chain state.
pub fn is_write_method(method: &str) -> bool {
    write_kind(method).is_some()
}

/// Low-cardinality class of a method, for metric labels (raw method names are client-controlled).
pub fn method_class(method: &str) -> &'static str {
    if is_write_method(method) {
        "write"
    } else if matches!(method, "eth_blockNumber" | "getSlot" | "getBlockHeight") {
        "head"
    } else if method.contains("getLogs") {
        "logs"
    } else if method.starts_with("eth_getBlock") || method.starts_with("getBlock") {
        "block"
    } else if method.starts_with("debug_") || method.starts_with("trace_") {
        "trace"
    } else {
        "read"
    }
}

/// Whether two JSON-RPC params are the same question: equal JSON, with absent, `null` and `[]` alike.
fn same_params(a: &RawValue, b: &RawValue) -> bool {
    let parse = |raw: &RawValue| match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::Null) => Some(serde_json::Value::Array(Vec::new())),
        other => other.ok(),
    };
    a.get() == b.get() || parse(a).is_some_and(|a| Some(a) == parse(b))
}

/// Which upstream served a call and how much it took.
#[derive(Debug, Clone, Default)]
pub struct CallTrace {
    /// The upstream whose answer was returned.
    pub upstream: Option<String>,
    /// Attempts sent, hedges included.
    pub attempts: u32,
    pub hedges: u32,
}

/// JSON-RPC client over the upstreams of one chain.
#[derive(Debug)]
pub struct Pool {
    chain: String,
    upstreams: Vec<Upstream>,
    http: reqwest::Client,
    config: PoolConfig,
    identity: Option<IdentityCheck>,
    probe: Option<HeadProbe>,
    health: Option<HealthCheck>,
    hints: RequestHints,
    next_id: AtomicU64,
    primary: AtomicUsize,
    reads: AtomicU64,
    /// The latest upstream state changes, oldest first, at most [`TRANSITIONS_KEPT`].
    transitions: std::sync::Mutex<std::collections::VecDeque<UpstreamTransition>>,
}

/// Upstream state changes a pool remembers for `/v1/status`: enough for a bad night of a few upstreams.
const TRANSITIONS_KEPT: usize = 200;

/// The part of a JSON-RPC response the pool looks at. `result` keeps `null` as a value: `null` is a valid answer
/// (an unknown transaction), distinct from an absent result.
#[derive(Deserialize)]
struct ResponseBody {
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<JsonRpcError>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Why an attempt was sent, for its span.
#[derive(Debug, Clone, Copy)]
enum AttemptKind {
    First,
    /// After an earlier attempt failed.
    Retry,
    /// While an earlier attempt is still unanswered.
    Hedge,
}

impl AttemptKind {
    fn as_str(self) -> &'static str {
        match self {
            AttemptKind::First => "first",
            AttemptKind::Retry => "retry",
            AttemptKind::Hedge => "hedge",
        }
    }
}

type Attempt<'a> = Pin<Box<dyn Future<Output = (usize, Result<Box<RawValue>, RpcError>)> + Send + 'a>>;

const NO_PRIMARY: usize = usize::MAX;

/// Messages with which nodes reject a signed transaction they already have.
fn is_duplicate_rejection(error: &JsonRpcError) -> bool {
    let message = error.message.to_ascii_lowercase();
    [
        "already known",
        "known transaction",
        "nonce too low",
        "already imported",
        "alreadyprocessed",
        "already processed",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

impl Pool {
    pub fn new(chain: impl Into<String>, upstreams: Vec<UpstreamConfig>, config: PoolConfig) -> Self {
        // reqwest is built without a bundled crypto backend (aws-lc takes minutes to compile); ring is installed
        // as the process default. An `Err` only means a default is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            // Building fails only when the TLS backend cannot initialise, which no configuration here can fix.
            .unwrap_or_else(|err| panic!("HTTP client cannot be built: {err}"));
        Self {
            chain: chain.into(),
            upstreams: upstreams.into_iter().map(|u| Upstream::new(u.name, u.url, u.policy)).collect(),
            http,
            config,
            identity: None,
            probe: None,
            health: None,
            hints: RequestHints::default(),
            next_id: AtomicU64::new(1),
            primary: AtomicUsize::new(NO_PRIMARY),
            reads: AtomicU64::new(0),
            transitions: std::sync::Mutex::default(),
        }
    }

    /// Upstreams are routed to only after passing `check`; without one they are trusted as configured.
    pub fn with_identity_check(mut self, check: IdentityCheck) -> Self {
        self.identity = Some(check);
        self
    }

    pub fn with_head_probe(mut self, probe: HeadProbe) -> Self {
        self.probe = Some(probe);
        self
    }

    pub fn with_health_check(mut self, check: HealthCheck) -> Self {
        self.health = Some(check);
        self
    }

    pub fn with_hints(mut self, hints: RequestHints) -> Self {
        self.hints = hints;
        self
    }

    pub fn chain(&self) -> &str {
        &self.chain
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    pub fn statuses(&self) -> Vec<UpstreamStatus> {
        let now = Instant::now();
        let best = self.best_head();
        let primary = self.primary.load(Ordering::Relaxed);
        self.upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let (status, previous) = u.status(best, i == primary, now);
                if let Some(from) = previous {
                    self.record_transition(from, &status);
                }
                status
            })
            .collect()
    }

    /// The latest upstream state changes (excluded, down, restored…), oldest first. Changes are noticed when the
    /// state is read: by the monitor every `probe_interval`, and by every status request.
    pub fn transitions(&self) -> Vec<UpstreamTransition> {
        self.transitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }

    fn record_transition(&self, from: &'static str, status: &UpstreamStatus) {
        // A fresh upstream passing its identity check is the normal start, not an incident.
        if from == "unknown" && status.state == "healthy" {
            return;
        }
        let reason = status.reason.as_deref().unwrap_or("");
        match status.state {
            "healthy" => info!(chain = %self.chain, upstream = %status.name, from, "upstream restored"),
            to => {
                warn!(chain = %self.chain, upstream = %status.name, from, to, reason, "upstream state changed")
            }
        }
        metrics::counter!("chainmux_upstream_state_changes_total", "chain" => self.chain.clone(), "upstream" => status.name.clone(), "to" => status.state)
            .increment(1);
        let transition = UpstreamTransition {
            upstream: status.name.clone(),
            from,
            to: status.state,
            reason: status.reason.clone(),
            at: crate::upstream::unix_now(),
        };
        let mut transitions = self.transitions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if transitions.len() == TRANSITIONS_KEPT {
            transitions.pop_front();
        }
        transitions.push_back(transition);
    }

    /// Highest head reported by an upstream in good standing (verified, last request fine, circuit closed). A
    /// lagging upstream cannot pull it down; a dead one's stale report does not count.
    pub fn best_head(&self) -> Option<u64> {
        let now = Instant::now();
        self.upstreams
            .iter()
            .filter(|u| matches!(u.eligibility(None, now), Eligibility::Eligible { healthy: true }))
            .filter_map(Upstream::head)
            .max()
    }

    /// Runs the identity check on every upstream not yet verified. Call once before serving traffic.
    pub async fn verify_all(&self) {
        join_all((0..self.upstreams.len()).map(|i| self.verify(i))).await;
    }

    /// Background task: verifies unverified upstreams and probes verified ones every `probe_interval` (probes
    /// also move half-open circuits), and refreshes the per-upstream gauges, until `cancel` fires.
    pub fn spawn_monitor(self: &Arc<Self>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let pool = Arc::clone(self);
        let span = info_span!("upstream_monitor", chain = %pool.chain);
        tokio::spawn(
            async move {
                let mut ticker = tokio::time::interval(pool.config.probe_interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = ticker.tick() => {}
                    }
                    join_all((0..pool.upstreams.len()).map(|i| pool.probe_once(i))).await;
                    pool.publish_gauges();
                }
            }
            .instrument(span),
        )
    }

    fn publish_gauges(&self) {
        for status in self.statuses() {
            let labels = [("chain", self.chain.clone()), ("upstream", status.name.clone())];
            metrics::gauge!("chainmux_upstream_up", &labels)
                .set(f64::from(u8::from(status.state == "healthy")));
            metrics::gauge!("chainmux_upstream_score", &labels).set(status.score);
            let breaker = match status.breaker {
                "open" => 2.0,
                "half_open" => 1.0,
                _ => 0.0,
            };
            metrics::gauge!("chainmux_upstream_breaker_state", &labels).set(breaker);
            if let Some(head) = status.head {
                metrics::gauge!("chainmux_upstream_head", &labels).set(head as f64);
            }
            if let Some(lag) = status.lag {
                metrics::gauge!("chainmux_upstream_head_lag", &labels).set(lag as f64);
            }
        }
    }

    async fn probe_once(&self, index: usize) {
        let upstream = &self.upstreams[index];
        if !upstream.is_verified() {
            self.verify(index).await;
            return;
        }
        if upstream.cooldown_left(Instant::now()).is_some() {
            // Benched by a 429's Retry-After: a probe now would only spend the provider's quota.
            return;
        }
        if let Some(check) = &self.health {
            match self.attempt(index, &check.method, &check.params, upstream.policy.request_timeout).await {
                Ok(_) => upstream.set_unhealthy(None),
                // Only the node's own verdict counts: a provider that does not serve the method (or throttles
                // it) says nothing about the node behind it.
                Err(RpcError::JsonRpc { error, .. }) if error.says_unhealthy() => {
                    if upstream.is_healthy_by_check() {
                        warn!(chain = %self.chain, upstream = %upstream.name, reason = %error.message, "upstream reports itself unhealthy");
                    }
                    upstream.set_unhealthy(Some(error.message));
                }
                // Transport failures are already recorded against the upstream by the attempt.
                Err(_) => {}
            }
        }
        let Some(probe) = &self.probe else { return };
        let result = self.attempt(index, &probe.method, &probe.params, upstream.policy.request_timeout).await;
        if let Ok(raw) = result {
            match (probe.parse)(&raw) {
                Some(head) => upstream.record_head(head),
                None => upstream.set_last_failure(format!("unparseable {} answer", probe.method)),
            }
        }
    }

    async fn verify(&self, index: usize) {
        let upstream = &self.upstreams[index];
        let Some(check) = &self.identity else {
            upstream.mark_verified();
            return;
        };
        let result = self.attempt(index, &check.method, &check.params, upstream.policy.request_timeout).await;
        if let Ok(raw) = result {
            match (check.verify)(&raw) {
                Ok(()) => {
                    if !upstream.is_verified() {
                        info!(chain = %self.chain, upstream = %upstream.name, "upstream verified");
                    }
                    upstream.mark_verified();
                }
                Err(reason) => {
                    error!(chain = %self.chain, upstream = %upstream.name, %reason, "upstream excluded");
                    upstream.mark_identity_failure(reason);
                }
            }
        }
    }

    /// Sends one JSON-RPC request through the pool and returns the raw `result`.
    pub async fn call(&self, method: &str, params: &RawValue) -> Result<Box<RawValue>, RpcError> {
        self.call_traced(method, params).await.0
    }

    /// [`Pool::call`], also saying which upstream answered and how many attempts and hedges it took.
    ///
    /// Reads go to the best upstream and fail over on retryable errors; after a hedge delay without an answer, a
    /// copy goes to the next upstream and the first good answer wins (the other is cancelled). The whole call,
    /// backoff included, fits in the pool's deadline. Signed writes are retried but never hedged; node-signed
    /// writes are re-sent only when the previous attempt never reached its upstream.
    pub async fn call_traced(
        &self,
        method: &str,
        params: &RawValue,
    ) -> (Result<Box<RawValue>, RpcError>, CallTrace) {
        let started = Instant::now();
        let deadline = started + self.config.deadline;
        let write = write_kind(method);
        let min_height = self.hints.min_height.and_then(|hint| hint(method, params));
        let mut trace = CallTrace::default();
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.backoff_min)
            .with_max_delay(self.config.backoff_max)
            .with_jitter()
            .without_max_times()
            .build();
        let mut round: Vec<usize> = Vec::new();
        let mut last_error: Option<RpcError> = None;
        let mut inflight: FuturesUnordered<Attempt<'_>> = FuturesUnordered::new();
        // Attempts in flight and when they started: a hedge's loser is cancelled unanswered, and its wait so far
        // is still a latency sample, or hedging would hide a slow upstream from its score.
        let mut started_at: Vec<(usize, Instant)> = Vec::new();
        let mut hedge_at: Option<tokio::time::Instant> = None;
        let max_attempts = self.config.max_attempts.max(1) as u32;

        loop {
            if inflight.is_empty() {
                if trace.attempts >= max_attempts {
                    break;
                }
                if trace.attempts > 0 {
                    metrics::counter!("chainmux_upstream_retries_total", "chain" => self.chain.clone())
                        .increment(1);
                }
                match self
                    .pick(
                        &mut round,
                        &mut backoff,
                        min_height,
                        write.is_some(),
                        deadline,
                        last_error.as_ref(),
                    )
                    .await
                {
                    Ok(index) => {
                        trace.attempts += 1;
                        let kind = if trace.attempts == 1 { AttemptKind::First } else { AttemptKind::Retry };
                        inflight.push(self.timed_attempt(
                            index,
                            method,
                            params,
                            deadline,
                            trace.attempts,
                            kind,
                        ));
                        started_at.push((index, Instant::now()));
                        hedge_at = self.hedge_time(index, write.is_some(), &trace);
                    }
                    Err(err) => {
                        return (Err(last_error.map_or(err, |last| self.give_up(last, started))), trace);
                    }
                }
            }
            let hedge_timer = async {
                match hedge_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // Biased, deadline first: an attempt's timeout is capped at the deadline and fires in the same timer
            // tick, and the call must then end as `DeadlineExceeded`, not as that upstream's timeout (which would
            // also count against the upstream and start a zero-budget attempt on the next one).
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let last = last_error.map(Box::new);
                    return (Err(RpcError::DeadlineExceeded { chain: self.chain.clone(), after: self.config.deadline, last }), trace);
                }
                Some((index, result)) = inflight.next() => {
                    let upstream = &self.upstreams[index];
                    if let Some(position) = started_at.iter().position(|(i, _)| *i == index) {
                        started_at.swap_remove(position);
                    }
                    match result {
                        Ok(raw) => {
                            for (loser, since) in &started_at {
                                self.upstreams[*loser].record_unanswered(since.elapsed());
                            }
                            trace.upstream = Some(upstream.name.clone());
                            return (Ok(self.adjust_head_answer(index, method, params, raw)), trace);
                        }
                        Err(err) => {
                            if let Some(answer) = self.duplicate_write_answer(write, &trace, &err, method, params) {
                                debug!(chain = %self.chain, upstream = %upstream.name, "duplicate of an earlier send; treated as sent");
                                trace.upstream = Some(upstream.name.clone());
                                return (Ok(answer), trace);
                            }
                            let resend = match write {
                                Some(WriteKind::NodeSigned) => err.was_not_delivered(),
                                Some(WriteKind::Signed) | None => err.is_retryable(),
                            };
                            debug!(chain = %self.chain, upstream = %upstream.name, method, attempt = trace.attempts, %err, resend, "attempt failed");
                            if !resend {
                                return (Err(err), trace);
                            }
                            last_error = Some(err);
                            // A failed attempt is no reason to wait for the hedge timer: the loop fails over now.
                            hedge_at = if inflight.is_empty() { None } else { hedge_at };
                        }
                    }
                }
                _ = hedge_timer => {
                    hedge_at = None;
                    if let Some(index) = self.pick_hedge(&round, min_height) {
                        round.push(index);
                        metrics::counter!("chainmux_upstream_hedges_total", "chain" => self.chain.clone(), "upstream" => self.upstreams[index].name.clone()).increment(1);
                        trace.attempts += 1;
                        trace.hedges += 1;
                        inflight.push(self.timed_attempt(index, method, params, deadline, trace.attempts, AttemptKind::Hedge));
                        started_at.push((index, Instant::now()));
                        hedge_at = self.hedge_time(index, false, &trace);
                    }
                }
            }
        }
        let err = last_error.unwrap_or_else(|| RpcError::NoUpstream {
            chain: self.chain.clone(),
            reason: "no attempt made".into(),
        });
        (Err(self.give_up(err, started)), trace)
    }

    /// A signed write re-sent after an attempt that may have arrived, rejected as a duplicate: it was sent.
    fn duplicate_write_answer(
        &self,
        write: Option<WriteKind>,
        trace: &CallTrace,
        err: &RpcError,
        method: &str,
        params: &RawValue,
    ) -> Option<Box<RawValue>> {
        let RpcError::JsonRpc { error, .. } = err else { return None };
        if write != Some(WriteKind::Signed) || trace.attempts < 2 || !is_duplicate_rejection(error) {
            return None;
        }
        self.hints.duplicate_write.and_then(|answer| answer(method, params))
    }

    fn give_up(&self, err: RpcError, started: Instant) -> RpcError {
        debug!(chain = %self.chain, %err, elapsed_ms = started.elapsed().as_millis() as u64, "call failed");
        err
    }

    /// When to send a hedge after starting an attempt on `index`, if this call may hedge at all.
    fn hedge_time(&self, index: usize, write: bool, trace: &CallTrace) -> Option<tokio::time::Instant> {
        if write || !self.config.hedge || trace.hedges as usize >= self.config.max_hedges {
            return None;
        }
        if trace.attempts >= self.config.max_attempts as u32 {
            return None;
        }
        let upstream = &self.upstreams[index];
        let hedge = &upstream.policy.hedge_delay;
        let delay = match hedge.fixed {
            Some(fixed) => fixed,
            None => upstream
                .latency_quantile(hedge.quantile)
                .map_or(hedge.max, |ms| Duration::from_secs_f64(ms / 1000.0))
                .clamp(hedge.min, hedge.max),
        };
        Some(tokio::time::Instant::now() + delay)
    }

    /// The next upstream for a hedge: the best one not yet asked in this round that has budget now. No waiting.
    fn pick_hedge(&self, round: &[usize], min_height: Option<u64>) -> Option<usize> {
        self.rank(min_height, false, Instant::now())
            .into_iter()
            .filter(|i| !round.contains(i))
            .find(|i| self.upstreams[*i].acquire().is_ok())
    }

    /// Chooses the upstream of the next attempt, waiting (within the deadline) for backoff or for a rate budget.
    async fn pick(
        &self,
        round: &mut Vec<usize>,
        backoff: &mut impl Iterator<Item = Duration>,
        min_height: Option<u64>,
        write: bool,
        deadline: Instant,
        last_error: Option<&RpcError>,
    ) -> Result<usize, RpcError> {
        loop {
            let now = Instant::now();
            let ranked = self.rank(min_height, write, now);
            if ranked.is_empty() {
                // Nothing routable. If upstreams are only cooling down from a 429, waiting may help.
                let wait = self.upstreams.iter().filter_map(|u| u.cooldown_left(now)).min();
                match wait {
                    Some(wait) if wait <= self.config.backoff_max && now + wait < deadline => {
                        self.wait_for_budget(wait).await;
                        continue;
                    }
                    _ => {
                        return Err(RpcError::NoUpstream {
                            chain: self.chain.clone(),
                            reason: self.unavailability(),
                        });
                    }
                }
            }
            let untried: Vec<usize> = ranked.iter().copied().filter(|i| !round.contains(i)).collect();
            if untried.is_empty() {
                // Every routable upstream had its try in this round: back off, then start a new round.
                let hint = last_error.and_then(RpcError::backoff_hint).unwrap_or_default();
                if hint > self.config.backoff_max {
                    // Sleeping as long as a remote header says would hold the caller for any length of time.
                    return Err(RpcError::NoUpstream {
                        chain: self.chain.clone(),
                        reason: "rate limited".into(),
                    });
                }
                let delay = backoff.next().unwrap_or(self.config.backoff_max).max(hint);
                if now + delay >= deadline {
                    return Err(RpcError::NoUpstream {
                        chain: self.chain.clone(),
                        reason: "deadline reached".into(),
                    });
                }
                tokio::time::sleep(delay).await;
                round.clear();
                continue;
            }
            let mut soonest: Option<Duration> = None;
            for index in untried {
                match self.upstreams[index].acquire() {
                    Ok(()) => {
                        round.push(index);
                        return Ok(index);
                    }
                    Err(wait) => soonest = Some(soonest.map_or(wait, |s| s.min(wait))),
                }
            }
            // Every candidate is out of budget: wait for the first to have one, if the deadline allows.
            let wait = soonest.unwrap_or(self.config.backoff_min);
            if Instant::now() + wait >= deadline {
                return Err(RpcError::NoUpstream {
                    chain: self.chain.clone(),
                    reason: "rate budgets exhausted".into(),
                });
            }
            self.wait_for_budget(wait).await;
        }
    }

    async fn wait_for_budget(&self, wait: Duration) {
        metrics::counter!("chainmux_upstream_rate_limit_waits_total", "chain" => self.chain.clone())
            .increment(1);
        metrics::histogram!("chainmux_upstream_rate_limit_wait_seconds", "chain" => self.chain.clone())
            .record(wait.as_secs_f64());
        tokio::time::sleep(wait).await;
    }

    /// Routable upstreams, best first: the primary (see [`Pool::apply_hysteresis`]), the other healthy ones by score,
    /// then ones whose last request failed; half-open ones last, except for a small share of reads that try them
    /// first so they can come back.
    fn rank(&self, min_height: Option<u64>, write: bool, now: Instant) -> Vec<usize> {
        let best_head = self.best_head();
        let mut healthy: Vec<(usize, f64)> = Vec::new();
        let mut failing: Vec<(usize, f64)> = Vec::new();
        let mut trial: Vec<usize> = Vec::new();
        for (i, upstream) in self.upstreams.iter().enumerate() {
            match upstream.eligibility(best_head, now) {
                Eligibility::Eligible { healthy: true } => healthy.push((i, upstream.score(best_head))),
                Eligibility::Eligible { healthy: false } => failing.push((i, upstream.score(best_head))),
                Eligibility::Trial => trial.push(i),
                Eligibility::Excluded(_) | Eligibility::Unverified => {}
            }
        }
        let by_score = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        healthy.sort_by(by_score);
        failing.sort_by(by_score);
        self.apply_hysteresis(&mut healthy);

        let mut order: Vec<usize> = healthy.iter().chain(&failing).map(|(i, _)| *i).collect();
        if !trial.is_empty() {
            let every = (1.0 / self.config.probe_share.max(1e-6)).round().max(1.0) as u64;
            let probe_now = !write && self.reads.fetch_add(1, Ordering::Relaxed).is_multiple_of(every);
            if probe_now || order.is_empty() {
                order.splice(0..0, trial);
            } else {
                order.extend(trial);
            }
        }
        // Upstreams known to be behind the requested height cannot answer; ask them only if nobody else can.
        if let Some(height) = min_height {
            let (able, behind): (Vec<usize>, Vec<usize>) =
                order.iter().partition(|i| self.upstreams[**i].head().is_none_or(|head| head >= height));
            if !able.is_empty() {
                order = able.into_iter().chain(behind).collect();
            }
        }
        order
    }

    /// Puts the primary first. The primary is the first upstream in configured order (the operator's priority)
    /// whose score is close to the best; two thresholds keep it from flapping: the current primary stays while
    /// within `hysteresis` of the best score, and a higher-priority upstream takes over only within half of it.
    fn apply_hysteresis(&self, healthy: &mut [(usize, f64)]) {
        let Some(best_score) = healthy.first().map(|(_, score)| *score) else { return };
        let hysteresis = self.config.hysteresis.max(0.0);
        let stay = best_score / (1.0 + hysteresis);
        let enter = best_score / (1.0 + hysteresis / 2.0);
        let current = self.primary.load(Ordering::Relaxed);
        let current_score = healthy.iter().find(|(i, _)| *i == current).map(|(_, score)| *score);
        let challenger = healthy.iter().filter(|(_, score)| *score >= enter).map(|(i, _)| *i).min();
        let primary = match (current_score, challenger) {
            (Some(score), Some(challenger)) if score >= stay && challenger >= current => current,
            (Some(score), None) if score >= stay => current,
            (_, Some(challenger)) => challenger,
            (_, None) => healthy[0].0,
        };
        if let Some(position) = healthy.iter().position(|(i, _)| *i == primary) {
            healthy[..=position].rotate_right(1);
        }
        if primary != current
            && self.primary.compare_exchange(current, primary, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let from = self.upstreams.get(current).map_or("none", |u| u.name.as_str());
            let score = healthy[0].1;
            info!(chain = %self.chain, from, to = %self.upstreams[primary].name, score = format!("{score:.3}"), "primary upstream changed");
            metrics::counter!("chainmux_upstream_primary_changes_total", "chain" => self.chain.clone())
                .increment(1);
        }
    }

    fn unavailability(&self) -> String {
        self.statuses()
            .into_iter()
            .map(|s| match s.reason {
                Some(reason) => format!("{}: {reason}", s.name),
                None if s.state == "unknown" => format!("{}: not verified yet", s.name),
                None => format!("{}: {}", s.name, s.state),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Calls of the head method never answer lower than the best head healthy upstreams reported.
    fn adjust_head_answer(
        &self,
        index: usize,
        method: &str,
        params: &RawValue,
        raw: Box<RawValue>,
    ) -> Box<RawValue> {
        let Some(probe) = &self.probe else { return raw };
        // Same method with other params may ask for another head (Solana's `getSlot` at `finalized` commitment):
        // only the probe's own question is comparable.
        if probe.method != method || !same_params(&probe.params, params) {
            return raw;
        }
        let Some(answered) = (probe.parse)(&raw) else { return raw };
        self.upstreams[index].record_head(answered);
        match self.best_head() {
            Some(best) if best > answered => (probe.encode)(best),
            _ => raw,
        }
    }

    fn timed_attempt<'a>(
        &'a self,
        index: usize,
        method: &'a str,
        params: &'a RawValue,
        deadline: Instant,
        number: u32,
        kind: AttemptKind,
    ) -> Attempt<'a> {
        let timeout = self.upstreams[index]
            .policy
            .request_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        // DEBUG: one per upstream request, free when filtered out. A child of the caller's span (an HTTP
        // request's, with its request id; an indexer batch's), because the attempt is polled inside it.
        let span = debug_span!(
            "upstream_attempt",
            chain = %self.chain,
            upstream = %self.upstreams[index].name,
            method,
            attempt = number,
            kind = kind.as_str(),
        );
        Box::pin(async move { (index, self.attempt(index, method, params, timeout).await) }.instrument(span))
    }

    /// One attempt on one upstream: send, then record what it says about the upstream's health.
    async fn attempt(
        &self,
        index: usize,
        method: &str,
        params: &RawValue,
        timeout: Duration,
    ) -> Result<Box<RawValue>, RpcError> {
        let upstream = &self.upstreams[index];
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, self.post(upstream, method, params)).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout { upstream: upstream.name.clone(), after: timeout }),
        };
        let elapsed = started.elapsed();
        debug!(ok = result.is_ok(), elapsed_ms = elapsed.as_millis() as u64, "upstream attempt done");
        let verdict = match &result {
            Ok(_) => Verdict::Answered,
            Err(RpcError::Http { status: 429, retry_after, .. }) => {
                Verdict::Throttled { retry_after: *retry_after }
            }
            Err(RpcError::JsonRpc { error, .. }) if error.is_rate_limit() => {
                Verdict::Throttled { retry_after: None }
            }
            Err(RpcError::JsonRpc { error, .. }) if error.is_not_served() => Verdict::Unsupported,
            Err(RpcError::JsonRpc { error, .. }) if !error.is_upstream_fault() => Verdict::Answered,
            Err(_) => Verdict::Failed,
        };
        let was_healthy = upstream.eligibility(None, started) == Eligibility::Eligible { healthy: true };
        let transition = upstream.record(verdict, elapsed, Instant::now());
        if let (Verdict::Failed, Err(err)) = (verdict, &result) {
            upstream.set_last_failure(err.to_string());
            if was_healthy {
                warn!(chain = %self.chain, upstream = %upstream.name, reason = %err, "upstream request failed");
            }
        }
        if let Some(Transition::Breaker(state)) = transition {
            let labels = [
                ("chain", self.chain.clone()),
                ("upstream", upstream.name.clone()),
                ("to", state.as_str().to_owned()),
            ];
            metrics::counter!("chainmux_upstream_breaker_transitions_total", &labels).increment(1);
            metrics::gauge!("chainmux_upstream_breaker_state", "chain" => self.chain.clone(), "upstream" => upstream.name.clone()).set(state.level());
            match state {
                crate::upstream::BreakerState::Open => {
                    warn!(chain = %self.chain, upstream = %upstream.name, cooldown_ms = upstream.policy.breaker.cooldown.as_millis() as u64, "circuit opened")
                }
                other => {
                    info!(chain = %self.chain, upstream = %upstream.name, state = other.as_str(), "circuit state changed")
                }
            }
        }
        let outcome = match &result {
            Ok(_) => "success",
            Err(err) => err.outcome(),
        };
        let class = method_class(method);
        metrics::counter!("chainmux_upstream_requests_total", "chain" => self.chain.clone(), "upstream" => upstream.name.clone(), "method_class" => class, "outcome" => outcome)
            .increment(1);
        metrics::histogram!("chainmux_upstream_request_duration_seconds", "chain" => self.chain.clone(), "upstream" => upstream.name.clone(), "method_class" => class)
            .record(elapsed.as_secs_f64());
        result
    }

    async fn post(
        &self,
        upstream: &Upstream,
        method: &str,
        params: &RawValue,
    ) -> Result<Box<RawValue>, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let method_json = serde_json::to_string(method).unwrap_or_else(|_| "\"\"".into());
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{method_json},"params":{}}}"#, params.get());
        let name = || upstream.name.clone();
        let response = self
            .http
            .post(upstream.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|err| transport_error(&upstream.name, err))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(RpcError::Http { upstream: name(), status: status.as_u16(), retry_after });
        }
        let bytes = response.bytes().await.map_err(|err| transport_error(&upstream.name, err))?;
        let body: ResponseBody = serde_json::from_slice(&bytes)
            .map_err(|err| RpcError::InvalidResponse { upstream: name(), message: err.to_string() })?;
        match (body.result, body.error) {
            (_, Some(error)) => Err(RpcError::JsonRpc { upstream: name(), error }),
            (Some(result), None) => Ok(result),
            (None, None) => Err(RpcError::InvalidResponse {
                upstream: name(),
                message: "neither result nor error".into(),
            }),
        }
    }
}

fn transport_error(upstream: &str, err: reqwest::Error) -> RpcError {
    // Never surface the URL: provider URLs carry API keys.
    let err = err.without_url();
    let message =
        std::error::Error::source(&err).map_or_else(|| err.to_string(), |source| source.to_string());
    if err.is_connect() {
        RpcError::Connect { upstream: upstream.to_owned(), message }
    } else if err.is_timeout() {
        RpcError::Timeout { upstream: upstream.to_owned(), after: Duration::ZERO }
    } else {
        RpcError::InvalidResponse { upstream: upstream.to_owned(), message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_classes_are_few() {
        assert_eq!(method_class("eth_sendRawTransaction"), "write");
        assert_eq!(method_class("eth_blockNumber"), "head");
        assert_eq!(method_class("eth_getLogs"), "logs");
        assert_eq!(method_class("eth_getBlockByNumber"), "block");
        assert_eq!(method_class("debug_traceTransaction"), "trace");
        assert_eq!(method_class("eth_call"), "read");
        assert_eq!(method_class("anything_made_up_by_a_client"), "read");
    }

    #[test]
    fn write_kinds() {
        assert_eq!(write_kind("eth_sendRawTransaction"), Some(WriteKind::Signed));
        assert_eq!(write_kind("eth_sendTransaction"), Some(WriteKind::NodeSigned));
        assert_eq!(write_kind("eth_call"), None);
    }

    #[test]
    fn duplicate_rejections() {
        let error = |message: &str| JsonRpcError { code: -32000, message: message.into(), data: None };
        assert!(is_duplicate_rejection(&error("already known")));
        assert!(is_duplicate_rejection(&error("nonce too low: next nonce 5, tx nonce 4")));
        assert!(!is_duplicate_rejection(&error("insufficient funds")));
    }
}
