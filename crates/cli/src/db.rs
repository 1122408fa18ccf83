//! `chainmux db`: database maintenance. `partition` gives a chain partitions of its own in every chain-data table
//! (optionally by block range, and then safe to re-run from cron to keep ranges ahead of the head); `partitions`
//! lists them.

use std::path::PathBuf;

use chainmux_store::Store;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Move a chain's rows out of the shared DEFAULT partitions into partitions of its own, in one transaction.
    /// Idempotent; with --block-range, re-run it (e.g. daily) to create the ranges ahead of the head.
    Partition {
        #[arg(long, env = "CHAINMUX_CONFIG")]
        config: PathBuf,
        /// The chain, as named in the config.
        #[arg(long)]
        chain: String,
        /// Sub-partition the chain's partitions by ranges of this many blocks (may be left out once set).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
        block_range: Option<u64>,
    },
    /// List the partitions of the chain-data tables with estimated row counts and sizes.
    Partitions {
        #[arg(long, env = "CHAINMUX_CONFIG")]
        config: PathBuf,
    },
}

pub(crate) async fn run(command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Partition { config, chain, block_range } => {
            let config = crate::load_config(&config)?;
            if !config.chains.iter().any(|c| c.name == chain) {
                let names: Vec<&str> = config.chains.iter().map(|c| c.name.as_str()).collect();
                anyhow::bail!("--chain {chain:?} is not in the config (chains: {})", names.join(", "));
            }
            let store = crate::migrated_store(&config).await?;
            let report = store.partition_chain(&chain, block_range).await?;
            for change in &report.changes {
                println!("{change}");
            }
            match (report.changes.is_empty(), report.block_range) {
                (true, _) => eprintln!("chain {chain}: partitions already in place, nothing to do"),
                (false, Some(range)) => eprintln!("chain {chain}: partitioned by ranges of {range} blocks"),
                (false, None) => eprintln!("chain {chain}: partitioned"),
            }
            Ok(())
        }
        DbCommand::Partitions { config } => {
            let store = crate::migrated_store(&crate::load_config(&config)?).await?;
            list(&store).await
        }
    }
}

async fn list(store: &Store) -> anyhow::Result<()> {
    let partitions = store.partitions().await?;
    let width =
        partitions.iter().map(|p| p.partition.len() + 2 * (p.level.max(1) as usize - 1)).max().unwrap_or(0);
    println!("{:<13} {:<width$} {:>14} {:>10}  BOUNDS", "TABLE", "PARTITION", "ROWS (EST.)", "SIZE");
    for p in &partitions {
        let name = format!("{}{}", "  ".repeat(p.level.max(1) as usize - 1), p.partition);
        let rows = p.rows_estimate.map_or_else(|| "-".to_owned(), |rows| rows.to_string());
        println!("{:<13} {name:<width$} {rows:>14} {:>10}  {}", p.table, size(p.bytes), p.bounds);
    }
    Ok(())
}

/// Bytes in the largest binary unit that keeps the number at or above 1.
fn size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
