//! Loading and validation of the chainmux configuration file.
//!
//! A config is a TOML file describing the database, the gateway listener and the chains
//! to index with their upstream RPC endpoints. [`load`] turns it into a validated
//! [`Config`] in seven steps: parse the TOML; apply `CHAINMUX_*` environment overrides;
//! expand `${VAR}` references in strings; fill in the defaults that depend on a chain's
//! `kind`; deserialize with key paths in type errors; check every semantic rule; and read
//! the ABI files of `[[chains.contracts]]` and check the entries against them, reporting
//! the violations of the last two steps all at once. Every error names the file and the
//! key path, so an operator can fix a config from the message alone.
//!
//! Database and upstream URLs carry credentials (passwords, provider API keys). They are
//! held in [`DatabaseUrl`] and [`UpstreamUrl`], whose `Debug`, `Display` and `Serialize`
//! print redacted forms, so a config can be logged or printed ([`Config::redacted`])
//! without leaking them.
//!
//! # Environment overrides
//!
//! A variable `CHAINMUX_<PATH>` sets the key at `<PATH>`, whose segments are separated by
//! `__` and matched case-insensitively, with `-` in a key matching `_` in the name.
//! Elements of `chains`, `upstreams`, `programs` and `contracts` are addressed by `name` or
//! by index:
//!
//! ```text
//! CHAINMUX_DATABASE__URL=postgres://...                    database.url
//! CHAINMUX_CHAINS__LOCAL__START_BLOCK=5                    chains[name = "local"].start_block
//! CHAINMUX_CHAINS__0__START_BLOCK=5                        chains[0].start_block
//! CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_A__URL=http://  ...upstreams[name = "anvil-a"].url
//! CHAINMUX_CHAINS__LOCAL__UPSTREAMS__ANVIL_A__RPC__RATE_LIMIT_RPS=25
//!                                                  ...upstreams[name = "anvil-a"].rpc.rate_limit_rps
//! CHAINMUX_CHAINS__LOCAL__CONTRACTS__TOKEN__START_BLOCK=100
//!                                                  ...contracts[name = "token"].start_block
//! ```
//!
//! Values that parse as an integer, float or `true`/`false` get that type; anything else
//! is a string. Missing tables are created; addressing a missing array element is an
//! error. [`RESERVED_ENV_VARS`] (the CLI's own `CHAINMUX_CONFIG`, `CHAINMUX_LOG`,
//! `CHAINMUX_LOG_FORMAT`) are skipped, and so is any variable without `__` that names no
//! top-level section, since such a variable cannot address a setting and belongs to some
//! other tool (e.g. `CHAINMUX_TOOLS_DIR`).
//!
//! # Per-upstream overrides
//!
//! `[chains.rpc]` holds call-level settings of a chain's pool and the defaults of the
//! per-upstream ones; an upstream's optional `[chains.upstreams.rpc]` table
//! ([`UpstreamRpcOverrides`]) overrides the latter, and
//! [`ChainConfig::upstream_policy`] resolves an upstream's effective
//! [`UpstreamPolicy`]. Rules that relate two keys (e.g. `hedge_delay_min_ms <=
//! hedge_delay_max_ms`) are checked on each upstream's effective values.
//!
//! # Chain families
//!
//! `kind = "evm"` chains need `chain_id` and may set `use_block_receipts`, `fetch`,
//! `logs_address_chunk`, `logs_topic_only_above` and `[[chains.contracts]]`
//! ([`ContractConfig`]); `kind = "solana"` chains may set `genesis_hash`, `commitment` and
//! `[[chains.programs]]` ([`ProgramConfig`]). A key of the other family is an error at that
//! key. Solana chains default to `batch_size = 50` and `poll_interval_ms = 400`; block
//! counts mean slots there.
//!
//! # Contracts and their ABI files
//!
//! A `[[chains.contracts]]` entry names a JSON ABI file (or a solc/Hardhat/Foundry artefact
//! with an `"abi"` array), relative to the config file's directory. [`load`] reads it and
//! checks the entry against it: the `events` it selects exist, the factory's event parses
//! or exists, and its `parameter` is an `address` input. The results are kept in the entry
//! ([`ContractConfig::abi_json`], [`ContractConfig::selected_events`],
//! [`ContractConfig::factory_event`]). [`Config::validate`] reads no files, so a config
//! built in code must resolve its entries itself ([`ContractConfig::load_abi`],
//! [`ContractConfig::resolve_with`]) before those accessors are used.
//!
//! # Interpolation
//!
//! After overrides, `${NAME}` in any string value is replaced by the environment variable
//! `NAME`, and `${NAME:-default}` falls back to `default` when `NAME` is unset or empty.
//! `$${` produces a literal `${`. An unset variable without default is an error.

mod contracts;
mod error;
mod interpolate;
mod overrides;
mod redact;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

pub use contracts::{AddressList, ContractConfig, FactoryConfig};
pub use error::{ConfigError, Problem, Result};
pub use overrides::RESERVED_ENV_VARS;
pub use redact::{redact_database_url, redact_url};
pub use schema::{
    Base58Id, Base58IdError, ChainConfig, ChainKind, ClusterConfig, Commitment, Config, DatabaseConfig,
    DatabaseUrl, EvmAddress, EvmAddressError, FetchMode, GatewayConfig, MethodsConfig, ProgramConfig,
    RedisConfig, RpcConfig, TelemetryConfig, UpstreamConfig, UpstreamPolicy, UpstreamRpcOverrides,
    UpstreamUrl,
};

/// Reads, resolves and validates the config file at `path` against the process
/// environment. Errors name the file as `path` displays. Relative ABI paths of
/// `[[chains.contracts]]` are relative to the file's directory.
pub fn load(path: &Path) -> Result<Config> {
    let origin = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::Io { file: origin.clone(), source })?;
    // `std::env::vars` panics on non-UTF-8 entries; such variables cannot be meant for
    // us (our names are ASCII and values must be TOML strings), so skip them.
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .collect();
    load_in(&text, &origin, base_dir(path), &env)
}

/// Resolves and validates config `text` against `env`, which stands in for the process
/// environment for both overrides and interpolation. `origin` names the text in errors
/// (normally its file path); relative ABI paths of `[[chains.contracts]]` are relative to
/// its directory part, i.e. to the current directory when `origin` has none.
pub fn load_with_env(text: &str, origin: &str, env: &BTreeMap<String, String>) -> Result<Config> {
    load_in(text, origin, base_dir(Path::new(origin)), env)
}

/// The directory relative paths in the config file at `path` start from.
fn base_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// [`load_with_env`] with the directory that relative ABI paths start from.
fn load_in(text: &str, origin: &str, base_dir: &Path, env: &BTreeMap<String, String>) -> Result<Config> {
    let file = || origin.to_owned();

    let mut table: toml::Table = text.parse().map_err(|err: toml::de::Error| {
        let (line, column) = err.span().map_or((0, 0), |span| line_column(text, span.start));
        ConfigError::Syntax { file: file(), line, column, message: err.message().trim_end().to_owned() }
    })?;

    let applied = overrides::apply(&mut table, env).map_err(|err| ConfigError::Override {
        file: file(),
        var: err.var,
        message: err.message,
    })?;

    interpolate::apply(&mut table, env)
        .map_err(|problems| ConfigError::Interpolation { file: file(), problems })?;

    schema::fill_kind_defaults(&mut table);

    let mut config: Config = serde_path_to_error::deserialize(table).map_err(|err| {
        let key = match err.path().to_string() {
            root if root == "." => String::new(),
            key => key,
        };
        // A bad value put there by an override is best fixed at the variable, not the file.
        let set_by = applied.iter().find(|a| is_prefix_path(&a.key, &key)).map(|a| a.var.clone());
        let message = with_hint(&key, err.inner().message());
        ConfigError::Type { file: file(), key, message, set_by }
    })?;

    // The rules first, then what needs the ABI files; all problems are reported together.
    let mut problems = config.problems();
    problems.extend(contracts::resolve_all(&mut config, base_dir));
    if problems.is_empty() { Ok(config) } else { Err(ConfigError::Invalid { file: file(), problems }) }
}

/// `message` about the value at `key`, plus where a call-level `[chains.rpc]` key
/// belongs when it was put into an upstream's `[chains.upstreams.rpc]` table.
fn with_hint(key: &str, message: &str) -> String {
    let call_level = key.rsplit_once(".rpc.").filter(|(parent, name)| {
        parent.contains(".upstreams[") && schema::CALL_LEVEL_RPC_KEYS.contains(name)
    });
    match call_level {
        Some((_, name)) if message.starts_with("unknown field") => {
            format!("{message}; {name} applies to the whole chain: set it in [chains.rpc]")
        }
        _ => message.to_owned(),
    }
}

/// Whether `prefix` is `path` or one of its ancestors. Not the reverse: an error at a
/// table (e.g. a missing field) is not caused by an override of one of its keys.
fn is_prefix_path(prefix: &str, path: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// 1-based line and character column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
