//! `GET /status`: the operator's status page, one self-contained HTML file (`status.html`, inline CSS and script,
//! nothing fetched from elsewhere) compiled into the binary. The page holds no data: its script polls
//! `/v1/status` and renders it, so the page itself is open like the probes while `/v1/status` keeps requiring a key
//! where keys are required (`/status?key=…` hands the key to the script).
//!
//! The Content-Security-Policy allows exactly the page's own inline `<script>` and `<style>` blocks, by their
//! SHA-256 (computed from the embedded file, so it cannot go stale), plus `fetch` to this origin; no
//! `'unsafe-inline'`, no other source of anything.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

const PAGE: &str = include_str!("status.html");

/// The CSP source expressions (`'sha256-…'`) of every `<tag>…</tag>` block of `page`, opening tag without
/// attributes (the only spelling the page uses; the unit test checks there is no other).
fn inline_hashes(page: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut hashes = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else { break };
        hashes.push(format!("'sha256-{}'", STANDARD.encode(Sha256::digest(&body.as_bytes()[..end]))));
        rest = &body[end + close.len()..];
    }
    hashes
}

/// The page's policy: nothing but its own inline script and style, and requests back to this origin.
fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
            inline_hashes(PAGE, "script").join(" "),
            inline_hashes(PAGE, "style").join(" "),
        )
    })
}

/// The status page: every chain's progress and health, its upstreams (state, score, latency, error and 429
/// rates, head lag, breaker, why excluded) and recent incidents, refreshed every 5 seconds from `/v1/status`.
/// Needs no key itself; where keys are required, open it as `/status?key=<key>` and the page sends that key with
/// its `/v1/status` requests.
#[utoipa::path(get, path = "/status", tag = "status", security(()),
    responses((status = 200, description = "The status page (HTML; its script polls `/v1/status`)",
               content_type = "text/html", body = String)))]
pub(crate) async fn status_page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, content_security_policy()),
            // The page's own URL may hold `?key=`; it must not travel on in a Referer.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Revalidated on each load, so an upgraded binary's page replaces a cached one at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_exactly_the_pages_inline_blocks() {
        let csp = content_security_policy();
        let scripts = inline_hashes(PAGE, "script");
        let styles = inline_hashes(PAGE, "style");
        assert_eq!((scripts.len(), styles.len()), (1, 1), "one inline script and one style block");
        assert!(csp.contains(&format!("script-src {};", scripts[0])), "{csp}");
        assert!(csp.contains(&format!("style-src {};", styles[0])), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        // Any other spelling of the tags would escape the hashing (and be blocked by the browser).
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert_eq!(PAGE.matches("<style").count(), 1);
        // A known input: the hash is of the block's exact text, base64 of SHA-256.
        assert_eq!(
            inline_hashes("<p><script>alert(1)</script><script></script>", "script"),
            [
                "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='",
                "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
            ]
        );
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_has_no_inline_handlers() {
        // Self-contained: works offline, and the policy (default-src 'none') would block any of these anyway.
        for needle in ["src=", "href=", "url(", "@import", "http://", "https://", "//cdn"] {
            assert!(!PAGE.contains(needle), "status.html contains {needle:?}");
        }
        // Inline handlers and style attributes are not covered by the hashes and would be blocked.
        for needle in [" onclick=", " onload=", " style="] {
            assert!(!PAGE.contains(needle), "status.html contains {needle:?}");
        }
        assert!(PAGE.contains(r#"<meta name="viewport""#), "readable on a phone");
        // Relative, so it works behind a reverse proxy's path prefix.
        assert!(PAGE.contains(r#"const STATUS_URL = "v1/status";"#));
    }
}
