//! The `chainmux` binary: parses the command line, loads the config and wires the store, the chains' upstream
//! pools, the indexers and the gateway together. The only crate that uses `anyhow`.

mod chains;
mod db;
mod keys;
#[cfg(feature = "otlp")]
mod otlp;
mod progress;
mod run;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "chainmux", version, about = "Multi-chain blockchain indexer and RPC gateway")]
struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, env = "CHAINMUX_LOG_FORMAT", default_value = "pretty")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Index the configured chains and serve the gateway.
    Run {
        #[arg(long, env = "CHAINMUX_CONFIG")]
        config: PathBuf,
        /// Serve only; another process indexes.
        #[arg(long, conflicts_with = "no_gateway")]
        no_indexer: bool,
        /// Index only; no HTTP listener.
        #[arg(long)]
        no_gateway: bool,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, env = "CHAINMUX_CONFIG")]
        config: PathBuf,
    },
    /// Validate the config and print it resolved, with secrets redacted.
    CheckConfig {
        #[arg(long, env = "CHAINMUX_CONFIG")]
        config: PathBuf,
    },
    /// Database maintenance: partitioning of the chain-data tables.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
    /// Create, list and revoke the gateway's API keys.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Show chains, upstreams and recent incidents of a running chainmux (`/v1/status`) as tables.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
}

/// What must live until the end of `main`: with the `otlp` feature, the exporter flushes its last spans on drop.
#[derive(Default)]
struct TelemetryGuard {
    #[cfg(feature = "otlp")]
    _otlp: Option<otlp::Guard>,
}

/// `progress`: whether this command may show progress bars (when stderr is a terminal); `otlp_endpoint`:
/// `[telemetry] otlp_endpoint` of `run`'s config.
fn init_tracing(
    format: LogFormat,
    progress: bool,
    otlp_endpoint: Option<&str>,
) -> anyhow::Result<TelemetryGuard> {
    use tracing_subscriber::prelude::*;

    if progress {
        progress::init(matches!(format, LogFormat::Json));
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHAINMUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Plain stderr unless progress bars are shown, then log lines go above them.
    let fmt = tracing_subscriber::fmt::layer().with_writer(progress::LogWriter);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_current_span(true).boxed(),
        LogFormat::Pretty => fmt.compact().boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otlp")]
    {
        let (otlp, guard) = match otlp_endpoint {
            Some(endpoint) => otlp::layer(endpoint).map(|(layer, guard)| (Some(layer), Some(guard)))?,
            None => (None, None),
        };
        registry.with(otlp).init();
        Ok(TelemetryGuard { _otlp: guard })
    }
    #[cfg(not(feature = "otlp"))]
    {
        registry.init();
        if otlp_endpoint.is_some() {
            tracing::warn!(
                "telemetry.otlp_endpoint is set, but this chainmux was built without the `otlp` feature: no export"
            );
        }
        Ok(TelemetryGuard::default())
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<chainmux_config::Config> {
    // The error already names the file and every offending key, one per line.
    chainmux_config::load(path).map_err(|err| anyhow::anyhow!("{err}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest is built without a bundled crypto backend; ring is the process default. `Err` = already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // `run` reads its config before logging starts: `[telemetry]` configures the logging itself.
    let run_config = match &cli.command {
        Command::Run { config, .. } => Some(load_config(config)),
        _ => None,
    };
    let otlp_endpoint =
        run_config.as_ref().and_then(|c| c.as_ref().ok()).and_then(|c| c.telemetry.otlp_endpoint.clone());
    let _telemetry = match init_tracing(cli.log_format, run_config.is_some(), otlp_endpoint.as_deref()) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run { config, no_indexer, no_gateway } => match run_config
            .unwrap_or_else(|| load_config(&config))
        {
            Ok(config) => run::run(config, run::Roles { indexer: !no_indexer, gateway: !no_gateway }).await,
            Err(err) => Err(err),
        },
        Command::Migrate { config } => migrate(&config).await,
        Command::CheckConfig { config } => load_config(&config).map(|config| {
            print!("{}", config.redacted());
            eprintln!("config OK");
        }),
        Command::Db { command } => db::run(command).await,
        Command::Keys { command } => keys::run(command).await,
        Command::Status { url } => status::print(&url).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(path: &std::path::Path) -> anyhow::Result<()> {
    migrated_store(&load_config(path)?).await?;
    eprintln!("migrations applied");
    Ok(())
}

/// A small connection pool for the one-shot commands (`migrate`, `keys`, `db`), with the schema migrated: their
/// tables may not exist yet on a database no `chainmux run` has used.
pub(crate) async fn migrated_store(
    config: &chainmux_config::Config,
) -> anyhow::Result<chainmux_store::Store> {
    let store = chainmux_store::Store::connect(config.database.url.expose_secret(), 2)
        .await
        .context("connecting to the database (database.url)")?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}
