//! Per-upstream health, as observed from real traffic and probes.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use url::Url;

/// Where an upstream stands for routing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "reason")]
pub enum UpstreamState {
    /// Not verified yet (identity check pending); not routed to.
    Unknown,
    /// Answered its last request or probe.
    Healthy,
    /// Failed its last request or probe; still tried when nothing better is left.
    Down(String),
    /// Never routed to (wrong chain, misconfigured) until it passes the identity check.
    Excluded(String),
}

impl UpstreamState {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Down(_) => "down",
            Self::Excluded(_) => "excluded",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Down(reason) | Self::Excluded(reason) => Some(reason),
            Self::Unknown | Self::Healthy => None,
        }
    }
}

/// A snapshot of one upstream for status pages and `/v1/chains`.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub state: &'static str,
    /// Why the upstream is down or excluded.
    pub reason: Option<String>,
    /// Exponentially weighted moving average of successful request latency.
    pub latency_ms: Option<f64>,
    /// Latest head height the upstream reported.
    pub head: Option<u64>,
    /// Unix seconds of the last state change.
    pub since: u64,
    pub requests: u64,
    pub failures: u64,
}

#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) name: String,
    pub(crate) url: Url,
    pub(crate) inner: Mutex<Observed>,
}

#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) state: UpstreamState,
    pub(crate) verified: bool,
    pub(crate) latency_ms: Option<f64>,
    pub(crate) head: Option<u64>,
    pub(crate) since: u64,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
}

/// Weight of the newest sample in the latency average.
const LATENCY_ALPHA: f64 = 0.2;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

impl Upstream {
    pub(crate) fn new(name: String, url: Url) -> Self {
        let inner = Observed {
            state: UpstreamState::Unknown,
            verified: false,
            latency_ms: None,
            head: None,
            since: unix_now(),
            requests: 0,
            failures: 0,
        };
        Self { name, url, inner: Mutex::new(inner) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Observed) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of plain counters; the data is still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }

    pub(crate) fn set_state(&self, state: UpstreamState) -> Option<UpstreamState> {
        self.with(|o| {
            if o.state == state {
                return None;
            }
            o.since = unix_now();
            Some(std::mem::replace(&mut o.state, state))
        })
    }

    pub(crate) fn state(&self) -> UpstreamState {
        self.with(|o| o.state.clone())
    }

    pub(crate) fn is_verified(&self) -> bool {
        self.with(|o| o.verified)
    }

    pub(crate) fn mark_verified(&self) {
        self.with(|o| o.verified = true);
    }

    pub(crate) fn head(&self) -> Option<u64> {
        self.with(|o| o.head)
    }

    pub(crate) fn record_success(&self, latency_ms: f64) {
        self.with(|o| {
            o.requests += 1;
            o.latency_ms = Some(match o.latency_ms {
                Some(avg) => avg + LATENCY_ALPHA * (latency_ms - avg),
                None => latency_ms,
            });
        });
    }

    pub(crate) fn record_failure(&self) {
        self.with(|o| {
            o.requests += 1;
            o.failures += 1;
        });
    }

    pub(crate) fn record_head(&self, head: u64) {
        // The latest report wins, lower or not: a node that was rolled back really is lower now.
        self.with(|o| o.head = Some(head));
    }

    pub(crate) fn status(&self) -> UpstreamStatus {
        self.with(|o| UpstreamStatus {
            name: self.name.clone(),
            state: o.state.label(),
            reason: o.state.reason().map(str::to_owned),
            latency_ms: o.latency_ms,
            head: o.head,
            since: o.since,
            requests: o.requests,
            failures: o.failures,
        })
    }
}
