//! API keys, rate limits and CORS: who may call the gateway, and how often.
//!
//! A request names its key in the `x-api-key` header, as `Authorization: Bearer <key>`, or as `?key=<key>` (for
//! clients that cannot set headers: browsers' `EventSource` and `WebSocket`). The `key` query parameter is removed
//! before any handler sees the query, so REST handlers, which reject unknown parameters, never see it. `/health`,
//! `/ready`, `/metrics`, `/openapi.json` and the `/status` page (which holds no data) are always open.
//!
//! Keys are looked up by their SHA-256 and the answer for a key that exists (usable or revoked) is cached for
//! [`AccessConfig::key_cache_ttl`]; a revoked key therefore keeps working for up to that long on a gateway that
//! saw it shortly before.
//!
//! Each request spends from one of two budgets: `/rpc` requests from the RPC budget, everything else from the REST
//! budget. A keyed request spends its key's budget (keyed by the key's row id), an anonymous one its client IP's;
//! both are GCRA limiters, answering 429 with `Retry-After` when empty: the replica's own `governor` limiters, or
//! with `[redis]` one budget in Redis shared by every replica (the `shared` module), falling back to the replica's
//! own while Redis is down. Keys never reach logs, error messages or metric labels: failures are counted by
//! reason, rate limiting by scope and route kind.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chainmux_store::{ApiKeyAuth, KeyLimits};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde_json::json;
use sha2::{Digest, Sha256};
use tower_http::cors::{AllowOrigin, CorsLayer, ExposeHeaders};

use crate::{AppError, AppState};

/// What every key starts with, so a leaked one is recognisable (secret scanners, logs) as a chainmux key.
const KEY_PREFIX: &str = "cmx_";
/// Random bytes of a key.
const KEY_BYTES: usize = 32;
/// Hex digits of the key shown by `keys list`: 32 of its 256 bits, far too few to guess the rest from.
const SHOWN_DIGITS: usize = 8;
/// Most cached key lookups; beyond it expired entries are dropped, and all of them if none had expired.
const KEY_CACHE_CAPACITY: usize = 10_000;
/// Every this many checks, limiter state of idle keys and addresses is dropped, so memory stays bounded.
const HOUSEKEEPING_EVERY: u64 = 4096;
/// The header carrying a key.
const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");
/// How long browsers may reuse a preflight answer.
const CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// An API key: `cmx_` followed by 64 hex digits (32 random bytes).
///
/// `Debug` shows only the non-secret prefix; the key itself comes out only through [`ApiKey::expose_secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    bytes: [u8; KEY_BYTES],
}

impl ApiKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0; KEY_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self { bytes })
    }

    /// Parses `cmx_` + 64 hex digits (either case). `None` for anything else, so malformed keys never reach the
    /// database.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.strip_prefix(KEY_PREFIX)?;
        if digits.len() != KEY_BYTES * 2 {
            return None;
        }
        let mut bytes = [0; KEY_BYTES];
        alloy::hex::decode_to_slice(digits, &mut bytes).ok()?;
        Some(Self { bytes })
    }

    /// The SHA-256 of the key's bytes: what the store keeps and looks keys up by. Hashing the bytes rather than
    /// the text makes the digits' case irrelevant.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.bytes).into()
    }

    /// The start of the key (`cmx_` and 8 hex digits), which names it in listings without revealing it.
    pub fn prefix(&self) -> String {
        let mut text = self.expose_secret();
        text.truncate(KEY_PREFIX.len() + SHOWN_DIGITS);
        text
    }

    /// The key as the client sends it. Only `chainmux keys create` shows it, once.
    pub fn expose_secret(&self) -> String {
        format!("{KEY_PREFIX}{}", alloy::hex::encode(self.bytes))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.prefix())
    }
}

/// A rate: `per_second` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

impl Limit {
    /// `None` when `per_second` is 0 (no limit); a `burst` of 0 counts as 1.
    pub fn new(per_second: u32, burst: u32) -> Option<Self> {
        Some(Self {
            per_second: NonZeroU32::new(per_second)?,
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        })
    }

    fn quota(self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// The two budgets of one client; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budget {
    /// Every route but `/rpc/...` (and the always-open probes).
    pub rest: Option<Limit>,
    /// `/rpc/...`.
    pub rpc: Option<Limit>,
}

/// Which origins browsers may call the gateway from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `["*"]`: any origin.
    Any,
    /// Exact origins, e.g. `https://app.example`.
    List(Vec<String>),
}

/// Keys, limits and CORS of the gateway (`[gateway]` in the config).
///
/// The default is fully open: no key required, no limits, no CORS headers. That suits the crate's tests and
/// benchmarks; the binary always passes the config's values, whose defaults do limit anonymous clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessConfig {
    /// Whether requests without a key are refused (401).
    pub require_api_key: bool,
    /// Budget of each client IP sending no key.
    pub anonymous: Budget,
    /// Budget of keys created without limits of their own.
    pub default_key: Budget,
    /// `None`: no CORS headers at all.
    pub cors: Option<CorsOrigins>,
    /// Take the client IP from `X-Forwarded-For` (its last entry, the one the proxy in front of us appended)
    /// instead of the connection's peer address. Only safe behind a proxy that sets the header.
    pub trust_forwarded_for: bool,
    /// How long a key lookup is reused: the delay before a revocation (or a new key) takes effect.
    pub key_cache_ttl: Duration,
}

/// How long key lookups are cached unless configured otherwise.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(5);

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            require_api_key: false,
            anonymous: Budget::default(),
            default_key: Budget::default(),
            cors: None,
            trust_forwarded_for: false,
            key_cache_ttl: DEFAULT_KEY_CACHE_TTL,
        }
    }
}

impl AccessConfig {
    /// The CORS layer for [`Self::cors`]: simple requests and preflights from the allowed origins, with the headers
    /// a dApp needs to send (content type, key, `Last-Event-ID`) and every response header readable.
    pub(crate) fn cors_layer(&self) -> Option<CorsLayer> {
        let origins = match self.cors.as_ref()? {
            CorsOrigins::Any => AllowOrigin::any(),
            CorsOrigins::List(list) => {
                // Validated by the config; an origin that is not a valid header value could never match anyway.
                AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
            }
        };
        Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    API_KEY_HEADER,
                    HeaderName::from_static("last-event-id"),
                ])
                .expose_headers(ExposeHeaders::any())
                .max_age(CORS_MAX_AGE),
        )
    }
}

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RouteKind {
    Rest,
    Rpc,
}

impl RouteKind {
    fn of(path: &str) -> Self {
        if path == "/rpc" || path.starts_with("/rpc/") { Self::Rpc } else { Self::Rest }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Rest => "rest",
            Self::Rpc => "rpc",
        }
    }

    fn pick(self, budget: Budget) -> Option<Limit> {
        match self {
            Self::Rest => budget.rest,
            Self::Rpc => budget.rpc,
        }
    }
}

type KeyedLimiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// Limiters keyed by client, one per distinct quota (keys with equal limits share one).
#[derive(Debug)]
struct Limiters<K: Hash + Eq + Clone> {
    by_quota: Mutex<HashMap<Limit, Arc<KeyedLimiter<K>>>>,
}

impl<K: Hash + Eq + Clone> Default for Limiters<K> {
    fn default() -> Self {
        Self { by_quota: Mutex::default() }
    }
}

impl<K: Hash + Eq + Clone> Limiters<K> {
    /// `Err(wait)` when `client` has fewer than `n` requests left under `limit` (`n` > 1: a JSON-RPC batch). A
    /// batch larger than the burst spends the whole burst: it could never be admitted otherwise.
    fn check_n(&self, limit: Limit, client: &K, n: u32) -> Result<(), Duration> {
        let Some(n) = NonZeroU32::new(n.min(limit.burst.get())) else { return Ok(()) };
        let limiter = lock(&self.by_quota)
            .entry(limit)
            .or_insert_with(|| Arc::new(RateLimiter::hashmap(limit.quota())))
            .clone();
        match limiter.check_key_n(client, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(limiter.clock().now())),
            // Unreachable: `n` is at most the burst.
            Err(_) => Err(Duration::from_secs(1)),
        }
    }

    /// Forgets clients whose budget is full again: they behave the same as never seen.
    fn housekeeping(&self) {
        for limiter in lock(&self.by_quota).values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// A poisoned lock only means a panic elsewhere mid-update; limiter and cache state stay usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Key lookups by key hash, with when they were made.
type KeyCache = HashMap<[u8; 32], (Instant, Option<ApiKeyAuth>)>;

/// The gateway's access state: config, limiters and the key cache.
#[derive(Debug)]
pub(crate) struct Access {
    config: AccessConfig,
    ips: Limiters<(IpAddr, RouteKind)>,
    keys: Limiters<(i64, RouteKind)>,
    cache: Mutex<KeyCache>,
    checks: AtomicU64,
}

impl Access {
    pub(crate) fn new(config: AccessConfig) -> Self {
        Self {
            config,
            ips: Limiters::default(),
            keys: Limiters::default(),
            cache: Mutex::default(),
            checks: AtomicU64::new(0),
        }
    }

    pub(crate) fn config(&self) -> &AccessConfig {
        &self.config
    }

    fn housekeeping(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % HOUSEKEEPING_EVERY == HOUSEKEEPING_EVERY - 1 {
            self.ips.housekeeping();
            self.keys.housekeeping();
        }
    }

    /// The cached lookup of `hash`, if fresh.
    fn cached(&self, hash: &[u8; 32]) -> Option<Option<ApiKeyAuth>> {
        let cache = lock(&self.cache);
        let (at, found) = cache.get(hash)?;
        (at.elapsed() < self.config.key_cache_ttl).then_some(*found)
    }

    fn remember(&self, hash: [u8; 32], found: Option<ApiKeyAuth>) {
        let mut cache = lock(&self.cache);
        if cache.len() >= KEY_CACHE_CAPACITY {
            let ttl = self.config.key_cache_ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if cache.len() >= KEY_CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(hash, (Instant::now(), found));
    }
}

/// The limit of `kind` for a key: its own, else the default; a key's own rate without a burst bursts to its rate.
fn key_limit(kind: RouteKind, own: &KeyLimits, default: Budget) -> Option<Limit> {
    let default = kind.pick(default);
    let (rps, burst) = match kind {
        RouteKind::Rest => (own.rps, own.burst),
        RouteKind::Rpc => (own.rpc_rps, own.rpc_burst),
    };
    let own_rps = rps.and_then(NonZeroU32::new);
    let per_second = own_rps.or(default.map(|l| l.per_second))?;
    let burst = burst
        .and_then(NonZeroU32::new)
        .or(if own_rps.is_some() { own_rps } else { default.map(|l| l.burst) })
        .unwrap_or(per_second);
    Some(Limit { per_second, burst })
}

/// The key a request presents, in order of precedence: `x-api-key`, `Authorization: Bearer`, `?key=`.
fn presented_key(headers: &HeaderMap, query_key: Option<String>) -> Option<String> {
    let header_key = headers.get(&API_KEY_HEADER).and_then(|v| v.to_str().ok()).map(str::trim);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    header_key.or(bearer).filter(|k| !k.is_empty()).map(str::to_owned).or(query_key)
}

/// Removes every `key` parameter from `uri`'s query; returns the new URI and the (decoded) value of the first.
/// Other parameters are kept byte for byte, in order.
fn strip_key_param(uri: &Uri) -> (Option<Uri>, Option<String>) {
    let Some(query) = uri.query() else { return (None, None) };
    let mut key = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "key" {
            if key.is_none() {
                key = Some(percent_decode(value));
            }
        } else if !pair.is_empty() {
            kept.push(pair);
        }
    }
    if key.is_none() {
        return (None, None);
    }
    let path_and_query =
        if kept.is_empty() { uri.path().to_owned() } else { format!("{}?{}", uri.path(), kept.join("&")) };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    (Uri::from_parts(parts).ok(), key)
}

/// `application/x-www-form-urlencoded` decoding of one value (`+` is a space); invalid escapes are kept as is.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let escaped = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match escaped {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The address whose anonymous budget a request spends.
fn client_ip(request: &Request, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for {
        // Only the last entry, the one the proxy in front of us appended: earlier ones are the client's to invent,
        // so an unparseable last entry falls back to the peer rather than to them.
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .and_then(|entry| {
                entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
            });
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        // Served without connection info (tests driving the router directly): every request is one client.
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip())
}

/// An error in the REST error shape.
pub(crate) fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
}

fn auth_failure(reason: &'static str) -> Response {
    metrics::counter!("chainmux_auth_failures_total", "reason" => reason).increment(1);
    match reason {
        "missing" => refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an API key is required: send it as the x-api-key header, as Authorization: Bearer, or as ?key=",
        ),
        "revoked" => refuse(StatusCode::FORBIDDEN, "forbidden", "the API key has been revoked"),
        _ => refuse(StatusCode::FORBIDDEN, "forbidden", "the API key is not valid"),
    }
}

fn rate_limited(scope: &'static str, kind: RouteKind, wait: Duration) -> Response {
    metrics::counter!("chainmux_rate_limited_total", "scope" => scope, "route_kind" => kind.label())
        .increment(1);
    too_many_requests(wait)
}

/// 429 with `Retry-After` for a request whose budget is empty for `wait`.
pub(crate) fn too_many_requests(wait: Duration) -> Response {
    // Whole seconds, rounded up, at least 1: a client retrying after `Retry-After` then always succeeds.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut response = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &format!("rate limit exceeded; retry in {seconds} s"),
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The middleware: takes the key out of the query, authenticates it, and charges the request to its budget.
pub(crate) async fn enforce(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    // The probes, and the API's description (documentation is public even where keys are required).
    // Per-chain health is a probe too: load balancers and uptime checkers hold no keys.
    let chain_health = path.strip_prefix("/v1/chains/").and_then(|p| p.strip_suffix("/health"));
    // The status page holds no data (its script calls `/v1/status`, which stays guarded), so it is open too.
    if matches!(path, "/health" | "/ready" | "/metrics" | "/openapi.json" | "/status")
        || chain_health.is_some_and(|chain| !chain.contains('/'))
    {
        return next.run(request).await;
    }
    let kind = RouteKind::of(path);
    let (stripped, query_key) = strip_key_param(request.uri());
    if let Some(uri) = stripped {
        *request.uri_mut() = uri;
    }
    let access = state.access();
    access.housekeeping();
    let config = access.config();
    let charge = match presented_key(request.headers(), query_key) {
        Some(text) => {
            let Some(key) = ApiKey::parse(&text) else {
                return auth_failure("invalid");
            };
            let hash = key.hash();
            let found = match access.cached(&hash) {
                Some(found) => found,
                None => {
                    // A lookup the cache cannot answer spends the client IP's anonymous budget first: made-up keys
                    // reach the database no faster than an anonymous client may call.
                    let ip = client_ip(&request, config.trust_forwarded_for);
                    let lookup = RpcCharge { client: Client::Ip(ip), limit: kind.pick(config.anonymous) };
                    if let Err(wait) = lookup.spend(&state, kind, 1).await {
                        return rate_limited("ip", kind, wait);
                    }
                    match state.store().api_key_by_hash(&hash).await {
                        Ok(found) => {
                            // Only keys that exist are remembered, so made-up ones cannot crowd them out.
                            if found.is_some() {
                                access.remember(hash, found);
                            }
                            found
                        }
                        Err(err) => return AppError::Store(err).into_response(),
                    }
                }
            };
            match found {
                None => return auth_failure("unknown"),
                Some(auth) if auth.revoked => return auth_failure("revoked"),
                Some(auth) => RpcCharge {
                    client: Client::Key(auth.id),
                    limit: key_limit(kind, &auth.limits, config.default_key),
                },
            }
        }
        None if config.require_api_key => return auth_failure("missing"),
        None => {
            let ip = client_ip(&request, config.trust_forwarded_for);
            RpcCharge { client: Client::Ip(ip), limit: kind.pick(config.anonymous) }
        }
    };
    if let Err(wait) = charge.spend(&state, kind, 1).await {
        return rate_limited(charge.client.scope(), kind, wait);
    }
    // For the handler: a WebSocket charges its messages to it, live feeds count their connections by its client.
    request.extensions_mut().insert(charge);
    next.run(request).await
}

/// Who a request is charged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    /// A key, by row id.
    Key(i64),
    /// An anonymous client, by IP.
    Ip(IpAddr),
}

impl Client {
    pub(crate) fn scope(self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::Ip(_) => "ip",
        }
    }

    /// The client's budget of `kind` in Redis: `key:<kind>:<row id>` or `ip:<kind>:<address>`, never the key.
    fn shared_name(self, kind: RouteKind) -> String {
        match self {
            Self::Key(id) => format!("key:{}:{id}", kind.label()),
            Self::Ip(ip) => format!("ip:{}:{ip}", kind.label()),
        }
    }
}

/// A request's client and the limit of its budget. The middleware leaves it in an `/rpc` request's extensions, so
/// a WebSocket opened by it charges each later message to the same `/rpc` budget.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RpcCharge {
    client: Client,
    /// `None`: unlimited.
    limit: Option<Limit>,
}

impl RpcCharge {
    /// Who is charged.
    pub(crate) fn client(&self) -> Client {
        self.client
    }

    /// Spends `n` requests of the client's `kind` budget: in Redis when limits are shared and it answers in time,
    /// else in this replica's own limiters. `Err(wait)` when there are not that many left.
    async fn spend(&self, state: &AppState, kind: RouteKind, n: u32) -> Result<(), Duration> {
        let Some(limit) = self.limit else { return Ok(()) };
        // A batch larger than the burst spends the whole burst: it could never be admitted otherwise.
        let n = n.min(limit.burst.get());
        if n == 0 {
            return Ok(());
        }
        if let Some(shared) = state.shared()
            && let Some(result) = shared.check_rate(&self.client.shared_name(kind), limit, n).await
        {
            metrics::counter!("chainmux_rate_limit_checks_total", "backend" => "redis").increment(1);
            return result;
        }
        metrics::counter!("chainmux_rate_limit_checks_total", "backend" => "local").increment(1);
        let access = state.access();
        match self.client {
            Client::Key(id) => access.keys.check_n(limit, &(id, kind), n),
            Client::Ip(ip) => access.ips.check_n(limit, &(ip, kind), n),
        }
    }

    /// Spends `n` requests of the `/rpc` budget (each call of a batch counts); `Err(wait)` (counted as a refusal)
    /// when there are not that many left.
    pub(crate) async fn charge_rpc_n(&self, state: &AppState, n: u32) -> Result<(), Duration> {
        let result = self.spend(state, RouteKind::Rpc, n).await;
        if result.is_err() {
            metrics::counter!("chainmux_rate_limited_total", "scope" => self.client.scope(), "route_kind" => "rpc")
                .increment(1);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_forwarded_entry_is_trusted() {
        let peer: SocketAddr = "10.0.0.1:4000".parse().expect("address");
        let ip = |values: &[&str], trust: bool| {
            let mut builder = Request::builder().uri("/v1/chains");
            for value in values {
                builder = builder.header("x-forwarded-for", *value);
            }
            let mut request = builder.body(axum::body::Body::empty()).expect("request");
            request.extensions_mut().insert(ConnectInfo(peer));
            client_ip(&request, trust)
        };
        let proxied: IpAddr = "203.0.113.9".parse().expect("address");
        assert_eq!(ip(&["203.0.113.9"], false), peer.ip(), "not trusted unless configured");
        assert_eq!(ip(&["1.1.1.1, 203.0.113.9"], true), proxied);
        assert_eq!(ip(&["1.1.1.1", "203.0.113.9:5678"], true), proxied, "last header, with a port");
        assert_eq!(
            ip(&["1.1.1.1, unknown"], true),
            peer.ip(),
            "a bad last entry never falls back to earlier ones"
        );
        assert_eq!(ip(&[], true), peer.ip());
    }

    #[test]
    fn keys_round_trip_through_their_text() {
        let key = ApiKey::generate().expect("random source");
        let text = key.expose_secret();
        assert!(text.starts_with("cmx_"), "{text}");
        assert_eq!(text.len(), 4 + 64);
        assert!(text[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{text}");
        assert_eq!(ApiKey::parse(&text), Some(key.clone()));
        assert_eq!(ApiKey::parse(&text.to_ascii_uppercase().replacen("CMX_", "cmx_", 1)), Some(key.clone()));
        assert_eq!(key.prefix(), text[..12]);
        assert!(!format!("{key:?}").contains(&text[12..]), "Debug hides the key: {key:?}");
        let other = ApiKey::generate().expect("random source");
        assert_ne!(key, other, "two keys are different");
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let good = format!("cmx_{}", "ab".repeat(32));
        assert!(ApiKey::parse(&good).is_some());
        for bad in [
            String::new(),
            "cmx_".to_owned(),
            format!("cmx_{}", "ab".repeat(31)),
            format!("cmx_{}0", "ab".repeat(32)),
            format!("xyz_{}", "ab".repeat(32)),
            format!("CMX_{}", "ab".repeat(32)),
            format!("cmx_{}zz", "ab".repeat(31)),
            format!(" {good}"),
        ] {
            assert_eq!(ApiKey::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hash_is_sha256_of_the_key_bytes() {
        // SHA-256 of 32 zero bytes, a published test vector.
        let zero = ApiKey::parse(&format!("cmx_{}", "00".repeat(32))).expect("valid");
        assert_eq!(
            alloy::hex::encode(zero.hash()),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        let upper = ApiKey::parse(&format!("cmx_{}", "AB".repeat(32))).expect("valid");
        let lower = ApiKey::parse(&format!("cmx_{}", "ab".repeat(32))).expect("valid");
        assert_eq!(upper.hash(), lower.hash());
        assert_ne!(zero.hash(), lower.hash());
    }

    #[test]
    fn key_query_parameter_is_removed_and_decoded() {
        let uri: Uri = "/v1/chains/local/transfers?limit=5&key=cmx_a%2Bb&address=0xAB&key=second"
            .parse()
            .expect("valid URI");
        let (stripped, key) = strip_key_param(&uri);
        assert_eq!(key.as_deref(), Some("cmx_a+b"));
        assert_eq!(
            stripped.expect("key removed").to_string(),
            "/v1/chains/local/transfers?limit=5&address=0xAB"
        );

        let (stripped, key) = strip_key_param(&"/rpc/local?key=abc".parse().expect("valid URI"));
        assert_eq!(
            (stripped.expect("key removed").to_string(), key.as_deref()),
            ("/rpc/local".to_owned(), Some("abc"))
        );

        let (stripped, key) = strip_key_param(&"/v1/chains?keys=1&monkey=2".parse().expect("valid URI"));
        assert_eq!((stripped, key), (None, None), "only the parameter named exactly `key`");
    }

    #[test]
    fn headers_take_precedence_over_the_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_key(&headers, Some("q".into())).as_deref(), Some("q"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_eq!(presented_key(&headers, Some("q".into())).as_deref(), Some("b"));
        headers.insert(API_KEY_HEADER, HeaderValue::from_static("h"));
        assert_eq!(presented_key(&headers, Some("q".into())).as_deref(), Some("h"));
        headers.clear();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcg=="));
        assert_eq!(presented_key(&headers, None), None, "only bearer tokens are keys");
    }

    #[test]
    fn key_limits_fall_back_to_the_defaults() {
        let limit = |rps, burst| Limit::new(rps, burst);
        let default = Budget { rest: limit(100, 200), rpc: limit(300, 600) };
        let none = KeyLimits::default();
        assert_eq!(key_limit(RouteKind::Rest, &none, default), limit(100, 200));
        assert_eq!(key_limit(RouteKind::Rpc, &none, default), limit(300, 600));
        let own = KeyLimits { rps: Some(2), burst: Some(5), rpc_rps: Some(7), rpc_burst: None };
        assert_eq!(key_limit(RouteKind::Rest, &own, default), limit(2, 5));
        assert_eq!(key_limit(RouteKind::Rpc, &own, default), limit(7, 7), "burst follows the key's own rate");
        let burst_only = KeyLimits { burst: Some(9), ..KeyLimits::default() };
        assert_eq!(key_limit(RouteKind::Rest, &burst_only, default), limit(100, 9));
        assert_eq!(key_limit(RouteKind::Rest, &none, Budget::default()), None, "unlimited default");
    }

    #[test]
    fn limiter_refuses_beyond_the_burst_with_a_wait() {
        let limiters = Limiters::<u8>::default();
        let limit = Limit::new(1, 2).expect("a limit");
        assert!(limiters.check_n(limit, &1, 1).is_ok());
        assert!(limiters.check_n(limit, &1, 1).is_ok());
        let wait = limiters.check_n(limit, &1, 1).expect_err("third request in the same instant");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiters.check_n(limit, &2, 1).is_ok(), "another client has its own budget");
    }
}
