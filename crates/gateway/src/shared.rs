//! State shared by gateway replicas through Redis (`[redis]`): rate limits, so N replicas together allow one
//! quota and not N, and optionally JSON-RPC answers about finalized blocks.
//!
//! Redis is an optimisation, never a dependency of a request: every call is bounded by the configured timeout,
//! and on an error or timeout the request is decided by the replica's own state (its `governor` limiters, its own
//! cache) and Redis is marked down. While down no request waits on it; a background probe `PING`s it once a
//! second and marks it up again when it answers. `/v1/status` says which backend is in use.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use utoipa::ToSchema;

use crate::auth::Limit;
use crate::rpc_cache::CacheKey;

/// How often Redis is probed, up or down: the longest a replica keeps deciding locally after Redis is back.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Deadline of a probe and of (re)connecting: longer than a request's, as nothing waits on it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Prefix of every rate-limit key.
const RATE_LIMIT_PREFIX: &str = "chainmux:rl";
/// Prefix of every shared JSON-RPC answer.
const RPC_CACHE_PREFIX: &str = "chainmux:rpc";
/// Finalized answers never change, but Redis memory is finite: unused ones go after a day (set `maxmemory` with an
/// LRU policy on the server for a hard bound).
const RPC_CACHE_TTL_SECONDS: u64 = 24 * 60 * 60;
/// Larger answers stay in each replica's own cache only: one shared value must not hold up Redis for everyone.
const MAX_SHARED_ANSWER_BYTES: usize = 1 << 20;
/// Most shared-cache writes in flight per replica; beyond it answers are not shared (they are cached locally).
const MAX_PENDING_WRITES: usize = 64;

/// GCRA, as `governor` implements it, on one key, atomically. Times are microseconds of the Redis server's clock
/// (`TIME`), so replicas' clocks never matter. The key holds the theoretical arrival time (TAT) and expires when
/// the TAT passes, which is exactly when its state equals a fresh key's: idle clients leave nothing behind.
///
/// KEYS[1]: the client's key. ARGV[1]: emission interval (µs per request, may be fractional), ARGV[2]: burst,
/// ARGV[3]: requests to spend (at most the burst). Returns `{1, 0}` when allowed, else `{0, wait µs}`.
const GCRA_SCRIPT: &str = r"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local tolerance = interval * (burst - 1)
local earliest = tat + interval * (n - 1) - tolerance
if now < earliest then
  return {0, math.ceil(earliest - now)}
end
local new_tat = tat + interval * n
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, 0}
";

/// `[redis]` as the gateway uses it.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL; may hold a password, so `Debug` never shows it.
    pub url: String,
    /// Share rate limits.
    pub rate_limits: bool,
    /// Share JSON-RPC answers about finalized blocks.
    pub rpc_cache: bool,
    /// Longest a request waits for Redis.
    pub timeout: Duration,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"<redacted>")
            .field("rate_limits", &self.rate_limits)
            .field("rpc_cache", &self.rpc_cache)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why [`crate::AppState::with_redis`] refused its settings.
#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    /// The redis client rejected the URL. Its message is not kept: it could quote the password.
    #[error("redis.url is not a usable Redis URL")]
    InvalidUrl,
}

/// [`Shared::state`] before the first answer or failure.
const UNKNOWN: u8 = 0;
/// [`Shared::state`]: the last call succeeded, requests use Redis.
const UP: u8 = 1;
/// [`Shared::state`]: the last call failed, requests decide locally until the probe succeeds.
const DOWN: u8 = 2;

/// The connection to Redis and whether it is currently usable.
pub(crate) struct Shared {
    connection: ConnectionManager,
    /// [`UNKNOWN`], [`UP`] or [`DOWN`].
    state: AtomicU8,
    settings: RedisSettings,
    gcra: Script,
    /// One permit per shared-cache write in flight.
    writes: Arc<Semaphore>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("up", &self.is_up())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Connects lazily (nothing waits for Redis at start) and starts the probe, which ends with the last handle.
    /// Must run inside a Tokio runtime.
    pub(crate) fn start(settings: RedisSettings) -> Result<Arc<Self>, SharedStateError> {
        let client = Client::open(settings.url.as_str()).map_err(|_| SharedStateError::InvalidUrl)?;
        // The manager reconnects by itself after a failure; requests never wait for that (they only go to Redis
        // while it is up), so a single quick attempt per failure is enough and the probe paces the rest.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(PROBE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(PROBE_EVERY);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|_| SharedStateError::InvalidUrl)?;
        metrics::gauge!("chainmux_redis_up").set(0.0);
        let shared = Arc::new(Self {
            connection,
            state: AtomicU8::new(UNKNOWN),
            settings,
            gcra: Script::new(GCRA_SCRIPT),
            writes: Arc::new(Semaphore::new(MAX_PENDING_WRITES)),
        });
        tokio::spawn(probe(Arc::downgrade(&shared)));
        Ok(shared)
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// Records the outcome of a Redis call: counts a failure, and sets the state, logging each change (a Redis
    /// unreachable from the start too).
    fn record<T>(
        &self,
        op: &'static str,
        result: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        let error = match result {
            Ok(Ok(value)) => {
                if self.state.swap(UP, Ordering::Relaxed) != UP {
                    metrics::gauge!("chainmux_redis_up").set(1.0);
                    tracing::info!(op, "redis reachable; shared state in use");
                }
                return Some(value);
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        metrics::counter!("chainmux_redis_errors_total", "op" => op).increment(1);
        if self.state.swap(DOWN, Ordering::Relaxed) != DOWN {
            metrics::gauge!("chainmux_redis_up").set(0.0);
            tracing::warn!(op, error = %error, "redis unreachable; each replica uses its own limits and cache");
        } else {
            tracing::debug!(op, error = %error, "redis still unreachable");
        }
        None
    }

    /// Spends `n` (1..=burst) requests of `client`'s budget under `limit` in Redis: `Some(Err(wait))` when they
    /// are not there, `None` when Redis is not used for rate limits or did not answer in time (decide locally).
    pub(crate) async fn check_rate(
        &self,
        client: &str,
        limit: Limit,
        n: u32,
    ) -> Option<Result<(), Duration>> {
        if !self.settings.rate_limits || !self.is_up() {
            return None;
        }
        let interval_us = 1_000_000.0 / f64::from(limit.per_second.get());
        let mut connection = self.connection.clone();
        let mut invocation = self.gcra.key(format!("{RATE_LIMIT_PREFIX}:{client}"));
        invocation.arg(interval_us).arg(limit.burst.get()).arg(n);
        let call = invocation.invoke_async::<(u8, u64)>(&mut connection);
        let (allowed, wait_us) =
            self.record("rate_limit", tokio::time::timeout(self.settings.timeout, call).await)?;
        Some(if allowed == 1 { Ok(()) } else { Err(Duration::from_micros(wait_us)) })
    }

    /// The shared answer to `key` (a finalized one: nothing else is shared); `None` when there is none, when the
    /// cache is not shared, or when Redis did not answer in time.
    pub(crate) async fn cache_get(&self, key: &CacheKey) -> Option<Box<RawValue>> {
        if !self.settings.rpc_cache || !self.is_up() {
            return None;
        }
        let mut connection = self.connection.clone();
        let mut get = redis::cmd("GET");
        get.arg(shared_cache_name(key));
        let call = get.query_async::<Option<String>>(&mut connection);
        let text =
            self.record("rpc_cache_get", tokio::time::timeout(self.settings.timeout, call).await)??;
        // Written by a replica as JSON; anything else (an operator's manual edit) counts as a miss.
        RawValue::from_string(text).ok()
    }

    /// Shares finalized answer `result` to `key` with the other replicas, in the background: the request never
    /// waits for it. Skipped when the cache is not shared, Redis is down, the answer is over 1 MiB, or too many
    /// writes are in flight already.
    pub(crate) fn cache_put(self: &Arc<Self>, key: &CacheKey, result: &RawValue) {
        if !self.settings.rpc_cache || !self.is_up() || result.get().len() > MAX_SHARED_ANSWER_BYTES {
            return;
        }
        let Ok(permit) = Arc::clone(&self.writes).try_acquire_owned() else { return };
        let shared = Arc::clone(self);
        let mut set = redis::cmd("SET");
        set.arg(shared_cache_name(key)).arg(result.get()).arg("EX").arg(RPC_CACHE_TTL_SECONDS);
        tokio::spawn(async move {
            let mut connection = shared.connection.clone();
            let call = set.query_async::<()>(&mut connection);
            shared.record("rpc_cache_set", tokio::time::timeout(shared.settings.timeout, call).await);
            drop(permit);
        });
    }

    /// What `/v1/status` says.
    pub(crate) fn status(&self) -> SharedStatus {
        let up = self.is_up();
        let backend = |shared: bool| if shared && up { "redis" } else { "local" };
        SharedStatus {
            redis: if up { "connected" } else { "unreachable" },
            rate_limits: backend(self.settings.rate_limits),
            rpc_cache: backend(self.settings.rpc_cache),
        }
    }
}

/// The Redis key of a shared answer: the SHA-256 of the cache key (chain, method and canonical params), so
/// arbitrary params never make huge or odd key names.
fn shared_cache_name(key: &CacheKey) -> String {
    format!("{RPC_CACHE_PREFIX}:{}", alloy::hex::encode(Sha256::digest(key.as_str())))
}

/// `PING`s Redis every [`PROBE_EVERY`] until the last [`Shared`] handle is gone.
async fn probe(shared: Weak<Shared>) {
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let mut connection = shared.connection.clone();
        let ping = redis::cmd("PING");
        shared.record(
            "ping",
            tokio::time::timeout(PROBE_TIMEOUT, ping.query_async::<()>(&mut connection)).await,
        );
    }
}

/// `shared_state` of `/v1/status`: where state shared by replicas lives right now.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub(crate) struct SharedStatus {
    /// `connected`, `unreachable` (every replica falls back to its own state) or `not_configured` (no
    /// `[redis] url`).
    redis: &'static str,
    /// `redis` (one budget per client across replicas) or `local` (each replica its own).
    rate_limits: &'static str,
    /// `redis` (finalized JSON-RPC answers shared by replicas besides each one's cache) or `local`.
    rpc_cache: &'static str,
}

impl SharedStatus {
    /// Without `[redis] url`.
    pub(crate) const NOT_CONFIGURED: Self =
        Self { redis: "not_configured", rate_limits: "local", rpc_cache: "local" };
}

#[cfg(test)]
mod tests {
    use chainmux_testkit::RedisServer;

    use super::*;

    fn settings(url: &str) -> RedisSettings {
        RedisSettings {
            url: url.to_owned(),
            rate_limits: true,
            rpc_cache: false,
            timeout: Duration::from_millis(200),
        }
    }

    fn limit(per_second: u32, burst: u32) -> Limit {
        Limit::new(per_second, burst).expect("a limit")
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn connected(url: &str) -> Arc<Shared> {
        let shared = Shared::start(settings(url)).expect("valid URL");
        wait_until("redis is up", || shared.is_up()).await;
        shared
    }

    #[tokio::test]
    async fn burst_then_refusal_with_the_wait_governor_gives() {
        let server = RedisServer::spawn().await;
        let shared = connected(&server.url).await;
        let limit = limit(1, 3);
        for i in 0..3 {
            assert_eq!(
                shared.check_rate("t:a", limit, 1).await,
                Some(Ok(())),
                "request {i} within the burst"
            );
        }
        let Some(Err(wait)) = shared.check_rate("t:a", limit, 1).await else {
            panic!("4th request admitted")
        };
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(
            shared.check_rate("t:b", limit, 1).await,
            Some(Ok(())),
            "another client has its own budget"
        );
    }

    #[tokio::test]
    async fn batches_spend_several_and_the_budget_refills_at_the_rate() {
        let server = RedisServer::spawn().await;
        let shared = connected(&server.url).await;
        let limit = limit(20, 5);
        assert_eq!(shared.check_rate("t:batch", limit, 5).await, Some(Ok(())), "a batch of the whole burst");
        let Some(Err(wait)) = shared.check_rate("t:batch", limit, 1).await else { panic!("burst was spent") };
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(50),
            "one request's interval: {wait:?}"
        );
        let Some(Err(wait2)) = shared.check_rate("t:batch", limit, 2).await else {
            panic!("burst was spent")
        };
        assert!(wait2 > wait && wait2 <= Duration::from_millis(100), "two intervals: {wait2:?}");
        tokio::time::sleep(wait).await;
        assert_eq!(shared.check_rate("t:batch", limit, 1).await, Some(Ok(())), "refilled after the wait");

        // Idle clients leave nothing behind: the key expires when its budget would be full again.
        let client = Client::open(server.url.as_str()).expect("URL");
        let mut raw = client.get_multiplexed_async_connection().await.expect("connect");
        let ttl: i64 =
            redis::cmd("PTTL").arg("chainmux:rl:t:batch").query_async(&mut raw).await.expect("PTTL");
        assert!((1..=300).contains(&ttl), "expires once refilled: {ttl} ms");
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut raw).await.expect("KEYS");
        assert_eq!(keys, ["chainmux:rl:t:batch"], "only namespaced keys");
    }

    #[tokio::test]
    async fn a_dead_redis_is_skipped_until_it_answers_again() {
        let mut server = RedisServer::spawn().await;
        let shared = connected(&server.url).await;
        assert_eq!(shared.status().rate_limits, "redis");
        server.kill();
        // The first call after the crash fails fast (connection refused/reset) and marks Redis down.
        assert_eq!(shared.check_rate("t:dead", limit(1, 1), 1).await, None);
        assert!(!shared.is_up());
        assert_eq!((shared.status().redis, shared.status().rate_limits), ("unreachable", "local"));
        let started = tokio::time::Instant::now();
        assert_eq!(shared.check_rate("t:dead", limit(1, 1), 1).await, None, "down: decided locally");
        assert!(started.elapsed() < Duration::from_millis(20), "no waiting on a Redis known to be down");

        let _server = RedisServer::spawn_on_port(server.port).await;
        wait_until("the probe finds redis again", || shared.is_up()).await;
        assert_eq!(shared.check_rate("t:dead", limit(1, 1), 1).await, Some(Ok(())));
    }

    #[tokio::test]
    async fn a_silent_redis_times_out_within_the_configured_timeout() {
        // A listener that accepts and never answers, like a Redis behind a black-holed network.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let _accepting = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let shared = Shared::start(settings(&format!("redis://127.0.0.1:{port}"))).expect("valid URL");
        // Forced up, as if it had answered before going silent.
        shared.state.store(UP, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        assert_eq!(shared.check_rate("t:silent", limit(1, 1), 1).await, None);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(600), "{took:?}");
        assert!(!shared.is_up());
    }

    #[tokio::test]
    async fn finalized_answers_are_shared_bounded_and_only_when_configured() {
        let server = RedisServer::spawn().await;
        let writer =
            Shared::start(RedisSettings { rpc_cache: true, ..settings(&server.url) }).expect("valid URL");
        let reader =
            Shared::start(RedisSettings { rpc_cache: true, ..settings(&server.url) }).expect("valid URL");
        let off = connected(&server.url).await;
        wait_until("redis is up", || writer.is_up() && reader.is_up()).await;
        assert_eq!((reader.status().rpc_cache, off.status().rpc_cache), ("redis", "local"));

        let key = CacheKey::new("main", "eth_getBlockByNumber", &serde_json::json!(["0x1", false]));
        let answer = RawValue::from_string(r#"{"number":"0x1","hash":"0xab"}"#.to_owned()).expect("JSON");
        assert!(reader.cache_get(&key).await.is_none(), "nothing shared yet");
        writer.cache_put(&key, &answer);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let shared = loop {
            if let Some(found) = reader.cache_get(&key).await {
                break found;
            }
            assert!(tokio::time::Instant::now() < deadline, "the write never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(shared.get(), answer.get(), "another replica reads the same answer");
        assert!(off.cache_get(&key).await.is_none(), "a replica without rpc_cache never asks");

        let client = Client::open(server.url.as_str()).expect("URL");
        let mut raw = client.get_multiplexed_async_connection().await.expect("connect");
        let name = shared_cache_name(&key);
        assert!(name.starts_with("chainmux:rpc:") && name.len() == "chainmux:rpc:".len() + 64, "{name}");
        let ttl: i64 = redis::cmd("TTL").arg(&name).query_async(&mut raw).await.expect("TTL");
        assert!(ttl > 0 && ttl <= 86_400, "shared answers expire: {ttl}");

        // Over 1 MiB: kept by the replica alone.
        let big_key = CacheKey::new("main", "eth_getBlockByNumber", &serde_json::json!(["0x2", true]));
        let big =
            RawValue::from_string(format!("\"{}\"", "a".repeat(MAX_SHARED_ANSWER_BYTES))).expect("JSON");
        writer.cache_put(&big_key, &big);
        off.cache_put(&key, &answer);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let keys: Vec<String> =
            redis::cmd("KEYS").arg("chainmux:rpc:*").query_async(&mut raw).await.expect("KEYS");
        assert_eq!(keys, [name], "neither the big answer nor anything from a replica without rpc_cache");
    }

    #[test]
    fn settings_never_show_the_url() {
        let shown = format!("{:?}", settings("redis://:hunter2@db.internal:6379"));
        assert!(!shown.contains("hunter2") && !shown.contains("db.internal"), "{shown}");
        assert!(matches!(Shared::start(settings("http://x")), Err(SharedStateError::InvalidUrl)));
    }
}
