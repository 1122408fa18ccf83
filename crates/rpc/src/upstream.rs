//! Per-upstream health as observed from real traffic and probes: latency window, error and throttle rates, head,
//! circuit breaker, rate-limit cooldown, and the score routing is based on.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use governor::{DefaultDirectRateLimiter, Quota};
use serde::Serialize;
use url::Url;

use crate::policy::{BreakerConfig, UpstreamPolicy};

/// Circuit breaker state of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// Gauge value: 0 closed, 1 half-open, 2 open.
    pub fn level(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    failures: VecDeque<Instant>,
    open_until: Option<Instant>,
    half_open_successes: u32,
}

impl Breaker {
    fn new() -> Self {
        Self {
            state: BreakerState::Closed,
            failures: VecDeque::new(),
            open_until: None,
            half_open_successes: 0,
        }
    }

    /// Current state; an open circuit whose cool-down has passed becomes half-open.
    fn state(&mut self, now: Instant) -> BreakerState {
        if self.state == BreakerState::Open && self.open_until.is_some_and(|until| now >= until) {
            self.state = BreakerState::HalfOpen;
            self.half_open_successes = 0;
        }
        self.state
    }

    /// Returns the new state when it changed.
    fn on_success(&mut self, now: Instant, config: &BreakerConfig) -> Option<BreakerState> {
        if self.state(now) == BreakerState::HalfOpen {
            self.half_open_successes += 1;
            if self.half_open_successes >= config.successes {
                self.state = BreakerState::Closed;
                self.failures.clear();
                return Some(BreakerState::Closed);
            }
        }
        None
    }

    fn on_failure(&mut self, now: Instant, config: &BreakerConfig) -> Option<BreakerState> {
        match self.state(now) {
            BreakerState::HalfOpen => {
                self.open(now, config);
                Some(BreakerState::Open)
            }
            BreakerState::Open => None,
            BreakerState::Closed => {
                self.failures.push_back(now);
                while self.failures.front().is_some_and(|t| now.duration_since(*t) > config.window) {
                    self.failures.pop_front();
                }
                if self.failures.len() >= config.failures as usize {
                    self.open(now, config);
                    return Some(BreakerState::Open);
                }
                None
            }
        }
    }

    fn open(&mut self, now: Instant, config: &BreakerConfig) {
        self.state = BreakerState::Open;
        self.open_until = Some(now + config.cooldown);
        self.failures.clear();
    }
}

/// Latencies of recent successful requests, for quantiles.
#[derive(Debug)]
struct LatencyWindow {
    samples: VecDeque<f64>,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    since_refresh: usize,
}

/// Recent enough that a recovered upstream's fast answers outweigh its bad spell within a few dozen requests.
const LATENCY_SAMPLES: usize = 64;
/// Quantiles are recomputed every few samples: exact enough for routing, cheap on the hot path.
const LATENCY_REFRESH: usize = 8;

impl LatencyWindow {
    fn new() -> Self {
        Self {
            samples: VecDeque::with_capacity(LATENCY_SAMPLES),
            p50: None,
            p90: None,
            p99: None,
            since_refresh: 0,
        }
    }

    fn record(&mut self, ms: f64) {
        if self.samples.len() == LATENCY_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(ms);
        self.since_refresh += 1;
        if self.since_refresh >= LATENCY_REFRESH || self.samples.len() < LATENCY_REFRESH {
            self.since_refresh = 0;
            self.p50 = self.quantile(0.5);
            self.p90 = self.quantile(0.9);
            self.p99 = self.quantile(0.99);
        }
    }

    fn quantile(&self, q: f64) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self.samples.iter().copied().collect();
        let rank = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        let (_, value, _) = sorted.select_nth_unstable_by(rank, f64::total_cmp);
        Some(*value)
    }
}

/// Latency at which the score halves. Differences of a few tens of milliseconds stay within the hysteresis band, so
/// the operator's upstream order is not overturned by noise; hundreds of milliseconds are not.
const LATENCY_SCALE_MS: f64 = 250.0;

/// Weight of the newest request in the error and throttle rates.
const RATE_ALPHA: f64 = 0.05;

/// Where an upstream stands for routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Eligibility {
    /// Route to it; `healthy` says whether its last request succeeded.
    Eligible { healthy: bool },
    /// Only trial traffic (circuit half-open).
    Trial,
    /// Not routed to, for this reason.
    Excluded(String),
    /// Identity not verified yet.
    Unverified,
}

/// A snapshot of one upstream for `/v1/chains`, status pages and logs.
/// Described in the gateway's `/openapi.json`; `Option` fields are always sent (as `null`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UpstreamStatus {
    pub name: String,
    /// `healthy`, `down` (last request failed, still routable), `excluded` (with `reason`), or `unknown`
    /// (identity not verified yet).
    pub state: &'static str,
    /// Why the upstream is down or excluded: `wrong chain id …`, `circuit open`, `lagging 14 blocks`, `rate limited`.
    #[schema(required)]
    pub reason: Option<String>,
    /// Routing score in [0, 1]; higher is better.
    pub score: f64,
    /// Whether this upstream currently gets traffic first.
    pub primary: bool,
    pub breaker: &'static str,
    #[schema(required)]
    pub latency_p50_ms: Option<f64>,
    #[schema(required)]
    pub latency_p90_ms: Option<f64>,
    /// Over the last 64 requests, like the other quantiles: the slowest of them, in practice.
    #[schema(required)]
    pub latency_p99_ms: Option<f64>,
    pub error_rate: f64,
    pub throttle_rate: f64,
    /// Latest head height the upstream reported.
    #[schema(required)]
    pub head: Option<u64>,
    /// Blocks behind the best upstream head.
    #[schema(required)]
    pub lag: Option<u64>,
    /// Unix seconds of the last state change.
    pub since: u64,
    pub requests: u64,
    pub failures: u64,
}

/// A change of an upstream's state (`healthy`, `down`, `excluded`, `unknown`), for incident lists.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamTransition {
    pub upstream: String,
    pub from: &'static str,
    pub to: &'static str,
    /// Why, when the new state is `down` or `excluded`.
    pub reason: Option<String>,
    /// Unix seconds.
    pub at: u64,
}

#[derive(Debug)]
pub(crate) struct Observed {
    verified: bool,
    identity_failure: Option<String>,
    /// What the node's own health check last said when it was not healthy (Solana's `getHealth`).
    unhealthy: Option<String>,
    last_failure: Option<String>,
    breaker: Breaker,
    latency: LatencyWindow,
    error_rate: f64,
    throttle_rate: f64,
    head: Option<u64>,
    cooldown_until: Option<Instant>,
    since: u64,
    last_label: &'static str,
    requests: u64,
    failures: u64,
}

/// What one finished request tells about its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Answered (a result, or an error that is the caller's).
    Answered,
    /// Answered "method not found": not a health problem.
    Unsupported,
    /// Throttled (429 or a provider's rate-limit error).
    Throttled { retry_after: Option<Duration> },
    /// Failed: transport error, timeout, 5xx, garbage, server-side JSON-RPC error.
    Failed,
}

/// A change worth a log line and a metric.
#[derive(Debug)]
pub(crate) enum Transition {
    Breaker(BreakerState),
}

pub(crate) struct Upstream {
    pub(crate) name: String,
    pub(crate) url: Url,
    pub(crate) policy: UpstreamPolicy,
    limiter: Option<DefaultDirectRateLimiter>,
    inner: Mutex<Observed>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry an API key: never in Debug output.
        f.debug_struct("Upstream").field("name", &self.name).finish_non_exhaustive()
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl Upstream {
    pub(crate) fn new(name: String, url: Url, policy: UpstreamPolicy) -> Self {
        let limiter = policy.rate_limit.and_then(|limit| {
            let per_second = NonZeroU32::new(limit.per_second)?;
            let burst = NonZeroU32::new(limit.burst).unwrap_or(per_second);
            Some(DefaultDirectRateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)))
        });
        let inner = Observed {
            verified: false,
            identity_failure: None,
            unhealthy: None,
            last_failure: None,
            breaker: Breaker::new(),
            latency: LatencyWindow::new(),
            error_rate: 0.0,
            throttle_rate: 0.0,
            head: None,
            cooldown_until: None,
            since: unix_now(),
            last_label: "unknown",
            requests: 0,
            failures: 0,
        };
        Self { name, url, policy, limiter, inner: Mutex::new(inner) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Observed) -> R) -> R {
        // A poisoned lock only means a panic elsewhere mid-update of plain numbers; the data stays usable.
        let mut guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    /// Takes a request slot from the upstream's rate budget; `Err(wait)` when none is free now.
    pub(crate) fn acquire(&self) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check().map_err(|not_until| {
            use governor::clock::Clock;
            not_until.wait_time_from(limiter.clock().now())
        })
    }

    pub(crate) fn is_verified(&self) -> bool {
        self.with(|o| o.verified)
    }

    pub(crate) fn mark_verified(&self) {
        self.with(|o| {
            o.verified = true;
            o.identity_failure = None;
        });
    }

    pub(crate) fn mark_identity_failure(&self, reason: String) {
        self.with(|o| {
            o.verified = false;
            o.identity_failure = Some(reason);
        });
    }

    pub(crate) fn head(&self) -> Option<u64> {
        self.with(|o| o.head)
    }

    pub(crate) fn record_head(&self, head: u64) {
        // The latest report wins, lower or not: a node that was rolled back really is lower now.
        self.with(|o| o.head = Some(head));
    }

    /// The latency quantile used for hedging; from the first sample on (an estimate from one answer beats
    /// waiting the maximum delay on a fresh or just-recovered upstream).
    pub(crate) fn latency_quantile(&self, q: f64) -> Option<f64> {
        self.with(|o| o.latency.quantile(q))
    }

    /// Remaining rate-limit cooldown.
    pub(crate) fn cooldown_left(&self, now: Instant) -> Option<Duration> {
        self.with(|o| o.cooldown_until.and_then(|until| until.checked_duration_since(now)))
    }

    pub(crate) fn record(&self, verdict: Verdict, latency: Duration, now: Instant) -> Option<Transition> {
        let policy = &self.policy;
        self.with(|o| {
            o.requests += 1;
            let failed = matches!(verdict, Verdict::Failed);
            let throttled = matches!(verdict, Verdict::Throttled { .. });
            o.error_rate += RATE_ALPHA * (f64::from(u8::from(failed)) - o.error_rate);
            o.throttle_rate += RATE_ALPHA * (f64::from(u8::from(throttled)) - o.throttle_rate);
            match verdict {
                Verdict::Answered | Verdict::Unsupported => {
                    o.latency.record(latency.as_secs_f64() * 1000.0);
                    o.last_failure = None;
                    let closed = o.breaker.on_success(now, &policy.breaker);
                    if closed.is_some() {
                        // The circuit closed after a clean trial: the failures and slow samples of the outage
                        // no longer describe the upstream, so it gets its configured priority back at once.
                        o.latency = LatencyWindow::new();
                        o.latency.record(latency.as_secs_f64() * 1000.0);
                        o.error_rate = 0.0;
                    }
                    closed.map(Transition::Breaker)
                }
                Verdict::Throttled { retry_after } => {
                    o.failures += 1;
                    // Bounded: a provider's header must not bench an upstream for hours.
                    let wait =
                        retry_after.unwrap_or(policy.rate_limit_cooldown).min(Duration::from_secs(300));
                    o.cooldown_until = Some(now + wait);
                    o.last_failure = Some(format!("rate limited for {}s", wait.as_secs_f64().ceil()));
                    None
                }
                Verdict::Failed => {
                    o.failures += 1;
                    // A timeout is the slowest answer of all; it must weigh on the latency like one.
                    o.latency.record(latency.as_secs_f64() * 1000.0);
                    o.breaker.on_failure(now, &policy.breaker).map(Transition::Breaker)
                }
            }
        })
    }

    /// A request cancelled unanswered after `waited` (a hedge's loser): at least that slow, and it did not answer
    /// when another upstream did. It counts like a failure in the error rate (not for the breaker): an upstream
    /// that loses the occasional race keeps its place, one that never answers loses it.
    pub(crate) fn record_unanswered(&self, waited: Duration) {
        self.with(|o| {
            o.latency.record(waited.as_secs_f64() * 1000.0);
            o.error_rate += RATE_ALPHA * (1.0 - o.error_rate);
        });
    }

    pub(crate) fn is_healthy_by_check(&self) -> bool {
        self.with(|o| o.unhealthy.is_none())
    }

    /// Records the node's own health verdict: `Some(reason)` excludes it until a later check says healthy.
    pub(crate) fn set_unhealthy(&self, reason: Option<String>) {
        self.with(|o| o.unhealthy = reason);
    }

    pub(crate) fn set_last_failure(&self, reason: String) {
        self.with(|o| o.last_failure = Some(reason));
    }

    pub(crate) fn eligibility(&self, best_head: Option<u64>, now: Instant) -> Eligibility {
        self.with(|o| {
            if let Some(reason) = &o.identity_failure {
                return Eligibility::Excluded(reason.clone());
            }
            if !o.verified {
                return Eligibility::Unverified;
            }
            match o.breaker.state(now) {
                BreakerState::Open => return Eligibility::Excluded("circuit open".into()),
                BreakerState::HalfOpen => return Eligibility::Trial,
                BreakerState::Closed => {}
            }
            if let Some(left) = o.cooldown_until.and_then(|until| until.checked_duration_since(now)) {
                return Eligibility::Excluded(format!("rate limited for {}s", left.as_secs_f64().ceil()));
            }
            if let Some(reason) = &o.unhealthy {
                return Eligibility::Excluded(format!("unhealthy: {reason}"));
            }
            if let (Some(best), Some(head)) = (best_head, o.head) {
                let lag = best.saturating_sub(head);
                if lag > self.policy.max_lag_blocks {
                    return Eligibility::Excluded(format!("lagging {lag} blocks"));
                }
            }
            Eligibility::Eligible { healthy: o.last_failure.is_none() }
        })
    }

    /// Routing score in [0, 1]: fast, error-free, unthrottled and up to date is 1.
    pub(crate) fn score(&self, best_head: Option<u64>) -> f64 {
        self.with(|o| {
            // Unknown latency counts as fast: a fresh upstream keeps its configured priority until measured
            // (probes measure it within one interval).
            let latency_ms = o.latency.p90.unwrap_or(0.0);
            let lag = match (best_head, o.head) {
                (Some(best), Some(head)) => best.saturating_sub(head) as f64,
                _ => 0.0,
            };
            (1.0 - o.error_rate) * (1.0 - o.throttle_rate)
                / (1.0 + latency_ms / LATENCY_SCALE_MS)
                / (1.0 + lag * 0.25)
        })
    }

    /// The upstream's snapshot, and its previous state when the state changed since the last snapshot (state
    /// changes are noticed here, where the state is derived, so every reader sees the same transitions).
    pub(crate) fn status(
        &self,
        best_head: Option<u64>,
        primary: bool,
        now: Instant,
    ) -> (UpstreamStatus, Option<&'static str>) {
        let eligibility = self.eligibility(best_head, now);
        let score = self.score(best_head);
        self.with(|o| {
            let (state, reason) = match eligibility {
                Eligibility::Eligible { healthy: true } => ("healthy", None),
                Eligibility::Eligible { healthy: false } | Eligibility::Trial => {
                    ("down", o.last_failure.clone())
                }
                Eligibility::Excluded(reason) => ("excluded", Some(reason)),
                Eligibility::Unverified if o.last_failure.is_some() => ("down", o.last_failure.clone()),
                Eligibility::Unverified => ("unknown", None),
            };
            let previous = (state != o.last_label).then_some(o.last_label);
            if previous.is_some() {
                o.last_label = state;
                o.since = unix_now();
            }
            let status = UpstreamStatus {
                name: self.name.clone(),
                state,
                reason,
                score,
                primary,
                breaker: o.breaker.state(now).as_str(),
                latency_p50_ms: o.latency.p50,
                latency_p90_ms: o.latency.p90,
                latency_p99_ms: o.latency.p99,
                error_rate: o.error_rate,
                throttle_rate: o.throttle_rate,
                head: o.head,
                lag: best_head.zip(o.head).map(|(best, head)| best.saturating_sub(head)),
                since: o.since,
                requests: o.requests,
                failures: o.failures,
            };
            (status, previous)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failures: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
            successes: 2,
        }
    }

    #[test]
    fn breaker_opens_after_failures_in_window_then_half_opens_and_closes() {
        let mut breaker = Breaker::new();
        let t0 = Instant::now();
        let c = config();
        assert_eq!(breaker.on_failure(t0, &c), None);
        assert_eq!(breaker.on_failure(t0 + Duration::from_secs(1), &c), None);
        assert_eq!(breaker.on_failure(t0 + Duration::from_secs(2), &c), Some(BreakerState::Open));
        assert_eq!(breaker.state(t0 + Duration::from_secs(6)), BreakerState::Open);
        assert_eq!(breaker.state(t0 + Duration::from_secs(8)), BreakerState::HalfOpen);
        assert_eq!(breaker.on_success(t0 + Duration::from_secs(8), &c), None);
        assert_eq!(breaker.on_success(t0 + Duration::from_secs(9), &c), Some(BreakerState::Closed));
    }

    #[test]
    fn breaker_ignores_failures_outside_the_window_and_reopens_from_half_open() {
        let mut breaker = Breaker::new();
        let t0 = Instant::now();
        let c = config();
        breaker.on_failure(t0, &c);
        breaker.on_failure(t0 + Duration::from_secs(1), &c);
        // The first two are older than the window by now.
        assert_eq!(breaker.on_failure(t0 + Duration::from_secs(12), &c), None);
        assert_eq!(breaker.state(t0 + Duration::from_secs(12)), BreakerState::Closed);
        breaker.on_failure(t0 + Duration::from_secs(13), &c);
        assert_eq!(breaker.on_failure(t0 + Duration::from_secs(14), &c), Some(BreakerState::Open));
        assert_eq!(breaker.state(t0 + Duration::from_secs(20)), BreakerState::HalfOpen);
        assert_eq!(breaker.on_failure(t0 + Duration::from_secs(20), &c), Some(BreakerState::Open));
        assert_eq!(breaker.state(t0 + Duration::from_secs(21)), BreakerState::Open);
    }

    #[test]
    fn latency_quantiles_over_the_recent_window() {
        let mut window = LatencyWindow::new();
        for ms in 1..=LATENCY_SAMPLES {
            window.record(ms as f64);
        }
        assert_eq!(window.quantile(0.5), Some(33.0));
        assert_eq!(window.quantile(0.9), Some(58.0));
        // A full window of new samples replaces the old ones entirely.
        for _ in 0..LATENCY_SAMPLES {
            window.record(1000.0);
        }
        assert_eq!(window.quantile(0.5), Some(1000.0));
        assert_eq!(window.p90, Some(1000.0));
    }

    #[test]
    fn closing_the_circuit_forgets_the_outage() {
        let url: Url = "http://127.0.0.1:1".parse().expect("url");
        let policy = UpstreamPolicy {
            breaker: BreakerConfig {
                failures: 2,
                window: Duration::from_secs(10),
                cooldown: Duration::ZERO,
                successes: 1,
            },
            ..UpstreamPolicy::default()
        };
        let upstream = Upstream::new("u".into(), url, policy);
        let now = Instant::now();
        upstream.record(Verdict::Failed, Duration::from_secs(2), now);
        let opened = upstream.record(Verdict::Failed, Duration::from_secs(2), now);
        assert!(matches!(opened, Some(Transition::Breaker(BreakerState::Open))));
        let during = upstream.score(None);
        assert!(during < 0.2, "slow and failing: {during}");
        // Cool-down zero: the next request is the half-open trial, and one success closes the circuit.
        let closed = upstream.record(Verdict::Answered, Duration::from_millis(2), now);
        assert!(matches!(closed, Some(Transition::Breaker(BreakerState::Closed))));
        assert!(upstream.score(None) > 0.95, "score after closing: {}", upstream.score(None));
    }

    #[test]
    fn score_prefers_fast_error_free_current_upstreams() {
        let url: Url = "http://127.0.0.1:1".parse().expect("url");
        let fast = Upstream::new("fast".into(), url.clone(), UpstreamPolicy::default());
        let slow = Upstream::new("slow".into(), url.clone(), UpstreamPolicy::default());
        let now = Instant::now();
        for _ in 0..20 {
            fast.record(Verdict::Answered, Duration::from_millis(5), now);
            slow.record(Verdict::Answered, Duration::from_millis(400), now);
        }
        assert!(fast.score(None) > slow.score(None));
        let failing = Upstream::new("failing".into(), url.clone(), UpstreamPolicy::default());
        for _ in 0..20 {
            failing.record(Verdict::Answered, Duration::from_millis(5), now);
            failing.record(Verdict::Failed, Duration::from_millis(5), now);
        }
        assert!(fast.score(None) > failing.score(None));
        fast.record_head(100);
        let behind = Upstream::new("behind".into(), url, UpstreamPolicy::default());
        for _ in 0..20 {
            behind.record(Verdict::Answered, Duration::from_millis(5), now);
        }
        behind.record_head(96);
        assert!(fast.score(Some(100)) > behind.score(Some(100)));
    }
}
