//! `chainmux keys`: create, list and revoke the gateway's API keys, and the `[gateway]` access settings as the
//! gateway takes them.
//!
//! A key is printed once, by `create`, on stdout alone (so `KEY=$(chainmux keys create ...)` works); the store
//! keeps only its SHA-256 and its first characters, which is all `list` can show.

use std::path::{Path, PathBuf};

use chainmux_gateway::{AccessConfig, ApiKey, Budget, CorsOrigins, DEFAULT_KEY_CACHE_TTL, Limit};
use chainmux_store::{CreateApiKey, KeyLimits, NewApiKey, RevokeApiKey, Store};
use clap::Subcommand;

/// New keys tried when a generated key's prefix is taken (each try collides with odds of 1 in 2³² per key).
const PREFIX_ATTEMPTS: usize = 5;
/// Longest key name.
const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key and print it (once: only its hash is stored).
    Create {
        #[arg(long, env = "CHAINMUX_CONFIG")]
        config: PathBuf,
        /// A name for the key, unique among keys not revoked; `keys revoke` accepts it.
        #[arg(long)]
        name: Option<String>,
        /// REST requests per second (default: `[gateway] default_key_rps`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rps: Option<u32>,
        /// REST burst (default: --rps when given, else `[gateway] default_key_burst`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        burst: Option<u32>,
        /// `/rpc` requests per second (default: `[gateway] default_key_rpc_rps`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rpc_rps: Option<u32>,
        /// `/rpc` burst (default: --rpc-rps when given, else `[gateway] default_key_rpc_burst`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rpc_burst: Option<u32>,
    },
    /// List keys: prefix, name, limits, creation and revocation times (never the key).
    List {
        #[arg(long, env = "CHAINMUX_CONFIG")]
        config: PathBuf,
    },
    /// Revoke a key, named by its prefix (as `keys list` shows it) or its name.
    Revoke {
        #[arg(long, env = "CHAINMUX_CONFIG")]
        config: PathBuf,
        /// The key's prefix (`cmx_` and 8 hex digits) or name.
        key: String,
    },
}

pub(crate) async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { config, name, rps, burst, rpc_rps, rpc_burst } => {
            if let Some(name) = &name {
                check_name(name)?;
            }
            let store = connect(&config).await?;
            create(&store, name, KeyLimits { rps, burst, rpc_rps, rpc_burst }).await
        }
        KeysCommand::List { config } => {
            let config = crate::load_config(&config)?;
            let store = crate::migrated_store(&config).await?;
            list(&store, &config.gateway).await
        }
        KeysCommand::Revoke { config, key } => revoke(&connect(&config).await?, &key).await,
    }
}

/// Names are shown in tables and given on the command line: printable ASCII without spaces, and never
/// shaped like a prefix, so a name and a prefix can't be confused by `keys revoke`.
fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!("--name must be 1 to {MAX_NAME_LEN} printable ASCII characters without spaces");
    }
    if name.starts_with("cmx_") {
        anyhow::bail!("--name must not start with cmx_, which is how key prefixes start");
    }
    Ok(())
}

async fn connect(path: &Path) -> anyhow::Result<Store> {
    crate::migrated_store(&crate::load_config(path)?).await
}

async fn create(store: &Store, name: Option<String>, limits: KeyLimits) -> anyhow::Result<()> {
    for _ in 0..PREFIX_ATTEMPTS {
        let key = ApiKey::generate().map_err(|err| anyhow::anyhow!("no random source: {err}"))?;
        let new = NewApiKey { prefix: key.prefix(), hash: key.hash(), name: name.clone(), limits };
        match store.create_api_key(&new).await? {
            CreateApiKey::Created(row) => {
                println!("{}", key.expose_secret());
                eprintln!(
                    "created key {}{}; it is shown only this once: store it now",
                    row.prefix,
                    row.name.map(|n| format!(" ({n})")).unwrap_or_default()
                );
                return Ok(());
            }
            CreateApiKey::NameTaken => {
                anyhow::bail!(
                    "a key named {:?} exists; revoke it first or pick another name",
                    name.unwrap_or_default()
                )
            }
            CreateApiKey::PrefixTaken => continue,
        }
    }
    anyhow::bail!("could not find an unused key prefix in {PREFIX_ATTEMPTS} attempts")
}

/// A limit column: the key's own value, or the config's default marked `*`.
fn limit_cell(own: Option<u32>, default: u32) -> String {
    match own {
        Some(value) => value.to_string(),
        None if default == 0 => "none*".to_owned(),
        None => format!("{default}*"),
    }
}

async fn list(store: &Store, gateway: &chainmux_config::GatewayConfig) -> anyhow::Result<()> {
    let keys = store.api_keys().await?;
    println!(
        "{:<13} {:<20} {:>8} {:>8} {:>8} {:>9}  {:<20}  REVOKED",
        "PREFIX", "NAME", "RPS", "BURST", "RPC_RPS", "RPC_BURST", "CREATED"
    );
    for key in &keys {
        let limits = key.limits;
        // A burst left to default follows the key's own rate when it has one (see `chainmux_gateway`).
        let burst_default = |own_rps: Option<u32>, default: u32| own_rps.unwrap_or(default);
        println!(
            "{:<13} {:<20} {:>8} {:>8} {:>8} {:>9}  {:<20}  {}",
            key.prefix,
            key.name.as_deref().unwrap_or("-"),
            limit_cell(limits.rps, gateway.default_key_rps),
            limit_cell(limits.burst, burst_default(limits.rps, gateway.default_key_burst)),
            limit_cell(limits.rpc_rps, gateway.default_key_rpc_rps),
            limit_cell(limits.rpc_burst, burst_default(limits.rpc_rps, gateway.default_key_rpc_burst)),
            key.created_at,
            key.revoked_at.as_deref().unwrap_or("-"),
        );
    }
    if keys.iter().any(|k| {
        let l = k.limits;
        l.rps.is_none() || l.burst.is_none() || l.rpc_rps.is_none() || l.rpc_burst.is_none()
    }) {
        println!("* from the config ([gateway] default_key_*)");
    }
    Ok(())
}

async fn revoke(store: &Store, selector: &str) -> anyhow::Result<()> {
    match store.revoke_api_key(selector).await? {
        RevokeApiKey::Revoked(row) => {
            eprintln!(
                "revoked key {}{}; running gateways refuse it within {} s",
                row.prefix,
                row.name.map(|n| format!(" ({n})")).unwrap_or_default(),
                DEFAULT_KEY_CACHE_TTL.as_secs()
            );
            Ok(())
        }
        RevokeApiKey::AlreadyRevoked(row) => {
            anyhow::bail!("key {} was already revoked at {}", row.prefix, row.revoked_at.unwrap_or_default())
        }
        RevokeApiKey::NotFound => anyhow::bail!("no key has the prefix or name {selector:?}"),
        RevokeApiKey::Ambiguous(prefixes) => {
            anyhow::bail!("{selector:?} matches several keys ({}); give the prefix", prefixes.join(", "))
        }
    }
}

/// The gateway's [`AccessConfig`] from `[gateway]`.
pub(crate) fn access_config(gateway: &chainmux_config::GatewayConfig) -> AccessConfig {
    let cors = match gateway.cors_allowed_origins.as_slice() {
        [] => None,
        [any] if any == "*" => Some(CorsOrigins::Any),
        list => Some(CorsOrigins::List(list.to_vec())),
    };
    AccessConfig {
        require_api_key: gateway.require_api_key,
        anonymous: Budget {
            rest: Limit::new(gateway.anonymous_rps, gateway.anonymous_burst),
            rpc: Limit::new(gateway.anonymous_rpc_rps, gateway.anonymous_rpc_burst),
        },
        default_key: Budget {
            rest: Limit::new(gateway.default_key_rps, gateway.default_key_burst),
            rpc: Limit::new(gateway.default_key_rpc_rps, gateway.default_key_rpc_burst),
        },
        cors,
        trust_forwarded_for: gateway.trust_forwarded_for,
        key_cache_ttl: DEFAULT_KEY_CACHE_TTL,
    }
}
