//! The one shape of the gateway's per-chain background tasks (the cache's finality tracker, the status tracker):
//! wake on a timer and on each of the indexer's events for the chain, until the gateway's state is dropped.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chainmux_core::ChainEvent;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::Inner;

/// Why a task woke.
pub(crate) enum Wake {
    /// Its interval elapsed.
    Tick,
    /// The indexer published this event.
    Event(ChainEvent),
    /// The task fell this many events behind the indexer's stream; they are lost.
    Lagged(u64),
}

/// Calls `handle` on every tick of `every` and every event of `events` (none when this process does not index
/// the chain, or once the indexer has stopped) while the state behind `inner` lives.
pub(crate) async fn follow<F, Fut>(
    inner: Weak<Inner>,
    mut events: Option<broadcast::Receiver<ChainEvent>>,
    every: Duration,
    mut handle: F,
) where
    F: FnMut(Arc<Inner>, Wake) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = async {
            match events.as_mut() {
                Some(events) => events.recv().await,
                None => std::future::pending().await,
            }
        };
        let wake = tokio::select! {
            _ = ticker.tick() => Wake::Tick,
            event = event => match event {
                Ok(event) => Wake::Event(event),
                Err(RecvError::Lagged(missed)) => Wake::Lagged(missed),
                Err(RecvError::Closed) => {
                    events = None;
                    continue;
                }
            },
        };
        let Some(inner) = inner.upgrade() else { return };
        handle(inner, wake).await;
    }
}
