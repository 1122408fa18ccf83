//! The HTTP face of chainmux (axum): REST queries over the indexed data, a JSON-RPC proxy onto the chains' upstream
//! pools, health and readiness probes, Prometheus metrics.
//!
//! Every REST route serves every chain family in that family's own spelling (`0x` hex on EVM, base58 on Solana);
//! `/logs`, `/events` and `/contracts` (the ABI-decoded events of `[[chains.contracts]]` entries) exist on EVM
//! chains and `/instructions` on Solana chains only.
//!
//! The JSON-RPC proxy keeps answers that can never change (finalized Solana blocks and transactions, …) in a
//! bounded in-memory cache; the `cache_policy` module decides what qualifies per chain family. Each chain's
//! [`MethodPolicy`] says which methods it forwards at all, and identical reads in flight share one upstream call
//! (the `coalesce` module).
//!
//! Routers are built by [`router`] from an [`AppState`]; the binary serves it, tests drive it with `oneshot`.
//! `GET /openapi.json` describes every route (the `openapi` module), generated from the handlers and response types.

mod auth;
mod cache_policy;
mod coalesce;
mod consistency;
mod error;
mod event_filter;
mod finality;
mod follow;
mod health;
mod live_slots;
mod metrics_layer;
mod openapi;
mod params;
mod relay;
mod render;
mod routes;
mod rpc_cache;
mod rpc_policy;
mod shared;
mod sse;
mod status_page;
mod subscriptions;
mod ws;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{MethodRouter, get, post};
use chainmux_core::{ChainEvent, ChainSpec};
use chainmux_rpc::Pool;
use chainmux_store::Store;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::broadcast;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

pub use auth::{AccessConfig, ApiKey, Budget, CorsOrigins, DEFAULT_KEY_CACHE_TTL, Limit};
pub use error::AppError;
pub use health::HealthThreshold;
pub use relay::{ChainRelay, spawn_relays};
pub use rpc_cache::RpcCacheLimits;
pub use rpc_policy::{DEFAULT_EVM_DENY, MethodPattern, MethodPolicy, PatternError};
pub use shared::{RedisSettings, SharedStateError};

/// Gateway limits from the config.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Most elements of one JSON-RPC batch.
    pub max_batch_size: usize,
    /// Most `eth_subscribe` subscriptions open at once on one WebSocket.
    pub max_subscriptions_per_connection: usize,
    /// Largest `limit` of a REST page.
    pub max_page_size: u32,
    /// `limit` when the request gives none.
    pub default_page_size: u32,
    /// Longest a request with `min_block=N` waits for the index to reach `N`.
    pub min_block_wait: Duration,
    /// Most live feeds (`…/stream`, Server-Sent Events) open at once; more are refused with 503.
    pub max_sse_streams: usize,
    /// Most WebSocket connections open at once; more upgrades are refused with 503.
    pub max_ws_connections: usize,
    /// Most WebSockets and live feeds together one client (an API key, or an IP sending none) keeps open; more are
    /// refused with 429.
    pub max_live_connections_per_client: usize,
    /// API keys, rate limits and CORS; open by default (see [`AccessConfig`]).
    pub access: AccessConfig,
    /// Bounds and unfinalized TTL of the JSON-RPC response cache.
    pub rpc_cache: RpcCacheLimits,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_batch_size: 100,
            max_subscriptions_per_connection: 100,
            max_page_size: 1000,
            default_page_size: 100,
            min_block_wait: Duration::from_secs(10),
            max_sse_streams: 1000,
            max_ws_connections: 10_000,
            max_live_connections_per_client: 100,
            access: AccessConfig::default(),
            rpc_cache: RpcCacheLimits::default(),
        }
    }
}

/// A chain the gateway serves: its identity and the upstream pool shared with the indexer.
#[derive(Debug, Clone)]
pub struct ChainHandle {
    pub spec: ChainSpec,
    pub pool: Arc<Pool>,
}

#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    /// Each served chain's JSON-RPC method policy; a chain's family default until
    /// [`AppState::with_method_policy`] sets another.
    methods: Arc<BTreeMap<String, MethodPolicy>>,
    /// The indexer's events of each chain indexed in this process ([`AppState::with_chain_events`]), for live
    /// feeds and cache eviction. A chain without one (gateway-only process) has no live feed.
    chain_events: Arc<BTreeMap<String, broadcast::Sender<ChainEvent>>>,
    /// Each chain's `/v1/chains/{chain}/health` limits; [`HealthThreshold::default`] until
    /// [`AppState::with_health_threshold`] sets others.
    health_limits: Arc<BTreeMap<String, HealthThreshold>>,
    /// State shared with other replicas through Redis ([`AppState::with_redis`]); `None`: this replica's own only.
    shared: Option<Arc<shared::Shared>>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    chains: BTreeMap<String, ChainHandle>,
    config: GatewayConfig,
    draining: AtomicBool,
    /// Turns true with `draining`: ends the live feeds, which would otherwise keep graceful shutdown waiting.
    drained: tokio::sync::watch::Sender<bool>,
    metrics: PrometheusHandle,
    rpc_cache: rpc_cache::RpcCache,
    /// The heads the cache policy decides with, per EVM chain (see the `finality` module).
    finality: BTreeMap<String, finality::ChainFinality>,
    /// Upstream calls of `/rpc` reads in flight, shared by identical requests.
    coalescer: coalesce::Coalescer<rpc_cache::CacheKey, routes::Upstreamed>,
    /// Key cache and rate limiters.
    access: auth::Access,
    /// One permit per open live feed, so their number stays bounded.
    sse_slots: Arc<tokio::sync::Semaphore>,
    /// One permit per open WebSocket.
    ws_slots: Arc<tokio::sync::Semaphore>,
    /// WebSockets and live feeds per client.
    live_slots: Arc<live_slots::LiveSlots>,
    /// Each chain's `eth_subscribe` hub, started by its first subscriber.
    hubs: std::sync::Mutex<BTreeMap<String, Arc<subscriptions::Hub>>>,
    /// Chain states just read, reused by REST requests arriving right after.
    recent_states: consistency::RecentStates,
    /// Indexing rate, reorgs and head history per chain, and recent incidents, for `/v1/status`.
    health: health::Trackers,
}

impl AppState {
    pub fn new(store: Store, chains: Vec<ChainHandle>, config: GatewayConfig) -> Self {
        let methods =
            chains.iter().map(|c| (c.spec.name.clone(), MethodPolicy::default_for(c.spec.kind))).collect();
        let chains: BTreeMap<String, ChainHandle> =
            chains.into_iter().map(|c| (c.spec.name.clone(), c)).collect();
        let rpc_cache = rpc_cache::RpcCache::new(config.rpc_cache);
        let finality = chains
            .values()
            .filter(|c| c.spec.kind == chainmux_core::ChainKind::Evm)
            .map(|c| (c.spec.name.clone(), finality::ChainFinality::default()))
            .collect();
        let access = auth::Access::new(config.access.clone());
        let sse_slots = Arc::new(tokio::sync::Semaphore::new(
            config.max_sse_streams.min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let ws_slots = Arc::new(tokio::sync::Semaphore::new(
            config.max_ws_connections.min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let health = health::Trackers::new(chains.keys());
        let live_slots = live_slots::LiveSlots::new(config.max_live_connections_per_client);
        let inner = Inner {
            store,
            chains,
            config,
            draining: AtomicBool::new(false),
            drained: tokio::sync::watch::channel(false).0,
            metrics: metrics_handle(),
            rpc_cache,
            finality,
            coalescer: coalesce::Coalescer::default(),
            access,
            sse_slots,
            ws_slots,
            live_slots,
            hubs: std::sync::Mutex::default(),
            recent_states: consistency::RecentStates::default(),
            health,
        };
        Self {
            inner: Arc::new(inner),
            methods: Arc::new(methods),
            chain_events: Arc::default(),
            health_limits: Arc::default(),
            shared: None,
        }
    }

    /// Shares rate limits (and, if `settings.rpc_cache`, finalized JSON-RPC answers) with the other replicas
    /// through Redis, falling back to this replica's own state whenever Redis is down. Connects in the
    /// background, so it never waits for Redis; must run inside a Tokio runtime.
    pub fn with_redis(mut self, settings: RedisSettings) -> Result<Self, SharedStateError> {
        self.shared = Some(shared::Shared::start(settings)?);
        Ok(self)
    }

    fn shared(&self) -> Option<&Arc<shared::Shared>> {
        self.shared.as_ref()
    }

    /// Feeds chain `chain`'s indexer events (`Indexer::event_sender`) to the gateway's live feeds and caches.
    #[must_use]
    pub fn with_chain_events(mut self, chain: &str, events: broadcast::Sender<ChainEvent>) -> Self {
        Arc::make_mut(&mut self.chain_events).insert(chain.to_owned(), events);
        self
    }

    /// A new subscription to chain `chain`'s indexer events; `None` when this process does not index it.
    fn subscribe_chain(&self, chain: &str) -> Option<broadcast::Receiver<ChainEvent>> {
        self.chain_events.get(chain).map(broadcast::Sender::subscribe)
    }

    /// Chain `chain`'s subscription hub, started on first use; `None` when this process does not index it.
    fn subscription_hub(&self, chain: &str) -> Option<Arc<subscriptions::Hub>> {
        // A poisoned lock only means another subscriber panicked mid-insert; the map is still consistent.
        let mut hubs = self.inner.hubs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hub) = hubs.get(chain) {
            return Some(hub.clone());
        }
        let source = self.subscribe_chain(chain)?;
        let pool = self.inner.chains.get(chain)?.pool.clone();
        let hub = subscriptions::Hub::start(chain, pool, source);
        hubs.insert(chain.to_owned(), hub.clone());
        Some(hub)
    }

    /// Sets which JSON-RPC methods `/rpc/{chain}` forwards on chain `chain` (from its `[chains.methods]`),
    /// replacing its family's default ([`MethodPolicy::default_for`]).
    #[must_use]
    pub fn with_method_policy(mut self, chain: &str, policy: MethodPolicy) -> Self {
        Arc::make_mut(&mut self.methods).insert(chain.to_owned(), policy);
        self
    }

    /// Sets when `/v1/chains/{chain}/health` calls chain `chain` healthy (from its `health_max_lag_*` keys).
    #[must_use]
    pub fn with_health_threshold(mut self, chain: &str, threshold: HealthThreshold) -> Self {
        Arc::make_mut(&mut self.health_limits).insert(chain.to_owned(), threshold);
        self
    }

    fn health_threshold(&self, chain: &str) -> HealthThreshold {
        self.health_limits.get(chain).copied().unwrap_or_default()
    }

    /// From now on `/ready` answers 503, so load balancers stop sending new work before the listener closes, and
    /// live feeds end (their clients reconnect elsewhere with `Last-Event-ID`).
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.drained.send_replace(true);
    }

    /// Sees `true` once [`AppState::start_draining`] was called.
    fn drained(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.drained.subscribe()
    }

    fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    fn rpc_cache(&self) -> &rpc_cache::RpcCache {
        &self.inner.rpc_cache
    }

    fn access(&self) -> &auth::Access {
        &self.inner.access
    }

    fn recent_states(&self) -> &consistency::RecentStates {
        &self.inner.recent_states
    }

    fn coalescer(&self) -> &coalesce::Coalescer<rpc_cache::CacheKey, routes::Upstreamed> {
        &self.inner.coalescer
    }

    /// The method policy of served chain `chain` (every served chain has one).
    fn method_policy(&self, chain: &str) -> Option<&MethodPolicy> {
        self.methods.get(chain)
    }

    fn chain(&self, name: &str) -> Result<&ChainHandle, AppError> {
        self.inner.chains.get(name).ok_or_else(|| AppError::NotFound(format!("unknown chain {name:?}")))
    }
}

/// The process-wide Prometheus recorder; installed on first use so every crate's `metrics::` calls land in it.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets =
                [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let depths = [1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0];
            let batch_blocks = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0];
            // Only empty bucket lists are rejected, and these are not empty.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("chainmux_indexer_reorg_depth".into()), &depths)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("chainmux_indexer_batch_blocks".into()),
                        &batch_blocks,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (in tests); metrics then go there, the handle stays valid.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Deadline for the readiness probe's database round trip.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Every route the gateway serves. The one list both [`router`] and the check of `/openapi.json` against the
/// router (`tests/openapi.rs`, through [`route_paths`]) read: a route added here must be documented there, with a
/// `#[utoipa::path]` on its handler listed in `openapi::ApiDoc`.
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/health", get(routes::health)),
        ("/ready", get(routes::ready)),
        ("/metrics", get(routes::metrics)),
        ("/openapi.json", get(openapi::openapi_json)),
        ("/status", get(status_page::status_page)),
        ("/v1/status", get(health::status)),
        ("/v1/chains", get(routes::chains)),
        ("/v1/chains/{chain}/health", get(health::chain_health)),
        ("/v1/chains/{chain}/blocks/{id}", get(routes::block)),
        ("/v1/chains/{chain}/transactions/{hash}", get(routes::transaction)),
        ("/v1/chains/{chain}/transfers", get(routes::transfers)),
        ("/v1/chains/{chain}/transfers/stream", get(sse::transfers)),
        ("/v1/chains/{chain}/logs", get(routes::logs)),
        ("/v1/chains/{chain}/instructions", get(routes::instructions)),
        ("/v1/chains/{chain}/events", get(routes::events)),
        ("/v1/chains/{chain}/events/stream", get(sse::events)),
        ("/v1/chains/{chain}/contracts", get(routes::contracts)),
        // POST: JSON-RPC over HTTP; GET: the same over a WebSocket, plus `eth_subscribe`.
        ("/rpc/{chain}", post(routes::rpc).get(ws::upgrade)),
    ]
}

/// The paths [`router`] serves, in OpenAPI's `{param}` spelling (axum's too).
pub fn route_paths() -> Vec<&'static str> {
    routes().into_iter().map(|(path, _)| path).collect()
}

pub fn router(state: AppState) -> Router {
    // Inside a runtime, the response cache's finality trackers start now; otherwise on each chain's first request.
    for chain in state.inner.finality.keys() {
        finality::start(&state, chain);
    }
    for chain in state.inner.chains.keys() {
        health::start(&state, chain);
    }
    let body_limit = state.config().max_body_bytes;
    let cors = state.config().access.cors_layer();
    let router = routes()
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| router.route(path, handlers))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        // Inside the metrics layer, so refused requests (401/403/429) are counted by route and status too.
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::enforce))
        .layer(axum::middleware::from_fn(metrics_layer::track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(metrics_layer::make_span)
                // 503s from /ready while draining are expected; ERROR is for the process's own failures.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        // Outside the trace layer, so the request id exists when the request's span is made.
        .layer(axum::middleware::from_fn(metrics_layer::request_id));
    // Outermost: preflights are answered before authentication (browsers never send keys with them), and
    // refusals carry the CORS headers too, so a page can read why it was refused.
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}
