//! The upstream pool as an alloy transport.

use std::sync::Arc;
use std::task::{Context, Poll};

use alloy::rpc::json_rpc::{
    ErrorPayload, RequestPacket, Response, ResponsePacket, ResponsePayload, SerializedRequest,
};
use alloy::transports::{TransportError, TransportErrorKind, TransportFut};
use chainmux_rpc::{Pool, RpcError};
use futures_util::future::try_join_all;
use serde_json::value::RawValue;

/// Sends alloy's requests through a [`Pool`]. JSON-RPC error objects come back as alloy error responses (so
/// alloy's own handling applies); pool failures become transport errors carrying the [`RpcError`].
#[derive(Debug, Clone)]
pub struct PoolTransport {
    pool: Arc<Pool>,
}

impl PoolTransport {
    pub fn new(pool: Arc<Pool>) -> Self {
        Self { pool }
    }
}

impl tower::Service<RequestPacket> for PoolTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RequestPacket) -> Self::Future {
        let pool = Arc::clone(&self.pool);
        Box::pin(async move {
            match request {
                RequestPacket::Single(single) => Ok(ResponsePacket::Single(forward(&pool, single).await?)),
                RequestPacket::Batch(batch) => Ok(ResponsePacket::Batch(
                    try_join_all(batch.into_iter().map(|request| forward(&pool, request))).await?,
                )),
            }
        })
    }
}

async fn forward(pool: &Pool, request: SerializedRequest) -> Result<Response, TransportError> {
    let empty_params = || -> Box<RawValue> { RawValue::from_string("[]".to_owned()).unwrap_or_default() };
    let params = request.params().map_or_else(empty_params, ToOwned::to_owned);
    let payload = match pool.call(request.method(), &params).await {
        Ok(result) => ResponsePayload::Success(result),
        Err(RpcError::JsonRpc { error, .. }) => ResponsePayload::Failure(ErrorPayload {
            code: error.code,
            message: error.message.into(),
            data: error.data,
        }),
        Err(other) => return Err(TransportErrorKind::custom(other)),
    };
    Ok(Response { id: request.id().clone(), payload })
}
