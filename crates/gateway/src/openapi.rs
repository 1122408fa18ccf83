//! `GET /openapi.json`: the OpenAPI 3.1 document of the gateway's HTTP API, generated from the code.
//!
//! Each route's operation is the `#[utoipa::path]` next to its handler, parameters are the `IntoParams` types next
//! to the query parsers (`params`), and response bodies are the very types that serialize them (`render`, `error`,
//! `routes`). What every route shares is added here once: the error responses, the index-position headers of the
//! chain routes and the API-key security schemes (as `auth` reads keys). `tests/openapi.rs` checks the document
//! against the served router and real responses.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Content, Header, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::consistency::{FINALIZED_HEAD, INDEXED_HEAD};
use crate::error::ErrorBody;
use crate::{health, routes, sse, status_page, ws};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chainmux gateway",
        description = "Indexed chain data over REST (each chain family in its own spelling: `0x` hex on EVM, \
                       base58 on Solana), live feeds as Server-Sent Events, and a JSON-RPC proxy onto the chains' \
                       upstreams. Every error is `{\"error\": {\"code\", \"message\", \"field\"?}}`."
    ),
    paths(
        routes::health,
        routes::ready,
        routes::metrics,
        openapi_json,
        status_page::status_page,
        health::status,
        routes::chains,
        health::chain_health,
        routes::block,
        routes::transaction,
        routes::transfers,
        sse::transfers,
        routes::logs,
        routes::instructions,
        routes::events,
        sse::events,
        routes::contracts,
        routes::rpc,
        ws::upgrade,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
    tags(
        (name = "status", description = "Probes, metrics and this document; never need a key."),
        (name = "chains", description = "Indexed data of the served chains."),
        (name = "live", description = "Live feeds: Server-Sent Events."),
        (name = "rpc", description = "JSON-RPC proxy onto the chain's upstreams."),
    )
)]
pub(crate) struct ApiDoc;

/// The document, serialized once: it only depends on the code.
fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi().to_json().unwrap_or_else(|err| {
            // Serializing a tree of strings and maps does not fail; should it, say so instead of panicking.
            tracing::error!(%err, "cannot serialize the OpenAPI document");
            String::from("{}")
        })
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "status",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

/// Security scheme names.
const HEADER_KEY: &str = "api_key_header";
const QUERY_KEY: &str = "api_key_query";
const BEARER_KEY: &str = "api_key_bearer";

/// What every operation shares: error responses, the chain routes' headers, and how API keys are sent.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let key = "An API key (`cmx_` and 64 hex digits), from `chainmux keys create`. Required when the server \
                   sets `require_api_key`; otherwise optional, and a keyed client gets its key's own rate limits.";
        components.add_security_scheme(
            HEADER_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description("x-api-key", key))),
        );
        components.add_security_scheme(
            QUERY_KEY,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "key",
                "The API key as `?key=` on any route, for clients that cannot set headers (EventSource, \
                 WebSocket). Removed from the query before the route reads it.",
            ))),
        );
        components.add_security_scheme(
            BEARER_KEY,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The API key as `Authorization: Bearer <key>`."))
                    .build(),
            ),
        );

        for (path, item) in openapi.paths.paths.iter_mut() {
            // The probes document their own answers; the per-chain one is a probe too (no key, no index headers),
            // and so does the status page (open: it holds no data).
            if matches!(
                path.as_str(),
                "/health" | "/ready" | "/metrics" | "/openapi.json" | "/status" | "/v1/chains/{chain}/health"
            ) {
                continue;
            }
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                // One of the three ways of sending a key, or none (the server decides whether a key is required).
                operation.security = Some(vec![
                    SecurityRequirement::default(),
                    SecurityRequirement::new::<_, _, &str>(HEADER_KEY, []),
                    SecurityRequirement::new::<_, _, &str>(QUERY_KEY, []),
                    SecurityRequirement::new::<_, _, &str>(BEARER_KEY, []),
                ]);
                add_error(
                    operation,
                    "400",
                    "A parameter (or the body) is invalid or unknown; `field` names it.",
                );
                add_error(operation, "401", "No API key, and the server requires one (`unauthorized`).");
                add_error(operation, "403", "The API key is unknown, malformed or revoked (`forbidden`).");
                add_error(
                    operation,
                    "404",
                    "Unknown chain, no such item, or a route this chain family lacks.",
                );
                let limited = ResponseBuilder::new()
                    .description("Rate limit exceeded (`rate_limited`); retry after `Retry-After`.")
                    .content("application/json", error_content())
                    .header("retry-after", number_header("Seconds to wait."))
                    .build();
                operation.responses.responses.entry("429".into()).or_insert(limited.into());
                if path.starts_with("/v1/") {
                    let unavailable = "The index store is unavailable, or `min_block` was not reached in time \
                                       (`not_indexed_yet`, with `Retry-After`).";
                    add_error(operation, "503", unavailable);
                }
                if path.starts_with("/v1/chains/{chain}/") && !path.ends_with("/stream") {
                    add_head_headers(operation);
                }
            }
        }
    }
}

fn error_content() -> Content {
    Content::new(Some(Ref::from_schema_name("ErrorBody")))
}

/// A response header holding a non-negative integer.
fn number_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Some(<u64 as utoipa::PartialSchema>::schema()))
        .description(Some(description))
        .build()
}

/// Adds the `status` error response (the common error body) unless the operation documents its own.
fn add_error(operation: &mut Operation, status: &str, description: &str) {
    let response =
        ResponseBuilder::new().description(description).content("application/json", error_content()).build();
    operation.responses.responses.entry(status.into()).or_insert(response.into());
}

/// The index position headers every chain route's answer carries (see `consistency`).
fn add_head_headers(operation: &mut Operation) {
    use utoipa::openapi::RefOr;
    let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") else { return };
    let headers = [
        (
            INDEXED_HEAD,
            "The chain's indexed height the answer was computed at (absent before the first block).",
        ),
        (FINALIZED_HEAD, "The chain's finalized height then (absent while unknown)."),
    ];
    for (name, description) in headers {
        ok.headers.insert(name.as_str().to_owned(), number_header(description).into());
    }
}
