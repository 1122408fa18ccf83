//! The upstream pool as a solana-client [`RpcSender`], so every call the `RpcClient` makes gets the pool's
//! failover, limits, hedging and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chainmux_rpc::{Pool, RpcError};
use solana_rpc_client::rpc_sender::{RpcSender, RpcTransportStats};
use solana_rpc_client_api::client_error::{Error as ClientError, ErrorKind, Result as ClientResult};
use solana_rpc_client_api::request::{RpcError as SolanaRpcError, RpcRequest, RpcResponseErrorData};

/// Sends `RpcClient` requests through a [`Pool`]. A JSON-RPC error object comes back as solana-client's
/// `RpcResponseError` (so its own handling applies); any other pool failure travels as the [`RpcError`] itself
/// (see [`pool_error`]), keeping the pool's retry classification.
#[derive(Debug, Clone)]
pub struct PoolSender {
    pool: Arc<Pool>,
    requests: Arc<AtomicUsize>,
}

impl PoolSender {
    pub fn new(pool: Arc<Pool>) -> Self {
        Self { pool, requests: Arc::default() }
    }
}

#[async_trait]
impl RpcSender for PoolSender {
    async fn send(&self, request: RpcRequest, params: serde_json::Value) -> ClientResult<serde_json::Value> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let params = serde_json::value::to_raw_value(&params)
            .map_err(|err| ClientError::new_with_request(ErrorKind::SerdeJson(err), request))?;
        let method = request.to_string();
        match self.pool.call(&method, &params).await {
            Ok(raw) => serde_json::from_str(raw.get())
                .map_err(|err| ClientError::new_with_request(ErrorKind::SerdeJson(err), request)),
            Err(RpcError::JsonRpc { error, .. }) => {
                let kind = ErrorKind::RpcError(SolanaRpcError::RpcResponseError {
                    code: error.code,
                    message: error.message,
                    data: RpcResponseErrorData::Empty,
                });
                Err(ClientError::new_with_request(kind, request))
            }
            Err(other) => Err(ClientError::new_with_request(ErrorKind::Middleware(other.into()), request)),
        }
    }

    fn get_transport_stats(&self) -> RpcTransportStats {
        RpcTransportStats {
            request_count: self.requests.load(Ordering::Relaxed),
            ..RpcTransportStats::default()
        }
    }

    fn url(&self) -> String {
        // Upstream URLs may embed API keys: the pool is named by its chain instead.
        format!("chainmux pool {}", self.pool.chain())
    }
}

/// The pool failure a [`ClientError`] carries, if it came from [`PoolSender`] and was not a JSON-RPC error object.
pub fn pool_error(err: &ClientError) -> Option<&RpcError> {
    match err.kind() {
        ErrorKind::Middleware(inner) => inner.downcast_ref::<RpcError>(),
        _ => None,
    }
}
