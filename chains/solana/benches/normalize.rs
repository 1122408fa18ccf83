//! Solana normalization throughput on recorded mainnet blocks: JSON text → `UiConfirmedBlock` (serde) →
//! `NormalizedBlock`, the CPU work the adapter does per fetched slot.
//!
//! `cargo bench -p chainmux-solana --bench normalize [-- --seconds N]` prints, per fixture and encoding, blocks/s and
//! transactions/s for decoding alone and for decoding plus normalizing (with the SPL Token program in the
//! instruction filter, so instruction rows are built too).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use chainmux_solana::normalize::{ProgramFilter, normalize_block};
use serde_json::Value;
use solana_transaction_status_client_types::UiConfirmedBlock;

const FIXTURES: [(&str, u64); 4] = [
    ("block-100000000.json", 100_000_000),
    ("block-100000000-jsonParsed.json", 100_000_000),
    ("block-195545750-jsonParsed.json", 195_545_750),
    ("block-241043141-jsonParsed.json", 241_043_141),
];

fn main() {
    let mut seconds = 2.0_f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            seconds = args.next().and_then(|s| s.parse().ok()).unwrap_or(seconds);
        }
    }
    let budget = Duration::from_secs_f64(seconds);
    let filter =
        ProgramFilter::from_base58(["TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"]).expect("program id");
    println!(
        "{:<34} {:>6} {:>14} {:>14} {:>16}",
        "fixture", "txs", "decode blk/s", "+norm blk/s", "+norm tx/s"
    );
    for (name, slot) in FIXTURES {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Some recordings keep their JSON-RPC envelope.
        let value: Value = serde_json::from_str(&text).expect("fixture is JSON");
        let text = match value.get("result") {
            Some(result) => result.to_string(),
            None => text,
        };
        let block: UiConfirmedBlock = serde_json::from_str(&text).expect("a getBlock result");
        let txs = block.transactions.as_ref().map_or(0, Vec::len);

        let decode = rate(budget, || {
            black_box(serde_json::from_str::<UiConfirmedBlock>(&text).expect("decodes"));
        });
        let full = rate(budget, || {
            let block: UiConfirmedBlock = serde_json::from_str(&text).expect("decodes");
            black_box(normalize_block(slot, &block, &filter).expect("normalizes"));
        });
        println!("{name:<34} {txs:>6} {decode:>14.0} {full:>14.0} {:>16.0}", full * txs as f64);
    }
}

/// Calls of `work` per second over `budget`.
fn rate(budget: Duration, mut work: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut calls = 0u64;
    while started.elapsed() < budget {
        work();
        calls += 1;
    }
    calls as f64 / started.elapsed().as_secs_f64()
}
