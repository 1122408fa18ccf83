//! Per-client caps on long-lived connections (WebSockets and SSE feeds together): the global caps keep the process
//! bounded, these keep one client (an API key, or an IP without one) from taking every slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::{Client, RpcCharge};

/// Open live connections per client, each at most `limit`.
#[derive(Debug)]
pub(crate) struct LiveSlots {
    limit: usize,
    open: Mutex<HashMap<Client, usize>>,
}

/// One client's claim on a live connection, given back on drop.
#[derive(Debug)]
pub(crate) struct LiveSlot {
    slots: Arc<LiveSlots>,
    client: Client,
}

impl LiveSlots {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        for scope in ["key", "ip"] {
            metrics::counter!("chainmux_live_connections_refused_total", "scope" => scope).increment(0);
        }
        Arc::new(Self { limit, open: Mutex::default() })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// A slot for `client`, or `None` when it already holds `limit`.
    pub(crate) fn try_take(self: &Arc<Self>, client: Client) -> Option<LiveSlot> {
        // A poisoned lock only means a panic elsewhere mid-update of a counter; the map is still usable.
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(LiveSlot { slots: Arc::clone(self), client })
    }
}

/// The slot a new WebSocket or live feed of the request's client holds while open, or why it is refused. A
/// request the access middleware did not see (none reaches these routes) is not counted.
pub(crate) fn take(state: &AppState, charge: Option<&RpcCharge>) -> Result<Option<LiveSlot>, Refused> {
    let Some(charge) = charge else { return Ok(None) };
    let slots = &state.inner.live_slots;
    match slots.try_take(charge.client()) {
        Some(slot) => Ok(Some(slot)),
        None => {
            metrics::counter!("chainmux_live_connections_refused_total", "scope" => charge.client().scope())
                .increment(1);
            Err(Refused { limit: slots.limit() })
        }
    }
}

/// A live connection refused because its client has `limit` open: 429 `too_many_connections`.
#[derive(Debug)]
pub(crate) struct Refused {
    limit: usize,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let message = format!(
            "too many WebSockets and live feeds open for this client (at most {}); close one first",
            self.limit
        );
        crate::auth::refuse(StatusCode::TOO_MANY_REQUESTS, "too_many_connections", &message)
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            // Clients that closed everything leave no entry behind, so the map stays as small as what is open.
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    #[test]
    fn each_client_gets_its_own_cap_and_closing_frees_a_slot() {
        let slots = LiveSlots::new(2);
        let ip = Client::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let first = slots.try_take(ip).expect("first");
        let _second = slots.try_take(ip).expect("second");
        assert!(slots.try_take(ip).is_none(), "a third one of the same client");
        assert!(slots.try_take(Client::Key(7)).is_some(), "another client is not affected");
        drop(first);
        let _third = slots.try_take(ip).expect("a closed connection frees its slot");
        drop(_third);
        drop(_second);
        assert!(slots.open.lock().expect("lock").is_empty(), "no entry left for clients with nothing open");
    }
}
