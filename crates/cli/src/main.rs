//! The `chainmux` binary: parses the command line, loads the config and wires the store, the chains' upstream
//! pools, the indexers and the gateway together. The only crate that uses `anyhow`.

mod chains;
mod keys;
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
    /// Create, list and revoke the gateway's API keys.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Show chains and upstreams of a running chainmux as a table.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CHAINMUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(true).init(),
        LogFormat::Pretty => builder.compact().init(),
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
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Run { config, no_indexer, no_gateway } => match load_config(&config) {
            Ok(config) => run::run(config, run::Roles { indexer: !no_indexer, gateway: !no_gateway }).await,
            Err(err) => Err(err),
        },
        Command::Migrate { config } => migrate(&config).await,
        Command::CheckConfig { config } => load_config(&config).map(|config| {
            print!("{}", config.redacted());
            eprintln!("config OK");
        }),
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
    let config = load_config(path)?;
    let store = chainmux_store::Store::connect(config.database.url.expose_secret(), 2).await?;
    store.migrate().await.context("applying migrations")?;
    eprintln!("migrations applied");
    Ok(())
}
