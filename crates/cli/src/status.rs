//! `chainmux status`: the gateway's `/v1/status` as terminal tables (chains, upstreams, recent incidents), in
//! colour when stdout is a terminal (and `NO_COLOR` is unset).

use std::io::IsTerminal;

use anyhow::Context;
use serde_json::Value;

/// Incidents shown; `/v1/status` keeps more.
const INCIDENTS_SHOWN: usize = 20;

/// A value as table text. Control characters are replaced: reasons and incident messages carry upstream error
/// text, which must not be able to drive the operator's terminal.
fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect()
}

fn number(value: &Value, format: fn(f64) -> String) -> String {
    value.as_f64().map_or_else(|| "-".to_owned(), format)
}

/// Wraps already padded text in an ANSI colour when `on`; padding first keeps the columns aligned.
struct Paint {
    on: bool,
}

impl Paint {
    fn state(&self, padded: String, state: &str) -> String {
        let code = match state.trim() {
            "healthy" | "ok" | "closed" => "32",
            "down" | "half_open" | "unknown" => "33",
            "excluded" | "unhealthy" | "open" => "31",
            _ => return padded,
        };
        self.code(padded, code)
    }

    fn code(&self, text: String, code: &str) -> String {
        if self.on { format!("\x1b[{code}m{text}\x1b[0m") } else { text }
    }

    fn bold(&self, text: &str) -> String {
        self.code(text.to_owned(), "1")
    }
}

/// How long ago `at` was, relative to the report's `now` (both unix seconds).
fn age(now: u64, at: u64) -> String {
    let secs = now.saturating_sub(at);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

pub(crate) async fn print(base: &str) -> anyhow::Result<()> {
    let url = format!("{}/v1/status", base.trim_end_matches('/'));
    let body: Value = reqwest::get(&url)
        .await
        .with_context(|| format!("requesting {url}"))?
        .error_for_status()
        .with_context(|| format!("requesting {url}"))?
        .bytes()
        .await
        .map_err(anyhow::Error::from)
        .and_then(|bytes| serde_json::from_slice(&bytes).context("decoding /v1/status"))?;
    // Colour only for a person at a terminal who did not opt out (https://no-color.org).
    let paint = Paint { on: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() };
    print!("{}", render(&body, &paint));
    Ok(())
}

fn render(body: &Value, paint: &Paint) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let chains = body["chains"].as_array().cloned().unwrap_or_default();
    let now = body["now"].as_u64().unwrap_or_default();
    let header = format!(
        "{:<16} {:<6} {:>12} {:>12} {:>12} {:>7} {:>7} {:>7} {:>9}  HEALTH",
        "CHAIN", "KIND", "HEAD", "INDEXED", "FINALIZED", "LAG", "LAG_S", "BLK/S", "REORGS/1H"
    );
    let _ = writeln!(out, "{}", paint.bold(&header));
    for chain in &chains {
        let health = &chain["health"];
        let status = health["status"].as_str().unwrap_or("-");
        let reasons: Vec<&str> =
            health["reasons"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let _ = writeln!(
            out,
            "{:<16} {:<6} {:>12} {:>12} {:>12} {:>7} {:>7} {:>7} {:>9}  {}{}",
            cell(&chain["name"]),
            cell(&chain["kind"]),
            cell(&chain["head"]),
            cell(&chain["indexed_head"]),
            cell(&chain["finalized"]),
            cell(&chain["lag_blocks"]),
            number(&chain["lag_seconds"], |s| format!("{s:.0}")),
            number(&chain["blocks_per_second"], |r| format!("{r:.1}")),
            cell(&chain["reorgs_last_hour"]),
            paint.state(status.to_owned(), status),
            if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) },
        );
        // The error the indexer is retrying or stopped on, under its chain: it explains a growing lag.
        let error = &chain["indexer_error"];
        if let Some(message) = error["message"].as_str() {
            let since =
                error["since"].as_u64().map_or_else(String::new, |at| format!(" (since {})", age(now, at)));
            let line = format!("  indexer error{since}: {}", cell(&Value::from(message)));
            let _ = writeln!(out, "{}", paint.code(line, "31"));
        }
        // Which replica writes the chain: with several replicas, the one whose log explains the indexed head.
        let leader = &chain["leader"];
        match leader["replica"].as_str() {
            Some(replica) => {
                let since = leader["since"]
                    .as_u64()
                    .map_or_else(String::new, |at| format!(", since {}", age(now, at)));
                let _ = writeln!(
                    out,
                    "  leader: {} (term {}{since})",
                    cell(&Value::from(replica)),
                    cell(&leader["epoch"])
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{}",
                    paint.code("  leader: none (no replica indexes this chain)".into(), "33")
                );
            }
        }
    }

    let header = format!(
        "{:<16} {:<16} {:<9} {:<7} {:>5} {:<9} {:>10} {:>5} {:>9} {:>9} {:>6} {:>6}  REASON",
        "UPSTREAM",
        "CHAIN",
        "STATE",
        "PRIMARY",
        "SCORE",
        "BREAKER",
        "HEAD",
        "LAG",
        "P50",
        "P99",
        "ERR%",
        "429%"
    );
    let _ = writeln!(out, "\n{}", paint.bold(&header));
    for chain in &chains {
        for upstream in chain["upstreams"].as_array().into_iter().flatten() {
            let state = cell(&upstream["state"]);
            let breaker = cell(&upstream["breaker"]);
            let _ = writeln!(
                out,
                "{:<16} {:<16} {} {:<7} {:>5} {} {:>10} {:>5} {:>9} {:>9} {:>6} {:>6}  {}",
                cell(&upstream["name"]),
                cell(&chain["name"]),
                paint.state(format!("{state:<9}"), &state),
                if upstream["primary"].as_bool() == Some(true) { "yes" } else { "" },
                number(&upstream["score"], |s| format!("{s:.2}")),
                paint.state(format!("{breaker:<9}"), &breaker),
                cell(&upstream["head"]),
                cell(&upstream["lag"]),
                number(&upstream["latency_p50_ms"], |ms| format!("{ms:.1}ms")),
                number(&upstream["latency_p99_ms"], |ms| format!("{ms:.1}ms")),
                number(&upstream["error_rate"], |r| format!("{:.1}", r * 100.0)),
                number(&upstream["throttle_rate"], |r| format!("{:.1}", r * 100.0)),
                upstream["reason"].as_str().unwrap_or(""),
            );
        }
    }

    let shared = &body["shared_state"];
    if shared.is_object() {
        let _ = writeln!(
            out,
            "\nshared state: redis {} (rate limits: {}, rpc cache: {})",
            cell(&shared["redis"]),
            cell(&shared["rate_limits"]),
            cell(&shared["rpc_cache"])
        );
    }

    let incidents = body["incidents"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "\n{}", paint.bold(&format!("RECENT INCIDENTS ({})", incidents.len())));
    if incidents.is_empty() {
        let _ = writeln!(out, "none");
    }
    for incident in incidents.iter().take(INCIDENTS_SHOWN) {
        let _ = writeln!(
            out,
            "{:<9} {:<16} {:<18} {:<16} {}",
            age(now, incident["at"].as_u64().unwrap_or(now)),
            cell(&incident["chain"]),
            cell(&incident["kind"]),
            cell(&incident["upstream"]),
            cell(&incident["message"]),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_never_reach_the_terminal() {
        let text = cell(&serde_json::json!("HTTP 500\u{1b}[2J\u{7}body"));
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.starts_with("HTTP 500") && text.ends_with("body"), "{text:?}");
    }

    use super::*;
    use serde_json::json;

    fn report() -> Value {
        json!({
            "now": 1000,
            "chains": [{
                "name": "local", "kind": "evm", "head": 20, "indexed_head": 19, "finalized": 10, "lag_blocks": 1,
                "lag_seconds": 0.5, "blocks_per_second": 2.0, "reorgs_last_hour": 0,
                "health": { "status": "ok", "reasons": [] },
                "upstreams": [{ "name": "flaky", "state": "excluded", "breaker": "open", "score": 0.1,
                                "reason": "circuit open", "primary": false }],
            }],
            "incidents": [{ "at": 990, "chain": "local", "kind": "upstream_excluded", "upstream": "flaky",
                            "message": "healthy → excluded: circuit open" }],
        })
    }

    #[test]
    fn plain_output_has_no_escape_codes_and_colour_output_has() {
        let plain = render(&report(), &Paint { on: false });
        assert!(!plain.contains('\x1b'), "{plain}");
        let upstream = plain.lines().find(|l| l.starts_with("flaky")).expect("upstream row");
        assert!(upstream.contains("excluded") && upstream.contains("circuit open"), "{plain}");
        assert!(
            plain.lines().any(|l| l.starts_with("10s ago") && l.contains("upstream_excluded")),
            "{plain}"
        );
        let coloured = render(&report(), &Paint { on: true });
        assert!(coloured.contains("\x1b[31mexcluded"), "{coloured}");
        assert!(!plain.contains("indexer error"), "{plain}");
    }

    #[test]
    fn the_leader_and_shared_state_are_shown() {
        let mut body = report();
        let without = render(&body, &Paint { on: false });
        assert!(without.contains("leader: none"), "{without}");
        body["chains"][0]["leader"] =
            json!({"replica": "pod-a", "epoch": 3, "since": 700, "renewed_at": 999});
        body["shared_state"] = json!({"redis": "unreachable", "rate_limits": "local", "rpc_cache": "local"});
        let with = render(&body, &Paint { on: false });
        assert!(with.contains("leader: pod-a (term 3, since 5m ago)"), "{with}");
        assert!(
            with.contains("shared state: redis unreachable (rate limits: local, rpc cache: local)"),
            "{with}"
        );
    }

    #[test]
    fn the_indexer_error_shows_under_its_chain() {
        let mut body = report();
        body["chains"][0]["indexer_error"] =
            json!({ "message": "fetch: upstream request failed\u{1b}[2J", "since": 940 });
        let plain = render(&body, &Paint { on: false });
        let mut lines = plain.lines().skip_while(|l| !l.starts_with("local"));
        assert_eq!(lines.next().map(|l| l.starts_with("local")), Some(true), "{plain}");
        let error = lines.next().expect("error line");
        assert_eq!(error, "  indexer error (since 1m ago): fetch: upstream request failed\u{fffd}[2J");
    }
}
