//! The chain registry: the one place that maps a config's `kind` to an adapter.

use std::sync::Arc;

use chainmux_config::ChainConfig;
use chainmux_core::{ChainKind, ChainSpec, Network};
use chainmux_evm::catch_up::CatchUpOptions;
use chainmux_evm::{ContractSource, EvmNetwork, EvmOptions, FetchMode, SourceTarget};
use chainmux_rpc::{BreakerConfig, HedgeDelay, Pool, PoolConfig, RateLimit, UpstreamConfig, UpstreamPolicy};
use chainmux_solana::{Commitment, ProgramFilter, SolanaNetwork, SolanaOptions};

/// A configured chain, wired: its upstream pool (shared by indexer and gateway) and its adapter.
pub(crate) struct Chain {
    pub(crate) spec: ChainSpec,
    pub(crate) pool: Arc<Pool>,
    pub(crate) network: Arc<dyn Network>,
    /// The chain's `[[chains.contracts]]` entries, when it has any (EVM only).
    pub(crate) contracts: Option<Contracts>,
}

/// What the indexer of an EVM chain needs to decode its configured contracts.
#[derive(Clone)]
pub(crate) struct Contracts {
    pub(crate) network: Arc<EvmNetwork>,
    pub(crate) sources: Vec<Arc<ContractSource>>,
    pub(crate) options: CatchUpOptions,
}

pub(crate) fn build(config: &ChainConfig) -> anyhow::Result<Chain> {
    let rpc = &config.rpc;
    let pool_config = PoolConfig {
        deadline: rpc.deadline(),
        max_attempts: rpc.max_attempts as usize,
        backoff_min: rpc.backoff_min(),
        backoff_max: rpc.backoff_max(),
        probe_interval: rpc.probe_interval(),
        hedge: rpc.hedge,
        max_hedges: rpc.max_hedges as usize,
        hysteresis: rpc.hysteresis,
        probe_share: rpc.probe_share,
    };
    let upstreams = config
        .upstreams
        .iter()
        .map(|u| {
            let url = url::Url::parse(u.url.expose_secret())
                .map_err(|err| anyhow::anyhow!("upstream {}: invalid URL: {err}", u.name))?;
            let policy = upstream_policy(&config.upstream_policy(u));
            Ok(UpstreamConfig { name: u.name.clone(), url, policy })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    match config.kind {
        ChainKind::Evm => {
            let chain_id = config.chain_id.unwrap_or_default();
            let spec = ChainSpec { name: config.name.clone(), kind: ChainKind::Evm, chain_id };
            let pool = Arc::new(EvmNetwork::pool(&spec, upstreams, pool_config));
            let options = EvmOptions {
                fetch_concurrency: config.fetch_concurrency,
                use_block_receipts: config.use_block_receipts(),
            };
            let fetch = match config.fetch() {
                chainmux_config::FetchMode::Full => FetchMode::Full,
                chainmux_config::FetchMode::Logs => FetchMode::Logs,
            };
            let network = EvmNetwork::new(spec.clone(), Arc::clone(&pool), options).with_fetch_mode(fetch);
            let network = Arc::new(network);
            let sources = contract_sources(config)?;
            let contracts = (!sources.is_empty()).then(|| Contracts {
                network: Arc::clone(&network),
                sources,
                options: CatchUpOptions {
                    address_chunk: config.logs_address_chunk(),
                    topic_only_above: config.logs_topic_only_above(),
                    ..CatchUpOptions::default()
                },
            });
            Ok(Chain { spec, pool, network, contracts })
        }
        ChainKind::Solana => {
            // Solana clusters are identified by their genesis hash, checked by the pool.
            let spec = ChainSpec { name: config.name.clone(), kind: ChainKind::Solana, chain_id: 0 };
            let commitment = match config.commitment() {
                chainmux_config::Commitment::Confirmed => Commitment::Confirmed,
                chainmux_config::Commitment::Finalized => Commitment::Finalized,
            };
            let genesis_hash = config.genesis_hash.map(|hash| hash.to_string());
            let pool = Arc::new(SolanaNetwork::pool(&spec, genesis_hash, commitment, upstreams, pool_config));
            let options = SolanaOptions {
                commitment,
                fetch_concurrency: config.fetch_concurrency,
                programs: ProgramFilter::new(config.program_ids()),
            };
            let network = Arc::new(SolanaNetwork::new(spec.clone(), Arc::clone(&pool), options));
            Ok(Chain { spec, pool, network, contracts: None })
        }
    }
}

/// The chain's `[[chains.contracts]]` entries compiled for decoding (the config has resolved their ABIs).
fn contract_sources(config: &ChainConfig) -> anyhow::Result<Vec<Arc<ContractSource>>> {
    config
        .contracts
        .iter()
        .map(|contract| {
            let target = match (&contract.factory, contract.factory_event()) {
                (Some(factory), Some(event)) => SourceTarget::Factory {
                    address: factory.address.to_bytes().into(),
                    event: event.clone(),
                    parameter: factory.parameter.clone(),
                },
                _ => SourceTarget::Addresses(contract.addresses().into_iter().map(Into::into).collect()),
            };
            let start_block = contract.start_block_or(config.start_block);
            let source = ContractSource::new(
                contract.name.clone(),
                contract.selected_events(),
                target,
                start_block,
            )
            .map_err(|err| anyhow::anyhow!("chain {}: contract {}: {err}", config.name, contract.name))?;
            let source = source.with_abi(contract.abi_json());
            let source =
                if contract.start_block.is_none() { source.with_inherited_start_block() } else { source };
            Ok(Arc::new(source))
        })
        .collect()
}

/// The config's resolved per-upstream policy, in the pool's terms.
fn upstream_policy(policy: &chainmux_config::UpstreamPolicy) -> UpstreamPolicy {
    UpstreamPolicy {
        request_timeout: policy.request_timeout,
        max_lag_blocks: policy.max_lag_blocks,
        hedge_delay: HedgeDelay {
            fixed: policy.hedge_delay,
            quantile: policy.hedge_quantile,
            min: policy.hedge_delay_min,
            max: policy.hedge_delay_max,
        },
        breaker: BreakerConfig {
            failures: policy.breaker_failures,
            window: policy.breaker_window,
            cooldown: policy.breaker_cooldown,
            successes: policy.breaker_successes,
        },
        rate_limit: policy
            .rate_limit_rps
            .map(|per_second| RateLimit { per_second, burst: policy.rate_limit_burst.unwrap_or(per_second) }),
        rate_limit_cooldown: policy.rate_limit_cooldown,
    }
}
