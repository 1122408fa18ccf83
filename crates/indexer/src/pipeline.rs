use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chainmux_core::{
    BlockDecoder, BlockPtr, ChainEvent, Heads, Network, NetworkError, NormalizedBlock, default_confirmations,
};
use chainmux_store::{Store, StoreError};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::progress::{ProgressBoard, RateTracker, format_eta, format_rate};
use crate::status::ErrorStatus;

#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// First block indexed when the chain has no cursor yet.
    pub start_block: u64,
    /// Most blocks per fetched and written batch.
    pub batch_size: u64,
    /// How often the head is polled once the index has caught up.
    pub poll_interval: Duration,
    /// Backoff bounds after a failed fetch or write.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Interval of the progress line in the logs.
    pub progress_interval: Duration,
    /// Where to report progress after every batch for a terminal display; when set, the periodic progress line
    /// is not logged (the display shows it).
    pub progress_board: Option<ProgressBoard>,
    /// Deepest reorg rolled back automatically; a deeper one stops the chain's loop instead.
    pub max_reorg_depth: u64,
    /// Finality by confirmations: blocks this deep below the head count as finalized, whatever the upstreams'
    /// `finalized` tag says. `None`: the tag where upstreams have it, else the chain's usual depth
    /// ([`chainmux_core::default_confirmations`]).
    pub finality_confirmations: Option<u64>,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        Self {
            start_block: 0,
            batch_size: 100,
            poll_interval: Duration::from_secs(1),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            progress_interval: Duration::from_secs(10),
            progress_board: None,
            max_reorg_depth: 128,
            finality_confirmations: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// A reorg deeper than the configured limit. Nothing was rolled back and nothing of the new branch written.
    #[error(
        "chain {chain}: reorg deeper than max_reorg_depth {limit}: the indexed blocks {} down to {} are no longer \
         canonical; the index stops here rather than rewrite that much history",
        cursor.number, cursor.number.saturating_sub(*limit)
    )]
    ReorgTooDeep { chain: String, cursor: BlockPtr, limit: u64 },
    /// A reorg reaching below the chain's finalized head: the upstreams contradict finality.
    #[error(
        "chain {chain}: reorg back to block {ancestor} would undo finalized block {finalized}; the index stops \
         here rather than rewrite finalized history"
    )]
    ReorgBelowFinality { chain: String, ancestor: u64, finalized: u64 },
    /// The fork reaches below the first indexed block: there is no stored common ancestor.
    #[error("chain {chain}: the fork reaches below the first indexed block {first}")]
    ForkBelowStart { chain: String, first: u64 },
    #[error("chain {chain}: {source}")]
    Network { chain: String, source: NetworkError },
    #[error("chain {chain}: {source}")]
    Store { chain: String, source: StoreError },
}

/// Indexes one chain.
pub struct Indexer {
    network: Arc<dyn Network>,
    store: Store,
    config: IndexerConfig,
    /// Latest head seen by the fetcher, for progress reports.
    head: AtomicU64,
    events: broadcast::Sender<ChainEvent>,
    /// Derives decoded events and factory children from each batch before it is written.
    decoder: Option<Box<dyn BlockDecoder>>,
    /// The current error as recorded in the store, for every gateway replica's status view.
    status: ErrorStatus,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer")
            .field("chain", &self.network.spec().name)
            .field("config", &self.config)
            .finish()
    }
}

/// Batches in flight between the fetcher and the writer: enough to keep both busy, bounded for memory.
const PIPELINE_DEPTH: usize = 2;
/// Events a slow subscriber may fall behind by before it is told it lagged.
const EVENT_BUFFER: usize = 1024;

/// What a parent-hash mismatch turned out to be.
enum Fork {
    /// The canonical chain still contains the indexed head: the batch came from an inconsistent view
    /// (a lagging or forked upstream, a race); fetch again.
    Stale,
    /// Rolled back to this common ancestor.
    Reverted(BlockPtr),
}

impl Indexer {
    pub fn new(network: Arc<dyn Network>, store: Store, config: IndexerConfig) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self {
            network,
            store,
            config,
            head: AtomicU64::new(0),
            events,
            decoder: None,
            status: ErrorStatus::default(),
        }
    }

    /// Sends the indexer's events into `events` instead of a channel of its own: one channel per chain outlives
    /// the indexers of successive leadership terms, so live feeds subscribe once.
    pub fn with_event_sender(mut self, events: broadcast::Sender<ChainEvent>) -> Self {
        self.events = events;
        self
    }

    /// Runs `decoder` over every batch, in chain order, right before it is written, so its rows (decoded events,
    /// factory children) commit with the batch; it is told about every rollback.
    pub fn with_decoder(mut self, decoder: Box<dyn BlockDecoder>) -> Self {
        self.decoder = Some(decoder);
        self
    }

    fn chain(&self) -> &str {
        &self.network.spec().name
    }

    /// The indexer's events (`Apply` after every written batch, `Revert` after every rollback), for live feeds and
    /// caches. Subscribe before [`Indexer::run`].
    pub fn subscribe(&self) -> broadcast::Receiver<ChainEvent> {
        self.events.subscribe()
    }

    /// The sending side of [`Indexer::subscribe`]'s channel, for consumers that subscribe later and many times
    /// (the gateway's live feeds subscribe once per client).
    pub fn event_sender(&self) -> broadcast::Sender<ChainEvent> {
        self.events.clone()
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.config.retry_min)
            .with_max_delay(self.config.retry_max)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// Runs until `cancel` fires (then returns `Ok` after the batch being written is committed) or until an error
    /// that waiting cannot fix.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), IndexerError> {
        let span = info_span!("indexer", chain = %self.chain());
        self.run_inner(cancel).instrument(span).await
    }

    async fn run_inner(mut self, cancel: CancellationToken) -> Result<(), IndexerError> {
        let chain = self.chain().to_owned();
        // The decoder's state follows the written blocks, so only the writer (this loop) touches it.
        let mut decoder = self.decoder.take();
        let store_err = |source| IndexerError::Store { chain: chain.clone(), source };
        self.store.register_chain(self.network.spec()).await.map_err(store_err)?;
        let mut cursor = self.store.cursor(&chain).await.map_err(store_err)?;
        info!(next = cursor.map_or(self.config.start_block, |c| c.number + 1), cursor = ?cursor.map(|c| c.number), "indexer starting");

        register_series(&chain);
        let this = Arc::new(self);
        let mut progress = Progress::new(cursor.map_or(this.config.start_block, |c| c.number + 1));
        // Each round runs a fetcher from just above the cursor; a fork ends the round, and the next one starts
        // from wherever the fork resolution left the cursor.
        loop {
            let next = cursor.map_or(this.config.start_block, |c| c.number + 1);
            let (batches, mut incoming) = mpsc::channel(PIPELINE_DEPTH);
            let fetch_cancel = cancel.child_token();
            let fetcher = tokio::spawn({
                let this = Arc::clone(&this);
                let cancel = fetch_cancel.clone();
                async move { this.fetch_loop(next, batches, cancel).await }.in_current_span()
            });

            let outcome = loop {
                let blocks = tokio::select! {
                    _ = cancel.cancelled() => break Ok(None),
                    batch = incoming.recv() => match batch {
                        Some(blocks) => blocks,
                        None => break Ok(None),
                    },
                };
                let forked = cursor.zip(blocks.first()).filter(|(c, first)| first.parent != Some(*c));
                if let Some((at, first)) = forked {
                    debug!(cursor = at.number, parent = ?first.parent, "batch does not continue the cursor");
                    break this.resolve_fork(at, &cancel).await.map(Some);
                }
                let mut blocks = blocks;
                if let Some(decoder) = decoder.as_mut() {
                    decoder.decode(&mut blocks);
                }
                match this.write(cursor, blocks).await {
                    Ok(Some(written)) => {
                        cursor = Some(written);
                        progress.advance(
                            &chain,
                            written.number,
                            this.head.load(Ordering::Relaxed),
                            &this.config,
                        );
                    }
                    // A range of skipped slots: nothing to write, the cursor stays on the last block.
                    Ok(None) => {}
                    Err(err) => break Err(err),
                }
            };
            fetch_cancel.cancel();
            drop(incoming);
            let fetched = match fetcher.await {
                Ok(result) => result,
                // A panic in the fetcher is a bug: surface it instead of ending the loop as if asked to stop.
                Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                Err(_) => Ok(()),
            };
            match outcome {
                Ok(Some(Fork::Reverted(ancestor))) => {
                    if let Some(decoder) = decoder.as_mut() {
                        decoder.revert(ancestor.number);
                    }
                    cursor = Some(ancestor);
                }
                Ok(Some(Fork::Stale)) => {}
                Ok(None) => {
                    if let Err(err) = &fetched {
                        this.status.stopped(&this.store, &chain, err).await;
                    }
                    return fetched;
                }
                Err(err) => {
                    error!(%err, "indexer stopped");
                    this.status.stopped(&this.store, &chain, &err).await;
                    return Err(err);
                }
            }
            if cancel.is_cancelled() {
                return Ok(());
            }
        }
    }

    /// Decides what a batch that does not continue `cursor` means, and rolls back when the chain reorganised.
    ///
    /// Only a canonical block at the cursor's height with another hash is a reorg: a chain that is merely shorter
    /// (a lagging node, a rollback not yet rebuilt) is waited out, so a lagging upstream never causes a rollback.
    /// The walk back compares stored hashes with canonical ones down to the common ancestor, bounded by
    /// `max_reorg_depth` and by the finalized head.
    async fn resolve_fork(&self, cursor: BlockPtr, cancel: &CancellationToken) -> Result<Fork, IndexerError> {
        let chain = self.chain().to_owned();
        let network_err = |source| IndexerError::Network { chain: chain.clone(), source };
        let store_err = |source| IndexerError::Store { chain: chain.clone(), source };
        match self.canonical_ptr(cursor.number, cancel).await.map_err(network_err)? {
            Some(canonical) if canonical == cursor => {
                // The indexed head is still canonical: the batch came from a view that disagrees; pause briefly
                // so a lagging upstream does not make this a busy loop.
                tokio::time::sleep(self.config.retry_min).await;
                return Ok(Fork::Stale);
            }
            // No block at the cursor's height. On a chain that skips heights, once the chain has moved past it
            // that is proof the cursor's block lost its fork (its slot is skipped on the canonical one); anywhere
            // else the chain is merely shorter here (a lagging view) and is waited out.
            None if self.network.skips_heights() && cursor.number < self.head.load(Ordering::Relaxed) => {}
            None => {
                tokio::time::sleep(self.config.poll_interval).await;
                return Ok(Fork::Stale);
            }
            Some(_) => {}
        }

        let mut below = cursor;
        let ancestor = loop {
            let Some(height) = below.number.checked_sub(1) else {
                return Err(IndexerError::ForkBelowStart { chain, first: 0 });
            };
            // The next stored block down: heights a chain skipped have none.
            let Some(stored) = self.store.block_at_or_below(&chain, height).await.map_err(store_err)? else {
                return Err(IndexerError::ForkBelowStart { chain, first: below.number });
            };
            if cursor.number - stored.number > self.config.max_reorg_depth {
                return Err(IndexerError::ReorgTooDeep { chain, cursor, limit: self.config.max_reorg_depth });
            }
            let canonical = self.canonical_ptr(stored.number, cancel).await.map_err(network_err)?;
            if canonical == Some(stored) {
                break stored;
            }
            below = stored;
        };
        let finalized = self
            .store
            .chain_state(&chain)
            .await
            .map_err(store_err)?
            .and_then(|s| s.heads)
            .and_then(|h| h.finalized);
        if let Some(finalized) = finalized.filter(|f| ancestor.number < *f) {
            return Err(IndexerError::ReorgBelowFinality { chain, ancestor: ancestor.number, finalized });
        }
        let depth = cursor.number - ancestor.number;
        let removed = self.store.revert_to(&chain, cursor, ancestor).await.map_err(store_err)?;
        warn!(
            depth,
            from = cursor.number,
            to = ancestor.number,
            removed,
            "reorg: rolled back to the common ancestor"
        );
        metrics::counter!("chainmux_indexer_reorgs_total", "chain" => chain.clone()).increment(1);
        metrics::histogram!("chainmux_indexer_reorg_depth", "chain" => chain.clone()).record(depth as f64);
        metrics::gauge!("chainmux_indexed_head", "chain" => chain).set(ancestor.number as f64);
        // No subscriber is fine: the event only matters to whoever listens.
        let _ = self.events.send(ChainEvent::Revert { to: ancestor, from: cursor });
        Ok(Fork::Reverted(ancestor))
    }

    /// The canonical block at `height`, retrying transient upstream errors until `cancel`.
    async fn canonical_ptr(
        &self,
        height: u64,
        cancel: &CancellationToken,
    ) -> Result<Option<BlockPtr>, NetworkError> {
        let mut delays = self.backoff();
        loop {
            match self.network.block_ptr(height).await {
                Ok(ptr) => {
                    self.status.succeeded(&self.store, self.chain(), "fork").await;
                    return Ok(ptr);
                }
                Err(err) if err.is_retryable() && !cancel.is_cancelled() => {
                    metrics::counter!("chainmux_indexer_errors_total", "chain" => self.chain().to_owned(), "stage" => "fork")
                        .increment(1);
                    self.status.failed(&self.store, self.chain(), "fork", &err).await;
                    let delay = delays.next().unwrap_or(self.config.retry_max);
                    warn!(%err, height, retry_in_ms = delay.as_millis() as u64, "cannot read the canonical block; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Writes one batch on top of `cursor`, retrying transient database errors; returns the new cursor, or `None`
    /// for an empty batch (a range of skipped heights), which writes nothing.
    async fn write(
        &self,
        cursor: Option<BlockPtr>,
        blocks: Vec<NormalizedBlock>,
    ) -> Result<Option<BlockPtr>, IndexerError> {
        let chain = self.chain();
        let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
            return Ok(None);
        };
        let (first, last) = (first.ptr, last.ptr);
        // One per batch (INFO: a batch is many blocks, so this is cheap); `rows` is recorded once written. The
        // write's retries and its "batch written" line are inside it.
        let span =
            info_span!("batch", chain, from = first.number, to = last.number, rows = tracing::field::Empty);
        self.write_batch(cursor, blocks, first, last, &span).instrument(span.clone()).await.map(Some)
    }

    /// [`Indexer::write`] of a non-empty batch from `first` to `last`, in its `span`.
    async fn write_batch(
        &self,
        cursor: Option<BlockPtr>,
        blocks: Vec<NormalizedBlock>,
        first: BlockPtr,
        last: BlockPtr,
        batch: &tracing::Span,
    ) -> Result<BlockPtr, IndexerError> {
        let chain = self.chain();
        let started = Instant::now();
        let mut delays = self.backoff();
        loop {
            match self.store.write_batch(chain, cursor, &blocks).await {
                Ok(stats) => {
                    batch.record("rows", stats.rows());
                    metrics::histogram!("chainmux_indexer_batch_seconds", "chain" => chain.to_owned())
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("chainmux_indexer_blocks_total", "chain" => chain.to_owned())
                        .increment(blocks.len() as u64);
                    metrics::histogram!("chainmux_indexer_batch_blocks", "chain" => chain.to_owned())
                        .record(blocks.len() as f64);
                    metrics::gauge!("chainmux_indexed_head", "chain" => chain.to_owned())
                        .set(last.number as f64);
                    tracing::debug!(
                        from = first.number,
                        to = last.number,
                        rows = stats.rows(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "batch written"
                    );
                    self.status.succeeded(&self.store, chain, "write").await;
                    let head = last;
                    // No subscriber is fine: the event only matters to whoever listens.
                    let _ = self.events.send(ChainEvent::Apply(blocks.into()));
                    return Ok(head);
                }
                Err(StoreError::Database(err)) => {
                    let delay = delays.next().unwrap_or(self.config.retry_max);
                    metrics::counter!("chainmux_indexer_errors_total", "chain" => chain.to_owned(), "stage" => "write")
                        .increment(1);
                    warn!(%err, retry_in_ms = delay.as_millis() as u64, "batch write failed; retrying");
                    self.status.failed(&self.store, chain, "write", &err).await;
                    tokio::time::sleep(delay).await;
                }
                Err(source) => return Err(IndexerError::Store { chain: chain.to_owned(), source }),
            }
        }
    }

    /// Produces consecutive batches from `next` on, following the head.
    async fn fetch_loop(
        &self,
        mut next: u64,
        batches: mpsc::Sender<Vec<NormalizedBlock>>,
        cancel: CancellationToken,
    ) -> Result<(), IndexerError> {
        let chain = self.chain().to_owned();
        let mut head: Option<u64> = None;
        let mut heads_checked: Option<Instant> = None;
        let mut delays = self.backoff();
        let failed = |stage: &'static str| {
            metrics::counter!("chainmux_indexer_errors_total", "chain" => chain.clone(), "stage" => stage)
                .increment(1)
        };
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            let stale = heads_checked.is_none_or(|at| at.elapsed() >= self.config.poll_interval);
            if head.is_none_or(|h| next > h) || stale {
                match self.network.heads().await {
                    Ok(heads) => {
                        let heads = self.with_finality(heads);
                        head = Some(heads.latest);
                        self.head.store(heads.latest, Ordering::Relaxed);
                        heads_checked = Some(Instant::now());
                        metrics::gauge!("chainmux_chain_head", "chain" => chain.clone())
                            .set(heads.latest as f64);
                        if let Err(err) = self.store.set_heads(&chain, &heads).await {
                            warn!(%err, "cannot record heads");
                        }
                        self.status.succeeded(&self.store, &chain, "heads").await;
                    }
                    Err(err) => {
                        failed("heads");
                        self.status.failed(&self.store, &chain, "heads", &err).await;
                        if !self.wait_after(&err, &mut delays, &cancel).await {
                            return Err(IndexerError::Network { chain, source: err });
                        }
                        continue;
                    }
                }
            }
            let Some(head) = head.filter(|h| next <= *h) else {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(self.config.poll_interval) => continue,
                }
            };
            let end = head.min(next.saturating_add(self.config.batch_size.max(1) - 1));
            let fetch_span = info_span!("fetch", chain = %chain, from = next, to = end);
            match self.network.fetch(next..=end).instrument(fetch_span).await {
                Ok(blocks) => {
                    delays = self.backoff();
                    self.status.succeeded(&self.store, &chain, "fetch").await;
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        sent = batches.send(blocks) => if sent.is_err() { return Ok(()) },
                    }
                    next = end + 1;
                }
                Err(err) => {
                    failed("fetch");
                    self.status.failed(&self.store, &chain, "fetch", &err).await;
                    if !self.wait_after(&err, &mut delays, &cancel).await {
                        return Err(IndexerError::Network { chain, source: err });
                    }
                }
            }
        }
    }

    /// The heads with finality applied: confirmations when configured (or when upstreams have no `finalized`
    /// tag), and `safe` never below `finalized`.
    fn with_finality(&self, mut heads: Heads) -> Heads {
        let by_depth = |depth: u64| heads.latest.saturating_sub(depth);
        match self.config.finality_confirmations {
            Some(depth) => heads.finalized = Some(by_depth(depth)),
            None if heads.finalized.is_none() => {
                heads.finalized = Some(by_depth(default_confirmations(self.network.spec().chain_id)));
            }
            None => {}
        }
        heads.safe = heads.safe.max(heads.finalized);
        heads
    }

    /// Sleeps before retrying a retryable error; `false` when the error is not retryable.
    async fn wait_after(
        &self,
        err: &NetworkError,
        delays: &mut impl Iterator<Item = Duration>,
        cancel: &CancellationToken,
    ) -> bool {
        if !err.is_retryable() {
            return false;
        }
        let delay = delays.next().unwrap_or(self.config.retry_max);
        warn!(%err, retry_in_ms = delay.as_millis() as u64, "chain request failed; retrying");
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        true
    }
}

/// Creates the chain's indexer counters at 0, so the first reorg or error after a start is an increase to
/// `increase()`/`rate()` in alert rules (a series that first appears at 1 has no increase).
fn register_series(chain: &str) {
    metrics::counter!("chainmux_indexer_reorgs_total", "chain" => chain.to_owned()).increment(0);
    // Registered without a sample: the exporter then shows its buckets at 0 (the deep-reorg alert's base).
    let _ = metrics::histogram!("chainmux_indexer_reorg_depth", "chain" => chain.to_owned());
    metrics::counter!("chainmux_indexer_blocks_total", "chain" => chain.to_owned()).increment(0);
    for stage in ["heads", "fetch", "write", "fork"] {
        metrics::counter!("chainmux_indexer_errors_total", "chain" => chain.to_owned(), "stage" => stage)
            .increment(0);
    }
}

/// Progress reports, so a long backfill shows where it is and how fast it goes: to the terminal display's board
/// after every batch when there is one, else as a periodic log line.
struct Progress {
    rate: RateTracker,
    last_report: Instant,
}

impl Progress {
    /// `first`: the first block this run indexes.
    fn new(first: u64) -> Self {
        Self { rate: RateTracker::new(first), last_report: Instant::now() }
    }

    fn advance(&mut self, chain: &str, indexed: u64, head: u64, config: &IndexerConfig) {
        let progress = self.rate.progress(indexed, head);
        if let Some(board) = &config.progress_board {
            board.update(chain, progress);
            return;
        }
        if self.last_report.elapsed() < config.progress_interval {
            return;
        }
        self.last_report = Instant::now();
        let remaining = head.saturating_sub(indexed);
        info!(
            chain,
            indexed,
            head,
            remaining,
            blocks_per_s = format_rate(progress.rate),
            eta_s = progress.eta().map(|eta| eta.as_secs()),
            eta = progress.eta().map_or_else(|| "--".to_owned(), format_eta),
            "indexing progress"
        );
    }
}
