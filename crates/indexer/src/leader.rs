//! Runs a chain's indexing only while this replica leads the chain (see [`chainmux_store::LeaderElection`]).
//!
//! Any number of replicas may run this for the same chain: each competes for the chain's lock every `poll`; the
//! winner runs one *term* (the indexer, given a store fenced on the term's epoch) and proves its lock session alive
//! every `poll`. When the proof fails (the session died, or another replica started a term), the term is cancelled:
//! its batch in flight either commits before the successor's term starts or is refused by the fence. A replica that
//! lost its lock waits a few polls before competing again, so a healthy replica takes over rather than the one whose
//! database session just failed.

use std::future::Future;
use std::time::Duration;

use chainmux_store::{LeaderElection, Store};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

/// How leadership is contested.
#[derive(Debug, Clone)]
pub struct LeadershipConfig {
    /// This replica's name, recorded as the holder.
    pub replica: String,
    /// How often a follower tries the lock and the leader proves it still holds it.
    pub poll: Duration,
}

/// Polls a replica that just lost its lock sits out before competing again.
const STEP_BACK_POLLS: u32 = 3;

/// Runs `term` whenever this replica leads `chain`, until `cancel` fires (then the term in progress is cancelled,
/// awaited, and the lock released) or a term ends with an error while still leading (returned: waiting would not
/// fix it, and another replica may try).
pub async fn lead<F, Fut, E>(
    store: &Store,
    chain: &str,
    config: &LeadershipConfig,
    cancel: CancellationToken,
    term: F,
) -> Result<(), E>
where
    F: FnMut(Store, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let span = info_span!("leadership", chain, replica = %config.replica);
    lead_inner(store, chain, config, cancel, term).instrument(span).await
}

async fn lead_inner<F, Fut, E>(
    store: &Store,
    chain: &str,
    config: &LeadershipConfig,
    cancel: CancellationToken,
    mut term: F,
) -> Result<(), E>
where
    F: FnMut(Store, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let leading = metrics::gauge!("chainmux_leader", "chain" => chain.to_owned());
    leading.set(0.0);
    metrics::counter!("chainmux_leader_changes_total", "chain" => chain.to_owned()).increment(0);
    let mut election = LeaderElection::new(store, chain, &config.replica);
    let mut compete_after = Instant::now();
    loop {
        let mut lock = loop {
            let wait = compete_after.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if cancel.is_cancelled() {
                return Ok(());
            }
            match tokio::time::timeout(config.poll.max(Duration::from_secs(5)), election.try_acquire()).await
            {
                Ok(Ok(Some(lock))) => break lock,
                Ok(Ok(None)) => {}
                Ok(Err(err)) => warn!(%err, "cannot contend for the chain's lock; retrying"),
                Err(_) => warn!("contending for the chain's lock timed out; retrying"),
            }
            compete_after = Instant::now() + config.poll;
        };
        let epoch = lock.epoch();
        info!(epoch, "leading the chain");
        leading.set(1.0);
        metrics::counter!("chainmux_leader_changes_total", "chain" => chain.to_owned()).increment(1);

        let term_cancel = cancel.child_token();
        let run = term(store.fenced(epoch), term_cancel.clone());
        tokio::pin!(run);
        let mut lost = false;
        let result = loop {
            tokio::select! {
                result = &mut run => break result,
                _ = tokio::time::sleep(config.poll), if !lost => {
                    if let Err(reason) = prove(&mut lock, config.poll).await {
                        warn!(epoch, %reason, "lost the chain's lock; stopping writes");
                        lost = true;
                        term_cancel.cancel();
                    }
                }
            }
        };
        leading.set(0.0);
        // A term that failed because its writes were fenced lost the lock without the proof noticing yet.
        if !lost && let Err(reason) = prove(&mut lock, config.poll).await {
            warn!(epoch, %reason, "lost the chain's lock; the term has ended");
            lost = true;
        }
        if lost {
            if let Err(err) = &result {
                info!(epoch, %err, "term ended after the lock was lost");
            }
            // The session is gone or fenced; dropping it closes it.
            drop(lock);
            compete_after = Instant::now() + config.poll * STEP_BACK_POLLS;
            continue;
        }
        match tokio::time::timeout(config.poll.max(Duration::from_secs(5)), lock.release()).await {
            Ok(Ok(())) => info!(epoch, "released the chain's lock"),
            Ok(Err(err)) => {
                warn!(epoch, %err, "cannot release the chain's lock; its session is closed instead")
            }
            Err(_) => warn!(epoch, "releasing the chain's lock timed out; its session is closed instead"),
        }
        return result;
    }
}

/// The term's proof of life, bounded so a hung session counts as lost.
async fn prove(lock: &mut chainmux_store::LeaderTerm, poll: Duration) -> Result<(), String> {
    match tokio::time::timeout(poll.max(Duration::from_millis(500)), lock.check()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("the lock's session did not answer in time".to_owned()),
    }
}
