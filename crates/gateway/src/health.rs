//! Operator views: `GET /v1/status` (every chain's progress, its upstreams' health and recent incidents) and
//! `GET /v1/chains/{chain}/health` (200/503 for load balancers and uptime checks).
//!
//! What the store does not know (indexing rate, reorgs of the last hour, how long the indexer has been behind) is
//! tracked per chain by a background task fed by the indexer's events and the pool's best head; upstream
//! incidents come from the pools' own records of state changes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chainmux_core::ChainEvent;
use chainmux_rpc::UpstreamStatus;
use serde::Serialize;
use tokio::sync::broadcast;
use tracing::{Instrument, info_span};
use utoipa::ToSchema;

use crate::error::AppError;
use crate::follow::{Wake, follow};
use crate::{AppState, Inner};

/// When `/v1/chains/{chain}/health` says a chain is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthThreshold {
    /// Most blocks (slots) the indexed head may be behind the chain head.
    pub max_lag_blocks: u64,
    /// Longest the chain head may stay ahead of the indexed head.
    pub max_lag: Duration,
}

impl Default for HealthThreshold {
    fn default() -> Self {
        Self { max_lag_blocks: 10, max_lag: Duration::from_secs(60) }
    }
}

/// Incidents of the gateway's own (reorgs) kept for `/v1/status`.
const INCIDENTS_KEPT: usize = 200;
/// Window of the indexing rate.
const RATE_WINDOW: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
/// Head samples kept: one per new head, about an hour of a 1-second chain.
const HEADS_KEPT: usize = 4096;
/// How often the chain head is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Every chain's tracker and the incident ring.
#[derive(Debug)]
pub(crate) struct Trackers {
    chains: BTreeMap<String, ChainTracker>,
    incidents: Mutex<VecDeque<Incident>>,
}

#[derive(Debug, Default)]
struct ChainTracker {
    started: AtomicBool,
    data: Mutex<Tracked>,
}

#[derive(Debug, Default)]
struct Tracked {
    /// When the task started; `None` until then (rate unknown).
    started_at: Option<Instant>,
    /// Blocks written per event, newest last, within [`RATE_WINDOW`].
    applied: VecDeque<(Instant, u64)>,
    /// Reorgs within the last hour: when, and depth.
    reorgs: VecDeque<Instant>,
    /// Each new chain head the pool reported, and when it was first seen.
    heads: VecDeque<(Instant, u64)>,
    /// Whether the indexer's events reach this process (else no rate is known).
    has_events: bool,
}

impl Trackers {
    pub(crate) fn new<'a>(chains: impl Iterator<Item = &'a String>) -> Self {
        Self {
            chains: chains.map(|name| (name.clone(), ChainTracker::default())).collect(),
            incidents: Mutex::default(),
        }
    }

    fn record_incident(&self, incident: Incident) {
        let mut incidents = self.incidents.lock().unwrap_or_else(PoisonError::into_inner);
        if incidents.len() == INCIDENTS_KEPT {
            incidents.pop_front();
        }
        incidents.push_back(incident);
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Starts chain `chain`'s tracker task unless it runs already; does nothing outside a Tokio runtime.
pub(crate) fn start(state: &AppState, chain: &str) {
    let Some(tracker) = state.inner.health.chains.get(chain) else { return };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if tracker.started.swap(true, Ordering::AcqRel) {
        return;
    }
    let events = state.subscribe_chain(chain);
    {
        let mut data = tracker.data.lock().unwrap_or_else(PoisonError::into_inner);
        data.started_at = Some(Instant::now());
        data.has_events = events.is_some();
    }
    let inner = std::sync::Arc::downgrade(&state.inner);
    let span = info_span!("status_tracker", chain = %chain);
    runtime.spawn(run(inner, chain.to_owned(), events).instrument(span));
}

/// Samples the chain head and records the indexer's events until the state is dropped.
async fn run(inner: Weak<Inner>, chain: String, events: Option<broadcast::Receiver<ChainEvent>>) {
    follow(inner, events, SAMPLE_EVERY, |inner, wake| {
        record(&inner, &chain, wake);
        std::future::ready(())
    })
    .await;
}

/// One wake-up of the status tracker of `chain`.
fn record(inner: &Inner, chain: &str, wake: Wake) {
    let Some(tracker) = inner.health.chains.get(chain) else { return };
    match wake {
        Wake::Tick => {
            let Some(head) = inner.chains.get(chain).and_then(|c| c.pool.best_head()) else { return };
            let mut data = tracker.data.lock().unwrap_or_else(PoisonError::into_inner);
            // A head lower than the last sample (a bogus high head that went away, a reset devnet) replaces the
            // samples above it; otherwise lag would be timed from a head that never was.
            while data.heads.back().is_some_and(|(_, last)| *last > head) {
                data.heads.pop_back();
            }
            if data.heads.back().is_none_or(|(_, last)| head > *last) {
                if data.heads.len() == HEADS_KEPT {
                    data.heads.pop_front();
                }
                data.heads.push_back((Instant::now(), head));
            }
        }
        Wake::Event(ChainEvent::Apply(blocks)) => {
            let mut data = tracker.data.lock().unwrap_or_else(PoisonError::into_inner);
            data.applied.push_back((Instant::now(), blocks.len() as u64));
            prune(&mut data, Instant::now());
        }
        Wake::Event(ChainEvent::Revert { to, from }) => {
            let depth = from.number.saturating_sub(to.number);
            {
                let mut data = tracker.data.lock().unwrap_or_else(PoisonError::into_inner);
                data.reorgs.push_back(Instant::now());
                prune(&mut data, Instant::now());
            }
            inner.health.record_incident(Incident {
                at: unix_now(),
                chain: chain.to_owned(),
                kind: "reorg",
                upstream: None,
                message: format!(
                    "reorg of depth {depth}: indexed head {} reverted to {}",
                    from.number, to.number
                ),
            });
        }
        // Missed events only make the rate a little low; keep listening.
        Wake::Lagged(_) => {}
    }
}

/// How long the chain head has been ahead of the indexed head: since the first head above `indexed` was seen (at
/// most as long as the samples go back); 0 when caught up; `None` when the chain head is unknown.
fn lag_seconds(
    heads: &VecDeque<(Instant, u64)>,
    lag_blocks: Option<u64>,
    indexed: Option<u64>,
    now: Instant,
) -> Option<f64> {
    match lag_blocks? {
        0 => Some(0.0),
        _ => heads
            .iter()
            .find(|(_, head)| indexed.is_none_or(|i| *head > i))
            .map(|(at, _)| now.duration_since(*at).as_secs_f64()),
    }
}

fn prune(data: &mut Tracked, now: Instant) {
    while data.applied.front().is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW) {
        data.applied.pop_front();
    }
    while data.reorgs.front().is_some_and(|at| now.duration_since(*at) > HOUR) {
        data.reorgs.pop_front();
    }
}

/// The body of `/v1/status`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatusReport {
    /// Unix seconds when the report was made (incident times are relative to it).
    now: u64,
    chains: Vec<ChainStatus>,
    /// Newest first, at most 200: upstream state changes (excluded, down, restored) and reorgs.
    incidents: Vec<Incident>,
}

/// One chain's progress and upstreams.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChainStatus {
    name: String,
    /// `evm` or `solana`.
    kind: &'static str,
    /// The best head the upstreams (or the indexer) reported.
    #[schema(required)]
    head: Option<u64>,
    /// Height of the last indexed block.
    #[schema(required)]
    indexed_head: Option<u64>,
    #[schema(required)]
    finalized: Option<u64>,
    /// Blocks between `head` and `indexed_head`.
    #[schema(required)]
    lag_blocks: Option<u64>,
    /// How long the chain head has been ahead of the indexed head (0 when caught up).
    #[schema(required)]
    lag_seconds: Option<f64>,
    /// Blocks indexed per second over the last minute; `null` where this process does not index the chain.
    #[schema(required)]
    blocks_per_second: Option<f64>,
    /// Reorgs the indexer rolled back in the last hour (in this process).
    reorgs_last_hour: u64,
    /// What `/v1/chains/{chain}/health` answers.
    health: ChainHealth,
    upstreams: Vec<UpstreamStatus>,
}

/// A recent event an operator wants to know about.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Incident {
    /// Unix seconds.
    at: u64,
    chain: String,
    /// `upstream_excluded`, `upstream_down`, `upstream_restored`, `upstream_unknown` or `reorg`.
    kind: &'static str,
    /// The upstream concerned, for upstream incidents.
    #[schema(required)]
    upstream: Option<String>,
    /// What happened, with the reason.
    message: String,
}

/// The body of `/v1/chains/{chain}/health` (on 200 and on 503).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ChainHealth {
    chain: String,
    /// `ok` or `unhealthy`.
    status: &'static str,
    /// Why the chain is unhealthy; empty when it is not.
    reasons: Vec<String>,
    #[schema(required)]
    lag_blocks: Option<u64>,
    #[schema(required)]
    lag_seconds: Option<f64>,
    max_lag_blocks: u64,
    max_lag_seconds: f64,
    /// Upstreams in state `healthy`.
    healthy_upstreams: usize,
}

/// Everything `/v1/status` says about one chain, from the store's state and the tracker.
async fn chain_status(state: &AppState, name: &str) -> Result<ChainStatus, AppError> {
    let handle = state.chain(name)?;
    // Through the heads shared by REST requests, and bounded: this backs an open probe, which a flood or a stalled
    // database must not turn into one slow query per call.
    let read = crate::consistency::state_at(state, name, None, Duration::ZERO);
    let stored = tokio::time::timeout(crate::READY_TIMEOUT, read)
        .await
        .map_err(|_| AppError::Unavailable("the index store did not answer in time".to_owned()))??;
    let heads = stored.as_ref().and_then(|s| s.heads);
    let cursor = stored.as_ref().and_then(|s| s.cursor).map(|c| c.number);
    let head = handle.pool.best_head().max(heads.map(|h| h.latest));
    let lag_blocks = head.map(|h| h.saturating_sub(cursor.unwrap_or(0)));
    let upstreams = handle.pool.statuses();
    let now = Instant::now();

    let tracker = state.inner.health.chains.get(name);
    let (lag_seconds, blocks_per_second, reorgs_last_hour) = match tracker {
        Some(tracker) => {
            let mut data = tracker.data.lock().unwrap_or_else(PoisonError::into_inner);
            prune(&mut data, now);
            let lag_seconds = lag_seconds(&data.heads, lag_blocks, cursor, now);
            let rate = match (data.has_events, data.started_at) {
                (true, Some(started)) => {
                    let window = now.duration_since(started).min(RATE_WINDOW).as_secs_f64().max(1.0);
                    Some(data.applied.iter().map(|(_, n)| *n).sum::<u64>() as f64 / window)
                }
                _ => None,
            };
            (lag_seconds, rate, data.reorgs.len() as u64)
        }
        None => (None, None, 0),
    };

    let limits = state.health_threshold(name);
    let healthy_upstreams = upstreams.iter().filter(|u| u.state == "healthy").count();
    let mut reasons = Vec::new();
    if healthy_upstreams == 0 {
        reasons.push("no healthy upstream".to_owned());
    }
    match lag_blocks {
        Some(lag) if lag > limits.max_lag_blocks => {
            reasons.push(format!("indexer {lag} blocks behind (limit {})", limits.max_lag_blocks));
        }
        Some(_) => {}
        None => reasons.push("chain head unknown".to_owned()),
    }
    if let Some(seconds) = lag_seconds.filter(|s| *s > limits.max_lag.as_secs_f64()) {
        reasons.push(format!(
            "indexer behind the chain head for {seconds:.0}s (limit {}s)",
            limits.max_lag.as_secs_f64()
        ));
    }
    let health = ChainHealth {
        chain: name.to_owned(),
        status: if reasons.is_empty() { "ok" } else { "unhealthy" },
        reasons,
        lag_blocks,
        lag_seconds,
        max_lag_blocks: limits.max_lag_blocks,
        max_lag_seconds: limits.max_lag.as_secs_f64(),
        healthy_upstreams,
    };
    Ok(ChainStatus {
        name: name.to_owned(),
        kind: handle.spec.kind.as_str(),
        head,
        indexed_head: cursor,
        finalized: heads.and_then(|h| h.finalized),
        lag_blocks,
        lag_seconds,
        blocks_per_second,
        reorgs_last_hour,
        health,
        upstreams,
    })
}

/// Every chain's progress and upstream health, and the recent incidents.
#[utoipa::path(get, path = "/v1/status", tag = "status",
    responses((status = 200, description = "Chains, upstreams and recent incidents", body = StatusReport)))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<StatusReport>, AppError> {
    let mut chains = Vec::new();
    for name in state.inner.chains.keys() {
        chains.push(chain_status(&state, name).await?);
    }
    // Read after the statuses above, which is when new upstream state changes are noticed.
    let mut incidents: Vec<Incident> =
        state.inner.health.incidents.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect();
    for (name, handle) in &state.inner.chains {
        incidents.extend(handle.pool.transitions().into_iter().map(|t| Incident {
            at: t.at,
            chain: name.clone(),
            kind: match t.to {
                "excluded" => "upstream_excluded",
                "down" => "upstream_down",
                "healthy" => "upstream_restored",
                _ => "upstream_unknown",
            },
            message: match &t.reason {
                Some(reason) => format!("{} → {}: {reason}", t.from, t.to),
                None => format!("{} → {}", t.from, t.to),
            },
            upstream: Some(t.upstream),
        }));
    }
    // Newest first; a stable sort keeps each source's own order within a second.
    incidents.reverse();
    incidents.sort_by_key(|i| std::cmp::Reverse(i.at));
    incidents.truncate(INCIDENTS_KEPT);
    Ok(Json(StatusReport { now: unix_now(), chains, incidents }))
}

/// 200 when the chain's indexer is within its lag limits and at least one upstream is healthy, else 503; the
/// body says why. Needs no API key, so load balancers and uptime checkers can use it.
#[utoipa::path(get, path = "/v1/chains/{chain}/health", tag = "status", security(()),
    params(crate::params::ChainPath),
    responses(
        (status = 200, description = "The chain is healthy", body = ChainHealth),
        (status = 503, description = "The chain is unhealthy (or the index store unreachable); `reasons` says \
                                      why", body = ChainHealth),
        (status = 404, description = "Unknown chain", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn chain_health(
    State(state): State<AppState>,
    Path(chain): Path<String>,
) -> Result<(StatusCode, Json<ChainHealth>), AppError> {
    let health = match chain_status(&state, &chain).await {
        Ok(status) => status.health,
        Err(AppError::NotFound(message)) => return Err(AppError::NotFound(message)),
        // The store is down: the chain cannot be served, and the answer keeps this route's shape.
        Err(err) => {
            tracing::warn!(%err, chain, "chain health: index store unavailable");
            let limits = state.health_threshold(&chain);
            ChainHealth {
                chain,
                status: "unhealthy",
                reasons: vec!["index store unavailable".to_owned()],
                lag_blocks: None,
                lag_seconds: None,
                max_lag_blocks: limits.max_lag_blocks,
                max_lag_seconds: limits.max_lag.as_secs_f64(),
                healthy_upstreams: 0,
            }
        }
    };
    let mut health = health;
    // A draining instance must leave per-chain load balancing as it leaves `/ready`'s.
    if state.is_draining() {
        health.status = "unhealthy";
        health.reasons.push("draining: shutting down".to_owned());
    }
    let code = if health.reasons.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok((code, Json(health)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_seconds_count_from_the_first_head_above_the_indexed_one() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let heads = VecDeque::from([(at(0), 10), (at(5), 11), (at(9), 12)]);
        let now = at(20);
        assert_eq!(lag_seconds(&heads, Some(0), Some(12), now), Some(0.0));
        // Indexed 10: behind since head 11 appeared at 5 s.
        assert_eq!(lag_seconds(&heads, Some(2), Some(10), now), Some(15.0));
        assert_eq!(lag_seconds(&heads, Some(1), Some(11), now), Some(11.0));
        // Older than every sample: at least as long as the samples go back.
        assert_eq!(lag_seconds(&heads, Some(5), Some(7), now), Some(20.0));
        assert_eq!(lag_seconds(&heads, Some(12), None, now), Some(20.0));
        assert_eq!(lag_seconds(&heads, None, Some(7), now), None);
        // Behind by the store's heads, but no pool head sampled yet.
        assert_eq!(lag_seconds(&VecDeque::new(), Some(3), Some(7), now), None);
    }
}
