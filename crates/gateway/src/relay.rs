//! Live feeds of chains another replica indexes.
//!
//! Every gateway replica serves `eth_subscribe`, SSE feeds and reorg notices for every chain, but only the chain's
//! leader runs its indexer. A [`ChainRelay`] turns what the leader commits into the same [`ChainEvent`]s the local
//! indexer would send, on the same channel: it wakes on the store's `NOTIFY` (and on a timer, in case one is lost),
//! reads the change relative to what it already passed on ([`Store::feed_delta`], one snapshot), and sends a
//! `Revert` for blocks that were rolled back, then an `Apply` for the new ones. It remembers what was passed on by
//! watching the channel itself, so whoever sent an event (the relay or the local indexer), the next step continues
//! from there: no gap, no block twice.
//!
//! While this replica's indexer leads the chain the relay stands by ([`ChainRelay::hand_over`] catches up first, so
//! the indexer's first batch continues what subscribers saw; [`ChainRelay::resume`] takes over again).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chainmux_core::{BlockPtr, ChainEvent};
use chainmux_store::{Store, StoreError};
use tokio::sync::{Mutex, broadcast};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

/// Most blocks read and sent per step; a replica far behind catches up in several.
const STEP_BLOCKS: u64 = 256;
/// How many passed-on blocks are remembered to find where a rollback forked.
const REMEMBERED: usize = 512;
/// The timer behind the store's notifications.
const POLL: Duration = Duration::from_secs(1);
/// Pause before listening again after the listener failed to connect.
const LISTEN_RETRY: Duration = Duration::from_secs(5);

/// The relay of one chain's events from the store onto the chain's event channel.
#[derive(Debug)]
pub struct ChainRelay {
    chain: String,
    store: Store,
    events: broadcast::Sender<ChainEvent>,
    /// This process's indexer leads the chain and sends the events itself.
    standing_by: AtomicBool,
    state: Mutex<Passed>,
}

/// What was passed on, as seen on the channel.
#[derive(Debug)]
struct Passed {
    blocks: VecDeque<BlockPtr>,
    seen: broadcast::Receiver<ChainEvent>,
}

impl Passed {
    /// Catches up with the channel: events sent since the last look, by anyone.
    fn observe(&mut self) {
        loop {
            match self.seen.try_recv() {
                Ok(ChainEvent::Apply(blocks)) => {
                    if let Some(first) = blocks.first() {
                        self.truncate_above(first.ptr.number.saturating_sub(1));
                        if first.ptr.number == 0 {
                            self.blocks.clear();
                        }
                    }
                    self.blocks.extend(blocks.iter().map(|b| b.ptr));
                    while self.blocks.len() > REMEMBERED {
                        self.blocks.pop_front();
                    }
                }
                Ok(ChainEvent::Revert { to, .. }) => self.truncate_above(to.number),
                // Not knowing what was passed on, start over from the indexed head.
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.blocks.clear(),
                Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => return,
            }
        }
    }

    fn truncate_above(&mut self, number: u64) {
        while self.blocks.back().is_some_and(|b| b.number > number) {
            self.blocks.pop_back();
        }
    }
}

impl ChainRelay {
    /// A relay onto `events`, chain `chain`'s channel (the one the gateway's feeds subscribe to).
    pub fn new(store: Store, chain: &str, events: broadcast::Sender<ChainEvent>) -> Arc<Self> {
        let seen = events.subscribe();
        for kind in ["block", "revert"] {
            metrics::counter!("chainmux_feed_relayed_total", "chain" => chain.to_owned(), "kind" => kind)
                .increment(0);
        }
        Arc::new(Self {
            chain: chain.to_owned(),
            store,
            events,
            standing_by: AtomicBool::new(false),
            state: Mutex::new(Passed { blocks: VecDeque::new(), seen }),
        })
    }

    /// Passes on everything committed so far, then stands by while this process's indexer leads the chain.
    pub async fn hand_over(&self) {
        if let Err(err) = self.drain(true).await {
            // The indexer's first batch then looks like a gap to subscribers' hubs, which resync on it.
            warn!(chain = %self.chain, %err, "cannot catch up the live feed before indexing");
        }
        self.standing_by.store(true, Ordering::SeqCst);
    }

    /// Relays again: this process's indexer stopped leading the chain.
    pub fn resume(&self) {
        self.standing_by.store(false, Ordering::SeqCst);
    }

    /// One look at the store; `Ok(true)` when there is more to pass on right away.
    async fn step(&self, force: bool) -> Result<bool, StoreError> {
        let mut passed = self.state.lock().await;
        passed.observe();
        if self.standing_by.load(Ordering::SeqCst) && !force {
            return Ok(false);
        }
        let known: Vec<BlockPtr> = passed.blocks.iter().copied().collect();
        let delta = self.store.feed_delta(&self.chain, &known, STEP_BLOCKS).await?;
        let Some(last) = known.last().copied() else {
            // Nothing passed on yet: feeds start at the indexed head.
            passed.blocks.extend(delta.cursor);
            return Ok(false);
        };
        if delta.lost {
            warn!(chain = %self.chain, "the index changed deeper than the relay remembers; resuming at its head");
            if let Some(cursor) = delta.cursor.filter(|c| c.number < last.number) {
                let _ = self.events.send(ChainEvent::Revert { to: cursor, from: last });
            }
            passed.observe();
            passed.blocks.clear();
            passed.blocks.extend(delta.cursor);
            return Ok(false);
        }
        if let Some(to) = delta.revert_to {
            debug!(chain = %self.chain, to = to.number, from = last.number, "relaying a rollback");
            // At least `passed.seen` listens, so sending cannot fail for want of receivers.
            let _ = self.events.send(ChainEvent::Revert { to, from: last });
            metrics::counter!("chainmux_feed_relayed_total", "chain" => self.chain.clone(), "kind" => "revert")
                .increment(1);
        }
        let more = match (delta.blocks.last(), delta.cursor) {
            (Some(newest), Some(cursor)) => newest.ptr.number < cursor.number,
            _ => false,
        };
        if !delta.blocks.is_empty() {
            metrics::counter!("chainmux_feed_relayed_total", "chain" => self.chain.clone(), "kind" => "block")
                .increment(delta.blocks.len() as u64);
            let _ = self.events.send(ChainEvent::Apply(delta.blocks.into()));
        }
        passed.observe();
        Ok(more)
    }

    /// Steps until caught up (`force`: even while standing by).
    async fn drain(&self, force: bool) -> Result<(), StoreError> {
        while self.step(force).await? {}
        Ok(())
    }

    /// [`Self::drain`] for a wake-up; an error is logged and the next wake retries.
    async fn catch_up(&self) {
        if let Err(err) = self.drain(false).await {
            warn!(chain = %self.chain, %err, "cannot read the index for the live feed; retrying");
        }
    }
}

/// Runs `relays` until `cancel`: on every notification of a committed batch or rollback, and every second.
pub fn spawn_relays(store: Store, relays: Vec<Arc<ChainRelay>>, cancel: CancellationToken) {
    if relays.is_empty() {
        return;
    }
    let by_chain: BTreeMap<String, Arc<ChainRelay>> =
        relays.into_iter().map(|r| (r.chain.clone(), r)).collect();
    let span = info_span!("feed_relay");
    tokio::spawn(
        async move {
            let mut listener = None;
            let mut listen_after = tokio::time::Instant::now();
            // A read-only standby cannot LISTEN: say so once, then keep polling quietly.
            let mut listen_failures = 0u32;
            let mut ticker = tokio::time::interval(POLL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if listener.is_none() && tokio::time::Instant::now() >= listen_after {
                    match store.feed_listener().await {
                        Ok(started) => {
                            listener = Some(started);
                            listen_failures = 0;
                        }
                        Err(err) => {
                            if listen_failures == 0 {
                                warn!(%err, "cannot listen for committed batches; polling every second");
                            } else {
                                debug!(%err, "still cannot listen for committed batches");
                            }
                            listen_failures += 1;
                            listen_after = tokio::time::Instant::now() + LISTEN_RETRY;
                        }
                    }
                }
                let notified = async {
                    match listener.as_mut() {
                        Some(listener) => Some(listener.next_chain().await),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = ticker.tick() => {
                        for relay in by_chain.values() {
                            relay.catch_up().await;
                        }
                    }
                    notified = notified => match notified {
                        Some(Ok(chain)) => {
                            if let Some(relay) = by_chain.get(&chain) {
                                relay.catch_up().await;
                            }
                        }
                        Some(Err(err)) => {
                            warn!(%err, "the batch listener failed; polling until it is back");
                            listener = None;
                            listen_after = tokio::time::Instant::now() + LISTEN_RETRY;
                        }
                        None => {}
                    },
                }
            }
        }
        .instrument(span),
    );
}
