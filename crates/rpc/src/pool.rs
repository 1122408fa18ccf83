//! The pool: upstream selection, failover, retries with backoff, health observation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use url::Url;

use crate::error::{JsonRpcError, RpcError};
use crate::upstream::{Upstream, UpstreamState, UpstreamStatus};

/// Tuning of one chain's pool. Defaults are documented in README and `config/`.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Limit for one attempt on one upstream.
    pub request_timeout: Duration,
    /// Attempts per call, across upstreams (the first try included).
    pub max_attempts: usize,
    /// Backoff before re-trying an upstream already tried in this call (jittered exponential).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often upstreams are probed for liveness and head.
    pub probe_interval: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            max_attempts: 4,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            probe_interval: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    pub url: Url,
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

/// How the adapter asks an upstream for its head height.
#[derive(Debug)]
pub struct HeadProbe {
    pub method: String,
    pub params: Box<RawValue>,
    pub parse: fn(&RawValue) -> Option<u64>,
}

/// Methods that change chain state: never re-sent unless the first attempt provably did not arrive.
pub fn is_write_method(method: &str) -> bool {
    matches!(method, "eth_sendRawTransaction" | "eth_sendTransaction" | "sendTransaction")
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
    next_id: AtomicU64,
}

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

impl Pool {
    pub fn new(chain: impl Into<String>, upstreams: Vec<UpstreamConfig>, config: PoolConfig) -> Self {
        // reqwest is built without a bundled crypto backend (aws-lc takes minutes to compile); ring is installed
        // as the process default. An `Err` only means a default is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            // Building fails only when the TLS backend cannot initialise, which no configuration here can fix.
            .unwrap_or_else(|err| panic!("HTTP client cannot be built: {err}"));
        Self {
            chain: chain.into(),
            upstreams: upstreams.into_iter().map(|u| Upstream::new(u.name, u.url)).collect(),
            http,
            config,
            identity: None,
            probe: None,
            next_id: AtomicU64::new(1),
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

    pub fn chain(&self) -> &str {
        &self.chain
    }

    pub fn statuses(&self) -> Vec<UpstreamStatus> {
        self.upstreams.iter().map(Upstream::status).collect()
    }

    /// Highest head reported by a healthy upstream.
    pub fn best_head(&self) -> Option<u64> {
        self.upstreams.iter().filter(|u| u.state() == UpstreamState::Healthy).filter_map(Upstream::head).max()
    }

    /// Runs the identity check on every upstream not yet verified. Call once before serving traffic.
    pub async fn verify_all(&self) {
        join_all((0..self.upstreams.len()).map(|i| self.verify(i))).await;
    }

    /// Background task: verifies unverified upstreams and probes verified ones, every `probe_interval`,
    /// until `cancel` fires.
    pub fn spawn_monitor(self: &Arc<Self>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(pool.config.probe_interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                join_all((0..pool.upstreams.len()).map(|i| pool.probe_once(i))).await;
            }
        })
    }

    async fn probe_once(&self, index: usize) {
        let upstream = &self.upstreams[index];
        if !upstream.is_verified() {
            self.verify(index).await;
            return;
        }
        let Some(probe) = &self.probe else { return };
        let result = self.send(upstream, &probe.method, &probe.params).await;
        self.observe(upstream, &result);
        if let Ok(raw) = result {
            match (probe.parse)(&raw) {
                Some(head) => {
                    upstream.record_head(head);
                    metrics::gauge!("chainmux_upstream_head", "chain" => self.chain.clone(), "upstream" => upstream.name.clone())
                        .set(head as f64);
                }
                None => self.transition(
                    upstream,
                    UpstreamState::Down(format!("unparseable {} answer", probe.method)),
                ),
            }
        }
    }

    async fn verify(&self, index: usize) {
        let upstream = &self.upstreams[index];
        let Some(check) = &self.identity else {
            upstream.mark_verified();
            return;
        };
        match self.send(upstream, &check.method, &check.params).await {
            Ok(raw) => match (check.verify)(&raw) {
                Ok(()) => {
                    upstream.mark_verified();
                    self.transition(upstream, UpstreamState::Healthy);
                }
                Err(reason) => self.transition(upstream, UpstreamState::Excluded(reason)),
            },
            Err(err) => self.transition(upstream, UpstreamState::Down(err.to_string())),
        }
    }

    fn transition(&self, upstream: &Upstream, state: UpstreamState) {
        let up = if state == UpstreamState::Healthy { 1.0 } else { 0.0 };
        metrics::gauge!("chainmux_upstream_up", "chain" => self.chain.clone(), "upstream" => upstream.name.clone())
            .set(up);
        let Some(previous) = upstream.set_state(state.clone()) else { return };
        match &state {
            UpstreamState::Healthy => {
                info!(chain = %self.chain, upstream = %upstream.name, previous = previous.label(), "upstream healthy")
            }
            UpstreamState::Down(reason) => {
                warn!(chain = %self.chain, upstream = %upstream.name, %reason, "upstream down")
            }
            UpstreamState::Excluded(reason) => {
                error!(chain = %self.chain, upstream = %upstream.name, %reason, "upstream excluded")
            }
            UpstreamState::Unknown => {}
        }
    }

    /// Updates an upstream's health from the outcome of a request it served.
    fn observe(&self, upstream: &Upstream, result: &Result<Box<RawValue>, RpcError>) {
        if matches!(upstream.state(), UpstreamState::Excluded(_)) {
            return;
        }
        match result {
            // A caller's error, or a method the node does not offer, still proves the upstream answers.
            Ok(_) => self.transition(upstream, UpstreamState::Healthy),
            Err(RpcError::JsonRpc { error, .. }) if !error.is_upstream_fault() || error.code == -32601 => {
                self.transition(upstream, UpstreamState::Healthy)
            }
            Err(err) => self.transition(upstream, UpstreamState::Down(err.to_string())),
        }
    }

    /// Sends one JSON-RPC request with failover and retries, returning the raw `result`.
    ///
    /// Reads are retried on retryable errors across upstreams (healthy first, in configured order), backing off
    /// before an upstream is tried a second time. Writes are re-sent only when the previous attempt provably never
    /// reached its upstream.
    pub async fn call(&self, method: &str, params: &RawValue) -> Result<Box<RawValue>, RpcError> {
        let order = self.routing_order();
        if order.is_empty() {
            return Err(RpcError::NoUpstream { chain: self.chain.clone(), reason: self.unavailability() });
        }
        let write = is_write_method(method);
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.backoff_min)
            .with_max_delay(self.config.backoff_max)
            .with_jitter()
            .without_max_times()
            .build();
        let mut last_error = None;
        for attempt in 0..self.config.max_attempts.max(1) {
            let upstream = &self.upstreams[order[attempt % order.len()]];
            if attempt >= order.len() {
                let hint = last_error.as_ref().and_then(RpcError::backoff_hint).unwrap_or_default();
                // A Retry-After beyond the longest backoff ends the call with that error: sleeping as long as a
                // remote header says would hold the caller (a gateway client, the indexer) for any length of time.
                if hint > self.config.backoff_max {
                    break;
                }
                let delay = backoff.next().unwrap_or(self.config.backoff_max).max(hint);
                metrics::counter!("chainmux_upstream_retries_total", "chain" => self.chain.clone())
                    .increment(1);
                tokio::time::sleep(delay).await;
            }
            let result = self.send(upstream, method, params).await;
            self.observe(upstream, &result);
            match result {
                Ok(raw) => return Ok(raw),
                Err(err) => {
                    let resend = if write { err.was_not_delivered() } else { err.is_retryable() };
                    debug!(chain = %self.chain, upstream = %upstream.name, method, attempt, %err, resend, "attempt failed");
                    if !resend {
                        return Err(err);
                    }
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| RpcError::NoUpstream {
            chain: self.chain.clone(),
            reason: "no attempt made".into(),
        }))
    }

    /// Upstream indexes eligible for routing, best first: healthy, then unverified-but-not-failing, then down.
    fn routing_order(&self) -> Vec<usize> {
        let mut order: Vec<(u8, usize)> = self
            .upstreams
            .iter()
            .enumerate()
            .filter(|(_, u)| u.is_verified())
            .filter_map(|(i, u)| match u.state() {
                UpstreamState::Healthy => Some((0, i)),
                UpstreamState::Unknown => Some((1, i)),
                UpstreamState::Down(_) => Some((2, i)),
                UpstreamState::Excluded(_) => None,
            })
            .collect();
        order.sort();
        order.into_iter().map(|(_, i)| i).collect()
    }

    fn unavailability(&self) -> String {
        self.upstreams
            .iter()
            .map(|u| match u.state() {
                UpstreamState::Unknown => format!("{}: not verified yet", u.name),
                state => format!("{}: {}", u.name, state.reason().unwrap_or(state.label())),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// One attempt on one upstream, with metrics; no health bookkeeping.
    async fn send(
        &self,
        upstream: &Upstream,
        method: &str,
        params: &RawValue,
    ) -> Result<Box<RawValue>, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let method_json = serde_json::to_string(method).unwrap_or_else(|_| "\"\"".into());
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":{method_json},"params":{}}}"#, params.get());
        let started = Instant::now();
        let timeout = self.config.request_timeout;
        let result = match tokio::time::timeout(timeout, self.post(upstream, body)).await {
            Ok(result) => result,
            Err(_) => Err(RpcError::Timeout { upstream: upstream.name.clone(), after: timeout }),
        };
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(_) => {
                upstream.record_success(elapsed.as_secs_f64() * 1000.0);
                "success"
            }
            Err(err) => {
                upstream.record_failure();
                err.outcome()
            }
        };
        metrics::counter!("chainmux_upstream_requests_total", "chain" => self.chain.clone(), "upstream" => upstream.name.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("chainmux_upstream_request_duration_seconds", "chain" => self.chain.clone(), "upstream" => upstream.name.clone())
            .record(elapsed.as_secs_f64());
        result
    }

    async fn post(&self, upstream: &Upstream, body: String) -> Result<Box<RawValue>, RpcError> {
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
