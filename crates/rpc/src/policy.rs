//! Tuning of the pool (per call) and of each upstream (per upstream, overridable in config).

use std::time::Duration;

/// Call-level behaviour of one chain's pool. Defaults are documented in README and `config/`.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Budget of one whole call: every attempt, hedge and backoff sleep fits in it.
    pub deadline: Duration,
    /// Attempts per call across upstreams, hedges included (the first try too).
    pub max_attempts: usize,
    /// Backoff before an upstream already tried in this call is tried again (jittered exponential).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often upstreams are probed for liveness and head, and unverified ones re-checked.
    pub probe_interval: Duration,
    /// Whether idempotent reads are hedged.
    pub hedge: bool,
    /// Extra concurrent copies of one read.
    pub max_hedges: usize,
    /// A challenger must score this fraction better than the current primary to replace it.
    pub hysteresis: f64,
    /// Share of reads sent first to an upstream whose circuit is half-open, so it can prove itself.
    pub probe_share: f64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
            max_attempts: 4,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            probe_interval: Duration::from_secs(2),
            hedge: true,
            max_hedges: 1,
            hysteresis: 0.2,
            probe_share: 0.02,
        }
    }
}

/// When a hedge is sent: a fixed delay, or a latency quantile of the upstream first asked, bounded.
#[derive(Debug, Clone)]
pub struct HedgeDelay {
    pub fixed: Option<Duration>,
    pub quantile: f64,
    pub min: Duration,
    pub max: Duration,
}

/// Circuit breaker thresholds.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Failures within `window` that open the circuit.
    pub failures: u32,
    pub window: Duration,
    /// Open → half-open after this long.
    pub cooldown: Duration,
    /// Successes in half-open that close the circuit.
    pub successes: u32,
}

/// A provider's request budget.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

/// Behaviour towards one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamPolicy {
    /// Limit of one attempt (further bounded by the call's deadline).
    pub request_timeout: Duration,
    /// Excluded while its head is more than this behind the best upstream's.
    pub max_lag_blocks: u64,
    pub hedge_delay: HedgeDelay,
    pub breaker: BreakerConfig,
    pub rate_limit: Option<RateLimit>,
    /// How long the upstream is avoided after a 429 that carried no `Retry-After`.
    pub rate_limit_cooldown: Duration,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            max_lag_blocks: 10,
            hedge_delay: HedgeDelay {
                fixed: None,
                quantile: 0.9,
                min: Duration::from_millis(20),
                max: Duration::from_secs(2),
            },
            breaker: BreakerConfig {
                failures: 5,
                window: Duration::from_secs(30),
                cooldown: Duration::from_secs(10),
                successes: 2,
            },
            rate_limit: None,
            rate_limit_cooldown: Duration::from_secs(1),
        }
    }
}
