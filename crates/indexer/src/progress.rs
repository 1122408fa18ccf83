//! Backfill progress for a terminal: each chain's indexer reports its position after every batch to a shared
//! [`ProgressBoard`], which a display (the binary's, when stderr is a terminal) renders as one bar per chain.
//! Without a board the indexer logs a periodic "indexing progress" line instead.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where one chain's indexer is, as of its last written batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainProgress {
    /// First block this run indexes (the start block on a fresh chain, else the one after the cursor).
    pub first: u64,
    /// Last block written.
    pub indexed: u64,
    /// Latest head seen.
    pub head: u64,
    /// Blocks per second since this run started.
    pub rate: f64,
}

impl ChainProgress {
    /// Blocks written by this run and blocks this run has to write in all (both grow as the head moves).
    pub fn done_total(&self) -> (u64, u64) {
        let count = |last: u64| last.saturating_add(1).saturating_sub(self.first);
        (count(self.indexed), count(self.head.max(self.indexed)))
    }

    /// Time left at the current rate; `None` when nothing was written yet.
    pub fn eta(&self) -> Option<Duration> {
        let remaining = self.head.saturating_sub(self.indexed);
        if remaining == 0 {
            return Some(Duration::ZERO);
        }
        // `try_`: a tiny rate against a huge (or bogus) head would overflow a `Duration`, and this runs in the
        // indexer's loop.
        (self.rate > 0.0).then(|| Duration::try_from_secs_f64(remaining as f64 / self.rate).ok()).flatten()
    }
}

/// The chains' progress, shared between the indexers and a display. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct ProgressBoard {
    chains: Arc<Mutex<BTreeMap<String, ChainProgress>>>,
}

impl ProgressBoard {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ChainProgress>> {
        // The map stays consistent even if a holder panicked: every update is one insert.
        self.chains.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn update(&self, chain: &str, progress: ChainProgress) {
        self.lock().insert(chain.to_owned(), progress);
    }

    /// Every chain that reported, by name.
    pub fn snapshot(&self) -> Vec<(String, ChainProgress)> {
        self.lock().iter().map(|(name, p)| (name.clone(), *p)).collect()
    }
}

/// Tracks the rate of one indexer run and reports it.
#[derive(Debug)]
pub(crate) struct RateTracker {
    since: Instant,
    first: u64,
}

impl RateTracker {
    pub(crate) fn new(first: u64) -> Self {
        Self { since: Instant::now(), first }
    }

    pub(crate) fn progress(&self, indexed: u64, head: u64) -> ChainProgress {
        let mut progress = ChainProgress { first: self.first, indexed, head, rate: 0.0 };
        progress.rate = progress.done_total().0 as f64 / self.since.elapsed().as_secs_f64().max(1e-3);
        progress
    }
}

/// A rate in blocks per second, three significant digits at most: `0.5`, `12.3`, `456`, `7.9k`, `12k`.
pub fn format_rate(blocks_per_s: f64) -> String {
    match blocks_per_s {
        r if !r.is_finite() || r <= 0.0 => "0".to_owned(),
        r if r < 100.0 => format!("{r:.1}"),
        r if r < 999.5 => format!("{r:.0}"),
        r if r < 9_995.0 => format!("{:.1}k", r / 1000.0),
        r => format!("{:.0}k", r / 1000.0),
    }
}

/// A duration as the two largest units: `45s`, `3m05s`, `2h07m`, `3d04h`.
pub fn format_eta(eta: Duration) -> String {
    let s = eta.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m{:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// One chain's line: name, bar, blocks done / total, percent, rate and ETA; "following the head" once caught up.
pub fn render_line(chain: &str, name_width: usize, progress: &ChainProgress, bar_width: usize) -> String {
    let (done, total) = progress.done_total();
    let mut line = format!("{chain:<name_width$} ");
    if progress.indexed >= progress.head {
        let _ = write!(line, "following the head at {}", progress.indexed);
        return line;
    }
    let fraction = if total == 0 { 1.0 } else { done as f64 / total as f64 };
    let filled = ((fraction * bar_width as f64).floor() as usize).min(bar_width);
    let _ = write!(
        line,
        "[{}{}] {done}/{total} blocks {:>3}% {} blk/s ETA {}",
        "#".repeat(filled),
        "-".repeat(bar_width - filled),
        (fraction * 100.0).floor() as u64,
        format_rate(progress.rate),
        progress.eta().map_or_else(|| "--".to_owned(), format_eta),
    );
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_keep_three_significant_digits() {
        assert_eq!(format_rate(0.0), "0");
        assert_eq!(format_rate(f64::NAN), "0");
        assert_eq!(format_rate(0.54), "0.5");
        assert_eq!(format_rate(12.34), "12.3");
        assert_eq!(format_rate(99.96), "100.0");
        assert_eq!(format_rate(456.4), "456");
        assert_eq!(format_rate(7_890.0), "7.9k");
        assert_eq!(format_rate(12_345.0), "12k");
    }

    #[test]
    fn etas_show_the_two_largest_units() {
        assert_eq!(format_eta(Duration::ZERO), "0s");
        assert_eq!(format_eta(Duration::from_secs(45)), "45s");
        assert_eq!(format_eta(Duration::from_secs(185)), "3m05s");
        assert_eq!(format_eta(Duration::from_secs(2 * 3_600 + 7 * 60 + 59)), "2h07m");
        assert_eq!(format_eta(Duration::from_secs(3 * 86_400 + 4 * 3_600 + 1)), "3d04h");
    }

    #[test]
    fn eta_is_remaining_over_rate() {
        let p = ChainProgress { first: 101, indexed: 400, head: 1_000, rate: 50.0 };
        assert_eq!(p.done_total(), (300, 900));
        assert_eq!(ChainProgress { first: 0, ..p }.done_total(), (401, 1_001), "block 0 counts");
        assert_eq!(p.eta(), Some(Duration::from_secs(12)));
        assert_eq!(ChainProgress { rate: 0.0, ..p }.eta(), None);
        assert_eq!(ChainProgress { indexed: 1_000, ..p }.eta(), Some(Duration::ZERO));
        // A bogus head and a crawl: no `Duration` holds it, and none is made up.
        assert_eq!(ChainProgress { head: u64::MAX, rate: 1e-300, ..p }.eta(), None);
        assert_eq!(ChainProgress { indexed: u64::MAX, head: u64::MAX, ..p }.done_total().0, u64::MAX - 101);
    }

    #[test]
    fn a_line_shows_bar_counts_rate_and_eta() {
        let p = ChainProgress { first: 1, indexed: 250, head: 1_000, rate: 125.0 };
        assert_eq!(render_line("eth", 5, &p, 10), "eth   [##--------] 250/1000 blocks  25% 125 blk/s ETA 6s");
        let unknown = ChainProgress { rate: 0.0, indexed: 0, ..p };
        assert!(render_line("eth", 3, &unknown, 4).ends_with("[----] 0/1000 blocks   0% 0 blk/s ETA --"));
        let caught_up = ChainProgress { indexed: 1_000, ..p };
        assert_eq!(render_line("eth", 3, &caught_up, 10), "eth following the head at 1000");
    }

    #[test]
    fn the_board_keeps_the_latest_report_per_chain_in_name_order() {
        let board = ProgressBoard::new();
        let shared = board.clone();
        let p = ChainProgress { first: 0, indexed: 1, head: 9, rate: 1.0 };
        shared.update("solana", p);
        shared.update("eth", p);
        shared.update("eth", ChainProgress { indexed: 5, ..p });
        let names: Vec<(String, u64)> = board.snapshot().into_iter().map(|(n, p)| (n, p.indexed)).collect();
        assert_eq!(names, vec![("eth".to_owned(), 5), ("solana".to_owned(), 1)]);
    }
}
