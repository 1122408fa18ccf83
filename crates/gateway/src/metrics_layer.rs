//! Per-route request metrics and tracing spans, keyed on the matched route (never the raw path, whose
//! addresses and hashes would explode label cardinality), and the request id every log line of a request carries.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::{Span, info_span};

/// The header a request id comes in (from a proxy or client) and goes back out in.
pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Longest incoming id kept; a longer one is replaced, so a client cannot bloat every log line.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Whether an incoming id is kept as is: short and made of characters that need no escaping in any log format.
fn valid_request_id(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A fresh id: 16 hex digits, a counter mixed with a per-process seed (start time and pid), so ids are unique
/// within the process and unlikely to repeat across restarts or replicas, without a random number generator.
fn new_request_id() -> String {
    static SEED: LazyLock<u64> = LazyLock::new(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}", splitmix64(SEED.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15))))
}

/// SplitMix64's finalizer: a bijection on `u64`, so distinct counters give distinct ids.
fn splitmix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Outside the trace layer: makes sure the request has a valid `x-request-id` (the caller's, else a new one) before
/// [`make_span`] records it, and returns it in the response.
pub(crate) async fn request_id(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(&REQUEST_ID) {
        Some(value) if valid_request_id(value.as_bytes()) => value.clone(),
        _ => {
            // Hex digits are always a valid header value.
            let value = HeaderValue::from_str(&new_request_id()).unwrap_or(HeaderValue::from_static("0"));
            request.headers_mut().insert(REQUEST_ID.clone(), value.clone());
            value
        }
    };
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID.clone(), id);
    response
}

fn route_of<B>(request: &axum::http::Request<B>) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned())
}

pub(crate) fn make_span(request: &axum::http::Request<Body>) -> Span {
    // Set by `request_id`, which runs first; validated there, so it is plain ASCII.
    let request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("");
    info_span!("http", method = %request.method(), route = %route_of(request), request_id)
}

/// The request method as a metric label: the standard ones, else `other` (clients may send any token, and each
/// would otherwise be a new series).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

pub(crate) async fn track(request: Request, next: Next) -> Response {
    let route = route_of(&request);
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("chainmux_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("chainmux_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        use axum::http::Method;
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        let made_up = Method::from_bytes(b"FOO1").expect("a token is a method");
        assert_eq!(method_label(&made_up), "other");
    }

    use super::*;

    #[test]
    fn incoming_ids_are_kept_only_when_short_and_plain() {
        assert!(valid_request_id(b"abc-123_x.y:z"));
        assert!(valid_request_id("a".repeat(MAX_REQUEST_ID_LEN).as_bytes()));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id("a".repeat(MAX_REQUEST_ID_LEN + 1).as_bytes()));
        assert!(!valid_request_id(b"has space"));
        assert!(!valid_request_id(b"quote\""));
        assert!(!valid_request_id("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn generated_ids_are_16_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
            assert!(valid_request_id(id.as_bytes()));
        }
    }
}
