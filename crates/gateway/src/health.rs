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
use chainmux_store::IndexerErrorState;
use serde::Serialize;
use tokio::sync::broadcast;
use tracing::{Instrument, debug, info_span};
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
    /// The chain's first indexed block: before its first batch, lag counts from the block below it, not from
    /// block 0 (a chain indexed from a recent block is not millions of blocks behind).
    pub start_block: u64,
}

impl Default for HealthThreshold {
    fn default() -> Self {
        Self { max_lag_blocks: 10, max_lag: Duration::from_secs(60), start_block: 0 }
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
/// How long a computed `/v1/chains/{chain}/health` answer serves further probes. Short against the lag limits
/// (tens of seconds), long enough that a probe flood costs a few store reads per second.
const PROBE_REUSE: Duration = Duration::from_millis(500);

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
    /// The last `/v1/chains/{chain}/health` answer and when it was computed; held while one is computed, so
    /// concurrent probes wait for it instead of each reading the store.
    probe: tokio::sync::Mutex<Option<(Instant, ChainHealth)>>,
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
    /// The indexer's error as last read from the store; `None` until first read.
    indexer_error: Option<Option<IndexerErrorState>>,
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

/// Samples the chain head and the indexer's stored error, and records the indexer's events until the state is
/// dropped.
async fn run(inner: Weak<Inner>, chain: String, events: Option<broadcast::Receiver<ChainEvent>>) {
    follow(inner, events, SAMPLE_EVERY, |inner, wake| {
        let chain = chain.clone();
        async move {
            let tick = matches!(wake, Wake::Tick);
            record(&inner, &chain, wake);
            if tick {
                follow_indexer_error(&inner, &chain).await;
            }
        }
    })
    .await;
}

/// Turns a change of the indexer's error, as stored by whichever replica indexes the chain, into an incident.
async fn follow_indexer_error(inner: &Inner, chain: &str) {
    let Some(tracker) = inner.health.chains.get(chain) else { return };
    // Bounded like the probes: a stalled database must not stall the head samples behind this.
    let stored = match tokio::time::timeout(crate::READY_TIMEOUT, inner.store.chain_state(chain)).await {
        Ok(Ok(stored)) => stored.and_then(|s| s.indexer_error),
        Ok(Err(err)) => {
            debug!(%err, "cannot read the indexer's status");
            return;
        }
        Err(_) => return,
    };
    let previous = {
        let mut data = tracker.data.lock().unwrap_or_else(PoisonError::into_inner);
        data.indexer_error.replace(stored.clone())
    };
    if let Some(incident) = indexer_incident(chain, previous.as_ref(), stored.as_ref()) {
        inner.health.record_incident(incident);
    }
}

/// The incident of the indexer's error going from `previous` (`None`: not read before) to `now`, if any.
fn indexer_incident(
    chain: &str,
    previous: Option<&Option<IndexerErrorState>>,
    now: Option<&IndexerErrorState>,
) -> Option<Incident> {
    let before = previous.and_then(Option::as_ref);
    match (before, now) {
        (_, Some(error)) if before != Some(error) => Some(Incident {
            at: u64::try_from(error.since).unwrap_or_else(|_| unix_now()),
            chain: chain.to_owned(),
            kind: "indexer_error",
            upstream: None,
            message: format!("indexer error: {}", error.message),
        }),
        // Only a recovery this process saw the error of: at start, no error means nothing happened.
        (Some(_), None) => Some(Incident {
            at: unix_now(),
            chain: chain.to_owned(),
            kind: "indexer_recovered",
            upstream: None,
            message: "indexer recovered".to_owned(),
        }),
        _ => None,
    }
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
    /// Newest first, at most 200: upstream state changes (excluded, down, restored), reorgs, and indexer errors
    /// and recoveries.
    incidents: Vec<Incident>,
    /// Where state shared by replicas (rate limits, JSON-RPC cache) lives right now.
    shared_state: crate::shared::SharedStatus,
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
    /// Blocks indexed per second over the last minute, as this replica saw them committed (its own indexer's
    /// batches, or the leading replica's, relayed); `null` without an event source.
    #[schema(required)]
    blocks_per_second: Option<f64>,
    /// Reorgs the indexer rolled back in the last hour (as this replica saw them, relayed or its own).
    reorgs_last_hour: u64,
    /// The indexer's current error (whichever replica indexes the chain); `null` while it works.
    #[schema(required)]
    indexer_error: Option<IndexerErrorView>,
    /// What `/v1/chains/{chain}/health` answers.
    health: ChainHealth,
    /// The replica that writes the chain (holds its lock); `null` when none does (or in `/v1/chains/{chain}/health`
    /// reads, which skip it).
    #[schema(required)]
    leader: Option<LeaderView>,
    upstreams: Vec<UpstreamStatus>,
}

/// The replica leading a chain's indexing.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LeaderView {
    /// `cluster.replica_id` of the holder.
    replica: String,
    /// The leadership term: one more at every takeover.
    epoch: i64,
    /// Unix seconds when the term started.
    #[schema(required)]
    since: Option<i64>,
    /// Unix seconds of the holder's last proof that its lock session is alive (every `cluster.leader_poll_ms`).
    #[schema(required)]
    renewed_at: Option<i64>,
}

/// The error the indexer of a chain is retrying (or stopped on).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IndexerErrorView {
    /// The failing stage (`heads`, `fetch`, `write`, `fork`, or `stopped` for a fatal error) and the error.
    message: String,
    /// Unix seconds when it started.
    since: u64,
}

/// The indexed height lag counts from: the cursor, or before the first batch the block below the start block.
fn indexed_floor(cursor: Option<u64>, start_block: u64) -> Option<u64> {
    cursor.or_else(|| start_block.checked_sub(1))
}

/// A recent event an operator wants to know about.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Incident {
    /// Unix seconds.
    at: u64,
    chain: String,
    /// `upstream_excluded`, `upstream_down`, `upstream_restored`, `upstream_unknown`, `reorg`, `indexer_error`
    /// or `indexer_recovered`.
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
    let limits = state.health_threshold(name);
    let indexed = indexed_floor(cursor, limits.start_block);
    let head = handle.pool.best_head().max(heads.map(|h| h.latest));
    let lag_blocks = head.map(|h| h.saturating_sub(indexed.unwrap_or(0)));
    let indexer_error = stored.as_ref().and_then(|s| s.indexer_error.as_ref()).map(|e| IndexerErrorView {
        message: e.message.clone(),
        since: u64::try_from(e.since).unwrap_or_default(),
    });
    let upstreams = handle.pool.statuses();
    let now = Instant::now();

    let tracker = state.inner.health.chains.get(name);
    let (lag_seconds, blocks_per_second, reorgs_last_hour) = match tracker {
        Some(tracker) => {
            let mut data = tracker.data.lock().unwrap_or_else(PoisonError::into_inner);
            prune(&mut data, now);
            let lag_seconds = lag_seconds(&data.heads, lag_blocks, indexed, now);
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
        indexer_error,
        health,
        leader: None,
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
    let leaders = tokio::time::timeout(crate::READY_TIMEOUT, state.inner.store.leaders())
        .await
        .map_err(|_| AppError::Unavailable("the index store did not answer in time".to_owned()))??;
    for chain in &mut chains {
        chain.leader = leaders.iter().find(|l| l.chain == chain.name).and_then(|l| {
            Some(LeaderView {
                replica: l.holder.clone()?,
                epoch: l.epoch,
                since: l.acquired_at,
                renewed_at: l.renewed_at,
            })
        });
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
    let shared_state = state.shared().map_or(crate::shared::SharedStatus::NOT_CONFIGURED, |s| s.status());
    Ok(Json(StatusReport { now: unix_now(), chains, incidents, shared_state }))
}

/// What `/v1/chains/{chain}/health` answers for served chain `chain`, from the store and the tracker.
async fn probe(state: &AppState, chain: &str) -> Result<ChainHealth, AppError> {
    match chain_status(state, chain).await {
        Ok(status) => Ok(status.health),
        Err(AppError::NotFound(message)) => Err(AppError::NotFound(message)),
        // The store is down: the chain cannot be served, and the answer keeps this route's shape.
        Err(err) => {
            tracing::warn!(%err, chain, "chain health: index store unavailable");
            let limits = state.health_threshold(chain);
            Ok(ChainHealth {
                chain: chain.to_owned(),
                status: "unhealthy",
                reasons: vec!["index store unavailable".to_owned()],
                lag_blocks: None,
                lag_seconds: None,
                max_lag_blocks: limits.max_lag_blocks,
                max_lag_seconds: limits.max_lag.as_secs_f64(),
                healthy_upstreams: 0,
            })
        }
    }
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
    state.chain(&chain)?;
    let Some(tracker) = state.inner.health.chains.get(&chain) else {
        return Err(AppError::NotFound(format!("unknown chain {chain:?}")));
    };
    // One computation at a time per chain, and its answer serves every probe for [`PROBE_REUSE`]: the route is
    // open, so whatever the probe rate, the store sees a bounded number of reads.
    let mut memo = tracker.probe.lock().await;
    let mut health = match memo.as_ref().filter(|(at, _)| at.elapsed() < PROBE_REUSE) {
        Some((_, health)) => health.clone(),
        None => {
            let health = probe(&state, &chain).await?;
            // Timed from the end: the probes that queued behind a slow computation are served by its answer.
            *memo = Some((Instant::now(), health.clone()));
            health
        }
    };
    drop(memo);
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
    fn lag_before_the_first_batch_counts_from_below_the_start_block() {
        assert_eq!(indexed_floor(None, 0), None);
        assert_eq!(indexed_floor(None, 20_000_000), Some(19_999_999));
        // Once a batch is written the cursor decides.
        assert_eq!(indexed_floor(Some(20_000_005), 20_000_000), Some(20_000_005));
        assert_eq!(indexed_floor(Some(3), 0), Some(3));
    }

    #[test]
    fn indexer_error_changes_become_incidents() {
        let error = |message: &str, since| IndexerErrorState { message: message.to_owned(), since };
        let fetch = error("fetch: upstream request failed: no upstream", 100);
        // Seen at start: reported with its own time; a working indexer at start is no incident.
        let first = indexer_incident("c", None, Some(&fetch)).expect("incident");
        assert_eq!((first.kind, first.at), ("indexer_error", 100));
        assert_eq!(first.message, "indexer error: fetch: upstream request failed: no upstream");
        assert!(indexer_incident("c", None, None).is_none());
        // The same error read again is not news; another one, or a recovery, is.
        assert!(indexer_incident("c", Some(&Some(fetch.clone())), Some(&fetch)).is_none());
        let stopped = error("stopped: reorg too deep", 130);
        let next = indexer_incident("c", Some(&Some(fetch.clone())), Some(&stopped)).expect("incident");
        assert_eq!(next.kind, "indexer_error");
        let recovered = indexer_incident("c", Some(&Some(fetch)), None).expect("incident");
        assert_eq!((recovered.kind, recovered.message.as_str()), ("indexer_recovered", "indexer recovered"));
        assert!(indexer_incident("c", Some(&None), None).is_none());
    }

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
