//! In-flight request coalescing: identical reads arriving while one of them is already on its way upstream share
//! that one call instead of each sending their own.
//!
//! The first caller of a key (the leader) starts the call on its own task and registers it; callers of the same key
//! arriving before it completes (followers) wait for the same answer. Because the call runs on its own task, it
//! does not depend on any caller: a leader whose client goes away (its request future dropped) leaves the call
//! running for the followers, and an answer nobody waits for any more is simply dropped. The entry is removed when
//! the call ends, however it ends (answer, error, panic, runtime shutdown), before anyone is given the answer, so a
//! request arriving after that starts a fresh call. Every waiter gets a clone of the same outcome, errors included.
//!
//! Which requests may be merged, and with which key, is the caller's decision (see
//! [`crate::rpc_policy::may_coalesce`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tracing::Instrument;

/// One call in flight, awaitable by any number of callers; `None` when the call's task panicked or was cancelled.
type InFlight<V> = Shared<BoxFuture<'static, Option<V>>>;

type Map<K, V> = Arc<Mutex<HashMap<K, InFlight<V>>>>;

/// Calls in flight by key.
pub(crate) struct Coalescer<K, V> {
    inflight: Map<K, V>,
}

impl<K, V> fmt::Debug for Coalescer<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inflight = lock(&self.inflight).len();
        f.debug_struct("Coalescer").field("inflight", &inflight).finish()
    }
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Self { inflight: Arc::default() }
    }
}

/// Whether a caller started the call it got its answer from or joined one in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Started the call.
    Leader,
    /// Joined a call another caller started.
    Follower,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single map operation, so a poisoned map is still consistent.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes its key from the map when dropped: at the end of the call's task, whichever way it ends.
struct Unregister<K: Hash + Eq, V> {
    map: Map<K, V>,
    key: Option<K>,
}

impl<K: Hash + Eq, V> Drop for Unregister<K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.map).remove(&key);
        }
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The outcome of the call in flight for `key`, or of a new one made by `call` if there is none; `None` when
    /// the call's task panicked. Must be called within a Tokio runtime (the call runs on a task of its own).
    pub(crate) async fn run<F, Fut>(&self, key: K, call: F) -> (Option<V>, Role)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (inflight, role) = {
            let mut map = lock(&self.inflight);
            match map.get(&key) {
                Some(inflight) => (inflight.clone(), Role::Follower),
                None => {
                    let unregister = Unregister { map: Arc::clone(&self.inflight), key: Some(key.clone()) };
                    let call = call();
                    // The map is locked until the entry is in, so the task cannot remove it before that.
                    // In the leader's span: the shared call's logs (upstream attempts) carry its request id.
                    let task = tokio::spawn(
                        async move {
                            let _unregister = unregister;
                            call.await
                        }
                        .in_current_span(),
                    );
                    let inflight: InFlight<V> = async move { task.await.ok() }.boxed().shared();
                    map.insert(key, inflight.clone());
                    (inflight, Role::Leader)
                }
            }
        };
        (inflight.await, role)
    }

    /// Calls in flight now.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.inflight).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    /// A call that counts its starts and answers `value` once `release` has permits.
    fn gated(
        calls: &Arc<AtomicUsize>,
        release: &Arc<Semaphore>,
        value: Result<u32, String>,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<u32, String>> + use<> {
        let (calls, release) = (Arc::clone(calls), Arc::clone(release));
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let _permit = release.acquire().await;
                value
            }
            .boxed()
        }
    }

    /// Waits until `coalescer` has `n` calls in flight.
    async fn wait_len<K, V>(coalescer: &Coalescer<K, V>, n: usize)
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        for _ in 0..1000 {
            if coalescer.len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("expected {n} calls in flight, have {}", coalescer.len());
    }

    #[tokio::test]
    async fn identical_keys_share_one_call_and_its_answer() {
        let coalescer = Arc::new(Coalescer::<&'static str, Result<u32, String>>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let mut waiters = Vec::new();
        for _ in 0..10 {
            let (shared, call) = (Arc::clone(&coalescer), gated(&calls, &release, Ok(7)));
            waiters.push(tokio::spawn(async move { shared.run("k", call).await }));
            // Each waiter registers (or joins) before the next starts.
            wait_len(&coalescer, 1).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        release.add_permits(100);
        let mut roles = Vec::new();
        for waiter in waiters {
            let (outcome, role) = waiter.await.expect("waiter");
            assert_eq!(outcome, Some(Ok(7)));
            roles.push(role);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(roles.iter().filter(|r| **r == Role::Leader).count(), 1);
        assert_eq!(roles.iter().filter(|r| **r == Role::Follower).count(), 9);
        assert_eq!(coalescer.len(), 0, "the entry is gone once the call ended");
    }

    #[tokio::test]
    async fn different_keys_and_later_calls_are_not_merged() {
        let coalescer = Arc::new(Coalescer::<u32, Result<u32, String>>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let a = tokio::spawn({
            let (coalescer, call) = (Arc::clone(&coalescer), gated(&calls, &release, Ok(1)));
            async move { coalescer.run(1, call).await }
        });
        let b = tokio::spawn({
            let (coalescer, call) = (Arc::clone(&coalescer), gated(&calls, &release, Ok(2)));
            async move { coalescer.run(2, call).await }
        });
        wait_len(&coalescer, 2).await;
        release.add_permits(100);
        assert_eq!(a.await.expect("a"), (Some(Ok(1)), Role::Leader));
        assert_eq!(b.await.expect("b"), (Some(Ok(2)), Role::Leader));
        // The same key once the first call is over: a new call.
        let (outcome, role) = coalescer.run(1, || async { Ok(3) }).await;
        assert_eq!((outcome, role), (Some(Ok(3)), Role::Leader));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn errors_are_shared_too() {
        let coalescer = Arc::new(Coalescer::<u32, Result<u32, String>>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let leader = tokio::spawn({
            let (coalescer, call) = (Arc::clone(&coalescer), gated(&calls, &release, Err("boom".into())));
            async move { coalescer.run(1, call).await }
        });
        wait_len(&coalescer, 1).await;
        let follower = tokio::spawn({
            let (coalescer, call) = (Arc::clone(&coalescer), gated(&calls, &release, Ok(9)));
            async move { coalescer.run(1, call).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        release.add_permits(100);
        assert_eq!(leader.await.expect("leader"), (Some(Err("boom".into())), Role::Leader));
        assert_eq!(follower.await.expect("follower"), (Some(Err("boom".into())), Role::Follower));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_dropped_leader_does_not_strand_its_followers() {
        let coalescer = Arc::new(Coalescer::<u32, Result<u32, String>>::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Semaphore::new(0));
        let leader = tokio::spawn({
            let (coalescer, call) = (Arc::clone(&coalescer), gated(&calls, &release, Ok(5)));
            async move { coalescer.run(1, call).await }
        });
        wait_len(&coalescer, 1).await;
        let follower = tokio::spawn({
            let (coalescer, call) = (Arc::clone(&coalescer), gated(&calls, &release, Ok(6)));
            async move { coalescer.run(1, call).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        assert!(leader.await.expect_err("aborted").is_cancelled());
        release.add_permits(100);
        let answer = tokio::time::timeout(Duration::from_secs(5), follower).await.expect("not stranded");
        assert_eq!(answer.expect("follower"), (Some(Ok(5)), Role::Follower));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(coalescer.len(), 0);
    }

    #[tokio::test]
    async fn a_panicking_call_answers_none_and_unregisters() {
        let coalescer = Coalescer::<u32, u32>::default();
        let (outcome, role) = coalescer
            .run(1, || async {
                if coalescer_test_panics() {
                    panic!("the call panicked");
                }
                1
            })
            .await;
        assert_eq!((outcome, role), (None, Role::Leader));
        assert_eq!(coalescer.len(), 0);
        assert_eq!(coalescer.run(1, || async { 2 }).await, (Some(2), Role::Leader));
    }

    /// Hides the panic from the compiler's reachability analysis.
    fn coalescer_test_panics() -> bool {
        std::hint::black_box(true)
    }
}
