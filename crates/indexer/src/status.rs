//! The indexer's current error, recorded in the store on transitions so every gateway replica can show it: the
//! first failure after success sets it, the first success of the failing stage clears it, and the retries in
//! between write nothing.

use std::fmt::Display;
use std::sync::{Mutex, PoisonError};

use chainmux_store::Store;
use tracing::warn;

/// What the store says, as far as this process knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    /// Nothing written yet by this process: an error left by an earlier run (or another replica) may be stored,
    /// so the first success of any stage clears it.
    Unknown,
    Clear,
    /// This stage's failure is recorded; only its success clears it, so a stage that keeps failing while
    /// another one succeeds does not make the record flap.
    Failing(&'static str),
    /// A fatal error is recorded; this run writes nothing after it.
    Stopped,
}

/// The recorded error state of one chain's indexer, shared by its fetcher and writer.
#[derive(Debug)]
pub(crate) struct ErrorStatus {
    recorded: Mutex<Recorded>,
}

impl Default for ErrorStatus {
    fn default() -> Self {
        Self { recorded: Mutex::new(Recorded::Unknown) }
    }
}

impl ErrorStatus {
    /// `stage` failed (and is retried): recorded unless an error is already.
    pub(crate) async fn failed(
        &self,
        store: &Store,
        chain: &str,
        stage: &'static str,
        err: &(dyn Display + Sync),
    ) {
        if self.fail(stage) {
            record(store, chain, Some(&format!("{stage}: {err}"))).await;
        }
    }

    /// `stage` succeeded: clears the record of its own failure (or one this process does not know of).
    pub(crate) async fn succeeded(&self, store: &Store, chain: &str, stage: &'static str) {
        if self.succeed(stage) {
            record(store, chain, None).await;
        }
    }

    /// The indexer stopped on `err`; replaces any error recorded.
    pub(crate) async fn stopped(&self, store: &Store, chain: &str, err: &(dyn Display + Sync)) {
        if self.transition(|r| r != Recorded::Stopped, Recorded::Stopped) {
            record(store, chain, Some(&format!("stopped: {err}"))).await;
        }
    }

    /// Whether `stage`'s failure is a transition to record.
    fn fail(&self, stage: &'static str) -> bool {
        self.transition(|r| matches!(r, Recorded::Unknown | Recorded::Clear), Recorded::Failing(stage))
    }

    /// Whether `stage`'s success is a transition to record.
    fn succeed(&self, stage: &'static str) -> bool {
        self.transition(|r| r == Recorded::Unknown || r == Recorded::Failing(stage), Recorded::Clear)
    }

    /// Moves to `to` when the current state passes `when`; whether it moved.
    fn transition(&self, when: impl Fn(Recorded) -> bool, to: Recorded) -> bool {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        if !when(*recorded) {
            return false;
        }
        *recorded = to;
        true
    }
}

/// Best effort: when the store cannot take it (it may be what fails), the indexer's own log and metrics still
/// say it, and the next transition writes the state anew.
async fn record(store: &Store, chain: &str, error: Option<&str>) {
    if let Err(err) = store.set_indexer_error(chain, error).await {
        warn!(%err, "cannot record the indexer's status");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transitions_are_recorded() {
        let status = ErrorStatus::default();
        // A fresh run clears whatever an earlier one left, once.
        assert!(status.succeed("fetch"));
        assert!(!status.succeed("fetch"));
        assert!(status.fail("heads"));
        // Retries and other stages' failures or successes leave the record alone.
        assert!(!status.fail("heads"));
        assert!(!status.fail("fetch"));
        assert!(!status.succeed("fetch"));
        assert!(status.succeed("heads"));
        assert!(status.fail("write"));
        // A fatal stop replaces the error and is final.
        assert!(status.transition(|r| r != Recorded::Stopped, Recorded::Stopped));
        assert!(!status.succeed("write"));
        assert!(!status.fail("fetch"));
    }
}
