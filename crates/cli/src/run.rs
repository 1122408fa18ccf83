//! `chainmux run`: start-up, serving, and graceful shutdown.

use anyhow::Context;
use chainmux_config::Config;
use std::collections::BTreeMap;
use std::sync::Arc;

use chainmux_core::ChainEvent;
use chainmux_gateway::{AppState, ChainHandle, ChainRelay, GatewayConfig, MethodPolicy};
use chainmux_indexer::{Indexer, IndexerConfig, LeadershipConfig};
use chainmux_store::Store;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::chains;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Roles {
    pub(crate) indexer: bool,
    pub(crate) gateway: bool,
}

pub(crate) async fn run(config: Config, roles: Roles) -> anyhow::Result<()> {
    // Installed before any metric is recorded, so start-up metrics are kept too.
    chainmux_gateway::metrics_handle();
    let store = Store::connect(config.database.url.expose_secret(), config.database.max_connections)
        .await
        .context("connecting to the database (database.url)")?;
    // A gateway-only replica may read from a streaming replica of the database, which cannot be migrated: it checks
    // that the primary did instead. Indexers write, so they need the primary.
    if store.is_read_only().await.context("inspecting the database")? {
        if roles.indexer {
            anyhow::bail!(
                "the database is read-only (a replica?): the indexer writes, so point it at the primary, or run \
                 this replica with --no-indexer"
            );
        }
        store.check_migrated().await.context("checking the read-only database's schema")?;
        info!("the database is read-only: serving only, without migrating");
    } else {
        store.migrate().await.context("applying migrations")?;
    }

    let shutdown = CancellationToken::new();
    let chains = config.chains.iter().map(chains::build).collect::<anyhow::Result<Vec<_>>>()?;
    for chain in &chains {
        chain.pool.verify_all().await;
        chain.pool.spawn_monitor(shutdown.child_token());
        for upstream in chain.pool.statuses() {
            info!(chain = %chain.spec.name, upstream = %upstream.name, state = upstream.state, reason = ?upstream.reason, "upstream checked");
        }
    }

    let mut indexers = JoinSet::new();
    if roles.indexer {
        crate::progress::spawn_renderer(shutdown.child_token());
    }
    // One event channel per chain for the life of the process: the indexers of successive leadership terms send
    // into it, and so does the relay of what other replicas index; the gateway's live feeds and cache subscribe.
    let chain_events: Vec<(String, broadcast::Sender<ChainEvent>)> =
        chains.iter().map(|c| (c.spec.name.clone(), broadcast::channel(CHAIN_EVENT_BUFFER).0)).collect();
    let relays: BTreeMap<String, Arc<ChainRelay>> = if roles.gateway {
        chain_events
            .iter()
            .map(|(name, events)| (name.clone(), ChainRelay::new(store.clone(), name, events.clone())))
            .collect()
    } else {
        BTreeMap::new()
    };
    let replica = config.cluster.replica_id.clone().unwrap_or_else(default_replica_id);
    if roles.indexer {
        info!(%replica, "competing for the leadership of every chain");
        for ((chain, chain_config), (_, events)) in chains.iter().zip(&config.chains).zip(&chain_events) {
            let term = Term {
                network: chain.network.clone(),
                contracts: chain.contracts.clone(),
                events: events.clone(),
                relay: relays.get(&chain.spec.name).cloned(),
                config: IndexerConfig {
                    start_block: chain_config.start_block,
                    batch_size: chain_config.batch_size,
                    poll_interval: chain_config.poll_interval(),
                    max_reorg_depth: chain_config.max_reorg_depth,
                    finality_confirmations: chain_config.finality_confirmations,
                    progress_board: crate::progress::board(),
                    ..IndexerConfig::default()
                },
            };
            let leadership =
                LeadershipConfig { replica: replica.clone(), poll: config.cluster.leader_poll() };
            let name = chain.spec.name.clone();
            let cancel = shutdown.child_token();
            let store = store.clone();
            indexers.spawn(async move {
                let led = chainmux_indexer::lead(&store, &name, &leadership, cancel, |fenced, cancel| {
                    term.clone().run(fenced, cancel)
                })
                .await;
                (name, led)
            });
        }
    }

    let gateway = if roles.gateway {
        let handles = chains
            .iter()
            .map(|c| ChainHandle { spec: c.spec.clone(), pool: c.pool.clone() })
            .collect::<Vec<_>>();
        let gateway_config = GatewayConfig {
            max_body_bytes: config.gateway.max_body_bytes,
            max_batch_size: config.gateway.max_batch_size,
            max_subscriptions_per_connection: config.gateway.max_subscriptions_per_connection,
            max_page_size: u32::try_from(config.gateway.max_page_size).unwrap_or(u32::MAX),
            min_block_wait: config.gateway.min_block_wait(),
            max_sse_streams: config.gateway.max_sse_streams,
            max_ws_connections: config.gateway.max_ws_connections,
            max_live_connections_per_client: config.gateway.max_live_connections_per_client,
            access: crate::keys::access_config(&config.gateway),
            rpc_cache: chainmux_gateway::RpcCacheLimits {
                max_entries: config.gateway.rpc_cache_max_entries,
                max_bytes: config.gateway.rpc_cache_max_bytes,
                unfinalized_ttl: config.gateway.rpc_cache_unfinalized_ttl(),
                ..chainmux_gateway::RpcCacheLimits::default()
            },
            ..GatewayConfig::default()
        };
        let mut state = AppState::new(store.clone(), handles, gateway_config);
        if let Some(url) = &config.redis.url {
            state = state.with_redis(chainmux_gateway::RedisSettings {
                url: url.expose_secret().to_owned(),
                rate_limits: config.redis.rate_limits,
                rpc_cache: config.redis.rpc_cache,
                timeout: config.redis.timeout(),
            })?;
        }
        for chain in &config.chains {
            let methods = &chain.methods;
            let policy = MethodPolicy::new(chain.kind, &methods.allow, methods.deny.as_deref()).map_err(
                |(pattern, err)| anyhow::anyhow!("chains {:?} methods {pattern:?}: {err}", chain.name),
            )?;
            state = state.with_method_policy(&chain.name, policy);
            let threshold = chainmux_gateway::HealthThreshold {
                max_lag_blocks: chain.health_max_lag_blocks(),
                max_lag: std::time::Duration::from_secs(chain.health_max_lag_seconds),
                start_block: chain.start_block,
            };
            state = state.with_health_threshold(&chain.name, threshold);
        }
        for (chain, events) in &chain_events {
            state = state.with_chain_events(chain, events.clone());
        }
        chainmux_gateway::spawn_relays(
            store.clone(),
            relays.values().cloned().collect(),
            shutdown.child_token(),
        );
        let listen = config.gateway.listen_addr().context("gateway.listen")?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding gateway.listen {listen}"))?;
        info!(%listen, "gateway listening");
        let router = chainmux_gateway::router(state.clone());
        let stop = shutdown.clone();
        Some((
            state,
            tokio::spawn(async move {
                // With the peer address, which anonymous rate limits are keyed by.
                let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
                axum::serve(listener, service).with_graceful_shutdown(stop.cancelled_owned()).await
            }),
        ))
    } else {
        None
    };

    let drain_delay = config.gateway.drain_delay();
    let mut failed = false;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => {
                info!("shutdown requested; draining");
                if let Some((state, _)) = &gateway {
                    state.start_draining();
                    tokio::time::sleep(drain_delay).await;
                }
                break;
            }
            Some(joined) = indexers.join_next(), if !indexers.is_empty() => {
                failed |= report(joined);
                if indexers.is_empty() && gateway.is_none() {
                    warn!("every indexer stopped and no gateway is running; exiting");
                    break;
                }
            }
        }
    }
    shutdown.cancel();
    while let Some(joined) = indexers.join_next().await {
        failed |= report(joined);
    }
    if let Some((_, server)) = gateway {
        server.await.context("gateway task")?.context("serving HTTP")?;
    }
    info!("stopped");
    if failed && !roles.gateway {
        anyhow::bail!("an indexer failed");
    }
    Ok(())
}

/// Events a slow subscriber of a chain's channel may fall behind by before it is told it lagged.
const CHAIN_EVENT_BUFFER: usize = 1024;

/// What one leadership term of a chain runs: its contract entries' catch-up, then the indexer, writing through the
/// term's fenced store.
#[derive(Clone)]
struct Term {
    network: Arc<dyn chainmux_core::Network>,
    contracts: Option<chains::Contracts>,
    events: broadcast::Sender<ChainEvent>,
    /// This process's relay of the chain's feed, which stands by while the term runs.
    relay: Option<Arc<ChainRelay>>,
    config: IndexerConfig,
}

impl Term {
    async fn run(self, store: Store, cancel: CancellationToken) -> anyhow::Result<()> {
        if let Some(relay) = &self.relay {
            relay.hand_over().await;
        }
        let result = self.index(store, &cancel).await;
        if let Some(relay) = &self.relay {
            relay.resume();
        }
        result
    }

    async fn index(&self, store: Store, cancel: &CancellationToken) -> anyhow::Result<()> {
        let mut indexer = Indexer::new(self.network.clone(), store.clone(), self.config.clone())
            .with_event_sender(self.events.clone());
        // Contract entries catch up before the indexer moves on, so each block is decoded exactly once.
        if let Some(contracts) = self.contracts.clone() {
            let prepared = chainmux_evm::catch_up::prepare(
                &contracts.network,
                &store,
                contracts.sources,
                self.config.start_block,
                contracts.options,
                cancel,
            )
            .await;
            match prepared {
                Ok(decoder) => indexer = indexer.with_decoder(Box::new(decoder)),
                Err(chainmux_evm::catch_up::CatchUpError::Cancelled { .. }) => return Ok(()),
                Err(err) => return Err(anyhow::Error::new(err)),
            }
        }
        indexer.run(cancel.clone()).await.map_err(anyhow::Error::new)
    }
}

/// This replica's name when `cluster.replica_id` is not set: the host name (a Kubernetes pod's name) and the
/// process id, unique among replicas sharing a database.
fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "chainmux".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Logs how an indexer task ended; `true` if it failed.
fn report(joined: Result<(String, anyhow::Result<()>), tokio::task::JoinError>) -> bool {
    match joined {
        Ok((_, Ok(()))) => false,
        Ok((chain, Err(err))) => {
            error!(%chain, err = %format!("{err:#}"), "indexer ended with an error");
            true
        }
        Err(err) => {
            error!(%err, "indexer task panicked");
            true
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
