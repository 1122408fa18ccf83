//! The chain registry: the one place that maps a config's `kind` to an adapter.

use std::sync::Arc;

use chainmux_config::ChainConfig;
use chainmux_core::{ChainKind, ChainSpec, Network};
use chainmux_evm::{EvmNetwork, EvmOptions};
use chainmux_rpc::{Pool, PoolConfig, UpstreamConfig};

/// A configured chain, wired: its upstream pool (shared by indexer and gateway) and its adapter.
pub(crate) struct Chain {
    pub(crate) spec: ChainSpec,
    pub(crate) pool: Arc<Pool>,
    pub(crate) network: Arc<dyn Network>,
}

pub(crate) fn build(config: &ChainConfig) -> anyhow::Result<Chain> {
    let pool_config = PoolConfig {
        request_timeout: config.rpc.request_timeout(),
        max_attempts: config.rpc.max_attempts as usize,
        backoff_min: config.rpc.backoff_min(),
        backoff_max: config.rpc.backoff_max(),
        probe_interval: config.rpc.probe_interval(),
    };
    let upstreams = config
        .upstreams
        .iter()
        .map(|u| {
            let url = url::Url::parse(u.url.expose_secret())
                .map_err(|err| anyhow::anyhow!("upstream {}: invalid URL: {err}", u.name))?;
            Ok(UpstreamConfig { name: u.name.clone(), url })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    match config.kind {
        ChainKind::Evm => {
            let spec =
                ChainSpec { name: config.name.clone(), kind: ChainKind::Evm, chain_id: config.chain_id };
            let pool = Arc::new(EvmNetwork::pool(&spec, upstreams, pool_config));
            let options = EvmOptions {
                fetch_concurrency: config.fetch_concurrency,
                use_block_receipts: config.use_block_receipts,
            };
            let network = Arc::new(EvmNetwork::new(spec.clone(), Arc::clone(&pool), options));
            Ok(Chain { spec, pool, network })
        }
    }
}
